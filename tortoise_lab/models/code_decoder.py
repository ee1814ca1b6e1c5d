"""A learned code -> mel decoder for the embedded model: the code book's centroid of each code, corrected by a small
convolutional network that reads the codes around it.

The code book alone (``quantizer.KMeansQuantizer.decode``) looks each code up on its own, so every occurrence of a
code becomes the same 4 frames, whatever comes before and after. Here a stack of ConvNeXt blocks (as vocos's
backbone: depthwise convolution over the code sequence, per-position LayerNorm, a pointwise MLP, a layer scale)
reads ``blocks * (kernel - 1) / 2`` codes each side and predicts, per code, a correction to its 4 x 100 stacked
frames. The correction's last layer starts at zero, so an untrained decoder *is* the code book, and training can
only move it towards the speech. It is deterministic: codes in, one mel out, no noise.

Shapes: codes (B, L) -> normalised log mel (B, 100, 4 L) (``audio.normalize_univnet_mel``'s [-1, 1] scale, the
scale it is trained in); ``decode`` takes one (L,) row and gives the (100, 4 L) log mel the code book's ``decode``
gives, so the two are interchangeable.

The centroids are not part of the decoder's weights: it is built around a quantiser's code book (``codebook``,
(codes, stack * bands) log mel), which the model set loads from its own file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.audio import denormalize_univnet_mel, normalize_univnet_mel
from tortoise_lab.files import atomic_path

__all__ = ["CodeDecoderConfig", "CodeDecoder", "CODE_DECODER_SIZES"]


@dataclass
class CodeDecoderConfig:
    codes: int = 512  # the code book's size
    stack: int = 4  # mel frames per code
    bands: int = 100  # the UnivNet mel's bands
    channels: int = 192  # width of the blocks
    blocks: int = 6  # ConvNeXt blocks
    kernel: int = 7  # depthwise kernel, in codes: the decoder reads blocks * (kernel - 1) / 2 codes each side
    expansion: int = 3  # the pointwise MLP's hidden width, in channels
    layer_scale: float = 0.1  # each block's residual branch starts at this scale (vocos: 1 / blocks)

    def __post_init__(self):
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (a centred window of codes), not {self.kernel}")

    @property
    def context(self) -> int:
        """Codes read on each side of a code."""
        return self.blocks * (self.kernel - 1) // 2

    @classmethod
    def from_name(cls, name: str) -> "CodeDecoderConfig":
        if name not in CODE_DECODER_SIZES:
            raise ValueError(f"Unknown code decoder size {name!r}. Available: {', '.join(CODE_DECODER_SIZES)}.")
        return cls(**CODE_DECODER_SIZES[name])


# Named sizes: "embedded" is what the embedded model set ships (1.5 M parameters), "tiny" is for tests.
CODE_DECODER_SIZES: dict[str, dict] = {
    "embedded": {},
    "tiny": {"codes": 16, "channels": 16, "blocks": 2, "kernel": 3, "expansion": 2},
}


class ConvNeXtBlock(nn.Module):
    """x + scale * MLP(LayerNorm(depthwise conv(x))), over (B, C, L)."""

    def __init__(self, channels: int, kernel: int, expansion: int, layer_scale: float):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)  # per position: a crop and a whole utterance see the same statistics
        self.up = nn.Linear(channels, expansion * channels)
        self.down = nn.Linear(expansion * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.depthwise(x).transpose(1, 2))  # (B, L, C)
        h = self.down(F.gelu(self.up(h))) * self.scale  # (B, L, C)
        return x + h.transpose(1, 2)


class CodeDecoder(nn.Module):
    """Codes -> normalised log mel: the code book's centroids plus a context-aware correction."""

    def __init__(self, config: CodeDecoderConfig, codebook: torch.Tensor):
        super().__init__()
        if codebook.shape != (config.codes, config.stack * config.bands):
            raise ValueError(f"codebook shape {tuple(codebook.shape)} != ({config.codes}, "
                             f"{config.stack * config.bands}) that the decoder config asks for")
        self.config = config
        c = config.channels
        # Not saved with the weights: the centroids come from the quantiser the decoder is built around.
        self.register_buffer("centroids", normalize_univnet_mel(codebook.float()), persistent=False)  # (K, S*B)
        self.embedding = nn.Embedding(config.codes, c)
        self.centroid_in = nn.Linear(config.stack * config.bands, c)  # what a code sounds like, as a feature
        self.blocks = nn.ModuleList(ConvNeXtBlock(c, config.kernel, config.expansion, config.layer_scale)
                                    for _ in range(config.blocks))
        self.norm = nn.LayerNorm(c)
        self.out = nn.Linear(c, config.stack * config.bands)
        nn.init.zeros_(self.out.weight)  # untrained, it is the code book
        nn.init.zeros_(self.out.bias)

    def forward(self, codes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) codes -> (B, bands, stack * L) normalised log mel. ``mask`` (B, L), true at real codes: rows of
        different lengths padded to one; the hidden state is zeroed past each row's end before every block, so a
        padded row decodes exactly as it would alone (the convolutions' own zero padding)."""
        keep = None if mask is None else mask.unsqueeze(1).to(self.centroids.dtype)  # (B, 1, L)
        base = self.centroids[codes]  # (B, L, S*B)
        x = (self.embedding(codes) + self.centroid_in(base)).transpose(1, 2)  # (B, C, L)
        for block in self.blocks:
            x = block(x if keep is None else x * keep)
        vectors = base + self.out(self.norm(x.transpose(1, 2)))  # (B, L, S*B), frame-major as stack_frames
        batch, length, _ = vectors.shape
        return vectors.reshape(batch, length * self.config.stack, self.config.bands).transpose(1, 2)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(L,) codes -> (bands, stack * L) log mel, as ``KMeansQuantizer.decode`` gives it. Below the log floor
        (silence, -1 normalised) nothing is real, so the output is clamped there."""
        if len(codes) == 0:
            return self.centroids.new_zeros(self.config.bands, 0)
        mel = self(codes.long().unsqueeze(0).to(self.centroids.device))[0]  # (bands, S*L)
        return denormalize_univnet_mel(mel.clamp_min(-1.0))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """One safetensors file: the weights (not the centroids), with the config in its metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        weights = {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path) as scratch:
            save_file(weights, str(scratch), metadata={"config": json.dumps(asdict(self.config))})
        return path

    @classmethod
    def load(cls, path: str | Path, codebook: torch.Tensor) -> "CodeDecoder":
        """The decoder in ``path`` (what ``save`` writes), built around ``codebook``; strict keys and shapes, fp32,
        in eval mode. ``CheckpointError`` names the file when it does not fit."""
        from safetensors import safe_open

        from tortoise_lab.checkpoints import CheckpointError, check_keys

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"Code decoder file {path} does not exist.")
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if "config" not in metadata:
                raise CheckpointError(f"{path} has no decoder config in its metadata; is it a code decoder file?")
            config = CodeDecoderConfig(**json.loads(metadata["config"]))
            state = {key: handle.get_tensor(key).float() for key in handle.keys()}
        model = cls(config, codebook)
        check_keys(model, state, str(path))
        model.load_state_dict(state, strict=True)
        return model.eval()
