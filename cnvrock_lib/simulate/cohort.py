"""The cohort: per-sample draws (species, lineage, batch, depth, events, plasmids), all but the count noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..reference import BIN_SIZE
from .config import SPECIES, SimConfig
from .world import GC_CURVES, LIBRARY_TYPES, OFF_PANEL, World, _lognormal_range, _place



@dataclass
class Cohort:
    """Per-sample draws (everything except the count noise)."""

    samples: pd.DataFrame           # one row per sample; see truth/samples.tsv
    segments: list                  # per sample: list of (start, end, cn, kind)
    weights: np.ndarray             # (n, n_sources) plasmid read sources, copies per chromosome
    member_cn: np.ndarray           # (n, n_genes) true copies per chromosome (population mean)
    member_major: np.ndarray        # (n, n_genes) copies in the majority strain (what an assembly sees)
    offpanel: np.ndarray            # (n, n_families) copies of off-panel alleles (population mean)
    offpanel_major: np.ndarray


def _sample_ids(rng, batch: np.ndarray, n_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Run accessions (SRR + digits) in one numbered block per batch, and BioSample ids."""
    bases = np.sort(rng.choice(np.arange(10, 300), size=n_batches, replace=False)) * 100_000
    num = np.empty(len(batch), dtype=np.int64)
    for b in range(n_batches):
        idx = np.flatnonzero(batch == b)
        num[idx] = bases[b] + np.cumsum(rng.integers(1, 20, size=len(idx)))
    ids = np.array([f"SRR{k}" for k in num])
    bios = 4_000_000 + rng.choice(26_000_000, size=len(batch), replace=False)
    return ids, np.array([f"SAMN{k:08d}" for k in bios])


