"""Running the benchmark: the shared random weights, one worker process per configuration (ours or the
reference's), medians, and the comparison of every run's codes and audio with the baselines."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from tortoise_lab.tools.bench.configs import (CONFIGS, DEFAULT_CONFIGS, DEFAULT_SEED, DEFAULT_TEXT, DEFAULT_VOICE,
                                              QUICK_CLIPS, QUICK_SAMPLES, RECORD_PREFIX,
                                              REF_WORKER, REPO, UPSTREAM_TTS_SETTINGS, WEIGHT_FILES,
                                              WEIGHTS_SEED, WEIGHTS_STAMP, BenchOptions)
from tortoise_lab.tools.bench.report import write_reports
from tortoise_lab.tools.bench.weights import weights_complete, weights_folder

__all__ = ["run_benchmark", "ensure_weights", "upstream_model_kwargs", "reference_python", "reference_env",
           "write_clips"]


# ------------------------------------------------------------------------------------------------- weights


def reference_env() -> dict:
    """The environment upstream runs in: this one without the huge pages tortoise_lab turns on for itself
    (``tortoise_lab.HUGE_PAGES_BY_DEFAULT``), so upstream runs as its users run it; a THP_MEM_ALLOC_ENABLE set
    before tortoise_lab was imported is the user's and applies to both."""
    import tortoise_lab

    env = dict(os.environ)
    if tortoise_lab.HUGE_PAGES_BY_DEFAULT:
        env.pop("THP_MEM_ALLOC_ENABLE", None)
    return env


def reference_python() -> Path:
    """The reference environment's python: $TORTOISE_LAB_REF_PYTHON, else the repository's .venv-ref."""
    return Path(os.environ.get("TORTOISE_LAB_REF_PYTHON", REPO / ".venv-ref" / "bin" / "python"))


def upstream_model_kwargs(size: str) -> dict:
    """Upstream's constructor arguments for each network at one of our named sizes."""
    from tortoise_lab.models.clvp import CLVPConfig
    from tortoise_lab.models.diffusion import DiffusionConfig
    from tortoise_lab.models.gpt import GPTConfig
    from tortoise_lab.models.hifigan import HifiganConfig
    from tortoise_lab.models.vocoder import VocoderConfig

    gpt, clvp, vocoder = GPTConfig.from_name(size), CLVPConfig.from_name(size), VocoderConfig.from_name(size)
    hifigan = HifiganConfig.from_name(size)
    return {
        "gpt": dict(layers=gpt.layers, model_dim=gpt.model_dim, heads=gpt.heads, max_mel_tokens=gpt.max_mel_tokens,
                    max_text_tokens=gpt.max_text_tokens, max_conditioning_inputs=gpt.max_conditioning_inputs,
                    number_text_tokens=gpt.number_text_tokens, start_text_token=gpt.start_text_token),
        "diffusion": dataclasses.asdict(DiffusionConfig.from_name(size)),
        # The sequence lengths are api.py's; with use_xformers (as api.py builds CLVP) they size no parameter.
        "clvp": dict(dim_text=clvp.dim_text, dim_speech=clvp.dim_speech, dim_latent=clvp.dim_latent,
                     num_text_tokens=clvp.num_text_tokens, num_speech_tokens=clvp.num_speech_tokens,
                     text_enc_depth=clvp.text_depth, speech_enc_depth=clvp.speech_depth,
                     text_heads=clvp.text_heads, speech_heads=clvp.speech_heads, text_seq_len=350,
                     speech_seq_len=430),
        "vocoder": dict(noise_dim=vocoder.noise_dim, channel_size=vocoder.channel_size,
                        dilations=list(vocoder.dilations), strides=list(vocoder.strides),
                        lReLU_slope=vocoder.leaky_relu_slope, kpnet_conv_size=vocoder.kpnet_conv_size,
                        hop_length=vocoder.hop_length, n_mel_channels=vocoder.n_mel_channels),
        # api_fast's HifiganGenerator: it reads the AR model's latents and takes its conditioning latent as speaker.
        "hifigan": dict(in_channels=gpt.model_dim, out_channels=1, resblock_type="1",
                        resblock_dilation_sizes=[list(d) for d in hifigan.resblock_dilations],
                        resblock_kernel_sizes=list(hifigan.resblock_kernel_sizes),
                        upsample_kernel_sizes=list(hifigan.upsample_kernel_sizes),
                        upsample_initial_channel=hifigan.upsample_initial_channel,
                        upsample_factors=list(hifigan.upsample_factors), cond_channels=gpt.model_dim),
    }


