"""SEG export (IGV / GISTIC style): every segment of every exported sample.

Columns ``ID chrom loc.start loc.end num.mark seg.mean``: sample_id, contig,
first and last base (1-based, inclusive), number of unmasked 1 kb bins and the
log2 of the segment's mean copy ratio (floored at −10 for segments without
reads; ``NA`` when every bin is masked).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import write_tsv
from .core import ExportData, log2_ratio

SEG_NAME = "cnvrock.seg"
SEG_COLUMNS = ["ID", "chrom", "loc.start", "loc.end", "num.mark", "seg.mean"]


def seg_table(data: ExportData) -> pd.DataFrame:
    """The SEG rows of ``data`` in sample, contig and position order."""
    seg = data.segments
    order = {s: i for i, s in enumerate(data.samples)}
    contig = {c: i for i, c in enumerate(data.contigs["contig"])}
    seg = seg.assign(_s=seg["sample_id"].map(order), _c=seg["chrom"].map(contig)).sort_values(
        ["_s", "_c", "start"], kind="stable")
    return pd.DataFrame({"ID": seg["sample_id"].to_numpy(), "chrom": seg["chrom"].to_numpy(),
                         "loc.start": seg["start"].to_numpy(), "loc.end": seg["end"].to_numpy(),
                         "num.mark": (seg["n_bins"] - seg["n_masked"]).to_numpy(),
                         "seg.mean": log2_ratio(seg["mean_ratio"])})


def write_seg(data: ExportData, dest: Path | None = None) -> list[Path]:
    """Write ``cnvrock.seg`` (tab-separated, seg.mean with 4 decimals) into ``dest`` (default ``out_dir/export``)."""
    target = Path(dest or data.export_dir) / SEG_NAME
    write_tsv(target, seg_table(data), float_format="%.4f", na_rep="NA")
    return [target]
