"""The ``tortoise-lab`` command line: a thin layer over the package. Each verb group has its own module that
parses, calls the API and prints: ``speak``, ``read``, ``voices`` (list, prepare, match), ``tools`` (download,
assets, bench, compare, train); ``common`` holds what they share.

Exit codes: 0 success, 1 the run failed (out of memory), 2 bad input (argparse's code too), 3 something the user
must fetch first (weights, assets), and the shell's codes for a program ended by a signal, 128 + its number:
130 interrupted (Ctrl-C, SIGINT), 143 stopped (SIGTERM), 141 standard output closed early (``| head``, SIGPIPE).
Errors are one sentence on stderr, never a traceback, and never leave a half-written file (every write is atomic,
see ``tortoise_lab.files``).

Signals, for the length of a run: SIGINT and SIGTERM raise ``Stopped``, a ``KeyboardInterrupt``, so every
``finally`` runs (the atomic writers remove their scratch files) and the run ends with one sentence; a second signal
while that clean-up runs is ignored (SIGKILL still ends it at once). A reader of standard output that goes away
(``tortoise-lab speak -l | head -3``) ends the run silently, as it ends any Unix tool: Python ignores SIGPIPE, so
the write raises, and only a write to ``sys.stdout`` counts (a player's or subprocess's broken pipe stays an error).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from tortoise_lab import __version__, assets, files
from tortoise_lab.cli import read, speak, tools, upstream, voices
from tortoise_lab.cli.common import (DEFAULT_OUTPUT_DIR, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED,
                                     EXIT_NEEDS_FETCH, CliError, Parser, fail)

__all__ = ["main", "build_parser", "verb_parsers", "DEFAULT_OUTPUT_DIR", "EXIT_FAILED", "EXIT_BAD_INPUT",
           "EXIT_NEEDS_FETCH", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_STDOUT_CLOSED", "Stopped", "StdoutClosed"]

EXIT_TERMINATED = 143  # 128 + SIGTERM (15): what a shell reports for a program ended by `kill`
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE (13): what a shell reports for `yes` in `yes | head -1` (set -o pipefail)
STOP_SIGNALS = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a run. A ``KeyboardInterrupt``, so whatever cleans up after Ctrl-C cleans
    up after ``kill`` too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StdoutClosed(BaseException):
    """Standard output's reader went away. Not a ``BrokenPipeError``: that one can come from any pipe, and an
    ``OSError`` is caught on the way (argparse swallows it). A ``BaseException`` like ``KeyboardInterrupt``: the run
    ends, nothing should handle it as an error."""


class _GuardedStdout:
    """``sys.stdout`` for a run: the same stream, but a write or flush that finds the pipe closed raises
    ``StdoutClosed``."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise StdoutClosed from None

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise StdoutClosed from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tortoise-lab", description="TorToiSe text-to-speech, faithful and fast.")
    parser.add_argument("--version", action="version", version=f"tortoise-lab {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    speak.add_parser(verbs)
    read.add_parser(verbs)
    tools.add_parsers(verbs)
    voices.add_parser(verbs)
    tools.add_train_parser(verbs)
    return parser


def verb_parsers(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Each verb's own parser, in the order ``--help`` lists them (the notebooks show their help)."""
    parser = parser or build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def _explain(error: BaseException) -> tuple[int, str] | None:
    """(exit code, one sentence) for the failures a user can act on; None for bugs (they keep their traceback)."""
    torch = sys.modules.get("torch")
    model_set = sys.modules.get("tortoise_lab.model_set")
    if model_set is not None and isinstance(error, model_set.WeightsMissing):
        return EXIT_NEEDS_FETCH, str(error)
    if isinstance(error, assets.AssetError):
        return EXIT_NEEDS_FETCH, str(error)
    out_of_memory = torch is not None and isinstance(error, getattr(torch, "OutOfMemoryError", ()))
    if out_of_memory or (isinstance(error, RuntimeError) and
                         any(s in str(error).lower() for s in ("out of memory", "can't allocate memory"))):
        return EXIT_FAILED, ("ran out of memory; try a smaller --batch-size (e.g. 4), fewer "
                             "--num-autoregressive-samples, or --half on a GPU (finished outputs are kept).")
    if isinstance(error, (ValueError, FileNotFoundError)):
        return EXIT_BAD_INPUT, str(error)
    if isinstance(error, OSError):  # disk full, no permission: the write was undone, nothing half-written remains
        where = f" ({error.filename})" if error.filename else ""
        return EXIT_FAILED, (f"could not write the output{where}: {error.strerror or error}; "
                             "nothing half-written was left.")
    return None


@contextmanager
def _guarded_stdout() -> Iterator[None]:
    original = sys.stdout
    sys.stdout = _GuardedStdout(original) if original is not None else None
    try:
        yield
    finally:
        if isinstance(sys.stdout, _GuardedStdout):
            sys.stdout = original


def _silence_stdout() -> None:
    """Point standard output at the null device, so what is still buffered goes nowhere at exit instead of raising
    again there (Python's docs, "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): nothing is flushed at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@contextmanager
def _signals_stop() -> Iterator[None]:
    """During the block, SIGINT and SIGTERM raise ``Stopped`` (through ``files.interrupt``, so not in the middle of a
    commit); after the first, they are ignored so the clean-up it starts can finish."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    stopping = []

    def stop(signum, frame):
        if not stopping:
            stopping.append(signum)
            files.interrupt(Stopped(signum))

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _run(argv: list[str]) -> int:
    try:
        if argv[:1] == ["train"]:  # the training command has its own parser; hand it every argument, --help too
            return tools.run_train(argv[1:])
        args = build_parser().parse_args(upstream.ours(argv) if argv[:1] in (["speak"], ["read"]) else argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return 0 if stop.code is None else stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    except ValueError as error:  # an upstream switch with a value that is neither true nor false
        return fail(str(error), EXIT_BAD_INPUT)
    args.command = ["tortoise-lab", *argv]
    try:
        return args.run(args)
    except CliError as error:
        return fail(error.message, error.code)
    except Exception as error:
        explained = _explain(error)
        if explained is None:
            raise
        return fail(explained[1], explained[0])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with _guarded_stdout(), _signals_stop():
        try:
            code = _run(argv)
            if sys.stdout is not None:
                sys.stdout.flush()  # a reader gone before the last lines is found here, not at exit
            return code
        except StdoutClosed:
            _silence_stdout()
            return EXIT_STDOUT_CLOSED
        except KeyboardInterrupt as stop:
            signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
            what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            return fail(f"{what}; finished outputs are complete and kept (nothing half-written), and running the "
                        "same command again resumes.", STOP_SIGNALS[signum])


if __name__ == "__main__":
    sys.exit(main())
