"""A GE2E speaker encoder (Wan et al., "Generalized end-to-end loss for speaker verification", 2018): speech in,
a unit-length 256-wide d-vector out, near for clips of one speaker and far for different speakers.

Sizes and front end are those of the encoder Resemblyzer 0.1.4 ships (its ``pretrained.pt``, fetched by
``assets.fetch_speaker_encoder``): a 40-band power mel of 16 kHz audio (25 ms windows, 10 ms hops), three LSTM
layers of 256, a linear layer, ReLU and L2 normalisation. An utterance is cut into overlapping 1.6 s partials (1.3
a second); their d-vectors are averaged and normalised again. ``tests/parity/test_speaker_encoder.py`` compares it
with Resemblyzer's own ``VoiceEncoder`` on the same audio.

The audio this module takes is already prepared (16 kHz, volume and silences seen to): ``voices.similarity`` does
that.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

__all__ = ["SpeakerEncoderConfig", "SpeakerEncoder", "encoder_mel", "partial_starts"]

PARTIALS_AT_ONCE = 32  # partials through the LSTM in one batch (a 5-minute recording has ~390)


@dataclass(frozen=True)
class SpeakerEncoderConfig:
    sample_rate: int = 16_000
    window: int = 400  # 25 ms: the FFT size and window
    hop: int = 160  # 10 ms
    mel_bands: int = 40
    partial_frames: int = 160  # 1.6 s of mel frames per partial utterance
    partials_per_second: float = 1.3  # how densely partials overlap
    min_coverage: float = 0.75  # the last partial is kept when at least this much of it is audio
    hidden: int = 256
    embedding: int = 256
    layers: int = 3


@functools.lru_cache(maxsize=None)
def _filters(config: SpeakerEncoderConfig) -> torch.Tensor:
    # Slaney-scale, area-normalised triangles (the librosa defaults the encoder was trained with).
    return AF.melscale_fbanks(config.window // 2 + 1, 0.0, config.sample_rate / 2, config.mel_bands,
                              config.sample_rate, norm="slaney", mel_scale="slaney")  # (201, 40)


def encoder_mel(wav: torch.Tensor, config: SpeakerEncoderConfig = SpeakerEncoderConfig()) -> torch.Tensor:
    """(N,) 16 kHz samples -> (frames, 40) power mel: centred frames, zero-padded at the edges, periodic Hann window,
    1 + N // hop frames. A power mel, not a log mel: the network learned on it."""
    wav = wav.reshape(-1).float()
    spectrum = torch.stft(F.pad(wav[None], (config.window // 2, config.window // 2)), config.window, config.hop,
                          window=torch.hann_window(config.window, device=wav.device), center=False,
                          return_complex=True)[0]  # (201, frames)
    return (spectrum.abs().pow(2).T @ _filters(config).to(wav.device))  # (frames, 40)


def partial_starts(samples: int, config: SpeakerEncoderConfig = SpeakerEncoderConfig()) -> list[int]:
    """The first mel frame of each partial utterance of a ``samples``-long utterance: one every
    1 / ``partials_per_second`` seconds, covering it to the end; the last kept only if at least ``min_coverage`` of
    it is audio, and always at least one."""
    frames = math.ceil((samples + 1) / config.hop)
    step = round(config.sample_rate / config.partials_per_second / config.hop)
    starts = list(range(0, max(1, frames - config.partial_frames + step + 1), step))
    coverage = (samples - starts[-1] * config.hop) / (config.partial_frames * config.hop)
    if coverage < config.min_coverage and len(starts) > 1:
        starts.pop()
    return starts


class SpeakerEncoder(nn.Module):
    """(B, 160, 40) partial mels -> (B, 256) unit-length d-vectors; ``embed`` does a whole utterance."""

    def __init__(self, config: SpeakerEncoderConfig = SpeakerEncoderConfig()):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.mel_bands, config.hidden, config.layers, batch_first=True)
        self.linear = nn.Linear(config.hidden, config.embedding)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)  # hidden: (layers, B, 256)
        vectors = F.relu(self.linear(hidden[-1]))  # (B, 256), the last layer's final state
        return vectors / vectors.norm(dim=1, keepdim=True)

    @torch.no_grad()
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """(N,) prepared 16 kHz samples -> (256,) d-vector: the normalised mean of its partials' d-vectors."""
        config = self.config
        starts = partial_starts(wav.numel(), config)
        end = (starts[-1] + config.partial_frames) * config.hop
        wav = F.pad(wav.reshape(-1).float(), (0, max(0, end - wav.numel())))
        mel = encoder_mel(wav, config)  # (frames, 40)
        total = torch.zeros(config.embedding, device=self.linear.weight.device)
        for first in range(0, len(starts), PARTIALS_AT_ONCE):  # a bounded batch: long recordings stay in memory
            partials = torch.stack([mel[s:s + config.partial_frames]
                                    for s in starts[first:first + PARTIALS_AT_ONCE]])  # (P, 160, 40)
            total += self(partials.to(total.device)).sum(dim=0)
        return (total / total.norm()).cpu()  # the mean's direction
