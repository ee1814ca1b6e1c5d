"""One Ray worker of a cluster read: a process that holds a model set, makes chunks one at a time and hands each
back as a ``reading.ChunkOutcome``.

A worker is built from a ``WorkerSpec``, a small picklable description (which model set, which device, how many
torch threads), never from a pickled model: each worker loads the set the way ``tortoise-lab read`` does
(``model_set.resolve_models``), so every node needs the package, the weights (for the official set) and the voices
the driver names, at the same paths or in the same caches. The voices it is asked for are loaded once and kept;
a clip voice's conditioning latents come from its latent cache after the first chunk, as in a plain read.

Faults for the tests, and only for them: ``$TORTOISE_LAB_READ_FAULTS`` in the driver's environment is handed to every
worker (``WorkerSpec.faults``), a comma-separated list of

* ``fail=K``: chunk K raises on every attempt (so it fails twice and is reported, while the rest go on);
* ``hold=K:PATH``: the first attempt of chunk K writes the worker's process id to PATH, then waits up to
  ``HOLD_SECONDS`` before going on, so that a test can kill that worker mid-chunk.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from tortoise_lab.config import Settings
from tortoise_lab.files import write_text
from tortoise_lab.reading import ChunkJob, ChunkOutcome, set_threads

__all__ = ["FAULTS_VARIABLE", "HOLD_SECONDS", "WorkerSpec", "ChunkWorker", "parse_faults", "models_identity"]

FAULTS_VARIABLE = "TORTOISE_LAB_READ_FAULTS"
HOLD_SECONDS = 120.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker builds: the model set (a ``model_set.MODEL_CHOICES`` name, as the driver resolved it), the device
    ("cpu", or "cuda": Ray shows each GPU worker its own GPU only), torch's threads, and where the weights are."""

    model: str
    device: str
    threads: int
    models_dir: str | None = None
    random_voice: bool = False  # the run speaks in the random voice: its generators must load (official set)
    cvvp: bool = False  # the run ranks with CVVP: its weights must load (official set)
    faults: str = ""  # $TORTOISE_LAB_READ_FAULTS, for the tests (module docstring)


def parse_faults(text: str) -> tuple[set[int], dict[int, str]]:
    """``"fail=3,hold=1:/tmp/pid"`` -> ({3}, {1: "/tmp/pid"}). ValueError, in one sentence, for anything else."""
    fails, holds = set(), {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        kind, _, value = item.partition("=")
        index, _, path = value.partition(":")
        if kind == "fail" and index.isdigit() and not path:
            fails.add(int(index))
        elif kind == "hold" and index.isdigit() and path:
            holds[int(index)] = path
        else:
            raise ValueError(f"${FAULTS_VARIABLE} takes fail=K and hold=K:PATH items; {item!r} is neither.")
    return fails, holds


def models_identity(models) -> tuple[str, str | None]:
    """What must agree between the driver's model set and a worker's: the description the sidecars record, and for
    sets made without files (random, embedded) the fingerprint (the random seed, the shipped files)."""
    return models.description, None if models.kind == "official" else models.fingerprint


class ChunkWorker:
    """The actor's class (``engine`` wraps it with ``ray.remote``): the model set and the voices, loaded once."""

    def __init__(self, spec: WorkerSpec):
        from tortoise_lab.model_set import resolve_models
        from tortoise_lab.pipeline import TextToSpeech

        set_threads(spec.threads)
        self.fails, self.holds = parse_faults(spec.faults)
        models = resolve_models(spec.model, spec.models_dir, spec.device, random_voice=spec.random_voice,
                                cvvp=spec.cvvp).models
        self.tts = TextToSpeech(models, progress=False)
        self.voices: dict[tuple[str, tuple[str, ...]], object] = {}
        self.name = f"{os.getpid()}@{socket.gethostname()}"

    def ready(self) -> tuple[str, tuple[str, str | None]]:
        """Where it runs and ``models_identity`` of its set, once loaded (the engine hands it chunks only then)."""
        return self.name, models_identity(self.tts.models)

    def read(self, job: ChunkJob, spec: str, settings: Settings, voices_dir: list[str] | None,
             attempt: int) -> ChunkOutcome:
        """Make one chunk (attempt ``attempt`` of it); an error is raised to the driver, which decides what next."""
        import torch

        from tortoise_lab.voices import load_voice

        self._faults(job.index, attempt)
        key = (spec, tuple(voices_dir or ()))
        if key not in self.voices:
            self.voices[key] = load_voice(spec, voices_dir)
        speech = self.tts.tts(job.text, voice=self.voices[key], seed=job.seed, settings=settings)
        return ChunkOutcome(job.index, speech, str(self.tts.device), torch.get_num_threads(), attempt,
                            worker=self.name)

    def _faults(self, index: int, attempt: int) -> None:
        if index in self.holds and attempt == 1:
            write_text(self.holds[index], str(os.getpid()))
            time.sleep(HOLD_SECONDS)  # killed meanwhile, in the test that set it
        if index in self.fails:
            raise RuntimeError(f"chunk {index} fails on purpose (${FAULTS_VARIABLE})")
