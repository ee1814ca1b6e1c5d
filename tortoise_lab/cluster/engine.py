"""The Ray engine of ``read``: the driver's side. It starts one worker (``worker.ChunkWorker``, a Ray actor) per GPU
or per CPU slot, hands each free worker the next chunk in text order, and hands every result back to
``reading.read_voice`` as it arrives, which writes it and updates the manifest; one tqdm bar shows the chunks done,
the seconds of audio, the throughput and the time left.

Faults: a chunk whose worker dies (killed, out of memory, node lost) or raises is tried again, on another worker
when there is one (a dead worker is replaced by a fresh one); after ``MAX_ATTEMPTS`` attempts it is handed back as
failed, with the error of its last attempt, and the other chunks go on.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter, defaultdict, deque
from typing import Callable, Iterator

from tortoise_lab.cluster.worker import FAULTS_VARIABLE, ChunkWorker, WorkerSpec, models_identity
from tortoise_lab.config import Settings
from tortoise_lab.device import DEVICE_VARIABLE
from tortoise_lab.reading import ChunkJob, ChunkOutcome

__all__ = ["RAY_PIN", "INSTALL_COMMAND", "DEFAULT_THREADS", "MAX_ATTEMPTS", "RayMissing", "ClusterError",
           "import_ray", "check_address", "cluster_device", "RayReader"]

RAY_PIN = "ray==2.60.0"  # constraints.txt's pin (tests/test_read_ray.py checks they agree)
INSTALL_COMMAND = "pip install 'tortoise-lab[cluster]'"
DEFAULT_THREADS = 1  # torch threads per CPU worker: a worker is one CPU slot
MAX_ATTEMPTS = 2  # a chunk that fails this often is reported, not tried again
_ADDRESS = re.compile(r"auto|ray://[^\s/:]+:\d+|[^\s/:]+:\d+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RayMissing(ImportError):
    """Ray is not installed (it is the optional ``cluster`` extra)."""


class ClusterError(RuntimeError):
    """The cluster cannot read: no worker could start, or the workers' models are not the driver's."""


def import_ray():
    """The ``ray`` module, or ``RayMissing`` with the sentence that says how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissing(f"--ray needs Ray, which is not installed here: run `{INSTALL_COMMAND}` "
                         f"(or `pip install {RAY_PIN}`).") from None
    return ray


def check_address(address: str | None) -> str | None:
    """``address`` if it is one ``--ray`` takes: None (a local cluster for the run), ``auto`` (the cluster this
    machine joined with ``ray start``), ``ray://HOST:PORT`` (Ray Client) or ``HOST:PORT`` (a head node's GCS)."""
    if address is None or _ADDRESS.fullmatch(address):
        return address
    raise ValueError(f"--ray takes no address (a local cluster), auto, ray://HOST:PORT or HOST:PORT, not "
                     f"{address!r} (a text file goes before --ray).")


def cluster_device(requested: str | None, gpus: float) -> str:
    """The workers' device: "cuda" (one GPU each) or "cpu" (``threads`` CPUs each). ``requested`` as --device takes it
    (None: ``$TORTOISE_LAB_DEVICE``, else auto: cuda when the cluster has a GPU)."""
    name = (requested or os.environ.get(DEVICE_VARIABLE) or "auto").strip().lower()
    if name == "auto":
        return "cuda" if gpus >= 1 else "cpu"
    if name == "cuda" and gpus < 1:
        raise ValueError("cuda requested but the Ray cluster has no GPUs; use --device cpu (or leave --device unset).")
    if name not in ("cuda", "cpu"):
        raise ValueError(f"with --ray each worker has a GPU of its own or CPU slots: use --device cuda or cpu (or "
                         f"leave it unset), not {requested!r}.")
    return name


