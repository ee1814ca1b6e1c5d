"""Training a tiny UnivNet generator (``models.vocoder``) on the corpus: 100-band log mel -> 24 kHz audio.

Each example is a segment of one training utterance: ``segment_frames`` frames of its UnivNet log mel and the
``segment_frames * 256`` samples of 24 kHz audio they were computed from. The loss is the multi-resolution STFT
loss of Parallel WaveGAN and UnivNet (spectral convergence + log-magnitude L1, averaged over three FFT sizes)
without the adversarial part: on two CPU cores there is no time for a GAN's discriminators, and the STFT loss
alone is what those models pre-train their generators with. Whether that beats Griffin-Lim is measured by
``tortoise_lab.train.experiments.decoders``, which keeps the better one.

Batches are a pure function of (seed, step), so ``train_loop`` resumes bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from tortoise_lab.audio import HOP_LENGTH, INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, univnet_mel
from tortoise_lab.models.vocoder import UnivNetGenerator, VocoderConfig
from tortoise_lab.train.loop import step_generator

__all__ = ["VocoderTrainConfig", "VocoderData", "VocoderBatch", "prepare_vocoder_data", "stft_loss", "vocoder_loss"]

# (FFT size, hop, window) of the multi-resolution STFT loss: Parallel WaveGAN's three resolutions.
STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
MAGNITUDE_FLOOR = 1e-7  # keeps the log finite on digital silence


@dataclass
class VocoderTrainConfig:
    """A UnivNet generator narrower than the official (channel_size 32, noise 64) and how it is trained."""

    noise_dim: int = 32
    channel_size: int = 16
    utterances: int = 2_000  # training utterances held in memory as 24 kHz audio (~0.3 MB each)
    segment_frames: int = 32  # mel frames per example: 8192 samples, 0.34 s
    batch_size: int = 8

    def model_config(self) -> VocoderConfig:
        return VocoderConfig(noise_dim=self.noise_dim, channel_size=self.channel_size)


@dataclass
class VocoderBatch:
    mels: torch.Tensor  # (B, 100, S) log mel
    wavs: torch.Tensor  # (B, S * 256) 24 kHz audio
    noise: torch.Tensor  # (B, noise_dim, S)


@dataclass
class VocoderData:
    wavs: list[torch.Tensor]  # per utterance (N,) 24 kHz, fp16
    mels: list[torch.Tensor]  # per utterance (100, N // 256 + 1), fp16
    config: VocoderTrainConfig
    seed: int = 0

    def __post_init__(self):
        self.eligible = [i for i, m in enumerate(self.mels) if m.shape[1] > self.config.segment_frames]
        if not self.eligible:
            raise ValueError(f"No utterance is longer than {self.config.segment_frames} frames; lower segment_frames.")

    def batch(self, step: int) -> VocoderBatch:
        config, frames = self.config, self.config.segment_frames
        generator = step_generator(self.seed, step)
        picks = torch.randint(len(self.eligible), (config.batch_size,), generator=generator).tolist()
        mels, wavs = [], []
        for pick in picks:
            index = self.eligible[pick]
            # The last frame's hop may run past the audio: keep segments whose samples all exist.
            last = min(self.mels[index].shape[1], len(self.wavs[index]) // HOP_LENGTH) - frames
            start = int(torch.randint(last + 1, (1,), generator=generator))
            mels.append(self.mels[index][:, start:start + frames].float())
            wavs.append(self.wavs[index][start * HOP_LENGTH:(start + frames) * HOP_LENGTH].float())
        return VocoderBatch(torch.stack(mels), torch.stack(wavs),
                            torch.randn(config.batch_size, config.noise_dim, frames, generator=generator))


def prepare_vocoder_data(corpus, indices: list[int], config: VocoderTrainConfig, seed: int = 0,
                         progress: bool = False) -> VocoderData:
    """24 kHz audio and its log mel for ``config.utterances`` of ``indices`` (a seeded sample)."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    chosen = sorted(torch.randperm(len(indices), generator=generator)[:config.utterances].tolist())
    wavs, mels = [], []
    for k in tqdm(chosen, desc="vocoder data", disable=not progress):
        wav = AF.resample(corpus.wav(indices[k]), INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)[0]  # (N,)
        wavs.append(wav.half())
        mels.append(univnet_mel(wav).half())
    return VocoderData(wavs, mels, config, seed)


def _magnitude(wav: torch.Tensor, fft: int, hop: int, window: int) -> torch.Tensor:
    spec = torch.stft(wav, fft, hop, window, torch.hann_window(window, device=wav.device), return_complex=True)
    return spec.abs().clamp_min(MAGNITUDE_FLOOR)  # (B, fft // 2 + 1, frames)


def stft_loss(predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Multi-resolution STFT loss of (B, N) audio: mean over resolutions of spectral convergence + log-magnitude L1."""
    convergence = magnitude = 0.0
    for fft, hop, window in STFT_RESOLUTIONS:
        ours, theirs = _magnitude(predicted, fft, hop, window), _magnitude(target, fft, hop, window)
        convergence = convergence + torch.linalg.norm(theirs - ours) / torch.linalg.norm(theirs)
        magnitude = magnitude + (ours.log() - theirs.log()).abs().mean()
    convergence, magnitude = convergence / len(STFT_RESOLUTIONS), magnitude / len(STFT_RESOLUTIONS)
    return convergence + magnitude, {"convergence": float(convergence.detach()), "log_magnitude": float(magnitude.detach())}


def vocoder_loss(model: UnivNetGenerator, batch: VocoderBatch) -> tuple[torch.Tensor, dict[str, float]]:
    predicted = model(batch.mels, batch.noise)[:, 0]  # (B, S * 256)
    return stft_loss(predicted, batch.wavs)
