"""From the embedded model's codes to audio without the diffusion decoder and UnivNet: codebook lookup
(``models.quantizer``), then Griffin-Lim (``models.griffin_lim``)."""

from __future__ import annotations

import torch

from tortoise_lab.models.griffin_lim import GRIFFIN_LIM_ITERATIONS, griffin_lim

__all__ = ["speak_codes"]


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
