"""Stage artefacts of a finished ``out_dir`` as the records the exporters write.

One loader (:func:`load_export_data`) reads ``params.resolved.yaml``,
``segments.parquet``, ``gene_calls.tsv``, ``plasmid_gene_calls.tsv`` and
``sample_qc.tsv`` and the gene panels; the format modules (``vcf``, ``seg``,
``bed``, ``igv``, ``multiqc``) only lay these tables out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .. import __version__
from .. import artefacts as A
from ..errors import InputError
from ..params import Params
from ..reference import load_contigs, load_gene_families, load_gene_panel

EXPORT_DIRNAME = "export"
PHRED_CAP = 99
SEG_LOG2_FLOOR = -10.0  # log2 copy ratio of segments with (almost) no reads


@dataclass
class ExportData:
    """A finished tier's results, restricted to the exported samples.

    ``segments``: ``sample_id chrom start end n_bins n_masked state cn mean_ratio confidence``
    (bp, 1-based inclusive); ``gene_calls``: chromosomal CRR calls; ``plasmid_calls``:
    plasmid PCN calls (member and family rows); ``qc``: ``sample_qc.tsv``; ``genes``:
    every panel gene ``gene contig start end kind`` (kind chromosome/plasmid); ``contigs``:
    ``contig length`` (bp) in reference order.
    """

    out_dir: Path
    params: Params
    samples: list[str]
    segments: pd.DataFrame
    gene_calls: pd.DataFrame
    plasmid_calls: pd.DataFrame
    qc: pd.DataFrame
    genes: pd.DataFrame
    families: dict[str, list[str]]
    contigs: pd.DataFrame

    @property
    def export_dir(self) -> Path:
        """Where the exports are written: ``out_dir/export``."""
        return self.out_dir / EXPORT_DIRNAME

    @property
    def version(self) -> str:
        return __version__

    @property
    def params_hash(self) -> str:
        return self.params.hash()

    def family_coords(self) -> pd.DataFrame:
        """Per plasmid family the interval of its first panel member: ``family gene contig start end``."""
        plasmid = self.genes[self.genes["kind"] == "plasmid"].set_index("gene")
        rows = []
        for family, members in self.families.items():
            known = [m for m in members if m in plasmid.index]
            if known:
                g = plasmid.loc[known[0]]
                rows.append((family, known[0], g["contig"], int(g["start"]), int(g["end"])))
        return pd.DataFrame(rows, columns=["family", "gene", "contig", "start", "end"])

    def copy_ratio_track(self, sample_id: str) -> pd.DataFrame:
        """Per-bin copy ratio of one sample: ``chrom start end copy_ratio`` (bp, 1-based; NaN where masked)."""
        from ..store import open_store

        store = open_store(self.params.store_path, check_values=False)
        index = int(store.index_of([sample_id])[0])
        ratios = A.load_array(self.out_dir, A.COPY_RATIOS, store.counts.shape)
        return pd.DataFrame({"chrom": store.bins["chrom"], "start": store.bins["start"], "end": store.bins["end"],
                             "copy_ratio": np.asarray(ratios[index], dtype=np.float64)})


def phred(confidence) -> np.ndarray:
    """Phred-scaled error probability of a posterior ``confidence`` (0–1): −10·log10(1 − c), capped at 99."""
    err = np.clip(1.0 - np.asarray(confidence, dtype=np.float64), 10.0 ** (-PHRED_CAP / 10), 1.0)
    return np.minimum(np.round(-10.0 * np.log10(err)), PHRED_CAP)


def log2_ratio(mean_ratio) -> np.ndarray:
    """log2 copy ratio, floored at ``SEG_LOG2_FLOOR`` (segments with no reads); NaN stays NaN."""
    r = np.asarray(mean_ratio, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(r), np.nan, np.maximum(np.log2(np.maximum(r, 0.0)), SEG_LOG2_FLOOR))


def _read_params(out_dir: Path) -> Params:
    path = A.PARAMS_RESOLVED.path(out_dir)
    if not path.is_file():
        raise InputError(f"params.resolved.yaml not found in {out_dir}; is this a CNVRock out_dir "
                         f"(run `cnvrock run PARAMS` first)?")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        values = dict(doc["params"])
    except (yaml.YAMLError, TypeError, KeyError) as exc:
        raise InputError(f"{path} is not a resolved params file (expected a mapping with 'params'): {exc}") from None
    legacy = values.pop("legacy_keys", {}) or {}
    return Params(values, source=path, legacy=legacy)


def _need(out_dir: Path, art: A.Artefact) -> Path:
    path = art.path(out_dir)
    if not path.is_file():
        raise InputError(f"{art.name} not found in {out_dir}; {art.writer} writes it — run that stage first")
    return path


def _table(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep="\t", dtype={"sample_id": str, "gene": str})
    except Exception as exc:  # pandas raises many types for malformed text
        raise InputError(f"{path} could not be read as TSV: {exc}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path} lacks column(s) {missing}; expected at least {required}")
    return frame


def load_export_data(out_dir: str | Path, samples: list[str] | None = None) -> ExportData:
    """Read a finished tier's ``out_dir`` (stages 02 and 03 done) for export.

    Parameters
    ----------
    out_dir : the tier's out_dir (holds ``params.resolved.yaml``).
    samples : sample_ids to export (default: every sample of ``sample_qc.tsv``), in that order.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    if not out_dir.is_dir():
        raise InputError(f"out_dir {out_dir} is not a folder; expected a tier's finished out_dir")
    params = _read_params(out_dir)
    qc = _table(_need(out_dir, A.SAMPLE_QC),
                ["sample_id", "median_depth", "noise_sd", "qc_pass"])
    seg_path = _need(out_dir, A.SEGMENTS)
    try:
        segments = pd.read_parquet(seg_path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{seg_path} could not be read: {exc}") from None
    need = ["sample_id", "chrom", "start", "end", "n_bins", "n_masked", "cn", "mean_ratio", "confidence"]
    if missing := [c for c in need if c not in segments.columns]:
        raise InputError(f"{seg_path} lacks column(s) {missing}; expected {need}")
    gene_calls = _table(_need(out_dir, A.GENE_CALLS),
                        ["sample_id", "gene", "call", "label", "crr", "crr_lo", "crr_hi", "confidence", "status"])
    ppath = A.PLASMID_CALLS.path(out_dir)
    plasmid_calls = _table(ppath, ["sample_id", "gene", "level", "call", "label", "pcn", "pcn_lo", "pcn_hi",
                                   "confidence", "status"]) if ppath.is_file() else pd.DataFrame(
        columns=["sample_id", "gene", "level", "call", "label", "pcn", "pcn_lo", "pcn_hi", "confidence", "status"])

    known = qc["sample_id"].astype(str).tolist()
    if samples:
        unknown = [s for s in samples if s not in set(known)]
        if unknown:
            raise InputError(f"sample(s) {unknown[:5]} not in {A.SAMPLE_QC.path(out_dir)} "
                             f"({len(known)} samples, e.g. {known[:3]})")
        chosen = list(dict.fromkeys(samples))
    else:
        chosen = known
    keep = set(chosen)

    def pick(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[frame["sample_id"].astype(str).isin(keep)].copy()
        frame["sample_id"] = frame["sample_id"].astype(str)
        return frame.reset_index(drop=True)

    chrom = load_gene_panel(params.values.get("chrom_gene_coords_path"), "chromosome").genes.assign(kind="chromosome")
    plasmid = load_gene_panel(params.values.get("plasmid_gene_coords_path"), "plasmid").genes.assign(kind="plasmid")
    genes = pd.concat([chrom, plasmid], ignore_index=True)[["gene", "contig", "start", "end", "kind"]]
    contigs = load_contigs()[["contig", "length"]]
    segments = pick(segments)
    used = set(segments["chrom"].astype(str)) | set(genes["contig"])
    if unknown_contigs := sorted(used - set(contigs["contig"])):
        raise InputError(f"contig(s) {unknown_contigs} of {out_dir} are not in the packaged reference "
                         f"(hs11286_extended_contigs.tsv: {', '.join(contigs['contig'])})")
    return ExportData(out_dir=out_dir, params=params, samples=chosen, segments=segments,
                      gene_calls=pick(gene_calls), plasmid_calls=pick(plasmid_calls), qc=pick(qc), genes=genes,
                      families=load_gene_families(params.values.get("plasmid_gene_families_path")),
                      contigs=contigs.reset_index(drop=True))
