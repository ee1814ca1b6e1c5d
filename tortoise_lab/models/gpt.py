"""UnifiedVoice: TorToiSe's autoregressive model, a GPT-2 decoder over [voice, text, mel codes].

One causal sequence per sample::

    [cond_latent] [start_text, text_tokens..., stop_text] [start_mel, mel_codes..., (stop_mel)]
      1 vector     text positions 0..T+1                   mel positions 0..L(+1)

The voice enters as a single conditioning vector (the mean over reference clips of a small attention encoder
over their mels). Text and mel codes each have their own token and learned position tables; GPT-2's own position
table is unused (its positions are zero), so a token's position is whatever its table says.

Parameter names equal the official ``autoregressive.pth`` names, and the GPT-2 linear layers keep GPT-2's
``[in, out]`` weight layout, so the file loads with no renames and no transposes (the layout DeepSpeed's
inference kernels expect too).

Decoding is split gpt-fast style: ``decode(embeddings, input_pos)`` runs the transformer over embeddings written
at explicit sequence slots of a static ``KVCache`` (set up with ``setup_caches``); with no cache it runs plainly
over the whole causal sequence. The sampling loop lives in ``tortoise_lab.stages.sampling``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.models.layers import AttentionBlock, gelu_tanh

__all__ = ["GPTConfig", "UnifiedVoice", "KVCache", "ARLogits"]

MEL_CHANNELS = 80  # the conditioning encoder reads 80-bin mels
TEXT_TOKEN_TYPES = 1  # upstream can widen the text vocabulary per "type"; TorToiSe v2 uses one


@dataclass
class GPTConfig:
    layers: int = 30
    model_dim: int = 1024
    heads: int = 16
    max_mel_tokens: int = 604
    max_text_tokens: int = 402
    # How many conditioning vectors the mel position table leaves room for (only one is ever used).
    max_conditioning_inputs: int = 2
    number_text_tokens: int = 255  # text vocabulary without the start token
    start_text_token: int = 255
    stop_text_token: int = 0
    number_mel_codes: int = 8194  # 8192 DVAE codes + start + stop
    start_mel_token: int = 8192
    stop_mel_token: int = 8193
    conditioning_blocks: int = 6
    # Audio samples per mel code (DVAE stride 4 x mel hop 256); used to turn code counts into wav lengths.
    mel_length_compression: int = 1024
    layer_norm_eps: float = 1e-5  # GPT-2's blocks; final_norm uses torch's default, the same value

    @classmethod
    def from_name(cls, name: str) -> "GPTConfig":
        if name not in PRESETS:
            raise ValueError(f"Unknown GPT config {name!r}. Available: {', '.join(PRESETS)}")
        return cls(**PRESETS[name])

    def __post_init__(self) -> None:
        if self.model_dim % self.heads:
            raise ValueError(f"model_dim {self.model_dim} does not split into {self.heads} heads")
        self.head_dim = self.model_dim // self.heads
        self.text_vocab_size = self.number_text_tokens * TEXT_TOKEN_TYPES + 1  # + the start token
        # Room for start and stop tokens (+2) and, for mels, the conditioning inputs: upstream sizes them so.
        self.mel_positions = self.max_mel_tokens + 2 + self.max_conditioning_inputs
        self.text_positions = self.max_text_tokens + 2

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Token ids and vocabulary sizes are the same in every preset, so real tokenizer ids work in tests.
PRESETS: dict[str, dict] = {
    "tortoise-v2": dict(layers=30, model_dim=1024, heads=16, max_mel_tokens=604, max_text_tokens=402),
    "tiny": dict(layers=2, model_dim=64, heads=4, max_mel_tokens=60, max_text_tokens=40),
}


class ARLogits(NamedTuple):
    text: torch.Tensor  # (B, T+2, text_vocab_size): next-token logits at every text input
    mel: torch.Tensor  # (B, L+2, number_mel_codes): next-code logits at every mel input


class InOutLinear(nn.Module):
    """A linear layer with GPT-2's weight layout: ``weight`` is [in, out] and y = x @ weight + bias."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class KVCache(nn.Module):
    """Preallocated keys and values of one attention layer, (B, H, max_seq_len, D), written at ``input_pos``.

    Buffers are non-persistent: a cache is scratch space, not weights, and must not show up in state dicts.
    """

    def __init__(self, batch_size: int, heads: int, max_seq_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        shape = (batch_size, heads, max_seq_len, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def max_seq_len(self) -> int:
        return self.k_cache.shape[2]

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B or 1, H, T, D) at slots ``input_pos`` (T,) of every row; return the whole caches
        (B, H, S, D)."""
        self.k_cache[:, :, input_pos] = k
        self.v_cache[:, :, input_pos] = v
        return self.k_cache, self.v_cache


def cache_mask(input_pos: torch.Tensor, slots: int) -> torch.Tensor:
    """(T, slots) bool: the cache slots each of the T queries at ``input_pos`` (T,) sees, those up to its own. Slots
    not yet written lie beyond every query's own, so the same mask hides them."""
    return torch.arange(slots, device=input_pos.device)[None, :] <= input_pos[:, None]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.c_attn = InOutLinear(config.model_dim, 3 * config.model_dim)  # [q | k | v], heads inside each
        self.c_proj = InOutLinear(config.model_dim, config.model_dim)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, C). With ``input_pos`` (T,) the keys and values go through the cache, and ``mask`` (T, S) is
        ``cache_mask(input_pos, S)`` (made here when not given); else T is the sequence."""
        batch, length, channels = x.shape
        q, k, v = self.c_attn(x).split(channels, dim=-1)  # each (B, T, C)
        q, k, v = (t.view(batch, length, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if input_pos is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if self.kv_cache is None:
                raise RuntimeError("decode() was given input_pos but no KV cache is set up; call setup_caches() first")
            k, v = self.kv_cache.update(input_pos, k, v)  # (B_cache, H, S, D)
            # A shared prompt runs as one row and is written into every row of the cache (the write broadcasts);
            # it attends to its own row only.
            k, v = k[:batch], v[:batch]
            if mask is None:
                mask = cache_mask(input_pos, k.shape[2])
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, length, channels)  # (B, T, C)
        return self.c_proj(out)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = InOutLinear(config.model_dim, 4 * config.model_dim)
        self.c_proj = InOutLinear(4 * config.model_dim, config.model_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(gelu_tanh(self.c_fc(x)))


class Block(nn.Module):
    """A pre-norm GPT-2 block."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.model_dim, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.model_dim, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), input_pos, mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """GPT-2's block stack and final norm; no token or position tables (UnifiedVoice has its own)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.h = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.model_dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        mask = None
        if input_pos is not None and len(self.h) and self.h[0].attn.kv_cache is not None:
            mask = cache_mask(input_pos, self.h[0].attn.kv_cache.max_seq_len)  # once, not once per layer
        for block in self.h:
            x = block(x, input_pos, mask)
        return self.ln_f(x)


