"""HiFiGAN decoder: AR latents (B, L, 1024) + a speaker vector (1, 1024) -> 24 kHz waveform, with no mel in between.

This is the vocoder of upstream's fast path (``api_fast``): instead of diffusion -> mel -> UnivNet, the AR model's
latents are stretched to the output frame rate and one HiFiGAN generator turns them into audio, conditioned on the
AR conditioning latent of the voice (the same vector the AR model is conditioned on). The official weights are
``hifidecoder.pth``; the diffusion path does not need them.

The network (Kong et al., 2020, "generator V1" layout): an input conv, then per upsampling stage a leaky ReLU and a
transposed conv (half the channels, ``factor`` times the length), then a multi-receptive-field fusion: one residual
block per kernel size, each run on the stage's output, their outputs averaged. Each residual block holds, per
dilation, two convs (dilated, then plain) around leaky ReLUs with a skip around the pair. The speaker vector enters
once, through a 1x1 conv added to the input conv's output at every frame.

This is the inference form: the official file stores weight-normed convs (``weight_g``/``weight_v``); the loader
folds each pair into the plain ``weight`` used here (``checkpoints.FORMATS["hifigan"]``), which is exactly the
weight upstream's weight-norm hook recomputes before every call. Parameter names follow the official file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.assets import AssetError, find_weights
from tortoise_lab.checkpoints import FORMATS, load_weights
from tortoise_lab.config import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE
from tortoise_lab.device import choose_device

__all__ = ["HifiganConfig", "HIFIGAN_PRESETS", "HifiganDecoder", "ResidualBlock", "load_hifigan",
           "frames_for_latents", "MEL_FRAMES_PER_CODE"]

# One AR code (and so one latent) stands for 4 mel frames of hop 256 at 22.05 kHz (1024 input samples). The latents
# are stretched to that frame rate, then re-timed from 22.05 to 24 kHz, both by linear interpolation.
MEL_FRAMES_PER_CODE = 4
RESAMPLE_RATIO = OUTPUT_SAMPLE_RATE / INPUT_SAMPLE_RATE
LEAKY_SLOPE = 0.1  # inside the network
# Before the output conv upstream calls leaky_relu without a slope, so torch's default applies there, not 0.1.
FINAL_LEAKY_SLOPE = 0.01
OUTER_CONV_KERNEL = 7  # conv_pre and conv_post


@dataclass(frozen=True)
class HifiganConfig:
    in_channels: int = 1024  # width of the AR latents
    cond_channels: int = 1024  # width of the speaker vector (the AR conditioning latent)
    upsample_initial_channel: int = 512  # channels after conv_pre; each upsampling stage halves them
    upsample_factors: tuple[int, ...] = (8, 8, 2, 2)  # their product is the audio samples per frame
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)  # transposed-conv kernels, one per stage
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)  # one residual block per kernel size in every stage
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))  # per kernel size

    def __post_init__(self):
        if len(self.upsample_factors) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_factors and upsample_kernel_sizes need one entry per stage each.")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilations):
            raise ValueError("resblock_kernel_sizes and resblock_dilations need one entry per residual block each.")

    @property
    def hop_length(self) -> int:
        """Audio samples per (24 kHz) frame: the product of the upsampling factors (256 for tortoise-v2)."""
        return math.prod(self.upsample_factors)

    @classmethod
    def from_name(cls, name: str) -> "HifiganConfig":
        if name not in HIFIGAN_PRESETS:
            raise ValueError(f"Unknown HiFiGAN config {name!r}. Available: {', '.join(HIFIGAN_PRESETS)}")
        return HIFIGAN_PRESETS[name]


HIFIGAN_PRESETS: dict[str, HifiganConfig] = {
    "tortoise-v2": HifiganConfig(),  # hifidecoder.pth, as api_fast builds it
    # Same structure (four stages, multi-kernel fusion), narrow, two kernel sizes, 64 samples per frame.
    "tiny": HifiganConfig(in_channels=32, cond_channels=32, upsample_initial_channel=64,
                          upsample_factors=(4, 4, 2, 2), upsample_kernel_sizes=(8, 8, 4, 4),
                          resblock_kernel_sizes=(3, 7), resblock_dilations=((1, 3, 5), (1, 3, 5))),
}


def _same_padding(kernel_size: int, dilation: int) -> int:
    """Padding that keeps the length of an odd-kernel dilated conv."""
    return dilation * (kernel_size - 1) // 2


def frames_for_latents(latent_len: int) -> int:
    """Frames the decoder makes for ``latent_len`` latents: 4 per latent, re-timed to 24 kHz (rounded down)."""
    return math.floor(math.floor(latent_len * float(MEL_FRAMES_PER_CODE)) * RESAMPLE_RATIO)


class ResidualBlock(nn.Module):
    """(B, C, T) -> (B, C, T): per dilation, x + conv2(lrelu(conv1_dilated(lrelu(x))))."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1)) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.convs1, self.convs2):
            branch = dilated(F.leaky_relu(x, LEAKY_SLOPE))
            x = plain(F.leaky_relu(branch, LEAKY_SLOPE)) + x
        return x


