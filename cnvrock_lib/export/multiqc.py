"""MultiQC custom content: a CNVRock section in the run's one-page QC report.

Written to ``out_dir/export/multiqc/`` (MultiQC finds ``*_mqc.*`` files anywhere
under the folder it is given):

* ``cnvrock_general_stats_mqc.tsv``: one General Statistics row per sample (median
  depth, noise, QC pass, blaSHV dosage, number of carried plasmid families);
* ``cnvrock_dosage_table_mqc.yaml``: per sample the chromosomal CRR calls, each plasmid
  family's PCN and the carried families;
* ``cnvrock_dosage_plot_mqc.yaml``: a bar plot of blaSHV CRR and family PCNs per sample.

All three sit under one section ``CNVRock`` (``parent_id: cnvrock``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..atomic import write_text
from .core import ExportData

MQC_DIRNAME = "multiqc"
PARENT = {"parent_id": "cnvrock", "parent_name": "CNVRock",
          "parent_description": "Gene dosage of AMR genes from short-read depth (CNVRock): chromosomal copy "
                                "ratio (CRR) of blaSHV-like genes and plasmid copy number (PCN) per gene family."}


def _num(v) -> float | None:
    v = float(v)
    return round(v, 4) if np.isfinite(v) else None


def dosage_summary(data: ExportData) -> pd.DataFrame:
    """One row per sample: QC columns, ``<gene>_crr``/``<gene>_call`` per chromosomal gene,
    ``<family>_pcn`` per plasmid family, ``n_families_carried`` and ``families_carried``."""
    out = data.qc.set_index("sample_id")[["median_depth", "noise_sd", "qc_pass"]].copy()
    out["qc_pass"] = out["qc_pass"].astype(str).str.lower().isin(["true", "1", "yes"])
    for gene, g in data.gene_calls.groupby("gene", sort=False):
        g = g.set_index("sample_id")
        out[f"{gene}_crr"] = g["crr"].reindex(out.index)
        out[f"{gene}_call"] = g["label"].reindex(out.index)
    fam = data.plasmid_calls[data.plasmid_calls["level"] == "family"]
    carried = pd.Series([[] for _ in out.index], index=out.index, dtype=object)
    for family, f in fam.groupby("gene", sort=False):
        f = f.set_index("sample_id")
        out[f"{family}_pcn"] = f["pcn"].reindex(out.index)
        hit = f["call"].reindex(out.index).fillna(-1).astype(int) >= 1
        carried = carried.combine(hit, lambda lst, h, name=family: lst + [name] if h else lst)
    out["n_families_carried"] = carried.map(len).astype(int)
    out["families_carried"] = carried.map(lambda x: ", ".join(x) if x else "none")
    return out.loc[data.samples]


def general_stats_text(data: ExportData, summary: pd.DataFrame) -> str:
    """``cnvrock_general_stats_mqc.tsv``: YAML header (``#`` lines) + one row per sample."""
    chrom_genes = list(dict.fromkeys(data.gene_calls["gene"]))
    headers = {
        "median_depth": {"title": "Depth", "description": "CNVRock: median reads per 1 kb bin", "format": "{:,.0f}",
                         "scale": "Blues"},
        "noise_sd": {"title": "CR noise", "description": "CNVRock: SD of bin copy ratios around the segments",
                     "format": "{:,.3f}", "scale": "OrRd"},
        "qc_pass": {"title": "QC", "description": "CNVRock: sample passes segment QC (1 yes, 0 no)",
                    "min": 0, "max": 1, "format": "{:,.0f}", "scale": "RdYlGn"},
        **{f"{g}_crr": {"title": f"{g} CRR", "description": f"CNVRock: {g} copies per chromosome copy",
                        "format": "{:,.2f}", "scale": "Reds"} for g in chrom_genes},
        "n_families_carried": {"title": "Families", "description": "CNVRock: plasmid AMR gene families carried "
                               "(called present or amplified)", "format": "{:,.0f}", "scale": "Purples"},
    }
    config = {"id": "cnvrock_general_stats", "plot_type": "generalstats", "namespace": "CNVRock",
              "headers": headers}
    table = summary[list(headers)].copy()
    table["qc_pass"] = table["qc_pass"].astype(int)
    head = "".join(f"# {line}\n" for line in yaml.safe_dump(config, sort_keys=False).splitlines())
    return head + table.rename_axis("Sample").to_csv(sep="\t", float_format="%.4f", na_rep="")


def dosage_table_yaml(data: ExportData, summary: pd.DataFrame) -> str:
    """``cnvrock_dosage_table_mqc.yaml``: the per-sample dosage table section."""
    cols = [c for c in summary.columns if c.endswith(("_crr", "_call", "_pcn"))] + ["families_carried"]
    rows = {s: {c: (_num(v) if isinstance(v, (int, float, np.number)) else str(v))
                for c, v in summary.loc[s, cols].items()} for s in summary.index}
    doc = {"id": "cnvrock_dosage_table", **PARENT, "section_name": "Gene dosage",
           "description": f"CNVRock {data.version} (params {data.params_hash}): CRR of chromosomal genes with "
                          "their call, PCN (copies per chromosome) of each plasmid gene family, families carried.",
           "plot_type": "table", "pconfig": {"id": "cnvrock_dosage_table_plot", "title": "CNVRock: gene dosage"},
           "data": rows}
    return yaml.safe_dump(doc, sort_keys=False)


def dosage_plot_yaml(data: ExportData, summary: pd.DataFrame) -> str:
    """``cnvrock_dosage_plot_mqc.yaml``: grouped bars of blaSHV CRR and family PCNs per sample."""
    cols = [c for c in summary.columns if c.endswith(("_crr", "_pcn"))]
    rows = {s: {c.replace("_crr", " CRR").replace("_pcn", " PCN"): (_num(v) if _num(v) is not None else 0.0)
                for c, v in summary.loc[s, cols].items()} for s in summary.index}
    doc = {"id": "cnvrock_dosage_plot", **PARENT, "section_name": "Dosage plot",
           "description": "Per sample: CRR of chromosomal genes (1 = one copy per chromosome) and PCN of each "
                          "plasmid gene family (0 = absent).",
           "plot_type": "bargraph",
           "pconfig": {"id": "cnvrock_dosage_bargraph", "title": "CNVRock: gene dosage per sample",
                       "ylab": "copies per chromosome", "stacking": "group", "cpswitch": False},
           "data": rows}
    return yaml.safe_dump(doc, sort_keys=False)


def write_multiqc(data: ExportData, dest: Path | None = None) -> list[Path]:
    """Write the three MultiQC custom-content files into ``dest/multiqc`` (default ``out_dir/export``)."""
    folder = Path(dest or data.export_dir) / MQC_DIRNAME
    summary = dosage_summary(data)
    files = {"cnvrock_general_stats_mqc.tsv": general_stats_text(data, summary),
             "cnvrock_dosage_table_mqc.yaml": dosage_table_yaml(data, summary),
             "cnvrock_dosage_plot_mqc.yaml": dosage_plot_yaml(data, summary)}
    for name, text in files.items():
        write_text(folder / name, text)
    return [folder / n for n in files]
