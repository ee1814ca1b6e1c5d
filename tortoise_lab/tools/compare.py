"""Put numbers on how two renderings of speech differ.

* ``log_mel_distance``: RMS over bands of the log-mel difference, averaged over frames (natural-log units) — on
  the frames both share, without alignment: it is zero only when the spectra are the same frame by frame.
* ``mel_cepstral_distortion`` (``mcd_db``): the mel-cepstral distortion as the field computes it (Kubichek 1993;
  the SPTK / ESPnet recipe). Each frame's power spectrum becomes a mel-cepstrum through SPTK's frequency-warping
  all-pass (``sp2mc``, ``ALL_PASS_ALPHA`` = 0.466: SPTK's best fit to the mel scale at 24 kHz, as 0.42 is at 16 kHz),
  and per aligned frame pair MCD = 10/ln10 * sqrt(2 * sum_{d=1..24} (c_d - c'_d)^2) dB (c0, the loudness, left out),
  averaged over the pairs on the dynamic-time-warping path between the two signals' non-silent frames — so two
  takes that say the same thing at different speeds can still score low. Typical published values between systems
  are 4-10 dB; two espeak-ng voices reading one sentence measure ~10 dB, a voice against itself with noise 50 dB
  below it ~2 dB (tests/test_compare.py).
* ``duration difference`` in seconds, and ``snr_db`` of b against a where both have the same length (identical
  audio gives infinity).
* ``speaker_similarity`` (when asked for): do a and b sound like one speaker? The cosine of their speaker-encoder
  d-vectors (``voices.similarity``, from each file's first minute; 1 for the same recording, ~0.9 for two clips of
  one speaker, ~0.57 on average for two speakers of the built-in voices).

All measures work on 24 kHz mono; other rates are resampled first.

The spectrum fed to ``sp2mc`` is the periodogram of the UnivNet STFT (Hann, 1024 samples = 42.7 ms, hop 256), not
WORLD's pitch-adaptive envelope some recipes use: keeping 24 warped coefficients smooths the harmonics away, and on
the espeak-ng examples this reads within about 10 % (a little lower) of SPTK's own iterative analysis (``mcep``) of
the same frames. ``sp2mc`` here gives pysptk's numbers (to 1e-14) as one matrix product; pysptk itself is not a
dependency (1.0.1 does not import without ``pkg_resources``, which setuptools 82 removed).

The alignment is a Sakoe-Chiba banded DTW (``feature_dtw_path``): only cells within ``band_radius`` frames of the
straight line from (0, 0) to (N-1, M-1) are considered, frame distances are computed one anti-diagonal at a time
(never an (N, M) matrix), and the recursion runs vectorised along anti-diagonals, keeping one byte per band cell for
the way back. Inputs up to ``MIN_BAND_FRAMES`` long are aligned over the whole matrix, exactly as the full DTW
(``dtw_path``) does. Spectra are computed ``_PIECE_FRAMES`` at a time, so memory grows linearly with the length: ~3 KB
a frame (the mel, the cepstra and the band's way back), ~0.3 MB a second.

Measured on the shared 2-core CPU with two espeak-ng readings of one text, 5 minutes each (28 126 frames, ~25 400
and 28 100 non-silent): ``compare_waveforms`` takes 7-10 s and ~100 MB above its inputs (the command, reading the
files included, ~250 MB); the DTW in it 2.0 / 3.0 / 3.6 / 5.7 s for radii of 500 / 1000 / 1500 / 3000 frames, with
the same MCD (10.22 dB), while 250 frames cut the path off (11.41 dB): the radius cap of 1000 keeps a 2x margin. The
full DTW this replaced held an (N, M, 24) float64 array and looped in Python: 17.5 s and 1.4 GB for two 30-second
files (now 1.4 s and 17 MB), ~137 GB for the 5-minute pair. Libraries were ruled out from their documentation,
without installing them: ``librosa.sequence.dtw`` applies its band to a full (N, M) cost matrix (and needs numba),
``dtw-python`` computes the full local-cost matrix before windowing (5.7 GB in float64 for this pair).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torchaudio

from tortoise_lab.audio import HOP_LENGTH, LOG_FLOOR, N_FFT, OUTPUT_SAMPLE_RATE, _magnitudes, load_audio, univnet_mel
from tortoise_lab.files import atomic_path

__all__ = ["Comparison", "compare_waveforms", "compare_files", "log_mel_distance", "mel_cepstra", "sp2mc",
           "warped_cepstra", "mel_cepstral_distortion", "dtw_path", "feature_dtw_path", "band_radius", "snr_db",
           "plot_comparison", "plot_spectrogram"]

MCD_COEFFICIENTS = 24  # mel-cepstral coefficients compared (1..24)
MCD_SCALE = 10 / math.log(10) * math.sqrt(2)  # the customary dB scaling of cepstral distance
ALL_PASS_ALPHA = 0.466  # frequency warping closest to the mel scale at 24 kHz (pysptk.util.mcepalpha(24000))
SILENCE_FLOOR = -11.0  # log-mel frames whose loudest band is below this are silence, left out of the MCD
MIN_BAND_FRAMES = 500  # ~5.3 s: shorter inputs are aligned over the whole matrix (the band covers it)
BAND_FRACTION = 0.1  # longer ones within 10 % of the longer length of the straight diagonal ...
MAX_BAND_FRAMES = 1000  # ... but never more than ~10.7 s off it: memory and time stay linear in the length
_PIECE_FRAMES = 2048  # STFT frames computed at a time (~22 s of audio, ~20 MB of spectrum)


@dataclass(frozen=True)
class Comparison:
    log_mel_distance: float
    mcd_db: float
    duration_a_s: float
    duration_b_s: float
    duration_difference_s: float
    snr_db: float | None  # None when the lengths differ (not sample-aligned)
    identical: bool
    speaker_similarity: float | None = None  # speaker-encoder cosine of a and b; None when not measured

    def to_dict(self) -> dict:
        values = asdict(self)
        if values["speaker_similarity"] is None:  # not measured: not a measure of this comparison
            del values["speaker_similarity"]
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
    """MFCC-style cepstrum (DCT-II of the log mel) of the non-silent frames: (bands, frames) -> (frames', 24).

    Not the MCD's mel-cepstrum (``warped_cepstra``): ``train.evaluate`` profiles voices with it."""
    voiced = _speaking(mel)
    frames = mel[:, voiced].T.double().numpy()  # (T, bands)
    bands = frames.shape[1]
    n = np.arange(bands)
    k = np.arange(1, MCD_COEFFICIENTS + 1)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * bands)) * math.sqrt(2 / bands)  # orthonormal DCT-II rows 1..24
    return frames @ basis.T


