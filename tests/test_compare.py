"""The audio comparison measures, on real speech with known transformations; the alignment against the full DTW it
replaced; the MCD against its definition; five-minute inputs within a memory bound."""

import json
import math
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from tortoise_lab.audio import OUTPUT_SAMPLE_RATE, load_audio, save_audio, univnet_mel
from tortoise_lab.tools import compare
from tortoise_lab.tools.compare import (ALL_PASS_ALPHA, MIN_BAND_FRAMES, band_radius, compare_waveforms, dtw_path,
                                        feature_dtw_path, mel_cepstral_distortion, plot_comparison, sp2mc,
                                        warped_cepstra)
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
    cost = np.array([[0, 5, 5], [5, 0, 5], [5, 0, 5], [5, 5, 0]], dtype=float)
    assert dtw_path(cost) == [(0, 0), (1, 1), (2, 1), (3, 2)]


def test_plot_writes_an_image(speech, tmp_path):
    a, b = speech
    figure = plot_comparison(a, b, tmp_path / "cmp.png", labels=("baseline", "option"))
    assert (tmp_path / "cmp.png").stat().st_size > 10_000 and len(figure.axes) >= 3


# ------------------------------------------------------------------------------------------------ alignment


def old_full_dtw(cost):
    """The DTW compare used before the banded one (kept here as the reference): full matrix, Python loops."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        row = cost[i - 1]
        for j in range(1, m + 1):
            total[i, j] = row[j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = np.argmin([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]])
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


def float32_distances(a, b):
    """(N, M) Euclidean distances computed as ``feature_dtw_path`` computes them (float32, summed over features in
    order), so the reference DTW sees the very same numbers."""
    a_t, b_t = a.T.astype(np.float32), b.T.astype(np.float32)  # (D, N), (D, M)
    difference = a_t[:, :, None] - b_t[:, None, :]  # (D, N, M)
    return np.sqrt((difference * difference).sum(0)).astype(np.float64)


def test_dtw_path_is_the_old_full_dtw():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n, m = (int(x) for x in rng.integers(1, 30, 2))
        # small integers make many ties, so the tie-breaking (diagonal, then up, then left) is checked too
        cost = rng.integers(0, 3, (n, m)).astype(float) if trial % 2 else rng.random((n, m))
        assert dtw_path(cost) == old_full_dtw(cost), (n, m)


def test_banded_dtw_of_short_inputs_is_the_old_full_dtw():
    assert band_radius(MIN_BAND_FRAMES, MIN_BAND_FRAMES - 7) >= MIN_BAND_FRAMES  # the band covers such inputs
    rng = np.random.default_rng(1)
    for trial in range(40):
        n, m = (int(x) for x in rng.integers(1, 40, 2))
        scale = 3 if trial % 2 else None  # integer features: equal distances, ties again
        a, b = ((rng.integers(0, scale, (k, 4)) if scale else rng.normal(size=(k, 24))).astype(float) for k in (n, m))
        assert feature_dtw_path(a, b) == old_full_dtw(float32_distances(a, b)), (n, m)


def test_band_keeps_the_path_near_the_diagonal_and_finds_a_stretched_copy():
    rng = np.random.default_rng(2)
    a = np.cumsum(rng.normal(size=(1200, 8)), axis=0)  # a smooth random trajectory, 1200 frames
    b = a[np.minimum((np.arange(1400) * 1200 / 1400 + 15 * np.sin(np.arange(1400) / 90)).astype(int), 1199)]
    radius = 100
    path = feature_dtw_path(a, b, radius=radius)
    i, j = np.array(path).T
    assert path[0] == (0, 0) and path[-1] == (1199, 1399)
    assert set(zip(np.diff(i), np.diff(j))) <= {(1, 1), (1, 0), (0, 1)}
    assert np.all(np.abs(j - i * 1399 / 1199) <= radius + 1)
    assert path == dtw_path(float32_distances(a, b))  # the best path lies in the band: the full DTW's


def test_dtw_memory_is_linear_in_the_length():
    """Peak numpy memory of the banded DTW at a fixed radius, for inputs of L and 2 L frames (tracemalloc)."""
    rng = np.random.default_rng(3)
    peaks = []
    for frames in (3000, 6000):
        a, b = rng.normal(size=(frames, 24)), rng.normal(size=(frames + 100, 24))
        tracemalloc.start()
        feature_dtw_path(a, b, radius=150)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    cells = 6000 * (2 * 150 + 1)
    assert peaks[1] < 2.3 * peaks[0]  # quadratic growth would give 4x
    assert peaks[1] < 2 * cells + 200 * 6000  # a byte per band cell, plus some float64s per frame


# -------------------------------------------------------------------------------------------- the MCD itself


def test_sp2mc_recovers_a_known_mel_cepstrum():
    """A spectrum made from a mel-cepstrum on the all-pass-warped frequency axis gives that mel-cepstrum back."""
    rng = np.random.default_rng(4)
    omega = np.linspace(0, np.pi, 513)
    for alpha in (0.0, ALL_PASS_ALPHA):
        warped = omega + 2 * np.arctan(alpha * np.sin(omega) / (1 - alpha * np.cos(omega)))  # the all-pass phase
        mel_cepstrum = rng.normal(size=25) / (1 + np.arange(25)) ** 1.5  # decaying, like speech envelopes
        log_amplitude = np.cos(np.outer(warped, np.arange(25))) @ mel_cepstrum  # (513,)
        assert np.allclose(sp2mc(np.exp(2 * log_amplitude), alpha=alpha), mel_cepstrum, atol=1e-6)


def test_spectra_piece_by_piece_are_the_whole_signals(speech, monkeypatch):
    a, _ = speech  # 3 s: 282 frames
    monkeypatch.setattr(compare, "_PIECE_FRAMES", 50)
    for samples in (a.shape[1], 50 * 256, 50 * 256 + 1, 100 * 256 - 3, 101 * 256 + 700):
        mel, cepstra = compare._mel_and_cepstra(a[:, :samples])
        # Equal up to fp32 rounding: the FFT of a piece may round its last bit differently from the whole's (seen
        # on an AVX-512 CPU: at most 1e-6 in log mel; bit-equal on AVX2). A misplaced frame would differ by ~1.
        assert torch.allclose(mel, univnet_mel(a[:, :samples]), rtol=0, atol=1e-5)
        assert np.allclose(cepstra, warped_cepstra(a[:, :samples]), rtol=0, atol=1e-9)


def _espeak(voice: str, text: str, folder) -> torch.Tensor:
    path = folder / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path, OUTPUT_SAMPLE_RATE)  # espeak-ng speaks at 22.05 kHz: resampled to 24 kHz


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@needs_espeak
def test_mcd_of_two_voices_is_in_the_published_range_and_above_noise(tmp_path):
    text = "The quick brown fox jumps over the lazy dog while the rain falls softly on the quiet village."
    male, female = _espeak("en-us+m3", text, tmp_path), _espeak("en-us+f3", text, tmp_path)
    noise = torch.randn(male.shape, generator=torch.Generator().manual_seed(0))
    noisy = male + noise * male.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() * 10 ** (-50 / 20)  # 50 dB SNR
    voices = mel_cepstral_distortion(male, female)
    with_noise = mel_cepstral_distortion(male, noisy)
    assert mel_cepstral_distortion(male, male.clone()) == 0
    # Measured: m3 vs f3 10.3 dB (SPTK's own iterative mcep analysis of the same frames: 11.4 dB); with noise 50 dB
    # below: 2.3 dB (40 dB below: 4.1 dB; MCD weighs quiet frames fully, which white noise fills).
    assert 6 < voices < 15
    assert with_noise < voices / 2
    assert compare_waveforms(male, female).mcd_db == pytest.approx(voices)


# ---------------------------------------------------------------------------------------- five-minute inputs

MEMORY_BOUND_MB = 400  # measured: ~100 MB comparing the 5-minute pair, ~250 MB for the command (reading included)
_MEASURE = r"""
import json, resource, sys
from tortoise_lab.audio import OUTPUT_SAMPLE_RATE, load_audio
from tortoise_lab.cli import main
from tortoise_lab.tools.compare import compare_waveforms

