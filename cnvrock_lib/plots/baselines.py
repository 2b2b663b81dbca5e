"""Benchmark figures (docs/BENCHMARKS.md): stage costs vs cohort size, HMM scaling,
accuracy of CNVRock against the baselines. Each function takes tables and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter


def _plain_log_x(ax, values) -> None:
    """Log x axis ticked at the measured values, written as plain numbers (1,000 not 10^3)."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(float(v) for v in values)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def stage_costs(speed: pd.DataFrame, stages) -> Figure:
    """Wall time (s) and peak memory (MB) of each stage against the number of samples (log–log).

    ``speed`` has one row per tier with ``n_samples``, ``<stage>_s`` and ``<stage>_peak_mb``.
    """
    frame = speed.sort_values("n_samples")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for stage in stages:
        axes[0].plot(frame["n_samples"], frame[f"{stage}_s"], marker="o", label=stage)
        axes[1].plot(frame["n_samples"], frame[f"{stage}_peak_mb"], marker="o", label=stage)
    for ax, ylabel in zip(axes, ("wall time (s)", "peak resident memory (MB)")):
        _plain_log_x(ax, frame["n_samples"])
        ax.set_yscale("log")
        ax.set_xlabel("samples")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    epochs = ", ".join(f"{int(n)}: {int(e)}" for n, e in zip(frame["n_samples"], frame["epochs_run"]))
    axes[0].set_title(f"time per stage (training epochs {epochs})", fontsize=9)
    axes[1].set_title("peak memory per stage process", fontsize=9)
    axes[1].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def hmm_scaling(over_samples: pd.DataFrame, over_bins: pd.DataFrame) -> Figure:
    """CNVRock's batched HMM vs hmmlearn: seconds against samples and against bins (log–log)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, frame, x, xlabel in ((axes[0], over_samples, "n_samples", "samples"),
                                 (axes[1], over_bins, "n_bins", "bins per sample")):
        f = frame.sort_values(x)
        ax.plot(f[x], f["ours_s"], marker="o", label="CNVRock batched HMM")
        ax.plot(f[x], f["hmmlearn_s"], marker="s", label="hmmlearn per sample")
        _plain_log_x(ax, f[x])
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds (Viterbi + posteriors)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title(f"{int(over_samples['n_bins'].iloc[0])} bins", fontsize=9)
    axes[1].set_title(f"{int(over_bins['n_samples'].iloc[0])} samples", fontsize=9)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def accuracy_overview(pool: pd.DataFrame) -> Figure:
    """blaSHV amplification MCC/recall/PPV per method (normal and hard cohorts) and MCC per
    plasmid family per method (normal cohorts)."""
    amp = pool[(pool.gene == "blaSHV") & (pool["mode"] == "amp")]
    fam = pool[(pool.level == "family") & (~pool.hard.astype(bool))]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.2, 1.2, 1.4]})
    for ax, hard in zip(axes[:2], (False, True)):
        d = amp[amp.hard.astype(bool) == hard].set_index("method")
        if d.empty:
            ax.set_axis_off()
            continue
        y = np.arange(len(d))
        for k, (metric, colour) in enumerate((("mcc", "#4c72b0"), ("recall", "#55a868"), ("ppv", "#c44e52"))):
            ax.barh(y + (k - 1) * 0.27, d[metric].fillna(0), height=0.27, color=colour, label=metric.upper()
                    if metric != "recall" else "recall")
        ax.set_yticks(y)
        ax.set_yticklabels(d.index, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(-0.05, 1.05)
        n_pos = int(d["n_pos"].max())
        ax.set_title(f"blaSHV amplification, {'hard cohort' if hard else 'normal cohorts'} "
                     f"(hold-out, up to {n_pos} positives)", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, frameon=False, loc="lower center", ncol=3, bbox_to_anchor=(0.3, -0.04))
    if fam.empty:
        axes[2].set_axis_off()
    else:
        piv = fam.pivot_table(index="gene", columns="method", values="mcc")
        im = axes[2].imshow(piv.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        axes[2].set_yticks(range(len(piv.index)))
        axes[2].set_yticklabels(piv.index, fontsize=8)
        axes[2].set_xticks(range(len(piv.columns)))
        axes[2].set_xticklabels(piv.columns, rotation=30, ha="right", fontsize=7)
        for i in range(piv.shape[0]):
            for j in range(piv.shape[1]):
                v = piv.iat[i, j]
                if np.isfinite(v):
                    axes[2].text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                                 color="white" if v < 0.6 else "black")
        axes[2].set_title("plasmid family presence MCC (normal cohorts, hold-out)", fontsize=9)
        fig.colorbar(im, ax=axes[2], fraction=0.04)
    fig.tight_layout()
    return fig
