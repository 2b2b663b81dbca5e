"""Stage 03 report helpers: the tables ``notebooks/03_call.ipynb`` shows and its plots draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import artefacts as A
from .. import reference
from ..geometry import flank_bin_indices, gene_bin_weights
from ..copy_number import CN_STATES
from ..errors import InputError
from ..params import Params
from ..store import open_store


def call_counts(gene_calls: pd.DataFrame, plasmid_calls: pd.DataFrame) -> pd.DataFrame:
    """Samples per call label for every chromosomal gene and plasmid family/member.

    Columns: ``gene level uncallable absent normal present amplified`` (0 where a label does
    not apply), ``statuses`` (counts of the non-ok statuses) and ``rules`` (callable rows per
    ``call_rule``: which rule made the calls).
    """
    frames = []
    if len(gene_calls):
        frames.append(gene_calls.assign(level="chromosome"))
    if len(plasmid_calls):
        frames.append(plasmid_calls)
    if not frames:
        return pd.DataFrame(columns=["gene", "level", "uncallable", "absent", "normal", "present", "amplified",
                                     "statuses", "rules"])
    cols = ["gene", "level", "label", "status", "call_rule"]
    both = pd.concat([f.reindex(columns=cols, fill_value="") for f in frames], ignore_index=True)
    table = pd.crosstab([both.gene, both.level], both.label)
    for col in ("uncallable", "absent", "normal", "present", "amplified"):
        if col not in table.columns:
            table[col] = 0
    table = table[["uncallable", "absent", "normal", "present", "amplified"]].reset_index()
    bad = both[both.status != "ok"].groupby(["gene", "level"])["status"].agg(
        lambda s: ", ".join(f"{k} {v}" for k, v in s.value_counts().sort_index().items()))
    table["statuses"] = [bad.get((g, lvl), "") for g, lvl in zip(table.gene, table.level)]
    rules = both[both.status == "ok"].groupby(["gene", "level"])["call_rule"].agg(
        lambda s: ", ".join(f"{k} {v}" for k, v in s.value_counts().sort_index().items()))
    table["rules"] = [rules.get((g, lvl), "") for g, lvl in zip(table.gene, table.level)]
    order = {"chromosome": 0, "family": 1, "member": 2}
    return table.sort_values(["level", "gene"], key=lambda c: c.map(order) if c.name == "level" else c) \
        .reset_index(drop=True)


def with_metadata(calls: pd.DataFrame, meta_path: str | Path | None) -> pd.DataFrame:
    """``calls`` with the metadata's ``Species`` and ``ST`` (left join; '' where unknown)."""
    out = calls.copy()
    if not meta_path:
        out["ST"] = ""
        out["Species"] = ""
        return out
    meta = reference.read_tsv(meta_path, ["sample_id"], "metadata (kpsc_meta_path)")
    keep = [c for c in ("sample_id", "Species", "ST") if c in meta.columns]
    out = out.drop(columns=[c for c in ("Species", "ST") if c in out.columns]).merge(
        meta[keep], on="sample_id", how="left")
    for col in ("Species", "ST"):
        out[col] = out[col].fillna("") if col in out.columns else ""
    return out


def top_amplified(gene_calls: pd.DataFrame, gene: str | None = None, n: int = 4) -> pd.DataFrame:
    """The ``n`` amplified calls with the highest CRR (of ``gene``, default the first gene)."""
    gene = gene or (gene_calls.gene.iloc[0] if len(gene_calls) else None)
    amp = gene_calls[(gene_calls.gene == gene) & (gene_calls.call == 2)]
    return amp.sort_values("crr", ascending=False).head(n).reset_index(drop=True)


def depth_tracks(params: Params, sample_ids, gene: str | None = None, padding: int | None = None) -> pd.DataFrame:
    """Copy ratio and HMM state around a chromosomal gene for some samples (the depth tracks).

    Returns a tidy frame ``sample_id chrom start end observed expected copy_ratio state_cn in_gene``
    (bp, reads per bin, copies) over the gene ± ``padding`` (default ``cnv_flank_padding``).
    """
    panel = reference.load_gene_panel(params.chrom_gene_coords_path, "chromosome").genes
    row = panel.iloc[0] if gene is None else panel[panel.gene == gene]
    if isinstance(row, pd.DataFrame):
        if row.empty:
            raise InputError(f"gene {gene!r} is not in the chromosomal gene panel; panel genes: "
                             f"{', '.join(panel.gene)}")
        row = row.iloc[0]
    padding = int(params.cnv_flank_padding if padding is None else padding)
    store = open_store(params.store_path, check_values=False)
    out_dir = params.out_path
    shape = store.counts.shape
    ratios = A.load_array(out_dir, A.COPY_RATIOS, shape)
    states = A.load_array(out_dir, A.STATES, shape)
    recon = A.load_array(out_dir, A.RECONSTRUCTIONS, shape) if A.RECONSTRUCTIONS.path(out_dir).is_file() else None
    gene_idx, _ = gene_bin_weights(store.bins, row.contig, int(row.start), int(row.end))
    flank = flank_bin_indices(store.bins, row.contig, int(row.start), int(row.end), padding, gene_idx)
    cols = np.union1d(gene_idx, flank)
    frames = []
    for sid, i in zip(list(sample_ids), store.index_of(list(sample_ids))):
        frames.append(pd.DataFrame({
            "sample_id": sid, "chrom": store.bins["chrom"][cols], "start": store.bins["start"][cols],
            "end": store.bins["end"][cols], "observed": np.asarray(store.counts[i, cols], dtype=np.float64),
            "expected": np.asarray(recon[i, cols], dtype=np.float64) if recon is not None else np.nan,
            "copy_ratio": np.asarray(ratios[i, cols], dtype=np.float64),
            "state_cn": np.asarray(CN_STATES)[np.asarray(states[i, cols], dtype=np.int64)],
            "in_gene": np.isin(cols, gene_idx), "gene": row.gene,
            "gene_start": int(row.start), "gene_end": int(row.end),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
