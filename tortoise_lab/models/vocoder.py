"""UnivNet vocoder: mel (B, 100, T) + noise -> 24 kHz waveform (B, 1, 256 * T).

The generator upsamples a noise sequence by the strides (8 * 8 * 4 = 256 samples per mel frame). In each
upsampling block, a kernel predictor turns the mel into per-frame convolution kernels ("location-variable
convolutions"), so every stretch of audio is filtered by kernels made from its own mel frame.

This is the inference form: the official ``vocoder.pth`` stores weight-normed convs (``weight_g``/``weight_v``);
the loader folds each pair into the plain ``weight`` used here (``checkpoints.FORMATS["vocoder"]``), which is what
upstream's ``eval(inference=True)`` computes when it removes weight norm. Parameter names follow the official file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["VocoderConfig", "UnivNetGenerator", "location_variable_convolution", "SILENCE_LOG_MEL", "PAD_FRAMES"]

# ``inference`` appends PAD_FRAMES frames of silence to the mel and cuts their audio off again: the generator
# makes artifacts at the very end of its input, and this moves them into the discarded part.
PAD_FRAMES = 10
# The value upstream pads with: log(1e-5) rounded, the log-mel of silence (the mel's clamp floor).
SILENCE_LOG_MEL = -11.5129

KERNEL_PREDICTOR_CHANNELS = 64  # hidden width of every kernel predictor (fixed in the official model)
KERNEL_PREDICTOR_INPUT_KERNEL = 5
KERNEL_PREDICTOR_RESIDUAL_BLOCKS = 3
LVC_KERNEL_SIZE = 3  # size of the predicted (location-variable) kernels
OUTER_CONV_KERNEL = 7  # conv_pre / conv_post


@dataclass(frozen=True)
class VocoderConfig:
    noise_dim: int = 64
    channel_size: int = 32
    dilations: tuple[int, ...] = (1, 3, 9, 27)  # one LVC layer per dilation in each block
    strides: tuple[int, ...] = (8, 8, 4)  # upsampling factor of each block
    leaky_relu_slope: float = 0.2
    kpnet_conv_size: int = 3
    n_mel_channels: int = 100

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame: the product of the strides (256 for tortoise-v2)."""
        return math.prod(self.strides)

    @classmethod
    def from_name(cls, name: str) -> "VocoderConfig":
        if name not in VOCODER_PRESETS:
            raise ValueError(f"Unknown vocoder config {name!r}. Available: {', '.join(VOCODER_PRESETS)}")
        return VOCODER_PRESETS[name]


VOCODER_PRESETS: dict[str, VocoderConfig] = {
    "tortoise-v2": VocoderConfig(),
    # Same structure; narrow, and 32 samples per frame instead of 256.
    "tiny": VocoderConfig(noise_dim=16, channel_size=8, strides=(4, 4, 2)),
}


def location_variable_convolution(
    x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, hop_size: int
) -> torch.Tensor:
    """Convolve each hop-long stretch of ``x`` with the kernel predicted for its conditioning frame.

    x: (B, Cin, L * hop_size); kernels: (B, Cin, Cout, K, L); bias: (B, Cout, L) -> (B, Cout, L * hop_size).
    Zero-padded "same" convolution over the whole sequence (windows overlap into neighbouring stretches).
    """
    batch, _, length = x.shape
    _, _, out_channels, kernel_size, frames = kernels.shape
    if length != frames * hop_size:
        raise ValueError(f"input length {length} is not {frames} frames x hop {hop_size}")
    padding = (kernel_size - 1) // 2
    x = nn.functional.pad(x, (padding, padding))
    windows = x.unfold(2, hop_size + 2 * padding, hop_size)  # (B, Cin, L, hop + 2p)
    taps = windows.unfold(3, kernel_size, 1)  # (B, Cin, L, hop, K)
    out = torch.einsum("bilsk,biokl->bols", taps, kernels) + bias[..., None]  # (B, Cout, L, hop)
    return out.reshape(batch, out_channels, frames * hop_size)


