"""Conditioning latents from real voice clips, end to end (audio -> mels -> both encoders), against upstream."""

import dataclasses

import pytest
import torch

from tortoise_lab.assets import builtin_voices_dir
from tortoise_lab.audio import INPUT_SAMPLE_RATE, load_audio
from tortoise_lab.checkpoints import load_weights
from tortoise_lab.stages.conditioning import conditioning_latents, crop_starts
from tortoise_lab.models.diffusion import DiffusionConfig, DiffusionDecoder
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice

pytestmark = pytest.mark.parity

GPT_SIZE = dict(layers=2, model_dim=64, heads=4, max_text_tokens=30, max_mel_tokens=40, max_conditioning_inputs=2)
DIFFUSION = DiffusionConfig.from_name("tiny")


@pytest.fixture(scope="module")
def voice_clips():
    """Two real speech clips of a built-in voice, one of them padded past 6 s so it gets cropped."""
    folder = builtin_voices_dir() / "tom"
    clips = [load_audio(path, INPUT_SAMPLE_RATE) for path in sorted(folder.glob("*.wav"))[:2]]
    clips[1] = torch.cat([clips[1], clips[1]], dim=-1)  # longer than the 6 s window
    assert clips[1].shape[-1] > 132_300
    return clips


def test_conditioning_latents_equal_upstream(reference, voice_clips):
    generator = torch.Generator().manual_seed(4)
    starts = crop_starts(voice_clips, torch.Generator().manual_seed(4))
    assert starts[1] > 0  # the long clip really is cropped somewhere inside
    ref, work = reference.run(
        "ref_conditioning.py",
        {"gpt": dict(GPT_SIZE, number_text_tokens=255, start_text_token=255),
         "diffusion": dataclasses.asdict(DIFFUSION), "seed": 2, "starts": starts},
        {f"clip_{i}": clip for i, clip in enumerate(voice_clips)},
    )
    gpt = load_weights(UnifiedVoice(GPTConfig(**GPT_SIZE)).eval(), work / "autoregressive.pth", "autoregressive")
    diffusion = load_weights(DiffusionDecoder(DIFFUSION).eval(), work / "diffusion_decoder.pth", "diffusion")
    ours = conditioning_latents(voice_clips, gpt, diffusion, generator=generator)
    # The conditioning mel is bit-exact; the UnivNet mel differs by up to 5e-5 (STFT implementations).
    torch.testing.assert_close(ours.autoregressive, ref["autoregressive"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.diffusion, ref["diffusion"], rtol=1e-4, atol=1e-4)
