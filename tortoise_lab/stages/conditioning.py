"""Stage: voice -> conditioning latents, what the autoregressive model and the mel decoder know of a voice.

Each clip (22.05 kHz mono) gives two mels: the 80-band conditioning mel over a 6 s window for the
autoregressive model, and the 100-band UnivNet mel over a ~4.3 s window of the clip resampled to 24 kHz for
the diffusion decoder. Each model encodes its mels and averages over clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from tortoise_lab.audio import CONDITIONING_SAMPLES, conditioning_mel, diffusion_conditioning_mel
from tortoise_lab.models.diffusion import DiffusionDecoder
from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.voices import LatentCache, Voice

if TYPE_CHECKING:
    from tortoise_lab.model_set import ModelSet

__all__ = ["ConditioningLatents", "crop_starts", "conditioning_mels", "encode_mels", "conditioning_latents",
           "voice_latents"]


@dataclass(frozen=True)
class ConditioningLatents:
    """autoregressive: (1, gpt model_dim); diffusion: (1, 2 * diffusion model_channels), or None for a model set
    without a diffusion decoder (the embedded model: only its AR model listens to the voice)."""

    autoregressive: torch.Tensor
    diffusion: torch.Tensor | None


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


def voice_latents(models: "ModelSet", voice: Voice, generator: torch.Generator, want_mels: bool = False,
                  cache: bool = True, diffusion: bool = True) -> tuple[ConditioningLatents, torch.Tensor | None]:
    """(latents, AR conditioning mels (1, n_clips, 80, T) for CVVP when ``want_mels``, else None).

    Blends are the weighted sums of their parts' latents. Clip voices go through the latent cache. Clips longer
    than the 6 s window are cropped at starts drawn from a generator seeded by the clips themselves (upstream
    draws them at random): a voice always gives the same latents, and the run's generator is not touched, so
    caching cannot change the output. With ``diffusion`` False (a chain that does not read it, as upstream's fast
    path) a random voice draws only the autoregressive latent from the run's generator, and a clip voice with the
    cache off encodes only it.
    """
    device = models.device
    if voice.parts:
        blended = [(voice_latents(models, part, generator, want_mels, cache, diffusion), weight)
                   for part, weight in voice.parts]
        diffusion = None
        if all(l.diffusion is not None for (l, _), _ in blended):
            diffusion = sum(w * l.diffusion for (l, _), w in blended)
        latents = ConditioningLatents(sum(w * l.autoregressive for (l, _), w in blended), diffusion)
        mels = [m for (_, m), _ in blended if m is not None]
        return latents, torch.cat(mels, dim=1) if mels else None
    if voice.latents is not None:
        ar, diffusion = (t.to(device) for t in voice.latents)
        return ConditioningLatents(ar.reshape(1, -1), diffusion.reshape(1, -1)), None
    if voice.is_random:
        rlg_ar, rlg_diffusion = models.random_latents
        autoregressive = rlg_ar(1, generator)
        return ConditioningLatents(autoregressive, rlg_diffusion(1, generator) if diffusion else None), None
    crops = torch.Generator().manual_seed(int(voice.clip_hash()[:15], 16))
    starts = crop_starts(voice.clips, crops)
    store = LatentCache(models.fingerprint, enabled=cache and models.diffusion is not None)
    cached = store.load(voice)
    if cached is not None and not want_mels:
        return ConditioningLatents(*(t.to(device) for t in cached)), None
    ar_mels, diffusion_mels = conditioning_mels(voice.clips, starts)
    if cached is not None:
        latents = ConditioningLatents(*(t.to(device) for t in cached))
    elif models.diffusion is None or not (diffusion or store.enabled):
        # No diffusion decoder, or a chain that does not read its latent (the fast path) with no cache to fill: the
        # AR latent alone, which upstream's fast path computes too (the diffusion encoder would be most of the
        # time). With the cache on, both are made once and stored, and every later run reads them.
        latents = ConditioningLatents(models.gpt.conditioning_latent(ar_mels.to(device)), None)
    else:
        latents = encode_mels(ar_mels, diffusion_mels, models.gpt, models.diffusion)
        store.store(voice, latents.autoregressive, latents.diffusion)
    return latents, ar_mels.to(device)