def _speaking(mel: torch.Tensor) -> torch.Tensor:
    """(bands, frames) log mel -> (frames,) bool: the frames whose loudest band is above ``SILENCE_FLOOR``."""
    return mel.max(dim=0).values > SILENCE_FLOOR


def _freqt_matrix(in_order: int, out_order: int, alpha: float) -> np.ndarray:
    """SPTK's ``freqt`` (cepstrum -> all-pass-warped cepstrum) as a matrix: (out_order + 1, in_order + 1).

    The recursion is linear in its input, so running it on every unit vector at once (one column each) gives
    the matrix; a cepstrum ``c`` warps to ``matrix @ c``."""
    columns = np.eye(in_order + 1)
    g = np.zeros((out_order + 1, in_order + 1))
    for i in range(in_order, -1, -1):  # SPTK feeds the input from its highest quefrency down
        d = g.copy()
        g[0] = columns[i] + alpha * d[0]
        if out_order >= 1:
            g[1] = (1 - alpha * alpha) * d[0] + alpha * d[1]
        for j in range(2, out_order + 1):
            g[j] = d[j - 1] + alpha * (d[j] - g[j - 1])
    return g


@lru_cache(maxsize=4)
def _sp2mc_matrix(n_fft: int, order: int, alpha: float) -> np.ndarray:
    """(n_fft // 2 + 1, order + 1): log power spectrum -> mel-cepstrum, pysptk's ``sp2mc`` as one linear map."""
    bins = n_fft // 2 + 1
    to_cepstrum = np.fft.irfft(np.eye(bins), n=n_fft, axis=1)  # (bins, n_fft): real cepstrum of each bin
    to_cepstrum[:, 0] /= 2  # two-sided cepstrum of log power -> one-sided of log amplitude (c1.. are already equal)
    return to_cepstrum @ _freqt_matrix(n_fft - 1, order, alpha).T


