"""What the verbs share: errors as one sentence, chatter, the synthesis options, and turning parsed flags into the
API's inputs (settings, voice specs, the model set). No synthesis happens here."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from tortoise_lab.config import SEED_RANGE, Settings

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NEEDS_FETCH = 3
EXIT_INTERRUPTED = 130  # the shell's code for a Ctrl-C'd program

DEFAULT_OUTPUT_DIR = "output-audio-samples"
ALL_VOICES = "all"  # -v all: every available voice in turn
VOICE_LIST_SEPARATOR = ","
# Command-line players tried for --play, first found wins: (program, arguments before the file).
PLAYERS = (
    ("aplay", ("-q",)),
    ("paplay", ()),
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "quiet")),
    ("afplay", ()),
)
# Players that take raw audio on stdin, for --stream --play: 32-bit float, mono, at the output rate.
RAW_PLAYERS = (
    ("aplay", ("-q", "-t", "raw", "-f", "FLOAT_LE", "-c", "1", "-r", "{rate}", "-")),
    ("paplay", ("--raw", "--format=float32le", "--channels=1", "--rate={rate}")),
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "quiet", "-f", "f32le", "-ac", "1", "-ar", "{rate}", "-i", "-")),
)


def finite_float(value: str) -> float:
    """argparse type: a float but not nan or inf (inf passes range checks and ruins the audio; JSON has neither)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return number


def seed_value(value: str) -> int:
    """argparse type: a seed from the range ``draw_seed`` draws from (which every torch.Generator accepts)."""
    seed = int(value) if value.strip().isdigit() else -1  # no sign: negative seeds are refused too
    if not 0 <= seed < SEED_RANGE:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {SEED_RANGE - 1}, got {value!r}")
    return seed


# Tuning flags: (flag, type, metavar, help). Unset, each takes the preset's value.
TUNING_OPTIONS = (
    ("--num-autoregressive-samples", int, "N",
     "how many code sequences the autoregressive model draws for CLVP to rank; more gives better odds of a "
     "good take and takes longer"),
    ("--temperature", finite_float, "T", "softmax temperature of the autoregressive sampling (greater than 0)"),
    ("--length-penalty", finite_float, "X",
     "kept for upstream compatibility: it only affects beam search, which sampling never uses"),
    ("--repetition-penalty", finite_float, "X",
     "penalty on codes already drawn; higher means fewer long silences and 'uhhh's (greater than 0)"),
    ("--top-p", finite_float, "P", "nucleus sampling: draw only from the likeliest codes whose probabilities sum "
     "to P (0 < P <= 1; lower is safer and duller)"),
    ("--max-mel-tokens", int, "N", "the longest speech to draw, in codes (20 codes per second of audio)"),
    ("--cvvp-amount", finite_float, "X",
     "weight of the CVVP voice-similarity score in the ranking, 0 to 1 (above 0 needs cvvp.pth)"),
    ("--diffusion-iterations", int, "N", "diffusion steps: more refine the audio further and take longer"),
    ("--cond-free-k", finite_float, "K",
     "strength of conditioning-free guidance: output = (1 + K) * conditioned - K * unconditioned"),
    ("--diffusion-temperature", finite_float, "T",
     "scale of the diffusion's starting noise (0 gives the mean prediction, which sounds smeared)"),
)
# Flags whose value goes to Settings under the flag's own name (dashes -> underscores).
SETTING_FLAGS = [flag[2:].replace("-", "_") for flag, *_ in TUNING_OPTIONS] + [
    "cond_free", "sampler", "candidates", "batch_size", "text_split", "kv_cache", "half", "deepspeed", "compile",
    "int8", "prepack", "device", "latent_cache", "decoder"]


class CliError(Exception):
    """A problem to report to the user as one sentence, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.message, self.code = message, code


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one sentence on stderr (exit 2) instead of the usage block."""

    def error(self, message: str):  # also lent to the training command's plain parsers (tools.run_train)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see `{self.prog} --help`).\n")


def fail(message: str, code: int) -> int:
    print(f"tortoise-lab: {message}", file=sys.stderr)
    return code


def say(args: argparse.Namespace, message: str) -> None:
    """Progress chatter, silenced by --quiet."""
    if not getattr(args, "quiet", False):
        print(message, flush=True)


