#!/usr/bin/env bash
# Issue 16's GPU check, prepared to run once on a lent GPU machine (benchmarks/README.md, "Running the GPU check"):
#
#   bash scripts/gpu-check.sh          # with $OUT set; .whl/ carried (scripts/gpu-wheels.sh fills it)
#
#   0. setup: the carried wheels into /tmp/site (the machine has no network), the carried assets into a fresh
#      TORTOISE_LAB_HOME, the machine described (nvidia-smi, torch, CUDA, nvcc); in the background, DeepSpeed's
#      inference kernels are built (the first use JIT-builds them) and the official-size random bench weights are
#      made by ours (tortoise_lab/tools/bench/weights.py: the reference environment that usually makes them cannot be
#      installed there)
#   1. tests: every test marked `gpu` (tests/test_fast.py: DeepSpeed's kernels against our decoder, half, CUDA graphs)
#   3. notebooks: all seven under nbval in test mode, DEVICE "auto" (= cuda there), 4 at a time; run beside the
#      tests, both correctness checks, and stopped early enough that the bench always keeps its time
#   2. bench: `tortoise-lab bench --device cuda`, official sizes, random weights, alone on the machine (timings):
#      the lossless path with half precision and DeepSpeed, the fast path (HiFiGAN, streaming), then torch.compile,
#      each its own invocation so that a late one cannot lose the records of those before
#   results (logs, junit XML, bench JSON/MD/PNG/WAV) packed into $OUT; a PASS/FAIL/TIMEOUT line per step at the end.
#
# Each step runs under `timeout`; a failing step does not stop the others; the whole run ends within
# GPU_CHECK_TOTAL_S (480 s) of wall time, plus packing. GPU_CHECK_ALLOW_CPU=1 runs the same steps on a machine
# without CUDA at the smallest settings (bench --quick on tiny weights), to check everything but the GPU itself.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
START=$(date +%s)
TOTAL_S=${GPU_CHECK_TOTAL_S:-480}
PACK_RESERVE_S=25
TESTS_S=${GPU_CHECK_TESTS_S:-240}
NOTEBOOKS_S=${GPU_CHECK_NOTEBOOKS_S:-240}
NOTEBOOK_WORKERS=${GPU_CHECK_NOTEBOOK_WORKERS:-4}
NOTEBOOKS=${GPU_CHECK_NOTEBOOKS:-notebooks}  # a subset, e.g. "notebooks/01_installation.ipynb", for a local try
STEPS=${GPU_CHECK_STEPS:-tests notebooks bench}
PY=${GPU_CHECK_PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
SITE=${GPU_CHECK_SITE:-/tmp/site}
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check}
CPU_MODE=${GPU_CHECK_ALLOW_CPU:-0}
OUT=${OUT:-}
if [ -z "$OUT" ]; then
  [ "$CPU_MODE" = 1 ] || { echo "OUT is not set: the device tool sets it (GPU_CHECK_ALLOW_CPU=1 uses $WORK/out)." >&2; exit 2; }
  OUT=$WORK/out
fi
RESULTS=$WORK/results
rm -rf "$WORK"
mkdir -p "$RESULTS" "$OUT"
LOG=$RESULTS/gpu-check.log

