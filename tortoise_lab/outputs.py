"""Where synthesis results go on disk: file names, JSON sidecars and debug state.

Every WAV gets a sidecar with the same stem (``tom.wav`` -> ``tom.json``) that says how it was made: the
``Speech``'s metadata plus the device, the candidate and the command. Every write is atomic (``files``), so a crash
or Ctrl-C never leaves a half-written WAV or JSON behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tortoise_lab import __version__
from tortoise_lab.audio import read_audio, save_audio
from tortoise_lab.files import atomic_path, hold_interruptions, write_json

__all__ = ["SIDECAR_SUFFIX", "sidecar_path", "candidate_path", "file_stem", "sidecar", "save_with_sidecar",
           "save_speech", "save_debug_state", "load_wav"]

SIDECAR_SUFFIX = ".json"
DEBUG_TAG = ".debug"  # tom.wav -> tom.debug.safetensors + tom.debug.json
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9._+-]+")


# ------------------------------------------------------------------------------------------------- naming


def sidecar_path(wav_path: str | Path) -> Path:
    """The JSON that describes a WAV: same folder, same stem."""
    return Path(wav_path).with_suffix(SIDECAR_SUFFIX)


def candidate_path(best: str | Path, index: int) -> Path:
    """Where candidate ``index`` goes: the best one (0) at ``best`` itself, the others beside it
    (``tom.wav`` -> ``tom_candidate1.wav``)."""
    best = Path(best)
    return best if index == 0 else best.with_name(f"{best.stem}_candidate{index}{best.suffix}")


def file_stem(name: str) -> str:
    """A voice name or text-file stem as a safe file name: a blend ``tom&emma`` becomes ``tom+emma``."""
    cleaned = _UNSAFE_IN_NAMES.sub("_", name.replace("&", "+")).strip("._")
    return cleaned or "unnamed"


# -------------------------------------------------------------------------------------------------- writing


def sidecar(speech, device, command: list[str], candidate: int = 0, **extra) -> dict:
    """What a WAV's sidecar says: the ``Speech``'s metadata, the device, which candidate, the command."""
    return {**speech.metadata(), "device": str(device), "candidate": candidate, "tortoise_lab_version": __version__,
            "command": command, **extra}


def save_with_sidecar(wav_path: str | Path, wav: torch.Tensor, sample_rate: int, metadata: dict) -> Path:
    """Save a (1, N) waveform and its JSON sidecar, each atomically.

    The sidecar is staged first and renamed after the WAV, so a failure while writing either leaves neither
    (only a crash between the two renames can leave a WAV without its sidecar, which ``read`` redoes; an
    interruption waits until both are in place).
    """
    wav_path = Path(wav_path)
    with hold_interruptions(), atomic_path(sidecar_path(wav_path)) as staged:
        write_json(staged, {**metadata, "wav": wav_path.name})
        save_audio(wav_path, wav, sample_rate)
    return wav_path


def save_speech(best: str | Path, speech, device, command: list[str], debug: bool = False,
                **extra) -> list[Path]:
    """Every candidate of ``speech`` (the best at ``best``, the others beside it) with sidecars, and with
    ``debug`` its debug state (codes, scores, candidates). Returns the WAV paths."""
    paths = []
    for k, wav in enumerate(speech.candidates):
        path = candidate_path(best, k)
        save_with_sidecar(path, wav, speech.sample_rate, sidecar(speech, device, command, k, **extra))
        paths.append(path)
    if debug:
        tensors = {f"candidate_{k}": wav for k, wav in enumerate(speech.candidates)}  # candidate_0 is the WAV
        tensors.update({f"codes_{i}": codes for i, codes in enumerate(speech.codes)})
        tensors.update({f"scores_{i}": scores for i, scores in enumerate(speech.scores)})
        save_debug_state(best, tensors, sidecar(speech, device, command, 0, **extra))
    return paths


def save_debug_state(wav_path: str | Path, tensors: dict[str, torch.Tensor], info: dict) -> tuple[Path, Path]:
    """Save what reproduces a run beside its WAV: tensors as safetensors (no pickle), the rest as JSON.

    Returns (``<stem>.debug.safetensors``, ``<stem>.debug.json``).
    """
    from safetensors.torch import save_file

    wav_path = Path(wav_path)
    tensor_path = wav_path.with_name(f"{wav_path.stem}{DEBUG_TAG}.safetensors")
    json_path = wav_path.with_name(f"{wav_path.stem}{DEBUG_TAG}.json")
    with atomic_path(tensor_path) as scratch:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(scratch))
    write_json(json_path, {**info, "tensors_file": tensor_path.name, "tensors": sorted(tensors)})
    return tensor_path, json_path


def load_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """A WAV this package wrote, exactly as stored: ((1, N) float32, sample rate). No resampling."""
    channels, rate = read_audio(path)  # (C, N)
    return channels[:1].contiguous(), rate
