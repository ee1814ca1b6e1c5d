"""Text -> speech, one function per stage.

    text ─► text_tokens ─► AR sampling (candidates) ─► fix-up ─► CLVP/CVVP ranking ─► AR latents
         ─► diffusion (per chosen candidate) ─► vocoder ─► wav

``TextToSpeech.tts`` runs the stages for each chunk of the text and returns one ``Speech``. All randomness
comes from one ``torch.Generator`` seeded with the run's seed, drawn in a fixed order, so the same seed and
settings give the same audio, with the KV cache on or off.
"""

from __future__ import annotations

import dataclasses
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tortoise_lab import __version__
from tortoise_lab.audio import OUTPUT_SAMPLE_RATE, denormalize_univnet_mel
from tortoise_lab.conditioning import ConditioningLatents, conditioning_mels, crop_starts, encode_mels
from tortoise_lab.config import PRESETS, preset_settings
from tortoise_lab.device import choose_device
from tortoise_lab.diffusion_sampler import SAMPLERS, TRAINED_STEPS, sample
from tortoise_lab.fast import InferenceOptions, PreparedDecoder, autocast_context, prepare_decoder, quantize_int8
from tortoise_lab.model_set import ModelSet
from tortoise_lab.redaction import parse_redactions
from tortoise_lab.sampling import UPSTREAM_FILLER_CODES
from tortoise_lab.text import Tokenizer, clean_text, split_text
from tortoise_lab.voices import LatentCache, Voice

__all__ = ["Settings", "Speech", "TextToSpeech", "fix_autoregressive_output", "trim_at_calm", "SAMPLE_RATE"]

SAMPLE_RATE = OUTPUT_SAMPLE_RATE
CALM_TOKEN = 83  # the code for silence, which the fix-up writes after the stop token
END_CODES = (45, 45, 248)  # what the DVAE gives for the end of zero-padded audio; ends every fixed-up row
CALM_RUN_TO_TRIM = 8  # after more than this many calm codes in a row, the diffusion input is cut
# transformers' generate() applies top_k=50 by default; upstream never overrode it, so its samples depend on it.
UPSTREAM_TOP_K = 50
TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX = 200, 300  # upstream read.py's chunk lengths (characters)
SEED_RANGE = 2**31 - 1
DEFAULT_BATCH_SIZE = 16  # AR samples decoded together when the batch size is not given


