"""BED exports: the called gene dosages and the gene panel.

``gene_dosage.bed`` (BED9, one line per sample x gene with coordinates: the
chromosomal genes and the plasmid members): ``chrom chromStart chromEnd name
score strand thickStart thickEnd itemRgb`` with 0-based starts, ``name`` =
``sample_id|gene|label|dosage`` (dosage: CRR or PCN, 3 decimals, ``NA`` when
uncallable), ``score`` = 1000 x call confidence, colour by call.
``gene_panel.bed`` (BED4): every panel gene.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_text
from .core import ExportData

DOSAGE_NAME = "gene_dosage.bed"
PANEL_NAME = "gene_panel.bed"
CALL_RGB = {-1: "160,160,160", 0: "33,102,172", 1: "90,90,90", 2: "203,24,29"}


def dosage_table(data: ExportData) -> pd.DataFrame:
    """Called gene dosages joined to their coordinates: ``contig start end sample_id gene label call dosage confidence``."""
    chrom = data.gene_calls.rename(columns={"crr": "dosage"})
    member = data.plasmid_calls[data.plasmid_calls["level"] == "member"].rename(columns={"pcn": "dosage"})
    cols = ["sample_id", "gene", "label", "call", "dosage", "confidence"]
    calls = pd.concat([chrom[cols], member[cols]], ignore_index=True)
    table = calls.merge(data.genes[["gene", "contig", "start", "end"]], on="gene", how="inner")
    contig = {c: i for i, c in enumerate(data.contigs["contig"])}
    sample = {s: i for i, s in enumerate(data.samples)}
    table = table.assign(_c=table["contig"].map(contig), _s=table["sample_id"].map(sample))
    return table.sort_values(["_c", "start", "_s"], kind="stable").drop(columns=["_c", "_s"]).reset_index(drop=True)


def _bed_lines(columns: list) -> str:
    return "".join("\t".join(str(v) for v in row) + "\n" for row in zip(*columns))


def dosage_bed_text(data: ExportData, samples: list[str] | None = None) -> str:
    """``gene_dosage.bed`` as text (track line + BED9 rows), of ``samples`` only when given."""
    t = dosage_table(data)
    if samples is not None:
        t = t[t["sample_id"].isin(samples)]
    dosage = [("NA" if not np.isfinite(v) else f"{v:.3f}") for v in t["dosage"].astype(float)]
    name = [f"{s}|{g}|{lab}|{d}" for s, g, lab, d in zip(t["sample_id"], t["gene"], t["label"], dosage)]
    score = np.clip(np.nan_to_num(t["confidence"].astype(float), nan=0.0) * 1000, 0, 1000).round().astype(int)
    start0 = t["start"] - 1
    header = (f'track name="CNVRock gene dosage" description="CNVRock {data.version} gene calls '
              f'(params {data.params_hash})" itemRgb="On"\n')
    return header + _bed_lines([t["contig"], start0, t["end"], name, score, ["."] * len(t), start0, t["end"],
                                t["call"].astype(int).map(CALL_RGB)])


def panel_bed_text(data: ExportData) -> str:
    """``gene_panel.bed`` as text: track line + BED4 ``contig start0 end gene``."""
    panel = data.genes
    return 'track name="CNVRock gene panel"\n' + _bed_lines([panel["contig"], panel["start"] - 1, panel["end"],
                                                              panel["gene"]])


def write_bed(data: ExportData, dest: Path | None = None) -> list[Path]:
    """Write ``gene_dosage.bed`` and ``gene_panel.bed`` into ``dest`` (default ``out_dir/export``)."""
    dest = Path(dest or data.export_dir)
    write_text(dest / DOSAGE_NAME, dosage_bed_text(data))
    write_text(dest / PANEL_NAME, panel_bed_text(data))
    return [dest / DOSAGE_NAME, dest / PANEL_NAME]
