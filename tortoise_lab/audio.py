"""Audio in and out, and the two mel front-ends the models listen through.

* ``load_audio`` / ``save_audio``: files <-> (1, N) float32 mono waveforms in [-1, 1]; ``read_audio`` decodes a
  file as it is (every channel, its own rate) and ``resample`` changes rate, for callers with their own policy.
* ``conditioning_mel``: the 80-band, 22.05 kHz mel the autoregressive model (and CLVP/CVVP) condition on,
  computed over a fixed 6-second window and divided by the official per-band ``mel_norms.pth``.
* ``univnet_mel``: the 100-band, 24 kHz Tacotron-style log mel that the diffusion decoder produces and the
  UnivNet vocoder consumes; ``diffusion_conditioning_mel`` is it over a fixed ~4.3-second window.

The numbers match upstream tortoise-tts 3.0.0 (``tests/parity/test_audio.py``).
"""

from __future__ import annotations

import functools
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from tortoise_lab.config import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE  # re-exported: the rates audio is read and written at
from tortoise_lab.files import atomic_path

__all__ = [
    "AudioError",
    "INPUT_SAMPLE_RATE",
    "OUTPUT_SAMPLE_RATE",
    "CONDITIONING_SAMPLES",
    "growing_wav",
    "writable_format",
    "DIFFUSION_CONDITIONING_SAMPLES",
    "UNIVNET_MEL_MIN",
    "UNIVNET_MEL_MAX",
    "LOG_FLOOR",
    "read_audio",
    "resample",
    "load_audio",
    "conform_audio",
    "save_audio",
    "pad_or_truncate",
    "conditioning_mel",
    "official_mel_norms",
    "univnet_mel",
    "normalize_univnet_mel",
    "denormalize_univnet_mel",
    "diffusion_conditioning_mel",
]

CONDITIONING_SAMPLES = 132_300  # 6 s at 22.05 kHz: the window the autoregressive conditioning sees
DIFFUSION_CONDITIONING_SAMPLES = 102_400  # ~4.27 s at 24 kHz (400 hops): the diffusion conditioning window

# Both mels: 1024-point FFT, hop 256, periodic Hann window, reflect-padded centred frames.
N_FFT = 1024
HOP_LENGTH = 256
WIN_LENGTH = 1024
LOG_FLOOR = 1e-5  # power/magnitude floor before the log: silence becomes log(1e-5) = -11.51

# The conditioning mel: power spectrum, HTK mel scale with Slaney area normalisation (torchaudio's
# MelSpectrogram(norm="slaney") with its default mel_scale, as upstream built it).
CONDITIONING_MELS = 80
CONDITIONING_FMAX = 8_000.0

# The UnivNet mel: magnitude spectrum, Slaney mel scale and normalisation (librosa's default filters).
UNIVNET_MELS = 100
UNIVNET_FMAX = 12_000.0
MEL_FMIN = 0.0
# normalize_univnet_mel maps this range onto [-1, 1]: log(LOG_FLOOR) up to the largest value seen in training.
# The diffusion decoder works in the normalised scale.
UNIVNET_MEL_MIN = -11.512925148010254
UNIVNET_MEL_MAX = 2.3143386840820312

# Upstream warns about (and then clips) audio whose peak exceeds this: a sign of a wrong sample format.
_SUSPICIOUS_PEAK = 2.0


# --------------------------------------------------------------------------------------------- file I/O


class AudioError(ValueError):
    """An audio file that cannot be read as audio; ``reason`` is libsndfile's own words (e.g. "Format not
    recognised"), for callers that word the message themselves."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode a file with libsndfile, as it is: ((channels, N) float32, in [-1, 1) for PCM; its sample rate).

    No mixing, resampling or clipping (``load_audio`` does those). Raises ``AudioError`` for anything that is not
    audio libsndfile decodes.
    """
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        formats = ", ".join(sorted(soundfile.available_formats()))
        reason = str(error).split(": ", 1)[-1].rstrip(".")  # without libsndfile's "Error opening '<path>'" prefix
        raise AudioError(f"Could not read {path} as audio ({error}); readable formats: {formats}.", reason) from None
    return torch.from_numpy(data.T.copy()), rate  # (C, N)


