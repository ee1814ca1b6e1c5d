"""Speaker similarity (voices/similarity.py): the speaker encoder tells every built-in voice's clips apart, its
vectors are cached beside the voice and recomputed when a clip changes, it runs offline, and it says what to do
when its weights are missing."""

from __future__ import annotations

import shutil
import socket
import zipfile

import pytest
import torch

from tortoise_lab import assets
from tortoise_lab.audio import INPUT_SAMPLE_RATE, save_audio
from tortoise_lab.models.speaker_encoder import SpeakerEncoderConfig, partial_starts
from tortoise_lab.voices import CACHE_FOLDER, load_voice
from tortoise_lab.voices import similarity
from tortoise_lab.voices.similarity import (SimilarityUnavailable, clip_agreement, measure, separation,
                                            similarity_to_voice, voice_vectors)


def builtin_voices():
    found = (load_voice(p.name) for p in sorted(assets.builtin_voices_dir().iterdir()) if p.is_dir())
    return [voice for voice in found if len(voice.clips) >= 2]


def test_every_built_in_clip_is_nearest_its_own_voice_under_the_encoder_and_not_under_mfcc():
    voices = builtin_voices()
    assert len(voices) >= 25
    encoder = separation(voices, measure("encoder"))
    assert encoder.nearest_own == 1.0, encoder.misplaced
    assert encoder.same_mean - encoder.different_mean > 0.25  # measured: 0.90 against 0.57
    mfcc = separation(voices, measure("mfcc"))
    assert mfcc.nearest_own < 0.9 and mfcc.same_mean - mfcc.different_mean < encoder.same_mean - encoder.different_mean


def test_partials_cover_the_utterance():
    config = SpeakerEncoderConfig()
    assert partial_starts(16_000) == [0]  # 1 s: one partial, padded
    assert partial_starts(48_000) == [0, 77, 154]  # a partial every 1/1.3 s; the last is 91 % audio, so kept
    # A last partial less than 75 % audio is dropped, unless it is the only one.
    last = partial_starts(40_000)
    assert (40_000 - last[-1] * config.hop) / (config.partial_frames * config.hop) >= config.min_coverage


def _voice_folder(tmp_path):
    folder = tmp_path / "voices" / "me"
    folder.mkdir(parents=True)
    for k, clip in enumerate(load_voice("tom").clips[:2]):
        save_audio(folder / f"{k}.wav", clip, INPUT_SAMPLE_RATE)
    return folder


def test_vectors_are_cached_beside_the_voice_and_renewed_when_a_clip_changes(tmp_path, monkeypatch):
    folder = _voice_folder(tmp_path)
    scorer = measure("encoder")
    voice = load_voice("me", [tmp_path / "voices"])
    first = voice_vectors(voice, scorer)
    cached = sorted((folder / CACHE_FOLDER).glob("speaker-encoder-*.safetensors"))
    assert len(cached) == 1

    def no_embedding(*args):
        raise AssertionError("the cached vectors should have been read")

    monkeypatch.setattr(scorer, "embed", no_embedding)
    again = voice_vectors(load_voice("me", [tmp_path / "voices"]), scorer)
    assert torch.equal(again.voice, first.voice) and torch.equal(again.clips, first.clips)
    monkeypatch.undo()
    # A changed clip: another key, new vectors (the clip's own changes, the other's stays).
    save_audio(folder / "1.wav", load_voice("emma").clips[0], INPUT_SAMPLE_RATE)
    changed = voice_vectors(load_voice("me", [tmp_path / "voices"]), scorer)
    assert len(list((folder / CACHE_FOLDER).glob("speaker-encoder-*.safetensors"))) == 2
    assert torch.allclose(changed.clips[0], first.clips[0]) and not torch.allclose(changed.clips[1], first.clips[1])
    assert clip_agreement(load_voice("me", [tmp_path / "voices"]), scorer)["mean"] < 0.8  # tom beside emma


def test_the_encoder_runs_offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    similarity._encoder.cache_clear()
    try:
        voice = load_voice("angie")
        score = similarity_to_voice(voice.clips[0], INPUT_SAMPLE_RATE, voice, measure("encoder"))
    finally:
        similarity._encoder.cache_clear()
    assert 0.8 < score <= 1.0


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path))
    similarity._encoder.cache_clear()
    try:
        with pytest.raises(SimilarityUnavailable, match="tortoise-lab assets"):
            measure("encoder")
    finally:
        similarity._encoder.cache_clear()
    with pytest.raises(ValueError, match="Available: encoder, mfcc"):
        measure("likeness")


def test_a_wheel_that_is_not_resemblyzers_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORTOISE_LAB_HOME", str(tmp_path / "home"))
    fake = tmp_path / assets.SPEAKER_WHEEL
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("resemblyzer/pretrained.pt", b"not weights")
    with pytest.raises(assets.AssetError, match="not the pinned"):
        assets.fetch_speaker_encoder(wheel=fake)
    with pytest.raises(assets.AssetError, match="does not exist"):
        assets.fetch_speaker_encoder(wheel=tmp_path / "nowhere.whl")
    assert not assets.speaker_encoder_file().exists()
    assert not any(p.name.startswith("speaker_encoder") for p in (tmp_path / "home").iterdir())


def test_the_fetched_weights_are_the_pinned_ones_and_load_strictly(tmp_path):
    path = assets.speaker_encoder_file()
    assert assets.sha256_file(path) == assets.SPEAKER_WEIGHTS_SHA256
    # Only the two named GE2E training scalars are left out; any other extra key is refused.
    from tortoise_lab.checkpoints import CheckpointError, load_weights
    from tortoise_lab.models.speaker_encoder import SpeakerEncoder

    state = torch.load(path, weights_only=True, map_location="cpu")  # saved from a GPU
    state["model_state"]["lstm.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="lstm.extra"):
        load_weights(SpeakerEncoder(), tmp_path / "extra.pt", "speaker_encoder")
    shutil.copy(path, tmp_path / "same.pt")
    load_weights(SpeakerEncoder(), tmp_path / "same.pt", "speaker_encoder")
