"""Clips are checked when a voice is loaded (``measure.check_clip``, the checks voice preparation makes too).

A clip that cannot be used (not audio, empty, NaN samples, too short, silent) stops every command that loads the
voice with one sentence naming the file, exit 2 and no traceback, and nothing is written; a clip that is clipped,
very quiet or short is used, and the note reaches the sidecar. The CLI runs in-process on tiny random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE, load_audio
from tortoise_lab.cli import main
from tortoise_lab.voices import PROJECT_VOICES, load_voice
from tortoise_lab.voices.measure import MIN_CONDITIONING_FRAMES, QUIET_SPEECH_DB, check_clip

pytestmark = pytest.mark.usefixtures("one_thread")

RATE = INPUT_SAMPLE_RATE
SMALL = ["--tiny", "-p", "ultra_fast", "--max-mel-tokens", "8", "--num-autoregressive-samples", "1",
         "--diffusion-iterations", "2", "--seed", "1"]
SPEECH_CLIP = PROJECT_VOICES / "espeak_en_us" / "01.wav"  # espeak-ng speech, 4.6 s at -25 dBFS


def _speech() -> np.ndarray:
    wav, rate = soundfile.read(str(SPEECH_CLIP), dtype="float32")
    assert rate == RATE
    return wav


def _nan(path: Path) -> None:
    wav = _speech()
    wav[1000:1100] = np.nan
    soundfile.write(str(path), wav, RATE, subtype="FLOAT")


def _not_audio(path: Path) -> None:
    path.write_text("These are words, not samples.\n")


FATAL = {  # case: (clip file name, how to write it, what the sentence says)
    "nan": ("2.wav", _nan, "is non-finite: 100 of"),
    "not audio": ("x.wav", _not_audio, "is unreadable: not audio that libsndfile can decode"),
    "empty": ("2.wav", lambda p: soundfile.write(str(p), np.zeros(0, np.float32), RATE), "is empty"),
    "one sample": ("2.wav", lambda p: soundfile.write(str(p), np.full(1, 0.5, np.float32), RATE),
                   f"is too short: 0.00 s (1 sample at {RATE} Hz), under the 0.46 s ({MIN_CONDITIONING_FRAMES} mel"),
    "silent": ("2.wav", lambda p: soundfile.write(str(p), np.zeros(2 * RATE, np.float32), RATE), "is silent"),
}
USABLE = {  # case: (how to make the clip from speech, what the note says)
    "clipped": (lambda wav: np.clip(8 * wav, -1, 1), "is clipped: "),
    "very quiet": (lambda wav: wav * np.float32(10 ** (-22 / 20)), "is very quiet: its speech is at -47.0 dBFS"),
    "short": (lambda wav: wav[:RATE], "is short: 1.00 s, under the 2 s"),
}


def _bad_voice(root: Path, case: str) -> Path:
    """``root/bad/``: a good speech clip 1.wav and the case's bad clip; returns the bad clip's path."""
    name, write, _ = FATAL[case]
    folder = root / "bad"
    folder.mkdir(parents=True)
    soundfile.write(str(folder / "1.wav"), _speech(), RATE)
    write(folder / name)
    return folder / name


def _one_line_naming(err: str, clip: Path, says: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tortoise-lab: Voice clip {clip} ") and says in lines[0], lines[0]
    assert lines[0].endswith("remove it or rebuild the voice with `tortoise-lab voices prepare`.")
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------ fatal clips


@pytest.mark.parametrize("case", sorted(FATAL))
def test_speak_stops_with_one_sentence_naming_the_clip(tmp_path, capsys, case):
    clip = _bad_voice(tmp_path / "voices", case)
    out = tmp_path / "out"
    assert main(["speak", "Hello.", "-v", "bad", "-V", str(tmp_path / "voices"), "-O", str(out), *SMALL]) == 2
    _one_line_naming(capsys.readouterr().err, clip, FATAL[case][2])
    assert not out.exists() or not list(out.rglob("*.wav"))


@pytest.mark.parametrize("case", ["nan", "one sample"])
def test_read_stops_with_one_sentence_naming_the_clip(tmp_path, capsys, case):
    clip = _bad_voice(tmp_path / "voices", case)
    story = tmp_path / "story.txt"
    story.write_text("First part.|Second part.")
    out = tmp_path / "out"
    assert main(["read", str(story), "-v", "bad", "-V", str(tmp_path / "voices"), "-O", str(out), *SMALL]) == 2
    _one_line_naming(capsys.readouterr().err, clip, FATAL[case][2])
    assert not out.exists() or not list(out.rglob("*.wav"))


def test_voices_match_stops_with_one_sentence_naming_the_clip(tmp_path, capsys):
    clip = _bad_voice(tmp_path / "voices", "nan")
    out = tmp_path / "out"
    assert main(["voices", "match", "bad", "--tiny", "-V", str(tmp_path / "voices"), "--text", "Hi.", "--seeds", "1",
                 "--max-mel-tokens", "8", "--num-autoregressive-samples", "1", "--diffusion-iterations", "2",
                 "-O", str(out), "-q"]) == 2
    _one_line_naming(capsys.readouterr().err, clip, FATAL["nan"][2])
    assert not out.exists() or not list(out.rglob("*.wav"))


def test_blends_and_the_api_raise_the_same_sentence(tmp_path):
    clip = _bad_voice(tmp_path, "silent")
    (tmp_path / "good").mkdir()
    soundfile.write(str(tmp_path / "good" / "1.wav"), _speech(), RATE)
    for spec in ("bad", "good&bad", "good:0.5&bad:0.5"):
        with pytest.raises(ValueError, match=rf"^Voice clip {clip} is silent: its loudest 20 ms is at -120.0 dBFS"):
            load_voice(spec, [tmp_path])


def test_the_playground_shows_the_sentence(tmp_path, monkeypatch):
    from tortoise_lab.model_set import embedded_models
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.widgets import Playground

    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path))  # the user's voices folder: tmp_path/voices
    clip = _bad_voice(tmp_path / "voices", "nan")
    playground = Playground(TextToSpeech(embedded_models(), progress=False), voice="bad", voices=["bad"],
                            text="Hi.", preset="ultra_fast", seed=5)
    playground.button.click()  # starts the run in a thread; join() waits for it
    playground.join()
    assert playground.last_speech is None
    assert playground.last_error.startswith(f"Voice clip {clip} is non-finite: 100 of")
    assert playground.last_error in playground.status.value and "Traceback" not in playground.status.value


# ------------------------------------------------------------------------------------------ usable clips


@pytest.mark.parametrize("case", sorted(USABLE))
def test_a_usable_clip_speaks_with_a_note_in_the_sidecar(tmp_path, capsys, case):
    make, says = USABLE[case]
    folder = tmp_path / "voices" / "odd"
    folder.mkdir(parents=True)
    soundfile.write(str(folder / "1.wav"), make(_speech()), RATE)
    out = tmp_path / "odd.wav"
    assert main(["speak", "Hello.", "-v", "odd", "-V", str(tmp_path / "voices"), "-o", str(out), *SMALL]) == 0
    notes = json.loads(out.with_suffix(".json").read_text())["notes"]
    mine = [note for note in notes if note.startswith(f"Voice clip {folder / '1.wav'} ")]
    assert len(mine) == 1 and says in mine[0], notes
    assert f"note: {mine[0]}" in capsys.readouterr().err


def test_a_blend_carries_its_parts_notes(tmp_path):
    for name, make in (("loud", USABLE["clipped"][0]), ("brief", USABLE["short"][0])):
        (tmp_path / name).mkdir()
        soundfile.write(str(tmp_path / name / "1.wav"), make(_speech()), RATE)
    loud, brief = load_voice("loud", [tmp_path]), load_voice("brief", [tmp_path])
    assert len(loud.notes) == len(brief.notes) == 1
    assert load_voice("loud&brief", [tmp_path]).notes == loud.notes + brief.notes
    assert load_voice("loud:0.3&brief:0.7", [tmp_path]).notes == loud.notes + brief.notes


def test_valid_voices_load_as_before_and_without_notes():
    voice = load_voice("espeak_en_us")
    assert voice.notes == ()
    for path, clip in zip(voice.files, voice.clips):
        assert torch.equal(clip, load_audio(path, INPUT_SAMPLE_RATE))  # the clip checks change no sample


# ------------------------------------------------------------------------------------------ the thresholds


def test_the_shortest_clip_is_min_conditioning_frames_of_mel():
    """40 frames of hop 256 (0.46 s) is fatal one sample short of it, and only a note from it on."""
    wav = _speech()[None, 20_000:]  # (1, N): starts inside speech
    shortest = MIN_CONDITIONING_FRAMES * 256
    fatal, notes = check_clip(wav[:, :shortest - 1], RATE)
    assert fatal is not None and fatal.kind == "too short"
    fatal, notes = check_clip(wav[:, :shortest], RATE)
    assert fatal is None and [n.kind for n in notes] == ["short"]
    fatal, notes = check_clip(wav[:, :-(-shortest * 48_000 // RATE)], 48_000)  # measured in time, at any rate
    assert fatal is None


def test_quiet_and_silent_follow_the_preparation_thresholds():
    wav = _speech()[None]
    assert check_clip(wav, RATE) == (None, [])
    quiet = check_clip(wav * np.float32(10 ** ((QUIET_SPEECH_DB - 1 - -25) / 20)), RATE)
    assert quiet[0] is None and [n.kind for n in quiet[1]] == ["very quiet"]
    assert check_clip(wav * np.float32(1e-4), RATE)[0].kind == "silent"  # loudest 20 ms under -50 dBFS
    stereo_nan = np.stack([wav[0], wav[0]])
    stereo_nan[1, 5] = np.inf
    assert check_clip(stereo_nan, RATE)[0].kind == "non-finite"
