"""Voices: folders of short clips of one speaker (or a saved conditioning-latents file), found by name.

Search order: folders given by the caller (``--voices-dir``), the user's voices folder
(``$TORTOISE_LAB_HOME/voices``), this project's ``voices/``, the voices inside the package (``PACKAGED_VOICES``:
the embedded model's default voice, so an installed wheel speaks offline), then the 30 built-in voices from the
official assets. The first folder that has a voice of that name wins, and only it is listed: in a checkout the
packaged voice is a byte-identical copy of the project's (a test says so), and the project's wins. ``random`` is
not a folder: it asks the random-latent generators for a new voice.

Blends: ``a&b`` joins the clips of clip voices (as upstream does: every clip counts once), and averages the latents
when a latents-file voice takes part. ``a:0.7&b:0.3`` weights each voice's own conditioning latents (weights are
normalised to sum to 1); clip voices and latents-file voices mix freely.

Every clip is checked as it is read (``measure.check_clip``, the checks voice preparation makes too): a clip
that is not audio, empty, holds NaN or infinite samples, is too short to condition on or is silent stops the load
with a ``ValueError`` naming the file and what to do; one that is clipped, very quiet or shorter than ideal is
used, and said so in ``Voice.notes`` (which the pipeline copies into ``Speech.notes``). A blend carries its parts'
notes.

Conditioning latents of clip voices are cached beside the voice (``<voice>/.latents/<key>.safetensors``), keyed by
a hash of the clip files and of the model weights, so they are computed once; a changed clip or model gives a new
key. A packaged voice keeps its cache in ``$TORTOISE_LAB_HOME/packaged-voices/<voice>/`` instead: nothing is written
inside the installed package. Loading a voice reads files and writes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tortoise_lab.assets import builtin_voices_dir, data_dir
from tortoise_lab.audio import INPUT_SAMPLE_RATE, AudioError, conform_audio, read_audio
from tortoise_lab.files import atomic_path
from tortoise_lab.voices.measure import Finding, check_clip, unreadable

__all__ = ["RANDOM_VOICE", "BLEND_SEPARATOR", "WEIGHT_SEPARATOR", "AUDIO_SUFFIXES", "LATENT_SUFFIXES", "CACHE_FOLDER",
           "PROJECT_VOICES", "PACKAGED_VOICES", "Voice", "VoiceInfo", "user_voices_dir", "voice_dirs",
           "available_voices", "describe_voices", "load_voice", "parse_voice_spec", "read_latents_file", "LatentCache"]

RANDOM_VOICE = "random"
BLEND_SEPARATOR = "&"
WEIGHT_SEPARATOR = ":"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
LATENT_SUFFIXES = (".pth", ".safetensors")
CACHE_FOLDER = ".latents"
PROJECT_VOICES = Path(__file__).resolve().parents[2] / "voices"  # the repository's top-level voices/
PACKAGED_VOICES = Path(__file__).resolve().parents[1] / "data" / "voices"  # package data: in every install


@dataclass
class Voice:
    """What a voice name resolves to: clips (22.05 kHz mono, (1, N) each), saved latents, a weighted blend of
    other voices, or nothing at all (the random voice)."""

    name: str
    clips: list[torch.Tensor] = field(default_factory=list)
    # (autoregressive (1, C_ar), diffusion (1, C_diff)) when the voice is a saved latents file.
    latents: tuple[torch.Tensor, torch.Tensor] | None = None
    files: list[Path] = field(default_factory=list)  # the clip files, for the latent cache's key
    folder: Path | None = None  # where the latent cache lives; None: not cached
    parts: list[tuple["Voice", float]] = field(default_factory=list)  # a blend: (voice, weight), weights sum to 1
    notes: tuple[str, ...] = ()  # what the clip checks found wrong but usable (clipped, very quiet, short)

    @property
    def is_random(self) -> bool:
        return not self.clips and self.latents is None and not self.parts

    def clip_hash(self) -> str:
        """sha256 over the clip files' bytes (or the clips' samples when they did not come from files)."""
        digest = hashlib.sha256()
        if self.files:
            for path in self.files:
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        else:
            for clip in self.clips:
                digest.update(clip.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    folder: Path
    clips: int
    seconds: float
    latents_file: bool


def user_voices_dir() -> Path:
    """Where `voices prepare` puts new voices by default (searched by every command)."""
    return data_dir() / "voices"


def voice_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    """Folders searched for voices, first match wins."""
    folders = [Path(p).expanduser() for p in (extra or [])]
    folders += [user_voices_dir(), PROJECT_VOICES, PACKAGED_VOICES, builtin_voices_dir()]
    return folders


def _voice_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES + LATENT_SUFFIXES)


def available_voices(extra_dirs: list[str | Path] | None = None) -> dict[str, Path]:
    """Every voice name that resolves, mapped to its folder."""
    found: dict[str, Path] = {}
    for folder in voice_dirs(extra_dirs):
        if not folder.is_dir():
            continue
        for voice in sorted(folder.iterdir()):
            if voice.is_dir() and not voice.name.startswith(".") and voice.name not in found and _voice_files(voice):
                found[voice.name] = voice
    return found


def describe_voices(extra_dirs: list[str | Path] | None = None) -> list[VoiceInfo]:
    """Name, folder, number of clips and their total length for every available voice (reads headers only)."""
    import soundfile

    infos = []
    for name, folder in available_voices(extra_dirs).items():
        audio = [p for p in _voice_files(folder) if p.suffix.lower() in AUDIO_SUFFIXES]
        seconds = 0.0
        for path in audio:
            try:
                seconds += soundfile.info(str(path)).duration
            except Exception:  # an unreadable clip is reported when the voice is loaded
                pass
        infos.append(VoiceInfo(name, folder, len(audio), seconds, latents_file=len(audio) < len(_voice_files(folder))))
    return infos


def read_latents_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A saved (autoregressive, diffusion) latents pair: upstream's ``.pth`` (plain tensors only) or safetensors."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
        if not {"autoregressive", "diffusion"} <= set(state):
            raise ValueError(f"{path} should hold the tensors 'autoregressive' and 'diffusion'.")
        return state["autoregressive"], state["diffusion"]
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for code in the pickle, others for damaged files
        raise ValueError(f"{path} is not a plain-tensor latents file ({type(error).__name__}); tortoise_lab only "
                         "loads weights-only files, so nothing in it was run.") from None
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)):
        raise ValueError(f"{path} should hold a pair of tensors (autoregressive, diffusion latents).")
    return value[0], value[1]


def _load_clip(path: Path) -> tuple[torch.Tensor, list[str]]:
    """One voice clip, checked: ((1, N) at 22.05 kHz, as ``audio.load_audio`` gives it; notes on it).

    The checks need the raw samples (``load_audio`` keeps the first channel, resamples and clamps, and warns about
    odd samples before it), so the file is decoded once, checked, then given ``load_audio``'s own steps
    (``audio.conform_audio``). Raises ValueError, one sentence, when the clip cannot be used.
    """
    def unusable(finding: Finding) -> ValueError:
        return ValueError(f"Voice clip {path} is {finding.kind}: {finding.detail}; remove it or rebuild the voice "
                          "with `tortoise-lab voices prepare`.")

    try:
        channels, rate = read_audio(path)  # (C, N)
    except AudioError as error:
        raise unusable(unreadable(error)) from None
    problem, findings = check_clip(channels.numpy(), rate)
    if problem:
        raise unusable(problem)
    notes = [f"Voice clip {path} is {finding.kind}: {finding.detail}." for finding in findings]
    return conform_audio(channels, rate, INPUT_SAMPLE_RATE, path), notes


def _joined_notes(voices: list[Voice]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(note for voice in voices for note in voice.notes))  # in order, each once


def _load_one(name: str, extra_dirs) -> Voice:
    voices = available_voices(extra_dirs)
    if name not in voices:
        listed = ", ".join(sorted(voices)) or "none found"
        fetch = "" if builtin_voices_dir().is_dir() else " (the 30 built-in voices come with `tortoise-lab assets`)"
        raise ValueError(f"Unknown voice {name!r}. Available: {RANDOM_VOICE}, {listed}{fetch}.")
    folder = voices[name]
    files = _voice_files(folder)
    # The latent cache of a packaged voice goes to the user's data folder: never write inside the installed package.
    cache = data_dir() / "packaged-voices" / name if folder.parent == PACKAGED_VOICES else folder
    audio_files = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    if not audio_files:
        return Voice(name, latents=read_latents_file(files[0]), folder=cache)
    loaded = [_load_clip(p) for p in audio_files]
    return Voice(name, clips=[clip for clip, _ in loaded], files=audio_files, folder=cache,
                 notes=tuple(note for _, notes in loaded for note in notes))


def parse_voice_spec(spec: str) -> list[tuple[str, float | None]]:
    """``a:0.7&b:0.3`` -> [("a", 0.7), ("b", 0.3)]; ``a&b`` -> [("a", None), ("b", None)]."""
    parts = []
    for part in spec.split(BLEND_SEPARATOR):
        name, _, weight = part.strip().partition(WEIGHT_SEPARATOR)
        name = name.strip()
        if not name:
            raise ValueError(f"Voice {spec!r} has an empty part; write blends as a&b or a:0.7&b:0.3.")
        if weight:
            try:
                value = float(weight)
            except ValueError:
                raise ValueError(f"The weight {weight!r} in voice {spec!r} is not a number; write a:0.7&b:0.3.") from None
            if value <= 0:
                raise ValueError(f"Voice weights must be positive; {spec!r} has {value}.")
            parts.append((name, value))
        else:
            parts.append((name, None))
    weighted = [w is not None for _, w in parts]
    if any(weighted) and not all(weighted):
        raise ValueError(f"Give every voice in {spec!r} a weight, or none (a:0.7&b:0.3, or a&b).")
    return parts


def load_voice(spec: str, extra_dirs: list[str | Path] | None = None) -> Voice:
    """Resolve a voice name, ``random``, or a blend (see the module docstring).

    Raises ValueError, one sentence, for an unknown voice, a malformed blend, or a clip that cannot be used
    (named, with what to do); what is wrong but usable in the clips is in the returned ``Voice.notes``.
    """
    spec = spec.strip()
    if spec == RANDOM_VOICE:
        return Voice(RANDOM_VOICE)
    parsed = parse_voice_spec(spec)
    names = [name for name, _ in parsed]
    if RANDOM_VOICE in names and len(names) > 1:
        raise ValueError("The random voice cannot be blended; pick named voices for a blend.")
    if len(parsed) == 1 and parsed[0][1] is None:
        return _load_one(names[0], extra_dirs)
    voices = [_load_one(name, extra_dirs) for name in names]
    if parsed[0][1] is None and all(v.latents is None for v in voices):
        # Upstream's a&b: one voice whose clips are all the clips (each clip weighs the same).
        return Voice(spec, clips=[c for v in voices for c in v.clips], files=[f for v in voices for f in v.files],
                     notes=_joined_notes(voices))
    weights = [w if w is not None else 1.0 for _, w in parsed]
    total = sum(weights)
    return Voice(spec, parts=[(voice, weight / total) for voice, weight in zip(voices, weights)],
                 notes=_joined_notes(voices))


class LatentCache:
    """Conditioning latents of clip voices, stored beside the voice as safetensors and keyed by clips + model."""

    def __init__(self, model_fingerprint: str, enabled: bool = True):
        self.model_fingerprint = model_fingerprint
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def _path(self, voice: Voice) -> Path | None:
        if not self.enabled or voice.folder is None or not voice.files:
            return None
        key = hashlib.sha256(f"{voice.clip_hash()}:{self.model_fingerprint}".encode()).hexdigest()[:32]
        return voice.folder / CACHE_FOLDER / f"{key}.safetensors"

    def load(self, voice: Voice) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self._path(voice)
        if path is None or not path.exists():
            if path is not None:
                self.misses += 1
            return None
        self.hits += 1
        return read_latents_file(path)

    def store(self, voice: Voice, autoregressive: torch.Tensor, diffusion: torch.Tensor) -> Path | None:
        """Save the latents (atomically); returns the path, or None when caching is off or the folder is read-only."""
        path = self._path(voice)
        if path is None:
            return None
        from safetensors.torch import save_file

        try:
            with atomic_path(path) as scratch:
                save_file({"autoregressive": autoregressive.detach().cpu().contiguous(),
                           "diffusion": diffusion.detach().cpu().contiguous()}, str(scratch),
                          metadata={"voice": voice.name, "model": self.model_fingerprint})
        except OSError:  # a read-only voices folder: run on without the cache
            return None
        return path