say() { echo "[gpu-check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( TOTAL_S - PACK_RESERVE_S - ($(date +%s) - START) )); }
smaller() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# step NAME BUDGET_S COMMAND...: run COMMAND, its output in $RESULTS/NAME.log, stopped (SIGINT, then SIGKILL 20 s on)
# after BUDGET_S; writes $RESULTS/NAME.status: "STATUS SECONDS rc=N budget=Bs".
step() {
  local name=$1 budget=$2 began rc status
  shift 2
  began=$(date +%s)
  if [ "$budget" -lt 15 ]; then
    echo "SKIPPED 0 rc=- budget=${budget}s" >"$RESULTS/$name.status"
    say "$name: SKIPPED (no time left)"
    return 0
  fi
  say "$name: started (budget ${budget}s)"
  timeout -s INT -k 20 "$budget" "$@" >"$RESULTS/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=PASS ;; 124 | 137) status=TIMEOUT ;; *) status=FAIL ;; esac
  echo "$status $(( $(date +%s) - began )) rc=$rc budget=${budget}s" >"$RESULTS/$name.status"
  say "$name: $status in $(( $(date +%s) - began ))s (rc=$rc)"
  return 0
}

# ---------------------------------------------------------------------------------------------------- 0. setup
say "repo $REPO, results in $RESULTS, OUT=$OUT, total budget ${TOTAL_S}s, cpu mode $CPU_MODE"
install_wheels() {
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
}
export -f install_wheels
export PY WHEELS SITE
step setup "$(smaller 180 "$(left)")" bash -c install_wheels
export PYTHONPATH=$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PIP_NO_INDEX=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=$WORK/hf
export TORTOISE_LAB_HOME=$WORK/home TORCH_EXTENSIONS_DIR=$WORK/torch-extensions TORCHINDUCTOR_CACHE_DIR=$WORK/inductor
export JUPYTER_RUNTIME_DIR=$WORK/jupyter-runtime JUPYTER_PLATFORM_DIRS=1 IPYTHONDIR=$WORK/ipython MPLCONFIGDIR=$WORK/matplotlib
export MAX_JOBS=${MAX_JOBS:-12} CPU_MODE
# The assets a bare machine lacks: the bench's voice and the speaker encoder (carried), upstream's tokenizer and mel
# norms (in the package).
mkdir -p "$TORTOISE_LAB_HOME/assets/voices" "$TORTOISE_LAB_HOME/speaker_encoder"
cp -r "$WHEELS/assets/voices/tom" "$TORTOISE_LAB_HOME/assets/voices/" 2>>"$LOG" || say "setup: the voice tom was not carried"
gunzip -c "$WHEELS/assets/speaker_encoder/pretrained.pt.gz" >"$TORTOISE_LAB_HOME/speaker_encoder/pretrained.pt" \
  2>>"$LOG" || say "setup: the speaker encoder was not carried (notebook 04 will fail)"
cp tortoise_lab/data/official/tokenizer.json tortoise_lab/data/official/mel_norms.pth "$TORTOISE_LAB_HOME/assets/"
# ninja (DeepSpeed's JIT build) from the Python environment's bin folders.
PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$("$PY" -c 'import ninja; print(ninja.BIN_DIR)' 2>/dev/null):$PATH"
export PATH

describe_machine() {
  set -x
  nvidia-smi || true
  nvcc --version || true
  nproc; free -g; df -h /tmp | tail -1
  "$PY" - <<'EOF'
import platform, sys
import torch
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
          "bf16", torch.cuda.is_bf16_supported())
from torch.utils.cpp_extension import CUDA_HOME
print("CUDA_HOME", CUDA_HOME)
import importlib.metadata as md
for name in ("torchaudio", "transformers", "numpy", "deepspeed", "pydantic", "typing_extensions", "pytest",
             "pytest-xdist", "nbval", "ipykernel", "tokenizers", "huggingface_hub", "matplotlib", "scipy"):
    try:
        print(name, md.version(name), md.distribution(name).locate_file(""))
    except md.PackageNotFoundError:
        print(name, "MISSING")
import tortoise_lab
from tortoise_lab.device import choose_device
print("tortoise_lab", tortoise_lab.__file__, "device auto:", choose_device("auto"))
EOF
}
export -f describe_machine
step environment "$(smaller 90 "$(left)")" bash -c describe_machine
if [ "$CPU_MODE" = 1 ]; then
  DEVICE=cpu SIZE=tiny QUICK=--quick
elif "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>>"$LOG"; then
  DEVICE=cuda SIZE=tortoise-v2 QUICK=
else
  say "torch sees no CUDA device: stopping (GPU_CHECK_ALLOW_CPU=1 runs the steps on the CPU)."
  tail -40 "$RESULTS/environment.log"
  exit 1
fi

# DeepSpeed's JIT build (torch.utils.cpp_extension) needs a CUDA home with the runtime's headers: torch guesses it from
# the nvcc on the PATH (/usr/local for a wrapper in /usr/local/bin), so name the toolkit's folder where the guess has
# none. It needs cuBLAS and cuRAND headers and unversioned libraries too: where the toolkit lacks them, take those of
# the pip packages torch runs on (nvidia/cu*/include, lib).
cuda_home=$("$PY" -c 'from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or "")' 2>/dev/null)
if [ ! -f "$cuda_home/include/cuda_runtime_api.h" ]; then
  for candidate in /usr/local/cuda /usr/local/cuda-* /opt/cuda*; do
    if [ -x "$candidate/bin/nvcc" ] && [ -f "$candidate/include/cuda_runtime_api.h" ]; then
      say "setup: CUDA_HOME=$candidate (torch's guess ${cuda_home:-none} has no CUDA headers)"
      cuda_home=$candidate
      export CUDA_HOME=$candidate
      break
    fi
  done
