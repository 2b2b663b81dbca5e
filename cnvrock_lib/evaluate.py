"""Stage 04: score the gene calls against assembly-based ground truth (SPEC §8).

Calls (stage 03) are inner-joined with the ground truth on ``sample_id``;
metadata (Species, ST) is a left join so samples without metadata still count
in OVERALL; ``holdout_ids_path`` restricts the evaluated set; chromosomal genes
are scored only in their callable species (``eval_species``). Plasmid genes are
scored per family, with the GT's family names. A missing prediction (call −1 or
no row) is missing, never negative.

Writes ``evaluation.txt`` (fixed-width, layout frozen by a golden-file test and
documented in ``docs/evaluation.md``), ``evaluation_metrics.tsv`` (the same
numbers, tidy) and ``threshold_sweep.tsv`` (MCC and ROC AUC across the CRR/PCN
threshold per gene family).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import matthews_corrcoef, roc_auc_score

from .atomic import write_text, write_tsv
from .holdout import read_holdout_ids
from .errors import InputError
from .evaluation_text import PERCENTILES, _fmt, format_evaluation_txt, header_fields  # noqa: F401  (_fmt: tests)
from .params import Params
from .reference import load_gene_families, read_tsv

MODES = ("amp", "presence", "del")
OUTCOMES = ("TN", "FP", "FN", "TP")
CHROM_LABELS = {-1: "uncallable", 0: "absent", 1: "normal", 2: "amplified"}
PLASMID_LABELS = {-1: "uncallable", 0: "absent", 1: "present", 2: "amplified"}
LABEL_ORDER = ("absent", "normal", "present", "amplified", "uncallable")
MISSING_TOKENS = {"", "na", "nan", "n/a", "none", "null", "-"}
UNKNOWN = "unknown"
METADATA_COLUMNS = ("Species", "ST")


# --------------------------------------------------------------------------
# labels and metrics (pure functions)

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


# --------------------------------------------------------------------------
# inputs

def _parse_numbers(frame: pd.DataFrame, column: str, path, what: str, allow_missing_code: bool = True,
                   kind: str = "number") -> pd.Series:
    """Text column -> float (NaN = missing); non-numeric or negative values raise InputError.

    ``kind`` ``"presence"`` also requires 0 or 1; ``"count"`` requires whole numbers (copies).
    """
    raw = frame[column].astype(str).str.strip()
    missing = raw.str.lower().isin(MISSING_TOKENS)
    numbers = pd.to_numeric(raw.where(~missing), errors="coerce")
    bad = numbers.isna() & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{what} {path}: column {column!r}, sample {frame['sample_id'].iloc[i]!r} has "
                         f"value {raw.iloc[i]!r}; expected a number (0/1 or a copy count) or empty for missing")
    if allow_missing_code:
        numbers = numbers.where(numbers != -1)  # −1 is the pipeline's own "missing" code
    negative = numbers < 0
    if negative.any():
        i = int(np.flatnonzero(negative.to_numpy())[0])
        raise InputError(f"{what} {path}: column {column!r}, sample {frame['sample_id'].iloc[i]!r} has "
                         f"value {raw.iloc[i]!r}; expected a non-negative number (or empty/-1 for missing)")
    if kind == "presence":
        wrong, expected = ~numbers.isna() & ~numbers.isin([0, 1]), "0 or 1 (family presence) or empty/-1 for missing"
    elif kind == "count":
        wrong, expected = ~numbers.isna() & (numbers != np.round(numbers)), "a whole copy count or empty/-1 for missing"
    else:
        wrong, expected = pd.Series(False, index=numbers.index), ""
    if wrong.any():
        i = int(np.flatnonzero(wrong.to_numpy())[0])
        raise InputError(f"{what} {path}: column {column!r}, sample {frame['sample_id'].iloc[i]!r} has "
                         f"value {raw.iloc[i]!r}; expected {expected}")
    return numbers.astype(np.float64)


def _check_unique_ids(frame: pd.DataFrame, path, what: str) -> None:
    frame["sample_id"] = frame["sample_id"].astype(str).str.strip()
    dup = frame["sample_id"].duplicated()
    if dup.any():
        raise InputError(f"{what} {path}: sample_id {frame.loc[dup, 'sample_id'].iloc[0]!r} appears more than "
                         f"once; expected one row per sample")
    empty = frame["sample_id"] == ""
    if empty.any():
        raise InputError(f"{what} {path}: row {int(np.flatnonzero(empty.to_numpy())[0]) + 2} has an empty sample_id")


@dataclass
class GroundTruth:
    """GT values per sample (index ``sample_id``; columns genes/families; float, NaN missing).

    ``modes`` maps each gene to its scoring mode and ``sources`` to the file it came from.
    """

    values: pd.DataFrame
    modes: dict[str, str]
    sources: dict[str, str]


def load_ground_truth(gt_path: str | Path | None, kleborate_path: str | Path | None = None,
                      count_genes: tuple[str, ...] = ("blaSHV",)) -> GroundTruth:
    """Read the AMRFinder GT (0/1 family presence) and the optional Kleborate copy counts.

    A Kleborate column named in ``count_genes`` (blaSHV: assembly copy count)
    overrides the AMRFinder column and puts the gene in ``amp`` mode (positive
    = ≥ 2 copies); every other GT column is scored in ``presence`` mode.
    Samples of either file are kept (outer join); a value a file lacks is missing.
    """
    tables, modes, sources = [], {}, {}
    if gt_path:
        gt = read_tsv(gt_path, ["sample_id"], "AMRFinder ground truth")
        _check_unique_ids(gt, gt_path, "AMRFinder ground truth")
        genes = [c for c in gt.columns if c not in ("sample_id", "biosample")]
        values = pd.DataFrame({g: _parse_numbers(gt, g, gt_path, "AMRFinder ground truth", kind="presence")
                               for g in genes})
        values.index = pd.Index(gt["sample_id"], name="sample_id")
        tables.append(values)
        modes.update({g: "presence" for g in genes})
        sources.update({g: "AMRFinder" for g in genes})
    if kleborate_path:
        kl = read_tsv(kleborate_path, ["sample_id"], "Kleborate ground truth")
        _check_unique_ids(kl, kleborate_path, "Kleborate ground truth")
        genes = [g for g in count_genes if g in kl.columns]
        if genes:
            values = pd.DataFrame({g: _parse_numbers(kl, g, kleborate_path, "Kleborate ground truth", kind="count")
                                   for g in genes})
            values.index = pd.Index(kl["sample_id"], name="sample_id")
            if tables:
                tables[0] = tables[0].drop(columns=[g for g in genes if g in tables[0].columns])
            tables.append(values)
            modes.update({g: "amp" for g in genes})
            sources.update({g: "Kleborate" for g in genes})
    if not tables:
        raise InputError("no ground truth to evaluate against: set kpsc_gt_path (AMRFinder family presence) "
                         "and/or kpsc_kleborate_gt_path (with a blaSHV copy-count column)")
    values = tables[0] if len(tables) == 1 else tables[0].join(tables[1], how="outer")
    values.index.name = "sample_id"
    return GroundTruth(values.sort_index(), modes, sources)


def load_metadata(meta_path: str | Path | None) -> pd.DataFrame:
    """Metadata ``Species ST`` indexed by ``sample_id`` (empty strings become NaN)."""
    if not meta_path:
        return pd.DataFrame(columns=list(METADATA_COLUMNS), index=pd.Index([], name="sample_id"), dtype=object)
    meta = read_tsv(meta_path, ["sample_id", *METADATA_COLUMNS], "metadata")
    _check_unique_ids(meta, meta_path, "metadata")
    meta = meta.set_index("sample_id")[list(METADATA_COLUMNS)]
    return meta.apply(lambda col: col.str.strip().replace("", np.nan))


def _parse_calls(frame: pd.DataFrame, path, what: str) -> pd.Series:
    raw = frame["call"].astype(str).str.strip()
    codes = pd.to_numeric(raw, errors="coerce")
    bad = ~codes.isin([-1, 0, 1, 2])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{what} {path}: sample {frame['sample_id'].iloc[i]!r}, gene {frame['gene'].iloc[i]!r} "
                         f"has call {raw.iloc[i]!r}; expected -1, 0, 1 or 2")
    return codes.astype(np.int64)


def _parse_values(frame: pd.DataFrame, column: str, path, what: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    raw = frame[column].astype(str).str.strip()
    missing = raw.str.lower().isin(MISSING_TOKENS)
    numbers = pd.to_numeric(raw.where(~missing), errors="coerce")
    bad = numbers.isna() & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{what} {path}: sample {frame['sample_id'].iloc[i]!r}, gene {frame['gene'].iloc[i]!r} "
                         f"has {column}={raw.iloc[i]!r}; expected a number (copies) or empty")
    return numbers.astype(np.float64)


def load_predictions(out_dir: str | Path, families: dict[str, list[str]]) -> tuple[pd.DataFrame, list[str]]:
    """Stage-03 calls in long form ``sample_id gene kind call value value_name status species``.

    Chromosomal genes come from ``gene_calls.tsv`` (value = CRR); plasmid genes
    from the family-level rows of ``plasmid_gene_calls.tsv`` (value = PCN). A
    family without family-level rows is rebuilt from its members (call = the
    highest callable member call, PCN = the sum of member PCNs) and noted.
    Returns the table and notes.
    """
    out_dir = Path(out_dir)
    notes: list[str] = []
    chrom_path = out_dir / "gene_calls.tsv"
    if not chrom_path.is_file():
        raise InputError(f"gene_calls.tsv not found in {out_dir}; run stage 03 (03_call.ipynb) first")
    parts = []
    chrom = read_tsv(chrom_path, ["sample_id", "gene", "call"], "chromosomal gene calls")
    parts.append(_calls_frame(chrom, chrom_path, "chromosomal gene calls", "chromosome", "crr"))
    plasmid_path = out_dir / "plasmid_gene_calls.tsv"
    if plasmid_path.is_file():
        plasmid = read_tsv(plasmid_path, ["sample_id", "gene", "call"], "plasmid gene calls")
        if "level" not in plasmid.columns:  # legacy: one row per gene, family names mark families
            plasmid["level"] = np.where(plasmid["gene"].isin(list(families)), "family", "member")
        fam_rows = plasmid[plasmid["level"].str.strip() == "family"]
        fam = _calls_frame(fam_rows, plasmid_path, "plasmid gene calls", "plasmid", "pcn")
        members = plasmid[plasmid["level"].str.strip() != "family"]
        rebuilt = _families_from_members(members, plasmid_path, families, set(fam["gene"]))
        if not rebuilt.empty:
            notes.append(f"families rebuilt from member calls (no family-level rows): "
                         f"{', '.join(sorted(rebuilt['gene'].unique()))}")
        parts += [fam, rebuilt]
    else:
        notes.append("plasmid_gene_calls.tsv not found: plasmid families not evaluated")
    calls = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in parts) else parts[0]
    dup = calls.duplicated(["sample_id", "gene"])
    if dup.any():
        row = calls[dup].iloc[0]
        raise InputError(f"calls in {out_dir}: sample {row.sample_id!r} has more than one call for gene "
                         f"{row.gene!r}; expected one row per sample and gene (per level)")
    return calls, notes


def _calls_frame(frame: pd.DataFrame, path, what: str, kind: str, value_name: str) -> pd.DataFrame:
    frame = frame.copy()
    frame["sample_id"] = frame["sample_id"].astype(str).str.strip()
    return pd.DataFrame({
        "sample_id": frame["sample_id"].to_numpy(),
        "gene": frame["gene"].astype(str).str.strip().to_numpy(),
        "kind": kind,
        "call": _parse_calls(frame, path, what).to_numpy(),
        "value": _parse_values(frame, value_name, path, what).to_numpy(),
        "value_name": value_name.upper(),
        "status": (frame["status"].astype(str).str.strip() if "status" in frame.columns
                   else pd.Series("", index=frame.index)).to_numpy(),
        "species": (frame["species"].astype(str).str.strip().replace("", np.nan) if "species" in frame.columns
                    else pd.Series(np.nan, index=frame.index, dtype=object)).to_numpy(),
        # the absent threshold the caller applied (plasmid rows; copies)
        "threshold": pd.to_numeric(frame["absent_threshold"], errors="coerce").to_numpy(dtype=np.float64)
        if "absent_threshold" in frame.columns else np.nan,
    })


def _families_from_members(members: pd.DataFrame, path, families: dict[str, list[str]],
                           have: set[str]) -> pd.DataFrame:
    member_of = {m: fam for fam, ms in families.items() if fam not in have for m in ms}
    members = members[members["gene"].str.strip().isin(list(member_of))]
    if members.empty:
        return pd.DataFrame()
    frame = _calls_frame(members, path, "plasmid gene calls", "plasmid", "pcn")
    frame["gene"] = frame["gene"].map(member_of)
    # −1 calls must not win a max over callable members
    frame["callable_call"] = frame["call"].where(frame["call"] >= 0)
    grouped = frame.groupby(["sample_id", "gene"], sort=True)
    out = grouped.agg(call=("callable_call", "max"), value=("value", lambda v: v.sum(min_count=1)),
                      status=("status", "first"), species=("species", "first"),
                      threshold=("threshold", "max")).reset_index()
    out["call"] = out["call"].fillna(-1).astype(np.int64)
    out["kind"] = "plasmid"
    out["value_name"] = "PCN"
    return out[["sample_id", "gene", "kind", "call", "value", "value_name", "status", "species", "threshold"]]


# --------------------------------------------------------------------------
# the evaluation table and its summaries

@dataclass
class EvaluationResult:
    """Everything stage 04 computed; the ``*.tsv``/``evaluation.txt`` files hold the same numbers."""

    table: pd.DataFrame          # one row per evaluated sample × gene (labels, outcome, value, Species, ST)
    overall: pd.DataFrame        # one row per gene: mode, mcc, fnr, ppv, recall, call_rate, n_eval, n_pos, ...
    by_label: pd.DataFrame       # gene, label, n_samples, n_values, p10..p90 of CRR/PCN by predicted label
    by_outcome: pd.DataFrame     # gene, outcome, n_samples, n_values, p10..p90 by TN/FP/FN/TP
    by_species: pd.DataFrame     # species, gene, metrics
    by_st: pd.DataFrame          # ST, gene, metrics (groups with n_eval ≥ eval_min_group_n)
    segments: pd.DataFrame       # metric, value (segment diagnostics)
    call_status: pd.DataFrame    # gene, status, n
    sweep: pd.DataFrame          # threshold_sweep.tsv
    summary: dict                # sample counts of the joins
    notes: list[str] = field(default_factory=list)
    text: str = ""
    paths: dict[str, Path] = field(default_factory=dict)

    def confusion(self, gene: str) -> np.ndarray:
        """2×2 confusion matrix of ``gene`` (rows GT 0/1, columns prediction 0/1; samples)."""
        row = self.overall.set_index("gene").loc[gene]
        return np.array([[row.tn, row.fp], [row.fn, row.tp]], dtype=np.int64)


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


def _metrics_rows(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        m = binary_metrics(group["gt"].to_numpy(), group["pred"].to_numpy())
        rows.append({**dict(zip(keys, key)), "mode": group["mode"].iloc[0], **m})
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
    qc_path = out_dir / "sample_qc.tsv"
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
    seg_path = out_dir / "segments.parquet"
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


# --------------------------------------------------------------------------
# tidy metrics, sweeps and the stage entry point

def tidy_metrics(overall, by_species, by_st, by_label, by_outcome, segments, call_status) -> pd.DataFrame:
    """All numbers of ``evaluation.txt`` in long form: ``scope group gene mode metric value``."""
    frames = []
    metric_cols = ["mcc", "fnr", "ppv", "recall", "call_rate", "n", "n_gt", "n_eval", "n_pos", "tp", "fp", "fn",
                   "tn", "gt_miss", "pred_miss", "delta"]

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


def evaluate(params: Params, modes: dict[str, str] | None = None, write: bool = True) -> EvaluationResult:
    """Stage 04: score stage 03's calls against the ground truth and write the evaluation files.

    Parameters
    ----------
    params : resolved params (GT, metadata, hold-out and family paths; ``eval_species``;
        ``eval_min_group_n``; ``out_dir`` holding stage 02/03 outputs).
    modes : optional gene -> mode (``amp``, ``presence``, ``del``) overriding the defaults
        (blaSHV ``amp`` with Kleborate counts, else ``presence``).
    write : write ``evaluation.txt``, ``evaluation_metrics.tsv`` and ``threshold_sweep.tsv``.
    """
    for gene, mode in (modes or {}).items():
        if mode not in MODES:
            raise InputError(f"evaluation mode for {gene} is {mode!r}; expected one of {', '.join(MODES)}")
    out_dir = params.out_path
    families = load_gene_families(params.plasmid_gene_families_path)
    calls, notes = load_predictions(out_dir, families)
    truth = load_ground_truth(params.kpsc_gt_path, params.kpsc_kleborate_gt_path)
    meta = load_metadata(params.kpsc_meta_path)
    if not params.kpsc_meta_path:
        notes.append("no metadata (kpsc_meta_path): species taken from the calls, no ST groups")
    holdout = read_holdout_ids(params.holdout_ids_path)
    table, summary, join_notes = build_table(calls, truth, meta, holdout, params.eval_species, modes)
    notes += join_notes
    parts = summarise(table, int(params.eval_min_group_n))
    segments, seg_notes = segment_diagnostics(out_dir, sorted(table["sample_id"].unique()))
    notes += seg_notes
    # blaSHV-like genes in amp mode are called at the CRR amplification threshold
    operating = {g: float(params.cnv_crr_amp_threshold) for g, m in
                 table.loc[table["kind"] == "chromosome", ["gene", "mode"]].drop_duplicates().itertuples(index=False)
                 if m == "amp"}
    sweep, sweep_notes = sweep_table(table, operating)
    notes += sweep_notes
    text = format_evaluation_txt(parts["overall"], parts["by_label"], parts["by_outcome"], parts["by_species"],
                                 parts["by_st"], segments, parts["call_status"], summary, notes,
                                 str(params.tier), int(params.eval_min_group_n),
                                 header=header_fields(params))
    result = EvaluationResult(table=table, segments=segments, sweep=sweep, summary=summary, notes=notes,
                              text=text, **parts)
    if write:
        result.paths = {"evaluation.txt": out_dir / "evaluation.txt",
                        "evaluation_metrics.tsv": out_dir / "evaluation_metrics.tsv",
                        "threshold_sweep.tsv": out_dir / "threshold_sweep.tsv"}
        write_text(result.paths["evaluation.txt"], text)
        write_tsv(result.paths["evaluation_metrics.tsv"],
                  tidy_metrics(parts["overall"], parts["by_species"], parts["by_st"], parts["by_label"],
                               parts["by_outcome"], segments, parts["call_status"]), na_rep="NA")
        write_tsv(result.paths["threshold_sweep.tsv"], sweep, na_rep="NA", float_format="%.6g")
    return result


def headline_metrics(out_dir: str | Path) -> pd.DataFrame:
    """Overall per-gene rows ``gene mode mcc fnr ppv n_eval`` from ``out_dir/evaluation_metrics.tsv``."""
    path = Path(out_dir) / "evaluation_metrics.tsv"
    if not path.is_file():
        raise InputError(f"evaluation_metrics.tsv not found in {out_dir}; run stage 04 (04_evaluate.ipynb) first")
    tidy = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["NA"], dtype={"group": str, "gene": str})
    need = {"scope", "gene", "mode", "metric", "value"}
    if not need <= set(tidy.columns):
        raise InputError(f"{path} lacks columns {sorted(need - set(tidy.columns))}; expected {sorted(need)}")
    overall = tidy[tidy["scope"] == "overall"]
    order = list(dict.fromkeys(zip(overall["gene"], overall["mode"])))
    wide = overall.pivot(index=["gene", "mode"], columns="metric", values="value").reindex(order).reset_index()
    wide.columns.name = None
    for col in ("mcc", "fnr", "ppv", "n_eval"):
        if col not in wide.columns:
            wide[col] = np.nan
    wide["n_eval"] = wide["n_eval"].astype("Int64")
    return wide[["gene", "mode", "mcc", "fnr", "ppv", "n_eval"]]
