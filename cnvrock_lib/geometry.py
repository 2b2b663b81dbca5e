"""Bin geometry shared by training (stage 01), calling (stage 03) and the truth scoring.

Bins are structured arrays with ``chrom``, ``start``, ``end`` (bp, 1-based inclusive), contiguous
per contig in store order (:mod:`cnvrock_lib.reference`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def contig_starts(bins: np.ndarray) -> np.ndarray:
    """Bool (n_bins,): True at the first bin of each contig (where a new HMM chain starts)."""
    chrom = bins["chrom"]
    return np.concatenate([[True], chrom[1:] != chrom[:-1]])


def contig_slices(bins: np.ndarray) -> dict[str, slice]:
    """``{contig: slice of bin indices}`` in store order (bins are contiguous per contig)."""
    starts = np.flatnonzero(contig_starts(bins)) if len(bins) else np.array([], dtype=np.int64)
    ends = np.append(starts[1:], len(bins))
    return {str(bins["chrom"][s]): slice(int(s), int(e)) for s, e in zip(starts, ends)}


def gene_bin_weights(bins: np.ndarray, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins overlapping a gene and the overlap of each with the gene.

    Parameters
    ----------
    bins : structured array with ``chrom``, ``start``, ``end`` (bp, 1-based inclusive).
    contig, start, end : the gene region (bp, 1-based inclusive).

    Returns
    -------
    indices : int64 bin indices, in store order.
    overlap_bp : int64 bp of the gene inside each of those bins (the weights).
    """
    on_contig = bins["chrom"] == contig
    lo = np.maximum(bins["start"], start)
    hi = np.minimum(bins["end"], end)
    overlap = np.where(on_contig, hi - lo + 1, 0)
    idx = np.flatnonzero(overlap > 0)
    return idx.astype(np.int64), overlap[idx].astype(np.int64)


def flank_bin_indices(bins: np.ndarray, contig: str, start: int, end: int, padding: int,
                      exclude: np.ndarray) -> np.ndarray:
    """Bins within ``padding`` bp either side of a gene on its contig, without the gene bins.

    A gene near a contig end gets a one-sided flank. Returns int64 indices.
    """
    on_contig = bins["chrom"] == contig
    near = on_contig & (bins["end"] >= start - padding) & (bins["start"] <= end + padding)
    near[np.asarray(exclude, dtype=np.int64)] = False
    return np.flatnonzero(near).astype(np.int64)


def gene_neighbourhood_bins(bins: np.ndarray, genes: pd.DataFrame, padding: int) -> np.ndarray:
    """Bins overlapping any gene ± ``padding`` bp (bool, n_bins); all False when ``padding`` is 0."""
    out = np.zeros(len(bins), dtype=bool)
    if padding <= 0:
        return out
    for row in genes.itertuples():
        idx, _ = gene_bin_weights(bins, row.contig, int(row.start) - padding, int(row.end) + padding)
        out[idx] = True
    return out
