"""``tortoise-lab speak``: a sentence or a short text, in one or more voices, each WAV with a JSON sidecar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tortoise_lab.audio import writable_format
from tortoise_lab.cli.common import (CliError, check_output_file, check_output_folder,
                                     check_pronounceable, list_voices, open_models, play, print_notes, raw_player,
                                     read_text_file, say, settings_from_args, tokenizer, voice_specs)
from tortoise_lab.cli.options import add_synthesis_options
from tortoise_lab.cli.upstream import UPSTREAM_NOTE

SPEAK_EXAMPLES = f"""examples:
  tortoise-lab speak "Hello, how are you?" -v tom -o hello.wav
  echo "Say it like you mean it!" | tortoise-lab speak -v tom,emma -O out/
  tortoise-lab speak --tiny --seed 3 "Try the pipeline without downloads."
{UPSTREAM_NOTE}.
"""


def add_parser(verbs) -> None:
    speak = verbs.add_parser("speak", help="turn text into speech", formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog=SPEAK_EXAMPLES,
                             description="Speak a text in one or more voices; each output WAV gets a JSON sidecar.")
    speak.add_argument("text", nargs="*", help="the text to speak; '-' or nothing reads it from piped stdin")
    speak.add_argument("--text-file", default=None, metavar="PATH", help="read the text from this UTF-8 file")
    speak.add_argument("-o", "--output", default=None, metavar="FILE.wav",
                       help="write the audio to this file (one voice, one candidate) instead of --output-dir")
    speak.add_argument("--stream", action=argparse.BooleanOptionalAction, default=False,
                       help="audio while the rest is made: with the fast path (--decoder hifigan, the default "
                            "here where the model has it) as the codes are drawn, otherwise (the embedded model, "
                            "--decoder diffusion) a sentence or chunk at a time; each piece is appended to the WAV as "
                            "soon as it is made (a reader sees the file grow, its header valid after every piece; a "
                            "failed run removes it) and, with --play, played; the sidecar comes last")
    add_synthesis_options(speak, "speak")
    speak.set_defaults(run=cmd_speak)


def _stdin_text() -> str | None:
    """Piped standard input, or None when stdin is a terminal or unreadable."""
    stream = sys.stdin
    try:
        if stream is None or stream.isatty():
            return None
        return stream.read()
    except (OSError, ValueError):
        return None


def speak_text(args: argparse.Namespace) -> str:
    words = args.text or []
    if args.text_file and words:
        raise CliError("give the text either as an argument or with --text-file, not both.")
    if args.text_file:
        text = read_text_file(args.text_file)
    elif words == ["-"] or not words:
        text = _stdin_text()
        if text is None:
            raise CliError("no text to speak: pass it as an argument, pipe it on stdin, or use --text-file PATH.")
    else:
        text = " ".join(words)
    if not text.strip():
        raise CliError("the text to speak is empty; pass a sentence, e.g. tortoise-lab speak \"Hello there.\"")
    return text.strip()


def _synthesise(tts, text: str, voice, seed: int, settings, args: argparse.Namespace, wav: Path):
    """The Speech of one voice: ``tts.tts``, or with --stream ``tts.stream``, its pieces appended to ``wav`` and
    played (--play) as they come."""
    from tortoise_lab.audio import growing_wav
    from tortoise_lab.pipeline import SAMPLE_RATE

    if not args.stream:
        return tts.tts(text, voice=voice, seed=seed, settings=settings)
    stream = tts.stream(text, voice=voice, seed=seed, settings=settings)
    with raw_player(args.play, SAMPLE_RATE) as feed, growing_wav(wav, SAMPLE_RATE) as write:
        for piece in stream:
            write(piece)
            feed(piece)
    say(args, f"  first audio after {stream.result.timings['first_audio']:.2f} s "
              f"(of {stream.result.timings['total']:.2f} s)")
    return stream.result


def cmd_speak(args: argparse.Namespace) -> int:
    from tortoise_lab.config import draw_seed
    from tortoise_lab.device import choose_device
    from tortoise_lab.outputs import candidate_path, file_stem, save_speech, sidecar_path
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.voices import load_voice

    if args.list_voices:
        return list_voices(args)
    text = speak_text(args)
    device = choose_device(args.device)
    settings = settings_from_args(args, device=str(device))
    specs = voice_specs(args)
    if args.output:
        if len(specs) > 1 or settings.candidates > 1:
            raise CliError("-o/--output names one file, so it takes one voice and one candidate; "
                           "use -O/--output-dir for several.")
        writable_format(args.output)  # a suffix it cannot write is refused before any work (ValueError: exit 2)
        if args.stream and Path(args.output).suffix.lower() != ".wav":
            raise CliError(f"--stream writes a WAV as it grows, so -o/--output needs a .wav name, not {args.output}.")
        check_output_file(args.output, "-o/--output")
    else:
        check_output_folder(args.output_path, "-O/--output-dir")
    models, specs = open_models(args, device, specs, settings)
    words = tokenizer()
    check_pronounceable(text, words)
    voices = [load_voice(spec, args.voices_dir) for spec in specs]  # a bad clip in any voice stops us before audio
    tts = TextToSpeech(models, tokenizer=words, progress=not args.quiet)
    seed, noted, played = draw_seed(args.seed), set(), []
    for number, (spec, voice) in enumerate(zip(specs, voices), start=1):
        best = Path(args.output) if args.output else Path(args.output_path) / f"{file_stem(spec)}.wav"
        wanted = [candidate_path(best, k) for k in range(settings.candidates)]
        if args.skip_existing and all(p.is_file() and sidecar_path(p).is_file() for p in wanted):
            print(f"{spec}: kept {best} (exists; --skip-existing)")
            played.append(best)
            continue
        say(args, f"Speaking as {spec} ({number} of {len(specs)})...")
        speech = _synthesise(tts, text, voice, seed, settings, args, best)
        paths = save_speech(best, speech, device, args.command, args.produce_debug_state)
        if args.produce_debug_state:
            say(args, f"  debug state: {best.with_name(best.stem + '.debug.safetensors')} (+ .json)")
        print_notes(speech.notes, noted)
        others = f" (+ {len(paths) - 1} more candidates)" if len(paths) > 1 else ""
        print(f"{spec}: wrote {best} and {sidecar_path(best).name}{others}, {speech.duration:.2f} s")
        played.append(best)
    print(f"seed: {seed} (pass --seed {seed} to reproduce)")
    for path in played if args.play and not args.stream else []:
        play(path)
    return 0
