"""One configuration of ours, timed in its own process (``python -m tortoise_lab.tools.bench --worker SPEC.json``,
started by ``runner``): load, prepare, warm up if needed, run the timed repeats, print one record."""

from __future__ import annotations

import dataclasses
import gc
import platform
import resource
import time

from tortoise_lab.tools.bench.configs import EXPECTED_NOTES, STAGES

__all__ = ["worker", "peak_mb", "huge_pages_mb"]


def peak_mb() -> float:
    """The process's peak resident memory in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 1024


def huge_pages_mb() -> float | None:
    """MiB of this process's memory on transparent huge pages now (Linux; None elsewhere): whether the
    THP_MEM_ALLOC_ENABLE of ``tortoise_lab/__init__.py`` took effect in this run."""
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            line = next(line for line in rollup if line.startswith("AnonHugePages:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def worker(spec: dict) -> dict:
    """One configuration of ours in this process: load, prepare, warm up if needed, time; the raw record."""
    import torch

    from tortoise_lab.audio import save_audio
    from tortoise_lab.device import choose_device
    from tortoise_lab.config import Settings
    from tortoise_lab.model_set import official_models
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.stages.conditioning import voice_latents
    from tortoise_lab.voices import load_voice

    settings = Settings.from_preset(spec["preset"], **spec["overrides"])
    device = choose_device(settings.inference.device)
    started = time.perf_counter()
    models = official_models(spec["weights_dir"], device, size=spec["size"])
    tts = TextToSpeech(models, progress=False)
    voice = load_voice(spec["voice"], [spec["voices_dir"]])
    load_s = time.perf_counter() - started

    timelines = []  # the stream's pieces per run: when each was ready, what it cost

    def speak():
        if not spec.get("stream"):
            return tts.tts(spec["text"], voice=voice, seed=spec["seed"], settings=settings)
        stream = tts.stream(spec["text"], voice=voice, seed=spec["seed"], settings=settings)
        for _ in stream:  # a player would take each piece here
            pass
        timelines.append([dataclasses.asdict(piece) for piece in stream.timeline])
        return stream.result

    # Once-per-model preparation, outside the timings: the decoder with its options (int8 quantizes a copy here),
    # the int8 CLVP, and, where the configuration uses it, the voice's latent cache (made once per voice).
    started = time.perf_counter()
    decoder, option_notes = tts.prepare(settings)
    notes = list(option_notes)
    if settings.latent_cache:
        voice_latents(tts.models, voice, torch.Generator(), cache=True)
        notes.append("conditioning latents read from the voice's cache (made once before timing)")
    if spec["warmup"]:
        speak()  # torch.compile compiles the decode step on its first call
    prepare_s = time.perf_counter() - started

    timelines.clear()  # (a warm-up run's)
    times, first_audio, stage_times, first = [], [], {stage: [] for stage in STAGES}, None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(spec["repeats"]):
        gc.collect()
        speech = speak()
        first = first or speech
        times.append(speech.timings["total"])
        first_audio.append(speech.timings.get("first_audio", speech.timings["total"]))
        for stage in STAGES:
            stage_times[stage].append(speech.timings.get(stage, 0.0))
    notes += [n for n in first.notes if not any(e in n for e in EXPECTED_NOTES) and n not in notes]
    save_audio(spec["wav"], first.wav, first.sample_rate)
    record = {
        "impl": "tortoise_lab", "device": str(device), "times_s": times, "first_audio_times_s": first_audio,
        "stage_times_s": stage_times, "pieces": timelines[0] if timelines else None,
        "load_s": load_s, "prepare_s": prepare_s, "warmup": spec["warmup"], "audio_s": first.duration,
        "peak_mb": peak_mb(), "huge_pages_mb": huge_pages_mb(), "codes": first.codes[0].reshape(-1).tolist(),
        "used": decoder.used,
        "settings": {k: v for k, v in first.settings.items() if k != "text_split"}, "notes": notes,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    if device.type == "cuda":
        record["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        record["gpu"] = torch.cuda.get_device_name(device)
    return record

