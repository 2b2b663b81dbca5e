"""The fixed-width ``evaluation.txt`` of stage 04 (SPEC §8; layout in docs/evaluation.md).

Formatting only: ``format_evaluation_txt`` takes the frames that
``cnvrock_lib.evaluate`` computes and lays them out in the original's blocks.
The layout constants (rule width, percentile columns, count metrics) live here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


GENE_W, MODE_W, NUM_W = 14, 8, 7
OVERALL_COLUMNS = [("Gene", GENE_W, "<"), ("Mode", MODE_W, "<"), ("MCC", NUM_W, ">"), ("FNR", NUM_W, ">"),
                   ("PPV", NUM_W, ">"), ("call_rate", 9, ">"), ("n_eval", 6, ">")]
GROUP_COLUMNS = [("Gene", GENE_W, "<"), ("Mode", MODE_W, "<"), ("MCC", NUM_W, ">"), ("FNR", NUM_W, ">"),
                 ("PPV", NUM_W, ">"), ("n_pos", 6, ">"), ("n_eval", 6, ">")]
MISSING_COLUMNS = [("Gene", GENE_W, "<"), ("n", 6, ">"), ("gt_miss", 9, ">"), ("pred_miss", 9, ">"),
                   ("delta", 9, ">")]


def _pct_columns(first: str) -> list[tuple[str, int, str]]:
    return [("Gene", GENE_W, "<"), (first, 10, "<"), ("n", 5, ">")] + [(f"p{q}", 5, ">") for q in PERCENTILES]


def format_evaluation_txt(overall: pd.DataFrame, by_label: pd.DataFrame, by_outcome: pd.DataFrame,
                          by_species: pd.DataFrame, by_st: pd.DataFrame, segments: pd.DataFrame,
                          call_status: pd.DataFrame, summary: dict, notes: list[str], tier: str,
                          min_group_n: int) -> str:
    """The fixed-width ``evaluation.txt`` (layout in docs/evaluation.md; frozen by a golden file).

    Blocks: OVERALL, MISSINGNESS, CRR/PCN BY PREDICTED LABEL, CRR/PCN BY CALL
    OUTCOME, BY SPECIES, BY SEQUENCE TYPE, SEGMENT DIAGNOSTICS, each between
    64-character '=' rules, a header row and a 64-character '-' rule; N/A marks
    undefined values; fractions and metrics have 3 decimals, CRR/PCN 2. In the
    percentile blocks ``n`` counts samples; percentiles use their finite values.
    """
    lines = ["=" * RULE_WIDTH, f"CNVRock evaluation  tier={tier}", "=" * RULE_WIDTH]
    for key in ("evaluated_samples", "gt_samples", "called_samples", "gt_without_calls", "calls_without_gt",
                "holdout_ids", "holdout_not_joined", "without_metadata"):
        if key in summary:
            lines.append(f"{key:<24}{summary[key]:>8}")
    lines += [f"note: {n}" for n in notes]
    lines.append("")

    def metric_row(r, last):
        return [r["gene"], r["mode"], _fmt(r["mcc"]), _fmt(r["fnr"]), _fmt(r["ppv"])] + [
            _fmt(r[k]) if k != "n_eval" else str(int(r[k])) for k in last]

    lines += _block("OVERALL", _table(OVERALL_COLUMNS, [metric_row(r, ["call_rate", "n_eval"])
                                                        for _, r in overall.iterrows()]))
    lines += _block("MISSINGNESS", _table(MISSING_COLUMNS, [
        [r["gene"], str(int(r["n"])), _fmt(r["gt_miss"]), _fmt(r["pred_miss"]), _fmt(r["delta"])]
        for _, r in overall.iterrows()]))
    for title, frame, first in (("CRR/PCN BY PREDICTED LABEL", by_label, "label"),
                                ("CRR/PCN BY CALL OUTCOME", by_outcome, "outcome")):
        rows = [[r["gene"], r[first], str(int(r["n_samples"]))] + [_fmt(r[f"p{q}"], 2) for q in PERCENTILES]
                for _, r in frame.iterrows()] if not frame.empty else []
        lines += _block(title, _table(_pct_columns(first), rows))

    def grouped(frame: pd.DataFrame, key: str, label: str) -> list[str]:
        body = _table(GROUP_COLUMNS, [])
        for name, g in frame.groupby(key, sort=False):
            body.append(f"{label}: {name}")
            body += [_row(GROUP_COLUMNS, [r["gene"], r["mode"], _fmt(r["mcc"]), _fmt(r["fnr"]), _fmt(r["ppv"]),
                                          str(int(r["n_pos"])), str(int(r["n_eval"]))]) for _, r in g.iterrows()]
        return body

    lines += _block("BY SPECIES", grouped(by_species, "species", "Species"))
    st_body = grouped(by_st, "ST", "ST") if not by_st.empty else _table(GROUP_COLUMNS, [])
    st_body.append(f"(ST x gene groups with n_eval >= {min_group_n}; samples without ST not grouped)")
    lines += _block("BY SEQUENCE TYPE", st_body)

    seg_rows = [[m, str(int(v)) if m in COUNT_METRICS else _fmt(v)]
                for m, v in zip(segments["metric"], segments["value"])] if not segments.empty else []
    body = _table([("Metric", 40, "<"), ("Value", 10, ">")], seg_rows)
    if not call_status.empty:
        body += [""] + _table([("Gene", GENE_W, "<"), ("status", 20, "<"), ("n", 8, ">")],
                              [[r["gene"], r["status"], str(int(r["n"]))] for _, r in call_status.iterrows()])
    lines += _block("SEGMENT DIAGNOSTICS", body)
    return "\n".join(lines).rstrip("\n") + "\n"
