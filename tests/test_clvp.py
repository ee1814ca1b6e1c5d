"""Behaviour of our ranking models (CLVP, CVVP) at tiny random-weight configs."""

from __future__ import annotations

import pytest
import torch

from tortoise_lab.models.clvp import CLVP, CLVPConfig
from tortoise_lab.models.cvvp import CVVP, CVVPConfig

CANDIDATES = 3
# Batched and one-at-a-time matmuls may take different kernels; equal to float rounding.
TOL = dict(rtol=1e-5, atol=1e-6)


def seeded(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights (no zero branches) so that every path shows up in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:  # matrices: std 1/sqrt(fan_in); vectors (norm scales, biases): 1 +- 0.1
                param.copy_(torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5)
            elif param.dim() == 1:
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def clvp() -> CLVP:
    return seeded(CLVP(CLVPConfig.from_name("tiny")))


@pytest.fixture(scope="module")
def cvvp() -> CVVP:
    return seeded(CVVP(CVVPConfig.from_name("tiny")))


@pytest.fixture(scope="module")
def tokens():
    generator = torch.Generator().manual_seed(1)
    text = torch.randint(0, 256, (1, 9), generator=generator)
    codes = torch.randint(0, 8192, (CANDIDATES, 15), generator=generator)
    cond_mels = torch.randn(1, 80, 26, generator=generator)
    return text, codes, cond_mels


def test_unknown_config_names_the_choices():
    with pytest.raises(ValueError, match="tortoise-v2"):
        CLVPConfig.from_name("huge")
    with pytest.raises(ValueError, match="tiny"):
        CVVPConfig.from_name("huge")


@torch.no_grad()
def test_clvp_shapes_and_range(clvp, tokens):
    text, codes, _ = tokens
    text_latents, speech_latents = clvp.embed_text(text), clvp.embed_speech(codes)
    assert text_latents.shape == (1, clvp.config.dim_latent)
    assert speech_latents.shape == (CANDIDATES, clvp.config.dim_latent)
    torch.testing.assert_close(speech_latents.norm(dim=-1), torch.ones(CANDIDATES))
    scores = clvp.score(text, codes)
    assert scores.shape == (CANDIDATES,)
    # Cosine similarities scaled by exp(temperature).
    assert scores.abs().max() <= clvp.temperature.exp() + 1e-6


@torch.no_grad()
def test_clvp_candidates_are_independent(clvp, tokens):
    text, codes, _ = tokens
    batched = clvp.score(text.repeat(CANDIDATES, 1), codes)
    one_by_one = torch.cat([clvp.score(text, codes[i : i + 1]) for i in range(CANDIDATES)])
    torch.testing.assert_close(batched, one_by_one, **TOL)
    # One text row broadcasts over the candidates, as when the text latent is cached.
    torch.testing.assert_close(clvp.score(text, codes), batched, **TOL)
    cached = clvp.similarity(clvp.embed_text(text), clvp.embed_speech(codes))
    torch.testing.assert_close(cached, batched, **TOL)


@torch.no_grad()
def test_clvp_sees_order_and_content(clvp, tokens):
    text, codes, _ = tokens
    base = clvp.score(text, codes)
    assert not torch.allclose(clvp.score(text, codes.flip(1)), base)  # rotary positions make order matter
    assert not torch.allclose(clvp.score(text.flip(1), codes), base)


@torch.no_grad()
def test_cvvp_shapes_and_independence(cvvp, tokens):
    _, codes, cond_mels = tokens
    assert cvvp.embed_conditioning(cond_mels).shape == (1, cvvp.config.model_dim)
    batched = cvvp.score(cond_mels.repeat(CANDIDATES, 1, 1), codes)
    assert batched.shape == (CANDIDATES,)
    one_by_one = torch.cat([cvvp.score(cond_mels, codes[i : i + 1]) for i in range(CANDIDATES)])
    torch.testing.assert_close(batched, one_by_one, **TOL)
    torch.testing.assert_close(cvvp.score(cond_mels, codes), batched, **TOL)
