"""``python -m tortoise_lab.train [--field value ...]``: run_training with TrainConfig's fields as flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from tortoise_lab.train.run import TrainConfig, prepare_corpus, run_training


def _field_comments(cls) -> dict[str, str]:
    """The trailing ``# comment`` of each dataclass field in the source: the one place each option is explained."""
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+):[^=]*=[^#]*#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def dataclass_parser(cls, prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one flag per field of the dataclass ``cls``: ``--field-name``, typed as the field, its help
    the field's comment, booleans as ``--x/--no-x``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        help_text = f"{comments.get(field.name, '')} (default: {field.default})".strip()
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)  # X | None -> X
            parser.add_argument(flag, type=base, default=field.default, help=help_text)
    return parser


def dataclass_main(cls, prog: str, description: str, run, table, argv: list[str] | None) -> int:
    """An experiment's command line: flags from the dataclass ``cls``, ``run(config)`` -> result or None, and
    ``table(result)`` printed. A ValueError or FileNotFoundError is one line on stderr and exit 2."""
    config = cls(**vars(dataclass_parser(cls, prog, description).parse_args(argv)))
    try:
        result = run(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result is not None:
        print(table(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    return dataclass_parser(TrainConfig, "python -m tortoise_lab.train",
                            "Train the embedded TorToiSe-shaped model (resumable: re-run the same command to continue). "
                            "Also: `decoders` (train and compare a diffusion decoder and a UnivNet vocoder), "
                            "`crosseval` (evaluate a model set on another run's test sentences), `profile` (record a "
                            "set's speech profile in its manifest), `samples` (quality against AR samples drawn), "
                            "`paragraphs` (the paragraph test), `vqvae` (a VQ-VAE quantiser measured against "
                            "k-means) and `codedecoder` (a learned code -> mel decoder measured against the code "
                            "book); each has --help.")


def command_parser() -> argparse.ArgumentParser:
    """``build_parser`` (TrainConfig's fields) and the one flag that is not a field of the run: ``--corpus-only``."""
    parser = build_parser()
    parser.add_argument("--corpus-only", action="store_true",
                        help="stop after the corpus stage: write train_config.json and the synthesised corpus "
                             "(cache) into --out-dir, train nothing; for experiments that need the run's audio "
                             "and test sentences (the same command without it goes on from there)")
    return parser


# Further training commands, reached as `python -m tortoise_lab.train NAME ...` (or `tortoise-lab train NAME ...`).
SUBCOMMANDS = {name: f"tortoise_lab.train.experiments.{name}" for name in ("decoders", "crosseval", "vqvae", "profile", "samples",
                                                                              "paragraphs", "codedecoder")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    args = vars(command_parser().parse_args(argv))
    if args.pop("corpus_only"):
        corpus = prepare_corpus(TrainConfig(**args))
        print(f"Corpus of {len(corpus.texts)} utterances ({corpus.hours:.1f} hours) ready in {args['out_dir']}")
        return 0
    result = run_training(TrainConfig(**args))
    if result.evaluation:
        json.dump(result.evaluation["summary"], sys.stdout, indent=1)
        print()
    print(f"Model set written to {result.out_dir / 'embedded'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
