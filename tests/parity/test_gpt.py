"""UnifiedVoice against tortoise-tts 3.0.0's autoregressive model on the same random weights."""

from __future__ import annotations

import json

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
from tortoise_lab.stages.sampling import UPSTREAM_FILLER_CODES, generate_codes

pytestmark = pytest.mark.parity

SMALL = dict(layers=3, model_dim=96, heads=4, max_text_tokens=30, max_mel_tokens=40, max_conditioning_inputs=2)
UPSTREAM_KWARGS = dict(SMALL, number_text_tokens=255, start_text_token=255)
STEPS = 20  # greedy codes compared
TOL = dict(rtol=1e-5, atol=1e-5)
# api.py's sampling settings; transformers' generate() adds top_k=50 of its own accord (GenerationConfig default).
SAMPLE = dict(seed=99, top_p=0.8, temperature=0.8, repetition_penalty=2.0, num=4, code_1_boost=6.0)
UPSTREAM_TOP_K = 50


def make_inputs(config: GPTConfig) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    dim = config.model_dim
    return {
        "cond_mels": torch.randn(2, 2, 80, 37, generator=g),
        "cond_latent": torch.randn(2, dim, generator=g),
        "text_tokens": torch.randint(1, 255, (2, 11), generator=g),
        "mel_codes": torch.randint(0, 8192, (2, 17), generator=g),
        "latent_cond": torch.randn(1, dim, generator=g),
        # api.py pads its text with one trailing 0 before asking for latents; do the same here.
        "latent_text": torch.nn.functional.pad(torch.randint(1, 255, (1, 9), generator=g), (0, 1)),
        "latent_codes": torch.randint(0, 8192, (3, 14), generator=g),
        "gen_cond": torch.randn(2, dim, generator=g),
        "gen_text": torch.randint(1, 255, (2, 8), generator=g),
    }


@pytest.fixture(scope="module")
def small(reference):
    config = GPTConfig(**SMALL)
    inputs = make_inputs(config)
    ref, work = reference.run("ref_gpt.py", {"mode": "small", "config": UPSTREAM_KWARGS, "seed": 7, "steps": STEPS, "sample": SAMPLE},
                              inputs)
    model = UnifiedVoice(config).eval()
    load_weights(model, work / "autoregressive.pth", "autoregressive")
    return model, inputs, ref


def test_conditioning_latent(small):
    model, inputs, ref = small
    with torch.no_grad():
        ours = model.conditioning_latent(inputs["cond_mels"])
    torch.testing.assert_close(ours, ref["cond_latent_from_mels"], **TOL)


def test_teacher_forced_logits(small):
    model, inputs, ref = small
    with torch.no_grad():
        logits = model(inputs["cond_latent"], inputs["text_tokens"], inputs["mel_codes"])
    torch.testing.assert_close(logits.text, ref["text_logits"].transpose(1, 2), **TOL)
    torch.testing.assert_close(logits.mel, ref["mel_logits"].transpose(1, 2), **TOL)


def test_latents_as_api_asks_for_them(small):
    model, inputs, ref = small
    codes = inputs["latent_codes"]
    k = codes.shape[0]
    with torch.no_grad():
        ours = model.latents(inputs["latent_cond"].repeat(k, 1), inputs["latent_text"].repeat(k, 1), codes)
    assert ours.shape == (k, codes.shape[1], model.config.model_dim)
    torch.testing.assert_close(ours, ref["latents"], **TOL)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_greedy_codes_equal_uncached_reference(small, kv_cache):
    model, inputs, ref = small
    expected = ref["codes_uncached"]
    with torch.no_grad():
        codes = generate_codes(model, inputs["gen_cond"], inputs["gen_text"], STEPS, kv_cache=kv_cache, greedy=True)
        if kv_cache:
            model.clear_caches()
    # Upstream stops once every row has stopped; the rest would be stop tokens, which is what we return.
    assert torch.equal(codes[:, :expected.shape[1]], expected)
    assert (codes[:, expected.shape[1]:] == model.config.stop_mel_token).all()


