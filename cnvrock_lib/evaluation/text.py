"""The fixed-width ``evaluation.txt`` of stage 04 (SPEC §8; layout in docs/evaluation.md).

Formatting only: ``format_evaluation_txt`` takes the frames that
:mod:`cnvrock_lib.evaluation` computes and lays them out in the original's blocks
and column widths (SPEC §8), CNVRock's additions after them.
The layout constants (rule width, percentile columns, count metrics) live here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import artefacts as A

PERCENTILES = (10, 25, 50, 75, 90)
RULE_WIDTH = 64
COUNT_METRICS = {"samples_with_qc", "samples_with_segments"}


def _fmt(value, decimals: int = 3) -> str:
    """A number with ``decimals`` decimals, integers as integers, and N/A for undefined values."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "N/A"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = f"{float(value):.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def _row(columns: list[tuple[str, int, str]], values: list) -> str:
    """Fields padded to their column widths and joined by one space.

    The separating space keeps whitespace-splitting parsers working even when a
    value is wider than its column.
    """
    return " ".join((f"{v:<{w}}" if a == "<" else f"{v:>{w}}") for v, (_, w, a) in zip(values, columns)).rstrip()


def _table(columns: list[tuple[str, int, str]], rows: list[list]) -> list[str]:
    """Header row, a '-' rule and the rows."""
    return [_row(columns, [c[0] for c in columns]), "-" * RULE_WIDTH] + [_row(columns, r) for r in rows]


def _block(title: str, body: list[str]) -> list[str]:
    return ["=" * RULE_WIDTH, title, "=" * RULE_WIDTH, *body, ""]


# The original's column rules (SPEC §8): Gene 12 left, Mode 9 left, metrics 5 right, rates 10 right,
# counts 8 right; floats with DECIMALS decimals; fields joined by one space.
GENE_W, MODE_W, NUM_W, RATE_W, COUNT_W = 12, 9, 5, 10, 8
DECIMALS = 2
OVERALL_COLUMNS = [("Gene", GENE_W, "<"), ("Mode", MODE_W, "<"), ("MCC", NUM_W, ">"), ("FNR", NUM_W, ">"),
                   ("PPV", NUM_W, ">"), ("call_rate", RATE_W, ">"), ("n_eval", COUNT_W, ">")]
GROUP_COLUMNS = [("Gene", GENE_W, "<"), ("Mode", MODE_W, "<"), ("MCC", NUM_W, ">"), ("FNR", NUM_W, ">"),
                 ("PPV", NUM_W, ">"), ("n_pos", COUNT_W, ">"), ("n_eval", COUNT_W, ">")]
MISSING_COLUMNS = [("Gene", GENE_W, "<"), ("n", COUNT_W, ">"), ("gt_miss", RATE_W, ">"), ("pred_miss", RATE_W, ">"),
                   ("delta", RATE_W, ">")]
GUIDANCE = [
    "MCC        Matthews correlation of calls with the ground truth,",
    "           -1 to 1; N/A when the truth has a single class.",
    "FNR        false-negative rate FN/(TP+FN): positives missed.",
    "PPV        positive predictive value TP/(TP+FP).",
    "call_rate  share of samples with ground truth that have a call.",
    "n_eval     samples with both ground truth and a call.",
    "Positives  mode amp: an extra blaSHV copy (assembly count >= 2;",
    "           call amplified). mode presence: the plasmid gene",
    "           family is present (call present or amplified).",
    "           mode del: the gene is absent (count 0; call absent).",
    "Missing    a missing call or ground truth is left out of the",
    "           metrics, never counted as negative. N/A: undefined.",
    "CRR, PCN   chromosomal copy ratio; plasmid copies/chromosome.",
]
HEADER_LABEL_W = 18


def _pct_columns(first: str) -> list[tuple[str, int, str]]:
    return [("Gene", GENE_W, "<"), (first, 10, "<"), ("n", COUNT_W, ">")] + [(f"p{q}", NUM_W, ">")
                                                                            for q in PERCENTILES]


def evaluation_header(generated: str, out_dir: str, sources: list[tuple[str, str | None]]) -> list[str]:
    """The ``KpSC experiment evaluation`` header block: generated time, out dir, ground-truth sources.

    ``sources``: ``(label, path or None)`` pairs; None prints as ``none``.
    """
    rows = [("Generated:", generated), ("Out dir:", out_dir)]
    rows += [(f"{label}:", path or "none") for label, path in sources]
    return _block("KpSC experiment evaluation", [f"{k:<{HEADER_LABEL_W}}{v}" for k, v in rows])


def header_fields(params) -> dict:
    """Header fields of a stage-04 run: ``generated`` (UTC), ``out_dir``, ``sources`` (the GT files).

    ``generated`` is the time the newest evaluated calls file (``gene_calls.tsv``,
    ``plasmid_gene_calls.tsv``) was written, or ``SOURCE_DATE_EPOCH`` (seconds) when set,
    so the same inputs give the same file byte for byte.
    """
    import os
    import time

    calls = [art.path(params.out_path) for art in (A.GENE_CALLS, A.PLASMID_CALLS)]
    stamps = [p.stat().st_mtime for p in calls if p.is_file()]
    epoch = float(os.environ.get("SOURCE_DATE_EPOCH", max(stamps) if stamps else 0.0))
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    sources = [("AMRFinder GT", params.kpsc_gt_path), ("Kleborate GT", params.kpsc_kleborate_gt_path),
               ("Metadata", params.kpsc_meta_path), ("Hold-out ids", params.holdout_ids_path)]
    return {"generated": generated, "out_dir": str(params.out_path), "sources": sources}


INTERVAL_COLUMNS = [("Gene", GENE_W, "<"), ("Mode", MODE_W, "<"), ("MCC [95 % CI]", 18, ">"),
                    ("Recall [95 % CI]", 18, ">"), ("PPV [95 % CI]", 18, ">")]


def _with_interval(row, name: str) -> str:
    """``0.91 [0.85, 0.95]`` (two decimals), ``N/A`` where undefined."""
    value = row.get(name, np.nan)
    if value is None or not np.isfinite(value):
        return "N/A"
    return f"{value:.2f} [{row.get(name + '_lo', np.nan):.2f}, {row.get(name + '_hi', np.nan):.2f}]"


def interval_rows(overall: pd.DataFrame) -> list[str]:
    """OVERALL metrics with their 95 % bootstrap intervals (resampling the evaluated samples)."""
    rows = [[r["gene"], r["mode"], _with_interval(r, "mcc"), _with_interval(r, "recall"), _with_interval(r, "ppv")]
            for _, r in overall.iterrows()]
    return _table(INTERVAL_COLUMNS, rows) + ["(percentile bootstrap over the evaluated samples, 2,000 replicates)"]


def definition_rows(definitions: pd.DataFrame) -> list[str]:
    """The same calls against each definition of a positive, labelled."""
    columns = INTERVAL_COLUMNS[2:] + [("n_pos", COUNT_W, ">"), ("n_eval", COUNT_W + 2, ">")]
    body = _table(columns, [])
    for _, r in definitions.iterrows():
        body.append(f"{r['gene']}: positive = {r['definition']}")
        body.append(_row(columns, [_with_interval(r, "mcc"), _with_interval(r, "recall"), _with_interval(r, "ppv"),
                                   str(int(r["n_pos"])), str(int(r["n_eval"]))]))
    return body


def format_evaluation_txt(overall: pd.DataFrame, by_label: pd.DataFrame, by_outcome: pd.DataFrame,
                          by_species: pd.DataFrame, by_st: pd.DataFrame, segments: pd.DataFrame,
                          call_status: pd.DataFrame, summary: dict, notes: list[str], tier: str,
                          min_group_n: int, header: dict | None = None,
                          definitions: pd.DataFrame | None = None) -> str:
    """The fixed-width ``evaluation.txt`` in the original's layout (docs/evaluation.md; golden-file test).

    Blocks: GUIDANCE, ``KpSC experiment evaluation`` (``header``: generated, out_dir,
    sources; see :func:`header_fields`), OVERALL, MISSINGNESS, CRR/PCN BY PREDICTED
    LABEL, CRR/PCN BY CALL OUTCOME, BY SPECIES, BY SEQUENCE TYPE, SEGMENT DIAGNOSTICS,
    then CNVRock's additions (CNVROCK SUMMARY: tier, sample counts, notes). Each block
    sits between 64-character '=' rules, tables have a header row and a '-' rule; floats
    have 2 decimals, N/A marks undefined values. In the percentile blocks ``n`` counts
    samples; percentiles use their finite values.
    """
    header = header or {"generated": "unknown", "out_dir": "unknown", "sources": []}
    lines = _block("GUIDANCE", GUIDANCE)
    lines += evaluation_header(header["generated"], header["out_dir"], header["sources"])

    def fmt(value) -> str:
        return _fmt(value, DECIMALS)

    def metric_row(r, last):
        return [r["gene"], r["mode"], fmt(r["mcc"]), fmt(r["fnr"]), fmt(r["ppv"])] + [
            fmt(r[k]) if k != "n_eval" else str(int(r[k])) for k in last]

    lines += _block("OVERALL", _table(OVERALL_COLUMNS, [metric_row(r, ["call_rate", "n_eval"])
                                                        for _, r in overall.iterrows()]))
    lines += _block("MISSINGNESS", _table(MISSING_COLUMNS, [
        [r["gene"], str(int(r["n"])), fmt(r["gt_miss"]), fmt(r["pred_miss"]), fmt(r["delta"])]
        for _, r in overall.iterrows()]))
    for title, frame, first in (("CRR/PCN BY PREDICTED LABEL", by_label, "label"),
                                ("CRR/PCN BY CALL OUTCOME", by_outcome, "outcome")):
        rows = [[r["gene"], r[first], str(int(r["n_samples"]))] + [fmt(r[f"p{q}"]) for q in PERCENTILES]
                for _, r in frame.iterrows()] if not frame.empty else []
        lines += _block(title, _table(_pct_columns(first), rows))

    def grouped(frame: pd.DataFrame, key: str, label: str) -> list[str]:
        body = _table(GROUP_COLUMNS, [])
        for name, g in frame.groupby(key, sort=False):
            body.append(f"{label}: {name}")
            body += [_row(GROUP_COLUMNS, [r["gene"], r["mode"], fmt(r["mcc"]), fmt(r["fnr"]), fmt(r["ppv"]),
                                          str(int(r["n_pos"])), str(int(r["n_eval"]))]) for _, r in g.iterrows()]
        return body

    lines += _block("BY SPECIES", grouped(by_species, "species", "Species"))
    st_body = grouped(by_st, "ST", "ST") if not by_st.empty else _table(GROUP_COLUMNS, [])
    st_body.append(f"(ST x gene groups with n_eval >= {min_group_n}; samples without ST not grouped)")
    lines += _block("BY SEQUENCE TYPE", st_body)

    seg_rows = [[m, str(int(v)) if m in COUNT_METRICS else fmt(v)]
                for m, v in zip(segments["metric"], segments["value"])] if not segments.empty else []
    body = _table([("Metric", 40, "<"), ("Value", RATE_W, ">")], seg_rows)
    if not call_status.empty:
        body += [""] + _table([("Gene", GENE_W, "<"), ("status", 20, "<"), ("n", COUNT_W, ">")],
                              [[r["gene"], r["status"], str(int(r["n"]))] for _, r in call_status.iterrows()])
    lines += _block("SEGMENT DIAGNOSTICS", body)

    # CNVRock's additions come after the original blocks
    lines += _block("CNVROCK OVERALL WITH 95 % INTERVALS", interval_rows(overall))
    if definitions is not None and not definitions.empty:
        lines += _block("CNVROCK POSITIVE DEFINITIONS (chromosomal genes, amp)", definition_rows(definitions))
    extra = [f"tier {tier}"]
    for key in ("evaluated_samples", "gt_samples", "called_samples", "gt_without_calls", "calls_without_gt",
                "holdout_ids", "holdout_not_joined", "without_metadata"):
        if key in summary:
            extra.append(f"{key:<24}{summary[key]:>8}")
    extra += [f"note: {n}" for n in notes]
    lines += _block("CNVROCK SUMMARY", extra)
    return "\n".join(lines).rstrip("\n") + "\n"
