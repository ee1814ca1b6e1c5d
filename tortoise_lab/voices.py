"""Voices: folders of short clips of one speaker (or a saved conditioning-latents file), found by name.

Search order: folders given by the caller (``--voices-dir``), the user's voices folder
(``$TORTOISE_LAB_HOME/voices``), this project's ``voices/``, then the 30 built-in voices from the official
assets. The first folder that has a voice of that name wins. ``random`` is not a folder: it asks the random-latent
generators for a new voice. ``a&b`` joins the clips of several voices (or averages their latents).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from tortoise_lab.assets import builtin_voices_dir, data_dir
from tortoise_lab.audio import INPUT_SAMPLE_RATE, load_audio

__all__ = ["RANDOM_VOICE", "AUDIO_SUFFIXES", "LATENT_SUFFIXES", "Voice", "voice_dirs", "available_voices",
           "load_voice"]

RANDOM_VOICE = "random"
BLEND_SEPARATOR = "&"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
LATENT_SUFFIXES = (".pth", ".safetensors")
PROJECT_VOICES = Path(__file__).resolve().parent.parent / "voices"


@dataclass
class Voice:
    """What a voice name resolves to: clips (22.05 kHz mono, (1, N) each), saved latents, or nothing (random)."""

    name: str
    clips: list[torch.Tensor] = field(default_factory=list)
    # (autoregressive (1, C_ar), diffusion (1, C_diff)) when the voice is a saved latents file.
    latents: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def is_random(self) -> bool:
        return not self.clips and self.latents is None


def voice_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    """Folders searched for voices, first match wins."""
    folders = [Path(p).expanduser() for p in (extra or [])]
    folders += [data_dir() / "voices", PROJECT_VOICES, builtin_voices_dir()]
    return folders


def _voice_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES + LATENT_SUFFIXES)


def available_voices(extra_dirs: list[str | Path] | None = None) -> dict[str, Path]:
    """Every voice name that resolves, mapped to its folder."""
    found: dict[str, Path] = {}
    for folder in voice_dirs(extra_dirs):
        if not folder.is_dir():
            continue
        for voice in sorted(folder.iterdir()):
            if voice.is_dir() and voice.name not in found and _voice_files(voice):
                found[voice.name] = voice
    return found


def _load_latents(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
        return state["autoregressive"], state["diffusion"]
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a plain-tensor latents file ({type(error).__name__}); "
                         "only weights-only files are loaded, no pickled code runs.") from None
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(t, torch.Tensor) for t in value)):
        raise ValueError(f"{path} should hold a pair of tensors (autoregressive, diffusion latents).")
    return value[0], value[1]


def _load_one(name: str, extra_dirs) -> Voice:
    voices = available_voices(extra_dirs)
    if name not in voices:
        listed = ", ".join(sorted(voices)) or "none found; run `tortoise-lab assets`"
        raise ValueError(f"Unknown voice {name!r}. Available: {RANDOM_VOICE}, {listed}.")
    files = _voice_files(voices[name])
    latent_files = [p for p in files if p.suffix in LATENT_SUFFIXES]
    audio_files = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    if latent_files and not audio_files:
        return Voice(name, latents=_load_latents(latent_files[0]))
    return Voice(name, clips=[load_audio(p, INPUT_SAMPLE_RATE) for p in audio_files])


def load_voice(spec: str, extra_dirs: list[str | Path] | None = None) -> Voice:
    """Resolve a voice name, ``random``, or a blend ``a&b`` (clips joined, or latents averaged)."""
    spec = spec.strip()
    if spec == RANDOM_VOICE:
        return Voice(RANDOM_VOICE)
    names = [part.strip() for part in spec.split(BLEND_SEPARATOR)]
    if not all(names):
        raise ValueError(f"Voice {spec!r} has an empty part; write blends as a&b.")
    if RANDOM_VOICE in names and len(names) > 1:
        raise ValueError("The random voice cannot be blended; pick named voices for a blend.")
    parts = [_load_one(name, extra_dirs) for name in names]
    if len(parts) == 1:
        return parts[0]
    if all(p.latents is None for p in parts):
        return Voice(spec, clips=[clip for part in parts for clip in part.clips])
    if all(p.latents is not None for p in parts):
        return Voice(spec, latents=(torch.stack([p.latents[0] for p in parts]).mean(0),
                                    torch.stack([p.latents[1] for p in parts]).mean(0)))
    raise ValueError(f"Voice {spec!r} mixes clip voices and latent-file voices; blend voices of one kind.")