def _reason(error: Exception) -> str:
    """One line for the manifest: the chunk's own error, or what happened to its worker."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = _ANSI.sub("", str(error))
    if getattr(error, "_actor_init_failed", False) or "creation task" in text:
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        return f"its worker could not start: {last}"
    return "its worker died (killed, out of memory, or its node was lost)"


class RayReader:
    """Reads on a Ray cluster: ``read_voice(..., engine=RayReader())``. ``address``: see ``check_address``; a local
    cluster it starts is stopped by ``close`` (or the ``with`` block's end), and a Ray session already open in this
    process is used as it is. ``workers``: how many (default: one per GPU, or one per ``threads`` CPUs). ``device``:
    see ``cluster_device``; build the run's settings with ``device=reader.device``."""

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = DEFAULT_THREADS,
                 device: str | None = None, models_dir: str | None = None, progress: bool = True):
        check_address(address)
        self._ray = ray = import_ray()
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}.")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}.")
        self._owned = not ray.is_initialized()
        if self._owned:
            # "local": a new cluster for the run, even where `ray start` left one running on this machine.
            options = {"address": "local", "include_dashboard": False} if address is None else {"address": address}
            try:
                ray.init(**options, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = "a local cluster could not start" if address is None else f"no Ray cluster at {address}"
                raise ClusterError(f"{where} ({_ANSI.sub('', str(error)).splitlines()[0]}); start one with `ray "
                                   "start --head` and pass --ray auto, or leave the address out for a local one."
                                   ) from None
        resources = ray.cluster_resources()
        self.device = cluster_device(device, resources.get("GPU", 0))
        self.threads, self.models_dir, self.progress = threads, models_dir, progress
        slots = int(resources.get("GPU", 0)) if self.device == "cuda" else int(resources.get("CPU", 0) // threads)
        self.slots, self.workers = slots, workers or max(slots, 1)
        self._spec: WorkerSpec | None = None
        self._free: deque = deque()  # ready workers without a chunk: (actor, name)
        self._starting: dict = {}  # ready() reference -> actor
        self._busy: dict[str, object] = {}  # name -> a worker making a chunk
        self._start_error: str | None = None
        self._identity: tuple | None = None

    # ------------------------------------------------------------------------------------------- the workers

    def _start(self, count: int) -> None:
        resources = {"num_gpus": 1, "num_cpus": self.threads} if self.device == "cuda" else {"num_cpus": self.threads}
        actor_class = self._ray.remote(ChunkWorker).options(max_restarts=0, max_task_retries=0, **resources)
        for _ in range(count):
            actor = actor_class.remote(self._spec)
            self._starting[actor.ready.remote()] = actor

    def _pool(self, spec: WorkerSpec, wanted: int) -> None:
        if spec != self._spec:
            self.stop_workers()
            self._spec = spec
        self._start(max(0, wanted - len(self._free) - len(self._starting) - len(self._busy)))

    def _started(self, ref) -> None:
        actor = self._starting.pop(ref)
        try:
            name, identity = self._ray.get(ref)
        except self._ray.exceptions.RayError as error:
            self._start_error = _reason(error)
            return
        if identity != self._identity:
            self._ray.kill(actor)
            raise ClusterError(f"a worker loaded {identity[0]!r}, not the driver's {self._identity[0]!r}; give every "
                               "node the same weights (or build the driver's model set with resolve_models).")
        self._free.append((actor, name))

    def stop_workers(self) -> None:
        for actor in [actor for actor, _ in self._free] + list(self._starting.values()) + list(self._busy.values()):
            self._ray.kill(actor)
        self._free.clear()
        self._starting.clear()
        self._busy.clear()

    def close(self) -> None:
        """Stop the workers, and the local cluster if this reader started it."""
        self.stop_workers()
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> "RayReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- the chunks

    def _worker_spec(self, tts, spec: str, settings: Settings) -> WorkerSpec:
        from tortoise_lab.voices import RANDOM_VOICE

        if settings.inference.device != self.device:
            raise ValueError(f"the settings say device {settings.inference.device!r} but the cluster's workers use "
                             f"{self.device!r}; build them with device=reader.device.")
        self._identity = models_identity(tts.models)
        kind = tts.models.kind
        return WorkerSpec("tiny" if kind == "random" else kind, self.device, self.threads, self.models_dir,
                          random_voice=spec.strip() == RANDOM_VOICE, cvvp=settings.cvvp_amount > 0,
                          faults=os.environ.get(FAULTS_VARIABLE, ""))

    def start(self, tts, spec: str, settings: Settings, count: int | None = None) -> float:
        """Start ``count`` workers (default ``workers``) for a read like ``read``'s and wait until each has loaded its
        models; the seconds it took. ``read`` starts them itself; this keeps the start out of a timing."""
        clock = time.perf_counter()
        self._pool(self._worker_spec(tts, spec, settings), count or self.workers)
        while self._starting:
            [ref], _ = self._ray.wait(list(self._starting), num_returns=1)
            self._started(ref)
        if not self._free:
            raise ClusterError(f"no Ray worker could start: {self._start_error}.")
        return time.perf_counter() - clock

    def read(self, tts, jobs: list[ChunkJob], spec: str, settings: Settings, voices_dir=None,
             say: Callable[[str], None] = lambda message: None) -> Iterator[ChunkOutcome]:
        """Make ``jobs`` on the cluster and hand back each outcome as it arrives (``read_voice`` calls this)."""
        if not jobs:
            return
        worker_spec = self._worker_spec(tts, spec, settings)
        wanted = min(self.workers, len(jobs))
        if wanted > self.slots:
            say(f"  {wanted} workers asked for, the cluster has room for {self.slots} now: the others start when "
                "there is room.")
        self._pool(worker_spec, wanted)
        count = len(self._free) + len(self._starting) + len(self._busy)
        say(f"  on Ray: {count} {self.device} worker(s), {self.threads} torch thread(s) each")
        yield from self._run(list(jobs), spec, settings, [str(d) for d in voices_dir or []] or None)

    def _run(self, jobs: list[ChunkJob], spec: str, settings: Settings, voices_dir):
        from tqdm.auto import tqdm

        ray = self._ray
        queue: deque[ChunkJob] = deque(jobs)  # text order; a chunk to try again goes to the front
        attempts: Counter = Counter()
        failed_on: dict[int, set[str]] = defaultdict(set)
        running: dict = {}  # task reference -> (job, actor, name)
        audio_s, clock = 0.0, time.perf_counter()
        with tqdm(total=len(jobs), unit="chunk", desc=spec, disable=not self.progress) as bar:
            while queue or running:
                self._hand_out(queue, running, attempts, failed_on, spec, settings, voices_dir)
                waiting = list(running) + list(self._starting)
                if not waiting:
                    raise ClusterError(f"no Ray worker could start: {self._start_error or 'no room on the cluster'}.")
                [ref], _ = ray.wait(waiting, num_returns=1)
                if ref in self._starting:
                    self._started(ref)
                    continue
                job, actor, name = running.pop(ref)
                del self._busy[name]
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayTaskError as error:  # the chunk's own error: its worker is fine
                    reason = _reason(error)
                    self._free.append((actor, name))
                except ray.exceptions.RayError as error:  # the worker died or is lost: a fresh one takes its place
                    reason = _reason(error)
                    ray.kill(actor)
                    self._start(1)
                else:
                    self._free.append((actor, name))
                    audio_s += outcome.speech.duration
                    bar.set_postfix_str(f"{audio_s:.1f} s audio, "
                                        f"{audio_s / max(time.perf_counter() - clock, 1e-9):.2f} s/s", refresh=False)
                    bar.update(1)
                    yield outcome
                    continue
                failed_on[job.index].add(name)
                if attempts[job.index] < MAX_ATTEMPTS:
                    queue.appendleft(job)
                    continue
                bar.update(1)
                yield ChunkOutcome(job.index, None, self.device, self.threads, attempts[job.index], error=reason)

    def _hand_out(self, queue, running, attempts, failed_on, spec, settings, voices_dir) -> None:
        """Give each free worker the first chunk in the queue that has not failed on it (one that failed on every
        worker there is may go back to one of them)."""
        names = {name for _, name in self._free} | {name for _, _, name in running.values()}
        for _ in range(len(self._free)):
            actor, name = self._free.popleft()
            job = next((j for j in queue if name not in failed_on[j.index]), None)
            if job is None:
                job = next((j for j in queue if names <= failed_on[j.index] and not self._starting), None)
            if job is None:
                self._free.append((actor, name))
                continue
            queue.remove(job)
            attempts[job.index] += 1
            ref = actor.read.options(name=f"chunk {job.index}").remote(job, spec, settings, voices_dir,
                                                                    attempts[job.index])
            running[ref] = (job, actor, name)
            self._busy[name] = actor
