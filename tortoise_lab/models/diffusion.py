"""The diffusion decoder (TorToiSe's ``DiffusionTts``): AR latents + a voice's conditioning -> a denoising network.

One call of :meth:`DiffusionDecoder.forward` is one evaluation of the network on a noisy mel; the schedules and
samplers that call it live in ``diffusion_sampler.py``. Data flow for one utterance:

1. ``conditioning_embedding(cond_mels)``: reference-voice mels -> one (B, 2C) voice vector (a scale and a shift).
2. ``timestep_independent(latents, voice, n_frames, conditioning_free)``: the AR model's latents, modulated by the
   voice vector and stretched to the output mel length -> (B, C, n_frames). Computed once per utterance. With
   ``conditioning_free=True`` it is the learned "no conditioning" embedding instead, which classifier-free
   guidance evaluates the network with.
3. ``forward(noisy_mel, timesteps, embeddings)``: per sampler step -> (B, 200, n_frames): the predicted noise
   (channels 0..99) and the variance interpolation values (channels 100..199).

Parameter names follow the official ``diffusion_decoder.pth``, so it loads without renaming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.models.layers import AttentionBlock, normalization

__all__ = ["DiffusionConfig", "DiffusionDecoder", "timestep_embedding"]

# Structure constants of the official architecture (not exposed as options: every checkpoint has them).
CODE_CONVERTER_BLOCKS = 3  # attention blocks over embedded codes (the code-conditioned path)
LATENT_CONDITIONER_BLOCKS = 4  # attention blocks over AR latents, after one input conv
CONTEXTUAL_EMBEDDER_BLOCKS = 5  # attention blocks of the voice encoder, at twice the model width
INTEGRATOR_LAYERS = 3  # diffusion layers that mix the timestep into the conditioning embedding
TRAILING_RESBLOCKS = 3  # plain residual blocks after the main diffusion layers
TIMESTEP_MAX_PERIOD = 10_000  # slowest frequency of the sinusoidal timestep embedding


@dataclass(frozen=True)
class DiffusionConfig:
    model_channels: int = 1024
    num_layers: int = 10  # DiffusionLayers (residual + attention) in the main stack
    in_channels: int = 100  # mel channels of the noisy input
    out_channels: int = 200  # noise prediction (100) + variance interpolation values (100)
    in_latent_channels: int = 1024  # width of the AR model's latents
    in_tokens: int = 8193  # code vocabulary of the code-conditioned path (8192 mel codes + stop)
    num_heads: int = 16

    @classmethod
    def from_name(cls, name: str) -> "DiffusionConfig":
        if name not in DIFFUSION_PRESETS:
            raise ValueError(f"Unknown diffusion config {name!r}. Available: {', '.join(DIFFUSION_PRESETS)}")
        return DIFFUSION_PRESETS[name]


DIFFUSION_PRESETS: dict[str, DiffusionConfig] = {
    "tortoise-v2": DiffusionConfig(),
    # Same structure, narrow and shallow: the parity and unit tests run it on CPU in milliseconds.
    "tiny": DiffusionConfig(model_channels=64, num_layers=2, in_latent_channels=64, in_tokens=64, num_heads=4),
}


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = TIMESTEP_MAX_PERIOD) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: (B,) -> (B, dim), cosines first, then sines."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(timesteps.device)
    angles = timesteps[:, None].float() * freqs[None]  # (B, half)
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class ResBlock(nn.Module):
    """Residual block whose second norm is scaled and shifted by the timestep embedding ("scale-shift norm").

    ``out_layers[2]`` is an Identity where the official layout had a (p=0) dropout: keeping the slot keeps the
    official parameter name ``out_layers.3`` for the output conv.
    """

    def __init__(self, channels: int, emb_channels: int):
        super().__init__()
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(), nn.Conv1d(channels, channels, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * channels))
        self.out_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), nn.Identity(), nn.Conv1d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T), time_emb: (B, E) -> (B, C, T)."""
        h = self.in_layers(x)
        scale, shift = self.emb_layers(time_emb).type(h.dtype)[..., None].chunk(2, dim=1)  # each (B, C, 1)
        out_norm, rest = self.out_layers[0], self.out_layers[1:]
        h = rest(out_norm(h) * (1 + scale) + shift)
        return x + h