def rss_mb(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) / 1024

def growth(run):  # (peak resident MB while run() runs, above the resident MB before it; run()'s result)
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets the peak (VmHWM) to the present size
        peak = lambda: rss_mb("VmHWM")
    except OSError:  # no reset here: the peak since the start, an upper bound
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = rss_mb("VmRSS")
    result = run()
    return peak() - before, result

face, a_path, b_path, json_path = sys.argv[1:5]
if face == "api":  # the two waveforms are the inputs; comparing them is measured
    a, b = (load_audio(path, OUTPUT_SAMPLE_RATE) for path in (a_path, b_path))
    grown, comparison = growth(lambda: compare_waveforms(a, b))
    mcd, code = comparison.mcd_db, 0
else:  # the whole command: reading the files, comparing, printing, writing the JSON
    grown, code = growth(lambda: main(["compare", a_path, b_path, "--json", json_path]))
    mcd = json.load(open(json_path))["mcd_db"]
print(json.dumps({"grown_mb": grown, "mcd_db": mcd, "code": code}))
"""


@pytest.mark.slow
@needs_espeak
def test_five_minute_files_compare_within_a_memory_bound(tmp_path):
    sentences = ["The quick brown fox jumps over the lazy dog.",
                 "Please call Stella and ask her to bring these things with her from the store.",
                 "Six spoons of fresh snow peas, five thick slabs of blue cheese, and a snack for her brother."]
    text = " ".join(sentences * 22)  # 4.9 min at 160 words a minute, 4.5 at 175
    paths = []
    for voice, speed in (("en-us+m3", 160), ("en-us+f3", 175)):  # one text, two voices, two tempi
        paths.append(tmp_path / f"{voice}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(paths[-1]), text], check=True)
        speech = load_audio(paths[-1], OUTPUT_SAMPLE_RATE)  # (1, N) at 24 kHz
        five_minutes = torch.zeros(1, 300 * OUTPUT_SAMPLE_RATE)  # cut, or padded with silence, to exactly 5 min
        five_minutes[:, :speech.shape[1]] = speech[:, :five_minutes.shape[1]]
        save_audio(paths[-1], five_minutes, OUTPUT_SAMPLE_RATE)
    for face in ("api", "cli"):  # each in a fresh process: memory freed by one run would hide the next run's growth
        done = subprocess.run([sys.executable, "-c", _MEASURE, face, *map(str, paths), str(tmp_path / "cmp.json")],
                              capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == 0, done.stderr[-3000:]
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        print(face, measured)
        assert measured["code"] == 0 and measured["grown_mb"] < MEMORY_BOUND_MB, (face, measured)
        assert 4 < measured["mcd_db"] < 15  # the same text by two voices (measured 10.2 dB)
    assert json.loads((tmp_path / "cmp.json").read_text())["duration_a_s"] == 300
