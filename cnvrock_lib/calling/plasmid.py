"""Plasmid gene dosage (SPEC §7.2): plasmid copy number per bp, the fixed-threshold call, its
confidence, the plasmid backbone PCN, and the gene regions of a plasmid store (per-bin stores and
the original's per-gene legacy stores).

Units: counts are reads; lengths bp; PCN is copies per chromosome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .. import reference
from ..geometry import gene_bin_weights
from ..errors import InputError
from ..reference import BIN_SIZE
from ..store import NpyStore

# Backbone PCN ignores contig-end bins shorter than this (bp): too few reads.
MIN_BACKBONE_BIN_BP = BIN_SIZE // 2


def chromosome_depth_per_bp(medians: np.ndarray, bin_size: int = BIN_SIZE) -> np.ndarray:
    """Chromosome depth in reads per bp from per-sample median reads per bin."""
    return np.asarray(medians, dtype=np.float64) / float(bin_size)


def pcn(gene_counts: np.ndarray, length_bp: float | np.ndarray, chrom_depth_bp: np.ndarray) -> np.ndarray:
    """Plasmid copy number: (reads ÷ length bp) ÷ chromosome reads per bp (copies per chromosome)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(gene_counts, dtype=np.float64) / np.asarray(length_bp, dtype=np.float64) \
            / np.asarray(chrom_depth_bp, dtype=np.float64)


def plasmid_call(pcn_value: np.ndarray, absent_threshold: float | np.ndarray, amp_threshold: float) -> np.ndarray:
    """0 absent (PCN < absent threshold), 2 amplified (PCN ≥ ``amp_threshold``), else 1; −1 for NaN. int8."""
    v = np.asarray(pcn_value, dtype=np.float64)
    call = np.where(v < absent_threshold, 0, np.where(v >= amp_threshold, 2, 1))
    return np.where(np.isfinite(v), call, -1).astype(np.int8)


def pcn_call_confidence(counts: np.ndarray, reads_per_copy: np.ndarray, call: np.ndarray,
                        absent_threshold: float | np.ndarray, amp_threshold: float,
                        dispersion: float | np.ndarray = 1.0) -> np.ndarray:
    """Posterior probability that the PCN lies in the called class.

    The mean of the gene's reads has a Jeffreys posterior Gamma(count + ½, 1)
    for Poisson counts, φ·Gamma(count/φ + ½, 1) for over-dispersed ones;
    ``reads_per_copy`` (length bp × chromosome reads per bp) turns the class
    bounds into reads. NaN for uncallable calls.
    """
    phi = np.maximum(np.asarray(dispersion, dtype=np.float64), 1.0)
    c = np.asarray(counts, dtype=np.float64)
    scale = np.asarray(reads_per_copy, dtype=np.float64)
    lo_reads = np.asarray(absent_threshold, dtype=np.float64) * scale
    amp_reads = amp_threshold * scale
    post = stats.gamma(c / phi + 0.5, scale=phi)
    p_absent = post.cdf(lo_reads)
    p_amp = post.sf(amp_reads)
    p_present = np.clip(1.0 - p_absent - p_amp, 0.0, 1.0)
    call = np.asarray(call)
    return np.select([call == 0, call == 1, call == 2], [p_absent, p_present, p_amp], default=np.nan)


def backbone_pcn(contig_counts: np.ndarray, bin_lengths: np.ndarray, chrom_depth_bp: np.ndarray) -> np.ndarray:
    """Plasmid backbone PCN: median over a contig's bins of reads per bp ÷ chromosome reads per bp.

    Bins shorter than ``MIN_BACKBONE_BIN_BP`` (a contig's partial last bin) are left out.
    Returns (n_samples,) copies per chromosome.
    """
    lengths = np.asarray(bin_lengths, dtype=np.float64)
    keep = lengths >= MIN_BACKBONE_BIN_BP
    if not keep.any():
        keep = lengths > 0
    per_bp = np.asarray(contig_counts, dtype=np.float64)[:, keep] / lengths[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.median(per_bp, axis=1) / np.asarray(chrom_depth_bp, dtype=np.float64)


@dataclass(frozen=True)
class PlasmidRegion:
    """Where a plasmid gene's reads are in the plasmid store."""

    gene: str
    contig: str
    columns: np.ndarray         # store column indices summed for the gene
    length_bp: int              # effective length (span of those bins, bp)


def _legacy_span(start: int, end: int, contig_length: int | None) -> int:
    """Span (bp) of the whole 1 kb bins overlapping [start, end], clipped at the contig end."""
    first = (start - 1) // BIN_SIZE * BIN_SIZE + 1
    last = -(-end // BIN_SIZE) * BIN_SIZE
    if contig_length is not None:
        last = min(last, contig_length)
    return int(last - first + 1)


def plasmid_regions(store: NpyStore, panel: pd.DataFrame, source: str) -> list[PlasmidRegion]:
    """Map each panel gene to store columns and an effective length (bp).

    A 1 kb bin store ("bins" layout): the bins overlapping the gene, length =
    their summed length. A legacy store ("genes" layout, one column per gene):
    the column on the gene's contig overlapping the gene (or whose ``chrom`` is
    the gene name), length = span of the whole 1 kb bins overlapping that
    column's region. Raises InputError naming a gene the store lacks.
    """
    bins = store.bins
    lengths = store.bin_lengths
    contig_len = dict(zip(reference.load_contigs()["contig"], reference.load_contigs()["length"]))
    out = []
    for row in panel.itertuples():
        if store.layout == "bins":
            idx, _ = gene_bin_weights(bins, row.contig, int(row.start), int(row.end))
            if idx.size == 0:
                raise InputError(f"plasmid store {store.path}: no bin overlaps gene {row.gene} "
                                 f"({row.contig}:{row.start}-{row.end}) from {source}")
            out.append(PlasmidRegion(row.gene, row.contig, idx, int(lengths[idx].sum())))
        else:
            hit = np.flatnonzero(((bins["chrom"] == row.contig) & (bins["start"] <= row.end)
                                  & (bins["end"] >= row.start)) | (bins["chrom"] == row.gene))
            if hit.size != 1:
                raise InputError(f"legacy plasmid store {store.path}: expected one column for gene {row.gene} "
                                 f"({row.contig}:{row.start}-{row.end}), found {hit.size}")
            b = bins[hit[0]]
            clen = contig_len.get(row.contig)
            clen = int(clen) if clen is not None else None
            out.append(PlasmidRegion(row.gene, row.contig, hit, _legacy_span(int(b["start"]), int(b["end"]), clen)))
    return out