def test_per_step_logits_equal_uncached_reference(small):
    """The reference's greedy scores at step k are the logits at mel input k given the codes before it."""
    model, inputs, ref = small
    codes, scores = ref["codes_uncached"], ref["scores_uncached"]
    with torch.no_grad():
        logits = model(inputs["gen_cond"], inputs["gen_text"], codes).mel  # (B, L+2, V)
    torch.testing.assert_close(logits[:, :scores.shape[1]], scores, **TOL)


def test_upstream_cached_path_is_off_by_one(small):
    """Upstream's KV-cache path gives cached steps the wrong mel position; ours must not follow it."""
    _, _, ref = small
    uncached, cached = ref["scores_uncached"], ref["scores_cached"]
    steps = min(uncached.shape[1], cached.shape[1])
    # The first step comes from the full prompt in both paths, so it agrees ...
    torch.testing.assert_close(cached[:, 0], uncached[:, 0], **TOL)
    # ... every later one is computed at a shifted position and differs far beyond rounding.
    for step in range(1, steps):
        assert (cached[:, step] - uncached[:, step]).abs().max() > 1e-2, step
    assert not torch.equal(ref["codes_cached"], ref["codes_uncached"])


@pytest.mark.parametrize("kv_cache", [True, False])
def test_seeded_sampling_equals_reference(small, kv_cache):
    """Same seed, same settings as api.py: the same codes as upstream's (uncached) sampling, draw for draw."""
    model, inputs, ref = small
    expected = ref["codes_sampled"]
    num = SAMPLE["num"]
    generator = torch.Generator().manual_seed(SAMPLE["seed"])
    with torch.no_grad():
        codes = generate_codes(
            model, inputs["gen_cond"][:1].repeat(num, 1), inputs["gen_text"][:1].repeat(num, 1), STEPS,
            kv_cache=kv_cache, greedy=False, temperature=SAMPLE["temperature"], top_p=SAMPLE["top_p"],
            top_k=UPSTREAM_TOP_K, repetition_penalty=SAMPLE["repetition_penalty"],
            always_penalized=UPSTREAM_FILLER_CODES, generator=generator)
    assert len(set(map(tuple, expected.tolist()))) > 1  # the rows really are different draws
    assert torch.equal(codes[:, :expected.shape[1]], expected)


def test_sampling_reproduces_upstream_penalty_on_code_1(small):
    """Upstream's repetition penalty also hits code 1 (its placeholder prompt id): visible once code 1 is likely."""
    model, inputs, ref = small
    expected = ref["codes_sampled_code_1_boosted"]
    num = SAMPLE["num"]

    def sample(always_penalized):
        generator = torch.Generator().manual_seed(SAMPLE["seed"])
        return generate_codes(
            model, inputs["gen_cond"][:1].repeat(num, 1), inputs["gen_text"][:1].repeat(num, 1), STEPS,
            greedy=False, temperature=SAMPLE["temperature"], top_p=SAMPLE["top_p"], top_k=UPSTREAM_TOP_K,
            repetition_penalty=SAMPLE["repetition_penalty"], always_penalized=always_penalized, generator=generator)

    bias = model.mel_head.bias
    with torch.no_grad():
        bias[1] += SAMPLE["code_1_boost"]
        try:
            faithful, plain = sample(UPSTREAM_FILLER_CODES), sample(())
        finally:
            bias[1] -= SAMPLE["code_1_boost"]
    assert (plain == 1).sum() > (expected == 1).sum()
    assert torch.equal(faithful[:, :expected.shape[1]], expected)
    assert not torch.equal(plain[:, :expected.shape[1]], expected)


def test_official_config_keys_and_shapes(reference):
    _, work = reference.run("ref_gpt.py", {"mode": "official"})
    ref_shapes = json.loads((work / "shapes.json").read_text())
    # Simulate the official file: it also holds the legacy causal-mask buffers of every layer.
    state = {k: torch.empty(shape, device="meta") for k, shape in ref_shapes.items()}
    for i in range(30):
        state[f"gpt.h.{i}.attn.bias"] = torch.empty((), device="meta")
        state[f"gpt.h.{i}.attn.masked_bias"] = torch.empty((), device="meta")
    ours_from_ref = {k: list(v.shape) for k, v in to_our_keys(FORMATS["autoregressive"], state).items()}
    with torch.device("meta"):
        model = UnifiedVoice(GPTConfig.from_name("tortoise-v2"))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours_from_ref == ours