def note(message: str) -> None:
    """Something the user should know about the result (kept in the sidecar too); printed even with --quiet."""
    print(f"note: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- flags -> API


def overrides(args: argparse.Namespace) -> dict:
    """The settings the user set on the command line (unset flags are None and left to the preset)."""
    values = {name: getattr(args, name) for name in SETTING_FLAGS if getattr(args, name) is not None}
    if args.disable_redaction is not None:
        values["redact"] = not args.disable_redaction
    return values


def flag_names(message: str) -> str:
    """Say ``--top-p`` where a settings message says ``top_p``, so the user sees the flag they typed."""
    for name in sorted(SETTING_FLAGS, key=len, reverse=True):
        flag = "--" + name.replace("_", "-")
        if message.startswith(name + " "):
            message = flag + message[len(name):]
        if "_" in name:
            message = message.replace(name, flag)
    return message


def settings_from_args(args: argparse.Namespace, **replace) -> Settings:
    """The run's validated Settings, built once (CliError naming the flag when an option is out of range)."""
    try:
        return Settings.from_preset(args.preset, **{**overrides(args), **replace})
    except ValueError as error:
        raise CliError(flag_names(str(error))) from None


def _in_the_way(folder: Path) -> str | None:
    """Why nothing can be written into ``folder``: a file at or above it, or its nearest folder unwritable; or None."""
    for place in (folder, *folder.parents):
        if os.path.lexists(place):
            if not place.is_dir():
                return f"{place} is a file"
            return None if os.access(place, os.W_OK | os.X_OK) else f"{place} is not writable"
    return None


def check_output_folder(path: str | Path, flag: str) -> None:
    """CliError before any work, not at the first write, when ``path`` cannot be a folder to write into."""
    problem = _in_the_way(Path(path))
    if problem:
        raise CliError(f"{flag} {path} cannot be written: {problem}; give another folder.")


def check_output_file(path: str | Path, flag: str) -> None:
    """CliError before any work when ``path`` cannot be written as a file: it is a folder, or its folder can't be."""
    path = Path(path)
    problem = f"{path} is a folder" if path.is_dir() else _in_the_way(path.parent)
    if problem:
        raise CliError(f"{flag} {path} cannot be written: {problem}; give another path.")


def check_voice_dirs(dirs: list[str] | None) -> None:
    """Every -V/--voices-dir names an existing folder (one that is not would be skipped silently otherwise)."""
    for folder in dirs or []:
        if not Path(folder).expanduser().is_dir():
            raise CliError(f"no voices folder at {folder} (-V/--voices-dir); give a folder of voice folders.")


def voice_specs(args: argparse.Namespace) -> list[str]:
    """-v as a list of voice specs (names, a&b blends), ``all`` expanded; unknown names are a CliError."""
    from tortoise_lab.voices import RANDOM_VOICE, available_voices, parse_voice_spec

    check_voice_dirs(args.voices_dir)
    known = available_voices(args.voices_dir)
    specs: list[str] = []
    for item in (part.strip() for part in args.voice.split(VOICE_LIST_SEPARATOR)):
        if not item:
            continue
        expanded = sorted(known) if item == ALL_VOICES else [item]
        specs += [spec for spec in expanded if spec not in specs]
    if not specs:
        raise CliError("no voice given; pass a name, a blend like tom&emma, several separated by commas, or all.")
    listed = ", ".join([RANDOM_VOICE, *sorted(known)])
    for spec in specs:
        try:
            names = [name for name, _ in parse_voice_spec(spec)]  # a blend's names, weights taken off
        except ValueError as error:
            raise CliError(str(error)) from None
        if RANDOM_VOICE in names and len(names) > 1:
            raise CliError("the random voice cannot be blended; pick named voices for a blend.")
        for name in names:
            if name != RANDOM_VOICE and name not in known:
                raise CliError(f"unknown voice {name!r}; available: {listed} (or {ALL_VOICES}).")
    return specs


def open_models(args: argparse.Namespace, device, specs: list[str], settings: Settings):
    """The model set that speaks (``model_set.resolve_models``: --tiny, or --model auto|official|embedded) and the
    voice specs it will use (a set without a random voice speaks in its own default voice instead)."""
    from tortoise_lab.model_set import resolve_models
    from tortoise_lab.voices import RANDOM_VOICE

    choice = "tiny" if args.tiny else args.model
    if choice == "official":
        say(args, f"Loading the official weights onto {device}...")
    chosen = resolve_models(choice, args.models_dir, device, random_voice=RANDOM_VOICE in specs,
                            cvvp=settings.cvvp_amount > 0)
    if choice == "tiny":
        print(chosen.message, flush=True)
    elif choice != "official":
        say(args, chosen.message)
    if not chosen.models.has_random_voice and RANDOM_VOICE in specs:
        say(args, f"The {chosen.name} model has no random voice: using the voice {chosen.default_voice!r}.")
        specs = [chosen.default_voice if spec == RANDOM_VOICE else spec for spec in specs]
    try:
        chosen.models.fit(settings)  # a value the user typed beyond the model's limits fails now, before any work
    except ValueError as error:
        raise CliError(flag_names(str(error))) from None
    return chosen.models, specs


def tokenizer():
    """The official tokenizer, without fetching anything (a missing asset is a CliError, exit 3)."""
    from tortoise_lab import assets
    from tortoise_lab.text import Tokenizer

    try:
        return Tokenizer(assets.data_file("tokenizer.json", fetch=False))
    except assets.AssetError:
        raise CliError("the official tokenizer is not unpacked yet: run `tortoise-lab assets` first.",
                       EXIT_NEEDS_FETCH) from None


def check_pronounceable(text: str, tokenizer) -> None:
    from tortoise_lab.text import clean_text

    if not tokenizer.encode(text) or not any(ch.isalnum() for ch in clean_text(text)):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise CliError(f"the text {shown!r} has nothing pronounceable in it (no letters or digits); "
                       "give words to speak.")


def read_text_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"no text file at {path}.") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text.") from None
    except OSError as error:
        raise CliError(f"cannot read {path} ({error.strerror or error}).") from None


