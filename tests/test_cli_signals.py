"""The command line under real pipes and real signals (issue 13, items 3 and 5).

A reader of standard output that goes away (``| head``) ends a run silently with 141, as it ends any Unix tool.
SIGINT and SIGTERM during ``speak``, ``read`` and ``voices prepare`` end the run with one sentence and 130 or 143,
leave no scratch file and no half-written WAV, JSON or voice folder, and ``read`` resumes afterwards to the bytes of
an uninterrupted run. The commands run as subprocesses (``python -m tortoise_lab``) and are signalled once they are
at work; the last tests send a signal from inside an in-process run, at the exact step that must not be split.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tortoise_lab import cli, files
from tortoise_lab.cli import voices as voices_cli
from tortoise_lab.files import read_json

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # one_thread: for the in-process runs

CLI = [sys.executable, "-m", "tortoise_lab"]
# One torch thread: tiny models gain nothing from a second on a shared 2-core machine, and read's resumed audio must
# match an uninterrupted run byte for byte (the same thread count in every run).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
WAIT_S = 90  # the longest any wait here may take (a run is a few seconds; a busy machine makes it slower)
TINY_MESSAGE = "Using random tiny weights"
# Work enough to be interrupted in the middle: about a second per voice or chunk on 2 CPU cores.
SLOW_TINY = ["--tiny", "-q", "-p", "ultra_fast", "--num-autoregressive-samples", "2", "--max-mel-tokens", "24",
             "--diffusion-iterations", "24"]
STORY = "The first chunk is here. | A second one follows. | Then comes a third. | And the fourth ends it. | A fifth."
SIGNALS = [(signal.SIGINT, cli.EXIT_INTERRUPTED, "interrupted"),
           (signal.SIGTERM, cli.EXIT_TERMINATED, "stopped by SIGTERM")]
SIGNAL_IDS = ["SIGINT", "SIGTERM"]


# ----------------------------------------------------------------------------------------------------- helpers


def _pipe(argv: list[str], reader: str, cwd: Path, unbuffered: bool = True) -> subprocess.CompletedProcess:
    """``tortoise-lab ARGV | READER`` in bash with pipefail, so the status is the CLI's when the reader succeeds."""
    env = dict(ENV)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    script = f"set -o pipefail; {shlex.join(CLI + argv)} | {reader}"
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=WAIT_S)


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    """The CLI in the background, its output in files (nothing to drain while the test waits)."""
    return subprocess.Popen(CLI + argv, cwd=cwd, env=ENV, stdout=open(cwd / "stdout.txt", "w"),
                            stderr=open(cwd / "stderr.txt", "w"))


def _wait_until(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}; give it more work")
        if time.monotonic() > deadline:
            pytest.fail(f"no sign of {what} after {WAIT_S} s")
        time.sleep(0.005)


