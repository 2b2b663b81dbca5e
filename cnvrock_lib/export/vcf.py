"""VCF 4.2 export: copy-number segments and gene dosages of all samples, bgzipped and tabix-indexed.

Written with pysam (``pysam.VariantFile``) and indexed with ``pysam.tabix_index``.
Records (fields documented in docs/exports.md):

* **segments** (``LEVEL=segment``): every segment whose copy number is not 1,
  ``<DEL>`` below 1 and ``<DUP>`` above; one record per distinct interval and
  direction, FORMAT filled for the samples that carry it and missing (``.``)
  for the others. ``QUAL`` is the highest per-sample ``SQ``.
* **gene dosages** (``LEVEL=chromosome|member|family``, ALT ``<CNV>``): one record
  per panel gene (chromosomal CRR, plasmid member PCN) and per plasmid family
  (PCN, placed at its first panel member), every sample filled.

POS is the first base of the interval (1-based), ``INFO/END`` its last; REF is ``N``
because the export does not read the reference sequence. No ``SVLEN`` is written:
htslib derives END from it under the padding-base convention, which these
intervals (POS = first base) do not follow.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import OutputError
from .core import ExportData, phred

VCF_NAME = "cnvrock.vcf.gz"

INFO_FIELDS = [
    ("END", "1", "Integer", "Last base of the interval (1-based, inclusive)"),
    ("SVTYPE", "1", "String", "DEL or DUP (segments), CNV (gene dosage records)"),
    ("LEVEL", "1", "String", "segment, chromosome (chromosomal gene, CRR), member (plasmid gene, PCN) or "
                             "family (plasmid gene family, PCN; placed at its first panel member)"),
    ("GENE", "1", "String", "Gene (chromosome/member records) or gene family (family records)"),
    ("MEMBERS", ".", "String", "Family records: the family's member genes"),
    ("NCARRIERS", "1", "Integer", "Segment records: number of samples carrying the segment"),
]
FORMAT_FIELDS = [
    ("CN", "1", "Float", "Segment copy number relative to one chromosome copy (HMM state 0, 0.5, 1, 1.5, 2 or 3)"),
    ("SQ", "1", "Integer", "Segment quality: phred of 1 - mean HMM posterior of the segment's state, capped at 99"),
    ("NB", "1", "Integer", "Number of 1 kb bins in the segment"),
    ("NM", "1", "Integer", "Number of masked bins in the segment"),
    ("CR", "1", "Float", "Mean copy ratio of the segment's unmasked bins"),
    ("DS", "1", "Float", "Gene dosage: CRR (copies per chromosome copy, chromosomal genes) or PCN "
                         "(copies per chromosome, plasmid genes)"),
    ("DSL", "1", "Float", "Lower end of the dosage interval"),
    ("DSH", "1", "Float", "Upper end of the dosage interval"),
    ("GCALL", "1", "Integer", "Gene call: -1 uncallable, 0 absent, 1 normal/present, 2 amplified"),
    ("GLAB", "1", "String", "Gene call label (uncallable, absent, normal, present, amplified)"),
    ("CQ", "1", "Integer", "Gene call quality: phred of 1 - call confidence, capped at 99"),
    ("STATUS", "1", "String", "Gene call status of stage 03 (ok or the reason the call is uncallable)"),
]


def _value(v):
    """A VCF value: None (missing) for NaN/None, Python scalars otherwise."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def _header(data: ExportData):
    import pysam

    header = pysam.VariantHeader()
    header.add_meta("source", f"CNVRock {data.version}")
    header.add_meta("cnvrock_version", data.version)
    header.add_meta("cnvrock_params_hash", data.params_hash)
    header.add_meta("cnvrock_tier", str(data.params.values.get("tier")))
    header.add_meta("reference", "HS11286 chromosome + AMR plasmid contigs (cnvrock_lib hs11286_extended_contigs.tsv)")
    for contig, length in zip(data.contigs["contig"], data.contigs["length"]):
        header.contigs.add(str(contig), length=int(length))
    for alt, text in (("DEL", "Copy number below one chromosome copy"),
                      ("DUP", "Copy number above one chromosome copy"),
                      ("CNV", "Gene dosage record (every sample's CRR or PCN)")):
        header.add_meta("ALT", items=[("ID", alt), ("Description", text)])
    for key, number, kind, text in INFO_FIELDS:
        header.info.add(key, number, kind, text)
    for key, number, kind, text in FORMAT_FIELDS:
        header.formats.add(key, number, kind, text)
    header.add_meta("FILTER", items=[("ID", "PASS"), ("Description", "All filters passed")])
    for sample in data.samples:
        header.add_sample(sample)
    return header


def segment_records(data: ExportData) -> pd.DataFrame:
    """Segments away from CN 1 grouped by interval and direction: one row per (record, sample)."""
    seg = data.segments[data.segments["cn"] != 1.0].copy()
    seg["alt"] = np.where(seg["cn"] < 1.0, "DEL", "DUP")
    seg["sq"] = phred(seg["confidence"]).astype(int)
    return seg


