"""The speed-up wrappers in tortoise_lab.fast, applied by stages.sampling.prepare_decoder: each one changes speed, never the codes, and says when it is not used.

CPU tests run everywhere. Tests marked ``gpu`` need CUDA (and, for DeepSpeed, its inference kernels) and are
skipped without a CUDA device: they are the only check of DeepSpeed's real kernels and of CUDA graphs.
"""

from __future__ import annotations

import itertools
import types

import pytest
import torch
import torch.nn.functional as F

from tests.support.weights import seeded
from tortoise_lab.config import DEFAULT_BATCH_SIZE, InferenceOptions
from tortoise_lab.fast import (DEEPSPEED_NEEDS_CUDA, DeepSpeedDecoder, autocast_context, compile_decode_step,
                               deepspeed_available, deepspeed_decoder, deepspeed_off_cuda_note, half_dtype,
                               half_precision_note, prepack_available, prepack_linears)
from tortoise_lab.fast.prepack import PackedLinear
from tortoise_lab.models import gpt as gpt_module
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
from tortoise_lab.stages import sampling
from tortoise_lab.stages.sampling import (PreparedDecoder, attach_caches, decode_one_token, generate_codes, prefill,
                                          prepare_decoder)

MEL_TOKENS = 10
# Greedy decoding; the repetition penalty keeps tiny random models from repeating one code, so codes vary.
GREEDY = dict(stop_early=False, repetition_penalty=2.0)
FP32_TOL = dict(rtol=1e-5, atol=1e-5)
# DeepSpeed's own kernel tests (tests/unit/ops/transformer/inference/inference_test_utils.py).
DEEPSPEED_FP32_TOL = dict(rtol=5e-4, atol=5e-5)
DEEPSPEED_FP16_TOL = dict(rtol=3e-2, atol=2e-3)
# A mid-size config with the official head size (64), for the GPU tests.
MID = dict(layers=4, model_dim=512, heads=8, max_mel_tokens=100, max_text_tokens=60)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible to torch)")


