"""Long text, chunk by chunk, resumable: ``tortoise-lab read`` and the same from Python.

A text is cut into chunks (``text.chunk_text``; ``|`` marks boundaries by hand). Chunk i of a run seeded s gets
its own seed from (s, i), so any chunk can be made again alone with the same result. Each voice gets a folder
``<output_dir>/<text file stem>/<voice>/`` with one WAV + sidecar per chunk, a ``manifest.json`` that tracks
progress, and ``combined.wav`` joining them. A chunk counts as finished when its WAV and sidecar exist and the
sidecar describes the same text, voice, seed, model and audio-relevant settings, so running the same command
again after an interruption synthesises only what is missing, and ``--regenerate 3,5-7`` redoes chosen chunks.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tortoise_lab import __version__
from tortoise_lab.config import SEED_RANGE, InferenceOptions, Settings
from tortoise_lab.files import json_text, read_json, write_json
from tortoise_lab.outputs import candidate_path, file_stem, load_wav, save_speech, save_with_sidecar, sidecar_path
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.stages.redaction import parse_redactions
from tortoise_lab.text import CHUNK_MARKER
from tortoise_lab.voices import load_voice

__all__ = ["MANIFEST_NAME", "COMBINED_STEM", "read_chunks", "check_chunks", "read_folder", "parse_indices",
           "chunk_seed", "identity", "sidecar_identity", "chunk_finished", "ReadResult", "read_voice"]

MANIFEST_NAME = "manifest.json"
COMBINED_STEM = "combined"


def read_chunks(tts: TextToSpeech, text: str, settings: Settings) -> tuple[list[str], list[str]]:
    """The chunks ``read`` synthesises one by one: split at '|' if the text has any, else by ``split_text`` at
    lengths that fit the model (``TextToSpeech.chunks``); and notes on what was shortened to fit."""
    return tts.chunks(text, settings, marker=CHUNK_MARKER)


def check_chunks(tts: TextToSpeech, chunks: list[str], settings: Settings) -> None:
    """ValueError now for a chunk the model cannot take, not after an hour of audio."""
    for chunk in chunks:
        tts.text_tokens(chunk)
        if settings.redact:
            parse_redactions(chunk)


def read_folder(output_dir: str | Path, text_file: str | Path, voice: str) -> Path:
    """``read``'s folder for one text and voice: ``<output_dir>/<text file stem>/<voice>``."""
    return Path(output_dir) / file_stem(Path(text_file).stem) / file_stem(voice)


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
    return int.from_bytes(digest[:8], "big") % SEED_RANGE


