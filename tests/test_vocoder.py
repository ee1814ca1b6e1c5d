"""Behaviour of the UnivNet vocoder, its location-variable convolution and the weight-norm fold (no reference)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tortoise_lab.checkpoints import CheckpointFormat, to_our_keys
from tortoise_lab.models.vocoder import (
    PAD_FRAMES,
    UnivNetGenerator,
    VocoderConfig,
    location_variable_convolution,
)

CONFIG = VocoderConfig.from_name("tiny")
BATCH, FRAMES = 2, 5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UnivNetGenerator(CONFIG).eval()


def test_presets():
    assert VocoderConfig.from_name("tortoise-v2").hop_length == 256  # 24 kHz audio, 256 samples per mel frame
    with pytest.raises(ValueError, match="tiny"):
        VocoderConfig.from_name("univnet-c32")


@torch.no_grad()
def test_output_length_is_hop_times_frames(model):
    mel = torch.randn(BATCH, CONFIG.n_mel_channels, FRAMES)
    wav = model(mel, torch.randn(BATCH, CONFIG.noise_dim, FRAMES))
    assert wav.shape == (BATCH, 1, FRAMES * CONFIG.hop_length)
    assert model.inference(mel, torch.Generator().manual_seed(0)).shape == wav.shape


@torch.no_grad()
def test_inference_is_seeded_and_clamped(model):
    mel = torch.randn(BATCH, CONFIG.n_mel_channels, FRAMES) * 3
    first = model.inference(mel, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, model.inference(mel, torch.Generator().manual_seed(3)), rtol=0, atol=0)
    assert not torch.equal(first, model.inference(mel, torch.Generator().manual_seed(4)))
    assert first.abs().max() <= 1
    # The generator's noise covers the padded mel: the same as passing that noise explicitly.
    noise = torch.randn(BATCH, CONFIG.noise_dim, FRAMES + PAD_FRAMES, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, model.inference(mel, noise=noise), rtol=0, atol=0)


def _naive_lvc(x, kernels, bias, hop):
    """Frame by frame: F.conv1d of each hop-long stretch (with its neighbours' samples as context)."""
    padding = (kernels.shape[3] - 1) // 2
    padded = F.pad(x, (padding, padding))
    outs = []
    for frame in range(kernels.shape[-1]):
        window = padded[:, :, frame * hop : (frame + 1) * hop + 2 * padding]
        per_batch = [
            F.conv1d(window[b : b + 1], kernels[b, :, :, :, frame].transpose(0, 1), bias[b, :, frame])
            for b in range(x.shape[0])
        ]
        outs.append(torch.cat(per_batch))
    return torch.cat(outs, dim=2)


def test_location_variable_convolution_matches_framewise_conv():
    generator = torch.Generator().manual_seed(1)
    batch, c_in, c_out, k, frames, hop = 2, 3, 4, 3, 5, 6
    x = torch.randn(batch, c_in, frames * hop, generator=generator)
    kernels = torch.randn(batch, c_in, c_out, k, frames, generator=generator)
    bias = torch.randn(batch, c_out, frames, generator=generator)
    torch.testing.assert_close(
        location_variable_convolution(x, kernels, bias, hop), _naive_lvc(x, kernels, bias, hop), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="frames"):
        location_variable_convolution(x[..., :-1], kernels, bias, hop)


@pytest.mark.parametrize(
    "make", [lambda: nn.Conv1d(3, 5, 4), lambda: nn.ConvTranspose1d(3, 5, 4, stride=2)], ids=["conv", "conv_transpose"]
)
def test_fold_weight_norm_matches_weight_normed_layer(make):
    """The fold uses torch's dim-0 convention for every layer type (for ConvTranspose1d, dim 0 is the input)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        normed = nn.Sequential(nn.utils.weight_norm(make()))  # keys "0.weight_g", as in a real model
    with torch.no_grad():
        normed[0].weight_g.normal_()  # not the norm of weight_v, so the fold has work to do
    x = torch.randn(2, 3, 7)
    plain = nn.Sequential(make())
    plain.load_state_dict(to_our_keys(CheckpointFormat("x.pth", fold_weight_norm=True), normed.state_dict()))
    torch.testing.assert_close(plain(x), normed(x), rtol=0, atol=0)
