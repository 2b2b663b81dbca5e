"""Stage 04 tables: the per-sample evaluation table (calls × truth × metadata) and its summaries —
overall, by species, by ST, dosage percentiles by predicted label and outcome, segment diagnostics,
the tidy metrics table and the threshold sweeps.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .. import artefacts as A
from ..copy_number import CHROM_LABELS, PLASMID_LABELS
from ..errors import InputError
from ..reference import read_tsv
from .inputs import UNKNOWN, GroundTruth
from .metrics import (MIN_GROUP_CLASS, OUTCOMES, binary_metrics, labels_from_calls, labels_from_gt, metric_intervals,
                      outcomes, threshold_sweep, value_percentiles)
from .text import PERCENTILES

LABEL_ORDER = ("absent", "normal", "present", "amplified", "uncallable")


def build_table(calls: pd.DataFrame, truth: GroundTruth, meta: pd.DataFrame, holdout: list[str] | None,
                eval_species: dict[str, list[str]], modes: dict[str, str] | None = None
                ) -> tuple[pd.DataFrame, dict, list[str]]:
    """Join calls, GT and metadata into one row per evaluated sample × gene.

    Samples = GT ∩ samples with any call (∩ hold-out ids when given); Species
    and ST from the metadata (left join; Species falls back to the calls'
    ``species`` column). Genes without a GT column are skipped and noted.
    Chromosomal genes keep only samples of their callable species (``eval_species``;
    samples of unknown species stay). Returns ``(table, summary, notes)``.
    """
    notes: list[str] = []
    modes = {**truth.modes, **(modes or {})}
    gt_ids = set(truth.values.index)
    call_ids = set(calls["sample_id"])
    samples = gt_ids & call_ids
    summary = {"gt_samples": len(gt_ids), "called_samples": len(call_ids), "gt_and_called": len(samples),
               "gt_without_calls": len(gt_ids - call_ids), "calls_without_gt": len(call_ids - gt_ids)}
    if holdout is not None:
        hold = set(holdout)
        summary["holdout_ids"] = len(hold)
        summary["holdout_not_joined"] = len(hold - samples)
        samples &= hold
    samples = sorted(samples)
    summary["evaluated_samples"] = len(samples)
    if not samples:
        raise InputError(
            f"no sample is in both the ground truth ({len(gt_ids)} samples) and the calls ({len(call_ids)} samples)"
            + (f" and the hold-out list ({len(set(holdout))} ids)" if holdout is not None else "")
            + "; check that the files use the same sample_id (run accession)")
    index = pd.Index(samples, name="sample_id")
    summary["without_metadata"] = int((~index.isin(meta.index)).sum())
    meta = meta.reindex(index)
    species = meta["Species"].copy()
    called_species = calls.dropna(subset=["species"]).drop_duplicates("sample_id").set_index("sample_id")["species"]
    species = species.fillna(called_species.reindex(index))

    genes = list(dict.fromkeys(calls["gene"]))
    no_gt = [g for g in genes if g not in truth.values.columns]
    if no_gt:
        notes.append(f"no ground-truth column, not evaluated: {', '.join(no_gt)}")
    no_pred = [g for g in truth.values.columns if g not in genes]
    if no_pred:
        notes.append(f"ground truth without calls, not evaluated: {', '.join(no_pred)}")
    frames = []
    truth_values = truth.values.reindex(index)
    for gene in [g for g in genes if g in truth.values.columns]:
        mode = modes.get(gene, "presence")
        rows = calls[calls["gene"] == gene].set_index("sample_id").reindex(index)
        kind = calls.loc[calls["gene"] == gene, "kind"].iloc[0]
        frame = pd.DataFrame({
            "sample_id": samples, "gene": gene, "kind": kind, "mode": mode,
            "gt_value": truth_values[gene].to_numpy(),
            "call": rows["call"].fillna(-1).astype(np.int64).to_numpy(),
            "value": rows["value"].to_numpy(dtype=np.float64),
            "value_name": "CRR" if kind == "chromosome" else "PCN",
            "status": rows["status"].fillna("no_call").to_numpy(),
            "threshold": rows["threshold"].to_numpy(dtype=np.float64),
            "species": species.to_numpy(), "ST": meta["ST"].to_numpy(),
        })
        if gene in eval_species and kind == "chromosome":
            allowed = set(eval_species[gene])
            excluded = frame["species"].notna() & ~frame["species"].isin(allowed)
            if excluded.any():
                notes.append(f"{gene}: {int(excluded.sum())} sample(s) outside its callable species excluded")
            frame = frame[~excluded]
        frame["gt"] = labels_from_gt(frame["gt_value"], mode)
        frame["pred"] = labels_from_calls(frame["call"], mode)
        frame["outcome"] = outcomes(frame["gt"], frame["pred"])
        frames.append(frame)
    if not frames:
        raise InputError("no gene of the calls has a ground-truth column; expected GT columns named like the "
                         f"genes/families {genes}")
    table = pd.concat(frames, ignore_index=True)
    table["species"] = table["species"].fillna(UNKNOWN)
    return table, summary, notes


def _metrics_rows(table: pd.DataFrame, keys: list[str], seed: int = 0) -> pd.DataFrame:
    """:func:`binary_metrics` per group of ``keys`` with 95 % bootstrap intervals of MCC, recall and PPV
    (seeded per group, so a group's interval does not depend on the others)."""
    rows = []
    for key, group in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        m = binary_metrics(group["gt"].to_numpy(), group["pred"].to_numpy())
        rng = np.random.default_rng([seed, zlib.crc32("|".join(map(str, key)).encode())])
        rows.append({**dict(zip(keys, key)), "mode": group["mode"].iloc[0], **m,
                     **metric_intervals(m["tp"], m["fp"], m["fn"], m["tn"], rng)})
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, min_group_n: int) -> dict[str, pd.DataFrame]:
    """Per-gene metrics overall, by species and by ST, and value percentiles by label and outcome."""
    gene_order = list(dict.fromkeys(table["gene"]))
    overall = _metrics_rows(table, ["gene"])
    by_species = _metrics_rows(table, ["species", "gene"])
    species_order = table.groupby("species")["sample_id"].nunique().sort_values(ascending=False, kind="stable")
    by_species["_s"] = by_species["species"].map({s: i for i, s in enumerate(species_order.index)})
    by_species["_g"] = by_species["gene"].map({g: i for i, g in enumerate(gene_order)})
    by_species = by_species.sort_values(["_s", "_g"]).drop(columns=["_s", "_g"]).reset_index(drop=True)

    with_st = table[table["ST"].notna()]
    if with_st.empty:
        by_st = pd.DataFrame(columns=["ST", "gene", "mode", "n_eval"])
    else:
        by_st = _metrics_rows(with_st, ["ST", "gene"])
        by_st = by_st[by_st["n_eval"] >= min_group_n]
        # too few of either class: an MCC (and its interval) would be noise
        small = (by_st["n_pos"] < MIN_GROUP_CLASS) | (by_st["n_eval"] - by_st["n_pos"] < MIN_GROUP_CLASS)
        by_st.loc[small, ["mcc", "mcc_lo", "mcc_hi"]] = np.nan
        st_size = with_st.groupby("ST")["sample_id"].nunique()
        by_st["_n"] = by_st["ST"].map(st_size)
        by_st["_g"] = by_st["gene"].map({g: i for i, g in enumerate(gene_order)})
        by_st = by_st.sort_values(["_n", "ST", "_g"], ascending=[False, True, True]).drop(
            columns=["_n", "_g"]).reset_index(drop=True)

    label_rows, outcome_rows = [], []
    for gene in gene_order:
        g = table[table["gene"] == gene]
        names = CHROM_LABELS if g["kind"].iloc[0] == "chromosome" else PLASMID_LABELS
        labels = g["call"].map(names)
        present = set(labels)
        for label in [x for x in LABEL_ORDER if x in present]:
            sel = g[labels == label]
            label_rows.append({"gene": gene, "value_name": g["value_name"].iloc[0], "label": label,
                               "n_samples": len(sel), **value_percentiles(sel["value"])})
        for outcome in OUTCOMES:
            sel = g[g["outcome"] == outcome]
            if len(sel):
                outcome_rows.append({"gene": gene, "value_name": g["value_name"].iloc[0], "outcome": outcome,
                                     "n_samples": len(sel), **value_percentiles(sel["value"])})
    status = (table.groupby(["gene", "status"], sort=False).size().rename("n").reset_index())
    return {"overall": overall, "by_species": by_species, "by_st": by_st,
            "by_label": pd.DataFrame(label_rows), "by_outcome": pd.DataFrame(outcome_rows), "call_status": status}


