"""``tortoise-lab read``: a long text file, chunk by chunk, resumable (the work is ``tortoise_lab.reading``), in this
process or, with ``--ray``, on the workers of a Ray cluster (``tortoise_lab.cluster``)."""

from __future__ import annotations

import argparse
from contextlib import contextmanager

from tortoise_lab.cli.common import (EXIT_FAILED, EXIT_NEEDS_FETCH, CliError, check_output_folder,
                                     check_pronounceable, list_voices, open_models, play, print_notes,
                                     read_text_file, say, settings_from_args, tokenizer, voice_specs)
from tortoise_lab.cli.options import add_synthesis_options
from tortoise_lab.cli.upstream import UPSTREAM_NOTE

LOCAL_CLUSTER = "local"  # --ray without an address: a local cluster started for the run
READ_EXAMPLES = f"""examples:
  tortoise-lab read story.txt -v tom -p standard        # out: output-audio-samples/story/tom/
  tortoise-lab read story.txt -v tom --regenerate 3,5-7  # redo chunks 3, 5, 6 and 7
  tortoise-lab read book.txt -v tom --ray                # on a local Ray cluster: one worker per CPU (or GPU)
  tortoise-lab read book.txt -v tom --ray auto           # on the cluster this machine joined (ray start)
Run the same command again after an interruption: finished chunks are kept. With or without --ray, the same text,
voice, settings, seed and --threads give the same bytes.
{UPSTREAM_NOTE}.
"""


def _at_least_one(value: str) -> int:
    """argparse type: a whole number from 1 up (workers, threads)."""
    number = int(value) if value.strip().isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 up, got {value!r}")
    return number


def add_parser(verbs) -> None:
    read = verbs.add_parser("read", help="read a long text file aloud, chunk by chunk (resumable)",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=READ_EXAMPLES,
                            description="Split a text file into chunks and synthesise each into "
                                        "<output-dir>/<file stem>/<voice>/<index>.wav with a sidecar, then "
                                        "combined.wav; a manifest.json tracks progress.")
    read.add_argument("textfile", nargs="?", help="the UTF-8 text to read; '|' in it marks chunk boundaries")
    read.add_argument("--regenerate", default=None, metavar="CHUNKS",
                      help="redo these chunks even if finished, e.g. 3,5-7 (numbers as in the file names)")
    cluster = read.add_argument_group("on a cluster (needs the cluster extra: pip install 'tortoise-lab[cluster]')")
    cluster.add_argument("--ray", nargs="?", const=LOCAL_CLUSTER, default=None, metavar="ADDRESS",
                         help="make the chunks on Ray workers, one per GPU or per --threads CPUs; no ADDRESS: a "
                              "local cluster started for the run; auto: the cluster this machine joined (ray start); "
                              "ray://HOST:10001: a remote one (Ray Client). A chunk whose worker dies or fails is "
                              "tried once more elsewhere; one that fails twice is reported and the rest go on")
    cluster.add_argument("--workers", type=_at_least_one, default=None, metavar="N",
                         help="with --ray: how many workers (default: one per GPU, or one per --threads CPUs)")
    cluster.add_argument("--threads", type=_at_least_one, default=None, metavar="N",
                         help="torch threads per worker: with --ray each worker takes N CPUs (default 1); without, "
                              "this process uses N (default: torch's, one per core). On CPU the bytes of the audio "
                              "can depend on it: the same N gives the same bytes with or without --ray")
    add_synthesis_options(read, "read")
    read.set_defaults(run=cmd_read)


def _regenerate(args: argparse.Namespace, chunks: list[str]) -> set[int]:
    from tortoise_lab.reading import parse_indices

    regenerate = set(parse_indices(args.regenerate)) if args.regenerate else set()
    beyond = sorted(i for i in regenerate if i >= len(chunks))
    if beyond:
        raise CliError(f"--regenerate names chunk {beyond[0]}, but {args.textfile} has {len(chunks)} chunks "
                       f"(0 to {len(chunks) - 1}).")
    return regenerate


