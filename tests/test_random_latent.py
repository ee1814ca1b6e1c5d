"""Behaviour of the random latent converters on random weights (no reference)."""

from __future__ import annotations

import pytest
import torch

from tortoise_lab.models.random_latent import RandomLatentConfig, RandomLatentConverter


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    converter = RandomLatentConverter(RandomLatentConfig.from_name("tiny")).eval()
    with torch.no_grad():
        for p in converter.parameters():
            p.normal_()
    return converter


def test_presets():
    assert RandomLatentConfig.from_name("tortoise-v2-auto").channels == 1024
    assert RandomLatentConfig.from_name("tortoise-v2-diffuser").channels == 2048
    with pytest.raises(ValueError, match="tortoise-v2-auto"):
        RandomLatentConfig.from_name("auto")


@torch.no_grad()
def test_seeded_and_shaped(model):
    width = model.config.channels
    first = model(4, torch.Generator().manual_seed(5))
    assert first.shape == (4, width)
    torch.testing.assert_close(first, model(4, torch.Generator().manual_seed(5)), rtol=0, atol=0)
    assert not torch.equal(first, model(4, torch.Generator().manual_seed(6)))
    noise = torch.randn(4, width, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, model.from_noise(noise), rtol=0, atol=0)