def make_prompt(config: GPTConfig, batch: int = 2, text_len: int = 7, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    cond_latent = torch.randn(batch, config.model_dim, generator=generator)
    text_tokens = torch.randint(1, 255, (batch, text_len), generator=generator)
    return cond_latent, text_tokens


@pytest.fixture(scope="module")
def model() -> UnifiedVoice:
    return seeded(UnifiedVoice(GPTConfig.from_name("tiny")), seed=1)


@pytest.fixture(scope="module")
def prompt(model):
    return make_prompt(model.config)


@pytest.fixture(scope="module")
def eager_codes(model, prompt):
    with torch.no_grad():
        codes = generate_codes(model, *prompt, MEL_TOKENS, **GREEDY)
    assert codes.unique().numel() > MEL_TOKENS  # varied codes, and the two rows differ: a meaningful comparison
    return codes


def recording(step, store: list):
    """A decode step that also keeps a copy of every logits tensor it returns."""
    def run(*args):
        logits = step(*args)
        store.append(logits.detach().float().clone())
        return logits
    return run


def teacher_forced_logits(decoder, cond_latent, text_tokens, codes) -> torch.Tensor:
    """Prefill, then feed ``codes`` (B, k) one per step; the logits after each input, (B, k+1, V)."""
    prompt_len = decoder.prompt_length(text_tokens.shape[1])
    decoder.setup_caches(codes.shape[0], prompt_len + codes.shape[1])
    logits = [prefill(decoder, cond_latent, text_tokens)]
    for k in range(codes.shape[1]):
        mel_pos = torch.tensor([k + 1], device=codes.device)
        logits.append(decode_one_token(decoder, codes[:, k:k + 1], mel_pos, mel_pos + prompt_len - 1))
    return torch.stack(logits, dim=1).float()


# --- half precision -----------------------------------------------------------------------------------------

def test_half_precision_is_not_used_on_cpu_and_says_why():
    assert half_dtype("cpu") is None
    note = half_precision_note("cpu")
    assert note.startswith("Half precision is not used on CPU") and "float32" in note and note.count(".") == 1
    assert half_precision_note("cuda") is None  # used there: nothing to explain


def test_cpu_autocast_context_changes_nothing(model, prompt, eager_codes):
    codes = torch.randint(0, 8192, (2, 5), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = teacher_forced_logits(model, *prompt, codes)
        with autocast_context("cpu", enabled=True):
            assert not torch.is_autocast_enabled("cpu")
            wrapped = teacher_forced_logits(model, *prompt, codes)
            wrapped_codes = generate_codes(model, *prompt, MEL_TOKENS, **GREEDY)
    assert torch.equal(plain, wrapped)  # bitwise
    assert torch.equal(wrapped_codes, eager_codes)


def test_autocast_decoding_runs_with_a_cache_in_the_compute_dtype(model, prompt):
    """The half path's plumbing, exercised on CPU with bfloat16 (which production never uses on CPU).

    Under autocast the keys and values come out in the half dtype; ``PreparedDecoder`` attaches a cache in that
    dtype so the cache writes accept them. Logits stay within bfloat16's precision of the float32 ones.
    """
    decoder = PreparedDecoder(model, decode_one_token, torch.device("cpu"), kv_cache=True,
                              compute_dtype=torch.bfloat16)
    codes = decoder.generate(*prompt, MEL_TOKENS, **GREEDY)
    assert codes.shape == (2, MEL_TOKENS)
    assert model.gpt.h[0].attn.kv_cache.k_cache.dtype == torch.bfloat16

    steps = torch.randint(0, 8192, (2, 5), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = teacher_forced_logits(model, *prompt, steps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            attach_caches(model, 2, model.prompt_length(prompt[1].shape[1]) + 5, torch.bfloat16)
            prompt_len = model.prompt_length(prompt[1].shape[1])
            half = [prefill(model, *prompt)]
            for k in range(5):
                mel_pos = torch.tensor([k + 1])
                half.append(decode_one_token(model, steps[:, k:k + 1], mel_pos, mel_pos + prompt_len - 1))
    half = torch.stack(half, dim=1).float()
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.1)
    model.clear_caches()


# --- torch.compile ------------------------------------------------------------------------------------------

def test_compile_returns_a_new_callable_and_rebinds_nothing():
    compiled = compile_decode_step(decode_one_token, "cpu")  # torch.compile is lazy: nothing is compiled yet
    assert compiled is not decode_one_token
    assert sampling.decode_one_token is decode_one_token


@pytest.mark.slow  # ~25 s of inductor compilation on 2 CPU cores
def test_compiled_decode_step_gives_the_eager_codes_and_logits(model, prompt, eager_codes):
    eager_logits, compiled_logits = [], []
    compiled = compile_decode_step(decode_one_token, "cpu")
    with torch.no_grad():
        eager = generate_codes(model, *prompt, MEL_TOKENS, **GREEDY,
                               decode_step=recording(decode_one_token, eager_logits))
        fast = generate_codes(model, *prompt, MEL_TOKENS, **GREEDY,
                              decode_step=recording(compiled, compiled_logits))
    assert torch.equal(eager, eager_codes)
    assert torch.equal(fast, eager)
    assert len(compiled_logits) == MEL_TOKENS - 1
    torch.testing.assert_close(torch.stack(compiled_logits), torch.stack(eager_logits), **FP32_TOL)


# --- DeepSpeed ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU answer; the GPU tests cover CUDA machines")
def test_deepspeed_is_unavailable_on_cpu_with_the_reason():
    assert deepspeed_available() == (False, DEEPSPEED_NEEDS_CUDA)
    assert DEEPSPEED_NEEDS_CUDA == "DeepSpeed inference needs a CUDA GPU; running the PyTorch decoder instead."


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU answer; the GPU tests cover CUDA machines")
def test_deepspeed_wrapper_refuses_cleanly_on_cpu(model):
    with pytest.raises(RuntimeError, match="^DeepSpeed inference needs a CUDA GPU"):
        deepspeed_decoder(model)


def test_a_cpu_run_on_a_gpu_machine_says_where_it_runs_instead_of_asking_for_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert deepspeed_off_cuda_note("cpu") == DEEPSPEED_NEEDS_CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert deepspeed_off_cuda_note("cpu") == ("DeepSpeed inference runs on CUDA but this run is on cpu; "
                                              "running the PyTorch decoder instead.")


@pytest.fixture
def deepspeed_reference_ops(monkeypatch):
    """Make DeepSpeed's v1 inference layers run on its pure-PyTorch fallback ops, on CPU.

    With no compiled kernel module, every DeepSpeed op binding falls back to its own torch implementation
    (an AttributeError on the module selects it). Those fallbacks compute the same math as the CUDA kernels,
    except GELU (exact erf, where the kernels use the tanh form GPT-2 uses), so our side uses exact GELU too.
    This checks the weight mapping, the layer config and the prompt/step protocol; not the kernels. DeepSpeed's
    accelerator is pinned to the CPU, where our model is: on a GPU machine it would build the layers' weights on
    CUDA (``get_accelerator().current_device_name()``).
    """
    import deepspeed.accelerator.real_accelerator as real_accelerator
    from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator
    from deepspeed.model_implementations.transformers.ds_transformer import DeepSpeedTransformerInference
    from deepspeed.ops.transformer.inference.ds_attention import DeepSpeedSelfAttention
    from deepspeed.ops.transformer.inference.op_binding.base import BaseOp
    from deepspeed.ops.transformer.inference.op_binding.workspace import InferenceContext

    monkeypatch.setattr(real_accelerator, "ds_accelerator", CPU_Accelerator())
    monkeypatch.setattr(BaseOp, "inference_module", types.SimpleNamespace())
    monkeypatch.setattr(DeepSpeedTransformerInference, "workspace", None)
    monkeypatch.setattr(DeepSpeedTransformerInference, "layer_id", 0)
    monkeypatch.setattr(DeepSpeedSelfAttention, "num_layers", 0)
    monkeypatch.setattr(gpt_module, "gelu_tanh", lambda x: F.gelu(x))
    yield
    InferenceContext.Instance().release_workspace()


@pytest.mark.parametrize("config", [GPTConfig.from_name("tiny"), GPTConfig(**dict(MID, model_dim=128, heads=2))],
                         ids=["tiny", "4-layer"])
def test_deepspeed_layers_reproduce_our_decoder_on_its_reference_ops(deepspeed_reference_ops, config):
    from deepspeed.model_implementations.transformers.ds_gpt import DeepSpeedGPTInference

    ours = seeded(UnifiedVoice(config), seed=3)
    decoder = DeepSpeedDecoder(ours, check_available=False)
    assert sum(isinstance(m, DeepSpeedGPTInference) for m in decoder.modules()) == config.layers
    cond_latent, text_tokens = make_prompt(config, batch=3)
    codes = torch.randint(0, 8192, (3, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = teacher_forced_logits(ours, cond_latent, text_tokens, codes)
        got = teacher_forced_logits(decoder, cond_latent, text_tokens, codes)
        torch.testing.assert_close(got, expected, **FP32_TOL)
        ours.clear_caches()
        assert torch.equal(generate_codes(decoder, cond_latent, text_tokens, MEL_TOKENS, **GREEDY),
                           generate_codes(ours, cond_latent, text_tokens, MEL_TOKENS, **GREEDY))


def test_deepspeed_decoder_guards_its_protocol(deepspeed_reference_ops, model):
    decoder = DeepSpeedDecoder(model, check_available=False)
    embeddings = torch.randn(2, 1, model.config.model_dim)
    with pytest.raises(RuntimeError, match="setup_caches"):
        decoder.decode(embeddings, torch.tensor([0]))
    decoder.setup_caches(2, 6)
    with pytest.raises(RuntimeError, match=r"run the prompt \(prefill\) first"):
        decoder.decode(embeddings, torch.tensor([0]))
    with pytest.raises(RuntimeError, match="cached decoding only"):
        decoder.decode(torch.randn(2, 4, model.config.model_dim))
    with pytest.raises(ValueError, match="batch 2, got batch 1"):
        decoder.decode(torch.randn(1, 4, model.config.model_dim), torch.arange(4))
    with torch.no_grad():
        decoder.decode(torch.randn(2, 5, model.config.model_dim), torch.arange(5))
        decoder.decode(embeddings, torch.tensor([5]))
        with pytest.raises(ValueError, match="holds 6 positions but decoding needs 7"):
            decoder.decode(embeddings, torch.tensor([6]))
    DeepSpeedDecoder(model, check_available=False)  # a newer one takes DeepSpeed's process-wide state
    with pytest.raises(RuntimeError, match="Another DeepSpeed model was built"):
        decoder.decode(torch.randn(2, 5, model.config.model_dim), torch.arange(5))


def test_missing_kernels_for_a_dtype_are_refused_not_silently_replaced(monkeypatch):
    """DeepSpeed's op bindings quietly use slow PyTorch code when a kernel is missing; we refuse instead."""
    import deepspeed.ops.op_builder as op_builder
    from tortoise_lab.fast.deepspeed import _LAYER_KERNELS, _require_kernels

    fp32_only = types.SimpleNamespace(**{f"{name}_fp32": None for name in _LAYER_KERNELS})
    monkeypatch.setattr(op_builder, "InferenceBuilder", lambda: types.SimpleNamespace(load=lambda: fp32_only))
    _require_kernels(torch.float32)
    with pytest.raises(RuntimeError, match="lack bf16 versions of allocate_workspace, qkv_gemm"):
        _require_kernels(torch.bfloat16)


def test_deepspeed_decoder_takes_only_its_kernel_dtypes(model):
    with pytest.raises(ValueError, match="torch.float32, torch.float16, torch.bfloat16; got torch.float64"):
        DeepSpeedDecoder(model, torch.float64)


# --- prepare_decoder ------------------------------------------------------------------------------------------

FLAG_COMBINATIONS = list(itertools.product([True, False], repeat=3))  # (kv_cache, half, deepspeed)


@pytest.mark.parametrize("kv_cache, half, deepspeed", FLAG_COMBINATIONS)
def test_every_combination_gives_the_same_codes_on_cpu(model, prompt, eager_codes, kv_cache, half, deepspeed):
    options = InferenceOptions(kv_cache=kv_cache, half=half, deepspeed=deepspeed, device="cpu")
    decoder, notes = prepare_decoder(model, options)
    assert torch.equal(decoder.generate(*prompt, MEL_TOKENS, **GREEDY), eager_codes)
    # fp32 on a CPU: the prepacked copy of the model (on by default), whatever half and DeepSpeed asked for
    assert decoder.model is prepack_linears(model, DEFAULT_BATCH_SIZE) and decoder.decode_step is decode_one_token
    assert decoder.used == {"device": "cpu", "kv_cache": kv_cache, "dtype": "float32", "deepspeed": False,
                            "compile": False, "int8": False, "prepack": True}
    expected_notes = (([half_precision_note("cpu")] if half else [])
                      + ([deepspeed_off_cuda_note("cpu")] if deepspeed else []))
    assert notes == expected_notes


@pytest.mark.slow  # compiles the decode step (~25 s on 2 CPU cores)
def test_all_flags_on_cpu_compile_and_say_what_was_not_used(model, prompt, eager_codes):
    decoder, notes = prepare_decoder(model, InferenceOptions(half=True, deepspeed=True, compile=True, device="cpu"))
    assert decoder.used["compile"] and decoder.decode_step is not decode_one_token
    # a compiled CPU graph takes plain weights: the compiled step decodes the model itself, not a packed copy
    assert decoder.model is model and not decoder.used["prepack"]
    assert notes == [half_precision_note("cpu"), deepspeed_off_cuda_note("cpu")]
    assert torch.equal(decoder.generate(*prompt, MEL_TOKENS, **GREEDY), eager_codes)


def test_compile_without_the_kv_cache_is_a_note(model):
    decoder, notes = prepare_decoder(model, InferenceOptions(kv_cache=False, compile=True, device="cpu"))
    assert decoder.decode_step is decode_one_token and not decoder.used["compile"]
    assert notes == ["torch.compile applies to the cached decode step; with the KV cache off it is not used."]


# --- prepacked weights ------------------------------------------------------------------------------------------

def test_this_torch_build_can_prepack():
    available, reason = prepack_available()
    assert available, reason  # the pinned CPU build has oneDNN: the default path is the packed one


@pytest.mark.parametrize("rows", [1, 16, 70])
def test_a_packed_linear_computes_the_plain_product(rows):
    generator = torch.Generator().manual_seed(rows)
    linear = torch.nn.Linear(64, 96)
    with torch.no_grad():
        linear.weight.normal_(generator=generator)
        linear.bias.normal_(generator=generator)
    packed = PackedLinear(linear.weight, linear.bias, rows_hint=16)  # any row count, whatever the hint
    x = torch.randn(2, rows, 64, generator=generator)
    with torch.no_grad():
        assert torch.allclose(packed(x), linear(x), **FP32_TOL)
        assert torch.allclose(packed(x.transpose(0, 1)), linear(x.transpose(0, 1)), **FP32_TOL)  # strided input


def test_packed_copy_shares_the_rest_leaves_the_model_alone_and_follows_its_weights():
    source = seeded(UnifiedVoice(GPTConfig.from_name("tiny")), seed=4)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    packed = prepack_linears(source, 16)
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items())
    assert not any(isinstance(m, (torch.nn.Linear, gpt_module.InOutLinear)) for m in packed.modules())
    assert packed.mel_embedding.weight is source.mel_embedding.weight  # shared, not copied
    assert packed.gpt.h[0].attn.c_attn.bias is source.gpt.h[0].attn.c_attn.bias
    assert prepack_linears(source, 16) is packed  # one copy per model while its weights stay as they are
    single = prepack_linears(source, 1)  # and per rows hint: laid out for one-row steps
    assert single is not packed and prepack_linears(source, 1) is single
    cond, text, codes = torch.randn(2, 64), torch.randint(1, 200, (2, 7)), torch.randint(0, 8192, (2, 5))
    with torch.no_grad():
        assert torch.allclose(packed(cond, text, codes).mel, source(cond, text, codes).mel, **FP32_TOL)
        source.load_state_dict(seeded(UnifiedVoice(GPTConfig.from_name("tiny")), seed=5).state_dict())
        repacked = prepack_linears(source, 16)  # new weights: packed anew, not the stale copy
        assert repacked is not packed
        assert torch.allclose(repacked(cond, text, codes).mel, source(cond, text, codes).mel, **FP32_TOL)


def test_prepacked_cached_decoding_gives_the_plain_uncached_codes_and_logits(model, prompt, eager_codes):
    plain, _ = prepare_decoder(model, InferenceOptions(kv_cache=False, prepack=False, device="cpu"))
    packed, notes = prepare_decoder(model, InferenceOptions(device="cpu"))
    assert packed.used["prepack"] and not plain.used["prepack"] and notes == []
    assert torch.equal(packed.generate(*prompt, MEL_TOKENS, **GREEDY), eager_codes)
    assert torch.equal(plain.generate(*prompt, MEL_TOKENS, **GREEDY), eager_codes)
    with torch.no_grad():
        exact = teacher_forced_logits(model, *prompt, eager_codes)
        fast = teacher_forced_logits(packed.model, *prompt, eager_codes)
    assert torch.allclose(fast, exact, **FP32_TOL)


def test_prepack_gives_way_to_int8_and_is_off_when_asked(model):
    int8, _ = prepare_decoder(model, InferenceOptions(int8=True, device="cpu"))
    off, _ = prepare_decoder(model, InferenceOptions(prepack=False, device="cpu"))
    assert not int8.used["prepack"] and not off.used["prepack"] and off.model is model


# --- on a GPU ---------------------------------------------------------------------------------------------------

def _gpu_model(config: GPTConfig) -> UnifiedVoice:
    return seeded(UnifiedVoice(config), seed=3).cuda()


@pytest.mark.gpu
@needs_cuda
def test_deepspeed_is_available_on_this_gpu():
    available, reason = deepspeed_available()
    assert available, reason


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("config", [GPTConfig.from_name("tiny"), GPTConfig(**MID)], ids=["tiny", "mid"])
def test_deepspeed_kernels_match_our_decoder_in_fp32(config):
    from deepspeed.model_implementations.transformers.ds_gpt import DeepSpeedGPTInference

    ours = _gpu_model(config)
    decoder = deepspeed_decoder(ours, torch.float32)
    assert sum(isinstance(m, DeepSpeedGPTInference) for m in decoder.modules()) == config.layers
    cond_latent, text_tokens = (t.cuda() for t in make_prompt(config, batch=3))
    codes = torch.randint(0, 8192, (3, 8), generator=torch.Generator().manual_seed(6)).cuda()
    with torch.no_grad():
        expected = teacher_forced_logits(ours, cond_latent, text_tokens, codes)
        got = teacher_forced_logits(decoder, cond_latent, text_tokens, codes)
        torch.testing.assert_close(got, expected, **DEEPSPEED_FP32_TOL)
        ours.clear_caches()
        assert torch.equal(generate_codes(decoder, cond_latent, text_tokens, MEL_TOKENS, **GREEDY),
                           generate_codes(ours, cond_latent, text_tokens, MEL_TOKENS, **GREEDY))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("config", [GPTConfig.from_name("tiny"), GPTConfig(**MID)], ids=["tiny", "mid"])
def test_deepspeed_kernels_match_our_decoder_in_fp16(config):
    """fp16 codes may differ (near-ties flip), so logits are compared, at DeepSpeed's fp16 tolerance, with our
    float32 decoder: only DeepSpeed's blocks run in fp16 (embeddings, norms and head stay float32), so the
    difference is theirs alone."""
    ours = _gpu_model(config)
    decoder = deepspeed_decoder(ours, torch.float16)
    cond_latent, text_tokens = (t.cuda() for t in make_prompt(config, batch=3))
    codes = torch.randint(0, 8192, (3, 8), generator=torch.Generator().manual_seed(6)).cuda()
    with torch.no_grad():
        expected = teacher_forced_logits(ours, cond_latent, text_tokens, codes)
        got = teacher_forced_logits(decoder, cond_latent, text_tokens, codes)
    torch.testing.assert_close(got, expected, **DEEPSPEED_FP16_TOL)


@pytest.mark.gpu
@needs_cuda
def test_prepare_decoder_engages_deepspeed_and_half_on_a_gpu():
    config = GPTConfig.from_name("tiny")
    ours = _gpu_model(config)
    decoder, notes = prepare_decoder(ours, InferenceOptions(half=True, deepspeed=True, compile=True, device="cuda"))
    assert decoder.used["deepspeed"], notes
    assert isinstance(decoder.model, DeepSpeedDecoder)
    assert decoder.used["dtype"] in {"bfloat16", "float16"} and decoder.compute_dtype == half_dtype("cuda")
    assert notes == ["torch.compile is not used with DeepSpeed (its kernels keep state outside the graph); "
                     "DeepSpeed runs uncompiled."]
    codes = decoder.generate(*make_prompt(config), MEL_TOKENS, **GREEDY)
    assert codes.shape == (2, MEL_TOKENS)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_compiled_step_gives_the_eager_codes():
    config = GPTConfig.from_name("tiny")
    ours = _gpu_model(config)
    cond_latent, text_tokens = make_prompt(config)
    eager, _ = prepare_decoder(ours, InferenceOptions(device="cuda"))
    fast, notes = prepare_decoder(ours, InferenceOptions(compile=True, device="cuda"))
    assert notes == [] and fast.used["compile"]
    expected = eager.generate(cond_latent, text_tokens, MEL_TOKENS, **GREEDY)
    for _ in range(2):  # the second call replays the recorded graph
        assert torch.equal(fast.generate(cond_latent, text_tokens, MEL_TOKENS, **GREEDY), expected)


@pytest.mark.gpu
@needs_cuda
def test_half_precision_is_used_on_cuda():
    assert half_dtype("cuda") == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    with autocast_context("cuda", enabled=True):
        assert torch.is_autocast_enabled("cuda")


def test_int8_copy_is_close_and_leaves_the_original_alone():
    from tortoise_lab.fast import quantize_int8
    from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice

    torch.manual_seed(0)
    model = UnifiedVoice(GPTConfig.from_name("tiny")).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_int8(model)
    cond, text, codes = torch.randn(2, 64), torch.randint(1, 200, (2, 7)), torch.randint(0, 8192, (2, 5))
    with torch.no_grad():
        exact, approx = model(cond, text, codes).mel, quantized(cond, text, codes).mel
    assert not torch.equal(exact, approx)  # really quantized
    assert (exact - approx).abs().max() < 0.05 * exact.abs().max()  # and close
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in quantized.modules())