fi
if [ -n "$cuda_home" ] && [ ! -f "$cuda_home/include/cublas_v2.h" ]; then
  nvidia=$("$PY" -c 'import glob, os, sys
print(next((os.path.dirname(os.path.dirname(h)) for p in sys.path for h in glob.glob(p + "/nvidia/*/include/cublas_v2.h")), ""))')
  if [ -n "$nvidia" ]; then
    mkdir -p "$WORK/cuda-lib"
    for lib in cublas cublasLt curand cudart; do
      found=$(ls "$nvidia"/lib/lib$lib.so.* 2>/dev/null | head -1)
      if [ -n "$found" ]; then ln -sf "$found" "$WORK/cuda-lib/lib$lib.so"; fi
    done
    export CPATH=$nvidia/include${CPATH:+:$CPATH} NVCC_APPEND_FLAGS="-I$nvidia/include ${NVCC_APPEND_FLAGS:-}"
    export LIBRARY_PATH=$WORK/cuda-lib${LIBRARY_PATH:+:$LIBRARY_PATH}
    say "setup: $cuda_home has no cuBLAS headers; DeepSpeed builds with those of $nvidia"
  fi
fi
say "setup: CUDA home $cuda_home, CPATH=${CPATH:-}, LIBRARY_PATH=${LIBRARY_PATH:-}"

WEIGHTS=$WORK/bench-weights
build_deepspeed() {
  "$PY" -c 'import os
from tortoise_lab.fast import deepspeed_available
available, why = deepspeed_available()
print("DeepSpeed kernels available:", available, "-", why)
raise SystemExit(0 if available or os.environ["CPU_MODE"] == "1" else 1)  # (no kernels without CUDA)'
}
make_bench_weights() {
  "$PY" -c "from tortoise_lab.tools.bench.weights import make_weights; print(make_weights('$SIZE', '$WEIGHTS'))"
}
# pytest with Ctrl-C's handler restored: a job started with `&` inherits SIGINT ignored, and then `timeout`'s SIGINT
# would not let pytest stop cleanly and write its reports.
pytest_() {
  "$PY" -c 'import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(pytest.main(sys.argv[1:]))' "$@"
}
run_tests() {
  local files
  files=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
  echo "tests marked gpu in: $files"
  # shellcheck disable=SC2086
  pytest_ $files -m gpu -p no:cacheprovider -o addopts= -ra -v --import-mode=importlib --durations=10 \
    --junitxml="$RESULTS/tests-junit.xml"
}
run_notebooks() {
  # nbval's checked outputs name the pinned torch (notebook 01); the machine's own torch is not the pin.
  cat notebooks/sanitize.cfg - >"$WORK/sanitize.cfg" <<'EOF'

[torch and torchaudio versions (the machine's own, not constraints.txt's)]
regex: torch \d+\.\d+\.\d+ with torchaudio \d+\.\d+\.\d+
replace: torch VERSION with torchaudio VERSION
EOF
  local parallel=()
  if [ "$NOTEBOOK_WORKERS" -gt 1 ] && "$PY" -c 'import xdist' 2>/dev/null; then
    parallel=(-n "$NOTEBOOK_WORKERS" --dist loadfile)
  fi
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-3} pytest_ $NOTEBOOKS "${parallel[@]}" -p no:cacheprovider -o addopts= \
    -ra -v --import-mode=importlib --nbval-lax --nbval-current-env --nbval-sanitize-with "$WORK/sanitize.cfg" \
    --junitxml="$RESULTS/notebooks-junit.xml"
}
bench() {  # bench NAME CONFIGS: one `tortoise-lab bench` invocation into $RESULTS/NAME
  local name=$1 configs=$2
  "$PY" -m tortoise_lab bench --configs "$configs" --device "$DEVICE" --weights-dir "$WEIGHTS" \
    --out-dir "$RESULTS/$name" $QUICK
}
export -f pytest_ build_deepspeed make_bench_weights run_tests run_notebooks bench
export REPO WORK RESULTS NOTEBOOKS NOTEBOOK_WORKERS DEVICE SIZE QUICK WEIGHTS

# ------------------------------------------------------------------------- 1 and 3: tests beside the notebooks
wants() { [[ " $STEPS " == *" $1 "* ]]; }
weights_pid= notebooks_pid=
step deepspeed-build "$(smaller 300 "$(left)")" bash -c build_deepspeed &
build_pid=$!
if wants bench; then
  step bench-weights "$(smaller 300 "$(left)")" bash -c make_bench_weights &
  weights_pid=$!
fi
if wants notebooks; then
  step notebooks "$(smaller "$NOTEBOOKS_S" "$(left)")" bash -c run_notebooks &
  notebooks_pid=$!
fi
if wants tests; then step tests "$(smaller "$TESTS_S" "$(left)")" bash -c run_tests; fi
[ -z "$notebooks_pid" ] || wait "$notebooks_pid"
# Kernels nbval left behind (they run in their own sessions) would share the GPU with the bench: end them.
for pid in $(pgrep -f -- "$JUPYTER_RUNTIME_DIR" 2>/dev/null); do kill "$pid" 2>/dev/null; done

