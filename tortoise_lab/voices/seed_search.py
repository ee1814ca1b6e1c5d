"""Find the seed whose output sounds most like the voice's own clips.

Each seed is synthesised and scored by every measure that can run here:

* **encoder** (``voices.similarity``, the default ranking): the cosine of GE2E speaker-encoder d-vectors of the take
  and of the voice's clips.
* **mfcc** (always; needs no weights): the cosine of MFCC statistics, the dependency-free fallback.
* **CVVP** (when its weights are present): TorToiSe's own contrastive voice-vs-speech model scores the chosen
  candidate's codes against the voice's conditioning mels, averaged over clips, as ``cvvp_amount`` does.

``rank_by`` chooses the measure that orders the takes (the encoder unless it cannot run, then MFCC, with a note).
The result also says how sure the order is: the best take's lead over the next and over the median take, and how
alike the voice's own clips are under the same measure (``similarity.clip_agreement``): the ceiling of a clone.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE, save_audio
from tortoise_lab.config import Settings
from tortoise_lab.files import atomic_path, write_text
from tortoise_lab.stages.conditioning import voice_latents
from tortoise_lab.voices.library import Voice
from tortoise_lab.voices.similarity import (DEFAULT_MEASURE, SimilarityUnavailable, clip_agreement, measure,
                                            similarity_to_voice)

if TYPE_CHECKING:  # the pipeline is the layer above; it is handed in, never imported here
    from tortoise_lab.pipeline import TextToSpeech

__all__ = ["SeedResult", "SeedRanking", "RANKINGS", "speaker_similarity", "parse_seeds", "match_seeds", "write_table"]

MAX_SEEDS = 10_000
RANKINGS = ("encoder", "mfcc", "cvvp")


@dataclass(frozen=True)
class SeedResult:
    seed: int
    rank: int
    encoder: float | None  # speaker-encoder similarity to the voice (None where the encoder cannot run)
    mfcc: float
    cvvp: float | None  # None without CVVP weights
    path: Path
    duration_s: float

    def score(self, by: str) -> float | None:
        return getattr(self, by)


@dataclass
class SeedRanking:
    """The takes, best first, and how sure that order is."""

    results: list[SeedResult]
    rank_by: str
    ceiling: dict[str, float] | None  # the voice's own clips under rank_by: {"mean", "min"}; None for one clip
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> SeedResult:
        return self.results[0]

    @property
    def lead(self) -> dict[str, float] | None:
        """The best score minus the next one's ("next") and minus the median of the others ("median")."""
        scores = [r.score(self.rank_by) for r in self.results]
        if len(scores) < 2:
            return None
        return {"next": scores[0] - scores[1], "median": scores[0] - statistics.median(scores[1:])}

    def summary(self) -> str:
        """One line: the measure, the best seed and its score, its lead, the ceiling."""
        best = self.best.score(self.rank_by)
        line = f"ranked by {self.rank_by}; best seed {self.best.seed} ({best:.3f})"
        if self.lead:
            line += f", ahead of the next by {self.lead['next']:.3f} and of the median take by {self.lead['median']:.3f}"
        if self.ceiling:
            line += (f"; the voice's own clips score {self.ceiling['mean']:.3f} against each other (lowest "
                     f"{self.ceiling['min']:.3f}): the ceiling")
        return line


def speaker_similarity(wav: torch.Tensor, sample_rate: int, clips: list[torch.Tensor],
                       by: str = DEFAULT_MEASURE) -> float:
    """How much ``wav`` sounds like the speaker of ``clips`` (22.05 kHz), under the measure ``by``."""
    return similarity_to_voice(wav, sample_rate, Voice("clips", clips=list(clips)), measure(by))