def _handlers_installed(pid: int) -> bool:
    """Whether the run's SIGTERM handler is in place (the kernel's SigCgt mask; Python itself never catches SIGTERM),
    i.e. the CLI is past its imports and inside ``main``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def _signal_and_wait(proc: subprocess.Popen, signum: int, cwd: Path) -> tuple[int, str]:
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the command did not end within {WAIT_S} s of {signal.Signals(signum).name}")
    return code, (cwd / "stderr.txt").read_text()


def _assert_one_sentence(err: str, code: int, expected_code: int, opening: str) -> None:
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"tortoise-lab: {opening}; ") and lines[0].endswith("."), lines[0]


def _assert_only_complete_outputs(folder: Path) -> None:
    """No scratch left (all are hidden: .NAME.xxxx.part, .building, .replaced) and every WAV whole, beside a valid
    sidecar that names it and gives its length."""
    assert not [p.name for p in folder.rglob(".*")]
    for path in folder.rglob("*.json"):
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict), path
    for wav in folder.rglob("*.wav"):
        info = soundfile.info(str(wav))
        sidecar = read_json(wav.with_suffix(".json"))
        assert sidecar is not None and sidecar["wav"] == wav.name, wav
        assert abs(info.frames / info.samplerate - sidecar["duration_s"]) < 1e-3, wav
        assert soundfile.read(str(wav))[0].shape == (info.frames,), wav


def _tone(path: Path, hz: float, seconds: float = 2.0, rate: int = 22_050) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), 0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate), rate)


@pytest.fixture(scope="module")
def tone_voices(tmp_path_factory) -> Path:
    """A -V folder with three tone voices, so speak has three outputs to make in turn."""
    root = tmp_path_factory.mktemp("tone-voices")
    for name, hz in (("alpha", 220), ("beta", 330), ("gamma", 440)):
        _tone(root / name / "a.wav", hz)
    return root


SENTENCES = ["The quick brown fox jumps over the lazy dog, and then it runs far away into the green forest.",
             "A second sentence follows here, after a short pause, with a few more words in it.",
             "Then a third sentence ends this long recording of speech, made for the voice preparation test.",
             "One more line of speech, to make the recording long enough to be split into clips."]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """Twelve espeak-ng recordings of about 20 s: preparing them takes 3-4 s on two idle cores, long enough to be
    interrupted at work (measured: handlers installed about 3 s after the start, the voice written 4 s later)."""
    if subprocess.run(["which", "espeak-ng"], capture_output=True).returncode != 0:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("recordings")
    for number in range(12):
        text = f"Recording number {number + 1}. " + " ".join(SENTENCES[number % 4:] + SENTENCES[:number % 4])
        subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(root / f"take{number:02d}.wav"), text],
                       check=True, timeout=WAIT_S)
    return root


# ------------------------------------------------------------------------------------------- a closed pipe


# (arguments, how the first line starts, unbuffered): with PYTHONUNBUFFERED=1 the write that finds the pipe closed is
# one inside the run; without it, the flush at the end of the run. Each listing takes one of the two (they share the
# code path, and every run costs the CLI's start-up).
LISTINGS = [(["speak", "-l"], "voice ", True), (["voices", "list"], "voice ", False),
            (["read", "-l"], "voice ", True), (["--help"], "usage: tortoise-lab ", False)]


@pytest.mark.parametrize("argv, first, unbuffered", LISTINGS,
                         ids=[" ".join(a) + (" unbuffered" if u else "") for a, _, u in LISTINGS])
def test_a_closed_pipe_ends_a_listing_quietly(argv, first, unbuffered, tmp_path):
    # The reader is gone before the first line (`true` reads nothing): the first write finds the pipe closed.
    done = _pipe(argv, "true", tmp_path, unbuffered)
    assert (done.returncode, done.stdout, done.stderr) == (cli.EXIT_STDOUT_CLOSED, "", ""), done.stderr
    # `head -1` leaves after the first line: whether the rest was written before it left decides 0 or 141, as for
    # any tool (`printf 'a\nb\n' | head -1` is 0); either way nothing is said.
    done = _pipe(argv, "head -1", tmp_path, unbuffered)
    assert done.returncode in (0, cli.EXIT_STDOUT_CLOSED) and done.stderr == "", done.stderr
    assert done.stdout.startswith(first) and done.stdout.count("\n") == 1


SPEAK = ["speak", "--tiny", "--seed", "3", "--max-mel-tokens", "8", "--num-autoregressive-samples", "1",
         "--diffusion-iterations", "2", "-p", "ultra_fast", "-O", "out", "Hello there."]


def test_a_closed_pipe_ends_speak_at_its_first_line(tmp_path):
    # No reader at all: the first line (before any synthesis) ends the run, as SIGPIPE ends a Unix tool.
    done = _pipe(SPEAK, "true", tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (cli.EXIT_STDOUT_CLOSED, "", ""), done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
def test_a_closed_pipe_ends_speak_quietly_and_keeps_what_was_finished(unbuffered, tmp_path):
    # head keeps the first line; the WAV is written before a later line finds the pipe closed (unbuffered: the
    # "wrote" line, in the run; buffered: the flush at its end).
    done = _pipe([*SPEAK, "-q"], "head -1", tmp_path, unbuffered)
    assert done.returncode == cli.EXIT_STDOUT_CLOSED, done.stderr
    assert done.stdout.startswith(TINY_MESSAGE) and done.stdout.count("\n") == 1
    assert all(line.startswith("note: ") for line in done.stderr.splitlines()), done.stderr  # nothing else
    assert (tmp_path / "out" / "random.wav").is_file()
    _assert_only_complete_outputs(tmp_path / "out")


def test_a_broken_pipe_that_is_not_stdout_stays_an_error(capsys, monkeypatch):
    """A subprocess's pipe breaking is a failure to report, not the user's `| head`."""

    def feed_a_program_that_left(args):
        program = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
        program.wait(timeout=WAIT_S)
        try:
            program.stdin.write(b"x" * 1_000_000)
            program.stdin.flush()
        finally:
            try:
                program.stdin.close()
            except BrokenPipeError:
                pass

    monkeypatch.setattr(voices_cli, "cmd_voices_list", feed_a_program_that_left)
    assert cli.main(["voices", "list"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("tortoise-lab: could not write the output") and "Broken pipe" in err
    assert len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------------------ signals


@pytest.mark.parametrize("signum, code, opening", SIGNALS, ids=SIGNAL_IDS)
def test_a_signal_during_speak_keeps_finished_voices_and_leaves_no_partial_file(signum, code, opening, tmp_path,
                                                                               tone_voices):
    out = tmp_path / "out"
    proc = _start(["speak", "Hello there, this is a test.", *SLOW_TINY, "--seed", "5", "-V", str(tone_voices),
                   "-v", "alpha,beta,gamma", "-O", str(out)], tmp_path)
    try:
        _wait_until(lambda: (out / "alpha.wav").exists(), proc, "the first voice's WAV")  # now making beta
        exit_code, err = _signal_and_wait(proc, signum, tmp_path)
    finally:
        proc.kill()
    _assert_one_sentence(err, exit_code, code, opening)
    _assert_only_complete_outputs(out)
    assert (out / "alpha.json").is_file() and not (out / "gamma.wav").exists()


@pytest.fixture(scope="module")
def uninterrupted_read(tmp_path_factory) -> bytes:
    """combined.wav of the story read in one go."""
    cwd = tmp_path_factory.mktemp("read-straight")
    (cwd / "story.txt").write_text(STORY, encoding="utf-8")
    done = subprocess.run(CLI + ["read", "story.txt", *SLOW_TINY, "--seed", "7", "-O", "out"], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    return (cwd / "out" / "story" / "random" / "combined.wav").read_bytes()


@pytest.mark.parametrize("signum, code, opening", SIGNALS, ids=SIGNAL_IDS)
def test_a_signal_during_read_leaves_finished_chunks_and_the_rerun_resumes(signum, code, opening, tmp_path,
                                                                          uninterrupted_read):
    (tmp_path / "story.txt").write_text(STORY, encoding="utf-8")
    folder = tmp_path / "out" / "story" / "random"
    argv = ["read", "story.txt", *SLOW_TINY, "--seed", "7", "-O", "out"]
    proc = _start(argv, tmp_path)
    try:
        _wait_until(lambda: (folder / "0.wav").exists(), proc, "chunk 0's WAV")  # now making chunk 1
        exit_code, err = _signal_and_wait(proc, signum, tmp_path)
    finally:
        proc.kill()
    _assert_one_sentence(err, exit_code, code, opening)
    _assert_only_complete_outputs(tmp_path / "out")
    # The manifest may not say chunk 0 is done yet (the signal can land just before it is rewritten): the rerun
    # goes by the chunk's sidecar.
    assert (folder / "0.json").is_file() and (folder / "manifest.json").is_file()
    assert not (folder / "combined.wav").exists()

    done = subprocess.run(CLI + argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    made, kept = map(int, re.search(r"\((\d+) synthesised, (\d+) kept\)", done.stdout).groups())
    assert made + kept == 5 and kept >= 1, done.stdout  # chunk 0 at least was kept, not made again
    assert (folder / "combined.wav").read_bytes() == uninterrupted_read
    _assert_only_complete_outputs(tmp_path / "out")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see the handlers are set")
@pytest.mark.parametrize("signum, code, opening", SIGNALS, ids=SIGNAL_IDS)
def test_a_signal_during_voice_preparation_leaves_no_voice(signum, code, opening, tmp_path, recordings):
    voices_dir = tmp_path / "voices"
    proc = _start(["voices", "prepare", str(recordings), "newvoice", "--voices-dir", str(voices_dir)], tmp_path)
    try:
        # Preparation prints nothing until it is done: wait for the handlers, then a second into the recordings.
        _wait_until(lambda: _handlers_installed(proc.pid), proc, "the signal handlers")
        time.sleep(1.0)
        assert proc.poll() is None, "preparation finished within a second; give it more recordings"
        exit_code, err = _signal_and_wait(proc, signum, tmp_path)
    finally:
        proc.kill()
    _assert_one_sentence(err, exit_code, code, opening)
    assert not voices_dir.exists() or not any(voices_dir.iterdir())  # no voice, no hidden .newvoice.*.building


# ------------------------------------------------------------------- a signal at the step that must not split


def _signal_self_after(monkeypatch, module, name: str, when, signum: int = signal.SIGTERM) -> None:
    """Make ``module.name`` (os.replace, os.rename...) send ``signum`` to this process right after a call for which
    ``when(*args)`` is true; the run's handler then raises at the next Python step."""
    real = getattr(module, name)

    def and_signal(*args, **kwargs):
        result = real(*args, **kwargs)
        if when(*args):
            os.kill(os.getpid(), signum)
        return result

    monkeypatch.setattr(module, name, and_signal)