def ensure_weights(size: str, weights_dir: Path | None = None, seed: int = WEIGHTS_SEED,
                   log: Callable[[str], None] = print) -> Path:
    """The folder of shared random weights for ``size``, made by the reference environment on first use (or before,
    by ours: ``weights.make_weights``)."""
    folder = weights_folder(size, weights_dir, seed)
    if weights_complete(folder):
        return folder
    python = reference_python()
    if not python.exists():
        raise FileNotFoundError(f"The shared benchmark weights are made by the reference environment, and {python} "
                                "is missing; create it with `bash scripts/setup-reference.sh`.")
    log(f"Making the shared random {size} weights in {folder} (once; the official size takes a few minutes "
        "and about 3 GB)...")
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"weights_dir": str(folder), "seed": seed, "models": upstream_model_kwargs(size)}
    spec_path = folder / "weights-spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    done = subprocess.run([str(python), str(REF_WORKER), "weights", str(spec_path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"Making the benchmark weights failed:\n{done.stderr[-4000:]}")
    (folder / WEIGHTS_STAMP).write_text(json.dumps({"size": size, "seed": seed, "files": list(WEIGHT_FILES),
                                                    "made_by": "benchmarks/ref_bench.py weights"}, indent=1))
    return folder


def write_clips(folder: Path, voice: str = DEFAULT_VOICE, count: int | None = None) -> list[Path]:
    """The voice's clips (the first ``count``, or all) cut to the 6 s conditioning window (longer clips would be
    cropped at random starts, drawn differently by the two sides), written losslessly (float WAV at 22.05 kHz)."""
    from tortoise_lab.audio import CONDITIONING_SAMPLES, INPUT_SAMPLE_RATE, save_audio
    from tortoise_lab.voices import load_voice

    try:
        clips = load_voice(voice).clips
    except ValueError as error:
        raise FileNotFoundError(f"The benchmark speaks as {voice!r}, a built-in voice: {error}") from None
    folder.mkdir(parents=True, exist_ok=True)
    return [save_audio(folder / f"{i}.wav", clip[:, :CONDITIONING_SAMPLES], INPUT_SAMPLE_RATE)
            for i, clip in enumerate(clips[:count])]


# ------------------------------------------------------------------------------------------------- running


def _run_worker(command: list[str], label: str, out_dir: Path | None = None, env: dict | None = None) -> dict:
    """Run one worker process; its record, or {"error": ...} with its last line of output when it failed (the
    whole output goes to ``out_dir/logs/`` when there is an out_dir)."""
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RECORD_PREFIX)]
    if done.returncode != 0 or not lines:
        output = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        where = ""
        if out_dir is not None:
            log = out_dir / "logs" / f"{label.replace('/', '-')}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(done.stdout + "\n" + done.stderr)
            where = f" (whole output: {log})"
        return {"error": f"{label} failed (exit {done.returncode}): {output[-1]}{where}"}
    return json.loads(lines[-1][len(RECORD_PREFIX):])


def _median_record(record: dict, samples: int, tokens: int) -> dict:
    """Add medians (of the totals, the stages and the time to first audio), AR tokens/s and the real-time factor to
    a worker's raw record."""
    times = record["times_s"]
    record["median_s"] = statistics.median(times)
    record["first_audio_s"] = statistics.median(record.get("first_audio_times_s") or times)
    record["stages_s"] = {stage: statistics.median(values) for stage, values in record["stage_times_s"].items()}
    ar = record["stages_s"].get("autoregressive") or 0.0
    record["ar_tokens_per_s"] = samples * tokens / ar if ar > 0 else None
    record["rtf"] = record["median_s"] / record["audio_s"] if record.get("audio_s") else None
    return record


