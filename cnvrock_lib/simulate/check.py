"""The simulator's self-check: measure back, from a cohort's files, what docs/simulation.md claims."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import reference
from ..store import NpyStore
from ..errors import InputError
from ..reference import BIN_SIZE
from .config import CG258, SPECIES, WORLD_SEED
from .files import FILES
from .strengths import PCN_RANGE
from .world import GC_CURVES, build_world



def region_pcn(counts: np.ndarray, bins: np.ndarray, contig: str, start: int, end: int,
                chrom_median: np.ndarray) -> np.ndarray:
    """Copies per chromosome of a region: depth per bp of the bins overlapping it / chromosome median per bp."""
    sel = (bins["chrom"] == contig) & (bins["end"] >= start) & (bins["start"] <= end)
    length = float((bins["end"][sel] - bins["start"][sel] + 1).sum())
    return np.asarray(counts[:, sel], dtype=np.float64).sum(axis=1) / length / (chrom_median / BIN_SIZE)


def cohort_world_seed(data_dir) -> int:
    """The world seed recorded in a cohort's cohort.json (the reference world when absent)."""
    import json

    settings = json.loads((Path(data_dir) / FILES["cohort"]).read_text()).get("settings", {})
    return int(settings.get("world_seed", WORLD_SEED))


def _cohort_files(data_dir: Path):
    """The chromosome and plasmid stores of a cohort folder and a reader of its TSV files by FILES key."""
    from ..store import open_store

    chrom = open_store(data_dir / FILES["chrom_store"], check_values=False)
    plas = open_store(data_dir / FILES["plasmid_store"], check_values=False)
    return chrom, plas, lambda key: pd.read_csv(data_dir / FILES[key], sep="\t", keep_default_na=False)


