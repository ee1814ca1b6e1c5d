"""The ``tortoise-lab`` command line: a thin layer over the package. Each verb group has its own module that
parses, calls the API and prints: ``speak``, ``read``, ``voices`` (list, prepare, match), ``tools`` (download,
assets, bench, compare, train); ``common`` holds what they share.

Exit codes: 0 success, 1 the run failed (out of memory), 2 bad input (argparse's code too), 3 something the user
must fetch first (weights, assets), 130 interrupted. Errors are one sentence on stderr, never a traceback, and
never leave a half-written file (every write is atomic, see ``tortoise_lab.files``).
"""

from __future__ import annotations

import argparse
import sys

from tortoise_lab import __version__, assets
from tortoise_lab.cli import read, speak, tools, voices
from tortoise_lab.cli.common import (DEFAULT_OUTPUT_DIR, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED,
                                     EXIT_NEEDS_FETCH, CliError, Parser, fail)

__all__ = ["main", "build_parser", "verb_parsers", "DEFAULT_OUTPUT_DIR", "EXIT_FAILED", "EXIT_BAD_INPUT",
           "EXIT_NEEDS_FETCH", "EXIT_INTERRUPTED"]


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # the training command has its own parser; hand it every argument, --help too
        from tortoise_lab.train.__main__ import main as train_main

        return train_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    args.command = ["tortoise-lab", *argv]
    try:
        return args.run(args)
    except CliError as error:
        return fail(error.message, error.code)
    except KeyboardInterrupt:
        return fail("interrupted; finished outputs are complete and kept (nothing half-written), and running the "
                    "same command again resumes.", EXIT_INTERRUPTED)
    except Exception as error:
        explained = _explain(error)
        if explained is None:
            raise
        return fail(explained[1], explained[0])


if __name__ == "__main__":
    sys.exit(main())
