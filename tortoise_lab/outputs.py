"""Where synthesis results go on disk: file names, JSON sidecars, debug state, and ``read``'s resume bookkeeping.

Every WAV gets a sidecar with the same stem (``tom.wav`` -> ``tom.json``) that says how it was made. Every write
is atomic (a scratch file in the same folder, then one rename), so a crash or Ctrl-C never leaves a half-written
WAV or JSON behind. ``read`` keeps a ``manifest.json`` per voice folder; a chunk counts as finished when its WAV
and sidecar exist and the sidecar describes the same text, voice, seed, model and audio-relevant settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path

import torch

from tortoise_lab.audio import save_audio

__all__ = [
    "SIDECAR_SUFFIX", "MANIFEST_NAME", "COMBINED_STEM", "INFERENCE_ONLY_SETTINGS",
    "sidecar_path", "candidate_path", "file_stem", "write_json", "read_json", "write_audio", "save_with_sidecar",
    "save_debug_state", "load_wav", "parse_indices", "chunk_seed", "identity", "sidecar_identity",
    "chunk_finished", "read_folder",
]

SIDECAR_SUFFIX = ".json"
MANIFEST_NAME = "manifest.json"
COMBINED_STEM = "combined"
DEBUG_TAG = ".debug"  # tom.wav -> tom.debug.safetensors + tom.debug.json
# Settings that never change the audio (the pipeline promises equal output with them on or off), so switching
# them does not make a finished chunk stale.
INFERENCE_ONLY_SETTINGS = ("kv_cache", "compile")
# read: the seed of chunk i is drawn from the run's seed and i, in this range (torch.Generator accepts it).
_SEED_RANGE = 2**31 - 1
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9._+-]+")
# libsndfile's command to leave out the PEAK chunk of float WAVs. That chunk holds the time of writing, so without
# this two runs with the same seed would give WAVs that differ in those bytes though the audio is identical.


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


def read_folder(output_dir: str | Path, text_file: str | Path, voice: str) -> Path:
    """``read``'s folder for one text and voice: ``<output_dir>/<text file stem>/<voice>``."""
    return Path(output_dir) / file_stem(Path(text_file).stem) / file_stem(voice)


# ------------------------------------------------------------------------------------------- atomic writes


def _scratch(path: Path) -> Path:
    # Beside the target, so the final rename stays on one file system and is atomic.
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.part"


def _json_text(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_scratch_json(path: Path, data) -> Path:
    """Write ``data`` to a scratch file beside ``path`` and return it (the caller renames it into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = _scratch(path)
    try:
        with open(scratch, "w", encoding="utf-8") as handle:
            handle.write(_json_text(data))
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the rename makes them visible
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return scratch


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    os.replace(_write_scratch_json(path, data), path)
    return path


def read_json(path: str | Path) -> dict | None:
    """The JSON object at ``path``, or None when it is missing or unreadable (treated as not written)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_audio(path: str | Path, wav: torch.Tensor, sample_rate: int) -> Path:
    """Write a waveform atomically and byte-for-byte reproducibly (``audio.save_audio``; WAV is 32-bit float)."""
    return save_audio(path, wav, sample_rate)


def save_with_sidecar(wav_path: str | Path, wav: torch.Tensor, sample_rate: int, metadata: dict) -> Path:
    """Save a (1, N) waveform and its JSON sidecar, each atomically.

    The sidecar is staged first and renamed after the WAV, so a failure while writing either leaves neither
    (only a crash between the two renames can leave a WAV without its sidecar, which ``read`` redoes).
    """
    wav_path = Path(wav_path)
    staged = _write_scratch_json(sidecar_path(wav_path), {**metadata, "wav": wav_path.name})
    try:
        write_audio(wav_path, wav, sample_rate)
        os.replace(staged, sidecar_path(wav_path))
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return wav_path


def save_debug_state(wav_path: str | Path, tensors: dict[str, torch.Tensor], info: dict) -> tuple[Path, Path]:
    """Save what reproduces a run beside its WAV: tensors as safetensors (no pickle), the rest as JSON.

    Returns (``<stem>.debug.safetensors``, ``<stem>.debug.json``).
    """
    from safetensors.torch import save_file

    wav_path = Path(wav_path)
    tensor_path = wav_path.with_name(f"{wav_path.stem}{DEBUG_TAG}.safetensors")
    json_path = wav_path.with_name(f"{wav_path.stem}{DEBUG_TAG}.json")
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = _scratch(tensor_path)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(scratch))
        os.replace(scratch, tensor_path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    write_json(json_path, {**info, "tensors_file": tensor_path.name, "tensors": sorted(tensors)})
    return tensor_path, json_path


def load_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """A WAV this package wrote, exactly as stored: ((1, N) float32, sample rate). No resampling."""
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    return torch.from_numpy(data[:, 0].copy())[None], rate


# ---------------------------------------------------------------------------------------- read bookkeeping


def parse_indices(spec: str) -> list[int]:
    """``"3,5-7"`` -> [3, 5, 6, 7]. ValueError, in one sentence, for anything else."""
    indices: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"--regenerate takes chunk numbers like 3,5-7; {part!r} is not one.")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"--regenerate range {part!r} runs backwards; write it as {last}-{first}.")
        indices.update(range(first, last + 1))
    return sorted(indices)


def chunk_seed(run_seed: int, index: int) -> int:
    """The seed of chunk ``index`` in a run seeded ``run_seed``: fixed by the two, different for every chunk, and
    independent of which other chunks are synthesised (so resuming or regenerating gives the same audio)."""
    digest = hashlib.sha256(f"tortoise-lab read {run_seed} {index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_RANGE


def identity(text: str, voice: str, seed: int, settings: dict, model: str) -> dict:
    """What determines a chunk's audio, in JSON form (so it compares equal to what a sidecar holds)."""
    audio_settings = {k: v for k, v in settings.items() if k not in INFERENCE_ONLY_SETTINGS}
    return json.loads(_json_text({"text": text, "voice": voice, "seed": seed, "settings": audio_settings,
                                  "model": model}))


def sidecar_identity(sidecar: dict) -> dict | None:
    """``identity`` of the run a sidecar describes, or None if it lacks a field."""
    try:
        return identity(sidecar["text"], sidecar["voice"], sidecar["seed"], sidecar["settings"], sidecar["model"])
    except (KeyError, TypeError, AttributeError):
        return None


def chunk_finished(best_wav: str | Path, expected: dict, candidates: int = 1) -> bool:
    """True when every candidate's WAV and sidecar exist and the best one's sidecar matches ``expected``."""
    paths = [candidate_path(best_wav, k) for k in range(candidates)]
    if not all(p.is_file() and sidecar_path(p).is_file() for p in paths):
        return False
    sidecar = read_json(sidecar_path(best_wav))
    return sidecar is not None and sidecar_identity(sidecar) == expected
