"""Stage: conditioning latent + text tokens -> mel codes. Autoregressive decoding from UnifiedVoice: prefill, one
decode step, the loop around them, and the prepared decoder that owns the KV cache and applies the speed-ups
(``fast``) a run asks for.

The prompt is [cond_latent, start_text, text, stop_text, start_mel]; mel input k (k = 0 is the start token)
sits at mel position k and at cache slot ``prompt_len - 1 + k``. Upstream TorToiSe's cached path gives cached
steps mel position k + 1 (it takes the count of mel inputs, the new one included, as the index); we use the
positions of its uncached path, which are also the ones of its teacher-forced (training) pass.

Randomness is explicit: sampling takes a ``torch.Generator``.

Longer than 400 lines because the loop, its cached and uncached steps (each also in a form that keeps the AR
latents, for the fast path and its stream) and the prepared decoder that runs them with the speed-ups must
agree number for number, and do so best side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from tortoise_lab.config import DEFAULT_BATCH_SIZE, InferenceOptions, Settings
from tortoise_lab.device import choose_device
from tortoise_lab.fast import (PYTORCH_INSTEAD, INT8_CPU_ONLY, DeepSpeedDecoder, compile_decode_step,
                               deepspeed_available, deepspeed_decoder, deepspeed_off_cuda_note, half_dtype,
                               half_precision_note, prepack_available, prepack_linears, quantize_int8)
from tortoise_lab.fast.half import autocast_to
from tortoise_lab.fast.compile import COMPILED_CACHE_BUCKET
from tortoise_lab.models.gpt import KVCache, UnifiedVoice

# Upstream's generate() feeds transformers placeholder ids of 1 for the prompt positions (their embeddings are
# swapped in later), so its repetition penalty also hits mel code 1 from the first step. Reproducing that is
# opt-in: pass ``always_penalized=UPSTREAM_FILLER_CODES``.
UPSTREAM_FILLER_CODES = (1,)

# decode_one_token's signature: (model, codes (B, 1), mel_pos (1,), input_pos (1,)) -> logits (B, V).
# tortoise_lab.fast.compile_decode_step returns a compiled step of this type.
DecodeStep = Callable[[UnifiedVoice, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# What the pipeline reports each step to (a progress bar, a Stop button): (stage, done, total). It may raise to stop
# the run; the exception passes through unchanged.
StepCallback = Callable[[str, int, int], None]

# transformers' generate() applies top_k=50 by default; upstream never overrode it, so its samples depend on it.
UPSTREAM_TOP_K = 50

__all__ = ["UPSTREAM_FILLER_CODES", "UPSTREAM_TOP_K", "DecodeStep", "SamplingQuirks", "UPSTREAM_QUIRKS",
           "NO_QUIRKS", "prefill", "prefill_hidden", "decode_one_token", "decode_one_hidden",
           "next_logits_uncached", "next_hidden_uncached", "logits_to_probs", "penalize_repeats", "ensure_cache",
           "DrawnStep", "generate_codes", "draw_codes", "attach_caches", "PreparedDecoder", "prepacked_if_asked",
           "prepare_decoder",
           "sampling_options", "sample_codes", "sample_with_latents", "codes_until_stop", "draw_until_stop"]


@dataclass(frozen=True)
class SamplingQuirks:
    """What a model set's sampling reproduces of upstream's ``generate()`` (a model set carries its own)."""

    top_k: int | None = None  # keep only the k likeliest codes before top-p
    always_penalized: tuple[int, ...] = ()  # codes the repetition penalty hits from the first step


UPSTREAM_QUIRKS = SamplingQuirks(UPSTREAM_TOP_K, UPSTREAM_FILLER_CODES)  # the TorToiSe v2 architecture
NO_QUIRKS = SamplingQuirks()  # models of our own training (the embedded model)


def prefill(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
    """Fill the KV cache with the prompt; return the logits for the first mel code, (B, number_mel_codes).

    cond_latent: (B, C); text_tokens: (B, T). The cache must hold at least the prompt (1 + T+2 + 1 slots).
    When every row has the same prompt (the usual case: B samples of one sentence), the prompt runs once and its
    keys and values are written into every row of the cache, instead of B identical passes.
    """
    return model.mel_logits(prefill_hidden(model, cond_latent, text_tokens)).expand(cond_latent.shape[0], -1)


def prefill_hidden(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
    """``prefill``'s work up to the last position's final-normed hidden state: (rows, C), where rows is 1 when every
    row has the same prompt (expand it to the batch) and B otherwise. It is the AR latent of mel position 0."""
    batch = cond_latent.shape[0]
    rows = 1 if isinstance(model, UnifiedVoice) and _same_prompt(cond_latent, text_tokens) else batch
    prompt = model.prompt_embeddings(cond_latent[:rows], text_tokens[:rows])  # (rows, P, C)
    _check_room(model, prompt.shape[1])
    input_pos = torch.arange(prompt.shape[1], device=prompt.device)
    return model.decode(prompt, input_pos)[:, -1]  # (rows, C)


def _same_prompt(cond_latent: torch.Tensor, text_tokens: torch.Tensor) -> bool:
    return cond_latent.shape[0] > 1 and bool((cond_latent == cond_latent[:1]).all()) and bool(
        (text_tokens == text_tokens[:1]).all())


def decode_one_token(model: UnifiedVoice, codes: torch.Tensor, mel_pos: torch.Tensor,
                     input_pos: torch.Tensor) -> torch.Tensor:
    """One cached step: codes (B, 1) at mel position ``mel_pos`` (1,) and cache slot ``input_pos`` (1,).

    Returns the logits for the next code, (B, number_mel_codes). Fixed shapes, no host syncs: compilable.
    """
    return model.mel_logits(decode_one_hidden(model, codes, mel_pos, input_pos))


def decode_one_hidden(model: UnifiedVoice, codes: torch.Tensor, mel_pos: torch.Tensor,
                      input_pos: torch.Tensor) -> torch.Tensor:
    """``decode_one_token`` up to the final-normed hidden state, (B, C): the AR latent of mel position ``mel_pos``,
    which ``model.mel_logits`` turns into the next code's logits. A ``DecodeStep`` for drawing with latents."""
    return model.decode(model.mel_embeddings(codes, mel_pos), input_pos)[:, -1]  # (B, C)


