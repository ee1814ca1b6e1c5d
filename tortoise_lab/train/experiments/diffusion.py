"""Training a diffusion decoder on the AR model's latents, in the role TorToiSe's ``DiffusionTts`` plays.

Each example is a crop of one training utterance:

* its AR latents: the frozen AR model run teacher-forced on the utterance's own codes (``UnifiedVoice.latents``,
  conditioned on the clips the evaluation uses), one 256-wide vector per code;
* the matching mel: ``stack`` frames per code of the utterance's 100-band UnivNet log mel, normalised to [-1, 1]
  as the official decoder's output is (``normalize_univnet_mel``);
* a diffusion conditioning mel (``diffusion_conditioning_mel``) of another clip of the same voice.

The loss is the "simple" DDPM objective: draw a timestep of the official 4000-step linear schedule, noise the mel
to it, and regress the network's noise prediction (channels 0..99) onto the noise (MSE). With probability
``unconditioned_rate`` an example gets the learned unconditioned embedding instead of its latents, so
conditioning-free guidance has something to contrast with. The variance half of the output (channels 100..199)
is not trained, so sample with DDIM or DPM++(2M), which use the noise prediction only (``sample_mel``).

Batches are a pure function of (seed, step), so ``train_loop`` resumes bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tortoise_lab.audio import diffusion_conditioning_mel, denormalize_univnet_mel, normalize_univnet_mel
from tortoise_lab.stages.diffusion_sampler import TRAINED_STEPS, linear_betas, sample
from tortoise_lab.models.diffusion import DiffusionConfig, DiffusionDecoder
from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.models.quantizer import SILENCE_LOG_MEL, code_mel
from tortoise_lab.text import Tokenizer
from tortoise_lab.train.loop import step_generator

__all__ = ["DiffusionTrainConfig", "DiffusionData", "DiffusionBatch", "prepare_diffusion_data", "diffusion_loss",
           "diffusion_conditioning_pool", "init_for_training", "ar_latents", "sample_mel"]

# The schedule the decoder is trained on: the official one (``diffusion_sampler`` samples from the same).
ALPHAS_CUMPROD = torch.from_numpy(np.cumprod(1.0 - linear_betas(TRAINED_STEPS))).float()  # (4000,)


@dataclass
class DiffusionTrainConfig:
    """A tiny ``DiffusionDecoder`` (the official structure, narrow and shallow) and how it is trained."""

    model_channels: int = 128
    num_layers: int = 4
    num_heads: int = 4
    utterances: int = 4_000  # training utterances whose latents and mels are held in memory (~0.1 MB each)
    crop_codes: int = 32  # codes per training crop: 128 mel frames, 1.4 s
    batch_size: int = 16
    unconditioned_rate: float = 0.1  # share of examples trained without conditioning (for guidance)
    pool_size: int = 16  # diffusion conditioning clips kept per voice

    def model_config(self, latent_channels: int, codes: int) -> DiffusionConfig:
        # in_tokens: the (unused here) code-conditioned path's vocabulary, the quantiser's codes + stop.
        return DiffusionConfig(model_channels=self.model_channels, num_layers=self.num_layers,
                               in_latent_channels=latent_channels, in_tokens=codes + 1, num_heads=self.num_heads)


@torch.no_grad()
def init_for_training(model: DiffusionDecoder) -> DiffusionDecoder:
    """Zero the last layer of every residual branch (ResBlock output convs, attention ``proj_out``) and the output
    conv, so the fresh network starts as identity blocks predicting zero noise: the initialisation of the
    guided-diffusion lineage TorToiSe's decoder comes from (its attention blocks ship so). Measured at 64 channels,
    2 layers: loss 0.69 after 135 steps against 0.76 from the default initialisation."""
    from tortoise_lab.models.diffusion import ResBlock
    from tortoise_lab.models.layers import AttentionBlock

    last_layers = [model.out[-1]]
    for module in model.modules():
        if isinstance(module, ResBlock):
            last_layers.append(module.out_layers[-1])
        elif isinstance(module, AttentionBlock):
            last_layers.append(module.proj_out)
    for layer in last_layers:
        layer.weight.zero_()
        layer.bias.zero_()
    return model


@torch.no_grad()
def ar_latents(gpt: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
               codes: torch.Tensor) -> torch.Tensor:
    """The diffusion decoder's input for one utterance: cond_latent (1, C), text_tokens (1, T), codes (L,) ->
    (1, L, C) latents, exactly as the pipeline computes them for generated codes."""
    return gpt.latents(cond_latent, text_tokens, codes.long().unsqueeze(0))


@dataclass
class DiffusionBatch:
    latents: torch.Tensor  # (B, crop, C)
    mels: torch.Tensor  # (B, 100, crop * stack) normalised to [-1, 1]
    cond_mels: torch.Tensor  # (B, 1, 100, 401) diffusion conditioning mels (log, not normalised)
    timesteps: torch.Tensor  # (B,) long, 0..3999
    noise: torch.Tensor  # (B, 100, crop * stack)
    unconditioned: torch.Tensor  # (B,) bool


@dataclass
class DiffusionData:
    latents: list[torch.Tensor]  # per utterance (L, C), fp16
    mels: list[torch.Tensor]  # per utterance (100, L * stack) normalised, fp16
    voice_ids: list[int]
    cond_pool: dict[int, torch.Tensor]  # voice -> (P, 100, 401) fp16
    config: DiffusionTrainConfig
    stack: int
    seed: int = 0

    def __post_init__(self):
        self.eligible = [i for i, lat in enumerate(self.latents) if len(lat) >= self.config.crop_codes]
        if not self.eligible:
            raise ValueError(f"No utterance has {self.config.crop_codes} codes; lower crop_codes.")

    def batch(self, step: int) -> DiffusionBatch:
        """The batch of ``step``: a pure function of (seed, step)."""
        config, crop = self.config, self.config.crop_codes
        generator = step_generator(self.seed, step)
        picks = torch.randint(len(self.eligible), (config.batch_size,), generator=generator).tolist()
        latents, mels, conds = [], [], []
        for pick in picks:
            index = self.eligible[pick]
            start = int(torch.randint(len(self.latents[index]) - crop + 1, (1,), generator=generator))
            latents.append(self.latents[index][start:start + crop].float())
            mels.append(self.mels[index][:, start * self.stack:(start + crop) * self.stack].float())
            pool = self.cond_pool[self.voice_ids[index]]
            conds.append(pool[int(torch.randint(len(pool), (1,), generator=generator))].float())
        mels = torch.stack(mels)
        return DiffusionBatch(
            latents=torch.stack(latents), mels=mels, cond_mels=torch.stack(conds).unsqueeze(1),
            timesteps=torch.randint(TRAINED_STEPS, (config.batch_size,), generator=generator),
            noise=torch.randn(mels.shape, generator=generator),
            unconditioned=torch.rand(config.batch_size, generator=generator) < config.unconditioned_rate)


def _stacked_mel(wav: torch.Tensor, length: int, stack: int) -> torch.Tensor:
    """(100, length * stack) log mel of a 22.05 kHz rendering: the frames its ``length`` codes stand for (the
    tail padded with silence, as the quantiser pads it)."""
    mel = code_mel(wav)
    frames = length * stack
    if mel.shape[1] < frames:
        mel = torch.cat([mel, mel.new_full((mel.shape[0], frames - mel.shape[1]), SILENCE_LOG_MEL)], dim=1)
    return mel[:, :frames]


def prepare_diffusion_data(gpt: UnifiedVoice, corpus, indices: list[int], codes: list[torch.Tensor],
                           cond_latents: dict[int, torch.Tensor], config: DiffusionTrainConfig, stack: int,
                           seed: int = 0, tokenizer: Tokenizer | None = None, progress: bool = False) -> DiffusionData:
    """Latents and mels of ``config.utterances`` of ``indices`` (a seeded sample), with their ``codes``.

    cond_latents: voice -> (1, C) the AR model's conditioning latent for that voice (the evaluation's clips).
    The conditioning pool is the diffusion conditioning mels of each voice's first ``pool_size`` utterances.
    """
    from tqdm.auto import tqdm

    tokenizer = tokenizer or Tokenizer()
    generator = torch.Generator().manual_seed(seed)
    chosen = sorted(torch.randperm(len(indices), generator=generator)[:config.utterances].tolist())
    latents, mels, voices = [], [], []
    gpt.eval()
    for k in tqdm(chosen, desc="AR latents", disable=not progress):
        index = indices[k]
        voice = corpus.voice_ids[index]
        tokens = tokenizer.model_ids(corpus.texts[index]).unsqueeze(0)
        latents.append(ar_latents(gpt, cond_latents[voice], tokens, codes[k])[0].half())
        mels.append(normalize_univnet_mel(_stacked_mel(corpus.wav(index), len(codes[k]), stack)).half())
        voices.append(voice)
    pool = diffusion_conditioning_pool(corpus, indices, config.pool_size, sorted(set(voices)))
    return DiffusionData(latents, mels, voices, pool, config, stack, seed)


def diffusion_conditioning_pool(corpus, indices: list[int], pool_size: int, voices: list[int]) -> dict[int, torch.Tensor]:
    """Per voice, the diffusion conditioning mels (P, 100, 401) of its first ``pool_size`` utterances among
    ``indices`` (fp16): the clips the decoder is trained with; evaluation conditions on the first."""
    pool = {}
    for voice in voices:
        mine = [i for i in indices if corpus.voice_ids[i] == voice][:pool_size]
        pool[voice] = torch.stack([diffusion_conditioning_mel(corpus.wav(i)) for i in mine]).half()
    return pool


def diffusion_loss(model: DiffusionDecoder, batch: DiffusionBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE between the added noise and the network's prediction of it, at the batch's timesteps."""
    frames = batch.mels.shape[-1]
    voice = model.conditioning_embedding(batch.cond_mels)  # (B, 2C)
    conditioned = model.timestep_independent(batch.latents, voice, frames)  # (B, C, F)
    free = model.timestep_independent(batch.latents, voice, frames, conditioning_free=True)
    embeddings = torch.where(batch.unconditioned[:, None, None], free, conditioned)
    abar = ALPHAS_CUMPROD[batch.timesteps][:, None, None]  # (B, 1, 1)
    noisy = abar.sqrt() * batch.mels + (1 - abar).sqrt() * batch.noise
    predicted = model(noisy, batch.timesteps, embeddings)[:, :batch.mels.shape[1]]  # (B, 100, F)
    loss = F.mse_loss(predicted, batch.noise)
    return loss, {}


@torch.no_grad()
def sample_mel(model: DiffusionDecoder, latents: torch.Tensor, cond_mels: torch.Tensor, frames: int,
               steps: int = 30, sampler: str = "ddim", cond_free_k: float | None = None,
               seed: int = 0) -> torch.Tensor:
    """A log mel (100, frames) for latents (1, L, C), conditioned on cond_mels (1, clips, 100, 401).

    ``sampler`` must use the noise prediction only ("ddim" or "dpm++2m"): the variance half is untrained.
    """
    if sampler == "ddpm":
        raise ValueError("A decoder trained by tortoise_lab.train.experiments.diffusion has no trained variance: "
                         "sample it with 'ddim' or 'dpm++2m'.")
    model.eval()
    voice = model.conditioning_embedding(cond_mels)
    conditioned = model.timestep_independent(latents, voice, frames)
    free = model.timestep_independent(latents, voice, frames, conditioning_free=True)

    def denoiser(x, timesteps, conditioning_free):
        return model(x, timesteps, free if conditioning_free else conditioned)

    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, model.config.in_channels, frames, generator=generator)
    normalised = sample(denoiser, noise, steps, sampler, cond_free_k=cond_free_k, generator=generator)
    return denormalize_univnet_mel(normalised[0])
