#!/usr/bin/env bash
# Create .venv (Python >= 3.10) and install CNVRock with its test extras.
# torch is pinned to 2.13.0 (CPU build on these machines); clusters use environment.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

quiet() {  # run a pip command without its "... is ignored" notices; keep pip's exit status
  "$@" 2>&1 | { grep -v "is ignored" || true; }
  return "${PIPESTATUS[0]}"
}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
quiet .venv/bin/python -m pip install -q --upgrade pip || { echo "setup: upgrading pip failed" >&2; exit 1; }
quiet .venv/bin/python -m pip install -q -e ".[test]" || { echo "setup: pip install -e '.[test]' failed" >&2; exit 1; }
.venv/bin/python -c "import cnvrock_lib, torch, papermill; print('cnvrock', cnvrock_lib.__version__, '| torch', torch.__version__)"