def parse_seeds(text: str) -> list[int]:
    """``1-20``, ``3,7,9`` or a mix (``1-5,9``) -> the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            values = range(int(low), int(high) + 1) if dash else [int(part)]
        except ValueError:
            raise ValueError(f"Cannot read seeds {text!r}; write them like 1-20 or 3,7,9.") from None
        seeds += [s for s in values if s not in seeds]
    if not seeds or len(seeds) > MAX_SEEDS or min(seeds) < 0:
        raise ValueError(f"Give between 1 and {MAX_SEEDS} non-negative seeds, like 1-20.")
    return seeds


def match_seeds(tts: TextToSpeech, voice: Voice, text: str, seeds: list[int], out_dir: str | Path,
                preset: str = "ultra_fast", settings: Settings | None = None, rank_by: str = DEFAULT_MEASURE,
                **overrides) -> SeedRanking:
    """Synthesise ``text`` once per seed, write ``seed-<n>.wav`` files, and rank them by ``rank_by`` (one of
    ``RANKINGS``), best first. The encoder falls back to MFCC, with a note, where it cannot run; asking for CVVP
    without its weights is a ValueError."""
    if rank_by not in RANKINGS:
        raise ValueError(f"Unknown ranking {rank_by!r}. Available: {', '.join(RANKINGS)}.")
    if not voice.clips and not voice.parts:
        raise ValueError(f"Voice {voice.name!r} has no clips to compare against; seed search needs a clip voice.")
    use_cvvp = tts.models.has_cvvp()
    if rank_by == "cvvp" and not use_cvvp:
        raise ValueError("This model set has no CVVP; rank by encoder or mfcc.")
    notes = []
    try:
        encoder = measure("encoder")
    except SimilarityUnavailable as error:
        encoder = None
        notes.append(f"{error} Ranked by mfcc instead." if rank_by == "encoder" else str(error))
        rank_by = "mfcc" if rank_by == "encoder" else rank_by
    mfcc = measure("mfcc")
    out_dir = Path(out_dir)
    settings = settings.replace(**overrides) if settings else Settings.from_preset(preset, **overrides)
    rows = []
    for seed in seeds:
        speech = tts.tts(text, voice=voice, seed=seed, settings=settings)
        path = save_audio(out_dir / f"seed-{seed}.wav", speech.wav, speech.sample_rate)
        cvvp = None
        if use_cvvp:
            with torch.no_grad():
                _, ar_mels = voice_latents(tts.models, voice, torch.Generator(), want_mels=True)
                codes = speech.codes[0][:1].to(tts.device)
                model = tts.models.cvvp
                speech_latent = model.embed_speech(codes)
                cvvp = float(torch.stack([model.similarity(model.embed_conditioning(ar_mels[:, i]), speech_latent)
                                          for i in range(ar_mels.shape[1])]).mean())
        rows.append(dict(seed=seed, rank=0, cvvp=cvvp, path=path, duration_s=speech.duration,
                         mfcc=similarity_to_voice(speech.wav, speech.sample_rate, voice, mfcc),
                         encoder=(similarity_to_voice(speech.wav, speech.sample_rate, voice, encoder)
                                  if encoder is not None else None)))
    rows.sort(key=lambda row: row[rank_by], reverse=True)
    results = [SeedResult(**{**row, "rank": rank + 1}) for rank, row in enumerate(rows)]
    ceiling = clip_agreement(voice, encoder if rank_by == "encoder" else mfcc) if rank_by != "cvvp" else None
    return SeedRanking(results, rank_by, ceiling, notes)


def write_table(ranking: SeedRanking, out_dir: str | Path) -> tuple[Path, Path]:
    """``ranking.csv`` and ``ranking.md`` (the table, then the ranking's summary line and notes) in ``out_dir``."""
    out_dir = Path(out_dir)
    results = ranking.results
    measures = [m for m in RANKINGS if any(r.score(m) is not None for r in results)]
    header = ["rank", "seed", *measures, "duration_s", "wav"]
    rows = [[r.rank, r.seed, *[f"{r.score(m):.4f}" if r.score(m) is not None else "" for m in measures],
             f"{r.duration_s:.2f}", r.path.name] for r in results]
    csv_path = out_dir / "ranking.csv"
    with atomic_path(csv_path) as scratch, open(scratch, "w", newline="") as handle:  # csv writes its own \r\n
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    lines += ["", ranking.summary() + "."] + ranking.notes
    return csv_path, write_text(out_dir / "ranking.md", "\n".join(lines) + "\n")