def resample(wav: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """``wav`` (..., N) at ``rate`` -> (..., N * target / rate) at ``target``: ``torchaudio.functional.resample``
    with its defaults, as upstream; returned as it is when the rates agree."""
    return wav if rate == target else AF.resample(wav, rate, target)


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Load an audio file as a (1, N) float32 mono waveform at ``sample_rate``, clipped to [-1, 1].

    Any format libsndfile reads (WAV, FLAC, OGG, and MP3 with libsndfile >= 1.1). Multi-channel files keep
    their *first* channel, as upstream does (so conditioning computed from stereo clips matches). Resampling
    uses ``torchaudio.functional.resample`` with its defaults, also as upstream. Upstream decoded MP3 with
    librosa (channel mean, soxr resampling), so MP3 inputs match it only approximately.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No audio file at {path}.")
    return conform_audio(*read_audio(path), sample_rate, path)


def conform_audio(channels: torch.Tensor, rate: int, sample_rate: int, path: str | Path = "audio") -> torch.Tensor:
    """``load_audio``'s steps on samples already read (``read_audio``'s (C, N) and rate): the first channel,
    resampled to ``sample_rate``, clipped to [-1, 1], (1, N'). ``path`` names the source in messages."""
    if channels.shape[1] == 0:
        raise AudioError(f"{path} holds no audio samples.")
    wav = resample(channels[:1], rate, sample_rate)  # (1, N')
    if wav.abs().max() > _SUSPICIOUS_PEAK or not (wav < 0).any():
        warnings.warn(
            f"{path} looks wrong (peak {wav.max().item():.3f}, minimum {wav.min().item():.3f}); "
            "it is clipped to [-1, 1], check its sample format.",
            stacklevel=2,
        )
    return wav.clamp_(-1, 1)


def writable_format(path: str | Path) -> str:
    """The libsndfile format ``save_audio`` writes ``path`` in, named by its suffix ("WAV", "FLAC", "MP3"...).

    Raises ValueError, in one sentence, for a suffix it cannot write: unknown to libsndfile, or RAW (listed, but
    with no sample encoding to write it in).
    """
    import soundfile

    fmt = Path(path).suffix.lstrip(".").upper()
    if fmt not in soundfile.available_formats() or soundfile.default_subtype(fmt) is None:
        raise ValueError(f"Cannot write audio to {path}: unknown audio suffix; give it a .wav name (or .flac, .ogg, "
                         ".mp3).")
    return fmt


def save_audio(path: str | Path, wav: torch.Tensor, sample_rate: int, subtype: str | None = None) -> Path:
    """Write a (1, N) or (N,) waveform to ``path`` atomically: readers never see a half-written file.

    The format follows the suffix (``.wav``, ``.flac``, ``.ogg``...). WAV defaults to 32-bit float, which
    keeps model output bit-exact; pass ``subtype="PCM_16"`` for smaller files. The same samples always give
    the same bytes.
    """
    import soundfile

    path = Path(path)
    if wav.dim() == 2 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.dim() != 1:
        raise ValueError(f"save_audio takes a mono waveform of shape (1, N) or (N,), got {tuple(wav.shape)}.")
    fmt = writable_format(path)
    if subtype is None and fmt == "WAV":
        subtype = "FLOAT"
    data = wav.detach().to("cpu", torch.float32).numpy()
    with atomic_path(path) as scratch:
        with soundfile.SoundFile(str(scratch), "w", sample_rate, 1, subtype, format=fmt) as handle:
            if fmt == "WAV":
                _drop_peak_chunk(handle)
            handle.write(data)
    return path


@contextmanager
def growing_wav(path: str | Path, sample_rate: int) -> Iterator[Callable[[torch.Tensor], None]]:
    """Yield a function that appends (1, n) or (n,) pieces to the WAV at ``path`` as they come (a stream's take).

    The header is rewritten after every piece, so a reader sees a valid file that grows; when the block ends it holds
    exactly the bytes ``save_audio`` writes for the pieces joined (32-bit float, no PEAK chunk). If the block fails,
    the partial file is removed: a take is there whole or not at all once the block is left.
    """
    import soundfile

    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise ValueError(f"Cannot stream to {path}: a growing file is a .wav; give it a .wav name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = soundfile.SoundFile(str(path), "w", sample_rate, 1, "FLOAT", format="WAV")
    try:
        _drop_peak_chunk(handle)
        _update_header_after_each_write(handle)

        def write(piece: torch.Tensor) -> None:
            handle.write(piece.detach().reshape(-1).to("cpu", torch.float32).numpy())
            handle.flush()

        yield write
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    handle.close()


_SFC_SET_UPDATE_HEADER_AUTO = 0x1061  # libsndfile command: rewrite the header after every write
_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile command: whether float WAVs get a PEAK chunk


def _update_header_after_each_write(handle) -> None:
    """libsndfile writes a WAV's sizes into its header only when the file is closed; ask for it after every write,
    so the file is valid while it grows."""
    import soundfile

    soundfile._snd.sf_command(handle._file, _SFC_SET_UPDATE_HEADER_AUTO, soundfile._ffi.NULL, 1)


def _drop_peak_chunk(handle) -> None:
    """libsndfile stamps float WAVs with a PEAK chunk holding the write time, so equal samples would give unequal
    files; switch it off to keep outputs byte-for-byte reproducible."""
    import soundfile

    try:
        soundfile._snd.sf_command(handle._file, _SFC_SET_ADD_PEAK_CHUNK, soundfile._ffi.NULL, 0)
    except AttributeError:  # a soundfile without these internals: the file keeps its PEAK chunk
        pass


def pad_or_truncate(wav: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad or cut the last axis of ``wav`` to exactly ``length`` samples (cuts keep the start)."""
    gap = length - wav.shape[-1]
    return F.pad(wav, (0, gap)) if gap > 0 else wav[..., :length]


# ------------------------------------------------------------------------------------------- mel helpers


def _as_mono_batch(wav: torch.Tensor) -> torch.Tensor:
    """(N,) or (1, N) -> (1, N)."""
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    if wav.dim() != 2 or wav.shape[0] != 1:
        raise ValueError(f"Expected a mono waveform of shape (N,) or (1, N), got {tuple(wav.shape)}.")
    return wav


def _magnitudes(wav: torch.Tensor) -> torch.Tensor:
    """|STFT| of (1, N) audio with centred, reflect-padded frames -> (1, N_FFT // 2 + 1, N // HOP_LENGTH + 1)."""
    window = torch.hann_window(WIN_LENGTH, periodic=True, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(wav, N_FFT, HOP_LENGTH, WIN_LENGTH, window, center=True, pad_mode="reflect",
                      normalized=False, onesided=True, return_complex=True)
    return spec.abs()


@functools.lru_cache(maxsize=4)
def _mel_filters(n_mels: int, sample_rate: int, fmax: float, mel_scale: str) -> torch.Tensor:
    """(n_mels, N_FFT // 2 + 1) triangular filters, each normalised to unit area (Slaney)."""
    banks = AF.melscale_fbanks(N_FFT // 2 + 1, MEL_FMIN, fmax, n_mels, sample_rate, norm="slaney",
                               mel_scale=mel_scale)  # (freqs, mels)
    return banks.T.contiguous()


@functools.lru_cache(maxsize=2)
def _load_mel_norms(path: str) -> torch.Tensor:
    return torch.load(path, map_location="cpu", weights_only=True)


def official_mel_norms() -> torch.Tensor:
    """The official per-band scale of the conditioning mel (``mel_norms.pth``): (80,)."""
    from tortoise_lab.assets import data_file

    return _load_mel_norms(str(data_file("mel_norms.pth")))


# ------------------------------------------------------------------------------------------ the two mels


def conditioning_mel(wav: torch.Tensor, start: int = 0, mel_norms: torch.Tensor | None = None) -> torch.Tensor:
    """The autoregressive model's conditioning mel of a 22.05 kHz clip: (N,) or (1, N) -> (80, 517).

    The clip is zero-padded or cut to ``CONDITIONING_SAMPLES`` first. A longer clip is cut at ``start``
    (upstream draws it with ``random.randint(0, N - CONDITIONING_SAMPLES)``; pass such a draw to reproduce a
    run, the default keeps the first 6 s). The log power mel is divided band by band by ``mel_norms``
    (default: the official file).
    """
    wav = _as_mono_batch(wav)  # (1, N)
    excess = wav.shape[-1] - CONDITIONING_SAMPLES
    if not 0 <= start <= max(excess, 0):
        raise ValueError(f"start must be in [0, {max(excess, 0)}] for a clip of {wav.shape[-1]} samples, got {start}.")
    wav = pad_or_truncate(wav[..., start:], CONDITIONING_SAMPLES)  # (1, 132300)
    power = _magnitudes(wav).pow(2)  # (1, 513, 517)
    filters = _mel_filters(CONDITIONING_MELS, INPUT_SAMPLE_RATE, CONDITIONING_FMAX, "htk").to(wav)
    mel = torch.log(torch.clamp(filters @ power[0], min=LOG_FLOOR))  # (80, 517)
    norms = official_mel_norms() if mel_norms is None else mel_norms
    return mel / norms.to(mel).unsqueeze(-1)


def univnet_mel(wav: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """The 100-band log magnitude mel of 24 kHz audio: (N,) or (1, N) -> (100, N // 256 + 1).

    This is the representation the diffusion decoder works in and the vocoder turns into audio. Samples are
    clipped to [-1, 1] first. With ``normalize`` the result is mapped from [UNIVNET_MEL_MIN, UNIVNET_MEL_MAX]
    to [-1, 1].
    """
    wav = _as_mono_batch(wav).clamp(-1, 1)  # (1, N)
    magnitude = _magnitudes(wav)[0]  # (513, T)
    filters = _mel_filters(UNIVNET_MELS, OUTPUT_SAMPLE_RATE, UNIVNET_FMAX, "slaney").to(wav)
    mel = torch.log(torch.clamp(filters @ magnitude, min=LOG_FLOOR))  # (100, T)
    return normalize_univnet_mel(mel) if normalize else mel


def normalize_univnet_mel(mel: torch.Tensor) -> torch.Tensor:
    """Map a log mel from [UNIVNET_MEL_MIN, UNIVNET_MEL_MAX] to [-1, 1]."""
    return 2 * (mel - UNIVNET_MEL_MIN) / (UNIVNET_MEL_MAX - UNIVNET_MEL_MIN) - 1


def denormalize_univnet_mel(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize_univnet_mel``: the diffusion decoder's [-1, 1] output back to a log mel."""
    return (mel + 1) / 2 * (UNIVNET_MEL_MAX - UNIVNET_MEL_MIN) + UNIVNET_MEL_MIN


def diffusion_conditioning_mel(wav: torch.Tensor) -> torch.Tensor:
    """The diffusion decoder's conditioning mel of a 22.05 kHz clip: (N,) or (1, N) -> (100, 401).

    Resampled to 24 kHz, zero-padded or cut (keeping the start) to ``DIFFUSION_CONDITIONING_SAMPLES``, and
    not normalised.
    """
    wav = resample(_as_mono_batch(wav), INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)  # (1, N * 24000 / 22050)
    return univnet_mel(pad_or_truncate(wav, DIFFUSION_CONDITIONING_SAMPLES))
