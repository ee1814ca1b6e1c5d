#!/usr/bin/env bash
# Sets up tortoise_lab on a fresh machine and runs the main job:
#   1. the project environment in .venv/ (torch, then the package, editable, with its extras, then DeepSpeed), at
#      exactly the tested versions of constraints.txt (pyproject.toml itself asks for compatible ranges);
#   2. a Jupyter kernel "tortoise-lab" for the notebooks;
#   3. the official assets (tokenizer, mel norms, built-in voices) from the pinned tortoise-tts 3.0.0 sdist;
#   4. `tortoise-lab speak`, which speaks, or says what it still needs (the official weights: `tortoise-lab download`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP_FLAGS="-q --disable-pip-version-check -c constraints.txt"

if [ ! -x .venv/bin/python ]; then
  # The environment takes about 7 GB (torch's CUDA wheels); pip fails half-way with "No space left on device"
  # where it does not fit, so say so before starting.
  need_gb=${TORTOISE_LAB_SETUP_MIN_GB:-9}
  free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1048576 ))
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "Set-up needs about $need_gb GB free here for .venv/ and has $free_gb GB: free some space and run it again." >&2
    exit 1
  fi
  "$PYTHON" -m venv .venv
fi
# torch first and alone: it is the big one, and deepspeed's build needs it importable (no build isolation), so
# deepspeed comes last, in its own step. constraints.txt (in PIP_FLAGS) chooses every version.
.venv/bin/pip install $PIP_FLAGS torch torchaudio
.venv/bin/pip install $PIP_FLAGS -e ".[notebooks,voices,train,cluster,dev]"
.venv/bin/pip install $PIP_FLAGS --no-build-isolation -e ".[deepspeed]"
.venv/bin/python -m ipykernel install --sys-prefix --name tortoise-lab --display-name "Python (tortoise-lab)" >/dev/null
.venv/bin/tortoise-lab assets

# The main job. Without the official weights it speaks with the small embedded model (and says so);
# `.venv/bin/tortoise-lab download` fetches the official ones (about 4 GB).
status=0
.venv/bin/tortoise-lab speak "Hello from tortoise lab." --preset ultra_fast --seed 1 -O output-audio-samples || status=$?
if [ "$status" -eq 3 ]; then
  echo "Set-up complete, but no model could speak: run '.venv/bin/tortoise-lab download' for the official weights."
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi
