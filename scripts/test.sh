#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and the parity suite against the reference implementation
# (tortoise-tts 3.0.0 in .venv-ref, created here on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "The project environment .venv is missing: run 'bash scripts/setup.sh' first." >&2
  exit 2
fi
bash scripts/setup-reference.sh
exec .venv/bin/python -m pytest "$@"
