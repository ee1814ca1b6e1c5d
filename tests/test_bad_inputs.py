"""Bad input to every verb ends in one sentence on stderr, the right exit code, and no file written.

Exit codes as ``tortoise_lab/cli/__init__.py`` defines them: 2 for bad input (argparse's usage errors too), 3 for
something to fetch. Each case runs ``cli.main`` in-process in an empty folder, with only the voices made here
visible and a data folder of its own (``$TORTOISE_LAB_HOME``: the tokenizer copied in, so nothing reaches the user's
cache), and compares the folder's files before and after. Every case fails before any synthesis, most before a
model is built; the benchmark and the weights download are replaced by a failing stand-in, so a case that got past
its check would say so instead of running for minutes.

Clip problems are tested through every verb in ``tests/test_voice_checks.py``; here only a few, in new places (the
second of several voices, a blend, a recording among good ones, compare's inputs).

What is accepted, decided here: a seed is a whole number from 0 to 2**31 - 2 (``config.SEED_RANGE``; negative and
larger ones are refused when parsed, as ``voices match --seeds`` already did); float flags refuse nan and inf;
``--length-penalty`` takes any finite number (sampling never uses it); ``--text-split 5,5`` is allowed; a ``-V``
folder must exist; an output path blocked by a file is bad input (exit 2), found before any work.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tortoise_lab import assets, cli
from tortoise_lab.cli import voices as cli_voices
from tortoise_lab.voices import PROJECT_VOICES
from tortoise_lab.voices import library as voices

pytestmark = pytest.mark.usefixtures("one_thread")

# The smallest synthesis settings, for the cases that get as far as building a model.
SMALL = ["--tiny", "-q", "-p", "ultra_fast", "--max-mel-tokens", "8", "--num-autoregressive-samples", "1",
         "--diffusion-iterations", "2"]


def speak(*extra: str, text: str = "Hello there.") -> list[str]:
    return ["speak", text, *SMALL, *extra]  # flags after SMALL win


def read(*extra: str, file: str = "story.txt") -> list[str]:
    return ["read", file, *SMALL, *extra]


def match(*extra: str, name: str = "alpha", text: str = "Hello there.") -> list[str]:
    return ["voices", "match", name, "--tiny", "-q", "--text", text, "--seeds", "1", "--max-mel-tokens", "8",
            "--num-autoregressive-samples", "1", "--diffusion-iterations", "2", *extra]


def prepare(*sources: str, name: str = "me", voices_dir: str = "new-voices") -> list[str]:
    return ["voices", "prepare", *sources, name, "--voices-dir", voices_dir]


# Every numeric tuning flag of speak and read, with a value out of its range and what the sentence says.
OUT_OF_RANGE = [
    ("--num-autoregressive-samples", "0", "at least 1"),
    ("--temperature", "0", "greater than 0"),
    ("--temperature", "inf", "finite number"),
    ("--length-penalty", "nan", "finite number"),  # any finite value is fine: beam search only
    ("--repetition-penalty", "-1", "greater than 0"),
    ("--top-p", "1.5", "(0, 1]"),
    ("--top-p", "nan", "finite number"),
    ("--max-mel-tokens", "0", "at least 1"),
    ("--max-mel-tokens", "100000", "at most"),  # beyond the tiny model's limit
    ("--cvvp-amount", "1.5", "between 0 and 1"),
    ("--diffusion-iterations", "0", "between 1 and 4000"),
    ("--diffusion-iterations", "4001", "between 1 and 4000"),
    ("--cond-free-k", "-1", "0 or more"),
    ("--cond-free-k", "inf", "finite number"),
    ("--diffusion-temperature", "-0.5", "0 or more"),
    ("--candidates", "0", "between 1 and --num-autoregressive-samples"),
    ("--candidates", "2", "between 1 and --num-autoregressive-samples"),  # SMALL draws 1 sample
    ("--batch-size", "0", "at least 1"),
    ("--seed", "-1", "from 0 to 2147483646"),
    ("--seed", "2147483647", "from 0 to 2147483646"),
    ("--seed", "1.5", "whole number"),
]

CASES = [  # (id, arguments, exit code, words the one sentence contains)
    # ------------------------------------------------------------------ speak: text
    ("speak empty", speak(text=""), 2, ["empty"]),
    ("speak whitespace", speak(text=" \t "), 2, ["empty"]),
    ("speak punctuation only", speak(text="... !?"), 2, ["nothing pronounceable"]),
    ("speak emoji only", speak(text="\U0001f600"), 2, ["nothing pronounceable"]),
    ("speak unclosed [", speak(text="[whisper Hello."), 2, ["Unbalanced brackets", "never closed"]),
    ("speak stray ]", speak(text="Hello] there."), 2, ["Unbalanced brackets", "']' with no '['"]),
    ("speak --text-file latin-1", ["speak", "--text-file", "latin1.txt", *SMALL], 2, ["latin1.txt is not UTF-8"]),
    ("speak --text-file folder", ["speak", "--text-file", "adir", *SMALL], 2, ["cannot read adir"]),
    ("speak --text-file missing", ["speak", "--text-file", "missing.txt", *SMALL], 2, ["no text file at missing.txt"]),
    # ------------------------------------------------------------------ speak: voices
    ("speak unknown voice", speak("-v", "nobody"), 2, ["unknown voice 'nobody'", "alpha, beta"]),
    ("speak unknown among several", speak("-v", "alpha,nobody"), 2, ["unknown voice 'nobody'"]),
    ("speak blend a&", speak("-v", "alpha&"), 2, ["empty part", "a&b"]),
    ("speak blend a:x&b", speak("-v", "alpha:x&beta"), 2, ["'x'", "not a number"]),
    ("speak blend a:0.5&b", speak("-v", "alpha:0.5&beta"), 2, ["a weight, or none"]),
    ("speak blend random&a", speak("-v", "random&alpha"), 2, ["random voice cannot be blended"]),
    ("speak -v ''", speak("-v", ""), 2, ["no voice given"]),
    ("speak -V missing", speak("-v", "alpha", "-V", "no-such-dir"), 2, ["no voices folder at no-such-dir"]),
    ("speak -V a file", speak("-v", "alpha", "-V", "afile"), 2, ["no voices folder at afile"]),
    # ------------------------------------------------------------------ speak: clips (more in test_voice_checks)
    ("speak NaN clip, second voice", speak("-v", "alpha,nanvoice"), 2, ["nanvoice", "is non-finite"]),
    ("speak one-sample clip in a blend", speak("-v", "alpha&onesample"), 2, ["onesample", "is too short"]),
    # ------------------------------------------------------------------ speak: flags
    *[(f"speak {flag} {value}", speak(flag, value), 2, [flag, says]) for flag, value, says in OUT_OF_RANGE],
    ("speak --text-split 300,200", speak("--text-split", "300,200"), 2, ["--text-split", "desired <= max"]),
    ("speak --text-split abc", speak("--text-split", "abc"), 2, ["--text-split", "like 200,300"]),
    ("speak --text-split 0,10", speak("--text-split", "0,10"), 2, ["--text-split", "0 < desired"]),
    ("speak --device tpu", speak("--device", "tpu"), 2, ["Unknown device 'tpu'", "cpu"]),
    ("speak --device cuda:x", speak("--device", "cuda:x"), 2, ["Unknown device 'cuda:x'"]),
    ("speak --sampler euler", speak("--sampler", "euler"), 2, ["--sampler", "'euler'", "dpm++2m"]),
    ("speak -p turbo", speak("-p", "turbo"), 2, ["Unknown preset 'turbo'", "ultra_fast"]),
    ("speak --model nope", speak("--model", "nope"), 2, ["--model", "'nope'"]),
    ("speak --no-such-flag", speak("--no-such-flag"), 2, ["unrecognized arguments: --no-such-flag"]),
    # ------------------------------------------------------------------ speak: paths
    ("speak -O is a file", speak("-O", "afile"), 2, ["-O/--output-dir afile", "afile is a file"]),
    ("speak -O under a file", speak("-O", "afile/out"), 2, ["afile/out", "afile is a file"]),
    ("speak -o under a file", speak("-o", "afile/x.wav"), 2, ["-o/--output afile/x.wav", "afile is a file"]),
    ("speak -o is a folder", speak("-o", "folder.wav"), 2, ["folder.wav is a folder"]),
    ("speak -o .mp4", speak("-o", "x.mp4"), 2, ["Cannot write audio to x.mp4", ".wav"]),
    ("speak -o .raw", speak("-o", "x.raw"), 2, ["Cannot write audio to x.raw"]),  # libsndfile lists RAW
    ("speak -o no suffix", speak("-o", "output"), 2, ["Cannot write audio to output"]),
    # ------------------------------------------------------------------ read
    ("read empty file", read(file="empty.txt"), 2, ["empty.txt is empty"]),
    ("read whitespace file", read(file="blank.txt"), 2, ["blank.txt is empty"]),
    ("read punctuation only", read(file="dots.txt"), 2, ["nothing pronounceable"]),
    ("read a chunk of punctuation", read(file="dotchunk.txt"), 2, ["'...'", "nothing pronounceable"]),
    ("read unbalanced [", read(file="brackets.txt"), 2, ["Unbalanced brackets"]),
    ("read latin-1", read(file="latin1.txt"), 2, ["latin1.txt is not UTF-8"]),
    ("read a folder", read(file="adir"), 2, ["cannot read adir"]),
    ("read missing", read(file="missing.txt"), 2, ["no text file at missing.txt"]),
    ("read unknown voice", read("-v", "nobody"), 2, ["unknown voice 'nobody'"]),
    ("read blend a&", read("-v", "alpha&"), 2, ["empty part"]),
    ("read not-audio clip, second voice", read("-v", "alpha,notaudio"), 2, ["notaudio", "is unreadable"]),
    ("read --regenerate abc", read("--regenerate", "abc"), 2, ["--regenerate", "'abc'"]),
    ("read --regenerate 9", read("--regenerate", "9"), 2, ["chunk 9", "0 to 1"]),
    ("read --top-p 0", read("--top-p", "0"), 2, ["--top-p must be in (0, 1]"]),
    ("read --seed -1", read("--seed", "-1"), 2, ["--seed", "from 0 to"]),
    ("read --text-split abc", read("--text-split", "abc"), 2, ["--text-split"]),
    ("read -O is a file", read("-O", "afile"), 2, ["-O/--output-dir afile", "afile is a file"]),
    ("read -o", read("-o", "x.wav"), 2, ["unrecognized arguments: -o"]),
    # ------------------------------------------------------------------ voices list
    ("voices list -V missing", ["voices", "list", "-V", "no-such-dir"], 2, ["no voices folder at no-such-dir"]),
    ("voices no action", ["voices"], 2, ["required: ACTION"]),
    ("voices bogus action", ["voices", "bogus"], 2, ["'bogus'", "list"]),
    # ------------------------------------------------------------------ voices prepare
    ("prepare missing source", prepare("missing.wav"), 2, ["No file or folder at missing.wav"]),
    ("prepare text as .wav", prepare("text.wav"), 2, ["No usable speech", "text.wav: unreadable"]),
    ("prepare NaN recording", prepare("nan.wav"), 2, ["No usable speech", "non-finite"]),
    ("prepare folder without audio", prepare("adir"), 2, ["No audio files found in adir"]),
    ("prepare name a&b", prepare("speech.wav", name="a&b"), 2, ["Voice name 'a&b' is not allowed"]),
    ("prepare name random", prepare("speech.wav", name="random"), 2, ["Voice name 'random' is not allowed"]),
    ("prepare --voices-dir is a file", prepare("speech.wav", voices_dir="afile"), 2, ["--voices-dir afile",
                                                                                      "afile is a file"]),
    ("prepare --voices-dir under a file", prepare("speech.wav", voices_dir="afile/v"), 2, ["afile is a file"]),
    # ------------------------------------------------------------------ voices match
    ("match unknown voice", match(name="nobody"), 2, ["Unknown voice 'nobody'"]),
    ("match blend a&", match(name="alpha&"), 2, ["empty part"]),
    ("match random voice", match(name="random"), 2, ["no clips to compare against"]),
    ("match NaN clip", match(name="nanvoice"), 2, ["nanvoice", "is non-finite"]),
    ("match --seeds abc", match("--seeds", "abc"), 2, ["Cannot read seeds 'abc'"]),
    ("match --seeds -1", match("--seeds", "-1"), 2, ["Cannot read seeds '-1'"]),
    ("match --seeds 5-1", match("--seeds", "5-1"), 2, ["between 1 and 10000"]),
    ("match empty text", match(text=""), 2, ["empty"]),
    ("match punctuation only", match(text="..."), 2, ["nothing pronounceable"]),
    ("match unbalanced [", match(text="[Hello"), 2, ["Unbalanced brackets"]),
    ("match -p turbo", match("-p", "turbo"), 2, ["Unknown preset 'turbo'"]),
    ("match --max-mel-tokens 0", match("--max-mel-tokens", "0"), 2, ["--max-mel-tokens must be at least 1"]),
    ("match --diffusion-iterations 0", match("--diffusion-iterations", "0"), 2, ["--diffusion-iterations"]),
    ("match -V missing", match("-V", "no-such-dir"), 2, ["no voices folder at no-such-dir"]),
    ("match -O is a file", match("-O", "afile"), 2, ["afile/alpha", "afile is a file"]),
    ("match without --text", ["voices", "match", "alpha", "--tiny"], 2, ["required: --text"]),
    # ------------------------------------------------------------------ compare
    ("compare text as .wav", ["compare", "a.wav", "text.wav"], 2, ["Could not read text.wav as audio"]),
    ("compare missing", ["compare", "a.wav", "missing.wav"], 2, ["No audio file at missing.wav"]),
    ("compare a folder", ["compare", "adir", "a.wav"], 2, ["No audio file at adir"]),
    ("compare empty", ["compare", "a.wav", "empty.wav"], 2, ["empty.wav holds no audio samples"]),
    ("compare NaN", ["compare", "a.wav", "nan.wav"], 2, ["nan.wav cannot be compared", "NaN"]),
    ("compare one sample", ["compare", "one.wav", "a.wav"], 2, ["one.wav is too short to compare", "has 1"]),
    ("compare one file", ["compare", "a.wav"], 2, ["required: b"]),
    ("compare --json is a folder", ["compare", "a.wav", "b.wav", "--json", "adir"], 2, ["--json adir",
                                                                                     "adir is a folder"]),
    ("compare --json under a file", ["compare", "a.wav", "b.wav", "--json", "afile/m.json"], 2,
     ["--json afile/m.json", "afile is a file"]),
    ("compare --plot under a file", ["compare", "a.wav", "b.wav", "--plot", "afile/p.png"], 2, ["afile is a file"]),
    ("compare --plot .txt", ["compare", "a.wav", "b.wav", "--plot", "p.txt"], 2, ["plot as p.txt", ".png"]),
    # ------------------------------------------------------------------ assets (3: something to fetch)
    ("assets --sdist missing", ["assets", "--sdist", "missing.tar.gz"], 3, ["missing.tar.gz does not exist"]),
    ("assets --sdist not the archive", ["assets", "--sdist", "text.wav"], 3, ["text.wav has sha256", "pinned"]),
    ("assets --bogus", ["assets", "--bogus"], 2, ["unrecognized arguments: --bogus"]),
    # ------------------------------------------------------------------ download
    ("download --files nonsense", ["download", "--files", "nonsense"], 2, ["--files", "'nonsense'", "cvvp.pth"]),
    ("download --models-dir is a file", ["download", "--models-dir", "afile"], 2, ["--models-dir afile",
                                                                                   "afile is a file"]),
    ("download --models-dir under a file", ["download", "--models-dir", "afile/m"], 2, ["afile is a file"]),
    # ------------------------------------------------------------------ bench
    ("bench --configs nonsense", ["bench", "--configs", "nonsense"], 2, ["Unknown config 'nonsense'", "kv_cache"]),
    ("bench --configs ,", ["bench", "--configs", ","], 2, ["--configs", "configuration names"]),
    ("bench --repeats 0", ["bench", "--repeats", "0"], 2, ["--repeats must be at least 1"]),
    ("bench --repeats -1", ["bench", "--repeats", "-1"], 2, ["--repeats must be at least 1"]),
    ("bench --max-mel-tokens 0", ["bench", "--quick", "--max-mel-tokens", "0"], 2, ["--max-mel-tokens", "between 1"]),
    ("bench -p turbo", ["bench", "--quick", "-p", "turbo"], 2, ["Unknown preset 'turbo'"]),
    ("bench --device tpu", ["bench", "--quick", "--device", "tpu"], 2, ["Unknown device 'tpu'"]),
    ("bench --seed -1", ["bench", "--quick", "--seed", "-1"], 2, ["--seed", "from 0 to"]),
    ("bench --out-dir is a file", ["bench", "--quick", "--out-dir", "afile"], 2, ["--out-dir afile", "is a file"]),
    ("bench --json is a folder", ["bench", "--quick", "--json", "adir"], 2, ["--json adir", "adir is a folder"]),
    ("bench --weights-dir under a file", ["bench", "--quick", "--weights-dir", "afile/w"], 2, ["afile is a file"]),
    # ------------------------------------------------------------------ train (its own parsers, one sentence too)
    ("train --bogus", ["train", "--bogus"], 2, ["unrecognized arguments: --bogus", "--help"]),
    ("train --steps abc", ["train", "--steps", "abc"], 2, ["--steps", "invalid int value: 'abc'"]),
    ("train --export-fp16=3", ["train", "--export-fp16=3"], 2, ["--export-fp16"]),
    ("train decoders --bogus", ["train", "decoders", "--bogus"], 2, ["train decoders", "unrecognized arguments"]),
]

if not torch.cuda.is_available():  # where there is a GPU, --device cuda is no mistake
    CASES += [("speak --device cuda", speak("--device", "cuda"), 2, ["cuda requested", "--device cpu"]),
              ("read --device cuda", read("--device", "cuda"), 2, ["cuda requested"]),
              ("bench --device cuda", ["bench", "--quick", "--device", "cuda"], 2, ["cuda requested"])]


# ------------------------------------------------------------------------------------------------ fixtures


def _tone(path: Path, hz: float, seconds: float = 1.0, rate: int = 24_000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), (0.3 * np.sin(2 * math.pi * hz * t)).astype(np.float32), rate)


def _write_float(path: Path, samples: np.ndarray, rate: int = 22_050) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples.astype(np.float32), rate, subtype="FLOAT")


@pytest.fixture(scope="module")
def voices_root(tmp_path_factory) -> Path:
    """Voices for the cases: alpha and beta (tones) and three with one unusable clip beside a good one."""
    root = tmp_path_factory.mktemp("voices")
    _tone(root / "alpha" / "a.wav", 220, rate=22_050)
    _tone(root / "beta" / "b.wav", 330, rate=22_050)
    for name in ("notaudio", "nanvoice", "onesample"):
        _tone(root / name / "1.wav", 275, rate=22_050)
    (root / "notaudio" / "2.wav").write_text("These are words, not samples.\n")
    nan = np.full(22_050, 0.1)
    nan[100:200] = np.nan
    _write_float(root / "nanvoice" / "2.wav", nan)
    _write_float(root / "onesample" / "2.wav", np.full(1, 0.5))
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A $TORTOISE_LAB_HOME with the official tokenizer and mel norms (copied), and nothing else."""
    folder = tmp_path_factory.mktemp("home")
    (folder / "assets").mkdir()
    for name in ("tokenizer.json", "mel_norms.pth"):
        shutil.copy(assets.data_file(name, fetch=False), folder / "assets" / name)
    return folder