# -------------------------------------------------------------------------------- 2. the bench, alone on the machine
[ -z "$weights_pid" ] || wait "$weights_pid"
wait "$build_pid"
# A build stopped by SIGKILL leaves its lock, and every later load would wait on it for ever.
grep -q '^PASS' "$RESULTS/deepspeed-build.status" 2>/dev/null || rm -f "$TORCH_EXTENSIONS_DIR"/*/lock
if wants bench; then
  if grep -q '^PASS' "$RESULTS/bench-weights.status" 2>/dev/null; then
    step bench-lossless "$(smaller 240 "$(left)")" bash -c "bench bench-lossless baseline,kv_cache,half,deepspeed,all"
    step bench-fast "$(smaller 150 "$(left)")" bash -c "bench bench-fast hifigan,stream,stream_cached"
    step bench-compile "$(left)" bash -c "bench bench-compile compile"
  else
    say "bench: no weights (see bench-weights.log); skipped"
  fi
fi

# ------------------------------------------------------------------------------------------------- results
note() {  # the line a step's log ends its story with
  local name=$1 log=$RESULTS/$1.log
  case $name in
    tests | notebooks) grep -E "^=+ .*(passed|failed|error|skipped|no tests ran).* =+$" "$log" 2>/dev/null | tail -1 | tr -d '=' ;;
    deepspeed-build) grep "DeepSpeed kernels available" "$log" 2>/dev/null | tail -1 | cut -c1-160 ;;
    bench-*) [ -f "$RESULTS/$name/bench.json" ] && "$PY" -c "import json, sys
records = json.load(open(sys.argv[1]))
bad = [r['config'] for r in records if 'error' in r]
print(len(records), 'records:', ', '.join(f\"{r['config']} {r['median_s']:.2f} s\" for r in records if 'error' not in r),
      '| errors: ' + ', '.join(bad) if bad else '')" "$RESULTS/$name/bench.json" 2>/dev/null ;;
    *) tail -1 "$log" 2>/dev/null | cut -c1-160 ;;
  esac
}
SUMMARY=$RESULTS/summary.txt
{
  echo "==== GPU check summary: $(grep -E '^gpu ' "$RESULTS/environment.log" 2>/dev/null | head -1 || echo "device $DEVICE")"
  grep -E '^torch ' "$RESULTS/environment.log" 2>/dev/null | head -1
  for name in setup environment deepspeed-build tests notebooks bench-weights bench-lossless bench-fast bench-compile; do
    [ -f "$RESULTS/$name.status" ] || continue
    read -r status seconds _ <"$RESULTS/$name.status"
    printf '%-16s %-8s %4ss  %s\n' "$name" "$status" "$seconds" "$(note "$name")"
  done
  echo "==== $(( $(date +%s) - START )) s of the ${TOTAL_S} s budget; results in \$OUT: gpu-check-results.tar.gz" \
       "(all logs, junit XML, bench records), summary.txt, gpu-check.log, bench-*.md"
} >"$SUMMARY"

# Pack: everything in one archive (without the WAVs if it would pass 15 MiB), beside the log, the summary and the
# bench tables (at most 8 files come back).
for name in bench-lossless bench-fast bench-compile; do
  [ -f "$RESULTS/$name/bench.md" ] && cp "$RESULTS/$name/bench.md" "$OUT/$name.md"
done
tar -czf "$OUT/gpu-check-results.tar.gz" -C "$WORK" results 2>>"$LOG"
if [ "$(stat -c %s "$OUT/gpu-check-results.tar.gz")" -gt $((15 * 1048576)) ]; then
  tar -czf "$OUT/gpu-check-results.tar.gz" --exclude='*.wav' -C "$WORK" results 2>>"$LOG"
  say "results: the WAVs left out of the archive (over 15 MiB with them)"
fi
cp "$SUMMARY" "$OUT/summary.txt"

# What the caller sees (the last 12,000 characters): the bench tables, the failures' tails, then the summary.
for name in bench-lossless bench-fast bench-compile; do
  [ -f "$OUT/$name.md" ] && { echo "---- $name.md"; cut -c1-400 "$OUT/$name.md" | head -40; }
done
for status in "$RESULTS"/*.status; do
  name=$(basename "$status" .status)
  if ! grep -qE '^(PASS|SKIPPED)' "$status"; then
    echo "---- $name ($(cut -d' ' -f1 "$status")): last lines of $name.log"
    tail -n 15 "$RESULTS/$name.log" 2>/dev/null | cut -c1-200
  fi
done
cp "$LOG" "$OUT/gpu-check.log"
echo "results: $(cd "$OUT" && ls -s --block-size=K | tail -n +2 | tr '\n' ' ')"
cat "$SUMMARY"