class DiffusionLayer(nn.Module):
    """A timestep-modulated residual block followed by self-attention with relative position bias."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.resblk = ResBlock(channels, channels)
        self.attn = AttentionBlock(channels, num_heads, relative_position_bias=True)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        return self.attn(self.resblk(x, time_emb))


def _attention_stack(channels: int, num_heads: int, count: int) -> list[nn.Module]:
    return [AttentionBlock(channels, num_heads, relative_position_bias=True) for _ in range(count)]


class DiffusionDecoder(nn.Module):
    """TorToiSe's diffusion decoder network (inference form of the official ``DiffusionTts``)."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        channels, heads = config.model_channels, config.num_heads

        self.inp_block = nn.Conv1d(config.in_channels, channels, 3, padding=1)
        self.time_embed = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))

        # Two ways to describe the speech to produce: mel codes (embedding + attention) or, what TorToiSe uses,
        # the AR model's latents (conv + attention). Both then share code_norm and the voice modulation.
        self.code_embedding = nn.Embedding(config.in_tokens, channels)
        self.code_converter = nn.Sequential(*_attention_stack(channels, heads, CODE_CONVERTER_BLOCKS))
        self.code_norm = normalization(channels)
        self.latent_conditioner = nn.Sequential(
            nn.Conv1d(config.in_latent_channels, channels, 3, padding=1),
            *_attention_stack(channels, heads, LATENT_CONDITIONER_BLOCKS),
        )
        # Voice encoder: two stride-2 convs (4x shorter), attention at twice the width; the output's two halves
        # are the scale and shift applied to the normalized latents.
        self.contextual_embedder = nn.Sequential(
            nn.Conv1d(config.in_channels, channels, 3, padding=1, stride=2),
            nn.Conv1d(channels, 2 * channels, 3, padding=1, stride=2),
            *_attention_stack(2 * channels, heads, CONTEXTUAL_EMBEDDER_BLOCKS),
        )
        # Stands in for the conditioning embedding in conditioning-free (classifier-free guidance) evaluations.
        self.unconditioned_embedding = nn.Parameter(torch.zeros(1, channels, 1))
        self.conditioning_timestep_integrator = nn.ModuleList(
            DiffusionLayer(channels, heads) for _ in range(INTEGRATOR_LAYERS)
        )
        self.integrating_conv = nn.Conv1d(2 * channels, channels, 1)
        # Training-only auxiliary head (predicts the mel straight from the conditioning); never called at
        # inference, kept so the official checkpoint loads strictly.
        self.mel_head = nn.Conv1d(channels, config.in_channels, 3, padding=1)

        self.layers = nn.ModuleList(
            [DiffusionLayer(channels, heads) for _ in range(config.num_layers)]
            + [ResBlock(channels, channels) for _ in range(TRAILING_RESBLOCKS)]
        )
        self.out = nn.Sequential(normalization(channels), nn.SiLU(), nn.Conv1d(channels, config.out_channels, 3, padding=1))

    def conditioning_embedding(self, cond_mels: torch.Tensor) -> torch.Tensor:
        """Voice vector from reference mels: (B, n_clips, 100, T) or (B, 100, T) -> (B, 2C).

        The mean over every encoded frame of every clip (clips share T, so this is also the mean of clip means).
        """
        if cond_mels.dim() == 3:
            cond_mels = cond_mels.unsqueeze(1)
        if cond_mels.dim() != 4 or cond_mels.shape[2] != self.config.in_channels:
            raise ValueError(
                f"cond_mels must be (B, n_clips, {self.config.in_channels}, T); got {tuple(cond_mels.shape)}"
            )
        encoded = [self.contextual_embedder(cond_mels[:, clip]) for clip in range(cond_mels.shape[1])]  # (B, 2C, T/4)
        return torch.cat(encoded, dim=-1).mean(dim=-1)

    def timestep_independent(
        self,
        aligned_conditioning: torch.Tensor,
        conditioning_latent: torch.Tensor,
        expected_seq_len: int,
        conditioning_free: bool = False,
    ) -> torch.Tensor:
        """The part of the conditioning that does not depend on the timestep; compute once, reuse every step.

        aligned_conditioning: AR latents (B, S, in_latent_channels) (float), or mel codes (B, S) (integer).
        conditioning_latent: (B, 2C) from :meth:`conditioning_embedding`.
        Returns (B, C, expected_seq_len): the embeddings stretched (nearest neighbour) to the output length, or,
        with ``conditioning_free``, the learned unconditioned embedding at that length (inputs then unused).
        """
        batch = aligned_conditioning.shape[0]
        if conditioning_free:
            return self.unconditioned_embedding.repeat(batch, 1, expected_seq_len)
        if aligned_conditioning.is_floating_point():
            code_emb = self.latent_conditioner(aligned_conditioning.permute(0, 2, 1))  # (B, C, S)
        else:
            code_emb = self.code_converter(self.code_embedding(aligned_conditioning).permute(0, 2, 1))  # (B, C, S)
        cond_scale, cond_shift = conditioning_latent.chunk(2, dim=1)  # each (B, C)
        code_emb = self.code_norm(code_emb) * (1 + cond_scale.unsqueeze(-1)) + cond_shift.unsqueeze(-1)
        return F.interpolate(code_emb, size=expected_seq_len, mode="nearest")

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, precomputed_embeddings: torch.Tensor) -> torch.Tensor:
        """One network evaluation.

        x: noisy mel (B, 100, T); timesteps: (B,) on the model's (unspaced) timestep scale;
        precomputed_embeddings: (B, C, T) from :meth:`timestep_independent` (conditioned or conditioning-free).
        Returns (B, out_channels, T).
        """
        time_emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels))  # (B, C)
        code_emb = precomputed_embeddings
        for layer in self.conditioning_timestep_integrator:
            code_emb = layer(code_emb, time_emb)
        h = self.integrating_conv(torch.cat([self.inp_block(x), code_emb], dim=1))  # (B, C, T)
        for layer in self.layers:
            h = layer(h, time_emb)
        return self.out(h.float())

