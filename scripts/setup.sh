#!/usr/bin/env bash
# Create .venv (Python >= 3.10) and install CNVRock with its test extras.
# torch is pinned to 2.13.0 (CPU build on these machines); clusters use environment.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import cnvrock_lib, torch, papermill; print('cnvrock', cnvrock_lib.__version__, '| torch', torch.__version__)"
