"""Per-sample depth normalisation shared by every stage.

x_i = log2(counts_i / m_i + 1), with m_i a robust median of sample i's
chromosome counts (reads per bin), floored at 1.
"""

from __future__ import annotations

import warnings

import numpy as np


def sample_medians(counts: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Robust per-sample depth m_i (reads per 1 kb bin): median over bins with a count > 0, at least 1.

    Zero bins (unmappable stretches, deletions) are left out so that they do not
    pull the median of a sample with large deletions down. Works on memory-maps
    in chunks of ``chunk`` samples. Returns float64 (n_samples,).
    """
    out = np.empty(counts.shape[0], dtype=np.float64)
    for lo in range(0, counts.shape[0], chunk):
        block = np.asarray(counts[lo:lo + chunk], dtype=np.float64)
        masked = np.where(block > 0, block, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-zero sample: its median falls back to 1
            med = np.nanmedian(masked, axis=1)
        out[lo:lo + chunk] = np.where(np.isfinite(med), med, 1.0)
    return np.maximum(out, 1.0)


def log_depth(counts: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """Normalised log depth log2(counts / m + 1), float32 (n_samples, n_bins)."""
    x = np.asarray(counts, dtype=np.float32) / np.asarray(medians, dtype=np.float32)[:, None]
    return np.log2(x + 1.0, dtype=np.float32)


def expected_counts(x_hat: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """Invert :func:`log_depth`: expected reads per bin (2^x̂ − 1)·m, clipped at 0, float32."""
    depth = (np.exp2(np.asarray(x_hat, dtype=np.float32)) - 1.0) * np.asarray(medians, dtype=np.float32)[:, None]
    return np.maximum(depth, 0.0).astype(np.float32)
