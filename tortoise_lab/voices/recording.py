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
``voices.library.load_voice`` runs on every clip it reads: ``check_clip`` (below) adds what conditioning needs
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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tortoise_lab.assets import sha256_file
from tortoise_lab.audio import HOP_LENGTH, INPUT_SAMPLE_RATE, AudioError, read_audio, resample
from tortoise_lab.voices.report import ClipReport, SourceReport

__all__ = ["PrepSettings", "prepare_recording", "noise_floor_db", "clipped_fraction", "split_points", "Finding",
           "unreadable", "find_sample_problem", "find_clipping", "find_silence", "check_clip",
           "MIN_CONDITIONING_FRAMES", "MIN_CONDITIONING_S", "QUIET_SPEECH_DB"]

SILENCE_DB = -120.0  # what the level of digital silence is reported as (instead of -inf)
# Noise reduction: the noise profile is the frames within QUIET_ABOVE_FLOOR_DB of the noise floor, in
# stretches long enough for two STFT windows; under MIN_NOISE_PROFILE_S of them, the take profiles itself.
DENOISE_N_FFT = 1024
QUIET_ABOVE_FLOOR_DB = 6.0
MIN_NOISE_PROFILE_S = 0.25

# The shortest clip a voice may condition on, in conditioning-mel frames (hop 256 at 22.05 kHz): 40 frames are
# 10 240 samples, 0.46 s. Both conditioning encoders read a fixed window zero-padded past the clip's end
# (``audio.conditioning_mel``: 517 frames, 6 s; ``audio.diffusion_conditioning_mel``: 401 frames, ~4.3 s at
# 24 kHz), and neither masks the padding: the autoregressive encoder (``models.gpt.ConditioningEncoder``) is a
# 1x1 convolution and self-attention over all 517 frames, whose first frame it keeps; the diffusion encoder
# (``DiffusionDecoder.conditioning_embedding``) averages its output over the whole window, one output frame per
# four mel frames. So a clip's say in each latent is roughly its share of the window's frames. At 40 frames that
# is a tenth of the diffusion window (8 % of the autoregressive one), about ten of the diffusion encoder's output
# frames, and about two syllables of speech; below it more than 90 % of what the encoders summarise is padding,
# and the latent describes silence rather than the voice.
MIN_CONDITIONING_FRAMES = 40
MIN_CONDITIONING_S = MIN_CONDITIONING_FRAMES * HOP_LENGTH / INPUT_SAMPLE_RATE
# A clip whose speech level (measured as ``_normalise`` does) is below this is very quiet: 20 dB under the level
# voice preparation gives speech (-25 dBFS), and 11 dB under the quietest clip of the built-in and project voices
# (-33.7 dBFS). Most of its conditioning mel sits on the mel's floor (``audio.LOG_FLOOR``): 64 % of the bins for
# espeak speech at -45 dBFS, against 31 % at -25 dBFS.
QUIET_SPEECH_DB = -45.0


@dataclass(frozen=True)
class PrepSettings:
    """The numbers voice preparation works with. The defaults are the documented choices."""

    sample_rate: int = INPUT_SAMPLE_RATE  # clips are written at the rate TorToiSe reads voices at
    max_clip_s: float = 10.0  # longer takes are split
    min_clip_s: float = 2.0  # shorter pieces are merged with a neighbour, or dropped
    ideal_clip_s: float = 8.0  # what splitting aims at (3-10 clips of 6-10 s make a good voice)
    speech_level_db: float = -25.0  # RMS over speech frames, dBFS (built-in voices: median -27.3)
    peak_ceiling_db: float = -1.0  # never scale a clip's peak above this (headroom for the 16-bit file)
    denoise_strength: float = 0.9  # noisereduce prop_decrease: 1.0 gates noise fully and leaves "musical" noise
    # Clipping: runs of at least clip_min_run samples at or above clip_level of full scale, each within
    # clip_flatness of the next (under one 16-bit step: a held rail repeats its value exactly, while the
    # crest of a full-scale 100 Hz tone at 48 kHz moves 8.5e-5 per sample), count as clipped; above
    # clip_drop_fraction of all samples the recording is dropped. Dithered or lossy-coded clipping escapes.
    clip_level: float = 0.98
    clip_min_run: int = 3
    clip_flatness: float = 2e-5
    clip_drop_fraction: float = 1e-3
    silent_db: float = -50.0  # a recording whose loudest 20 ms frame is below this holds no usable speech
    frame_s: float = 0.02  # speech detection frames...
    hop_s: float = 0.01  # ...and their hop
    floor_frame_s: float = 0.05  # noise floor: RMS of the quietest floor_fraction of these frames
    floor_fraction: float = 0.1
    # A frame is speech when it is above both (noise floor + speech_above_floor_db) and (loudest frame -
    # speech_below_peak_db); gaps shorter than min_pause_s are inside speech, bursts shorter than min_burst_s
    # are clicks.
    speech_above_floor_db: float = 10.0
    speech_below_peak_db: float = 40.0
    min_pause_s: float = 0.3
    min_burst_s: float = 0.08
    level_window_db: float = 20.0  # a clip's level: RMS of its frames within this of its loudest frame
    edge_pad_s: float = 0.15  # silence kept before and after the speech of each clip
    fade_s: float = 0.01  # fades at every cut, against clicks


