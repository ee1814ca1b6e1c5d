"""The issue's held-out measures of a trained AR model + mel decoder (the code book unless another is given),
against the espeak-ng renderings.

Per held-out utterance, with greedy decoding and the voice's conditioning clips:

* **stop rate**: the share of utterances whose decoding emitted the stop code within ``max_mel_tokens``;
* **length ratio**: generated codes / the rendering's codes (target 0.8-1.25);
* **DTW log-mel distance** (``dtw_log_mel_distance``): the mean, along the cheapest monotonic alignment, of the
  per-frame RMS-over-bands log-mel difference; compared with the **different-sentence baseline** (the rendering
  against another sentence's rendering by the same voice: target at most half of it) and the **ceiling** (the
  rendering's own codes decoded: the best these codes allow);
* **word-swap discrimination**: the share of utterances whose output is closer (DTW) to the right sentence's
  rendering than to the rendering of the same sentence with one word changed (target 0.9);
* **speaker identification** (a listen-proxy for "does it sound like the voice it was given?"): the share of
  outputs whose mel-cepstral statistics (``voice_profile``) are nearest to their own speaker's, among the pooled
  renderings of every evaluated speaker (leaving the item itself out); its **ceiling** is the same test on the
  rendering's own codes decoded. With a speaker encoder given (``voices.similarity``), the same test is also made
  with its d-vectors of the audio (the mel through Griffin-Lim; the renderings as they are): ``speaker_accuracy_encoder``
  and ``speaker_ceiling_encoder``.

All distances are on the 100-band 24 kHz UnivNet log mel (``quantizer.code_mel``), natural-log units.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from tortoise_lab.tools.compare import dtw_path, mel_cepstra
from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.stages.sampling import draw_until_stop
from tortoise_lab.text import Tokenizer
from tortoise_lab.models.quantizer import KMeansQuantizer, code_mel

__all__ = ["dtw_log_mel_distance", "stop_token_rate", "length_ratio", "swap_one_word",
           "closer_to_right", "voice_profile", "nearest_voice", "UtteranceResult", "EvalSummary", "evaluate_ar",
           "evaluate_decoders", "MelDecoder", "Draw", "whole_text_draw", "summarize", "summary_measures"]

MIN_SWAP_WORD_LENGTH = 3  # words shorter than this ("a", "of") are not swapped: changing them is barely audible


def frame_distances(mel_a: torch.Tensor, mel_b: torch.Tensor) -> np.ndarray:
    """(bands, N), (bands, M) -> (N, M) RMS-over-bands differences between every pair of frames."""
    a, b = mel_a.T.double(), mel_b.T.double()  # (N, bands), (M, bands)
    squared = a.pow(2).sum(1, keepdim=True) - 2 * a @ b.T + b.pow(2).sum(1)  # (N, M)
    return (squared.clamp_min(0) / mel_a.shape[0]).sqrt().numpy()


def dtw_log_mel_distance(mel_a: torch.Tensor, mel_b: torch.Tensor) -> float:
    """Mean per-frame RMS log-mel difference along the DTW path: 0 for equal mels, and for a mel against itself
    played at another speed (frames repeated)."""
    if mel_a.shape[-1] == 0 or mel_b.shape[-1] == 0:
        return float("nan")
    cost = frame_distances(mel_a, mel_b)
    path = dtw_path(cost)
    return float(np.mean([cost[i, j] for i, j in path]))


def stop_token_rate(rows: list[torch.Tensor], stop: int) -> float:
    """The share of code rows that contain the stop code."""
    return float(np.mean([bool((row == stop).any()) for row in rows])) if rows else float("nan")


def length_ratio(generated: int, reference: int) -> float:
    return generated / reference if reference else float("nan")


def swap_one_word(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    """``text`` with one word (of at least 3 letters) replaced by a different word from ``vocabulary``."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(re.sub(r"[^A-Za-z]", "", w)) >= MIN_SWAP_WORD_LENGTH]
    if not candidates:
        raise ValueError(f"No word of {MIN_SWAP_WORD_LENGTH}+ letters to swap in {text!r}.")
    index = rng.choice(candidates)
    old = re.sub(r"[^A-Za-z]", "", words[index])
    new = rng.choice([v for v in vocabulary if v.lower() != old.lower()])
    if old[:1].isupper():
        new = new[:1].upper() + new[1:]
    words[index] = words[index].replace(old, new)
    return " ".join(words)


