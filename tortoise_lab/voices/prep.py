"""Voice preparation: raw recordings of one speaker -> a clean voice folder of short clips, with a report.

``prepare_voice(sources, name, voices_dir)`` reads recordings in any format, rate and channel count that
libsndfile decodes and writes ``voices_dir/name/01.wav, 02.wav, ...`` (mono, 22.05 kHz, 16-bit) plus
``prepare-report.md`` and ``prepare-report.json``. What happens to each recording (read, clipping check, mono,
noise floor, noise reduction, splitting at pauses, levelling), and why, is in ``recording``; the report's records
are in ``report``.

Raw files are only read. The voice folder appears in one rename (``files.atomic_dir``), or not at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tortoise_lab.audio import save_audio
from tortoise_lab.files import atomic_dir, write_text
from tortoise_lab.voices.library import AUDIO_SUFFIXES, BLEND_SEPARATOR, RANDOM_VOICE
from tortoise_lab.voices.measure import PrepSettings, clipped_fraction, noise_floor_db
from tortoise_lab.voices.recording import prepare_recording, split_points
from tortoise_lab.voices.report import ClipReport, PrepReport, SourceReport

__all__ = ["VoiceExistsError", "PrepSettings", "ClipReport", "SourceReport", "PrepReport", "prepare_voice",
           "prepare_recording", "noise_floor_db", "clipped_fraction", "split_points", "REPORT_STEM",
           "SOURCE_SUFFIXES"]

REPORT_STEM = "prepare-report"  # prepare-report.md and prepare-report.json inside the voice folder
# What a folder of sources is searched for: the voice formats plus the other containers libsndfile reads.
SOURCE_SUFFIXES = tuple(sorted(set(AUDIO_SUFFIXES) | {".aif", ".aiff", ".opus", ".oga", ".w64", ".caf", ".au"}))


def _check_name(name: str) -> None:
    if (not name or name != name.strip() or name.startswith(".") or name == RANDOM_VOICE
            or any(ch in name for ch in f"/\\{BLEND_SEPARATOR}")):
        raise ValueError(f"Voice name {name!r} is not allowed: use a plain folder name (letters, digits, '-', "
                         f"'_'), not starting with '.', without '/' or '{BLEND_SEPARATOR}', and not "
                         f"'{RANDOM_VOICE}'.")


def _collect(sources: list[Path]) -> tuple[list[Path], list[Path]]:
    """Source files to read (folders expanded, one level, sorted) and files skipped for their suffix."""
    files: list[Path] = []
    ignored: list[Path] = []
    for source in sources:
        if source.is_dir():
            for path in sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")):
                (files if path.suffix.lower() in SOURCE_SUFFIXES else ignored).append(path)
        elif source.is_file():
            files.append(source)  # named explicitly: try it whatever its suffix
        else:
            raise ValueError(f"No file or folder at {source}.")
    return files, ignored


def _write_voice(target: Path, clips: list[np.ndarray], report: PrepReport, overwrite: bool) -> None:
    """Build the voice in a hidden folder beside ``target``, then rename it into place in one step."""
    # An existing target is checked again at the end: it may have appeared while we worked.
    with atomic_dir(target, replace=overwrite, exists_error=VoiceExistsError,
                    exists_message=_exists_message(target)) as scratch:
        for clip, info in zip(clips, report.clips):
            save_audio(scratch / info.file, torch.from_numpy(clip), report.settings.sample_rate, subtype="PCM_16")
        write_text(scratch / f"{REPORT_STEM}.md", report.to_markdown())
        write_text(scratch / f"{REPORT_STEM}.json", report.to_json())


class VoiceExistsError(FileExistsError, ValueError):
    """The voice folder to write already exists (a ValueError too, so a CLI reports it like other bad input)."""


def _exists_message(target: Path) -> str:
    return f"Voice {target.name!r} already exists at {target}; pass overwrite=True (--overwrite) to replace it."


def prepare_voice(sources: list[str | Path] | str | Path, name: str, voices_dir: str | Path,
                  denoise: bool = True, overwrite: bool = False,
                  settings: PrepSettings | None = None) -> PrepReport:
    """Turn raw recordings of one speaker into the voice folder ``voices_dir/name/`` and report on it.

    ``sources`` is a file, a folder (its files with audio suffixes, not recursive) or a list of them. Writes
    clips ``01.wav``, ``02.wav``... (mono, ``settings.sample_rate``, 16-bit) and ``prepare-report.md`` /
    ``.json``; returns the same report. Raw files are only read.

    Raises ``VoiceExistsError`` (both a ``FileExistsError`` and a ``ValueError``) if the voice exists and
    ``overwrite`` is false, and ``ValueError`` when there is no audio, the name is not a plain folder name, or
    nothing usable is left; in every error case nothing is written. ``ImportError`` if ``denoise`` is on and
    noisereduce is missing.
    """
    settings = settings or PrepSettings()
    _check_name(name)
    target = Path(voices_dir).expanduser() / name
    if target.exists() and not overwrite:
        raise VoiceExistsError(_exists_message(target))
    paths = [Path(p).expanduser() for p in ([sources] if isinstance(sources, (str, Path)) else sources)]
    files, ignored = _collect(paths)
    if not files:
        raise ValueError(f"No audio files found in {', '.join(map(str, paths)) or 'the empty source list'} "
                         f"(looked for {', '.join(SOURCE_SUFFIXES)}).")

    reports: list[SourceReport] = []
    clips: list[np.ndarray] = []
    for path in files:
        source_report, source_clips = prepare_recording(path, denoise, settings)
        reports.append(source_report)
        clips += source_clips
    digits = max(2, len(str(len(clips))))
    for number, info in enumerate((info for r in reports for info in r.clips), start=1):
        info.file = f"{number:0{digits}d}.wav"
    report = PrepReport(name=name, voice_dir=str(target), denoise=denoise, settings=settings, sources=reports,
                        ignored=[str(p) for p in ignored])
    if not clips:
        reasons = "; ".join(f"{Path(r.source).name}: {r.reason}" for r in reports)
        raise ValueError(f"No usable speech in the {len(files)} recording(s), so no voice was written ({reasons}).")
    _write_voice(target, clips, report, overwrite)
    return report
