"""The duration check (stages/pacing.py), the speech profile it is built from (train.corpus.speech_profile), the
model sets that carry it, and the pipeline's redraw of a chunk whose speech is too short or too long."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tortoise_lab.config import OUTPUT_SAMPLE_RATE, Settings
from tortoise_lab.model_set import EMBEDDED_DIR, EMBEDDED_PRESETS, RATE_MARGIN, embedded_models, random_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.stages.pacing import SHORT_TEXT_SLACK_S, SpeechRate, count_letters, speech_seconds
from tortoise_lab.train.corpus import profile_indices, speech_profile
from tortoise_lab.voices import load_voice

pytestmark = pytest.mark.usefixtures("one_thread")
RATE = OUTPUT_SAMPLE_RATE


def burst(pause_s: float, tone_s: float, rate: int = RATE) -> torch.Tensor:
    """(1, N): silence, a 200 Hz tone, silence."""
    t = torch.arange(round(tone_s * rate)) / rate
    pad = torch.zeros(round(pause_s * rate))
    return torch.cat([pad, 0.5 * torch.sin(2 * math.pi * 200 * t), pad])[None]


def test_speech_seconds_counts_the_sound_between_the_pauses():
    assert speech_seconds(torch.zeros(1, RATE), RATE) == 0.0
    assert speech_seconds(torch.zeros(1, 3), RATE) == 0.0  # shorter than a frame
    assert speech_seconds(burst(1.0, 2.0), RATE) == pytest.approx(2.0, abs=0.05)
    quiet_hiss = burst(1.0, 2.0) + 1e-4 * torch.randn(1, round(4.0 * RATE))  # far below the speech: still pause
    assert speech_seconds(quiet_hiss, RATE) == pytest.approx(2.0, abs=0.05)


def test_letters_are_counted_as_the_model_reads_them():
    assert count_letters("Hi, you!") == 5
    assert count_letters("3 cats.") == len("threecats")  # numbers spelled out, spaces and punctuation left out


def test_a_rate_judges_speech_too_short_too_long_or_right():
    rate = SpeechRate(10.0, 20.0, "test")
    text = "a" * 30  # 1.5 to 3 s at these rates, slack added at both ends
    assert rate.needed_seconds(text) == pytest.approx((1.5 - SHORT_TEXT_SLACK_S, 3.0 + SHORT_TEXT_SLACK_S))
    assert rate.judge(text, burst(0.5, 2.0), RATE) is None
    assert rate.judge(text, burst(0.5, 0.5), RATE) == "short"
    assert rate.judge(text, burst(0.5, 4.0), RATE) == "long"
    with pytest.raises(ValueError, match="low < high"):
        SpeechRate(20.0, 10.0, "backwards")


def test_a_speech_profile_measures_lengths_and_rates():
    texts = ["a" * 20, "b" * 40, "c" * 30]
    wavs = [(burst(0.2, seconds, 22_050)[0].numpy() * 32_767).astype(np.int16) for seconds in (1.0, 2.0, 2.0)]
    profile = speech_profile(texts, wavs)
    assert profile["utterances"] == 3 and profile["text_characters"]["max"] == 40
    assert profile["text_characters"]["p50"] == 30
    assert profile["letters_per_second"]["p1"] == pytest.approx(15.0, abs=0.5)  # 30 letters in 2 s
    assert profile["letters_per_second"]["p99"] == pytest.approx(20.0, abs=0.5)  # 20 letters in 1 s, 40 in 2 s
    assert profile_indices(10, limit=4) == [0, 3, 6, 9] and profile_indices(3, limit=4) == [0, 1, 2]


def test_the_embedded_set_chunks_and_checks_by_its_training_profile():
    models = embedded_models()
    profile = json.loads((EMBEDDED_DIR / "config.json").read_text())["speech"]
    assert models.chunk_lengths == (1, int(profile["text_characters"]["p99"]))
    assert models.speech_rate.low == pytest.approx(profile["letters_per_second"]["p1"] / RATE_MARGIN)
    assert models.speech_rate.high == pytest.approx(profile["letters_per_second"]["p99"] * RATE_MARGIN)
    assert random_models("tiny").speech_rate is None and random_models("tiny").chunk_lengths is None


def test_a_model_sets_presets_apply_where_the_user_chose_nothing():
    models = embedded_models()
    fitted, notes = models.fit(Settings.from_preset("fast"))
    assert fitted.num_autoregressive_samples == EMBEDDED_PRESETS["fast"]["num_autoregressive_samples"]
    assert fitted.max_mel_tokens == models.max_mel_tokens and notes == []  # its own limit: nothing to clamp
    chosen, _ = models.fit(Settings.from_preset("fast", num_autoregressive_samples=7))
    assert chosen.num_autoregressive_samples == 7  # the user's choice stands
    many, _ = models.fit(Settings.from_preset("fast", candidates=9))
    assert many.num_autoregressive_samples == 9  # never fewer samples than candidates
    assert random_models("tiny").fit(Settings.from_preset("fast"))[0].num_autoregressive_samples == 96


@pytest.fixture(scope="module")
def unchecked():
    """The embedded model with no duration check: what each seed draws."""
    models = embedded_models()
    models.speech_rate = None
    return TextToSpeech(models, progress=False)


TEXT = "The quiet farmer painted the wooden fence."
SHORT = {"num_autoregressive_samples": 2}


def checked_with(rate: SpeechRate) -> TextToSpeech:
    models = embedded_models()
    models.speech_rate = rate
    return TextToSpeech(models, progress=False)


def test_a_chunk_judged_wrong_is_drawn_again_with_the_next_seed(unchecked):
    voice = load_voice("espeak_us_m3")
    first, second = (unchecked.tts(TEXT, voice=voice, seed=seed, **SHORT) for seed in (10, 11))
    d1, d2 = (speech_seconds(s.wav, RATE) for s in (first, second))
    assert abs(d1 - d2) > 0.05, "the two seeds must differ in length for this test"
    # A range that holds the second draw's speech and not the first's.
    letters, middle = count_letters(TEXT), (d1 + d2) / 2
    if d2 > d1:
        rate = SpeechRate(0.5, letters / (middle + SHORT_TEXT_SLACK_S), "test")
    else:
        rate = SpeechRate(letters / (middle - SHORT_TEXT_SLACK_S), 1000.0, "test")
    tts = checked_with(rate)
    speech = tts.tts(TEXT, voice=voice, seed=10, **SHORT)
    assert torch.equal(speech.wav, second.wav)  # the chunk's redraw is seed 11's draw
    assert any("drawn again with seed 11" in note for note in speech.notes)
    assert torch.equal(tts.tts(TEXT, voice=voice, seed=11, **SHORT).wav, second.wav)  # right first time: kept


def test_a_chunk_still_wrong_after_the_redraw_is_named_in_a_note(unchecked):
    voice = load_voice("espeak_us_m3")
    text = f"{TEXT} The small dog sat by the open door."
    tts = checked_with(SpeechRate(500.0, 1000.0, "impossible"))  # every take is too long
    seen = []
    speech = tts.tts(text, voice=voice, seed=3, on_step=lambda stage, done, total: seen.append(stage), **SHORT)
    stuck = [note for note in speech.notes if "also when drawn again" in note]
    assert len(stuck) == 2 and "Chunk 1 of 2" in stuck[0] and "The quiet farmer" in stuck[0]
    assert "too long" in stuck[1] and "seed 5" in stuck[1]  # chunk 2's redraw: seed 3 + 1 + 1
    assert "autoregressive, drawn again, chunk 1/2" in seen


def test_no_check_means_no_redraw():
    tts = TextToSpeech(random_models("tiny"), progress=False)
    speech = tts.tts("Hello there.", seed=1, num_autoregressive_samples=2, diffusion_iterations=2,
                     max_mel_tokens=20)
    assert not any("drawn again" in note for note in speech.notes)


def test_a_profile_counts_sentences_and_a_multi_sentence_model_gathers_them():
    from tortoise_lab.model_set import _trained_speech

    wav = (burst(0.2, 1.0, 22_050)[0].numpy() * 32_767).astype(np.int16)
    single = speech_profile(["One sentence here.", "Another one."], [wav, wav])
    joined = speech_profile(["One sentence. And a second one! A third?", "Just one."], [wav, wav])
    assert single["most_sentences"] == 1 and joined["most_sentences"] == 3
    profile = {"utterances": 2, "letters_per_second": {"p1": 10.0, "p99": 20.0},
               "text_characters": {"p50": 80.0, "p99": 150.0}}
    assert _trained_speech({**profile, "most_sentences": 1})["chunk_lengths"] == (1, 150)
    assert _trained_speech({**profile, "most_sentences": 3})["chunk_lengths"] == (80, 150)
    assert _trained_speech(profile)["chunk_lengths"] == (1, 150)  # recorded before sentences were counted
    assert _trained_speech(None) == {}
