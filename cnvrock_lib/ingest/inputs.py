"""Store-building inputs: the sample manifest, the bin grid (from a FASTA index, a lengths table or the
packaged reference), and the counting conventions and units recorded in ``store.json``."""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .. import reference
from ..errors import InputError
from ..reference import BIN_DTYPE, BIN_SIZE

METHODS = ("gatk-tsv", "bam", "mosdepth")


UNITS = {"gatk-tsv": "read_starts", "bam": "read_starts", "mosdepth": "mean_depth"}


SKIP_FLAGS = 0x4 | 0x100 | 0x200 | 0x400 | 0x800


SKIPPED_READS = ("unmapped", "secondary", "supplementary", "duplicate", "qc_fail")


READ_START_CONVENTION = ("a read is counted in the 1 kb bin (1-based inclusive) that holds its leftmost "
                         "aligned base, reference_start + 1 (SAM POS), as GATK CollectReadCounts does; "
                         "both mates of a pair are counted")


MOSDEPTH_UNIT_NOTE = ("mean depth per bin (aligned bases / bin length), not read starts; for reads of "
                      "length L, read starts per bin ≈ depth × bin length / L. Copy ratios and PCN are "
                      "unit-free, but absolute thresholds in reads per bin (hmm_low_cov_threshold) are not")


SAMPLE_FILE_SUFFIX = ".counts.npz"


FAILED_FILE_SUFFIX = ".failed.json"


