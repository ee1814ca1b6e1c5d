"""From the embedded model's codes to audio without the diffusion decoder and UnivNet: codebook lookup, then
Griffin-Lim.

``codes_to_mel`` is the quantiser's decode (each code -> its centroid's ``stack`` frames of 100-band log mel);
``griffin_lim`` inverts that log mel: magnitudes through the pseudo-inverse of the mel filters, then phase
recovery by fast Griffin-Lim. The mel is the UnivNet mel (24 kHz, hop 256, FFT 1024), so the audio is 24 kHz like
the pipeline's.
"""

from __future__ import annotations

import functools

import torch
import torchaudio.functional as AF

from tortoise_lab.audio import HOP_LENGTH, N_FFT, OUTPUT_SAMPLE_RATE, UNIVNET_FMAX, UNIVNET_MELS, WIN_LENGTH, MEL_FMIN

__all__ = ["griffin_lim", "speak_codes", "GRIFFIN_LIM_ITERATIONS"]

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


@torch.no_grad()
def speak_codes(gpt, quantizer, cond_latent: torch.Tensor, text_tokens: torch.Tensor, max_codes: int | None = None,
                iterations: int = GRIFFIN_LIM_ITERATIONS, **sampling) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The embedded model's whole decode for one prompt: AR codes (greedy unless ``sampling`` says otherwise, e.g.
    ``greedy=False, temperature=0.8, generator=g``) cut at the stop code -> codebook mel -> Griffin-Lim.

    cond_latent: (1, C); text_tokens: (1, T) as ``TextToSpeech.text_tokens`` gives them. Returns
    ((1, N) 24 kHz audio, (L,) codes, whether the stop code came).
    """
    from tortoise_lab.sampling import generate_codes
    from tortoise_lab.train.evaluate import codes_until_stop

    limit = min(max_codes or gpt.config.max_mel_tokens, gpt.config.max_mel_tokens)
    sampling.setdefault("greedy", True)
    row = generate_codes(gpt, cond_latent, text_tokens, limit, **sampling)[0]
    codes, stopped = codes_until_stop(row, gpt.config.stop_mel_token)
    if len(codes) == 0:
        return torch.zeros(1, 0), codes, stopped
    return griffin_lim(quantizer.decode(codes), iterations), codes, stopped
