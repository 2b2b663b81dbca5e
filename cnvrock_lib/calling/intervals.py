"""Intervals and confidences of gene dosage: the parametric bootstrap of CRR (SPEC §7.1) and the
counting intervals of PCN (SPEC §7.2), with count overdispersion estimated from each sample.

Units: counts are reads per bin; ratios are copies; φ (dispersion) is variance ÷ Poisson variance.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from scipy.special import betainc

from .chromosomal import MIN_FLANK_BINS, flank_baseline

# Per-bin overdispersion of counts (variance / Poisson variance), estimated
# from the flank, is clipped to this range.
MAX_DISPERSION = 100.0


def count_dispersion(flank_ratios: np.ndarray, flank_counts: np.ndarray) -> np.ndarray:
    """Per-sample count overdispersion φ (variance ÷ Poisson variance), from the flank bins.

    The robust variance of the flank copy ratios (1.4826·MAD)² is compared with
    the median Poisson variance of one bin's ratio (ratio² ÷ count); φ is
    clipped to [1, ``MAX_DISPERSION``] and is 1 where the flank is too small.
    """
    r = np.asarray(flank_ratios, dtype=np.float64)
    c = np.asarray(flank_counts, dtype=np.float64)
    ok = np.isfinite(r) & (c > 0)
    r_ok = np.where(ok, r, np.nan)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(r_ok, axis=1)
        mad_var = (1.4826 * np.nanmedian(np.abs(r_ok - med[:, None]), axis=1)) ** 2
        poisson_var = np.nanmedian(np.where(ok, r * r / np.where(c > 0, c, 1.0), np.nan), axis=1)
        phi = mad_var / poisson_var
    phi = np.where((ok.sum(axis=1) >= MIN_FLANK_BINS) & np.isfinite(phi), phi, 1.0)
    return np.clip(phi, 1.0, MAX_DISPERSION)


def _median_rank_cdf(n: int) -> np.ndarray:
    """CDF over j = 1..n of the rank of a bootstrap resample's lower-middle order statistic."""

    k = (n + 1) // 2
    return betainc(k, n - k + 1, np.arange(1, n + 1) / n)