def gene_records(data: ExportData) -> list[dict]:
    """Gene dosage records: ``{contig start end level gene members calls}``, calls indexed by sample_id."""
    out = []
    chrom = data.gene_calls.rename(columns={"crr": "ds", "crr_lo": "dsl", "crr_hi": "dsh"})
    members = data.plasmid_calls[data.plasmid_calls["level"] == "member"]
    families = data.plasmid_calls[data.plasmid_calls["level"] == "family"]
    pcn = {"pcn": "ds", "pcn_lo": "dsl", "pcn_hi": "dsh"}
    for g in data.genes.itertuples(index=False):
        calls = chrom if g.kind == "chromosome" else members.rename(columns=pcn)
        calls = calls[calls["gene"] == g.gene]
        if not calls.empty:
            out.append({"contig": g.contig, "start": int(g.start), "end": int(g.end),
                        "level": "chromosome" if g.kind == "chromosome" else "member", "gene": g.gene,
                        "members": None, "calls": calls.set_index("sample_id")})
    for f in data.family_coords().itertuples(index=False):
        calls = families[families["gene"] == f.family].rename(columns=pcn)
        if not calls.empty:
            out.append({"contig": f.contig, "start": f.start, "end": f.end, "level": "family", "gene": f.family,
                        "members": tuple(data.families[f.family]), "calls": calls.set_index("sample_id")})
    return out


def _write_plain(data: ExportData, path: Path) -> int:
    """Write the uncompressed, position-sorted VCF to ``path``; returns the number of records."""
    import pysam

    header = _header(data)
    order = {c: i for i, c in enumerate(data.contigs["contig"])}
    pending = []  # (contig order, pos, tie, builder)
    seg = segment_records(data)
    # plain lists: pandas row access per segment would dominate the run time on large tiers
    cols = {c: seg[c].tolist() for c in ("sample_id", "cn", "sq", "n_bins", "n_masked", "mean_ratio")}
    for (chrom, start, end, alt), rows in seg.groupby(["chrom", "start", "end", "alt"], sort=False).indices.items():
        pending.append((order[chrom], int(start), 0, alt, ("segment", chrom, int(start), int(end), alt, rows)))
    for rec in gene_records(data):
        pending.append((order[rec["contig"]], rec["start"], 1, rec["level"], ("gene", rec)))
    pending.sort(key=lambda x: x[:4])
    with pysam.VariantFile(str(path), "w", header=header) as vcf:
        for *_, item in pending:
            if item[0] == "segment":
                _, chrom, start, end, alt, rows = item
                r = vcf.new_record(contig=chrom, start=start - 1, stop=end, alleles=("N", f"<{alt}>"),
                                   qual=max(cols["sq"][i] for i in rows), filter="PASS")
                r.info["SVTYPE"] = alt
                r.info["LEVEL"] = "segment"
                r.info["NCARRIERS"] = len({cols["sample_id"][i] for i in rows})
                for i in rows:
                    fmt = r.samples[cols["sample_id"][i]]
                    fmt["CN"], fmt["SQ"], fmt["NB"] = float(cols["cn"][i]), int(cols["sq"][i]), int(cols["n_bins"][i])
                    fmt["NM"], fmt["CR"] = int(cols["n_masked"][i]), _value(float(cols["mean_ratio"][i]))
            else:
                rec = item[1]
                r = vcf.new_record(contig=rec["contig"], start=rec["start"] - 1, stop=rec["end"],
                                   alleles=("N", "<CNV>"), id=rec["gene"], filter="PASS")
                r.info["SVTYPE"] = "CNV"
                r.info["LEVEL"], r.info["GENE"] = rec["level"], rec["gene"]
                if rec["members"]:
                    r.info["MEMBERS"] = rec["members"]
                calls = rec["calls"]
                for sample in calls.index.intersection(data.samples):
                    c = calls.loc[sample]
                    fmt = r.samples[sample]
                    fmt["DS"], fmt["DSL"], fmt["DSH"] = (_value(float(c[k])) for k in ("ds", "dsl", "dsh"))
                    fmt["GCALL"], fmt["GLAB"] = int(c["call"]), str(c["label"])
                    fmt["CQ"] = _value(float(phred(c["confidence"]))) if pd.notna(c["confidence"]) else None
                    if fmt["CQ"] is not None:
                        fmt["CQ"] = int(fmt["CQ"])
                    fmt["STATUS"] = str(c["status"])
            vcf.write(r)
    return len(pending)


def write_vcf(data: ExportData, dest: Path | None = None) -> list[Path]:
    """Write ``cnvrock.vcf.gz`` (bgzip) and its tabix index ``.tbi`` into ``dest`` (default ``out_dir/export``).

    Returns the two paths. Needs pysam (``pip install 'cnvrock[export]'``).
    """
    try:
        import pysam
    except ImportError:
        raise OutputError("the VCF export needs pysam; install it with pip install 'cnvrock[export]'") from None
    dest = Path(dest) if dest else data.export_dir
    target = dest / VCF_NAME
    index = dest / (VCF_NAME + ".tbi")
    with atomic_path(target) as tmp_gz, atomic_path(index) as tmp_tbi:  # these create dest (OutputError if they cannot)
        work = Path(tempfile.mkdtemp(prefix=".vcf.", dir=dest))
        try:
            plain = work / "cnvrock.vcf"
            _write_plain(data, plain)
            gz = pysam.tabix_index(str(plain), preset="vcf", force=True)
            shutil.move(gz, tmp_gz)
            shutil.move(gz + ".tbi", tmp_tbi)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return [target, index]
