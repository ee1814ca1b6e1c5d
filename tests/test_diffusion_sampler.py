"""Behaviour of the diffusion samplers on problems whose exact answer is known."""

import numpy as np
import pytest
import torch

from tortoise_lab.stages.diffusion_sampler import SAMPLERS, TRAINED_STEPS, Schedule, linear_betas, sample, spaced_timesteps

TRAINED_ABAR = torch.tensor(np.cumprod(1.0 - linear_betas(TRAINED_STEPS)), dtype=torch.float64)


def gaussian_denoiser(scale: float):
    """The exact noise predictor when the data are N(0, scale^2) in every dimension (variance output: 0)."""

    def denoiser(x, timesteps, conditioning_free):
        abar = TRAINED_ABAR[timesteps].to(x.dtype)[:, None, None]
        eps = x * torch.sqrt(1 - abar) / (abar * scale**2 + 1 - abar)
        return torch.cat([eps, torch.zeros_like(eps)], dim=1)

    return denoiser


def exact_ode_solution(start: torch.Tensor, scale: float) -> torch.Tensor:
    # The probability-flow ODE keeps x_t / std(x_t) fixed for Gaussian data; std(x_t)^2 = abar s^2 + 1 - abar.
    abar = TRAINED_ABAR[TRAINED_STEPS - 1].item()
    return start * scale / np.sqrt(abar * scale**2 + 1 - abar)


SCALE = 0.5  # data std: small enough that x0 stays inside the [-1, 1] clip


@pytest.fixture
def start():
    return 0.5 * torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))


def _error(sampler: str, steps: int, start: torch.Tensor) -> float:
    ours = sample(gaussian_denoiser(SCALE), start, steps, sampler=sampler)
    return (ours - exact_ode_solution(start, SCALE)).abs().max().item()


def test_ddim_converges_at_first_order(start):
    coarse, fine = _error("ddim", 100, start), _error("ddim", 400, start)
    assert fine < 1e-2 and coarse / fine > 3, (coarse, fine)  # 4x the steps, about 4x less error


def test_dpmpp_2m_converges_at_second_order(start):
    coarse, fine = _error("dpm++2m", 50, start), _error("dpm++2m", 200, start)
    assert fine < 2e-3 and coarse / fine > 8, (coarse, fine)  # 4x the steps, about 16x less error
    assert fine < _error("ddim", 200, start) / 3


def test_dpmpp_2m_in_few_steps_beats_ddim(start):
    """Why it is the fast sampler: 10 steps of DPM++(2M) land closer than 30 of DDIM."""
    assert _error("dpm++2m", 10, start) < _error("ddim", 30, start) / 2


def test_log_snr_spacing_covers_the_trained_range():
    schedule = Schedule.log_snr_spaced(10)
    assert schedule.timesteps[0] == 0 and schedule.timesteps[-1] == TRAINED_STEPS - 1
    assert len(schedule) == 10 and np.all(np.diff(schedule.timesteps) > 0)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_generator_seed_gives_identical_output(sampler, start):
    runs = [sample(gaussian_denoiser(0.5), start, 12, sampler=sampler, cond_free_k=2.0,
                   generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_ddpm_noise_comes_from_the_generator(start):
    a, b = (sample(gaussian_denoiser(0.5), start, 12, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    assert not torch.equal(a, b)


def test_spaced_timesteps_cover_both_ends():
    steps = spaced_timesteps(TRAINED_STEPS, 30)
    assert len(steps) == 30 and steps[0] == 0 and steps[-1] == TRAINED_STEPS - 1
    schedule = Schedule.spaced(30)
    # The shortened chain reaches the same final noise level as the trained one.
    assert np.isclose(schedule.alphas_cumprod[-1], TRAINED_ABAR[-1].item(), rtol=1e-12)


def test_bad_arguments_name_the_allowed_values(start):
    with pytest.raises(ValueError, match="Available: ddpm, ddim, dpm\\+\\+2m"):
        sample(gaussian_denoiser(0.5), start, 10, sampler="euler")
    with pytest.raises(ValueError, match="between 1 and 4000"):
        sample(gaussian_denoiser(0.5), start, 0)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_paired_denoiser_replaces_the_two_guided_calls(sampler, start):
    """With guidance, ``paired`` runs both passes of a step in one call, and the chain is the one two calls make."""
    conditioned, free = gaussian_denoiser(0.5), gaussian_denoiser(0.3)  # two different passes: guidance mixes them
    calls = {"single": 0, "paired": 0}

    def denoiser(x, timesteps, conditioning_free):
        calls["single"] += 1
        return (free if conditioning_free else conditioned)(x, timesteps, conditioning_free)

    def paired(x, timesteps):
        calls["paired"] += 1
        return conditioned(x, timesteps, False), free(x, timesteps, True)

    two_calls = sample(denoiser, start, 12, sampler=sampler, cond_free_k=2.0, generator=torch.Generator().manual_seed(3))
    assert calls == {"single": 24, "paired": 0}
    one_call = sample(denoiser, start, 12, sampler=sampler, cond_free_k=2.0, generator=torch.Generator().manual_seed(3),
                      paired=paired)
    assert calls == {"single": 24, "paired": 12}  # paired took every step; the single denoiser was not called again
    assert torch.equal(one_call, two_calls)
    sample(denoiser, start, 12, sampler=sampler, generator=torch.Generator().manual_seed(3), paired=paired)
    assert calls == {"single": 36, "paired": 12}  # without guidance: one plain call a step, paired unused
