#!/usr/bin/env bash
# Creates .venv-ref: the reference implementation (tortoise-tts 3.0.0) that the parity suite compares against.
# It lives apart from .venv because it needs transformers 4.31 (4.49 and later break its import).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ -x .venv-ref/bin/python ] && .venv-ref/bin/python -c "import tortoise.models.autoregressive" 2>/dev/null; then
  echo "reference environment .venv-ref is ready"
  exit 0
fi
"$PYTHON" -m venv .venv-ref
.venv-ref/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchaudio==2.11.0
.venv-ref/bin/pip install -q --disable-pip-version-check tortoise-tts==3.0.0 transformers==4.31.0 safetensors
.venv-ref/bin/python -c "import tortoise.models.autoregressive" 
echo "reference environment .venv-ref is ready"
