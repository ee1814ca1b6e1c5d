"""The ``tortoise-lab`` command line: a thin layer over the package.

Verbs: ``speak`` (a sentence or a short text), ``read`` (a long text file, chunk by chunk, resumable),
``download`` (official weights), ``assets`` (tokenizer, mel norms, built-in voices), ``bench`` (stage timings beside
upstream tortoise-tts), ``compare`` (how two WAVs differ).

Exit codes: 0 success, 1 the run failed (out of memory), 2 bad input (argparse's code too), 3 something the user
must fetch first (weights, assets), 130 interrupted. Errors are one sentence on stderr, never a traceback, and
never leave a half-written file (every write is atomic, see ``tortoise_lab.outputs``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, assets
from .config import PRESETS

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NEEDS_FETCH = 3
EXIT_INTERRUPTED = 130  # the shell's code for a Ctrl-C'd program

DEFAULT_OUTPUT_DIR = "output-audio-samples"
ALL_VOICES = "all"  # -v all: every available voice in turn
VOICE_LIST_SEPARATOR = ","
TINY_WEIGHTS_SEED = 0  # --tiny always builds the same random weights, so seeds reproduce across runs
SEED_RANGE = 2**31 - 1
# read: an explicit chunk boundary in the text file (as upstream's read.py honoured it).
CHUNK_MARKER = "|"
# Command-line players tried for --play, first found wins: (program, arguments before the file).
PLAYERS = (
    ("aplay", ("-q",)),
    ("paplay", ()),
    ("ffplay", ("-nodisp", "-autoexit", "-loglevel", "quiet")),
    ("afplay", ()),
)
# The optional official files a run may need beyond model_set.ALWAYS_NEEDED.
RANDOM_VOICE_WEIGHTS = ("rlg_auto.pth", "rlg_diffuser.pth")
CVVP_WEIGHTS = ("cvvp.pth",)

# Tuning flags: (flag, type, metavar, help). Unset, each takes the preset's value.
TUNING_OPTIONS = (
    ("--num-autoregressive-samples", int, "N",
     "how many code sequences the autoregressive model draws for CLVP to rank; more gives better odds of a "
     "good take and takes longer"),
    ("--temperature", float, "T", "softmax temperature of the autoregressive sampling (greater than 0)"),
    ("--length-penalty", float, "X",
     "kept for upstream compatibility: it only affects beam search, which sampling never uses"),
    ("--repetition-penalty", float, "X",
     "penalty on codes already drawn; higher means fewer long silences and 'uhhh's (greater than 0)"),
    ("--top-p", float, "P", "nucleus sampling: draw only from the likeliest codes whose probabilities sum to P "
     "(0 < P <= 1; lower is safer and duller)"),
    ("--max-mel-tokens", int, "N", "the longest speech to draw, in codes (20 codes per second of audio)"),
    ("--cvvp-amount", float, "X",
     "weight of the CVVP voice-similarity score in the ranking, 0 to 1 (above 0 needs cvvp.pth)"),
    ("--diffusion-iterations", int, "N", "diffusion steps: more refine the audio further and take longer"),
    ("--cond-free-k", float, "K",
     "strength of conditioning-free guidance: output = (1 + K) * conditioned - K * unconditioned"),
    ("--diffusion-temperature", float, "T",
     "scale of the diffusion's starting noise (0 gives the mean prediction, which sounds smeared)"),
)
# Flags whose value goes to Settings under the flag's own name (dashes -> underscores).
_SETTING_FLAGS = [flag[2:].replace("-", "_") for flag, *_ in TUNING_OPTIONS] + [
    "cond_free", "sampler", "candidates", "batch_size", "text_split", "kv_cache", "half", "deepspeed", "compile",
    "int8", "device", "latent_cache"]


class CliError(Exception):
    """A problem to report to the user as one sentence, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.message, self.code = message, code


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one sentence on stderr (exit 2) instead of the usage block."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see `{self.prog} --help`).\n")


def _fail(message: str, code: int) -> int:
    print(f"tortoise-lab: {message}", file=sys.stderr)
    return code


def _say(args: argparse.Namespace, message: str) -> None:
    """Progress chatter, silenced by --quiet."""
    if not getattr(args, "quiet", False):
        print(message, flush=True)


