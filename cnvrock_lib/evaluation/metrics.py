"""Stage 04 metrics (pure): labels from ground truth and calls per scoring mode, confusion counts,
MCC (scikit-learn), FNR, PPV, call rate and missingness, threshold sweeps and value percentiles.

Labels are −1 missing / 0 / 1, one per sample; a missing prediction is missing, never negative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import matthews_corrcoef, roc_auc_score

from .text import PERCENTILES

MODES = ("amp", "presence", "del")


OUTCOMES = ("TN", "FP", "FN", "TP")


def labels_from_gt(values, mode: str) -> np.ndarray:
    """Binary GT labels from GT values (0/1 presence or copy counts).

    Parameters
    ----------
    values : array-like of float; NaN = missing (copies, or 0/1 presence).
    mode : ``amp`` (positive = count ≥ 2), ``presence`` (≥ 1) or ``del`` (== 0).

    Returns
    -------
    int8 array: −1 missing, 0 negative, 1 positive.
    """
    values = np.asarray(values, dtype=np.float64)
    positive = _positive_rule(values, mode)
    return np.where(np.isnan(values), -1, positive.astype(np.int8)).astype(np.int8)


def labels_from_calls(calls, mode: str) -> np.ndarray:
    """Binary predicted labels from call codes (−1 uncallable, 0 absent, 1 normal/present, 2 amplified).

    ``amp``: call 2 is positive; ``presence``: call ≥ 1; ``del``: call 0. A call of
    −1 (or NaN, an absent row) stays −1 (missing), never negative.
    """
    calls = np.asarray(calls, dtype=np.float64)
    missing = np.isnan(calls) | (calls < 0)
    positive = _positive_rule(calls, mode)
    return np.where(missing, -1, positive.astype(np.int8)).astype(np.int8)


def _positive_rule(values: np.ndarray, mode: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if mode == "amp":
            return values >= 2
        if mode == "presence":
            return values >= 1
        if mode == "del":
            return values == 0
    raise ValueError(f"unknown evaluation mode {mode!r}; expected one of {', '.join(MODES)}")


def binary_metrics(y_true, y_pred) -> dict[str, float]:
    """Confusion counts and metrics of binary labels with −1 = missing.

    Parameters
    ----------
    y_true, y_pred : arrays of −1 (missing) / 0 / 1, one entry per sample.

    Returns
    -------
    dict with ``n`` (samples), ``n_gt`` (GT-callable samples), ``n_eval`` (both
    labels present), ``n_pos`` (GT positives among ``n_eval``), ``tp fp fn tn``,
    ``mcc`` (scikit-learn; NaN unless the truth has both classes), ``fnr`` and
    ``recall`` (NaN without positives), ``ppv`` (NaN without predicted
    positives), ``call_rate`` (share of GT-callable samples with a prediction),
    ``gt_miss``, ``pred_miss`` and ``delta`` (share of samples whose GT is
    present but whose prediction is missing: missingness the model adds).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape}, y_pred {y_pred.shape}; expected equal shapes")
    n = int(y_true.size)
    gt_ok = y_true >= 0
    pred_ok = y_pred >= 0
    both = gt_ok & pred_ok
    t, p = y_true[both], y_pred[both]
    tp = int(np.sum((t == 1) & (p == 1)))
    fp = int(np.sum((t == 0) & (p == 1)))
    fn = int(np.sum((t == 1) & (p == 0)))
    tn = int(np.sum((t == 0) & (p == 0)))
    n_pos, n_neg = tp + fn, tn + fp
    n_gt = int(gt_ok.sum())
    mcc = float(matthews_corrcoef(t, p)) if n_pos > 0 and n_neg > 0 else np.nan
    return {
        "n": n, "n_gt": n_gt, "n_eval": int(both.sum()), "n_pos": n_pos,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "mcc": mcc,
        "fnr": fn / n_pos if n_pos else np.nan,
        "recall": tp / n_pos if n_pos else np.nan,
        "ppv": tp / (tp + fp) if tp + fp else np.nan,
        "call_rate": float(np.sum(gt_ok & pred_ok)) / n_gt if n_gt else np.nan,
        "gt_miss": float(np.sum(~gt_ok)) / n if n else np.nan,
        "pred_miss": float(np.sum(~pred_ok)) / n if n else np.nan,
        "delta": float(np.sum(gt_ok & ~pred_ok)) / n if n else np.nan,
    }


def mcc_from_counts(tp: float, fp: float, fn: float, tn: float) -> float:
    """scikit-learn's MCC of a confusion table given as counts (samples); NaN unless the truth
    has both classes, 0 when the prediction has one class only (scikit-learn's convention)."""
    if tp + fn <= 0 or tn + fp <= 0:
        return np.nan
    return float(matthews_corrcoef([1, 0, 1, 0], [1, 1, 0, 0], sample_weight=[tp, fp, fn, tn]))


INTERVAL_LEVEL = 0.95
BOOTSTRAP_REPLICATES = 2000
MIN_GROUP_CLASS = 5    # an ST group gets an MCC only with at least this many positives and negatives