def closer_to_right(generated: torch.Tensor, right: torch.Tensor, swapped: torch.Tensor) -> bool:
    """Whether the generated mel is closer (DTW) to the right sentence's mel than to the swapped one's."""
    return dtw_log_mel_distance(generated, right) < dtw_log_mel_distance(generated, swapped)


@dataclass
class UtteranceResult:
    text: str
    split: str
    voice: str
    stopped: bool
    generated_codes: int
    reference_codes: int
    distance: float  # generated vs its rendering
    baseline: float  # its rendering vs another sentence's rendering by the same voice
    ceiling: float  # its rendering's own codes decoded vs its rendering
    swap_correct: bool | None  # None when no swap rendering was made
    # Listen-proxy: is the output's voice (mel-cepstral statistics) nearest to its own speaker's among all speakers'?
    speaker_correct: bool | None = None  # None when there is no other speaker to tell it from
    speaker_ceiling_correct: bool | None = None  # the same for its rendering's own codes decoded
    # The same two, by the speaker encoder's d-vectors (None when no encoder was given)
    encoder_speaker_correct: bool | None = None
    encoder_speaker_ceiling_correct: bool | None = None

    @property
    def length_ratio(self) -> float:
        return length_ratio(self.generated_codes, self.reference_codes)


@dataclass
class EvalSummary:
    count: int
    stop_rate: float
    length_ratio_mean: float
    length_ratio_correlation: float
    distance: float
    baseline: float
    ceiling: float
    swap_accuracy: float
    speaker_accuracy: float = float("nan")
    speaker_ceiling: float = float("nan")
    speaker_accuracy_encoder: float = float("nan")
    speaker_ceiling_encoder: float = float("nan")
    per_split: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _split_summary(results: list[UtteranceResult]) -> dict[str, float]:
    generated = np.array([r.generated_codes for r in results], dtype=float)
    reference = np.array([r.reference_codes for r in results], dtype=float)
    correlation = float(np.corrcoef(generated, reference)[0, 1]) if len(results) > 2 and generated.std() > 0 else float("nan")
    return {
        "count": len(results),
        "stop_rate": float(np.mean([r.stopped for r in results])),
        "length_ratio_mean": float(np.mean([r.length_ratio for r in results])),
        "length_ratio_correlation": correlation,
        "distance": _mean_known([r.distance for r in results]),
        "baseline": _mean_known([r.baseline for r in results]),
        "ceiling": _mean_known([r.ceiling for r in results]),
        "swap_accuracy": _mean_known([r.swap_correct for r in results]),
        "speaker_accuracy": _mean_known([r.speaker_correct for r in results]),
        "speaker_ceiling": _mean_known([r.speaker_ceiling_correct for r in results]),
        "speaker_accuracy_encoder": _mean_known([r.encoder_speaker_correct for r in results]),
        "speaker_ceiling_encoder": _mean_known([r.encoder_speaker_ceiling_correct for r in results]),
    }


def _mean_known(values: list[float | bool | None]) -> float:
    """The mean of the values that were measured (None or NaN: not measured; flags count as 0/1: a share), or NaN
    when none was (e.g. no baseline with one sentence a voice), without numpy's warning about an empty mean."""
    known = [v for v in values if v is not None and v == v]
    return float(np.mean(known)) if known else float("nan")


def voice_profile(mel: torch.Tensor) -> np.ndarray:
    """[mean, std] of mel cepstra 1..24 over the non-silent frames of a (bands, frames) log mel: the spectral
    envelope's statistics, which say who speaks far more than what is said (the MFCC-statistics speaker measure of
    ``voices.seed_search``, on the mel the model's codes decode to)."""
    cepstra = mel_cepstra(mel)
    if len(cepstra) == 0:
        return np.zeros(2 * cepstra.shape[1])
    return np.concatenate([cepstra.mean(axis=0), cepstra.std(axis=0)])


def nearest_voice(profile: np.ndarray, profiles: dict[str, np.ndarray]) -> str:
    """The voice whose profile has the highest cosine similarity to ``profile``."""
    def cosine(a, b):
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))

    return max(profiles, key=lambda name: cosine(profile, profiles[name]))