@pytest.fixture(autouse=True)
def workspace(voices_root, home, tmp_path, monkeypatch) -> Path:
    """The current folder for a case: the input files the cases name, and nothing else."""
    monkeypatch.setattr(voices, "voice_dirs", lambda extra=None: [Path(p) for p in extra or []] + [voices_root])
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(home))
    monkeypatch.setattr(cli_voices, "user_voices_dir", lambda: home / "voices")
    monkeypatch.setattr("tortoise_lab.tools.bench.runner.ensure_weights",
                        lambda *a, **k: pytest.fail("the benchmark got past its checks and started"))
    monkeypatch.setattr(assets, "download_weights", lambda *a, **k: pytest.fail("the download started"))
    monkeypatch.chdir(tmp_path)
    texts = {"story.txt": "Hello there. | Goodbye now.", "empty.txt": "", "blank.txt": " \n\t\n", "dots.txt": "...",
             "dotchunk.txt": "Hello there. | ... | Goodbye now.", "brackets.txt": "Fine here. | [Not closed."}
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 ol\xe9.".encode("latin-1"))
    (tmp_path / "text.wav").write_text("This is text, whatever its name says.\n")
    (tmp_path / "afile").write_text("a regular file where a folder is wanted\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "folder.wav").mkdir()
    _tone(tmp_path / "a.wav", 220)
    _tone(tmp_path / "b.wav", 330)
    shutil.copy(PROJECT_VOICES / "espeak_en_us" / "01.wav", tmp_path / "speech.wav")  # espeak-ng speech, 4.6 s
    _write_float(tmp_path / "nan.wav", np.full(24_000, np.nan), 24_000)
    _write_float(tmp_path / "one.wav", np.full(1, 0.5), 24_000)
    _write_float(tmp_path / "empty.wav", np.zeros(0), 24_000)
    return tmp_path


def _files(*folders: Path) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob("*"))


