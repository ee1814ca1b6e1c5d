"""Stage: N sampled code rows -> (N,) scores, the best first to become audio. A model set carries its ranker.

Both rankers have one interface, ``score(codes, text_tokens, latents, ar_mels, settings)``:
- ``ClvpRanker`` (the official architecture): CLVP's text-speech similarity, blended with CVVP's voice
  similarity by ``cvvp_amount`` when the voice has clips; int8 CLVP on CPU when the run asks for int8.
- ``LikelihoodRanker`` (the embedded model, which has no CLVP): the mean log-probability the AR model itself
  gives each row, up to and including its stop code.
- ``NoRanking`` (the HiFiGAN fast path, as upstream's ``api_fast``): one sample is drawn, nothing is ranked; every
  row scores 0.
"""

from __future__ import annotations

from typing import Callable

import torch

from tortoise_lab.config import InferenceOptions, Settings
from tortoise_lab.fast import autocast_context, quantize_int8
from tortoise_lab.models.clvp import CLVP
from tortoise_lab.models.cvvp import CVVP
from tortoise_lab.models.gpt import UnifiedVoice
from tortoise_lab.stages.conditioning import ConditioningLatents

__all__ = ["CALM_TOKEN", "ClvpRanker", "LikelihoodRanker", "NoRanking", "best_rows"]

CALM_TOKEN = 83  # the code for silence (the fix-up writes it after the stop token; CLVP scores unknown codes as it)


def best_rows(codes: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """(k, T): the ``k`` best-scored rows of ``codes`` (N, T), best first."""
    return codes[torch.topk(scores, k=k).indices]


class ClvpRanker:
    """CLVP scores, blended with CVVP by ``settings.cvvp_amount`` (``cvvp`` loads the model on first use)."""

    def __init__(self, clvp: CLVP, cvvp: Callable[[], CVVP]):
        self.clvp = clvp
        self._cvvp = cvvp
        self._int8: CLVP | None = None

    def prepare(self, options: InferenceOptions, device: torch.device) -> None:
        """Build what ``options`` needs before the timed work (the int8 copy of CLVP)."""
        self._model(options, device)

    def _model(self, options: InferenceOptions, device: torch.device) -> CLVP:
        if not (options.int8 and device.type == "cpu"):
            return self.clvp
        if self._int8 is None:
            self._int8 = quantize_int8(self.clvp)
        return self._int8

    @torch.no_grad()
    def score(self, codes: torch.Tensor, text_tokens: torch.Tensor, latents: ConditioningLatents,
              ar_mels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        """codes (N, T), text_tokens (1, T'), ar_mels (1, clips, 80, L) or None -> (N,) float scores."""
        device = codes.device
        with autocast_context(device, settings.inference.half):  # as upstream: autocast on CUDA when half
            clvp = self._model(settings.inference, device)
            text_latent = clvp.embed_text(text_tokens)  # the text is the same for every candidate: encode it once
            # Random weights can sample codes past CLVP's vocabulary (a trained model never does); score them as
            # silence.
            scorable = torch.where(codes < clvp.speech_emb.num_embeddings, codes, torch.full_like(codes, CALM_TOKEN))
            clvp_scores = clvp.similarity(text_latent, clvp.embed_speech(scorable))
            if settings.cvvp_amount == 0 or ar_mels is None:
                return clvp_scores.float()
            cvvp = self._cvvp()
            speech = cvvp.embed_speech(scorable)
            per_clip = [cvvp.similarity(cvvp.embed_conditioning(ar_mels[:, i]), speech)
                        for i in range(ar_mels.shape[1])]
            cvvp_scores = torch.stack(per_clip).mean(0)
            return (settings.cvvp_amount * cvvp_scores + (1 - settings.cvvp_amount) * clvp_scores).float()


class LikelihoodRanker:
    """The AR model's own mean log-probability of each row (for model sets without CLVP)."""

    def __init__(self, gpt: UnifiedVoice):
        self.gpt = gpt

    def prepare(self, options: InferenceOptions, device: torch.device) -> None:
        """Nothing to build."""

    @torch.no_grad()
    def score(self, codes: torch.Tensor, text_tokens: torch.Tensor, latents: ConditioningLatents,
              ar_mels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        """codes (N, T) -> (N,) mean log-probability up to and including each row's stop code."""
        stop, count = self.gpt.config.stop_mel_token, codes.shape[0]
        logits = self.gpt(latents.autoregressive.expand(count, -1), text_tokens.expand(count, -1), codes).mel
        log_probs = logits[:, : codes.shape[1]].log_softmax(-1).gather(-1, codes.unsqueeze(-1))[..., 0]  # (N, L)
        after_stop = (codes == stop).long().cumsum(dim=1) - (codes == stop).long() > 0  # positions past the stop
        valid = (~after_stop).float()
        return ((log_probs * valid).sum(dim=1) / valid.sum(dim=1)).float()


class NoRanking:
    """For a chain that draws one sample (the fast path): nothing to rank, and no model to run for it."""

    def prepare(self, options: InferenceOptions, device: torch.device) -> None:
        """Nothing to build."""

    def score(self, codes: torch.Tensor, text_tokens: torch.Tensor, latents: ConditioningLatents,
              ar_mels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        """codes (N, T) -> (N,) zeros."""
        return torch.zeros(codes.shape[0], device=codes.device)
