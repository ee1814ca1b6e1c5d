"""The embedded model's main job, timed: a paragraph spoken at the model set's defaults, beside the defaults it had
before they were its own (``tortoise-lab bench --embedded``).

* **defaults**: what ``tortoise-lab speak`` does on a machine without the official weights: the embedded set's own
  sample budget (``model_set.EMBEDDED_PRESETS``), one sentence a chunk, the duration check with its redraws.
* **previous defaults**: the same set with the official presets (96 samples for ``fast``), upstream's chunk
  lengths (200/300 characters) and no duration check: what the embedded model did before.

Both run in this one process on the same text, voice and seed, alternating (previous, defaults, previous, ...) after
an untimed warm-up of each, so that a busy machine slows both alike; the ratio of their medians is the result.
Each run is a ``TextToSpeech.stream`` consumed whole: its audio is ``tts``'s exactly, and it also says when the
first chunk's audio was ready (the time to first audio a player fed by the stream would have).
The real-time factor is synthesis time (text in, audio out, models already loaded) over the audio's duration; the
load time is reported apart. The speech is compared with espeak-ng's reading of the same text (when espeak-ng is
installed): the share of it the model spoke.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from tortoise_lab.files import write_json, write_text

__all__ = ["EMBEDDED_TEXT", "run_embedded_benchmark", "embedded_table", "plot_spectrograms"]

# The paragraph the issue that made the embedded defaults measured: twelve plain sentences.
EMBEDDED_TEXT = " ".join(f"This is a fairly ordinary sentence number {word}." for word in
                         "one two three four five six seven eight nine ten eleven twelve".split())
ESPEAK_SPEAKER = ["-v", "en-us+m3", "-s", "160", "-p", "40"]  # the speaker espeak_us_m3's clips were made with
CONFIGURATIONS = ("previous defaults", "defaults")


def _model_sets(device: str | None):
    from tortoise_lab.model_set import embedded_models

    clock = time.perf_counter()
    current = embedded_models(device=device)
    load_s = time.perf_counter() - clock
    previous = embedded_models(device=device)
    previous.presets, previous.chunk_lengths, previous.speech_rate = {}, None, None
    return {"previous defaults": previous, "defaults": current}, load_s


def _espeak_reading(text: str):
    """espeak-ng's reading of ``text`` by the default voice's speaker, (1, N) at 24 kHz; None without espeak-ng."""
    import shutil

    from tortoise_lab.audio import load_audio
    from tortoise_lab.config import OUTPUT_SAMPLE_RATE
    from tortoise_lab.text import clean_text

    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "espeak.wav"
        subprocess.run(["espeak-ng", *ESPEAK_SPEAKER, "-w", str(path), clean_text(text)], check=True,
                       capture_output=True)
        return load_audio(path, OUTPUT_SAMPLE_RATE)


def plot_spectrograms(wavs: dict, path: str | Path) -> Path:
    """One log-mel spectrogram per (title -> (1, N) 24 kHz audio), stacked on one time axis: ``paragraph.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tortoise_lab.audio import HOP_LENGTH, univnet_mel
    from tortoise_lab.config import OUTPUT_SAMPLE_RATE

    longest = max(wav.shape[-1] for wav in wavs.values()) / OUTPUT_SAMPLE_RATE
    figure, axes = plt.subplots(len(wavs), 1, figsize=(14, 2.2 * len(wavs)), sharex=True, squeeze=False)
    for axis, (title, wav) in zip(axes[:, 0], wavs.items()):
        mel = univnet_mel(wav.float())
        seconds = mel.shape[-1] * HOP_LENGTH / OUTPUT_SAMPLE_RATE
        axis.imshow(mel.numpy(), origin="lower", aspect="auto", extent=(0, seconds, 0, mel.shape[0]), cmap="magma")
        axis.set_title(f"{title}: {wav.shape[-1] / OUTPUT_SAMPLE_RATE:.1f} s", fontsize=10, loc="left")
        axis.set_ylabel("mel band")
        axis.set_xlim(0, longest)
    axes[-1, 0].set_xlabel("seconds")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def run_embedded_benchmark(text: str = EMBEDDED_TEXT, preset: str = "fast", repeats: int = 3, seed: int = 3,
                           device: str | None = None, out_dir: str | Path | None = None,
                           json_path: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Time both configurations (see the module docstring); returns the record also written to ``out_dir``
    (bench-embedded.json, bench-embedded.md, each configuration's WAV, and paragraph.png: the log-mel
    spectrograms of espeak-ng's reading and of both configurations') and ``json_path``."""
    from tortoise_lab.config import OUTPUT_SAMPLE_RATE
    from tortoise_lab.model_set import EMBEDDED_DEFAULT_VOICE
    from tortoise_lab.outputs import save_speech
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.stages.pacing import speech_seconds
    from tortoise_lab.voices import load_voice

    if repeats < 1:
        raise ValueError("--repeats must be at least 1.")
    sets, load_s = _model_sets(device)
    voice = load_voice(EMBEDDED_DEFAULT_VOICE)
    voices = {name: TextToSpeech(models, progress=False) for name, models in sets.items()}
    runs: dict[str, list] = {name: [] for name in CONFIGURATIONS}
    def speak(name: str):
        stream = voices[name].stream(text, voice=voice, preset=preset, seed=seed)
        for _ in stream:  # a player would take each sentence here
            pass
        return stream.result

    for name in CONFIGURATIONS:  # warm-up: first calls allocate, and fill the voice's latent cache
        speak(name)
    for repeat in range(repeats):
        for name in CONFIGURATIONS:
            clock = time.perf_counter()
            speech = speak(name)
            runs[name].append((time.perf_counter() - clock, speech))
            log(f"{name}, run {repeat + 1} of {repeats}: {runs[name][-1][0]:.2f} s for {speech.duration:.2f} s")
    espeak = _espeak_reading(text)
    espeak_s = None if espeak is None else speech_seconds(espeak, OUTPUT_SAMPLE_RATE)
    record = {"text": text, "voice": EMBEDDED_DEFAULT_VOICE, "preset": preset, "seed": seed, "repeats": repeats,
              "device": str(sets["defaults"].device), "load_s": round(load_s, 3), "espeak_speech_s": espeak_s,
              "configurations": {}}
    for name, taken in runs.items():
        speech = taken[-1][1]
        median = statistics.median(seconds for seconds, _ in taken)
        spoken = speech_seconds(speech.wav, OUTPUT_SAMPLE_RATE)
        stages = {stage: round(statistics.median(s.timings.get(stage, 0.0) for _, s in taken), 3)
                  for stage in speech.timings if stage not in ("total", "first_audio")}
        record["configurations"][name] = {
            "median_s": round(median, 3), "times_s": [round(seconds, 3) for seconds, _ in taken],
            "first_audio_s": round(statistics.median(s.timings["first_audio"] for _, s in taken), 3),
            "audio_s": round(speech.duration, 3), "rtf": round(median / speech.duration, 3),
            "speech_s": round(spoken, 3), "share_of_espeak": round(spoken / espeak_s, 3) if espeak_s else None,
            "chunks": len(speech.chunks), "samples": speech.settings["num_autoregressive_samples"],
            "stages_s": stages, "notes": speech.notes,
        }
        if out_dir is not None:
            save_speech(Path(out_dir) / f"{name.replace(' ', '_')}.wav", speech, sets[name].device,
                        ["tortoise-lab", "bench", "--embedded"], False)
    before, after = (record["configurations"][name]["median_s"] for name in CONFIGURATIONS)
    record["speedup"] = round(before / after, 2)
    if out_dir is not None:
        write_json(Path(out_dir) / "bench-embedded.json", record)
        write_text(Path(out_dir) / "bench-embedded.md", embedded_table(record))
        heard = {} if espeak is None else {"espeak-ng": espeak}
        heard.update((name, taken[-1][1].wav) for name, taken in runs.items())
        plot_spectrograms(heard, Path(out_dir) / "paragraph.png")
    if json_path is not None:
        write_json(json_path, record)
    log(embedded_table(record))
    return record


def embedded_table(record: dict) -> str:
    """The two configurations as a markdown table, and the speed-up."""
    lines = ["| configuration | samples | chunks | median s | first audio s | audio s | RTF | speech / espeak-ng | "
             "stages (median s) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, c in record["configurations"].items():
        share = "–" if c["share_of_espeak"] is None else f"{c['share_of_espeak']:.2f}"
        stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in c["stages_s"].items())
        lines.append(f"| {name} | {c['samples']} | {c['chunks']} | {c['median_s']:.2f} | {c['first_audio_s']:.2f} | "
                     f"{c['audio_s']:.2f} | "
                     f"{c['rtf']:.2f} | {share} | {stages} |")
    lines.append(f"\nDefaults are {record['speedup']:.2f}× as fast as the previous defaults "
                 f"({record['repeats']} alternating runs each, {record['device']}; loading the model: "
                 f"{record['load_s']:.2f} s).")
    return "\n".join(lines) + "\n"
