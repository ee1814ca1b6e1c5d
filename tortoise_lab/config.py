"""Every decision about a run's settings, made once: named model sizes, the preset table, the shared constants and
``Settings``, the one dataclass that holds every knob of a synthesis (its speed options nested as
``InferenceOptions``).

Each network's own config dataclass lives beside it (``models/gpt.py``'s ``GPTConfig`` and so on), with the
official sizes under ``"tortoise-v2"`` and a small ``"tiny"`` size for tests. Presets are data: upstream's base
settings plus what each preset changes.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

__all__ = ["MODEL_SIZES", "BASE_SETTINGS", "PRESETS", "preset_settings", "INPUT_SAMPLE_RATE", "OUTPUT_SAMPLE_RATE",
           "SEED_RANGE", "DEFAULT_BATCH_SIZE", "TEXT_SPLIT_DESIRED", "TEXT_SPLIT_MAX", "SAMPLERS", "TRAINED_STEPS", "DECODERS",
           "InferenceOptions", "Settings", "draw_seed"]

MODEL_SIZES = ("tortoise-v2", "tiny")

INPUT_SAMPLE_RATE = 22_050  # voice clips and the autoregressive model's mel
OUTPUT_SAMPLE_RATE = 24_000  # the diffusion decoder's mel and the vocoder's audio
SEED_RANGE = 2**31 - 1  # seeds are drawn from [0, SEED_RANGE): every torch.Generator accepts them
DEFAULT_BATCH_SIZE = 16  # AR samples decoded together when the batch size is not given
TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX = 200, 300  # upstream read.py's chunk lengths (characters)
SAMPLERS = ("ddpm", "ddim", "dpm++2m")  # diffusion samplers (stages/diffusion_sampler.py)
TRAINED_STEPS = 4000  # the diffusion decoder's training schedule length: the most steps a sampler can take
# How codes become audio: "diffusion", the model set's main chain (the official diffusion decoder + UnivNet; the
# embedded set's code decoder + Griffin-Lim), or "hifigan", upstream's fast path (one sample, its AR latents straight
# to audio; official weights with hifidecoder.pth). The model set says what each means for it (model_set.chain).
DECODERS = ("diffusion", "hifigan")

# Upstream's tuned defaults, shared by every preset.
BASE_SETTINGS: dict[str, float | int | bool] = {
    "temperature": 0.8,
    "length_penalty": 1.0,
    "repetition_penalty": 2.0,
    "top_p": 0.8,
    "cond_free_k": 2.0,
    "diffusion_temperature": 1.0,
}

# What each preset changes: AR candidates drawn, diffusion steps, conditioning-free guidance.
PRESETS: dict[str, dict[str, float | int | bool | str]] = {
    "ultra_fast": {"num_autoregressive_samples": 16, "diffusion_iterations": 30, "cond_free": False},
    "fast": {"num_autoregressive_samples": 96, "diffusion_iterations": 80, "cond_free": True},
    "standard": {"num_autoregressive_samples": 256, "diffusion_iterations": 200, "cond_free": True},
    "high_quality": {"num_autoregressive_samples": 256, "diffusion_iterations": 400, "cond_free": True},
    # ultra_fast's work, done faster and lossily: DPM++(2M) reaches in 10 steps about what DDPM needs 30 for,
    # int8 makes the CPU decoder's and CLVP's matrix products several times faster (no effect elsewhere),
    # and a clip voice's conditioning latents are read from the cache. Its cost in audio is measured by
    # `tortoise-lab bench` (MCD and SNR against the exact path).
    "ultra_fast_int8_dpm": {"num_autoregressive_samples": 16, "diffusion_iterations": 10, "cond_free": False,
                            "sampler": "dpm++2m", "int8": True, "latent_cache": True},
}


def preset_settings(name: str) -> dict[str, float | int | bool | str]:
    """The full settings of a preset: base settings updated by the preset's own."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Available: {', '.join(PRESETS)}.")
    return {**BASE_SETTINGS, **PRESETS[name]}


def draw_seed(seed: int | None = None) -> int:
    """``seed`` itself when given, else a fresh one from the operating system's randomness (recorded with the
    output, so any run can be repeated)."""
    return seed if seed is not None else random.SystemRandom().randrange(SEED_RANGE)


