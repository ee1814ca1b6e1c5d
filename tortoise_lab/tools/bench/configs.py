"""The benchmark's configurations (option combinations) and run options, as data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchConfig", "CONFIGS", "DEFAULT_CONFIGS", "FASTER_PRESET", "BenchOptions"]

REPO = Path(__file__).resolve().parents[3]
REF_WORKER = REPO / "benchmarks" / "ref_bench.py"
RECORD_PREFIX = "BENCH_RECORD "  # a worker's last stdout line: this prefix, then its JSON record
FASTER_PRESET = "ultra_fast_int8_dpm"
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."
DEFAULT_VOICE = "tom"
DEFAULT_SEED = 3
WEIGHTS_SEED = 1234  # the shared random weights; independent of --seed so a new seed does not remake 4 GB
DEFAULT_MAX_MEL_TOKENS = 48
QUICK_MAX_MEL_TOKENS = 16
QUICK_SAMPLES = 4  # AR samples per run in quick mode (the preset's 16 elsewhere)
QUICK_CLIPS = 2  # voice clips in quick mode (upstream's conditioning costs seconds per clip even for tiny models)
FAST_REPEATS = 3
SLOW_REPEATS = 1  # KV cache off: minutes per run at the official size
OFFICIAL_SIZE, QUICK_SIZE = "tortoise-v2", "tiny"
STAGES = ("conditioning", "autoregressive", "ranking", "ar_latents", "diffusion_and_vocoder", "hifigan")
STAGE_LABELS = {"conditioning": "cond", "autoregressive": "AR", "ranking": "rank", "ar_latents": "AR lat",
                "diffusion_and_vocoder": "diff+voc", "hifigan": "HiFiGAN"}
WEIGHT_FILES = ("autoregressive.pth", "diffusion_decoder.pth", "clvp2.pth", "vocoder.pth", "hifidecoder.pth")
WEIGHTS_STAMP = "bench-weights.json"  # written last: a folder without it is an interrupted creation
# Notes every run of a kind makes, which the table need not repeat: random weights never stop; the fast path never
# uses the preset's samples, ranking and diffusion.
EXPECTED_NOTES = ("without a stop token", "decoder draws one sample and turns its latents straight into audio")
# The Settings that upstream's tts() takes under the same names.
UPSTREAM_TTS_SETTINGS = ("num_autoregressive_samples", "temperature", "length_penalty", "repetition_penalty",
                         "top_p", "max_mel_tokens", "cvvp_amount", "diffusion_iterations", "cond_free", "cond_free_k",
                         "diffusion_temperature")
UPSTREAM_PRESETS = ("ultra_fast", "fast", "standard", "high_quality")


@dataclass(frozen=True)
class BenchConfig:
    """One option combination. ``options`` are Settings overrides; ``preset`` None means the run's --preset;
    ``reference`` is upstream's equivalent (its TextToSpeech options) or None where upstream has none."""

    description: str
    options: dict
    preset: str | None = None
    reference: dict | None = None
    cuda_only: bool = False  # upstream's version of it only exists on CUDA (its half is CUDA autocast)
    fast: bool = False  # the fast path (decoder "hifigan": one sample, no ranking, no diffusion)
    stream: bool = False  # ... handed out piece by piece (TextToSpeech.stream; upstream's tts_stream)
    measured_against: str | None = None  # upstream's configuration its speed is compared with (None: its own name)


