"""Stage 01 gene-neighbourhood fill: the expected depth around each chromosomal panel gene taken from the
sample's own flank instead of the decoder.

A VAE trained on a cohort in which a gene amplification is common learns the amplicon as cohort
structure and puts part of it into the expected depth, so the copy ratio at the gene shrinks.
Leaving the neighbourhood (gene ± ``vae_gene_mask_padding`` bp) out of the loss stops the learning
but leaves the decoder's output there unconstrained. The fill replaces it: inside a neighbourhood
the expected depth is the cohort's median profile (the decoder's fixed baseline) scaled to the
sample's level on the flanks just outside, interpolated linearly in log2 from the left flank to the
right one. An amplicon inside the neighbourhood then cannot enter the expected depth.

Units: x and x̂ are normalised log depth, log2(reads / m + 1) with m the sample's median (reads per
bin); levels are log2 ratios of the sample's relative depth (reads / m) to the cohort profile's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ParamsError
from ..geometry import contig_starts, gene_neighbourhood_bins

FILL_MODES = ("none", "expected", "observed")
MIN_SIDE_BINS = 3       # usable flank bins a side needs to set a level
MIN_RELATIVE = 1 / 64   # floor of the relative depth (reads / m) before taking log2 (empty bins)


@dataclass(frozen=True)
class Neighbourhood:
    """One run of contiguous neighbourhood bins [lo, hi) and the flank bins either side (store indices)."""

    lo: int
    hi: int
    left: np.ndarray
    right: np.ndarray


def neighbourhoods(bins: np.ndarray, genes: pd.DataFrame, padding: int, flank_bp: int | None = None
                   ) -> list[Neighbourhood]:
    """Runs of bins within ± ``padding`` bp of a gene, each with its flank on the same contig.

    Parameters
    ----------
    bins : the store's bins (``chrom``, ``start``, ``end``, bp).
    genes : panel rows ``gene contig start end`` (bp, 1-based inclusive).
    padding : bp either side of each gene (> 0).
    flank_bp : width of each flank (bp) beyond the run; default ``padding``. Flank bins never lie
        in another neighbourhood; a run at a contig end has a one-sided flank.
    """
    if padding <= 0:
        raise ParamsError(f"vae_gene_fill needs vae_gene_mask_padding > 0 (bp); got {padding}")
    flank_bp = padding if flank_bp is None else int(flank_bp)
    mask = gene_neighbourhood_bins(bins, genes, int(padding))
    new_run = mask & (contig_starts(bins) | ~np.concatenate([[False], mask[:-1]]))
    out = []
    for lo in np.flatnonzero(new_run):
        hi = int(lo)
        while hi < len(bins) and mask[hi] and bins["chrom"][hi] == bins["chrom"][lo]:
            hi += 1
        same = (bins["chrom"] == bins["chrom"][lo]) & ~mask
        left = np.flatnonzero(same & (bins["end"] < bins["start"][lo]) & (bins["end"] >= bins["start"][lo] - flank_bp))
        right = np.flatnonzero(same & (bins["start"] > bins["end"][hi - 1])
                               & (bins["start"] <= bins["end"][hi - 1] + flank_bp))
        out.append(Neighbourhood(int(lo), hi, left, right))
    return out


def _log2_relative(x: np.ndarray) -> np.ndarray:
    """log2(reads / m) of normalised log depth x, floored at ``MIN_RELATIVE``."""
    return np.log2(np.maximum(np.exp2(np.asarray(x, dtype=np.float64)) - 1.0, MIN_RELATIVE))


def flank_levels(source: np.ndarray, profile: np.ndarray, side: np.ndarray, usable: np.ndarray) -> np.ndarray | None:
    """Median log2 ratio of ``source`` to ``profile`` over the usable bins of one flank, per sample.

    Returns (n_samples,) or None when fewer than ``MIN_SIDE_BINS`` bins are usable.
    """
    side = side[usable[side]]
    if side.size < MIN_SIDE_BINS:
        return None
    return np.median(_log2_relative(source[:, side]) - _log2_relative(profile[side])[None, :], axis=1)


@dataclass(frozen=True)
class NeighbourhoodFill:
    """How to fill the gene neighbourhoods of decoded samples (see the module docstring).

    mode : ``expected`` (the level on the flank comes from the decoder's expected depth) or
        ``observed`` (from the sample's observed depth).
    hoods : the neighbourhoods (:func:`neighbourhoods`).
    usable : (n_bins,) bool, bins whose level may be used (well covered in the cohort).
    """

    mode: str
    hoods: tuple[Neighbourhood, ...]
    usable: np.ndarray

    def __post_init__(self):
        if self.mode not in FILL_MODES[1:]:
            raise ParamsError(f"vae_gene_fill = {self.mode!r}; expected one of {', '.join(FILL_MODES)}")

    @property
    def n_bins(self) -> int:
        """Bins filled per sample."""
        return sum(h.hi - h.lo for h in self.hoods)

    def apply(self, x_hat: np.ndarray, x: np.ndarray, profile: np.ndarray) -> np.ndarray:
        """Normalised log depth x̂ with every neighbourhood replaced by the flank-scaled profile.

        Parameters
        ----------
        x_hat : (n_samples, n_bins) decoded normalised log depth.
        x : (n_samples, n_bins) observed normalised log depth (read in ``observed`` mode).
        profile : (n_bins,) the cohort's median normalised log depth (the decoder's baseline).

        Returns a float32 copy of ``x_hat``. A side without ``MIN_SIDE_BINS`` usable bins takes
        the other side's level; with neither, the profile is used unscaled.
        """
        out = np.array(x_hat, dtype=np.float32, copy=True)
        source = x if self.mode == "observed" else x_hat
        profile = np.asarray(profile, dtype=np.float64)
        for h in self.hoods:
            left, right = (flank_levels(source, profile, side, self.usable) for side in (h.left, h.right))
            left = right if left is None else left
            right = left if right is None else right
            if left is None:
                left = right = np.zeros(out.shape[0])
            t = (np.arange(h.hi - h.lo) + 0.5) / (h.hi - h.lo)
            level = left[:, None] * (1.0 - t) + right[:, None] * t
            base = np.maximum(np.exp2(profile[h.lo:h.hi]) - 1.0, 0.0)
            out[:, h.lo:h.hi] = np.log2(base[None, :] * np.exp2(level) + 1.0)
        return out
