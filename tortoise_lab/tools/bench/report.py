"""The benchmark's reports: a markdown table, a chart, and the JSON records."""

from __future__ import annotations

import json
from pathlib import Path

from tortoise_lab.tools.bench.configs import STAGE_LABELS, STAGES, BenchOptions

__all__ = ["markdown_table", "plot_records", "plot_pieces", "write_reports"]


# ------------------------------------------------------------------------------------------------- reports


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}{suffix}"


def _yes_no(value) -> str:
    return "–" if value is None else ("yes" if value else "no")


def markdown_table(records: list[dict]) -> str:
    """One row per record: speed, ratios to upstream, stages, memory, throughput, and what the option costs."""
    head = (["config", "impl", "median s", "first audio s", "× vs ref kv-off", "× vs ref kv-on", "× vs ref same",
             "1st audio × vs ref stream"] + [STAGE_LABELS[s] for s in STAGES]
            + ["peak MB", "AR tok/s", "RTF", "codes = baseline", "codes = ref", "MCD dB", "SNR dB", "notes"])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        if "error" in r:
            rows.append(f"| {r['config']} | {r['impl']} | failed |" + " |" * (len(head) - 4) + f" {r['error'][:200]} |")
            continue
        versus = r.get("vs_baseline") or {}
        cells = [r["config"], r["impl"], _fmt(r["median_s"]), _fmt(r.get("first_audio_s")),
                 _fmt(r.get("speedup_vs_reference_kv_off"), 1, "×"), _fmt(r.get("speedup_vs_reference_kv_on"), 1, "×"),
                 _fmt(r.get("speedup_vs_reference"), 2, "×"),
                 _fmt(r.get("first_audio_speedup_vs_reference_stream"), 1, "×")]
        cells += [_fmt(r["stages_s"].get(stage)) for stage in STAGES]
        cells += [_fmt(r["peak_mb"], 0), _fmt(r.get("ar_tokens_per_s"), 0), _fmt(r.get("rtf")),
                  _yes_no(r.get("codes_equal_to_baseline")), _yes_no(r.get("codes_equal_to_reference")),
                  _fmt(versus.get("mcd_db")), _fmt(versus.get("snr_db"), 1),
                  "; ".join(r.get("notes", [])).replace("|", "/")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_pieces(records: list[dict], path: str | Path | None = None):
    """The streams' pieces: HiFiGAN seconds per piece against its index (flat: each piece decodes only its own
    latents; growing: every latent so far is decoded again), and audio made against wall-clock time (above the
    diagonal, a player fed as pieces come never waits after the first). Saved to ``path`` if given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    streams = [r for r in records if "error" not in r and r.get("pieces")]
    figure, (work, timeline) = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    longest = 0.0
    for r in streams:
        label = f"{r['impl']}: {r['config']}"
        seconds = [piece["decode_s"] for piece in r["pieces"]]
        work.plot(range(1, len(seconds) + 1), seconds, marker="o", label=label)
        ready = [0.0] + [piece["ready_s"] for piece in r["pieces"]]
        made = [0.0]
        for piece in r["pieces"]:
            made.append(made[-1] + piece["samples"] / 24_000)
        timeline.step(ready, made, where="post", label=label)
        longest = max(longest, ready[-1], made[-1])
    timeline.plot([0, longest], [0, longest], color="grey", linestyle=":", label="real time")
    work.set(xlabel="piece", ylabel="HiFiGAN seconds for the piece", title="work per piece", ylim=(0, None))
    timeline.set(xlabel="seconds since the call", ylabel="seconds of audio handed out", title="audio made over time")
    for axis in (work, timeline):
        axis.legend(fontsize=8)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return figure


def plot_records(records: list[dict], path: str | Path | None = None,
                 title: str = "tortoise_lab vs upstream tortoise-tts, by stage"):
    """Median seconds per configuration as horizontal bars, stacked by stage; saved to ``path`` if given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    done = [r for r in records if "error" not in r]
    figure, axis = plt.subplots(figsize=(10, 1.2 + 0.45 * len(done)), constrained_layout=True)
    labels = [f"{r['impl']}: {r['config']}" for r in done]
    left = [0.0] * len(done)
    for stage in STAGES + ("other",):
        if stage == "other":  # what the stage medians leave of the total median (fix-up, bookkeeping)
            widths = [max(0.0, r["median_s"] - sum(r["stages_s"].get(s, 0.0) for s in STAGES)) for r in done]
        else:
            widths = [r["stages_s"].get(stage, 0.0) for r in done]
        axis.barh(labels, widths, left=left, label=STAGE_LABELS.get(stage, stage))
        left = [a + b for a, b in zip(left, widths)]
    for y, r in enumerate(done):
        axis.text(left[y], y, f" {r['median_s']:.1f} s", va="center", fontsize=8)
    axis.set_xlim(0, 1.15 * max(left, default=1.0))  # room for the totals written after the bars
    axis.invert_yaxis()
    axis.set(xlabel="median seconds per synthesis", title=title)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 if len(done) < 4 else -0.12), ncol=len(STAGES) + 1,
                fontsize=8, frameon=False)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return figure


def _header(records: list[dict], options: BenchOptions) -> str:
    first = next((r for r in records if "error" not in r), {})
    return (f"Size {options.size}, preset {options.preset}, {first.get('num_autoregressive_samples', '?')} AR samples "
            f"x {options.max_mel_tokens} tokens (batch {first.get('batch_size', '?')}), seed {options.seed}, device "
            f"{first.get('device', '?')}; medians over the repeats; text: \"{options.text}\".\n\n")


def write_reports(records: list[dict], options: BenchOptions, say=print) -> None:
    json_path = options.json_path or (options.out_dir / "bench.json" if options.out_dir else None)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(records, indent=1) + "\n")
        say(f"records: {json_path}")
    table = markdown_table(records)
    if options.out_dir is not None:
        (options.out_dir / "bench.md").write_text(_header(records, options) + table)
        plot_records(records, options.out_dir / "bench.png")
        if any(r.get("pieces") for r in records if "error" not in r):
            plot_pieces(records, options.out_dir / "pieces.png")
        say(f"table, chart and WAVs: {options.out_dir}")
    say(table)
