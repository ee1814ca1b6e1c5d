"""How many autoregressive samples the embedded model should draw: quality against samples drawn, measured.

    python -m tortoise_lab.train samples --model-dir tortoise_lab/data/embedded --out-dir runs/samples

For each budget (``--budgets``), every held-out sentence of the set's training recipe (``--sentences`` from the
held-out split and as many from the unseen-word split) is spoken through the pipeline (``TextToSpeech.tts``,
likelihood ranking over the budget's samples) in the set's default voice, and compared with espeak-ng's rendering
of the same sentence by the speaker that voice was made from:

* **distance**: mel-cepstral distortion (``tools.compare``, dB) to the rendering, divided by the **baseline**, the
  rendering's MCD to the next sentence's rendering by the same speaker (lower is better; 1.0 is "as far as another
  sentence");
* **duration ratio**: seconds of speech (``stages.pacing.speech_seconds``) over the rendering's;
* **seconds**: CPU seconds the synthesis of a sentence took (``time.process_time``: on one thread, ``--threads 1``,
  it is the time the sentence takes on a quiet core, and other work on the machine barely changes it).

``chosen`` is the quality knee: the smallest budget whose mean distance is within one standard error of the best
budget's (more samples past it buy time, not quality). Budgets below the knee that measure the same within their
error are equally good, and a preset that must be fast takes the cheapest of them. Writes ``samples.json``, ``samples.md`` and ``samples.png`` into
``--out-dir``; the model set's presets (``model_set.EMBEDDED_PRESETS``) are set from it by hand, with the command in
the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE, resample
from tortoise_lab.files import write_json, write_text
from tortoise_lab.model_set import EMBEDDED_DEFAULT_VOICE, embedded_models
from tortoise_lab.pipeline import TextToSpeech
from tortoise_lab.stages.pacing import speech_seconds
from tortoise_lab.tools.compare import mel_cepstral_distortion
from tortoise_lab.train.corpus import PCM_SCALE, VOICES, synthesize
from tortoise_lab.train.run import TrainConfig, recipe_sentences
from tortoise_lab.voices import load_voice

__all__ = ["measure_budgets", "choose_budget", "main"]

DEFAULT_BUDGETS = (1, 2, 4, 8, 16, 32)
VOICE_SPEAKER = "us-m3"  # the espeak-ng speaker EMBEDDED_DEFAULT_VOICE's clips were made with


def held_out_sentences(model_dir: str | Path, count: int) -> list[str]:
    """``count`` held-out and ``count`` unseen-word sentences of the model set's training recipe."""
    manifest = json.loads((Path(model_dir) / "config.json").read_text())
    config = TrainConfig.from_dict(manifest["train_config"])
    sentences = recipe_sentences(config)
    return sentences.held_out[:count] + sentences.unseen[:count]


def _renderings(texts: list[str]) -> list[torch.Tensor]:
    speaker = next(v for v in VOICES if v.name == VOICE_SPEAKER)
    audio = synthesize([(text, speaker) for text in texts])
    return [resample(torch.from_numpy(a.astype(np.float32) / PCM_SCALE)[None], INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)
            for a in audio]


def measure_budgets(model_dir: str | Path, budgets: tuple[int, ...], count: int, seed: int = 0,
                    progress: bool = True) -> dict:
    """Per budget: per-sentence distance, duration ratio and seconds, and their means (see the module docstring)."""
    texts = held_out_sentences(model_dir, count)
    targets = _renderings(texts)
    baselines = [mel_cepstral_distortion(targets[i], targets[(i + 1) % len(texts)]) for i in range(len(texts))]
    tts = TextToSpeech(embedded_models(model_dir), progress=False)
    voice = load_voice(EMBEDDED_DEFAULT_VOICE)
    results = {}
    for budget in budgets:
        rows = []
        for i, (text, target) in enumerate(zip(texts, targets)):
            clock = time.process_time()
            speech = tts.tts(text, voice=voice, seed=seed + i, num_autoregressive_samples=budget)
            cpu_s = time.process_time() - clock
            rows.append({
                "distance": mel_cepstral_distortion(speech.wav, target) / baselines[i],
                "duration_ratio": speech_seconds(speech.wav, OUTPUT_SAMPLE_RATE)
                / speech_seconds(target, OUTPUT_SAMPLE_RATE),
                "seconds": cpu_s,
            })
        summary = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
        summary["distance_stderr"] = float(np.std([r["distance"] for r in rows], ddof=1) / np.sqrt(len(rows)))
        results[str(budget)] = {"mean": summary, "rows": rows}
        if progress:
            print(f"samples {budget:>3}: distance {summary['distance']:.3f} ± {summary['distance_stderr']:.3f}, "
                  f"duration ratio {summary['duration_ratio']:.2f}, {summary['seconds']:.2f} s a sentence",
                  file=sys.stderr)
    return {"model_dir": str(model_dir), "voice": EMBEDDED_DEFAULT_VOICE, "sentences": len(texts), "seed": seed,
            "budgets": results, "chosen": choose_budget(results)}


def choose_budget(results: dict) -> int:
    """The smallest budget whose mean distance is within one standard error of the best budget's."""
    best = min(results.values(), key=lambda r: r["mean"]["distance"])["mean"]
    good = [int(b) for b, r in results.items() if r["mean"]["distance"] <= best["distance"] + best["distance_stderr"]]
    return min(good)


def _table(record: dict) -> str:
    lines = ["| samples | distance / baseline | ± | duration ratio | CPU s a sentence |", "|---|---|---|---|---|"]
    for budget, result in record["budgets"].items():
        m = result["mean"]
        mark = " (chosen)" if int(budget) == record["chosen"] else ""
        lines.append(f"| {budget}{mark} | {m['distance']:.3f} | {m['distance_stderr']:.3f} | "
                     f"{m['duration_ratio']:.2f} | {m['seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def _plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [int(b) for b in record["budgets"]]
    means = [r["mean"] for r in record["budgets"].values()]
    figure, quality = plt.subplots(figsize=(6, 3.5))
    quality.errorbar(budgets, [m["distance"] for m in means], yerr=[m["distance_stderr"] for m in means],
                     marker="o", color="tab:blue", capsize=3)
    quality.set_xscale("log", base=2)
    quality.set_xticks(budgets, [str(b) for b in budgets])
    quality.set_xlabel("autoregressive samples drawn (best one kept)")
    quality.set_ylabel("MCD / different-sentence baseline", color="tab:blue")
    cost = quality.twinx()
    cost.plot(budgets, [m["seconds"] for m in means], marker="s", color="tab:orange")
    cost.set_ylabel("CPU seconds a sentence", color="tab:orange")
    quality.axvline(record["chosen"], color="grey", linestyle=":")
    quality.set_title(f"Embedded model: quality against samples ({record['sentences']} held-out sentences)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tortoise_lab.train samples", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="tortoise_lab/data/embedded", help="the model set to measure")
    parser.add_argument("--out-dir", required=True, help="where samples.json, samples.md and samples.png go")
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)), help="sample counts to try")
    parser.add_argument("--sentences", type=int, default=20, help="sentences from each held-out split")
    parser.add_argument("--seed", type=int, default=0, help="sentence i is drawn with seed + i at every budget")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is wall time)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    record = measure_budgets(args.model_dir, budgets, args.sentences, args.seed)
    out = Path(args.out_dir)
    write_json(out / "samples.json", record)
    write_text(out / "samples.md", _table(record))
    _plot(record, out / "samples.png")
    print(_table(record), end="")
    print(f"Chosen: {record['chosen']} samples. Written to {out}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