def list_voices(args: argparse.Namespace) -> int:
    from tortoise_lab.cli.voices import format_voice_table

    print(format_voice_table(args.voices_dir))
    return 0


def print_notes(messages: list[str], noted: set[str]) -> None:
    """A speech's notes on stderr, each once per command (not once per chunk)."""
    for message in messages:
        if message not in noted:
            noted.add(message)
            note(message)


def find_player() -> tuple[str, tuple[str, ...]] | None:
    for program, arguments in PLAYERS:
        found = shutil.which(program)
        if found:
            return found, arguments
    return None


def play(path: Path) -> None:
    """Play a file with the first command-line player found; never fails the run."""
    player = find_player()
    if player is None:
        note(f"no audio player found ({', '.join(p for p, _ in PLAYERS)}); {path} is saved, play it yourself.")
        return
    program, arguments = player
    try:
        done = subprocess.run([program, *arguments, str(path)], check=False, capture_output=True)
    except OSError as error:
        note(f"could not start {Path(program).name} to play {path} ({error.strerror or error}); the file is kept.")
        return
    if done.returncode != 0:
        note(f"{Path(program).name} could not play {path} (exit {done.returncode}); the file is kept.")


@contextmanager
def raw_player(enabled: bool, rate: int):
    """A function that plays (1, n) float pieces as they come (the first of ``RAW_PLAYERS`` found, fed on its
    stdin), or does nothing when not ``enabled`` or no player is found (noted); never fails the run."""
    found = None
    if enabled:
        found = next(((shutil.which(name), args) for name, args in RAW_PLAYERS if shutil.which(name)), None)
    if enabled and found is None:
        note(f"no player for a stream found ({', '.join(name for name, _ in RAW_PLAYERS)}); the file is saved.")
    if found is None:
        yield lambda piece: None
        return
    program, arguments = found
    process = subprocess.Popen([program, *(a.format(rate=rate) for a in arguments)], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def feed(piece) -> None:
        try:
            process.stdin.write(piece.reshape(-1).float().numpy().astype("<f4").tobytes())
            process.stdin.flush()
        except OSError:  # the player went away: the run goes on, the file is still written
            pass

    try:
        yield feed
    finally:
        try:
            process.stdin.close()
        except OSError:
            pass
        process.wait()