def next_logits_uncached(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                         codes: torch.Tensor) -> torch.Tensor:
    """Recompute the whole sequence (prompt + ``codes`` (B, k)) and return the next code's logits (B, V).

    The slow path, kept to check the cached one.
    """
    return model.mel_logits(next_hidden_uncached(model, cond_latent, text_tokens, codes))


def next_hidden_uncached(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                         codes: torch.Tensor) -> torch.Tensor:
    """``next_logits_uncached`` up to the last position's final-normed hidden state, (B, C)."""
    prompt = model.prompt_embeddings(cond_latent, text_tokens)
    if codes.shape[1]:
        mel_pos = torch.arange(1, codes.shape[1] + 1, device=codes.device)  # the start token holds position 0
        prompt = torch.cat([prompt, model.mel_embeddings(codes, mel_pos)], dim=1)
    return model.decode(prompt)[:, -1]


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


@dataclass
class DrawnStep:
    """One step of ``draw_codes``: the codes so far and, when asked for, the AR latent that chose this step's code."""

    step: int  # 0-based: codes[:, :step + 1] are drawn
    codes: torch.Tensor  # (B, max_mel_tokens), stop tokens beyond the codes drawn (the buffer the loop fills)
    latent: torch.Tensor | None  # (B, C): final-normed hidden state of mel position ``step``, or None
    done: torch.Tensor  # (B,) bool: the row has drawn its stop token


def generate_codes(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                   max_mel_tokens: int, *, on_step: Callable[[int], None] | None = None, **sampling) -> torch.Tensor:
    """Decode up to ``max_mel_tokens`` codes per sample; returns (B, max_mel_tokens) long.

    cond_latent: (B, C); text_tokens: (B, T) (repeat one prompt to draw several samples). After a sample emits
    the stop token, the rest of its row is stop tokens (as upstream pads). ``sampling``: ``draw_codes``'s keyword
    arguments. ``on_step``, if given, is called with the number of codes drawn so far after every step (it may
    raise, to stop decoding).
    """
    codes = None
    for drawn in draw_codes(model, cond_latent, text_tokens, max_mel_tokens, **sampling):
        codes = drawn.codes
        if on_step is not None:
            on_step(drawn.step + 1)
    return codes


