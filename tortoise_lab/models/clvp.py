"""CLVP: contrastive text/speech-code model that scores how well AR candidates match the text.

Both sides are the same recipe: token embedding -> ``TransformerEncoder`` -> mean over time -> linear
projection -> unit length. A candidate's score is the cosine similarity of its speech latent with the text
latent, times a learned temperature ``exp(temperature)``.

This is the ``use_xformers=True`` model of upstream (the one ``clvp2.pth`` holds): no learned position
embeddings (rotary positions inside the encoder instead), so the sequence lengths are not bounded by the model.
At inference upstream attends to and averages over every position, padding included: the text as tokenized
(upstream appends one 0 token), the codes at their full padded length after ``fix_autoregressive_output``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.models.encoder import TransformerEncoder

__all__ = ["CLVPConfig", "CLVP"]


@dataclass(frozen=True)
class CLVPConfig:
    num_text_tokens: int = 256  # the tokenizer's 255 ids plus the AR model's start-of-text id
    num_speech_tokens: int = 8192  # DVAE codebook size (the AR stop token 8193 never reaches CLVP)
    dim_text: int = 768
    dim_speech: int = 768
    dim_latent: int = 768
    text_depth: int = 20
    speech_depth: int = 20
    text_heads: int = 12
    speech_heads: int = 12
    dim_head: int = 64  # upstream's x-transformers default; not tied to the width
    ff_mult: int = 2

    @classmethod
    def from_name(cls, name: str) -> "CLVPConfig":
        if name not in CLVP_PRESETS:
            raise ValueError(f"Unknown CLVP config {name!r}. Available: {', '.join(CLVP_PRESETS)}")
        return cls(**CLVP_PRESETS[name])


CLVP_PRESETS: dict[str, dict] = {
    "tortoise-v2": {},
    # Same structure, small widths; dim_head stays 64 because rotary positions turn 32 channels per head.
    "tiny": dict(dim_text=32, dim_speech=48, dim_latent=24, text_depth=2, speech_depth=2, text_heads=2, speech_heads=2),
}


class CLVP(nn.Module):
    """Scores (text, speech codes) pairs; parameter names follow ``clvp2.pth`` after ``FORMATS["clvp"]``."""

    def __init__(self, config: CLVPConfig):
        super().__init__()
        c = config
        self.config = config
        self.text_emb = nn.Embedding(c.num_text_tokens, c.dim_text)
        self.text_transformer = TransformerEncoder(c.dim_text, c.text_depth, c.text_heads, c.dim_head, c.ff_mult)
        self.to_text_latent = nn.Linear(c.dim_text, c.dim_latent, bias=False)
        self.speech_emb = nn.Embedding(c.num_speech_tokens, c.dim_speech)
        self.speech_transformer = TransformerEncoder(
            c.dim_speech, c.speech_depth, c.speech_heads, c.dim_head, c.ff_mult
        )
        self.to_speech_latent = nn.Linear(c.dim_speech, c.dim_latent, bias=False)
        # Stored as a log: the similarity is multiplied by exp(temperature).
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def embed_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """text_tokens (B, Tt) int -> unit-length text latents (B, dim_latent)."""
        encoded = self.text_transformer(self.text_emb(text_tokens))  # (B, Tt, dim_text)
        return F.normalize(self.to_text_latent(encoded.mean(dim=1)), dim=-1)

    def embed_speech(self, mel_codes: torch.Tensor) -> torch.Tensor:
        """mel_codes (B, Tm) int -> unit-length speech latents (B, dim_latent)."""
        encoded = self.speech_transformer(self.speech_emb(mel_codes))  # (B, Tm, dim_speech)
        return F.normalize(self.to_speech_latent(encoded.mean(dim=1)), dim=-1)

    def similarity(self, text_latents: torch.Tensor, speech_latents: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled cosine similarity of (B or 1, D) text and (B, D) speech latents -> (B,).

        A single text latent broadcasts over the candidates, so the text side can be encoded once.
        """
        return (text_latents * speech_latents).sum(dim=-1) * self.temperature.exp()

    def score(self, text_tokens: torch.Tensor, mel_codes: torch.Tensor) -> torch.Tensor:
        """text_tokens (B or 1, Tt), mel_codes (B, Tm) -> (B,) scores, higher meaning a better match.

        Equals upstream ``clvp(text, codes, return_loss=False)`` in eval mode.
        """
        return self.similarity(self.embed_text(text_tokens), self.embed_speech(mel_codes))

    forward = score