def run_benchmark(quick: bool = False, against_reference: bool = False, max_mel_tokens: int | None = None,
                  preset: str = "ultra_fast", repeats: int | None = None, configs=DEFAULT_CONFIGS,
                  json_path: str | Path | None = None, out_dir: str | Path | None = None, seed: int = DEFAULT_SEED,
                  weights_dir: str | Path | None = None, text: str = DEFAULT_TEXT, device: str | None = None,
                  log: Callable[[str], None] | None = print) -> list[dict]:
    """Run every configuration (ours, then upstream's where asked) and write the reports; returns the records.

    Raises ValueError for a bad option (before anything runs). A configuration that fails is recorded with an
    ``error`` and the others still run.
    """
    options = BenchOptions(quick, against_reference, max_mel_tokens, preset, repeats, tuple(configs), json_path,
                           out_dir, seed, weights_dir, text, device).resolve()
    say = log or (lambda message: None)
    from tortoise_lab.device import choose_device

    device_name = str(choose_device(options.device))
    if against_reference and not reference_python().exists():
        raise FileNotFoundError(f"--against-reference needs the reference environment at {reference_python()}; "
                                "create it with `bash scripts/setup-reference.sh`.")
    weights = ensure_weights(options.size, options.weights_dir, log=say)
    with tempfile.TemporaryDirectory(prefix="tortoise-bench-") as scratch:
        work = Path(scratch)
        wav_dir = (options.out_dir / "wavs") if options.out_dir else work / "wavs"
        clips = write_clips(work / "clips", count=QUICK_CLIPS if options.quick else None)
        records = [_run_ours(name, options, weights, clips, work, wav_dir, device_name, say)
                   for name in options.configs]
        if options.against_reference:
            records += [_run_reference(name, options, weights, clips, work, wav_dir, device_name, say)
                        for name in _reference_configs(options, device_name, say)]
        _compare(records)
    for record in records:
        record.pop("codes", None)
        record.pop("_wav", None)
    write_reports(records, options, say)
    return records


def _reference_configs(options: BenchOptions, device: str, say) -> list[str]:
    names = []
    for name in options.configs:
        config = CONFIGS[name]
        if config.reference is None:
            continue
        if config.cuda_only and not device.startswith("cuda"):
            say(f"reference/{name}: skipped (upstream's half precision and DeepSpeed need CUDA)")
            continue
        names.append(name)
    return names


def _settings_for(name: str, options: BenchOptions):
    """Our Settings for a configuration, and the overrides that give them."""
    from tortoise_lab.config import Settings

    config = CONFIGS[name]
    preset = config.preset or options.preset
    overrides = dict(config.options, max_mel_tokens=options.max_mel_tokens)
    if options.quick and not config.fast:  # the fast path draws one sample whatever the preset says
        overrides["num_autoregressive_samples"] = QUICK_SAMPLES
    settings = Settings.from_preset(preset, **overrides)
    if not config.fast:
        overrides["batch_size"] = settings.batch  # as upstream's default on CPU: all at once, up to 16
    if options.device:
        overrides["device"] = options.device
    return preset, overrides, settings.replace(**overrides)


def _base_record(impl: str, name: str, preset: str, settings, options: BenchOptions, repeats: int) -> dict:
    fast = CONFIGS[name].fast
    return {"impl": impl, "config": name, "preset": preset, "description": CONFIGS[name].description,
            "size": options.size, "repeats": repeats, "seed": options.seed, "text": options.text,
            "max_mel_tokens": settings.max_mel_tokens,
            "num_autoregressive_samples": 1 if fast else settings.num_autoregressive_samples,
            "batch_size": 1 if fast else settings.batch_size,
            "diffusion_iterations": None if fast else settings.diffusion_iterations,
            "sampler": None if fast else settings.sampler if impl == "tortoise_lab" else "ddpm"}


def _run_ours(name, options, weights, clips, work, wav_dir, device, say) -> dict:
    preset, overrides, settings = _settings_for(name, options)
    repeats = options.repeats_for(CONFIGS[name])
    voices = work / "voices" / name / DEFAULT_VOICE  # a fresh copy per config: its latent cache is its own
    voices.mkdir(parents=True)
    for clip in clips:
        shutil.copy2(clip, voices / clip.name)
    wav = wav_dir / f"tortoise_lab-{name}.wav"
    spec = {"config": name, "preset": preset, "overrides": overrides, "size": options.size, "weights_dir": str(weights),
            "voices_dir": str(voices.parent), "voice": DEFAULT_VOICE, "text": options.text, "seed": options.seed,
            "repeats": repeats, "warmup": bool(settings.inference.compile), "wav": str(wav),
            "stream": CONFIGS[name].stream}
    spec_path = work / f"ours-{name}.json"
    spec_path.write_text(json.dumps(spec))
    say(f"tortoise_lab/{name}: {repeats} timed run(s)...")
    raw = _run_worker([sys.executable, "-m", "tortoise_lab.tools.bench", "--worker", str(spec_path)],
                      f"tortoise_lab/{name}", options.out_dir)
    return _finish({**_base_record("tortoise_lab", name, preset, settings, options, repeats), **raw}, settings, wav,
                   options, say)