def draw_cohort(world: World, n_samples: int, seed: int, cfg: SimConfig) -> Cohort:
    """Draw every per-sample quantity of the cohort except the read-count noise.

    One random stream, drawn in a fixed order (lineages, sequencing, sample quality, chromosomal
    events, plasmids): the helpers below are called in that order so a seed gives the same cohort.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0407]))
    n = n_samples
    species, lineage, st, lin_species, lin_weight = _draw_lineages(world, rng, n, cfg)
    seq = _draw_sequencing(rng, n, cfg)
    depth, smooth_sd = seq["depth"], seq["smooth_sd"]

    low_quality, lq_reason, contamination, mixed, minority, minority_frac = _draw_quality(
        rng, n, cfg, depth, smooth_sd, species, lineage, lin_species, lin_weight)
    shv_amp, shv_major, shv_pop, segments, private, other_amp = _draw_chromosome_events(
        world, rng, n, cfg, species, lineage, lin_species, mixed, minority, minority_frac)
    batch, batch_type, read_len = seq["batch"], seq["batch_type"], seq["read_len"]
    ori_ter, gc_kappa, gc_peak = seq["ori_ter"], seq["gc_kappa"], seq["gc_peak"]
    smooth_rho, nb_phi, split_share = seq["smooth_rho"], seq["nb_phi"], seq["split_share"]
    # plasmid-borne blaSHV (IncF-like or IncX3 PCN), seen by the chromosome store's blaSHV bins
    plasmid_shv = np.zeros(n)
    has_pshv = rng.random(n) < cfg.plasmid_shv_rate
    k = int(has_pshv.sum())
    incx3 = rng.random(k) < 0.5
    pcn_type = world.strengths.pcn_by_type
    plasmid_shv[has_pshv] = np.where(incx3, _lognormal_range(rng, *pcn_type["IncX3"], k),
                                     _lognormal_range(rng, *pcn_type["IncF-like"], k))

    weights, member, offp, pcn_contig = _draw_plasmids(world, rng, lineage, cfg)
    member_major, offp_major = member.copy(), offp.copy()
    if mixed.any():
        idx = np.flatnonzero(mixed)
        w2, m2, o2, _ = _draw_plasmids(world, rng, minority[idx], cfg)
        f = minority_frac[idx][:, None]
        weights[idx] = (1 - f) * weights[idx] + f * w2
        member[idx] = (1 - f) * member[idx] + f * m2
        offp[idx] = (1 - f) * offp[idx] + f * o2

    samples = pd.DataFrame({
        "species": [SPECIES[s] for s in species], "ST": st, "lineage": [world.lineages[k].name for k in lineage],
        "batch": batch, "gc_batch": [f"batch{b:02d}" for b in batch],
        "gc_batch_type": [LIBRARY_TYPES[batch_type[b]] for b in batch],
        "read_length": read_len.astype(int), "depth": depth, "reads_per_bin": depth * BIN_SIZE / read_len,
        "ori_ter_ratio": ori_ter, "gc_kappa": gc_kappa, "gc_peak": gc_peak, "smooth_sd": smooth_sd,
        "smooth_rho": smooth_rho, "nb_phi": nb_phi, "split_share": split_share,
        "low_quality": low_quality, "low_quality_reason": lq_reason, "contamination": contamination,
        "mixed": mixed, "minority_fraction": minority_frac,
        "minority_lineage": [world.lineages[k].name if k >= 0 else "" for k in minority],
        "shv_cn": shv_pop, "shv_cn_major": shv_major, "shv_amplified": shv_amp, "plasmid_shv_pcn": plasmid_shv,
        "private_deletion": private, "other_amplification": other_amp,
    })
    for j, c in enumerate(world.contigs["contig"]):
        samples[f"backbone_pcn:{c}"] = pcn_contig[:, j]
    for j, el in enumerate(e for e in world.sources if e.startswith("element:")):
        samples[f"copies:{el.split(':', 1)[1]}"] = weights[:, world.src_index[el]]
    return Cohort(samples, segments, weights, member, member_major, offp, offp_major)




def _exact_share(rng, mask: np.ndarray, rate: float) -> np.ndarray:
    """Pick round(rate * count) samples of ``mask`` (exact shares, not binomial)."""
    cand = np.flatnonzero(mask)
    k = int(round(rate * len(cand)))
    out = np.zeros(len(mask), dtype=bool)
    if k:
        out[rng.choice(cand, size=k, replace=False)] = True
    return out


def _draw_lineages(world: World, rng, n: int, cfg: SimConfig):
    """Species, lineage (ST) of every sample; some STs left empty."""
    lin_species = np.array([lin.species for lin in world.lineages])
    lin_weight = np.array([lin.weight for lin in world.lineages])
    species = rng.choice(3, size=n, p=np.asarray(cfg.species_weights) / sum(cfg.species_weights))
    lineage = np.empty(n, dtype=np.int64)
    for sp in range(3):
        idx = np.flatnonzero(species == sp)
        cand = np.flatnonzero(lin_species == sp)
        p = lin_weight[cand] / lin_weight[cand].sum()
        lineage[idx] = rng.choice(cand, size=len(idx), p=p)
    st = np.array([world.lineages[k].st for k in lineage], dtype=object)
    if cfg.empty_st_rate > 0:
        st[rng.random(n) < cfg.empty_st_rate] = ""

    return species, lineage, st, lin_species, lin_weight


def _draw_sequencing(rng, n: int, cfg: SimConfig) -> dict:
    """Sequencing batches (library type, read length, insert size, depth) and per-sample depth shape."""
    # sequencing batches: unequal sizes, each with a library type, read length and insert size
    nb = cfg.n_batches
    batch_p = rng.dirichlet(np.full(nb, 1.5))
    batch = rng.choice(nb, size=n, p=batch_p)
    batch_type = rng.choice(len(LIBRARY_TYPES), size=nb, p=list(cfg.library_mix))
    batch_read_len = rng.choice(cfg.read_lengths, size=nb)
    batch_insert = rng.uniform(*cfg.insert_range, size=nb)
    lo, hi = cfg.depth_range
    margin = min(0.3, (math.log(hi) - math.log(lo)) / 4)  # batch means keep away from the ends
    batch_depth = np.exp(rng.uniform(math.log(lo) + margin, math.log(hi) - margin, size=nb))
    depth = batch_depth[batch] * np.exp(rng.normal(0, 0.35, n))
    for _ in range(20):  # truncate by redrawing, so no pile-up at the range ends
        out = (depth < lo) | (depth > hi)
        if not out.any():
            break
        depth[out] = batch_depth[batch[out]] * np.exp(rng.normal(0, 0.35, int(out.sum())))
    depth = np.clip(depth, lo, hi)
    read_len = batch_read_len[batch].astype(float)
    kappa0 = np.array([GC_CURVES[LIBRARY_TYPES[t]][0] for t in batch_type])
    peak0 = np.array([GC_CURVES[LIBRARY_TYPES[t]][1] for t in batch_type])
    gc_kappa = cfg.gc_strength * kappa0[batch] * np.exp(rng.normal(0, 0.25, n))
    gc_peak = peak0[batch] + rng.normal(0, 0.01, n)
    a, b = cfg.ori_ter_beta
    ori_ter = cfg.ori_ter_range[0] + (cfg.ori_ter_range[1] - cfg.ori_ter_range[0]) * rng.beta(a, b, n)
    smooth_sd = rng.uniform(*cfg.smooth_sd_range, n)
    smooth_rho = rng.uniform(*cfg.smooth_rho_range, n)
    nb_phi = np.exp(rng.uniform(math.log(cfg.nb_phi_range[0]), math.log(cfg.nb_phi_range[1]), n))
    split_share = np.clip((batch_insert[batch] - read_len) / BIN_SIZE, 0.05, 0.6)

    return {"batch": batch, "batch_type": batch_type, "read_len": read_len, "depth": depth, "gc_kappa": gc_kappa,
            "gc_peak": gc_peak, "ori_ter": ori_ter, "smooth_sd": smooth_sd, "smooth_rho": smooth_rho,
            "nb_phi": nb_phi, "split_share": split_share}


def _draw_quality(rng, n: int, cfg: SimConfig, depth, smooth_sd, species, lineage, lin_species, lin_weight):
    """Low-quality samples (very low depth, contamination-like noise; edits ``depth`` and ``smooth_sd`` in
    place) and mixed samples with their minority lineage."""
    low_quality = _exact_share(rng, np.ones(n, bool), cfg.low_quality_rate)
    lq_reason = np.full(n, "", dtype=object)
    contamination = np.zeros(n)
    lq_idx = np.flatnonzero(low_quality)
    kinds = rng.choice(3, size=len(lq_idx))
    for i, kind in zip(lq_idx, kinds):
        if kind in (0, 2):
            depth[i] = rng.uniform(2.0, 8.0)
        if kind in (1, 2):
            contamination[i] = rng.uniform(0.5, 2.0)
            smooth_sd[i] = rng.uniform(0.15, 0.3)
        lq_reason[i] = ("low_depth", "contaminated", "low_depth+contaminated")[kind]
    mixed = _exact_share(rng, ~low_quality, cfg.mixed_rate)
    minority = np.full(n, -1)
    minority_frac = np.zeros(n)
    for i in np.flatnonzero(mixed):
        same = rng.random() < 0.7
        cand = np.flatnonzero((lin_species == species[i]) if same else np.ones(len(lin_species), bool))
        cand = cand[cand != lineage[i]]
        minority[i] = rng.choice(cand, p=lin_weight[cand] / lin_weight[cand].sum())
        minority_frac[i] = rng.uniform(*cfg.minority_range)

    return low_quality, lq_reason, contamination, mixed, minority, minority_frac


def _draw_chromosome_events(world: World, rng, n: int, cfg: SimConfig, species, lineage, lin_species, mixed,
                            minority, minority_frac):
    """blaSHV amplifications, lineage and private deletions, other amplifications; per-sample segments and
    the true blaSHV copies (majority strain, and the population mean of a mixed sample)."""
    # chromosomal events of the majority strain
    G = world.genome_length
    shv_s, shv_e = world.shv["start"], world.shv["end"]
    kp = species == 0
    shv_amp = _exact_share(rng, kp, cfg.shv_amp_rate)
    shv_cn = np.where(kp, 1.0, 0.0)
    events: list[list] = [[] for _ in range(n)]
    for i in np.flatnonzero(shv_amp):
        ks = np.arange(2, 11)
        pk = cfg.shv_cn_decay ** (ks - 2)
        k = int(rng.choice(ks, p=pk / pk.sum()))
        cn = float(k)
        u = rng.random()
        if u < cfg.shv_subclonal_rate:
            cn = 1.0 + rng.uniform(0.2, 1.0) * (k - 1) if k > 2 else rng.uniform(1.2, 2.0)
            cn = float(np.clip(cn, 1.2, 10))
        elif u < cfg.shv_subclonal_rate + cfg.shv_nonint_rate:
            cn = float(min(10.0, k + rng.uniform(0.1, 0.9)))
        length = int(round(math.exp(rng.uniform(math.log(3000), math.log(30000)))))
        length = max(length, shv_e - shv_s + 1 + 200)
        left = int(rng.integers(shv_e - length + 100, shv_s - 100 + 1))
        events[i].append((left, left + length - 1, round(cn, 3), "shv_amplification"))
        shv_cn[i] = round(cn, 3)
    private = _exact_share(rng, np.ones(n, bool), cfg.private_del_rate)
    other_amp = _exact_share(rng, np.ones(n, bool), cfg.other_amp_rate)
    islands = world.islands
    for i in range(n):
        lin = world.lineages[lineage[i]]
        for s, e in lin.deletions:
            events[i].append((int(s), int(e), 0.0, "lineage_deletion"))
        taken = [(s, e) for s, e, _, _ in events[i]]
        if private[i]:
            for _ in range(1 + int(rng.random() < 0.2)):
                free = [isl for isl in islands if all(isl[1] < ts or isl[0] > te for ts, te in taken)
                        and isl[1] - isl[0] + 1 >= 5000]
                if not free:
                    break
                isl = free[int(rng.integers(len(free)))]
                length = int(min(isl[1] - isl[0] + 1, round(math.exp(rng.uniform(math.log(5000), math.log(50000))))))
                s = int(rng.integers(isl[0], isl[1] - length + 2))
                events[i].append((s, s + length - 1, 0.0, "private_deletion"))
                taken.append((s, s + length - 1))
        if other_amp[i]:
            length = int(round(math.exp(rng.uniform(math.log(10000), math.log(300000)))))
            spot = _place(rng, length, taken + [(shv_s - 300000, shv_e + 300000)], G, lo=30000, hi=G - 30000)
            if spot:
                cn = 2.0 if rng.random() < 0.8 else 3.0
                events[i].append((spot[0], spot[1], cn, "amplification"))
    segments = []
    for i in range(n):
        if mixed[i]:
            minor = [(int(s), int(e), 0.0, "lineage_deletion")
                     for s, e in world.lineages[minority[i]].deletions]
            segments.append(_mix_segments(events[i], minor, minority_frac[i]))
        else:
            segments.append(sorted(events[i]))
    # truth blaSHV of a mixed sample: population mean over both strains
    min_species = np.where(minority >= 0, lin_species[np.maximum(minority, 0)], 0)
    shv_major = shv_cn.copy()
    shv_pop = np.where(mixed, (1 - minority_frac) * shv_cn + minority_frac * (min_species == 0), shv_cn)

    return shv_amp, shv_major, shv_pop, segments, private, other_amp


def _mix_segments(major: list, minor: list, f: float) -> list:
    """Population-mean CN segments of a two-strain mixture ((1 - f) major + f minor)."""
    points = sorted({p for s, e, _, _ in major + minor for p in (s, e + 1)})
    out = []
    for s, e1 in zip(points[:-1], points[1:]):
        e = e1 - 1
        cn_major = next((c for a, b, c, _ in major if a <= s and e <= b), 1.0)
        cn_minor = next((c for a, b, c, _ in minor if a <= s and e <= b), 1.0)
        cn = round((1 - f) * cn_major + f * cn_minor, 3)
        if cn != 1.0:
            kind = next((k for a, b, _, k in major if a <= s and e <= b), "minority_deletion")
            if out and out[-1][1] == s - 1 and out[-1][2] == cn and out[-1][3] == kind:
                out[-1] = (out[-1][0], e, cn, kind)
            else:
                out.append((s, e, cn, kind))
    return out


def _draw_plasmids(world: World, rng, lineage: np.ndarray, cfg: SimConfig):
    """Plasmid carriage of samples of ``lineage``: source weights, member copies, off-panel copies."""
    n = len(lineage)
    S = len(world.sources)
    W = np.zeros((n, S))
    genes = list(world.genes["gene"])
    gidx = {g: j for j, g in enumerate(genes)}
    fams = list(world.families)
    fidx = {f: j for j, f in enumerate(fams)}
    member = np.zeros((n, len(genes)))
    offp = np.zeros((n, len(fams)))
    contigs = list(world.contigs["contig"])
    cidx = {c: j for j, c in enumerate(contigs)}
    pcn_range = world.strengths.pcn_by_contig
    pcn_contig = np.zeros((n, len(contigs)))
    si = world.src_index

    def add_gene(rows, g, copies, flanks=True):
        """Gene ``g`` at ``copies`` per chromosome in ``rows`` (with its flanking elements)."""
        fam = world.gene_family.get(g)
        off_p, (e_lo, e_hi) = OFF_PANEL.get(fam, (0.0, (1.0, 1.0)))
        off = rng.random(len(rows)) < off_p
        eff = np.where(off, rng.uniform(e_lo, e_hi, len(rows)), 1.0)
        W[rows, si[f"gene:{g}"]] += copies * eff
        member[rows, gidx[g]] += np.where(off, 0.0, copies)
        if fam in fidx:
            offp[rows, fidx[fam]] += np.where(off, copies, 0.0)
        for el, k in (world.gene_flank_elements.get(g, {}) if flanks else {}).items():
            W[rows, si[f"element:{el}"]] += copies * k

    def tandem(rows):
        dup = rng.random(len(rows)) < cfg.tandem_dup_rate
        return np.where(dup, np.where(rng.random(len(rows)) < 0.85, 2.0, 3.0), 1.0)

    for k in np.unique(lineage):
        rows_all = np.flatnonzero(lineage == k)
        lin = world.lineages[k]
        for acq in lin.acquisitions:
            rows = rows_all[rng.random(len(rows_all)) < acq["prevalence"]]
            if not len(rows):
                continue
            c = acq["contig"]
            pcn = _lognormal_range(rng, *pcn_range[c], len(rows))
            W[rows, si[f"backbone:{c}:{acq['variant']}"]] += pcn
            pcn_contig[rows, cidx[c]] += pcn
            for el, cnt in world.contig_elements[c].items():
                W[rows, si[f"element:{el}"]] += pcn * cnt
            has_gene = rng.random(len(rows)) >= acq["geneless"]
            r = rows[has_gene]
            add_gene(r, acq["gene"], pcn[has_gene] * tandem(r))
            for g in acq["cargo"]:
                add_gene(r, g, pcn[has_gene] * tandem(r))
        for g, prev in lin.cole.items():
            rows = rows_all[rng.random(len(rows_all)) < prev]
            if len(rows):
                # small mobilisable plasmids carry the gene without the panel contig's flanks
                add_gene(rows, g, _lognormal_range(rng, *world.strengths.pcn_by_type["ColE-like"], len(rows)),
                         flanks=False)
        if lin.chrom_ctxm15 > 0 and "blaCTX-M-15" in gidx:
            rows = rows_all[rng.random(len(rows_all)) < lin.chrom_ctxm15]
            if len(rows):
                add_gene(rows, "blaCTX-M-15", np.ones(len(rows)))
        for el, copies in lin.elsewhere.items():
            if copies > 0 and f"element:{el}" in si:
                keep = rng.random(len(rows_all)) >= 0.1
                W[rows_all, si[f"element:{el}"]] += keep * copies * np.exp(rng.normal(0, 0.35, len(rows_all)))
    # sporadic carriage of any reference plasmid, outside lineage associations
    for c in contigs:
        rows = np.flatnonzero((rng.random(n) < cfg.sporadic_plasmid_rate) & (pcn_contig[:, cidx[c]] == 0))
        if not len(rows):
            continue
        pcn = _lognormal_range(rng, *pcn_range[c], len(rows))
        variant = rng.integers(0, world.n_variants, len(rows))
        for v in range(world.n_variants):
            W[rows[variant == v], si[f"backbone:{c}:{v}"]] += pcn[variant == v]
        pcn_contig[rows, cidx[c]] += pcn
        for el, cnt in world.contig_elements[c].items():
            W[rows, si[f"element:{el}"]] += pcn * cnt
        g = world.contigs.loc[world.contigs["contig"] == c, "gene"].iloc[0]
        if g:
            add_gene(rows, g, pcn * tandem(rows))
    return W, member, offp, pcn_contig