def _note(message: str) -> None:
    """Something the user should know about the result (kept in the sidecar too); printed even with --quiet."""
    print(f"note: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- download, assets


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


# ------------------------------------------------------------------------------------------ shared helpers


def _list_voices(args: argparse.Namespace) -> int:
    from tortoise_lab.cli_voices import format_voice_table

    print(format_voice_table(args.voices_dir))
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    """The settings the user set on the command line (unset flags are None and left to the preset)."""
    values = {name: getattr(args, name) for name in _SETTING_FLAGS if getattr(args, name) is not None}
    if args.disable_redaction is not None:
        values["redact"] = not args.disable_redaction
    return values


def _flag_names(message: str) -> str:
    """Say ``--top-p`` where a settings message says ``top_p``, so the user sees the flag they typed."""
    for name in sorted(_SETTING_FLAGS, key=len, reverse=True):
        flag = "--" + name.replace("_", "-")
        if message.startswith(name + " "):
            message = flag + message[len(name):]
        if "_" in name:
            message = message.replace(name, flag)
    return message


def _settings(args: argparse.Namespace, **replace):
    """Validated Settings for the run (CliError naming the flag when an option is out of range)."""
    from tortoise_lab.pipeline import Settings

    try:
        return Settings.from_preset(args.preset, **{**_overrides(args), **replace})
    except ValueError as error:
        raise CliError(_flag_names(str(error))) from None


def _choose_device(requested: str | None):
    """The torch device to run on; ``tortoise_lab.device`` checks the request when it is present."""
    try:
        from tortoise_lab.device import choose_device
    except ImportError:
        try:
            from tortoise_lab.fast import choose_device
        except ImportError:
            import torch

            return torch.device(requested or "cpu")
    try:
        return choose_device(requested)
    except ValueError as error:
        raise CliError(str(error)) from None


def _voice_specs(args: argparse.Namespace) -> list[str]:
    """-v as a list of voice specs (names, a&b blends), ``all`` expanded; unknown names are a CliError."""
    from tortoise_lab.voices import BLEND_SEPARATOR, RANDOM_VOICE, available_voices, load_voice

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
        names = [name.strip() for name in spec.split(BLEND_SEPARATOR)]
        if not all(names) or (RANDOM_VOICE in names and len(names) > 1):
            load_voice(spec, args.voices_dir)  # raises the one-sentence ValueError for a malformed blend
        for name in names:
            if name != RANDOM_VOICE and name not in known:
                raise CliError(f"unknown voice {name!r}; available: {listed} (or {ALL_VOICES}).")
    return specs


def _check_weights(args: argparse.Namespace, specs: list[str], settings) -> None:
    """Fail early, before any loading, when official files the run needs are not downloaded."""
    if args.tiny:
        return
    from tortoise_lab.model_set import ALWAYS_NEEDED

    needed = list(ALWAYS_NEEDED)
    if any(spec.strip() == "random" for spec in specs):
        needed += RANDOM_VOICE_WEIGHTS
    if settings.cvvp_amount > 0:
        needed += CVVP_WEIGHTS
    missing = missing_weights(args.models_dir, needed)
    if missing:
        where = f"--models-dir {args.models_dir}" if args.models_dir else "the model-hub cache"
        fetch = "tortoise-lab download" + (f" --models-dir {args.models_dir}" if args.models_dir else "")
        raise CliError(
            f"speaking with the official model needs its weights, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in {where}: run `{fetch}` (about 4 GB) first, "
            f"or add --tiny to try the pipeline on random weights.", EXIT_NEEDS_FETCH)


RANDOM_VOICE_SPEC = "random"  # the embedded model has none: model_set.EMBEDDED_DEFAULT_VOICE stands in


def _resolve_model(args: argparse.Namespace, specs: list[str], settings) -> list[str]:
    """Decide which model speaks (sets ``args.resolved_model``) and return the voice specs it will use.

    --tiny: random tiny weights. --model official: the official weights or a one-sentence error. --model embedded:
    the small model shipped in the package. auto (default): official when its weights are here, else embedded.
    """
    from tortoise_lab.model_set import EMBEDDED_DEFAULT_VOICE, embedded_available

    if args.tiny:
        args.resolved_model = "tiny"
        return specs
    choice = args.model
    if choice == "auto":
        try:
            _check_weights(args, specs, settings)
            choice = "official"
        except CliError:
            if not embedded_available():
                raise
            choice = "embedded"
            _say(args, "Official weights not found: speaking with the embedded tiny model (trained on espeak-ng "
                       "speech). `tortoise-lab download` fetches the official model.")
    elif choice == "official":
        _check_weights(args, specs, settings)
    elif not embedded_available():
        raise CliError("the embedded model is not in this installation; train it with `python -m tortoise_lab.train` "
                       "or use --model official.", EXIT_NEEDS_FETCH)
    args.resolved_model = choice
    if choice == "embedded" and RANDOM_VOICE_SPEC in specs:
        _say(args, f"The embedded model has no random voice: using the voice {EMBEDDED_DEFAULT_VOICE!r}.")
        specs = [EMBEDDED_DEFAULT_VOICE if spec == RANDOM_VOICE_SPEC else spec for spec in specs]
    return specs


def _tokenizer():
    """The official tokenizer, without fetching anything (a missing asset is a CliError, exit 3)."""
    from tortoise_lab.text import Tokenizer

    try:
        return Tokenizer(assets.data_file("tokenizer.json", fetch=False))
    except assets.AssetError:
        raise CliError("the official tokenizer is not unpacked yet: run `tortoise-lab assets` first.",
                       EXIT_NEEDS_FETCH) from None


def _check_pronounceable(text: str, tokenizer) -> None:
    from tortoise_lab.text import clean_text

    if not tokenizer.encode(text) or not any(ch.isalnum() for ch in clean_text(text)):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise CliError(f"the text {shown!r} has nothing pronounceable in it (no letters or digits); "
                       "give words to speak.")


def _find_player() -> tuple[str, tuple[str, ...]] | None:
    for program, arguments in PLAYERS:
        found = shutil.which(program)
        if found:
            return found, arguments
    return None


def _play(path: Path) -> None:
    """Play a file with the first command-line player found; never fails the run."""
    player = _find_player()
    if player is None:
        _note(f"no audio player found ({', '.join(p for p, _ in PLAYERS)}); {path} is saved, play it yourself.")
        return
    program, arguments = player
    try:
        done = subprocess.run([program, *arguments, str(path)], check=False, capture_output=True)
    except OSError as error:
        _note(f"could not start {Path(program).name} to play {path} ({error.strerror or error}); the file is kept.")
        return
    if done.returncode != 0:
        _note(f"{Path(program).name} could not play {path} (exit {done.returncode}); the file is kept.")


@dataclass
class _Session:
    """Models, pipeline and device for one command."""

    device: object
    models: object
    tts: object
    command: list[str]
    noted: set = field(default_factory=set)  # notes already printed: one per run, not one per chunk

    @classmethod
    def open(cls, args: argparse.Namespace, device, tokenizer) -> "_Session":
        from tortoise_lab.model_set import official_models, random_models
        from tortoise_lab.pipeline import TextToSpeech

        if args.tiny:
            print("--tiny: using random tiny weights; the audio is noise, not speech (for trying the pipeline).",
                  flush=True)
            models = random_models("tiny", seed=TINY_WEIGHTS_SEED, device=device)
        elif getattr(args, "resolved_model", "official") == "embedded":
            from tortoise_lab.model_set import embedded_models

            models = embedded_models(device=device)
        else:
            _say(args, f"Loading the official weights onto {device}...")
            models = official_models(args.models_dir, device)
        # The pipeline loads the redaction aligner itself, only when a text has [brackets] and redaction is on.
        tts = TextToSpeech(models, tokenizer=tokenizer, progress=not args.quiet)
        return cls(device, models, tts, args.command)

    def check_length(self, settings) -> None:
        if self.models.kind == "embedded":
            return  # the preset's 500 codes are more than its 300; the pipeline stops at its own limit
        limit = self.models.gpt.config.mel_positions
        if settings.max_mel_tokens > limit:
            raise CliError(f"--max-mel-tokens {settings.max_mel_tokens} is more than this model can draw; "
                           f"use at most {limit}.")

    def sidecar(self, speech, candidate: int = 0, **extra) -> dict:
        return {**speech.metadata(), "device": str(self.device), "candidate": candidate,
                "tortoise_lab_version": __version__, "command": self.command, **extra}

    def save(self, best: Path, speech, args: argparse.Namespace, **extra) -> list[Path]:
        """Every candidate of ``speech`` (best at ``best``) with sidecars, and the debug state if asked for."""
        from tortoise_lab.outputs import candidate_path, save_debug_state, save_with_sidecar

        paths = []
        for k, wav in enumerate(speech.candidates):
            path = candidate_path(best, k)
            save_with_sidecar(path, wav, speech.sample_rate, self.sidecar(speech, k, **extra))
            paths.append(path)
        if args.produce_debug_state:
            tensors = {f"candidate_{k}": wav for k, wav in enumerate(speech.candidates)}  # candidate_0 is the WAV
            tensors.update({f"codes_{i}": codes for i, codes in enumerate(speech.codes)})
            tensors.update({f"scores_{i}": scores for i, scores in enumerate(speech.scores)})
            tensor_file, _ = save_debug_state(best, tensors, self.sidecar(speech, 0, **extra))
            _say(args, f"  debug state: {tensor_file} (+ .json)")
        for message in speech.notes:
            if message not in self.noted:
                self.noted.add(message)
                _note(message)
        return paths


# ------------------------------------------------------------------------------------------------- speak


def _stdin_text() -> str | None:
    """Piped standard input, or None when stdin is a terminal or unreadable."""
    stream = sys.stdin
    try:
        if stream is None or stream.isatty():
            return None
        return stream.read()
    except (OSError, ValueError):
        return None


def _read_text_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"no text file at {path}.") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text.") from None
    except OSError as error:
        raise CliError(f"cannot read {path} ({error.strerror or error}).") from None


