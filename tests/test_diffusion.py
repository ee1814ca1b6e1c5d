"""Behaviour of the diffusion decoder network on tiny random weights (no reference needed)."""

from __future__ import annotations

import pytest
import torch

from tortoise_lab.models.diffusion import DiffusionConfig, DiffusionDecoder, timestep_embedding

CONFIG = DiffusionConfig.from_name("tiny")
BATCH, FRAMES = 2, 24


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    decoder = DiffusionDecoder(CONFIG).eval()
    with torch.no_grad():  # the unconditioned embedding starts at zero; make it distinguishable
        decoder.unconditioned_embedding.normal_()
    return decoder


def test_presets():
    official = DiffusionConfig.from_name("tortoise-v2")
    assert (official.model_channels, official.num_layers, official.num_heads) == (1024, 10, 16)
    with pytest.raises(ValueError, match="tortoise-v2"):
        DiffusionConfig.from_name("huge")


def test_timestep_embedding_is_cosines_then_sines():
    emb = timestep_embedding(torch.tensor([0, 5]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert emb[1, 0] == torch.cos(torch.tensor(5.0))  # the fastest frequency is 1


@torch.no_grad()
def test_conditioning_embedding_shapes(model):
    clips = torch.randn(BATCH, 3, CONFIG.in_channels, 16)
    voice = model.conditioning_embedding(clips)
    assert voice.shape == (BATCH, 2 * CONFIG.model_channels)
    # One clip given as (B, 100, T) is the same as (B, 1, 100, T).
    torch.testing.assert_close(model.conditioning_embedding(clips[:, 0]), model.conditioning_embedding(clips[:, :1]))
    with pytest.raises(ValueError, match="cond_mels"):
        model.conditioning_embedding(torch.randn(BATCH, 3, 80, 16))


@torch.no_grad()
def test_timestep_independent_and_step_shapes(model):
    latents = torch.randn(BATCH, 7, CONFIG.in_latent_channels)
    voice = torch.randn(BATCH, 2 * CONFIG.model_channels)
    emb = model.timestep_independent(latents, voice, FRAMES)
    assert emb.shape == (BATCH, CONFIG.model_channels, FRAMES)
    codes = torch.randint(0, CONFIG.in_tokens, (BATCH, 7))
    assert model.timestep_independent(codes, voice, FRAMES).shape == emb.shape
    out = model(torch.randn(BATCH, CONFIG.in_channels, FRAMES), torch.tensor([10, 900]), emb)
    assert out.shape == (BATCH, CONFIG.out_channels, FRAMES)


@torch.no_grad()
def test_conditioning_free_embedding_ignores_the_conditioning(model):
    voice = torch.randn(BATCH, 2 * CONFIG.model_channels)
    free_a = model.timestep_independent(torch.randn(BATCH, 5, CONFIG.in_latent_channels), voice, FRAMES, True)
    free_b = model.timestep_independent(torch.randn(BATCH, 9, CONFIG.in_latent_channels), -voice, FRAMES, True)
    torch.testing.assert_close(free_a, free_b)
    torch.testing.assert_close(free_a, model.unconditioned_embedding.expand(BATCH, -1, FRAMES))


@torch.no_grad()
def test_step_depends_on_timestep_and_embeddings(model):
    x = torch.randn(BATCH, CONFIG.in_channels, FRAMES)
    emb = torch.randn(BATCH, CONFIG.model_channels, FRAMES)
    base = model(x, torch.tensor([10, 10]), emb)
    assert not torch.allclose(base, model(x, torch.tensor([11, 11]), emb))
    assert not torch.allclose(base, model(x, torch.tensor([10, 10]), emb + 1))
    # Batch elements are independent: the first alone gives the same result.
    torch.testing.assert_close(model(x[:1], torch.tensor([10]), emb[:1]), base[:1], rtol=1e-5, atol=1e-5)


def test_official_size_builds_on_meta():
    with torch.device("meta"):
        decoder = DiffusionDecoder(DiffusionConfig.from_name("tortoise-v2"))
    n_params = sum(p.numel() for p in decoder.parameters())
    assert 290e6 < n_params < 300e6  # the official diffusion_decoder.pth is ~292M parameters (1.17 GB fp32)