def draw_codes(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
               max_mel_tokens: int, *, kv_cache: bool = True, greedy: bool = True,
               temperature: float = 1.0, top_p: float | None = None, top_k: int | None = None,
               repetition_penalty: float = 1.0, always_penalized: tuple[int, ...] = (),
               generator: torch.Generator | None = None, stop_early: bool = True,
               decode_step: DecodeStep | None = None, latents: bool = False) -> Iterator[DrawnStep]:
    """The decoding loop, one ``DrawnStep`` per code drawn (``generate_codes`` runs it to the end).

    ``stop_early`` ends the loop once every row has stopped. ``greedy`` takes the argmax; otherwise codes are drawn
    from ``logits_to_probs`` with ``generator``. ``repetition_penalty`` applies to the mel inputs so far (the start
    token and the codes generated) and to the codes in ``always_penalized``; pass ``UPSTREAM_FILLER_CODES`` there to
    sample exactly as upstream TorToiSe does. ``kv_cache`` uses the model's attached static cache when it fits
    (``setup_caches`` once to reuse one across calls, e.g. under torch.compile) and attaches a fitting one
    otherwise; False recomputes the whole sequence every step (slow; for checks). ``decode_step`` replaces the
    cached step (e.g. a compiled one from ``tortoise_lab.fast``): ``decode_one_token`` by default, or with
    ``latents`` ``decode_one_hidden`` (its logits are ``model.mel_logits`` of the latent it returns: the same
    numbers). ``latents``: each step carries the AR latent its code was drawn from (what the fast path decodes).
    """
    config = model.config
    step_fn = decode_step or (decode_one_hidden if latents else decode_one_token)
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

    hidden = None
    if kv_cache:
        prompt_len = model.prompt_length(text_tokens.shape[1])
        ensure_cache(model, batch, prompt_len + max_mel_tokens - 1)
        if latents:
            hidden = prefill_hidden(model, cond_latent, text_tokens)  # (rows, C)
            logits = model.mel_logits(hidden).expand(batch, -1)
            hidden = hidden.expand(batch, -1)
        else:
            logits = prefill(model, cond_latent, text_tokens)
    elif latents:
        hidden = next_hidden_uncached(model, cond_latent, text_tokens, codes[:, :0])
        logits = model.mel_logits(hidden)
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
        yield DrawnStep(step, codes, hidden, done)
        if step + 1 == max_mel_tokens or (stop_early and bool(done.all())):
            break
        if kv_cache:
            mel_pos = torch.tensor([step + 1], device=device)  # the start token is mel position 0
            out = step_fn(model, next_code[:, None], mel_pos, mel_pos + prompt_len - 1)
        elif latents:
            out = next_hidden_uncached(model, cond_latent, text_tokens, codes[:, :step + 1])
        else:
            out = next_logits_uncached(model, cond_latent, text_tokens, codes[:, :step + 1])
        if latents:
            hidden, logits = out, model.mel_logits(out)
        else:
            logits = out


# --- the prepared decoder: KV cache and speed-ups ----------------------------------------------------------

def attach_caches(model: UnifiedVoice, batch_size: int, slots: int, dtype: torch.dtype) -> None:
    """Keep the model's KV cache if it has this batch size, room for ``slots`` and ``dtype``; else attach one that does.

    Under autocast the keys and values come out in the half dtype, and an index write into a float32 cache refuses
    mixed dtypes, so the cache must be in the compute dtype (also half the memory traffic per step).
    """
    cache = model.gpt.h[0].attn.kv_cache if len(model.gpt.h) else None
    if (cache is not None and cache.k_cache.shape[0] == batch_size and cache.max_seq_len >= slots
            and cache.k_cache.dtype == dtype):
        return
    config, device = model.config, model.final_norm.weight.device  # (an int8 copy's linears hold no float weight)
    for block in model.gpt.h:
        block.attn.kv_cache = KVCache(batch_size, config.heads, slots, config.head_dim, dtype=dtype, device=device)


