#!/usr/bin/env bash
# Creates .venv-ref: the reference implementation (tortoise-tts 3.0.0) that the parity suite compares against.
# It lives apart from .venv because it needs transformers 4.31 (4.49 and later break its import). Resemblyzer 0.1.4
# is installed beside it for tests/parity/test_speaker_encoder.py: without its dependencies, because tortoise-tts
# brings the librosa and scipy it uses and its own webrtcvad requirement is an sdist whose import needs
# pkg_resources (gone from setuptools 81); webrtcvad-wheels provides the same module.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CHECK="import tortoise.models.autoregressive, resemblyzer"
if [ -x .venv-ref/bin/python ] && .venv-ref/bin/python -c "$CHECK" 2>/dev/null; then
  echo "reference environment .venv-ref is ready"
  exit 0
fi
[ -x .venv-ref/bin/python ] || "$PYTHON" -m venv .venv-ref
.venv-ref/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchaudio==2.11.0
.venv-ref/bin/pip install -q --disable-pip-version-check tortoise-tts==3.0.0 transformers==4.31.0 safetensors
.venv-ref/bin/pip install -q --disable-pip-version-check webrtcvad-wheels==2.0.14.post1
.venv-ref/bin/pip install -q --disable-pip-version-check --no-deps Resemblyzer==0.1.4
.venv-ref/bin/python -c "$CHECK"
echo "reference environment .venv-ref is ready"
