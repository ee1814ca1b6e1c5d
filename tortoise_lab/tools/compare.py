"""Put numbers on how two renderings of speech differ.

* ``log_mel_distance``: RMS over bands of the log-mel difference, averaged over frames (natural-log units) — on
  the frames both share, without alignment: it is zero only when the spectra are the same frame by frame.
* ``mel_cepstral_distortion``: MCD in dB between mel cepstra (coefficients 1..24, c0 = loudness left out) after
  dynamic time warping, so two takes that say the same thing at different speeds can still score low.
* ``duration difference`` in seconds, and ``snr_db`` of b against a where both have the same length (identical
  audio gives infinity).

All measures work on 24 kHz mono; other rates are resampled first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from tortoise_lab.audio import HOP_LENGTH, OUTPUT_SAMPLE_RATE, load_audio, univnet_mel

__all__ = ["Comparison", "compare_waveforms", "compare_files", "log_mel_distance", "mel_cepstra",
           "mel_cepstral_distortion", "dtw_path", "snr_db", "plot_comparison", "plot_spectrogram"]

MCD_COEFFICIENTS = 24  # mel-cepstral coefficients compared (1..24)
MCD_SCALE = 10 / math.log(10) * math.sqrt(2)  # the customary dB scaling of cepstral distance
SILENCE_FLOOR = -11.0  # log-mel frames whose loudest band is below this are silence, left out of the MCD


@dataclass(frozen=True)
class Comparison:
    log_mel_distance: float
    mcd_db: float
    duration_a_s: float
    duration_b_s: float
    duration_difference_s: float
    snr_db: float | None  # None when the lengths differ (not sample-aligned)
    identical: bool

    def to_dict(self) -> dict:
        values = asdict(self)
        if values["snr_db"] is not None and math.isinf(values["snr_db"]):
            values["snr_db"] = "inf"
        return values


def _mono_24k(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    wav = wav.reshape(1, -1).float()
    if sample_rate != OUTPUT_SAMPLE_RATE:
        wav = torchaudio.functional.resample(wav, sample_rate, OUTPUT_SAMPLE_RATE)
    return wav


def log_mel_distance(mel_a: torch.Tensor, mel_b: torch.Tensor) -> float:
    """Mean over shared frames of the RMS (over bands) log-mel difference; mels (bands, frames)."""
    frames = min(mel_a.shape[-1], mel_b.shape[-1])
    if frames == 0:
        return float("nan")
    difference = mel_a[:, :frames] - mel_b[:, :frames]
    return float(difference.pow(2).mean(dim=0).sqrt().mean())


def mel_cepstra(mel: torch.Tensor) -> np.ndarray:
    """Mel cepstrum (DCT-II of the log mel) of the non-silent frames: (bands, frames) -> (frames', 24)."""
    voiced = mel.max(dim=0).values > SILENCE_FLOOR
    frames = mel[:, voiced].T.double().numpy()  # (T, bands)
    bands = frames.shape[1]
    n = np.arange(bands)
    k = np.arange(1, MCD_COEFFICIENTS + 1)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * bands)) * math.sqrt(2 / bands)  # orthonormal DCT-II rows 1..24
    return frames @ basis.T


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """The cheapest monotonic alignment through a (N, M) cost matrix (steps right, down, diagonal)."""
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


def mel_cepstral_distortion(mel_a: torch.Tensor, mel_b: torch.Tensor) -> float:
    """MCD in dB after DTW between the mel cepstra of two log mels."""
    ceps_a, ceps_b = mel_cepstra(mel_a), mel_cepstra(mel_b)
    if len(ceps_a) == 0 or len(ceps_b) == 0:
        return float("nan")
    cost = np.sqrt(((ceps_a[:, None, :] - ceps_b[None, :, :]) ** 2).sum(-1))  # (N, M) Euclidean distances
    path = dtw_path(cost)
    return float(MCD_SCALE * np.mean([cost[i, j] for i, j in path]))


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float | None:
    """Signal-to-noise ratio of ``other`` against ``reference`` (same length), in dB; None if lengths differ."""
    if reference.shape != other.shape:
        return None
    noise = (reference - other).pow(2).sum()
    if noise == 0:
        return float("inf")
    return float(10 * torch.log10(reference.pow(2).sum() / noise))


