"""CVVP: contrastive voice/speech-code model that scores how well AR candidates match the reference voice.

The voice side reads a conditioning mel (the same 80-band, 22.05 kHz mel the AR model is conditioned on),
the speech side reads the candidate's codes. Each side: embedding -> ``TransformerEncoder`` ->
1x1 conv, channel attention, 1x1 conv -> mean over time -> linear projection -> unit length. A score is
the cosine similarity times ``exp(temperature)``.

Upstream runs the voice side once per reference clip and averages the scores over clips; that loop belongs
to the caller (``score`` of one clip broadcasts over candidates). Its ``latent_multiplier`` is 1 in the
official config (other values cannot work: the voice side's output width ignores it), so latents are
``model_dim`` wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.models.encoder import TransformerEncoder
from tortoise_lab.models.layers import AttentionBlock

__all__ = ["CVVPConfig", "CVVP"]

# Two strided convs shrink the conditioning mel 4x in time before the encoder.
COND_EMB_KERNELS = (5, 3)
COND_EMB_STRIDE = 2


@dataclass(frozen=True)
class CVVPConfig:
    model_dim: int = 512
    heads: int = 8
    conditioning_depth: int = 8
    speech_depth: int = 8
    mel_channels: int = 80
    mel_codes: int = 8192  # DVAE codebook size
    dim_head: int = 64  # upstream's x-transformers default; not tied to the width
    ff_mult: int = 1

    @classmethod
    def from_name(cls, name: str) -> "CVVPConfig":
        if name not in CVVP_PRESETS:
            raise ValueError(f"Unknown CVVP config {name!r}. Available: {', '.join(CVVP_PRESETS)}")
        return cls(**CVVP_PRESETS[name])


CVVP_PRESETS: dict[str, dict] = {
    "tortoise-v2": {},
    # Same structure, small widths; dim_head stays 64 because rotary positions turn 32 channels per head.
    "tiny": dict(model_dim=32, heads=2, conditioning_depth=2, speech_depth=2),
}


class PooledEncoder(nn.Module):
    """(B, T, C) -> (B, C): encoder, then 1x1 conv / channel attention / 1x1 conv, then mean over time."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.transformer = TransformerEncoder(dim, depth, heads, dim_head, ff_mult)
        self.pre_combiner = nn.Sequential(
            nn.Conv1d(dim, dim, 1),
            AttentionBlock(dim, num_heads=heads),
            nn.Conv1d(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(x).transpose(1, 2)  # (B, C, T)
        return self.pre_combiner(hidden).mean(dim=2)  # (B, C)


class CVVP(nn.Module):
    """Scores (conditioning mel, speech codes) pairs; parameter names follow ``cvvp.pth`` after ``FORMATS["cvvp"]``."""

    def __init__(self, config: CVVPConfig):
        super().__init__()
        c = config
        self.config = config
        self.temperature = nn.Parameter(torch.tensor(1.0))  # a log: similarities are scaled by exp(temperature)
        (k1, k2), stride = COND_EMB_KERNELS, COND_EMB_STRIDE
        self.cond_emb = nn.Sequential(
            nn.Conv1d(c.mel_channels, c.model_dim // 2, k1, stride=stride, padding=k1 // 2),
            nn.Conv1d(c.model_dim // 2, c.model_dim, k2, stride=stride, padding=k2 // 2),
        )
        self.conditioning_transformer = PooledEncoder(c.model_dim, c.conditioning_depth, c.heads, c.dim_head, c.ff_mult)
        self.to_conditioning_latent = nn.Linear(c.model_dim, c.model_dim, bias=False)
        self.speech_emb = nn.Embedding(c.mel_codes, c.model_dim)
        self.speech_transformer = PooledEncoder(c.model_dim, c.speech_depth, c.heads, c.dim_head, c.ff_mult)
        self.to_speech_latent = nn.Linear(c.model_dim, c.model_dim, bias=False)

    def embed_conditioning(self, cond_mels: torch.Tensor) -> torch.Tensor:
        """cond_mels (B, mel_channels, T) -> unit-length voice latents (B, model_dim)."""
        embedded = self.cond_emb(cond_mels).transpose(1, 2)  # (B, ceil(T/4), C)
        return F.normalize(self.to_conditioning_latent(self.conditioning_transformer(embedded)), dim=-1)

    def embed_speech(self, mel_codes: torch.Tensor) -> torch.Tensor:
        """mel_codes (B, Tm) int -> unit-length speech latents (B, model_dim)."""
        embedded = self.speech_emb(mel_codes)  # (B, Tm, C)
        return F.normalize(self.to_speech_latent(self.speech_transformer(embedded)), dim=-1)

    def similarity(self, cond_latents: torch.Tensor, speech_latents: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled cosine similarity of (B or 1, D) voice and (B, D) speech latents -> (B,)."""
        return (cond_latents * speech_latents).sum(dim=-1) * self.temperature.exp()

    def score(self, cond_mels: torch.Tensor, mel_codes: torch.Tensor) -> torch.Tensor:
        """cond_mels (B or 1, mel_channels, T), mel_codes (B, Tm) -> (B,) scores for one reference clip.

        Equals upstream ``cvvp(cond_mel, codes, return_loss=False)`` in eval mode.
        """
        return self.similarity(self.embed_conditioning(cond_mels), self.embed_speech(mel_codes))

    forward = score
