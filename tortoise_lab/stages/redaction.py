"""Redaction: cut the audio of ``[bracketed]`` text out of generated speech.

TorToiSe speaks the whole text, brackets included in its prompt, so that bracketed words can steer the tone
("[I am really sad,] Please feed me.") without being heard. Afterwards a wav2vec2 CTC recogniser finds where
each character of the text starts in the audio, and the bracketed spans are cut out:

1. ``parse_redactions``: text -> the spoken text without brackets and the character spans to keep.
2. ``Aligner.align``: (wav, spoken text) -> one sample position per character. The recogniser runs at
   16 kHz on the loudness-normalised clip; the text is matched against what it heard (``match_characters``)
   and each matched character is placed on the first later frame whose best class is that character.
   Characters it did not hear get positions interpolated between their neighbours.
3. ``Aligner.redact``: keeps ``wav[positions[start]:positions[stop]]`` for each kept span and joins them.

The recogniser is any transformers ``Wav2Vec2ForCTC``; its labels are described by a ``CtcVocab`` (the
official one, ``jbetker/tacotron-symbols``, is the 148 Tacotron symbols). Everything follows upstream
tortoise-tts 3.0.0 (``tortoise/utils/wav2vec_alignment.py``), quirks included (``tests/parity/test_redaction.py``):

* A kept span ends where its *last* character starts, so the audio of that last character is dropped
  ("[Hi] there" keeps "there" without its final "e").
* Characters are matched greedily on the first later frame whose arg-max class is theirs (not a CTC
  forced alignment).

Deliberate differences: unbalanced or nested brackets (including a stray ``]``) raise ``ValueError`` before
anything runs, where upstream asserts or silently swaps kept and cut spans; a failed alignment raises
``AlignmentError`` instead of an assert that writes a debug file into the working directory; fully redacted
text gives an empty clip instead of a ``torch.cat`` error; a text whose first character was not heard is
aligned (upstream's tokenizer refuses it when that character has no id, an unknown one included); a ``~`` in the
text is allowed (upstream asserts); long texts cannot hit Python's recursion limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torchaudio.functional as AF
from torch import nn

from tortoise_lab.stages.ctc_vocab import OFFICIAL_VOCAB_ID, TACOTRON_SYMBOLS, CtcVocab

__all__ = [
    "OFFICIAL_MODEL_ID",
    "OFFICIAL_VOCAB_ID",
    "RECOGNISER_SAMPLE_RATE",
    "TACOTRON_SYMBOLS",
    "AlignerUnavailableError",
    "AlignmentError",
    "CtcVocab",
    "RedactionPlan",
    "Alignment",
    "Aligner",
    "parse_redactions",
    "match_characters",
]

OFFICIAL_MODEL_ID = "jbetker/wav2vec2-large-robust-ft-libritts-voxpopuli"
RECOGNISER_SAMPLE_RATE = 16_000  # wav2vec2 listens at 16 kHz
DEFAULT_SAMPLE_RATE = 24_000  # what the vocoder produces, and what redact() gets in the pipeline
NORM_EPS = 1e-7  # added to the clip's variance before normalising, so silence does not divide by zero
UNHEARD = "~"  # marks a text character the recogniser's transcript has no match for
_SKIPPED = -1  # a position still to be interpolated

class AlignerUnavailableError(RuntimeError):
    """The recogniser or its vocabulary could not be loaded."""


class AlignmentError(RuntimeError):
    """The recogniser's frames do not contain the characters matched to the text, in order."""


# ------------------------------------------------------------------------------------------------ text side


@dataclass(frozen=True)
class RedactionPlan:
    """What is spoken and what is kept.

    ``spoken_text`` is the text without its brackets; ``kept`` lists (first, last) character indices into it
    (inclusive) of each non-empty unbracketed span, in order.
    """

    spoken_text: str
    kept: tuple[tuple[int, int], ...]