def metric_intervals(tp: int, fp: int, fn: int, tn: int, rng: np.random.Generator,
                     n_replicates: int = BOOTSTRAP_REPLICATES, level: float = INTERVAL_LEVEL) -> dict[str, float]:
    """Percentile bootstrap intervals (resampling samples) of MCC, recall and PPV from a confusion table.

    The metrics depend on the samples only through the four cell counts, so resampling the n
    evaluated samples is a multinomial draw of the cells. A replicate where a metric is undefined (no
    positive, no predicted positive) is left out of that metric's interval. Returns ``mcc_lo mcc_hi
    recall_lo recall_hi ppv_lo ppv_hi`` (NaN where the point estimate is undefined).
    """
    n = tp + fp + fn + tn
    keys = ("mcc_lo", "mcc_hi", "recall_lo", "recall_hi", "ppv_lo", "ppv_hi")
    if n == 0:
        return dict.fromkeys(keys, np.nan)
    cells = rng.multinomial(n, np.array([tp, fp, fn, tn], dtype=np.float64) / n, size=n_replicates).astype(float)
    btp, bfp, bfn, btn = cells.T
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt((btp + bfp) * (btp + bfn) * (btn + bfp) * (btn + bfn))
        both = (btp + bfn > 0) & (btn + bfp > 0)
        mcc = np.where(both, np.where(denom > 0, (btp * btn - bfp * bfn) / np.where(denom > 0, denom, 1), 0.0),
                       np.nan)
        recall = np.where(btp + bfn > 0, btp / (btp + bfn), np.nan)
        ppv = np.where(btp + bfp > 0, btp / (btp + bfp), np.nan)
    alpha = (1 - level) / 2
    point_defined = {"mcc": tp + fn > 0 and tn + fp > 0, "recall": tp + fn > 0, "ppv": tp + fp > 0}
    out = {}
    for name, values in (("mcc", mcc), ("recall", recall), ("ppv", ppv)):
        values = values[np.isfinite(values)]
        ok = point_defined[name] and values.size > 0
        out[f"{name}_lo"] = float(np.quantile(values, alpha)) if ok else np.nan
        out[f"{name}_hi"] = float(np.quantile(values, 1 - alpha)) if ok else np.nan
    return out


def outcomes(y_true, y_pred) -> np.ndarray:
    """Per-sample outcome ``TN FP FN TP`` (object array; ``""`` where either label is missing)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    out = np.full(y_true.shape, "", dtype=object)
    ok = (y_true >= 0) & (y_pred >= 0)
    code = 2 * y_true + y_pred  # 0 TN, 1 FP, 2 FN, 3 TP
    out[ok] = np.asarray(OUTCOMES, dtype=object)[code[ok]]
    return out


def threshold_sweep(y_true, values, mode: str = "presence", max_thresholds: int = 200,
                    extra_thresholds=()) -> pd.DataFrame:
    """MCC, TPR, FPR and PPV of the rule "value ≥ threshold" (``del``: "value ≤ threshold").

    Parameters
    ----------
    y_true : 0/1 GT labels (entries −1 and non-finite values are dropped).
    values : continuous dosage per sample (CRR or PCN, copies).
    mode : ``amp``/``presence`` (positive at high values) or ``del`` (at low values).
    max_thresholds : at most this many thresholds, at quantiles of the observed values.
    extra_thresholds : thresholds always included (e.g. the configured ones).

    Returns
    -------
    DataFrame ``threshold direction mcc tpr fpr ppv n n_pos auc`` (one row per
    threshold; empty when the truth lacks a class). ``auc`` is scikit-learn's ROC
    AUC of the value (constant over rows).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = (y_true >= 0) & np.isfinite(values)
    y, v = y_true[keep], values[keep]
    columns = ["threshold", "direction", "mcc", "tpr", "fpr", "ppv", "n", "n_pos", "auc"]
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return pd.DataFrame(columns=columns)
    sign = -1.0 if mode == "del" else 1.0
    score = sign * v  # positive prediction where score >= sign * threshold
    uniq = np.unique(v)
    if uniq.size > max_thresholds:
        uniq = np.unique(np.quantile(uniq, np.linspace(0, 1, max_thresholds)))
    extra = np.asarray([t for t in extra_thresholds if np.isfinite(t)], dtype=np.float64)
    thresholds = np.unique(np.concatenate([uniq, extra]))
    pos_sorted = np.sort(score[y == 1])
    neg_sorted = np.sort(score[y == 0])
    cut = sign * thresholds
    tp = (n_pos - np.searchsorted(pos_sorted, cut, side="left")).astype(np.float64)
    fp = (n_neg - np.searchsorted(neg_sorted, cut, side="left")).astype(np.float64)
    fn = n_pos - tp
    tn = n_neg - fp
    # MCC at every threshold at once (vectorised; equal to :func:`mcc_from_counts` row by row)
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        # scikit-learn's convention: MCC is 0 when a margin of the confusion matrix is empty
        mcc = np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1.0), 0.0)
        ppv = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), np.nan)
    return pd.DataFrame({
        "threshold": thresholds, "direction": "<=" if mode == "del" else ">=",
        "mcc": mcc, "tpr": tp / n_pos, "fpr": fp / n_neg, "ppv": ppv,
        "n": int(y.size), "n_pos": n_pos, "auc": float(roc_auc_score(y, score)),
    })[columns]


def value_percentiles(values) -> dict[str, float]:
    """``n_values`` (finite values) and percentiles ``p10 p25 p50 p75 p90`` (copies; NaN when empty)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    out: dict[str, float] = {"n_values": int(v.size)}
    qs = np.percentile(v, PERCENTILES) if v.size else np.full(len(PERCENTILES), np.nan)
    out.update({f"p{q}": float(x) for q, x in zip(PERCENTILES, qs)})
    return out
