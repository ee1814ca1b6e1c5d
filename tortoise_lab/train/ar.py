"""Training UnifiedVoice on (voice clips, text, mel codes) as TorToiSe's autoregressive model is trained.

Each example is one utterance: its text tokens (exactly what ``TextToSpeech.text_tokens`` feeds the model,
upstream's trailing 0 included), its mel codes from the quantiser, and conditioning mels of *other* clips of the
same voice (the 6-second, 80-band ``conditioning_mel`` the pipeline computes from a voice folder). The loss is
``UnifiedVoice.forward``'s teacher-forced logits against upstream's targets: each stream is framed as
[start, tokens..., stop] and the targets are [tokens..., stop, stop]; mel cross-entropy plus ``text_weight`` times
text cross-entropy (upstream trained with 0.01: the text head only regularises).

Batches are a pure function of (seed, step): utterances are shuffled per epoch, grouped into buckets of similar
code length, and the conditioning clips are drawn once per voice per step, so items of the same voice share one
conditioning pass. Measured at the probe size (batch 32, 1 CPU thread, espeak-ng corpus): bucketing cuts padding
from 1.6x to 1.01x the real codes (2.09 -> 1.67 s/step); sharing conditioning per voice instead of per item takes
5.6 s/step down to 2.1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tortoise_lab.audio import conditioning_mel
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
from tortoise_lab.text import Tokenizer
from tortoise_lab.train.corpus import Corpus
from tortoise_lab.train.loop import STEP_SEED_STRIDE, step_generator
from tortoise_lab.models.quantizer import KMeansQuantizer, code_mel

__all__ = ["ARConfig", "ARData", "ARBatch", "embedded_gpt_config", "prepare_ar_data", "conditioning_pool", "ar_loss"]

BUCKET_BATCHES = 50  # batches per length-sorted bucket: enough to sort well, few enough to keep epochs shuffled


@dataclass
class ARConfig:
    """The embedded AR model's size and how it is trained. Defaults: the issue's probe (3.5 M parameters)."""

    layers: int = 4
    model_dim: int = 256
    heads: int = 4
    conditioning_blocks: int = 2  # official: 6; two blocks of width 256 suffice to tell 8 espeak voices apart
    max_text_tokens: int = 160  # the grammar's longest sentences are ~90 tokens
    max_mel_tokens: int = 300  # 12.8 s at 1024 samples a code
    batch_size: int = 32
    # Conditioning clips averaged per voice and step. The 6 s conditioning windows dominate a step on CPU: 2 clips
    # cost 1.62 s/step against 1.22 s/step for 1 (probe size, batch 32, 1 thread); inference averages over clips.
    cond_clips: int = 1
    pool_size: int = 16  # conditioning clips kept per voice (6 s mels: 165 KB each)
    text_weight: float = 0.01


def embedded_gpt_config(config: ARConfig, codes: int) -> GPTConfig:
    """A GPTConfig over ``codes`` quantiser codes (+ start and stop); text ids are the official tokenizer's."""
    return GPTConfig(layers=config.layers, model_dim=config.model_dim, heads=config.heads,
                     max_mel_tokens=config.max_mel_tokens, max_text_tokens=config.max_text_tokens,
                     number_mel_codes=codes + 2, start_mel_token=codes, stop_mel_token=codes + 1,
                     conditioning_blocks=config.conditioning_blocks)


@dataclass
class ARBatch:
    text_tokens: torch.Tensor  # (B, T) padded with the stop text token
    text_lengths: torch.Tensor  # (B,)
    mel_codes: torch.Tensor  # (B, L) padded with the stop mel token
    code_lengths: torch.Tensor  # (B,)
    cond_mels: torch.Tensor  # (V, cond_clips, 80, 517): one clip set per voice present
    cond_index: torch.Tensor  # (B,) which row of cond_mels each item uses