def parse_redactions(text: str) -> RedactionPlan:
    """Split ``text`` into kept and ``[redacted]`` spans; ValueError unless brackets pair up without nesting.

    Cheap: the pipeline can call it before generating anything, to reject bad text early.
    """
    segments = [""]  # alternately kept and redacted text, starting (and, when balanced, ending) with kept
    for position, char in enumerate(text):
        inside = len(segments) % 2 == 0
        if char == "[" and inside or char == "]" and not inside:
            problem = "a '[' inside a redacted span" if char == "[" else "a ']' with no '[' before it"
            raise _unbalanced(text, f"{problem} at character {position}")
        if char in "[]":
            segments.append("")
        else:
            segments[-1] += char
    if len(segments) % 2 == 0:
        raise _unbalanced(text, "the last '[' is never closed")
    kept, start = [], 0
    for index, segment in enumerate(segments):
        if index % 2 == 0 and segment:
            kept.append((start, start + len(segment) - 1))
        start += len(segment)
    return RedactionPlan("".join(segments), tuple(kept))


def _unbalanced(text: str, problem: str) -> ValueError:
    return ValueError(
        f"Unbalanced brackets in {text!r}: {problem}; every '[' needs a matching ']' and redacted spans cannot nest."
    )


def match_characters(expected: str, heard: str) -> str:
    """Mark the characters of ``expected`` that the transcript ``heard`` lacks with ``~``; same length as ``expected``.

    Upstream's rule, a longest common subsequence with its own tie-break: walking both strings, a character
    equal to the next heard one is taken; otherwise a heard character is skipped if that keeps strictly more
    characters of the text, else the text character is marked unheard. Computed bottom-up (upstream recursed):
    ``kept[i][j]`` = characters kept aligning ``expected[i:]`` with ``heard[j:]``.
    """
    n, m = len(expected), len(heard)
    kept = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below, char = kept[i], kept[i + 1], expected[i]
        for j in range(m - 1, -1, -1):
            if char == heard[j] and char != UNHEARD:
                row[j] = below[j + 1] + 1
            else:
                row[j] = max(row[j + 1], below[j])
    marked, i, j = [], 0, 0
    while i < n:
        if j == m:
            marked.append(UNHEARD * (n - i))
            break
        if expected[i] == heard[j] and expected[i] != UNHEARD:
            marked.append(expected[i])
            i, j = i + 1, j + 1
        elif kept[i][j + 1] > kept[i + 1][j]:
            j += 1
        else:
            marked.append(UNHEARD)
            i += 1
    return "".join(marked)


# ------------------------------------------------------------------------------------------------ audio side


@dataclass(frozen=True)
class Alignment:
    """Where each character of a text starts in a clip.

    ``positions``: one sample index (at the clip's own rate) per character of the text. ``heard``: the
    recogniser's transcript. ``matched``: the lower-cased text with unheard characters as ``~``.
    """

    positions: list[int]
    heard: str
    matched: str


def _first_frames(frame_ids: Sequence[int], targets: Sequence[int | None], matched: str,
                  hop: int) -> list[int] | None:
    """Greedy scan: each heard character after the first goes on the first later frame whose best class is it.

    Returns a position per character (``_SKIPPED`` for unheard ones), or None when some heard character is
    not found in order (a label id of None is never found).
    """
    queue = deque(zip(targets[1:], matched[1:]))
    positions = [0]  # the first character is taken to start the clip

    def next_heard() -> tuple[bool, int | None]:
        """(whether a heard character is left, its label id), recording unheard ones passed on the way."""
        while queue:
            target, char = queue.popleft()
            if char != UNHEARD:
                return True, target
            positions.append(_SKIPPED)
        return False, None

    pending, target = next_heard()
    for frame, best in enumerate(frame_ids):
        if not pending:
            break
        if best == target:
            positions.append(frame * hop)
            pending, target = next_heard()
    return None if pending else positions


def _interpolate_skipped(positions: list[int], end: int) -> list[int]:
    """Spread each run of skipped positions evenly (floor division) between its known neighbours."""
    filled = positions + [end]
    i = 0
    while i < len(filled):
        if filled[i] != _SKIPPED:
            i += 1
            continue
        stop = i
        while filled[stop] == _SKIPPED:
            stop += 1
        before, span = filled[i - 1], stop - i + 1
        gap = filled[stop] - before
        for j in range(i, stop):
            filled[j] = (j - i + 1) * gap // span + before
        i = stop
    return filled[:-1]


def _as_row(wav: torch.Tensor) -> torch.Tensor:
    """(N,) or (1, N) -> (1, N)."""
    if wav.dim() == 1:
        return wav.unsqueeze(0)
    if wav.dim() != 2 or wav.shape[0] != 1:
        raise ValueError(f"Expected a mono waveform of shape (N,) or (1, N), got {tuple(wav.shape)}.")
    return wav