_UINT32_MAX = np.iinfo(np.uint32).max


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest TSV with columns ``sample_id`` and ``path`` (one row per sample).

    Relative paths are resolved against the manifest's directory. Sample ids must
    be unique and non-empty. Returns a DataFrame with ``sample_id`` and absolute ``path``.
    """
    path = Path(path).expanduser().resolve()
    frame = reference.read_tsv(path, ["sample_id", "path"], "manifest")
    frame = frame[["sample_id", "path"]].copy()
    frame["sample_id"] = frame["sample_id"].str.strip()
    frame["path"] = frame["path"].str.strip()
    empty = np.flatnonzero((frame["sample_id"] == "").to_numpy() | (frame["path"] == "").to_numpy())
    if empty.size:
        raise InputError(f"manifest {path}: row {int(empty[0]) + 2} has an empty sample_id or path")
    dup = frame["sample_id"].duplicated(keep=False)
    if dup.any():
        first = frame.loc[dup, "sample_id"].iloc[0]
        rows = (np.flatnonzero(frame["sample_id"].to_numpy() == first) + 2).tolist()
        raise InputError(f"manifest {path}: sample_id {first!r} appears more than once (rows {rows})")
    frame["path"] = [str(p if Path(p).is_absolute() else (path.parent / p)) for p in
                     (os.path.expanduser(p) for p in frame["path"])]
    return frame.reset_index(drop=True)


def _as_manifest(manifest) -> tuple[pd.DataFrame, str]:
    if isinstance(manifest, pd.DataFrame):
        missing = {"sample_id", "path"} - set(manifest.columns)
        if missing:
            raise InputError(f"manifest table lacks column(s) {sorted(missing)}; expected sample_id, path")
        frame = manifest[["sample_id", "path"]].astype(str).reset_index(drop=True)
        if frame["sample_id"].duplicated().any():
            raise InputError(f"manifest table: duplicate sample_id "
                             f"{frame.loc[frame['sample_id'].duplicated(), 'sample_id'].iloc[0]!r}")
        return frame, "<table>"
    return read_manifest(manifest), str(Path(manifest).expanduser().resolve())


def _fasta_lengths(path: Path) -> dict[str, int]:
    fai = Path(str(path) + ".fai")
    if fai.is_file():
        return _lengths_table(fai)
    lengths: dict[str, int] = {}
    name = None
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                name = line[1:].split()[0]
                lengths[name] = 0
            elif name is not None:
                lengths[name] += len(line.strip())
    return lengths


def _lengths_table(path: Path) -> dict[str, int]:
    lengths: dict[str, int] = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip() or line.startswith("#") or (number == 1 and fields[0] == "contig"):
                continue
            if len(fields) < 2 or not fields[1].strip().isdigit():
                raise InputError(f"contig lengths file {path}: line {number} is {line.strip()!r}; expected "
                                 f"'contig<TAB>length' (a .fai or a two-column TSV)")
            lengths[fields[0]] = int(fields[1])
    return lengths


def resolve_bins(spec: str | os.PathLike | np.ndarray, contigs: Iterable[str] | None = None,
                 bin_size: int = BIN_SIZE) -> np.ndarray:
    """The bins of a store: a preset, a reference file or a ready bins array.

    Parameters
    ----------
    spec : ``"chromosome"`` (the 5,334 bins of NC_016845.1), ``"plasmid"`` (the
        12 packaged plasmid contigs), ``"reference"`` (all 13 packaged contigs), a
        FASTA (its ``.fai`` is used when present), a ``.fai`` or a two-column
        ``contig length`` TSV (bp), or a structured bins array.
    contigs : keep only these contigs, in this order.
    bin_size : bin width (bp); the last bin of a contig is partial.
    """
    if isinstance(spec, np.ndarray):
        bins = spec.astype(BIN_DTYPE)
    elif str(spec) in ("chromosome", "plasmid", "reference"):
        table = reference.load_contigs()
        if spec == "chromosome":
            table = table[table["role"] == "chromosome"]
        elif spec == "plasmid":
            table = table[table["role"] == "plasmid"]
        bins = reference.make_bins(dict(zip(table["contig"], table["length"])), bin_size)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InputError(f"bins: {path} is neither a preset (chromosome, plasmid, reference) nor a file "
                             f"(FASTA, .fai or 'contig length' TSV)")
        with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as handle:
            first = handle.read(1)
        lengths = _fasta_lengths(path) if first == ">" else _lengths_table(path)
        if not lengths:
            raise InputError(f"bins: no contigs found in {path}")
        bins = reference.make_bins(lengths, bin_size)
    if contigs is not None:
        contigs = list(contigs)
        present = set(bins["chrom"].tolist())
        unknown = [c for c in contigs if c not in present]
        if unknown:
            raise InputError(f"bins: contig(s) {unknown} are not in {spec if not isinstance(spec, np.ndarray) else 'the bins'}"
                             f"; known: {sorted(present)}")
        bins = np.concatenate([bins[bins["chrom"] == c] for c in contigs])
    return bins


def bins_digest(bins: np.ndarray) -> str:
    """SHA-256 (16 hex chars) of the bins' contigs, starts and ends: identifies a bin grid."""
    h = hashlib.sha256()
    h.update("\n".join(bins["chrom"].tolist()).encode())
    h.update(np.ascontiguousarray(bins["start"], dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(bins["end"], dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def _contig_table(bins: np.ndarray) -> list[dict]:
    out = []
    chrom = bins["chrom"]
    for name in dict.fromkeys(chrom.tolist()):
        sel = chrom == name
        out.append({"contig": name, "length": int(bins["end"][sel].max()), "n_bins": int(sel.sum())})
    return out


def parse_tool_versions(items: Iterable[str]) -> dict:
    """``["gatk=4.5.0.0", ...]`` -> ``{"gatk": "4.5.0.0"}``; InputError on a malformed item."""
    out = {}
    for item in items or ():
        name, sep, version = item.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise InputError(f"tool version {item!r}: expected NAME=VERSION, e.g. gatk=4.5.0.0")
        out[name.strip()] = version.strip()
    return out


def default_min_mapq(bins_spec) -> int | None:
    """MQ threshold of the SPEC's stores: 20 for ``chromosome``, 0 for ``plasmid``; else None."""
    return {"chromosome": 20, "plasmid": 0}.get(str(bins_spec)) if not isinstance(bins_spec, np.ndarray) else None