@dataclass
class ARData:
    """Training examples in memory: per utterance text ids, codes and voice; per voice a pool of conditioning mels."""

    text_tokens: list[torch.Tensor]
    mel_codes: list[torch.Tensor]
    voice_ids: list[int]
    cond_pool: dict[int, torch.Tensor]  # voice -> (pool, 80, 517)
    gpt_config: GPTConfig
    config: ARConfig
    seed: int = 0

    def __len__(self) -> int:
        return len(self.text_tokens)

    @property
    def batches_per_epoch(self) -> int:
        return max(1, len(self) // self.config.batch_size)

    @functools.lru_cache(maxsize=2)
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches of utterance indices: shuffled, bucketed by code length, bucket order shuffled."""
        size = self.config.batch_size
        generator = torch.Generator().manual_seed(self.seed * STEP_SEED_STRIDE + epoch)
        order = torch.randperm(len(self), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), size * BUCKET_BATCHES):
            bucket = sorted(order[start:start + size * BUCKET_BATCHES], key=lambda i: len(self.mel_codes[i]))
            # A bucket's last partial batch is left out this epoch (other utterances are left out next epoch).
            batches += [bucket[i:i + size] for i in range(0, len(bucket) - size + 1, size)]
        if not batches:  # fewer utterances than one batch: use them all
            batches = [order]
        permutation = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in permutation]

    def batch(self, step: int) -> ARBatch:
        """The batch of ``step``: a pure function of (seed, step)."""
        epoch_batches = self.epoch_batches(step // self.batches_per_epoch)
        items = epoch_batches[step % len(epoch_batches)]
        config, gpt = self.config, self.gpt_config
        texts = [self.text_tokens[i] for i in items]
        codes = [self.mel_codes[i] for i in items]
        generator = step_generator(self.seed, step)
        voices = sorted({self.voice_ids[i] for i in items})
        cond = []
        for voice in voices:
            pool = self.cond_pool[voice]
            pick = torch.randperm(len(pool), generator=generator)[:config.cond_clips]
            cond.append(pool[pick].float())
        return ARBatch(
            text_tokens=_pad(texts, gpt.stop_text_token),
            text_lengths=torch.tensor([len(t) for t in texts]),
            mel_codes=_pad(codes, gpt.stop_mel_token),
            code_lengths=torch.tensor([len(c) for c in codes]),
            cond_mels=torch.stack(cond),
            cond_index=torch.tensor([voices.index(self.voice_ids[i]) for i in items]),
        )

    # lru_cache on a method needs a hashable self: identity is what we want.
    __hash__ = object.__hash__
    __eq__ = object.__eq__


def _pad(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    length = max(len(r) for r in rows)
    return torch.stack([F.pad(r, (0, length - len(r)), value=value) for r in rows])


def prepare_ar_data(corpus: Corpus, quantizer: KMeansQuantizer, indices: list[int], config: ARConfig,
                    tokenizer: Tokenizer | None = None, seed: int = 0,
                    codes: list[torch.Tensor] | None = None) -> tuple[ARData, int]:
    """Examples for ``indices`` of the corpus. Returns (data, how many utterances were too long and left out).

    ``codes``: each index's codes, when already encoded (else they are computed here). The conditioning pool
    takes the first ``pool_size`` utterances of each voice among ``indices`` (its clips are 6 s windows, padded).
    """
    tokenizer = tokenizer or Tokenizer()
    gpt = embedded_gpt_config(config, quantizer.config.codes)
    texts, code_rows, voices, dropped = [], [], [], 0
    for k, index in enumerate(indices):
        ids = tokenizer.model_ids(corpus.texts[index])
        row = codes[k] if codes is not None else quantizer.encode(code_mel(corpus.wav(index)))
        if len(ids) > config.max_text_tokens or len(row) > config.max_mel_tokens:
            dropped += 1
            continue
        texts.append(ids)
        code_rows.append(row.to(torch.int16 if quantizer.config.codes < 2**15 else torch.long))
        voices.append(corpus.voice_ids[index])
    pool = conditioning_pool(corpus, indices, config.pool_size, sorted(set(voices)))
    code_rows = [r.long() for r in code_rows]
    return ARData(texts, code_rows, voices, pool, gpt, config, seed), dropped


def conditioning_pool(corpus: Corpus, indices: list[int], pool_size: int,
                      voices: list[int] | None = None) -> dict[int, torch.Tensor]:
    """Per voice (default: every voice among ``indices``), the conditioning mels (P, 80, 517) of its first
    ``pool_size`` utterances among ``indices``: the clips training conditions on, and evaluation too."""
    voices = voices if voices is not None else sorted({corpus.voice_ids[i] for i in indices})
    pool: dict[int, torch.Tensor] = {}
    for voice in voices:
        mine = [i for i in indices if corpus.voice_ids[i] == voice][:pool_size]
        pool[voice] = torch.stack([conditioning_mel(corpus.wav(i)) for i in mine]).half()  # (P, 80, 517)
    return pool


def ar_loss(model: UnifiedVoice, batch: ARBatch, text_weight: float = 0.01) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced cross-entropy of ``model`` on ``batch``: mel + text_weight * text, padding masked."""
    config = model.config
    cond = model.conditioning_latent(batch.cond_mels)  # (V, C)
    logits = model(cond[batch.cond_index], batch.text_tokens, batch.mel_codes)
    text_loss = _stream_loss(logits.text, batch.text_tokens, batch.text_lengths, config.stop_text_token)
    mel_loss = _stream_loss(logits.mel, batch.mel_codes, batch.code_lengths, config.stop_mel_token)
    return mel_loss + text_weight * text_loss, {"mel": float(mel_loss.detach()), "text": float(text_loss.detach())}


def _stream_loss(logits: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, stop: int) -> torch.Tensor:
    """Cross-entropy of logits (B, N+2, V) against [tokens..., stop, stop] (B, N+2), over each row's own
    N_i + 2 positions (the rest is padding, whose targets would only teach "stop after stop")."""
    targets = F.pad(tokens, (0, 2), value=stop)  # (B, N+2)
    positions = torch.arange(targets.shape[1])
    targets = targets.masked_fill(positions[None, :] >= (lengths[:, None] + 2), -100)  # ignore_index
    return F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=-100)
