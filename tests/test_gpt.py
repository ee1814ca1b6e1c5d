"""Behaviour of UnifiedVoice and the AR decoding loop at the tiny random-weight config."""

from __future__ import annotations

import pytest
import torch

from tests.support.weights import seeded
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
from tortoise_lab.stages.sampling import (decode_one_token, generate_codes, next_logits_uncached, penalize_repeats,
                                   prefill, logits_to_probs)

STEPS = 12
TOL = dict(rtol=1e-5, atol=1e-5)
STOP_BIAS = 8.5  # a stop-token logit bias at which tiny random models stop after a few steps


@pytest.fixture(scope="module")
def model() -> UnifiedVoice:
    return seeded(UnifiedVoice(GPTConfig.from_name("tiny")))


@pytest.fixture(scope="module")
def prompt(model):
    generator = torch.Generator().manual_seed(1)
    cond_latent = torch.randn(1, model.config.model_dim, generator=generator)
    text_tokens = torch.randint(1, 255, (1, 7), generator=generator)
    return cond_latent, text_tokens


def test_unknown_config_names_the_choices():
    with pytest.raises(ValueError, match="tortoise-v2.*tiny"):
        GPTConfig.from_name("huge")


def test_official_sizes_and_derived_tables():
    config = GPTConfig.from_name("tortoise-v2")
    assert (config.layers, config.model_dim, config.heads) == (30, 1024, 16)
    assert config.mel_positions == 604 + 2 + 2 and config.text_positions == 402 + 2
    assert config.text_vocab_size == 256
    tiny = GPTConfig.from_name("tiny")
    # Token ids are shared, so real tokenizer ids and DVAE codes work at the tiny size too.
    for name in ("number_text_tokens", "start_text_token", "stop_text_token", "number_mel_codes",
                 "start_mel_token", "stop_mel_token"):
        assert getattr(tiny, name) == getattr(config, name)


def test_gpt2_linear_layout_is_in_by_out(model):
    block = model.gpt.h[0]
    dim = model.config.model_dim
    assert block.attn.c_attn.weight.shape == (dim, 3 * dim)
    assert block.mlp.c_fc.weight.shape == (dim, 4 * dim)


def test_conditioning_latent_is_the_mean_over_clips(model):
    mels = torch.randn(2, 3, 80, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        together = model.conditioning_latent(mels)
        apart = torch.stack([model.conditioning_latent(mels[:, i]) for i in range(3)]).mean(0)
    assert together.shape == (2, model.config.model_dim)
    torch.testing.assert_close(together, apart, **TOL)


def test_cached_steps_give_the_uncached_logits(model, prompt):
    cond_latent, text_tokens = prompt
    prompt_len = model.prompt_length(text_tokens.shape[1])
    codes = torch.randint(0, 8192, (1, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.setup_caches(1, prompt_len + codes.shape[1])
        cached = [prefill(model, cond_latent, text_tokens)]
        for k in range(codes.shape[1]):
            mel_pos = torch.tensor([k + 1])
            cached.append(decode_one_token(model, codes[:, k:k + 1], mel_pos, mel_pos + prompt_len - 1))
        uncached = [next_logits_uncached(model, cond_latent, text_tokens, codes[:, :k]) for k in range(7)]
        teacher_forced = model(cond_latent, text_tokens, codes).mel  # (1, L+2, V)
    torch.testing.assert_close(torch.stack(cached, 1), torch.stack(uncached, 1), **TOL)
    torch.testing.assert_close(torch.stack(cached, 1), teacher_forced[:, :7], **TOL)


def test_cached_and_uncached_greedy_codes_are_equal(model, prompt):
    with torch.no_grad():
        cached = generate_codes(model, *prompt, STEPS, kv_cache=True)
        uncached = generate_codes(model, *prompt, STEPS, kv_cache=False)
    assert cached.shape == (1, STEPS) and cached.dtype == torch.long
    assert torch.equal(cached, uncached)


def test_a_batch_decodes_like_its_rows(model, prompt):
    cond_latent, text_tokens = prompt
    with torch.no_grad():
        single = generate_codes(model, cond_latent, text_tokens, STEPS)
        batch = generate_codes(model, cond_latent.repeat(3, 1), text_tokens.repeat(3, 1), STEPS)
    assert torch.equal(batch, single.repeat(3, 1))


def test_same_seed_same_samples(model, prompt):
    cond_latent, text_tokens = (t.repeat(3, 1) for t in prompt)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return generate_codes(model, cond_latent, text_tokens, STEPS, greedy=False, temperature=0.8,
                                  top_p=0.8, top_k=50, repetition_penalty=2.0, generator=generator)

    first = draw(5)
    assert torch.equal(first, draw(5))
    assert not torch.equal(first, draw(6))
    assert not torch.equal(first[0], first[1])  # rows of one batch are separate draws


def test_rows_end_in_stop_tokens_once_stopped(model, prompt):
    """Once a row draws the stop token it holds only stop tokens; the result keeps its full width."""
    stop = model.config.stop_mel_token
    bias = model.mel_head.bias
    cond_latent, text_tokens = (t.repeat(4, 1) for t in prompt)
    with torch.no_grad():
        saved = bias[stop].clone()
        bias[stop] = STOP_BIAS  # make stopping likely but not certain
        try:
            codes = generate_codes(model, cond_latent, text_tokens, STEPS, greedy=False,
                                   generator=torch.Generator().manual_seed(0))
        finally:
            bias[stop] = saved
    assert codes.shape == (4, STEPS)
    first_stops = []
    for row in codes:
        stops = (row == stop).nonzero()
        assert len(stops), "every row should stop at this bias"
        first = stops[0].item()
        assert (row[first:] == stop).all() and (row[:first] != stop).all()
        first_stops.append(first)
    assert len(set(first_stops)) > 1 and max(first_stops) > 0  # rows stop at different steps


def test_kv_cache_refuses_to_overflow(model, prompt):
    cond_latent, text_tokens = prompt
    prompt_len = model.prompt_length(text_tokens.shape[1])
    model.setup_caches(1, prompt_len - 1)
    with torch.no_grad(), pytest.raises(ValueError, match=f"holds {prompt_len - 1} positions.*needs {prompt_len}"):
        prefill(model, cond_latent, text_tokens)
    model.clear_caches()
    with pytest.raises(RuntimeError, match="setup_caches"):
        prefill(model, cond_latent, text_tokens)


def test_caches_are_not_weights(model):
    keys = set(model.state_dict())
    model.setup_caches(2, 16)
    assert set(model.state_dict()) == keys
    model.clear_caches()


def test_too_many_mel_tokens_is_refused(model, prompt):
    limit = model.config.mel_positions
    with pytest.raises(ValueError, match=f"1..{limit}"):
        generate_codes(model, *prompt, limit + 1)


def test_top_p_keeps_the_smallest_set_over_the_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    probs = logits_to_probs(logits, top_p=0.7)
    torch.testing.assert_close(probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert logits_to_probs(logits, top_p=0.1)[0, 0] == 1  # the best code always survives
    torch.testing.assert_close(logits_to_probs(logits, top_k=1), torch.tensor([[1.0, 0, 0, 0]]))


def test_repetition_penalty_shrinks_seen_logits_towards_zero_side():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    penalized = penalize_repeats(logits, torch.tensor([[0, 1, 1]]), 2.0)
    torch.testing.assert_close(penalized, torch.tensor([[1.0, -4.0, 1.0]]))
