"""The packaged KpSC reference: HS11286 chromosome + 12 AMR plasmid contigs,
gene coordinates (1-based inclusive) and gene families.

The files under ``cnvrock_lib/data/reference`` are copies of the project's
shared reference tables; nothing here retypes their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

BIN_SIZE = 1000
CHROMOSOME = "NC_016845.1"
BIN_DTYPE = np.dtype([("chrom", "U32"), ("start", "<i8"), ("end", "<i8")])


def packaged_path(name: str) -> Path:
    """Path of a packaged reference table, e.g. ``packaged_path("chrom_gene_coords.tsv")``."""
    return Path(str(resources.files("cnvrock_lib") / "data" / "reference" / name))


def read_tsv(path: str | Path, required: list[str], what: str) -> pd.DataFrame:
    """Read a TSV and check it has ``required`` columns; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except Exception as exc:  # pandas raises many types for malformed text
        raise InputError(f"{what} file {path} could not be read as TSV: {exc}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what} file {path} lacks column(s) {missing}; expected at least {required}, "
            f"found {list(frame.columns)}"
        )
    return frame


def load_contigs(path: str | Path | None = None) -> pd.DataFrame:
    """Reference contigs: columns ``contig length role genes_of_interest`` (length in bp)."""
    path = Path(path) if path else packaged_path("hs11286_extended_contigs.tsv")
    frame = read_tsv(path, ["contig", "length", "role"], "reference contigs")
    frame["length"] = frame["length"].astype(np.int64)
    return frame


def make_bins(contig_lengths: dict[str, int], bin_size: int = BIN_SIZE) -> np.ndarray:
    """Fixed-width bins over contigs, 1-based inclusive like GATK intervals.

    The last bin of each contig is partial. Returns a structured array with
    fields ``chrom``, ``start``, ``end`` (bp).
    """
    rows = []
    for chrom, length in contig_lengths.items():
        starts = np.arange(1, int(length) + 1, bin_size, dtype=np.int64)
        ends = np.minimum(starts + bin_size - 1, int(length))
        rows.append(np.rec.fromarrays([np.full(starts.size, chrom), starts, ends], dtype=BIN_DTYPE))
    return np.concatenate(rows).view(np.ndarray).astype(BIN_DTYPE)


def chromosome_bins() -> np.ndarray:
    """The 5,334 bins of NC_016845.1."""
    contigs = load_contigs()
    length = int(contigs.loc[contigs["role"] == "chromosome", "length"].iloc[0])
    return make_bins({CHROMOSOME: length})


def plasmid_bins() -> np.ndarray:
    """1 kb bins over the 12 plasmid contigs (2,031 bins), in reference order."""
    contigs = load_contigs()
    plasmids = contigs[contigs["role"] == "plasmid"]
    return make_bins(dict(zip(plasmids["contig"], plasmids["length"])))


@dataclass(frozen=True)
class GenePanel:
    """Gene regions: one row per gene with ``gene contig start end`` (1-based inclusive, bp).

    Plasmid panels also carry ``absent_threshold`` (PCN; NaN where the file leaves it empty).
    """

    genes: pd.DataFrame

    def check_against(self, bins: np.ndarray, source: str) -> None:
        """Raise InputError if a gene's contig is absent from ``bins`` or it runs past the contig end."""
        ends = pd.DataFrame({"chrom": bins["chrom"], "end": bins["end"]}).groupby("chrom")["end"].max()
        for row in self.genes.itertuples():
            if row.contig not in ends.index:
                raise InputError(
                    f"gene panel {source}: gene {row.gene} is on contig {row.contig}, "
                    f"which the store does not contain (store contigs: {sorted(ends.index)})"
                )
            if row.end > ends[row.contig]:
                raise InputError(
                    f"gene panel {source}: gene {row.gene} ends at {row.end} bp, past the end "
                    f"of {row.contig} ({ends[row.contig]} bp)"
                )


def load_gene_panel(path: str | Path | None, kind: str = "chromosome") -> GenePanel:
    """Load a gene-coordinate TSV (``gene contig start end`` [+ ``absent_threshold``]).

    ``path=None`` takes the packaged panel of ``kind`` (``chromosome`` or ``plasmid``).
    """
    default = "chrom_gene_coords.tsv" if kind == "chromosome" else "plasmid_gene_coords.tsv"
    path = Path(path) if path else packaged_path(default)
    frame = read_tsv(path, ["gene", "contig", "start", "end"], f"{kind} gene panel")
    for col in ("start", "end"):
        bad = ~frame[col].str.fullmatch(r"\d+")
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"gene panel {path}: row {i + 2} (gene {frame['gene'].iloc[i]}) has {col}="
                f"{frame[col].iloc[i]!r}; expected a positive integer (bp, 1-based)"
            )
        frame[col] = frame[col].astype(np.int64)
    bad = frame["start"] > frame["end"]
    if bad.any():
        row = frame[bad].iloc[0]
        raise InputError(f"gene panel {path}: gene {row.gene} has start {row.start} > end {row.end}")
    if frame["gene"].duplicated().any():
        raise InputError(f"gene panel {path}: duplicate gene {frame['gene'][frame['gene'].duplicated()].iloc[0]}")
    if "absent_threshold" in frame.columns:
        frame["absent_threshold"] = pd.to_numeric(frame["absent_threshold"].replace("", np.nan), errors="coerce")
    return GenePanel(frame.reset_index(drop=True))


def load_gene_families(path: str | Path | None = None) -> dict[str, list[str]]:
    """Gene families: ``{family: [member genes]}`` from ``family members`` (comma-separated)."""
    path = Path(path) if path else packaged_path("plasmid_gene_families.tsv")
    frame = read_tsv(path, ["family", "members"], "gene families")
    families = {}
    for row in frame.itertuples():
        members = [m.strip() for m in row.members.split(",") if m.strip()]
        if not members:
            raise InputError(f"gene families {path}: family {row.family} has no members")
        families[row.family] = members
    return families
