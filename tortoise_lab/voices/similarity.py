"""How much a recording sounds like a voice: one interface (``SpeakerMeasure``), two measures.

* **encoder** (the default): the cosine of GE2E speaker-encoder d-vectors (``models.speaker_encoder``, Resemblyzer
  0.1.4's weights, fetched by ``tortoise-lab assets``). Audio is prepared as the encoder was trained: 16 kHz, quiet
  recordings raised to -30 dBFS, pauses longer than about 0.2 s cut (WebRTC's voice-activity detector, from the
  ``webrtcvad-wheels`` package). A voice's vector is the normalised mean of its clips' vectors; of a longer
  recording the encoder hears the first minute (``ENCODER_MAX_SECONDS``).
* **mfcc**: the cosine of [mean, std] of MFCCs 1-19 over the voiced frames, the clips pooled. It needs nothing but
  torchaudio; it reacts to the recording channel (microphone, room) as much as to the speaker, so it separates
  speakers far less well (the README measures both on the built-in voices).

``measure(name)`` gives either; ``voice_vector`` embeds a voice's clips once and caches the result beside the voice
(as the conditioning latents are), keyed by the clips' bytes and the measure; ``clip_agreement`` says how alike the
voice's own clips are (each against the rest): the ceiling a take can be expected to reach.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from tortoise_lab.audio import INPUT_SAMPLE_RATE, resample
from tortoise_lab.files import atomic_path
from tortoise_lab.voices.library import CACHE_FOLDER, Voice

__all__ = ["MEASURES", "DEFAULT_MEASURE", "SimilarityUnavailable", "SpeakerMeasure", "EncoderMeasure",
           "MfccMeasure", "measure", "cosine", "voice_vector", "similarity_to_voice", "clip_scores", "clip_agreement",
           "mfcc_statistics", "Separation", "separation"]

MEASURES = ("encoder", "mfcc")
DEFAULT_MEASURE = "encoder"

# The encoder's preparation (Resemblyzer's audio hyper-parameters).
TARGET_DBFS = -30.0  # quieter audio is raised to this loudness, louder is left alone
VAD_WINDOW_MS = 30  # WebRTC VAD frames
VAD_SMOOTHING = 8  # frames in the moving average of the speech flags
VAD_MAX_SILENCE = 6  # frames of silence kept around speech (the flags are dilated by this)
VAD_MODE = 3  # the detector's most aggressive setting
# The encoder hears at most a recording's first minute: a speaker's d-vector settles within seconds of speech, and
# preparing five minutes at once would hold ~200 MB more (tests/test_compare.py bounds a 5-minute comparison).
ENCODER_MAX_SECONDS = 60

# The MFCC statistics.
N_MFCC = 20  # coefficient 0 (loudness) is dropped, 1..19 kept
VOICED_FRAMES_DB = 35.0  # frames quieter than the loudest by more than this are pauses, left out


class SimilarityUnavailable(RuntimeError):
    """A measure that cannot run here (its weights or a package missing); the message says how to fix it."""


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0))


class SpeakerMeasure:
    """A way to turn audio into a vector whose cosine says how alike two speakers sound."""

    name: str
    fingerprint: str  # what a cached vector depends on, besides the clips

    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """(1, N) or (N,) audio -> (D,) vector."""
        raise NotImplementedError

    def voice(self, clips: list[torch.Tensor], clip_vectors: torch.Tensor) -> torch.Tensor:
        """The voice's vector from its 22.05 kHz clips and their own vectors (C, D)."""
        raise NotImplementedError


