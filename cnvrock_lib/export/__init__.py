"""Exports of a finished tier into the tools users already look in (docs/exports.md).

``export(out_dir, formats, samples)`` writes, under ``out_dir/export/``:

* ``vcf``: ``cnvrock.vcf.gz`` + ``.tbi`` (VCF 4.2, pysam, bgzip + tabix);
* ``seg``: ``cnvrock.seg`` (IGV/GISTIC segments, log2 copy ratio);
* ``bed``: ``gene_dosage.bed`` and ``gene_panel.bed``;
* ``igv``: ``igv/`` per-sample bedGraph, SEG, BED, IGV session XML and igv.js page;
* ``multiqc``: ``multiqc/*_mqc.*`` custom content for a CNVRock MultiQC section.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ParamsError
from .bed import write_bed
from .core import ExportData, load_export_data
from .igv import write_igv
from .multiqc import write_multiqc
from .seg import write_seg
from .vcf import write_vcf

WRITERS = {"vcf": write_vcf, "seg": write_seg, "bed": write_bed, "igv": write_igv, "multiqc": write_multiqc}
FORMATS = tuple(WRITERS)

__all__ = ["FORMATS", "ExportData", "check_formats", "export", "load_export_data"]


def check_formats(formats, where: str = "export") -> list[str]:
    """The requested formats, deduplicated; ParamsError naming ``where`` for an unknown one."""
    formats = [str(f).strip().lower() for f in formats if str(f).strip()]
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ParamsError(f"{where}: unknown export format(s) {unknown}; expected some of {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def export(out_dir: str | Path, formats, samples: list[str] | None = None) -> dict[str, list[Path]]:
    """Write the requested ``formats`` of a finished tier's ``out_dir`` into ``out_dir/export``.

    Parameters
    ----------
    out_dir : a tier's out_dir after stages 02 and 03.
    formats : some of ``vcf seg bed igv multiqc``.
    samples : sample_ids to export (default all).

    Returns ``{format: [written paths]}``.
    """
    formats = check_formats(formats)
    data = load_export_data(out_dir, samples)
    return {f: WRITERS[f](data) for f in formats}