def test_a_signal_between_a_wav_and_its_sidecar_waits_for_both(capsys, tmp_path, monkeypatch):
    _signal_self_after(monkeypatch, files.os, "replace", lambda source, target: str(target).endswith(".wav"))
    rc = cli.main(["speak", "Hi.", "--tiny", "-q", "-p", "ultra_fast", "--max-mel-tokens", "8",
                   "--num-autoregressive-samples", "1", "--diffusion-iterations", "2", "-O", str(tmp_path / "out")])
    _assert_one_sentence(capsys.readouterr().err, rc, cli.EXIT_TERMINATED, "stopped by SIGTERM")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["random.json", "random.wav"]
    _assert_only_complete_outputs(tmp_path / "out")


@pytest.fixture(scope="module")
def one_recording(tmp_path_factory) -> Path:
    if subprocess.run(["which", "espeak-ng"], capture_output=True).returncode != 0:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("one-recording") / "take.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(path), " ".join(SENTENCES)], check=True,
                   timeout=WAIT_S)
    return path


def test_a_signal_while_a_voice_folder_is_built_leaves_nothing(capsys, tmp_path, monkeypatch, one_recording):
    voices_dir = tmp_path / "voices"
    _signal_self_after(monkeypatch, files.os, "replace", lambda source, target: Path(target).name == "01.wav",
                       signal.SIGINT)  # the first clip is in the hidden folder; the others are not yet
    rc = cli.main(["voices", "prepare", str(one_recording), "newvoice", "--voices-dir", str(voices_dir)])
    _assert_one_sentence(capsys.readouterr().err, rc, cli.EXIT_INTERRUPTED, "interrupted")
    assert list(voices_dir.iterdir()) == []  # the .newvoice.*.building folder is gone


def test_a_signal_while_a_voice_is_replaced_keeps_a_whole_voice(capsys, tmp_path, monkeypatch, one_recording):
    voices_dir = tmp_path / "voices"
    assert cli.main(["voices", "prepare", str(one_recording), "newvoice", "--voices-dir", str(voices_dir)]) == 0
    # Right after the old folder is set aside, before the new one takes its place.
    _signal_self_after(monkeypatch, files.os, "rename", lambda source, target: str(target).endswith(".replaced"))
    rc = cli.main(["voices", "prepare", str(one_recording), "newvoice", "--voices-dir", str(voices_dir),
                   "--overwrite", "--no-denoise"])
    _assert_one_sentence(capsys.readouterr().err, rc, cli.EXIT_TERMINATED, "stopped by SIGTERM")
    assert [p.name for p in voices_dir.iterdir()] == ["newvoice"]  # the new voice, whole; nothing hidden left
    report = read_json(voices_dir / "newvoice" / "prepare-report.json")
    clips = [clip["file"] for source in report["sources"] for clip in source["clips"]]
    assert report["denoise"] is False and clips
    assert sorted(p.name for p in (voices_dir / "newvoice").glob("*.wav")) == sorted(clips)
