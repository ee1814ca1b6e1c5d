"""Parity of tortoise_lab's random latent converters with upstream RandomLatentConverter, at both official widths."""

from __future__ import annotations

import json

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.models.random_latent import RandomLatentConfig, RandomLatentConverter

pytestmark = pytest.mark.parity

BATCH = 3
NOISE_SEED = 42
# The two official widths (rlg_auto.pth, rlg_diffuser.pth): the network is tiny, so parity runs at full size.
PRESETS = {1024: "tortoise-v2-auto", 2048: "tortoise-v2-diffuser"}
TOL = dict(rtol=1e-6, atol=1e-6)  # same torch on both sides: measured bit-exact


@pytest.fixture(scope="module")
def run(reference):
    generator = torch.Generator().manual_seed(0)
    inputs = {f"noise_{c}": torch.randn(BATCH, c, generator=generator) for c in PRESETS}
    args = {"channels": list(PRESETS), "seed": 7, "noise_seed": NOISE_SEED, "batch": BATCH}
    outputs, workdir = reference.run("ref_rlg.py", args, inputs)
    models = {}
    for channels, preset in PRESETS.items():
        fmt = "rlg_auto" if channels == 1024 else "rlg_diffuser"
        models[channels] = load_weights(
            RandomLatentConverter(RandomLatentConfig.from_name(preset)).eval(), workdir / f"rlg_{channels}.pth", fmt
        )
    return models, inputs, outputs, workdir


@pytest.mark.parametrize("channels", list(PRESETS))
@torch.no_grad()
def test_from_noise(run, channels):
    models, inputs, ref, _ = run
    torch.testing.assert_close(models[channels].from_noise(inputs[f"noise_{channels}"]), ref[f"from_noise_{channels}"], **TOL)


@pytest.mark.parametrize("channels", list(PRESETS))
@torch.no_grad()
def test_seeded_generator_draws_upstreams_noise(run, channels):
    models, _, ref, _ = run
    latents = models[channels](BATCH, torch.Generator().manual_seed(NOISE_SEED))
    torch.testing.assert_close(latents, ref[f"seeded_{channels}"], **TOL)


@pytest.mark.parametrize(("name", "fmt"), [("auto", "rlg_auto"), ("diffuser", "rlg_diffuser")])
def test_official_config_keys_and_shapes(run, name, fmt):
    *_, workdir = run
    ref_shapes = json.loads((workdir / "official_shapes.json").read_text())[name]
    official = {k: torch.empty(shape, device="meta") for k, shape in ref_shapes.items()}
    translated = {k: tuple(v.shape) for k, v in to_our_keys(FORMATS[fmt], official).items()}
    with torch.device("meta"):
        ours = RandomLatentConverter(RandomLatentConfig.from_name(f"tortoise-v2-{name}"))
    assert translated == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