ASSEMBLY_DEFINITION = "assembly copy count >= 2 (Kleborate ground truth)"
CHROMOSOMAL_DEFINITION = "chromosomal copies >= 2 (simulator truth; tandem only)"


def positive_definitions(table: pd.DataFrame, gene_truth: pd.DataFrame | None, seed: int = 0) -> pd.DataFrame:
    """The same calls of each chromosomal gene in ``amp`` mode scored against two definitions of a positive.

    ``assembly``: what the ground truth counts (a Kleborate-style assembly copy count >= 2: extra dosage
    wherever it lies). ``chromosomal``: the true chromosomal copy number >= 2 from a simulated cohort's
    ``truth/gene_truth.tsv`` (level ``chromosome``), when given — copies elsewhere (plasmid-borne) are
    negatives there. One row per gene × definition with the metrics and 95 % intervals.
    """
    frames = []
    amp = table[(table["kind"] == "chromosome") & (table["mode"] == "amp")]
    for gene, g in amp.groupby("gene", sort=False):
        frames.append(g.assign(definition=ASSEMBLY_DEFINITION))
        if gene_truth is not None:
            true_cn = gene_truth[(gene_truth["level"] == "chromosome") & (gene_truth["gene"] == gene)] \
                .set_index("sample_id")["true_cn"]
            alt = g[g["sample_id"].isin(true_cn.index)].copy()
            if len(alt):
                alt["gt"] = np.where(true_cn.reindex(alt["sample_id"]).to_numpy(dtype=float) >= 2, 1, 0)
                frames.append(alt.assign(definition=CHROMOSOMAL_DEFINITION))
    if not frames:
        return pd.DataFrame(columns=["gene", "definition", "mode", "mcc", "recall", "ppv", "n_eval", "n_pos"])
    return _metrics_rows(pd.concat(frames, ignore_index=True), ["gene", "definition"], seed)


