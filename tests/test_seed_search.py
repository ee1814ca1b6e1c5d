"""Seed search: both similarity measures tell speakers apart; the search ranks by the chosen one, says how sure it
is, and writes its table."""

import csv
import statistics

import pytest
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE
from tortoise_lab.model_set import embedded_models, random_models
from tortoise_lab.outputs import load_wav
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.voices.seed_search import match_seeds, parse_seeds, speaker_similarity, write_table
from tortoise_lab.voices import Voice, load_voice


@pytest.mark.parametrize("by, least_wins", [("encoder", 5), ("mfcc", 4)])
def test_similarity_prefers_the_same_speaker(by, least_wins):
    """Held-out clip of a speaker vs their other clips, against other speakers' clips (real built-in voices)."""
    wins = 0
    speakers = ["tom", "emma", "geralt", "halle", "daniel"]
    voices = {name: load_voice(name).clips for name in speakers}
    for name in speakers:
        held_out, rest = voices[name][0], voices[name][1:]
        own = speaker_similarity(held_out, INPUT_SAMPLE_RATE, rest, by)
        others = [speaker_similarity(held_out, INPUT_SAMPLE_RATE, voices[o][1:], by) for o in speakers if o != name]
        wins += own > max(others)
    assert wins >= least_wins, f"the same speaker scored highest for only {wins} of {len(speakers)}"


@pytest.mark.parametrize("by", ["encoder", "mfcc"])
def test_similarity_of_identical_audio_is_one(by):
    clip = load_voice("tom").clips[0]
    assert speaker_similarity(clip, INPUT_SAMPLE_RATE, [clip], by) == pytest.approx(1.0, abs=1e-5)


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
    for by in ("encoder", "cvvp"):
        ranking = match_seeds(tts, voice, "Hello.", [1, 2, 3], tmp_path, num_autoregressive_samples=2,
                              max_mel_tokens=10, diffusion_iterations=2, rank_by=by)
        results = ranking.results
        assert ranking.rank_by == by and not ranking.notes
        assert [r.rank for r in results] == [1, 2, 3] and sorted(r.seed for r in results) == [1, 2, 3]
        assert all(r.cvvp is not None and r.encoder is not None for r in results)  # every measure is shown
        scores = [r.score(by) for r in results]
        assert scores == sorted(scores, reverse=True)
        assert ranking.lead["next"] == pytest.approx(scores[0] - scores[1])
        assert ranking.lead["median"] == pytest.approx(scores[0] - statistics.median(scores[1:]))
    assert all(r.path.exists() for r in results)
    csv_path, md_path = write_table(ranking, tmp_path)
    rows = list(csv.DictReader(open(csv_path)))
    assert [int(r["seed"]) for r in rows] == [r.seed for r in results]
    text = md_path.read_text()
    assert text.startswith("| rank | seed | encoder | mfcc | cvvp") and "ranked by cvvp; best seed" in text


def test_match_seeds_with_the_embedded_model_ranks_by_the_encoder(tmp_path):
    """The embedded model has no CVVP: the search ranks by the speaker encoder, shows MFCC beside it, and states
    the ceiling: how alike the voice's own clips are."""
    tts = TextToSpeech(embedded_models(), progress=False)
    assert not tts.models.has_cvvp()
    voice = load_voice("espeak_us_m3")
    ranking = match_seeds(tts, voice, "Hi.", [1, 2, 3], tmp_path, num_autoregressive_samples=2, max_mel_tokens=60)
    results = ranking.results
    assert ranking.rank_by == "encoder" and all(r.cvvp is None for r in results) and [r.rank for r in results] == [1, 2, 3]
    # Measured again from the WAVs the search wrote, independently of its own numbers: the first is the likest.
    again = {r.seed: speaker_similarity(*load_wav(r.path), voice.clips, "encoder") for r in results}
    assert [r.seed for r in results] == sorted(again, key=again.get, reverse=True)
    assert all(abs(again[r.seed] - r.encoder) < 1e-5 for r in results)
    mfcc = {r.seed: speaker_similarity(*load_wav(r.path), voice.clips, "mfcc") for r in results}
    assert all(abs(mfcc[r.seed] - r.mfcc) < 1e-5 for r in results)
    assert 0.5 < ranking.ceiling["min"] <= ranking.ceiling["mean"] <= 1.0
    assert "the ceiling" in ranking.summary() and f"best seed {results[0].seed}" in ranking.summary()


def test_match_seeds_without_the_encoder_weights_ranks_by_mfcc_and_says_so(tmp_path, monkeypatch):
    from tortoise_lab.voices import similarity

    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path / "empty-home"))
    similarity._encoder.cache_clear()
    try:
        tts = TextToSpeech(random_models("tiny", seed=0), progress=False)
        voice = Voice("noise", clips=[0.1 * torch.randn(1, 30_000, generator=torch.Generator().manual_seed(k))
                                      for k in range(2)])
        ranking = match_seeds(tts, voice, "Hello.", [1, 2], tmp_path, num_autoregressive_samples=2, max_mel_tokens=10,
                              diffusion_iterations=2)
    finally:
        similarity._encoder.cache_clear()
    assert ranking.rank_by == "mfcc" and all(r.encoder is None for r in ranking.results)
    assert len(ranking.notes) == 1 and "tortoise-lab assets" in ranking.notes[0] and "mfcc" in ranking.notes[0]
    with pytest.raises(ValueError, match="Unknown ranking"):
        match_seeds(tts, voice, "Hello.", [1], tmp_path, rank_by="likeness")


def test_match_seeds_needs_clips(tmp_path):
    tts = TextToSpeech(random_models("tiny", seed=0), progress=False)
    with pytest.raises(ValueError, match="needs a clip voice"):
        match_seeds(tts, Voice("random"), "Hi.", [1], tmp_path)
