"""Is a chunk's audio as long as its words need? The check that keeps text from being lost without a word.

A model that stops early (the embedded one, given more text than it was trained on) or babbles on returns audio
of the wrong length, and nothing else says so. ``SpeechRate`` holds the range of speaking rates a model set's
voices read at, in letters per second of *speech* (the audio between the first and the last loud frame, so
pauses at the ends do not count); ``judge`` compares a chunk's speech with the time its letters need at those
rates. The pipeline redraws a chunk judged too short or too long once and otherwise notes it.

Letters are counted on the cleaned text (numbers and abbreviations spelled out, as the model reads them):
spaces and punctuation are left out, since a comma costs no time in one voice and a pause in another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tortoise_lab.text import clean_text

__all__ = ["SpeechRate", "speech_seconds", "count_letters", "FRAME_S", "LOUD_FRAME_DB", "SHORT_TEXT_SLACK_S"]

FRAME_S = 0.02  # seconds per frame when finding where speech starts and ends
LOUD_FRAME_DB = -35.0  # a frame within this many dB of the loudest frame is speech, quieter ones are pause
# A short text's duration varies more than its rate says (one slow word is half of it): this much time is
# allowed beyond the range at either end, whatever the text's length.
SHORT_TEXT_SLACK_S = 0.4


def count_letters(text: str) -> int:
    """Letters and digits of ``text`` as the model reads it (``clean_text``: "3" becomes "three")."""
    return sum(ch.isalnum() for ch in clean_text(text))


def speech_seconds(wav: torch.Tensor, sample_rate: int) -> float:
    """Seconds from the first to the last frame within ``LOUD_FRAME_DB`` of the loudest; 0.0 for silence."""
    samples = wav.reshape(-1).float()
    frame = max(1, round(FRAME_S * sample_rate))
    usable = samples.numel() // frame * frame
    if usable == 0:
        return 0.0
    power = samples[:usable].reshape(-1, frame).pow(2).mean(dim=1)  # (frames,)
    peak = float(power.max())
    if peak <= 0.0:
        return 0.0
    loud = torch.nonzero(power >= peak * 10 ** (LOUD_FRAME_DB / 10)).flatten()
    return float(loud[-1] - loud[0] + 1) * frame / sample_rate


@dataclass(frozen=True)
class SpeechRate:
    """Speaking rates a model set's voices read at, in letters per second of speech, and where they were measured.

    ``low`` and ``high`` already include the margin that makes a verdict "clearly" wrong (see the model set that
    builds one); ``judge`` adds ``SHORT_TEXT_SLACK_S`` at both ends.
    """

    low: float
    high: float
    source: str

    def __post_init__(self):
        if not 0 < self.low < self.high:
            raise ValueError(f"A speech rate range needs 0 < low < high, got {self.low} and {self.high}.")

    def needed_seconds(self, text: str) -> tuple[float, float]:
        """(shortest, longest) plausible speech for ``text``, slack included."""
        letters = count_letters(text)
        return max(0.0, letters / self.high - SHORT_TEXT_SLACK_S), letters / self.low + SHORT_TEXT_SLACK_S

    def judge(self, text: str, wav: torch.Tensor, sample_rate: int) -> str | None:
        """"short", "long", or None when the speech in ``wav`` lasts as long as ``text`` plausibly needs."""
        shortest, longest = self.needed_seconds(text)
        seconds = speech_seconds(wav, sample_rate)
        if seconds < shortest:
            return "short"
        if seconds > longest:
            return "long"
        return None

    def to_dict(self) -> dict:
        return {"low": round(self.low, 3), "high": round(self.high, 3), "source": self.source}
