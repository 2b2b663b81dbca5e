"""Writers of input files for tests and benchmarks (GATK CollectReadCounts TSV)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .inputs import _contig_table, bins_digest

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
