"""Behaviour of the audio front-end that does not need the reference: errors, atomic saves, mel shapes."""

import math
import warnings

import pytest
import soundfile
import torch

from tortoise_lab import audio
from tortoise_lab.audio import (
    CONDITIONING_SAMPLES,
    INPUT_SAMPLE_RATE,
    LOG_FLOOR,
    OUTPUT_SAMPLE_RATE,
    AudioError,
    conditioning_mel,
    denormalize_univnet_mel,
    diffusion_conditioning_mel,
    load_audio,
    normalize_univnet_mel,
    pad_or_truncate,
    save_audio,
    univnet_mel,
)


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).unsqueeze(0)  # (1, N)


# --------------------------------------------------------------------------------------------- loading


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        load_audio(tmp_path / "nothing.wav", INPUT_SAMPLE_RATE)


def test_text_file_renamed_to_wav_is_refused(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match="notes.wav"):
        load_audio(fake, INPUT_SAMPLE_RATE)


def test_empty_audio_is_refused(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(str(path), torch.zeros(0).numpy(), INPUT_SAMPLE_RATE)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path, INPUT_SAMPLE_RATE)


def test_load_keeps_the_first_channel_and_resamples(tmp_path):
    left, right = tone(1.0, 44_100, 300.0), tone(1.0, 44_100, 500.0, amplitude=0.2)
    path = tmp_path / "stereo.flac"
    soundfile.write(str(path), torch.cat([left, right]).T.numpy(), 44_100, subtype="PCM_24")
    wav = load_audio(path, 44_100)
    assert wav.shape == (1, 44_100) and wav.dtype == torch.float32
    torch.testing.assert_close(wav, left, rtol=0, atol=1e-6)
    assert load_audio(path, INPUT_SAMPLE_RATE).shape == (1, INPUT_SAMPLE_RATE)


def test_load_warns_about_and_clips_odd_audio(tmp_path):
    path = tmp_path / "loud.wav"
    soundfile.write(str(path), (3 * tone(0.1, INPUT_SAMPLE_RATE, amplitude=0.9)).T.numpy(), INPUT_SAMPLE_RATE, subtype="FLOAT")
    with pytest.warns(UserWarning, match="loud.wav"):
        wav = load_audio(path, INPUT_SAMPLE_RATE)
    assert wav.abs().max() == 1.0


# ---------------------------------------------------------------------------------------------- saving


def test_save_then_load_round_trips_exactly(tmp_path):
    wav = tone(0.5, OUTPUT_SAMPLE_RATE)
    path = save_audio(tmp_path / "sub" / "out.wav", wav, OUTPUT_SAMPLE_RATE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(load_audio(path, OUTPUT_SAMPLE_RATE), wav)
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    save_audio(target, tone(0.1, OUTPUT_SAMPLE_RATE), OUTPUT_SAMPLE_RATE)
    before = target.read_bytes()

    real_write = soundfile.SoundFile.write

    def write_half_then_fail(self, data):
        real_write(self, data[: len(data) // 2])  # part of the samples reach the scratch file
        raise OSError("disk full")

    monkeypatch.setattr(soundfile.SoundFile, "write", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_audio(target, tone(1.0, OUTPUT_SAMPLE_RATE), OUTPUT_SAMPLE_RATE)
    assert target.read_bytes() == before  # the old file is untouched ...
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # ... and no scratch file is left behind
    with pytest.raises(OSError):
        save_audio(tmp_path / "new.wav", tone(1.0, OUTPUT_SAMPLE_RATE), OUTPUT_SAMPLE_RATE)
    assert not (tmp_path / "new.wav").exists()


def test_save_rejects_bad_shapes_and_suffixes(tmp_path):
    with pytest.raises(ValueError, match="mono"):
        save_audio(tmp_path / "x.wav", torch.zeros(2, 100), OUTPUT_SAMPLE_RATE)
    with pytest.raises(ValueError, match="suffix"):
        save_audio(tmp_path / "x.xyz", torch.zeros(100), OUTPUT_SAMPLE_RATE)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ mels


def test_pad_or_truncate():
    wav = torch.arange(5.0).unsqueeze(0)
    assert pad_or_truncate(wav, 7).tolist() == [[0, 1, 2, 3, 4, 0, 0]]
    assert pad_or_truncate(wav, 3).tolist() == [[0, 1, 2]]


def test_conditioning_mel_shape_and_crop():
    clip = tone(7.0, INPUT_SAMPLE_RATE)
    mel = conditioning_mel(clip)
    assert mel.shape == (80, CONDITIONING_SAMPLES // 256 + 1)
    assert torch.equal(conditioning_mel(clip[0]), mel)  # (N,) and (1, N) are the same clip
    excess = clip.shape[-1] - CONDITIONING_SAMPLES
    assert conditioning_mel(clip, start=excess).shape == mel.shape
    with pytest.raises(ValueError, match="start"):
        conditioning_mel(clip, start=excess + 1)
    with pytest.raises(ValueError, match="mono"):
        conditioning_mel(torch.zeros(2, 1000))


def test_conditioning_mel_of_silence_is_the_log_floor_over_the_norms():
    ones = torch.ones(80)
    mel = conditioning_mel(torch.zeros(1, 1000), mel_norms=ones)
    torch.testing.assert_close(mel, torch.full_like(mel, math.log(LOG_FLOOR)))


def test_univnet_mel_shape_and_normalisation():
    wav = tone(1.0, OUTPUT_SAMPLE_RATE)
    mel = univnet_mel(wav)
    assert mel.shape == (100, OUTPUT_SAMPLE_RATE // 256 + 1)
    torch.testing.assert_close(univnet_mel(wav, normalize=True), normalize_univnet_mel(mel))
    torch.testing.assert_close(denormalize_univnet_mel(normalize_univnet_mel(mel)), mel, rtol=1e-5, atol=1e-5)
    # Silence sits at the bottom of the normalised range.
    torch.testing.assert_close(univnet_mel(torch.zeros(2048), normalize=True), -torch.ones(100, 9))


def test_univnet_mel_peaks_in_the_right_band():
    mel = univnet_mel(tone(0.5, OUTPUT_SAMPLE_RATE, freq=1000.0))
    low = univnet_mel(tone(0.5, OUTPUT_SAMPLE_RATE, freq=200.0))
    assert mel.mean(-1).argmax() > low.mean(-1).argmax()


def test_diffusion_conditioning_mel_shape():
    assert diffusion_conditioning_mel(tone(1.0, INPUT_SAMPLE_RATE)).shape == (100, 401)
    assert diffusion_conditioning_mel(tone(6.0, INPUT_SAMPLE_RATE)).shape == (100, 401)


def test_official_mel_norms_are_per_band():
    norms = audio.official_mel_norms()
    assert norms.shape == (80,) and norms.dtype == torch.float32
