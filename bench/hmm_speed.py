"""Batched HMM vs hmmlearn, same parameters: wall time, speed ratio, identical paths.

Both decode every sample of a simulated cohort of copy ratios (CN segments
plus Gaussian noise, 5,334 bins like the chromosome store): the Viterbi path
and the forward–backward posteriors, with the same means (CN 0, 0.5, 1, 1.5,
2, 3), per-sample variance, transitions (self 0.8, uniform off-diagonal) and
uniform start probabilities. hmmlearn runs per sample (decode +
predict_proba), as a per-sample pipeline would; ours runs batched
(``GaussianHMM.decode``, numba kernel on CPU, torch on CUDA).

hmmlearn is timed on at most ``--hmmlearn-max`` samples per cohort size; when
that is fewer than the cohort, its time for the whole cohort is extrapolated
from the measured time per sample (said so in the output). Path identity and
the largest posterior difference are checked on those same samples. CPU time
(all threads) is reported beside wall time: on a machine shared with other
jobs (see the 1-minute load average printed) the wall-time ratio understates
what two free cores give, the CPU-time ratio does not depend on the load.

Usage::

    .venv/bin/python bench/hmm_speed.py                      # 1,000 and 5,000 samples
    .venv/bin/python bench/hmm_speed.py --samples 200 --hmmlearn-max 50   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from cnvrock_lib.hmm import CN_STATES, GaussianHMM


def simulate_ratios(n: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy ratios with a few CN segments per sample, ~2 % masked bins, per-sample noise sd."""
    rng = np.random.default_rng(seed)
    sd = rng.uniform(0.05, 0.25, n)
    x = np.ones((n, t))
    for i in range(n):
        for _ in range(rng.integers(0, 6)):
            lo = rng.integers(0, t - 100)
            x[i, lo:lo + rng.integers(3, 100)] = rng.choice([0.0, 0.5, 1.5, 2.0, 3.0, 5.0])
    x += rng.standard_normal((n, t)) * sd[:, None]
    mask = np.zeros((n, t), dtype=bool)
    for lo in rng.choice(t - 20, 10, replace=False):  # unmappable stretches shared by all samples
        mask[:, lo:lo + 10] = True
    return x, sd, mask


def time_ours(x, sd, mask, batch_size: int, repeats: int, dtype) -> tuple[float, float]:
    """Best wall time of ``repeats`` runs and the CPU time (all threads) of that run, seconds."""
    model = GaussianHMM(CN_STATES, 0.8, batch_size=batch_size, dtype=dtype)
    model.decode(x[:2, :100], sd[:2], mask[:2, :100])  # compile / warm up outside the timing
    best, cpu = np.inf, np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        model.decode(x, sd, mask, posteriors="path")
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu


def time_hmmlearn(x, sd, mask, n: int):
    """hmmlearn per sample on the first ``n`` samples; masked bins are dropped (it has no missing values)."""
    from hmmlearn import hmm

    k = len(CN_STATES)
    ref = hmm.GaussianHMM(n_components=k, covariance_type="diag", init_params="", params="")
    ref.startprob_ = np.full(k, 1.0 / k)
    model = GaussianHMM(CN_STATES, 0.8)
    ref.transmat_ = model.transmat
    ref.means_ = np.asarray(CN_STATES)[:, None]
    paths, posts = [], []
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        ref.covars_ = np.full((k, 1), sd[i] ** 2)
        obs = x[i, ~mask[i]][:, None]
        paths.append(ref.decode(obs, algorithm="viterbi")[1])
        posts.append(ref.predict_proba(obs))
    return time.perf_counter() - t0, time.process_time() - c0, paths, posts


def compare(x, sd, mask, paths, posts, dtype) -> tuple[int, float]:
    """Our decode of the same usable bins (hmmlearn cannot skip a bin, so both see the bins compressed)."""
    model = GaussianHMM(CN_STATES, 0.8, dtype=dtype)
    identical, max_diff = 0, 0.0
    for i, (path, post) in enumerate(zip(paths, posts)):
        obs = x[i, ~mask[i]][None, :]
        states, full, _ = model.decode(obs, sd[i:i + 1], posteriors="full")
        identical += int(np.array_equal(states[0], path))
        max_diff = max(max_diff, float(np.abs(full[0] - post).max()))
    return identical, max_diff


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--bins", type=int, default=5334)
    ap.add_argument("--hmmlearn-max", type=int, default=1000, help="hmmlearn is timed on at most this many samples")
    ap.add_argument("--batch-size", type=int, default=512, help="samples per HMM batch (params: hmm_batch_size)")
    ap.add_argument("--repeats", type=int, default=2, help="our timing: best of this many runs")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="our posteriors' precision (stage 02 uses float32; paths are the same)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    import numba
    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numba threads "
          f"{numba.get_num_threads()}, torch {torch.__version__}, cuda {torch.cuda.is_available()}")
    rows = []
    for n in args.samples:
        x, sd, mask = simulate_ratios(n, args.bins, args.seed)
        ours_s, ours_cpu = time_ours(x, sd, mask, args.batch_size, args.repeats, args.dtype)
        m = min(n, args.hmmlearn_max)
        load = os.getloadavg()[0]
        ref_s, ref_cpu, paths, posts = time_hmmlearn(x, sd, mask, m)
        per_sample = ref_s / m
        ref_total = per_sample * n
        identical, max_diff = compare(x, sd, mask, paths, posts, args.dtype)
        row = {"n_samples": n, "n_bins": args.bins, "dtype": args.dtype, "ours_s": round(ours_s, 3),
               "hmmlearn_timed_samples": m, "hmmlearn_timed_s": round(ref_s, 3),
               "hmmlearn_ms_per_sample": round(per_sample * 1e3, 3),
               "hmmlearn_s": round(ref_total, 2), "hmmlearn_extrapolated": m < n,
               "speedup": round(ref_total / ours_s, 1),
               "ours_cpu_s": round(ours_cpu, 3), "hmmlearn_cpu_s": round(ref_cpu / m * n, 2),
               "cpu_time_ratio": round(ref_cpu / m * n / ours_cpu, 1), "load_average_1min": round(load, 2),
               "paths_identical": f"{identical}/{m}",
               "max_posterior_diff": float(f"{max_diff:.3g}")}
        rows.append(row)
        note = f" (extrapolated from {m} samples)" if m < n else ""
        print(f"{n:>6} samples x {args.bins} bins: ours {ours_s:.2f} s, hmmlearn {ref_total:.1f} s{note} "
              f"= {per_sample * 1e3:.2f} ms/sample; speed-up {ref_total / ours_s:.1f}x; "
              f"CPU time ours {ours_cpu:.2f} s vs hmmlearn {ref_cpu / m * n:.1f} s ({ref_cpu / m * n / ours_cpu:.1f}x); "
              f"paths identical {identical}/{m}; max |posterior diff| {max_diff:.2g}; load average {load:.1f}")
    if args.json:
        from cnvrock_lib.atomic import write_json

        write_json(args.json, {"rows": rows, "numba_threads": numba.get_num_threads(), "cores": os.cpu_count()})
    return {"rows": rows}


if __name__ == "__main__":
    main()
