"""The audio comparison measures, on real speech with known transformations."""

import math

import pytest
import torch
import torchaudio

from tortoise_lab.audio import OUTPUT_SAMPLE_RATE, load_audio
from tortoise_lab.tools.compare import compare_waveforms, dtw_path, plot_comparison
from tortoise_lab.voices import available_voices


@pytest.fixture(scope="module")
def speech():
    folder = available_voices()["tom"]
    a, b = (load_audio(p, OUTPUT_SAMPLE_RATE)[:, : 3 * OUTPUT_SAMPLE_RATE] for p in sorted(folder.glob("*.wav"))[:2])
    return a, b


def test_identical_audio_scores_zero(speech):
    a, _ = speech
    result = compare_waveforms(a, a.clone())
    assert result.identical and result.log_mel_distance == 0 and result.mcd_db == 0
    assert math.isinf(result.snr_db) and result.duration_difference_s == 0


def test_snr_of_added_noise(speech):
    a, _ = speech
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(0))
    noise = noise * (a.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt()) * 10 ** (-20 / 20)  # 20 dB below
    result = compare_waveforms(a, a + noise)
    assert result.snr_db == pytest.approx(20.0, abs=0.01)
    assert not result.identical and result.log_mel_distance > 0


def test_mcd_forgives_tempo_but_not_content(speech):
    a, other = speech
    slower = torchaudio.functional.resample(a, 90, 100)  # 11 % longer (and a little lower in pitch)
    same_words = compare_waveforms(a, slower)
    different_words = compare_waveforms(a, other)
    assert same_words.snr_db is None  # not sample-aligned
    assert same_words.duration_difference_s == pytest.approx(3 / 9, abs=0.01)
    assert same_words.mcd_db < different_words.mcd_db


def test_dtw_path_on_a_known_cost():
    import numpy as np

    cost = np.array([[0, 5, 5], [5, 0, 5], [5, 0, 5], [5, 5, 0]], dtype=float)
    assert dtw_path(cost) == [(0, 0), (1, 1), (2, 1), (3, 2)]


def test_plot_writes_an_image(speech, tmp_path):
    a, b = speech
    figure = plot_comparison(a, b, tmp_path / "cmp.png", labels=("baseline", "option"))
    assert (tmp_path / "cmp.png").stat().st_size > 10_000 and len(figure.axes) >= 3
