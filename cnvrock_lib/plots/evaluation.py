"""Stage 04 figures: metrics per gene, per-ST heatmap, confusion matrices,
threshold (MCC) curves, ROC curves and dosage by ground truth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, NullFormatter

LOG_FLOOR = 0.005  # copies; zero dosage is drawn here on log axes


def _empty(message: str, size=(6, 2.5)) -> Figure:
    fig, ax = plt.subplots(figsize=size)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10)
    ax.set_axis_off()
    return fig


def metrics_bars(overall: pd.DataFrame) -> Figure:
    """MCC, FNR and PPV per gene (bars; undefined values left empty)."""
    if overall.empty:
        return _empty("no gene evaluated")
    long = overall.melt(id_vars=["gene", "mode"], value_vars=["mcc", "fnr", "ppv"], var_name="metric")
    long["gene"] = long["gene"] + " (" + long["mode"] + ")"
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(overall) + 2), 3.6))
    sns.barplot(data=long, x="gene", y="value", hue="metric", ax=ax)
    ax.set_ylim(min(0, np.nanmin(long["value"].to_numpy(dtype=float), initial=0)), 1.05)
    ax.set_xlabel("")
    ax.set_ylabel("value")
    ax.set_title("MCC, FNR and PPV per gene (family) and scoring mode")
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def st_heatmap(by_st: pd.DataFrame, metric: str = "mcc", max_sts: int = 30) -> Figure:
    """Heatmap of ``metric`` per sequence type (rows, largest first) and gene (columns).

    Cells are annotated with the value and n_eval (samples); STs below
    ``eval_min_group_n`` are already absent from ``by_st``.
    """
    if by_st.empty:
        return _empty("no sequence type reaches eval_min_group_n evaluable samples")
    sts = list(dict.fromkeys(by_st["ST"]))[:max_sts]
    genes = list(dict.fromkeys(by_st["gene"]))
    sub = by_st[by_st["ST"].isin(sts)]
    values = sub.pivot(index="ST", columns="gene", values=metric).reindex(index=sts, columns=genes)
    n = sub.pivot(index="ST", columns="gene", values="n_eval").reindex(index=sts, columns=genes)
    annot = np.where(values.isna(), np.where(n.isna(), "", "N/A"),
                     values.map(lambda v: f"{v:.2f}" if pd.notna(v) else "") + "\n"
                     + n.map(lambda v: f"n={int(v)}" if pd.notna(v) else ""))
    fig, ax = plt.subplots(figsize=(1.3 * len(genes) + 2.5, 0.45 * len(sts) + 1.8))
    sns.heatmap(values.astype(float), annot=annot, fmt="", cmap="RdYlGn", vmin=-1 if metric == "mcc" else 0,
                vmax=1, ax=ax, cbar_kws={"label": metric.upper()}, annot_kws={"fontsize": 7},
                linewidths=0.5, linecolor="white")
    ax.set_title(f"{metric.upper()} per sequence type (grey: not evaluated)")
    ax.set_facecolor("0.9")
    ax.set_xlabel("")
    ax.set_ylabel("ST")
    fig.tight_layout()
    return fig


def confusion_matrices(overall: pd.DataFrame) -> Figure:
    """One 2×2 confusion matrix per gene (rows GT, columns prediction; samples)."""
    if overall.empty:
        return _empty("no gene evaluated")
    k = len(overall)
    cols = min(k, 4)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.6 * rows), squeeze=False)
    for ax, (_, r) in zip(axes.ravel(), overall.iterrows()):
        cm = np.array([[r["tn"], r["fp"]], [r["fn"], r["tp"]]], dtype=int)
        share = cm / cm.sum(axis=1, keepdims=True).clip(min=1)
        sns.heatmap(share, annot=cm, fmt="d", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                    xticklabels=["neg", "pos"], yticklabels=["neg", "pos"], annot_kws={"fontsize": 9})
        ax.set_title(f"{r['gene']} ({r['mode']})", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
    for ax in axes.ravel()[k:]:
        ax.set_axis_off()
    fig.suptitle("Confusion matrices (counts; colour = share of the GT row)", fontsize=10)
    fig.tight_layout()
    return fig


def threshold_curves(sweep: pd.DataFrame, overall: pd.DataFrame | None = None) -> Figure:
    """MCC against the CRR/PCN threshold per family.

    Marks the best threshold (red), the threshold the caller used (grey line)
    and the MCC of the calls themselves (dashed).
    """
    if sweep.empty:
        return _empty("no threshold sweep (no gene has both classes in the ground truth)")
    families = list(dict.fromkeys(sweep["family"]))
    cols = min(len(families), 3)
    rows = int(np.ceil(len(families) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.9 * rows), squeeze=False)
    called = overall.set_index("gene")["mcc"] if overall is not None and not overall.empty else pd.Series(dtype=float)
    for ax, fam in zip(axes.ravel(), families):
        s = sweep[sweep["family"] == fam].sort_values("threshold")
        x = s["threshold"].to_numpy(dtype=float)
        # PCN spans decades (ColE-like plasmids at 10-40 copies): log axis, zero drawn at the floor
        log_axis = x.min() >= 0 and (x > 0).any() and x.max() / max(x[x > 0].min(), LOG_FLOOR) > 50
        shown = (lambda v: np.maximum(v, LOG_FLOOR)) if log_axis else (lambda v: v)
        ax.plot(shown(x), s["mcc"], lw=1.3, color="tab:blue")
        best = s.loc[s["mcc"].idxmax()]
        ax.axvline(shown(best["threshold"]), color="tab:red", lw=0.8, ls=":")
        ax.plot([shown(best["threshold"])], [best["mcc"]], "o", color="tab:red", ms=4,
                label=f"best {best['mcc']:.2f} at {best['threshold']:.2f}")
        used = s["used_threshold"].iloc[0] if "used_threshold" in s.columns else np.nan
        if pd.notna(used):
            ax.axvline(shown(used), color="0.3", lw=0.8, label=f"threshold used {used:.2f}")
        if fam in called.index and pd.notna(called[fam]):
            ax.axhline(called[fam], color="0.4", lw=0.8, ls="--", label=f"calls {called[fam]:.2f}")
        if log_axis:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_title(f"{fam} ({s['mode'].iloc[0]}, AUC {s['auc'].iloc[0]:.3f})", fontsize=9)
        ax.set_xlabel(f"{s['value_name'].iloc[0]} threshold (copies; positive if {s['direction'].iloc[0]})")
        ax.set_ylabel("MCC")
        ax.set_ylim(-0.1, 1.05)
        ax.legend(fontsize=7, loc="lower left")
    for ax in axes.ravel()[len(families):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def roc_curves(sweep: pd.DataFrame, overall: pd.DataFrame | None = None) -> Figure:
    """ROC curve of the continuous value per family, with the fixed-rule calls as a point."""
    if sweep.empty:
        return _empty("no threshold sweep (no gene has both classes in the ground truth)")
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    rows = overall.set_index("gene") if overall is not None and not overall.empty else None
    for i, (fam, s) in enumerate(sweep.groupby("family", sort=False)):
        color = f"C{i % 10}"
        s = s.sort_values(["fpr", "tpr"])
        ax.plot(np.r_[0, s["fpr"], 1], np.r_[0, s["tpr"], 1], color=color, lw=1.2,
                label=f"{fam} AUC {s['auc'].iloc[0]:.3f}")
        if rows is not None and fam in rows.index:
            r = rows.loc[fam]
            if r["tn"] + r["fp"] > 0 and r["tp"] + r["fn"] > 0:
                ax.plot(r["fp"] / (r["fp"] + r["tn"]), r["tp"] / (r["tp"] + r["fn"]), "o", color=color, ms=5)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC of CRR/PCN per family (dots: the calls)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def value_by_truth(table: pd.DataFrame) -> Figure:
    """CRR/PCN per sample by ground-truth label (strip plot, log scale; zero at 0.005), one panel per gene."""
    data = table[(table["gt"] >= 0) & np.isfinite(table["value"])].copy()
    if data.empty:
        return _empty("no finite CRR/PCN with ground truth")
    genes = list(dict.fromkeys(data["gene"]))
    data["truth"] = np.where(data["gt"] == 1, "GT positive", "GT negative")
    data["shown"] = data["value"].clip(lower=LOG_FLOOR)
    fig, axes = plt.subplots(1, len(genes), figsize=(2.4 * len(genes) + 1, 3.4), squeeze=False, sharey=False)
    for ax, gene in zip(axes.ravel(), genes):
        g = data[data["gene"] == gene]
        sns.stripplot(data=g, x="truth", y="shown", hue="outcome", order=["GT negative", "GT positive"],
                      hue_order=["TN", "FP", "FN", "TP"], palette={"TN": "0.6", "FP": "tab:orange",
                                                                     "FN": "tab:red", "TP": "tab:blue"},
                      size=3.5, jitter=0.3, ax=ax, legend=gene == genes[-1])
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        narrow = g["shown"].max() / g["shown"].min() < 30  # few decades: label the minor ticks too
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g") if narrow else NullFormatter())
        ax.set_title(f"{gene} ({g['mode'].iloc[0]})", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel(f"{g['value_name'].iloc[0]} (copies)")
        ax.tick_params(axis="x", labelsize=7)
    if axes.ravel()[-1].get_legend() is not None:
        sns.move_legend(axes.ravel()[-1], "upper left", bbox_to_anchor=(1, 1), fontsize=7, title="outcome")
    fig.tight_layout()
    return fig
