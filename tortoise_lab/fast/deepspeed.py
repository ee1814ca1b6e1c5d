"""DeepSpeed's fused transformer-inference kernels for our decoder (CUDA only; see ../shared/notes/deepspeed.md).

``deepspeed_available`` says honestly whether the kernels can run here; ``deepspeed_decoder`` builds a
``DeepSpeedDecoder`` over a ``UnifiedVoice`` (left unchanged) that decodes with them.
"""

from __future__ import annotations

import torch
from torch import nn

from tortoise_lab.models.gpt import UnifiedVoice

__all__ = ["DEEPSPEED_NEEDS_CUDA", "PYTORCH_INSTEAD", "deepspeed_available", "deepspeed_off_cuda_note",
           "deepspeed_decoder", "DeepSpeedDecoder"]

DEEPSPEED_NEEDS_CUDA = "DeepSpeed inference needs a CUDA GPU; running the PyTorch decoder instead."
PYTORCH_INSTEAD = "running the PyTorch decoder instead."
# The kernel-name suffix per dtype, and the kernels one of our layers calls. DeepSpeed's op bindings silently
# fall back to slow PyTorch code when a kernel is missing from the built extension (bf16 ones are compiled
# only for some GPUs and CUDA versions), so their presence is checked up front.
_KERNEL_SUFFIX = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_LAYER_KERNELS = ("allocate_workspace", "qkv_gemm", "softmax_context", "vector_matmul", "mlp_gemm",
                  "residual_add_bias")


def deepspeed_off_cuda_note(device_type: str) -> str:
    """Why DeepSpeed does not decode a run on ``device_type`` (anything but "cuda"): on a machine without CUDA it
    needs a GPU; on a GPU machine the run was put elsewhere (a pinned device), which is worth saying differently."""
    if not torch.cuda.is_available():
        return DEEPSPEED_NEEDS_CUDA
    return f"DeepSpeed inference runs on CUDA but this run is on {device_type}; {PYTORCH_INSTEAD}"


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
        return False, f"DeepSpeed is not installed (pip install 'tortoise-lab[deepspeed]'); {PYTORCH_INSTEAD}"
    accelerator = get_accelerator().device_name()
    if accelerator != "cuda":
        return False, f"DeepSpeed selected its {accelerator!r} accelerator, not CUDA; {PYTORCH_INSTEAD}"
    try:
        from deepspeed.git_version_info import installed_ops
        from deepspeed.ops.op_builder import InferenceBuilder
        from deepspeed.ops.op_builder.builder import probe_is_compatible

        builder = InferenceBuilder()
        # is_compatible() itself can raise without nvcc; probe_is_compatible turns that into False.
        if not (installed_ops.get(builder.name, False) or probe_is_compatible(builder)):
            return False, ("DeepSpeed's transformer-inference kernels cannot be built on this machine (it needs "
                           f"ninja and a CUDA toolkit matching torch's CUDA {torch.version.cuda}); {PYTORCH_INSTEAD}")
        builder.load()
    except Exception as error:  # a failed JIT build raises many kinds of errors; all mean "not available"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return False, (f"DeepSpeed's transformer-inference kernels failed to load ({type(error).__name__}: "
                       f"{first_line[:200]}); {PYTORCH_INSTEAD}")
    return True, "DeepSpeed's transformer-inference kernels are loaded."


def _require_kernels(dtype: torch.dtype) -> None:
    """RuntimeError unless the loaded kernel extension has every kernel our layers call in ``dtype``."""
    from deepspeed.ops.op_builder import InferenceBuilder

    kernels = InferenceBuilder().load()  # already loaded by deepspeed_available(): a cached lookup
    suffix = _KERNEL_SUFFIX[dtype]
    missing = [name for name in _LAYER_KERNELS if not hasattr(kernels, f"{name}_{suffix}")]
    if missing:
        raise RuntimeError(f"DeepSpeed's kernels on this machine lack {suffix} versions of {', '.join(missing)} "
                           f"(DeepSpeed would quietly run slow PyTorch code instead); {PYTORCH_INSTEAD}")


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

    def is_current(self) -> bool:
        """Whether DeepSpeed's process-wide state is still this decoder's (no other DeepSpeed model built since)."""
        from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference
        from deepspeed.ops.transformer.inference.ds_attention import DeepSpeedSelfAttention

        return (DeepSpeedTransformerInference.workspace is self._workspace
                and DeepSpeedSelfAttention.num_layers == len(self.layers))

    def _check_current(self) -> None:
        if not self.is_current():
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
