"""Parity of tortoise_lab's UnivNet vocoder (weight norm folded at load) with upstream UnivNetGenerator.

The reference saves its randomized weights in the official wrapped, weight-normed form ({'model_g': ...} with
weight_g/weight_v pairs); ours load them through ``FORMATS["vocoder"]``, which folds each pair. Matching outputs
prove the fold for every layer type (Conv1d, ConvTranspose1d, the kernel predictors' convs).
"""

from __future__ import annotations

import json

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.models.vocoder import PAD_FRAMES, UnivNetGenerator, VocoderConfig

pytestmark = pytest.mark.parity

BATCH, FRAMES = 2, 6
NOISE_SEED = 1234
CASES = {name: VocoderConfig.from_name(name) for name in ("tiny", "tortoise-v2")}
TOL = dict(rtol=1e-5, atol=1e-5)


def _ref_config(config: VocoderConfig) -> dict:
    return dict(noise_dim=config.noise_dim, channel_size=config.channel_size, dilations=list(config.dilations),
                strides=list(config.strides), lReLU_slope=config.leaky_relu_slope,
                kpnet_conv_size=config.kpnet_conv_size, hop_length=config.hop_length,
                n_mel_channels=config.n_mel_channels)


@pytest.fixture(scope="module")
def run(reference):
    generator = torch.Generator().manual_seed(0)
    inputs, args = {}, {"cases": {}}
    for seed, (name, config) in enumerate(CASES.items()):
        # Log-mel-like values: around -5, spread a few units.
        inputs[f"{name}.mel"] = torch.randn(BATCH, config.n_mel_channels, FRAMES, generator=generator) * 2 - 5
        inputs[f"{name}.noise"] = torch.randn(BATCH, config.noise_dim, FRAMES, generator=generator)
        inputs[f"{name}.noise_padded"] = torch.randn(BATCH, config.noise_dim, FRAMES + PAD_FRAMES, generator=generator)
        args["cases"][name] = {"config": _ref_config(config), "seed": 10 + seed, "noise_seed": NOISE_SEED}
    outputs, workdir = reference.run("ref_vocoder.py", args, inputs)
    models = {}
    for name, config in CASES.items():
        models[name] = load_weights(UnivNetGenerator(config).eval(), workdir / f"{name}.pth", "vocoder")
    return models, inputs, outputs, workdir


@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_forward_with_given_noise(run, name):
    models, inputs, ref, _ = run
    model = models[name]
    pre_tanh = {}
    hook = model.conv_post[1].register_forward_hook(lambda m, i, o: pre_tanh.__setitem__("value", o))
    wav = model(inputs[f"{name}.mel"], inputs[f"{name}.noise"])
    hook.remove()
    assert wav.shape == (BATCH, 1, FRAMES * CASES[name].hop_length)
    # Before the tanh first: a saturated tanh would hide differences.
    torch.testing.assert_close(pre_tanh["value"], ref[f"{name}.pre_tanh"], **TOL)
    torch.testing.assert_close(wav, ref[f"{name}.forward"], **TOL)
    # Upstream with weight norm still applied (training form) gives the same waveform.
    torch.testing.assert_close(wav, ref[f"{name}.wn_forward"], **TOL)


@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_inference_pads_and_trims_like_upstream(run, name):
    models, inputs, ref, _ = run
    wav = models[name].inference(inputs[f"{name}.mel"], noise=inputs[f"{name}.noise_padded"])
    torch.testing.assert_close(wav, ref[f"{name}.inference"], **TOL)


@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_seeded_inference_draws_upstreams_noise(run, name):
    models, inputs, ref, _ = run
    wav = models[name].inference(inputs[f"{name}.mel"], generator=torch.Generator().manual_seed(NOISE_SEED))
    torch.testing.assert_close(wav, ref[f"{name}.inference_seeded"], **TOL)


def test_official_config_keys_and_shapes(run):
    """UnivNetGenerator() as stored in vocoder.pth (wrapped, weight-normed) maps onto our folded module."""
    *_, workdir = run
    ref_shapes = json.loads((workdir / "official_shapes.json").read_text())
    assert any(k.endswith(".weight_g") for k in ref_shapes)
    official = {"model_g": {k: torch.empty(shape, device="meta") for k, shape in ref_shapes.items()}}
    translated = {k: tuple(v.shape) for k, v in to_our_keys(FORMATS["vocoder"], official).items()}
    with torch.device("meta"):
        ours = UnivNetGenerator(VocoderConfig.from_name("tortoise-v2"))
    assert translated == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