def bootstrap_median(values: np.ndarray, n_replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of each row's median (NaN ignored), vectorised.

    Resampling n values with replacement and taking its k-th order statistic
    (k = ⌈n/2⌉) gives sorted value ⌈n·U₍ₖ₎⌉ with U₍ₖ₎ ~ Beta(k, n − k + 1), the
    k-th of n uniform order statistics. Its rank is therefore drawn from the
    exact discrete CDF I_{j/n}(k, n − k + 1) with one uniform per replicate.
    For even n the median also needs the next order statistic,
    U₍ₖ₊₁₎ = U₍ₖ₎ + (1 − U₍ₖ₎)·(1 − V^{1/(n−k)}) with V uniform; there U₍ₖ₎ is
    placed uniformly inside its rank's cell (an O(1/n) approximation). One
    replicate costs a few uniforms instead of n draws and a sort.

    Parameters
    ----------
    values : (n_rows, n_values), NaN ignored; rows without a value give NaN.
    n_replicates : replicates per row.

    Returns (n_rows, n_replicates) float64.
    """
    x = np.sort(np.asarray(values, dtype=np.float64), axis=1)  # NaN last
    n_per_row = np.isfinite(x).sum(axis=1)
    out = np.full((x.shape[0], n_replicates), np.nan)
    for n in np.unique(n_per_row[n_per_row > 0]):
        rows = np.flatnonzero(n_per_row == n)
        xs = x[rows, :n]
        cdf = _median_rank_cdf(int(n))
        u = rng.random((rows.size, n_replicates))
        j = np.minimum(np.searchsorted(cdf, u, side="left"), n - 1)      # 0-based rank
        med = np.take_along_axis(xs, j, axis=1)
        k = (n + 1) // 2
        if n % 2 == 0:
            u_k = (j + rng.random(j.shape)) / n
            u_next = u_k + (1.0 - u_k) * (1.0 - rng.random(j.shape) ** (1.0 / (n - k)))
            j_next = np.clip(np.ceil(n * u_next).astype(np.int64) - 1, j, n - 1)
            med = 0.5 * (med + np.take_along_axis(xs, j_next, axis=1))
        out[rows] = med
    return out


def bootstrap_crr(gene_ratios: np.ndarray, gene_counts: np.ndarray, weights: np.ndarray,
                  flank_ratios: np.ndarray, dispersion: np.ndarray, n_replicates: int,
                  rng: np.random.Generator, max_elements: int = 10_000_000) -> np.ndarray:
    """Parametric bootstrap replicates of the CRR, vectorised over samples × replicates.

    Each usable gene bin's count is redrawn with mean = its observed count and
    variance φ·count (Poisson for φ = 1, gamma–Poisson above), and its copy
    ratio scaled accordingly (ratio·count*/count); the flank median is redrawn by
    resampling the flank bins (:func:`bootstrap_median`), or kept at the
    genome-wide baseline 1 where the flank cannot serve (:func:`flank_baseline`).

    Parameters
    ----------
    gene_ratios, gene_counts : (n_samples, n_gene_bins) copy ratios (NaN masked) and reads.
    weights : (n_gene_bins,) overlap bp.
    flank_ratios : (n_samples, n_flank_bins) copy ratios (NaN masked).
    dispersion : (n_samples,) φ ≥ 1 (:func:`count_dispersion`).
    n_replicates : replicates per sample.

    Returns (n_samples, n_replicates) float32 CRR replicates (NaN where the gene has no usable bin).
    """
    ratios = np.asarray(gene_ratios, dtype=np.float64)
    counts = np.asarray(gene_counts, dtype=np.float64)
    n, g = ratios.shape
    usable = np.isfinite(ratios)
    w = np.where(usable, np.asarray(weights, dtype=np.float64)[None, :], 0.0)
    w_total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_norm = np.where(w_total[:, None] > 0, w / w_total[:, None], 0.0)
        per_read = np.where(usable & (counts > 0), ratios / counts, 0.0) * w_norm   # copies per read
    fixed = (np.where(usable & (counts == 0), np.where(usable, ratios, 0.0), 0.0) * w_norm).sum(axis=1)
    counts = np.where(usable, counts, 0.0)
    extra = np.asarray(dispersion, dtype=np.float64) - 1.0       # gamma variance per unit mean

    _, is_local = flank_baseline(flank_ratios)
    out = np.empty((n, n_replicates), dtype=np.float32)
    step = max(1, max_elements // max(1, n_replicates * max(g, 1)))
    for lo in range(0, n, step):
        sl = slice(lo, lo + step)
        size = (min(step, n - lo), n_replicates, g)
        mean = counts[sl][:, None, :]
        e = extra[sl][:, None, None]
        gamma_rows = e[:, 0, 0] > 1e-6
        lam = np.broadcast_to(mean, size).copy()
        if gamma_rows.any():
            shape = mean[gamma_rows] / e[gamma_rows]
            lam[gamma_rows] = rng.standard_gamma(np.broadcast_to(shape, (int(gamma_rows.sum()),) + size[1:])) \
                * e[gamma_rows]
        draws = rng.poisson(lam)
        gene_rep = np.einsum("srg,sg->sr", draws, per_read[sl], optimize=False) + fixed[sl][:, None]
        flank_rep = bootstrap_median(flank_ratios[sl], n_replicates, rng)
        flank_rep[~is_local[sl]] = 1.0
        rep = gene_rep / flank_rep
        rep[w_total[sl] <= 0] = np.nan
        out[sl] = rep
    return out


def bootstrap_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates along axis 1 (same units as the replicates).

    Rows that are all NaN give NaN.
    """
    reps = np.asarray(replicates, dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    lo = np.full(reps.shape[0], np.nan)
    hi = np.full(reps.shape[0], np.nan)
    ok = np.isfinite(reps).all(axis=1)
    if ok.any():
        q = np.quantile(reps[ok], [alpha, 1.0 - alpha], axis=1)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi


def poisson_interval(counts: np.ndarray, level: float = 0.95,
                     dispersion: float | np.ndarray = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Interval for the mean of observed ``counts`` (reads): exact Garwood for Poisson (φ = 1);
    over-dispersed counts (variance φ·mean) use φ × the Garwood interval of counts ÷ φ."""
    phi = np.maximum(np.asarray(dispersion, dtype=np.float64), 1.0)
    c = np.asarray(counts, dtype=np.float64) / phi
    alpha = 1.0 - level
    with np.errstate(invalid="ignore"):
        lo = np.where(c > 0, stats.chi2.ppf(alpha / 2, 2 * c) / 2, 0.0)
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * (c + 1)) / 2
    return lo * phi, hi * phi


def bin_dispersion(counts: np.ndarray, medians: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Per-sample bin-to-bin overdispersion φ of chromosome counts (variance ÷ Poisson variance).

    Differences between neighbouring bins remove smooth trends (replication
    gradient, large CN segments); their robust variance (1.4826·MAD)² ÷ 2 is
    compared with the Poisson variance (the median count). Bins with a zero
    count are left out. Clipped to [1, ``MAX_DISPERSION``]. Works on
    memory-maps in chunks of ``chunk`` samples.
    """
    n = counts.shape[0]
    out = np.ones(n, dtype=np.float64)
    med = np.asarray(medians, dtype=np.float64)

    for lo in range(0, n, chunk):
        block = np.asarray(counts[lo:lo + chunk], dtype=np.float64)
        block = np.where(block > 0, block, np.nan)
        d = np.diff(block, axis=1)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = np.nanmedian(d, axis=1)
            var = (1.4826 * np.nanmedian(np.abs(d - centre[:, None]), axis=1)) ** 2 / 2.0
            phi = var / med[lo:lo + chunk]
        out[lo:lo + chunk] = np.where(np.isfinite(phi), phi, 1.0)
    return np.clip(out, 1.0, MAX_DISPERSION)