class LearnedPositions(nn.Module):
    def __init__(self, length: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(length, dim)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """positions: (T,) long -> (T, C)."""
        return self.emb(positions)


class ConditioningEncoder(nn.Module):
    """(B, 80, T) mel -> (B, C): a 1x1 projection, self-attention blocks, and the first frame's features."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.init = nn.Conv1d(MEL_CHANNELS, config.model_dim, kernel_size=1)
        self.attn = nn.Sequential(*(AttentionBlock(config.model_dim, config.heads)
                                    for _ in range(config.conditioning_blocks)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.attn(self.init(mel))[:, :, 0]


class UnifiedVoice(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        dim = config.model_dim
        self.conditioning_encoder = ConditioningEncoder(config)
        self.text_embedding = nn.Embedding(config.text_vocab_size, dim)
        self.mel_embedding = nn.Embedding(config.number_mel_codes, dim)
        self.gpt = Transformer(config)
        self.mel_pos_embedding = LearnedPositions(config.mel_positions, dim)
        self.text_pos_embedding = LearnedPositions(config.text_positions, dim)
        self.final_norm = nn.LayerNorm(dim)
        self.text_head = nn.Linear(dim, config.text_vocab_size)
        self.mel_head = nn.Linear(dim, config.number_mel_codes)

    # --- conditioning -------------------------------------------------------------------------------------

    def conditioning_latent(self, cond_mels: torch.Tensor) -> torch.Tensor:
        """(B, n_clips, 80, T) or (B, 80, T) reference mels -> (B, C): the encoder's output averaged over clips."""
        if cond_mels.dim() == 3:
            cond_mels = cond_mels.unsqueeze(1)
        batch, clips = cond_mels.shape[:2]
        # One clip at a time, as upstream does: the same numbers (each clip's attention is its own), and a fifth
        # faster on a CPU at the official size, where a clip's (16, 517, 517) attention weights stay in cache.
        latents = torch.cat([self.conditioning_encoder(mel[None]) for mel in cond_mels.flatten(0, 1)])  # (B*n, C)
        return latents.view(batch, clips, -1).mean(dim=1)

    # --- embeddings --------------------------------------------------------------------------------------

    def text_embeddings(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) text ids -> (B, T+2, C): framed by start and stop tokens, at text positions 0..T+1."""
        framed = F.pad(F.pad(text_tokens, (0, 1), value=self.config.stop_text_token),
                       (1, 0), value=self.config.start_text_token)  # (B, T+2)
        positions = torch.arange(framed.shape[1], device=framed.device)
        return self.text_embedding(framed) + self.text_pos_embedding(positions)

    def mel_embeddings(self, mel_inputs: torch.Tensor, mel_pos: torch.Tensor) -> torch.Tensor:
        """(B, L) mel input ids (start token included) at mel positions ``mel_pos`` (L,) -> (B, L, C)."""
        return self.mel_embedding(mel_inputs) + self.mel_pos_embedding(mel_pos)

    def prompt_embeddings(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """The decoding prompt: [cond_latent, framed text, start mel token at mel position 0] -> (B, 1+T+2+1, C).

        cond_latent: (B, C); text_tokens: (B, T).
        """
        batch = cond_latent.shape[0]
        start = torch.full((batch, 1), self.config.start_mel_token, dtype=torch.long, device=cond_latent.device)
        zero = torch.zeros(1, dtype=torch.long, device=cond_latent.device)
        return torch.cat([cond_latent.unsqueeze(1), self.text_embeddings(text_tokens),
                          self.mel_embeddings(start, zero)], dim=1)

    @staticmethod
    def prompt_length(text_len: int) -> int:
        """Sequence slots of the decoding prompt for ``text_len`` text tokens: cond + start/text/stop + start mel."""
        return 1 + (text_len + 2) + 1

    def _sequence_embeddings(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                             mel_codes: torch.Tensor) -> torch.Tensor:
        """[cond, start_text, text, stop_text, start_mel, codes, stop_mel] -> (B, 1 + T+2 + L+2, C)."""
        config = self.config
        mel_inputs = F.pad(F.pad(mel_codes, (0, 1), value=config.stop_mel_token),
                           (1, 0), value=config.start_mel_token)  # (B, L+2)
        mel_pos = torch.arange(mel_inputs.shape[1], device=mel_inputs.device)
        return torch.cat([cond_latent.unsqueeze(1), self.text_embeddings(text_tokens),
                          self.mel_embeddings(mel_inputs, mel_pos)], dim=1)

    # --- the transformer ---------------------------------------------------------------------------------

    def decode(self, embeddings: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Run the transformer; return final-normed hidden states (B, T, C).

        embeddings: (B, T, C), position tables already added. ``input_pos`` (T,) gives the cache slots the
        embeddings occupy (needs ``setup_caches``); None runs uncached over a whole sequence starting at slot 0.
        """
        return self.final_norm(self.gpt(embeddings, input_pos))

    def mel_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) final-normed hidden states -> (..., number_mel_codes)."""
        return self.mel_head(hidden)

    def setup_caches(self, batch_size: int, max_seq_len: int) -> None:
        """Attach a fresh static KV cache (B, H, max_seq_len, D) to every layer, in the weights' dtype and device."""
        weight = self.final_norm.weight  # (a packed or quantized copy's linears hold no plain float weight)
        for block in self.gpt.h:
            block.attn.kv_cache = KVCache(batch_size, self.config.heads, max_seq_len, self.config.head_dim,
                                          dtype=weight.dtype, device=weight.device)

    def clear_caches(self) -> None:
        for block in self.gpt.h:
            block.attn.kv_cache = None

    @property
    def cache_shape(self) -> tuple[int, int] | None:
        """(batch size, slots) of the attached KV cache, or None when there is none."""
        cache = self.gpt.h[0].attn.kv_cache if len(self.gpt.h) else None
        return None if cache is None else (cache.k_cache.shape[0], cache.max_seq_len)

    # --- whole-sequence passes ---------------------------------------------------------------------------

    def forward(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor, mel_codes: torch.Tensor) -> ARLogits:
        """Teacher-forced logits for cond_latent (B, C), text_tokens (B, T) and mel_codes (B, L).

        Text comes first; both streams are framed by their start and stop tokens. Logits at index i predict
        input i+1 of the same stream (the last text input predicts the start mel token, which has its own head).
        """
        hidden = self.decode(self._sequence_embeddings(cond_latent, text_tokens, mel_codes))  # (B, 1+T+2+L+2, C)
        text_len = text_tokens.shape[1] + 2
        text_hidden = hidden[:, 1:1 + text_len]  # the cond latent's output predicts nothing
        mel_hidden = hidden[:, 1 + text_len:]
        return ARLogits(self.text_head(text_hidden), self.mel_head(mel_hidden))

    def latents(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor, mel_codes: torch.Tensor) -> torch.Tensor:
        """The diffusion decoder's conditioning: final-normed hidden states at mel positions 0..L-1 -> (B, L, C).

        Position i holds the state that predicts code i (from the start token and codes before it), one per
        code. The same numbers as upstream ``forward(..., return_latent=True, clip_inputs=False)`` with wav lengths
        L * mel_length_compression, as TorToiSe's api.py calls it (note api.py passes its text tokens with one
        extra trailing 0; callers that want its numbers pass the same tokens).
        """
        hidden = self.decode(self._sequence_embeddings(cond_latent, text_tokens, mel_codes))
        length = mel_codes.shape[1]
        return hidden[:, -(length + 2):-2]
