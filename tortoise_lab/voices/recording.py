"""One raw recording -> clean clips of speech: the signal steps of voice preparation (``prep.prepare_voice``).

``prepare_recording(path)`` takes a recording in any format, rate and channel count that libsndfile decodes and
returns its clips (mono, 22.05 kHz float32) with a report. In order:

1. read with ``audio.read_audio`` (an unreadable file is dropped with libsndfile's reason);
2. clipping check on the raw samples (flat-topped runs at full scale; see ``PrepSettings`` below);
3. mono (channel mean, or the louder channel if the mean cancels), DC removed, resampled to 22.05 kHz
   (``audio.resample``);
4. noise floor measured (RMS of the quietest 10 % of 50 ms frames, dBFS); a silent recording is dropped;
5. spectral-gating noise reduction (``noisereduce``, stationary, noise profile from the quiet stretches);
   the noise floor is measured again at the same gain;
6. speech found by frame energy; silence trimmed at the ends; a take longer than 10 s split at its pauses
   into clips of 2-10 s (dynamic programming, aiming at 8 s; see ``split_points``);
7. each clip scaled to the same speech level (-25 dBFS RMS over its speech frames, peak at most -1 dBFS),
   with 10 ms fades at the cuts.

The checks in steps 1, 2 and 4 (unreadable, empty, non-finite samples, clipped, silent) are the ones
``voices.library.load_voice`` runs on every clip it reads: ``measure.check_clip`` adds what conditioning needs
(long enough, not too quiet) and sorts the findings into fatal ones and notes.

Choices, and why:
* 22.05 kHz: TorToiSe loads voice clips at 22.05 kHz (``audio.INPUT_SAMPLE_RATE``) for both conditioning
  paths (the diffusion path resamples from that 22.05 kHz clip to 24 kHz itself), so a clip stored at
  22.05 kHz is used exactly as written, with no second resampling.
* Mono by channel mean, not ``audio.load_audio``'s first channel: that one matches upstream's conditioning of
  stereo clips, whereas a prepared clip should hold both microphones' speech.
* -25 dBFS speech RMS: the 70 clips of the 30 built-in voices have a median speech level of -27.3 dBFS
  (interquartile range -29.1 to -22.6), so prepared voices sound like what the models were shown. Plain
  RMS over speech frames, not LUFS: for one speaker's short clips the K-weighting and gating of BS.1770
  change little, and it saves a dependency.
* Clipping: a recording with more than 0.1 % of its samples in flat runs at full scale is dropped (the
  distortion is cloned with the voice, and nothing can restore the cut peaks); less is kept with a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tortoise_lab.assets import sha256_file
from tortoise_lab.audio import AudioError, read_audio, resample
from tortoise_lab.voices.measure import (PrepSettings, _frame_powers, _runs, _speech_level_db, _to_db,
                                         clipped_fraction, find_clipping, find_sample_problem, find_silence,
                                         noise_floor_db, unreadable)
from tortoise_lab.voices.report import ClipReport, SourceReport

# Noise reduction: the noise profile is the frames within QUIET_ABOVE_FLOOR_DB of the noise floor, in
# stretches long enough for two STFT windows; under MIN_NOISE_PROFILE_S of them, the take profiles itself.
DENOISE_N_FFT = 1024
QUIET_ABOVE_FLOOR_DB = 6.0
MIN_NOISE_PROFILE_S = 0.25

__all__ = ["prepare_recording", "split_points"]

# ------------------------------------------------------------------------------------- signal clean-up


def _to_mono(channels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, N) -> (N,) channel mean; if the mean loses over half the level (channels out of phase), the louder
    channel instead. Returns the warning to report, if any."""
    if len(channels) == 1:
        return channels[0], None
    mean = channels.mean(axis=0)
    rms = np.sqrt(np.mean(np.square(channels, dtype=np.float64), axis=1))  # (C,)
    if np.sqrt(np.mean(np.square(mean, dtype=np.float64))) < 0.5 * rms.max():
        loudest = int(rms.argmax())
        return channels[loudest], f"channels cancel when mixed (out of phase); used channel {loudest + 1} only"
    return mean, None


def _quiet_stretches(wav: np.ndarray, sample_rate: int, settings: PrepSettings, min_len: int) -> np.ndarray:
    """The recording's background only: its runs of quiet frames at least ``min_len`` samples long, joined.

    A noise profile from pauses alone is tighter than one from the whole take (which has speech in it and
    so sets the gate too high and eats soft consonants). Returns an empty array when the take has no pauses.
    """
    hop = round(settings.hop_s * sample_rate)
    powers_db = _to_db(_frame_powers(wav, round(settings.frame_s * sample_rate), hop))
    quiet = powers_db <= noise_floor_db(wav, sample_rate, settings) + QUIET_ABOVE_FLOOR_DB
    pieces = [wav[start * hop:stop * hop] for start, stop in _runs(quiet) if (stop - start) * hop >= min_len]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=wav.dtype)