def mfcc_statistics(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """[mean, std] over voiced frames of MFCCs 1..19 of a (1, N) waveform -> (38,)."""
    wav = resample(wav.reshape(1, -1).float(), sample_rate, INPUT_SAMPLE_RATE)
    mfcc = torchaudio.transforms.MFCC(sample_rate=INPUT_SAMPLE_RATE, n_mfcc=N_MFCC,
                                      melkwargs={"n_fft": 1024, "hop_length": 256, "n_mels": 80})(wav)[0]  # (20, T)
    energy = mfcc[0]
    voiced = energy >= energy.max() - VOICED_FRAMES_DB
    coefficients = mfcc[1:, voiced]  # (19, T_voiced)
    return torch.cat([coefficients.mean(dim=1), coefficients.std(dim=1, unbiased=False)])


class MfccMeasure(SpeakerMeasure):
    name = "mfcc"
    fingerprint = "mfcc-statistics-1"

    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return mfcc_statistics(wav, sample_rate)

    def voice(self, clips: list[torch.Tensor], clip_vectors: torch.Tensor) -> torch.Tensor:
        # The clips pooled into one recording: statistics over every voiced frame of the voice.
        return mfcc_statistics(torch.cat([c.reshape(1, -1) for c in clips], dim=-1), INPUT_SAMPLE_RATE)


PCM_MAX = 2 ** 15 - 1


def _loudness_raised(wav: np.ndarray) -> np.ndarray:
    """(N,) float32 ``wav`` raised to ``TARGET_DBFS`` when it is quieter (never lowered); float32 arithmetic, as the
    encoder's own preparation does it."""
    rms = np.sqrt(np.mean((wav * PCM_MAX) ** 2))
    change = TARGET_DBFS - 20 * np.log10(max(rms, np.float32(1e-9)) / PCM_MAX)
    return wav * (10 ** (change / 20)) if change > 0 else wav


def _long_pauses_cut(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """``wav`` without the pauses the voice-activity detector finds longer than about ``VAD_MAX_SILENCE`` frames: the
    speech flags of 30 ms frames, smoothed by a moving average, rounded, then dilated by ``VAD_MAX_SILENCE``."""
    import webrtcvad

    window = VAD_WINDOW_MS * sample_rate // 1000
    wav = wav[:len(wav) - len(wav) % window]
    pcm = np.round(wav * PCM_MAX).astype("<i2").tobytes()
    detector = webrtcvad.Vad(VAD_MODE)
    flags = np.array([detector.is_speech(pcm[2 * start:2 * (start + window)], sample_rate)
                      for start in range(0, len(wav), window)], dtype=float)
    padded = np.concatenate([np.zeros((VAD_SMOOTHING - 1) // 2), flags, np.zeros(VAD_SMOOTHING // 2)])
    totals = np.cumsum(padded)
    totals[VAD_SMOOTHING:] = totals[VAD_SMOOTHING:] - totals[:-VAD_SMOOTHING]
    speech = np.round(totals[VAD_SMOOTHING - 1:] / VAD_SMOOTHING).astype(bool)
    # Dilation by a centred run of VAD_MAX_SILENCE + 1 frames: a frame is kept if any flag in that run is set.
    reach = VAD_MAX_SILENCE + 1
    kept = np.convolve(speech.astype(int), np.ones(reach, dtype=int))[reach // 2:reach // 2 + len(speech)] > 0
    return wav[np.repeat(kept, window)]


class EncoderMeasure(SpeakerMeasure):
    name = "encoder"
    fingerprint = "resemblyzer-0.1.4-ge2e"

    def __init__(self, weights: str | Path | None = None, device: str | torch.device | None = None):
        from tortoise_lab.assets import speaker_encoder_file
        from tortoise_lab.checkpoints import load_weights
        from tortoise_lab.models.speaker_encoder import SpeakerEncoder

        path = Path(weights) if weights else speaker_encoder_file()
        if not path.is_file():
            raise SimilarityUnavailable(f"The speaker encoder's weights are not in {path}; run `tortoise-lab assets` "
                                        "once (it fetches them from the package index), or use the mfcc measure.")
        try:
            import webrtcvad  # noqa: F401  (the preparation needs it; fail here, not in the middle of a ranking)
        except ImportError as error:
            raise SimilarityUnavailable(f"The speaker encoder needs the webrtcvad-wheels package ({error}); "
                                        "install tortoise-lab[voices], or use the mfcc measure.") from None
        self.model = load_weights(SpeakerEncoder(), path, "speaker_encoder").eval()
        if device is not None:
            self.model.to(device)

    def prepare(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """(1, N) audio at any rate -> (N',) float32 at 16 kHz, raised to -30 dBFS if quieter, long pauses cut."""
        rate = self.model.config.sample_rate
        samples = resample(wav.reshape(1, -1).float().cpu(), sample_rate, rate)[0].numpy()  # float32
        return torch.from_numpy(_long_pauses_cut(_loudness_raised(samples), rate).astype(np.float32))

    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        wav = wav.reshape(1, -1)[:, :ENCODER_MAX_SECONDS * sample_rate]
        prepared = self.prepare(wav, sample_rate)
        if prepared.numel() == 0:  # the detector heard no speech at all: embed the audio as it is
            prepared = resample(wav.reshape(1, -1).float().cpu(), sample_rate, self.model.config.sample_rate)[0]
        return self.model.embed(prepared)

    def voice(self, clips: list[torch.Tensor], clip_vectors: torch.Tensor) -> torch.Tensor:
        mean = clip_vectors.mean(dim=0)
        return mean / mean.norm()


@functools.lru_cache(maxsize=None)
def _encoder(weights: str | None) -> EncoderMeasure:
    return EncoderMeasure(weights)


def measure(name: str = DEFAULT_MEASURE, weights: str | Path | None = None) -> SpeakerMeasure:
    """The measure called ``name`` (one of ``MEASURES``); the encoder is loaded once per process.
    ``SimilarityUnavailable`` when it cannot run here."""
    if name not in MEASURES:
        raise ValueError(f"Unknown similarity measure {name!r}. Available: {', '.join(MEASURES)}.")
    return MfccMeasure() if name == "mfcc" else _encoder(str(weights) if weights else None)


@dataclass(frozen=True)
class VoiceVectors:
    voice: torch.Tensor  # (D,) the voice's vector
    clips: torch.Tensor  # (C, D) each clip's own


def _clips_of(voice: Voice) -> list[torch.Tensor]:
    clips = voice.clips or [c for part, _ in voice.parts for c in part.clips]
    if not clips:
        raise ValueError(f"Voice {voice.name!r} has no clips to compare against; similarity needs a clip voice.")
    return clips


def _cache_path(voice: Voice, scorer: SpeakerMeasure) -> Path | None:
    if voice.folder is None or not voice.files:
        return None
    key = hashlib.sha256(f"{voice.clip_hash()}:{scorer.fingerprint}".encode()).hexdigest()[:32]
    return voice.folder / CACHE_FOLDER / f"speaker-{scorer.name}-{key}.safetensors"


def voice_vectors(voice: Voice, scorer: SpeakerMeasure) -> VoiceVectors:
    """The voice's vector and its clips' vectors under ``scorer``: read from beside the voice when its clips are
    unchanged since they were stored, else computed (and stored, atomically; a read-only folder is left alone)."""
    from safetensors.torch import load_file, save_file

    path = _cache_path(voice, scorer)
    if path is not None and path.is_file():
        stored = load_file(str(path))
        return VoiceVectors(stored["voice"], stored["clips"])
    clips = _clips_of(voice)
    clip_vectors = torch.stack([scorer.embed(c, INPUT_SAMPLE_RATE) for c in clips])
    vectors = VoiceVectors(scorer.voice(clips, clip_vectors), clip_vectors)
    if path is not None:
        try:
            with atomic_path(path) as scratch:
                save_file({"voice": vectors.voice.contiguous(), "clips": vectors.clips.contiguous()}, str(scratch),
                          metadata={"voice": voice.name, "measure": scorer.fingerprint})
        except OSError:
            pass
    return vectors


def voice_vector(voice: Voice, scorer: SpeakerMeasure) -> torch.Tensor:
    return voice_vectors(voice, scorer).voice


def similarity_to_voice(wav: torch.Tensor, sample_rate: int, voice: Voice, scorer: SpeakerMeasure) -> float:
    """How much ``wav`` sounds like ``voice`` under ``scorer``: the cosine of their vectors."""
    return cosine(scorer.embed(wav, sample_rate), voice_vector(voice, scorer))


def clip_scores(voice: Voice, scorer: SpeakerMeasure) -> list[float]:
    """Each of the voice's clips against the vector of its other clips (empty for a voice of one clip)."""
    vectors = voice_vectors(voice, scorer)
    clips = _clips_of(voice)
    if len(clips) < 2:
        return []
    scores = []
    for k in range(len(clips)):
        others = [c for j, c in enumerate(clips) if j != k]
        rest = scorer.voice(others, torch.cat([vectors.clips[:k], vectors.clips[k + 1:]]))
        scores.append(cosine(vectors.clips[k], rest))
    return scores


def clip_agreement(voice: Voice, scorer: SpeakerMeasure) -> dict[str, float] | None:
    """How alike the voice's own clips are under ``scorer`` (``clip_scores``: "mean" and "min" over clips): what a
    perfect clone could score. None for a voice of one clip."""
    scores = clip_scores(voice, scorer)
    return {"mean": float(np.mean(scores)), "min": float(np.min(scores))} if scores else None


@dataclass(frozen=True)
class Separation:
    """How well a measure tells the speakers of some voices apart, clip by clip."""

    measure: str
    voices: int
    clips: int
    same_mean: float  # cosine over every pair of clips of one voice
    same_min: float
    different_mean: float  # cosine over every pair of clips of two voices
    different_max: float
    nearest_own: float  # share of clips nearer their own voice (its other clips) than any other voice (all clips)
    misplaced: tuple[str, ...]  # "voice clip k -> other voice" for each clip that is not


def separation(voices: list[Voice], scorer: SpeakerMeasure) -> Separation:
    """Every clip of ``voices`` (each with two clips or more) embedded by ``scorer``; pairs within and across voices,
    and whether each clip is nearer its own voice's other clips than any other voice's clips (vectors as
    ``SpeakerMeasure.voice`` makes them)."""
    vectors = {v.name: voice_vectors(v, scorer).clips for v in voices}
    clips = {v.name: _clips_of(v) for v in voices}
    same, different = [], []
    names = list(vectors)
    for a, name in enumerate(names):
        for b in range(a, len(names)):
            other = names[b]
            pairs = torch.nn.functional.normalize(vectors[name], dim=1) @ \
                torch.nn.functional.normalize(vectors[other], dim=1).T  # (C_a, C_b) cosines
            if name == other:
                same += pairs[torch.triu_indices(*pairs.shape, offset=1).unbind()].tolist()
            else:
                different += pairs.flatten().tolist()
    misplaced, total = [], 0
    whole = {name: scorer.voice(clips[name], vectors[name]) for name in names}
    for voice in voices:
        name = voice.name
        for k, own in enumerate(clip_scores(voice, scorer)):  # each clip against its voice's other clips
            total += 1
            rival = max((n for n in names if n != name), key=lambda n: cosine(vectors[name][k], whole[n]))
            if cosine(vectors[name][k], whole[rival]) >= own:
                misplaced.append(f"{name} clip {k + 1} -> {rival}")
    return Separation(scorer.name, len(names), total, float(np.mean(same)), float(np.min(same)),
                      float(np.mean(different)), float(np.max(different)), 1 - len(misplaced) / total,
                      tuple(misplaced))
