"""Named model sizes and the preset table.

Each network's own config dataclass lives beside it (``models/gpt.py``'s ``GPTConfig`` and so on), with the
official sizes under ``"tortoise-v2"`` and a small ``"tiny"`` size for tests. ``MODEL_SIZES`` names the sizes
a whole model set can be built at. Presets are data: upstream's base settings plus what each preset changes.
"""

from __future__ import annotations

MODEL_SIZES = ("tortoise-v2", "tiny")

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
