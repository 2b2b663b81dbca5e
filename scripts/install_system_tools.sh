#!/usr/bin/env bash
# Debian packages used by the real-tool, Slurm, browser and export (bcftools, tabix) tests. Idempotent.
set -euo pipefail
PKGS="bwa samtools art-nextgen-simulation-tools mosdepth libhts-dev slurmctld slurmd slurm-client munge chromium bcftools tabix"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "not root: cannot apt-get install$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