def _denoise(wav: np.ndarray, sample_rate: int, settings: PrepSettings) -> np.ndarray:
    """Stationary spectral gating (noisereduce): per frequency, whatever stays under the background's level
    plus 1.5 standard deviations is attenuated by ``denoise_strength``."""
    try:
        import noisereduce
    except ImportError:
        raise ImportError("Noise reduction needs noisereduce: pip install 'tortoise-lab[voices]', "
                          "or pass denoise=False.") from None
    noise = _quiet_stretches(wav, sample_rate, settings, min_len=2 * DENOISE_N_FFT)
    if len(noise) < MIN_NOISE_PROFILE_S * sample_rate:
        noise = None  # noisereduce then takes its statistics from the whole take
    cleaned = noisereduce.reduce_noise(y=wav, sr=sample_rate, stationary=True, y_noise=noise, n_fft=DENOISE_N_FFT,
                                       prop_decrease=settings.denoise_strength)
    return cleaned.astype(np.float32)


# ------------------------------------------------------------------------------- speech and splitting


def _speech_runs(wav: np.ndarray, sample_rate: int, settings: PrepSettings) -> tuple[list[tuple[int, int]], int]:
    """Speech as [start, stop) frame ranges separated by pauses of at least ``min_pause_s``; and the hop."""
    hop = round(settings.hop_s * sample_rate)
    powers_db = _to_db(_frame_powers(wav, round(settings.frame_s * sample_rate), hop))
    threshold = max(noise_floor_db(wav, sample_rate, settings) + settings.speech_above_floor_db,
                    powers_db.max() - settings.speech_below_peak_db)
    runs = [r for r in _runs(powers_db > threshold) if (r[1] - r[0]) * hop >= settings.min_burst_s * sample_rate]
    merged: list[tuple[int, int]] = []
    for start, stop in runs:  # close the gaps between words
        if merged and (start - merged[-1][1]) * hop < settings.min_pause_s * sample_rate:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged, hop


def _cut_long_runs(runs: list[tuple[int, int]], powers: np.ndarray, limit: int, shortest: int) -> tuple[
        list[tuple[int, int]], int]:
    """Speech with no pause for longer than ``limit`` frames is cut at its quietest frame (kept at least
    ``shortest`` frames from either end). Returns the runs and how many such forced cuts were made."""
    out: list[tuple[int, int]] = []
    forced = 0
    for start, stop in runs:
        while stop - start > limit:
            lo, hi = start + shortest, min(stop - shortest, start + limit)
            cut = lo + int(np.argmin(powers[lo:hi])) if hi > lo else start + limit
            out.append((start, cut))
            start, forced = cut, forced + 1
        out.append((start, stop))
    return out, forced


def split_points(cost: np.ndarray) -> list[int]:
    """Best way to group consecutive speech runs into clips (dynamic programming, O(n^2) in the runs).

    ``cost[i, j]`` is the cost of one clip holding runs i..j, ``inf`` where that clip is not allowed; returns
    the index of the first run of each clip in the grouping of least total cost.
    """
    n = cost.shape[0]
    best = np.full(n + 1, np.inf)  # best[j]: least cost of grouping runs 0..j-1
    best[0] = 0.0
    first = np.zeros(n + 1, dtype=int)  # first run of the last clip in that grouping
    for j in range(1, n + 1):
        totals = best[:j] + cost[:j, j - 1]
        first[j] = int(np.argmin(totals))
        best[j] = totals[first[j]]
    if not np.isfinite(best[n]):
        raise AssertionError("every run fits in a clip on its own, so a grouping always exists")
    starts, j = [], n
    while j > 0:
        starts.append(int(first[j]))
        j = first[j]
    return starts[::-1]


