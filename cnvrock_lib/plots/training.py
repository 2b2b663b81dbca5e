"""Stage 01 figures: loss curves with the warm-up schedules, the latent PCA
coloured by ST and species, and observed vs reconstructed depth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def loss_curves(log: pd.DataFrame, best_epoch: int | None = None) -> Figure:
    """Per-epoch losses from ``training_log.tsv``: total (train, validation), each term, and the schedules.

    Losses are per sample (recon: squared error summed over usable bins of
    normalised log depth; kl: nats; aux: as defined by ``aux_loss``).
    """
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex=True)
    ep = log["epoch"]
    ax = axes[0, 0]
    ax.plot(ep, log["train_loss"], label="train")
    if log["val_loss"].notna().any():
        ax.plot(ep, log["val_loss"], label="validation (z = mu)")
    ax.set_title("total loss")
    for ax, col, title in ((axes[0, 1], "recon", "reconstruction (train)"), (axes[0, 2], "kl", "KL (train, nats)"),
                           (axes[1, 0], "aux", "auxiliary loss (train)")):
        ax.plot(ep, log[col], color="C2")
        ax.set_title(title)
    axes[0, 1].set_yscale("log")
    ax = axes[1, 1]
    ax.plot(ep, log["beta"], label="β (KL weight)")
    ax.plot(ep, log["aux_weight"], label="aux weight", linestyle="--")
    ax.set_title("loss weights (warm-up schedules)")
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    ax.bar(ep, log["seconds"], color="0.6")
    ax.set_title("seconds per epoch")
    if best_epoch:
        for ax in axes.flat:
            ax.axvline(best_epoch, color="red", linewidth=0.8, alpha=0.6)
        axes[0, 0].plot([], [], color="red", linewidth=0.8, label=f"best epoch ({best_epoch})")
    axes[0, 0].legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def _categories(values: pd.Series, max_categories: int) -> pd.Series:
    """Keep the largest categories; the rest become ``other`` (``unknown`` is kept as such)."""
    counts = values[values != "unknown"].value_counts()
    keep = set(counts.index[:max_categories])
    return values.where(values.isin(keep) | (values == "unknown"), "other")


def latent_pca(table: pd.DataFrame, explained: np.ndarray, max_categories: int = 10) -> Figure:
    """PC1 vs PC2 of the latent means, coloured by ST (left) and species (right).

    ``table`` comes from :func:`cnvrock_lib.training.report.latent_pca_table`; hold-out
    samples (never trained on) are drawn as open circles.
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    holdout = (table["split"] == "holdout").to_numpy() if "split" in table else np.zeros(len(table), bool)
    for ax, col in zip(axes, ("ST", "Species")):
        cats = _categories(table[col].astype(str), max_categories)
        order = [c for c in cats.value_counts().index if c not in ("other", "unknown")] + \
                [c for c in ("other", "unknown") if (cats == c).any()]
        for i, cat in enumerate(order):
            colour = "0.75" if cat in ("other", "unknown") else plt.get_cmap("tab10")(i % 10)
            sel = (cats == cat).to_numpy()
            ax.scatter(table.loc[sel & ~holdout, "PC1"], table.loc[sel & ~holdout, "PC2"], s=10, color=colour,
                       label=f"{cat} ({sel.sum()})", alpha=0.8, linewidths=0)
            ax.scatter(table.loc[sel & holdout, "PC1"], table.loc[sel & holdout, "PC2"], s=14, facecolors="none",
                       edgecolors=[colour], linewidths=0.7)
        ax.set_xlabel(f"PC1 ({explained[0]:.0%} of latent variance)")
        ax.set_ylabel(f"PC2 ({explained[1]:.0%})" if len(explained) > 1 else "PC2")
        ax.set_title(f"latent means coloured by {col} (open: hold-out)")
        ax.legend(fontsize=7, markerscale=1.5, loc="best", frameon=False)
    fig.tight_layout()
    return fig


def reconstruction_examples(examples: dict) -> Figure:
    """Observed reads per bin (dots) and the VAE's expected depth (line) along the chromosome.

    ``examples`` comes from :func:`cnvrock_lib.training.report.example_tracks`: ``position_mb``,
    ``observed`` and ``expected`` (samples x bins, reads), ``sample_ids`` and ``labels``.
    """
    obs, exp = examples["observed"], examples["expected"]
    n = len(examples["sample_ids"])
    fig, axes = plt.subplots(n, 1, figsize=(13, 2.3 * n + 0.4), sharex=True, squeeze=False)
    pos = examples["position_mb"]
    for i, ax in enumerate(axes[:, 0]):
        ax.scatter(pos, obs[i], s=1.5, color="0.45", label="observed", rasterized=True)
        ax.plot(pos, exp[i], color="C3", linewidth=0.9, label="expected (VAE)")
        top = np.nanpercentile(obs[i], 99.5) * 1.6 if np.isfinite(obs[i]).any() else 1.0
        ax.set_ylim(0, max(top, np.nanmax(exp[i]) * 1.1, 1.0))
        ax.set_ylabel("reads / bin")
        ax.set_title(f"{examples['sample_ids'][i]} — {examples['labels'][i]}", fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=8, markerscale=4, loc="upper right")
    axes[-1, 0].set_xlabel("chromosome position (Mb)")
    fig.tight_layout()
    return fig
