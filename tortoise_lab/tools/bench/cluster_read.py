"""``read`` on a local Ray cluster beside one process (``tortoise-lab bench --cluster``): what handing a chunk to a
worker costs, and what more workers buy.

The same text (the embedded model's twelve-sentence paragraph: one chunk per sentence) is read into fresh folders
by one process (``reading.LocalReader``) and by Ray with each worker count asked for, every worker and the process
with the same torch thread count. Ray's workers are started and their models loaded before the clock starts
(``RayReader.start``, reported apart as ``start_s``), so a timing is the read alone: chunks handed out, made, sent
back, written. The WAV bytes of every run are compared with the one process's.

* overhead per chunk: (one worker's time - the process's time) / chunks, what the trip through Ray adds;
* speed-up: one worker's time / N workers' time.

The load average before and after is recorded: on a machine shared with other work the speed-up is smaller than the
cores would give.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from tortoise_lab.files import write_json, write_text

__all__ = ["run_cluster_benchmark", "cluster_table"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.wav"))}


def run_cluster_benchmark(model: str = "embedded", text: str | None = None, workers: tuple[int, ...] = (1, 2),
                          threads: int = 1, preset: str = "fast", repeats: int = 1, seed: int = 3,
                          out_dir: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Time the reads (module docstring) ``repeats`` times each, alternating; returns the record also written to
    ``out_dir`` (bench-cluster.json and bench-cluster.md)."""
    from tortoise_lab.cluster import RayReader
    from tortoise_lab.config import Settings
    from tortoise_lab.model_set import resolve_models
    from tortoise_lab.pipeline import TextToSpeech
    from tortoise_lab.reading import LocalReader, read_chunks, read_voice
    from tortoise_lab.tools.bench.embedded import EMBEDDED_TEXT

    if repeats < 1 or not workers or min(workers) < 1:
        raise ValueError("bench --cluster needs --repeats of at least 1 and worker counts of at least 1.")
    chosen = resolve_models(model, device="cpu")
    tts = TextToSpeech(chosen.models, progress=False)
    voice = chosen.default_voice
    settings = Settings.from_preset(preset, device="cpu", latent_cache=False)  # nothing written beside the voices
    with tempfile.TemporaryDirectory() as scratch:
        text_file = Path(scratch) / "book.txt"
        text_file.write_text(text or EMBEDDED_TEXT, encoding="utf-8")
        chunks, _ = read_chunks(tts, text_file.read_text(encoding="utf-8"), settings)
        load_before = os.getloadavg()
        runs: dict[str, list[float]] = {}
        digests: dict[str, dict[str, str]] = {}
        starts: dict[str, float] = {}
        audio_s = 0.0
        with RayReader(workers=max(workers), threads=threads, device="cpu", progress=False) as reader:
            names = ["one process"] + [f"ray, {n} worker{'s' if n > 1 else ''}" for n in workers]
            for repeat in range(repeats):
                for name, count in zip(names, (0, *workers)):
                    engine = LocalReader(threads)
                    if count:
                        engine, reader.workers = reader, count
                        reader.stop_workers()
                        starts[name] = reader.start(tts, voice, settings)
                    out = Path(scratch) / f"{repeat}-{count}"
                    clock = time.perf_counter()
                    result = read_voice(tts, text_file, chunks, voice, settings, out, seed, seed,
                                        ["tortoise-lab", "bench", "--cluster"], engine=engine)
                    runs.setdefault(name, []).append(time.perf_counter() - clock)
                    digests[name] = _digests(result.folder)
                    audio_s = sum(float(_duration(p)) for p in result.folder.glob("[0-9]*.wav"))
                    log(f"{name}, run {repeat + 1} of {repeats}: {runs[name][-1]:.2f} s for {len(chunks)} chunks")
    record = {"model": chosen.name, "preset": preset, "voice": voice, "seed": seed, "chunks": len(chunks),
              "audio_s": round(audio_s, 3), "threads": threads, "repeats": repeats, "cpus": os.cpu_count(),
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "runs": {}}
    for name, times in runs.items():
        median = statistics.median(times)
        record["runs"][name] = {"median_s": round(median, 3), "times_s": [round(t, 3) for t in times],
                                "per_chunk_s": round(median / len(chunks), 3), "start_s": round(starts.get(name, 0), 3),
                                "same_bytes": digests[name] == digests["one process"]}
    plain, one = (record["runs"][names[i]]["median_s"] for i in (0, 1))
    record["overhead_per_chunk_s"] = round((one - plain) / len(chunks), 3)
    for name in names[1:]:
        record["runs"][name]["speedup"] = round(one / record["runs"][name]["median_s"], 2)
    if out_dir is not None:
        write_json(Path(out_dir) / "bench-cluster.json", record)
        write_text(Path(out_dir) / "bench-cluster.md", cluster_table(record))
    log(cluster_table(record))
    return record


def _duration(path: Path) -> float:
    import soundfile

    return soundfile.info(str(path)).duration


def cluster_table(record: dict) -> str:
    """The runs as a markdown table, with the overhead per chunk and the machine's load."""
    lines = ["| run | median s | s per chunk | workers' start s | speed-up over 1 worker | same bytes |",
             "|---|---|---|---|---|---|"]
    for name, run in record["runs"].items():
        speedup = f"{run['speedup']:.2f}×" if "speedup" in run else "–"
        start = f"{run['start_s']:.1f}" if run["start_s"] else "–"
        lines.append(f"| {name} | {run['median_s']:.2f} | {run['per_chunk_s']:.2f} | {start} | {speedup} | "
                     f"{'yes' if run['same_bytes'] else 'no'} |")
    lines.append(f"\n{record['chunks']} chunks ({record['audio_s']:.1f} s of audio), {record['model']} model, preset "
                 f"{record['preset']}, {record['threads']} torch thread(s) per worker and in the one process, "
                 f"{record['repeats']} run(s) each, {record['cpus']} CPUs. Overhead per chunk through Ray: "
                 f"{record['overhead_per_chunk_s']:.3f} s. Load average (1 min) before the runs {record['load_before'][0]:.2f}, "
                 f"after {record['load_after'][0]:.2f}: other work on the machine slows the runs.")
    return "\n".join(lines) + "\n"
