"""Find the seed whose output sounds most like the voice's own clips.

Each seed is synthesised and scored two ways:

* **CVVP** (when its weights are present): TorToiSe's own contrastive voice-vs-speech model scores the chosen
  candidate's codes against the voice's conditioning mels, averaged over clips, as ``cvvp_amount`` does.
* **MFCC-statistics similarity** (always; needs no weights): the cosine similarity of
  [mean, standard deviation] of MFCCs 1-19 over the voiced frames of the output and of the clips. MFCCs describe
  the spectral envelope (vocal tract shape, timbre) and their statistics over an utterance barely depend on what
  is said, which is why they were the standard text-independent speaker features before neural speaker
  encoders. Those encoders are better, but their weights cannot be fetched offline; this measure runs anywhere.
  It also reacts to the recording channel (microphone, room), so compare clips recorded alike.

Results are ranked by CVVP when available, else by MFCC similarity.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torchaudio

from tortoise_lab.audio import INPUT_SAMPLE_RATE, resample, save_audio
from tortoise_lab.config import Settings
from tortoise_lab.files import atomic_path, write_text
from tortoise_lab.stages.conditioning import voice_latents
from tortoise_lab.voices.library import Voice

if TYPE_CHECKING:  # the pipeline is the layer above; it is handed in, never imported here
    from tortoise_lab.pipeline import TextToSpeech

__all__ = ["SeedResult", "mfcc_statistics", "speaker_similarity", "parse_seeds", "match_seeds", "write_table"]

N_MFCC = 20  # coefficient 0 (loudness) is dropped, 1..19 kept
VOICED_FRAMES_DB = 35.0  # frames quieter than the loudest by more than this are pauses, left out
MAX_SEEDS = 10_000


@dataclass(frozen=True)
class SeedResult:
    seed: int
    rank: int
    mfcc_similarity: float
    cvvp: float | None
    path: Path
    duration_s: float


def mfcc_statistics(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """[mean, std] over voiced frames of MFCCs 1..19 of a (1, N) waveform -> (38,)."""
    wav = resample(wav.reshape(1, -1).float(), sample_rate, INPUT_SAMPLE_RATE)
    mfcc = torchaudio.transforms.MFCC(sample_rate=INPUT_SAMPLE_RATE, n_mfcc=N_MFCC,
                                      melkwargs={"n_fft": 1024, "hop_length": 256, "n_mels": 80})(wav)[0]  # (20, T)
    energy = mfcc[0]
    voiced = energy >= energy.max() - VOICED_FRAMES_DB
    coefficients = mfcc[1:, voiced]  # (19, T_voiced)
    return torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1, unbiased=False)])


def speaker_similarity(wav: torch.Tensor, sample_rate: int, clips: list[torch.Tensor]) -> float:
    """Cosine similarity of MFCC statistics: output vs the voice's clips (22.05 kHz) pooled."""
    reference = mfcc_statistics(torch.cat([c.reshape(1, -1) for c in clips], dim=-1), INPUT_SAMPLE_RATE)
    candidate = mfcc_statistics(wav, sample_rate)
    return float(torch.nn.functional.cosine_similarity(candidate, reference, dim=0))


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
                preset: str = "ultra_fast", settings: Settings | None = None, **overrides) -> list[SeedResult]:
    """Synthesise ``text`` once per seed, write ``seed-<n>.wav`` files, and return them ranked, best first."""
    if not voice.clips and not voice.parts:
        raise ValueError(f"Voice {voice.name!r} has no clips to compare against; seed search needs a clip voice.")
    clips = voice.clips or [c for part, _ in voice.parts for c in part.clips]
    out_dir = Path(out_dir)
    use_cvvp = tts.models.has_cvvp()
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
        rows.append((seed, speaker_similarity(speech.wav, speech.sample_rate, clips), cvvp, path, speech.duration))
    key = (lambda r: r[2]) if use_cvvp else (lambda r: r[1])
    rows.sort(key=key, reverse=True)
    return [SeedResult(seed, rank + 1, similarity, cvvp, path, duration)
            for rank, (seed, similarity, cvvp, path, duration) in enumerate(rows)]


def write_table(results: list[SeedResult], out_dir: str | Path) -> tuple[Path, Path]:
    """``ranking.csv`` and ``ranking.md`` in ``out_dir``."""
    out_dir = Path(out_dir)
    header = ["rank", "seed", "cvvp", "mfcc_similarity", "duration_s", "wav"]
    rows = [[r.rank, r.seed, "" if r.cvvp is None else f"{r.cvvp:.4f}", f"{r.mfcc_similarity:.4f}",
             f"{r.duration_s:.2f}", r.path.name] for r in results]
    csv_path = out_dir / "ranking.csv"
    with atomic_path(csv_path) as scratch, open(scratch, "w", newline="") as handle:  # csv writes its own \r\n
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return csv_path, write_text(out_dir / "ranking.md", "\n".join(lines) + "\n")