def _speak_text(args: argparse.Namespace) -> str:
    words = args.text or []
    if args.text_file and words:
        raise CliError("give the text either as an argument or with --text-file, not both.")
    if args.text_file:
        text = _read_text_file(args.text_file)
    elif words == ["-"] or not words:
        text = _stdin_text()
        if text is None:
            raise CliError("no text to speak: pass it as an argument, pipe it on stdin, or use --text-file PATH.")
    else:
        text = " ".join(words)
    if not text.strip():
        raise CliError("the text to speak is empty; pass a sentence, e.g. tortoise-lab speak \"Hello there.\"")
    return text.strip()


def _draw_seed(args: argparse.Namespace) -> int:
    return args.seed if args.seed is not None else random.SystemRandom().randrange(SEED_RANGE)


def cmd_speak(args: argparse.Namespace) -> int:
    from tortoise_lab.outputs import candidate_path, file_stem, sidecar_path
    from tortoise_lab.voices import load_voice

    if args.list_voices:
        return _list_voices(args)
    text = _speak_text(args)
    settings = _settings(args)
    device = _choose_device(settings.device)
    specs = _voice_specs(args)
    if args.output:
        if len(specs) > 1 or settings.candidates > 1:
            raise CliError("-o/--output names one file, so it takes one voice and one candidate; "
                           "use -O/--output-dir for several.")
        _check_audio_suffix(Path(args.output))
    specs = _resolve_model(args, specs, settings)
    tokenizer = _tokenizer()
    _check_pronounceable(text, tokenizer)
    session = _Session.open(args, device, tokenizer)
    session.check_length(settings)
    seed = _draw_seed(args)
    overrides = {**_overrides(args), "device": str(device)}

    played = []
    for number, spec in enumerate(specs, start=1):
        best = Path(args.output) if args.output else Path(args.output_path) / f"{file_stem(spec)}.wav"
        wanted = [candidate_path(best, k) for k in range(settings.candidates)]
        if args.skip_existing and all(p.is_file() and sidecar_path(p).is_file() for p in wanted):
            print(f"{spec}: kept {best} (exists; --skip-existing)")
            played.append(best)
            continue
        _say(args, f"Speaking as {spec} ({number} of {len(specs)})...")
        speech = session.tts.tts(text, voice=load_voice(spec, args.voices_dir), preset=args.preset, seed=seed,
                                 **overrides)
        paths = session.save(best, speech, args)
        others = f" (+ {len(paths) - 1} more candidates)" if len(paths) > 1 else ""
        print(f"{spec}: wrote {best} and {sidecar_path(best).name}{others}, {speech.duration:.2f} s")
        played.append(best)
    print(f"seed: {seed} (pass --seed {seed} to reproduce)")
    if args.play:
        for path in played:
            _play(path)
    return 0


