"""``tortoise-lab read``: a long text file, chunk by chunk, resumable (the work is ``tortoise_lab.reading``)."""

from __future__ import annotations

import argparse

from tortoise_lab.cli.common import (CliError, check_output_folder, check_pronounceable,
                                     list_voices, open_models, play, print_notes, read_text_file, say,
                                     settings_from_args, tokenizer, voice_specs)
from tortoise_lab.cli.options import add_synthesis_options
from tortoise_lab.cli.upstream import UPSTREAM_NOTE

READ_EXAMPLES = f"""examples:
  tortoise-lab read story.txt -v tom -p standard        # out: output-audio-samples/story/tom/
  tortoise-lab read story.txt -v tom --regenerate 3,5-7  # redo chunks 3, 5, 6 and 7
Run the same command again after an interruption: finished chunks are kept.
{UPSTREAM_NOTE}.
"""


def add_parser(verbs) -> None:
    read = verbs.add_parser("read", help="read a long text file aloud, chunk by chunk (resumable)",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=READ_EXAMPLES,
                            description="Split a text file into chunks and synthesise each into "
                                        "<output-dir>/<file stem>/<voice>/<index>.wav with a sidecar, then "
                                        "combined.wav; a manifest.json tracks progress.")
    read.add_argument("textfile", nargs="?", help="the UTF-8 text to read; '|' in it marks chunk boundaries")
    read.add_argument("--regenerate", default=None, metavar="CHUNKS",
                      help="redo these chunks even if finished, e.g. 3,5-7 (numbers as in the file names)")
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


def cmd_read(args: argparse.Namespace) -> int:
    from tortoise_lab.config import draw_seed
    from tortoise_lab.device import choose_device
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.reading import MANIFEST_NAME, check_chunks, read_chunks, read_voice
    from tortoise_lab.voices import load_voice

    if args.list_voices:
        return list_voices(args)
    if not args.textfile:
        raise CliError("read needs a text file, e.g. tortoise-lab read story.txt (use speak for a sentence).")
    text = read_text_file(args.textfile)
    device = choose_device(args.device)
    settings = settings_from_args(args, device=str(device))
    if not text.strip():
        raise CliError(f"{args.textfile} is empty; there is nothing to read.")
    check_output_folder(args.output_path, "-O/--output-dir")
    models, specs = open_models(args, device, voice_specs(args), settings)
    words = tokenizer()
    check_pronounceable(text, words)
    tts = TextToSpeech(models, tokenizer=words, progress=not args.quiet)
    chunks, fit_notes = read_chunks(tts, text, settings)
    regenerate = _regenerate(args, chunks)
    check_chunks(tts, chunks, settings)
    for spec in specs:  # every voice's clips are checked now, not after the first voice's hour of audio
        load_voice(spec, args.voices_dir)
    fallback_seed, noted = draw_seed(args.seed), set()
    print_notes(fit_notes, noted)
    for spec in specs:
        result = read_voice(tts, args.textfile, chunks, spec, settings, args.output_path, args.seed, fallback_seed,
                            args.command, args.voices_dir, regenerate, args.skip_existing,
                            args.produce_debug_state, say=lambda message: say(args, message),
                            on_speech=lambda speech: print_notes(speech.notes, noted))
        print(f"{spec}: {result.chunks} chunks in {result.folder} ({result.synthesised} synthesised, {result.kept} "
              f"kept), combined in {result.combined.name} (+ .json); seed: {result.seed} (each chunk's seed derives "
              f"from it, see {MANIFEST_NAME})")
        if args.play:
            play(result.combined)
    return 0
