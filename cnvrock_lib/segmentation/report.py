"""Stage 02 report helpers: example samples, state occupancy, the cohort heatmap, the summary table
and, on simulated tiers, accuracy against the simulator's true segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..copy_number import CN1_STATE, CN_STATES
from ..params import Params
from ..truth import segmentation_accuracy, truth_cn_per_bin
from .stage import SegmentResult


def pick_examples(qc: pd.DataFrame, segments: pd.DataFrame, min_bins: int = 3) -> dict[str, str]:
    """Example samples for the report: ``amplified``, ``deleted``, ``normal``, ``failed_qc``.

    Amplified: the QC-passing sample with the longest CN ≥ 2 segment (at least ``min_bins``
    bins, mean ratio ≥ 1.75), ties broken by lower noise; deleted: the longest CN-0 segment;
    normal: the QC-passing sample with the highest CN-1 fraction; failed QC: the lowest CN-1
    fraction among failures. A role with no candidate is left out.
    """
    noise = qc.set_index("sample_id")["noise_sd"]
    passing = set(qc.loc[qc["qc_pass"], "sample_id"])
    out: dict[str, str] = {}
    long = segments[(segments["n_bins"] >= min_bins) & segments["sample_id"].isin(passing)]
    for role, sel in (("amplified", (long["cn"] >= 2) & (long["mean_ratio"] >= 1.75)), ("deleted", long["cn"] == 0)):
        cand = long[sel].assign(noise=lambda f: f["sample_id"].map(noise))
        cand = cand[~cand["sample_id"].isin(out.values())]
        if len(cand):
            best = cand.sort_values(["n_bins", "noise"], ascending=[False, True], kind="stable")
            out[role] = str(best["sample_id"].iloc[0])
    ok = qc[qc["qc_pass"] & ~qc["sample_id"].isin(out.values())]
    if len(ok):
        out["normal"] = str(ok.sort_values("cn1_fraction", ascending=False, kind="stable")["sample_id"].iloc[0])
    bad = qc[~qc["qc_pass"]]
    if len(bad):
        out["failed_qc"] = str(bad.sort_values("cn1_fraction", kind="stable")["sample_id"].iloc[0])
    return out


def state_occupancy(states: np.ndarray, mask: np.ndarray | None = None, chunk: int = 1024) -> pd.DataFrame:
    """Fraction of each sample's bins in each state, (n_samples × K) with CN column names."""
    k = len(CN_STATES)
    out = np.zeros((states.shape[0], k))
    for lo in range(0, states.shape[0], chunk):
        s = np.asarray(states[lo:lo + chunk]).astype(np.int64)
        w = None if mask is None else (~np.asarray(mask[lo:lo + chunk])).ravel().astype(float)
        flat = (np.arange(s.shape[0])[:, None] * k + s).ravel()
        counts = np.bincount(flat, weights=w, minlength=s.shape[0] * k).reshape(s.shape[0], k)
        out[lo:lo + chunk] = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return pd.DataFrame(out, columns=[f"CN {c:g}" for c in CN_STATES])


def summary_table(result: SegmentResult) -> pd.DataFrame:
    """One-column overview of a run: samples, bins, segments, QC, state means, backend, time."""
    qc = result.qc
    rows = {
        "samples": f"{len(qc):,}",
        "bins per sample": f"{len(result.bins):,}",
        "segments": f"{result.n_segments:,} ({result.n_segments / max(1, len(qc)):.1f} per sample)",
        "samples passing QC": f"{int(qc['qc_pass'].sum()):,} ({qc['qc_pass'].mean():.1%})",
        "median usable fraction of bins": f"{qc['usable_fraction'].median():.3f}",
        "median noise sd (copy ratio)": f"{qc['noise_sd'].median():.3f}",
        "state means (copies)": ", ".join(f"{m:.3f}" for m in result.means),
        "EM iterations": str(len(result.em_history)),
        "HMM backend / device": f"{result.backend} / {result.device}",
        "stage time (s)": f"{result.seconds:.1f}",
    }
    return pd.DataFrame({"value": rows})