def segment_diagnostics(out_dir: str | Path, samples: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Callability and CN transitions of the evaluated samples from stage 02's outputs.

    Returns a frame ``metric value`` and notes. Metrics: samples with QC
    (``sample_qc.tsv``) and the share passing QC, median usable and CN-1
    fractions, CN transitions per sample (state changes between consecutive
    segments of a contig; mean, p10, p50, p90), the share of samples with any
    non-CN-1 segment and the share of bins in each CN state.
    """
    out_dir = Path(out_dir)
    notes, rows = [], []
    wanted = set(samples)
    qc_path = A.SAMPLE_QC.path(out_dir)
    if qc_path.is_file():
        qc = read_tsv(qc_path, ["sample_id", "qc_pass"], "sample QC")
        qc = qc[qc["sample_id"].isin(wanted)]
        passed = qc["qc_pass"].str.strip().str.lower().map({"true": 1.0, "1": 1.0, "false": 0.0, "0": 0.0})
        if passed.isna().any():
            i = int(np.flatnonzero(passed.isna().to_numpy())[0])
            raise InputError(f"sample QC {qc_path}: sample {qc['sample_id'].iloc[i]!r} has qc_pass="
                             f"{qc['qc_pass'].iloc[i]!r}; expected True/False")
        rows += [("samples_with_qc", len(qc)), ("qc_pass_fraction", passed.mean() if len(qc) else np.nan)]
        for col in ("usable_fraction", "cn1_fraction"):
            if col in qc.columns:
                vals = pd.to_numeric(qc[col], errors="coerce")
                rows.append((f"median_{col}", float(vals.median()) if vals.notna().any() else np.nan))
    else:
        notes.append("sample_qc.tsv not found: no callability diagnostics")
    seg_path = A.SEGMENTS.path(out_dir)
    if seg_path.is_file():
        rows += _segment_metrics(seg_path, samples, notes)
    else:
        notes.append("segments.parquet not found: no segment diagnostics")
    return pd.DataFrame(rows, columns=["metric", "value"]), notes


def _segment_metrics(seg_path: Path, samples: list[str], notes: list[str]) -> list[tuple[str, float]]:
    """CN transitions and state occupancy from ``segments.parquet`` (numpy on dictionary codes: fast at 10^7 rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        seg = pq.read_table(seg_path, columns=["sample_id", "chrom", "start", "n_bins", "cn"])
    except Exception as exc:  # pyarrow raises several types for a bad or incomplete file
        raise InputError(f"segments {seg_path} could not be read with columns sample_id chrom start n_bins cn: "
                         f"{exc}") from None
    ids = pc.dictionary_encode(pc.cast(seg["sample_id"], pa.string())).combine_chunks()
    wanted = pc.is_in(ids.dictionary, value_set=pa.array(samples, type=pa.string())).to_numpy(zero_copy_only=False)
    sample_code = ids.indices.to_numpy()
    keep = wanted[sample_code]
    if not keep.any():
        notes.append("segments.parquet has no segment of the evaluated samples")
        return []
    sample_code = sample_code[keep]
    chrom_code = pc.dictionary_encode(pc.cast(seg["chrom"], pa.string())).combine_chunks().indices.to_numpy()[keep]
    start = seg["start"].to_numpy()[keep]
    cn = seg["cn"].to_numpy().astype(np.float64)[keep]
    n_bins = seg["n_bins"].to_numpy().astype(np.float64)[keep]
    d_sample, d_chrom, d_start = np.diff(sample_code), np.diff(chrom_code), np.diff(start)
    ordered = np.all((d_sample > 0) | ((d_sample == 0) & ((d_chrom > 0) | ((d_chrom == 0) & (d_start > 0)))))
    if not ordered:  # stage 02 writes segments in order; sort only other files
        order = np.lexsort((start, chrom_code, sample_code))
        sample_code, chrom_code, cn, n_bins = sample_code[order], chrom_code[order], cn[order], n_bins[order]
    same_run = (sample_code[1:] == sample_code[:-1]) & (chrom_code[1:] == chrom_code[:-1])
    change = same_run & (cn[1:] != cn[:-1])
    present = np.flatnonzero(np.bincount(sample_code, minlength=wanted.size))
    per_sample = np.bincount(sample_code[1:][change], minlength=wanted.size)[present].astype(np.float64)
    non_cn1 = np.bincount(sample_code[cn != 1.0], minlength=wanted.size)[present] > 0
    p = np.percentile(per_sample, [10, 50, 90])
    rows = [("samples_with_segments", float(present.size)), ("cn_transitions_mean", per_sample.mean()),
            ("cn_transitions_p10", p[0]), ("cn_transitions_p50", p[1]), ("cn_transitions_p90", p[2]),
            ("samples_with_non_cn1_segment", non_cn1.mean())]
    states = np.unique(cn)  # a handful of CN values; searchsorted avoids sorting every segment
    bins = np.bincount(np.searchsorted(states, cn), weights=n_bins, minlength=states.size)
    rows += [(f"bin_fraction_cn_{c:g}", b / bins.sum()) for c, b in zip(states, bins)]
    return rows


def tidy_metrics(overall, by_species, by_st, by_label, by_outcome, segments, call_status,
                 definitions: pd.DataFrame | None = None) -> pd.DataFrame:
    """All numbers of ``evaluation.txt`` in long form: ``scope group gene mode metric value``."""
    frames = []
    metric_cols = ["mcc", "fnr", "ppv", "recall", "call_rate", "n", "n_gt", "n_eval", "n_pos", "tp", "fp", "fn",
                   "tn", "gt_miss", "pred_miss", "delta", "mcc_lo", "mcc_hi", "recall_lo", "recall_hi", "ppv_lo",
                   "ppv_hi"]

    def melt(frame, scope, group_col, cols):
        if frame.empty:
            return
        f = frame.copy()
        f["group"] = f[group_col] if group_col else "all"
        f["mode"] = f["mode"] if "mode" in f.columns else ""
        long = f.melt(id_vars=["group", "gene", "mode"], value_vars=cols, var_name="metric")
        long.insert(0, "scope", scope)
        frames.append(long)

    melt(overall, "overall", None, metric_cols)
    melt(by_species, "species", "species", metric_cols)
    melt(by_st, "st", "ST", metric_cols)
    if definitions is not None:
        melt(definitions, "positive_definition", "definition", metric_cols)
    pct = ["n_samples", "n_values", *[f"p{q}" for q in PERCENTILES]]
    melt(by_label, "value_by_label", "label", pct)
    melt(by_outcome, "value_by_outcome", "outcome", pct)
    if not call_status.empty:
        cs = call_status.rename(columns={"n": "value"}).assign(scope="call_status", mode="", metric="n")
        frames.append(cs.rename(columns={"status": "group"})[["scope", "group", "gene", "mode", "metric", "value"]])
    if not segments.empty:
        frames.append(segments.assign(scope="segments", group="all", gene="", mode="")[
            ["scope", "group", "gene", "mode", "metric", "value"]])
    out = pd.concat(frames, ignore_index=True)
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out[["scope", "group", "gene", "mode", "metric", "value"]]


def sweep_table(table: pd.DataFrame, operating: dict[str, float] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """``threshold_sweep.tsv``: per gene/family, MCC/TPR/FPR/PPV over the CRR/PCN threshold and ROC AUC.

    Uses samples with GT, a non-missing call and a finite value. ``operating``
    (gene -> threshold, copies) adds the caller's own threshold to the grid and
    to the ``used_threshold`` column; by default it is the median of the
    table's ``threshold`` column (the absent threshold stage 03 applied).
    """
    frames, notes = [], []
    for gene, g in table.groupby("gene", sort=False):
        used = (operating or {}).get(gene, np.nan)
        if not np.isfinite(used) and "threshold" in g.columns and g["threshold"].notna().any():
            used = float(g["threshold"].median())
        keep = (g["gt"] >= 0) & (g["pred"] >= 0)
        sweep = threshold_sweep(g.loc[keep, "gt"], g.loc[keep, "value"], g["mode"].iloc[0],
                                extra_thresholds=[used] if np.isfinite(used) else ())
        if sweep.empty:
            notes.append(f"{gene}: no threshold sweep (the truth lacks a class or no value is finite)")
            continue
        sweep.insert(0, "value_name", g["value_name"].iloc[0])
        sweep.insert(0, "mode", g["mode"].iloc[0])
        sweep.insert(0, "family", gene)
        sweep["used_threshold"] = used
        frames.append(sweep)
    cols = ["family", "mode", "value_name", "threshold", "direction", "mcc", "tpr", "fpr", "ppv", "n", "n_pos",
            "auc", "used_threshold"]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)), notes
