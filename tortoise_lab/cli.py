"""The ``tortoise-lab`` command line: a thin layer over the package.

Exit codes: 0 success, 2 bad input (argparse's code too), 3 something the user must fetch first (weights, assets).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, assets

EXIT_BAD_INPUT = 2
EXIT_NEEDS_FETCH = 3


def _fail(message: str, code: int) -> int:
    print(f"tortoise-lab: {message}", file=sys.stderr)
    return code


def cmd_assets(args: argparse.Namespace) -> int:
    try:
        where = assets.fetch_assets(sdist=args.sdist, force=args.force)
    except assets.AssetError as error:
        return _fail(str(error), EXIT_NEEDS_FETCH)
    print(f"official assets (tokenizer, mel norms, built-in voices) are in {where}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    try:
        paths = assets.download_weights(args.files or None, models_dir=args.models_dir, progress=not args.quiet)
    except assets.AssetError as error:
        return _fail(str(error), EXIT_NEEDS_FETCH)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def missing_weights(models_dir: str | None, names) -> list[str]:
    return [name for name in names if assets.find_weights(name, models_dir) is None]


# The weights one default `speak` needs (CVVP and the random-voice generators only with their options).
SPEAK_WEIGHTS = ("autoregressive.pth", "diffusion_decoder.pth", "clvp2.pth", "vocoder.pth")


def cmd_speak(args: argparse.Namespace) -> int:
    if not args.text.strip():
        return _fail("the text to speak is empty; pass a sentence, e.g. tortoise-lab speak \"Hello there.\"", EXIT_BAD_INPUT)
    missing = missing_weights(args.models_dir, SPEAK_WEIGHTS)
    if missing:
        where = f"--models-dir {args.models_dir}" if args.models_dir else "the model-hub cache"
        return _fail(
            f"speaking with the official model needs its weights, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in {where}: run `tortoise-lab download"
            f"{' --models-dir ' + args.models_dir if args.models_dir else ''}` (about 4 GB) first.",
            EXIT_NEEDS_FETCH,
        )
    return _fail("the synthesis pipeline is not part of this release yet (see the speak issue); weights are present.", 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tortoise-lab", description="TorToiSe text-to-speech, faithful and fast.")
    parser.add_argument("--version", action="version", version=f"tortoise-lab {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    speak = verbs.add_parser("speak", help="turn text into speech")
    speak.add_argument("text", help="the text to speak")
    speak.add_argument("-v", "--voice", default="random", help="voice name (default: random)")
    speak.add_argument("-p", "--preset", default="fast", help="quality/speed preset (default: fast)")
    speak.add_argument("-o", "--output-path", default="output-audio-samples", help="folder for the WAV files")
    speak.add_argument("--models-dir", default=None, help="folder holding the official .pth files "
                       "(default: $TORTOISE_LAB_MODELS_DIR, else the huggingface_hub cache)")
    speak.add_argument("--seed", type=int, default=None, help="random seed (default: drawn and printed)")
    speak.set_defaults(run=cmd_speak)

    download = verbs.add_parser("download", help="fetch the official weights from the model hub")
    download.add_argument("--models-dir", default=None, help="download into this folder instead of the hub cache")
    download.add_argument("--files", nargs="+", metavar="FILE", choices=list(assets.WEIGHT_FILES),
                          help=f"only these files (default: all of {', '.join(assets.WEIGHT_FILES)})")
    download.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    download.set_defaults(run=cmd_download)

    fetch = verbs.add_parser("assets", help="fetch the tokenizer, mel norms and built-in voices (tortoise-tts sdist)")
    fetch.add_argument("--sdist", type=Path, default=None, help="use this local tortoise-tts-3.0.0.tar.gz")
    fetch.add_argument("--force", action="store_true", help="unpack again even if the assets are present")
    fetch.set_defaults(run=cmd_assets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
