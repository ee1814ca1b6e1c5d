"""Voice lookup, blends, latent files (safely), and the conditioning-latent cache."""

import os
import pickle

import pytest
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE, save_audio
from tortoise_lab.model_set import embedded_models, random_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.stages.conditioning import voice_latents
from tortoise_lab.voices import (CACHE_FOLDER, describe_voices, load_voice, parse_voice_spec, read_latents_file)

FAST = dict(num_autoregressive_samples=2, max_mel_tokens=10, diffusion_iterations=2)


def make_voice(folder, name, seconds=(2.0, 3.0), seed=0):
    g = torch.Generator().manual_seed(seed)
    voice = folder / name
    for i, length in enumerate(seconds):
        save_audio(voice / f"{i + 1}.wav", 0.1 * torch.randn(1, int(length * INPUT_SAMPLE_RATE), generator=g),
                   INPUT_SAMPLE_RATE)
    return voice


@pytest.fixture
def voices_dir(tmp_path):
    make_voice(tmp_path, "alice", seed=1)
    make_voice(tmp_path, "bob", seconds=(1.5,), seed=2)
    latents = (torch.randn(1, 64), torch.randn(1, 128))
    (tmp_path / "carol").mkdir()
    torch.save(latents, tmp_path / "carol" / "carol.pth")  # upstream's format: a tuple of two tensors
    return tmp_path


@pytest.fixture(scope="module")
def tts():
    return TextToSpeech(random_models("tiny", seed=0), progress=False)


def folder_listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_voices_resolve_and_loading_writes_nothing(voices_dir):
    before = folder_listing(voices_dir)
    alice = load_voice("alice", [voices_dir])
    assert len(alice.clips) == 2 and alice.clips[0].shape == (1, 2 * INPUT_SAMPLE_RATE)
    carol = load_voice("carol", [voices_dir])
    assert carol.latents[0].shape == (1, 64)
    assert folder_listing(voices_dir) == before


def test_unknown_voice_lists_the_available_ones(voices_dir):
    with pytest.raises(ValueError, match=r"Unknown voice 'alicia'. Available: random, alice, angie, .*bob, carol"):
        load_voice("alicia", [voices_dir])


def test_describe_counts_clips_and_seconds(voices_dir):
    info = {v.name: v for v in describe_voices([voices_dir])}
    assert (info["alice"].clips, round(info["alice"].seconds, 2)) == (2, 5.0)
    assert info["carol"].clips == 0 and info["carol"].latents_file
    assert "tom" in info  # the built-in voices are listed too


def test_plain_blend_joins_clips_like_upstream(voices_dir):
    blend = load_voice("alice&bob", [voices_dir])
    assert len(blend.clips) == 3 and not blend.parts


def test_weighted_blend_normalises_weights(voices_dir):
    blend = load_voice("alice:3&bob:1", [voices_dir])
    assert [(v.name, w) for v, w in blend.parts] == [("alice", 0.75), ("bob", 0.25)]


@pytest.mark.parametrize("spec, message", [("alice&", "empty part"), ("alice:x&bob:1", "not a number"),
                                           ("alice:0.5&bob", "every voice"), ("alice:-1&bob:2", "positive"),
                                           ("random&alice", "cannot be blended")])
def test_bad_blend_specs(voices_dir, spec, message):
    with pytest.raises(ValueError, match=message):
        load_voice(spec, [voices_dir])


def test_parse_voice_spec():
    assert parse_voice_spec("a:0.7&b:0.3") == [("a", 0.7), ("b", 0.3)]
    assert parse_voice_spec(" a & b ") == [("a", None), ("b", None)]


def test_blends_of_every_kind_speak(voices_dir, tts):
    for spec in ("alice&bob", "alice:0.7&bob:0.3", "alice&carol", "alice:0.5&carol:0.5", "carol"):
        speech = tts.tts("Hi.", voice=load_voice(spec, [voices_dir]), preset="ultra_fast", seed=1, **FAST)
        assert speech.wav.numel() > 0 and speech.voice == spec