@dataclass
class Settings:
    """Every knob of one synthesis. Build with ``Settings.from_preset(name, **overrides)``."""

    preset: str = "fast"
    num_autoregressive_samples: int = 96
    temperature: float = 0.8
    length_penalty: float = 1.0  # kept for upstream compatibility: it only affects beam search, never sampling
    repetition_penalty: float = 2.0
    top_p: float = 0.8
    max_mel_tokens: int = 500
    cvvp_amount: float = 0.0
    diffusion_iterations: int = 80
    cond_free: bool = True
    cond_free_k: float = 2.0
    diffusion_temperature: float = 1.0
    sampler: str = "ddpm"
    candidates: int = 1  # k: how many of the best-ranked samples to turn into audio
    batch_size: int | None = None  # AR samples per batch; None: all at once up to 16
    text_split: tuple[int, int] | None = None  # (desired, max) characters per chunk; None: split text over 300
    redact: bool = True  # cut [bracketed] text out of the audio (needs an aligner)
    latent_cache: bool = True  # reuse a clip voice's conditioning latents saved beside it
    # Inference options: none of them changes the codes or the audio (half on CUDA is the lossy exception).
    kv_cache: bool = True
    half: bool = False
    deepspeed: bool = False
    compile: bool = False
    int8: bool = False  # int8 AR decoder and CLVP on CPU: several times faster, lossy (the output changes)
    device: str | None = None

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides) -> "Settings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"Unknown setting {unknown[0]!r}. Available: {', '.join(sorted(known))}.")
        values = {**preset_settings(preset), "preset": preset}
        values.update({k: v for k, v in overrides.items() if v is not None or k in ("batch_size", "device")})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ValueError with one sentence naming the first invalid setting."""
        checks = [
            (self.preset in PRESETS, f"Unknown preset {self.preset!r}. Available: {', '.join(PRESETS)}."),
            (self.num_autoregressive_samples >= 1, "num_autoregressive_samples must be at least 1."),
            (self.temperature > 0, "temperature must be greater than 0."),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]."),
            (self.repetition_penalty > 0, "repetition_penalty must be greater than 0."),
            (self.max_mel_tokens >= 1, "max_mel_tokens must be at least 1."),
            (0 <= self.cvvp_amount <= 1, "cvvp_amount must be between 0 and 1."),
            (1 <= self.diffusion_iterations <= TRAINED_STEPS,
             f"diffusion_iterations must be between 1 and {TRAINED_STEPS}."),
            (self.cond_free_k >= 0, "cond_free_k must be 0 or more."),
            (self.diffusion_temperature >= 0, "diffusion_temperature must be 0 or more."),
            (self.sampler in SAMPLERS, f"Unknown sampler {self.sampler!r}. Available: {', '.join(SAMPLERS)}."),
            (1 <= self.candidates <= self.num_autoregressive_samples,
             "candidates must be between 1 and num_autoregressive_samples."),
            (self.batch_size is None or self.batch_size >= 1, "batch_size must be at least 1."),
            (self.text_split is None or 0 < self.text_split[0] <= self.text_split[1],
             "text_split must be (desired, max) characters with 0 < desired <= max."),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Speech:
    """The result of one synthesis: the best candidate's audio, the other candidates, and how it was made."""

    wav: torch.Tensor  # (1, N) float32 in [-1, 1], the best-ranked candidate (chunks joined)
    sample_rate: int
    seed: int
    text: str
    voice: str
    settings: dict
    candidates: list[torch.Tensor]  # k waveforms, best first
    codes: list[torch.Tensor]  # per chunk, (k, max_mel_tokens) the chosen candidates' fixed-up codes
    scores: list[torch.Tensor]  # per chunk, (num_autoregressive_samples,) ranking scores
    chunks: list[str]
    timings: dict[str, float]  # seconds per stage, summed over chunks, plus "total"
    model: str  # where the weights came from
    notes: list[str] = field(default_factory=list)  # options requested but not used, stop-token warnings, ...
    version: str = __version__

    @property
    def duration(self) -> float:
        return self.wav.shape[-1] / self.sample_rate

    def metadata(self) -> dict:
        """Everything about the run except the audio, for the JSON sidecar."""
        return {
            "text": self.text, "voice": self.voice, "seed": self.seed, "sample_rate": self.sample_rate,
            "duration_s": round(self.duration, 3), "chunks": self.chunks, "settings": self.settings,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()}, "model": self.model,
            "notes": self.notes, "tortoise_lab_version": self.version,
        }


# ----------------------------------------------------------------------------------------- pure stages


def fix_autoregressive_output(codes: torch.Tensor, stop_token: int) -> tuple[torch.Tensor, bool]:
    """Upstream's fix-up of one row of sampled codes (T,): from the first stop token on, calm codes, and the last
    three positions the DVAE's end-of-audio codes. Returns (fixed codes, whether a stop token was found)."""
    stops = (codes == stop_token).nonzero()
    if len(stops) == 0:
        return codes, False
    fixed = codes.clone()
    fixed[int(stops[0])] = CALM_TOKEN
    fixed[int(stops.min()):] = CALM_TOKEN
    fixed[-len(END_CODES):] = torch.tensor(END_CODES, dtype=codes.dtype, device=codes.device)
    return fixed, True


def trim_at_calm(codes: torch.Tensor) -> int:
    """How many latents to keep for diffusion: up to the code where more than CALM_RUN_TO_TRIM calm codes run."""
    run = 0
    for index, code in enumerate(codes.tolist()):
        run = run + 1 if code == CALM_TOKEN else 0
        if run > CALM_RUN_TO_TRIM:
            return index
    return codes.shape[-1]


def diffusion_frames(latent_len: int) -> int:
    """Output mel frames for a latent length: 4 mel frames per code at 22.05 kHz, re-timed to 24 kHz."""
    return latent_len * 4 * OUTPUT_SAMPLE_RATE // 22_050


