"""The cohort-learned decision layer of stage 03 (issue #14): calibrated 95 % intervals and the calls
made from them, learned from each cohort without any truth.

* Chromosomal genes (``chrom_call_rule: cohort_dosage``): the CRR's bootstrap interval is widened
  by a model-error term estimated from the cohort (:func:`model_error_sd`); a gene has EXTRA DOSAGE
  (call 2) when that calibrated interval lies above the cohort's one-copy level (the median CRR of
  the callable samples). :func:`dosage_origin` says whether the depth pattern shows a tandem
  amplicon (the flank next to the gene is elevated too) or a copy elsewhere (only the gene bins).
* Plasmid genes (``pcn_threshold_method: cohort_gmm``): a sample whose plasmid backbone explains the
  gene's PCN is present (:func:`on_backbone`); the others are called against a threshold learned
  from the cohort (:func:`cnvrock_lib.calling.thresholds.fit_cohort_threshold`). PCN intervals are
  the counting interval widened by a model-error term from the carriers' gene/backbone agreement.

Units: CRR and PCN are copies (per chromosome); model-error sds are natural-log units.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

Z95 = 1.959964                # two-sided 95 % normal quantile
LOG_FLOOR = 0.05              # copies: values below are floored before taking logs
BACKBONE_MIN = 0.3            # copies: a backbone PCN at least this shows the plasmid is carried
BACKBONE_SHARE = 0.5          # gene PCN at least this share of the backbone PCN: gene on that plasmid
MIN_MODEL_ERROR_N = 10        # fewer samples: no model-error term (0)
ORIGIN_EDGE_BINS = 2          # usable flank bins on each side of the gene read for the origin
ORIGIN_SHARE = 0.5            # flank edge elevated by at least this share of the gene's excess: tandem


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(x, dtype=np.float64), LOG_FLOOR))


def _robust_sd(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def model_error_sd(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, reference: np.ndarray | None = None) -> float:
    """Cohort model-error sd (log units): scatter that the per-sample intervals do not explain.

    ``values`` are compared with ``reference``. Without a reference they are compared with their
    cohort median and only the lower half is used (1.4826 × the median distance below the
    median), because extra dosage only ever adds to the upper half. The robust variance of
    log(value / reference) minus the median squared interval sd ((log hi − log lo) / 3.92)² is the
    model-error variance (0 when negative or with fewer than ``MIN_MODEL_ERROR_N`` samples).
    """
    v = _log(values)
    ok = np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi)
    if reference is not None:
        ok &= np.isfinite(reference)
    if ok.sum() < MIN_MODEL_ERROR_N:
        return 0.0
    if reference is None:
        below = v[ok][v[ok] <= np.median(v[ok])]
        total = float(1.4826 * np.median(np.median(v[ok]) - below))
    else:
        total = _robust_sd(v[ok] - _log(reference)[ok])
    within = np.median(((_log(hi) - _log(lo)) / (2 * Z95))[ok])
    return float(np.sqrt(max(total ** 2 - within ** 2, 0.0)))


def widen_interval(value: np.ndarray, lo: np.ndarray, hi: np.ndarray, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Add a model-error term of ``sd`` (log units) to each side of a 95 % interval (in log space).

    Each side's log distance d from the value becomes √(d² + (1.96·sd)²). A value at or below
    ``LOG_FLOOR`` keeps lower bound 0. Same units as ``value``.
    """
    v = np.asarray(value, dtype=np.float64)
    lv = _log(v)
    extra = (Z95 * sd) ** 2
    d_lo = np.maximum(lv - _log(lo), 0.0)
    d_hi = np.maximum(_log(hi) - lv, 0.0)
    new_lo = np.where(v > LOG_FLOOR, np.exp(lv - np.sqrt(d_lo ** 2 + extra)), 0.0)
    new_hi = np.maximum(np.exp(lv + np.sqrt(d_hi ** 2 + extra)), np.asarray(hi, dtype=np.float64))
    return np.where(np.isfinite(v), new_lo, np.nan), np.where(np.isfinite(v), new_hi, np.nan)


@dataclass(frozen=True)
class DosageFit:
    """What the chromosomal decision learned from one gene's cohort."""

    one_copy_level: float       # copies: median CRR of the callable samples
    model_error_sd: float       # log units, added to every interval


