"""Speed-ups for autoregressive decoding, all opt-in and all in one place: half precision, torch.compile, DeepSpeed.

Each wrapper takes a model or a decode-step function and returns a new object; nothing rebinds module globals,
and the optional packages (deepspeed) are imported only when asked for. ``prepare_decoder`` applies the ones an
``InferenceOptions`` asks for and says, in plain sentences, which were asked for but not used and why, so a run
never looks faster-configured than it was::

    decoder, notes = prepare_decoder(model, InferenceOptions(half=True, compile=True))
    codes = decoder.generate(cond_latent, text_tokens, max_mel_tokens=500, greedy=False, generator=gen)

A decode step has ``decode_one_token``'s signature (``tortoise_lab.sampling.DecodeStep``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import ContextManager

import torch
from torch import nn

from tortoise_lab.device import choose_device
from tortoise_lab.models.gpt import KVCache, UnifiedVoice
from tortoise_lab.sampling import DecodeStep, decode_one_token, generate_codes

__all__ = ["InferenceOptions", "PreparedDecoder", "prepare_decoder", "compile_decode_step", "half_dtype",
           "half_precision_note", "autocast_context", "deepspeed_available", "deepspeed_decoder",
           "DeepSpeedDecoder", "attach_caches", "quantize_int8", "DEEPSPEED_NEEDS_CUDA"]

DEEPSPEED_NEEDS_CUDA = "DeepSpeed inference needs a CUDA GPU; running the PyTorch decoder instead."
_PYTORCH_INSTEAD = "running the PyTorch decoder instead."
COMPILED_CACHE_BUCKET = 128  # KV-cache lengths for a compiled decode step are multiples of this
# The kernel-name suffix per dtype, and the kernels one of our layers calls. DeepSpeed's op bindings silently
# fall back to slow PyTorch code when a kernel is missing from the built extension (bf16 ones are compiled
# only for some GPUs and CUDA versions), so their presence is checked up front.
_KERNEL_SUFFIX = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_LAYER_KERNELS = ("allocate_workspace", "qkv_gemm", "softmax_context", "vector_matmul", "mlp_gemm",
                  "residual_add_bias")


# --- half precision ------------------------------------------------------------------------------------------

def half_dtype(device: torch.device | str) -> torch.dtype | None:
    """The reduced-precision dtype used on ``device``, or None where half precision is not used (fp32 stays).

    On CUDA: bfloat16 where the GPU supports it (Ampere and newer): it is as fast as float16 on those GPUs and has
    float32's exponent range, so large activations cannot overflow; float16 on older GPUs. Elsewhere: None, since
    CPU float16 matmuls are slow or unsupported, and autocast on MPS has not been validated for these models.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    with torch.cuda.device(device):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def half_precision_note(device: torch.device | str) -> str | None:
    """Why half precision is not used on ``device`` (one sentence), or None where it is used (CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        return ("Half precision is not used on CPU (float16 matrix products there are slow or unsupported), "
                "so this run stays in float32.")
    return (f"Half precision is used only on CUDA (autocast on {device.type} is not validated for TorToiSe), "
            "so this run stays in float32.")


def _autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def autocast_context(device: torch.device | str, enabled: bool) -> ContextManager:
    """Autocast to ``half_dtype(device)`` when ``enabled`` on CUDA; a context that changes nothing otherwise.

    Weights stay float32; matrix products run in half precision, norms and softmax in float32 (autocast's lists).
    """
    device = torch.device(device)
    return _autocast(device, half_dtype(device) if enabled else None)


def attach_caches(model: UnifiedVoice, batch_size: int, slots: int, dtype: torch.dtype) -> None:
    """Keep the model's KV cache if it has this batch size, room for ``slots`` and ``dtype``; else attach one that does.

    Under autocast the keys and values come out in the half dtype, and an index write into a float32 cache refuses
    mixed dtypes, so the cache must be in the compute dtype (also half the memory traffic per step).
    """
    cache = model.gpt.h[0].attn.kv_cache if len(model.gpt.h) else None
    if (cache is not None and cache.k_cache.shape[0] == batch_size and cache.max_seq_len >= slots
            and cache.k_cache.dtype == dtype):
        return
    config, device = model.config, model.final_norm.weight.device  # (an int8 copy's linears hold no float weight)
    for block in model.gpt.h:
        block.attn.kv_cache = KVCache(batch_size, config.heads, slots, config.head_dim, dtype=dtype, device=device)


# --- torch.compile --------------------------------------------------------------------------------------------

def compile_decode_step(decode_step: DecodeStep = decode_one_token,
                        device: torch.device | str = "cpu") -> DecodeStep:
    """A torch.compile'd copy of ``decode_step`` for ``device``; the original is left as it was.

    CUDA uses mode "reduce-overhead" (CUDA graphs: one launch per step instead of one per kernel, which is where
    small-batch decoding loses its time); CPU uses the default mode. ``dynamic=False``: a step's shapes are fixed
    by the static KV cache, so one graph per (batch, cache length) is compiled, the first call being the slow one.
    Only the decode step is compiled; the prefill runs once per utterance and is not worth a compile.
    """
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else "default"
    return torch.compile(decode_step, mode=mode, dynamic=False, fullgraph=True)


# --- DeepSpeed ------------------------------------------------------------------------------------------------

def deepspeed_available() -> tuple[bool, str]:
    """(True, what loaded) when DeepSpeed's transformer-inference kernels can run here; else (False, why not).

    Checks CUDA, DeepSpeed's accelerator choice, and finally loads the kernel extension, which is the only real
    test: the first call on a machine may JIT-build it (minutes; ninja and an nvcc matching torch's CUDA needed;
    cached under TORCH_EXTENSIONS_DIR afterwards).
    """
    if not torch.cuda.is_available():
        return False, DEEPSPEED_NEEDS_CUDA
    try:
        import deepspeed  # noqa: F401  (optional dependency: the "deepspeed" extra)
        from deepspeed.accelerator import get_accelerator
    except ImportError:
        return False, f"DeepSpeed is not installed (pip install 'tortoise-lab[deepspeed]'); {_PYTORCH_INSTEAD}"
    accelerator = get_accelerator().device_name()
    if accelerator != "cuda":
        return False, f"DeepSpeed selected its {accelerator!r} accelerator, not CUDA; {_PYTORCH_INSTEAD}"
    try:
        from deepspeed.git_version_info import installed_ops
        from deepspeed.ops.op_builder import InferenceBuilder
        from deepspeed.ops.op_builder.builder import probe_is_compatible

        builder = InferenceBuilder()
        # is_compatible() itself can raise without nvcc; probe_is_compatible turns that into False.
        if not (installed_ops.get(builder.name, False) or probe_is_compatible(builder)):
            return False, ("DeepSpeed's transformer-inference kernels cannot be built on this machine (it needs "
                           f"ninja and a CUDA toolkit matching torch's CUDA {torch.version.cuda}); {_PYTORCH_INSTEAD}")
        builder.load()
    except Exception as error:  # a failed JIT build raises many kinds of errors; all mean "not available"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return False, (f"DeepSpeed's transformer-inference kernels failed to load ({type(error).__name__}: "
                       f"{first_line[:200]}); {_PYTORCH_INSTEAD}")
    return True, "DeepSpeed's transformer-inference kernels are loaded."


def _require_kernels(dtype: torch.dtype) -> None:
    """RuntimeError unless the loaded kernel extension has every kernel our layers call in ``dtype``."""
    from deepspeed.ops.op_builder import InferenceBuilder

    kernels = InferenceBuilder().load()  # already loaded by deepspeed_available(): a cached lookup
    suffix = _KERNEL_SUFFIX[dtype]
    missing = [name for name in _LAYER_KERNELS if not hasattr(kernels, f"{name}_{suffix}")]
    if missing:
        raise RuntimeError(f"DeepSpeed's kernels on this machine lack {suffix} versions of {', '.join(missing)} "
                           f"(DeepSpeed would quietly run slow PyTorch code instead); {_PYTORCH_INSTEAD}")


def _reset_deepspeed_layer_state() -> None:
    """Forget DeepSpeed's process-wide layer counters and workspace, as ``InferenceEngine.destroy()`` does.

    Each DeepSpeed layer takes its layer index from a class counter, and the last layer (by another class counter)
    advances the shared KV-cache position; stale counters from an earlier model would break both.
    """
    from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference
    from deepspeed.ops.transformer.inference.ds_attention import DeepSpeedSelfAttention

    DeepSpeedTransformerInference.layer_id = 0
    DeepSpeedSelfAttention.num_layers = 0
    workspace = DeepSpeedTransformerInference.workspace
    if workspace is not None and workspace.is_allocated():
        workspace.release_workspace()
    DeepSpeedTransformerInference.workspace = None


class DeepSpeedDecoder(nn.Module):
    """UnifiedVoice's decoding surface with the transformer blocks run by DeepSpeed's fused inference kernels.

    One ``DeepSpeedGPTInference`` layer per GPT-2 block, our weights copied in (GPT-2's [in, out] layout is what
    the kernels take, so nothing is transposed); embeddings, the final norms, the heads and sampling stay ours.
    Pass it to ``generate_codes`` in place of the model.

    DeepSpeed keeps the KV cache and the sequence position in one process-wide workspace, which sets the rules:
    a call with more than one token is a prompt and starts over at slot 0; a one-token call appends at the next
    slot (``input_pos`` is not read: calls must follow prefill-then-one-step order, as ``generate_codes`` makes
    them); the batch is the one ``setup_caches`` allocated; no torch.compile or CUDA graphs around it; and only the
    most recently built DeepSpeedDecoder in a process works (an older one refuses to run).
    """

    def __init__(self, model: UnifiedVoice, dtype: torch.dtype = torch.float32, *, check_available: bool = True):
        """``check_available=False`` skips ``deepspeed_available()``; only tests that install DeepSpeed's
        pure-PyTorch reference ops (its fallbacks) use it, to check the weight mapping without a GPU."""
        super().__init__()
        if dtype not in _KERNEL_SUFFIX:
            raise ValueError(f"DeepSpeed decoding runs in {', '.join(map(str, _KERNEL_SUFFIX))}; got {dtype}.")
        if check_available:
            available, reason = deepspeed_available()
            if not available:
                raise RuntimeError(reason)
            if model.mel_head.weight.device.type != "cuda":
                raise ValueError("Move the model to the GPU before building its DeepSpeed decoder "
                                 f"(its weights are on {model.mel_head.weight.device}).")
            _require_kernels(dtype)
        from deepspeed.model_implementations.transformers.ds_gpt import DeepSpeedGPTInference
        from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference

        self.model = model
        self.config = model.config
        self.dtype = dtype
        _reset_deepspeed_layer_state()
        self.layers = nn.ModuleList(DeepSpeedGPTInference(self._layer_config()) for _ in model.gpt.h)
        self._workspace = DeepSpeedTransformerInference.workspace  # created by the first layer, shared by all
        with torch.no_grad():
            for ours, theirs in zip(model.gpt.h, self.layers):
                _copy_block_weights(ours, theirs)
        self._cache_shape: tuple[int, int] | None = None
        self._filled = 0  # slots DeepSpeed's cache holds, mirrored on the host for the bounds check it lacks

    def _layer_config(self):
        """A fresh DeepSpeedInferenceConfig per layer: DeepSpeed writes the layer's index into it."""
        from deepspeed.ops.transformer.inference.config import DeepSpeedInferenceConfig

        config = self.config
        return DeepSpeedInferenceConfig(
            hidden_size=config.model_dim,
            intermediate_size=4 * config.model_dim,
            heads=config.heads,
            num_hidden_layers=config.layers,
            layer_norm_eps=config.layer_norm_eps,
            dtype=self.dtype,
            pre_layer_norm=True,
            triangular_masking=True,  # causal attention inside a prompt
            scale_attention=True,  # q and k each scaled by head_dim ** -0.25: GPT-2's 1/sqrt(head_dim) overall
            return_tuple=False,  # a layer returns the hidden states alone
            # The longest sequence the position tables allow; the real size is set by setup_caches.
            max_out_tokens=1 + config.text_positions + config.mel_positions,
        )

    # --- what generate_codes uses, delegated to the model --------------------------------------------------

    def prompt_length(self, text_len: int) -> int:
        return self.model.prompt_length(text_len)

    def prompt_embeddings(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        return self.model.prompt_embeddings(cond_latent, text_tokens)

    def mel_embeddings(self, mel_inputs: torch.Tensor, mel_pos: torch.Tensor) -> torch.Tensor:
        return self.model.mel_embeddings(mel_inputs, mel_pos)

    def mel_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.mel_logits(hidden)

    # --- DeepSpeed's cache --------------------------------------------------------------------------------

    def setup_caches(self, batch_size: int, max_seq_len: int) -> None:
        """Allocate DeepSpeed's workspace for ``batch_size`` sequences of ``max_seq_len`` slots, up front.

        Allocating here (as DeepSpeed's hybrid engine does) rather than on the first forward fixes the cache size
        to what decoding needs; min_out_tokens = max_seq_len makes DeepSpeed fail loudly if memory is short
        instead of silently capping the length.
        """
        self._check_current()
        config = self.config
        self._workspace.allocate_workspace(
            config.model_dim,  # hidden_dim
            config.heads,  # num_heads
            max_seq_len,  # prompt_length (not used by the allocation)
            batch_size,  # batch_size
            len(self.layers),  # num_layers
            1,  # mp_size: no tensor parallelism
            False,  # external_cache: DeepSpeed owns the KV cache
            0,  # rank
            max_seq_len,  # max_out_tokens
            max_seq_len,  # min_out_tokens
        )
        for layer in self.layers:
            layer._should_allocate_workspace = False
        self._cache_shape = (batch_size, max_seq_len)
        self._filled = 0

    def clear_caches(self) -> None:
        self._cache_shape = None
        self._filled = 0

    @property
    def cache_shape(self) -> tuple[int, int] | None:
        return self._cache_shape

    def _check_current(self) -> None:
        from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference
        from deepspeed.ops.transformer.inference.ds_attention import DeepSpeedSelfAttention

        if (DeepSpeedTransformerInference.workspace is not self._workspace
                or DeepSpeedSelfAttention.num_layers != len(self.layers)):
            raise RuntimeError("Another DeepSpeed model was built after this DeepSpeedDecoder, and DeepSpeed keeps "
                               "one model's state per process; build this decoder again to use it.")

    def decode(self, embeddings: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Run the blocks on DeepSpeed's kernels; return final-normed hidden states (B, T, C).

        embeddings: (B, T, C). T > 1 is a prompt from slot 0; T == 1 appends one step (see the class docstring).
        """
        if input_pos is None:
            raise RuntimeError("The DeepSpeed decoder runs cached decoding only (prefill, then one token per call).")
        self._check_current()
        if self._cache_shape is None:
            raise RuntimeError("No DeepSpeed workspace is allocated; call setup_caches(batch_size, max_seq_len).")
        batch, length = embeddings.shape[:2]
        cache_batch, slots = self._cache_shape
        if batch != cache_batch:
            raise ValueError(f"The DeepSpeed workspace was allocated for batch {cache_batch}, got batch {batch}.")
        if length == 1 and self._filled == 0:
            raise RuntimeError("A one-token DeepSpeed call continues a prompt; run the prompt (prefill) first.")
        filled = length if length > 1 else self._filled + 1
        if filled > slots:  # DeepSpeed's CUDA kernels would write past the cache without a word
            raise ValueError(f"The DeepSpeed cache holds {slots} positions but decoding needs {filled}.")
        self._filled = filled
        # The layers write the residual sum into their input in place: keep the caller's tensor intact.
        hidden = embeddings.clone()  # (B, T, C)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.model.final_norm(self.model.gpt.ln_f(hidden))


def _copy_block_weights(block: nn.Module, layer: nn.Module) -> None:
    """Copy one GPT-2 block (ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj) into a DeepSpeed layer."""
    pairs = [
        (layer.norm_w, block.ln_1.weight), (layer.norm_b, block.ln_1.bias),  # pre-attention norm, fused into QKV
        (layer.attention.attn_qkvw, block.attn.c_attn.weight), (layer.attention.attn_qkvb, block.attn.c_attn.bias),
        (layer.attention.attn_ow, block.attn.c_proj.weight), (layer.attention.attn_ob, block.attn.c_proj.bias),
        (layer.mlp.attn_nw, block.ln_2.weight), (layer.mlp.attn_nb, block.ln_2.bias),  # pre-MLP norm
        (layer.mlp.inter_w, block.mlp.c_fc.weight), (layer.mlp.inter_b, block.mlp.c_fc.bias),
        (layer.mlp.output_w, block.mlp.c_proj.weight), (layer.mlp.output_b, block.mlp.c_proj.bias),
    ]
    for target, source in pairs:
        if target.shape != source.shape:
            raise ValueError(f"DeepSpeed expects a {tuple(target.shape)} tensor where ours is {tuple(source.shape)}")
        target.data.copy_(source.detach())  # copy_ converts dtype and device


def deepspeed_decoder(model: UnifiedVoice, dtype: torch.dtype = torch.float32) -> DeepSpeedDecoder:
    """A DeepSpeedDecoder over ``model`` (left unchanged); RuntimeError with the reason where DeepSpeed can't run."""
    return DeepSpeedDecoder(model, dtype)


# --- all of them, in one place ----------------------------------------------------------------------------------

# --- int8 on CPU ---------------------------------------------------------------------------------------------

INT8_CPU_ONLY = "int8 quantization uses CPU kernels; on {device} the model runs unquantized."


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose linear layers compute in int8 (dynamic quantization: int8 weights, activations
    quantized per batch). On CPU it makes the AR decoder's matrix products several times faster; it is lossy, so
    the output changes (measured by the benchmark). Uses torch.ao's eager dynamic quantization, deprecated upstream
    but present in the torch release this project pins.

    Memory: the copy shares every non-linear parameter with ``module`` and quantizes one linear layer at a time,
    so it costs the int8 weights, not a second fp32 model.
    """
    import copy

    shared = {id(tensor): tensor for tensor in module.parameters()}  # deepcopy reuses these instead of copying
    quantized = copy.deepcopy(module, memo=shared).eval()
    _quantize_linears(quantized)
    return quantized


def _quantize_linears(module: nn.Module) -> None:
    """Replace every linear layer (nn.Linear, or GPT-2-layout [in, out] ones) by a dynamic int8 one, in place."""
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import default_dynamic_qconfig

    from tortoise_lab.models.gpt import InOutLinear

    for name, child in module.named_children():
        if isinstance(child, (nn.Linear, InOutLinear)):
            weight = child.weight.t() if isinstance(child, InOutLinear) else child.weight  # (out, in)
            float_linear = nn.Linear(weight.shape[1], weight.shape[0], bias=child.bias is not None)
            float_linear.weight = nn.Parameter(weight.detach().float().cpu(), requires_grad=False)
            if child.bias is not None:
                float_linear.bias = nn.Parameter(child.bias.detach().float().cpu(), requires_grad=False)
            float_linear.qconfig = default_dynamic_qconfig
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao's deprecation notices, once per layer
                setattr(module, name, DynamicInt8Linear.from_float(float_linear))
        else:
            _quantize_linears(child)


@dataclass(frozen=True)
class InferenceOptions:
    kv_cache: bool = True  # reuse keys and values across steps; off recomputes everything (for checks)
    half: bool = False  # autocast to bf16/fp16 on CUDA (see half_dtype); fp32 elsewhere
    deepspeed: bool = False  # DeepSpeed's fused transformer kernels (CUDA only)
    compile: bool = False  # torch.compile the decode step (ignored with DeepSpeed or without the KV cache)
    int8: bool = False  # int8 dynamic quantization of the decoder's linear layers (CPU only; lossy)
    device: str | None = None  # "cuda", "mps", "cpu", or None for the best available


@dataclass
class PreparedDecoder:
    """A decoder with the speed-ups applied; ``generate`` runs ``generate_codes`` with them."""

    model: UnifiedVoice | DeepSpeedDecoder  # what generate_codes decodes with
    decode_step: DecodeStep
    device: torch.device
    kv_cache: bool
    compute_dtype: torch.dtype | None  # autocast dtype; None = float32
    compiled: bool = False
    used: dict = field(default_factory=dict)  # what actually ran, for the output sidecar

    def generate(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor, max_mel_tokens: int,
                 **sampling) -> torch.Tensor:
        """``generate_codes`` with this decoder: (B, C), (B, T) -> (B, max_mel_tokens) codes. ``sampling``: its
        keyword arguments (greedy, temperature, top_p, generator, ...)."""
        cond_latent, text_tokens = cond_latent.to(self.device), text_tokens.to(self.device)
        with torch.no_grad(), _autocast(self.device, self.compute_dtype):
            if self.kv_cache and isinstance(self.model, UnifiedVoice):
                self._attach_caches(cond_latent.shape[0], text_tokens.shape[1], max_mel_tokens)
            return generate_codes(self.model, cond_latent, text_tokens, max_mel_tokens, kv_cache=self.kv_cache,
                                  decode_step=self.decode_step, **sampling)

    def _attach_caches(self, batch: int, text_len: int, max_mel_tokens: int) -> None:
        slots = self.model.prompt_length(text_len) + max_mel_tokens - 1
        if self.compiled:
            # A compiled step is specialised to its cache's shape; rounding the length up to a bucket keeps the
            # number of compiled graphs small (8 at most for the official sizes) without a cache sized for the
            # longest possible utterance every time.
            slots = -(-slots // COMPILED_CACHE_BUCKET) * COMPILED_CACHE_BUCKET
        dtype = self.compute_dtype or self.model.final_norm.weight.dtype  # (quantized linears hold no float weight)
        attach_caches(self.model, batch, slots, dtype)


def _deepspeed_refusal(device: torch.device, kv_cache: bool) -> str | None:
    """Why DeepSpeed won't decode this run, or None when it will; cheap reasons before the kernel load."""
    if not torch.cuda.is_available():
        return DEEPSPEED_NEEDS_CUDA
    if device.type != "cuda":
        return f"DeepSpeed inference runs on CUDA but this run is on {device.type}; {_PYTORCH_INSTEAD}"
    if not kv_cache:
        return f"DeepSpeed decodes with its own KV cache only, and the KV cache is off; {_PYTORCH_INSTEAD}"
    available, reason = deepspeed_available()  # may JIT-build the kernels the first time
    return None if available else reason


def prepare_decoder(model: UnifiedVoice, options: InferenceOptions) -> tuple[PreparedDecoder, list[str]]:
    """Apply the speed-ups ``options`` asks for to ``model``; return the decoder and notes on requests not honoured.

    Moves the model to the chosen device (in place, as ``nn.Module.to`` does) and to eval mode. The notes are
    whole sentences, one per option asked for but not used, for the caller to print and record.
    """
    device = choose_device(options.device)
    model = model.to(device).eval()
    notes: list[str] = []

    compute_dtype = half_dtype(device) if options.half else None
    if options.half and compute_dtype is None:
        notes.append(half_precision_note(device))

    decoder: UnifiedVoice | DeepSpeedDecoder = model
    use_int8 = False
    if options.int8:
        if device.type == "cpu":
            decoder = quantize_int8(model)
            use_int8 = True
        else:
            notes.append(INT8_CPU_ONLY.format(device=device.type))
    use_deepspeed = False
    if options.deepspeed:
        reason = _deepspeed_refusal(device, options.kv_cache)
        if reason is not None:
            notes.append(reason)
        else:
            try:
                decoder = deepspeed_decoder(model, compute_dtype or torch.float32)
                use_deepspeed = True
            except RuntimeError as error:  # kernels missing for this dtype: say so, decode with PyTorch
                notes.append(str(error))

    decode_step: DecodeStep = decode_one_token
    compiled = False
    if options.compile:
        if not options.kv_cache:
            notes.append("torch.compile applies to the cached decode step; with the KV cache off it is not used.")
        elif use_int8:
            notes.append("torch.compile is not used with int8 quantization (its quantized kernels run eagerly).")
        elif use_deepspeed:
            notes.append("torch.compile is not used with DeepSpeed (its kernels keep state outside the graph); "
                         "DeepSpeed runs uncompiled.")
        else:
            decode_step = compile_decode_step(decode_one_token, device)
            compiled = True

    used = {"device": str(device), "kv_cache": options.kv_cache,
            "dtype": str(compute_dtype or torch.float32).removeprefix("torch."),
            "deepspeed": use_deepspeed, "compile": compiled, "int8": use_int8}
    return PreparedDecoder(decoder, decode_step, device, options.kv_cache, compute_dtype, compiled, used), notes
