"""The HiFiGAN decoder on tiny random weights: output lengths, the speaker vector's batch, bad shapes."""

from __future__ import annotations

import pytest
import torch

from tortoise_lab.models.hifigan import HifiganConfig, HifiganDecoder, frames_for_latents

CONFIG = HifiganConfig.from_name("tiny")


@pytest.fixture(scope="module")
def model() -> HifiganDecoder:
    torch.manual_seed(0)
    return HifiganDecoder(CONFIG).eval()


@pytest.mark.parametrize("length", [1, 5, 40])
@torch.no_grad()
def test_inference_length_follows_the_latents(model, length):
    wav = model.inference(torch.randn(1, length, CONFIG.in_channels), torch.randn(1, CONFIG.cond_channels))
    assert wav.shape == (1, 1, frames_for_latents(length) * CONFIG.hop_length)
    assert wav.abs().max() <= 1


@torch.no_grad()
def test_one_speaker_vector_serves_the_whole_batch(model):
    latents = torch.randn(3, 6, CONFIG.in_channels)
    speaker = torch.randn(1, CONFIG.cond_channels)
    shared = model.inference(latents, speaker)
    torch.testing.assert_close(model.inference(latents, speaker.expand(3, -1)), shared, rtol=0, atol=1e-6)
    # Each take may have its own speaker: the first take with the shared speaker is unchanged by the others'.
    own = model.inference(latents, torch.cat([speaker, torch.randn(2, CONFIG.cond_channels)]))
    torch.testing.assert_close(own[:1], shared[:1], rtol=0, atol=1e-6)
    assert not torch.allclose(own[1:], shared[1:])


def test_a_speaker_of_the_wrong_shape_is_refused(model):
    with pytest.raises(ValueError, match=r"speaker must be \(1 or 2, 32\), not \(3, 32\)"):
        model.inference(torch.randn(2, 4, CONFIG.in_channels), torch.randn(3, CONFIG.cond_channels))


def test_unknown_size_names_the_allowed_ones():
    with pytest.raises(ValueError, match="Available: tortoise-v2, tiny"):
        HifiganConfig.from_name("small")
