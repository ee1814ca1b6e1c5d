"""What voice preparation did, per clip and per recording: the records ``prepare_voice`` returns and saves as
``prepare-report.md`` and ``prepare-report.json`` beside the clips."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tortoise_lab.voices.measure import PrepSettings

__all__ = ["ClipReport", "SourceReport", "PrepReport"]


@dataclass
class ClipReport:
    """One clip written to the voice folder, and where it came from (times in the source, seconds)."""

    file: str
    start_s: float
    end_s: float
    duration_s: float
    gain_db: float  # the loudness normalisation applied
    peak_db: float  # after normalisation


@dataclass
class SourceReport:
    """What became of one raw recording."""

    source: str
    sha256: str
    kept: bool = False
    reason: str = ""  # why it was dropped (empty when kept)
    format: str = ""  # e.g. "FLAC PCM_16, 48000 Hz, 2 ch, 6.19 s"
    warnings: list[str] = field(default_factory=list)
    noise_floor_before_db: float | None = None  # mono, 22.05 kHz, before noise reduction
    noise_floor_after_db: float | None = None  # the same samples after noise reduction, same gain
    speech_level_db: float | None = None  # RMS over speech frames, before normalisation
    clipped_fraction: float | None = None
    clips: list[ClipReport] = field(default_factory=list)
    dropped_pieces: list[str] = field(default_factory=list)  # pieces of a long take too short to keep


@dataclass
class PrepReport:
    """Everything ``prepare_voice`` did; saved as ``prepare-report.md`` and ``.json`` beside the clips."""

    name: str
    voice_dir: str
    denoise: bool
    settings: PrepSettings
    sources: list[SourceReport]
    ignored: list[str] = field(default_factory=list)  # files in a source folder without an audio suffix

    @property
    def clips(self) -> list[ClipReport]:
        return [clip for source in self.sources for clip in source.clips]

    @property
    def dropped(self) -> list[SourceReport]:
        return [source for source in self.sources if not source.kept]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def to_text(self) -> str:
        """A few lines for a terminal."""
        seconds = sum(clip.duration_s for clip in self.clips)
        lines = [f"Voice {self.name!r}: {len(self.clips)} clips, {seconds:.1f} s, in {self.voice_dir}"]
        for source in self.sources:
            name = Path(source.source).name
            if source.kept:
                lines.append(f"  kept    {name}: {len(source.clips)} clip(s), noise floor "
                             f"{_db(source.noise_floor_before_db)} -> {_db(source.noise_floor_after_db)} dBFS")
            else:
                lines.append(f"  dropped {name}: {source.reason}")
            lines += [f"          warning: {warning}" for warning in source.warnings]
        if self.ignored:
            lines.append(f"  ignored (not audio files): {', '.join(Path(p).name for p in self.ignored)}")
        return "\n".join(lines) + "\n"

    def to_markdown(self) -> str:
        s = self.settings
        seconds = sum(clip.duration_s for clip in self.clips)
        out = [f"# Voice preparation: {self.name}", "",
               f"{len(self.clips)} clips ({seconds:.1f} s) from {len(self.sources) - len(self.dropped)} of "
               f"{len(self.sources)} recordings; mono {s.sample_rate} Hz 16-bit, speech at "
               f"{s.speech_level_db:g} dBFS RMS (peak <= {s.peak_ceiling_db:g} dBFS), clips of "
               f"{s.min_clip_s:g}-{s.max_clip_s:g} s, noise reduction {'on' if self.denoise else 'off'}.", "",
               "## Clips", "", "| clip | source | from (s) | to (s) | duration (s) | gain (dB) | peak (dBFS) |",
               "|---|---|---:|---:|---:|---:|---:|"]
        for source in self.sources:
            for c in source.clips:
                out.append(f"| {c.file} | {Path(source.source).name} | {c.start_s:.2f} | {c.end_s:.2f} | "
                           f"{c.duration_s:.2f} | {c.gain_db:+.1f} | {c.peak_db:.1f} |")
        out += ["", "## Recordings", "",
                "| recording | format | result | noise floor before (dBFS) | after (dBFS) | speech (dBFS) | notes |",
                "|---|---|---|---:|---:|---:|---|"]
        for src in self.sources:
            result = f"kept: {len(src.clips)} clip(s)" if src.kept else f"dropped: {src.reason}"
            notes = "; ".join(src.warnings + [f"dropped piece {p}" for p in src.dropped_pieces])
            out.append(f"| {Path(src.source).name} | {src.format or '-'} | {_md(result)} | "
                       f"{_db(src.noise_floor_before_db)} | {_db(src.noise_floor_after_db)} | "
                       f"{_db(src.speech_level_db)} | {_md(notes) or '-'} |")
        if self.ignored:
            out += ["", "Ignored (no audio suffix): " + ", ".join(Path(p).name for p in self.ignored) + "."]
        out += ["", "Noise floor: RMS of the quietest 10 % of 50 ms frames of the whole recording (mono, "
                f"{s.sample_rate} Hz), before and after noise reduction at the same gain.", ""]
        return "\n".join(out)


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
