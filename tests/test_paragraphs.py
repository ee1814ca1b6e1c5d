"""No text lost: the embedded model, at its defaults, speaks paragraphs of 1 to 20 sentences for about as long as
espeak-ng (the speech it learned) takes to read them; every sentence gets its own chunk, and no chunk stays
too short or too long without a note."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tortoise_lab.audio import load_audio
from tortoise_lab.config import OUTPUT_SAMPLE_RATE
from tortoise_lab.model_set import EMBEDDED_DEFAULT_VOICE, embedded_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.stages.pacing import speech_seconds
from tortoise_lab.text import clean_text
from tortoise_lab.voices import load_voice

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")]

# The training evaluation's length target (train/evaluate.py): generated length over the rendering's.
SHORTEST_RATIO, LONGEST_RATIO = 0.8, 1.25
SPEAKER = ["-v", "en-us+m3", "-s", "160", "-p", "40"]  # the espeak-ng speaker of espeak_us_m3 (voices/tools)

SENTENCES = [
    "This is a fairly ordinary sentence number one.",
    "The kettle was still warm when we came home.",
    "Please leave the blue umbrella by the door.",
    "Our train left the station at seven o'clock.",
    "She found three old letters under the carpet.",
    "A strong wind shook the windows all night.",
    "The children counted the boats in the harbour.",
    "He painted the garden fence a bright yellow.",
    "We waited for the doctor in a quiet room.",
    "The library closes early on Friday evenings.",
    "My uncle keeps a small radio in the kitchen.",
    "Two students carried the piano up the stairs.",
    "The market was busy before the storm arrived.",
    "Nobody remembered where the spare key was kept.",
    "The captain checked the map one more time.",
    "Fresh bread costs four dollars at the bakery.",
    "The museum opened a new room for old clocks.",
    "A curious rabbit watched us from the meadow.",
    "They sold the wooden table to a young couple.",
    "This is the last sentence of the paragraph.",
]


@pytest.fixture(scope="module")
def tts():
    return TextToSpeech(embedded_models(), progress=False)


def espeak_seconds(text: str, folder) -> float:
    path = folder / "espeak.wav"
    subprocess.run(["espeak-ng", *SPEAKER, "-w", str(path), clean_text(text)], check=True, capture_output=True)
    return speech_seconds(load_audio(path, OUTPUT_SAMPLE_RATE), OUTPUT_SAMPLE_RATE)


@pytest.mark.parametrize("count", [1, 5, 12, 20])
def test_a_paragraph_is_spoken_whole(tts, count, tmp_path):
    text = " ".join(SENTENCES[:count])
    speech = tts.tts(text, voice=load_voice(EMBEDDED_DEFAULT_VOICE), seed=count)
    assert speech.chunks == SENTENCES[:count]  # one sentence a chunk, every word kept
    ratio = speech_seconds(speech.wav, speech.sample_rate) / espeak_seconds(text, tmp_path)
    assert SHORTEST_RATIO <= ratio <= LONGEST_RATIO, f"{count} sentences: {ratio:.2f} of espeak-ng's duration"
    # A chunk that stayed too short or too long after its redraw would be named in a note: none is.
    assert not [note for note in speech.notes if "also when drawn again" in note]


def test_a_paragraph_streams_sentence_by_sentence(tts):
    """The embedded set has no HiFiGAN: its stream hands out each sentence when it is made, and the sentences join
    into tts's audio exactly."""
    text = " ".join(SENTENCES[:3])
    voice = load_voice(EMBEDDED_DEFAULT_VOICE)
    stream = tts.stream(text, voice=voice, seed=3)
    pieces = list(stream)
    assert len(pieces) == 3 and [piece.chunk for piece in stream.timeline] == [0, 1, 2]
    assert stream.result.wav.equal(tts.tts(text, voice=voice, seed=3).wav)
    assert stream.result.timings["first_audio"] < stream.result.timings["total"] / 2  # the first of three sentences
