"""Chromosomal gene calls (SPEC §7.1): copy-ratio ratio to a local flank (CRR), HMM state
coverage of the gene, the original's call rule and the sample QC it depends on.

Units: copy ratios and CRR are copies relative to the sample's haploid baseline; weights are bp.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..copy_number import CN1_STATE
from ..params import Params

# Local baseline: with fewer usable flank bins than this, or a flank median
# below MIN_FLANK_MEDIAN copies (flank deleted), the flank cannot serve as a
# baseline and the genome-wide baseline (copy ratio 1 by normalisation) is used.
MIN_FLANK_BINS = 5
MIN_FLANK_MEDIAN = 0.25


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
    with np.errstate(all="ignore"), warnings.catch_warnings():
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
