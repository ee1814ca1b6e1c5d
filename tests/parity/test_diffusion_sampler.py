"""The diffusion samplers against upstream's SpacedDiffusion (DDPM, DDIM), on a toy denoiser with shared noise."""

import pytest
import torch

from tortoise_lab.stages.diffusion_sampler import Schedule, sample

pytestmark = pytest.mark.parity

CHANNELS, FRAMES, STEPS, COND_FREE_K = 6, 10, 30, 2.0


def make_toy(weights, bias):
    def toy_denoiser(x, timesteps, conditioning_free):
        mixed = torch.einsum("oc,bct->bot", weights, x) + bias[None, :, None]
        mixed = mixed + timesteps.float()[:, None, None] / 4000
        out = torch.tanh(mixed)
        if conditioning_free:
            out = torch.cat([0.5 * out[:, :CHANNELS] - 0.1, out[:, CHANNELS:]], dim=1)
        return out

    return toy_denoiser


@pytest.fixture(scope="module")
def case(reference):
    g = torch.Generator().manual_seed(11)
    weights = torch.randn(2 * CHANNELS, CHANNELS, generator=g) / CHANNELS**0.5
    bias = 0.1 * torch.randn(2 * CHANNELS, generator=g)
    start = torch.randn(1, CHANNELS, FRAMES, generator=g)
    seed = 5
    noise_source = torch.Generator().manual_seed(seed)
    step_noises = torch.stack([torch.randn(1, CHANNELS, FRAMES, generator=noise_source) for _ in range(STEPS)])
    outputs, _ = reference.run("ref_diffusion_sampler.py", {"steps": STEPS, "cond_free_k": COND_FREE_K},
                               {"weights": weights, "bias": bias, "start": start, "step_noises": step_noises})
    return make_toy(weights, bias), start, seed, outputs


def test_spaced_timesteps_equal_upstreams(case):
    _, _, _, ref = case
    assert Schedule.spaced(STEPS).timesteps.tolist() == ref["timesteps"].tolist()


@pytest.mark.parametrize("guided", [False, True], ids=["plain", "cond_free"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampler_matches_upstream(case, sampler, guided):
    toy, start, seed, ref = case
    ours = sample(toy, start.clone(), STEPS, sampler=sampler, cond_free_k=COND_FREE_K if guided else None,
                  generator=torch.Generator().manual_seed(seed))
    expected = ref[f"{sampler}_{'guided' if guided else 'plain'}"]
    # fp32 arithmetic in the same order as upstream; 30 chained steps.
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
