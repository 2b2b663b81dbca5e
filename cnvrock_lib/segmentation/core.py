"""Stage 02 core: copy ratios, masking, noise and HMM decoding of a batch of samples — arrays in,
arrays and frames out, no file I/O.

Copy ratio r_ij = counts_ij / expected_ij (expected = the stage-01 VAE reconstruction, reads per
bin), re-normalised so that the median over each sample's usable bins is 1 (CN 1). Bins whose
*expected* depth is below the masking threshold are masked: missing emissions in the HMM, whose
state the chain imputes from the neighbours. A bin with high expected but near-zero observed depth
is kept — it is a deletion (CN 0), not a gap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from ..copy_number import CN1_STATE, CN_STATES
from ..errors import InputError
from ..geometry import contig_starts
from ..hmm import GaussianHMM
from ..params import Params

# Floor of the per-sample noise (copy-ratio units): a noiseless sample would
# otherwise make every state but the nearest one impossible.
MIN_NOISE_SD = 0.02


SEGMENT_COLUMNS = {
    "sample_id": "str", "chrom": "str", "start": "int64", "end": "int64", "n_bins": "int32",
    "n_masked": "int32", "state": "int8", "cn": "float32", "mean_ratio": "float32", "confidence": "float32",
}
# MAD of a normal truncated at ±3 sd, relative to the untruncated MAD (the second pass of noise_sd)
_MAD_TRUNCATION_3SD = float(_scipy_stats.truncnorm(-3, 3).ppf(0.75) / _scipy_stats.norm.ppf(0.75))


QC_COLUMNS = ["sample_id", "median_depth", "usable_fraction", "noise_sd", "cn1_fraction", "qc_pass", "n_segments"]


@dataclass(frozen=True)
class SegmentConfig:
    """What the stage-02 core needs from the params."""

    self_transition: float        # hmm_self_transition
    mask_below: float             # expected reads per bin below which a bin is masked
    min_confidence: float         # cnv_min_confidence (posterior of a CN-1 bin that counts for QC)
    min_cn1_proportion: float     # cnv_min_cn1_proportion (QC pass)
    em_iterations: int            # hmm_em_iterations (0 = the documented means, no EM)
    batch_size: int               # hmm_batch_size (samples per batch)
    device: str = "auto"
    noise_method: str = "level"

    @classmethod
    def from_params(cls, params: Params, noise_method: str = "level") -> "SegmentConfig":
        return cls(float(params.hmm_self_transition), float(params.hmm_low_cov_threshold),
                   float(params.cnv_min_confidence), float(params.cnv_min_cn1_proportion),
                   int(params.hmm_em_iterations), int(params.hmm_batch_size), str(params.device), noise_method)


def build_hmm(config: SegmentConfig, means=CN_STATES, dtype=np.float32) -> GaussianHMM:
    """The batched Gaussian HMM of stage 02 (states at ``means`` copies)."""
    return GaussianHMM(means, config.self_transition, dtype=dtype, device=config.device,
                       batch_size=config.batch_size)


def copy_ratios(counts: np.ndarray, expected: np.ndarray, low_cov_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Copy ratios and the mask of unusable bins.

    Parameters
    ----------
    counts : (n_samples, n_bins) observed reads per bin.
    expected : (n_samples, n_bins) expected reads per bin (the VAE reconstruction).
    low_cov_threshold : bins whose expected depth is below this (reads) are masked.

    Returns
    -------
    ratios : float32 (n_samples, n_bins), observed / expected scaled so that each sample's
        median over usable bins is 1; NaN where masked.
    mask : bool (n_samples, n_bins), True where masked (expected depth low or not finite).
    """
    counts = np.asarray(counts, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if counts.shape != expected.shape:
        raise InputError(f"copy_ratios: counts shape {counts.shape} does not match expected depth shape "
                         f"{expected.shape}")
    with np.errstate(invalid="ignore"):
        mask = ~np.isfinite(expected) | (expected < low_cov_threshold) | (expected <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(mask, np.nan, counts / np.where(mask, 1.0, expected))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-masked samples have no median
        med = np.nanmedian(raw, axis=1)
    # a sample whose usable median is 0 (almost all deleted) cannot be re-centred; keep it raw
    scale = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    return (raw / scale[:, None]).astype(np.float32), mask


def noise_sd(ratios: np.ndarray, mask: np.ndarray, method: str = "level", floor: float = MIN_NOISE_SD) -> np.ndarray:
    """Robust per-sample noise of the copy ratio (copy-ratio units).

    ``method="level"`` (default): MAD of the usable bins around the sample's median,
    scaled by 1.4826 to a normal sd, computed again over the bins within 3 sd of the
    median so that large deletions and gains do not inflate it; it it sees the whole bin-to-bin scatter the HMM's emissions must
    absorb, including slowly varying residual bias.
    ``method="diff"``: MAD of first differences between neighbouring usable bins / √2.
    Blind to CNV steps, but it misses any noise shared by neighbouring bins (on the
    simulated cohort, neighbouring CN-1 bins correlate at about 0.6 and this
    estimate is a third too small; see docs/segmentation.md).

    Samples with fewer than 3 usable bins (pairs) get NaN. Returns float64 (n_samples,),
    at least ``floor``.
    """
    r = np.asarray(ratios, dtype=np.float64)
    mask = np.asarray(mask, bool)
    if method == "level":
        values = np.where(mask, np.nan, r)
        enough = (~mask).sum(1) >= 3
    elif method == "diff":
        pair = ~mask[:, 1:] & ~mask[:, :-1]
        values = np.where(pair, r[:, 1:] - r[:, :-1], np.nan) / np.sqrt(2.0)
        enough = pair.sum(1) >= 3
    else:
        raise InputError(f"noise_sd: method = {method!r}; expected level or diff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmedian(values, axis=1)
        sd = 1.4826 * np.nanmedian(np.abs(values - centre[:, None]), axis=1)
        if method == "level":
            # second pass without bins > 3 sd from the centre: large deletions (ratio 0) and
            # gains would otherwise inflate the MAD by a fraction of their share of bins
            near = np.where(np.abs(values - centre[:, None]) <= 3 * sd[:, None], values, np.nan)
            centre = np.nanmedian(near, axis=1)
            sd = 1.4826 * np.nanmedian(np.abs(near - centre[:, None]), axis=1) / _MAD_TRUNCATION_3SD
    return np.where(enough, np.maximum(sd, floor), np.nan)


def segments_from_states(states: np.ndarray, posteriors: np.ndarray, ratios: np.ndarray, mask: np.ndarray,
                         bins: np.ndarray, sample_ids, cn_values=CN_STATES) -> pd.DataFrame:
    """Run-length encode per-bin states into segments (vectorised over samples and bins).

    A segment is a maximal run of bins of one sample and one contig in one state.

    Parameters
    ----------
    states : int (n_samples, n_bins) state index per bin.
    posteriors : (n_samples, n_bins) posterior of that state.
    ratios : (n_samples, n_bins) copy ratios, NaN where masked.
    mask : bool (n_samples, n_bins), True where masked.
    bins : structured (n_bins,) with ``chrom``, ``start``, ``end`` (bp, 1-based inclusive).
    sample_ids : (n_samples,) ids.
    cn_values : copy number of each state index.

    Returns
    -------
    DataFrame with columns ``sample_id chrom start end n_bins n_masked state cn
    mean_ratio confidence`` (dtypes of :data:`SEGMENT_COLUMNS`; ``mean_ratio``
    NaN when every bin of the segment is masked; ``confidence`` is the mean
    posterior of the segment's state over all its bins).
    """
    states = np.asarray(states)
    n, t = states.shape
    if t != bins.shape[0] or len(sample_ids) != n:
        raise InputError(f"segments_from_states: states {states.shape} do not match {bins.shape[0]} bins and "
                         f"{len(sample_ids)} sample ids")
    new_chain = contig_starts(bins)
    change = np.empty((n, t), dtype=bool)
    change[:, 0] = True
    change[:, 1:] = (states[:, 1:] != states[:, :-1]) | new_chain[None, 1:]
    flat_start = np.flatnonzero(change.ravel())
    row = flat_start // t
    first = flat_start % t
    nxt = np.append(flat_start[1:], n * t)
    last = np.where(row == (nxt - 1) // t, nxt - 1 - row * t, t - 1)
    n_bins = last - first + 1

    def run_sum(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.asarray(values, dtype=np.float64).ravel(), flat_start)

    usable = ~np.asarray(mask, bool)
    n_usable = run_sum(usable)
    ratio_sum = run_sum(np.where(usable, np.nan_to_num(np.asarray(ratios, np.float64)), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ratio = np.where(n_usable > 0, ratio_sum / np.maximum(n_usable, 1), np.nan)
    state = states.ravel()[flat_start]
    cn = np.asarray(cn_values, dtype=np.float64)
    frame = pd.DataFrame({
        "sample_id": np.asarray(sample_ids).astype(str)[row],
        "chrom": bins["chrom"][first].astype(str),
        "start": bins["start"][first].astype(np.int64),
        "end": bins["end"][last].astype(np.int64),
        "n_bins": n_bins.astype(np.int32),
        "n_masked": (n_bins - n_usable).astype(np.int32),
        "state": state.astype(np.int8),
        "cn": cn[state].astype(np.float32),
        "mean_ratio": mean_ratio.astype(np.float32),
        "confidence": (run_sum(posteriors) / n_bins).astype(np.float32),
    })
    return frame


def decode_contigs(model: GaussianHMM, ratios: np.ndarray, sd: np.ndarray, mask: np.ndarray,
                   bins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Viterbi states and their posteriors with one HMM chain per contig.

    Returns int8 states, float32 posteriors (n_samples, n_bins) and the
    float64 log-likelihood per sample (sum over contigs).
    """
    n, t = ratios.shape
    states = np.zeros((n, t), dtype=np.int8)
    post = np.zeros((n, t), dtype=np.float32)
    loglik = np.zeros(n, dtype=np.float64)
    starts = np.flatnonzero(contig_starts(bins))
    for lo, hi in zip(starts, np.append(starts[1:], t)):
        x = np.where(mask[:, lo:hi], 0.0, ratios[:, lo:hi])
        s, p, ll = model.decode(x, sd, mask[:, lo:hi], posteriors="path")
        states[:, lo:hi] = s
        post[:, lo:hi] = p
        loglik += ll
    return states, post, loglik


def sample_qc_table(sample_ids, counts_median: np.ndarray, mask: np.ndarray, sd: np.ndarray, states: np.ndarray,
                    post: np.ndarray, n_segments: np.ndarray, min_confidence: float,
                    min_cn1_proportion: float) -> pd.DataFrame:
    """``sample_qc.tsv`` rows: depth, usable fraction, noise, CN-1 fraction and the QC verdict.

    ``cn1_fraction`` is the fraction of usable bins in the CN-1 state with posterior
    ≥ ``min_confidence``; a sample passes when it is ≥ ``min_cn1_proportion``.
    """
    usable = ~mask
    n_usable = usable.sum(1)
    confident_cn1 = (states == CN1_STATE) & (post >= min_confidence) & usable
    with np.errstate(invalid="ignore", divide="ignore"):
        cn1 = np.where(n_usable > 0, confident_cn1.sum(1) / np.maximum(n_usable, 1), 0.0)
    return pd.DataFrame({
        "sample_id": np.asarray(sample_ids).astype(str),
        "median_depth": np.asarray(counts_median, dtype=np.float64),
        "usable_fraction": n_usable / mask.shape[1],
        "noise_sd": np.asarray(sd, dtype=np.float64),
        "cn1_fraction": cn1,
        "qc_pass": (cn1 >= min_cn1_proportion) & (n_usable > 0),
        "n_segments": np.asarray(n_segments, dtype=np.int64),
    })


def prepare_batch(counts: np.ndarray, expected: np.ndarray, config: SegmentConfig):
    """Copy ratios, mask, noise sd and median usable depth of a batch of samples.

    ``counts`` and ``expected`` are (n, n_bins) reads per bin. Returns ``(ratios, mask, sd, depth)``;
    a sample with no usable bins gets a nominal sd of 1 (all emissions missing) and fails QC.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ratios, mask = copy_ratios(counts, np.asarray(expected), config.mask_below)
    sd = noise_sd(ratios, mask, config.noise_method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        depth = np.nanmedian(np.where(mask, np.nan, counts), axis=1)
    sd = np.where(np.isfinite(sd), sd, 1.0)
    return ratios, mask, sd, depth


def decode_batch(model: GaussianHMM, ratios: np.ndarray, sd: np.ndarray, depth: np.ndarray, bins: np.ndarray,
                 sample_ids: np.ndarray, config: SegmentConfig):
    """Decode a batch: states, posteriors, its segments and its ``sample_qc.tsv`` rows.

    Returns ``(states int8, posteriors float32, segments frame, qc frame)``.
    """
    mask = np.isnan(ratios)
    states, post, _ = decode_contigs(model, ratios, sd, mask, bins)
    seg = segments_from_states(states, post, ratios, mask, bins, sample_ids)
    n_seg = seg.groupby("sample_id", sort=False).size().reindex(sample_ids).to_numpy()
    qc = sample_qc_table(sample_ids, depth, mask, sd, states, post, n_seg, config.min_confidence,
                         config.min_cn1_proportion)
    return states, post, seg, qc


def cohort_em(model: GaussianHMM, ratios_all, sds: np.ndarray, bins: np.ndarray, config: SegmentConfig, log):
    """EM over the whole cohort in batches: pooled state means (into ``model.means_``), per-sample sd.

    Returns the refined sd (n_samples,) and the total log-likelihood before each iteration.
    """
    prior = model.means.copy()
    starts = np.flatnonzero(contig_starts(bins))
    n, t = ratios_all.shape
    history = []
    for it in range(config.em_iterations):
        stats = np.zeros((n, model.n_states, 3))
        total = 0.0
        for lo in range(0, n, config.batch_size):
            rows = slice(lo, min(n, lo + config.batch_size))
            ratios = np.asarray(ratios_all[rows])
            mask = np.isnan(ratios)
            for a, b in zip(starts, np.append(starts[1:], t)):
                s, ll = model.sufficient_statistics(np.where(mask[:, a:b], 0.0, ratios[:, a:b]), sds[rows],
                                                    mask[:, a:b])
                stats[rows] += s
                total += float(ll.sum())
        history.append(total)
        sds = model.em_update(stats, sds, prior)
        log(f"stage 02: EM iteration {it + 1}: log-likelihood {total:.6g}, means {np.round(model.means_, 3).tolist()}")
    return sds, history