def _speaker_profiles(items: list[dict], mels: list[torch.Tensor], leave_out: int) -> dict[str, np.ndarray]:
    """Per voice, the profile of all its renderings but item ``leave_out`` (pooled frames)."""
    pooled: dict[str, list[torch.Tensor]] = {}
    for j, item in enumerate(items):
        if j != leave_out:
            pooled.setdefault(item["voice"], []).append(mels[j])
    return {voice: voice_profile(torch.cat(parts, dim=1)) for voice, parts in pooled.items()}


def _encoder_voices(items: list[dict], vectors: list[torch.Tensor], leave_out: int) -> dict[str, np.ndarray]:
    """Per voice, the mean d-vector of its renderings but item ``leave_out`` (``nearest_voice`` compares directions)."""
    pooled: dict[str, list[torch.Tensor]] = {}
    for j, item in enumerate(items):
        if j != leave_out:
            pooled.setdefault(item["voice"], []).append(vectors[j])
    return {voice: torch.stack(parts).mean(0).numpy() for voice, parts in pooled.items()}


def summarize(results: list[UtteranceResult]) -> EvalSummary:
    overall = _split_summary(results)
    splits = sorted({r.split for r in results})
    return EvalSummary(**overall, per_split={s: _split_summary([r for r in results if r.split == s]) for s in splits})


MelDecoder = Callable[[torch.Tensor, dict], torch.Tensor]  # (codes (L,), item) -> (100, frames) log mel
# (model, cond_latent (1, C), text, max codes) -> ((L,) codes, whether the stop code came): how an item is spoken
Draw = Callable[[UnifiedVoice, torch.Tensor, str, int], tuple[torch.Tensor, bool]]


def whole_text_draw(tokenizer: Tokenizer) -> Draw:
    """Greedy codes for an item's whole text in one prompt (the sentence test)."""
    def draw(model: UnifiedVoice, cond_latent: torch.Tensor, text: str, max_codes: int):
        return draw_until_stop(model, cond_latent, tokenizer.model_ids(text).unsqueeze(0), max_codes)

    return draw


