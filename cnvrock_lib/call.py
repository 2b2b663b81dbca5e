"""Stage 03: chromosomal (CRR) and plasmid (PCN) gene callers (SPEC §7).

Pure functions take arrays and return arrays, so each rule can be tested on
constructed cases; :func:`call_genes` loads the stage 01/02 artefacts and the
stores named by the params, applies them and writes ``gene_calls.tsv``,
``plasmid_gene_calls.tsv`` and ``pcn_thresholds.tsv`` (docs/calling.md).

Units: counts are reads (read starts) per bin, copy ratios and CRR are copies
relative to the sample's haploid baseline, PCN is copies per chromosome,
lengths and positions are bp (1-based inclusive).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import reference
from .atomic import write_tsv
from .errors import InputError
from .normalise import sample_medians
from .params import Params
from .reference import BIN_SIZE
from .store import NpyStore, open_store

CN_STATES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
CN0_STATE = 0          # index of CN 0 in CN_STATES
CN1_STATE = 2          # index of CN 1
AMP_MIN_STATE = 3      # first state with CN >= 1.5

CHROM_LABELS = {-1: "uncallable", 0: "absent", 1: "normal", 2: "amplified"}
PLASMID_LABELS = {-1: "uncallable", 0: "absent", 1: "present", 2: "amplified"}

GENE_CALL_COLUMNS = ["sample_id", "gene", "call", "label", "crr", "crr_lo", "crr_hi", "confidence",
                     "status", "n_gene_bins", "n_usable_bins", "species"]
PLASMID_CALL_COLUMNS = ["sample_id", "gene", "level", "call", "label", "pcn", "pcn_lo", "pcn_hi",
                        "confidence", "status", "backbone_pcn", "absent_threshold", "threshold_method"]
THRESHOLD_COLUMNS = ["level", "gene", "fixed_threshold", "mixture_threshold", "used_threshold", "method_used",
                     "fallback_reason", "n_samples", "n_fit", "n_components", "n_high", "weight_low", "weight_high", "mean_low",
                     "mean_high", "sd_low", "sd_high", "delta_bic", "ashman_d", "converged"]

# Local baseline: with fewer usable flank bins than this, or a flank median
# below MIN_FLANK_MEDIAN copies (flank deleted), the flank cannot serve as a
# baseline and the genome-wide baseline (copy ratio 1 by normalisation) is used.
MIN_FLANK_BINS = 5
MIN_FLANK_MEDIAN = 0.25
# Per-bin overdispersion of counts (variance / Poisson variance), estimated
# from the flank, is clipped to this range.
MAX_DISPERSION = 100.0
# Backbone PCN ignores contig-end bins shorter than this (bp): too few reads.
MIN_BACKBONE_BIN_BP = BIN_SIZE // 2
# Mixture thresholds: log10 PCN of the values >= MIXTURE_FIT_FLOOR copies is
# fitted; MIXTURE_REG_COVAR (log10 units squared) keeps components from
# collapsing onto a few equal values.
MIXTURE_FIT_FLOOR = 0.05
MIXTURE_REG_COVAR = 1e-2
MIXTURE_MIN_SAMPLES = 20
MIXTURE_MIN_DELTA_BIC = 10.0
MIXTURE_MIN_ASHMAN_D = 2.0
MIXTURE_MIN_WEIGHT = 0.005


# --------------------------------------------------------------------------
# Gene geometry
# --------------------------------------------------------------------------
def gene_bin_weights(bins: np.ndarray, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins overlapping a gene and the overlap of each with the gene.

    Parameters
    ----------
    bins : structured array with ``chrom``, ``start``, ``end`` (bp, 1-based inclusive).
    contig, start, end : the gene region (bp, 1-based inclusive).

    Returns
    -------
    indices : int64 bin indices, in store order.
    overlap_bp : int64 bp of the gene inside each of those bins (the weights).
    """
    on_contig = bins["chrom"] == contig
    lo = np.maximum(bins["start"], start)
    hi = np.minimum(bins["end"], end)
    overlap = np.where(on_contig, hi - lo + 1, 0)
    idx = np.flatnonzero(overlap > 0)
    return idx.astype(np.int64), overlap[idx].astype(np.int64)


def flank_bin_indices(bins: np.ndarray, contig: str, start: int, end: int, padding: int,
                      exclude: np.ndarray) -> np.ndarray:
    """Bins within ``padding`` bp either side of a gene on its contig, without the gene bins.

    A gene near a contig end gets a one-sided flank. Returns int64 indices.
    """
    on_contig = bins["chrom"] == contig
    near = on_contig & (bins["end"] >= start - padding) & (bins["start"] <= end + padding)
    near[np.asarray(exclude, dtype=np.int64)] = False
    return np.flatnonzero(near).astype(np.int64)


