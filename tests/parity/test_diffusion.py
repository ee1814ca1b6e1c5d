"""Parity of tortoise_lab's diffusion decoder network with upstream DiffusionTts on the same random weights."""

from __future__ import annotations

import json

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.models.diffusion import DiffusionConfig, DiffusionDecoder

pytestmark = pytest.mark.parity

CONFIG = DiffusionConfig.from_name("tiny")
BATCH, CLIPS, COND_FRAMES, LATENT_FRAMES = 2, 2, 32, 10
# api.py's output length for S latent frames: 4 mel frames per code at 22.05 kHz, resampled to 24 kHz.
OUT_FRAMES = LATENT_FRAMES * 4 * 24000 // 22050
TOL = dict(rtol=1e-6, atol=1e-6)  # same torch on both sides: measured bit-exact


def _ref_config(config: DiffusionConfig) -> dict:
    return dict(model_channels=config.model_channels, num_layers=config.num_layers, in_channels=config.in_channels,
                out_channels=config.out_channels, in_latent_channels=config.in_latent_channels,
                in_tokens=config.in_tokens, num_heads=config.num_heads)


@pytest.fixture(scope="module")
def case(reference):
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        cond_mels=torch.randn(BATCH, CLIPS, CONFIG.in_channels, COND_FRAMES, generator=generator),
        latents=torch.randn(BATCH, LATENT_FRAMES, CONFIG.in_latent_channels, generator=generator),
        codes=torch.randint(0, CONFIG.in_tokens, (BATCH, LATENT_FRAMES), generator=generator),
        x=torch.randn(BATCH, CONFIG.in_channels, OUT_FRAMES, generator=generator),
        timesteps=torch.tensor([17, 3500]),
    )
    outputs, workdir = reference.run("ref_diffusion.py", {"config": _ref_config(CONFIG), "seed": 1}, inputs)
    model = DiffusionDecoder(CONFIG).eval()
    load_weights(model, workdir / "diffusion.pth", "diffusion")
    return model, inputs, outputs, workdir


@torch.no_grad()
def test_conditioning_embedding(case):
    model, inputs, ref, _ = case
    torch.testing.assert_close(model.conditioning_embedding(inputs["cond_mels"]), ref["cond"], **TOL)


@torch.no_grad()
def test_timestep_independent_latents_and_codes(case):
    model, inputs, ref, _ = case
    emb = model.timestep_independent(inputs["latents"], ref["cond"], OUT_FRAMES, conditioning_free=False)
    torch.testing.assert_close(emb, ref["emb"], **TOL)
    emb_codes = model.timestep_independent(inputs["codes"], ref["cond"], OUT_FRAMES, conditioning_free=False)
    torch.testing.assert_close(emb_codes, ref["emb_codes"], **TOL)


@torch.no_grad()
def test_denoising_step_conditioned(case):
    model, inputs, ref, _ = case
    out = model(inputs["x"], inputs["timesteps"], ref["emb"])
    torch.testing.assert_close(out, ref["out"], **TOL)
    torch.testing.assert_close(out, ref["out_direct"], **TOL)  # upstream's non-precomputed path agrees
    torch.testing.assert_close(model(inputs["x"], inputs["timesteps"], ref["emb_codes"]), ref["out_codes"], **TOL)


@torch.no_grad()
def test_denoising_step_conditioning_free(case):
    model, inputs, ref, _ = case
    free = model.timestep_independent(inputs["latents"], ref["cond"], OUT_FRAMES, conditioning_free=True)
    out = model(inputs["x"], inputs["timesteps"], free)
    torch.testing.assert_close(out, ref["out_free"], **TOL)
    assert not torch.allclose(ref["out_free"], ref["out"], atol=1e-2)  # the two passes really differ


@torch.no_grad()
def test_full_chain_from_our_own_embeddings(case):
    """Our whole chain (mels -> voice -> embeddings -> step), not fed any reference intermediates."""
    model, inputs, ref, _ = case
    voice = model.conditioning_embedding(inputs["cond_mels"])
    emb = model.timestep_independent(inputs["latents"], voice, OUT_FRAMES)
    torch.testing.assert_close(model(inputs["x"], inputs["timesteps"], emb), ref["out"], **TOL)


def test_official_config_keys_and_shapes(case):
    *_, workdir = case
    ref_shapes = json.loads((workdir / "official_shapes.json").read_text())
    official = {k: torch.empty(shape, device="meta") for k, shape in ref_shapes.items()}
    translated = {k: tuple(v.shape) for k, v in to_our_keys(FORMATS["diffusion"], official).items()}
    with torch.device("meta"):
        ours = DiffusionDecoder(DiffusionConfig.from_name("tortoise-v2"))
    assert translated == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
