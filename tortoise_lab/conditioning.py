"""Voice clips -> conditioning latents: what the autoregressive model and the diffusion decoder know of a voice.

Each clip (22.05 kHz mono) gives two mels: the 80-band conditioning mel over a 6 s window for the
autoregressive model, and the 100-band UnivNet mel over a ~4.3 s window of the clip resampled to 24 kHz for
the diffusion decoder. Each model encodes its mels and averages over clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tortoise_lab.audio import CONDITIONING_SAMPLES, conditioning_mel, diffusion_conditioning_mel
from tortoise_lab.models.diffusion import DiffusionDecoder
from tortoise_lab.models.gpt import UnifiedVoice

__all__ = ["ConditioningLatents", "crop_starts", "conditioning_mels", "encode_mels", "conditioning_latents"]


@dataclass(frozen=True)
class ConditioningLatents:
    """autoregressive: (1, gpt model_dim); diffusion: (1, 2 * diffusion model_channels)."""

    autoregressive: torch.Tensor
    diffusion: torch.Tensor


def crop_starts(clips: list[torch.Tensor], generator: torch.Generator | None) -> list[int]:
    """Where each clip's 6 s conditioning window starts: a seeded draw for longer clips (upstream draws one
    at random too), 0 for clips that fit."""
    starts = []
    for clip in clips:
        excess = clip.shape[-1] - CONDITIONING_SAMPLES
        if excess > 0 and generator is not None:
            starts.append(int(torch.randint(0, excess + 1, (1,), generator=generator)))
        else:
            starts.append(0)
    return starts


def conditioning_mels(clips: list[torch.Tensor], starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, n_clips, 80, 517) autoregressive mels and (1, n_clips, 100, 401) diffusion mels."""
    if not clips:
        raise ValueError("A voice needs at least one clip.")
    ar = torch.stack([conditioning_mel(clip, start) for clip, start in zip(clips, starts)]).unsqueeze(0)
    diffusion = torch.stack([diffusion_conditioning_mel(clip) for clip in clips]).unsqueeze(0)
    return ar, diffusion


@torch.no_grad()
def encode_mels(ar_mels: torch.Tensor, diffusion_mels: torch.Tensor, gpt: UnifiedVoice,
                diffusion: DiffusionDecoder) -> ConditioningLatents:
    """Both encoders over the mels of ``conditioning_mels``, averaged over clips."""
    device = next(gpt.parameters()).device
    return ConditioningLatents(
        autoregressive=gpt.conditioning_latent(ar_mels.to(device)),
        diffusion=diffusion.conditioning_embedding(diffusion_mels.to(device)),
    )


def conditioning_latents(clips: list[torch.Tensor], gpt: UnifiedVoice, diffusion: DiffusionDecoder,
                         generator: torch.Generator | None = None) -> ConditioningLatents:
    """Encode 22.05 kHz clips ((1, N) each) into the two conditioning latents."""
    return encode_mels(*conditioning_mels(clips, crop_starts(clips, generator)), gpt, diffusion)
