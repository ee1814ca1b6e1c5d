"""Random latent converters: Gaussian noise -> a plausible conditioning latent, for the "random" voice.

Two official files: ``rlg_auto.pth`` (1024 wide, the AR model's conditioning latent) and ``rlg_diffuser.pth``
(2048 wide, the diffusion decoder's voice vector). A StyleGAN-like mapping network: five equalized-learning-rate
linear layers with a scaled leaky ReLU, then a plain linear layer. Parameter names follow the official files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RandomLatentConfig", "RandomLatentConverter"]

MAPPING_LAYERS = 5
LR_MULTIPLIER = 0.1  # equalized-lr multiplier of the mapping layers (scales both weights and biases)
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2)  # restores the activations' variance after the leaky ReLU


@dataclass(frozen=True)
class RandomLatentConfig:
    channels: int

    @classmethod
    def from_name(cls, name: str) -> "RandomLatentConfig":
        if name not in RANDOM_LATENT_PRESETS:
            raise ValueError(f"Unknown random-latent config {name!r}. Available: {', '.join(RANDOM_LATENT_PRESETS)}")
        return RANDOM_LATENT_PRESETS[name]


RANDOM_LATENT_PRESETS: dict[str, RandomLatentConfig] = {
    "tortoise-v2-auto": RandomLatentConfig(1024),  # rlg_auto.pth
    "tortoise-v2-diffuser": RandomLatentConfig(2048),  # rlg_diffuser.pth
    "tiny": RandomLatentConfig(32),
}


class EqualLinear(nn.Module):
    """Linear layer with runtime weight scaling (equalized learning rate) and a scaled leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = LR_MULTIPLIER):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.weight * self.scale)
        return F.leaky_relu(h + self.bias * self.lr_mul, negative_slope=LEAKY_SLOPE) * LEAKY_GAIN


class RandomLatentConverter(nn.Module):
    def __init__(self, config: RandomLatentConfig):
        super().__init__()
        self.config = config
        width = config.channels
        self.layers = nn.Sequential(*[EqualLinear(width, width) for _ in range(MAPPING_LAYERS)], nn.Linear(width, width))

    def from_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """Map standard-normal noise (B, channels) to latents (B, channels)."""
        return self.layers(noise)

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch_size, channels) random latents. A CPU generator seeded s draws what upstream draws (on CPU)
        after ``torch.manual_seed(s)``."""
        device = self.layers[-1].weight.device
        noise = torch.randn(batch_size, self.config.channels, generator=generator,
                            device=generator.device if generator is not None else device)
        return self.from_noise(noise.to(device))
