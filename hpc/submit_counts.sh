#!/usr/bin/env bash
# Build a store at cluster scale: one Slurm array task per sample counts its BAM/CRAM
# (or TSV / mosdepth file) into a small per-sample file, then one gather job
# (afterok on the whole array) assembles the NPY store. A rerun submits only the
# samples whose per-sample file is missing (count-sample also skips up-to-date files).
#
# Usage: hpc/submit_counts.sh MANIFEST.tsv COUNTS_DIR OUT_STORE [count-sample options...]
#   MANIFEST.tsv  columns sample_id, path (one row per sample)
#   options       passed to both `cnvrock count-sample` and `cnvrock gather`,
#                 e.g. --method bam --bins chromosome --min-mapq 20
# Environment: CNVROCK_CPU_PARTITION [main], CNVROCK_ARRAY_MAX [500] (simultaneous tasks),
#   CNVROCK_TIME_COUNT [00:30:00], CNVROCK_MEM_COUNT [4G], CNVROCK_LOG_DIR [<repo>/logs],
#   CNVROCK_CONDA_ENV / CNVROCK_VENV, CNVROCK_ACCOUNT, CNVROCK_SBATCH_EXTRA.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
[ $# -ge 3 ] || { echo "usage: $0 MANIFEST.tsv COUNTS_DIR OUT_STORE [options]" >&2; exit 2; }
manifest="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; counts_dir="$2"; out="$3"; shift 3
[ -f "$manifest" ] || { echo "error: manifest not found: $manifest" >&2; exit 2; }
mkdir -p "$counts_dir"
counts_dir="$(cd "$counts_dir" && pwd)"
log_dir="${CNVROCK_LOG_DIR:-$repo/logs}/counts"
mkdir -p "$log_dir"
activate='if [ -n "${CNVROCK_CONDA_ENV:-}" ]; then source "$(conda info --base)/etc/profile.d/conda.sh"; conda activate "$CNVROCK_CONDA_ENV"; elif [ -f "${CNVROCK_VENV:-'"$repo"'/.venv}/bin/activate" ]; then source "${CNVROCK_VENV:-'"$repo"'/.venv}/bin/activate"; fi'
opts="$(printf ' %q' "$@")"
# rows still to count (0-based manifest rows), as a Slurm array spec
missing="$(cd "$repo" && eval "$activate" && cnvrock gather --manifest "$manifest" --counts-dir "$counts_dir" --list-missing "$@" | tail -n 1)"
common=(--partition "${CNVROCK_CPU_PARTITION:-main}" --export ALL)
[ -n "${CNVROCK_ACCOUNT:-}" ] && common+=(--account "$CNVROCK_ACCOUNT")
# shellcheck disable=SC2206
[ -n "${CNVROCK_SBATCH_EXTRA:-}" ] && common+=($CNVROCK_SBATCH_EXTRA)
dep=()
if [ -n "$missing" ]; then
  array_id="$(sbatch --parsable "${common[@]}" --job-name cnvrock-count --array "$missing%${CNVROCK_ARRAY_MAX:-500}" \
      --time "${CNVROCK_TIME_COUNT:-00:30:00}" --mem "${CNVROCK_MEM_COUNT:-4G}" --cpus-per-task 1 \
      --output "$log_dir/count-%A_%a.out" \
      --wrap "$activate; cd '$repo'; cnvrock count-sample --manifest '$manifest' --index \$SLURM_ARRAY_TASK_ID --counts-dir '$counts_dir'$opts")"
  echo "count $array_id"
  dep=(--dependency "afterok:${array_id%%;*}" --kill-on-invalid-dep=yes)
fi
gather_id="$(sbatch --parsable "${common[@]}" "${dep[@]}" --job-name cnvrock-gather --time 02:00:00 --mem 32G \
    --cpus-per-task 2 --output "$log_dir/gather-%j.out" \
    --wrap "$activate; cd '$repo'; cnvrock gather --manifest '$manifest' --counts-dir '$counts_dir' --out '$out'$opts")"
echo "gather ${gather_id%%;*}"
