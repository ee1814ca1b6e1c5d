"""Layers shared by several TorToiSe networks: group norm, channel attention with a relative position bias.

Parameter names follow the official checkpoints (``norm``, ``qkv``, ``proj_out``,
``relative_pos_embeddings.relative_attention_bias``) so that their state dicts load without renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32 whatever the input dtype (half inputs lose too much in the variance)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def group_count(channels: int) -> int:
    """The number of groups TorToiSe uses for ``channels``: 32, fewer for narrow layers, always a divisor."""
    groups = 8 if channels <= 16 else 16 if channels <= 64 else 32
    while channels % groups:
        groups //= 2
    if groups <= 2:
        raise ValueError(f"{channels} channels cannot be split into more than 2 groups")
    return groups


def normalization(channels: int) -> GroupNorm32:
    return GroupNorm32(group_count(channels), channels)


class RelativePositionBias(nn.Module):
    """T5-style learned bias per (head, bucketed key-minus-query offset), added to attention scores.

    Offsets up to ``num_buckets // 4`` each get a bucket; larger ones share log-spaced buckets up to
    ``max_distance``. Non-causal: the sign of the offset picks one half of the buckets.
    """

    def __init__(self, heads: int, scale: float, num_buckets: int = 32, max_distance: int = 64):
        super().__init__()
        self.scale = scale
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def buckets(self, query_len: int, key_len: int, device: torch.device) -> torch.Tensor:
        """Bucket index of every (query, key) pair, shape (query_len, key_len)."""
        offset = torch.arange(key_len, device=device)[None, :] - torch.arange(query_len, device=device)[:, None]
        half = self.num_buckets // 2
        # Keys after the query (offset > 0) use the upper half of the buckets.
        side = (offset > 0).long() * half
        distance = offset.abs()
        exact = half // 2
        log_bucket = exact + (
            torch.log(distance.float() / exact) / math.log(self.max_distance / exact) * (half - exact)
        ).long()
        log_bucket = log_bucket.clamp(max=half - 1)
        return side + torch.where(distance < exact, distance, log_bucket)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """scores: (B, H, Tq, Tk) -> scores plus the bias."""
        query_len, key_len = scores.shape[-2:]
        bias = self.relative_attention_bias(self.buckets(query_len, key_len, scores.device))  # (Tq, Tk, H)
        return scores + bias.permute(2, 0, 1).unsqueeze(0) * self.scale


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention over the time axis of a (B, C, T) feature map, with a residual."""

    def __init__(self, channels: int, num_heads: int = 1, relative_position_bias: bool = False):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        head_dim = channels // num_heads
        self.relative_pos_embeddings = (
            RelativePositionBias(num_heads, scale=head_dim**0.5) if relative_position_bias else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        heads = self.num_heads
        head_dim = channels // heads
        qkv = self.qkv(self.norm(x))  # (B, 3C, T), laid out head by head: [q_h k_h v_h] for each h
        q, k, v = qkv.reshape(batch, heads, 3 * head_dim, length).split(head_dim, dim=2)  # each (B, H, D, T)
        # Scale q and k each by D^-1/4 rather than the product by D^-1/2: gentler on fp16.
        scale = head_dim**-0.25
        scores = torch.einsum("bhdt,bhds->bhts", q * scale, k * scale)  # (B, H, T, T)
        if self.relative_pos_embeddings is not None:
            scores = self.relative_pos_embeddings(scores)
        weights = torch.softmax(scores.float(), dim=-1).type(scores.dtype)
        attended = torch.einsum("bhts,bhds->bhdt", weights, v).reshape(batch, channels, length)
        return x + self.proj_out(attended)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU: the tanh approximation."""
    return F.gelu(x, approximate="tanh")
