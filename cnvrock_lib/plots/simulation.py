"""Figures of a simulated cohort: depth tracks of example samples showing each
realism feature, and cohort-level distributions. Each function returns a
matplotlib Figure; :func:`render_doc_figures` writes the ones in docs/simulation.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import simulate as S
from ..atomic import atomic_path
from ..reference import load_gene_panel
from ..store import open_store

TYPE_COLOURS = {"PCR": "tab:red", "Nextera": "tab:blue", "PCR-free": "tab:green"}


@dataclass
class CohortData:
    """A simulated cohort loaded for plotting (counts in reads per bin)."""

    chrom: np.ndarray
    plasmid: np.ndarray
    chrom_bins: np.ndarray
    plasmid_bins: np.ndarray
    samples: pd.DataFrame
    segments: pd.DataFrame
    features: pd.DataFrame
    truth: pd.DataFrame
    medians: np.ndarray
    world_seed: int = S.WORLD_SEED

    def index(self, sample_id: str) -> int:
        return int(np.flatnonzero(self.samples["sample_id"].to_numpy() == sample_id)[0])


def load_cohort(data_dir) -> CohortData:
    """Read a cohort written by :func:`cnvrock_lib.simulate.simulate_cohort`."""
    data_dir = Path(data_dir)
    chrom = open_store(data_dir / S.FILES["chrom_store"], check_values=False)
    plas = open_store(data_dir / S.FILES["plasmid_store"], check_values=False)
    read = lambda key: pd.read_csv(data_dir / S.FILES[key], sep="\t", keep_default_na=False)  # noqa: E731
    samples = read("samples")
    for col in ("low_quality", "mixed", "shv_amplified", "holdout", "private_deletion", "other_amplification"):
        if col in samples:
            samples[col] = samples[col].astype(str).eq("True")
    features = read("bin_features")
    for col in ("island", "hot"):
        features[col] = features[col].astype(str).eq("True")
    counts = np.asarray(chrom.counts, dtype=np.float64)
    return CohortData(counts, np.asarray(plas.counts, dtype=np.float64), chrom.bins, plas.bins, samples,
                      read("segments"), features, read("gene_truth"),
                      np.maximum(np.median(counts, axis=1), 1.0), S.cohort_world_seed(data_dir))


def _mb(bins: np.ndarray) -> np.ndarray:
    return (bins["start"] + bins["end"]) / 2e6


def _shade_segments(ax, seg: pd.DataFrame, lo_mb=None, hi_mb=None) -> None:
    colours = {"lineage_deletion": "tab:orange", "private_deletion": "tab:purple",
               "shv_amplification": "tab:red", "amplification": "tab:brown", "minority_deletion": "khaki"}
    seen = set()
    for r in seg.itertuples():
        label = r.kind.replace("_", " ") if r.kind not in seen else None
        seen.add(r.kind)
        ax.axvspan(r.start / 1e6, r.end / 1e6, color=colours.get(r.kind, "0.8"), alpha=0.25, lw=0, label=label)


def depth_track(data: CohortData, sample_id: str, region: tuple[int, int] | None = None, ax=None,
                show_truth: bool = True, title: str | None = None):
    """Chromosome depth of one sample (count / sample median) with unmappable bins and true segments.

    ``region`` (bp) zooms in; unmappable bins (mappability < 0.1) are drawn in red.
    """
    i = data.index(sample_id)
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(11, 3))
    x = _mb(data.chrom_bins)
    y = data.chrom[i] / data.medians[i]
    sel = np.ones(len(x), dtype=bool)
    if region is not None:
        sel = (data.chrom_bins["end"] >= region[0]) & (data.chrom_bins["start"] <= region[1])
    unm = data.features["mappability"].to_numpy() < 0.1
    ms = 1.5 if region is None else 4
    ax.plot(x[sel & ~unm], y[sel & ~unm], ".", ms=ms, color="0.35", label="bins")
    ax.plot(x[sel & unm], y[sel & unm], "x", ms=ms + 2, color="tab:red", label="unmappable at MQ 20")
    if show_truth:
        seg = data.segments[data.segments["sample_id"] == sample_id]
        if region is not None:
            seg = seg[(seg["end"] >= region[0]) & (seg["start"] <= region[1])]
        _shade_segments(ax, seg)
    row = data.samples.iloc[i]
    ax.set_ylabel("count / median")
    ax.set_xlabel("NC_016845.1 position (Mb)")
    top = np.nanpercentile(y[sel], 99.5) * 1.2 if region is None else max(1.5, np.nanmax(y[sel]) * 1.1)
    ax.set_ylim(0, top)
    ax.set_title(title or f"{sample_id}  {row['species'].replace('Klebsiella', 'K.')} {row['ST'] or '(no ST)'}  "
                 f"{row['depth']:.0f}x  ori/ter {row['ori_ter_ratio']:.2f}  {row['gc_batch_type']}", fontsize=9)
    ax.legend(loc="upper right", fontsize=7, ncol=3, markerscale=2)
    if own:
        fig.tight_layout()
        return fig
    return ax.figure


def ori_ter_figure(data: CohortData, sample_ids: list[str]) -> Figure:
    """log2 depth against distance from oriC with the fitted line, for samples of different ratios."""
    fig, axes = plt.subplots(1, len(sample_ids), figsize=(4.2 * len(sample_ids), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    dist = data.features["replichore_distance"].to_numpy()
    good = data.features["mappability"].to_numpy() > 0.99
    for ax, sid in zip(axes, sample_ids):
        i = data.index(sid)
        y = np.log2(data.chrom[i] + 0.5) - np.log2(data.medians[i])
        use = good & (data.chrom[i] > 0.3 * data.medians[i])
        est = S.ori_ter_fit(data.chrom[i:i + 1], dist, use[None, :])[0]
        ax.plot(dist[use], y[use], ".", ms=1.5, alpha=0.4, color="0.4")
        slope = -np.log2(est)
        xm, ym = dist[use].mean(), y[use].mean()
        ax.plot([0, 1], [ym + slope * (0 - xm), ym + slope * (1 - xm)], color="tab:red", lw=2,
                label=f"fit: ori/ter {est:.2f}")
        ax.set_title(f"{sid}: true ori/ter {data.samples.iloc[i]['ori_ter_ratio']:.2f}", fontsize=9)
        ax.set_xlabel("distance from oriC (0) to terminus (1)")
        ax.set_ylim(-1.6, 1.2)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("log2(count / median)")
    fig.suptitle("Replication gradient: log2 depth falls linearly from oriC to the terminus", fontsize=10)
    fig.tight_layout()
    return fig


def gc_bias_figure(data: CohortData, per_type: int = 3) -> Figure:
    """Mean depth by GC (1 % bins) for a few samples of each library type (GC-bias curves)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    gc = data.features["gc"].to_numpy()
    good = data.features["mappability"].to_numpy() > 0.99
    edges = np.arange(0.42, 0.68, 0.01)
    centre = (edges[:-1] + edges[1:]) / 2
    which = np.digitize(gc, edges) - 1
    smp = data.samples
    normal = ~smp["low_quality"] & ~smp["mixed"]
    for kind, colour in TYPE_COLOURS.items():
        ids = smp.loc[normal & (smp["gc_batch_type"] == kind), "sample_id"].head(per_type)
        for k, sid in enumerate(ids):
            i = data.index(sid)
            y = data.chrom[i] / data.medians[i]
            use = good & (y > 0.3)
            means = np.array([np.median(y[use & (which == b)]) if (use & (which == b)).sum() >= 15 else np.nan
                              for b in range(len(centre))])
            ax.plot(centre * 100, means, "-o", ms=2.5, color=colour, alpha=0.8, label=kind if k == 0 else None)
    ax2 = ax.twinx()
    ax2.hist(gc * 100, bins=edges * 100, color="0.85", zorder=0)
    ax2.set_ylabel("bins", color="0.5")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlabel("bin GC (%)")
    ax.set_ylabel("median count / sample median")
    ax.set_title("GC bias per library type (lines: samples; grey: bins per GC)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def region_figure(data: CohortData, sample_ids: list[str], region: tuple[int, int], title: str,
                  labels: list[str] | None = None) -> Figure:
    """Zoomed depth tracks of several samples over ``region`` (bp), one panel each."""
    fig, axes = plt.subplots(len(sample_ids), 1, figsize=(9, 1.9 * len(sample_ids) + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    for k, (ax, sid) in enumerate(zip(axes, sample_ids)):
        depth_track(data, sid, region=region, ax=ax, title=(labels[k] if labels else None))
        if k < len(sample_ids) - 1:
            ax.set_xlabel("")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plasmid_pcn_figure(data: CohortData) -> Figure:
    """Per panel gene: PCN measured from the plasmid store in carriers and in non-carriers (log scale)."""
    panel = load_gene_panel(None, "plasmid").genes
    world = S.build_world()
    normal = (~data.samples["low_quality"] & ~data.samples["mixed"]).to_numpy()
    family = data.truth[data.truth["level"] == "family"].pivot(index="sample_id", columns="gene",
                                                               values="true_cn").reindex(data.samples["sample_id"])
    member = data.truth[data.truth["level"] == "member"].pivot(index="sample_id", columns="gene",
                                                               values="true_cn").reindex(data.samples["sample_id"])
    fig, ax = plt.subplots(figsize=(11, 4.2))
    rng = np.random.default_rng(0)
    for k, r in enumerate(panel.itertuples()):
        pcn = S.region_pcn(data.plasmid, data.plasmid_bins, r.contig, int(r.start), int(r.end), data.medians)
        car = normal & (member[r.gene].to_numpy() > 0)
        non = normal & (family[world.gene_family[r.gene]].to_numpy() == 0)
        for sel, dx, colour in ((non, -0.18, "tab:blue"), (car, 0.18, "tab:red")):
            v = np.clip(pcn[sel], 1e-3, None)
            ax.plot(k + dx + rng.uniform(-0.12, 0.12, len(v)), v, ".", ms=2, alpha=0.35, color=colour)
        if np.isfinite(r.absent_threshold):
            ax.plot([k - 0.4, k + 0.4], [r.absent_threshold] * 2, color="k", lw=1.2)
    ax.plot([], [], ".", color="tab:blue", label="family non-carriers")
    ax.plot([], [], ".", color="tab:red", label="member carriers")
    ax.plot([], [], "-", color="k", label="original absent threshold")
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 100)
    ax.set_xticks(range(len(panel)))
    ax.set_xticklabels(panel["gene"], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("PCN (gene depth per bp / chromosome median)")
    ax.set_title("Plasmid gene PCN measured from the plasmid store (mobile elements give non-carriers a "
                 "background; near-identical members split reads)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def cohort_overview(data: CohortData) -> Figure:
    """Depth, ori/ter ratio, ST sizes and species of the cohort."""
    smp = data.samples
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    axes[0].hist(smp["depth"], bins=40, color="0.5")
    axes[0].set_xlabel("coverage (x)")
    axes[0].set_title("depth", fontsize=9)
    axes[1].hist(smp["ori_ter_ratio"], bins=40, color="0.5")
    axes[1].set_xlabel("ori/ter ratio")
    axes[1].set_title("replication gradient", fontsize=9)
    st = smp["ST"].replace("", "(none)").value_counts()
    top = st.head(15)
    axes[2].barh(range(len(top))[::-1], top.to_numpy(), color="0.5")
    axes[2].set_yticks(range(len(top))[::-1])
    axes[2].set_yticklabels(top.index, fontsize=7)
    axes[2].set_xlabel("samples")
    axes[2].set_title(f"15 largest of {len(st)} STs", fontsize=9)
    sp = smp["species"].value_counts()
    axes[3].bar([s.replace("Klebsiella ", "K. ") for s in sp.index], sp.to_numpy(), color="0.5")
    axes[3].tick_params(axis="x", labelsize=7, rotation=15)
    axes[3].set_title("species", fontsize=9)
    fig.tight_layout()
    return fig


def pick_examples(data: CohortData) -> dict[str, str]:
    """Sample ids that show each feature best (deterministic for a cohort)."""
    smp = data.samples
    normal = ~smp["low_quality"] & ~smp["mixed"]
    out = {}
    ratio = smp["ori_ter_ratio"]
    out["low_ori_ter"] = smp.loc[normal, "sample_id"].iloc[int(np.argmin(ratio[normal]))]
    out["high_ori_ter"] = smp.loc[normal, "sample_id"].iloc[int(np.argmax(ratio[normal]))]
    amp = smp[normal & smp["shv_amplified"] & (smp["plasmid_shv_pcn"] == 0)].sort_values("shv_cn")
    if len(amp):
        out["shv_amp_high"] = amp["sample_id"].iloc[-1]
        out["shv_amp_low"] = amp["sample_id"].iloc[len(amp) // 3]
        nonint = amp[(amp["shv_cn"] % 1) > 0.05]
        if len(nonint):
            out["shv_amp_nonint"] = nonint["sample_id"].iloc[len(nonint) // 2]
    pshv = smp[normal & (smp["plasmid_shv_pcn"] > 1.5) & ~smp["shv_amplified"] &
               (smp["species"] == S.SPECIES[0])]
    if len(pshv):
        out["plasmid_shv"] = pshv["sample_id"].iloc[0]
    lq = smp[smp["low_quality"]]
    for reason in ("low_depth", "contaminated"):
        hit = lq[lq["low_quality_reason"] == reason]
        if len(hit):
            out[reason] = hit["sample_id"].iloc[0]
    typical = smp[normal & (smp["gc_batch_type"] == "PCR-free") & (smp["ST"] == "ST258")]
    out["normal"] = (typical if len(typical) else smp[normal])["sample_id"].iloc[0]
    deep = smp[normal & (smp["gc_batch_type"] == "PCR") & (smp["gc_kappa"] > smp["gc_kappa"].quantile(0.8))]
    if len(deep):
        out["strong_gc"] = deep["sample_id"].iloc[0]
    return out


def render_doc_figures(data_dir, out_dir, dpi: int = 90) -> list[Path]:
    """Write the docs/simulation.md figures (``sim_*.png``) for the cohort in ``data_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_cohort(data_dir)
    ex = pick_examples(data)
    smp = data.samples
    world = S.build_world(data.world_seed)
    shv = world.shv
    figs: dict[str, Figure] = {}
    figs["sim_overview"] = cohort_overview(data)
    genome = [ex["normal"], ex.get("strong_gc", ex["normal"]), ex.get("low_depth", ex["normal"]),
              ex.get("contaminated", ex["normal"])]
    fig, axes = plt.subplots(len(genome), 1, figsize=(11, 2.4 * len(genome)), sharex=True)
    for ax, sid in zip(axes, genome):
        depth_track(data, sid, ax=ax)
        reason = smp.iloc[data.index(sid)]["low_quality_reason"]
        if reason:
            ax.set_title(ax.get_title() + f"  LOW QUALITY: {reason}", fontsize=9, color="tab:red")
    fig.tight_layout()
    figs["sim_genome_tracks"] = fig
    figs["sim_ori_ter"] = ori_ter_figure(data, [ex["low_ori_ter"], ex["high_ori_ter"]])
    figs["sim_gc_bias"] = gc_bias_figure(data)
    rrna = world.repeats[world.repeats["kind"] == "rRNA"].iloc[0]
    mid = (rrna.start + rrna.end) // 2
    some = list(smp.loc[~smp["low_quality"], "sample_id"].head(3))
    figs["sim_mappability"] = region_figure(
        data, some, (mid - 40000, mid + 40000),
        f"An rRNA operon ({(rrna.end - rrna.start + 1) / 1000:.1f} kb): unmappable at MQ 20 in every sample")
    # a lineage deletion: one non-CG258 sample and one ST258 sample over the same region
    seg = data.segments
    lin = seg[(seg["kind"] == "lineage_deletion") & seg["sample_id"].isin(smp.loc[~smp["mixed"], "sample_id"])]
    big = lin.assign(bp=lin["end"] - lin["start"]).sort_values("bp").iloc[len(lin) * 3 // 4]
    carrier_lineage = smp.iloc[data.index(big.sample_id)]["lineage"]
    other = smp[(smp["lineage"] != carrier_lineage) & ~smp["low_quality"] & ~smp["mixed"]]
    other = other[~other["sample_id"].isin(seg[(seg["start"] <= big.end) & (seg["end"] >= big.start)]["sample_id"])]
    same = smp[(smp["lineage"] == carrier_lineage) & ~smp["low_quality"] & ~smp["mixed"] &
               (smp["sample_id"] != big.sample_id)]
    ids = [big.sample_id] + list(same["sample_id"].head(1)) + list(other["sample_id"].head(1))
    pad = 60000
    figs["sim_lineage_deletion"] = region_figure(
        data, ids, (big.start - pad, big.end + pad),
        f"A {(big.end - big.start + 1) / 1000:.0f} kb deletion shared by lineage {carrier_lineage} "
        f"(top two); another lineage keeps the region (bottom)")
    amp_ids = [ex[k] for k in ("shv_amp_high", "shv_amp_nonint", "shv_amp_low", "plasmid_shv") if k in ex]
    labels = []
    for sid in amp_ids:
        r = smp.iloc[data.index(sid)]
        if r["shv_amplified"]:
            labels.append(f"{sid}: blaSHV amplified, true CN {r['shv_cn']:.2f}")
        else:
            labels.append(f"{sid}: plasmid-borne blaSHV (PCN {r['plasmid_shv_pcn']:.1f}) lifts only the gene bins")
    figs["sim_shv_amplification"] = region_figure(
        data, amp_ids, (shv["start"] - 60000, shv["end"] + 60000),
        f"blaSHV ({shv['start'] / 1e6:.3f} Mb): tandem amplicons of 3-30 kb and a plasmid-borne copy", labels)
    figs["sim_plasmid_pcn"] = plasmid_pcn_figure(data)
    return _save(figs, out_dir, dpi)


def _save(figs: dict, out_dir: Path, dpi: int) -> list[Path]:
    written = []
    for name, fig in figs.items():
        path = out_dir / f"{name}.png"
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
        plt.close(fig)
        written.append(path)
    return written


WORLD_FIGURE_GENES = ("blaKPC-2", "blaCTX-M-15", "blaOXA-48")


def worlds_pcn_figure(data_dirs: dict, genes=WORLD_FIGURE_GENES, threshold: float = 0.20) -> Figure:
    """Per gene, carrier and non-carrier PCN (log scale) in the cohorts of several worlds.

    ``data_dirs`` maps a world label to a cohort folder. Blue: family non-carriers; red: member
    carriers (normal samples only); black line: a fixed ``threshold`` (copies per chromosome).
    """
    pcn = {label: S.gene_pcn(d) for label, d in data_dirs.items()}
    fig, axes = plt.subplots(len(genes), 1, figsize=(11, 2.7 * len(genes)), sharex=True)
    rng = np.random.default_rng(0)
    for ax, gene in zip(np.atleast_1d(axes), genes):
        for k, (label, frame) in enumerate(pcn.items()):
            d = frame[(frame["gene"] == gene) & frame["normal"]]
            for sel, dx, colour in ((d["noncarrier"], -0.18, "tab:blue"), (d["carrier"], 0.18, "tab:red")):
                v = np.clip(d.loc[sel, "pcn"].to_numpy(), 1e-3, None)
                ax.plot(k + dx + rng.uniform(-0.12, 0.12, len(v)), v, ".", ms=2, alpha=0.35, color=colour)
            non = d.loc[d["noncarrier"], "pcn"]
            ax.text(k, 40, f"{(non > threshold).mean():.0%} of non-carriers\nabove {threshold:g}", ha="center",
                    va="top", fontsize=7)
        ax.axhline(threshold, color="k", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 100)
        ax.set_ylabel(f"{gene} PCN")
    axes = np.atleast_1d(axes)
    axes[-1].set_xticks(range(len(pcn)))
    axes[-1].set_xticklabels(list(pcn), fontsize=8)
    handles = [axes[0].plot([], [], ".", color="tab:blue", label="family non-carriers")[0],
               axes[0].plot([], [], ".", color="tab:red", label="member carriers")[0],
               axes[0].plot([], [], "-", color="k", label=f"fixed threshold {threshold:g}")[0]]
    fig.suptitle("PCN measured from the plasmid store, one column per world: the non-carrier background "
                 "and the carrier copy numbers move between worlds", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.legend(handles=handles, fontsize=8, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 0.975), frameon=False)
    return fig


def render_worlds_figure(data_dirs: dict, out_dir, dpi: int = 90) -> list[Path]:
    """Write ``sim_worlds_pcn.png`` (:func:`worlds_pcn_figure`) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save({"sim_worlds_pcn": worlds_pcn_figure(data_dirs)}, out_dir, dpi)