def ori_ter_fit(counts: np.ndarray, distance: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Per-sample ori/ter ratio from a least-squares fit of log2 counts on replichore distance.

    ``usable`` (samples x bins, bool) selects the bins of each sample that enter the fit.
    """
    y = np.log2(np.asarray(counts, dtype=np.float64) + 0.5)
    w = usable.astype(np.float64)
    nw = w.sum(axis=1)
    xm = (w * distance).sum(axis=1) / nw
    ym = (w * y).sum(axis=1) / nw
    dx = distance[None, :] - xm[:, None]
    slope = (w * dx * (y - ym[:, None])).sum(axis=1) / (w * dx * dx).sum(axis=1)
    return np.exp2(-slope)


def gc_curve_fit(counts: np.ndarray, gc: np.ndarray, distance: np.ndarray,
                 usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample GC-bias curvature κ and peak GC from counts, the inverse of the simulator's curve.

    Least squares of log2 counts on (1, replichore distance, GC, GC²) over each sample's
    ``usable`` bins; the curve log2 factor = −κ·((GC − peak)/0.1)² gives
    κ = −b_GC² / 100 and peak = −b_GC / (2·b_GC²). Returns two float64 (n_samples,) arrays.
    """
    y = np.log2(np.asarray(counts, dtype=np.float64) + 0.5)
    design = np.stack([np.ones_like(gc), distance, gc, gc ** 2], axis=1)
    kappa, peak = np.full(len(y), np.nan), np.full(len(y), np.nan)
    for i in range(len(y)):
        u = usable[i]
        if u.sum() < 10:
            continue
        beta = np.linalg.lstsq(design[u], y[i, u], rcond=None)[0]
        kappa[i], peak[i] = -beta[3] / 100.0, -beta[2] / (2.0 * beta[3])
    return kappa, peak


def _cn1_mask(seg: pd.DataFrame, ids: np.ndarray, starts, ends) -> np.ndarray:
    """Samples x bins: True where the true copy number is 1 over the whole bin."""
    mask = np.ones((len(ids), len(starts)), dtype=bool)
    row = {s: i for i, s in enumerate(ids)}
    for r in seg.itertuples():
        i0, i1 = (r.start - 1) // BIN_SIZE, min((r.end - 1) // BIN_SIZE, len(starts) - 1)
        mask[row[r.sample_id], i0:i1 + 1] = False
    return mask


@dataclass
class _Cohort:
    """A simulated cohort's stores, truth tables and the per-sample / per-bin masks the checks share."""

    data_dir: Path
    chrom: NpyStore
    plas: NpyStore
    smp: pd.DataFrame
    seg: pd.DataFrame
    truth: pd.DataFrame
    feat: pd.DataFrame
    kleb: pd.DataFrame
    holdout: list[str]
    ids: np.ndarray
    C: np.ndarray
    P: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    med: np.ndarray
    lq: np.ndarray
    mixed: np.ndarray
    normal: np.ndarray
    species: np.ndarray
    kp: np.ndarray
    mapp: np.ndarray
    gc: np.ndarray
    dist: np.ndarray
    island: np.ndarray
    hot: np.ndarray
    cn1: np.ndarray
    full: np.ndarray
    usable: np.ndarray


def _load_cohort(data_dir) -> _Cohort:
    data_dir = Path(data_dir)
    chrom, plas, read = _cohort_files(data_dir)
    smp, seg, truth, feat, kleb = (read(k) for k in ("samples", "segments", "gene_truth", "bin_features",
                                                      "kleborate_gt"))
    holdout = (data_dir / FILES["holdout_ids"]).read_text().split()
    ids = chrom.sample_ids
    if list(smp["sample_id"]) != list(ids):
        raise InputError(f"{data_dir}: truth/samples.tsv rows are not in store order")
    C = np.asarray(chrom.counts, dtype=np.float64)
    P = np.asarray(plas.counts, dtype=np.float64)
    starts, ends = chrom.bins["start"], chrom.bins["end"]
    med = np.maximum(np.median(C, axis=1), 1.0)
    lq = smp["low_quality"].astype(str).eq("True").to_numpy()
    mixed = smp["mixed"].astype(str).eq("True").to_numpy()
    normal = ~lq & ~mixed
    species = smp["species"].to_numpy()
    kp = species == SPECIES[0]
    mapp = feat["mappability"].to_numpy(float)
    gc = feat["gc"].to_numpy(float)
    dist = feat["replichore_distance"].to_numpy(float)
    island = feat["island"].astype(str).eq("True").to_numpy()
    hot = feat["hot"].astype(str).eq("True").to_numpy()
    cn1 = _cn1_mask(seg, ids, starts, ends)
    full = (ends - starts + 1) == BIN_SIZE
    usable = cn1 & (mapp > 0.99)[None, :] & ~hot[None, :] & full[None, :]
    return _Cohort(data_dir=data_dir, chrom=chrom, plas=plas, smp=smp, seg=seg, truth=truth, feat=feat, kleb=kleb,
                   holdout=holdout, ids=ids, C=C, P=P, starts=starts, ends=ends, med=med, lq=lq, mixed=mixed,
                   normal=normal, species=species, kp=kp, mapp=mapp, gc=gc, dist=dist, island=island, hot=hot, cn1=cn1,
                   full=full, usable=usable)


def measure_properties(data_dir) -> pd.DataFrame:
    """Measure back, from a simulated cohort's files, the properties that docs/simulation.md claims.

    Returns one row per property: ``property claim low high measured ok`` (``ok``:
    ``low <= measured <= high``). Low-quality and mixed samples are left out of the
    depth statistics; they are measured on their own rows.
    """
    cohort = _load_cohort(data_dir)
    rows = []

    def add(prop, claim, low, high, value):
        value = float(value)
        rows.append({"property": prop, "claim": claim, "low": low, "high": high,
                     "measured": round(value, 4), "ok": bool(low <= value <= high)})

    for group in (_geometry, _depth, _gc_bias, _noise, _ori_ter, _unmappable, _population, _blashv, _plasmids,
                  _sample_quality):
        group(cohort, add)
    return pd.DataFrame(rows)


def _geometry(c: _Cohort, add) -> None:
    """Bin counts of the two stores."""
    C, P = c.C, c.P
    add("chromosome bins", "5,334 bins of NC_016845.1", 5334, 5334, C.shape[1])
    add("plasmid bins", "2,031 bins over 12 contigs", 2031, 2031, P.shape[1])


def _depth(c: _Cohort, add) -> None:
    """Depth range and read starts per bin."""
    smp, med, normal = c.smp, c.med, c.normal
    rpb = smp["reads_per_bin"].to_numpy(float)
    dn = smp["depth"].to_numpy(float)[normal]
    add("depth min (x)", "coverage 40-200x", 40, 200, dn.min())
    add("depth max (x)", "coverage 40-200x", 40, 200, dn.max())
    ratio = med[normal] / rpb[normal]
    add("median count / expected read starts", "median bin count = C*1000/L within 15 %", 0.85, 1.15,
        np.median(ratio))
    add("read starts per bin, 1st pct", "about 270-2,000 read starts per bin", 200, 400,
        np.percentile(med[normal], 1))
    add("read starts per bin, 99th pct", "about 270-2,000 read starts per bin", 1200, 2200,
        np.percentile(med[normal], 99))


def _gc_bias(c: _Cohort, add) -> None:
    """GC profile and the per-sample GC-bias curves."""
    smp, C, normal, gc, dist, island, usable = c.smp, c.C, c.normal, c.gc, c.dist, c.island, c.usable
    add("mean GC", "per-bin GC, mean about 57 %", 0.56, 0.58, gc.mean())
    add("island GC minus core GC", "accessory islands are lower-GC", -0.10, -0.03,
        gc[island].mean() - gc[~island].mean())
    kappa_fit, _ = gc_curve_fit(C, gc, dist, usable)
    kappa_true = smp["gc_kappa"].to_numpy(float)
    add("GC-bias curvature fit error, median", "a GC-bias curve per sample (fitted κ from counts vs truth)",
        0, 0.03, np.median(np.abs(kappa_fit[normal] - kappa_true[normal])))
    lib = smp["gc_batch_type"].to_numpy()
    by_type = {t: np.median(kappa_fit[normal & (lib == t)]) for t in GC_CURVES if (normal & (lib == t)).any()}
    if {"PCR", "PCR-free"} <= set(by_type):
        add("GC-bias curvature, PCR-free / PCR (fitted)", "PCR-free libraries nearly flat "
            f"(GC_CURVES κ ratio {GC_CURVES['PCR-free'][0] / GC_CURVES['PCR'][0]:.2f})", 0.1, 0.5,
            by_type["PCR-free"] / by_type["PCR"])
    pcr = normal & (lib == "PCR") & (kappa_fit > 0)
    if pcr.sum() > 10:
        within = pd.Series(np.log(kappa_fit[pcr])).groupby(smp["gc_batch"].to_numpy()[pcr]).std().median()
        add("GC-bias jitter within a PCR batch, sd of log κ", "per-sample jitter (lognormal sd 0.25)",
            0.15, 0.40, within)


def _noise(c: _Cohort, add) -> None:
    """Overdispersion and neighbour correlation of adjacent CN-1 mappable bins."""
    C, med, normal, usable = c.C, c.med, c.normal, c.usable
    both = usable[:, 1:] & usable[:, :-1]
    diff = C[:, 1:] - C[:, :-1]
    mean_adj = (C[:, 1:] + C[:, :-1]) / 2
    nb = both.sum(axis=1)
    d_var = (np.where(both, diff, 0) ** 2).sum(axis=1) / nb - ((np.where(both, diff, 0)).sum(axis=1) / nb) ** 2
    d_mean = np.where(both, mean_adj, 0).sum(axis=1) / nb
    disp = d_var / (2 * d_mean)
    add("dispersion index, 1st pct of samples", "counts overdispersed: var/mean of adjacent-bin "
        "differences > 1 (Poisson = 1; read pairs alone give about 1.5-1.9, the NB term adds to it)", 2.0, np.inf,
        np.percentile(disp[normal], 1))
    deep = normal & (med > np.median(med[normal]))
    shallow = normal & (med <= np.median(med[normal]))
    add("dispersion index, deep / shallow half", "NB: excess variance grows with depth", 1.2, np.inf,
        np.median(disp[deep]) / np.median(disp[shallow]))
    logc = np.log2(C + 0.5) - np.log2(med)[:, None]
    r = np.where(usable, logc - np.nanmedian(np.where(usable, logc, np.nan), axis=1, keepdims=True), np.nan)
    r1, r0 = r[:, 1:], r[:, :-1]
    ok = ~np.isnan(r1) & ~np.isnan(r0)
    corr = []
    for i in np.flatnonzero(normal):
        a, b = r0[i, ok[i]], r1[i, ok[i]]
        corr.append(np.corrcoef(a, b)[0, 1])
    add("lag-1 correlation of log depth", "neighbouring bins correlated", 0.1, 0.9, np.median(corr))


def _ori_ter(c: _Cohort, add) -> None:
    """The replication gradient."""
    smp, C, normal, dist, usable = c.smp, c.C, c.normal, c.dist, c.usable
    est = ori_ter_fit(C, dist, usable)
    true = smp["ori_ter_ratio"].to_numpy(float)
    err = np.abs(np.log2(est[normal]) - np.log2(true[normal]))
    add("ori/ter fit error (log2), median", "regression recovers the ratio", 0, 0.05, np.median(err))
    add("ori/ter fitted min", "ori/ter ratio 1.0-2.5", 0.95, 1.3, est[normal].min())
    add("ori/ter fitted max", "ori/ter ratio 1.0-2.5", 1.8, 2.6, est[normal].max())


def _unmappable(c: _Cohort, add) -> None:
    """Unmappable stretches."""
    C, med, lq, mapp = c.C, c.med, c.lq, c.mapp
    unm = mapp < 0.1
    rel = C[np.ix_(~lq, unm)] / med[~lq, None]
    add("unmappable bins (mappability < 0.1)", "about 8 rRNA operons + IS + prophage repeats", 40, 120, unm.sum())
    add("unmappable bins: count / median, 99.9th pct", "drop towards 0 in every sample", 0, 0.2,
        np.percentile(rel, 99.9))


def _population(c: _Cohort, add) -> None:
    """Species, STs, lineage and private deletions."""
    smp, seg, ids, C, ends, med = c.smp, c.seg, c.ids, c.C, c.ends, c.med
    mixed, normal, species, mapp, cn1 = c.mixed, c.normal, c.species, c.mapp, c.cn1
    for k, name in enumerate(SPECIES):
        add(f"share {name}", "species mix (Kp 86 %, Kq 8 %, Kv 6 %)", (0.86, 0.08, 0.06)[k] - 0.05,
            (0.86, 0.08, 0.06)[k] + 0.05, np.mean(species == name))
    sts = smp.loc[smp["ST"] != "", "ST"].value_counts()
    add("largest ST share", "STs of very unequal size", 0.08, 0.25, sts.iloc[0] / len(smp))
    add("empty ST share", "some samples without an ST", 0.005, 0.08, np.mean(smp["ST"] == ""))
    lin = seg[(seg["kind"] == "lineage_deletion") & seg["sample_id"].isin(ids[~mixed])]
    size = lin["end"] - lin["start"] + 1
    add("lineage deletion size min (kb)", "deletions 5-100 kb", 5, 100, size.min() / 1000)
    add("lineage deletion size max (kb)", "deletions 5-100 kb", 5, 100, size.max() / 1000)
    frac = (lin.assign(bp=size).groupby("sample_id")["bp"].sum() / int(ends[-1])).reindex(ids).fillna(0).to_numpy()
    cg = smp["ST"].isin(CG258).to_numpy()
    other = ~cg & ~mixed
    add("deleted share outside CG258, min", "3-12 % of the chromosome", 0.03, 0.12, frac[other].min())
    add("deleted share outside CG258, max", "3-12 % of the chromosome", 0.03, 0.12, frac[other].max())
    if (cg & ~mixed).any():
        add("deleted share in CG258, max", "CG258 close to the ST11 reference", 0, 0.015, frac[cg & ~mixed].max())
    dels = seg[seg["kind"].isin(["lineage_deletion", "private_deletion"])]
    dm = np.zeros_like(cn1)
    row = {s: i for i, s in enumerate(ids)}
    for r_ in dels.itertuples():
        i0, i1 = (r_.start - 1) // BIN_SIZE + 1, (r_.end - 1) // BIN_SIZE - 1  # whole bins only
        if i1 >= i0:
            dm[row[r_.sample_id], i0:i1 + 1] = True
    dm &= normal[:, None] & (mapp > 0.99)[None, :]
    add("deleted bins: count / median, 99th pct", "deletions read near 0", 0, 0.1,
        np.percentile((C / med[:, None])[dm], 99) if dm.any() else 0)


def _blashv(c: _Cohort, add) -> None:
    """blaSHV amplifications and the Kleborate-style count."""
    data_dir, chrom, smp, seg, truth, kleb = c.data_dir, c.chrom, c.smp, c.seg, c.truth, c.kleb
    ids, C, med, mixed, normal, kp = c.ids, c.C, c.med, c.mixed, c.normal, c.kp
    shv = truth[truth["level"] == "chromosome"].set_index("sample_id")["true_cn"].reindex(ids).to_numpy(float)
    nonkp = ~kp & ~mixed
    add("blaSHV truth in Kq/Kv, max", "Kq/Kv carry no chromosomal blaSHV", 0, 0, shv[nonkp].max() if nonkp.any() else 0)
    amp = smp["shv_amplified"].astype(str).eq("True").to_numpy()
    add("share of Kp with blaSHV amplification", "2-5 % of K. pneumoniae", 0.02, 0.05, amp[kp].mean())
    sa = seg[seg["kind"] == "shv_amplification"]
    if len(sa):
        add("blaSHV amplicon min (kb)", "amplicon 3-30 kb", 3, 30, (sa["end"] - sa["start"] + 1).min() / 1000)
        add("blaSHV amplicon max (kb)", "amplicon 3-30 kb", 3, 30, (sa["end"] - sa["start"] + 1).max() / 1000)
        add("blaSHV amplified CN min", "CN 2-10", 1.2, 10, sa["cn"].min())
        add("blaSHV amplified CN max", "CN 2-10", 2, 10, sa["cn"].max())
        world_shv = build_world(cohort_world_seed(data_dir)).shv
        crr = region_pcn(C, chrom.bins, reference.CHROMOSOME, world_shv["start"], world_shv["end"], med)
        sel = amp & normal & ~(smp["plasmid_shv_pcn"].to_numpy(float) > 0)
        if sel.sum() >= 3:
            add("blaSHV depth ratio vs true CN, correlation", "amplification visible in depth", 0.8, 1,
                np.corrcoef(crr[sel], shv[sel])[0, 1])
    pshv = smp["plasmid_shv_pcn"].to_numpy(float) > 0
    kl = kleb.set_index("sample_id")["blaSHV"].reindex(ids).to_numpy(int)
    expect = np.floor(smp["shv_cn_major"].to_numpy(float) + 0.5).astype(int) + pshv
    add("Kleborate blaSHV count off truth", "a few % label noise", 0.005, 0.06, np.mean(kl != expect))


def _plasmids(c: _Cohort, add) -> None:
    """Plasmid backbone PCN by type, non-carriers' cross-talk, near-identical members."""
    data_dir, plas, smp, truth, ids, P, med, normal = c.data_dir, c.plas, c.smp, c.truth, c.ids, c.P, c.med, c.normal
    world = build_world(cohort_world_seed(data_dir))
    for ptype, (lo, hi) in PCN_RANGE.items():
        if ptype == "ColE-like":
            continue
        vals = []
        for c in world.contigs.loc[world.contigs["type"] == ptype, "contig"]:
            t = smp[f"backbone_pcn:{c}"].to_numpy(float)
            sl = plas.contig_slices()[c]
            blen = plas.bin_lengths[sl]
            dep = np.median(P[:, sl] / blen[None, :] * BIN_SIZE, axis=1) / med
            sel = (t > 0) & normal
            vals.append(dep[sel])
        vals = np.concatenate(vals)
        if len(vals) >= 10:
            add(f"{ptype} backbone PCN, 5th pct", f"PCN {lo:g}-{hi:g}", lo * 0.75, lo * 1.5, np.percentile(vals, 5))
            add(f"{ptype} backbone PCN, 95th pct", f"PCN {lo:g}-{hi:g}", hi * 0.7, hi * 1.25, np.percentile(vals, 95))
    member = truth[truth["level"] == "member"].pivot(index="sample_id", columns="gene", values="true_cn").reindex(ids)
    family = truth[truth["level"] == "family"].pivot(index="sample_id", columns="gene", values="true_cn").reindex(ids)
    cole = member[[g for g in ("qnrB1", "blaTEM-1") if g in member]].to_numpy(float)
    if cole.size and (cole > 8).any():
        add("ColE-like carriers: gene copies, median", "small ColE-like plasmids 10-40 copies", 10, 40,
            np.median(cole[cole > 8]))
    panel = world.genes.set_index("gene")
    for g, elements in (("blaCTX-M-15", ("ISEcp1", "Tn3")), ("blaCTX-M-14", ("ISEcp1", "IS903"))):
        if g not in panel.index:
            continue
        r_ = panel.loc[g]
        pcn = region_pcn(P, plas.bins, r_.contig, int(r_.start), int(r_.end), med)
        fam = world.gene_family[g]
        has = np.zeros(len(ids), dtype=bool)
        for el in elements:
            has |= smp[f"copies:{el}"].to_numpy(float) > 0
        sel = (family[fam].to_numpy(float) == 0) & has & normal
        if sel.sum() >= 10:
            add(f"{g} PCN in non-carriers with flanking elements, median",
                "non-carriers show PCN 0.1-0.6 (mobile elements in the gene bins)", 0.1, 0.6, np.median(pcn[sel]))
            add(f"{g} PCN in non-carriers with flanking elements, 90th pct",
                "non-carriers show PCN 0.1-0.6", 0.1, 0.6, np.percentile(pcn[sel], 90))
    if "blaCTX-M-14" in member and "blaCTX-M" in family:
        only = (member["blaCTX-M-14"].to_numpy(float) > 0) & normal & \
            (np.abs(family["blaCTX-M"].to_numpy(float) - member["blaCTX-M-14"].to_numpy(float)) < 1e-9)
        if only.sum() >= 5:
            fam_pcn = sum(region_pcn(P, plas.bins, panel.loc[m].contig, int(panel.loc[m].start),
                                      int(panel.loc[m].end), med) * (panel.loc[m].end - panel.loc[m].start + 1)
                          for m in world.families["blaCTX-M"])
            mean_len = np.mean([panel.loc[m].end - panel.loc[m].start + 1 for m in world.families["blaCTX-M"]])
            ratio_member = region_pcn(P, plas.bins, panel.loc["blaCTX-M-14"].contig,
                                       int(panel.loc["blaCTX-M-14"].start), int(panel.loc["blaCTX-M-14"].end),
                                       med)[only] / member["blaCTX-M-14"].to_numpy(float)[only]
            add("CTX-M-14 carriers: member PCN / truth", "near-identical members split reads", 0.4, 0.8,
                np.median(ratio_member))
            add("CTX-M-14 carriers: family PCN / truth", "the family sum keeps them", 0.85, 1.4,
                np.median((fam_pcn / mean_len)[only] / family["blaCTX-M"].to_numpy(float)[only]))


def _sample_quality(c: _Cohort, add) -> None:
    """Low-quality and mixed samples, label noise, hold-out share."""
    smp, holdout, ids, C, med, lq = c.smp, c.holdout, c.ids, c.C, c.med, c.lq
    mixed, normal, mapp = c.mixed, c.normal, c.mapp
    lowd = lq & smp["low_quality_reason"].str.contains("low_depth").to_numpy()
    if lowd.any():
        add("low-depth samples: median count / normal 1st pct, max", "very low depth (2-8x)", 0, 0.6,
            med[lowd].max() / np.percentile(med[normal], 1))
    cont = lq & smp["low_quality_reason"].str.contains("contaminated").to_numpy()
    if cont.any():
        logs = np.log2(C[:, mapp > 0.99] + 0.5)
        step = np.diff(logs, axis=1)
        noise = np.median(np.abs(step - np.median(step, axis=1, keepdims=True)), axis=1)
        add("contaminated samples: bin-to-bin log2 noise (MAD), min / normal median", "contamination-like noise",
            2.5, np.inf, noise[cont].min() / np.median(noise[normal]))
    add("low-quality share", "a few low-quality samples (1 %)", 0.003, 0.03, lq.mean())
    add("mixed share", "mixed samples (2 %)", 0.005, 0.04, mixed.mean())
    noisy = smp["gt_label_noise"].astype(str).str.len().gt(0).to_numpy()
    add("samples with a GT label flip", "a few % label noise", 0.01, 0.3, noisy.mean())
    add("holdout share", "about 25 % holdout", 0.2, 0.3, len(holdout) / len(ids))



# ----------------------------------------------------------------------------- worlds


def gene_pcn(data_dir) -> pd.DataFrame:
    """PCN of every plasmid panel gene in every sample, measured from the cohort's plasmid store.

    Returns one row per sample x gene: ``sample_id gene family pcn carrier noncarrier normal``;
    ``pcn`` is copies per chromosome (depth per bp over the gene's bins / chromosome median
    depth per bp), ``carrier`` = true member copies > 0, ``noncarrier`` = no member and no
    off-panel allele of the family (family truth 0), ``normal`` = neither low quality nor mixed.
    """
    data_dir = Path(data_dir)
    chrom, plas, read = _cohort_files(data_dir)
    smp, truth, panel = read("samples"), read("gene_truth"), read("plasmid_gene_coords")
    families = reference.load_gene_families(data_dir / FILES["plasmid_gene_families"])
    family_of = {g: f for f, members in families.items() for g in members}
    ids = chrom.sample_ids
    med = np.maximum(np.median(np.asarray(chrom.counts, dtype=np.float64), axis=1), 1.0)
    P = np.asarray(plas.counts, dtype=np.float64)
    member = truth[truth["level"] == "member"].pivot(index="sample_id", columns="gene", values="true_cn").reindex(ids)
    family = truth[truth["level"] == "family"].pivot(index="sample_id", columns="gene", values="true_cn").reindex(ids)
    normal = ~(smp["low_quality"].astype(str).eq("True") | smp["mixed"].astype(str).eq("True")).to_numpy()
    parts = []
    for row in panel.itertuples():
        fam = family_of[row.gene]
        parts.append(pd.DataFrame({
            "sample_id": ids, "gene": row.gene, "family": fam,
            "pcn": region_pcn(P, plas.bins, row.contig, int(row.start), int(row.end), med),
            "carrier": member[row.gene].to_numpy(float) > 0, "noncarrier": family[fam].to_numpy(float) == 0,
            "normal": normal}))
    return pd.concat(parts, ignore_index=True)


def world_properties(data_dir, threshold: float = 0.20) -> pd.DataFrame:
    """Per plasmid gene, what the cohort's world does to a fixed PCN threshold (measured from files).

    Columns: ``gene family prevalence carrier_pcn_p5 carrier_pcn_median noncarrier_pcn_median
    noncarrier_pcn_p90 noncarrier_above carrier_below`` — the family's prevalence (share of
    samples with family truth > 0), PCN quantiles (copies per chromosome) of normal carriers
    and non-carriers, and the shares of normal non-carriers above / carriers below
    ``threshold``. NaN where a group is empty.
    """
    pcn = gene_pcn(data_dir)
    rows = []
    for gene, d in pcn.groupby("gene", sort=False):
        car = d.loc[d["carrier"] & d["normal"], "pcn"].to_numpy()
        non = d.loc[d["noncarrier"] & d["normal"], "pcn"].to_numpy()
        q = (lambda v, p: float(np.percentile(v, p)) if len(v) else np.nan)  # noqa: E731
        rows.append({"gene": gene, "family": d["family"].iloc[0], "prevalence": float((~d["noncarrier"]).mean()),
                     "carrier_pcn_p5": q(car, 5), "carrier_pcn_median": q(car, 50),
                     "noncarrier_pcn_median": q(non, 50), "noncarrier_pcn_p90": q(non, 90),
                     "noncarrier_above": float((non > threshold).mean()) if len(non) else np.nan,
                     "carrier_below": float((car < threshold).mean()) if len(car) else np.nan})
    return pd.DataFrame(rows)


def world_summary(data_dir) -> dict:
    """One flat record of a cohort's world, from its cohort.json, for a per-world benchmark table.

    Keys: ``world_seed preset n_samples seed hard depth_low depth_high gc_strength shv_amp_rate
    plasmid_shv_rate kleborate_collapse_rate low_quality_rate mixed_rate st_sigma``, then
    ``prevalence:<family>`` (realised share of carriers), ``carrier_pcn_low:<gene>`` /
    ``carrier_pcn_high:<gene>`` (central 95 % of the carriers' PCN of the gene's reference plasmid,
    copies per chromosome) and ``background_pcn:<gene>`` (noise-free median PCN of the family's
    non-carriers from mobile-element cross-talk).
    """
    import json

    doc = json.loads((Path(data_dir) / FILES["cohort"]).read_text())
    settings, cfg, world = doc["settings"], doc["config"], doc["world"]
    out = {"world_seed": world["world_seed"], "preset": world["preset"], "n_samples": settings["n_samples"],
           "seed": settings["seed"], "hard": settings["hard"], "depth_low": cfg["depth_range"][0],
           "depth_high": cfg["depth_range"][1], "st_sigma": world["st_sigma"]}
    for key in ("gc_strength", "shv_amp_rate", "plasmid_shv_rate", "kleborate_collapse_rate", "low_quality_rate",
                "mixed_rate"):
        out[key] = cfg[key]
    out.update({f"prevalence:{f}": v for f, v in world["family_prevalence_realised"].items()})
    panel = reference.load_gene_panel(Path(data_dir) / FILES["plasmid_gene_coords"], "plasmid").genes
    for row in panel.itertuples():
        lo, hi = world["carrier_pcn_range"][row.contig]
        out[f"carrier_pcn_low:{row.gene}"], out[f"carrier_pcn_high:{row.gene}"] = lo, hi
    out.update({f"background_pcn:{g}": v["noncarrier_background_pcn_median"] for g, v in world["crosstalk"].items()})
    return out
