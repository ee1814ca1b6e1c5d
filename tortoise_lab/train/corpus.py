"""The training corpus: generated English sentences spoken by several espeak-ng voices (or by a pure-torch stand-in).

* ``make_sentences`` (``sentences.py``) writes varied sentences from a small grammar and word lists (no download,
  no licence question) and splits them into a training set, held-out sentences made of training words, and held-out
  sentences that each contain at least one word never used in training (``Sentences``). With
  ``broad_fraction`` > 0 that share of sentences comes from a second grammar over the broad English word lists
  that ship inside the ``wonderwords`` package (MIT; ~1,500 nouns, ~900 adjectives, ~1,000 verbs), so the model
  hears several thousand words instead of a few hundred.
* ``synthesize`` speaks (sentence, voice) pairs with espeak-ng in parallel subprocesses, or with
  ``tone_speech``: a deterministic "speech" made of text-dependent tone pairs, so tests need no espeak-ng.
* ``build_corpus`` does both and caches the audio in one ``.npz`` per recipe (text list + voices + backend +
  espeak-ng version), so a second run of the same recipe reads it back in a second.

Audio is kept as 16-bit integers at 22.05 kHz (espeak-ng's native rate and the conditioning rate); 3 hours take
about 500 MB.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE
from tortoise_lab.files import atomic_path
from tortoise_lab.train.sentences import Sentences

__all__ = ["EspeakVoice", "VOICES", "TEST_VOICES", "Corpus", "synthesize", "tone_speech", "corpus_plan",
           "build_corpus", "espeak_available", "pcm_wav", "renderer", "speech_profile", "profile_indices"]

PCM_SCALE = 32_768.0  # int16 <-> float
WAV_HEADER_BYTES = 44  # espeak-ng --stdout writes a plain 44-byte RIFF header, then 16-bit mono PCM


@dataclass(frozen=True)
class EspeakVoice:
    """One speaker: an espeak-ng voice with a variant (``en-us+f2``), a speed in words a minute and a pitch 0-99."""

    name: str
    voice: str
    speed: int = 160
    pitch: int = 50

    def command(self, text: str) -> list[str]:
        return ["espeak-ng", "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch), "--stdout", text]


# Eight speakers that differ in accent, formant set (the +variant), speed and pitch, so a voice's clips carry
# information the model must use. Variants are espeak-ng's built-in ones (no mbrola data needed).
VOICES: tuple[EspeakVoice, ...] = (
    EspeakVoice("us-m3", "en-us+m3", 160, 40),
    EspeakVoice("us-f2", "en-us+f2", 170, 65),
    EspeakVoice("gb-m1", "en-gb+m1", 150, 45),
    EspeakVoice("gb-f4", "en-gb+f4", 165, 70),
    EspeakVoice("rp-klatt2", "en-gb-x-rp+klatt2", 155, 50),
    EspeakVoice("scot-m5", "en-gb-scotland+m5", 145, 35),
    EspeakVoice("carib-f1", "en-029+f1", 175, 60),
    EspeakVoice("nyc-m7", "en-us-nyc+m7", 180, 30),
)
# Two stand-in speakers for the tone backend in tests (pitch factor in ``pitch``/50, speed as words a minute).
TEST_VOICES: tuple[EspeakVoice, ...] = (EspeakVoice("tone-low", "tones", 160, 40), EspeakVoice("tone-high", "tones", 190, 65))

# ------------------------------------------------------------------------------------------------ synthesis


def pcm_wav(samples: np.ndarray) -> torch.Tensor:
    """int16 samples (what ``synthesize`` gives) -> a (1, N) float32 waveform."""
    return torch.from_numpy(samples.astype(np.float32) / PCM_SCALE).unsqueeze(0)


def renderer(voices: tuple[EspeakVoice, ...], backend: str = "espeak"):
    """``speak(text, voice name) -> (1, N)`` 22.05 kHz waveform, by ``synthesize`` with one of ``voices``."""
    by_name = {v.name: v for v in voices}

    def speak(text: str, voice: str) -> torch.Tensor:
        return pcm_wav(synthesize([(text, by_name[voice])], backend)[0])

    return speak


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak_version() -> str:
    if not espeak_available():
        return "none"
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()


def _espeak(voice: EspeakVoice, text: str) -> np.ndarray:
    """One utterance from espeak-ng as int16 samples at 22.05 kHz."""
    done = subprocess.run(voice.command(text), capture_output=True, check=True)
    data = done.stdout
    if data[:4] != b"RIFF" or len(data) <= WAV_HEADER_BYTES:
        raise RuntimeError(f"espeak-ng gave no audio for {text!r} with voice {voice.voice}: {done.stderr[:200]!r}")
    return np.frombuffer(data[WAV_HEADER_BYTES:], dtype="<i2").copy()


# The tone stand-in: each letter becomes a short chord of two partials whose frequencies follow the letter; spaces
# and punctuation become pauses. It is no speech, but it has what training needs: audio that is a learnable,
# monotonic function of the text, with a duration per symbol and a voice-dependent pitch and speed.
_TONE_LETTER_S = 0.075
_TONE_SPACE_S = 0.05
_TONE_PAUSE_S = 0.15
_TONE_EDGE_S = 0.1  # silence before and after, as espeak-ng leaves


def tone_speech(text: str, voice: EspeakVoice, sample_rate: int = INPUT_SAMPLE_RATE) -> np.ndarray:
    """Deterministic text-dependent tones as int16 samples; ``voice.pitch``/50 scales every frequency and
    ``voice.speed`` (words a minute, 160 = 1x) the tempo."""
    pitch = voice.pitch / 50.0
    tempo = 160.0 / voice.speed
    pieces = [np.zeros(int(_TONE_EDGE_S * sample_rate))]
    for char in text.lower():
        if char.isalpha():
            n = int(_TONE_LETTER_S * tempo * sample_rate)
            t = np.arange(n) / sample_rate
            index = ord(char) - ord("a")
            low, high = (250 + 35 * index) * pitch, (1200 + 90 * (index * 7 % 26)) * pitch
            envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5  # no clicks between letters
            pieces.append(0.3 * envelope * (np.sin(2 * np.pi * low * t) + 0.6 * np.sin(2 * np.pi * high * t)))
        elif char.isdigit():
            pieces.append(tone_speech(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                       "nine"][int(char)], voice, sample_rate)[:-int(_TONE_EDGE_S * sample_rate)]
                          / PCM_SCALE)
        else:
            pause = _TONE_SPACE_S if char == " " else _TONE_PAUSE_S
            pieces.append(np.zeros(int(pause * tempo * sample_rate)))
    pieces.append(np.zeros(int(_TONE_EDGE_S * sample_rate)))
    return np.clip(np.concatenate(pieces) * PCM_SCALE, -PCM_SCALE, PCM_SCALE - 1).astype(np.int16)


def synthesize(pairs: list[tuple[str, EspeakVoice]], backend: str = "espeak", workers: int = 2,
               progress: bool = False) -> list[np.ndarray]:
    """Speak each (text, voice) pair; int16 arrays at 22.05 kHz, in order. espeak-ng runs ``workers`` processes at
    once (about 16 ms a sentence each)."""
    if backend == "tones":
        return [tone_speech(text, voice) for text, voice in pairs]
    if backend != "espeak":
        raise ValueError(f"Unknown synthesis backend {backend!r}. Available: espeak, tones.")
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng), or use backend='tones'.")
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=workers) as pool:  # subprocesses release the GIL: threads suffice
        jobs = pool.map(lambda pair: _espeak(pair[1], pair[0]), pairs)
        return list(tqdm(jobs, total=len(pairs), desc="espeak-ng", disable=not progress))


# --------------------------------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """Utterances: ``texts[i]`` spoken by ``VOICES``-style ``voices[voice_ids[i]]`` as ``audio[i]`` (int16, 22.05 kHz);
    ``splits[i]`` is "train", "held_out" or "unseen"."""

    texts: list[str]
    voice_ids: list[int]
    splits: list[str]
    audio: list[np.ndarray]
    voices: tuple[EspeakVoice, ...]

    def wav(self, index: int) -> torch.Tensor:
        """(1, N) float32 at 22.05 kHz."""
        return pcm_wav(self.audio[index])

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]

    @property
    def hours(self) -> float:
        return sum(len(a) for a in self.audio) / INPUT_SAMPLE_RATE / 3600


def _save_npz(path: Path, corpus: Corpus) -> None:
    lengths = np.array([len(a) for a in corpus.audio], dtype=np.int64)
    meta = {"texts": corpus.texts, "voice_ids": corpus.voice_ids, "splits": corpus.splits,
            "voices": [v.__dict__ for v in corpus.voices]}
    with atomic_path(path) as scratch, open(scratch, "wb") as handle:  # a handle: np.savez would add ".npz" to a name
        np.savez(handle, audio=np.concatenate(corpus.audio), lengths=lengths, meta=np.array(json.dumps(meta)))


def _load_npz(path: Path) -> Corpus:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        offsets = np.concatenate([[0], np.cumsum(data["lengths"])])
        audio = data["audio"]
        pieces = [audio[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    return Corpus(meta["texts"], meta["voice_ids"], meta["splits"], pieces,
                  tuple(EspeakVoice(**v) for v in meta["voices"]))


def corpus_plan(sentences: Sentences, voice_count: int, seed: int = 0,
                eval_voices_per_sentence: int = 1) -> tuple[list[str], list[int], list[str]]:
    """(texts, voice_ids, splits) of the corpus ``build_corpus`` speaks: each training sentence gets one voice
    (round-robin over a seeded shuffle, so voices are balanced); each held-out sentence gets
    ``eval_voices_per_sentence`` voices."""
    rng = random.Random(seed)
    texts, voice_ids, splits = [], [], []
    for split, items, per in (("train", sentences.train, 1), ("held_out", sentences.held_out, eval_voices_per_sentence),
                              ("unseen", sentences.unseen, eval_voices_per_sentence)):
        order = list(range(voice_count))
        for k, text in enumerate(items):
            if k % voice_count == 0:
                rng.shuffle(order)
            for j in range(per):
                texts.append(text)
                voice_ids.append(order[(k + j) % voice_count])
                splits.append(split)
    return texts, voice_ids, splits


def build_corpus(sentences: Sentences, voices: tuple[EspeakVoice, ...] = VOICES, backend: str = "espeak",
                 cache_dir: str | Path | None = None, workers: int = 2, seed: int = 0,
                 eval_voices_per_sentence: int = 1, progress: bool = False) -> Corpus:
    """Speak the sentences, as ``corpus_plan`` assigns them to voices. Cached by recipe."""
    texts, voice_ids, splits = corpus_plan(sentences, len(voices), seed, eval_voices_per_sentence)
    recipe = json.dumps({"texts": texts, "voice_ids": voice_ids, "voices": [v.__dict__ for v in voices],
                         "backend": backend, "espeak": espeak_version() if backend == "espeak" else ""})
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"corpus-{backend}-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        return _load_npz(path)
    audio = synthesize([(t, voices[v]) for t, v in zip(texts, voice_ids)], backend, workers, progress)
    corpus = Corpus(texts, voice_ids, splits, audio, tuple(voices))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_npz(path, corpus)
    return corpus


# ---------------------------------------------------------------------------------------------- speech profile

PROFILE_UTTERANCES = 2000  # training utterances measured for the manifest's speech profile (every k-th one)
PROFILE_PERCENTILES = (1, 5, 50, 95, 99)


def profile_indices(count: int, limit: int = PROFILE_UTTERANCES) -> list[int]:
    """Evenly spaced positions among ``count`` items, at most ``limit`` of them (all when there are fewer)."""
    step = max(1, -(-count // limit))  # ceiling division
    return list(range(0, count, step))[:limit]


def speech_profile(texts: list[str], wavs: list[np.ndarray], sample_rate: int = INPUT_SAMPLE_RATE) -> dict:
    """What a model trained on these utterances can be expected to say: percentiles of the texts' lengths in
    characters (chunking stays within them), the most sentences one utterance holds, and percentiles of the
    speaking rate in letters per second of speech (the pipeline's duration check, ``stages.pacing``). ``wavs`` are
    int16 arrays or float tensors."""
    from tortoise_lab.stages.pacing import count_letters, speech_seconds

    lengths = np.array([len(text) for text in texts], dtype=np.float64)
    rates = []
    for text, wav in zip(texts, wavs):
        samples = torch.as_tensor(np.asarray(wav, dtype=np.float32) / (PCM_SCALE if np.asarray(wav).dtype == np.int16
                                                                       else 1.0))
        seconds = speech_seconds(samples, sample_rate)
        if seconds > 0:
            rates.append(count_letters(text) / seconds)

    def percentiles(values) -> dict[str, float]:
        return {f"p{p}": round(float(np.percentile(values, p)), 2) for p in PROFILE_PERCENTILES}

    sentences = [len(re.findall(r"[.!?](?:\s|$)", text.strip())) or 1 for text in texts]
    return {"utterances": len(texts), "text_characters": {**percentiles(lengths), "max": int(lengths.max())},
            "letters_per_second": percentiles(np.array(rates)), "most_sentences": max(sentences)}
