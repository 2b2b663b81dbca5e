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
    z_cut: float                # one-sided z above the one-copy level that calls extra dosage


def fit_dosage(crr_value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> DosageFit:
    """Learn the one-copy level, the model-error sd and the cut from the callable samples.

    The cut z is where a one-copy sample is expected to be called extra dosage at most once in
    the cohort: Φ⁻¹(1 − 1/n), at least 1.96 (n = callable samples).
    """
    from scipy.stats import norm

    v = np.asarray(crr_value, dtype=np.float64)
    ok = np.isfinite(v)
    level = float(np.median(v[ok])) if ok.any() else 1.0
    z_cut = float(max(Z95, norm.ppf(1.0 - 1.0 / max(int(ok.sum()), 2))))
    return DosageFit(level, model_error_sd(v[ok], np.asarray(lo)[ok], np.asarray(hi)[ok]), z_cut)


def dosage_z(value: np.ndarray, lo_calibrated: np.ndarray, fit: DosageFit) -> np.ndarray:
    """One-sided z of log(CRR / one-copy level), with the sd of the calibrated interval's lower side."""
    sd = np.maximum((_log(value) - _log(lo_calibrated)) / Z95, 1e-6)
    return (_log(value) - np.log(max(fit.one_copy_level, LOG_FLOOR))) / sd


def extra_dosage_call(value: np.ndarray, lo_calibrated: np.ndarray, absent_cover: np.ndarray, fit: DosageFit,
                      min_cover: float) -> np.ndarray:
    """Calls of the cohort_dosage rule: 2 extra dosage (:func:`dosage_z` ≥ ``fit.z_cut``), 0 absent
    (CN-0 HMM states cover ≥ ``min_cover``), else 1; −1 where the value or bound is NaN. int8."""
    lo = np.asarray(lo_calibrated, dtype=np.float64)
    z = dosage_z(value, lo, fit)
    call = np.where(z >= fit.z_cut, 2, np.where(np.asarray(absent_cover) >= min_cover, 0, 1))
    return np.where(np.isfinite(lo) & np.isfinite(np.asarray(value, dtype=np.float64)), call, -1).astype(np.int8)


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


# ----------------------------------------------------------------------------- cross-talk model
CROSSTALK_MIN_CORR = 0.6      # Spearman correlation the best element bin needs with the gene's PCN
CROSSTALK_SD_SHARE = 0.5      # residual robust sd at most this share of the PCN's robust sd
CROSSTALK_N_BINS = 3          # at most this many element bins predict a gene's cross-talk (forward selection)
CROSSTALK_NEXT_CORR = 0.3     # a further bin needs this Spearman correlation with what is still unexplained
CROSSTALK_RES_SD = 4.0        # carriers: residual above its median + this many robust sd ...
CROSSTALK_MIN_RES = 0.15      # ... and at least this many copies (off-panel alleles map at 15-80 %)
CROSSTALK_MIN_PCN = 0.5      # ... and a PCN of at least this many copies (a carrier group's mean, COHORT_CARRIER_MIN)
CROSSTALK_MIN_BINS = 10       # fewer off-backbone samples or candidate bins: no model
HUBER_K = 1.345


def element_excess(counts: np.ndarray, bin_lengths: np.ndarray, depth_bp: np.ndarray,
                   contig_columns: dict[str, np.ndarray], min_bp: int = 500) -> np.ndarray:
    """Per plasmid-store bin, its depth (copies per chromosome) above its contig's backbone.

    A bin holding a mobile element reads the element's copies carried anywhere (MAPQ-0 reads
    spread over every reference copy) on top of its own plasmid's copies; subtracting the
    contig's median bin depth (bins ≥ ``min_bp`` long) leaves that element signal, which
    carrying the plasmid itself does not change. Returns float32 (n_samples, n_bins).
    """
    lengths = np.asarray(bin_lengths, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.asarray(counts, dtype=np.float64) / np.maximum(lengths, 1.0)[None, :] \
            / np.asarray(depth_bp, dtype=np.float64)[:, None]
    out = np.zeros_like(y, dtype=np.float32)
    for cols in contig_columns.values():
        keep = cols[lengths[cols] >= min_bp]
        if keep.size == 0:
            continue
        out[:, cols] = y[:, cols] - np.median(y[:, keep], axis=1)[:, None]
    return out


@dataclass(frozen=True)
class CrossTalkFit:
    """A gene's cross-talk explained by element bins: PCN ≈ b0 + Σ b_j · excess_j (robust fit)."""

    bins: tuple                 # store columns used as predictors
    coef: tuple                 # intercept, then one coefficient per bin (copies per copy)
    corr: float                 # Spearman correlation of the best bin with the gene's PCN
    residual_sd: float          # robust sd of the residuals (copies)
    pcn_sd: float               # robust sd of the PCN (copies)
    threshold: float            # residual (copies) a carrier needs
    credible: bool              # the model is used (corr and residual sd pass)


def _huber(x: np.ndarray, y: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Huber regression of ``y`` on ``x`` by iteratively reweighted least squares: (coef, residuals)."""
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    for _ in range(iterations):
        res = y - x @ coef
        s = max(_robust_sd(res), 1e-6)
        w = np.sqrt(np.minimum(1.0, HUBER_K * s / np.maximum(np.abs(res), 1e-12)))
        coef = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]
    return coef, y - x @ coef


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=0)


def fit_crosstalk(pcn_value: np.ndarray, excess: np.ndarray, candidates: np.ndarray) -> tuple[CrossTalkFit, np.ndarray]:
    """Fit the cross-talk of one gene over samples whose PCN no backbone explains.

    The candidate bin whose excess (:func:`element_excess`) correlates best (Spearman) with the
    PCN is the first predictor of a Huber regression (IRLS); further bins (up to
    ``CROSSTALK_N_BINS``) are added while one correlates ≥ ``CROSSTALK_NEXT_CORR`` with the
    residuals. The model is credible
    when the best correlation is ≥ ``CROSSTALK_MIN_CORR`` and the residuals' robust sd is at most
    ``CROSSTALK_SD_SHARE`` of the PCN's. Returns the fit and the residuals (copies; NaN where the
    PCN is NaN).
    """
    v = np.asarray(pcn_value, dtype=np.float64)
    ok = np.isfinite(v)
    nan = float("nan")
    none = CrossTalkFit((), (), nan, nan, nan, nan, False)
    cand = np.asarray(candidates, dtype=np.int64)
    if ok.sum() < CROSSTALK_MIN_BINS or cand.size == 0:
        return none, np.full(v.size, nan)
    e = np.asarray(excess[:, cand], dtype=np.float64)[ok]
    re = _ranks(e)
    re_c = re - re.mean(axis=0)
    re_norm = np.sqrt((re_c ** 2).sum(axis=0))

    def spearman(target: np.ndarray) -> np.ndarray:
        rt = _ranks(target)
        rt_c = rt - rt.mean()
        with np.errstate(invalid="ignore", divide="ignore"):
            c = (re_c * rt_c[:, None]).sum(axis=0) / (re_norm * np.sqrt((rt_c ** 2).sum()))
        return np.nan_to_num(c, nan=-1.0)

    corr = spearman(v[ok])
    top = [int(np.argmax(corr))]
    coef, res = _huber(np.column_stack([np.ones(int(ok.sum())), e[:, top]]), v[ok])
    # forward selection: each further bin is the one that best predicts what is still unexplained
    # (a gene bin holds up to CROSSTALK_N_BINS flank elements; two bins of one element add nothing)
    while len(top) < CROSSTALK_N_BINS:
        c = spearman(res)
        c[top] = -1.0
        nxt = int(np.argmax(c))
        if c[nxt] < CROSSTALK_NEXT_CORR:
            break
        top.append(nxt)
        coef, res = _huber(np.column_stack([np.ones(int(ok.sum())), e[:, top]]), v[ok])
    x = np.column_stack([np.ones(int(ok.sum())), e[:, top]])
    res_all = np.full(v.size, nan)
    res_all[ok] = v[ok] - np.maximum(x @ coef, 0.0)
    r = res_all[ok]
    res_sd, pcn_sd = _robust_sd(r), _robust_sd(v[ok])
    credible = bool(corr[top[0]] >= CROSSTALK_MIN_CORR and res_sd <= CROSSTALK_SD_SHARE * pcn_sd)
    threshold = float(max(np.median(r) + CROSSTALK_RES_SD * res_sd, CROSSTALK_MIN_RES))
    fit = CrossTalkFit(tuple(int(c) for c in cand[top]), tuple(float(c) for c in coef), float(corr[top[0]]),
                       res_sd, pcn_sd, threshold, credible)
    return fit, res_all


def crosstalk_carriers(pcn_value: np.ndarray, residual: np.ndarray, fit: CrossTalkFit,
                       carrier_min: float) -> np.ndarray:
    """Samples whose PCN the cross-talk model does not explain: residual ≥ ``fit.threshold``, PCN ≥
    ``carrier_min`` copies and at least half the PCN unexplained. All False unless the fit is credible."""
    v = np.asarray(pcn_value, dtype=np.float64)
    r = np.asarray(residual, dtype=np.float64)
    if not fit.credible:
        return np.zeros(v.size, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.isfinite(r) & (r >= fit.threshold) & (v >= carrier_min) & (r >= 0.5 * v)


# ----------------------------------------------------------------------------- supervised (optional)
@dataclass(frozen=True)
class SupervisedFit:
    """A threshold chosen on training samples' ground-truth labels (``pcn_threshold_method: supervised``)."""

    threshold: float            # PCN (copies); NaN when it cannot be learned (then the fixed one is used)
    n_train: int                # labelled training samples used
    n_train_positive: int
    train_mcc: float            # MCC of the threshold on those samples (in-sample, optimistic)
    note: str = ""


def supervised_threshold(pcn_value: np.ndarray, labels: np.ndarray, usable: np.ndarray) -> SupervisedFit:
    """The PCN threshold with the highest MCC on the labelled training samples.

    ``labels``: 1 present, 0 absent, −1 unknown or hold-out (never used). Candidates are the
    midpoints between neighbouring distinct PCN values; ties go to the lowest threshold.
    NaN threshold (with a note) when the training samples lack a class.
    """
    v = np.asarray(pcn_value, dtype=np.float64)
    y = np.asarray(labels)
    train = np.asarray(usable, bool) & np.isfinite(v) & (y >= 0)
    x, t = v[train], y[train] == 1
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == t.size:
        return SupervisedFit(float("nan"), int(t.size), n_pos, float("nan"),
                             "training labels have a single class: fixed threshold used")
    order = np.argsort(x, kind="stable")
    xs, ts = x[order], t[order]
    # predict present for samples i.. (sorted): tp = positives at or above i, etc.
    pos_above = np.cumsum(ts[::-1])[::-1]
    n_above = np.arange(xs.size, 0, -1)
    tp, fp = pos_above, n_above - pos_above
    fn, tn = n_pos - tp, (t.size - n_pos) - fp
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1.0), -1.0)
    distinct = np.r_[True, xs[1:] > xs[:-1]]                  # a cut can only fall between distinct values
    mcc = np.where(distinct, mcc, -np.inf)
    i = int(np.argmax(mcc))
    threshold = xs[0] if i == 0 else 0.5 * (xs[i - 1] + xs[i])
    return SupervisedFit(float(threshold), int(t.size), n_pos, float(mcc[i]))