def _check_audio_suffix(path: Path) -> None:
    import soundfile

    if path.suffix.lstrip(".").upper() not in soundfile.available_formats():
        raise CliError(f"cannot write audio to {path}: give it a .wav (or .flac, .ogg) name.")


# -------------------------------------------------------------------------------------------------- read


def _read_chunks(text: str, text_split) -> list[str]:
    """The chunks ``read`` synthesises one by one: split at '|' if the text has any, else by split_text."""
    from tortoise_lab.pipeline import TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX
    from tortoise_lab.text import split_text

    if CHUNK_MARKER in text:
        pieces = text.split(CHUNK_MARKER)
    else:
        desired, maximum = text_split or (TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX)
        pieces = split_text(text, desired_length=desired, max_length=maximum)
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


def cmd_read(args: argparse.Namespace) -> int:
    import torch

    from tortoise_lab.outputs import (MANIFEST_NAME, candidate_path, chunk_finished, chunk_seed, identity,
                                      load_wav, parse_indices, read_folder, read_json, save_with_sidecar,
                                      write_json)
    from tortoise_lab.redaction import parse_redactions
    from tortoise_lab.voices import load_voice

    if args.list_voices:
        return _list_voices(args)
    if not args.textfile:
        raise CliError("read needs a text file, e.g. tortoise-lab read story.txt (use speak for a sentence).")
    text = _read_text_file(args.textfile)
    settings = _settings(args)
    if not text.strip():
        raise CliError(f"{args.textfile} is empty; there is nothing to read.")
    chunks = _read_chunks(text, settings.text_split)
    regenerate = set(parse_indices(args.regenerate)) if args.regenerate else set()
    beyond = sorted(i for i in regenerate if i >= len(chunks))
    if beyond:
        raise CliError(f"--regenerate names chunk {beyond[0]}, but {args.textfile} has {len(chunks)} chunks "
                       f"(0 to {len(chunks) - 1}).")
    device = _choose_device(settings.device)
    specs = _voice_specs(args)
    specs = _resolve_model(args, specs, settings)
    tokenizer = _tokenizer()
    _check_pronounceable(text, tokenizer)
    session = _Session.open(args, device, tokenizer)
    session.check_length(settings)
    for chunk in chunks:  # a chunk the model cannot take fails now, not after an hour of audio
        session.tts.text_tokens(chunk)
        if settings.redact:
            parse_redactions(chunk)
    # Chunks are already the units of synthesis: the pipeline must not split them again.
    # The device is recorded as chosen ("cpu", not unset), so a chunk made on auto matches one made with --device cpu.
    chunk_settings = _settings(args, text_split=None, device=str(device))
    overrides = {**_overrides(args), "text_split": None, "device": str(device)}
    fallback_seed = _draw_seed(args)

    for spec in specs:
        folder = read_folder(args.output_path, args.textfile, spec)
        manifest_path = folder / MANIFEST_NAME
        previous = read_json(manifest_path) or {}
        run_seed = args.seed if args.seed is not None else previous.get("seed", fallback_seed)
        voice_name = spec.strip()
        manifest = {
            "text_file": str(Path(args.textfile).resolve()), "voice": voice_name, "seed": run_seed,
            "model": session.models.description, "settings": chunk_settings.to_dict(),
            "text_split": settings.text_split, "tortoise_lab_version": __version__, "combined": None,
            "chunks": [],
        }
        todo = []
        for index, chunk in enumerate(chunks):
            seed = chunk_seed(run_seed, index)
            best = folder / f"{index}.wav"
            expected = identity(chunk, voice_name, seed, chunk_settings.to_dict(), session.models.description)
            done = index not in regenerate and (
                chunk_finished(best, expected, chunk_settings.candidates) or (args.skip_existing and best.is_file()))
            manifest["chunks"].append({"index": index, "text": chunk, "seed": seed, "wav": best.name, "done": done})
            if not done:
                todo.append(index)
        write_json(manifest_path, manifest)
        kept = len(chunks) - len(todo)
        _say(args, f"Reading {args.textfile} as {spec}: {len(chunks)} chunks, {kept} already done, "
                   f"{len(todo)} to synthesise.")

        voice = load_voice(spec, args.voices_dir) if todo else None
        for index in todo:
            entry = manifest["chunks"][index]
            _say(args, f"  chunk {index} ({todo.index(index) + 1} of {len(todo)}): {entry['text'][:60]}")
            speech = session.tts.tts(entry["text"], voice=voice, preset=args.preset, seed=entry["seed"],
                                     **overrides)
            session.save(folder / entry["wav"], speech, args, chunk_index=index, run_seed=run_seed)
            entry["done"] = True
            write_json(manifest_path, manifest)  # progress survives an interruption at the next chunk

        combined = folder / "combined.wav"
        for k in range(chunk_settings.candidates):
            parts = [candidate_path(folder / entry["wav"], k) for entry in manifest["chunks"]]
            if not all(p.is_file() for p in parts):
                continue  # --skip-existing kept chunks made with fewer candidates: no full take k
            waves = [load_wav(p) for p in parts]
            audio = torch.cat([wav for wav, _ in waves], dim=-1)
            rate = waves[0][1]
            save_with_sidecar(candidate_path(combined, k), audio, rate, {
                "text_file": manifest["text_file"], "voice": voice_name, "seed": run_seed, "candidate": k,
                "sample_rate": rate, "duration_s": round(audio.shape[-1] / rate, 3),
                "chunks": [{"index": e["index"], "text": e["text"], "seed": e["seed"], "wav": p.name}
                           for e, p in zip(manifest["chunks"], parts)],
                "settings": chunk_settings.to_dict(), "model": session.models.description,
                "device": str(session.device), "tortoise_lab_version": __version__, "command": session.command,
            })
        manifest["combined"] = combined.name
        write_json(manifest_path, manifest)
        print(f"{spec}: {len(chunks)} chunks in {folder} ({len(todo)} synthesised, {kept} kept), combined in "
              f"{combined.name} (+ .json); seed: {run_seed} (each chunk's seed derives from it, see {MANIFEST_NAME})")
        if args.play:
            _play(combined)
    return 0


