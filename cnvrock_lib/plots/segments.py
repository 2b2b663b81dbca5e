"""Stage 02 figures: genome-wide copy ratio with segments, the cohort state
heatmap, state occupancy, segment lengths and the QC distribution."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from ..copy_number import CN_STATES

# one colour per state, CN 0 (red) through CN 1 (grey) to CN 3 (dark blue)
STATE_COLOURS = ("#c0392b", "#f39c12", "#bdc3c7", "#7fb3d5", "#2e86c1", "#1b2631")


def _state_cmap():
    cmap = ListedColormap(STATE_COLOURS)
    return cmap, BoundaryNorm(np.arange(len(CN_STATES) + 1) - 0.5, cmap.N)


def sample_tracks(bins: np.ndarray, ratios: np.ndarray, segments: pd.DataFrame, labels: list[str],
                  ymax: float = 4.0) -> Figure:
    """Copy ratio per bin (dots) with the HMM segments (lines at their CN), one panel per sample.

    Parameters
    ----------
    bins : structured (n_bins,) ``chrom start end`` (bp).
    ratios : (n_samples, n_bins) copy ratios of the samples shown, NaN where masked.
    segments : their rows of ``segments.parquet`` (``sample_id`` order follows ``labels``).
    labels : one title per sample, e.g. ``"amplified — SRR123"``; the sample id is the text after "— ".
    ymax : copy ratios above this are drawn at the top edge (copies).
    """
    n = len(labels)
    fig, axes = plt.subplots(n, 1, figsize=(13, 2.3 * n + 0.4), sharex=True, squeeze=False)
    offset = _contig_offsets(bins)
    x = (bins["start"] + bins["end"]) / 2 + offset
    for ax, label, r in zip(axes[:, 0], labels, ratios):
        sid = label.split("— ")[-1]
        ax.plot(x / 1e6, np.minimum(r, ymax), ".", ms=1.5, color="0.55", rasterized=True)
        seg = segments[segments["sample_id"] == sid]
        seg_off = _offset_of(seg["chrom"].to_numpy(), bins, offset)
        for (start, end, cn, state), off in zip(seg[["start", "end", "cn", "state"]].itertuples(index=False), seg_off):
            ax.plot([(start + off) / 1e6, (end + off) / 1e6], [min(cn, ymax)] * 2, color=STATE_COLOURS[state],
                    linewidth=2.2, solid_capstyle="butt")
        masked = np.isnan(r)
        if masked.any():
            ax.plot(x[masked] / 1e6, np.full(masked.sum(), -0.15), "|", color="purple", ms=4, alpha=0.6)
        ax.set_ylim(-0.3, ymax + 0.1)
        ax.set_yticks([0, 0.5, 1, 1.5, 2, 3])
        ax.set_ylabel("copy ratio")
        ax.set_title(label, fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("position (Mb); purple ticks: masked bins")
    fig.tight_layout()
    return fig


def _contig_offsets(bins: np.ndarray) -> np.ndarray:
    """Per-bin bp offset that lays contigs end to end on one axis."""
    chrom = bins["chrom"]
    starts = np.flatnonzero(np.concatenate([[True], chrom[1:] != chrom[:-1]]))
    offset = np.zeros(bins.shape[0])
    total = 0
    for lo, hi in zip(starts, np.append(starts[1:], bins.shape[0])):
        offset[lo:hi] = total
        total += int(bins["end"][hi - 1])
    return offset


def _offset_of(chroms: np.ndarray, bins: np.ndarray, offset: np.ndarray) -> np.ndarray:
    first = {str(c): offset[i] for i, c in reversed(list(enumerate(bins["chrom"])))}
    return np.array([first.get(str(c), 0.0) for c in chroms])


def state_heatmap(states: np.ndarray, sample_labels: list[str] | None = None, bins_per_pixel: int = 5,
                  max_samples: int = 400) -> Figure:
    """Cohort heatmap of HMM states (samples × bins), colour = CN state.

    Bins are pooled ``bins_per_pixel`` at a time (the most extreme state of the
    pool is shown, so a short CNV stays visible); at most ``max_samples`` rows
    (the caller picks and orders them).
    """
    s = np.asarray(states[:max_samples]).astype(np.int64)
    n, t = s.shape
    cut = (t // bins_per_pixel) * bins_per_pixel
    pooled = s[:, :cut].reshape(n, -1, bins_per_pixel)
    cn1 = CN_STATES.index(1.0)
    # the state furthest from CN 1 within each pool (a deletion or gain beats the baseline)
    far = np.take_along_axis(pooled, np.abs(pooled - cn1).argmax(2)[..., None], 2)[..., 0]
    cmap, norm = _state_cmap()
    fig, ax = plt.subplots(figsize=(13, min(9, 1.5 + 0.02 * n)))
    im = ax.imshow(far, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                   extent=(0, cut, n, 0))
    cbar = fig.colorbar(im, ax=ax, ticks=range(len(CN_STATES)), fraction=0.03)
    cbar.ax.set_yticklabels([f"CN {c:g}" for c in CN_STATES])
    ax.set_xlabel("bin (1 kb)")
    ax.set_ylabel(f"samples ({n})")
    if sample_labels is not None and n <= 40:
        ax.set_yticks(np.arange(n) + 0.5)
        ax.set_yticklabels(sample_labels[:n], fontsize=6)
    ax.set_title(f"HMM states across the cohort ({bins_per_pixel} bins per pixel, most extreme state shown)")
    fig.tight_layout()
    return fig


def state_occupancy(occupancy: pd.DataFrame) -> Figure:
    """Fraction of usable bins per state: cohort total (bars) and the spread across samples (box plot)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    cols = list(occupancy.columns)
    axes[0].bar(cols, occupancy.mean(axis=0).to_numpy(), color=STATE_COLOURS[:len(cols)], edgecolor="0.3")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("fraction of usable bins (cohort mean)")
    axes[0].set_title("state occupancy")
    data = [occupancy[c].to_numpy() for c in cols if c != "CN 1"]
    axes[1].boxplot(data, showfliers=True, flierprops={"markersize": 2})
    axes[1].set_xticks(range(1, len(data) + 1), [c for c in cols if c != "CN 1"])
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_ylim(bottom=0)
    axes[1].set_ylabel("fraction of the sample's usable bins")
    axes[1].set_title("per sample, states other than CN 1")
    fig.tight_layout()
    return fig


