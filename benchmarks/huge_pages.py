"""What transparent huge pages buy the fast path's decoding: the same 48 codes drawn in fresh processes, alternating
THP_MEM_ALLOC_ENABLE=0 and =1 (tortoise_lab's default, set in tortoise_lab/__init__.py).

    .venv/bin/python benchmarks/huge_pages.py [--pairs 3] [--size tortoise-v2]

Huge pages are a property of a process's memory, so the comparison cannot run in one process as ``bench --steps``
does; each process builds random weights of the official size, packs them for one row as the fast path does, and
times three draws of 48 codes from one prompt (seeded: every process draws the same codes). Prints each process's
median and the medians over the pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CODES = 48

# One process: the variable is read by PyTorch's allocator at its first allocation, before this code runs.
PROBE = """
import json, statistics, sys, time
import tortoise_lab, torch
from tortoise_lab.fast import prepack_linears
from tortoise_lab.models.gpt import GPTConfig, UnifiedVoice
from tortoise_lab.stages.sampling import draw_codes
torch.manual_seed(0)
model = prepack_linears(UnifiedVoice(GPTConfig.from_name(sys.argv[1])).eval(), 1)
cond, text = torch.randn(1, model.config.model_dim), torch.randint(1, 200, (1, 25))
times, codes = [], None
for _ in range(3):
    generator, start = torch.Generator().manual_seed(3), time.perf_counter()
    with torch.no_grad():
        for drawn in draw_codes(model, cond, text, %d, latents=True, greedy=False, temperature=0.8, top_p=0.8,
                                top_k=50, generator=generator, stop_early=False):
            codes = drawn.codes
    times.append(time.perf_counter() - start)
huge = next(int(l.split()[1]) for l in open("/proc/self/smaps_rollup") if l.startswith("AnonHugePages:")) / 1024
print(json.dumps({"median_s": statistics.median(times), "times_s": times, "huge_pages_mb": huge,
                  "codes": codes[0].tolist()}))
""" % CODES


def run(setting: str, size: str) -> dict:
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": setting, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE, size], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="processes of each kind, alternating (default 3)")
    parser.add_argument("--size", default="tortoise-v2", help="GPT size: tortoise-v2 (official) or tiny")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"0": [], "1": []}
    for pair in range(args.pairs):
        for setting in ("0", "1"):
            record = run(setting, args.size)
            results[setting].append(record)
            print(f"pair {pair + 1}, THP_MEM_ALLOC_ENABLE={setting}: median {record['median_s']:.2f} s of "
                  f"{[round(t, 2) for t in record['times_s']]}, {record['huge_pages_mb']:.0f} MB on huge pages",
                  flush=True)
    same = all(r["codes"] == results["0"][0]["codes"] for rs in results.values() for r in rs)
    off, on = (statistics.median(r["median_s"] for r in results[s]) for s in ("0", "1"))
    print(f"{CODES} codes: {off:.2f} s on 4 kB pages, {on:.2f} s on huge pages ({off / on:.2f}x); "
          f"the same codes in every process: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