def run(argv: list[str]) -> int:
    return cli.main(argv)


def one_sentence(err: str) -> tuple[str, int]:
    """The only line on stderr, and how many sentence breaks it has (STYLE's "Unknown x. Available: ..." is one
    sentence); asserts it is one line, ends like a sentence, and is no traceback or usage block."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "usage:" not in err, err
    line = lines[0]
    assert re.match(r"^(tortoise-lab|python -m tortoise_lab\.train)[^:]*: \S.*[.!?][\"')]?$", line), line
    return line, len(re.findall(r"[.!?] (?!Available:)[A-Z]", line.split(": ", 1)[1]))


# ------------------------------------------------------------------------------------------------ the test


@pytest.mark.parametrize("argv, code, phrases", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_sentence_with_its_exit_code_and_writes_nothing(argv, code, phrases, request, capsys,
                                                                         workspace, home):
    before = _files(workspace, home)
    rc = run(argv)
    err = capsys.readouterr().err
    assert rc == code, err
    line, breaks = one_sentence(err)
    for phrase in phrases:
        assert phrase in line, line
    assert _files(workspace, home) == before
    assert breaks == 0, line


def test_a_file_that_is_not_audio_among_recordings_is_reported_and_skipped(capsys, workspace):
    recordings = workspace / "recordings"
    recordings.mkdir()
    shutil.copy(workspace / "speech.wav", recordings / "good.wav")
    shutil.copy(workspace / "text.wav", recordings / "bad.wav")
    assert run(prepare("recordings", voices_dir="made")) == 0
    out = capsys.readouterr().out
    assert "dropped bad.wav: unreadable" in out
    assert sorted(p.name for p in (workspace / "made" / "me").iterdir()) == ["01.wav", "prepare-report.json",
                                                                              "prepare-report.md"]
    assert "bad.wav" in (workspace / "made" / "me" / "prepare-report.md").read_text()


def test_every_numeric_flag_has_an_out_of_range_case():
    from tortoise_lab.cli.common import TUNING_OPTIONS

    numeric = {flag for flag, kind, *_ in TUNING_OPTIONS} | {"--candidates", "--batch-size", "--seed"}
    assert numeric == {flag for flag, _, _ in OUT_OF_RANGE}
