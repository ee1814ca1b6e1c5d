"""Mel codes for the embedded model: k-means over stacked log-mel frames, in the role of TorToiSe's dVAE.

A code stands for ``stack`` consecutive frames of the 100-band, 24 kHz UnivNet log mel (hop 256), so with the
default stack of 4 one code covers 1024 output samples: the same ``mel_length_compression`` as TorToiSe's codes
(there: 4 frames of the 22.05 kHz mel). Decoding a code is looking up its centroid (``decode``): the simplest mel
decoder, and the start of the embedded set's learned one (``code_decoder.py``: each centroid corrected by the codes
around it), whose error on real speech bounds what any model predicting these codes can reach (0.424 on the broad
run's renderings, where the centroids alone reach 0.604).

Why k-means and not a VQ-VAE: measured. On the broad run's 100 evaluation renderings the k-means code book's ceiling
is 0.604 with 510 of its 512 codes in use; a small VQ-VAE with the same 512 codes per 4 frames
(``tortoise_lab.train.experiments.vqvae``) reached 0.805 (31 codes in use) or 0.873 (112 in use, cosine codes). k-means also fits
in minutes with no training loop.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchaudio.functional as AF

from tortoise_lab.audio import INPUT_SAMPLE_RATE, LOG_FLOOR, OUTPUT_SAMPLE_RATE, univnet_mel
from tortoise_lab.files import atomic_path

__all__ = ["QuantizerConfig", "KMeansQuantizer", "code_mel", "stack_frames", "unstack_frames"]

SILENCE_LOG_MEL = float(torch.tensor(LOG_FLOOR).log())  # what univnet_mel gives for digital silence
ASSIGN_CHUNK = 8192  # vectors per distance matrix while assigning (bounds memory: chunk x codes floats)


@dataclass
class QuantizerConfig:
    codes: int = 512  # codebook size; the AR model's vocabulary is this + start + stop
    stack: int = 4  # mel frames per code (4 x hop 256 = 1024 samples at 24 kHz)
    bands: int = 100  # the UnivNet mel's bands
    iterations: int = 25  # Lloyd iterations after k-means++ seeding
    max_vectors: int = 200_000  # fit on at most this many stacked frames (a seeded sample)
    init_vectors: int = 20_000  # k-means++ seeding runs on this many (it is sequential in the codes)
    seed: int = 0

    @property
    def dim(self) -> int:
        return self.stack * self.bands


def code_mel(wav: torch.Tensor, sample_rate: int = INPUT_SAMPLE_RATE) -> torch.Tensor:
    """The mel codes are made of: (1, N) audio -> (100, frames) UnivNet log mel at 24 kHz."""
    if sample_rate != OUTPUT_SAMPLE_RATE:
        wav = AF.resample(wav, sample_rate, OUTPUT_SAMPLE_RATE)
    return univnet_mel(wav)


def stack_frames(mel: torch.Tensor, stack: int) -> torch.Tensor:
    """(bands, F) -> (ceil(F / stack), stack * bands): each row is ``stack`` frames, frame-major. The tail is padded
    with silence (espeak-ng utterances end in silence, so this adds nothing audible)."""
    bands, frames = mel.shape
    pad = -frames % stack
    if pad:
        mel = torch.cat([mel, mel.new_full((bands, pad), SILENCE_LOG_MEL)], dim=1)
    return mel.T.reshape(-1, stack * bands)  # (L, stack*bands)


def unstack_frames(vectors: torch.Tensor, stack: int) -> torch.Tensor:
    """Inverse of ``stack_frames``: (L, stack * bands) -> (bands, L * stack)."""
    return vectors.reshape(-1, vectors.shape[-1] // stack).T


def _nearest(vectors: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For (N, D) vectors: (index of the nearest of (K, D) centroids (N,), squared distance to it (N,))."""
    c_sq = centroids.pow(2).sum(1)  # (K,)
    indices, distances = [], []
    for chunk in vectors.split(ASSIGN_CHUNK):
        d = chunk.pow(2).sum(1, keepdim=True) - 2 * chunk @ centroids.T + c_sq  # (n, K)
        best = d.min(dim=1)
        indices.append(best.indices)
        distances.append(best.values.clamp_min(0))
    return torch.cat(indices), torch.cat(distances)


def _kmeans_plus_plus(vectors: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centroid drawn with probability proportional to squared distance."""
    first = int(torch.randint(len(vectors), (1,), generator=generator))
    centroids = [vectors[first]]
    distances = (vectors - vectors[first]).pow(2).sum(1)
    for _ in range(1, k):
        total = distances.sum()
        if total <= 0:  # fewer distinct vectors than codes: repeat one (its cluster stays empty)
            centroids.append(vectors[first])
            continue
        pick = int(torch.multinomial(distances / total, 1, generator=generator))
        centroids.append(vectors[pick])
        distances = torch.minimum(distances, (vectors - vectors[pick]).pow(2).sum(1))
    return torch.stack(centroids)


class KMeansQuantizer:
    """A (codes, stack * bands) codebook of stacked log-mel frames. ``encode`` mel -> codes, ``decode`` codes -> mel."""

    def __init__(self, config: QuantizerConfig, codebook: torch.Tensor):
        if codebook.shape != (config.codes, config.dim):
            raise ValueError(f"codebook shape {tuple(codebook.shape)} != ({config.codes}, {config.dim})")
        self.config = config
        self.codebook = codebook.float()

    @classmethod
    def fit(cls, mels: list[torch.Tensor], config: QuantizerConfig) -> "KMeansQuantizer":
        """Lloyd's k-means on the stacked frames of (bands, F) mels, seeded (``config.seed``)."""
        generator = torch.Generator().manual_seed(config.seed)
        vectors = torch.cat([stack_frames(m, config.stack) for m in mels]).float()  # (N, D)
        if len(vectors) > config.max_vectors:
            vectors = vectors[torch.randperm(len(vectors), generator=generator)[:config.max_vectors]]
        seeds = vectors[torch.randperm(len(vectors), generator=generator)[:config.init_vectors]]
        centroids = _kmeans_plus_plus(seeds, config.codes, generator)
        for _ in range(config.iterations):
            assignment, distances = _nearest(vectors, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, assignment, vectors)
            counts = torch.bincount(assignment, minlength=config.codes)
            empty = counts == 0
            centroids = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
            if empty.any():  # restart empty codes at the worst-served vectors
                worst = distances.topk(int(empty.sum())).indices
                centroids[empty] = vectors[worst]
        return cls(config, centroids)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """(bands, F) log mel -> (ceil(F / stack),) long codes."""
        return _nearest(stack_frames(mel.float(), self.config.stack), self.codebook)[0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(L,) codes -> (bands, L * stack) log mel."""
        return unstack_frames(self.codebook[codes.long()], self.config.stack)

    def save(self, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """One safetensors file: the codebook, with the config in its metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_path(path) as scratch:
            save_file({"codebook": self.codebook.to(dtype).contiguous()}, str(scratch),
                      metadata={"config": json.dumps(asdict(self.config))})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "KMeansQuantizer":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            config = QuantizerConfig(**json.loads(handle.metadata()["config"]))
            return cls(config, handle.get_tensor("codebook").float())