# The option configurations recompute the conditioning latents every run (latent_cache off), as upstream does.
CONFIGS: dict[str, BenchConfig] = {
    "baseline": BenchConfig("KV cache off, plain weights: every step recomputes the whole sequence (upstream's CLI "
                            "default)", {"kv_cache": False, "prepack": False, "latent_cache": False},
                            reference={"kv_cache": False}),
    "kv_cache_plain": BenchConfig("KV cache on, plain weights (our default before prepacked weights)",
                                  {"kv_cache": True, "prepack": False, "latent_cache": False}),
    "kv_cache": BenchConfig("KV cache on, weights prepacked for oneDNN on CPU (our default)",
                            {"kv_cache": True, "latent_cache": False}, reference={"kv_cache": True}),
    "half": BenchConfig("KV cache + half precision (bf16/fp16 autocast; CUDA only)",
                        {"half": True, "latent_cache": False}, reference={"kv_cache": True, "half": True},
                        cuda_only=True),
    "deepspeed": BenchConfig("KV cache + DeepSpeed's fused decoder kernels (CUDA only)",
                             {"deepspeed": True, "latent_cache": False},
                             reference={"kv_cache": True, "deepspeed": True}, cuda_only=True),
    "compile": BenchConfig("KV cache + torch.compile'd decode step (one untimed warm-up run compiles it)",
                           {"compile": True, "latent_cache": False}),
    "all": BenchConfig("KV cache + half + DeepSpeed + compile (each where it applies)",
                       {"half": True, "deepspeed": True, "compile": True, "latent_cache": False},
                       reference={"kv_cache": True, "half": True, "deepspeed": True}, cuda_only=True),
    "int8": BenchConfig("KV cache + int8 decoder and CLVP (CPU; lossy)", {"int8": True, "latent_cache": False}),
    FASTER_PRESET: BenchConfig("the faster preset: int8, DPM++(2M) in 10 steps, cached conditioning latents",
                               {}, preset=FASTER_PRESET),
    # Upstream's api_fast runs with its KV cache on (its constructor's default is off; on is its fastest).
    "hifigan": BenchConfig("the fast path: one sample's AR latents straight through HiFiGAN (upstream's api_fast tts)",
                           {"decoder": "hifigan", "latent_cache": False}, reference={"api": "fast", "kv_cache": True},
                           fast=True),
    "stream": BenchConfig("the fast path streamed: audio pieces while the codes are drawn (upstream's tts_stream)",
                          {"decoder": "hifigan", "latent_cache": False}, reference={"api": "stream", "kv_cache": True},
                          fast=True, stream=True),
    "stream_cached": BenchConfig("the stream with the voice's conditioning latent computed before (our latent cache; "
                                 "upstream's get_conditioning_latents answered from a copy made before timing)",
                                 {"decoder": "hifigan", "latent_cache": True},
                                 reference={"api": "stream", "kv_cache": True, "conditioning_cached": True},
                                 fast=True, stream=True),
    "hifigan_plain": BenchConfig("the fast path with plain weights (its default before prepacked weights)",
                                 {"decoder": "hifigan", "prepack": False, "latent_cache": False}, fast=True,
                                 measured_against="hifigan"),
    "hifigan_int8": BenchConfig("the fast path with the int8 AR decoder (CPU; lossy: other codes); measured against "
                                "upstream's api_fast tts, which has no int8", {"decoder": "hifigan", "int8": True,
                                                                              "latent_cache": False},
                                fast=True, measured_against="hifigan"),
}
DEFAULT_CONFIGS = ("baseline", "kv_cache_plain", "kv_cache", "half", "deepspeed", "compile", "all", FASTER_PRESET,
                   "hifigan", "hifigan_plain", "stream", "stream_cached", "hifigan_int8")


# ------------------------------------------------------------------------------------------------- options


@dataclass
class BenchOptions:
    """What ``run_benchmark`` was asked for, with the defaults resolved (see ``resolve``)."""

    quick: bool = False
    against_reference: bool = False
    max_mel_tokens: int | None = None  # None: 48, or 16 in quick mode
    preset: str = "ultra_fast"
    repeats: int | None = None  # None: 3 (1 with the KV cache off), or 1 in quick mode
    configs: tuple[str, ...] = DEFAULT_CONFIGS
    json_path: Path | None = None
    out_dir: Path | None = None
    seed: int = DEFAULT_SEED
    weights_dir: Path | None = None
    text: str = DEFAULT_TEXT
    device: str | None = None

    def resolve(self) -> "BenchOptions":
        """Check every option (ValueError naming it and the allowed values) and fill in the defaults."""
        from tortoise_lab.config import PRESETS

        configs = tuple(dict.fromkeys(self.configs))  # drop repeats, keep the order
        unknown = [name for name in configs if name not in CONFIGS]
        if unknown or not configs:
            raise ValueError(f"Unknown config {unknown[0] if unknown else ''!r}. Available: {', '.join(CONFIGS)}.")
        if self.preset not in PRESETS:
            raise ValueError(f"Unknown preset {self.preset!r}. Available: {', '.join(PRESETS)}.")
        if self.against_reference and self.preset not in UPSTREAM_PRESETS:
            raise ValueError(f"The reference runs only upstream's presets ({', '.join(UPSTREAM_PRESETS)}); "
                             f"{self.preset!r} is ours. Compare it with --configs {self.preset} instead.")
        if self.repeats is not None and self.repeats < 1:
            raise ValueError("--repeats must be at least 1.")
        tokens = self.max_mel_tokens if self.max_mel_tokens is not None else (
            QUICK_MAX_MEL_TOKENS if self.quick else DEFAULT_MAX_MEL_TOKENS)
        from tortoise_lab.models.gpt import GPTConfig

        limit = GPTConfig.from_name(QUICK_SIZE if self.quick else OFFICIAL_SIZE).max_mel_tokens
        if not 1 <= tokens <= limit:
            raise ValueError(f"--max-mel-tokens must be between 1 and {limit} for "
                             f"{'the tiny' if self.quick else 'the official'} model; got {tokens}.")
        if not self.text.strip():
            raise ValueError("The benchmark text is empty.")
        return dataclasses.replace(self, configs=configs, max_mel_tokens=tokens,
                                   json_path=Path(self.json_path) if self.json_path else None,
                                   out_dir=Path(self.out_dir) if self.out_dir else None,
                                   weights_dir=Path(self.weights_dir) if self.weights_dir else None)

    @property
    def size(self) -> str:
        return QUICK_SIZE if self.quick else OFFICIAL_SIZE

    def repeats_for(self, config: BenchConfig) -> int:
        if self.repeats is not None:
            return self.repeats
        if self.quick:
            return 1
        return SLOW_REPEATS if config.options.get("kv_cache") is False else FAST_REPEATS
