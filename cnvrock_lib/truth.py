"""Scoring against a simulated cohort's truth tables (``truth/segments.tsv``, ``truth/gene_truth.tsv``).

Used by the reports of simulated tiers and by ``bench/``; never by a call (no truth reaches a call).
Units: copies (CN), bins, bp (1-based inclusive).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .geometry import contig_starts
from .copy_number import CN_STATES


def truth_cn_per_bin(truth: pd.DataFrame, bins: np.ndarray, sample_ids) -> np.ndarray:
    """True copy number per bin from a truth segment table (CN 1 outside its segments).

    ``truth`` has ``sample_id chrom start end cn`` (bp, 1-based inclusive). A bin
    takes the CN of the segment covering its midpoint. Returns float64 (n_samples, n_bins).
    """
    ids = np.asarray(sample_ids).astype(str)
    out = np.ones((ids.size, bins.shape[0]), dtype=np.float64)
    index = {s: i for i, s in enumerate(ids)}
    mid = (bins["start"] + bins["end"]) // 2
    chrom = bins["chrom"]
    for (sample, contig), grp in truth.groupby(["sample_id", "chrom"], sort=False):
        i = index.get(str(sample))
        if i is None:
            continue
        on = np.flatnonzero(chrom == contig)
        if on.size == 0:
            continue
        m = mid[on]
        for start, end, cn in grp[["start", "end", "cn"]].itertuples(index=False):
            lo, hi = np.searchsorted(m, [start, end + 1])
            out[i, on[lo:hi]] = cn
    return out


def nearest_state(cn: np.ndarray, cn_values=CN_STATES) -> np.ndarray:
    """Index of the state whose CN is nearest to ``cn`` (CN above 3 maps to the CN-3 state)."""
    values = np.asarray(cn_values, dtype=np.float64)
    return np.abs(np.asarray(cn, dtype=np.float64)[..., None] - values).argmin(-1).astype(np.int8)


def segmentation_accuracy(states: np.ndarray, mask: np.ndarray, truth_cn: np.ndarray, bins: np.ndarray,
                          cn_values=CN_STATES, max_distance_bins: int = 10) -> dict:
    """Bin-level and breakpoint accuracy of called states against the true copy number.

    Parameters
    ----------
    states : int (n_samples, n_bins) called states.
    mask : bool (n_samples, n_bins), True where masked.
    truth_cn : float (n_samples, n_bins) true CN per bin (:func:`truth_cn_per_bin`).
    bins : the store's bins (breakpoints are not counted across contigs).
    max_distance_bins : a true breakpoint counts as found when a called one lies within this many bins.

    Returns
    -------
    dict with ``bin_accuracy`` (all bins) and ``bin_accuracy_usable`` (unmasked bins): the
    fraction whose called state is the nearest state to the true CN; ``recall_by_class``
    and ``precision_by_class`` for loss (true CN < 1), normal (CN 1) and gain (CN > 1)
    on usable bins; ``breakpoints_true``, ``breakpoints_found`` (within ``max_distance_bins``),
    ``breakpoint_error_median_bp`` and ``breakpoint_error_p90_bp`` (distance from each found
    true breakpoint to the nearest called one), ``breakpoints_called_per_sample`` and
    ``breakpoint_precision`` (fraction of called breakpoints within ``max_distance_bins`` of a true one).
    """
    states = np.asarray(states)
    usable = ~np.asarray(mask, bool)
    target = nearest_state(truth_cn, cn_values)
    right = states == target
    cn = np.asarray(cn_values)[states]

    def klass(c):
        return np.where(c < 1, 0, np.where(c > 1, 2, 1))

    called, true = klass(cn), klass(np.asarray(truth_cn))
    recall, precision = {}, {}
    for k, name in enumerate(("loss", "normal", "gain")):
        t_k, c_k = (true == k) & usable, (called == k) & usable
        recall[name] = float((t_k & c_k).sum() / t_k.sum()) if t_k.any() else float("nan")
        precision[name] = float((t_k & c_k).sum() / c_k.sum()) if c_k.any() else float("nan")
    new_chain = contig_starts(bins)[1:]
    true_bp = (target[:, 1:] != target[:, :-1]) & ~new_chain
    call_bp = (states[:, 1:] != states[:, :-1]) & ~new_chain
    # called breakpoints with a true one within max_distance_bins (over-segmentation shows here)
    near_true = 0
    for i in np.flatnonzero(call_bp.any(1)):
        true_pos = np.flatnonzero(true_bp[i])
        if true_pos.size:
            called_pos = np.flatnonzero(call_bp[i])
            j = np.clip(np.searchsorted(true_pos, called_pos), 1, true_pos.size) - 1
            d = np.minimum(np.abs(true_pos[j] - called_pos),
                           np.abs(true_pos[np.minimum(j + 1, true_pos.size - 1)] - called_pos))
            near_true += int((d <= max_distance_bins).sum())
    distances = []
    for i in np.flatnonzero(true_bp.any(1)):
        called_pos = np.flatnonzero(call_bp[i])
        true_pos = np.flatnonzero(true_bp[i])
        if called_pos.size == 0:
            distances.append(np.full(true_pos.size, np.inf))
            continue
        j = np.clip(np.searchsorted(called_pos, true_pos), 1, called_pos.size) - 1
        d = np.minimum(np.abs(called_pos[j] - true_pos),
                       np.abs(called_pos[np.minimum(j + 1, called_pos.size - 1)] - true_pos))
        distances.append(d.astype(float))
    dist = np.concatenate(distances) if distances else np.zeros(0)
    found = dist[dist <= max_distance_bins]
    bin_bp = float(np.median(bins["end"] - bins["start"] + 1))
    return {
        "n_samples": int(states.shape[0]),
        "bin_accuracy": float(right.mean()),
        "bin_accuracy_usable": float(right[usable].mean()) if usable.any() else float("nan"),
        "recall_by_class": recall,
        "precision_by_class": precision,
        "breakpoints_true": int(dist.size),
        "breakpoints_found": int(found.size),
        "breakpoint_error_median_bp": float(np.median(found) * bin_bp) if found.size else float("nan"),
        "breakpoint_error_p90_bp": float(np.percentile(found, 90) * bin_bp) if found.size else float("nan"),
        "breakpoints_called_per_sample": float(call_bp.sum() / states.shape[0]),
        "breakpoint_precision": float(near_true / call_bp.sum()) if call_bp.any() else float("nan"),
    }


def state_confusion(states: np.ndarray, mask: np.ndarray, truth_cn: np.ndarray, cn_values=CN_STATES) -> pd.DataFrame:
    """Usable bins by true state (rows: nearest state to the true CN) and called state (columns).

    Each row is normalised to sum to 1; the ``bins`` column holds the row's count.
    """
    usable = ~np.asarray(mask, bool)
    true = nearest_state(truth_cn, cn_values)[usable].astype(np.int64)
    called = np.asarray(states)[usable].astype(np.int64)
    k = len(cn_values)
    counts = np.bincount(true * k + called, minlength=k * k).reshape(k, k).astype(float)
    names = [f"CN {c:g}" for c in cn_values]
    frame = pd.DataFrame(counts / np.maximum(counts.sum(1, keepdims=True), 1), index=[f"true {n}" for n in names],
                         columns=[f"called {n}" for n in names])
    frame["bins"] = counts.sum(1).astype(np.int64)
    return frame[frame["bins"] > 0]



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


def mcc(truth_pos: np.ndarray, pred_pos: np.ndarray) -> float:
    """Matthews correlation coefficient of two boolean vectors (NaN when a margin is empty)."""
    t = np.asarray(truth_pos, bool)
    p = np.asarray(pred_pos, bool)
    tp, tn = float((t & p).sum()), float((~t & ~p).sum())
    fp, fn = float((~t & p).sum()), float((t & ~p).sum())
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / den) if den > 0 else float("nan")


def shv_dosage_truth(samples: pd.DataFrame, shv_bin_share: float = 1.0) -> pd.DataFrame:
    """blaSHV dosage truth per sample from a simulated cohort's ``truth/samples.tsv``.

    Columns: ``sample_id``; ``extra_dosage`` (bool: the majority strain's rounded chromosomal
    copies plus a plasmid-borne copy count ≥ 2 — what an assembly-based Kleborate count ≥ 2
    means before tandem collapse and label noise); ``true_dosage`` (copies per chromosome that
    the blaSHV bins read: population chromosomal CN + ``shv_bin_share`` × plasmid-borne PCN,
    where ``shv_bin_share`` is the overlap-weighted share of the gene bins that the gene covers).
    """
    major = samples["shv_cn_major"].to_numpy(dtype=float)
    pshv = samples["plasmid_shv_pcn"].to_numpy(dtype=float)
    count = np.floor(major + 0.5) + (pshv > 0)
    return pd.DataFrame({"sample_id": samples["sample_id"].astype(str).to_numpy(), "extra_dosage": count >= 2,
                         "true_dosage": samples["shv_cn"].to_numpy(dtype=float) + shv_bin_share * pshv})


def decision_scores(gene_calls: pd.DataFrame, plasmid_calls: pd.DataFrame, gene_truth: pd.DataFrame,
                    samples: pd.DataFrame, shv_bin_share: float = 1.0, gene: str = "blaSHV") -> pd.DataFrame:
    """MCC, recall, PPV and 95 % interval coverage of the calls on callable samples (call ≥ 0).

    One row for ``gene`` (chromosomal: extra dosage, call 2, against :func:`shv_dosage_truth`;
    coverage of ``true_dosage`` by ``crr_lo``–``crr_hi``) and one per plasmid family (presence,
    call ≥ 1, against ``gene_truth`` family level; coverage of ``true_cn`` by ``pcn_lo``–``pcn_hi``,
    also over carriers; for the chromosomal gene also over *K. pneumoniae*, whose blaSHV the
    truth counts: other species read their ortholog's cross-mapping, which the truth calls 0).
    Columns ``gene level n n_pos tp fp fn mcc recall ppv coverage coverage_carriers coverage_kp``.
    """
    rows = []

    def row(name, level, t, p, inside, carrier, kp=None):
        tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
        rows.append({"gene": name, "level": level, "n": int(t.size), "n_pos": int(t.sum()), "tp": tp, "fp": fp,
                     "fn": fn, "mcc": mcc(t, p), "recall": tp / (tp + fn) if tp + fn else np.nan,
                     "ppv": tp / (tp + fp) if tp + fp else np.nan,
                     "coverage": float(inside.mean()) if inside.size else np.nan,
                     "coverage_carriers": float(inside[carrier].mean()) if carrier.any() else np.nan,
                     "coverage_kp": float(inside[kp].mean()) if kp is not None and kp.any() else np.nan})

    if len(gene_calls):
        truth = shv_dosage_truth(samples, shv_bin_share)
        g = gene_calls[(gene_calls.gene == gene) & (gene_calls.call >= 0)].merge(truth, on="sample_id")
        species = g.sample_id.map(dict(zip(samples.sample_id.astype(str), samples.species)))
        inside = ((g.crr_lo <= g.true_dosage) & (g.true_dosage <= g.crr_hi)).to_numpy()
        row(gene, "chromosome", g.extra_dosage.to_numpy(bool), (g.call == 2).to_numpy(), inside,
            g.extra_dosage.to_numpy(bool), (species == "Klebsiella pneumoniae").to_numpy())
    if len(plasmid_calls):
        fam = plasmid_calls[(plasmid_calls.level == "family") & (plasmid_calls.call >= 0)].merge(
            gene_truth[gene_truth.level == "family"][["sample_id", "gene", "true_cn"]], on=["sample_id", "gene"])
        for name, d in fam.groupby("gene", sort=False):
            inside = ((d.pcn_lo <= d.true_cn) & (d.true_cn <= d.pcn_hi)).to_numpy()
            row(name, "family", (d.true_cn > 0).to_numpy(), (d.call >= 1).to_numpy(), inside,
                (d.true_cn > 0).to_numpy())
    return pd.DataFrame(rows)