# ---------------------------------------------------------------------------------------- bench, compare


def _config_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def cmd_bench(args: argparse.Namespace) -> int:
    from tortoise_lab.bench import DEFAULT_CONFIGS, run_benchmark

    try:
        records = run_benchmark(quick=args.quick, against_reference=args.against_reference,
                                max_mel_tokens=args.max_mel_tokens, preset=args.preset, repeats=args.repeats,
                                configs=args.configs or DEFAULT_CONFIGS, json_path=args.json, out_dir=args.out_dir,
                                seed=args.seed, weights_dir=args.weights_dir, device=args.device)
    except ValueError as error:
        raise CliError(str(error)) from None
    except FileNotFoundError as error:
        raise CliError(str(error), EXIT_NEEDS_FETCH) from None
    failed = [f"{r['impl']}/{r['config']}" for r in records if "error" in r]
    if failed:
        return _fail(f"{len(failed)} configuration(s) failed: {', '.join(failed)} (see the table).", EXIT_FAILED)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from tortoise_lab.audio import OUTPUT_SAMPLE_RATE, load_audio
    from tortoise_lab.compare import compare_waveforms, plot_comparison

    try:
        a, b = (load_audio(path, OUTPUT_SAMPLE_RATE) for path in (args.a, args.b))
    except (FileNotFoundError, ValueError) as error:
        raise CliError(str(error)) from None
    values = compare_waveforms(a, b).to_dict()
    for name, value in values.items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(values, indent=1) + "\n")
    if args.plot:
        plot_comparison(a, b, args.plot, labels=(Path(args.a).name, Path(args.b).name))
        print(f"spectrograms: {args.plot}")
    return 0