@contextmanager
def _engine(args: argparse.Namespace):
    """What makes the chunks: this process (``LocalReader``), or with --ray a ``RayReader`` (stopped at the end)."""
    from tortoise_lab.reading import LocalReader

    if args.ray is None:
        if args.workers is not None:
            raise CliError("--workers needs --ray; without it this process makes every chunk.")
        yield LocalReader(args.threads)
        return
    from tortoise_lab.cluster import DEFAULT_THREADS, ClusterError, RayMissing, RayReader

    address = None if args.ray == LOCAL_CLUSTER else args.ray
    try:
        reader = RayReader(address, args.workers, args.threads or DEFAULT_THREADS, args.device, args.models_dir,
                           progress=not args.quiet)
    except RayMissing as error:
        raise CliError(str(error), EXIT_NEEDS_FETCH) from None
    except ClusterError as error:
        raise CliError(str(error), EXIT_FAILED) from None
    with reader:
        try:
            yield reader
        except ClusterError as error:
            raise CliError(str(error), EXIT_FAILED) from None


def _summary(spec: str, result) -> str:
    from tortoise_lab.reading import MANIFEST_NAME

    made = (f"{spec}: {result.chunks} chunks in {result.folder} ({result.synthesised} synthesised, {result.kept} "
            f"kept)")
    if result.failed:
        which = "; ".join(f"chunk {index}: {error}" for index, error in sorted(result.failed.items()))
        return (f"{made}, {len(result.failed)} failed ({which}); no combined.wav until every chunk is made: run the "
                f"same command again (see {MANIFEST_NAME})")
    return (f"{made}, combined in {result.combined.name} (+ .json); seed: {result.seed} (each chunk's seed derives "
            f"from it, see {MANIFEST_NAME})")


def cmd_read(args: argparse.Namespace) -> int:
    from tortoise_lab.config import draw_seed
    from tortoise_lab.device import choose_device
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.reading import check_chunks, read_chunks, read_voice
    from tortoise_lab.voices import load_voice

    if args.list_voices:
        return list_voices(args)
    if args.ray not in (None, LOCAL_CLUSTER):
        from tortoise_lab.cluster import check_address

        check_address(args.ray)  # `read --ray book.txt` took the text file for an address: say so first
    if not args.textfile:
        raise CliError("read needs a text file, e.g. tortoise-lab read story.txt (use speak for a sentence).")
    text = read_text_file(args.textfile)
    if not text.strip():
        raise CliError(f"{args.textfile} is empty; there is nothing to read.")
    check_output_folder(args.output_path, "-O/--output-dir")
    settings_from_args(args)  # a flag out of range fails now, before a cluster starts
    with _engine(args) as engine:
        # The chunks are made on the workers' device; this process only plans with the models (on the CPU).
        device = choose_device("cpu" if args.ray else args.device)
        settings = settings_from_args(args, device=getattr(engine, "device", str(device)))
        models, specs = open_models(args, device, voice_specs(args), settings)
        words = tokenizer()
        check_pronounceable(text, words)
        tts = TextToSpeech(models, tokenizer=words, progress=not args.quiet)
        chunks, fit_notes = read_chunks(tts, text, settings)
        regenerate = _regenerate(args, chunks)
        check_chunks(tts, chunks, settings)
        for spec in specs:  # every voice's clips are checked now, not after the first voice's hour of audio
            load_voice(spec, args.voices_dir)
        fallback_seed, noted, failed = draw_seed(args.seed), set(), False
        print_notes(fit_notes, noted)
        for spec in specs:
            result = read_voice(tts, args.textfile, chunks, spec, settings, args.output_path, args.seed,
                                fallback_seed, args.command, args.voices_dir, regenerate, args.skip_existing,
                                args.produce_debug_state, say=lambda message: say(args, message),
                                on_speech=lambda speech: print_notes(speech.notes, noted), engine=engine)
            print(_summary(spec, result))
            failed = failed or bool(result.failed)
            if args.play and result.combined is not None:
                play(result.combined)
    return EXIT_FAILED if failed else 0