@dataclass
class PreparedDecoder:
    """A decoder with the speed-ups applied; ``generate`` runs ``generate_codes`` with them."""

    model: UnifiedVoice | DeepSpeedDecoder  # what generate_codes decodes with
    decode_step: DecodeStep
    device: torch.device
    kv_cache: bool
    compute_dtype: torch.dtype | None  # autocast dtype; None = float32
    compiled: bool = False
    used: dict = field(default_factory=dict)  # what actually ran, for the output sidecar
    hidden_step: DecodeStep = decode_one_hidden  # the cached step when drawing with latents (compiled with compile)

    def generate(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor, max_mel_tokens: int,
                 **sampling) -> torch.Tensor:
        """``generate_codes`` with this decoder: (B, C), (B, T) -> (B, max_mel_tokens) codes. ``sampling``: its
        keyword arguments (greedy, temperature, top_p, generator, ...)."""
        cond_latent, text_tokens = cond_latent.to(self.device), text_tokens.to(self.device)
        with torch.no_grad(), autocast_to(self.device, self.compute_dtype):
            if self.kv_cache and isinstance(self.model, UnifiedVoice):
                self._attach_caches(cond_latent.shape[0], text_tokens.shape[1], max_mel_tokens)
            return generate_codes(self.model, cond_latent, text_tokens, max_mel_tokens, kv_cache=self.kv_cache,
                                  decode_step=self.decode_step, **sampling)

    def draw(self, cond_latent: torch.Tensor, text_tokens: torch.Tensor, max_mel_tokens: int,
             **sampling) -> Iterator[DrawnStep]:
        """``draw_codes`` with this decoder and ``latents=True``, one step at a time. Every step runs under this
        decoder's no-grad and autocast, and only it: what the caller does between steps runs as it would alone."""
        cond_latent, text_tokens = cond_latent.to(self.device), text_tokens.to(self.device)
        with torch.no_grad(), autocast_to(self.device, self.compute_dtype):
            if self.kv_cache and isinstance(self.model, UnifiedVoice):
                self._attach_caches(cond_latent.shape[0], text_tokens.shape[1], max_mel_tokens)
            steps = draw_codes(self.model, cond_latent, text_tokens, max_mel_tokens, kv_cache=self.kv_cache,
                               decode_step=self.hidden_step, latents=True, **sampling)
        while True:
            with torch.no_grad(), autocast_to(self.device, self.compute_dtype):
                drawn = next(steps, None)
            if drawn is None:
                return
            yield drawn

    def is_stale(self) -> bool:
        """True when it can no longer run: a DeepSpeed decoder after another DeepSpeed model was built (DeepSpeed
        keeps one model's state per process). Build it again then."""
        return isinstance(self.model, DeepSpeedDecoder) and not self.model.is_current()

    def _attach_caches(self, batch: int, text_len: int, max_mel_tokens: int) -> None:
        slots = self.model.prompt_length(text_len) + max_mel_tokens - 1
        if self.compiled:
            # A compiled step is specialised to its cache's shape; rounding the length up to a bucket keeps the
            # number of compiled graphs small (8 at most for the official sizes) without a cache sized for the
            # longest possible utterance every time.
            slots = -(-slots // COMPILED_CACHE_BUCKET) * COMPILED_CACHE_BUCKET
        dtype = self.compute_dtype or self.model.final_norm.weight.dtype  # (quantized linears hold no float weight)
        attach_caches(self.model, batch, slots, dtype)


def prepacked_if_asked(model: UnifiedVoice, options: InferenceOptions, device: torch.device,
                       compute_dtype: torch.dtype | None = None, rows: int = DEFAULT_BATCH_SIZE) -> UnifiedVoice:
    """``model``'s prepacked copy (``fast.prepack``) for steps of ``rows`` samples where ``options.prepack``
    applies: fp32 on a CPU with oneDNN; else ``model`` itself. On by default, so no note when it does not apply:
    nobody asked for it in particular. The decoding loop and the AR latent pass of the chosen rows both run on it."""
    if options.prepack and device.type == "cpu" and compute_dtype is None and prepack_available()[0]:
        return prepack_linears(model, rows)
    return model


def _deepspeed_refusal(device: torch.device, kv_cache: bool) -> str | None:
    """Why DeepSpeed won't decode this run, or None when it will; cheap reasons before the kernel load."""
    if device.type != "cuda":
        return deepspeed_off_cuda_note(device.type)
    if not kv_cache:
        return f"DeepSpeed decodes with its own KV cache only, and the KV cache is off; {PYTORCH_INSTEAD}"
    available, reason = deepspeed_available()  # may JIT-build the kernels the first time
    return None if available else reason


def prepare_decoder(model: UnifiedVoice, options: InferenceOptions,
                    rows: int = DEFAULT_BATCH_SIZE) -> tuple[PreparedDecoder, list[str]]:
    """Apply the speed-ups ``options`` asks for to ``model``; return the decoder and notes on requests not honoured.

    Moves the model to the chosen device (in place, as ``nn.Module.to`` does) and to eval mode. The notes are
    whole sentences, one per option asked for but not used, for the caller to print and record. ``rows``: the
    samples a step usually decodes (the batch; 1 for the fast path), which prepacked weights are laid out for
    (any count works; the right one is faster: 1 instead of 16 makes a single-sample step about a tenth faster).
    """
    device = choose_device(options.device)
    model = model.to(device).eval()
    notes: list[str] = []

    compute_dtype = half_dtype(device) if options.half else None
    if options.half and compute_dtype is None:
        notes.append(half_precision_note(device))

    decoder: UnifiedVoice | DeepSpeedDecoder = model
    use_int8 = False
    if options.int8:
        if device.type == "cpu":
            decoder = quantize_int8(model)
            use_int8 = True
        else:
            notes.append(INT8_CPU_ONLY.format(device=device.type))
    use_deepspeed = False
    if options.deepspeed:
        reason = _deepspeed_refusal(device, options.kv_cache)
        if reason is not None:
            notes.append(reason)
        else:
            try:
                decoder = deepspeed_decoder(model, compute_dtype or torch.float32)
                use_deepspeed = True
            except RuntimeError as error:  # kernels missing for this dtype: say so, decode with PyTorch
                notes.append(str(error))

    # Not with a speed-up that replaces the layers: int8, DeepSpeed, or torch.compile, whose CPU graphs take plain
    # weights (traced as graph inputs, which a packed one cannot be). ``used`` records whether it ran.
    use_prepack = False
    if not (use_int8 or use_deepspeed or (options.compile and options.kv_cache)):
        decoder = prepacked_if_asked(model, options, device, compute_dtype, rows)
        use_prepack = decoder is not model

    decode_step: DecodeStep = decode_one_token
    hidden_step: DecodeStep = decode_one_hidden
    compiled = False
    if options.compile:
        if not options.kv_cache:
            notes.append("torch.compile applies to the cached decode step; with the KV cache off it is not used.")
        elif use_int8:
            notes.append("torch.compile is not used with int8 quantization (its quantized kernels run eagerly).")
        elif use_deepspeed:
            notes.append("torch.compile is not used with DeepSpeed (its kernels keep state outside the graph); "
                         "DeepSpeed runs uncompiled.")
        else:
            decode_step = compile_decode_step(decode_one_token, device)
            hidden_step = compile_decode_step(decode_one_hidden, device)  # lazy: compiled on first use only
            compiled = True

    used = {"device": str(device), "kv_cache": options.kv_cache,
            "dtype": str(compute_dtype or torch.float32).removeprefix("torch."),
            "deepspeed": use_deepspeed, "compile": compiled, "int8": use_int8, "prepack": use_prepack}
    return PreparedDecoder(decoder, decode_step, device, options.kv_cache, compute_dtype, compiled, used,
                           hidden_step), notes


def sampling_options(settings: Settings, quirks: SamplingQuirks, generator: torch.Generator) -> dict:
    """How every run draws its codes: ``draw_codes``'s keyword arguments from the settings and the set's quirks."""
    return dict(greedy=False, temperature=settings.temperature, top_p=settings.top_p, top_k=quirks.top_k,
                repetition_penalty=settings.repetition_penalty, always_penalized=quirks.always_penalized,
                generator=generator)


def sample_codes(decoder: PreparedDecoder, cond_latent: torch.Tensor, text_tokens: torch.Tensor, settings: Settings,
                 quirks: SamplingQuirks, generator: torch.Generator, progress: bool = False,
                 on_step: StepCallback | None = None) -> torch.Tensor:
    """Draw ``settings.num_autoregressive_samples`` code rows, (N, settings.max_mel_tokens), in batches of
    ``settings.batch`` (the last may be smaller). cond_latent: (1, C); text_tokens: (1, T). ``on_step`` hears
    ("autoregressive", steps done, batches x max_mel_tokens) after every step; a batch that stops early counts whole."""
    total, batch = settings.num_autoregressive_samples, settings.batch
    steps, batches = settings.max_mel_tokens, -(-total // batch)
    rows = []
    for start in tqdm(range(0, total, batch), desc="autoregressive", disable=not progress, leave=False):
        size = min(batch, total - start)
        before = start // batch * steps
        report = None if on_step is None else (lambda step: on_step("autoregressive", before + step, batches * steps))
        rows.append(decoder.generate(cond_latent.expand(size, -1), text_tokens.expand(size, -1),
                                     settings.max_mel_tokens, on_step=report,
                                     **sampling_options(settings, quirks, generator)))
        if report is not None:
            report(steps)
    return torch.cat(rows)


def sample_with_latents(decoder: PreparedDecoder, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                        settings: Settings, quirks: SamplingQuirks, generator: torch.Generator,
                        progress: bool = False, on_step: StepCallback | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's codes, (1, settings.max_mel_tokens) as ``sample_codes`` draws them (the same generator, the
    same codes), and the AR latent each code was drawn from, (1, T, C) fp32 for the T codes drawn: the latents a
    teacher-forced pass over those codes computes again (``decode.chosen_latents``), taken from the steps instead.
    For the fast path, which decodes its one sample and has nothing to rank. cond_latent: (1, C); text_tokens: (1, T).
    """
    steps, drawn, latents = settings.max_mel_tokens, None, []
    with tqdm(total=steps, desc="autoregressive", disable=not progress, leave=False) as bar:
        for drawn in decoder.draw(cond_latent, text_tokens, steps, **sampling_options(settings, quirks, generator)):
            latents.append(drawn.latent.float().clone())  # (a compiled step may reuse its output buffer)
            bar.update()
            if on_step is not None:
                on_step("autoregressive", drawn.step + 1, steps)
    if on_step is not None:  # a sample that stops early counts whole, as in sample_codes
        on_step("autoregressive", steps, steps)
    return drawn.codes, torch.stack(latents, dim=1)


def codes_until_stop(codes: torch.Tensor, stop: int) -> tuple[torch.Tensor, bool]:
    """(L,) decoded codes -> (the codes before the first stop code, whether there was one)."""
    stops = (codes == stop).nonzero()
    if len(stops) == 0:
        return codes, False
    return codes[:int(stops[0])], True


@torch.no_grad()
def draw_until_stop(model: UnifiedVoice, cond_latent: torch.Tensor, text_tokens: torch.Tensor,
                    max_codes: int | None = None, **sampling) -> tuple[torch.Tensor, bool]:
    """One row of codes for one prompt, cut at the stop code: greedy unless ``sampling`` says otherwise (e.g.
    ``greedy=False, temperature=0.8, generator=g``). cond_latent: (1, C); text_tokens: (1, T) as
    ``Tokenizer.model_ids`` gives them. Returns ((L,) codes without the stop code, whether it came)."""
    limit = min(max_codes or model.config.max_mel_tokens, model.config.max_mel_tokens)
    sampling.setdefault("greedy", True)
    row = generate_codes(model, cond_latent, text_tokens, limit, **sampling)[0]
    return codes_until_stop(row, model.config.stop_mel_token)