# --------------------------------------------------------------------------
# Chromosomal caller: CRR, state coverage, rule, QC
# --------------------------------------------------------------------------
def weighted_gene_ratio(gene_ratios: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlap-weighted mean copy ratio over a gene's usable (non-NaN) bins.

    Parameters
    ----------
    gene_ratios : (n_samples, n_gene_bins) copy ratios, NaN where masked.
    weights : (n_gene_bins,) overlap of each bin with the gene (bp).

    Returns
    -------
    ratio : (n_samples,) copies; NaN where no gene bin is usable.
    n_usable : (n_samples,) usable gene bins.
    """
    ratios = np.asarray(gene_ratios, dtype=np.float64)
    usable = np.isfinite(ratios)
    w = np.where(usable, np.asarray(weights, dtype=np.float64)[None, :], 0.0)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, (np.where(usable, ratios, 0.0) * w).sum(axis=1) / total, np.nan)
    return ratio, usable.sum(axis=1)


def flank_baseline(flank_ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local baseline: median flank copy ratio per sample, or 1 where the flank cannot serve.

    Returns ``(baseline, is_local)``: copies (n_samples,) and whether the flank
    median was used (at least ``MIN_FLANK_BINS`` usable bins and a median of at
    least ``MIN_FLANK_MEDIAN``).
    """
    ratios = np.asarray(flank_ratios, dtype=np.float64)
    n_usable = np.isfinite(ratios).sum(axis=1)
    if ratios.shape[1] == 0:
        return np.ones(ratios.shape[0]), np.zeros(ratios.shape[0], dtype=bool)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
            med = np.nanmedian(ratios, axis=1)
    is_local = (n_usable >= MIN_FLANK_BINS) & np.isfinite(med) & (med >= MIN_FLANK_MEDIAN)
    return np.where(is_local, med, 1.0), is_local


def crr(gene_ratios: np.ndarray, weights: np.ndarray, flank_ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copy-ratio ratio: gene copy ratio ÷ local flank baseline (copies).

    Parameters
    ----------
    gene_ratios : (n_samples, n_gene_bins) copy ratios of the bins overlapping the gene (NaN masked).
    weights : (n_gene_bins,) overlap bp of each gene bin.
    flank_ratios : (n_samples, n_flank_bins) copy ratios of the flank bins (NaN masked).

    Returns
    -------
    crr : (n_samples,) NaN where the gene has no usable bin.
    n_usable : (n_samples,) usable gene bins.
    """
    gene, n_usable = weighted_gene_ratio(gene_ratios, weights)
    baseline, _ = flank_baseline(flank_ratios)
    return gene / baseline, n_usable


def state_cover(gene_states: np.ndarray, usable: np.ndarray, weights: np.ndarray,
                states: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """Share of a gene's usable bins (weighted by overlap bp) whose HMM state is in ``states``.

    Returns (n_samples,) in [0, 1]; 0 where no bin is usable.
    """
    w = np.where(usable, np.asarray(weights, dtype=np.float64)[None, :], 0.0)
    hit = np.isin(gene_states, np.asarray(states))
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * hit).sum(axis=1) / total, 0.0)


@dataclass(frozen=True)
class ChromRule:
    """Thresholds of the chromosomal call rule (params keys of the seed)."""

    amp_threshold: float = 1.75         # cnv_crr_amp_threshold (copies)
    gate_threshold: float = 1.75        # cnv_crr_gate_threshold (copies)
    min_bins_hmm: int = 3               # cnv_crr_min_bins_fallback (bins)
    min_cover: float = 0.50             # cnv_min_gene_coverage_fraction

    @classmethod
    def from_params(cls, params: Params) -> "ChromRule":
        return cls(float(params.cnv_crr_amp_threshold), float(params.cnv_crr_gate_threshold),
                   int(params.cnv_crr_min_bins_fallback), float(params.cnv_min_gene_coverage_fraction))


def chromosomal_call(crr_value: np.ndarray, n_usable: np.ndarray, amp_cover: np.ndarray,
                     absent_cover: np.ndarray, rule: ChromRule) -> np.ndarray:
    """Apply the call rule to callable genes (SPEC §7.1); broadcasts, e.g. over bootstrap replicates.

    amplified (2): CRR ≥ ``amp_threshold`` and, for genes with at least
    ``min_bins_hmm`` usable bins, HMM states ≥ CN 1.5 covering ≥ ``min_cover``
    of the gene with CRR ≥ ``gate_threshold`` (short genes rely on CRR alone);
    absent (0): CN-0 states cover ≥ ``min_cover``; otherwise normal (1).
    NaN CRR gives −1. Returns int8.
    """
    crr_value = np.asarray(crr_value, dtype=np.float64)
    long_gene = np.asarray(n_usable) >= rule.min_bins_hmm
    hmm_support = (np.asarray(amp_cover) >= rule.min_cover) & (crr_value >= rule.gate_threshold)
    amplified = (crr_value >= rule.amp_threshold) & (~long_gene | hmm_support)
    absent = np.asarray(absent_cover) >= rule.min_cover
    call = np.where(amplified, 2, np.where(absent, 0, 1))
    return np.where(np.isfinite(crr_value), call, -1).astype(np.int8)


def sample_cn1_fraction(copy_ratios: np.ndarray, states: np.ndarray, posteriors: np.ndarray,
                        min_confidence: float, chunk: int = 512) -> np.ndarray:
    """Per sample, the share of usable bins in the CN-1 state with posterior ≥ ``min_confidence``.

    Works on memory-maps in chunks of ``chunk`` samples. Returns float64 (n_samples,);
    0 for a sample without usable bins.
    """
    n = copy_ratios.shape[0]
    out = np.zeros(n, dtype=np.float64)
    for lo in range(0, n, chunk):
        usable = np.isfinite(np.asarray(copy_ratios[lo:lo + chunk]))
        confident = (np.asarray(states[lo:lo + chunk]) == CN1_STATE) & \
            (np.asarray(posteriors[lo:lo + chunk]) >= min_confidence)
        n_usable = usable.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:lo + chunk] = np.where(n_usable > 0, (usable & confident).sum(axis=1) / n_usable, 0.0)
    return out


# --------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------
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
    import warnings

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
    from scipy.special import betainc

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


# --------------------------------------------------------------------------
# Plasmid caller
# --------------------------------------------------------------------------
def chromosome_depth_per_bp(medians: np.ndarray, bin_size: int = BIN_SIZE) -> np.ndarray:
    """Chromosome depth in reads per bp from per-sample median reads per bin."""
    return np.asarray(medians, dtype=np.float64) / float(bin_size)


def pcn(gene_counts: np.ndarray, length_bp: float | np.ndarray, chrom_depth_bp: np.ndarray) -> np.ndarray:
    """Plasmid copy number: (reads ÷ length bp) ÷ chromosome reads per bp (copies per chromosome)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(gene_counts, dtype=np.float64) / np.asarray(length_bp, dtype=np.float64) \
            / np.asarray(chrom_depth_bp, dtype=np.float64)


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
    import warnings

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


def plasmid_call(pcn_value: np.ndarray, absent_threshold: float | np.ndarray, amp_threshold: float) -> np.ndarray:
    """0 absent (PCN < absent threshold), 2 amplified (PCN ≥ ``amp_threshold``), else 1; −1 for NaN. int8."""
    v = np.asarray(pcn_value, dtype=np.float64)
    call = np.where(v < absent_threshold, 0, np.where(v >= amp_threshold, 2, 1))
    return np.where(np.isfinite(v), call, -1).astype(np.int8)


def pcn_call_confidence(counts: np.ndarray, reads_per_copy: np.ndarray, call: np.ndarray,
                        absent_threshold: float | np.ndarray, amp_threshold: float,
                        dispersion: float | np.ndarray = 1.0) -> np.ndarray:
    """Posterior probability that the PCN lies in the called class.

    The mean of the gene's reads has a Jeffreys posterior Gamma(count + ½, 1)
    for Poisson counts, φ·Gamma(count/φ + ½, 1) for over-dispersed ones;
    ``reads_per_copy`` (length bp × chromosome reads per bp) turns the class
    bounds into reads. NaN for uncallable calls.
    """
    phi = np.maximum(np.asarray(dispersion, dtype=np.float64), 1.0)
    c = np.asarray(counts, dtype=np.float64)
    scale = np.asarray(reads_per_copy, dtype=np.float64)
    lo_reads = np.asarray(absent_threshold, dtype=np.float64) * scale
    amp_reads = amp_threshold * scale
    post = stats.gamma(c / phi + 0.5, scale=phi)
    p_absent = post.cdf(lo_reads)
    p_amp = post.sf(amp_reads)
    p_present = np.clip(1.0 - p_absent - p_amp, 0.0, 1.0)
    call = np.asarray(call)
    return np.select([call == 0, call == 1, call == 2], [p_absent, p_present, p_amp], default=np.nan)


def backbone_pcn(contig_counts: np.ndarray, bin_lengths: np.ndarray, chrom_depth_bp: np.ndarray) -> np.ndarray:
    """Plasmid backbone PCN: median over a contig's bins of reads per bp ÷ chromosome reads per bp.

    Bins shorter than ``MIN_BACKBONE_BIN_BP`` (a contig's partial last bin) are left out.
    Returns (n_samples,) copies per chromosome.
    """
    lengths = np.asarray(bin_lengths, dtype=np.float64)
    keep = lengths >= MIN_BACKBONE_BIN_BP
    if not keep.any():
        keep = lengths > 0
    per_bp = np.asarray(contig_counts, dtype=np.float64)[:, keep] / lengths[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.median(per_bp, axis=1) / np.asarray(chrom_depth_bp, dtype=np.float64)


@dataclass
class MixtureFit:
    """Gaussian mixture on log10 PCN and the absent threshold between its two lowest components."""

    threshold: float            # PCN (copies); NaN when the fit was rejected
    n_samples: int              # finite PCN values offered
    n_fit: int                  # values >= MIXTURE_FIT_FLOOR that were fitted
    n_components: int           # 2 or 3 (lower BIC)
    n_high: int                 # samples at or above the threshold
    weight_low: float           # lowest component (non-carriers' background)
    weight_high: float          # second-lowest component (the lowest carrier group)
    mean_low: float             # log10 PCN
    mean_high: float
    sd_low: float
    sd_high: float
    delta_bic: float            # BIC(1 component) − BIC(chosen); large = groups exist
    ashman_d: float             # separation of the two lowest components (> 2: clean split)
    converged: bool
    fallback_reason: str = ""   # why the fit is not used ("" when it is)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _gaussian_crossing(w1, m1, s1, w2, m2, s2) -> float:
    """Point between m1 < m2 where w1·N(m1, s1) = w2·N(m2, s2) (midpoint if none)."""
    a = 1 / (2 * s2 ** 2) - 1 / (2 * s1 ** 2)
    b = m1 / s1 ** 2 - m2 / s2 ** 2
    c = m2 ** 2 / (2 * s2 ** 2) - m1 ** 2 / (2 * s1 ** 2) + np.log((w1 * s2) / (w2 * s1))
    if abs(a) < 1e-12:
        roots = np.array([-c / b]) if abs(b) > 1e-12 else np.array([])
    else:
        disc = b * b - 4 * a * c
        roots = np.array([]) if disc < 0 else (-b + np.array([-1.0, 1.0]) * np.sqrt(disc)) / (2 * a)
    inside = roots[(roots > m1) & (roots < m2)]
    return float(inside[0]) if inside.size else 0.5 * (m1 + m2)


@dataclass
class _Gmm1d:
    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    loglik: float
    converged: bool

    def bic(self, n: int) -> float:
        return -2.0 * self.loglik + (3 * self.means.size - 1) * np.log(n)


def _fit_gmm_1d(x: np.ndarray, k: int, reg_var: float, max_iter: int = 300, tol: float = 1e-7) -> _Gmm1d:
    """EM for a k-component Gaussian mixture in 1-D; deterministic starts at spread quantiles.

    Two starts (component means at evenly spread and at tail-heavy quantiles);
    the one with the higher log-likelihood is kept. ``reg_var`` is added to
    every variance so that no component collapses onto equal values.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    best = None
    starts = [np.arange(1, k + 1) / (k + 1)] + ([np.linspace(0.05, 0.95, k)] if k > 1 else [])
    for q in starts:
        m = np.quantile(x, q)
        v = np.full(k, np.var(x) / k + reg_var)
        w = np.full(k, 1.0 / k)
        prev = -np.inf
        converged = False
        for _ in range(max_iter):
            logp = np.log(w) - 0.5 * np.log(2 * np.pi * v) - 0.5 * (x[:, None] - m) ** 2 / v
            top = logp.max(axis=1, keepdims=True)
            norm = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
            ll = float(norm.sum())
            resp = np.exp(logp - norm[:, None])
            nk = resp.sum(axis=0) + 1e-12
            w = nk / x.size
            m = (resp * x[:, None]).sum(axis=0) / nk
            v = (resp * (x[:, None] - m) ** 2).sum(axis=0) / nk + reg_var
            if abs(ll - prev) <= tol * max(1.0, abs(ll)):
                converged = True
                break
            prev = ll
        fit = _Gmm1d(w, m, np.sqrt(v), ll, converged)
        if best is None or fit.loglik > best.loglik:
            best = fit
    return best


def fit_mixture_threshold(pcn_values: np.ndarray, amp_threshold: float = 1.5) -> MixtureFit:
    """Learn a family's absent threshold from the cohort: a Gaussian mixture on log10 PCN.

    Values below ``MIXTURE_FIT_FLOOR`` (reads of nothing but stray mappings)
    are absent under any threshold and left out, so that a spike of zeros does
    not become a component of its own. Mixtures of 2 and 3 components are fitted
    (3 lets carriers of a low- and a high-copy plasmid form two groups) and the
    one with the lower BIC is kept; the threshold is where the weighted
    densities of its two lowest components cross. The fit is rejected
    (``threshold`` NaN, ``fallback_reason`` set) with fewer than
    ``MIXTURE_MIN_SAMPLES`` fitted values, when one component fits as well
    (ΔBIC < ``MIXTURE_MIN_DELTA_BIC``), when the two lowest components overlap
    (Ashman's D < ``MIXTURE_MIN_ASHMAN_D``), when one is nearly empty (weight <
    ``MIXTURE_MIN_WEIGHT``) or when the threshold reaches ``amp_threshold``
    (the "background" component would then hold carriers).

    Parameters
    ----------
    pcn_values : PCN (copies per chromosome) of the callable samples; NaN ignored.
    amp_threshold : the amplification threshold (copies); an absent threshold must stay below it.

    The fit is deterministic (EM from fixed quantile starts), so no seed is needed.
    """
    v = np.asarray(pcn_values, dtype=np.float64)
    v = v[np.isfinite(v)]
    fitted = v[v >= MIXTURE_FIT_FLOOR]
    nan = float("nan")

    def rejected(reason: str, n_comp: int = 0, delta_bic: float = nan) -> MixtureFit:
        return MixtureFit(nan, int(v.size), int(fitted.size), n_comp, 0, nan, nan, nan, nan, nan, nan,
                          delta_bic, nan, False, reason)

    if fitted.size < MIXTURE_MIN_SAMPLES:
        return rejected(f"fewer than {MIXTURE_MIN_SAMPLES} samples with PCN >= {MIXTURE_FIT_FLOOR:g}")
    x = np.log10(fitted)
    if np.ptp(x) < 1e-6:
        return rejected("all values equal")
    models = {k: _fit_gmm_1d(x, k, MIXTURE_REG_COVAR) for k in (1, 2, 3)}
    bic = {k: float(m.bic(x.size)) for k, m in models.items()}
    k = 2 if bic[2] <= bic[3] else 3
    model = models[k]
    order = np.argsort(model.means)
    w = model.weights[order]
    m = model.means[order]
    s = model.sds[order]
    delta_bic = bic[1] - bic[k]
    ashman = float(np.sqrt(2.0) * abs(m[1] - m[0]) / np.sqrt(s[0] ** 2 + s[1] ** 2))
    threshold = float(10 ** _gaussian_crossing(w[0], m[0], s[0], w[1], m[1], s[1]))
    reason = ""
    if not model.converged:
        reason = "mixture did not converge"
    elif delta_bic < MIXTURE_MIN_DELTA_BIC:
        reason = f"one component fits as well (delta BIC {delta_bic:.1f} < {MIXTURE_MIN_DELTA_BIC:g})"
    elif ashman < MIXTURE_MIN_ASHMAN_D:
        reason = f"lowest components overlap (Ashman D {ashman:.2f} < {MIXTURE_MIN_ASHMAN_D:g})"
    elif w[:2].min() < MIXTURE_MIN_WEIGHT:
        reason = f"a component holds < {MIXTURE_MIN_WEIGHT:g} of the samples"
    elif threshold >= amp_threshold:
        reason = (f"threshold {threshold:.2f} reaches the amplification threshold {amp_threshold:g}: "
                  f"the low component holds carriers")
    return MixtureFit(threshold if not reason else nan, int(v.size), int(fitted.size), k,
                      int((v >= threshold).sum()), float(w[0]), float(w[1]), float(m[0]), float(m[1]),
                      float(s[0]), float(s[1]), delta_bic, ashman, bool(model.converged), reason)


# --------------------------------------------------------------------------
# Plasmid regions (1 kb bin store or legacy per-gene store)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class PlasmidRegion:
    """Where a plasmid gene's reads are in the plasmid store."""

    gene: str
    contig: str
    columns: np.ndarray         # store column indices summed for the gene
    length_bp: int              # effective length (span of those bins, bp)


def _legacy_span(start: int, end: int, contig_length: int | None) -> int:
    """Span (bp) of the whole 1 kb bins overlapping [start, end], clipped at the contig end."""
    first = (start - 1) // BIN_SIZE * BIN_SIZE + 1
    last = -(-end // BIN_SIZE) * BIN_SIZE
    if contig_length is not None:
        last = min(last, contig_length)
    return int(last - first + 1)


def plasmid_regions(store: NpyStore, panel: pd.DataFrame, source: str) -> list[PlasmidRegion]:
    """Map each panel gene to store columns and an effective length (bp).

    A 1 kb bin store ("bins" layout): the bins overlapping the gene, length =
    their summed length. A legacy store ("genes" layout, one column per gene):
    the column on the gene's contig overlapping the gene (or whose ``chrom`` is
    the gene name), length = span of the whole 1 kb bins overlapping that
    column's region. Raises InputError naming a gene the store lacks.
    """
    bins = store.bins
    lengths = store.bin_lengths
    contig_len = dict(zip(reference.load_contigs()["contig"], reference.load_contigs()["length"]))
    out = []
    for row in panel.itertuples():
        if store.layout == "bins":
            idx, _ = gene_bin_weights(bins, row.contig, int(row.start), int(row.end))
            if idx.size == 0:
                raise InputError(f"plasmid store {store.path}: no bin overlaps gene {row.gene} "
                                 f"({row.contig}:{row.start}-{row.end}) from {source}")
            out.append(PlasmidRegion(row.gene, row.contig, idx, int(lengths[idx].sum())))
        else:
            hit = np.flatnonzero(((bins["chrom"] == row.contig) & (bins["start"] <= row.end)
                                  & (bins["end"] >= row.start)) | (bins["chrom"] == row.gene))
            if hit.size != 1:
                raise InputError(f"legacy plasmid store {store.path}: expected one column for gene {row.gene} "
                                 f"({row.contig}:{row.start}-{row.end}), found {hit.size}")
            b = bins[hit[0]]
            clen = contig_len.get(row.contig)
            clen = int(clen) if clen is not None else None
            out.append(PlasmidRegion(row.gene, row.contig, hit, _legacy_span(int(b["start"]), int(b["end"]), clen)))
    return out


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
def _load_artefact(out_dir: Path, name: str, shape: tuple[int, int] | None, what: str) -> np.ndarray:
    path = out_dir / name
    if not path.is_file():
        raise InputError(f"{name} not found in {out_dir}; {what} writes it — run that stage first")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path} is not a readable .npy array: {exc}") from None
    if shape is not None and arr.shape != shape:
        raise InputError(f"{path} has shape {arr.shape}; expected {shape} (samples x bins of the store "
                         f"{'' if len(shape) == 2 else 'samples '}) — is it from another store? rerun {what}")
    return arr


def load_species(meta_path: str | None, sample_ids: np.ndarray) -> np.ndarray:
    """Species per sample from the metadata TSV (``Species`` column); '' where unknown."""
    out = np.full(len(sample_ids), "", dtype=object)
    if not meta_path:
        return out
    meta = reference.read_tsv(meta_path, ["sample_id", "Species"], "metadata (kpsc_meta_path)")
    dup = meta["sample_id"].duplicated()
    if dup.any():
        raise InputError(f"metadata {meta_path}: sample_id {meta['sample_id'][dup].iloc[0]!r} appears twice")
    lookup = dict(zip(meta["sample_id"], meta["Species"].str.strip()))
    return np.array([lookup.get(s, "") for s in sample_ids], dtype=object)


def _check_qc_order(out_dir: Path, sample_ids: np.ndarray) -> None:
    path = out_dir / "sample_qc.tsv"
    if not path.is_file():
        return
    qc = reference.read_tsv(path, ["sample_id"], "stage-02 sample QC")
    if len(qc) != len(sample_ids) or not np.array_equal(qc["sample_id"].to_numpy(dtype=str), sample_ids):
        raise InputError(f"{path} lists {len(qc)} samples that do not match the {len(sample_ids)} samples of the "
                         f"chromosome store in order; the stage-02 artefacts are stale — rerun stage 02")


def _species_callable(gene: str, species: np.ndarray, eval_species: dict) -> np.ndarray:
    """True where the gene is callable for the sample's species; unknown species are callable."""
    allowed = eval_species.get(gene)
    if allowed is None:
        return np.ones(len(species), dtype=bool)
    allowed = {a.strip() for a in allowed}
    return np.array([(s == "") or (s in allowed) for s in species], dtype=bool)


# --------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------
@dataclass
class CallResult:
    """What stage 03 produced: the tidy call tables and where they were written."""

    gene_calls: pd.DataFrame
    plasmid_calls: pd.DataFrame
    thresholds: pd.DataFrame
    sample_qc: pd.DataFrame          # sample_id, cn1_fraction, qc_pass, chrom_depth_bp
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _round(frame: pd.DataFrame, cols: list[str], digits: int = 5) -> pd.DataFrame:
    for c in cols:
        frame[c] = frame[c].astype(float).round(digits)
    return frame


def call_chromosomal_genes(params: Params, store: NpyStore | None = None,
                           cn1_fraction: np.ndarray | None = None) -> pd.DataFrame:
    """Chromosomal gene calls (SPEC §7.1) for every store sample × panel gene; returns the
    ``gene_calls.tsv`` table (not written; :func:`call_genes` writes it)."""
    out_dir = params.out_path
    store = store or open_store(params.store_path)
    n, n_bins = store.counts.shape
    ids = store.sample_ids
    ratios = _load_artefact(out_dir, "copy_ratios.npy", (n, n_bins), "stage 02")
    states = _load_artefact(out_dir, "states.npy", (n, n_bins), "stage 02")
    posteriors = _load_artefact(out_dir, "state_posteriors.npy", (n, n_bins), "stage 02")
    if cn1_fraction is None:
        cn1_fraction = sample_cn1_fraction(ratios, states, posteriors, float(params.cnv_min_confidence))
    qc_pass = cn1_fraction >= float(params.cnv_min_cn1_proportion)
    species = load_species(params.kpsc_meta_path, ids)
    panel = reference.load_gene_panel(params.chrom_gene_coords_path, "chromosome")
    panel.check_against(store.bins, str(params.chrom_gene_coords_path or "packaged panel"))
    rule = ChromRule.from_params(params)
    frames = []
    for k, gene in enumerate(panel.genes.itertuples()):
        idx, weights = gene_bin_weights(store.bins, gene.contig, int(gene.start), int(gene.end))
        flank = flank_bin_indices(store.bins, gene.contig, int(gene.start), int(gene.end),
                                  int(params.cnv_flank_padding), idx)
        g_ratio = np.asarray(ratios[:, idx], dtype=np.float64)
        g_state = np.asarray(states[:, idx])
        g_post = np.asarray(posteriors[:, idx], dtype=np.float64)
        g_count = np.asarray(store.counts[:, idx], dtype=np.float64)
        f_ratio = np.asarray(ratios[:, flank], dtype=np.float64)
        f_count = np.asarray(store.counts[:, flank], dtype=np.float64)
        value, n_usable = crr(g_ratio, weights, f_ratio)
        usable = np.isfinite(g_ratio)
        amp_cover = state_cover(g_state, usable, weights, tuple(range(AMP_MIN_STATE, len(CN_STATES))))
        absent_cover = state_cover(g_state, usable, weights, (CN0_STATE,))
        call = chromosomal_call(value, n_usable, amp_cover, absent_cover, rule)
        species_ok = _species_callable(gene.gene, species, params.eval_species)
        status = np.where(~species_ok, "species_excluded",
                          np.where(~qc_pass, "qc_fail", np.where(n_usable == 0, "no_usable_bins", "ok")))
        call = np.where(status == "ok", call, -1).astype(np.int8)

        lo = np.full(n, np.nan)
        hi = np.full(n, np.nan)
        confidence = np.full(n, np.nan)
        ok = status == "ok"
        if ok.any():
            rng = np.random.default_rng([int(params.seed), 3, k])
            phi = count_dispersion(f_ratio[ok], f_count[ok])
            reps = bootstrap_crr(g_ratio[ok], g_count[ok], weights, f_ratio[ok], phi,
                                 int(params.bootstrap_replicates), rng)
            lo[ok], hi[ok] = bootstrap_interval(reps)
            rep_calls = chromosomal_call(reps, n_usable[ok][:, None], amp_cover[ok][:, None],
                                         absent_cover[ok][:, None], rule)
            agreement = (rep_calls == call[ok][:, None]).mean(axis=1)
            w = np.where(usable[ok], weights[None, :], 0.0)
            mean_post = (w * np.nan_to_num(g_post[ok])).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
            confidence[ok] = agreement * mean_post
        frames.append(pd.DataFrame({
            "sample_id": ids, "gene": gene.gene, "call": call,
            "label": pd.Series(call).map(CHROM_LABELS).to_numpy(),
            "crr": value, "crr_lo": lo, "crr_hi": hi, "confidence": confidence, "status": status,
            "n_gene_bins": np.full(n, idx.size, dtype=np.int64), "n_usable_bins": n_usable.astype(np.int64),
            "species": species,
        }))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=GENE_CALL_COLUMNS)
    return _round(table[GENE_CALL_COLUMNS], ["crr", "crr_lo", "crr_hi", "confidence"])


def _threshold_table(pcn_by_name: dict[tuple[str, str], np.ndarray], fixed: dict[tuple[str, str], float],
                     method: str, amp_threshold: float) -> pd.DataFrame:
    rows = []
    fits: dict[bytes, MixtureFit] = {}   # a one-member family has its member's values: fit once
    for (level, name), values in pcn_by_name.items():
        key = np.asarray(values, dtype=np.float64).tobytes()
        if key not in fits:
            fits[key] = fit_mixture_threshold(values, amp_threshold=amp_threshold)
        fit = fits[key]
        use_mixture = method == "mixture" and np.isfinite(fit.threshold)
        d = fit.as_dict()
        d.pop("threshold")
        d.pop("fallback_reason")
        rows.append({"level": level, "gene": name, "fixed_threshold": fixed[(level, name)],
                     "mixture_threshold": fit.threshold,
                     "used_threshold": fit.threshold if use_mixture else fixed[(level, name)],
                     "method_used": "mixture" if use_mixture else "fixed",
                     "fallback_reason": fit.fallback_reason, **d})
    frame = pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)
    return frame


def call_plasmid_genes(params: Params, chrom_sample_ids: np.ndarray, chrom_medians: np.ndarray,
                       dispersion: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plasmid gene calls (SPEC §7.2) at member and family level, and the threshold table.

    Parameters
    ----------
    chrom_sample_ids : samples of the chromosome store (the rows of the output).
    chrom_medians : (n,) their robust median chromosome counts (reads per 1 kb bin).
    dispersion : (n,) bin-level count overdispersion φ (:func:`bin_dispersion`) for the
        PCN intervals; None = Poisson.

    Returns ``(plasmid_gene_calls, pcn_thresholds)`` tables (not written).
    """
    store = open_store(params.plasmid_store_path)
    panel_obj = reference.load_gene_panel(params.plasmid_gene_coords_path, "plasmid")
    panel = panel_obj.genes
    source = str(params.plasmid_gene_coords_path or "packaged panel")
    if store.layout == "bins":
        panel_obj.check_against(store.bins, source)
    families = reference.load_gene_families(params.plasmid_gene_families_path)
    genes = set(panel["gene"])
    for fam, members in families.items():
        missing = [m for m in members if m not in genes]
        if missing:
            raise InputError(f"gene families {params.plasmid_gene_families_path or 'packaged'}: family {fam} "
                             f"lists {missing}, which the plasmid gene panel {source} does not contain")
    regions = {r.gene: r for r in plasmid_regions(store, panel, source)}

    n = len(chrom_sample_ids)
    lookup = {s: i for i, s in enumerate(store.sample_ids.tolist())}
    rows = np.array([lookup.get(s, -1) for s in chrom_sample_ids], dtype=np.int64)
    present = rows >= 0
    depth_bp = chromosome_depth_per_bp(chrom_medians)
    low_depth = np.asarray(chrom_medians) < float(params.hmm_low_cov_threshold)
    status = np.where(~present, "no_plasmid_counts", np.where(low_depth, "low_depth", "ok"))
    callable_ = status == "ok"

    # One pass over the plasmid store, aligned to the chromosome store's samples.
    if present.all() and np.array_equal(rows, np.arange(store.n_samples)):
        aligned = np.asarray(store.counts)
    else:
        aligned = np.zeros((n, store.n_bins), dtype=store.counts.dtype)
        aligned[present] = np.asarray(store.counts)[rows[present]]

    def gather(cols: np.ndarray) -> np.ndarray:
        return np.asarray(aligned[:, cols], dtype=np.float64)

    member_counts = {g: gather(r.columns).sum(axis=1) for g, r in regions.items()}
    backbone = {}
    slices = store.contig_slices() if store.layout == "bins" else {}
    for g, r in regions.items():
        if r.contig in slices:
            sl = slices[r.contig]
            cols = np.arange(sl.start, sl.stop)
            backbone[g] = backbone_pcn(gather(cols), store.bin_lengths[cols], depth_bp)
        else:
            backbone[g] = np.full(n, np.nan)

    default_thr = float(params.pcn_absent_threshold)
    entries = []   # (level, name, counts, length, backbone, fixed threshold)
    for row in panel.itertuples():
        thr = getattr(row, "absent_threshold", np.nan)
        thr = default_thr if thr is None or not np.isfinite(thr) else float(thr)
        r = regions[row.gene]
        entries.append(("member", row.gene, member_counts[row.gene], float(r.length_bp), backbone[row.gene], thr))
    member_thr = {e[1]: e[5] for e in entries}
    for fam, members in families.items():
        counts = np.sum([member_counts[m] for m in members], axis=0)
        length = float(np.mean([regions[m].length_bp for m in members]))
        member_pcn = np.stack([pcn(member_counts[m], regions[m].length_bp, depth_bp) for m in members])
        best = np.argmax(np.nan_to_num(member_pcn, nan=-1.0), axis=0)
        bb = np.stack([backbone[m] for m in members])[best, np.arange(n)]
        # A family is called against the most conservative of its members' thresholds.
        entries.append(("family", fam, counts, length, bb, max(member_thr[m] for m in members)))

    values = {(lvl, name): pcn(c, L, depth_bp) for lvl, name, c, L, _, _ in entries}
    fixed = {(lvl, name): thr for lvl, name, _, _, _, thr in entries}
    thresholds = _threshold_table({k: v[callable_] for k, v in values.items()}, fixed,
                                  params.pcn_threshold_method, float(params.pcn_amp_threshold))
    used = {(r.level, r.gene): (r.used_threshold, r.method_used) for r in thresholds.itertuples()}
    amp = float(params.pcn_amp_threshold)
    frames = []
    for lvl, name, counts, length, bb, _ in entries:
        value = values[(lvl, name)]
        thr, method = used[(lvl, name)]
        call = np.where(callable_, plasmid_call(value, thr, amp), -1).astype(np.int8)
        reads_per_copy = length * depth_bp
        phi = np.ones(n) if dispersion is None else np.asarray(dispersion, dtype=np.float64)
        c_lo, c_hi = poisson_interval(counts, dispersion=phi)
        conf = pcn_call_confidence(counts, reads_per_copy, call, thr, amp, dispersion=phi)
        frames.append(pd.DataFrame({
            "sample_id": chrom_sample_ids, "gene": name, "level": lvl, "call": call,
            "label": pd.Series(call).map(PLASMID_LABELS).to_numpy(),
            "pcn": np.where(present, value, np.nan),
            "pcn_lo": np.where(callable_, c_lo / reads_per_copy, np.nan),
            "pcn_hi": np.where(callable_, c_hi / reads_per_copy, np.nan),
            "confidence": np.where(callable_, conf, np.nan), "status": status,
            "backbone_pcn": np.where(present, bb, np.nan), "absent_threshold": thr, "threshold_method": method,
        }))
    table = pd.concat(frames, ignore_index=True)[PLASMID_CALL_COLUMNS]
    return _round(table, ["pcn", "pcn_lo", "pcn_hi", "confidence", "backbone_pcn", "absent_threshold"]), thresholds


def chromosome_medians(params: Params, store: NpyStore) -> np.ndarray:
    """Per-sample robust median chromosome counts (reads per bin): stage 01's ``medians.npy`` when it
    matches the store, else computed with :func:`cnvrock_lib.normalise.sample_medians`."""
    path = params.out_path / "medians.npy"
    if path.is_file():
        med = np.load(path, allow_pickle=False)
        if med.shape == (store.n_samples,):
            return np.asarray(med, dtype=np.float64)
        raise InputError(f"{path} has shape {med.shape}; expected ({store.n_samples},) for the chromosome "
                         f"store {store.path} — rerun stage 01")
    return sample_medians(store.counts)


def call_genes(params: Params, write: bool = True) -> CallResult:
    """Stage 03: chromosomal and plasmid gene calls for every sample of the chromosome store.

    Reads ``copy_ratios.npy``, ``states.npy``, ``state_posteriors.npy`` (stage 02),
    ``medians.npy`` (stage 01), the stores and the gene panels; writes
    ``gene_calls.tsv``, ``plasmid_gene_calls.tsv`` and ``pcn_thresholds.tsv``
    into ``out_dir`` (header-only plasmid tables when ``plasmid_store_path`` is
    unset) and returns them as a :class:`CallResult`.
    """
    t0 = time.perf_counter()
    out_dir = params.out_path
    store = open_store(params.store_path)
    _check_qc_order(out_dir, store.sample_ids)
    n, n_bins = store.counts.shape
    ratios = _load_artefact(out_dir, "copy_ratios.npy", (n, n_bins), "stage 02")
    states = _load_artefact(out_dir, "states.npy", (n, n_bins), "stage 02")
    posteriors = _load_artefact(out_dir, "state_posteriors.npy", (n, n_bins), "stage 02")
    cn1 = sample_cn1_fraction(ratios, states, posteriors, float(params.cnv_min_confidence))
    medians = chromosome_medians(params, store)
    seconds = {"qc": time.perf_counter() - t0}

    t1 = time.perf_counter()
    gene_calls = call_chromosomal_genes(params, store, cn1)
    seconds["chromosomal"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    if params.plasmid_store_path:
        plasmid_calls, thresholds = call_plasmid_genes(params, store.sample_ids, medians,
                                                       bin_dispersion(store.counts, medians))
    else:
        plasmid_calls = pd.DataFrame(columns=PLASMID_CALL_COLUMNS)
        thresholds = pd.DataFrame(columns=THRESHOLD_COLUMNS)
    seconds["plasmid"] = time.perf_counter() - t2

    qc = pd.DataFrame({"sample_id": store.sample_ids, "cn1_fraction": cn1,
                       "qc_pass": cn1 >= float(params.cnv_min_cn1_proportion),
                       "chrom_depth_bp": chromosome_depth_per_bp(medians)})
    paths = {}
    if write:
        for name, frame in (("gene_calls.tsv", gene_calls), ("plasmid_gene_calls.tsv", plasmid_calls),
                            ("pcn_thresholds.tsv", thresholds)):
            write_tsv(out_dir / name, frame, na_rep="NA", float_format="%.6g")
            paths[name] = out_dir / name
    return CallResult(gene_calls, plasmid_calls, thresholds, qc, paths, seconds)


def read_calls(out_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``gene_calls.tsv`` and ``plasmid_gene_calls.tsv`` back with their dtypes."""
    out_dir = Path(out_dir)
    frames = []
    for name in ("gene_calls.tsv", "plasmid_gene_calls.tsv"):
        path = out_dir / name
        if not path.is_file():
            raise InputError(f"{name} not found in {out_dir}; run stage 03 first")
        frames.append(pd.read_csv(path, sep="\t", na_values=["NA"], keep_default_na=False,
                                  dtype={"sample_id": str, "gene": str, "species": str}))
    return frames[0], frames[1]


# --------------------------------------------------------------------------
# Simulated cohorts: calls against the simulator's truth
# --------------------------------------------------------------------------
def truth_metrics(gene_calls: pd.DataFrame, plasmid_calls: pd.DataFrame, gene_truth: pd.DataFrame,
                  amp_min_cn: float = 2.0) -> pd.DataFrame:
    """Score calls against a simulated cohort's ``truth/gene_truth.tsv`` (``sample_id gene level true_cn``).

    One row per gene × level × mode over callable samples (call ≥ 0):
    ``amp`` (chromosomal genes: true CN ≥ ``amp_min_cn`` vs call 2) and
    ``presence`` (true CN > 0 vs call ≥ 1). Columns: ``n_callable``,
    ``call_rate`` (callable ÷ all rows), ``n_pos``, ``tp fp fn``, ``recall``,
    ``precision``; the dosage error |value − true CN| (copies; median and 90th
    percentile) over all callable samples and over true positives, with the
    median relative error |value ÷ true CN − 1| over true positives; and
    ``interval_coverage``, the share of callable samples whose true CN lies in
    [lo, hi] (also over carriers).
    """
    truth = gene_truth
    parts = []
    if len(gene_calls):
        g = gene_calls.rename(columns={"crr": "value", "crr_lo": "lo", "crr_hi": "hi"}).assign(level="chromosome")
        parts.append(g[["sample_id", "gene", "level", "call", "value", "lo", "hi"]])
    if len(plasmid_calls):
        p = plasmid_calls.rename(columns={"pcn": "value", "pcn_lo": "lo", "pcn_hi": "hi"})
        parts.append(p[["sample_id", "gene", "level", "call", "value", "lo", "hi"]])
    if not parts:
        return pd.DataFrame()
    calls = pd.concat(parts, ignore_index=True)
    merged = calls.merge(truth[["sample_id", "gene", "level", "true_cn"]], on=["sample_id", "gene", "level"],
                         how="inner")
    rows = []
    for (gene, level), d in merged.groupby(["gene", "level"], sort=False):
        ok = d[d.call >= 0]
        modes = [("amp", ok.true_cn >= amp_min_cn, ok.call == 2)] if level == "chromosome" else []
        modes.append(("presence", ok.true_cn > 0, ok.call >= 1))
        err = (ok.value - ok.true_cn).abs()
        inside = (ok.lo <= ok.true_cn) & (ok.true_cn <= ok.hi)
        carrier = ok.true_cn > 0
        for mode, truth_pos, pred_pos in modes:
            tp = int((truth_pos & pred_pos).sum())
            fp = int((~truth_pos & pred_pos).sum())
            fn = int((truth_pos & ~pred_pos).sum())
            pos_err = err[truth_pos]
            rows.append({
                "gene": gene, "level": level, "mode": mode, "n_callable": len(ok),
                "call_rate": len(ok) / max(len(d), 1), "n_pos": int(truth_pos.sum()), "tp": tp, "fp": fp, "fn": fn,
                "recall": tp / (tp + fn) if tp + fn else np.nan,
                "precision": tp / (tp + fp) if tp + fp else np.nan,
                "abs_err_median": float(err.median()) if len(err) else np.nan,
                "abs_err_p90": float(err.quantile(0.9)) if len(err) else np.nan,
                "abs_err_median_pos": float(pos_err.median()) if len(pos_err) else np.nan,
                "rel_err_median_pos": float((ok.value[truth_pos] / ok.true_cn[truth_pos] - 1).abs().median())
                if truth_pos.any() else np.nan,
                "interval_coverage": float(inside.mean()) if len(ok) else np.nan,
                "interval_coverage_carriers": float(inside[carrier].mean()) if carrier.any() else np.nan,
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# Report helpers (tables the notebook shows and the plots draw)
# --------------------------------------------------------------------------
def call_counts(gene_calls: pd.DataFrame, plasmid_calls: pd.DataFrame) -> pd.DataFrame:
    """Samples per call label for every chromosomal gene and plasmid family/member.

    Columns: ``gene level uncallable absent normal present amplified`` (0 where a label does
    not apply) and ``statuses`` (counts of the non-ok statuses).
    """
    frames = []
    if len(gene_calls):
        frames.append(gene_calls.assign(level="chromosome"))
    if len(plasmid_calls):
        frames.append(plasmid_calls)
    if not frames:
        return pd.DataFrame(columns=["gene", "level", "uncallable", "absent", "normal", "present", "amplified",
                                     "statuses"])
    both = pd.concat([f[["gene", "level", "label", "status"]] for f in frames], ignore_index=True)
    table = pd.crosstab([both.gene, both.level], both.label)
    for col in ("uncallable", "absent", "normal", "present", "amplified"):
        if col not in table.columns:
            table[col] = 0
    table = table[["uncallable", "absent", "normal", "present", "amplified"]].reset_index()
    bad = both[both.status != "ok"].groupby(["gene", "level"])["status"].agg(
        lambda s: ", ".join(f"{k} {v}" for k, v in s.value_counts().sort_index().items()))
    table["statuses"] = [bad.get((g, lvl), "") for g, lvl in zip(table.gene, table.level)]
    order = {"chromosome": 0, "family": 1, "member": 2}
    return table.sort_values(["level", "gene"], key=lambda c: c.map(order) if c.name == "level" else c) \
        .reset_index(drop=True)


def with_metadata(calls: pd.DataFrame, meta_path: str | Path | None) -> pd.DataFrame:
    """``calls`` with the metadata's ``Species`` and ``ST`` (left join; '' where unknown)."""
    out = calls.copy()
    if not meta_path:
        out["ST"] = ""
        out["Species"] = ""
        return out
    meta = reference.read_tsv(meta_path, ["sample_id"], "metadata (kpsc_meta_path)")
    keep = [c for c in ("sample_id", "Species", "ST") if c in meta.columns]
    out = out.drop(columns=[c for c in ("Species", "ST") if c in out.columns]).merge(
        meta[keep], on="sample_id", how="left")
    for col in ("Species", "ST"):
        out[col] = out[col].fillna("") if col in out.columns else ""
    return out


def top_amplified(gene_calls: pd.DataFrame, gene: str | None = None, n: int = 4) -> pd.DataFrame:
    """The ``n`` amplified calls with the highest CRR (of ``gene``, default the first gene)."""
    gene = gene or (gene_calls.gene.iloc[0] if len(gene_calls) else None)
    amp = gene_calls[(gene_calls.gene == gene) & (gene_calls.call == 2)]
    return amp.sort_values("crr", ascending=False).head(n).reset_index(drop=True)


def depth_tracks(params: Params, sample_ids, gene: str | None = None, padding: int | None = None) -> pd.DataFrame:
    """Copy ratio and HMM state around a chromosomal gene for some samples (the depth tracks).

    Returns a tidy frame ``sample_id chrom start end observed expected copy_ratio state_cn in_gene``
    (bp, reads per bin, copies) over the gene ± ``padding`` (default ``cnv_flank_padding``).
    """
    panel = reference.load_gene_panel(params.chrom_gene_coords_path, "chromosome").genes
    row = panel.iloc[0] if gene is None else panel[panel.gene == gene]
    if isinstance(row, pd.DataFrame):
        if row.empty:
            raise InputError(f"gene {gene!r} is not in the chromosomal gene panel; panel genes: "
                             f"{', '.join(panel.gene)}")
        row = row.iloc[0]
    padding = int(params.cnv_flank_padding if padding is None else padding)
    store = open_store(params.store_path, check_values=False)
    out_dir = params.out_path
    shape = store.counts.shape
    ratios = _load_artefact(out_dir, "copy_ratios.npy", shape, "stage 02")
    states = _load_artefact(out_dir, "states.npy", shape, "stage 02")
    recon_path = out_dir / "reconstructions.npy"
    recon = _load_artefact(out_dir, "reconstructions.npy", shape, "stage 01") if recon_path.is_file() else None
    gene_idx, _ = gene_bin_weights(store.bins, row.contig, int(row.start), int(row.end))
    flank = flank_bin_indices(store.bins, row.contig, int(row.start), int(row.end), padding, gene_idx)
    cols = np.union1d(gene_idx, flank)
    frames = []
    for sid, i in zip(list(sample_ids), store.index_of(list(sample_ids))):
        frames.append(pd.DataFrame({
            "sample_id": sid, "chrom": store.bins["chrom"][cols], "start": store.bins["start"][cols],
            "end": store.bins["end"][cols], "observed": np.asarray(store.counts[i, cols], dtype=np.float64),
            "expected": np.asarray(recon[i, cols], dtype=np.float64) if recon is not None else np.nan,
            "copy_ratio": np.asarray(ratios[i, cols], dtype=np.float64),
            "state_cn": np.asarray(CN_STATES)[np.asarray(states[i, cols], dtype=np.int64)],
            "in_gene": np.isin(cols, gene_idx), "gene": row.gene,
            "gene_start": int(row.start), "gene_end": int(row.end),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
