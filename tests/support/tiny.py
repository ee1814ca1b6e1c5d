"""Fixtures shared by the tests that run the whole pipeline on tiny random weights: import them by name
(``from tests.support.tiny import tts, voice``) and pytest finds them in the importing module."""

import pytest
import torch

from tortoise_lab.model_set import random_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.voices import Voice


@pytest.fixture(scope="module")
def tts():
    """The tiny random model set (seed 0), no progress bars."""
    return TextToSpeech(random_models("tiny", seed=0), progress=False)


@pytest.fixture(scope="module")
def voice():
    """A voice of one synthetic 40,000-sample clip (seeded noise)."""
    g = torch.Generator().manual_seed(0)
    return Voice("synthetic", clips=[0.1 * torch.randn(1, 40_000, generator=g)])