def example_tracks(result: SegmentResult, examples: dict[str, str]):
    """Arguments of :func:`cnvrock_lib.plots.segments.sample_tracks` for the example samples."""
    ids = list(examples.values())
    index = {s: i for i, s in enumerate(result.sample_ids.tolist())}
    rows = [index[s] for s in ids]
    ratios = np.asarray(result.load("copy_ratios")[rows], dtype=np.float64)
    labels = [f"{role.replace('_', ' ')} — {sid}" for role, sid in examples.items()]
    return result.bins, ratios, result.segments(ids), labels


def heatmap_rows(result: SegmentResult, params: Params, max_samples: int = 300):
    """States of up to ``max_samples`` samples for the cohort heatmap, grouped by species and ST.

    A seeded subsample (``params.seed``) when the cohort is larger; without metadata, samples
    are ordered by how many bins they have outside CN 1. Returns (states, labels).
    """
    ids = result.sample_ids
    rng = np.random.default_rng(params.seed)
    pick = np.sort(rng.choice(ids.size, max_samples, replace=False)) if ids.size > max_samples else np.arange(ids.size)
    states = np.asarray(result.load("states")[pick])
    order_key = pd.DataFrame({"sample_id": ids[pick], "abnormal": (states != CN1_STATE).sum(1)})
    meta_path = params.kpsc_meta_path
    if meta_path and Path(meta_path).is_file():
        meta = pd.read_csv(meta_path, sep="\t", dtype=str, keep_default_na=False)
        if {"sample_id", "Species", "ST"} <= set(meta.columns):
            order_key = order_key.merge(meta[["sample_id", "Species", "ST"]], on="sample_id", how="left")
            order = order_key.sort_values(["Species", "ST", "abnormal"], kind="stable").index.to_numpy()
            labels = (order_key["Species"].fillna("?") + " " + order_key["ST"].fillna("")).to_numpy()
            return states[order], list(labels[order])
    order = order_key.sort_values("abnormal", kind="stable").index.to_numpy()
    return states[order], list(order_key["sample_id"].to_numpy()[order])


def truth_path(params: Params) -> Path | None:
    """``truth/segments.tsv`` of a simulated tier, or None."""
    sim = params.simulate
    if not sim:
        return None
    path = Path(sim["data_dir"]) / "truth" / "segments.tsv"
    return path if path.is_file() else None


def accuracy_against_truth(params: Params, result: SegmentResult) -> pd.DataFrame | None:
    """:func:`segmentation_accuracy` of the run against the simulator's true segments, as a table.

    Rows: all samples, samples passing QC. None when the tier has no truth table.
    """
    path = truth_path(params)
    if path is None:
        return None
    truth = pd.read_csv(path, sep="\t", dtype={"sample_id": str, "chrom": str})
    states = result.load("states")
    ratios = result.load("copy_ratios")
    qc_pass = result.qc["qc_pass"].to_numpy(bool)
    truth_cn = truth_cn_per_bin(truth, result.bins, result.sample_ids)
    mask = np.isnan(np.asarray(ratios))
    rows = {}
    for name, sel in (("all samples", np.ones_like(qc_pass)), ("samples passing QC", qc_pass)):
        acc = segmentation_accuracy(np.asarray(states)[sel], mask[sel], truth_cn[sel], result.bins)
        flat = {k: v for k, v in acc.items() if not isinstance(v, dict)}
        flat.update({f"recall_{k}": v for k, v in acc["recall_by_class"].items()})
        flat.update({f"precision_{k}": v for k, v in acc["precision_by_class"].items()})
        rows[name] = flat
    return pd.DataFrame(rows)  # metrics as rows, sample sets as columns


def cohort_occupancy(result: SegmentResult, chunk: int = 1024) -> pd.DataFrame:
    """:func:`state_occupancy` of every sample over its usable bins (index: sample_id)."""
    states, ratios = result.load("states"), result.load("copy_ratios")
    parts = [state_occupancy(states[lo:lo + chunk], np.isnan(ratios[lo:lo + chunk]))
             for lo in range(0, states.shape[0], chunk)]
    occ = pd.concat(parts, ignore_index=True)
    occ.index = pd.Index(result.sample_ids, name="sample_id")
    return occ
