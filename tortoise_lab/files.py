"""Writing files so that a crash, a full disk or Ctrl-C never leaves a half-written one: the only implementation.

Every writer in the package goes through ``atomic_path`` (one file) or ``atomic_dir`` (a folder built whole):
the content is written to a hidden scratch name beside the target, on the same file system, and renamed over
the target in one step. Readers see the old file or the new one, never a part.

An interruption (Ctrl-C, SIGTERM) is an exception like any other here: the scratch is removed on the way out. A
signal handler that raises (the command line's, see ``tortoise_lab.cli``) calls ``interrupt`` instead of ``raise``,
so the exception waits while ``hold_interruptions`` marks steps that must happen together: a commit of several renames
(a voice folder replacing the old one; a WAV and its sidecar) and the removal of a scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["FILE_MODE", "scratch_path", "atomic_path", "atomic_dir", "remove_scratch", "write_text", "write_json",
           "read_json", "json_text", "hold_interruptions", "interrupt"]

# Written files are meant to be shared (some writers, e.g. safetensors, create 0600 files; mkstemp does too).
FILE_MODE = 0o644
SCRATCH_SUFFIX = ".part"

# Signals are handled in the main thread only, so only its holds count: (open holds, the interruption kept meanwhile).
_holds = 0
_held: list[BaseException] = []


@contextmanager
def hold_interruptions() -> Iterator[None]:
    """Within the block, ``interrupt(error)`` keeps ``error`` and raises it when the outermost hold ends, so the
    block's steps are done whole: an interruption lands before them or after them, never between."""
    global _holds
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _holds += 1
    try:
        yield
    finally:
        _holds -= 1
        if not _holds and _held:
            raise _held.pop()


def interrupt(error: BaseException) -> None:
    """Raise ``error`` now, or, inside ``hold_interruptions``, when the hold ends: what a signal handler calls."""
    if not _holds:
        raise error
    if not _held:  # the first interruption is the one reported
        _held.append(error)


def scratch_path(path: str | Path, tag: str = SCRATCH_SUFFIX) -> Path:
    """A hidden, unique name beside ``path`` (same folder, so the final rename stays atomic)."""
    path = Path(path)
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}{tag}"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a scratch path beside ``path`` to write to; when the block ends without error it is renamed over
    ``path`` in one step, otherwise removed. The parent folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_path(path)
    try:
        yield scratch
        os.chmod(scratch, FILE_MODE)
        os.replace(scratch, path)
    finally:
        with hold_interruptions():
            scratch.unlink(missing_ok=True)


def remove_scratch(folder: str | Path) -> list[Path]:
    """Remove the scratch files a killed writer left in ``folder`` (a SIGKILL or power cut runs no clean-up) and
    return them. Only for a folder one writer owns: another writer's scratch in progress would go too."""
    folder = Path(folder)
    found = sorted(folder.glob(f".*{SCRATCH_SUFFIX}")) if folder.is_dir() else []
    for path in found:
        path.unlink(missing_ok=True)
    return found


@contextmanager
def atomic_dir(target: str | Path, replace: bool = False, exists_error: type[Exception] = FileExistsError,
               exists_message: str = "") -> Iterator[Path]:
    """Yield an empty hidden folder beside ``target`` to fill; when the block ends it becomes ``target``.

    An existing ``target`` is replaced only with ``replace`` (otherwise ``exists_error(exists_message)`` is raised,
    checked again at the end in case it appeared meanwhile); if the swap fails the old folder is put back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_path(target, ".building")
    old = scratch_path(target, ".replaced")
    scratch.mkdir()
    try:
        yield scratch
        with hold_interruptions():  # never interrupted between the two renames, with the old folder set aside
            if target.exists():
                if not replace:
                    raise exists_error(exists_message or f"{target} already exists.")
                os.rename(target, old)
            try:
                os.rename(scratch, target)
            except BaseException:
                if old.exists():
                    os.rename(old, target)
                raise
    finally:
        with hold_interruptions():
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically (flushed to disk before the rename)."""
    path = Path(path)
    with atomic_path(path) as scratch:
        with open(scratch, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch tensors and numpy arrays
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(data) -> str:
    """``data`` as the indented JSON every file of the package uses (paths and tensors as plain values)."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text(path, json_text(data))


def read_json(path: str | Path) -> dict | None:
    """The JSON object at ``path``, or None when it is missing or unreadable (treated as not written)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
