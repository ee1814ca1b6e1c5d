"""Long text, chunk by chunk, resumable: ``tortoise-lab read`` and the same from Python.

A text is cut into chunks (``text.chunk_text``; ``|`` marks boundaries by hand). Chunk i of a run seeded s gets
its own seed from (s, i), so any chunk can be made again alone with the same result. Each voice gets a folder
``<output_dir>/<text file stem>/<voice>/`` with one WAV + sidecar per chunk, a ``manifest.json`` that tracks
progress, and ``combined.wav`` joining them. A chunk counts as finished when its WAV and sidecar exist and the
sidecar describes the same text, voice, seed, model and audio-relevant settings, so running the same command
again after an interruption synthesises only what is missing, and ``--regenerate 3,5-7`` redoes chosen chunks.

One read is three steps, the same whoever makes the chunks: ``plan_read`` (the manifest, the seeds, the chunks
still to make), then for each chunk an engine hands back ``save_chunk`` (or ``fail_chunk``), then ``finish_read``
(the join). The engine is ``LocalReader`` (this process, chunk after chunk) or ``tortoise_lab.cluster.RayReader``
(one worker per GPU or CPU slot of a Ray cluster, results written here as they come). Chunk i's bytes depend only
on the text, voice, settings, run seed and torch's thread count (``set_threads``), never on the engine.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from tortoise_lab import __version__
from tortoise_lab.config import SEED_RANGE, InferenceOptions, Settings
from tortoise_lab.files import json_text, read_json, remove_scratch, write_json
from tortoise_lab.outputs import candidate_path, file_stem, load_wav, save_speech, save_with_sidecar, sidecar_path
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.speech import Speech
from tortoise_lab.stages.redaction import parse_redactions
from tortoise_lab.text import CHUNK_MARKER
from tortoise_lab.voices import load_voice

__all__ = ["MANIFEST_NAME", "COMBINED_STEM", "read_chunks", "check_chunks", "read_folder", "parse_indices",
           "chunk_seed", "identity", "sidecar_identity", "chunk_finished", "ChunkJob", "ChunkOutcome", "ReadPlan",
           "ReadResult", "set_threads", "LocalReader", "plan_read", "save_chunk", "fail_chunk", "finish_read",
           "read_voice"]

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


@dataclass(frozen=True)
class ChunkJob:
    """One chunk to synthesise: its place in the text, its words and its seed (``chunk_seed``)."""

    index: int
    text: str
    seed: int


@dataclass
class ChunkOutcome:
    """What an engine hands back for one chunk: its ``Speech``, or (``speech`` None) the error of its last attempt."""

    index: int
    speech: Speech | None
    device: str  # where it was made
    threads: int  # torch's intra-op threads it was made with (on CPU the float sums, so the bytes, depend on it)
    attempts: int = 1
    error: str | None = None
    worker: str | None = None  # which worker made it ("pid@host" on a Ray cluster); None: this process


@dataclass
class ReadPlan:
    """A read of one text in one voice, decided before any synthesis: where it goes, its manifest (written), the
    run's fitted settings and seed, and the chunks still to make. Both engines fill it through ``save_chunk`` and
    ``fail_chunk``, and ``finish_read`` joins it."""

    folder: Path
    manifest: dict
    settings: Settings
    run_seed: int
    jobs: list[ChunkJob]

    def save(self) -> None:
        write_json(self.folder / MANIFEST_NAME, self.manifest)  # atomic: progress survives an interruption


@dataclass
class ReadResult:
    folder: Path
    combined: Path | None  # None when a chunk failed: no joined file claims to be the whole text
    seed: int  # the run's seed; each chunk's derives from it (see the manifest)
    chunks: int
    synthesised: int
    kept: int
    failed: dict[int, str] = field(default_factory=dict)  # chunk index -> the error of its last attempt


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: leave it) and return the one before. A worker's chunks are made
    with it, and on CPU their bytes can depend on it (the float sums split differently), so both engines set it
    here and every sidecar records it."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}.")
        torch.set_num_threads(threads)
    return before


class LocalReader:
    """The plain engine: this process makes the chunks one after another, in text order. An error ends the run (as
    an interruption does); the next run resumes."""

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def read(self, tts: TextToSpeech, jobs: list[ChunkJob], spec: str, settings: Settings, voices_dir=None,
             say: Callable[[str], None] = lambda message: None) -> Iterator[ChunkOutcome]:
        voice = load_voice(spec, voices_dir) if jobs else None
        before = set_threads(self.threads)
        try:
            for number, job in enumerate(jobs, start=1):
                say(f"  chunk {job.index} ({number} of {len(jobs)}): {job.text[:60]}")
                speech = tts.tts(job.text, voice=voice, seed=job.seed, settings=settings)
                yield ChunkOutcome(job.index, speech, str(tts.device), torch.get_num_threads())
        finally:
            if self.threads is not None:
                torch.set_num_threads(before)


def plan_read(tts: TextToSpeech, text_file: str | Path, chunks: list[str], spec: str, settings: Settings,
              output_dir: str | Path, seed: int | None, fallback_seed: int, regenerate: set[int] = frozenset(),
              skip_existing: bool = False) -> ReadPlan:
    """Decide a read (see ``read_voice``) and write its manifest: which chunks are finished, each chunk's seed,
    what is left to make. Scratch files a killed run left in the folder are removed first."""
    text_split, settings = settings.text_split, settings.replace(text_split=None)
    settings, _ = tts.models.fit(settings)  # as each chunk's sidecar records them (tts notes what fit changed)
    folder = read_folder(output_dir, text_file, spec)
    remove_scratch(folder)
    previous = read_json(folder / MANIFEST_NAME) or {}
    run_seed = seed if seed is not None else previous.get("seed", fallback_seed)
    voice_name, model = spec.strip(), tts.models.description
    manifest = {
        "text_file": str(Path(text_file).resolve()), "voice": voice_name, "seed": run_seed, "model": model,
        "settings": settings.to_dict(), "text_split": text_split,
        "tortoise_lab_version": __version__, "combined": None, "chunks": [],
    }
    jobs = []
    for index, chunk in enumerate(chunks):
        chunk_seed_ = chunk_seed(run_seed, index)
        best = folder / f"{index}.wav"
        expected = identity(chunk, voice_name, chunk_seed_, settings.to_dict(), model)
        done = index not in regenerate and (
            chunk_finished(best, expected, settings.candidates) or (skip_existing and best.is_file()))
        manifest["chunks"].append({"index": index, "text": chunk, "seed": chunk_seed_, "wav": best.name,
                                   "done": done})
        if not done:
            jobs.append(ChunkJob(index, chunk, chunk_seed_))
    plan = ReadPlan(folder, manifest, settings, run_seed, jobs)
    plan.save()
    return plan


def save_chunk(plan: ReadPlan, outcome: ChunkOutcome, command: list[str], debug: bool = False) -> None:
    """Write a finished chunk (every candidate's WAV and sidecar, atomically) and mark it done in the manifest."""
    entry = plan.manifest["chunks"][outcome.index]
    where = {"worker": outcome.worker} if outcome.worker is not None else {}
    save_speech(plan.folder / entry["wav"], outcome.speech, outcome.device, command, debug,
                chunk_index=outcome.index, run_seed=plan.run_seed, threads=outcome.threads, **where)
    entry.pop("error", None)
    entry.update(done=True, attempts=outcome.attempts)
    plan.save()


def fail_chunk(plan: ReadPlan, outcome: ChunkOutcome) -> None:
    """Record in the manifest that a chunk could not be made: its error and how often it was tried."""
    entry = plan.manifest["chunks"][outcome.index]
    entry.update(done=False, attempts=outcome.attempts, error=outcome.error)
    plan.save()


def finish_read(plan: ReadPlan, tts: TextToSpeech, command: list[str]) -> ReadResult:
    """Join the chunks into ``combined.wav`` (one per candidate) when every one is made. When one failed, nothing is
    joined and a combined file an earlier run left is removed: the chunks on disk are no longer all its parts."""
    entries = plan.manifest["chunks"]
    failed = {e["index"]: e["error"] for e in entries if e.get("error")}
    combined = plan.folder / f"{COMBINED_STEM}.wav"
    for k in range(plan.settings.candidates):
        if failed:
            for path in (candidate_path(combined, k), sidecar_path(candidate_path(combined, k))):
                path.unlink(missing_ok=True)
        else:
            _join(plan.manifest, plan.folder, combined, k, plan.settings, tts, command)
    plan.manifest["combined"] = None if failed else combined.name
    plan.save()
    made = len(plan.jobs) - len(failed)
    return ReadResult(plan.folder, None if failed else combined, plan.run_seed, len(entries), made,
                      len(entries) - len(plan.jobs), failed)


def read_voice(tts: TextToSpeech, text_file: str | Path, chunks: list[str], spec: str, settings: Settings,
               output_dir: str | Path, seed: int | None, fallback_seed: int, command: list[str],
               voices_dir=None, regenerate: set[int] = frozenset(), skip_existing: bool = False,
               debug: bool = False, say: Callable[[str], None] = lambda message: None,
               on_speech: Callable = lambda speech: None, engine=None) -> ReadResult:
    """Read ``chunks`` of ``text_file`` in the voice ``spec`` into ``read_folder(output_dir, text_file, spec)``.

    ``settings`` are the run's (its ``text_split`` cut the chunks, which are not split again; its device recorded as
    chosen, so a chunk made on auto matches one made with that device). The run's seed is ``seed``, else
    the one a previous run recorded in the manifest, else ``fallback_seed``. The manifest is written before the
    first chunk and after each one, so progress survives an interruption; ``combined.wav`` (one per candidate)
    joins the chunks at the end. ``engine`` makes the chunks: ``LocalReader()`` (the default: this process, in
    turn) or ``tortoise_lab.cluster.RayReader`` (workers on a Ray cluster); this loop writes what it hands back.
    """
    plan = plan_read(tts, text_file, chunks, spec, settings, output_dir, seed, fallback_seed, regenerate,
                     skip_existing)
    say(f"Reading {text_file} as {spec}: {len(chunks)} chunks, {len(chunks) - len(plan.jobs)} already done, "
        f"{len(plan.jobs)} to synthesise.")
    engine = engine or LocalReader()
    for outcome in engine.read(tts, plan.jobs, spec, plan.settings, voices_dir, say):
        if outcome.speech is None:
            fail_chunk(plan, outcome)
            continue
        save_chunk(plan, outcome, command, debug)
        on_speech(outcome.speech)
    return finish_read(plan, tts, command)


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
        "settings": settings.to_dict(), "model": tts.models.description,
        "device": settings.inference.device or str(tts.device),
        "tortoise_lab_version": __version__, "command": command,
    })