@dataclass(frozen=True)
class InferenceOptions:
    """How the decoder runs. Only ``half`` (on CUDA) and ``int8`` change the audio; ``LOSSLESS`` ones never do."""

    kv_cache: bool = True  # reuse keys and values across steps; off recomputes everything (for checks)
    half: bool = False  # autocast to bf16/fp16 on CUDA (see fast.half_dtype); fp32 elsewhere
    deepspeed: bool = False  # DeepSpeed's fused transformer kernels (CUDA only)
    compile: bool = False  # torch.compile the decode step (ignored with DeepSpeed or without the KV cache)
    int8: bool = False  # int8 AR decoder and CLVP on CPU: several times faster, lossy (the output changes)
    prepack: bool = True  # fp32 linear weights laid out once for oneDNN on CPU (fast.prepack): same numbers, faster
    device: str | None = None  # "cuda", "cuda:N", "mps", "cpu", or None for the best available

    # The options the pipeline promises leave codes and audio unchanged (tests/test_fast.py checks it), so a
    # finished `read` chunk made with them on is still current with them off.
    LOSSLESS = ("kv_cache", "compile", "prepack")


_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(InferenceOptions))


@dataclass(frozen=True)
class Settings:
    """Every knob of one synthesis. Build with ``Settings.from_preset(name, **overrides)``, where the overrides
    may name ``InferenceOptions`` fields too (``kv_cache=False``); ``replace`` derives a variant."""

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
    batch_size: int | None = None  # AR samples per batch; None: all at once up to DEFAULT_BATCH_SIZE
    text_split: tuple[int, int] | None = None  # (desired, max) characters per chunk; None: split text over 300
    redact: bool = True  # cut [bracketed] text out of the audio (needs an aligner)
    latent_cache: bool = True  # reuse a clip voice's conditioning latents saved beside it
    decoder: str = "diffusion"  # one of DECODERS
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    # The names the user chose (not the preset's or the defaults): a model set clamps the others to what it can
    # do, and refuses these when they are beyond it. Not part of the record (``to_dict``).
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every name ``from_preset`` and ``replace`` take: the settings and the inference options."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("inference", "explicit")) + _OPTION_NAMES

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides) -> "Settings":
        """The preset's settings, then ``overrides`` (the user's choices: marked ``explicit``)."""
        values = {**preset_settings(preset), "preset": preset}
        return cls().replace(explicit=False, **values).replace(**overrides)

    def replace(self, explicit: bool = True, **changes) -> "Settings":
        """A validated copy with ``changes`` (None leaves a setting as it is, except the ones None means
        something for: batch_size, text_split and device). ``explicit``: the changes are the user's choices."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(f"Unknown setting {unknown[0]!r}. Available: {', '.join(sorted(self.names()))}.")
        changes = {k: v for k, v in changes.items() if v is not None or k in ("batch_size", "text_split", "device")}
        options = {k: changes.pop(k) for k in list(changes) if k in _OPTION_NAMES}
        if isinstance(changes.get("text_split"), list):
            changes["text_split"] = tuple(changes["text_split"])
        chosen = self.explicit | (frozenset(changes) | frozenset(options) if explicit else frozenset())
        settings = dataclasses.replace(self, **changes, inference=dataclasses.replace(self.inference, **options),
                                       explicit=chosen)
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
            (self.decoder in DECODERS, f"Unknown decoder {self.decoder!r}. Available: {', '.join(DECODERS)}."),
            (1 <= self.candidates <= self.num_autoregressive_samples,
             "candidates must be between 1 and num_autoregressive_samples."),
            (self.batch_size is None or self.batch_size >= 1, "batch_size must be at least 1."),
            (self.text_split is None or 0 < self.text_split[0] <= self.text_split[1],
             "text_split must be (desired, max) characters with 0 < desired <= max."),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def batch(self) -> int:
        """AR samples decoded together."""
        return min(self.batch_size or DEFAULT_BATCH_SIZE, self.num_autoregressive_samples)

    def to_dict(self) -> dict:
        """Flat: every name ``names()`` lists, as the sidecars record them."""
        values = dataclasses.asdict(self)
        options = values.pop("inference")
        del values["explicit"]
        return {**values, **options}