def test_weighted_blend_is_the_weighted_mean_of_latents(voices_dir, tts):
    generator = torch.Generator()
    alice, _ = voice_latents(tts.models, load_voice("alice", [voices_dir]), generator)
    carol, _ = voice_latents(tts.models, load_voice("carol", [voices_dir]), generator)
    blend, _ = voice_latents(tts.models, load_voice("alice:0.7&carol:0.3", [voices_dir]), generator)
    torch.testing.assert_close(blend.autoregressive, 0.7 * alice.autoregressive + 0.3 * carol.autoregressive)
    torch.testing.assert_close(blend.diffusion, 0.7 * alice.diffusion + 0.3 * carol.diffusion)


def test_weighted_blend_with_the_embedded_model(voices_dir):
    """The embedded model has AR latents only: a blend weights those and speaks."""
    tts = TextToSpeech(embedded_models(), progress=False)
    generator = torch.Generator()
    alice, _ = voice_latents(tts.models, load_voice("alice", [voices_dir]), generator)
    bob, _ = voice_latents(tts.models, load_voice("bob", [voices_dir]), generator)
    blend, _ = voice_latents(tts.models, load_voice("alice:0.6&bob:0.4", [voices_dir]), generator)
    assert blend.diffusion is None
    torch.testing.assert_close(blend.autoregressive, 0.6 * alice.autoregressive + 0.4 * bob.autoregressive)
    speech = tts.tts("Hi.", voice=load_voice("alice:0.6&bob:0.4", [voices_dir]), preset="ultra_fast", seed=1,
                     num_autoregressive_samples=2, max_mel_tokens=40)
    assert speech.wav.numel() > 0


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil" / "latents.pth"
    evil.parent.mkdir()
    with open(evil, "wb") as handle:
        pickle.dump((_Exploit(marker), torch.zeros(1)), handle)
    with pytest.raises(ValueError, match="nothing in it was run"):
        read_latents_file(evil)
    with pytest.raises(ValueError, match="nothing in it was run"):
        load_voice("evil", [tmp_path])
    assert not marker.exists()


def test_upstream_example_latents_load(tmp_path):
    from tortoise_lab.voices import available_voices

    example = available_voices()["cond_latent_example"]
    ar, diffusion = read_latents_file(next(example.glob("*.pth")))
    assert ar.shape == (1, 1024) and diffusion.shape == (1, 2048)


def test_latent_cache_hit_then_invalidated_by_a_changed_clip(voices_dir, tts, monkeypatch):
    from tortoise_lab.stages import conditioning

    calls = []
    real = conditioning.encode_mels
    monkeypatch.setattr(conditioning, "encode_mels", lambda *a: calls.append(1) or real(*a))
    voice_folder = voices_dir / "alice"
    first = tts.tts("Hi.", voice=load_voice("alice", [voices_dir]), preset="ultra_fast", seed=1, **FAST)
    cached = list((voice_folder / CACHE_FOLDER).glob("*.safetensors"))
    assert len(calls) == 1 and len(cached) == 1
    second = tts.tts("Hi.", voice=load_voice("alice", [voices_dir]), preset="ultra_fast", seed=1, **FAST)
    assert len(calls) == 1 and torch.equal(first.wav, second.wav)  # hit: not recomputed, same audio
    make_voice(voices_dir, "alice", seconds=(2.0, 3.5), seed=9)  # a clip changes
    tts.tts("Hi.", voice=load_voice("alice", [voices_dir]), preset="ultra_fast", seed=1, **FAST)
    assert len(calls) == 2 and len(list((voice_folder / CACHE_FOLDER).glob("*.safetensors"))) == 2


def test_cache_off_computes_and_writes_nothing(voices_dir, tts):
    speech = tts.tts("Hi.", voice=load_voice("bob", [voices_dir]), preset="ultra_fast", seed=1, latent_cache=False,
                     **FAST)
    assert not (voices_dir / "bob" / CACHE_FOLDER).exists()
    cached = tts.tts("Hi.", voice=load_voice("bob", [voices_dir]), preset="ultra_fast", seed=1, **FAST)
    assert torch.equal(speech.wav, cached.wav)