# ------------------------------------------------------------------------------------------- measuring


def _to_db(power: np.ndarray | float) -> np.ndarray:
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), SILENCE_DB)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges where a boolean mask is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _frame_powers(wav: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Mean square of each frame: (N,) -> (n_frames,), frames starting at 0, hop, 2 hop... (zero-padded end)."""
    if len(wav) < frame:
        wav = np.pad(wav, (0, frame - len(wav)))
    n_frames = 1 + (len(wav) - frame + hop - 1) // hop
    wav = np.pad(wav, (0, (n_frames - 1) * hop + frame - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, frame)[::hop]  # (n_frames, frame)
    return np.mean(np.square(frames, dtype=np.float64), axis=1)


def noise_floor_db(wav: np.ndarray, sample_rate: int, settings: PrepSettings = PrepSettings()) -> float:
    """The noise floor of a mono recording in dBFS: RMS of its quietest ``floor_fraction`` of frames.

    Speech fills most frames of a take, but every take has pauses; the quietest tenth of 50 ms frames is
    (nearly) pure background, so its RMS is the level of the hiss or hum.
    """
    frame = round(settings.floor_frame_s * sample_rate)
    powers = np.sort(_frame_powers(wav, frame, frame))  # non-overlapping frames
    quietest = powers[: max(1, round(settings.floor_fraction * len(powers)))]
    return float(_to_db(quietest.mean()))


def clipped_fraction(channels: np.ndarray, settings: PrepSettings = PrepSettings()) -> float:
    """Fraction of samples in flat-topped runs at full scale: (C, N) raw samples -> [0, 1].

    A run is ``clip_min_run`` or more consecutive samples at or above ``clip_level`` of full scale that stay
    within ``clip_flatness`` of each other: a converter or a gain stage that ran out of range holds the rail,
    whereas a rounded crest (speech, or even a full-scale 100 Hz tone at 48 kHz) moves between samples.
    """
    clipped = 0
    for channel in channels.astype(np.float64):
        at_rail = np.abs(channel) >= settings.clip_level
        # held[n]: samples n and n+1 are both at the rail and equal (to within clip_flatness).
        held = at_rail[:-1] & at_rail[1:] & (np.abs(np.diff(channel)) <= settings.clip_flatness)
        clipped += sum(stop - start + 1 for start, stop in _runs(held) if stop - start + 1 >= settings.clip_min_run)
    return clipped / channels.size


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


def _speech_level_db(wav: np.ndarray, sample_rate: int, settings: PrepSettings) -> float:
    """A mono clip's speech level, dBFS: RMS of its frames within ``level_window_db`` of its loudest frame."""
    hop = round(settings.hop_s * sample_rate)
    powers = _frame_powers(wav, round(settings.frame_s * sample_rate), hop)
    speech = powers[_to_db(powers) > _to_db(powers.max()) - settings.level_window_db]
    return float(_to_db(speech.mean()))


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


# ------------------------------------------------------------------------- checks (preparation, loading)


@dataclass(frozen=True)
class Finding:
    """Something wrong with a recording or a voice clip: its kind ("silent", "clipped"...) and what was measured.
    ``str()`` gives the report's form, ``"silent: its loudest 20 ms is at ..."``."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def unreadable(error: AudioError) -> Finding:
    """A file ``audio.read_audio`` refused, in libsndfile's own words."""
    return Finding("unreadable", f"not audio that libsndfile can decode ({error.reason})")


def find_sample_problem(channels: np.ndarray) -> Finding | None:
    """No samples at all, or NaN / infinite ones (which no later step survives): (C, N) -> the finding, or None."""
    if channels.size == 0:
        return Finding("empty", "the file holds no samples")
    nan, infinite = int(np.isnan(channels).sum()), int(np.isinf(channels).sum())
    if nan or infinite:
        what = " or ".join(word for word, count in (("NaN", nan), ("infinite", infinite)) if count)
        return Finding("non-finite", f"{nan + infinite} of {channels.size} samples are {what}")
    return None


def find_clipping(fraction: float, settings: PrepSettings = PrepSettings()) -> Finding | None:
    """The finding for a ``clipped_fraction``; preparation drops a recording above ``clip_drop_fraction``."""
    if fraction > settings.clip_drop_fraction:
        return Finding("clipped", f"{100 * fraction:.2f} % of samples are cut flat at full scale (over "
                                  f"{100 * settings.clip_drop_fraction:g} %); record again with less input gain")
    if fraction > 0:
        return Finding("clipped", f"{100 * fraction:.3f} % of samples are flat at full scale (voice preparation "
                                  f"keeps recordings with at most {100 * settings.clip_drop_fraction:g} %)")
    return None


def find_silence(wav: np.ndarray, sample_rate: int, settings: PrepSettings = PrepSettings()) -> Finding | None:
    """A mono recording whose loudest 20 ms frame is below ``silent_db``: it holds no usable speech."""
    loudest_db = float(_to_db(_frame_powers(wav, round(settings.frame_s * sample_rate),
                                            round(settings.hop_s * sample_rate)).max()))
    if loudest_db < settings.silent_db:
        return Finding("silent", f"its loudest 20 ms is at {loudest_db:.1f} dBFS, below {settings.silent_db:g} dBFS "
                                 "(a muted or unplugged microphone?)")
    return None


def check_clip(channels: np.ndarray, sample_rate: int, settings: PrepSettings = PrepSettings()) -> tuple[
        Finding | None, list[Finding]]:
    """The checks a voice clip gets when a voice is loaded: (C, N) raw samples at their own rate -> (what makes
    it unusable, or None; what is wrong but usable).

    Fatal, first found: empty, non-finite samples, too short to condition on (``MIN_CONDITIONING_FRAMES``),
    silent. Usable, each noted: clipped (any flat run at full scale), very quiet (``QUIET_SPEECH_DB``), shorter
    than the ``min_clip_s`` voice preparation keeps. Except the sample check, they look at the first channel:
    the one ``audio.load_audio`` keeps for conditioning.
    """
    problem = find_sample_problem(channels)
    if problem:
        return problem, []
    wav = channels[0]  # (N,)
    seconds = len(wav) / sample_rate
    if seconds < MIN_CONDITIONING_S:
        samples = f"{len(wav)} sample{'s' * (len(wav) != 1)}"
        return Finding("too short", f"{seconds:.2f} s ({samples} at {sample_rate} Hz), under the "
                                    f"{MIN_CONDITIONING_S:.2f} s ({MIN_CONDITIONING_FRAMES} mel frames) a voice clip "
                                    "needs to say anything in the 6 s conditioning window"), []
    problem = find_silence(wav, sample_rate, settings)
    if problem:
        return problem, []
    clipping = find_clipping(clipped_fraction(channels[:1], settings), settings)
    notes = [clipping] if clipping else []
    level_db = _speech_level_db(wav, sample_rate, settings)
    if level_db < QUIET_SPEECH_DB:
        notes.append(Finding("very quiet", f"its speech is at {level_db:.1f} dBFS, under {QUIET_SPEECH_DB:g} dBFS "
                                           f"(voice preparation levels speech to {settings.speech_level_db:g} dBFS)"))
    if seconds < settings.min_clip_s:
        notes.append(Finding("short", f"{seconds:.2f} s, under the {settings.min_clip_s:g} s voice preparation keeps "
                                      "(most of the 6 s conditioning window is padding; clips of 6-10 s are best)"))
    return None, notes


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