# ------------------------------------------------------------------------------------------------ parser


def _text_split(value: str) -> tuple[int, int]:
    parts = value.split(",")
    try:
        desired, maximum = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected desired,max characters like 200,300, got {value!r}") from None
    return desired, maximum


def _add_synthesis_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """Options speak and read share: voices, presets, outputs, and every tuning knob."""
    flag = argparse.BooleanOptionalAction
    voices = parser.add_argument_group("voices and output")
    voices.add_argument("-v", "--voice", default="random", metavar="VOICE",
                        help="voice name; a&b blends voices; several separated by commas are spoken in turn; "
                             "'all' is every available voice (default: random)")
    voices.add_argument("-V", "--voices-dir", action="append", default=None, metavar="DIR",
                        help="a folder of extra voices (one sub-folder of clips per voice), searched first; "
                             "repeat for several")
    voices.add_argument("-l", "--list-voices", action=flag, default=False,
                        help="print every available voice with its folder, and exit")
    voices.add_argument("-p", "--preset", default="fast", metavar="PRESET",
                        help=f"quality/speed preset: {', '.join(PRESETS)} (default: fast)")
    voices.add_argument("-O", "--output-dir", "--output-path", dest="output_path", default=DEFAULT_OUTPUT_DIR,
                        metavar="DIR", help=f"folder for the WAV files and their JSON sidecars "
                                            f"(default: {DEFAULT_OUTPUT_DIR}/; --output-path is an older spelling)")
    voices.add_argument("--candidates", type=int, default=None, metavar="K",
                        help="how many of the best-ranked takes to turn into audio; the best is the main file, the "
                             "others are saved beside it as *_candidateN.wav (default: 1)")
    skip_help = ("keep outputs that already exist instead of redoing them" if verb == "speak" else
                 "keep every chunk whose WAV exists, even if it was made with other settings")
    voices.add_argument("--skip-existing", action=flag, default=False, help=skip_help)
    voices.add_argument("-P", "--play", action=flag, default=False,
                        help="play the result with aplay, paplay, ffplay or afplay if one is installed")
    voices.add_argument("-q", "--quiet", action=flag, default=False,
                        help="no progress bars or chatter: print only where outputs went, the seed, and notes")
    voices.add_argument("--produce-debug-state", action=flag, default=False,
                        help="also save <output>.debug.safetensors (codes, ranking scores, candidates) and "
                             "<output>.debug.json (seed, settings, text) beside each output")

    run = parser.add_argument_group("model and run")
    run.add_argument("--seed", type=int, default=None, help="random seed; the same seed and settings give the "
                                                            "same audio (default: drawn, and printed)")
    run.add_argument("--models-dir", default=None, metavar="DIR",
                     help="folder holding the official .pth files (default: $TORTOISE_LAB_MODELS_DIR, else the "
                          "huggingface_hub cache)")
    run.add_argument("--model", choices=("auto", "official", "embedded"), default="auto",
                     help="which model speaks: the official weights, the small embedded model shipped in the package "
                          "(trained on espeak-ng speech), or auto: official when downloaded, else embedded "
                          "(default: auto)")
    run.add_argument("--tiny", action=flag, default=False,
                     help="use small random weights instead of the official ones: runs in seconds without "
                          "downloads, and the audio is noise")
    run.add_argument("--device", default=None, metavar="DEVICE",
                     help="cpu, cuda, cuda:N or mps (default: the best available)")
    run.add_argument("--text-split", type=_text_split, default=None, metavar="DESIRED,MAX",
                     help="split text into chunks of about DESIRED and at most MAX characters (default: 200,300; "
                          "speak only splits texts longer than 300 characters)")
    run.add_argument("--disable-redaction", action=flag, default=None,
                     help="speak [bracketed] text too; normally it guides the delivery and is cut from the audio")
    run.add_argument("--latent-cache", action=flag, default=None,
                     help="reuse a clip voice's conditioning latents saved beside its clips (default: on)")
    run.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="autoregressive samples drawn at once; lower it if you run out of memory (default: 16)")

    tuning = parser.add_argument_group("tuning (unset options take the preset's values)")
    for option, kind, metavar, text in TUNING_OPTIONS:
        tuning.add_argument(option, type=kind, default=None, metavar=metavar, help=text)
    tuning.add_argument("--cond-free", action=flag, default=None,
                        help="conditioning-free diffusion guidance: two passes per step, much more natural audio "
                             "(default: on, except in ultra_fast)")
    tuning.add_argument("--sampler", choices=("ddpm", "ddim", "dpm++2m"), default=None,
                        help="diffusion sampler (default: ddpm, as upstream)")

    speed = parser.add_argument_group("inference (same audio, different speed)")
    speed.add_argument("--kv-cache", action=flag, default=None,
                       help="reuse attention keys and values while decoding; off gives the same audio, slowly "
                            "(default: on)")
    speed.add_argument("--half", action=flag, default=None,
                       help="half precision on CUDA (faster, slightly different audio; ignored elsewhere)")
    speed.add_argument("--deepspeed", action=flag, default=None,
                       help="DeepSpeed's fused decoder kernels (CUDA with the deepspeed extra; noted and ignored "
                            "elsewhere)")
    speed.add_argument("--compile", action=flag, default=None,
                       help="torch.compile the decode step (pays off on long runs)")
    speed.add_argument("--int8", action=flag, default=None,
                       help="int8 decoder and CLVP on CPU: several times faster, and lossy (different audio)")