class Aligner:
    """Aligns text to speech with a wav2vec2 CTC recogniser, and redacts bracketed text from speech.

    ``model``: a transformers ``Wav2Vec2ForCTC`` (anything whose call on (1, N) 16 kHz audio returns an
    object with ``.logits`` of shape (1, T, V)); it runs on whatever device it is on. ``vocab``: its labels.
    """

    def __init__(self, model: nn.Module, vocab: CtcVocab):
        self.model = model.eval()
        self.vocab = vocab

    @classmethod
    def from_pretrained(cls, model_id: str | Path = OFFICIAL_MODEL_ID, vocab_id: str | Path = OFFICIAL_VOCAB_ID,
                        device: str | torch.device = "cpu") -> "Aligner":
        """The official recogniser and vocabulary (hub repositories, or local folders), loaded through transformers."""
        try:
            from transformers import Wav2Vec2ForCTC

            model = Wav2Vec2ForCTC.from_pretrained(str(model_id))
            vocab = CtcVocab.from_pretrained(vocab_id)
        except Exception as error:  # noqa: BLE001 - network, cache and format errors all end here
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise AlignerUnavailableError(
                f"Could not load the redaction aligner ({model_id} with labels {vocab_id}) from the Hugging Face "
                f"hub or its cache ({reason}); fetch it once with network access or turn redaction off."
            ) from None
        return cls(model.to(device), vocab)

    def frame_logits(self, wav: torch.Tensor, sample_rate: int = DEFAULT_SAMPLE_RATE) -> torch.Tensor:
        """(N,) or (1, N) waveform at ``sample_rate`` -> (T, V) float32 CTC logits on the CPU."""
        parameter = next(self.model.parameters())
        with torch.no_grad():
            speech = AF.resample(_as_row(wav).to(parameter.device, torch.float32), sample_rate,
                                 RECOGNISER_SAMPLE_RATE)  # (1, N16)
            speech = (speech - speech.mean()) / torch.sqrt(speech.var() + NORM_EPS)
            logits = self.model(speech.to(parameter.dtype)).logits[0]  # (T, V)
        return logits.float().cpu()

    def align_details(self, wav: torch.Tensor, text: str, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Alignment:
        """``align`` with the recogniser's transcript and the text-to-transcript match."""
        if not text:
            raise ValueError("Cannot align an empty text.")
        num_samples = wav.shape[-1]
        frame_ids = self.frame_logits(wav, sample_rate).argmax(-1).tolist()  # (T,)
        if not frame_ids:
            raise ValueError(f"The clip ({num_samples} samples at {sample_rate} Hz) is too short to recognise.")
        heard = self.vocab.decode(frame_ids)
        matched = match_characters(text.lower(), heard)
        targets = self.vocab.encode(matched)
        if len(targets) == 1:
            return Alignment([0], heard, matched)
        hop = num_samples // len(frame_ids)  # samples per frame, at the clip's own rate
        positions = _first_frames(frame_ids, targets, matched, hop)
        if positions is None or len(positions) != len(text):
            raise AlignmentError(
                f"Could not align {text!r}: matched it as {matched!r} to the recogniser's transcript {heard!r}, "
                "but the frames do not hold those characters in that order."
            )
        return Alignment(_interpolate_skipped(positions, num_samples), heard, matched)

    def align(self, wav: torch.Tensor, text: str, sample_rate: int = DEFAULT_SAMPLE_RATE) -> list[int]:
        """(N,) or (1, N) waveform -> the sample index where each character of ``text`` starts (len(text) ints)."""
        return self.align_details(wav, text, sample_rate).positions

    def redact(self, wav: torch.Tensor, text: str, sample_rate: int = DEFAULT_SAMPLE_RATE) -> torch.Tensor:
        """Remove the audio of ``[bracketed]`` text from ``wav`` ((N,) or (1, N)), which speaks all of ``text``.

        Without brackets ``wav`` itself is returned and the recogniser does not run. The result has the input's
        shape but for the last dimension; each kept span runs from its first character's start to its last
        character's start (upstream's rule).
        """
        if "[" not in text and "]" not in text:
            return wav
        plan = parse_redactions(text)
        if not plan.kept:
            return wav[..., :0]
        positions = self.align(wav, plan.spoken_text, sample_rate)
        return torch.cat([wav[..., positions[first]:positions[last]] for first, last in plan.kept], dim=-1)
