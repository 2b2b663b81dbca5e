"""Store builders: real data in (SPEC §4.2).

Three sources give one row of a store per sample, on a grid of 1 kb bins
(1-based inclusive, like GATK intervals; :func:`cnvrock_lib.reference.make_bins`):

``gatk-tsv``
    GATK ``CollectReadCounts`` TSV files (``@`` header lines, then
    ``CONTIG START END COUNT``). Unit: read starts per bin, as counted by GATK
    with whatever MQ threshold it was run with (declared via ``min_mapq``).
``bam``
    BAM/CRAM files counted here with pysam, like CollectReadCounts: a read is
    counted in the bin that holds its leftmost aligned base
    (``reference_start + 1``, 1-based); unmapped, secondary, supplementary,
    duplicate and QC-fail reads are skipped, as are reads with MAPQ below
    ``min_mapq``. Both mates of a pair are counted. Unit: read starts per bin.
``mosdepth``
    mosdepth ``--by 1000`` regions files (``*.regions.bed[.gz]``; 0-based
    half-open BED). Unit: **mean depth** (covered bases / bin length), stored
    as float32; with ``read_length`` it is converted to approximate read starts
    (depth × bin length / read length). The unit is recorded in ``store.json``.

A store is built either in one go (:func:`build_store`: parallel over samples,
streaming into a preallocated ``counts.npy`` inside a temporary directory that
is renamed into place only when complete) or, at cluster scale, as one
independent job per sample (:func:`count_sample`, a small ``.npz`` per sample)
followed by :func:`gather`. A bad file is reported as *sample, path, reason*
and, by ``on_error``, is either fatal or skipped and listed in the store's
provenance.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from . import reference
from .atomic import atomic_dir, atomic_path, write_json
from .errors import InputError, StoreError
from .provenance import package_versions
from .reference import BIN_DTYPE, BIN_SIZE

log = logging.getLogger(__name__)

METHODS = ("gatk-tsv", "bam", "mosdepth")
UNITS = {"gatk-tsv": "read_starts", "bam": "read_starts", "mosdepth": "mean_depth"}
# SAM flags a read must not carry: unmapped, secondary, QC-fail, duplicate, supplementary.
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


# --------------------------------------------------------------------------- inputs

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


# --------------------------------------------------------------------------- per-file readers

class _BadFile(Exception):
    """A per-sample input problem; the caller adds sample and path."""


def _match_rows(chrom: np.ndarray, start: np.ndarray, end: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Row index in a file for each bin; raise _BadFile saying which contig/row disagrees."""
    index = np.empty(bins.shape[0], dtype=np.int64)
    file_contigs = list(dict.fromkeys(chrom.tolist()))
    pos = 0
    for entry in _contig_table(bins):
        name, n = entry["contig"], entry["n_bins"]
        rows = np.flatnonzero(chrom == name)
        want = bins[pos:pos + n]
        if rows.size == 0:
            shown = ", ".join(file_contigs[:6]) + (" …" if len(file_contigs) > 6 else "")
            raise _BadFile(f"contig {name} is absent (the file has {shown or 'no rows'}); "
                           f"counted against another reference?")
        if rows.size != n:
            width = int((want["end"] - want["start"] + 1).max())
            raise _BadFile(f"contig {name} has {rows.size} intervals, expected {n} "
                           f"({width} bp bins over {entry['length']} bp); other bin size or reference?")
        bad = np.flatnonzero((start[rows] != want["start"]) | (end[rows] != want["end"]))
        if bad.size:
            k = int(bad[0])
            raise _BadFile(f"contig {name} interval {k + 1} is {start[rows[k]]}-{end[rows[k]]}, expected "
                           f"{want['start'][k]}-{want['end'][k]} (1-based inclusive bins)")
        index[pos:pos + n] = rows
        pos += n
    return index


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


_TSV_HEADER = b"CONTIG\tSTART\tEND\tCOUNT"


def _split_tsv(data: bytes) -> tuple[bytes, int]:
    """Return the body (data rows) of a CollectReadCounts TSV and its first line number."""
    if b"\r" in data:
        data = data.replace(b"\r", b"")
    at = data.find(_TSV_HEADER)
    if at < 0 or (at > 0 and data[at - 1:at] != b"\n"):
        head = data[:60].decode("utf-8", "replace").split("\n")[0]
        raise _BadFile(f"no 'CONTIG<TAB>START<TAB>END<TAB>COUNT' header line (starts with {head!r}); "
                       f"expected a GATK CollectReadCounts TSV (--format TSV)")
    nl = data.find(b"\n", at)
    if nl < 0:
        raise _BadFile("no data rows after the CONTIG START END COUNT header")
    body = data[nl + 1:]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return body, data.count(b"\n", 0, nl + 1) + 1


