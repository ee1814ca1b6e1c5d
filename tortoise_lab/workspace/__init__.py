"""What the notebooks call: which model to use, the environment at a glance, and small runs that return tables.

Every notebook has one parameters cell and, right after it, ``TEST_MODE = test_mode()``: with
``TORTOISE_LAB_TEST_MODE=1`` (CI) it shrinks the work and uses the embedded model, which speaks. Outside test
mode ``choose_models()`` takes the official weights when they are present and the embedded model when they are
not, and says which; every result records the model it came from (``Speech.model``).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from html import escape
from importlib import metadata
from pathlib import Path

import torch

from tortoise_lab import assets
from tortoise_lab.config import preset_settings
from tortoise_lab.model_set import (ALWAYS_NEEDED, EMBEDDED_DEFAULT_VOICE, EMBEDDED_DESCRIPTION, ModelChoice,
                                    embedded_available, missing_weights, resolve_models)
from tortoise_lab.pipeline import Speech, TextToSpeech

__all__ = ["TEST_MODE_VARIABLE", "test_mode", "NotebookModels", "choose_models", "environment_report",
           "markdown_table", "audio_player", "preset_tour", "preset_rows", "PRESET_HEADERS", "option_sweep",
           "sweep_rows", "SWEEP_HEADERS", "EMBEDDED_VOICE", "OFFICIAL_VOICE", "audio_checks", "players",
           "plot_spectrograms", "BeforeAfter", "before_and_after", "choose_diffusion_models", "sampler_sweep",
           "sampler_rows", "SAMPLER_HEADERS", "read_aloud", "chunk_rows", "CHUNK_HEADERS"]

TEST_MODE_VARIABLE = "TORTOISE_LAB_TEST_MODE"
EMBEDDED_VOICE = EMBEDDED_DEFAULT_VOICE  # the voice the embedded model speaks in when none is given
OFFICIAL_VOICE = "tom"  # a built-in voice of the official release
PACKAGES = ("torch", "torchaudio", "transformers", "deepspeed", "safetensors", "huggingface_hub", "soundfile",
            "ipywidgets", "jupyterlab", "nbval")


def test_mode() -> bool:
    """Whether ``TORTOISE_LAB_TEST_MODE`` asks for the short CI run ("1", "true", "yes")."""
    return os.environ.get(TEST_MODE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


@dataclass
class NotebookModels(ModelChoice):
    """``model_set.ModelChoice`` for a notebook: the official model speaks in a built-in voice by default."""

    @property
    def default_voice(self) -> str:
        return OFFICIAL_VOICE if self.name == "official" else EMBEDDED_DEFAULT_VOICE

    def tts(self, progress: bool = True) -> TextToSpeech:
        return TextToSpeech(self.models, progress=progress)


def choose_models(test_mode: bool = False, models_dir: str | None = None, device: str | None = None,
                  size: str = "tortoise-v2") -> NotebookModels:
    """Test mode: the embedded model. Otherwise ``model_set.resolve_models("auto")``: the official weights when all
    are present, else the embedded model, with a message that says how to get the official ones. (``size``: files
    in the official format at another size, for tests.) ``device``: None or "auto" is the best one present
    (``device.choose_device``)."""
    chosen = resolve_models("embedded" if test_mode else "auto", models_dir, device, size=size)
    message = f"Test mode ({TEST_MODE_VARIABLE}=1): using {EMBEDDED_DESCRIPTION}." if test_mode else chosen.message
    return NotebookModels(chosen.name, chosen.models, message)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_report(models_dir: str | None = None) -> list[tuple[str, str]]:
    """(what, state) rows: Python and package versions, devices, assets, weights and the embedded model."""
    from tortoise_lab.device import choose_device

    rows = [("python", platform.python_version()), ("platform", platform.platform(terse=True))]
    rows += [(package, _version(package)) for package in PACKAGES]
    rows.append(("cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"))
    rows.append(("device chosen by --device auto", str(choose_device("auto"))))
    rows.append(("device an unset choice means", str(choose_device(None))))
    rows.append(("torch threads", str(torch.get_num_threads())))
    try:
        tokenizer = assets.data_file("tokenizer.json", fetch=False)
        rows.append(("official assets", f"present in {assets.assets_dir()}" if tokenizer.parent == assets.assets_dir()
                     else f"tokenizer and mel norms from the package ({tokenizer.parent}); built-in voices: run "
                          "`tortoise-lab assets`"))
    except FileNotFoundError:
        rows.append(("official assets", "missing: run `tortoise-lab assets`"))
    missing = missing_weights(models_dir)
    rows.append(("official weights", "present" if not missing else
                 f"missing {len(missing)} of {len(ALWAYS_NEEDED)}: run `tortoise-lab download`"))
    rows.append(("embedded model", "present" if embedded_available() else "missing"))
    return rows


def markdown_table(rows: list[tuple] | list[list], headers: tuple[str, ...]) -> str:
    """A GitHub-style table; notebooks show it with ``IPython.display.Markdown`` (and print it, for nbval)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def audio_player(speech_or_wav: Speech | torch.Tensor, sample_rate: int | None = None):
    """An inline player (``IPython.display.Audio``, at the level it was made: not normalised) for a ``Speech``, a
    (1, N) or (N,) waveform, or (C, N) channels (a raw stereo recording plays in stereo)."""
    from IPython.display import Audio

    if isinstance(speech_or_wav, Speech):
        wav, sample_rate = speech_or_wav.wav, speech_or_wav.sample_rate
    else:
        wav = speech_or_wav
    samples = wav if wav.dim() == 2 and wav.shape[0] > 1 else wav.reshape(-1)
    return Audio(samples.float().numpy(), rate=sample_rate, normalize=False)