def _run_reference(name, options, weights, clips, work, wav_dir, device, say) -> dict:
    preset, overrides, settings = _settings_for(name, options)
    repeats = options.repeats_for(CONFIGS[name])
    wav = wav_dir / f"reference-{name}.wav"
    spec = {"config": name, "options": CONFIGS[name].reference, "models": upstream_model_kwargs(options.size),
            "weights_dir": str(weights), "clips": [str(c) for c in clips], "text": options.text, "seed": options.seed,
            "repeats": repeats, "batch_size": settings.batch_size, "device": device, "wav": str(wav),
            "settings": _upstream_settings(name, settings)}
    spec_path = work / f"reference-{name}.json"
    spec_path.write_text(json.dumps(spec))
    say(f"reference/{name}: {repeats} timed run(s)...")
    raw = _run_worker([str(reference_python()), str(REF_WORKER), "run", str(spec_path)], f"reference/{name}",
                      options.out_dir, reference_env())
    return _finish({**_base_record("reference", name, preset, settings, options, repeats), **raw}, settings, wav,
                   options, say)


def _upstream_settings(name: str, settings) -> dict:
    """The keyword arguments upstream's call takes for our settings: tts()'s, or for the fast path api_fast's
    sampling ones plus the number of codes (its tts ignores max_mel_tokens; ``max_generate_length`` sets it)."""
    if not CONFIGS[name].fast:
        return {key: getattr(settings, key) for key in UPSTREAM_TTS_SETTINGS}
    return {"temperature": settings.temperature, "length_penalty": settings.length_penalty,
            "repetition_penalty": settings.repetition_penalty, "top_p": settings.top_p,
            "max_generate_length": settings.max_mel_tokens}


def _finish(record: dict, settings, wav: Path, options: BenchOptions, say) -> dict:
    """Medians and rates of a finished worker's record, and where its WAV is; errors pass through."""
    if "error" in record:
        say(f"  {record['error']}")
        return record
    samples = record["num_autoregressive_samples"]
    record = _median_record(record, samples, settings.max_mel_tokens)
    record["wav"] = str(wav) if options.out_dir else None
    record["_wav"] = str(wav)  # for the comparisons, also when the WAVs are in the scratch folder
    first = f", first audio {record['first_audio_s']:.2f} s" if CONFIGS[record["config"]].stream else ""
    say(f"  median {record['median_s']:.2f} s{first}, peak {record['peak_mb']:.0f} MB")
    return record


def _compare(records: list[dict]) -> None:
    """Codes and audio of every record against its path's baseline (ours without the KV cache for the diffusion
    path, our whole-utterance ``hifigan`` run for the fast path) and against upstream's run of the same
    configuration; speed against upstream's two diffusion paths, its same configuration and its stream."""
    from tortoise_lab.audio import OUTPUT_SAMPLE_RATE, load_audio
    from tortoise_lab.tools.compare import compare_waveforms

    def find(impl, config):
        return next((r for r in records if r["impl"] == impl and r["config"] == config and "error" not in r), None)

    def versus(one, other):
        return compare_waveforms(load_audio(one["_wav"], OUTPUT_SAMPLE_RATE),
                                 load_audio(other["_wav"], OUTPUT_SAMPLE_RATE)).to_dict()

    baselines = {False: find("tortoise_lab", "baseline"), True: find("tortoise_lab", "hifigan")}
    reference_off, reference_on = find("reference", "baseline"), find("reference", "kv_cache")
    reference_stream = find("reference", "stream")
    for record in records:
        for key in ("codes_equal_to_baseline", "vs_baseline", "speedup_vs_reference_kv_off",
                    "speedup_vs_reference_kv_on", "codes_equal_to_reference", "vs_reference", "speedup_vs_reference",
                    "first_audio_speedup_vs_reference_stream"):
            record.setdefault(key, None)
        if "error" in record:
            continue
        fast = CONFIGS[record["config"]].fast
        baseline = baselines[fast]
        if baseline is not None:
            record["codes_equal_to_baseline"] = record["codes"] == baseline["codes"]
            if record is not baseline:
                record["vs_baseline"] = versus(baseline, record)
        if not fast:
            for key, reference in (("speedup_vs_reference_kv_off", reference_off),
                                   ("speedup_vs_reference_kv_on", reference_on)):
                if reference is not None:
                    record[key] = reference["median_s"] / record["median_s"]
        if record["impl"] != "tortoise_lab":
            continue
        twin = find("reference", CONFIGS[record["config"]].measured_against or record["config"])
        if twin is not None:
            record["codes_equal_to_reference"] = record["codes"] == twin["codes"]
            record["vs_reference"] = versus(twin, record)
            record["speedup_vs_reference"] = twin["median_s"] / record["median_s"]
        streamed = twin if twin is not None and CONFIGS[twin["config"]].stream else reference_stream
        if fast and streamed is not None:  # (a stream against its twin, the rest against upstream's plain stream)
            record["first_audio_speedup_vs_reference_stream"] = streamed["first_audio_s"] / record["first_audio_s"]
