"""Stage 01 data: the sample split, the normalised depth matrix, the bins kept in the loss and the
regional pattern targets of the alignment loss, and seeded mini-batches.

Units: counts are reads per bin; x = log2(counts / m + 1) with m the sample's median (reads per bin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from .. import normalise
from ..errors import InputError


@dataclass
class Split:
    """Store row indices of the training, validation and hold-out samples (disjoint, sorted)."""

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray

    def labels(self, n_samples: int) -> np.ndarray:
        """``train`` / ``val`` / ``holdout`` per store row."""
        out = np.full(n_samples, "train", dtype=object)
        out[self.val] = "val"
        out[self.holdout] = "holdout"
        return out


def split_samples(n_samples: int, holdout_mask: np.ndarray, val_fraction: float, seed: int) -> Split:
    """Seeded split of the non-hold-out samples into training and validation.

    The validation set is ``round(val_fraction · n)`` of the n non-hold-out samples
    (at least 1 when val_fraction > 0 and n ≥ 2). Raises InputError when no
    sample is left to train on.
    """
    pool = np.flatnonzero(~holdout_mask)
    if pool.size == 0:
        raise InputError(f"every one of the {n_samples} store samples is in the hold-out list; nothing to train on")
    n_val = int(round(val_fraction * pool.size))
    if val_fraction > 0 and pool.size >= 2:
        n_val = min(max(n_val, 1), pool.size - 1)
    order = np.random.default_rng(seed).permutation(pool)
    return Split(train=np.sort(order[n_val:]), val=np.sort(order[:n_val]), holdout=np.flatnonzero(holdout_mask))


def normalised_depth(counts: np.ndarray, medians: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """x = log2(counts / m + 1) for every sample, float32 (n_samples, n_bins), read in chunks of samples."""
    out = np.empty(counts.shape, dtype=np.float32)
    for lo in range(0, counts.shape[0], chunk):
        out[lo:lo + chunk] = normalise.log_depth(counts[lo:lo + chunk], medians[lo:lo + chunk])
    return out


def _column_median(x: np.ndarray, rows: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None = None,
                   chunk: int = 512) -> np.ndarray:
    """Median over ``rows`` of every column, computed a block of columns at a time (bounded memory)."""
    out = np.empty(x.shape[1], dtype=np.float64)
    for lo in range(0, x.shape[1], chunk):
        block = x[np.ix_(rows, np.arange(lo, min(lo + chunk, x.shape[1])))].astype(np.float64)
        out[lo:lo + chunk] = np.median(transform(block) if transform else block, axis=0)
    return out


def usable_bins(x: np.ndarray, medians: np.ndarray, train_idx: np.ndarray, low_cov_threshold: float) -> np.ndarray:
    """Bins kept in the reconstruction loss: median training-sample count ≥ ``low_cov_threshold`` (reads).

    Bins near zero in most of the cohort (unmappable at the store's MQ) carry no
    signal and are left out; a deletion in some samples does not mask a bin.
    """
    m = medians[train_idx][:, None]
    cohort_median = _column_median(x, train_idx, lambda b: (np.exp2(b) - 1.0) * m)
    return cohort_median >= low_cov_threshold


def block_assignment(n_bins: int, n_blocks: int) -> np.ndarray:
    """Block index (0 … n_blocks−1) of every bin: contiguous, near-equal runs of bins."""
    n_blocks = max(1, min(n_blocks, n_bins))
    return np.repeat(np.arange(n_blocks), [len(a) for a in np.array_split(np.arange(n_bins), n_blocks)])


def pattern_targets(x: np.ndarray, train_idx: np.ndarray, usable: np.ndarray, n_blocks: int,
                    profile: np.ndarray | None = None, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Regional CNV pattern of every sample for the alignment loss.

    p_i = x_i − median over training samples of x, averaged over the usable bins
    of each of ``n_blocks`` contiguous blocks. ``profile`` (n_bins,) is that median
    when the caller has it already.

    Returns
    -------
    pattern : float32 (n_samples, n_blocks), log2 depth deviation.
    block_bins : float32 (n_blocks,), usable bins per block (0 = block ignored).
    """
    block = block_assignment(x.shape[1], n_blocks)
    n_blocks = int(block.max()) + 1
    assign = np.zeros((x.shape[1], n_blocks), dtype=np.float32)
    assign[np.arange(x.shape[1]), block] = usable.astype(np.float32)
    block_bins = assign.sum(axis=0)
    if profile is None:
        profile = _column_median(x, train_idx)
    profile = np.asarray(profile, dtype=np.float32)
    pattern = np.empty((x.shape[0], n_blocks), dtype=np.float32)
    for lo in range(0, x.shape[0], chunk):
        pattern[lo:lo + chunk] = (x[lo:lo + chunk] - profile) @ assign
    pattern /= np.maximum(block_bins, 1.0)
    return pattern, block_bins


def iter_batches(indices: np.ndarray, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Shuffle ``indices`` (store rows) with ``generator`` and yield them in batches of ``batch_size``."""
    order = torch.randperm(len(indices), generator=generator).numpy()
    for lo in range(0, len(order), batch_size):
        yield indices[order[lo:lo + batch_size]]
