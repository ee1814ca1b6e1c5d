"""Griffin-Lim: the embedded model's vocoder. Inverts a 100-band UnivNet log mel (24 kHz, hop 256, FFT 1024):
magnitudes through the pseudo-inverse of the mel filters, then phase recovery by fast Griffin-Lim, so the audio is
24 kHz like the official vocoder's. No weights: it needs nothing but the mel.
"""

from __future__ import annotations

import functools

import torch
import torchaudio.functional as AF

from tortoise_lab.audio import HOP_LENGTH, MEL_FMIN, N_FFT, OUTPUT_SAMPLE_RATE, UNIVNET_FMAX, UNIVNET_MELS, WIN_LENGTH

__all__ = ["griffin_lim", "GRIFFIN_LIM_ITERATIONS"]

GRIFFIN_LIM_ITERATIONS = 60
GRIFFIN_LIM_MOMENTUM = 0.99  # "fast Griffin-Lim": converges in far fewer iterations than plain (momentum 0)
PEAK = 0.95  # louder output is scaled down to this peak (least-squares magnitudes can overshoot)


@functools.lru_cache(maxsize=1)
def _inverse_filters() -> torch.Tensor:
    """(513, 100): least-squares inverse of the UnivNet mel filters (the same filters ``univnet_mel`` uses)."""
    filters = AF.melscale_fbanks(N_FFT // 2 + 1, MEL_FMIN, UNIVNET_FMAX, UNIVNET_MELS, OUTPUT_SAMPLE_RATE,
                                 norm="slaney", mel_scale="slaney").T  # (100, 513)
    return torch.linalg.pinv(filters)


def griffin_lim(log_mel: torch.Tensor, iterations: int = GRIFFIN_LIM_ITERATIONS) -> torch.Tensor:
    """(100, F) UnivNet log mel -> (1, (F - 1) * 256) 24 kHz audio. Deterministic (zero initial phase)."""
    magnitude = (_inverse_filters() @ log_mel.float().exp()).clamp_min(0)  # (513, F)
    window = torch.hann_window(WIN_LENGTH, periodic=True)
    wav = AF.griffinlim(magnitude, window, N_FFT, HOP_LENGTH, WIN_LENGTH, power=1.0, n_iter=iterations,
                        momentum=GRIFFIN_LIM_MOMENTUM, length=None, rand_init=False)
    peak = wav.abs().max()
    if peak > PEAK:  # only ever turned down, so the level the mel asks for is kept
        wav = wav * (PEAK / peak)
    return wav.unsqueeze(0)