@torch.no_grad()
def evaluate_ar(model: UnifiedVoice, quantizer: KMeansQuantizer, items: list[dict], cond_mels: dict[str, torch.Tensor],
                speak: Callable[[str, str], torch.Tensor] | None, vocabulary: list[str], seed: int = 0,
                tokenizer: Tokenizer | None = None, progress: bool = False,
                draw: Draw | None = None, speaker_encoder=None,
                mel_decoder: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[UtteranceResult]:
    """Decode each item greedily and measure it, with ``mel_decoder`` ((L,) codes -> (100, frames) log mel;
    default: the code book, ``quantizer.decode``) as the mel decoder.

    items: dicts with "text", "split", "voice" and "wav" ((1, N) 22.05 kHz rendering). cond_mels: voice ->
    (clips, 80, 517) conditioning mels. ``speak(text, voice)`` renders the word-swapped sentence (None: no swap
    test). The baseline pairs each item with the next item of the same voice. ``draw``: how a text becomes codes
    (default: greedy, the whole text in one prompt). ``speaker_encoder`` (a ``voices.similarity`` measure) adds
    the speaker test by d-vectors.
    """
    decode = mel_decoder or quantizer.decode
    decoders = {"mel": lambda codes, item: decode(codes)}
    return evaluate_decoders(model, quantizer, items, cond_mels, speak, vocabulary, decoders, seed, tokenizer,
                             progress, draw, speaker_encoder)["mel"]


@torch.no_grad()
def evaluate_decoders(model: UnifiedVoice, quantizer: KMeansQuantizer, items: list[dict],
                      cond_mels: dict[str, torch.Tensor], speak: Callable[[str, str], torch.Tensor] | None,
                      vocabulary: list[str], decoders: dict[str, MelDecoder], seed: int = 0,
                      tokenizer: Tokenizer | None = None, progress: bool = False,
                      draw: Draw | None = None, speaker_encoder=None) -> dict[str, list[UtteranceResult]]:
    """``evaluate_ar`` for several ways of turning codes into a mel, on the same decoded codes and the same
    word-swap renderings: decoder name -> its results. A decoder's ceiling is that decoder applied to the
    rendering's own codes. ``quantizer`` gives the rendering's codes (and its length in codes). ``draw`` says how
    an item's text becomes codes (default: ``whole_text_draw``, greedy, the text in one prompt)."""
    from tqdm.auto import tqdm

    tokenizer = tokenizer or Tokenizer()
    draw = draw or whole_text_draw(tokenizer)
    rng = random.Random(seed)
    model.eval()
    reference_mels = [code_mel(item["wav"]) for item in items]
    if speaker_encoder is not None:
        from tortoise_lab.audio import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE
        from tortoise_lab.models.griffin_lim import griffin_lim

        reference_vectors = [speaker_encoder.embed(item["wav"], INPUT_SAMPLE_RATE) for item in items]

        def encoder_voice(mel: torch.Tensor, voices: dict[str, np.ndarray]) -> str:
            return nearest_voice(speaker_encoder.embed(griffin_lim(mel), OUTPUT_SAMPLE_RATE).numpy(), voices)
    results: dict[str, list[UtteranceResult]] = {name: [] for name in decoders}
    for k, item in enumerate(tqdm(items, desc="evaluating", disable=not progress)):
        reference = reference_mels[k]
        reference_codes = quantizer.encode(reference)
        cond_latent = model.conditioning_latent(cond_mels[item["voice"]].float().unsqueeze(0))  # (1, C)
        codes, stopped = draw(model, cond_latent, item["text"], 2 * len(reference_codes) + 20)
        same_voice = [j for j in range(len(items)) if items[j]["voice"] == item["voice"] and j != k]
        other = next((j for j in same_voice if j > k), same_voice[0]) if same_voice else (k + 1) % len(items)
        baseline = dtw_log_mel_distance(reference_mels[other], reference) if len(items) > 1 else float("nan")
        swapped = None
        if speak is not None and len(codes):
            swapped = code_mel(speak(swap_one_word(item["text"], rng, vocabulary), item["voice"]))
        profiles = _speaker_profiles(items, reference_mels, leave_out=k)
        tell_speakers = len(profiles) > 1 and item["voice"] in profiles
        encoder_voices = _encoder_voices(items, reference_vectors, k) if speaker_encoder is not None else None
        for name, decode in decoders.items():
            generated = decode(codes, item) if len(codes) else reference[:, :0]
            ceiling_mel = decode(reference_codes, item)
            speaker_correct = speaker_ceiling_correct = None
            if tell_speakers:
                speaker_ceiling_correct = nearest_voice(voice_profile(ceiling_mel), profiles) == item["voice"]
                if len(codes):
                    speaker_correct = nearest_voice(voice_profile(generated), profiles) == item["voice"]
            encoder_correct = encoder_ceiling_correct = None
            if tell_speakers and encoder_voices is not None:
                encoder_ceiling_correct = encoder_voice(ceiling_mel, encoder_voices) == item["voice"]
                if len(codes):
                    encoder_correct = encoder_voice(generated, encoder_voices) == item["voice"]
            results[name].append(UtteranceResult(
                text=item["text"], split=item["split"], voice=item["voice"], stopped=stopped,
                generated_codes=len(codes), reference_codes=len(reference_codes),
                distance=dtw_log_mel_distance(generated, reference), baseline=baseline,
                ceiling=dtw_log_mel_distance(ceiling_mel, reference),
                swap_correct=closer_to_right(generated, reference, swapped) if swapped is not None else None,
                speaker_correct=speaker_correct, speaker_ceiling_correct=speaker_ceiling_correct,
                encoder_speaker_correct=encoder_correct, encoder_speaker_ceiling_correct=encoder_ceiling_correct))
    return results


def summary_measures(summary: dict) -> dict:
    """An evaluation summary's headline measures, rounded, as the experiments record them in a manifest. The
    unseen-word swap accuracy is None where the test has no unseen-word split (the paragraphs mix both); the
    speaker-identification ceiling is kept where the summary has one."""
    unseen = summary["per_split"].get("unseen")
    measures = {"distance": round(summary["distance"], 4),
                "distance_over_baseline": round(summary["distance"] / summary["baseline"], 4),
                "ceiling": round(summary["ceiling"], 4), "swap_accuracy": round(summary["swap_accuracy"], 4),
                "swap_accuracy_unseen": round(unseen["swap_accuracy"], 4) if unseen else None,
                "speaker_accuracy": round(summary["speaker_accuracy"], 4)}
    if "speaker_ceiling" in summary:
        measures["speaker_ceiling"] = round(summary["speaker_ceiling"], 4)
    return measures
