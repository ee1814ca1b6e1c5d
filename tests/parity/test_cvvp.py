"""CVVP against upstream tortoise-tts 3.0.0 (the config api.py loads) on the same random weights."""

from __future__ import annotations

import json

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.models.cvvp import CVVP, CVVPConfig

pytestmark = pytest.mark.parity

UPSTREAM_DIM_HEAD = 64
UPSTREAM_FF_MULT = 1
CANDIDATES = 3
CLIPS = 2
# 30 frames: not a multiple of the conditioning embedding's 4x downsampling, to exercise its padding.
COND_FRAMES, CODES_LEN = 30, 17
SEED = 4321


def upstream_kwargs(config: CVVPConfig) -> dict:
    assert (config.dim_head, config.ff_mult) == (UPSTREAM_DIM_HEAD, UPSTREAM_FF_MULT)
    return dict(
        model_dim=config.model_dim, transformer_heads=config.heads, dropout=0, mel_channels=config.mel_channels,
        mel_codes=config.mel_codes, conditioning_enc_depth=config.conditioning_depth,
        speech_enc_depth=config.speech_depth, latent_multiplier=1,
    )


@pytest.fixture(scope="module")
def parity_run(reference):
    config = CVVPConfig.from_name("tiny")
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "cond_mels": torch.randn(CANDIDATES, config.mel_channels, COND_FRAMES, generator=generator),
        "mel_codes": torch.randint(0, config.mel_codes, (CANDIDATES, CODES_LEN), generator=generator),
        "clips": torch.randn(CLIPS, config.mel_channels, COND_FRAMES, generator=generator),
    }
    outputs, work = reference.run(
        "ref_cvvp.py", {"mode": "parity", "config": upstream_kwargs(config), "seed": SEED}, inputs
    )
    model = load_weights(CVVP(config), work / "cvvp.pth", "cvvp").eval()
    return model, inputs, outputs


def test_scores_match_upstream(parity_run):
    model, inputs, ref = parity_run
    with torch.no_grad():
        ours = model.score(inputs["cond_mels"], inputs["mel_codes"])
    assert ours.shape == (CANDIDATES,)
    torch.testing.assert_close(ours, ref["scores"], rtol=1e-5, atol=2e-6)


def test_clip_averaged_scores_match_upstream(parity_run):
    """api.py's use: each reference clip scored against every candidate, the scores averaged over clips."""
    model, inputs, ref = parity_run
    with torch.no_grad():
        per_clip = [model.score(clip[None], inputs["mel_codes"]) for clip in inputs["clips"]]
    torch.testing.assert_close(torch.stack(per_clip).mean(dim=0), ref["clip_mean_scores"], rtol=1e-5, atol=2e-6)


def test_official_keys_and_shapes(reference):
    _, work = reference.run("ref_cvvp.py", {"mode": "official_keys"})
    official = {k: torch.empty(shape, device="meta") for k, shape in json.loads((work / "keys.json").read_text()).items()}
    translated = {k: tuple(v.shape) for k, v in to_our_keys(FORMATS["cvvp"], official).items()}
    with torch.device("meta"):
        ours = CVVP(CVVPConfig.from_name("tortoise-v2"))
    assert translated == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