SPEAK_EXAMPLES = """examples:
  tortoise-lab speak "Hello, how are you?" -v tom -o hello.wav
  echo "Say it like you mean it!" | tortoise-lab speak -v tom,emma -O out/
  tortoise-lab speak --tiny --seed 3 "Try the pipeline without downloads."
"""

READ_EXAMPLES = """examples:
  tortoise-lab read story.txt -v tom -p standard        # out: output-audio-samples/story/tom/
  tortoise-lab read story.txt -v tom --regenerate 3,5-7  # redo chunks 3, 5, 6 and 7
Run the same command again after an interruption: finished chunks are kept.
"""

BENCH_EXAMPLES = """examples:
  tortoise-lab bench --quick --against-reference --out-dir bench-quick   # smoke test, a minute or two
  tortoise-lab bench --against-reference --out-dir bench-out             # the full table (official sizes)
  tortoise-lab bench --configs kv_cache,ultra_fast_int8_dpm --repeats 1
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tortoise-lab", description="TorToiSe text-to-speech, faithful and fast.")
    parser.add_argument("--version", action="version", version=f"tortoise-lab {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    raw = argparse.RawDescriptionHelpFormatter

    speak = verbs.add_parser("speak", help="turn text into speech", formatter_class=raw, epilog=SPEAK_EXAMPLES,
                             description="Speak a text in one or more voices; each output WAV gets a JSON sidecar.")
    speak.add_argument("text", nargs="*", help="the text to speak; '-' or nothing reads it from piped stdin")
    speak.add_argument("--text-file", default=None, metavar="PATH", help="read the text from this UTF-8 file")
    speak.add_argument("-o", "--output", default=None, metavar="FILE.wav",
                       help="write the audio to this file (one voice, one candidate) instead of --output-dir")
    _add_synthesis_options(speak, "speak")
    speak.set_defaults(run=cmd_speak)

    read = verbs.add_parser("read", help="read a long text file aloud, chunk by chunk (resumable)",
                            formatter_class=raw, epilog=READ_EXAMPLES,
                            description="Split a text file into chunks and synthesise each into "
                                        "<output-dir>/<file stem>/<voice>/<index>.wav with a sidecar, then "
                                        "combined.wav; a manifest.json tracks progress.")
    read.add_argument("textfile", nargs="?", help="the UTF-8 text to read; '|' in it marks chunk boundaries")
    read.add_argument("--regenerate", default=None, metavar="CHUNKS",
                      help="redo these chunks even if finished, e.g. 3,5-7 (numbers as in the file names)")
    _add_synthesis_options(read, "read")
    read.set_defaults(run=cmd_read)

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

    bench = verbs.add_parser("bench", help="time each stage per option combination, beside upstream tortoise-tts",
                             formatter_class=raw, epilog=BENCH_EXAMPLES,
                             description="Time synthesis stage by stage for option combinations, each in its own "
                                         "process, on shared random weights; optionally upstream tortoise-tts "
                                         "3.0.0 too (same weights, same work). See benchmarks/README.md.")
    bench.add_argument("--quick", action="store_true",
                       help="tiny random models, 16 tokens, 4 samples, 1 repeat: a smoke test")
    bench.add_argument("--against-reference", action="store_true",
                       help="also run upstream tortoise-tts from .venv-ref (or $TORTOISE_LAB_REF_PYTHON)")
    bench.add_argument("--max-mel-tokens", type=int, default=None, metavar="N",
                       help="AR codes drawn per sample (random weights never stop early; default 48, quick 16)")
    bench.add_argument("-p", "--preset", default="ultra_fast", metavar="PRESET",
                       help="the preset the option configurations run (default: ultra_fast)")
    bench.add_argument("--repeats", type=int, default=None, metavar="N",
                       help="timed runs per configuration (default: 3; 1 with the KV cache off; 1 with --quick)")
    bench.add_argument("--configs", type=_config_list, default=None, metavar="A,B,...",
                       help="configurations to run, comma-separated (default: baseline,kv_cache,half,deepspeed,"
                            "compile,all,ultra_fast_int8_dpm; also: int8)")
    bench.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the records here")
    bench.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                       help="write bench.json, bench.md (table), bench.png (chart) and wavs/ here")
    bench.add_argument("--seed", type=int, default=3, help="synthesis seed, the same for every run (default: 3)")
    bench.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                       help="cache of the shared random weights (default: $TORTOISE_LAB_HOME/bench-weights)")
    bench.add_argument("--device", default=None, metavar="DEVICE", help="cpu or cuda (default: the best available)")
    bench.set_defaults(run=cmd_bench)

    compare = verbs.add_parser("compare", help="measure how two WAVs differ (log-mel distance, MCD, SNR)",
                               description="Log-mel distance, mel-cepstral distortion after DTW, duration "
                                           "difference and SNR between two recordings of speech.")
    compare.add_argument("a", help="the reference WAV")
    compare.add_argument("b", help="the WAV compared with it")
    compare.add_argument("--plot", default=None, metavar="PNG", help="save both spectrograms and their difference")
    compare.add_argument("--json", default=None, metavar="PATH", help="also write the measures as JSON")
    compare.set_defaults(run=cmd_compare)

    from tortoise_lab.cli_voices import add_voices_parser

    add_voices_parser(verbs)

    train = verbs.add_parser("train", add_help=False,
                             help="train the embedded model (the same as `python -m tortoise_lab.train`; try --help)")
    train.add_argument("train_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # main() hands these on
    return parser


def verb_parsers(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Each verb's own parser, in the order ``--help`` lists them (the notebooks show their help)."""
    parser = parser or build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


# -------------------------------------------------------------------------------------------------- main


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
        return _fail(error.message, error.code)
    except KeyboardInterrupt:
        return _fail("interrupted; finished outputs are complete and kept (nothing half-written), and running the "
                     "same command again resumes.", EXIT_INTERRUPTED)
    except Exception as error:
        explained = _explain(error)
        if explained is None:
            raise
        return _fail(explained[1], explained[0])


if __name__ == "__main__":
    sys.exit(main())