def fit_dosage(crr_value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> DosageFit:
    """Learn the one-copy level and the model-error sd from the callable samples' CRR and intervals."""
    v = np.asarray(crr_value, dtype=np.float64)
    ok = np.isfinite(v)
    level = float(np.median(v[ok])) if ok.any() else 1.0
    return DosageFit(level, model_error_sd(v[ok], np.asarray(lo)[ok], np.asarray(hi)[ok]))


def extra_dosage_call(lo_calibrated: np.ndarray, absent_cover: np.ndarray, fit: DosageFit,
                      min_cover: float) -> np.ndarray:
    """Calls of the cohort_dosage rule: 2 extra dosage (calibrated lower bound above the one-copy
    level), 0 absent (CN-0 HMM states cover ≥ ``min_cover``), else 1; −1 where the bound is NaN. int8."""
    lo = np.asarray(lo_calibrated, dtype=np.float64)
    call = np.where(lo > fit.one_copy_level, 2, np.where(np.asarray(absent_cover) >= min_cover, 0, 1))
    return np.where(np.isfinite(lo), call, -1).astype(np.int8)


def dosage_origin(call: np.ndarray, crr_value: np.ndarray, edge_ratios: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Where extra dosage comes from, as the depth pattern shows it: ``tandem``, ``elsewhere`` or ''.

    For calls of 2: the second-highest copy ratio of the usable flank bins next to the gene
    (``edge_ratios``, ``ORIGIN_EDGE_BINS`` per side: an amplicon may spill to one side only, and one
    noisy bin alone does not count), relative to the flank ``baseline``, is
    elevated by at least ``ORIGIN_SHARE`` of the gene's excess (CRR − 1) for a tandem amplicon
    that spills past the gene; otherwise the extra copy is elsewhere (e.g. plasmid-borne).
    '' for other calls or without usable edge bins.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        ranked = -np.sort(-np.nan_to_num(np.asarray(edge_ratios, dtype=np.float64), nan=-np.inf), axis=1)
        second = ranked[:, min(1, ranked.shape[1] - 1)] if ranked.shape[1] else np.full(ranked.shape[0], np.nan)
        edge = np.where(np.isfinite(second), second, np.nan) / np.asarray(baseline)
    excess = np.asarray(crr_value, dtype=np.float64) - 1.0
    tandem = (edge - 1.0) >= ORIGIN_SHARE * excess
    out = np.where(tandem, "tandem", "elsewhere").astype(object)
    return np.where((np.asarray(call) == 2) & np.isfinite(edge), out, "")


def on_backbone(pcn_value: np.ndarray, backbone: np.ndarray) -> np.ndarray:
    """True where the gene's plasmid backbone is carried (≥ ``BACKBONE_MIN`` copies) and the gene's
    PCN is at least ``BACKBONE_SHARE`` of it: the gene sits on that plasmid."""
    v = np.asarray(pcn_value, dtype=np.float64)
    bb = np.asarray(backbone, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & np.isfinite(bb) & (bb >= BACKBONE_MIN) & (v >= BACKBONE_SHARE * bb)


def pcn_model_error(pcn_value: np.ndarray, lo: np.ndarray, hi: np.ndarray, backbone: np.ndarray,
                    on_plasmid: np.ndarray) -> float:
    """Model-error sd (log units) of PCN from the carriers whose backbone is carried: the scatter of
    log(gene PCN / backbone PCN) beyond their counting intervals (:func:`model_error_sd`)."""
    on = np.asarray(on_plasmid, bool)
    return model_error_sd(np.asarray(pcn_value)[on], np.asarray(lo)[on], np.asarray(hi)[on],
                          reference=np.asarray(backbone)[on])


def call_side_probability(value: np.ndarray, lo: np.ndarray, hi: np.ndarray, fit: DosageFit,
                          call: np.ndarray) -> np.ndarray:
    """Confidence of a cohort_dosage call: the probability, under a log-normal with the calibrated
    interval's width, that the dosage lies on the called side of the one-copy level (above it for
    call 2, at or below it otherwise)."""
    from scipy.stats import norm

    sd = np.maximum((_log(hi) - _log(lo)) / (2 * Z95), 1e-6)
    z = (_log(value) - np.log(max(fit.one_copy_level, LOG_FLOOR))) / sd
    return np.where(np.asarray(call) == 2, norm.cdf(z), norm.cdf(-z))
