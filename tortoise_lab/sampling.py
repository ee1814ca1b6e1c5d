"""Autoregressive decoding of mel codes from UnifiedVoice: prefill, one decode step, and the loop around them.

The prompt is [cond_latent, start_text, text, stop_text, start_mel]; mel input k (k = 0 is the start token)
sits at mel position k and at cache slot ``prompt_len - 1 + k``. Upstream TorToiSe's cached path gives cached
steps mel position k + 1 (it takes the count of mel inputs, the new one included, as the index); we use the
positions of its uncached path, which are also the ones of its teacher-forced (training) pass.

Randomness is explicit: sampling takes a ``torch.Generator``.
"""

from __future__ import annotations

from typing import Callable

import torch

from tortoise_lab.models.gpt import UnifiedVoice

# Upstream's generate() feeds transformers placeholder ids of 1 for the prompt positions (their embeddings are
# swapped in later), so its repetition penalty also hits mel code 1 from the first step. Reproducing that is
# opt-in: pass ``always_penalized=UPSTREAM_FILLER_CODES``.
UPSTREAM_FILLER_CODES = (1,)

# decode_one_token's signature: (model, codes (B, 1), mel_pos (1,), input_pos (1,)) -> logits (B, V).
# tortoise_lab.fast returns compiled or otherwise wrapped steps of this type.
DecodeStep = Callable[[UnifiedVoice, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["UPSTREAM_FILLER_CODES", "DecodeStep", "prefill", "decode_one_token", "next_logits_uncached",
           "logits_to_probs", "penalize_repeats", "ensure_cache", "generate_codes"]


def prefill(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
    """Fill the KV cache with the prompt; return the logits for the first mel code, (B, number_mel_codes).

    cond_latent: (B, C); text_tokens: (B, T). The cache must hold at least the prompt (1 + T+2 + 1 slots).
    When every row has the same prompt (the usual case: B samples of one sentence), the prompt runs once and its
    keys and values are written into every row of the cache, instead of B identical passes.
    """
    batch = cond_latent.shape[0]
    rows = 1 if isinstance(model, UnifiedVoice) and _same_prompt(cond_latent, text_tokens) else batch
    prompt = model.prompt_embeddings(cond_latent[:rows], text_tokens[:rows])  # (rows, P, C)
    _check_room(model, prompt.shape[1])
    input_pos = torch.arange(prompt.shape[1], device=prompt.device)
    hidden = model.decode(prompt, input_pos)  # (rows, P, C)
    return model.mel_logits(hidden[:, -1]).expand(batch, -1)


def _same_prompt(cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> bool:
    return cond_latent.shape[0] > 1 and bool((cond_latent == cond_latent[:1]).all()) and bool(
        (text_tokens == text_tokens[:1]).all())


def decode_one_token(model: UnifiedVoice, codes: torch.Tensor, mel_pos: torch.Tensor,
                     input_pos: torch.Tensor) -> torch.Tensor:
    """One cached step: codes (B, 1) at mel position ``mel_pos`` (1,) and cache slot ``input_pos`` (1,).

    Returns the logits for the next code, (B, number_mel_codes). Fixed shapes, no host syncs: compilable.
    """
    hidden = model.decode(model.mel_embeddings(codes, mel_pos), input_pos)  # (B, 1, C)
    return model.mel_logits(hidden[:, -1])


def next_logits_uncached(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                         codes: torch.Tensor) -> torch.Tensor:
    """Recompute the whole sequence (prompt + ``codes`` (B, k)) and return the next code's logits (B, V).

    The slow path, kept to check the cached one.
    """
    prompt = model.prompt_embeddings(cond_latent, text_tokens)
    if codes.shape[1]:
        mel_pos = torch.arange(1, codes.shape[1] + 1, device=codes.device)  # the start token holds position 0
        prompt = torch.cat([prompt, model.mel_embeddings(codes, mel_pos)], dim=1)
    return model.mel_logits(model.decode(prompt)[:, -1])


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_p: float | None = None,
                    top_k: int | None = None) -> torch.Tensor:
    """(B, V) logits -> (B, V) probabilities after temperature, top-k then top-p (nucleus) filtering.

    Top-p keeps the smallest set of most likely codes whose mass exceeds ``top_p`` (always at least one).
    """
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1)  # ascending
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= 1 - top_p
        drop_sorted[:, -1] = False  # never drop the most likely code
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, -float("inf"))
    return torch.softmax(logits, dim=-1)


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make codes in ``seen`` (B, k) less likely: positive logits divided by ``penalty``, negative multiplied."""
    scores = logits.gather(1, seen)
    scores = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits.scatter(1, seen, scores)


def _check_room(model: UnifiedVoice, needed_slots: int) -> None:
    if model.cache_shape is None:
        raise RuntimeError("No KV cache is set up on the model; call model.setup_caches(batch_size, max_seq_len).")
    length = model.cache_shape[1]
    if needed_slots > length:
        raise ValueError(f"The KV cache holds {length} positions but decoding needs {needed_slots}; "
                         "set up a longer cache or ask for fewer mel tokens.")


def ensure_cache(model: UnifiedVoice, batch_size: int, needed_slots: int) -> None:
    """Keep the attached KV cache if it has this batch size and room enough; else attach one that fits exactly."""
    shape = model.cache_shape
    if shape is None or shape[0] != batch_size or shape[1] < needed_slots:
        model.setup_caches(batch_size, needed_slots)


def generate_codes(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                   max_mel_tokens: int, *, kv_cache: bool = True, greedy: bool = True,
                   temperature: float = 1.0, top_p: float | None = None, top_k: int | None = None,
                   repetition_penalty: float = 1.0, always_penalized: tuple[int, ...] = (),
                   generator: torch.Generator | None = None, stop_early: bool = True,
                   decode_step: DecodeStep | None = None) -> torch.Tensor:
    """Decode up to ``max_mel_tokens`` codes per sample; returns (B, max_mel_tokens) long.

    cond_latent: (B, C); text_tokens: (B, T) (repeat one prompt to draw several samples). After a sample emits
    the stop token, the rest of its row is stop tokens (as upstream pads). ``stop_early`` ends the loop once every
    row has stopped; the result is padded to the same shape either way. ``greedy`` takes the argmax; otherwise codes
    are drawn from ``logits_to_probs`` with ``generator``. ``repetition_penalty`` applies to the mel inputs so far
    (the start token and the codes generated) and to the codes in ``always_penalized``; pass
    ``UPSTREAM_FILLER_CODES`` there to sample exactly as upstream TorToiSe does.
    ``kv_cache`` uses the model's attached static cache when it fits (``setup_caches`` once to reuse one
    across calls, e.g. under torch.compile) and attaches a fitting one otherwise; False recomputes the whole
    sequence every step (slow; for checks). ``decode_step`` replaces ``decode_one_token`` for the cached steps
    (e.g. a compiled one from ``tortoise_lab.fast``); None uses ``decode_one_token``.
    """
    config = model.config
    step_fn = decode_one_token if decode_step is None else decode_step
    batch = cond_latent.shape[0]
    if text_tokens.shape[0] != batch:
        raise ValueError(f"cond_latent has batch {batch} but text_tokens has {text_tokens.shape[0]}")
    if not 0 < max_mel_tokens <= config.mel_positions:
        raise ValueError(f"max_mel_tokens must be in 1..{config.mel_positions} (the mel position table's length), "
                         f"got {max_mel_tokens}")
    device = cond_latent.device
    stop = config.stop_mel_token
    codes = torch.full((batch, max_mel_tokens), stop, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)

    if kv_cache:
        prompt_len = model.prompt_length(text_tokens.shape[1])
        ensure_cache(model, batch, prompt_len + max_mel_tokens - 1)
        logits = prefill(model, cond_latent, text_tokens)
    else:
        logits = next_logits_uncached(model, cond_latent, text_tokens, codes[:, :0])

    # Codes the repetition penalty applies to before any is generated: the start token is an input already.
    first_seen = torch.tensor([config.start_mel_token, *always_penalized], device=device).expand(batch, -1)
    for step in range(max_mel_tokens):
        if repetition_penalty != 1.0:
            seen = torch.cat([first_seen, codes[:, :step]], dim=1)
            logits = penalize_repeats(logits, seen, repetition_penalty)
        if greedy:
            next_code = logits.argmax(dim=-1)
        else:
            probs = logits_to_probs(logits.float(), temperature, top_p, top_k)
            next_code = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        next_code = torch.where(done, torch.full_like(next_code, stop), next_code)
        codes[:, step] = next_code
        done = done | (next_code == stop)
        if step + 1 == max_mel_tokens or (stop_early and bool(done.all())):
            break
        if kv_cache:
            mel_pos = torch.tensor([step + 1], device=device)  # the start token is mel position 0
            logits = step_fn(model, next_code[:, None], mel_pos, mel_pos + prompt_len - 1)
        else:
            logits = next_logits_uncached(model, cond_latent, text_tokens, codes[:, :step + 1])
    return codes
