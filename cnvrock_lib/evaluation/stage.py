"""Stage 04 driver: load the calls, ground truth, metadata and hold-out list, build the evaluation
table and its summaries (:mod:`.tables`), and write ``evaluation.txt``, ``evaluation_metrics.tsv``
and ``threshold_sweep.tsv`` through :mod:`cnvrock_lib.artefacts`.

Calls (stage 03) are inner-joined with the ground truth on ``sample_id``; metadata (Species, ST) is
a left join so samples without metadata still count in OVERALL; ``holdout_ids_path`` restricts the
evaluated set; chromosomal genes are scored only in their callable species (``eval_species``).
Plasmid genes are scored per family, with the GT's family names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import artefacts as A
from ..atomic import write_text
from ..errors import InputError
from ..holdout import read_holdout_ids
from ..params import Params
from ..reference import load_gene_families
from .inputs import load_ground_truth, load_metadata, load_predictions
from .metrics import MODES
from .tables import build_table, positive_definitions, segment_diagnostics, summarise, sweep_table, tidy_metrics
from .text import format_evaluation_txt, header_fields


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
    definitions: pd.DataFrame = field(default_factory=pd.DataFrame)  # chromosomal genes: per positive definition
    notes: list[str] = field(default_factory=list)
    text: str = ""
    paths: dict[str, Path] = field(default_factory=dict)

    def confusion(self, gene: str) -> np.ndarray:
        """2×2 confusion matrix of ``gene`` (rows GT 0/1, columns prediction 0/1; samples)."""
        row = self.overall.set_index("gene").loc[gene]
        return np.array([[row.tn, row.fp], [row.fn, row.tp]], dtype=np.int64)


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
    definitions = positive_definitions(table, simulated_gene_truth(params), int(params.seed))
    text = format_evaluation_txt(parts["overall"], parts["by_label"], parts["by_outcome"], parts["by_species"],
                                 parts["by_st"], segments, parts["call_status"], summary, notes,
                                 str(params.tier), int(params.eval_min_group_n),
                                 header=header_fields(params), definitions=definitions)
    result = EvaluationResult(table=table, segments=segments, sweep=sweep, summary=summary, notes=notes,
                              text=text, definitions=definitions, **parts)
    if write:
        write_text(A.EVALUATION_TXT.path(out_dir), text)
        tidy = tidy_metrics(parts["overall"], parts["by_species"], parts["by_st"], parts["by_label"],
                            parts["by_outcome"], segments, parts["call_status"], definitions)
        result.paths = {A.EVALUATION_TXT.name: A.EVALUATION_TXT.path(out_dir),
                        A.EVALUATION_METRICS.name: A.write_table(out_dir, A.EVALUATION_METRICS, tidy, na_rep="NA"),
                        A.THRESHOLD_SWEEP.name: A.write_table(out_dir, A.THRESHOLD_SWEEP, sweep, na_rep="NA",
                                                               float_format="%.6g")}
    return result


def simulated_gene_truth(params: Params) -> pd.DataFrame | None:
    """A simulated tier's ``truth/gene_truth.tsv`` (for reporting only; never read by a call), else None."""
    sim = params.simulate
    path = Path(sim["data_dir"]) / "truth" / "gene_truth.tsv" if sim else None
    if path is None or not path.is_file():
        return None
    return pd.read_csv(path, sep="\t", dtype={"sample_id": str, "gene": str, "level": str})


def headline_metrics(out_dir: str | Path) -> pd.DataFrame:
    """Overall per-gene rows ``gene mode mcc fnr ppv n_eval`` from ``out_dir/evaluation_metrics.tsv``."""
    path = A.EVALUATION_METRICS.path(out_dir)
    tidy = A.read_table(out_dir, A.EVALUATION_METRICS, keep_default_na=False, na_values=["NA"],
                        dtype={"group": str, "gene": str})
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
