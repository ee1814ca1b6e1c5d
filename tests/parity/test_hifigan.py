"""Parity of tortoise_lab's HiFiGAN decoder (weight norm folded at load) with upstream's HifiganGenerator.

The reference builds the generator at each size, randomizes it and saves its state dict as ``hifidecoder.pth`` is
stored (flat, weight-normed ``weight_g``/``weight_v``); ours loads it strictly through ``FORMATS["hifigan"]``. Both
then decode the same AR latents with the same speaker vector, shaped as ``api_fast`` passes them: latents (k, L,
1024) from the AR model, the voice's AR conditioning latent (1, 1024). Upstream runs weight-normed, as api_fast does.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.models.hifigan import HifiganConfig, HifiganDecoder, frames_for_latents, load_hifigan

pytestmark = pytest.mark.parity

# name -> (batch: api_fast's k, AR latents, seed); the official size decodes one short take (about 12 s on
# two cores with its own reference run, hence `slow`).
CASES = {"tiny": (2, 7, 20), "tortoise-v2": (1, 6, 21)}
# fp32. Both sides fold the same weight norm with the same kernel and run the same ops, so the outputs agree bit
# for bit here; the absolute tolerance is tight because the official-size output is small with random weights
# (std ~2e-3 before the tanh).
TOL = dict(rtol=1e-5, atol=1e-6)
SIZES = [pytest.param("tiny"), pytest.param("tortoise-v2", marks=pytest.mark.slow)]


def _ref_config(config: HifiganConfig) -> dict:
    return dict(in_channels=config.in_channels, out_channels=1, resblock_type="1",
                resblock_dilation_sizes=[list(d) for d in config.resblock_dilations],
                resblock_kernel_sizes=list(config.resblock_kernel_sizes),
                upsample_kernel_sizes=list(config.upsample_kernel_sizes),
                upsample_initial_channel=config.upsample_initial_channel,
                upsample_factors=list(config.upsample_factors), cond_channels=config.cond_channels)


@pytest.fixture(scope="module")
def run(reference):
    """run(name) -> (inputs, upstream's outputs, its folder): one reference run per size, made on first use."""
    done = {}

    def run_size(name: str):
        if name not in done:
            batch, length, seed = CASES[name]
            config = HifiganConfig.from_name(name)
            generator = torch.Generator().manual_seed(seed)
            # The AR model's latents come out of its final layer norm: unit-scale values.
            inputs = {f"{name}.latents": torch.randn(batch, length, config.in_channels, generator=generator),
                      f"{name}.speaker": torch.randn(1, config.cond_channels, generator=generator)}
            args = {"cases": {name: {"config": _ref_config(config), "seed": seed}}}
            done[name] = (inputs, *reference.run("ref_hifigan.py", args, inputs))
        return done[name]

    return run_size


def assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} vs upstream's {tuple(ref.shape)}"
    difference = (ours - ref).abs().max().item()
    assert torch.allclose(ours, ref, **TOL), f"{what}: max abs difference {difference:.3g} (tolerance {TOL})"


def test_official_file_keys_and_shapes(run):
    """The generator api_fast builds for hifidecoder.pth, stored weight-normed, maps onto ours key for key."""
    *_, workdir = run("tiny")  # every reference run also writes the official shapes (built on the meta device)
    ref_shapes = json.loads((workdir / "official_shapes.json").read_text())
    assert sum(k.endswith(".weight_g") for k in ref_shapes) == 2 + 4 + 4 * 3 * 6  # pre, post, ups, resblock convs
    official = {k: torch.empty(shape, device="meta") for k, shape in ref_shapes.items()}
    translated = {k: tuple(v.shape) for k, v in to_our_keys(FORMATS["hifigan"], official).items()}
    with torch.device("meta"):
        ours = HifiganDecoder(HifiganConfig.from_name("tortoise-v2"))
    assert translated == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


@pytest.mark.parametrize("name", SIZES)
@torch.no_grad()
def test_inference_matches_upstream(run, name):
    inputs, ref, workdir = run(name)
    model = load_weights(HifiganDecoder(HifiganConfig.from_name(name)).eval(), workdir / f"{name}.pth", "hifigan")
    seen = {}
    hooks = [
        model.conv_pre.register_forward_pre_hook(lambda m, i: seen.__setitem__("features", i[0])),
        model.conv_post.register_forward_hook(lambda m, i, o: seen.__setitem__("pre_tanh", o)),
    ]
    wav = model.inference(inputs[f"{name}.latents"], inputs[f"{name}.speaker"])
    for hook in hooks:
        hook.remove()
    batch, length, _ = CASES[name]
    assert wav.shape == (batch, 1, frames_for_latents(length) * model.config.hop_length)
    assert_close(seen["features"], ref[f"{name}.features"], f"{name} stretched latents")
    # Before the tanh: a saturated tanh would hide differences.
    assert_close(seen["pre_tanh"], ref[f"{name}.pre_tanh"], f"{name} output before tanh")
    assert_close(wav, ref[f"{name}.inference"], f"{name} waveform")


def test_load_hifigan_finds_the_file_in_models_dir(run, tmp_path):
    inputs, ref, workdir = run("tiny")
    shutil.copy(workdir / "tiny.pth", tmp_path / "hifidecoder.pth")
    model = load_hifigan(tmp_path, device="cpu", size="tiny")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        wav = model.inference(inputs["tiny.latents"], inputs["tiny.speaker"])
    assert_close(wav, ref["tiny.inference"], "tiny waveform through load_hifigan")
