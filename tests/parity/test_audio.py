"""Parity of the audio front-end with upstream tortoise-tts 3.0.0: file loading and the two mel front-ends.

Test audio is synthesised here (chirps, tones and noise from a fixed generator) and written to files with
soundfile, so nothing is downloaded.
"""

import math

import pytest
import soundfile
import torch

from tortoise_lab.audio import (
    CONDITIONING_SAMPLES,
    INPUT_SAMPLE_RATE,
    OUTPUT_SAMPLE_RATE,
    conditioning_mel,
    denormalize_univnet_mel,
    diffusion_conditioning_mel,
    load_audio,
    univnet_mel,
)

pytestmark = pytest.mark.parity

CROP_SEED = 1234
# Log mels (values in about [-11.5, 2.5]). The conditioning mel is bit-identical (same torch.stft path).
# The UnivNet mel differs by at most 4.7e-5 measured: torch.stft's FFT and upstream's DFT-by-convolution
# round differently, and the log turns that into an absolute error on quiet bins.
MEL_TOL = dict(rtol=1e-4, atol=1e-4)
CONDITIONING_TOL = dict(rtol=1e-6, atol=1e-6)
# Loading is the same decode and the same resampler: bit-identical for WAV, 1.2e-7 for MP3 (librosa's path).
WAV_TOL = dict(rtol=0, atol=1e-6)


def synth(num_samples: int, sample_rate: int, seed: int, amplitude: float = 0.5) -> torch.Tensor:
    """(1, N) test signal: a rising chirp, a steady tone, an amplitude wobble and white noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    duration = num_samples / sample_rate
    f0, f1 = 80.0, 0.45 * sample_rate
    chirp = torch.sin(2 * math.pi * (f0 * t + (f1 - f0) / (2 * duration) * t * t))
    tone = torch.sin(2 * math.pi * 220.0 * t + float(torch.rand((), generator=gen)) * 6.28)
    wobble = 0.6 + 0.4 * torch.sin(2 * math.pi * 1.5 * t)
    noise = torch.randn(num_samples, generator=gen, dtype=torch.float64)
    wav = amplitude * wobble * (0.6 * chirp + 0.3 * tone) + 0.05 * noise
    return wav.float().unsqueeze(0)


CONDITIONING_CLIPS = {  # 22.05 kHz
    "short": synth(3 * INPUT_SAMPLE_RATE, INPUT_SAMPLE_RATE, seed=1),  # padded up to 6 s
    "exact": synth(CONDITIONING_SAMPLES, INPUT_SAMPLE_RATE, seed=2),
    "long": synth(CONDITIONING_SAMPLES + 17_777, INPUT_SAMPLE_RATE, seed=3),  # cropped at a random start
}
UNIVNET_CLIPS = {  # 24 kHz
    "two_seconds": synth(2 * OUTPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, seed=4),
    "odd_length": synth(12_345, OUTPUT_SAMPLE_RATE, seed=5),
    "too_loud": synth(OUTPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, seed=6, amplitude=3.0),  # exercises the clip to [-1, 1]
}
DIFFUSION_CLIPS = {  # 22.05 kHz: padded (short) and truncated (long) to 102400 samples at 24 kHz
    "short": CONDITIONING_CLIPS["short"],
    "long": CONDITIONING_CLIPS["long"],
}
# name -> (sample rate in the file, channels, soundfile subtype, suffix, rate asked of load_audio)
FILES = {
    "stereo_48k_pcm16": (48_000, 2, "PCM_16", "wav", INPUT_SAMPLE_RATE),
    "mono_22k_float": (INPUT_SAMPLE_RATE, 1, "FLOAT", "wav", INPUT_SAMPLE_RATE),
    "mono_44k_pcm32_to_24k": (44_100, 1, "PCM_32", "wav", OUTPUT_SAMPLE_RATE),
    "stereo_16k_pcm24": (16_000, 2, "PCM_24", "wav", INPUT_SAMPLE_RATE),
    "mono_22k_mp3": (INPUT_SAMPLE_RATE, 1, None, "mp3", INPUT_SAMPLE_RATE),
}


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("audio")
    paths = {}
    for seed, (name, (rate, channels, subtype, suffix, _)) in enumerate(FILES.items(), start=10):
        wav = torch.cat([synth(rate, rate, seed=seed + 100 * c, amplitude=0.6) for c in range(channels)])  # (C, N)
        path = folder / f"{name}.{suffix}"
        soundfile.write(str(path), wav.T.numpy(), rate, subtype=subtype)
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def upstream(reference, audio_files):
    inputs = {f"cond/{k}": v for k, v in CONDITIONING_CLIPS.items()}
    inputs |= {f"univnet/{k}": v for k, v in UNIVNET_CLIPS.items()}
    inputs |= {f"diffusion/{k}": v.clone() for k, v in DIFFUSION_CLIPS.items()}  # safetensors refuses shared storage
    inputs["mel/denorm"] = torch.linspace(-1.5, 1.5, 101)
    files = {name: [str(audio_files[name]), spec[4]] for name, spec in FILES.items()}
    outputs, _ = reference.run("ref_audio.py", {"crop_seed": CROP_SEED, "files": files}, inputs)
    return outputs


@pytest.mark.parametrize("name", CONDITIONING_CLIPS)
def test_conditioning_mel_matches_format_conditioning(upstream, name):
    start = int(upstream[f"cond_start/{name}"])
    ours = conditioning_mel(CONDITIONING_CLIPS[name], start=start)
    assert ours.shape == (80, CONDITIONING_SAMPLES // 256 + 1)
    torch.testing.assert_close(ours, upstream[f"cond/{name}"], **CONDITIONING_TOL)


def test_long_clip_was_cropped_off_the_start(upstream):
    assert int(upstream["cond_start/long"]) > 0  # otherwise the crop start is not being tested


@pytest.mark.parametrize("name", UNIVNET_CLIPS)
def test_univnet_mel_matches(upstream, name):
    wav = UNIVNET_CLIPS[name]
    torch.testing.assert_close(univnet_mel(wav), upstream[f"univnet/{name}"], **MEL_TOL)
    torch.testing.assert_close(univnet_mel(wav, normalize=True), upstream[f"univnet_norm/{name}"], **MEL_TOL)


@pytest.mark.parametrize("name", DIFFUSION_CLIPS)
def test_diffusion_conditioning_mel_matches(upstream, name):
    ours = diffusion_conditioning_mel(DIFFUSION_CLIPS[name])
    assert ours.shape == (100, 401)
    torch.testing.assert_close(ours, upstream[f"diffusion/{name}"], **MEL_TOL)


def test_denormalize_matches(upstream):
    torch.testing.assert_close(denormalize_univnet_mel(torch.linspace(-1.5, 1.5, 101)), upstream["mel/denorm"],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", FILES)
def test_load_audio_matches(upstream, audio_files, name):
    ours = load_audio(audio_files[name], FILES[name][4])
    expected = upstream[f"file/{name}"]
    assert ours.dtype == torch.float32 and ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, **WAV_TOL)