def _parse_tsv_slow(body: bytes, first_line: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse every field of every data row: (CONTIG, START, END, COUNT, prefix length per row).

    Used for the first file of a layout and to name the bad line of a file the fast
    path rejects. The prefix is the row's ``CONTIG<TAB>START<TAB>END<TAB>`` text (bytes).
    """
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise _BadFile("no data rows after the CONTIG START END COUNT header")
    rows = [line.split(b"\t") for line in lines]
    for k, fields in enumerate(rows):
        shown = lines[k].decode("utf-8", "replace")[:70]
        if len(fields) != 4:
            raise _BadFile(f"line {first_line + k} has {len(fields)} fields ({shown!r}); "
                           f"expected 4 (CONTIG START END COUNT)")
        if not (fields[1].isdigit() and fields[2].isdigit()):
            raise _BadFile(f"line {first_line + k} is {shown!r}; expected integer START and END (bp)")
        if not fields[3].isdigit():
            raise _BadFile(f"line {first_line + k} is {shown!r}; expected COUNT a non-negative integer "
                           f"(read starts)")
        if len(fields[3]) > 10 or int(fields[3]) > _UINT32_MAX:
            raise _BadFile(f"line {first_line + k}: COUNT {int(fields[3])} does not fit uint32")
    contig = np.array([f[0].decode("utf-8", "replace") for f in rows], dtype=str)
    start, end, count = (np.array([int(f[i]) for f in rows], dtype=np.int64) for i in (1, 2, 3))
    prefix = np.array([len(line) - len(f[3]) for line, f in zip(lines, rows)], dtype=np.int64)
    return contig, start, end, count, prefix


_DIGITS = 10  # a uint32 COUNT has at most 10 digits
_DIGIT_FROM_RIGHT = np.arange(_DIGITS)[:, None]
_DIGIT_WEIGHT = 10.0 ** np.arange(_DIGITS)  # exact in float64 for 10 digits


@dataclass
class _TsvLayout:
    """The rows of one CollectReadCounts layout: prefix text per row and where each bin's row is."""

    digest: str           # of the bins this layout was matched against
    prefix_len: np.ndarray  # bytes of CONTIG<TAB>START<TAB>END<TAB> per row
    key: np.ndarray       # uint8: every row's prefix followed by a newline
    row_of_bin: np.ndarray


def _parse_tsv_fast(body: bytes, layout: _TsvLayout) -> np.ndarray | None:
    """COUNT per row if ``body`` has exactly ``layout``'s rows, else None (then the slow path runs).

    Vectorised over bytes: newlines give each row's end, the known prefix length
    its COUNT's start; the digits are gathered right-aligned as a (10, rows) array
    and weighted by powers of ten. All prefix text is compared with the layout's,
    so every file's intervals are checked in full, not only its first rows.
    """
    arr = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    if newlines.size != layout.prefix_len.size:
        return None
    field_start = np.empty_like(newlines)
    field_start[0] = 0
    field_start[1:] = newlines[:-1] + 1
    field_start += layout.prefix_len
    width = newlines - field_start
    if width.min() < 1 or width.max() > _DIGITS or (arr[field_start - 1] != 9).any():
        return None
    # Digit j (from the right) of each row; positions past the field are masked (a negative index wraps harmlessly).
    position = newlines - 1 - _DIGIT_FROM_RIGHT
    in_field = _DIGIT_FROM_RIGHT < width
    digits = (arr[position] - 48) * in_field  # uint8: a non-digit wraps above 9
    if (digits > 9).any():
        return None
    keep = np.ones(arr.size, dtype=bool)
    keep[position[in_field]] = False
    if not np.array_equal(arr[keep], layout.key):
        return None
    counts = (_DIGIT_WEIGHT @ digits).astype(np.int64)
    if counts.max() > _UINT32_MAX:
        return None
    return counts


class _LayoutCache:
    """Recently seen file layouts, so that after the first file every later file of
    the same pipeline takes the fast path (and is still checked completely)."""

    def __init__(self, size: int = 4):
        self.size = size
        self.entries: list[_TsvLayout] = []

    def counts(self, body: bytes, first_line: int, bins: np.ndarray, digest: str) -> np.ndarray:
        for layout in self.entries:
            if layout.digest == digest:
                counts = _parse_tsv_fast(body, layout)
                if counts is not None:
                    return counts[layout.row_of_bin]
        contig, start, end, counts, prefix = _parse_tsv_slow(body, first_line)
        row_of_bin = _match_rows(contig, start, end, bins)
        lines = body.split(b"\n")
        key = b"".join(line[:n] + b"\n" for line, n in zip(lines, prefix.tolist()))
        self.entries.insert(0, _TsvLayout(digest, prefix, np.frombuffer(key, dtype=np.uint8), row_of_bin))
        del self.entries[self.size:]
        return counts[row_of_bin]


_LAYOUTS = _LayoutCache()


def read_gatk_tsv(path: str | os.PathLike, bins: np.ndarray) -> np.ndarray:
    """Read starts per bin (uint32, one value per bin) from a CollectReadCounts TSV.

    Rows of contigs outside ``bins`` are ignored; the rows of the bins' contigs must
    be exactly the bins (same starts and ends, 1-based inclusive), else InputError.
    """
    path = Path(path)
    try:
        return _count_gatk_tsv(path, bins, bins_digest(bins))
    except _BadFile as exc:
        raise InputError(f"CollectReadCounts TSV {path}: {exc}") from None


def _count_gatk_tsv(path: Path, bins: np.ndarray, digest: str) -> np.ndarray:
    body, first_line = _split_tsv(_read_bytes(path))
    return _LAYOUTS.counts(body, first_line, bins, digest).astype(np.uint32)


def read_mosdepth_regions(path: str | os.PathLike, bins: np.ndarray,
                          read_length: float | None = None) -> np.ndarray:
    """Mean depth per bin (float32) from a mosdepth ``--by`` regions BED (plain or gzipped).

    With ``read_length`` (bp) the depth is converted to approximate read starts:
    depth × bin length / read length.
    """
    path = Path(path)
    try:
        return _count_mosdepth(path, bins, read_length)
    except _BadFile as exc:
        raise InputError(f"mosdepth regions file {path}: {exc}") from None


def _count_mosdepth(path: Path, bins: np.ndarray, read_length: float | None) -> np.ndarray:
    try:
        table = pd.read_csv(io.BytesIO(_read_bytes(path)), sep="\t", header=None, comment="#",
                            dtype={0: str}, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _BadFile(f"not a tab-separated BED: {exc}") from None
    if table.shape[1] < 4:
        raise _BadFile(f"has {table.shape[1]} columns; expected chrom start end [name] mean_depth "
                       f"(mosdepth --by 1000 *.regions.bed.gz)")
    try:
        start0 = pd.to_numeric(table[1], errors="raise").to_numpy(np.int64)
        end = pd.to_numeric(table[2], errors="raise").to_numpy(np.int64)
        depth = pd.to_numeric(table[table.columns[-1]], errors="raise").to_numpy(np.float64)
    except ValueError as exc:
        raise _BadFile(f"start/end/depth columns are not numeric: {exc}") from None
    index = _match_rows(table[0].to_numpy(str), start0 + 1, end, bins)
    values = depth[index]
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        k = int(bad[0])
        raise _BadFile(f"bin {bins['chrom'][k]}:{bins['start'][k]}-{bins['end'][k]} has depth {values[k]}; "
                       f"expected a finite value >= 0")
    if read_length:
        values = values * (bins["end"] - bins["start"] + 1) / float(read_length)
    return values.astype(np.float32)


def count_bam(path: str | os.PathLike, bins: np.ndarray, min_mapq: int,
              reference_fasta: str | os.PathLike | None = None) -> np.ndarray:
    """Read starts per bin (uint32) from a BAM/CRAM, like GATK CollectReadCounts.

    A read is counted in the bin holding ``reference_start + 1`` (its leftmost
    aligned base, 1-based) when it is mapped, primary, not supplementary, not a
    duplicate, passes QC and has MAPQ >= ``min_mapq``. Both mates count.
    Contigs of ``bins`` must be in the header with the bins' lengths (bp).
    A CRAM needs ``reference_fasta`` unless its reference is found by htslib.
    """
    path = Path(path)
    try:
        return _count_bam(path, bins, int(min_mapq), reference_fasta)
    except _BadFile as exc:
        raise InputError(f"alignment file {path}: {exc}") from None


def _count_bam(path: Path, bins: np.ndarray, min_mapq: int, reference_fasta) -> np.ndarray:
    import pysam

    if not path.is_file():
        raise _BadFile("file not found")
    try:
        bam = pysam.AlignmentFile(str(path), "rc" if path.suffix == ".cram" else "rb",
                                  reference_filename=str(reference_fasta) if reference_fasta else None)
    except (ValueError, OSError) as exc:
        raise _BadFile(f"cannot be opened as BAM/CRAM: {exc}") from None
    counts = np.zeros(bins.shape[0], dtype=np.int64)
    indexed = bam.has_index()
    try:
        _count_into(bam, path, bins, min_mapq, counts, reference_fasta, indexed)
    except (OSError, ValueError) as exc:  # raised while closing (e.g. after reading through a wrong index)
        raise _BadFile(_read_fault(path, indexed, reference_fasta, exc)) from None
    if counts.max(initial=0) > _UINT32_MAX:
        raise _BadFile("a bin has more than 2^32-1 read starts")
    if not counts.any():
        raise _BadFile(f"no read passes the filters (mapped, primary, MAPQ >= {min_mapq}) in the binned contigs: "
                       f"an empty or unaligned file? A sample with no reads would be an all-zero row")
    return counts.astype(np.uint32)


def _read_fault(path: Path, indexed: bool, reference_fasta, exc: BaseException) -> str:
    """Why reading an alignment file failed, with the likely cause where one is known."""
    if path.suffix == ".cram" and not reference_fasta:
        return (f"cannot decode the CRAM: its reference sequence was not found ({exc}); "
                f"pass --reference-fasta FASTA (the reference it was aligned to)")
    if indexed:
        return (f"reading through its index failed ({type(exc).__name__}: {exc}): the index may belong to "
                f"another file or be stale; rebuild it with `samtools index {path}`")
    return f"unreadable or truncated: {exc}"


def _count_into(bam, path: Path, bins: np.ndarray, min_mapq: int, counts: np.ndarray, reference_fasta,
                indexed: bool) -> None:
    """Add the read starts of ``bam`` per bin to ``counts`` (header checked against ``bins``)."""
    with bam:
        header_lengths = dict(zip(bam.references, bam.lengths))
        table = _contig_table(bins)
        offsets = {}
        pos = 0
        for entry in table:
            name = entry["contig"]
            if name not in header_lengths:
                shown = ", ".join(list(header_lengths)[:6]) + (" …" if len(header_lengths) > 6 else "")
                raise _BadFile(f"contig {name} is not in the header (header contigs: {shown or 'none'}); "
                               f"aligned to another reference?")
            if header_lengths[name] != entry["length"]:
                raise _BadFile(f"contig {name} is {header_lengths[name]} bp in the header but "
                               f"{entry['length']} bp in the bins; aligned to another reference version?")
            offsets[bam.get_tid(name)] = pos
            pos += entry["n_bins"]
        bin_size = int((bins["end"] - bins["start"] + 1).max())
        try:
            if indexed:
                for entry in table:
                    starts = _read_starts(bam.fetch(entry["contig"]), min_mapq)
                    tid = bam.get_tid(entry["contig"])
                    counts += np.bincount(offsets[tid] + starts // bin_size, minlength=counts.size)[:counts.size]
            else:
                tids, starts = _read_starts_all(bam.fetch(until_eof=True), min_mapq, offsets)
                base = np.fromiter((offsets[t] for t in tids), dtype=np.int64, count=len(tids))
                counts += np.bincount(base + starts // bin_size, minlength=counts.size)[:counts.size]
        except (OSError, ValueError) as exc:
            raise _BadFile(_read_fault(path, indexed, reference_fasta, exc)) from None


def _read_starts(reads, min_mapq: int) -> np.ndarray:
    out = [r.reference_start for r in reads if not (r.flag & SKIP_FLAGS) and r.mapping_quality >= min_mapq]
    return np.asarray(out, dtype=np.int64)


def _read_starts_all(reads, min_mapq: int, offsets: dict) -> tuple[list, np.ndarray]:
    tids, starts = [], []
    for r in reads:
        if r.flag & SKIP_FLAGS or r.mapping_quality < min_mapq or r.reference_id not in offsets:
            continue
        tids.append(r.reference_id)
        starts.append(r.reference_start)
    return tids, np.asarray(starts, dtype=np.int64)


# --------------------------------------------------------------------------- one sample

@dataclass(frozen=True)
class CountSettings:
    """How every sample of a store is counted.

    Attributes
    ----------
    method : ``gatk-tsv``, ``bam`` or ``mosdepth``.
    bins : structured bins array (1-based inclusive).
    min_mapq : MAPQ threshold; applied for ``bam``, declared (recorded only) otherwise.
    reference_fasta : FASTA for CRAM decoding (bam only).
    read_length : mosdepth only: convert mean depth to read starts with this read length (bp).
    """

    method: str
    bins: np.ndarray = field(repr=False)
    min_mapq: int | None = None
    reference_fasta: str | None = None
    read_length: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown counting method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.method == "bam" and self.min_mapq is None:
            raise InputError("counting from BAM/CRAM needs min_mapq (20 for the chromosome store, "
                             "0 for the plasmid store)")
        if self.min_mapq is not None and (int(self.min_mapq) != self.min_mapq or self.min_mapq < 0):
            raise InputError(f"min_mapq = {self.min_mapq!r}; expected an integer >= 0")
        if self.read_length is not None and (self.method != "mosdepth" or self.read_length <= 0):
            raise InputError("read_length converts mosdepth depth to read starts: only with method "
                             "mosdepth, and > 0 (bp)")
        if self.bins.shape[0] == 0:
            raise InputError("the bins are empty")
        from .store import detect_layout

        if detect_layout(self.bins, self.bin_size) != "bins":
            raise InputError(f"the bins are not a regular {self.bin_size} bp grid starting at 1 on each contig")
        object.__setattr__(self, "digest", bins_digest(self.bins))

    @property
    def bin_size(self) -> int:
        return int((self.bins["end"] - self.bins["start"] + 1).max())

    @property
    def unit(self) -> str:
        if self.method == "mosdepth" and self.read_length:
            return "approx_read_starts_from_depth"
        return UNITS[self.method]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.method == "mosdepth" else np.uint32)

    def describe(self) -> dict:
        """The settings as recorded in provenance and per-sample files."""
        return {"method": self.method, "unit": self.unit,
                "min_mapq": None if self.min_mapq is None else int(self.min_mapq),
                "min_mapq_applied_here": self.method == "bam",
                "read_length": self.read_length, "bins_sha256": self.digest,
                "n_bins": int(self.bins.shape[0]), "dtype": self.dtype.name}


def count_file(path: str | os.PathLike, settings: CountSettings) -> np.ndarray:
    """One sample's row of the store (uint32 read starts, or float32 mean depth).

    Raises InputError naming the path and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if settings.method == "gatk-tsv":
        return read_gatk_tsv(path, settings.bins)
    if settings.method == "mosdepth":
        return read_mosdepth_regions(path, settings.bins, settings.read_length)
    return count_bam(path, settings.bins, settings.min_mapq, settings.reference_fasta)


_WORKER_SETTINGS: CountSettings | None = None


def _init_worker(settings: CountSettings) -> None:
    """Pool initializer: the settings (with the bins array) travel once per worker, not per task."""
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings


def _count_one(path: str, settings: CountSettings) -> tuple[np.ndarray | None, str | None]:
    """(row, None) or (None, reason) for one input file."""
    path = Path(path)
    try:
        if not path.is_file():
            raise _BadFile("file not found")
        if settings.method == "gatk-tsv":
            return _count_gatk_tsv(path, settings.bins, settings.digest), None
        if settings.method == "mosdepth":
            return _count_mosdepth(path, settings.bins, settings.read_length), None
        return _count_bam(path, settings.bins, settings.min_mapq, settings.reference_fasta), None
    except _BadFile as exc:
        return None, str(exc)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _count_task(task: tuple[int, str]) -> tuple[int, np.ndarray | None, str | None]:
    """Worker: (index, path) -> (index, row, None) or (index, None, reason)."""
    index, path = task
    row, reason = _count_one(path, _WORKER_SETTINGS)
    return index, row, reason


# --------------------------------------------------------------------------- progress

class _Progress:
    """A tqdm bar in interactive use; a log line every ~10 % in batch jobs (CNVROCK_BATCH)."""

    def __init__(self, total: int, what: str, enabled: bool = True):
        self.total, self.what, self.done, self.t0 = total, what, 0, time.perf_counter()
        self.bar = None
        self.enabled = enabled
        self.step = max(1, total // 10)
        if enabled and sys.stderr.isatty() and not os.environ.get("CNVROCK_BATCH"):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=what, unit="sample")

    def update(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and (self.done % self.step == 0 or self.done == self.total):
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"{self.what}: {self.done}/{self.total} samples ({rate:.0f} samples/s)", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- whole store

@dataclass
class BuildResult:
    """What a store build did: the store path, samples kept, samples skipped (with reasons)."""

    path: Path
    n_samples: int
    n_bins: int
    skipped: list[dict]
    seconds: float
    provenance: dict


def default_workers() -> int:
    """Worker processes: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _versions(settings: CountSettings, extra: dict | None) -> dict:
    out = package_versions(("cnvrock", "numpy", "pandas") + (("pysam",) if settings.method == "bam" else ()))
    if settings.method == "bam":
        import pysam.version

        out["htslib (pysam)"] = pysam.version.__htslib_version__
    out.update(extra or {})
    return out


def _provenance(settings: CountSettings, extra_versions: dict | None, manifest_name: str) -> dict:
    prov = {
        "builder": "cnvrock_lib.ingest",
        **settings.describe(),
        "bin_size": int(settings.bins["end"][0] - settings.bins["start"][0] + 1),
        "bins": "1-based inclusive, like GATK intervals; the last bin of a contig is partial",
        "reference_contigs": _contig_table(settings.bins),
        "tool_versions": _versions(settings, extra_versions),
        "manifest": manifest_name,
    }
    if settings.method == "bam":
        prov["read_filters"] = {"skipped_reads": list(SKIPPED_READS), "skip_flags": hex(SKIP_FLAGS),
                                "min_mapq": int(settings.min_mapq)}
        prov["read_start_convention"] = READ_START_CONVENTION
        if settings.reference_fasta:
            prov["reference_fasta"] = str(settings.reference_fasta)
    elif settings.method == "gatk-tsv":
        prov["read_start_convention"] = ("as counted by GATK CollectReadCounts (read start in the bin); "
                                         "min_mapq is as declared by the user, not checked here")
    else:
        prov["unit_note"] = MOSDEPTH_UNIT_NOTE
        prov["min_mapq_note"] = "as declared by the user (mosdepth -Q), not checked here"
    return prov


def _bam_programs(path: Path) -> list[dict]:
    """The @PG records (aligner, sorter) of one BAM header, for provenance."""
    try:
        import pysam

        with pysam.AlignmentFile(str(path), "rc" if path.suffix == ".cram" else "rb") as bam:
            return [{k: pg.get(k) for k in ("ID", "PN", "VN") if k in pg} for pg in bam.header.to_dict().get("PG", [])]
    except (ValueError, OSError, ImportError):
        return []


def _check_on_error(on_error: str) -> None:
    if on_error not in ("fail", "skip"):
        raise InputError(f"on_error = {on_error!r}; expected 'fail' or 'skip'")


def _sample_message(sample_id: str, path: str, reason: str) -> str:
    return f"sample {sample_id} ({path}): {reason}"


def _shrink_rows(npy: Path, n_rows: int) -> None:
    """Keep the first ``n_rows`` of a 2-D .npy on disk (after skipped samples)."""
    src = np.load(npy, mmap_mode="r")
    tmp = npy.with_name(npy.name + ".shrink.npy")
    dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=src.dtype, shape=(n_rows, src.shape[1]))
    step = max(1, (1 << 26) // max(1, src.shape[1] * src.dtype.itemsize))
    for lo in range(0, n_rows, step):
        dst[lo:lo + step] = src[lo:min(lo + step, n_rows)]
    dst.flush()
    del dst, src
    os.replace(tmp, npy)


def _iter_results(tasks: list, settings: CountSettings, workers: int, executor: str) -> Iterator[tuple]:
    """Results in task order; a pool's pending tasks are cancelled if the consumer stops early."""
    if workers <= 1 or len(tasks) <= 1:
        for index, path in tasks:
            yield (index, *_count_one(path, settings))
        return
    if executor not in ("process", "thread"):
        raise InputError(f"executor = {executor!r}; expected 'process' or 'thread'")
    pool_cls = ProcessPoolExecutor if executor == "process" else ThreadPoolExecutor
    pool = pool_cls(max_workers=workers, initializer=_init_worker, initargs=(settings,))
    try:
        chunk = max(1, min(64, len(tasks) // (workers * 8))) if executor == "process" else 1
        kwargs = {"chunksize": chunk} if executor == "process" else {}
        yield from pool.map(_count_task, tasks, **kwargs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_out(out: Path, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an ``out`` that exists (unless ``overwrite``) or that is not a store ``--overwrite`` may replace."""
    from .store import check_replaceable

    if out.exists() and not overwrite:
        raise StoreError(f"store {out} already exists; refusing to overwrite it (pass overwrite / --overwrite)")
    check_replaceable(out, inputs)


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise InputError(f"workers = {workers!r}: expected a positive whole number of parallel workers "
                         f"(omit --workers for the usable CPUs)")
    return int(workers)


def build_store(manifest, out: str | os.PathLike, settings: CountSettings, *, on_error: str = "fail",
                workers: int | None = None, executor: str = "auto", overwrite: bool = False,
                tool_versions: dict | None = None, progress: bool = True) -> BuildResult:
    """Count every sample of a manifest into a new store directory.

    Parameters
    ----------
    manifest : TSV path (``sample_id path``) or a DataFrame with those columns.
    out : the store directory to create (written complete or not at all).
    settings : method, bins and MQ threshold (:class:`CountSettings`).
    on_error : ``"fail"``: the first bad file raises InputError (sample, path, reason)
        and nothing is written; ``"skip"``: bad samples are left out and listed
        under ``skipped`` in ``store.json``.
    workers : parallel workers (default: the usable CPUs); 1 counts in-process.
    executor : ``"process"``, ``"thread"`` or ``"auto"``: threads for text inputs (their C
        parsers release the GIL; measured faster than processes, bench/store_build.py),
        processes for BAM/CRAM (a Python loop over reads).
    tool_versions : extra versions to record, e.g. ``{"gatk": "4.5.0.0"}``.

    Rows of ``counts.npy`` follow the manifest order (skipped samples removed).
    """
    _check_on_error(on_error)
    samples, manifest_name = _as_manifest(manifest)
    out = Path(out).expanduser().resolve()
    _check_out(out, overwrite, [manifest_name, *samples["path"]])
    workers = _check_workers(workers)
    if executor == "auto":
        executor = "process" if settings.method == "bam" else "thread"
    t0 = time.perf_counter()
    n, n_bins = len(samples), settings.bins.shape[0]
    if n == 0:
        raise InputError(f"manifest {manifest_name} lists no samples")
    ids = samples["sample_id"].tolist()
    paths = samples["path"].tolist()
    tasks = [(i, paths[i]) for i in range(n)]
    skipped: list[dict] = []
    kept: list[int] = []
    bar = _Progress(n, f"build-store {out.name}", enabled=progress)
    with atomic_dir(out) as tmp:
        counts = np.lib.format.open_memmap(tmp / "counts.npy", mode="w+", dtype=settings.dtype,
                                           shape=(n, n_bins))
        try:
            for i, row, reason in _iter_results(tasks, settings, workers, executor):
                bar.update()
                if reason is not None:
                    if on_error == "fail":
                        raise InputError(_sample_message(ids[i], paths[i], reason)
                                         + "; nothing was written (on_error='skip' leaves such samples out)")
                    log.warning("skipping %s", _sample_message(ids[i], paths[i], reason))
                    skipped.append({"sample_id": ids[i], "path": paths[i], "reason": reason})
                    continue
                counts[len(kept)] = row
                kept.append(i)
        finally:
            bar.close()
        counts.flush()
        del counts
        if not kept:
            raise StoreError(f"store {out}: no sample could be counted; first failure: "
                             f"{_sample_message(**skipped[0])}")
        if len(kept) < n:
            _shrink_rows(tmp / "counts.npy", len(kept))
        prov = _provenance(settings, tool_versions, manifest_name)
        if settings.method == "bam":
            prov["aligner_programs_first_sample"] = _bam_programs(Path(paths[kept[0]]))
        seconds = time.perf_counter() - t0
        prov.update(_finish_provenance(len(kept), n, skipped, on_error, seconds, workers=workers,
                                       executor=executor if workers > 1 else "in-process"))
        _write_store_files(tmp, [ids[i] for i in kept], settings.bins, prov)
    return BuildResult(out, len(kept), n_bins, skipped, seconds, prov)


def _finish_provenance(n_kept: int, n_input: int, skipped: list, on_error: str, seconds: float, **extra) -> dict:
    return {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_samples": n_kept, "n_input_samples": n_input, "n_skipped": len(skipped),
            "skipped": skipped, "on_error": on_error, "build_seconds": round(seconds, 3), **extra}


def _write_store_files(tmp: Path, sample_ids: list[str], bins: np.ndarray, prov: dict) -> None:
    from .store import validate

    np.save(tmp / "sample_ids.npy", np.asarray(sample_ids, dtype=str), allow_pickle=False)
    np.save(tmp / "contigs.npy", bins.astype(BIN_DTYPE), allow_pickle=False)
    prov["n_bins"] = int(bins.shape[0])
    (tmp / "store.json").write_text(json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n")
    counts = np.load(tmp / "counts.npy", mmap_mode="r")
    validate(tmp, counts, np.asarray(sample_ids, dtype=str), bins.astype(BIN_DTYPE), check_values=False)


# --------------------------------------------------------------------------- cluster scale

def sample_file(counts_dir: str | os.PathLike, sample_id: str) -> Path:
    """Path of one sample's counts file in ``counts_dir`` (the id is %-escaped for the file system)."""
    return Path(counts_dir) / (urllib.parse.quote(sample_id, safe="") + SAMPLE_FILE_SUFFIX)


def _failed_file(counts_dir, sample_id: str) -> Path:
    return Path(counts_dir) / (urllib.parse.quote(sample_id, safe="") + FAILED_FILE_SUFFIX)


def _source_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_sample_file(file: Path) -> tuple[np.ndarray, dict]:
    """``(counts, meta)`` of a per-sample file; any fault (truncated, corrupt, not an .npz) is a ValueError."""
    try:
        with np.load(file, allow_pickle=False) as z:
            return np.asarray(z["counts"]), json.loads(str(z["meta"]))
    except OSError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, zlib.error, KeyError ... from a damaged file
        raise ValueError(f"corrupt or not a count-sample file ({type(exc).__name__}: {exc})") from None


def _is_current(file: Path, settings: CountSettings, source: Path) -> bool:
    if not file.is_file():
        return False
    try:
        _, meta = _read_sample_file(file)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return False
    want = settings.describe()
    same_settings = all(meta.get(k) == v for k, v in want.items())
    try:
        same_source = meta.get("source") == _source_fingerprint(source)
    except OSError:
        same_source = False
    return same_settings and same_source


def count_sample(input_path: str | os.PathLike, sample_id: str, counts_dir: str | os.PathLike,
                 settings: CountSettings, *, on_error: str = "fail", force: bool = False) -> Path | None:
    """Count one sample into ``counts_dir/<sample_id>.counts.npz`` (one cluster job).

    The file holds ``counts`` (the store row) and ``meta`` (JSON: settings, bins
    digest, source path/size/mtime, versions). An up-to-date file (same settings,
    same source file) is kept unless ``force``, so a rerun counts only what is
    missing or stale. On a bad input, ``on_error="fail"`` raises InputError;
    ``"skip"`` writes ``<sample_id>.failed.json`` with the reason (read by
    :func:`gather`) and returns None. Returns the counts file path.
    """
    _check_on_error(on_error)
    source = Path(input_path).expanduser().resolve()
    counts_dir = Path(counts_dir).expanduser().resolve()
    counts_dir.mkdir(parents=True, exist_ok=True)
    target = sample_file(counts_dir, sample_id)
    failed = _failed_file(counts_dir, sample_id)
    if not force and _is_current(target, settings, source):
        log.info("sample %s: %s is up to date", sample_id, target)
        return target
    row, reason = _count_one(str(source), settings)
    if reason is not None:
        if on_error == "fail":
            raise InputError(_sample_message(sample_id, str(source), reason))
        write_json(failed, {"sample_id": sample_id, "path": str(source), "reason": reason,
                            **settings.describe()})
        target.unlink(missing_ok=True)
        return None
    meta = {"sample_id": sample_id, "source": _source_fingerprint(source), **settings.describe(),
            "tool_versions": _versions(settings, None),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if settings.method == "bam":
        meta["aligner_programs"] = _bam_programs(source)
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, counts=row, meta=np.array(json.dumps(meta, default=str)))
    failed.unlink(missing_ok=True)
    return target


def missing_samples(manifest, counts_dir: str | os.PathLike, settings: CountSettings) -> list[int]:
    """0-based manifest rows whose counts file is absent or stale (for ``sbatch --array``)."""
    samples, _ = _as_manifest(manifest)
    return [i for i, (sid, p) in enumerate(zip(samples["sample_id"], samples["path"]))
            if not _is_current(sample_file(counts_dir, sid), settings, Path(p))]


def gather(manifest, counts_dir: str | os.PathLike, out: str | os.PathLike, settings: CountSettings, *,
           on_error: str = "fail", overwrite: bool = False, progress: bool = True) -> BuildResult:
    """Assemble a store from the per-sample files of :func:`count_sample`.

    Every counts file must carry the same settings (method, MQ, unit, bins) as
    ``settings``. A sample without a counts file (not counted, or failed) is
    fatal with ``on_error="fail"`` (the message lists how many and which), or
    left out and listed in ``store.json`` with ``"skip"``. Rows follow the manifest.
    """
    _check_on_error(on_error)
    samples, manifest_name = _as_manifest(manifest)
    counts_dir = Path(counts_dir).expanduser().resolve()
    out = Path(out).expanduser().resolve()
    _check_out(out, overwrite, [manifest_name, counts_dir, *samples["path"]])
    if not counts_dir.is_dir():
        raise InputError(f"counts directory {counts_dir} does not exist (run count-sample first)")
    t0 = time.perf_counter()
    want = settings.describe()
    n, n_bins = len(samples), settings.bins.shape[0]
    ids, paths = samples["sample_id"].tolist(), samples["path"].tolist()
    problems: list[dict] = []
    kept: list[int] = []
    first_meta: dict | None = None
    bar = _Progress(n, f"gather {out.name}", enabled=progress)
    with atomic_dir(out) as tmp:
        counts = np.lib.format.open_memmap(tmp / "counts.npy", mode="w+", dtype=settings.dtype,
                                           shape=(n, n_bins))
        try:
            for i, (sid, path) in enumerate(zip(ids, paths)):
                bar.update()
                file = sample_file(counts_dir, sid)
                reason = None
                if not file.is_file():
                    failed = _failed_file(counts_dir, sid)
                    if failed.is_file():
                        reason = "counting failed: " + json.loads(failed.read_text()).get("reason", "?")
                    else:
                        reason = f"not counted (no {file.name} in {counts_dir})"
                else:
                    try:
                        row, meta = _read_sample_file(file)
                    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
                        row, meta, reason = None, {}, f"unreadable counts file {file}: {exc}"
                    if reason is None:
                        diff = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
                        if diff:
                            shown = "; ".join(f"{k} {a!r} (expected {b!r})" for k, (a, b) in diff.items())
                            reason = f"counts file {file.name} was made with other settings: {shown}"
                        elif meta.get("sample_id") != sid:
                            reason = f"counts file {file.name} is for sample {meta.get('sample_id')!r}"
                        elif row.shape != (n_bins,):
                            reason = f"counts file {file.name} has shape {row.shape}, expected ({n_bins},)"
                if reason is not None:
                    problems.append({"sample_id": sid, "path": path, "reason": reason})
                    continue
                first_meta = first_meta or meta
                counts[len(kept)] = row
                kept.append(i)
        finally:
            bar.close()
        if problems and on_error == "fail":
            shown = "; ".join(_sample_message(**p) for p in problems[:3])
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise InputError(f"gather into {out}: {len(problems)} of {n} samples have no usable counts file: "
                             f"{shown}{more}; nothing was written. Count them again (cnvrock gather "
                             f"--list-missing gives their manifest rows) or pass --on-error skip")
        counts.flush()
        del counts
        if not kept:
            raise StoreError(f"store {out}: no sample has a usable counts file in {counts_dir}")
        if len(kept) < n:
            _shrink_rows(tmp / "counts.npy", len(kept))
        prov = _provenance(settings, (first_meta or {}).get("tool_versions"), manifest_name)
        prov["gathered_from"] = str(counts_dir)
        if first_meta and first_meta.get("aligner_programs"):
            prov["aligner_programs_first_sample"] = first_meta["aligner_programs"]
        seconds = time.perf_counter() - t0
        prov.update(_finish_provenance(len(kept), n, problems, on_error, seconds))
        _write_store_files(tmp, [ids[i] for i in kept], settings.bins, prov)
    return BuildResult(out, len(kept), n_bins, problems, seconds, prov)


# --------------------------------------------------------------------------- writers for tests and benchmarks

def write_gatk_tsv(path: str | os.PathLike, counts: np.ndarray, bins: np.ndarray,
                   sample_name: str = "sample", contig_lengths: dict[str, int] | None = None) -> Path:
    """Write one sample's read starts per bin in GATK CollectReadCounts TSV format (atomically).

    The header carries ``@HD``, one ``@SQ`` per contig (``contig_lengths``, default
    the bins' contigs) and ``@RG`` with ``SM:sample_name``, as GATK writes it.
    """
    counts = np.asarray(counts)
    if counts.shape != (bins.shape[0],):
        raise InputError(f"write_gatk_tsv {path}: {counts.shape[0] if counts.ndim else 0} counts for "
                         f"{bins.shape[0]} bins")
    lengths = contig_lengths or {e["contig"]: e["length"] for e in _contig_table(bins)}
    header = ["@HD\tVN:1.6"] + [f"@SQ\tSN:{c}\tLN:{n}" for c, n in lengths.items()]
    header += [f"@RG\tID:GATKCopyNumber\tSM:{sample_name}", "CONTIG\tSTART\tEND\tCOUNT"]
    body = _tsv_rows(bins, counts)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(("\n".join(header) + "\n").encode())
            handle.write(body)
    return Path(path)


_ROW_PREFIXES: dict[str, list[str]] = {}


def _tsv_rows(bins: np.ndarray, counts: np.ndarray) -> bytes:
    digest = bins_digest(bins)
    if digest not in _ROW_PREFIXES:  # "CONTIG\tSTART\tEND\t" per bin, reused for every sample
        _ROW_PREFIXES.clear()
        _ROW_PREFIXES[digest] = [f"{c}\t{s}\t{e}\t" for c, s, e in bins.tolist()]
    prefixes = _ROW_PREFIXES[digest]
    return "".join([f"{p}{n}\n" for p, n in zip(prefixes, np.asarray(counts).astype(np.int64).tolist())]).encode()


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