class HifiganDecoder(nn.Module):
    """The HiFiGAN generator of ``hifidecoder.pth``, weight norm folded away (inference form)."""

    def __init__(self, config: HifiganConfig):
        super().__init__()
        self.config = config
        width = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.in_channels, width, OUTER_CONV_KERNEL, padding=OUTER_CONV_KERNEL // 2)
        self.cond_layer = nn.Conv1d(config.cond_channels, width, 1)
        self.ups = nn.ModuleList()
        # Flat, stage-major: stage i's block for kernel j is resblocks[i * kernels + j] (the official numbering).
        self.resblocks = nn.ModuleList()
        for stage, (factor, kernel) in enumerate(zip(config.upsample_factors, config.upsample_kernel_sizes)):
            channels_in, channels_out = width // 2**stage, width // 2 ** (stage + 1)
            # With kernel - factor even (every official stage) this padding makes the output exactly factor x longer.
            self.ups.append(nn.ConvTranspose1d(channels_in, channels_out, kernel, factor,
                                               padding=(kernel - factor) // 2))
            for kernel_size, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilations):
                self.resblocks.append(ResidualBlock(channels_out, kernel_size, dilations))
        self.conv_post = nn.Conv1d(width // 2 ** len(config.upsample_factors), 1, OUTER_CONV_KERNEL,
                                   padding=OUTER_CONV_KERNEL // 2)

    def forward(self, features: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """features: (B, in_channels, T) at the 24 kHz frame rate; speaker: (B or 1, cond_channels)
        -> waveform (B, 1, T * hop_length) in [-1, 1]."""
        if speaker.dim() != 2 or speaker.shape[0] not in (1, features.shape[0]):
            raise ValueError(f"speaker must be (1 or {features.shape[0]}, {self.config.cond_channels}), "
                             f"not {tuple(speaker.shape)}")
        h = self.conv_pre(features) + self.cond_layer(speaker[:, :, None])  # (B, C0, T): one speaker term per frame
        kernels = len(self.config.resblock_kernel_sizes)
        for stage, upsample in enumerate(self.ups):
            h = upsample(F.leaky_relu(h, LEAKY_SLOPE))  # (B, C0 / 2^(stage+1), T * factors so far)
            blocks = self.resblocks[stage * kernels:(stage + 1) * kernels]
            fused = blocks[0](h)
            for block in blocks[1:]:
                fused = fused + block(h)
            h = fused / kernels  # multi-receptive-field fusion: the average of the blocks
        return torch.tanh(self.conv_post(F.leaky_relu(h, FINAL_LEAKY_SLOPE)))  # (B, 1, T * hop_length)

    def inference(self, latents: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Waveform for AR latents, as upstream's ``HifiganGenerator.inference`` makes it.

        latents: (B, L, in_channels), the AR model's latents (``return_latent=True``); speaker: (1 or B,
        cond_channels), the voice's AR conditioning latent -> (B, 1, frames_for_latents(L) * hop_length).
        """
        features = F.interpolate(latents.transpose(1, 2), scale_factor=float(MEL_FRAMES_PER_CODE), mode="linear")
        features = F.interpolate(features, scale_factor=RESAMPLE_RATIO, mode="linear")  # (B, in_channels, T)
        return self.forward(features, speaker)


def load_hifigan(models_dir: str | Path | None = None, device: str | torch.device | None = None,
                 size: str = "tortoise-v2") -> HifiganDecoder:
    """The HiFiGAN decoder from ``hifidecoder.pth`` (strict keys, weights-only), in eval mode on ``device``
    (None: ``device.choose_device``'s choice). ``size`` other than tortoise-v2 reads a file of that size (tests)."""
    name = FORMATS["hifigan"].filename
    path = find_weights(name, models_dir)
    if path is None:
        where = f"--models-dir {models_dir}" if models_dir else "the model-hub cache"
        fetch = "tortoise-lab download --files " + name + (f" --models-dir {models_dir}" if models_dir else "")
        raise AssetError(f"{name} (the HiFiGAN decoder) is not in {where}; fetch it with `{fetch}`.")
    model = load_weights(HifiganDecoder(HifiganConfig.from_name(size)), path, FORMATS["hifigan"])
    return model.eval().requires_grad_(False).to(choose_device(None if device is None else str(device)))