def sp2mc(power: np.ndarray, order: int = MCD_COEFFICIENTS, alpha: float = ALL_PASS_ALPHA) -> np.ndarray:
    """Mel-cepstrum c0..c_order of power spectra (..., n_fft // 2 + 1), as SPTK/pysptk ``sp2mc``: the real cepstrum of
    the log power, warped by the first-order all-pass z^-1 -> (z^-1 - alpha) / (1 - alpha z^-1)."""
    matrix = _sp2mc_matrix(2 * (power.shape[-1] - 1), order, alpha)
    return np.log(power) @ matrix


def warped_cepstra(wav: torch.Tensor) -> np.ndarray:
    """Mel-cepstra c0..c24 (SPTK sense, ``sp2mc``) of every UnivNet STFT frame of 24 kHz audio: (1, N) -> (frames, 25);
    frames are the columns of ``univnet_mel``."""
    magnitude = _magnitudes(wav.reshape(1, -1).float().clamp(-1, 1))[0]  # (513, T): the univnet_mel frames
    magnitude = magnitude.clamp_(min=LOG_FLOOR)  # the mel's floor: digital silence has a finite log
    return sp2mc(magnitude.T.double().numpy() ** 2)


def _pieces(wav: torch.Tensor) -> Iterator[tuple[torch.Tensor, slice]]:
    """(piece of ``wav``, which of its STFT frames to keep): the kept frames, in order, are the frames of the whole
    (1, N) signal, each from the same samples, ``_PIECE_FRAMES`` at a time (a 5-minute STFT at once is ~280 MB)."""
    samples = wav.shape[-1]
    frames = samples // HOP_LENGTH + 1
    reach = N_FFT  # context either side (a centred frame needs N_FFT / 2; a whole window keeps the last piece
    # longer than the reflect padding, which must be shorter than the piece)
    for start in range(0, frames, _PIECE_FRAMES):
        stop = min(start + _PIECE_FRAMES, frames)
        first_sample = max(0, start * HOP_LENGTH - reach)  # a multiple of the hop: piece frames line up
        last_sample = samples if stop == frames else stop * HOP_LENGTH + reach  # the true ends keep their padding
        skip = start - first_sample // HOP_LENGTH
        yield wav[:, first_sample:last_sample], slice(skip, skip + stop - start)


