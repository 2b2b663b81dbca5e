#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine and run it.
# System tools (bwa, samtools, ART, mosdepth, Slurm, munge, Chromium) come from
# Debian via apt-get when running as root; tests that need a missing tool skip
# with a reason. Usage: bash scripts/test.sh [pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_system_tools.sh || echo "warning: system tools not installed; dependent tests will skip" >&2
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
