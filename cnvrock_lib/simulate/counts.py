"""Read counts: expected depth per bin, then wave, overdispersion, outliers and read-pair counting."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from ..reference import BIN_SIZE
from .cohort import Cohort
from .config import BLOCK, SPECIES, SimConfig
from .world import World



def _paint_cn(segments: list, n_bins: int, last_end: int) -> np.ndarray:
    """Per-bin copy number from bp segments on the 1 kb grid (CN 1 elsewhere; partial bins by overlap)."""
    edge = np.zeros(n_bins + 1)  # difference array for the bins a segment covers whole
    cn = np.ones(n_bins)
    last_len = last_end - (n_bins - 1) * BIN_SIZE
    for s, e, c, _ in segments:
        i0, i1 = (s - 1) // BIN_SIZE, min((e - 1) // BIN_SIZE, n_bins - 1)
        d = c - 1.0
        for i in {i0, i1}:
            b_start, b_end = i * BIN_SIZE + 1, (i * BIN_SIZE + BIN_SIZE if i < n_bins - 1 else last_end)
            cn[i] += d * (min(b_end, e) - max(b_start, s) + 1) / (BIN_SIZE if i < n_bins - 1 else last_len)
        if i1 - i0 > 1:
            edge[i0 + 1] += d
            edge[i1] -= d
    return cn + np.cumsum(edge[:-1])


def _noisy_counts(rng, mean: np.ndarray, smp: pd.DataFrame, outlier_rate: float) -> np.ndarray:
    """Neighbour-correlated wave, NB (gamma) overdispersion, outliers, read-pair counting."""
    b, m = mean.shape
    sd = smp["smooth_sd"].to_numpy()[:, None]
    rho = smp["smooth_rho"].to_numpy()
    z = rng.standard_normal((b, m))
    wave = np.empty_like(z)
    for r in np.unique(np.round(rho, 2)):  # lfilter per distinct rho (rounded to 0.01)
        sel = np.round(rho, 2) == r
        wave[sel] = lfilter([math.sqrt(1 - r * r)], [1.0, -r], z[sel], axis=1)
    mean = mean * np.exp(sd * wave - sd * sd / 2)
    phi = smp["nb_phi"].to_numpy()[:, None]
    mean = mean * rng.standard_gamma(1.0 / phi, size=(b, m)) * phi
    cont = smp["contamination"].to_numpy()
    for i in np.flatnonzero(cont > 0):  # contamination-like: heavy-tailed extra reads
        mean[i] += cont[i] * np.median(mean[i]) * rng.standard_gamma(0.4, m) / 0.4
    out = rng.random((b, m)) < outlier_rate
    if out.any():
        rows, cols = np.nonzero(out)
        up = rng.random(len(rows)) < 0.7
        mean[rows, cols] *= np.where(up, rng.uniform(2.0, 6.0, len(rows)), 0.1)
    s = smp["split_share"].to_numpy()[:, None]
    # both mates are counted; most pairs start both mates in the same 1 kb bin
    counts = 2 * rng.poisson(mean * (1 - s) / 2) + rng.poisson(mean * s)
    return counts.astype(np.uint32)


def _block(world: World, cohort: Cohort, rows: np.ndarray, rng, cfg: SimConfig):
    smp = cohort.samples.iloc[rows]
    cb = world.chrom_bins
    starts, ends = cb["start"], cb["end"]
    binfrac = (ends - starts + 1) / BIN_SIZE
    b = len(rows)
    cn = np.empty((b, len(cb)))
    for r, i in enumerate(rows):
        cn[r] = _paint_cn(cohort.segments[i], len(cb), int(ends[-1]))
    log2r = np.log2(smp["ori_ter_ratio"].to_numpy())[:, None]
    kappa = smp["gc_kappa"].to_numpy()[:, None]
    peak = smp["gc_peak"].to_numpy()[:, None]
    prof = np.exp2(log2r * (0.5 - world.replichore_distance[None, :])
                   - kappa * ((world.gc[None, :] - peak) / 0.1) ** 2)
    good = world.mappability > 0.99
    norm = prof[:, good].mean(axis=1, keepdims=True)
    prof /= norm
    rpb = smp["reads_per_bin"].to_numpy()[:, None]
    sp = np.array([SPECIES.index(s) for s in smp["species"]])
    mean = rpb * prof * cn * world.species_map[sp] * world.mappability * binfrac
    pshv = smp["plasmid_shv_pcn"].to_numpy()[:, None]
    sb = world.shv["bins"]
    mean[:, sb] += rpb * pshv * world.shv["overlap"][None, :] * prof[:, sb]
    mean[:, world.hot_bins] *= world.hot_factor[None, :] * np.exp(rng.normal(0, 0.15, (b, len(world.hot_bins))))
    mean += rpb * 0.002 * binfrac  # stray reads, even in deleted regions
    chrom = _noisy_counts(rng, mean, smp, cfg.outlier_rate)

    pb = world.plasmid_bins
    pfrac = (pb["end"] - pb["start"] + 1) / BIN_SIZE
    pprof = np.exp2(-kappa * ((world.plasmid_gc[None, :] - peak) / 0.1) ** 2) / norm
    pmean = rpb * (cohort.weights[rows] @ world.A) * pprof + rpb * 0.001 * pfrac
    plasmid = _noisy_counts(rng, pmean, smp, cfg.outlier_rate)
    return chrom, plasmid


def simulate_counts(world: World, cohort: Cohort, seed: int, cfg: SimConfig, progress=None):
    """Chromosome and plasmid counts (uint32), block by block from ``SeedSequence([seed, block])``."""
    n = len(cohort.samples)
    chrom = np.empty((n, len(world.chrom_bins)), dtype=np.uint32)
    plasmid = np.empty((n, len(world.plasmid_bins)), dtype=np.uint32)
    # one generator per block: results do not depend on how blocks are scheduled
    # (numpy's array-parameter draws hold the GIL, so threads do not help here)
    for k, lo in enumerate(range(0, n, BLOCK)):
        rows = np.arange(lo, min(n, lo + BLOCK))
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB10C, k]))
        chrom[rows], plasmid[rows] = _block(world, cohort, rows, rng, cfg)
        if progress:
            progress(len(rows))
    return chrom, plasmid


