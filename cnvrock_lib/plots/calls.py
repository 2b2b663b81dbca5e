"""Stage 03 figures: dosage (CRR, PCN) distributions coloured by call, dosage by
sequence type, depth tracks of the top amplified samples, call counts and the
cohort-learned PCN thresholds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

LOG_FLOOR = 0.01  # copies; zero dosage is drawn here on log axes
LABEL_COLOURS = {"uncallable": "#9e9e9e", "absent": "#4c72b0", "normal": "#55a868", "present": "#55a868",
                 "amplified": "#c44e52"}
LABEL_ORDER = ("uncallable", "absent", "normal", "present", "amplified")


def _empty(message: str, size=(6, 2.5)) -> Figure:
    fig, ax = plt.subplots(figsize=size)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10)
    ax.set_axis_off()
    return fig


def _grid(n: int, ncols: int, size=(3.6, 2.6)) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes.ravel()


def _sqrt_counts(ax) -> None:
    """Square-root count axis: small groups stay visible next to large ones (cheaper ticks than symlog)."""
    ax.set_yscale("function", functions=(lambda y: np.sqrt(np.maximum(y, 0)), np.square))
    ax.set_ylabel("samples (square-root scale)")


def _stacked_hist(ax, frame: pd.DataFrame, value: str, bins: np.ndarray) -> None:
    data, colours, labels = [], [], []
    for label in LABEL_ORDER:
        vals = frame.loc[frame.label == label, value].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            data.append(vals)
            colours.append(LABEL_COLOURS[label])
            labels.append(f"{label} ({vals.size})")
    if data:
        ax.hist(data, bins=bins, stacked=True, histtype="stepfilled", color=colours, label=labels)
        ax.legend(fontsize=7, frameon=False)


def crr_distribution(gene_calls: pd.DataFrame, amp_threshold: float = 1.75, ncols: int = 3) -> Figure:
    """Histogram of CRR (copies) per chromosomal gene, stacked by call label.

    Uncallable rows with a CRR (failed QC, excluded species) are drawn in grey;
    the dashed line is ``amp_threshold``.
    """
    frame = gene_calls[np.isfinite(gene_calls.crr.to_numpy(dtype=float))]
    if frame.empty:
        return _empty("no chromosomal gene has a CRR")
    genes = list(dict.fromkeys(frame.gene))
    fig, axes = _grid(len(genes), ncols, size=(4.5, 3.0))
    top = max(3.5, float(np.nanquantile(frame.crr, 0.999)) * 1.05)
    bins = np.linspace(0, top, 80)
    for ax, gene in zip(axes, genes):
        _stacked_hist(ax, frame[frame.gene == gene].assign(crr=lambda d: d.crr.clip(upper=top)), "crr", bins)
        ax.axvline(amp_threshold, ls="--", lw=1, color="k")
        _sqrt_counts(ax)
        ax.set_xlabel("CRR (copies; gene ÷ local flank)")
        ax.set_title(gene)
    fig.tight_layout()
    return fig


def pcn_distribution(plasmid_calls: pd.DataFrame, level: str = "family", amp_threshold: float = 1.5,
                     ncols: int = 4) -> Figure:
    """Histogram of log PCN (copies per chromosome) per plasmid gene at ``level``, stacked by call.

    Zero PCN is drawn at ``LOG_FLOOR``. Dashed: the absent threshold used; dotted: ``amp_threshold``.
    """
    frame = plasmid_calls[(plasmid_calls.level == level) & np.isfinite(plasmid_calls.pcn.to_numpy(dtype=float))]
    if frame.empty:
        return _empty(f"no plasmid PCN at {level} level (no plasmid store?)")
    genes = list(dict.fromkeys(frame.gene))
    fig, axes = _grid(len(genes), ncols, size=(3.6, 2.7))
    hi = max(50.0, float(frame.pcn.max()) * 1.2)
    bins = np.logspace(np.log10(LOG_FLOOR), np.log10(hi), 60)
    for ax, gene in zip(axes, genes):
        sub = frame[frame.gene == gene].assign(pcn=lambda d: d.pcn.clip(lower=LOG_FLOOR))
        _stacked_hist(ax, sub, "pcn", bins)
        thr = sub.absent_threshold.dropna()
        if len(thr):
            ax.axvline(float(thr.iloc[0]), ls="--", lw=1, color="k")
        ax.axvline(amp_threshold, ls=":", lw=1, color="k")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        _sqrt_counts(ax)
        ax.set_xlabel("PCN (copies per chromosome)")
        method = sub.threshold_method.iloc[0] if "threshold_method" in sub else ""
        ax.set_title(f"{gene} ({method} threshold)", fontsize=9)
    fig.tight_layout()
    return fig


def dosage_by_st(calls: pd.DataFrame, value: str = "crr", genes: list[str] | None = None,
                 max_sts: int = 15, min_n: int = 5) -> Figure:
    """Dosage (``crr`` or ``pcn``, copies) per sequence type: one box per ST with the samples as points.

    ``calls`` carries an ``ST`` column (:func:`cnvrock_lib.calling.report.with_metadata`); STs are
    ordered by size, the largest ``max_sts`` with at least ``min_n`` samples shown.
    Points are coloured by call label; zero PCN is drawn at ``LOG_FLOOR``.
    """
    frame = calls[np.isfinite(calls[value].to_numpy(dtype=float)) & (calls.ST.astype(str) != "")]
    if genes is not None:
        frame = frame[frame.gene.isin(genes)]
    if frame.empty:
        return _empty("no dosage with a known ST")
    genes = list(dict.fromkeys(frame.gene))
    fig, axes = plt.subplots(len(genes), 1, figsize=(min(14, 0.6 * max_sts + 3), 2.8 * len(genes)),
                             squeeze=False)
    rng = np.random.default_rng(0)  # jitter only
    for ax, gene in zip(axes.ravel(), genes):
        sub = frame[frame.gene == gene]
        sizes = sub.ST.value_counts()
        sts = [st for st in sizes.index if sizes[st] >= min_n][:max_sts]
        if not sts:
            ax.text(0.5, 0.5, f"{gene}: no ST with >= {min_n} samples", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        sub = sub[sub.ST.isin(sts)]
        vals = sub[value].clip(lower=LOG_FLOOR) if value == "pcn" else sub[value]
        groups = [vals[sub.ST == st].to_numpy(dtype=float) for st in sts]
        ax.boxplot(groups, showfliers=False, widths=0.6)
        ax.set_xticks(np.arange(1, len(sts) + 1), [f"{st}\n(n={sizes[st]})" for st in sts], fontsize=7)
        pos = {st: i + 1 for i, st in enumerate(sts)}
        x = sub.ST.map(pos).to_numpy(dtype=float) + rng.uniform(-0.2, 0.2, len(sub))
        ax.scatter(x, vals, s=5, c=[LABEL_COLOURS.get(lbl, "k") for lbl in sub.label], alpha=0.6, lw=0)
        if value == "pcn":
            ax.set_yscale("log")
        ax.set_ylabel("PCN (copies per chromosome)" if value == "pcn" else "CRR (copies)")
        ax.set_title(f"{gene}: dosage by sequence type (points coloured by call)")
    fig.tight_layout()
    return fig


def depth_tracks(tracks: pd.DataFrame, calls: pd.DataFrame | None = None) -> Figure:
    """Copy ratio (points) and HMM state CN (line) around a gene, one panel per sample.

    ``tracks`` comes from :func:`cnvrock_lib.calling.report.depth_tracks`; the gene is shaded,
    bins of the gene filled. With ``calls`` (gene_calls rows) the CRR and interval
    are given in the panel title.
    """
    if tracks.empty:
        return _empty("no sample to show")
    samples = list(dict.fromkeys(tracks.sample_id))
    fig, axes = plt.subplots(len(samples), 1, figsize=(10, 2.1 * len(samples)), sharex=True, squeeze=False)
    for ax, sid in zip(axes.ravel(), samples):
        t = tracks[tracks.sample_id == sid]
        mid = (t.start + t.end) / 2 / 1e6
        ax.axvspan(t.gene_start.iloc[0] / 1e6, t.gene_end.iloc[0] / 1e6, color="#f2c14e", alpha=0.5, lw=0)
        ax.scatter(mid[~t.in_gene], t.copy_ratio[~t.in_gene], s=6, color="#4c72b0", label="copy ratio (flank)")
        ax.scatter(mid[t.in_gene], t.copy_ratio[t.in_gene], s=20, color="#c44e52", label="copy ratio (gene bins)")
        ax.step(mid, t.state_cn, where="mid", color="k", lw=1, label="HMM state CN")
        ax.set_ylabel("copies")
        top = np.nanmax(np.r_[t.copy_ratio.to_numpy(dtype=float), t.state_cn.to_numpy(dtype=float), 2.0])
        ax.set_ylim(-0.1, min(top * 1.1, 15))
        title = sid
        if calls is not None:
            row = calls[(calls.sample_id == sid) & (calls.gene == t.gene.iloc[0])]
            if len(row):
                r = row.iloc[0]
                title += f" — {r.gene} {r.label}, CRR {r.crr:.2f} [{r.crr_lo:.2f}, {r.crr_hi:.2f}]"
        ax.set_title(title, fontsize=9)
    axes.ravel()[0].legend(fontsize=7, frameon=False, loc="upper left")
    axes.ravel()[-1].set_xlabel(f"{tracks.chrom.iloc[0]} position (Mb)")
    fig.tight_layout()
    return fig


def call_count_bars(counts: pd.DataFrame) -> Figure:
    """Stacked bars of samples per call label for every chromosomal gene and plasmid family."""
    sub = counts[counts.level != "member"]
    if sub.empty:
        return _empty("no calls")
    names = [f"{g}\n({lvl})" for g, lvl in zip(sub.gene, sub.level)]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(sub) + 2), 3.4))
    bottom = np.zeros(len(sub))
    for label in LABEL_ORDER:
        vals = sub[label].to_numpy(dtype=float)
        if vals.sum() == 0:
            continue
        ax.bar(names, vals, bottom=bottom, color=LABEL_COLOURS[label], label=label)
        bottom += vals
    ax.set_ylabel("samples")
    ax.legend(fontsize=8, frameon=False, ncols=5, loc="upper center", bbox_to_anchor=(0.5, 1.15))
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig


def mixture_fits(plasmid_calls: pd.DataFrame, thresholds: pd.DataFrame, level: str = "family",
                 floor: float = 0.05, ncols: int = 4) -> Figure:
    """Per plasmid gene: histogram of log10 PCN (values ≥ ``floor`` that the mixture saw), the
    two lowest fitted components, the fixed threshold (dashed) and the mixture threshold (solid)."""
    thr = thresholds[thresholds.level == level]
    frame = plasmid_calls[(plasmid_calls.level == level) & (plasmid_calls.call >= 0)]
    if thr.empty or frame.empty:
        return _empty("no PCN thresholds (no plasmid store?)")
    fig, axes = _grid(len(thr), ncols, size=(3.6, 2.7))
    for ax, row in zip(axes, thr.itertuples()):
        x = np.log10(frame.loc[(frame.gene == row.gene) & (frame.pcn >= floor), "pcn"].to_numpy(dtype=float))
        if x.size == 0:
            ax.set_title(f"{row.gene}: no PCN >= {floor:g}", fontsize=9)
            continue
        ax.hist(x, bins=50, density=True, color="#bbbbbb")
        grid = np.linspace(x.min(), x.max(), 300)
        if np.isfinite(row.mean_low):
            for w, m, s, c in ((row.weight_low, row.mean_low, row.sd_low, "#4c72b0"),
                               (row.weight_high, row.mean_high, row.sd_high, "#c44e52")):
                ax.plot(grid, w * np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)), color=c, lw=1)
        ax.axvline(np.log10(row.fixed_threshold), ls="--", color="k", lw=1)
        if np.isfinite(row.mixture_threshold):
            ax.axvline(np.log10(row.mixture_threshold), ls="-", color="k", lw=1)
        used = "mixture" if row.method_used == "mixture" else "fixed"
        ax.set_title(f"{row.gene} (uses {used}; k={row.n_components})", fontsize=9)
        ax.set_xlabel("log10 PCN")
    fig.tight_layout()
    return fig