def compare_waveforms(a: torch.Tensor, b: torch.Tensor, sample_rate: int = OUTPUT_SAMPLE_RATE,
                      sample_rate_b: int | None = None) -> Comparison:
    """All measures between two waveforms ((N,) or (1, N))."""
    a, b = _mono_24k(a, sample_rate), _mono_24k(b, sample_rate_b or sample_rate)
    mel_a, mel_b = univnet_mel(a), univnet_mel(b)
    duration_a, duration_b = a.shape[-1] / OUTPUT_SAMPLE_RATE, b.shape[-1] / OUTPUT_SAMPLE_RATE
    return Comparison(
        log_mel_distance=log_mel_distance(mel_a, mel_b),
        mcd_db=mel_cepstral_distortion(mel_a, mel_b),
        duration_a_s=duration_a,
        duration_b_s=duration_b,
        duration_difference_s=duration_b - duration_a,
        snr_db=snr_db(a, b),
        identical=bool(a.shape == b.shape and torch.equal(a, b)),
    )


def compare_files(path_a: str | Path, path_b: str | Path) -> Comparison:
    return compare_waveforms(load_audio(path_a, OUTPUT_SAMPLE_RATE), load_audio(path_b, OUTPUT_SAMPLE_RATE))


def _pyplot(headless: bool):
    import matplotlib

    if headless:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


SECONDS_PER_FRAME = HOP_LENGTH / OUTPUT_SAMPLE_RATE


def _show_mel(axis, mel: torch.Tensor, title: str, **imshow):
    """One (bands, frames) image on ``axis``, seconds along x; returns the image for a colour bar."""
    image = axis.imshow(mel.numpy(), origin="lower", aspect="auto",
                        extent=(0, mel.shape[-1] * SECONDS_PER_FRAME, 0, mel.shape[0]), **imshow)
    axis.set(title=title, ylabel="mel band")
    return image


def plot_spectrogram(wav: torch.Tensor, sample_rate: int = OUTPUT_SAMPLE_RATE, title: str = "log mel", axis=None,
                     path: str | Path | None = None):
    """The 100-band log mel (the diffusion decoder's and vocoder's mel) of ``wav`` (1, N) or (N,), on ``axis`` or
    on a new figure; saved to ``path`` if given. Returns the figure."""
    plt = _pyplot(headless=path is not None and axis is None)
    if axis is None:
        figure, axis = plt.subplots(figsize=(10, 3), constrained_layout=True)
    else:
        figure = axis.figure
    mel = univnet_mel(_mono_24k(wav.reshape(1, -1), sample_rate))
    image = _show_mel(axis, mel, title, cmap="magma")
    axis.set(xlabel="seconds")
    figure.colorbar(image, ax=axis)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    return figure


def plot_comparison(a: torch.Tensor, b: torch.Tensor, path: str | Path | None = None, labels=("a", "b"),
                    sample_rate: int = OUTPUT_SAMPLE_RATE):
    """Both log-mel spectrograms and their difference, one above the other; saved to ``path`` if given.
    Returns the matplotlib figure."""
    plt = _pyplot(headless=path is not None)
    mel_a, mel_b = univnet_mel(_mono_24k(a, sample_rate)), univnet_mel(_mono_24k(b, sample_rate))
    frames = min(mel_a.shape[-1], mel_b.shape[-1])
    difference = (mel_b[:, :frames] - mel_a[:, :frames])
    figure, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, constrained_layout=True)
    for axis, mel, title in ((axes[0], mel_a, labels[0]), (axes[1], mel_b, labels[1])):
        figure.colorbar(_show_mel(axis, mel, f"{title}: log mel", cmap="magma"), ax=axis)
    limit = max(float(difference.abs().max()) if difference.numel() else 0.0, 1e-6)
    image = _show_mel(axes[2], difference, f"{labels[1]} - {labels[0]}", cmap="coolwarm", vmin=-limit, vmax=limit)
    axes[2].set(xlabel="seconds")
    figure.colorbar(image, ax=axes[2])
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    return figure