def identity(text: str, voice: str, seed: int, settings: dict, model: str) -> dict:
    """What determines a chunk's audio, in JSON form (so it compares equal to what a sidecar holds)."""
    # Sidecars written before the decoder choice existed were all made with the default decoder.
    audio_settings = {"decoder": Settings().decoder,
                      **{k: v for k, v in settings.items() if k not in InferenceOptions.LOSSLESS}}
    return json.loads(json_text({"text": text, "voice": voice, "seed": seed, "settings": audio_settings,
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


@dataclass
class ReadResult:
    folder: Path
    combined: Path
    seed: int  # the run's seed; each chunk's derives from it (see the manifest)
    chunks: int
    synthesised: int
    kept: int


def read_voice(tts: TextToSpeech, text_file: str | Path, chunks: list[str], spec: str, settings: Settings,
               output_dir: str | Path, seed: int | None, fallback_seed: int, command: list[str],
               voices_dir=None, regenerate: set[int] = frozenset(), skip_existing: bool = False,
               debug: bool = False, say: Callable[[str], None] = lambda message: None,
               on_speech: Callable = lambda speech: None) -> ReadResult:
    """Read ``chunks`` of ``text_file`` in the voice ``spec`` into ``read_folder(output_dir, text_file, spec)``.

    ``settings`` are the run's (its ``text_split`` cut the chunks, which are not split again; its device recorded as
    chosen, so a chunk made on auto matches one made with that device). The run's seed is ``seed``, else
    the one a previous run recorded in the manifest, else ``fallback_seed``. The manifest is written before the
    first chunk and after each one, so progress survives an interruption; ``combined.wav`` (one per candidate)
    joins the chunks at the end.
    """
    text_split, settings = settings.text_split, settings.replace(text_split=None)
    settings, _ = tts.models.fit(settings)  # as each chunk's sidecar records them (tts notes what fit changed)
    folder = read_folder(output_dir, text_file, spec)
    manifest_path = folder / MANIFEST_NAME
    previous = read_json(manifest_path) or {}
    run_seed = seed if seed is not None else previous.get("seed", fallback_seed)
    voice_name, model = spec.strip(), tts.models.description
    manifest = {
        "text_file": str(Path(text_file).resolve()), "voice": voice_name, "seed": run_seed, "model": model,
        "settings": settings.to_dict(), "text_split": text_split,
        "tortoise_lab_version": __version__, "combined": None, "chunks": [],
    }
    todo = []
    for index, chunk in enumerate(chunks):
        chunk_seed_ = chunk_seed(run_seed, index)
        best = folder / f"{index}.wav"
        expected = identity(chunk, voice_name, chunk_seed_, settings.to_dict(), model)
        done = index not in regenerate and (
            chunk_finished(best, expected, settings.candidates) or (skip_existing and best.is_file()))
        manifest["chunks"].append({"index": index, "text": chunk, "seed": chunk_seed_, "wav": best.name,
                                   "done": done})
        if not done:
            todo.append(index)
    write_json(manifest_path, manifest)
    say(f"Reading {text_file} as {spec}: {len(chunks)} chunks, {len(chunks) - len(todo)} already done, "
        f"{len(todo)} to synthesise.")

    voice = load_voice(spec, voices_dir) if todo else None
    for number, index in enumerate(todo, start=1):
        entry = manifest["chunks"][index]
        say(f"  chunk {index} ({number} of {len(todo)}): {entry['text'][:60]}")
        speech = tts.tts(entry["text"], voice=voice, seed=entry["seed"], settings=settings)
        save_speech(folder / entry["wav"], speech, tts.device, command, debug, chunk_index=index, run_seed=run_seed)
        on_speech(speech)
        entry["done"] = True
        write_json(manifest_path, manifest)  # progress survives an interruption at the next chunk

    combined = folder / f"{COMBINED_STEM}.wav"
    for k in range(settings.candidates):
        _join(manifest, folder, combined, k, settings, tts, command)
    manifest["combined"] = combined.name
    write_json(manifest_path, manifest)
    return ReadResult(folder, combined, run_seed, len(chunks), len(todo), len(chunks) - len(todo))


def _join(manifest: dict, folder: Path, combined: Path, k: int, settings: Settings, tts: TextToSpeech,
          command: list[str]) -> None:
    """combined.wav (candidate k) from every chunk's candidate k, with a sidecar listing the chunks."""
    parts = [candidate_path(folder / entry["wav"], k) for entry in manifest["chunks"]]
    if not all(p.is_file() for p in parts):
        return  # --skip-existing kept chunks made with fewer candidates: no full take k
    waves = [load_wav(p) for p in parts]
    audio = torch.cat([wav for wav, _ in waves], dim=-1)
    rate = waves[0][1]
    save_with_sidecar(candidate_path(combined, k), audio, rate, {
        "text_file": manifest["text_file"], "voice": manifest["voice"], "seed": manifest["seed"], "candidate": k,
        "sample_rate": rate, "duration_s": round(audio.shape[-1] / rate, 3),
        "chunks": [{"index": e["index"], "text": e["text"], "seed": e["seed"], "wav": p.name}
                   for e, p in zip(manifest["chunks"], parts)],
        "settings": settings.to_dict(), "model": tts.models.description, "device": str(tts.device),
        "tortoise_lab_version": __version__, "command": command,
    })
