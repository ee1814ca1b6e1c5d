"""Seed search: the weight-free speaker similarity tells speakers apart; the search ranks and writes its table."""

import csv

import pytest
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE
from tortoise_lab.model_set import embedded_models, random_models
from tortoise_lab.outputs import load_wav
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.voices.seed_search import match_seeds, parse_seeds, speaker_similarity, write_table
from tortoise_lab.voices import Voice, load_voice


def test_similarity_prefers_the_same_speaker():
    """Held-out clip of a speaker vs their other clips, against other speakers' clips (real built-in voices)."""
    wins = 0
    speakers = ["tom", "emma", "geralt", "halle", "daniel"]
    voices = {name: load_voice(name).clips for name in speakers}
    for name in speakers:
        held_out, rest = voices[name][0], voices[name][1:]
        own = speaker_similarity(held_out, INPUT_SAMPLE_RATE, rest)
        others = [speaker_similarity(held_out, INPUT_SAMPLE_RATE, voices[o][1:]) for o in speakers if o != name]
        wins += own > max(others)
    assert wins >= 4, f"the same speaker scored highest for only {wins} of {len(speakers)}"


def test_similarity_of_identical_audio_is_one():
    clip = load_voice("tom").clips[0]
    assert speaker_similarity(clip, INPUT_SAMPLE_RATE, [clip]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("text, seeds", [("1-4", [1, 2, 3, 4]), ("3,7,9", [3, 7, 9]), ("1-3,2,8", [1, 2, 3, 8])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a-b", "5-1", "-3"])
def test_parse_seeds_rejects_nonsense(text):
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds(text)


def test_match_seeds_ranks_and_writes_the_table(tmp_path):
    tts = TextToSpeech(random_models("tiny", seed=0), progress=False)
    g = torch.Generator().manual_seed(0)
    voice = Voice("noise", clips=[0.1 * torch.randn(1, 30_000, generator=g) for _ in range(2)])
    results = match_seeds(tts, voice, "Hello.", [1, 2, 3], tmp_path, num_autoregressive_samples=2,
                          max_mel_tokens=10, diffusion_iterations=2)
    assert [r.rank for r in results] == [1, 2, 3] and sorted(r.seed for r in results) == [1, 2, 3]
    assert all(r.cvvp is not None for r in results)  # the random model set has a CVVP
    scores = [r.cvvp for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r.path.exists() for r in results)
    csv_path, md_path = write_table(results, tmp_path)
    rows = list(csv.DictReader(open(csv_path)))
    assert [int(r["seed"]) for r in rows] == [r.seed for r in results]
    assert md_path.read_text().startswith("| rank | seed | cvvp")


def test_match_seeds_with_the_embedded_model_ranks_by_mfcc_alone(tmp_path):
    """The embedded model has no CVVP: the search must rank by the weight-free measure instead of failing."""
    tts = TextToSpeech(embedded_models(), progress=False)
    assert not tts.models.has_cvvp()
    results = match_seeds(tts, load_voice("espeak_us_m3"), "Hi.", [1, 2], tmp_path, num_autoregressive_samples=2,
                          max_mel_tokens=60)
    assert all(r.cvvp is None for r in results) and [r.rank for r in results] == [1, 2]
    # Measured again from the WAVs the search wrote, independently of its own numbers: the first is the likest.
    clips = load_voice("espeak_us_m3").clips
    again = {r.seed: speaker_similarity(*load_wav(r.path), clips) for r in results}
    assert [r.seed for r in results] == sorted(again, key=again.get, reverse=True)
    assert all(abs(again[r.seed] - r.mfcc_similarity) < 1e-5 for r in results)


def test_match_seeds_needs_clips(tmp_path):
    tts = TextToSpeech(random_models("tiny", seed=0), progress=False)
    with pytest.raises(ValueError, match="needs a clip voice"):
        match_seeds(tts, Voice("random"), "Hi.", [1], tmp_path)