def _mel_and_cepstra(wav: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """``univnet_mel`` (100, T) and ``warped_cepstra`` (T, 25) of (1, N) 24 kHz audio, computed piece by piece."""
    mels, cepstra = [], []
    for piece, keep in _pieces(wav):
        mels.append(univnet_mel(piece)[:, keep])
        cepstra.append(warped_cepstra(piece)[keep])
    return torch.cat(mels, dim=1), np.concatenate(cepstra)


def band_radius(n: int, m: int) -> int:
    """How far (frames) a DTW path may stray from the straight line between the corners of an (n, m) matrix."""
    return min(MAX_BAND_FRAMES, max(MIN_BAND_FRAMES, math.ceil(BAND_FRACTION * max(n, m))))


def _band(n: int, m: int, radius: int | None) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last allowed column of every row: (n,), (n,); both non-decreasing."""
    if radius is None or radius >= max(n, m):
        return np.zeros(n, dtype=np.int64), np.full(n, m, dtype=np.int64)
    slope = (m - 1) / max(n - 1, 1)
    radius = max(radius, math.ceil(slope) + 1)  # a line steeper than the band is wide would break the band apart
    centre = np.arange(n) * slope  # the straight line from (0, 0) to (n - 1, m - 1)
    low = np.clip(np.ceil(centre - radius), 0, m).astype(np.int64)
    high = np.clip(np.floor(centre + radius) + 1, 0, m).astype(np.int64)
    high[-1] = m
    return low, high


def _banded_dtw(n: int, m: int, band: tuple[np.ndarray, np.ndarray],
                diagonal_cost: Callable[[int, int, int], np.ndarray]) -> list[tuple[int, int]]:
    """The cheapest monotonic path from (0, 0) to (n - 1, m - 1) through the band's cells.

    ``diagonal_cost(d, first, stop)`` gives cost[i, d - i] for rows first..stop-1. Along each anti-diagonal d every
    cell depends only on diagonals d - 1 and d - 2, so a whole diagonal is one vectorised step; the totals are the
    same floating-point sums as the row-by-row recursion, and ties break the same way (diagonal, then up, then left),
    so with the whole matrix in the band the path is the full DTW's."""
    low, high = band
    rows = np.arange(n)
    diagonals = np.arange(n + m - 1)
    first = np.searchsorted(rows + high, diagonals, side="right")  # first row whose band reaches diagonal d
    stop = np.searchsorted(rows + low, diagonals, side="right")  # one past the last such row
    offsets = np.concatenate([[0], np.cumsum(stop - first)])
    steps = np.empty(offsets[-1], dtype=np.int8)  # 0 diagonal, 1 up, 2 left: the way back, one byte per cell

    # Each diagonal's totals are kept padded with inf on both sides, rows first - 1 .. stop; as first and stop grow
    # by 0 or 1 per diagonal, every predecessor the next two diagonals need is then a slice (cells outside: inf).
    before = (np.array([0.0, np.inf]), -1)  # diagonal -2: total[-1, -1] = 0 starts the path at (0, 0)
    previous = (np.full(2, np.inf), -1)  # diagonal -1: nothing
    for d in diagonals:
        f, s = first[d], stop[d]
        diagonal = before[0][f - 1 - before[1]:s - 1 - before[1]]  # from (i - 1, j - 1)
        up = previous[0][f - 1 - previous[1]:s - 1 - previous[1]]  # from (i - 1, j)
        left = previous[0][f - previous[1]:s - previous[1]]  # from (i, j - 1)
        best = np.minimum(np.minimum(diagonal, up), left)
        steps[offsets[d]:offsets[d + 1]] = np.where(diagonal <= np.minimum(up, left), 0, np.where(up <= left, 1, 2))
        totals = np.empty(s - f + 2)
        totals[0] = totals[-1] = np.inf
        totals[1:-1] = diagonal_cost(d, f, s) + best
        before, previous = previous, (totals, f - 1)

    path, i, j = [], n - 1, m - 1
    while i >= 0 and j >= 0:
        path.append((i, j))
        step = steps[offsets[i + j] + i - first[i + j]]
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


def dtw_path(cost: np.ndarray, radius: int | None = None) -> list[tuple[int, int]]:
    """The cheapest monotonic alignment through a (N, M) cost matrix (steps right, down, diagonal), over the whole
    matrix (the very path of the row-by-row full DTW, ties included: ``train.evaluate`` relies on it), or within
    ``radius`` frames of its diagonal when given."""
    n, m = cost.shape
    return _banded_dtw(n, m, _band(n, m, radius), lambda d, f, s: cost[np.arange(f, s), d - np.arange(f, s)])


def feature_dtw_path(a: np.ndarray, b: np.ndarray, radius: int | None = None) -> list[tuple[int, int]]:
    """DTW between (N, D) and (M, D) frames, Euclidean frame distances computed along the way (never an (N, M)
    matrix), within ``radius`` (default ``band_radius(N, M)``) frames of the straight diagonal.

    Distances are float32 (summed in float64): the path needs their order, not their last digits."""
    n, m = len(a), len(b)
    radius = band_radius(n, m) if radius is None else radius
    a_t = np.ascontiguousarray(a.T, dtype=np.float32)  # (D, N): frames contiguous
    b_reversed = np.ascontiguousarray(b[::-1].T, dtype=np.float32)  # (D, M), last frame first

    def diagonal_cost(d: int, f: int, s: int) -> np.ndarray:  # rows f..s-1 against columns d-f down to d-s+1
        difference = a_t[:, f:s] - b_reversed[:, m - 1 - d + f:m - 1 - d + s]  # (D, s - f)
        difference *= difference
        return np.sqrt(difference.sum(0)).astype(np.float64)

    return _banded_dtw(n, m, _band(n, m, radius), diagonal_cost)


def _mcd(spectra_a: tuple[torch.Tensor, np.ndarray], spectra_b: tuple[torch.Tensor, np.ndarray]) -> float:
    """MCD in dB between two signals' (mel, mel-cepstra) from ``_mel_and_cepstra``: c1..c24 of their non-silent
    frames, aligned by banded DTW."""
    (mel_a, ceps_a), (mel_b, ceps_b) = spectra_a, spectra_b
    a = ceps_a[_speaking(mel_a).numpy(), 1:]  # (N, 24): c0 (loudness) left out
    b = ceps_b[_speaking(mel_b).numpy(), 1:]  # (M, 24)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    i, j = np.array(feature_dtw_path(a, b)).T
    return float(MCD_SCALE * np.sqrt(((a[i] - b[j]) ** 2).sum(-1)).mean())


def mel_cepstral_distortion(a: torch.Tensor, b: torch.Tensor) -> float:
    """MCD in dB between two 24 kHz waveforms ((N,) or (1, N)): see the module docstring for its definition."""
    return _mcd(_mel_and_cepstra(a.reshape(1, -1)), _mel_and_cepstra(b.reshape(1, -1)))


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float | None:
    """Signal-to-noise ratio of ``other`` against ``reference`` (same length), in dB; None if lengths differ."""
    if reference.shape != other.shape:
        return None
    noise = (reference - other).pow(2).sum()
    if noise == 0:
        return float("inf")
    return float(10 * torch.log10(reference.pow(2).sum() / noise))


def compare_waveforms(a: torch.Tensor, b: torch.Tensor, sample_rate: int = OUTPUT_SAMPLE_RATE,
                      sample_rate_b: int | None = None, speaker: bool = False) -> Comparison:
    """All measures between two waveforms ((N,) or (1, N)); ``speaker`` adds the speaker-encoder similarity
    (``similarity.SimilarityUnavailable`` where its weights are missing)."""
    a, b = _mono_24k(a, sample_rate), _mono_24k(b, sample_rate_b or sample_rate)
    spectra_a, spectra_b = _mel_and_cepstra(a), _mel_and_cepstra(b)  # ((100, T) log mel, (T, 25) mel-cepstra) each
    duration_a, duration_b = a.shape[-1] / OUTPUT_SAMPLE_RATE, b.shape[-1] / OUTPUT_SAMPLE_RATE
    return Comparison(
        log_mel_distance=log_mel_distance(spectra_a[0], spectra_b[0]),
        mcd_db=_mcd(spectra_a, spectra_b),
        duration_a_s=duration_a,
        duration_b_s=duration_b,
        duration_difference_s=duration_b - duration_a,
        snr_db=snr_db(a, b),
        identical=bool(a.shape == b.shape and torch.equal(a, b)),
        speaker_similarity=_speaker_similarity(a, b) if speaker else None,
    )


def _speaker_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    from tortoise_lab.voices.similarity import cosine, measure

    encoder = measure("encoder")
    return cosine(encoder.embed(a, OUTPUT_SAMPLE_RATE), encoder.embed(b, OUTPUT_SAMPLE_RATE))


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
        with atomic_path(path) as scratch:  # the format follows the target's suffix, not the scratch name's
            figure.savefig(scratch, dpi=100, format=Path(path).suffix.lstrip(".").lower())
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
        with atomic_path(path) as scratch:  # the format follows the target's suffix, not the scratch name's
            figure.savefig(scratch, dpi=100, format=Path(path).suffix.lstrip(".").lower())
    return figure
