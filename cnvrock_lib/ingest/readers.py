"""Per-file readers: GATK CollectReadCounts TSV (a vectorised parser with a fallback), mosdepth regions,
and BAM/CRAM read starts counted with pysam (SPEC §4.2); each returns one store row."""
from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .inputs import SKIP_FLAGS, _UINT32_MAX, _contig_table, bins_digest

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