def segment_lengths(segments: pd.DataFrame) -> Figure:
    """Distribution of segment lengths (bins of 1 kb) per state, CN-1 segments included, log scale."""
    fig, ax = plt.subplots(figsize=(10, 3.8))
    edges = np.unique(np.round(np.logspace(0, np.log10(max(2, segments["n_bins"].max() + 1)), 30)))
    for state, grp in segments.groupby("state"):
        ax.hist(grp["n_bins"], bins=edges, histtype="step", linewidth=1.6, color=STATE_COLOURS[int(state)],
                label=f"CN {CN_STATES[int(state)]:g} ({len(grp):,})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("segment length (bins of 1 kb)")
    ax.set_ylabel("segments")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("segment lengths by state")
    fig.tight_layout()
    return fig


def qc_distribution(qc: pd.DataFrame, min_cn1_proportion: float) -> Figure:
    """CN-1 fraction (QC statistic) and noise sd per sample, with the QC threshold."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    ok = qc["qc_pass"].astype(bool)
    axes[0].hist([qc.loc[ok, "cn1_fraction"], qc.loc[~ok, "cn1_fraction"]], bins=40, range=(0, 1), stacked=True,
                 color=["0.6", "C3"], label=[f"pass ({ok.sum()})", f"fail ({(~ok).sum()})"])
    axes[0].axvline(min_cn1_proportion, color="C3", linestyle="--", linewidth=1)
    axes[0].set_xlabel("fraction of usable bins confidently in CN 1")
    axes[0].set_ylabel("samples")
    axes[0].legend(fontsize=8)
    axes[1].scatter(qc["median_depth"], qc["noise_sd"], s=6, c=np.where(ok, "0.5", "C3"))
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("median depth (reads per usable bin)")
    axes[1].set_ylabel("noise sd (copy ratio)")
    axes[1].set_title("noise vs depth (red: failed QC)")
    fig.tight_layout()
    return fig
