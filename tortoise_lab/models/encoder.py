"""The bidirectional transformer encoder inside both ranking models (CLVP and CVVP).

Upstream builds it from a vendored copy of x-transformers with the options ``use_rmsnorm``, ``ff_glu`` and
``rotary_pos_emb`` switched on. At inference that amounts to a plain pre-norm encoder:

    for each of ``depth`` blocks:   x = x + Attention(RMSNorm(x));   x = x + GluFeedForward(RMSNorm(x))
    then a final LayerNorm.

Only these paths exist here. Dropout (CLVP's 0.1) acts only in training; memory tokens, relative position
bias and the other x-transformers options are off in the official configs. Every position attends to every
other: at inference upstream passes an all-true mask, which changes nothing.

Layout of the parameters: ``layers`` alternates attention (even index) and feed-forward (odd index)
sub-layers, exactly as upstream numbers them, so official keys translate with plain regexes (the
``_XTRANSFORMER_RENAMES`` of ``tortoise_lab.checkpoints``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TransformerEncoder", "RMSNorm"]

# x-transformers' rotary embedding turns at least this many channels of each head, whatever the head size.
MIN_ROTARY_DIM = 32
ROTARY_BASE = 10_000
RMS_EPS = 1e-8


class RMSNorm(nn.Module):
    """x / rms(x) * g over the last axis, the rms clamped below at ``eps`` (not added inside the root)."""

    def __init__(self, dim: int, eps: float = RMS_EPS):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        return x / rms.clamp(min=self.eps) * self.g


class RotaryEmbedding(nn.Module):
    """Rotary position angles for the first ``dim`` channels of each head.

    ``inv_freq`` is a persistent buffer because the official checkpoints store it; we use the stored values.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / ROTARY_BASE ** (torch.arange(0, dim, 2).float() / dim))

    def forward(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (cos, sin), each (T, rotary_dim), for positions 0..length-1."""
        positions = torch.arange(length, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        angles = positions[:, None] * self.inv_freq[None, :]  # (T, rotary_dim / 2)
        # Each frequency serves two channels, one in each half of the rotated slice.
        angles = torch.cat((angles, angles), dim=-1)  # (T, rotary_dim)
        return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` channels of x (..., T, D) by the angles; pass the rest through.

    The rotated slice is split into halves (a, b) and mixed as (a, b) * cos + (-b, a) * sin.
    """
    rotary_dim = cos.shape[-1]
    turned, kept = x[..., :rotary_dim], x[..., rotary_dim:]
    first, second = turned.chunk(2, dim=-1)
    swapped = torch.cat((-second, first), dim=-1)
    return torch.cat((turned * cos + swapped * sin, kept), dim=-1)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention with rotary positions; returns only the branch (no residual)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C); cos, sin: (T, rotary_dim) -> (B, T, C)."""
        batch, length, _ = x.shape
        x = self.norm(x)

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, -1).transpose(1, 2)  # (B, H, T, D)

        q, k, v = (split_heads(proj(x)) for proj in (self.to_q, self.to_k, self.to_v))
        # Upstream rotates the values too, not only queries and keys; the checkpoints were trained that way.
        q, k, v = (rotate(t, cos, sin) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, D), scale D^-0.5 as upstream
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))


class GluFeedForward(nn.Module):
    """Pre-norm feed-forward with a GELU-gated linear unit: proj_out(a * gelu(gate)), [a, gate] = proj_in(x)."""

    def __init__(self, dim: int, mult: int):
        super().__init__()
        inner = dim * mult
        self.norm = RMSNorm(dim)
        self.proj_in = nn.Linear(dim, 2 * inner)
        self.proj_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        value, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)  # each (B, T, mult*C)
        return self.proj_out(value * F.gelu(gate))


class TransformerEncoder(nn.Module):
    """``depth`` pre-norm blocks of rotary self-attention and GLU feed-forward, then a LayerNorm.

    Args:
        dim: model width C.
        depth: number of (attention, feed-forward) blocks.
        heads: attention heads.
        dim_head: channels per head; independent of ``dim`` (upstream always uses 64).
        ff_mult: feed-forward inner width as a multiple of ``dim``.
    """

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        rotary_dim = max(dim_head // 2, MIN_ROTARY_DIM)
        if rotary_dim > dim_head:
            raise ValueError(f"dim_head={dim_head} is too small: rotary positions turn {rotary_dim} channels per head")
        self.rotary = RotaryEmbedding(rotary_dim)
        sublayers: list[nn.Module] = []
        for _ in range(depth):
            sublayers += [SelfAttention(dim, heads, dim_head), GluFeedForward(dim, ff_mult)]
        self.layers = nn.ModuleList(sublayers)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) embeddings -> (B, T, C) encoded."""
        cos, sin = self.rotary(x.shape[1])
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for layer in self.layers:
            x = x + (layer(x, cos, sin) if isinstance(layer, SelfAttention) else layer(x))
        return self.norm(x)

