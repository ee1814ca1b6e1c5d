"""Diffusion schedules and samplers for the mel decoder: upstream's DDPM, DDIM, and DPM++(2M).

The decoder was trained on a 4000-step linear beta schedule with epsilon prediction and a learned variance
range. At inference only ``steps`` of those timesteps are kept, and the betas are recomputed so the shortened
chain has the same cumulative noise levels: evenly spaced in t for DDPM and DDIM, as upstream does
(``Schedule.spaced``), evenly spaced in log-SNR for DPM++(2M) (``Schedule.log_snr_spaced``).

A *denoiser* here is any callable ``denoiser(x, timesteps, conditioning_free) -> (B, 2C, T)``: the first C
channels predict the noise, the last C the position of the variance between its two bounds. Timesteps are
indices into the *trained* schedule (0..3999), which is what the network was trained to read.

Conditioning-free guidance mixes the conditioned and unconditioned noise predictions,
``eps = (1 + k) * eps_cond - k * eps_free``, with ``k`` ramped down linearly from ``cond_free_k`` at the
first (noisiest) step towards 0, as upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from tortoise_lab.config import SAMPLERS, TRAINED_STEPS  # the schedule the decoder was trained on; sampler names

__all__ = ["TRAINED_STEPS", "SAMPLERS", "Denoiser", "PairedDenoiser", "Schedule", "spaced_timesteps", "sample"]

# The linear schedule of Ho et al. is given for 1000 steps; longer schedules scale both ends down.
_BETA_START_PER_1000, _BETA_END_PER_1000 = 1e-4, 0.02

Denoiser = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]
# Both evaluations of a guided step in one call, (x, timesteps) -> (conditioned output, conditioning-free output):
# a network can run them as one batch of two, paying its per-call costs once (stages.decode.DiffusionVocoder does).
PairedDenoiser = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# What a step function calls: (x, step) -> (eps, variance values), guidance applied.
Guided = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def linear_betas(num_steps: int) -> np.ndarray:
    scale = 1000 / num_steps
    return np.linspace(scale * _BETA_START_PER_1000, scale * _BETA_END_PER_1000, num_steps, dtype=np.float64)


def spaced_timesteps(num_steps: int, count: int) -> list[int]:
    """``count`` timesteps out of ``num_steps``, evenly spread from 0 to ``num_steps - 1``, rounded to integers."""
    if not 1 <= count <= num_steps:
        raise ValueError(f"diffusion steps must be between 1 and {num_steps}, got {count}")
    if count == 1:
        return [0]
    stride = (num_steps - 1) / (count - 1)
    # Accumulate the float stride step by step (not i * stride): the rounding must match upstream's exactly.
    taken, position = [], 0.0
    for _ in range(count):
        taken.append(round(position))
        position += stride
    return sorted(set(taken))


@dataclass(frozen=True)
class Schedule:
    """A (possibly shortened) diffusion chain. Arrays are float64 numpy, indexed by step i = 0..len-1."""

    timesteps: np.ndarray  # (S,) int: the trained-schedule index each step stands for
    betas: np.ndarray  # (S,)

    @classmethod
    def spaced(cls, steps: int, trained_steps: int = TRAINED_STEPS) -> "Schedule":
        """Upstream's choice: timesteps evenly spaced over the trained schedule."""
        return cls.from_timesteps(spaced_timesteps(trained_steps, steps), trained_steps)

    @classmethod
    def log_snr_spaced(cls, steps: int, trained_steps: int = TRAINED_STEPS) -> "Schedule":
        """Timesteps whose log signal-to-noise ratios are evenly spaced, from the noisiest trained step to the
        cleanest. Solvers of the probability-flow ODE step in log-SNR, so equal steps there spread their error
        evenly; even spacing in t crowds the steps where little changes."""
        if not 1 <= steps <= trained_steps:
            raise ValueError(f"diffusion steps must be between 1 and {trained_steps}, got {steps}")
        abar = np.cumprod(1.0 - linear_betas(trained_steps))
        log_snr = np.log(abar / (1 - abar))  # decreasing in t
        targets = np.linspace(log_snr[-1], log_snr[0], steps)
        keep = sorted({int(np.argmin(np.abs(log_snr - target))) for target in targets})
        return cls.from_timesteps(keep, trained_steps)

    @classmethod
    def from_timesteps(cls, keep: list[int], trained_steps: int = TRAINED_STEPS) -> "Schedule":
        alphas_cumprod = np.cumprod(1.0 - linear_betas(trained_steps))
        kept = alphas_cumprod[keep]
        # New betas that reproduce the kept cumulative products: 1 - abar_i / abar_(i-1).
        previous = np.append(1.0, kept[:-1])
        return cls(timesteps=np.array(keep), betas=1.0 - kept / previous)

    def __len__(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)

    @property
    def alphas_cumprod_prev(self) -> np.ndarray:
        return np.append(1.0, self.alphas_cumprod[:-1])

    @property
    def posterior_variance(self) -> np.ndarray:
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_log_variance(self) -> np.ndarray:
        # The posterior variance is 0 at the last step; borrow the next value so the log stays finite.
        variance = self.posterior_variance
        return np.log(np.append(variance[1], variance[1:]))


