"""CLVP against upstream tortoise-tts 3.0.0 (use_xformers=True) on the same random weights."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.models.clvp import CLVP, CLVPConfig

pytestmark = pytest.mark.parity

# Upstream hard-codes these; our config only names them.
UPSTREAM_DIM_HEAD = 64
UPSTREAM_FF_MULT = 2
CANDIDATES = 4
TEXT_LEN, CODES_LEN = 13, 21
SEED = 1234


def upstream_kwargs(config: CLVPConfig) -> dict:
    assert (config.dim_head, config.ff_mult) == (UPSTREAM_DIM_HEAD, UPSTREAM_FF_MULT)
    return dict(
        dim_text=config.dim_text, dim_speech=config.dim_speech, dim_latent=config.dim_latent,
        num_text_tokens=config.num_text_tokens, num_speech_tokens=config.num_speech_tokens,
        text_enc_depth=config.text_depth, speech_enc_depth=config.speech_depth,
        text_heads=config.text_heads, speech_heads=config.speech_heads,
    )


@pytest.fixture(scope="module")
def parity_run(reference):
    config = CLVPConfig.from_name("tiny")
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "text_tokens": torch.randint(0, config.num_text_tokens, (CANDIDATES, TEXT_LEN), generator=generator),
        "mel_codes": torch.randint(0, config.num_speech_tokens, (CANDIDATES, CODES_LEN), generator=generator),
    }
    outputs, work = reference.run(
        "ref_clvp.py", {"mode": "parity", "config": upstream_kwargs(config), "seed": SEED}, inputs
    )
    model = load_weights(CLVP(config), work / "clvp.pth", "clvp").eval()
    return model, inputs, outputs


def test_scores_match_upstream(parity_run):
    model, inputs, ref = parity_run
    with torch.no_grad():
        ours = model.score(inputs["text_tokens"], inputs["mel_codes"])
    assert ours.shape == (CANDIDATES,)
    torch.testing.assert_close(ours, ref["scores"], rtol=1e-5, atol=2e-6)


def test_latents_match_upstream(parity_run):
    model, inputs, ref = parity_run
    with torch.no_grad():
        text_latents = model.embed_text(inputs["text_tokens"])
        speech_latents = model.embed_speech(inputs["mel_codes"])
    torch.testing.assert_close(text_latents, ref["text_latents"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(speech_latents, ref["speech_latents"], rtol=1e-5, atol=1e-6)


def test_official_keys_and_shapes(reference):
    _, work = reference.run("ref_clvp.py", {"mode": "official_keys"})
    official = {k: torch.empty(shape, device="meta") for k, shape in json.loads((work / "keys.json").read_text()).items()}
    translated = {k: tuple(v.shape) for k, v in to_our_keys(FORMATS["clvp"], official).items()}
    with torch.device("meta"):
        ours = CLVP(CLVPConfig.from_name("tortoise-v2"))
    assert translated == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert asdict(CLVPConfig.from_name("tortoise-v2"))["dim_head"] == UPSTREAM_DIM_HEAD
