"""Measuring a recording or a voice clip, and the checks built on it, shared by voice preparation
(``recording.prepare_recording``) and voice loading (``library.load_voice``): noise floor, clipping, speech level,
and ``check_clip``, which sorts what is wrong with a clip into what makes it unusable and what is worth a note.
``PrepSettings`` holds every threshold, with the reasons for each."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tortoise_lab.audio import HOP_LENGTH, INPUT_SAMPLE_RATE, AudioError

__all__ = ["PrepSettings", "noise_floor_db", "clipped_fraction", "Finding", "unreadable", "find_sample_problem",
           "find_clipping", "find_silence", "check_clip", "MIN_CONDITIONING_FRAMES", "MIN_CONDITIONING_S",
           "QUIET_SPEECH_DB", "SILENCE_DB"]

SILENCE_DB = -120.0  # what the level of digital silence is reported as (instead of -inf)

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


def _speech_level_db(wav: np.ndarray, sample_rate: int, settings: PrepSettings) -> float:
    """A mono clip's speech level, dBFS: RMS of its frames within ``level_window_db`` of its loudest frame."""
    hop = round(settings.hop_s * sample_rate)
    powers = _frame_powers(wav, round(settings.frame_s * sample_rate), hop)
    speech = powers[_to_db(powers) > _to_db(powers.max()) - settings.level_window_db]
    return float(_to_db(speech.mean()))


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