def _at(array: np.ndarray, step: int, like: torch.Tensor) -> torch.Tensor:
    # Coefficients are computed in float64 and used in float32, the precision the decoder was sampled with.
    return torch.tensor(float(np.float32(array[step])), dtype=like.dtype, device=like.device)


def _guided_output(denoiser: Denoiser, paired: PairedDenoiser | None, x: torch.Tensor, step: int,
                   schedule: Schedule, cond_free_k: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One network evaluation (two with guidance, in one call when ``paired`` is given):
    (eps, variance_fraction_raw), each (B, C, T)."""
    timesteps = torch.full((x.shape[0],), int(schedule.timesteps[step]), dtype=torch.long, device=x.device)
    channels = x.shape[1]
    if cond_free_k is None:
        return denoiser(x, timesteps, False).split(channels, dim=1)
    if paired is not None:
        conditioned, free = paired(x, timesteps)
    else:
        conditioned, free = denoiser(x, timesteps, False), denoiser(x, timesteps, True)
    eps, variance_values = conditioned.split(channels, dim=1)
    eps_free = free[:, :channels]
    k = cond_free_k * (1 - step / len(schedule))  # ramps from k at the noisiest step towards 0
    return (1 + k) * eps - k * eps_free, variance_values


def _predict_start(x: torch.Tensor, eps: torch.Tensor, step: int, schedule: Schedule) -> torch.Tensor:
    """x0 from x_t and the predicted noise, clipped to the normalised mel range [-1, 1]."""
    abar = schedule.alphas_cumprod
    x0 = _at(np.sqrt(1.0 / abar), step, x) * x - _at(np.sqrt(1.0 / abar - 1), step, x) * eps
    return x0.clamp(-1, 1)


def _ddpm_step(x, step, schedule, guided, generator):
    eps, variance_values = guided(x, step)
    x0 = _predict_start(x, eps, step, schedule)
    abar, abar_prev, betas = schedule.alphas_cumprod, schedule.alphas_cumprod_prev, schedule.betas
    mean = (_at(betas * np.sqrt(abar_prev) / (1.0 - abar), step, x) * x0
            + _at((1.0 - abar_prev) * np.sqrt(1.0 - betas) / (1.0 - abar), step, x) * x)
    # The network's second half picks the log-variance between the posterior's and beta's: -1 -> min, 1 -> max.
    fraction = (variance_values + 1) / 2
    log_variance = (fraction * _at(np.log(betas), step, x)
                    + (1 - fraction) * _at(schedule.posterior_log_variance, step, x))
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    if step == 0:
        return mean
    return mean + torch.exp(0.5 * log_variance) * noise


def _ddim_step(x, step, schedule, guided, generator):
    eps, _ = guided(x, step)
    x0 = _predict_start(x, eps, step, schedule)
    abar = schedule.alphas_cumprod
    # Re-derive the noise from the clipped x0 so the step stays consistent with it (eta = 0: deterministic).
    eps = (_at(np.sqrt(1.0 / abar), step, x) * x - x0) / _at(np.sqrt(1.0 / abar - 1), step, x)
    abar_prev = _at(schedule.alphas_cumprod_prev, step, x)
    return x0 * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev) * eps


class _DpmSolver2M:
    """DPM-Solver++(2M) (Lu et al., 2022): a second-order multistep solver of the probability-flow ODE in x0
    space, run over the same spaced timesteps. It reuses the previous step's x0 prediction, so it costs one
    network evaluation per step, like DDIM, but reaches a given quality in fewer steps."""

    def __init__(self):
        self.previous_x0: torch.Tensor | None = None
        self.previous_h: float | None = None

    def __call__(self, x, step, schedule, guided, generator):
        eps, _ = guided(x, step)
        x0 = _predict_start(x, eps, step, schedule)
        abar, abar_prev = schedule.alphas_cumprod[step], schedule.alphas_cumprod_prev[step]
        if abar_prev >= 1.0:  # the last step lands on clean data
            return x0
        # lambda = log(alpha / sigma), the half log signal-to-noise ratio.
        lam = 0.5 * np.log(abar / (1 - abar))
        lam_next = 0.5 * np.log(abar_prev / (1 - abar_prev))
        h = lam_next - lam
        if self.previous_x0 is None:
            data = x0
        else:
            r = self.previous_h / h
            data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self.previous_x0
        self.previous_x0, self.previous_h = x0, h
        sigma_ratio = np.sqrt((1 - abar_prev) / (1 - abar))
        alpha_next = np.sqrt(abar_prev)
        return float(sigma_ratio) * x - float(alpha_next * np.expm1(-h)) * data


def sample(denoiser: Denoiser, noise: torch.Tensor, steps: int, sampler: str = "ddpm",
           cond_free_k: float | None = None, generator: torch.Generator | None = None,
           progress: bool = False, on_step: Callable[[int, int], None] | None = None,
           paired: PairedDenoiser | None = None) -> torch.Tensor:
    """Run the reverse chain from ``noise`` (B, C, T) and return the normalised mel (B, C, T) in [-1, 1].

    ``cond_free_k=None`` disables conditioning-free guidance; with guidance, ``paired`` (optional) evaluates both
    passes of a step in one call instead of two calls of ``denoiser``. ``generator`` feeds DDPM's per-step noise.
    ``on_step``, if given, hears (steps done, steps in the chain) after every step (it may raise, to stop).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}. Available: {', '.join(SAMPLERS)}.")
    # DDPM and DDIM walk upstream's evenly spaced timesteps (DDIM equals upstream's ddim_sample_loop there);
    # DPM++(2M) takes equal steps in log-SNR, where its second-order updates pay off (tests/test_diffusion_sampler.py).
    schedule = Schedule.log_snr_spaced(steps) if sampler == "dpm++2m" else Schedule.spaced(steps)
    step_fn = {"ddpm": _ddpm_step, "ddim": _ddim_step, "dpm++2m": _DpmSolver2M()}[sampler]
    if generator is None:
        generator = torch.Generator(device=noise.device).manual_seed(0)
    def guided(x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _guided_output(denoiser, paired, x, step, schedule, cond_free_k)

    x = noise
    with torch.no_grad():
        for step in tqdm(range(len(schedule) - 1, -1, -1), desc=f"diffusion ({sampler})", disable=not progress,
                         leave=False):
            x = step_fn(x, step, schedule, guided, generator)
            if on_step is not None:
                on_step(len(schedule) - step, len(schedule))
    return x
