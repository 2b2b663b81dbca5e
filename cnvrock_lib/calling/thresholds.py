"""Cohort-learned plasmid absent thresholds (SPEC §7.2): ``mixture``, a 1-D Gaussian mixture on
log10 PCN whose two lowest components are split where their weighted densities cross, with the
gates that decide when the fit is used; ``cohort_gmm`` (the default, :func:`fit_cohort_threshold`),
which models the non-carrier background explicitly; and the per-family threshold table
(``pcn_thresholds.tsv``).

Units: PCN is copies per chromosome; the mixture works in log10 PCN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Mixture thresholds: log10 PCN of the values >= MIXTURE_FIT_FLOOR copies is
# fitted; MIXTURE_REG_COVAR (log10 units squared) keeps components from
# collapsing onto a few equal values.
MIXTURE_FIT_FLOOR = 0.05
MIXTURE_REG_COVAR = 1e-2
MIXTURE_MIN_SAMPLES = 20
MIXTURE_MIN_DELTA_BIC = 10.0
MIXTURE_MIN_ASHMAN_D = 2.0
MIXTURE_MIN_WEIGHT = 0.005

THRESHOLD_COLUMNS = ["level", "gene", "fixed_threshold", "mixture_threshold", "cohort_threshold", "used_threshold",
                     "method_used", "fallback_reason", "n_samples", "n_fit", "n_components", "n_high", "weight_low",
                     "weight_high", "mean_low", "mean_high", "sd_low", "sd_high", "delta_bic", "ashman_d", "converged",
                     "n_on_backbone", "cohort_n_samples", "cohort_n_fit", "cohort_n_components",
                     "cohort_n_carrier_components", "cohort_background_pcn", "cohort_background_sd",
                     "cohort_carrier_pcn", "cohort_carrier_weight", "cohort_ashman_d", "cohort_delta_bic",
                     "cohort_rule", "pcn_model_error_sd", "crosstalk_credible", "crosstalk_bins", "crosstalk_corr",
                     "crosstalk_residual_sd", "crosstalk_threshold", "n_crosstalk_carriers", "supervised_threshold",
                     "supervised_n_train", "supervised_train_mcc"]


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


def threshold_table(pcn_by_name: dict[tuple[str, str], np.ndarray], fixed: dict[tuple[str, str], float],
                    method: str, amp_threshold: float,
                    off_backbone: dict[tuple[str, str], np.ndarray] | None = None) -> pd.DataFrame:
    """The ``pcn_thresholds.tsv`` table: per member and family, the fixed, mixture and cohort_gmm
    thresholds (copies), the one ``method`` uses, and the fits' diagnostics.

    Parameters
    ----------
    pcn_by_name : (level, name) -> PCN of the callable samples.
    fixed : (level, name) -> fixed absent threshold (copies).
    method : cohort_gmm | fixed | mixture.
    amp_threshold : pcn_amp_threshold (copies).
    off_backbone : (level, name) -> bool over the same samples, True where no carried backbone
        explains the PCN (the values cohort_gmm fits); None: all samples.
    """
    rows = []
    fits: dict[bytes, MixtureFit] = {}   # a one-member family has its member's values: fit once
    for (level, name), values in pcn_by_name.items():
        values = np.asarray(values, dtype=np.float64)
        key = values.tobytes()
        if key not in fits:
            fits[key] = fit_mixture_threshold(values, amp_threshold=amp_threshold)
        fit = fits[key]
        off = np.ones(values.size, bool) if off_backbone is None else np.asarray(off_backbone[(level, name)], bool)
        cohort = fit_cohort_threshold(values[off])
        use_mixture = method == "mixture" and np.isfinite(fit.threshold)
        if method == "cohort_gmm":
            used, how = cohort.threshold, "cohort_gmm"
        else:
            used, how = (fit.threshold, "mixture") if use_mixture else (fixed[(level, name)], "fixed")
        d = fit.as_dict()
        d.pop("threshold")
        d.pop("fallback_reason")
        c = {f"cohort_{k}": v for k, v in cohort.as_dict().items() if k != "threshold"}
        rows.append({"level": level, "gene": name, "fixed_threshold": fixed[(level, name)],
                     "mixture_threshold": fit.threshold, "cohort_threshold": cohort.threshold,
                     "used_threshold": used, "method_used": how, "fallback_reason": fit.fallback_reason,
                     "n_on_backbone": int((~off).sum()), **d, **c})
    return pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)


# ----------------------------------------------------------------------------- cohort_gmm
# The default absent threshold (pcn_threshold_method: cohort_gmm), see fit_cohort_threshold.
COHORT_ZERO = 0.02          # copies: below this a sample's PCN is the zero spike (stray reads only)
COHORT_OFFSET = 0.01        # copies added before log10, so that single stray reads stay finite
COHORT_MAX_K = 3
COHORT_CARRIER_MIN = 0.5    # copies: a carrier group's mean is at least this
COHORT_MIN_D = 2.0          # Ashman's D between a carrier group and the background component
COHORT_TAIL_SD = 3.0        # robust upper bound of the non-zero values: median + this many robust sd (log10)
COHORT_MIN_SD = 0.05        # floor of that robust sd (log10 units)
COHORT_MIN_FIT = 10         # fewer non-zero values: the threshold is COHORT_FEW_THRESHOLD
COHORT_FEW_THRESHOLD = 0.25
COHORT_REG_COVAR = 1e-3


@dataclass
class CohortFit:
    """The cohort_gmm fit of one family or member's off-plasmid samples: threshold and diagnostics."""

    threshold: float            # PCN (copies)
    n_samples: int              # finite PCN values offered
    n_fit: int                  # values >= COHORT_ZERO that were fitted
    n_components: int           # k chosen by BIC (0: not fitted)
    n_carrier_components: int   # components counted as carriers
    background_pcn: float       # PCN (copies) at the background component's mean
    background_sd: float        # its sd (log10 units)
    carrier_pcn: float          # PCN at the lowest carrier component's mean (NaN without one)
    carrier_weight: float       # share of the fitted values in carrier components
    ashman_d: float             # separation of the lowest carrier component from the background
    delta_bic: float            # BIC(1 component) − BIC(chosen)
    rule: str                   # carrier_posterior | background_tail | few_values

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def fit_cohort_threshold(pcn_values: np.ndarray) -> CohortFit:
    """Absent threshold of the samples that no plasmid backbone explains, learned from the cohort alone.

    The non-carrier background is modelled explicitly: a zero spike (PCN < ``COHORT_ZERO``,
    absent under any threshold) and cross-talk, the lowest component of a 1-D Gaussian mixture
    (k = 1..``COHORT_MAX_K`` by BIC) on log10(PCN + ``COHORT_OFFSET``) of the other values.
    A higher component is a carrier group when its mean is at least ``COHORT_CARRIER_MIN``
    copies and it is separated from the background (Ashman's D ≥ ``COHORT_MIN_D``); the
    threshold is then the lowest PCN from which the carriers' summed posterior stays ≥ 0.5
    (``rule`` carrier_posterior). Without a carrier group the threshold is the background's
    upper bound, mean + ``COHORT_TAIL_SD`` sd (background_tail); with fewer than
    ``COHORT_MIN_FIT`` values it is ``COHORT_FEW_THRESHOLD`` (few_values). Deterministic.

    Parameters
    ----------
    pcn_values : PCN (copies per chromosome); NaN ignored.
    """
    v = np.asarray(pcn_values, dtype=np.float64)
    v = v[np.isfinite(v)]
    nan = float("nan")
    fitted = v[v >= COHORT_ZERO]
    if fitted.size < COHORT_MIN_FIT or np.ptp(fitted) < 1e-9:
        return CohortFit(COHORT_FEW_THRESHOLD, int(v.size), int(fitted.size), 0, 0, nan, nan, nan, 0.0, nan, nan,
                         "few_values")
    x = np.log10(fitted + COHORT_OFFSET)
    models = {k: _fit_gmm_1d(x, k, COHORT_REG_COVAR) for k in range(1, min(COHORT_MAX_K, x.size // 5) + 1)}
    bic = {k: float(m.bic(x.size)) for k, m in models.items()}
    k = min(bic, key=bic.get)
    model = models[k]
    order = np.argsort(model.means)
    w, m, s = model.weights[order], model.means[order], model.sds[order]
    d = np.sqrt(2.0) * (m - m[0]) / np.sqrt(s ** 2 + s[0] ** 2)
    carrier = (np.arange(k) > 0) & (m >= np.log10(COHORT_CARRIER_MIN + COHORT_OFFSET)) & (d >= COHORT_MIN_D)
    # the background is every component below the lowest carrier group
    first = int(np.argmax(carrier)) if carrier.any() else k
    bg = np.arange(k) < first
    top_bg = int(np.flatnonzero(bg)[-1])
    to_pcn = lambda lx: float(max(10 ** lx - COHORT_OFFSET, 0.0))  # noqa: E731
    centre = float(np.median(x))
    tail = to_pcn(centre + COHORT_TAIL_SD * max(1.4826 * float(np.median(np.abs(x - centre))), COHORT_MIN_SD))
    if not carrier.any():
        return CohortFit(tail, int(v.size), int(fitted.size), k, 0, to_pcn(m[top_bg]), float(s[top_bg]), nan,
                         0.0, nan, bic[1] - bic[k], "background_tail")
    grid = np.linspace(m[0], m[carrier].max(), 2001)
    dens = w[None, :] * np.exp(-0.5 * ((grid[:, None] - m) / s) ** 2) / s
    post = dens[:, carrier].sum(axis=1) / np.maximum(dens.sum(axis=1), 1e-300)
    below = np.flatnonzero(post < 0.5)
    cut = to_pcn(grid[min(below[-1] + 1, grid.size - 1)] if below.size else grid[0])
    return CohortFit(max(cut, tail), int(v.size), int(fitted.size), k, int(carrier.sum()), to_pcn(m[top_bg]),
                     float(s[top_bg]), to_pcn(m[first]), float(w[carrier].sum()), float(d[first]),
                     bic[1] - bic[k], "carrier_posterior" if cut >= tail else "background_tail")