class KernelPredictor(nn.Module):
    """mel (B, n_mels, L) -> LVC kernels (B, layers, Cin, Cout, K, L) and biases (B, layers, Cout, L)."""

    def __init__(self, cond_channels: int, conv_in_channels: int, conv_out_channels: int, conv_layers: int,
                 kpnet_conv_size: int, slope: float):
        super().__init__()
        self.conv_in_channels = conv_in_channels
        self.conv_out_channels = conv_out_channels
        self.conv_layers = conv_layers
        hidden = KERNEL_PREDICTOR_CHANNELS
        padding = (kpnet_conv_size - 1) // 2
        kernel_channels = conv_in_channels * conv_out_channels * LVC_KERNEL_SIZE * conv_layers
        bias_channels = conv_out_channels * conv_layers

        def conv(in_channels: int, out_channels: int) -> nn.Conv1d:
            return nn.Conv1d(in_channels, out_channels, kpnet_conv_size, padding=padding)

        self.input_conv = nn.Sequential(
            nn.Conv1d(cond_channels, hidden, KERNEL_PREDICTOR_INPUT_KERNEL, padding=KERNEL_PREDICTOR_INPUT_KERNEL // 2),
            nn.LeakyReLU(slope),
        )
        # Slot 0 held a (p=0) dropout officially; the Identity keeps the official names (residual_convs.N.1/.3).
        self.residual_convs = nn.ModuleList(
            nn.Sequential(nn.Identity(), conv(hidden, hidden), nn.LeakyReLU(slope), conv(hidden, hidden), nn.LeakyReLU(slope))
            for _ in range(KERNEL_PREDICTOR_RESIDUAL_BLOCKS)
        )
        self.kernel_conv = conv(hidden, kernel_channels)
        self.bias_conv = conv(hidden, bias_channels)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, frames = mel.shape
        h = self.input_conv(mel)  # (B, hidden, L)
        for block in self.residual_convs:
            h = h + block(h)
        kernels = self.kernel_conv(h).reshape(
            batch, self.conv_layers, self.conv_in_channels, self.conv_out_channels, LVC_KERNEL_SIZE, frames
        )
        bias = self.bias_conv(h).reshape(batch, self.conv_layers, self.conv_out_channels, frames)
        return kernels, bias


class LVCBlock(nn.Module):
    """Upsample by ``stride`` (transposed conv), then dilated conv -> LVC -> gated residual, once per dilation."""

    def __init__(self, channels: int, cond_channels: int, stride: int, cond_hop_length: int, config: VocoderConfig):
        super().__init__()
        self.cond_hop_length = cond_hop_length  # audio samples per mel frame at this block's output rate
        slope = config.leaky_relu_slope
        self.kernel_predictor = KernelPredictor(
            cond_channels, channels, 2 * channels, len(config.dilations), config.kpnet_conv_size, slope
        )
        # Padding chosen so that the output is exactly stride times longer, for odd strides too.
        self.convt_pre = nn.Sequential(
            nn.LeakyReLU(slope),
            nn.ConvTranspose1d(channels, channels, 2 * stride, stride=stride,
                               padding=stride // 2 + stride % 2, output_padding=stride % 2),
        )
        self.conv_blocks = nn.ModuleList(
            nn.Sequential(
                nn.LeakyReLU(slope),
                nn.Conv1d(channels, channels, LVC_KERNEL_SIZE, padding=dilation * (LVC_KERNEL_SIZE - 1) // 2,
                          dilation=dilation),
                nn.LeakyReLU(slope),
            )
            for dilation in config.dilations
        )

    def forward(self, x: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """x: (B, C, L') -> (B, C, stride * L'), conditioned on mel (B, n_mels, frames)."""
        channels = x.shape[1]
        x = self.convt_pre(x)
        kernels, bias = self.kernel_predictor(mel)
        for layer, conv in enumerate(self.conv_blocks):
            out = location_variable_convolution(conv(x), kernels[:, layer], bias[:, layer], self.cond_hop_length)
            x = x + torch.sigmoid(out[:, :channels]) * torch.tanh(out[:, channels:])  # (B, C, T): gated update
        return x


class UnivNetGenerator(nn.Module):
    """The UnivNet generator with weight norm folded away (inference form)."""

    def __init__(self, config: VocoderConfig):
        super().__init__()
        self.config = config
        self.res_stack = nn.ModuleList()
        cond_hop = 1
        for stride in config.strides:
            cond_hop *= stride
            self.res_stack.append(LVCBlock(config.channel_size, config.n_mel_channels, stride, cond_hop, config))
        padding = OUTER_CONV_KERNEL // 2
        self.conv_pre = nn.Conv1d(config.noise_dim, config.channel_size, OUTER_CONV_KERNEL, padding=padding,
                                  padding_mode="reflect")
        self.conv_post = nn.Sequential(
            nn.LeakyReLU(config.leaky_relu_slope),
            nn.Conv1d(config.channel_size, 1, OUTER_CONV_KERNEL, padding=padding, padding_mode="reflect"),
            nn.Tanh(),
        )

    def forward(self, mel: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """mel: (B, n_mels, T) log-mel; noise: (B, noise_dim, T) -> waveform (B, 1, T * hop_length) in [-1, 1]."""
        h = self.conv_pre(noise)  # (B, C, T)
        for block in self.res_stack:
            h = block(h, mel)
        return self.conv_post(h)

    def inference(self, mel: torch.Tensor, generator: torch.Generator | None = None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """Waveform for a mel as upstream's ``inference``: (B, n_mels, T) -> (B, 1, T * hop_length).

        Pads PAD_FRAMES silent frames, draws noise (B, noise_dim, T + PAD_FRAMES) from ``generator`` unless
        ``noise`` is given, and trims the padding's audio. With a CPU generator seeded s, the noise is what
        upstream draws after ``torch.manual_seed(s)``.
        """
        batch, n_mels, frames = mel.shape
        silence = mel.new_full((batch, n_mels, PAD_FRAMES), SILENCE_LOG_MEL)
        padded = torch.cat([mel, silence], dim=2)
        if noise is None:
            device = generator.device if generator is not None else torch.device("cpu")
            noise = torch.randn(batch, self.config.noise_dim, frames + PAD_FRAMES, generator=generator, device=device)
        audio = self.forward(padded, noise.to(device=mel.device, dtype=mel.dtype))
        return audio[:, :, : frames * self.config.hop_length].clamp(-1, 1)