# ----------------------------------------------------------------------------------------- the pipeline


class _Timer:
    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class TextToSpeech:
    """The synthesis pipeline over a ``ModelSet``.

    >>> tts = TextToSpeech(official_models())            # doctest: +SKIP
    >>> speech = tts.tts("Hello.", voice=load_voice("tom"), preset="fast", seed=3)  # doctest: +SKIP
    """

    def __init__(self, models: ModelSet, tokenizer: Tokenizer | None = None, aligner=None, progress: bool = True):
        self.models = models
        self.tokenizer = tokenizer or Tokenizer()
        self.aligner = aligner
        self.progress = progress
        self._aligner_error: str | None = None
        self._quantized_clvp = None
        self._decoders: dict[InferenceOptions, tuple[PreparedDecoder, list[str]]] = {}

    @property
    def device(self) -> torch.device:
        return self.models.device

    # --------------------------------------------------------------------------- stages (public, testable)

    def text_tokens(self, text: str) -> torch.Tensor:
        """(1, T) token ids with upstream's trailing 0; ValueError if nothing is left or it is too long."""
        ids = self.tokenizer.encode(text)
        if not any(ch.isalnum() for ch in clean_text(text)):
            raise ValueError(f"The text {text!r} has nothing pronounceable in it; give words to speak.")
        limit = self.models.gpt.config.max_text_tokens
        if len(ids) + 1 > limit:
            raise ValueError(f"The text is {len(ids)} tokens long but the model takes at most {limit - 1}; "
                             f"split it (--text-split) or use `tortoise-lab read`.")
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
        return F.pad(tokens, (0, 1))  # upstream appends one 0 before the model adds its own stop token

    def voice_latents(self, voice: Voice, generator: torch.Generator, want_mels: bool = False,
                      cache: bool = True) -> tuple[ConditioningLatents, torch.Tensor | None]:
        """(latents, AR conditioning mels (1, n_clips, 80, T) for CVVP when ``want_mels``, else None).

        Clip voices go through the latent cache. Clips longer than the 6 s window are cropped at starts drawn
        from a generator seeded by the clips themselves (upstream draws them at random): a voice always gives the
        same latents, and the run's generator is not touched, so caching cannot change the output.
        """
        if voice.parts:
            blended = [(self.voice_latents(part, generator, want_mels, cache), weight) for part, weight in voice.parts]
            diffusion = None  # the embedded model has no diffusion decoder, so no diffusion latents
            if all(l.diffusion is not None for (l, _), _ in blended):
                diffusion = sum(w * l.diffusion for (l, _), w in blended)
            latents = ConditioningLatents(sum(w * l.autoregressive for (l, _), w in blended), diffusion)
            mels = [m for (_, m), _ in blended if m is not None]
            return latents, torch.cat(mels, dim=1) if mels else None
        if voice.latents is not None:
            ar, diffusion = (t.to(self.device) for t in voice.latents)
            return ConditioningLatents(ar.reshape(1, -1), diffusion.reshape(1, -1)), None
        if voice.is_random:
            rlg_ar, rlg_diffusion = self.models.random_latents
            return ConditioningLatents(rlg_ar(1, generator), rlg_diffusion(1, generator)), None
        crops = torch.Generator().manual_seed(int(voice.clip_hash()[:15], 16))
        starts = crop_starts(voice.clips, crops)
        store = LatentCache(self.models.fingerprint, enabled=cache and self.models.diffusion is not None)
        cached = store.load(voice)
        if cached is not None and not want_mels:
            return ConditioningLatents(*(t.to(self.device) for t in cached)), None
        ar_mels, diffusion_mels = conditioning_mels(voice.clips, starts)
        if self.models.diffusion is None:  # the embedded model: only the AR model listens to the voice
            latents = ConditioningLatents(self.models.gpt.conditioning_latent(ar_mels.to(self.device)), None)
        elif cached is not None:
            latents = ConditioningLatents(*(t.to(self.device) for t in cached))
        else:
            latents = encode_mels(ar_mels, diffusion_mels, self.models.gpt, self.models.diffusion)
            store.store(voice, latents.autoregressive, latents.diffusion)
        return latents, ar_mels.to(self.device)

    def sample_codes(self, latents: ConditioningLatents, text_tokens: torch.Tensor, settings: Settings,
                     generator: torch.Generator, decoder: PreparedDecoder | None = None) -> torch.Tensor:
        """Draw num_autoregressive_samples code rows, (N, max_mel_tokens), in batches (the last may be smaller)."""
        decoder = decoder or self._decoder(settings, [])
        upstream = self.models.kind != "embedded"  # reproduce upstream's sampling quirks for its architecture
        max_tokens = min(settings.max_mel_tokens, self.models.gpt.config.max_mel_tokens)
        total = settings.num_autoregressive_samples
        batch = min(settings.batch_size or DEFAULT_BATCH_SIZE, total)
        rows = []
        for start in tqdm(range(0, total, batch), desc="autoregressive", disable=not self.progress, leave=False):
            size = min(batch, total - start)
            rows.append(decoder.generate(
                latents.autoregressive.expand(size, -1), text_tokens.expand(size, -1), max_tokens,
                greedy=False, temperature=settings.temperature, top_p=settings.top_p,
                top_k=UPSTREAM_TOP_K if upstream else None, repetition_penalty=settings.repetition_penalty,
                always_penalized=UPSTREAM_FILLER_CODES if upstream else (), generator=generator))
        return torch.cat(rows)

    def rank(self, codes: torch.Tensor, text_tokens: torch.Tensor, ar_mels: torch.Tensor | None,
             settings: Settings) -> torch.Tensor:
        """(N,) scores: CLVP, blended with CVVP by cvvp_amount when the voice has clips."""
        clvp = self._int8_clvp() if settings.int8 and self.device.type == "cpu" else self.models.clvp
        text_latent = clvp.embed_text(text_tokens)  # the text is the same for every candidate: encode it once
        # Random weights can sample codes past CLVP's vocabulary (a trained model never does); score them as silence.
        scorable = torch.where(codes < clvp.speech_emb.num_embeddings, codes, torch.full_like(codes, CALM_TOKEN))
        clvp_scores = clvp.similarity(text_latent, clvp.embed_speech(scorable))
        if settings.cvvp_amount == 0 or ar_mels is None:
            return clvp_scores
        cvvp = self.models.cvvp
        speech = cvvp.embed_speech(scorable)
        per_clip = [cvvp.similarity(cvvp.embed_conditioning(ar_mels[:, i]), speech) for i in range(ar_mels.shape[1])]
        cvvp_scores = torch.stack(per_clip).mean(0)
        return settings.cvvp_amount * cvvp_scores + (1 - settings.cvvp_amount) * clvp_scores

    def decode_audio(self, codes: torch.Tensor, ar_latents: torch.Tensor, latents: ConditioningLatents,
                     settings: Settings, generator: torch.Generator) -> torch.Tensor:
        """One candidate: codes (T,), AR latents (T, C) -> waveform (1, N)."""
        keep = trim_at_calm(codes)
        ar_latents = ar_latents[None, :keep]  # (1, keep, C)
        frames = diffusion_frames(ar_latents.shape[1])
        diffusion = self.models.diffusion
        conditioned = diffusion.timestep_independent(ar_latents, latents.diffusion, frames, False)
        free = diffusion.timestep_independent(ar_latents, latents.diffusion, frames, True) if settings.cond_free else None

        def denoiser(x, timesteps, conditioning_free):
            return diffusion(x, timesteps, free if conditioning_free else conditioned)

        noise = torch.randn((1, diffusion.config.in_channels, frames), generator=generator,
                            device=generator.device).to(self.device) * settings.diffusion_temperature
        mel = sample(denoiser, noise, settings.diffusion_iterations, settings.sampler,
                     cond_free_k=settings.cond_free_k if settings.cond_free else None, generator=generator,
                     progress=self.progress)
        mel = denormalize_univnet_mel(mel)[:, :, :frames]
        return self.models.vocoder.inference(mel, generator=generator)[0]  # (1, N)

    # --------------------------------------------------------------------------------------- the entry point

    def tts(self, text: str, voice: Voice | None = None, preset: str = "fast", seed: int | None = None,
            **overrides) -> Speech:
        """Speak ``text`` in ``voice`` (default: a random voice). Returns one ``Speech``, whatever the options."""
        settings = Settings.from_preset(preset, **overrides)
        voice = voice or Voice("random")
        if seed is None:
            seed = random.SystemRandom().randrange(SEED_RANGE)
        if settings.device is not None and choose_device(settings.device) != self.device:
            self.models.to(choose_device(settings.device))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        timer = _Timer(self.device)
        notes: list[str] = []
        decoder = self._decoder(settings, notes)
        def half():  # as upstream: autocast (CUDA only) for the AR model, ranking and the AR latents
            return autocast_context(self.device, settings.half)
        chunks = self._chunks(text, settings)
        if settings.redact:  # unbalanced brackets fail now, not after minutes of sampling
            for piece in [text, *chunks]:
                parse_redactions(piece)
        chunk_wavs, all_codes, all_scores = [], [], []
        started = time.perf_counter()
        with torch.no_grad():
            with timer.stage("conditioning"):
                latents, ar_mels = self.voice_latents(voice, generator, want_mels=settings.cvvp_amount > 0,
                                                      cache=settings.latent_cache)
            for chunk in tqdm(chunks, desc="chunks", disable=not self.progress or len(chunks) == 1, leave=False):
                text_tokens = self.text_tokens(chunk)
                if self.models.kind == "embedded":
                    best, scores, wavs = self._speak_embedded(latents, text_tokens, settings, generator, decoder,
                                                              timer, notes)
                    chunk_wavs.append([w.float().cpu() for w in wavs])
                    all_codes.append(best.cpu())
                    all_scores.append(scores.float().cpu())
                    continue
                with timer.stage("autoregressive"):
                    codes = self.sample_codes(latents, text_tokens, settings, generator, decoder)
                fixed = []
                for row in codes:
                    row, stopped = fix_autoregressive_output(row, self.models.gpt.config.stop_mel_token)
                    fixed.append(row)
                    if not stopped and not any("stop token" in n for n in notes):
                        notes.append(f"Some samples reached max_mel_tokens ({settings.max_mel_tokens}) without a "
                                     "stop token: the speech may be cut short; split the text or raise max_mel_tokens.")
                codes = torch.stack(fixed)
                with timer.stage("ranking"), half():
                    scores = self.rank(codes, text_tokens, ar_mels, settings).float()
                best = codes[torch.topk(scores, k=settings.candidates).indices]  # (k, T)
                with timer.stage("ar_latents"), half():
                    k = best.shape[0]
                    ar_latents = self.models.gpt.latents(latents.autoregressive.expand(k, -1),
                                                         text_tokens.expand(k, -1), best).float()
                wavs = []
                for i in range(k):
                    with timer.stage("diffusion_and_vocoder"):
                        wavs.append(self.decode_audio(best[i], ar_latents[i], latents, settings, generator))
                if settings.redact and ("[" in chunk or "]" in chunk):
                    with timer.stage("redaction"):
                        wavs = [self._redact(wav, chunk, notes) for wav in wavs]
                chunk_wavs.append([w.float().cpu() for w in wavs])
                all_codes.append(best.cpu())
                all_scores.append(scores.float().cpu())
        timer.seconds["total"] = time.perf_counter() - started
        candidates = [torch.cat([chunk[i] for chunk in chunk_wavs], dim=-1) for i in range(settings.candidates)]
        return Speech(wav=candidates[0], sample_rate=SAMPLE_RATE, seed=seed, text=text, voice=voice.name,
                      settings=settings.to_dict(), candidates=candidates, codes=all_codes, scores=all_scores,
                      chunks=chunks, timings=timer.seconds, model=self.models.description, notes=notes)

    # ------------------------------------------------------------------------------------ the embedded model

    def _speak_embedded(self, latents, text_tokens, settings, generator, decoder, timer, notes):
        """The embedded model's path: sample codes, rank them by the AR model's own likelihood (it has no CLVP),
        then code book -> mel -> Griffin-Lim. Returns (chosen codes (k, T), scores (N,), k waveforms)."""
        from tortoise_lab.models.griffin_lim import griffin_lim

        gpt, stop = self.models.gpt, self.models.gpt.config.stop_mel_token
        with timer.stage("autoregressive"):
            codes = self.sample_codes(latents, text_tokens, settings, generator, decoder)
        if not bool((codes == stop).any(dim=1).all()) and not any("stop token" in n for n in notes):
            notes.append(f"Some samples reached {codes.shape[1]} codes without a stop token: the speech may be cut "
                         "short; split the text.")
        with timer.stage("ranking"):
            scores = self._likelihood_scores(codes, text_tokens, latents)
        best = codes[torch.topk(scores, k=settings.candidates).indices]
        wavs = []
        with timer.stage("diffusion_and_vocoder"):  # here: code book and Griffin-Lim
            for row in best:
                length = int((row == stop).nonzero()[0]) if bool((row == stop).any()) else row.shape[0]
                mel = self.models.quantizer.decode(row[:length].cpu())
                wavs.append(griffin_lim(mel) if length else torch.zeros(1, 0))
        return best, scores, wavs

    def _likelihood_scores(self, codes: torch.Tensor, text_tokens: torch.Tensor,
                           latents: ConditioningLatents) -> torch.Tensor:
        """(N,) mean log-probability the AR model gives each sample's codes, up to and including its stop code."""
        gpt, stop = self.models.gpt, self.models.gpt.config.stop_mel_token
        count = codes.shape[0]
        logits = gpt(latents.autoregressive.expand(count, -1), text_tokens.expand(count, -1), codes).mel
        log_probs = logits[:, : codes.shape[1]].log_softmax(-1).gather(-1, codes.unsqueeze(-1))[..., 0]  # (N, L)
        after_stop = (codes == stop).long().cumsum(dim=1) - (codes == stop).long() > 0  # positions past the stop
        valid = (~after_stop).float()
        return (log_probs * valid).sum(dim=1) / valid.sum(dim=1)

    # ----------------------------------------------------------------------------------------------- helpers

    def _chunks(self, text: str, settings: Settings) -> list[str]:
        text = text.strip()
        if not text:
            raise ValueError("The text is empty; give words to speak.")
        desired, maximum = settings.text_split or (TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX)
        if settings.text_split is None and len(text) <= maximum:
            return [text]
        chunks = [c for c in split_text(text, desired_length=desired, max_length=maximum) if c.strip()]
        return chunks or [text]

    def _int8_clvp(self):
        if self._quantized_clvp is None:
            self._quantized_clvp = quantize_int8(self.models.clvp)
        return self._quantized_clvp

    def _decoder(self, settings: Settings, notes: list[str]) -> PreparedDecoder:
        """The AR decoder with the chosen speed-ups (KV cache, half, DeepSpeed, compile), built once per option set.
        Options asked for but not used add a sentence to ``notes``."""
        options = InferenceOptions(kv_cache=settings.kv_cache, half=settings.half, deepspeed=settings.deepspeed,
                                   compile=settings.compile, int8=settings.int8, device=str(self.device))
        if options not in self._decoders:
            self._decoders[options] = prepare_decoder(self.models.gpt, options)
        decoder, option_notes = self._decoders[options]
        notes.extend(n for n in option_notes if n not in notes)
        return decoder

    def _redact(self, wav: torch.Tensor, text: str, notes: list[str]) -> torch.Tensor:
        aligner = self._load_aligner()
        if aligner is None:
            note = f"[Bracketed] text was spoken but not cut out: {self._aligner_error}"
            if note not in notes:
                notes.append(note)
            return wav
        return aligner.redact(wav, text, SAMPLE_RATE)

    def _load_aligner(self):
        """The wav2vec2 aligner: given at construction, else loaded once on first use (None if it cannot be)."""
        if self.aligner is None and self._aligner_error is None:
            from tortoise_lab.redaction import Aligner, AlignerUnavailableError

            try:
                self.aligner = Aligner.from_pretrained(device=self.device)
            except AlignerUnavailableError as error:
                self._aligner_error = str(error)
        return self.aligner