def _plan_clips(runs: list[tuple[int, int]], hop: int, n_samples: int, sample_rate: int,
                settings: PrepSettings) -> list[tuple[int, int]]:
    """Group speech runs into clips and return their [start, stop) sample ranges, edge padding included.

    A clip spans runs i..j: it starts ``edge_pad_s`` before run i (or half-way into the pause before it,
    whichever is later) and ends likewise after run j. Its cost is (duration - ideal)^2, plus a large
    penalty when it is shorter than ``min_clip_s`` (such clips are allowed only when nothing else fits, and
    are then dropped); clips longer than ``max_clip_s`` are not allowed. Runs longer than that were already
    cut at their quietest point.
    """
    pad = round(settings.edge_pad_s * sample_rate)

    def bounds(i: int, j: int) -> tuple[int, int]:
        start, stop = runs[i][0] * hop, runs[j][1] * hop
        before = runs[i - 1][1] * hop if i > 0 else 0
        after = runs[j + 1][0] * hop if j + 1 < len(runs) else n_samples
        return max(start - pad, (before + start) // 2), min(stop + pad, (stop + after) // 2, n_samples)

    n = len(runs)
    cost = np.full((n, n), np.inf)
    for i in range(n):
        for j in range(i, n):
            start, stop = bounds(i, j)
            seconds = (stop - start) / sample_rate
            if seconds > settings.max_clip_s:
                break
            cost[i, j] = (seconds - settings.ideal_clip_s) ** 2 + (1e6 if seconds < settings.min_clip_s else 0.0)
    starts = split_points(cost)
    ends = starts[1:] + [n]
    return [bounds(i, j - 1) for i, j in zip(starts, ends)]


def _normalise(clip: np.ndarray, sample_rate: int, settings: PrepSettings) -> tuple[np.ndarray, float]:
    """Scale a clip so its speech frames have RMS ``speech_level_db`` (peak capped); returns (clip, gain_db)."""
    level_db = _speech_level_db(clip, sample_rate, settings)
    peak_db = float(_to_db(np.max(np.abs(clip)) ** 2))
    gain_db = min(settings.speech_level_db - level_db, settings.peak_ceiling_db - peak_db)
    return clip * np.float32(10 ** (gain_db / 20)), gain_db


def _fade(clip: np.ndarray, samples: int) -> np.ndarray:
    ramp = np.sin(np.linspace(0, np.pi / 2, min(samples, len(clip) // 2), dtype=np.float32)) ** 2
    clip = clip.copy()
    clip[: len(ramp)] *= ramp
    clip[len(clip) - len(ramp):] *= ramp[::-1]
    return clip


# ----------------------------------------------------------------------------------------- one source


def _read(path: Path) -> tuple[np.ndarray, int, str]:
    """(C, N) float32 samples, sample rate, a one-line description. Raises AudioError for non-audio."""
    import soundfile

    channels, rate = read_audio(path)  # (C, N)
    info = soundfile.info(str(path))  # the container and sample format, for the report
    description = f"{info.format} {info.subtype}, {rate} Hz, {info.channels} ch, {channels.shape[1] / rate:.2f} s"
    return channels.numpy(), rate, description


def prepare_recording(path: Path, denoise: bool = True, settings: PrepSettings = PrepSettings()) -> tuple[
        SourceReport, list[np.ndarray]]:
    """Clean one raw recording: its report (clip file names left empty) and its clips, (N,) float32 each."""
    report = SourceReport(source=str(path), sha256=sha256_file(path))
    rate_out = settings.sample_rate
    try:
        channels, rate, report.format = _read(path)
    except AudioError as error:
        report.reason = str(unreadable(error))
        return report, []
    problem = find_sample_problem(channels)  # empty, or NaN / infinite samples
    if problem:
        report.reason = str(problem)
        return report, []

    wav, warning = _to_mono(channels)
    if warning:
        report.warnings.append(warning)
    wav = resample(torch.from_numpy(wav - wav.mean()), rate, rate_out).numpy()  # (N',) at the output rate, DC removed
    report.noise_floor_before_db = round(noise_floor_db(wav, rate_out, settings), 2)

    report.clipped_fraction = round(clipped_fraction(channels, settings), 6)  # on the raw samples
    clipping = find_clipping(report.clipped_fraction, settings)
    if clipping and report.clipped_fraction > settings.clip_drop_fraction:
        report.reason = str(clipping)
        return report, []
    if clipping:
        report.warnings.append(str(clipping))
    silence = find_silence(wav, rate_out, settings)
    if silence:
        report.reason = str(silence)
        return report, []

    if denoise:
        wav = _denoise(wav, rate_out, settings)
    report.noise_floor_after_db = round(noise_floor_db(wav, rate_out, settings), 2)

    runs, hop = _speech_runs(wav, rate_out, settings)
    if not runs:
        report.reason = "silent: no speech stands out from the background"
        return report, []
    powers = _frame_powers(wav, round(settings.frame_s * rate_out), hop)
    speech_frames = np.concatenate([powers[a:b] for a, b in runs])
    report.speech_level_db = round(float(_to_db(speech_frames.mean())), 2)
    limit = int((settings.max_clip_s - 2 * settings.edge_pad_s) * rate_out / hop)
    runs, forced = _cut_long_runs(runs, powers, limit, shortest=int(settings.min_clip_s * rate_out / hop))
    if forced:
        report.warnings.append(f"{forced} cut(s) made mid-speech, at the quietest point: no pause was long enough")

    pieces = _plan_clips(runs, hop, len(wav), rate_out, settings)
    longest_s = max(stop - start for start, stop in pieces) / rate_out
    if longest_s < settings.min_clip_s:
        report.reason = (f"too short: {longest_s:.2f} s of speech, a clip needs at least {settings.min_clip_s:g} s")
        return report, []
    clips: list[np.ndarray] = []
    for start, stop in pieces:
        seconds = (stop - start) / rate_out
        if seconds < settings.min_clip_s:  # only when no grouping could give it a long enough neighbour
            report.dropped_pieces.append(f"{start / rate_out:.2f}-{stop / rate_out:.2f} s "
                                         f"({seconds:.2f} s, under {settings.min_clip_s:g} s)")
            continue
        clip, gain_db = _normalise(wav[start:stop], rate_out, settings)
        clip = _fade(clip, round(settings.fade_s * rate_out))
        peak_db = float(_to_db(np.max(np.abs(clip)) ** 2))
        report.clips.append(ClipReport("", round(start / rate_out, 3), round(stop / rate_out, 3),
                                       round(seconds, 3), round(gain_db, 2), round(peak_db, 2)))
        clips.append(clip)
    report.kept = True
    return report, clips