def preset_tour(tts: TextToSpeech, text: str, voice, presets: tuple[str, ...], seed: int, sample_divisor: int = 1,
                **overrides) -> dict[str, Speech]:
    """The same text, voice and seed through each preset. ``sample_divisor`` > 1 draws that many times fewer AR
    samples than each preset (at least one), keeping their proportions: test mode's way of staying short."""
    results = {}
    for preset in presets:
        samples = max(1, preset_settings(preset)["num_autoregressive_samples"] // sample_divisor)
        results[preset] = tts.tts(text, voice=voice, preset=preset, seed=seed,
                                  **{"num_autoregressive_samples": samples, **overrides})
    return results


def preset_rows(results: dict[str, Speech]) -> list[tuple]:
    """(preset, AR samples, diffusion steps, sampler, seconds of audio, seconds taken, real-time factor) per run."""
    rows = []
    for preset, speech in results.items():
        settings = speech.settings
        total = speech.timings.get("total", 0.0)
        rows.append((preset, settings["num_autoregressive_samples"], settings["diffusion_iterations"],
                     settings["sampler"], f"{speech.duration:.2f}", f"{total:.2f}",
                     f"{total / speech.duration:.2f}" if speech.duration else "–"))
    return rows


PRESET_HEADERS = ("preset", "AR samples", "diffusion steps", "sampler", "audio s", "took s", "RTF")


def option_sweep(tts: TextToSpeech, text: str, voice, configs: tuple[str, ...], preset: str, seed: int,
                 **overrides) -> tuple[list[dict], dict[str, Speech]]:
    """Each benchmark configuration (``bench.CONFIGS``: baseline, kv_cache, half, ...) in this process, on the same
    text, voice and seed; records in the benchmark's format (for ``bench.markdown_table`` and ``bench.plot_records``)
    with the codes and the audio compared to the first configuration's (``compare.compare_waveforms``).

    A compiled configuration runs once untimed first (that run compiles), as the benchmark does."""
    from tortoise_lab.tools.bench import CONFIGS
    from tortoise_lab.tools.compare import compare_waveforms

    unknown = [name for name in configs if name not in CONFIGS]
    if unknown:
        raise ValueError(f"Unknown configuration {unknown[0]!r}. Available: {', '.join(CONFIGS)}.")
    records, speeches = [], {}
    for name in configs:
        config = CONFIGS[name]
        settings = {**overrides, **config.options}
        if settings.get("compile"):
            tts.tts(text, voice=voice, preset=config.preset or preset, seed=seed, **settings)
        speech = tts.tts(text, voice=voice, preset=config.preset or preset, seed=seed, **settings)
        speeches[name] = speech
        record = {"impl": "tortoise_lab", "config": name, "description": config.description,
                  "median_s": speech.timings["total"], "stages_s": dict(speech.timings), "peak_mb": None,
                  "rtf": speech.timings["total"] / speech.duration if speech.duration else None,
                  "notes": list(speech.notes), "model": speech.model}
        if records:
            first = speeches[configs[0]]
            record["codes_equal_to_baseline"] = (len(first.codes) == len(speech.codes) and all(
                torch.equal(a, b) for a, b in zip(first.codes, speech.codes)))
            record["vs_baseline"] = compare_waveforms(first.wav, speech.wav).to_dict()
        else:
            record["codes_equal_to_baseline"] = True
        records.append(record)
    return records, speeches


SWEEP_HEADERS = ("config", "took s", "AR s", "codes = baseline", "MCD dB", "SNR dB", "notes")


def sweep_rows(records: list[dict]) -> list[tuple]:
    """``option_sweep`` records as table rows (``SWEEP_HEADERS``)."""
    def number(value, digits=2):
        return value if isinstance(value, str) else "–" if value is None else f"{value:.{digits}f}"

    rows = []
    for r in records:
        versus = r.get("vs_baseline") or {}
        rows.append((r["config"], number(r["median_s"]), number(r["stages_s"].get("autoregressive")),
                     "yes" if r["codes_equal_to_baseline"] else "no", number(versus.get("mcd_db")),
                     number(versus.get("snr_db"), 1), "; ".join(r["notes"]) or "–"))
    return rows


# What the notebooks' checked cells assert about the audio they made, so that nbval fails when synthesis breaks
# (a silent vocoder, a truncated take, noise) and not only when a printed shape changes.
AUDIBLE_DBFS = -45.0  # speech RMS above this (prepared voices sit near -25 dBFS; digital silence is -inf)
SPEECH_BAND_HZ = (80.0, 4_000.0)  # where voiced speech has most of its energy
SPEECH_BAND_SHARE = 0.6  # speech puts more than this share of its energy there; white noise to 12 kHz about 0.33
CHARACTERS_PER_SECOND = (4.0, 40.0)  # any speaker reads between these rates (espeak-ng's default: about 14)
PAUSES_S = 2.0  # silence a take may add before and after the words (a short text is mostly pause)


def audio_checks(speech_or_wav: Speech | torch.Tensor, text: str | None = None,
                 sample_rate: int | None = None) -> dict[str, bool]:
    """{"audible", "speech band", "duration fits the text"}: whether a result sounds like speech at all: loud
    enough, its energy where speech has it, and as long as the text needs (checked only with ``text``)."""
    if isinstance(speech_or_wav, Speech):
        wav, sample_rate, text = speech_or_wav.wav, speech_or_wav.sample_rate, text or speech_or_wav.text
    else:
        wav = speech_or_wav
    wav = wav.reshape(-1).float()
    rms_db = 20 * torch.log10(wav.pow(2).mean().sqrt().clamp_min(1e-10))
    power = torch.fft.rfft(wav).abs().pow(2)
    freqs = torch.fft.rfftfreq(wav.numel(), 1 / sample_rate)
    band = (freqs >= SPEECH_BAND_HZ[0]) & (freqs <= SPEECH_BAND_HZ[1])
    share = float(power[band].sum() / power.sum().clamp_min(1e-20))
    checks = {"audible": bool(rms_db > AUDIBLE_DBFS), "speech band": share > SPEECH_BAND_SHARE}
    if text is not None:
        seconds, characters = wav.numel() / sample_rate, len(text.strip())
        slow, fast = CHARACTERS_PER_SECOND
        checks["duration fits the text"] = characters / fast <= seconds <= characters / slow + PAUSES_S
    return checks

# ------------------------------------------------------------------------------------------------ listening
# Players and spectrograms for audio a reader compares. A player is plain HTML (``IPython.display.Audio``), not a
# widget, so a saved notebook keeps it. An item is (label, Speech) or (label, waveform, sample rate).


def _labelled(item: tuple) -> tuple[str, torch.Tensor, int]:
    label, audio, *rate = item
    if isinstance(audio, Speech):
        return str(label), audio.wav, audio.sample_rate
    if len(rate) != 1:
        raise ValueError(f"{label!r}: a waveform needs its sample rate, as (label, wav, sample_rate).")
    return str(label), audio, int(rate[0])


def players(items: list[tuple], columns: int | None = None):
    """One ``IPython.display.HTML``: a labelled player for each item, ``columns`` to a row (default: all in one
    row, side by side)."""
    from IPython.display import HTML

    entries = [_labelled(item) for item in items]
    columns = columns or max(1, len(entries))
    cells = [f"<td style='text-align:left; vertical-align:top'><b>{escape(label)}</b><br>"
             f"{audio_player(wav, rate)._repr_html_()}</td>" for label, wav, rate in entries]
    rows = ["<tr>" + "".join(cells[i:i + columns]) + "</tr>" for i in range(0, len(cells), columns)]
    return HTML("<table>" + "".join(rows) + "</table>")


def plot_spectrograms(items: list[tuple], columns: int | None = None, panel_size: tuple[float, float] = (5.0, 2.6)):
    """The log-mel spectrogram (``compare.plot_spectrogram``) of each item, titled with its label, ``columns`` to a
    row (default: all side by side), on one time axis and one colour scale (so a noise floor that one lacks shows);
    (C, N) channels are mixed to mono. Returns the figure."""
    import matplotlib.pyplot as plt

    from tortoise_lab.tools.compare import plot_spectrogram

    entries = [_labelled(item) for item in items]
    columns = columns or max(1, len(entries))
    rows = -(-len(entries) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(panel_size[0] * columns, panel_size[1] * rows),
                                sharex=True, squeeze=False, constrained_layout=True)
    for axis, (label, wav, rate) in zip(axes.flat, entries):
        plot_spectrogram(wav.float().mean(0) if wav.dim() == 2 else wav, rate, title=label, axis=axis)
        axis.label_outer()  # axis labels on the outer panels only
    for axis in axes.flat[len(entries):]:
        axis.set_axis_off()
    images = [image for axis in axes.flat[:len(entries)] for image in axis.get_images()]
    low, high = min(image.get_array().min() for image in images), max(image.get_array().max() for image in images)
    for image in images:
        image.set_clim(low, high)  # the colour bars follow
    return figure


@dataclass
class BeforeAfter:
    """A prepared clip beside the raw samples it was cut from."""

    source: str  # the raw recording's file name
    clip: str  # the prepared clip's file name in the voice folder
    raw: torch.Tensor  # (C, N) the recording over the clip's span, every channel, at its own rate
    raw_rate: int
    prepared: torch.Tensor  # (1, M) the clip as written (mono, denoised, levelled, faded)
    prepared_rate: int


def before_and_after(report, clips_per_source: int = 1) -> list[BeforeAfter]:
    """What voice preparation did, to hear and to see: for each kept recording of a ``PrepReport``, its first
    ``clips_per_source`` clips, each beside the same span of the raw recording (the clip's start and end in the
    source), read from the files."""
    from tortoise_lab.audio import read_audio

    pairs = []
    for source in (s for s in report.sources if s.kept):
        channels, rate = read_audio(source.source)  # (C, N)
        for clip in source.clips[:clips_per_source]:
            prepared, prepared_rate = read_audio(Path(report.voice_dir) / clip.file)  # (1, M)
            span = channels[:, round(clip.start_s * rate):round(clip.end_s * rate)]
            pairs.append(BeforeAfter(Path(source.source).name, clip.file, span, rate, prepared, prepared_rate))
    return pairs


def choose_diffusion_models(test_mode: bool = False, models_dir: str | None = None, device: str | None = None,
                            size: str = "tortoise-v2") -> NotebookModels:
    """A model set that decodes by diffusion, for showing samplers and steps (the embedded model decodes with its
    code decoder, so there the sampler changes nothing). Outside test mode the official weights when present;
    otherwise (and in test mode) random tiny weights: every stage runs, the audio is noise. (``size``: files in
    the official format at another size, for tests.)"""
    choice = "official" if not test_mode and not missing_weights(models_dir) else "tiny"
    chosen = resolve_models(choice, models_dir, device, size=size)
    return NotebookModels(chosen.name, chosen.models, chosen.message)


def sampler_sweep(tts: TextToSpeech, text: str, voice, samplers: tuple[str, ...], steps: tuple[int, ...],
                  seed: int, preset: str = "ultra_fast", **overrides) -> dict[tuple[str, int], Speech]:
    """The same text, voice and seed decoded by each diffusion sampler (``config.SAMPLERS``) at each step count.
    The seed's draws come in a fixed order, autoregressive first, so every run ranks and decodes the same codes:
    only the diffusion differs."""
    return {(sampler, count): tts.tts(text, voice=voice, preset=preset, seed=seed,
                                      **{**overrides, "sampler": sampler, "diffusion_iterations": count})
            for sampler in samplers for count in steps}


SAMPLER_HEADERS = ("sampler", "steps", "diffusion s", "took s", "audio s")
DECODE_STAGE = "diffusion_and_vocoder"  # stages/decode.py's timing name for diffusion (or code book) + vocoder


def sampler_rows(results: dict[tuple[str, int], Speech]) -> list[tuple]:
    """``sampler_sweep`` results as table rows (``SAMPLER_HEADERS``)."""
    return [(sampler, count, f"{speech.timings.get(DECODE_STAGE, 0.0):.2f}", f"{speech.timings['total']:.2f}",
             f"{speech.duration:.2f}") for (sampler, count), speech in results.items()]


def read_aloud(tts: TextToSpeech, text: str, voice: str, output_dir: str | Path, seed: int, name: str = "story",
              preset: str = "ultra_fast", **overrides):
    """``tortoise-lab read`` from Python on a string: writes it to ``output_dir/<name>.txt``, cuts it into the chunks
    the model takes (``reading.read_chunks``) and reads them in ``voice`` (``reading.read_voice``) into
    ``output_dir/<name>/<voice>/``: one WAV and sidecar per chunk, ``manifest.json`` and ``combined.wav``. Run
    again, finished chunks are kept. Returns the ``ReadResult`` and the notes on how the text was cut."""
    from tortoise_lab.config import Settings
    from tortoise_lab.files import write_text
    from tortoise_lab.reading import check_chunks, read_chunks, read_voice

    text_file = Path(output_dir) / f"{name}.txt"
    write_text(text_file, text)
    settings = Settings.from_preset(preset, device=str(tts.device), **overrides)
    chunks, notes = read_chunks(tts, text, settings)
    check_chunks(tts, chunks, settings)
    result = read_voice(tts, text_file, chunks, voice, settings, output_dir, seed=seed, fallback_seed=seed,
                        command=["workspace.read_aloud", str(text_file), "-v", voice])
    return result, notes


CHUNK_HEADERS = ("chunk", "seed", "audio s", "text")


def chunk_rows(result) -> list[tuple]:
    """A ``read`` run's chunks (from its ``manifest.json``) as table rows (``CHUNK_HEADERS``)."""
    import soundfile

    from tortoise_lab.files import read_json
    from tortoise_lab.reading import MANIFEST_NAME

    manifest = read_json(result.folder / MANIFEST_NAME)
    return [(entry["index"], entry["seed"], f"{soundfile.info(str(result.folder / entry['wav'])).duration:.2f}",
             entry["text"]) for entry in manifest["chunks"]]
