#!/usr/bin/env bash
# Submit one chain of four Slurm jobs per tier: stage 01 (VAE training) on the GPU
# partition, stages 02-04 on the CPU partition, each `--dependency=afterok` on the
# previous one (a failed stage cancels the rest of its chain). Several tiers in one
# call give independent chains.
#
# Usage: hpc/submit.sh [--dry-run] params/5k.yaml [params/10k.yaml ...]
#
# Overridable by environment variables (defaults in brackets):
#   CNVROCK_GPU_PARTITION [gpu]   CNVROCK_CPU_PARTITION [main]
#   CNVROCK_GPU_GRES [gpu:1] ("none" for a GPU partition without GRES)
#   CNVROCK_ACCOUNT, CNVROCK_QOS  passed as --account / --qos when set
#   CNVROCK_TIME_01 [08:00:00]  CNVROCK_TIME_02..04 [02:00:00]
#   CNVROCK_CPUS_01 [8]  CNVROCK_CPUS_02..04 [8]
#   CNVROCK_MEM_01 [64G] CNVROCK_MEM_02..04 [64G]
#   CNVROCK_LOG_DIR [<repo>/logs]  logs go to $CNVROCK_LOG_DIR/<tier>/<stage>-<jobid>.out
#   CNVROCK_CONDA_ENV / CNVROCK_VENV  environment activated in each job (see stage.sbatch)
#   CNVROCK_SBATCH_EXTRA  extra sbatch arguments for every job
# Prints "<tier> <stage> <jobid>" per submitted job.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [--dry-run] PARAMS.yaml [PARAMS.yaml ...]" >&2; exit 2; }
command -v sbatch >/dev/null || [ $dry = 1 ] || { echo "error: sbatch not found (is Slurm installed?)" >&2; exit 2; }

log_root="${CNVROCK_LOG_DIR:-$repo/logs}"
for params in "$@"; do
  [ -f "$params" ] || { echo "error: params file not found: $params" >&2; exit 2; }
  params_abs="$(cd "$(dirname "$params")" && pwd)/$(basename "$params")"
  # tier: "x", tier: 'x' or tier: x (comment stripped); anything but [A-Za-z0-9._-] becomes _ in the log folder name
  tier="$(sed -n 's/^tier:[[:space:]]*//p' "$params_abs" | head -n1 | sed -e "s/[[:space:]]#.*$//" \
          -e "s/^[\"']//" -e "s/[[:space:]]*$//" -e "s/[\"']$//" -e 's/[^A-Za-z0-9._-]/_/g')"
  [ -n "$tier" ] || tier="$(basename "$params" .yaml | sed 's/[^A-Za-z0-9._-]/_/g')"
  mkdir -p "$log_root/$tier"
  prev=""
  for stage in 01 02 03 04; do
    if [ "$stage" = 01 ]; then
      partition="${CNVROCK_GPU_PARTITION:-gpu}"
      gres="${CNVROCK_GPU_GRES:-gpu:1}"
    else
      partition="${CNVROCK_CPU_PARTITION:-main}"
      gres="none"
    fi
    time_var="CNVROCK_TIME_$stage"; cpus_var="CNVROCK_CPUS_$stage"; mem_var="CNVROCK_MEM_$stage"
    default_time=$([ "$stage" = 01 ] && echo 08:00:00 || echo 02:00:00)
    args=(--parsable --job-name "cnvrock-$tier-$stage" --partition "$partition"
          --time "${!time_var:-$default_time}" --cpus-per-task "${!cpus_var:-8}" --mem "${!mem_var:-64G}"
          --output "$log_root/$tier/$stage-%j.out" --export ALL)
    # the job's variables travel in the environment (--export ALL), never inside --export's
    # comma-separated list, where a comma in a path would cut it
    [ "$gres" != none ] && args+=(--gres "$gres")
    [ -n "${CNVROCK_ACCOUNT:-}" ] && args+=(--account "$CNVROCK_ACCOUNT")
    [ -n "${CNVROCK_QOS:-}" ] && args+=(--qos "$CNVROCK_QOS")
    [ -n "$prev" ] && args+=(--dependency "afterok:$prev" --kill-on-invalid-dep=yes)
    # shellcheck disable=SC2206
    [ -n "${CNVROCK_SBATCH_EXTRA:-}" ] && args+=($CNVROCK_SBATCH_EXTRA)
    job_env=(CNVROCK_REPO="$repo" CNVROCK_PARAMS="$params_abs" CNVROCK_STAGE="$stage")
    if [ $dry = 1 ]; then
      printf '%q ' env "${job_env[@]}" sbatch "${args[@]}" "$here/stage.sbatch"; echo
      jobid="DRY$stage"
    else
      jobid="$(env "${job_env[@]}" sbatch "${args[@]}" "$here/stage.sbatch")"
      jobid="${jobid%%;*}"
    fi
    echo "$tier $stage $jobid"
    prev="$jobid"
  done
done
