"""Speed of the stage-03 bootstrap: CRR intervals for N samples x R replicates.

Usage: python bench/bench_call.py [--samples 5000] [--replicates 1000] [--gene-bins 2]
Synthetic copy ratios (Poisson counts at ~300 reads per bin, a 201-bin flank
as for blaSHV with cnv_flank_padding 100 kb); prints seconds per step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cnvrock_lib import calling


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--gene-bins", type=int, default=2)
    ap.add_argument("--flank-bins", type=int, default=201)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    depth = rng.uniform(270, 2000, size=(args.samples, 1))
    flank_counts = rng.poisson(depth * np.ones((1, args.flank_bins))).astype(float)
    flank = flank_counts / depth
    gene_counts = rng.poisson(depth * np.ones((1, args.gene_bins))).astype(float)
    gene = gene_counts / depth
    weights = np.full(args.gene_bins, 1000)

    t0 = time.perf_counter()
    phi = calling.intervals.count_dispersion(flank, flank_counts)
    t1 = time.perf_counter()
    reps = calling.intervals.bootstrap_crr(gene, gene_counts, weights, flank, phi, args.replicates,
                              np.random.default_rng(args.seed))
    t2 = time.perf_counter()
    lo, hi = calling.intervals.bootstrap_interval(reps)
    t3 = time.perf_counter()
    print(f"samples={args.samples} replicates={args.replicates} gene_bins={args.gene_bins} "
          f"flank_bins={args.flank_bins}")
    print(f"dispersion {t1 - t0:.2f} s; bootstrap {t2 - t1:.2f} s; interval {t3 - t2:.2f} s; "
          f"total {t3 - t0:.2f} s")
    print(f"median interval width {np.median(hi - lo):.3f} copies; "
          f"share holding CN 1: {np.mean((lo <= 1) & (hi >= 1)):.3f}")


if __name__ == "__main__":
    main()
