"""What a synthesis returns: ``Speech`` (the audio and how it was made), and for a stream ``SpeechStream`` (the
pieces as they come, then the ``Speech``) with its ``StreamPiece`` timeline. ``pipeline`` makes them and re-exports
them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from tortoise_lab import __version__

__all__ = ["Speech", "StreamPiece", "SpeechStream"]


@dataclass
class Speech:
    """The result of one synthesis: the best candidate's audio, the other candidates, and how it was made."""

    wav: torch.Tensor  # (1, N) float32 in [-1, 1], the best-ranked candidate (chunks joined)
    sample_rate: int
    seed: int
    text: str
    voice: str
    settings: dict
    candidates: list[torch.Tensor]  # k waveforms, best first
    codes: list[torch.Tensor]  # per chunk, (k, max_mel_tokens) the chosen candidates' codes (as decoded)
    scores: list[torch.Tensor]  # per chunk, (num_autoregressive_samples,) ranking scores
    chunks: list[str]
    timings: dict[str, float]  # seconds per stage, summed over chunks, plus "total"
    model: str  # where the weights came from
    notes: list[str] = field(default_factory=list)  # options requested but not used, stop-token warnings, ...
    version: str = __version__

    @property
    def duration(self) -> float:
        return self.wav.shape[-1] / self.sample_rate

    def metadata(self) -> dict:
        """Everything about the run except the audio, for the JSON sidecar."""
        return {
            "text": self.text, "voice": self.voice, "seed": self.seed, "sample_rate": self.sample_rate,
            "duration_s": round(self.duration, 3), "chunks": self.chunks, "settings": self.settings,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()}, "model": self.model,
            "notes": self.notes, "tortoise_lab_version": self.version,
        }


@dataclass(frozen=True)
class StreamPiece:
    """When one piece of a stream was ready and what it cost: the timeline a player sees."""

    chunk: int  # which text chunk it belongs to
    ready_s: float  # seconds from the call until it was handed out
    samples: int  # its length at 24 kHz
    codes: int  # codes of its chunk drawn by then (for a whole chunk: its codes)
    decode_s: float  # seconds decoding it: HiFiGAN's, or a whole chunk's diffusion or code book and vocoder
    frames: int  # frames HiFiGAN ran over for it (its own plus the context); 0 for a chunk decoded whole


class SpeechStream:
    """``TextToSpeech.stream``'s result: iterate it for the audio pieces, (1, n) float32 at 24 kHz each, as they are
    made; after the last one, ``result`` is the run's ``Speech`` (seed, timings with "first_audio", the whole wav:
    the pieces joined). ``timeline`` holds a ``StreamPiece`` per piece handed out so far."""

    def __init__(self, pieces: Iterator[torch.Tensor], timeline: list[StreamPiece]):
        self._pieces = pieces
        self.timeline = timeline
        self.result: Speech | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        result = yield from self._pieces
        if result is not None:  # (iterated again: nothing more, the result stays)
            self.result = result
