"""The realistic simulated KpSC cohort (SPEC §4.1): stores, ground truth, truth tables.

Two layers of randomness:

* the **world** — the reference's per-bin features (GC, repeats, accessory
  islands), the lineage catalogue (species, STs, their deletions, plasmids and
  mobile elements) and the plasmid read-placement matrix. It is built from the
  fixed ``WORLD_SEED`` because it stands for biology that does not change
  between cohorts;
* the **cohort** — which samples are drawn, their depth, batch, GC bias,
  replication state, copy-number events, plasmid copy numbers and the
  read-count noise. It is seeded by ``seed``; counts are drawn per block of
  ``BLOCK`` samples from ``SeedSequence([seed, block])``, so they do not depend
  on how the work is chunked.

Counts are read starts per bin (both mates counted). Coverage C (x) with read
length L (bp) gives C * 1000 / L read starts per 1 kb bin: 40x at 150 bp is
267, 200x at 100 bp is 2,000. Every parameter and where its value comes from
is described in ``docs/simulation.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from . import reference
from .atomic import atomic_dir, write_json, write_text, write_tsv
from .errors import InputError, ParamsError
from .progress import stderr_logger
from .store import write_store

SIMULATOR_VERSION = 1
WORLD_SEED = 11286  # fixed: the reference and the population are the same for every cohort
BLOCK = 256  # samples per noise block (fixed so counts do not depend on chunking)
SPECIES = ("Klebsiella pneumoniae", "Klebsiella quasipneumoniae", "Klebsiella variicola")
CG258 = ("ST258", "ST11", "ST512", "ST340", "ST437")
AMRFINDER_COLUMNS = ("blaSHV", "blaKPC", "blaNDM", "blaCTX-M", "qnrB", "blaOXA-48-like", "aac6-Ib-cr")

# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SimConfig:
    """Cohort-level settings; ``hard=True`` and ``**overrides`` change them (see docs/simulation.md).

    Ranges are (low, high). Depth in x coverage, rates are fractions of samples.
    """

    depth_range: tuple = (40.0, 200.0)          # x coverage of normal samples
    read_lengths: tuple = (100, 125, 150)       # bp, one per sequencing batch
    insert_range: tuple = (300.0, 550.0)        # bp, mean insert size per batch
    n_batches: int = 10
    ori_ter_range: tuple = (1.0, 2.5)           # ori/ter depth ratio
    ori_ter_beta: tuple = (2.0, 4.0)            # Beta shape of the ratio within its range
    gc_strength: float = 1.0                    # multiplies every batch GC-bias curvature
    smooth_sd_range: tuple = (0.02, 0.06)       # log-scale sd of the neighbour-correlated wave
    smooth_rho_range: tuple = (0.6, 0.9)        # lag-1 correlation of that wave (1 kb bins)
    nb_phi_range: tuple = (0.002, 0.010)        # negative-binomial dispersion (var = mu + phi mu^2)
    outlier_rate: float = 2e-4                  # per sample x bin
    species_weights: tuple = (0.86, 0.08, 0.06)  # Kp, Kq, Kv
    shv_amp_rate: float = 0.035                 # share of K. pneumoniae with a blaSHV amplification
    shv_cn_decay: float = 0.55                  # P(CN = k) ~ decay^(k - 2), k = 2..10
    shv_nonint_rate: float = 0.3                # amplified samples with a non-integer population mean
    shv_subclonal_rate: float = 0.0             # amplified samples carried by a subclone (mean 1.2-2)
    other_amp_rate: float = 0.03                # other chromosomal amplifications (10-300 kb, CN 2-3)
    private_del_rate: float = 0.10              # samples with private deletions (5-50 kb)
    plasmid_shv_rate: float = 0.04              # samples with a plasmid-borne blaSHV copy
    sporadic_plasmid_rate: float = 0.01         # per plasmid type, outside lineage associations
    tandem_dup_rate: float = 0.03               # gene carriages duplicated in tandem on the plasmid
    mixed_rate: float = 0.02                    # samples with a minority strain
    minority_range: tuple = (0.05, 0.30)        # minority strain fraction
    low_quality_rate: float = 0.01              # very low depth and/or contamination-like noise
    gt_fn_rate: float = 0.03                    # AMRFinder label noise, present -> absent
    gt_fp_rate: float = 0.005                   # AMRFinder label noise, absent -> present
    kleborate_noise_rate: float = 0.03          # blaSHV copy count off by one
    holdout_fraction: float = 0.25
    empty_st_rate: float = 0.0                  # extra ST erasure on top of the novel lineages

    @classmethod
    def make(cls, hard: bool = False, **overrides) -> "SimConfig":
        """Defaults, the hard preset, then ``overrides`` (validated: names and types)."""
        cfg = cls()
        if hard:
            cfg = dataclasses.replace(
                cfg, depth_range=(15.0, 60.0), gc_strength=2.5, ori_ter_range=(1.3, 3.0),
                ori_ter_beta=(3.0, 3.0), smooth_sd_range=(0.04, 0.10), nb_phi_range=(0.005, 0.02),
                shv_subclonal_rate=0.4, shv_nonint_rate=0.5, mixed_rate=0.05, low_quality_rate=0.03,
                gt_fn_rate=0.05, gt_fp_rate=0.01)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        clean = {}
        for key, value in overrides.items():
            if key not in fields:
                match = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
                hint = f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(fields)}"
                raise ParamsError(f"simulate: unknown setting '{key}'{hint}")
            default = getattr(cfg, key)
            if isinstance(default, tuple):
                if not isinstance(value, (list, tuple)) or len(value) != len(default) or \
                        not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                    raise ParamsError(f"simulate: setting '{key}' = {value!r}; expected a list of "
                                      f"{len(default)} numbers like {list(default)}")
                value = tuple(type(d)(v) for d, v in zip(default, value))
                if key.endswith("_range") and not 0 <= value[0] <= value[1]:
                    raise ParamsError(f"simulate: setting '{key}' = {list(value)}; expected 0 <= low <= high")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ParamsError(f"simulate: setting '{key}' = {value!r}; expected a positive integer")
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ParamsError(f"simulate: setting '{key}' = {value!r}; expected a number >= 0")
                value = float(value)
            clean[key] = value
        return dataclasses.replace(cfg, **clean)


# ----------------------------------------------------------------------------- the world
# Plasmid types of the reference contigs, keyed by the gene each contig was chosen for;
# contigs not listed are large IncF-like plasmids.
PLASMID_TYPE_BY_GENE = {"blaOXA-48": "IncL", "blaOXA-181": "IncX3"}
PCN_RANGE = {"IncF-like": (1.0, 3.0), "IncL": (1.0, 5.0), "IncX3": (2.0, 6.0), "ColE-like": (10.0, 40.0)}
# Near-identical panel members (a few SNPs): MAPQ-0 reads split between them.
NEAR_IDENTICAL = (("blaCTX-M-14", "blaCTX-M-27", "blaCTX-M-65"), ("blaNDM-1", "blaNDM-5"),
                  ("blaOXA-48", "blaOXA-181"))
SELF_SHARE = {1: 1.0, 2: 0.65, 3: 0.55}  # share of a gene's reads kept by its own contig
# Mobile elements inside the genes' 1 kb bins: (element, side, bp inside the gene bins).
FLANKS = {
    "blaCTX-M-15": (("ISEcp1", "up", 340), ("Tn3", "down", 700)),
    "blaCTX-M-14": (("ISEcp1", "up", 500), ("IS903", "down", 700)),
    "blaCTX-M-27": (("ISEcp1", "up", 150), ("IS26", "down", 250)),
    "blaCTX-M-65": (("ISEcp1", "up", 180), ("IS903", "down", 400)),
    "blaOXA-181": (("ISEcp1", "up", 400),),
    "blaKPC-2": (("ISKpn7", "up", 480), ("ISKpn6", "down", 300)),
    "blaNDM-1": (("ISAba125", "up", 850),),
    "blaNDM-5": (("IS26", "up", 250),),
    "blaOXA-48": (("IS1999", "up", 400),),
    "blaTEM-1": (("Tn3", "up", 400), ("Tn3", "down", 200)),
    "qnrB1": (("ISCR1", "up", 200), ("sul1", "down", 300)),
    "aac6-Ib-cr": (("intI1", "up", 80), ("intI1", "down", 120)),
}
# Further copies of elements on plasmid backbones: (element, copies, bp per copy).
BACKBONE_ELEMENTS = (("IS26", 4, 820), ("IS903", 1, 1057), ("Tn3", 2, 2000), ("intI1", 3, 1000),
                     ("sul1", 3, 840), ("ISCR1", 1, 1500))
INCF_CORE_BP = 20000  # transfer/replication region shared by every IncF-like contig
# Element copies carried elsewhere (non-reference plasmids, chromosome) by a lineage:
# (probability that a lineage carries it, median copies when it does).
ELSEWHERE = {"ISEcp1": (0.35, 2.5), "IS26": (0.75, 4.0), "Tn3": (0.5, 3.0), "IS903": (0.45, 2.5),
             "intI1": (0.5, 1.0), "sul1": (0.6, 2.0), "ISCR1": (0.15, 1.0), "ISKpn7": (0.03, 1.0),
             "ISKpn6": (0.03, 1.0), "ISAba125": (0.02, 1.0), "IS1999": (0.03, 1.0), "IncF_core": (0.7, 1.7)}
# Off-panel alleles that map only partly: family -> (probability per carriage, mapping efficiency range).
OFF_PANEL = {"blaCTX-M": (0.06, (0.15, 0.5)), "qnrB": (0.3, (0.4, 0.8))}
# Co-carriage: genes a plasmid of a given primary gene may also carry (probability per lineage).
CARGO = {
    "blaKPC-2": {"blaTEM-1": 0.5}, "blaCTX-M-15": {"aac6-Ib-cr": 0.7, "blaTEM-1": 0.5, "qnrB1": 0.1},
    "blaNDM-1": {"qnrB1": 0.2, "aac6-Ib-cr": 0.3, "blaCTX-M-15": 0.2}, "blaCTX-M-14": {"blaTEM-1": 0.2},
    "qnrB1": {"aac6-Ib-cr": 0.2, "blaCTX-M-15": 0.2}, "blaNDM-5": {"blaCTX-M-15": 0.2, "blaTEM-1": 0.3},
    "blaCTX-M-65": {"blaKPC-2": 0.2, "blaTEM-1": 0.3}, "blaCTX-M-27": {"blaTEM-1": 0.3},
    "aac6-Ib-cr": {"blaCTX-M-15": 0.3, "blaTEM-1": 0.2},
}
# Lineage-plasmid associations (prevalence within the ST), a stylised picture of KpSC epidemiology.
ASSOCIATIONS = {
    "ST258": {"blaKPC-2": 0.85}, "ST512": {"blaKPC-2": 0.85},
    "ST11": {"blaKPC-2": 0.6, "blaCTX-M-65": 0.4}, "ST340": {"blaKPC-2": 0.4}, "ST437": {"blaKPC-2": 0.5},
    "ST307": {"blaCTX-M-15": 0.85}, "ST147": {"blaNDM-1": 0.4, "blaOXA-48": 0.3, "blaCTX-M-15": 0.5},
    "ST15": {"blaCTX-M-15": 0.6, "blaOXA-48": 0.2}, "ST101": {"blaOXA-48": 0.5, "blaCTX-M-15": 0.4},
    "ST14": {"blaNDM-1": 0.3, "blaOXA-181": 0.3}, "ST231": {"blaOXA-181": 0.6, "blaCTX-M-15": 0.5},
    "ST383": {"blaNDM-5": 0.5, "blaOXA-48": 0.4}, "ST37": {"qnrB1": 0.4}, "ST392": {"blaCTX-M-14": 0.3},
    "ST405": {"blaOXA-48": 0.5, "blaCTX-M-15": 0.5}, "ST17": {"blaCTX-M-14": 0.3},
    "ST20": {"blaCTX-M-27": 0.3}, "ST16": {"blaNDM-5": 0.3}, "ST45": {"blaCTX-M-15": 0.3, "qnrB1": 0.2},
}
# K. pneumoniae STs with relative sizes (clinical collections are dominated by a few clones).
KP_NAMED_STS = (("ST258", 14), ("ST11", 10), ("ST307", 7), ("ST147", 5), ("ST15", 5), ("ST512", 4),
                ("ST101", 3), ("ST14", 2.5), ("ST23", 2), ("ST37", 1.5), ("ST45", 1.5), ("ST405", 1.2),
                ("ST392", 1.0), ("ST231", 1.0), ("ST383", 0.8), ("ST17", 0.8), ("ST20", 0.6), ("ST340", 0.6),
                ("ST437", 0.5), ("ST16", 0.5), ("ST36", 0.4), ("ST86", 0.4), ("ST65", 0.4), ("ST25", 0.4),
                ("ST48", 0.4), ("ST29", 0.3), ("ST35", 0.3))
KP_TAIL = (110, 22.0)   # further STs and their summed weight (Zipf)
KP_NOVEL = (12, 3.5)    # lineages without an assigned ST (empty ST) and their summed weight
KQ_KV_STS = 20          # STs per K. quasipneumoniae / K. variicola
LIBRARY_TYPES = ("PCR", "Nextera", "PCR-free")
# GC-bias curve per batch type: log2 depth factor = -kappa * ((gc - peak) / 0.1)^2.
GC_CURVES = {"PCR": (0.30, 0.47), "Nextera": (0.25, 0.60), "PCR-free": (0.08, 0.52)}
LINEAGE_DELETION = {"CG258": (0.0, 0.01), "other": (0.03, 0.12)}  # fraction of the chromosome


@dataclass
class Lineage:
    """One lineage (an ST of one species) of the simulated population."""

    name: str
    species: int
    st: str
    weight: float
    deletions: np.ndarray           # (k, 2) bp, 1-based inclusive, absent from this lineage
    acquisitions: list = field(default_factory=list)  # dicts: contig, variant, prevalence, genes, cargo
    elsewhere: dict = field(default_factory=dict)     # element -> copies (0 when absent)
    cole: dict = field(default_factory=dict)          # gene -> prevalence on a small ColE-like plasmid
    chrom_ctxm15: float = 0.0                         # prevalence of a chromosomal blaCTX-M-15


@dataclass
class World:
    """Fixed reference features, population catalogue and plasmid read placement."""

    chrom_bins: np.ndarray
    plasmid_bins: np.ndarray
    genome_length: int
    ter_position: int
    gc: np.ndarray                  # chromosome per-bin GC fraction
    mappability: np.ndarray         # share of a bin's reads kept at MQ >= 20
    replichore_distance: np.ndarray  # 0 at oriC, 1 at the terminus
    islands: np.ndarray             # (k, 2) bp accessory islands (lower GC, deletable)
    repeats: pd.DataFrame           # kind start end (bp), unmappable at MQ >= 20
    hot_bins: np.ndarray            # bins with extra reads in every sample (collapsed near-repeats)
    hot_factor: np.ndarray
    species_map: np.ndarray         # (3, n_bins) mapping efficiency relative to K. pneumoniae
    shv: dict                       # gene, bins, overlap (bp share of each bin)
    plasmid_gc: np.ndarray
    lineages: list
    # plasmid read placement: expected per-bin depth = weights @ A (units: copies x bin share)
    A: np.ndarray
    sources: list                   # names of A's rows
    src_index: dict
    contigs: pd.DataFrame           # contig length type gene
    genes: pd.DataFrame             # plasmid panel
    families: dict
    gene_family: dict
    contig_elements: dict           # contig -> {element: copies} on the backbone
    gene_flank_elements: dict       # gene -> {element: copies}
    n_variants: int = 3


def _interval_overlap(starts: np.ndarray, ends: np.ndarray, s: int, e: int) -> np.ndarray:
    """bp of [s, e] inside each bin [starts, ends] (1-based inclusive)."""
    return np.clip(np.minimum(ends, e) - np.maximum(starts, s) + 1, 0, None)


def _ar1(rng: np.random.Generator, n: int, rho: float, sd: float) -> np.ndarray:
    z = rng.standard_normal(n) * sd * math.sqrt(1 - rho * rho)
    return lfilter([1.0], [1.0, -rho], z)


def _place(rng, length_bp, taken, genome, tries=200, lo=1, hi=None):
    """Random start of an interval of ``length_bp`` avoiding ``taken`` (list of (s, e)); None if no room."""
    hi = genome if hi is None else hi
    for _ in range(tries):
        s = int(rng.integers(lo, hi - length_bp))
        e = s + length_bp - 1
        if all(e < ts or s > te for ts, te in taken):
            return s, e
    return None


@functools.lru_cache(maxsize=2)
def build_world(world_seed: int = WORLD_SEED) -> World:
    """The fixed part of the simulation (reference features, lineages, plasmid layout)."""
    rng = np.random.default_rng(world_seed)
    cbins = reference.chromosome_bins()
    pbins = reference.plasmid_bins()
    contigs = reference.load_contigs()
    G = int(contigs.loc[contigs["role"] == "chromosome", "length"].iloc[0])
    starts, ends = cbins["start"], cbins["end"]
    n = len(cbins)
    mid = (starts + ends) / 2.0
    # oriC at the contig start (dnaA end of NC_016845.1), terminus roughly opposite
    ter = int(round(0.49 * G))
    dist = np.where(mid <= ter, mid / ter, (G - mid) / (G - ter))

    chrom_panel = reference.load_gene_panel(None, "chromosome").genes
    shv_row = chrom_panel.iloc[0]
    protected = [(int(shv_row.start) - 40000, int(shv_row.end) + 40000), (1, 20000), (G - 20000, G)]

    # rRNA operons: 8, in the oriC half of the chromosome as in enterobacteria
    repeats = []
    taken = list(protected)
    for k in range(8):
        length = int(rng.integers(5000, 5600))
        for _ in range(200):
            off = int(rng.integers(-1_300_000, 1_300_000))
            s = (off % G) + 1
            e = s + length - 1
            if e < G and all(e + 60000 < ts or s - 60000 > te for ts, te in taken):
                break
        taken.append((s, e))
        repeats.append(("rRNA", s, e))
    rrna = list(taken[3:])
    # accessory islands: lower GC, where lineage and private deletions fall
    islands = []
    occupied = [(s - 5000, e + 5000) for s, e in protected + rrna]
    for _ in range(45):
        length = int(round(math.exp(rng.uniform(math.log(5000), math.log(100000)))))
        spot = _place(rng, length, occupied + [(s - 10000, e + 10000) for s, e in islands], G)
        if spot:
            islands.append(spot)
    islands = np.array(sorted(islands), dtype=np.int64)
    # IS elements: 60 % inside islands
    is_types = (("IS26", 820), ("IS903", 1057), ("IS5", 1195), ("IS1", 768), ("IS3", 1258), ("ISKpn1", 1300))
    for k in range(28):
        name, length = is_types[int(rng.integers(len(is_types)))]
        if rng.random() < 0.6:
            isl = islands[int(rng.integers(len(islands)))]
            s = int(rng.integers(isl[0], max(isl[0] + 1, isl[1] - length)))
        else:
            spot = _place(rng, length, protected + rrna, G)
            s = spot[0]
        repeats.append((name, s, s + length - 1))
    # prophage repeats: shared segments in four long islands
    long_islands = islands[(islands[:, 1] - islands[:, 0]) > 30000]
    for isl in long_islands[rng.permutation(len(long_islands))[:4]]:
        for _ in range(2):
            length = int(rng.integers(1000, 4000))
            s = int(rng.integers(isl[0], isl[1] - length))
            repeats.append(("prophage", s, s + length - 1))
    repeats = pd.DataFrame(repeats, columns=["kind", "start", "end"]).sort_values("start", ignore_index=True)

    bin_len = (ends - starts + 1).astype(float)
    covered = np.zeros(n)
    mask = np.zeros(G + 2, dtype=bool)
    for r in repeats.itertuples():
        mask[r.start:r.end + 1] = True
    csum = np.concatenate([[0], np.cumsum(mask[1:G + 1])])
    covered = (csum[ends] - csum[starts - 1]) / bin_len
    mappability = 1.0 - 0.97 * covered  # a few reads keep a unique mate

    # GC: core around 59 %, islands 47-55 %, neighbour-correlated noise
    gc = 0.59 + _ar1(rng, n, 0.6, 0.022)
    for s, e in islands:
        sel = _interval_overlap(starts, ends, s, e) > 500
        gc[sel] = rng.uniform(0.47, 0.55) + _ar1(rng, int(sel.sum()), 0.6, 0.025)
    for r in repeats.itertuples():
        sel = _interval_overlap(starts, ends, r.start, r.end) > 500
        gc[sel] = 0.53 + rng.normal(0, 0.01, int(sel.sum()))
    gc = np.clip(gc, 0.30, 0.75)

    hot = rng.choice(np.flatnonzero(mappability > 0.99), size=6, replace=False)
    hot_factor = rng.uniform(1.5, 2.5, size=6)

    # Kq / Kv reads map to the Kp reference less well, and in divergent runs much less
    species_map = np.ones((3, n))
    for sp in (1, 2):
        base = np.clip(0.93 + _ar1(rng, n, 0.5, 0.03), 0.6, 1.0)
        for _ in range(40):
            s = int(rng.integers(0, n - 15))
            base[s:s + int(rng.integers(2, 15))] = rng.uniform(0.2, 0.7)
        species_map[sp] = base
    shv_overlap = _interval_overlap(starts, ends, int(shv_row.start), int(shv_row.end)) / bin_len
    shv_bins = np.flatnonzero(shv_overlap > 0)
    ortholog_efficiency = {1: 0.35, 2: 0.30}  # OKP (Kq) and LEN (Kv) reads partly map to blaSHV
    for sp, eff in ortholog_efficiency.items():
        species_map[sp, shv_bins] = (1 - shv_overlap[shv_bins]) * species_map[sp, shv_bins] + \
            shv_overlap[shv_bins] * eff
    shv = {"gene": str(shv_row.gene), "start": int(shv_row.start), "end": int(shv_row.end),
           "bins": shv_bins, "overlap": shv_overlap[shv_bins]}

    # --- plasmids
    plasmids = contigs[contigs["role"] == "plasmid"].reset_index(drop=True)
    panel = reference.load_gene_panel(None, "plasmid").genes
    families = reference.load_gene_families(None)
    gene_family = {g: f for f, members in families.items() for g in members}
    gene_of_contig = {row.contig: row.gene for row in panel.itertuples()}
    ptype = {c: PLASMID_TYPE_BY_GENE.get(gene_of_contig.get(c, ""), "IncF-like") for c in plasmids["contig"]}
    cinfo = pd.DataFrame({"contig": plasmids["contig"], "length": plasmids["length"],
                          "type": [ptype[c] for c in plasmids["contig"]],
                          "gene": [gene_of_contig.get(c, "") for c in plasmids["contig"]]})
    plasmid_gc_mean = {"IncF-like": 0.53, "IncL": 0.51, "IncX3": 0.49}
    A, src_names, contig_elements, gene_flank_elements = _plasmid_matrix(rng, cinfo, panel, pbins)
    plasmid_gc = np.empty(len(pbins))
    for c, sl in _contig_slices(pbins).items():
        plasmid_gc[sl] = plasmid_gc_mean[ptype[c]] + _ar1(rng, sl.stop - sl.start, 0.6, 0.02)
    plasmid_gc = np.clip(plasmid_gc, 0.3, 0.75)

    lineages = _build_lineages(rng, islands, cinfo, panel)
    return World(
        chrom_bins=cbins, plasmid_bins=pbins, genome_length=G, ter_position=ter, gc=gc,
        mappability=mappability, replichore_distance=dist, islands=islands, repeats=repeats,
        hot_bins=hot, hot_factor=hot_factor, species_map=species_map, shv=shv, plasmid_gc=plasmid_gc,
        lineages=lineages, A=A, sources=src_names, src_index={s: i for i, s in enumerate(src_names)},
        contigs=cinfo, genes=panel, families=families, gene_family=gene_family,
        contig_elements=contig_elements, gene_flank_elements=gene_flank_elements)


def _contig_slices(bins: np.ndarray) -> dict:
    chrom = bins["chrom"]
    out = {}
    change = np.flatnonzero(chrom[1:] != chrom[:-1]) + 1
    for s, e in zip(np.concatenate([[0], change]), np.concatenate([change, [len(chrom)]])):
        out[str(chrom[s])] = slice(int(s), int(e))
    return out


def _plasmid_matrix(rng, cinfo, panel, pbins):
    """Read-placement matrix A (sources x plasmid bins), in copies x share of the bin.

    Sources: the backbone of each contig in ``n_variants`` variants (variants 1-2 lack
    2-20 kb segments), each panel gene, each mobile element (reads of an element spread
    evenly over its k reference copies, as MAPQ-0 reads are placed at random).
    """
    n_variants = 3
    slices = _contig_slices(pbins)
    genes = panel.set_index("gene")
    gene_names = list(panel["gene"])
    # label every bp: 0 backbone, 1 gene, 2.. element copies
    labels = {c: np.zeros(int(L), dtype=np.int16) for c, L in zip(cinfo["contig"], cinfo["length"])}
    element_copies: dict[str, list] = {}  # element -> [(contig, s, e)]
    gene_flank_elements: dict[str, dict] = {}
    contig_elements: dict[str, dict] = {c: {} for c in cinfo["contig"]}
    for g in gene_names:
        row = genes.loc[g]
        labels[row.contig][row.start - 1:row.end] = 1
        first_bin_start = (row.start - 1) // 1000 * 1000 + 1
        last_bin_end = min((row.end - 1) // 1000 * 1000 + 1000, len(labels[row.contig]))
        flanks = {}
        for element, side, bp in FLANKS.get(g, ()):
            if side == "up":
                e = row.start - 50
                s = max(first_bin_start, e - bp + 1)
            else:
                s = row.end + 50
                e = min(last_bin_end, s + bp - 1)
            if e >= s:
                element_copies.setdefault(element, []).append((row.contig, s, e))
                flanks[element] = flanks.get(element, 0) + 1
        gene_flank_elements[g] = flanks
    # backbone copies of elements and the shared IncF core, away from the gene bins
    def free_spot(contig, length):
        lab = labels[contig]
        g_rows = genes[genes["contig"] == contig]
        taken = [((r.start - 1) // 1000 * 1000 - 2000, (r.end - 1) // 1000 * 1000 + 3000) for r in g_rows.itertuples()]
        taken += [(s - 500, e + 500) for el, cps in element_copies.items() for (c, s, e) in cps if c == contig]
        return _place(rng, length, taken, len(lab))
    incf = list(cinfo.loc[cinfo["type"] == "IncF-like", "contig"])
    for c in incf:
        spot = free_spot(c, INCF_CORE_BP)
        if spot:
            element_copies.setdefault("IncF_core", []).append((c, *spot))
            contig_elements[c]["IncF_core"] = 1
    for element, copies, bp in BACKBONE_ELEMENTS:
        for c in rng.choice(incf, size=copies, replace=False):
            spot = free_spot(str(c), bp)
            if spot:
                element_copies.setdefault(element, []).append((str(c), *spot))
                contig_elements[str(c)][element] = contig_elements[str(c)].get(element, 0) + 1
    elements = sorted(element_copies)
    for k, element in enumerate(elements):
        for c, s, e in element_copies[element]:
            labels[c][s - 1:e] = 2 + k
    # variants lacking backbone segments
    missing = {}
    for c in cinfo["contig"]:
        lab = labels[c]
        missing[c] = [np.zeros(len(lab), dtype=bool)]
        for v in range(1, n_variants):
            m = np.zeros(len(lab), dtype=bool)
            for _ in range(int(rng.integers(1, 4))):
                length = int(rng.integers(2000, 20000))
                if length < len(lab) // 3:
                    s = int(rng.integers(0, len(lab) - length))
                    m[s:s + length] = True
            m &= lab == 0
            missing[c].append(m)
    # assemble A
    names = [f"backbone:{c}:{v}" for c in cinfo["contig"] for v in range(n_variants)]
    names += [f"gene:{g}" for g in gene_names] + [f"element:{el}" for el in elements]
    index = {s: i for i, s in enumerate(names)}
    A = np.zeros((len(names), len(pbins)))
    for c, sl in slices.items():
        lab = labels[c]
        edges = np.append(np.arange(0, len(lab), 1000), len(lab))
        for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            b = sl.start + j
            seg = lab[lo:hi]
            for v in range(n_variants):
                A[index[f"backbone:{c}:{v}"], b] = np.count_nonzero((seg == 0) & ~missing[c][v][lo:hi]) / 1000.0
            for k, element in enumerate(elements):
                bp = np.count_nonzero(seg == 2 + k)
                if bp:
                    A[index[f"element:{element}"], b] += bp / 1000.0 / len(element_copies[element])
    groups = {g: grp for grp in NEAR_IDENTICAL for g in grp if all(x in genes.index for x in grp)}
    for g in gene_names:
        grp = groups.get(g, (g,))
        self_share = SELF_SHARE[len(grp)]
        for other in grp:
            share = self_share if other == g else (1 - self_share) / (len(grp) - 1)
            row = genes.loc[other]
            sl = slices[row.contig]
            bs, be = pbins["start"][sl], pbins["end"][sl]
            ov = _interval_overlap(bs, be, int(row.start), int(row.end))
            len_g = genes.loc[g, "end"] - genes.loc[g, "start"] + 1
            len_o = row.end - row.start + 1
            A[index[f"gene:{g}"], sl] += share * ov / 1000.0 * (len_g / len_o)
    return A, names, contig_elements, gene_flank_elements


def _lognormal_range(rng, lo, hi, size):
    """Log-normal draws whose central 95 % spans [lo, hi]."""
    mu = (math.log(lo) + math.log(hi)) / 2
    sigma = (math.log(hi) - math.log(lo)) / (2 * 1.96)
    return np.exp(rng.normal(mu, sigma, size))


def _build_lineages(rng, islands, cinfo, panel) -> list:
    """Species x ST catalogue with deletions, plasmid acquisitions and mobile elements."""
    named = [s for s, _ in KP_NAMED_STS]
    used = {int(s[2:]) for s in named}
    pool = np.array([k for k in range(1, 7000) if k not in used])
    extra = rng.choice(pool, size=KP_TAIL[0] + 2 * KQ_KV_STS, replace=False)
    entries = [(0, st, w) for st, w in KP_NAMED_STS]
    zipf = 1.0 / np.arange(1, KP_TAIL[0] + 1) ** 0.8
    entries += [(0, f"ST{k}", w) for k, w in zip(extra[:KP_TAIL[0]], zipf / zipf.sum() * KP_TAIL[1])]
    entries += [(0, "", KP_NOVEL[1] / KP_NOVEL[0]) for _ in range(KP_NOVEL[0])]
    zipf = 1.0 / np.arange(1, KQ_KV_STS + 1) ** 0.8
    for sp in (1, 2):
        sts = extra[KP_TAIL[0] + (sp - 1) * KQ_KV_STS: KP_TAIL[0] + sp * KQ_KV_STS]
        entries += [(sp, f"ST{k}", w) for k, w in zip(sts, zipf / zipf.sum())]
    species_del = {}
    for sp in (1, 2):  # deletions shared by every lineage of the species
        species_del[sp] = _pick_deletions(rng, islands, rng.uniform(0.02, 0.04) * 5_333_942, [])
    gene_list = list(panel["gene"])
    contig_of = dict(zip(panel["gene"], panel["contig"]))
    lineages = []
    for k, (sp, st, w) in enumerate(entries):
        group = "CG258" if st in CG258 else "other"
        lo, hi = LINEAGE_DELETION[group]
        target = rng.uniform(lo, hi) * 5_333_942
        base = species_del.get(sp, [])
        dels = list(base) + _pick_deletions(rng, islands, target - sum(e - s + 1 for s, e in base), base)
        name = f"{['Kp', 'Kq', 'Kv'][sp]}-{st or f'novel{k}'}"
        lin = Lineage(name=name, species=sp, st=st, weight=float(w),
                      deletions=np.array(sorted(dels), dtype=np.int64).reshape(-1, 2))
        assoc = dict(ASSOCIATIONS.get(st, {}))
        for g in gene_list:  # some further lineage-plasmid associations at random
            if g not in assoc and rng.random() < 0.06:
                assoc[g] = float(rng.beta(2, 3))
        for g, prev in assoc.items():
            cargo = [c for c, p in CARGO.get(g, {}).items() if rng.random() < p]
            lin.acquisitions.append({"contig": contig_of[g], "gene": g, "prevalence": float(prev),
                                     "variant": int(rng.integers(0, 3)), "cargo": cargo,
                                     "geneless": 0.1})
        for element, (p, med) in ELSEWHERE.items():
            lin.elsewhere[element] = float(med * math.exp(rng.normal(0, 0.3))) if rng.random() < p else 0.0
        for g in ("qnrB1", "blaTEM-1"):
            if rng.random() < 0.08:
                lin.cole[g] = float(rng.uniform(0.3, 0.8))
        if st == "ST15" or rng.random() < 0.03:
            lin.chrom_ctxm15 = float(rng.uniform(0.3, 0.7))
        lineages.append(lin)
    return lineages


def _pick_deletions(rng, islands, target_bp, already) -> list:
    """Whole islands or 5 kb+ parts of them, until ``target_bp`` is used up."""
    out = []
    if target_bp < 5000:
        return out
    taken = {(int(s), int(e)) for s, e in already}
    for i in rng.permutation(len(islands)):
        s, e = int(islands[i, 0]), int(islands[i, 1])
        if any(not (e < ts or s > te) for ts, te in taken):
            continue
        length = e - s + 1
        if length > target_bp or rng.random() < 0.3:
            part = int(min(target_bp, rng.uniform(0.4, 1.0) * length))
            if part < 5000:
                continue
            off = int(rng.integers(0, length - part + 1))
            s, e = s + off, s + off + part - 1
        out.append((s, e))
        taken.add((s, e))
        target_bp -= e - s + 1
        if target_bp < 5000:
            break
    return out


# ----------------------------------------------------------------------------- the cohort


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
    """Draw every per-sample quantity of the cohort except the read-count noise."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0407]))
    n = n_samples
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

    # sequencing batches: unequal sizes, each with a library type, read length and insert size
    nb = cfg.n_batches
    batch_p = rng.dirichlet(np.full(nb, 1.5))
    batch = rng.choice(nb, size=n, p=batch_p)
    batch_type = rng.choice(len(LIBRARY_TYPES), size=nb, p=[0.45, 0.35, 0.20])
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
    split_share = np.clip((batch_insert[batch] - read_len) / 1000.0, 0.05, 0.6)

    def exact(mask: np.ndarray, rate: float) -> np.ndarray:
        """Pick round(rate * count) samples of ``mask`` (exact shares, not binomial)."""
        cand = np.flatnonzero(mask)
        k = int(round(rate * len(cand)))
        out = np.zeros(n, dtype=bool)
        if k:
            out[rng.choice(cand, size=k, replace=False)] = True
        return out

    low_quality = exact(np.ones(n, bool), cfg.low_quality_rate)
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
    mixed = exact(~low_quality, cfg.mixed_rate)
    minority = np.full(n, -1)
    minority_frac = np.zeros(n)
    for i in np.flatnonzero(mixed):
        same = rng.random() < 0.7
        cand = np.flatnonzero((lin_species == species[i]) if same else np.ones(len(lin_species), bool))
        cand = cand[cand != lineage[i]]
        minority[i] = rng.choice(cand, p=lin_weight[cand] / lin_weight[cand].sum())
        minority_frac[i] = rng.uniform(*cfg.minority_range)

    # chromosomal events of the majority strain
    G = world.genome_length
    shv_s, shv_e = world.shv["start"], world.shv["end"]
    kp = species == 0
    shv_amp = exact(kp, cfg.shv_amp_rate)
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
    private = exact(np.ones(n, bool), cfg.private_del_rate)
    other_amp = exact(np.ones(n, bool), cfg.other_amp_rate)
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

    # plasmid-borne blaSHV (IncF-like or IncX3 PCN), seen by the chromosome store's blaSHV bins
    plasmid_shv = np.zeros(n)
    has_pshv = rng.random(n) < cfg.plasmid_shv_rate
    k = int(has_pshv.sum())
    incx3 = rng.random(k) < 0.5
    plasmid_shv[has_pshv] = np.where(incx3, _lognormal_range(rng, *PCN_RANGE["IncX3"], k),
                                     _lognormal_range(rng, *PCN_RANGE["IncF-like"], k))

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
        "read_length": read_len.astype(int), "depth": depth, "reads_per_bin": depth * 1000.0 / read_len,
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
    ctype = dict(zip(world.contigs["contig"], world.contigs["type"]))
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
            pcn = _lognormal_range(rng, *PCN_RANGE[ctype[c]], len(rows))
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
                add_gene(rows, g, _lognormal_range(rng, *PCN_RANGE["ColE-like"], len(rows)), flanks=False)
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
        pcn = _lognormal_range(rng, *PCN_RANGE[ctype[c]], len(rows))
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


# ----------------------------------------------------------------------------- counts


def _paint_cn(segments: list, n_bins: int, last_end: int) -> np.ndarray:
    """Per-bin copy number from bp segments on the 1 kb grid (CN 1 elsewhere; partial bins by overlap)."""
    edge = np.zeros(n_bins + 1)  # difference array for the bins a segment covers whole
    cn = np.ones(n_bins)
    last_len = last_end - (n_bins - 1) * 1000
    for s, e, c, _ in segments:
        i0, i1 = (s - 1) // 1000, min((e - 1) // 1000, n_bins - 1)
        d = c - 1.0
        for i in {i0, i1}:
            b_start, b_end = i * 1000 + 1, (i * 1000 + 1000 if i < n_bins - 1 else last_end)
            cn[i] += d * (min(b_end, e) - max(b_start, s) + 1) / (1000 if i < n_bins - 1 else last_len)
        if i1 - i0 > 1:
            edge[i0 + 1] += d
            edge[i1] -= d
    return cn + np.cumsum(edge[:-1])


def _noisy_counts(rng, mean: np.ndarray, smp: pd.DataFrame, outlier_rate: float) -> np.ndarray:
    """Neighbour-correlated wave, NB (gamma) overdispersion, outliers, read-pair counting."""
    b, m = mean.shape
    sd = smp["smooth_sd"].to_numpy()[:, None]
    rho = smp["smooth_rho"].to_numpy()
    z = rng.standard_normal((b, m))
    wave = np.empty_like(z)
    for r in np.unique(np.round(rho, 2)):  # lfilter per distinct rho (rounded to 0.01)
        sel = np.round(rho, 2) == r
        wave[sel] = lfilter([math.sqrt(1 - r * r)], [1.0, -r], z[sel], axis=1)
    mean = mean * np.exp(sd * wave - sd * sd / 2)
    phi = smp["nb_phi"].to_numpy()[:, None]
    mean = mean * rng.standard_gamma(1.0 / phi, size=(b, m)) * phi
    cont = smp["contamination"].to_numpy()
    for i in np.flatnonzero(cont > 0):  # contamination-like: heavy-tailed extra reads
        mean[i] += cont[i] * np.median(mean[i]) * rng.standard_gamma(0.4, m) / 0.4
    out = rng.random((b, m)) < outlier_rate
    if out.any():
        rows, cols = np.nonzero(out)
        up = rng.random(len(rows)) < 0.7
        mean[rows, cols] *= np.where(up, rng.uniform(2.0, 6.0, len(rows)), 0.1)
    s = smp["split_share"].to_numpy()[:, None]
    # both mates are counted; most pairs start both mates in the same 1 kb bin
    counts = 2 * rng.poisson(mean * (1 - s) / 2) + rng.poisson(mean * s)
    return counts.astype(np.uint32)


def _block(world: World, cohort: Cohort, rows: np.ndarray, rng, cfg: SimConfig):
    smp = cohort.samples.iloc[rows]
    cb = world.chrom_bins
    starts, ends = cb["start"], cb["end"]
    binfrac = (ends - starts + 1) / 1000.0
    b = len(rows)
    cn = np.empty((b, len(cb)))
    for r, i in enumerate(rows):
        cn[r] = _paint_cn(cohort.segments[i], len(cb), int(ends[-1]))
    log2r = np.log2(smp["ori_ter_ratio"].to_numpy())[:, None]
    kappa = smp["gc_kappa"].to_numpy()[:, None]
    peak = smp["gc_peak"].to_numpy()[:, None]
    prof = np.exp2(log2r * (0.5 - world.replichore_distance[None, :])
                   - kappa * ((world.gc[None, :] - peak) / 0.1) ** 2)
    good = world.mappability > 0.99
    norm = prof[:, good].mean(axis=1, keepdims=True)
    prof /= norm
    rpb = smp["reads_per_bin"].to_numpy()[:, None]
    sp = np.array([SPECIES.index(s) for s in smp["species"]])
    mean = rpb * prof * cn * world.species_map[sp] * world.mappability * binfrac
    pshv = smp["plasmid_shv_pcn"].to_numpy()[:, None]
    sb = world.shv["bins"]
    mean[:, sb] += rpb * pshv * world.shv["overlap"][None, :] * prof[:, sb]
    mean[:, world.hot_bins] *= world.hot_factor[None, :] * np.exp(rng.normal(0, 0.15, (b, len(world.hot_bins))))
    mean += rpb * 0.002 * binfrac  # stray reads, even in deleted regions
    chrom = _noisy_counts(rng, mean, smp, cfg.outlier_rate)

    pb = world.plasmid_bins
    pfrac = (pb["end"] - pb["start"] + 1) / 1000.0
    pprof = np.exp2(-kappa * ((world.plasmid_gc[None, :] - peak) / 0.1) ** 2) / norm
    pmean = rpb * (cohort.weights[rows] @ world.A) * pprof + rpb * 0.001 * pfrac
    plasmid = _noisy_counts(rng, pmean, smp, cfg.outlier_rate)
    return chrom, plasmid


def simulate_counts(world: World, cohort: Cohort, seed: int, cfg: SimConfig, progress=None):
    """Chromosome and plasmid counts (uint32), block by block from ``SeedSequence([seed, block])``."""
    n = len(cohort.samples)
    chrom = np.empty((n, len(world.chrom_bins)), dtype=np.uint32)
    plasmid = np.empty((n, len(world.plasmid_bins)), dtype=np.uint32)
    # one generator per block: results do not depend on how blocks are scheduled
    # (numpy's array-parameter draws hold the GIL, so threads do not help here)
    for k, lo in enumerate(range(0, n, BLOCK)):
        rows = np.arange(lo, min(n, lo + BLOCK))
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB10C, k]))
        chrom[rows], plasmid[rows] = _block(world, cohort, rows, rng, cfg)
        if progress:
            progress(len(rows))
    return chrom, plasmid


# ----------------------------------------------------------------------------- tables


def _gene_truth(world: World, cohort: Cohort, ids: np.ndarray) -> pd.DataFrame:
    genes = list(world.genes["gene"])
    fams = list(world.families)
    n = len(ids)
    parts = [pd.DataFrame({"sample_id": ids, "gene": world.shv["gene"], "level": "chromosome",
                           "true_cn": cohort.samples["shv_cn"].to_numpy()})]
    for j, g in enumerate(genes):
        parts.append(pd.DataFrame({"sample_id": ids, "gene": g, "level": "member",
                                   "true_cn": cohort.member_cn[:, j]}))
    gidx = {g: j for j, g in enumerate(genes)}
    for j, f in enumerate(fams):
        total = cohort.offpanel[:, j] + sum(cohort.member_cn[:, gidx[g]] for g in world.families[f] if g in gidx)
        parts.append(pd.DataFrame({"sample_id": ids, "gene": f, "level": "family", "true_cn": total}))
    out = pd.concat(parts, ignore_index=True)
    out["true_cn"] = out["true_cn"].round(4)
    # one block of rows per sample, in store order: chromosome, members, families
    order = np.tile(np.arange(n), len(parts))
    return out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def _ground_truth(world: World, cohort: Cohort, ids, biosamples, rng, cfg: SimConfig):
    """AMRFinder-style family presence and Kleborate-style blaSHV counts, with label noise."""
    smp = cohort.samples
    n = len(ids)
    genes = list(world.genes["gene"])
    gidx = {g: j for j, g in enumerate(genes)}
    fams = list(world.families)
    gt = pd.DataFrame({"sample_id": ids, "biosample": biosamples})
    has_pshv = smp["plasmid_shv_pcn"].to_numpy() > 0
    shv_major = smp["shv_cn_major"].to_numpy()
    flips = [[] for _ in range(n)]
    for col in AMRFINDER_COLUMNS:
        if col == world.shv["gene"]:
            present = (shv_major >= 0.5) | has_pshv
        elif col in world.families:
            j = fams.index(col)
            copies = cohort.offpanel_major[:, j] + sum(cohort.member_major[:, gidx[g]]
                                                       for g in world.families[col] if g in gidx)
            present = copies > 0
        else:
            present = np.zeros(n, dtype=bool)
        u = rng.random(n)
        flip = np.where(present, u < cfg.gt_fn_rate, u < cfg.gt_fp_rate)
        for i in np.flatnonzero(flip):
            flips[i].append(col)
        gt[col] = (present ^ flip).astype(int)
    count = np.floor(shv_major + 0.5).astype(int) + has_pshv.astype(int)
    noisy = rng.random(n) < cfg.kleborate_noise_rate
    step = np.where(rng.random(n) < 0.5, -1, 1)
    count = np.where(noisy, np.maximum(0, count + step), count)
    for i in np.flatnonzero(noisy):
        flips[i].append("kleborate_blaSHV")
    carb = [f for f in ("blaKPC", "blaNDM", "blaOXA-48-like") if f in gt]
    esbl = [f for f in ("blaCTX-M",) if f in gt]
    resistance = np.where(gt[carb].sum(axis=1) > 0, 2, np.where(gt[esbl].sum(axis=1) > 0, 1, 0)) if carb else 0
    kleb = pd.DataFrame({
        "sample_id": ids, "strain": ids, "species": smp["species"].to_numpy(), "ST": smp["ST"].to_numpy(),
        "virulence_score": rng.choice([0, 1, 3, 4], size=n, p=[0.7, 0.15, 0.1, 0.05]),
        "resistance_score": resistance, "blaSHV": count,
    })
    meta = pd.DataFrame({"sample_id": ids, "Species": smp["species"].to_numpy(), "ST": smp["ST"].to_numpy(),
                         "sample_accession": biosamples})
    return gt, kleb, meta, [",".join(f) for f in flips]


def _segments_table(cohort: Cohort, ids) -> pd.DataFrame:
    rows = [(ids[i], s, e, c, k) for i, segs in enumerate(cohort.segments) for s, e, c, k in segs]
    out = pd.DataFrame(rows, columns=["sample_id", "start", "end", "cn", "kind"])
    out.insert(1, "chrom", reference.CHROMOSOME)
    return out


def bin_features(world: World | None = None) -> pd.DataFrame:
    """Per chromosome bin: ``chrom start end gc mappability replichore_distance island repeat hot``."""
    world = world or build_world()
    cb = world.chrom_bins
    island = np.zeros(len(cb), dtype=bool)
    for s, e in world.islands:
        island |= _interval_overlap(cb["start"], cb["end"], int(s), int(e)) > 0
    repeat = np.full(len(cb), "", dtype=object)
    for r in world.repeats.itertuples():
        sel = _interval_overlap(cb["start"], cb["end"], r.start, r.end) > 0
        repeat[sel] = np.where(repeat[sel] == "", r.kind, repeat[sel])
    hot = np.zeros(len(cb), dtype=bool)
    hot[world.hot_bins] = True
    return pd.DataFrame({"chrom": cb["chrom"], "start": cb["start"], "end": cb["end"],
                         "gc": world.gc.round(4), "mappability": world.mappability.round(4),
                         "replichore_distance": world.replichore_distance.round(5),
                         "island": island, "repeat": repeat, "hot": hot})


# ----------------------------------------------------------------------------- entry points


_log = stderr_logger("simulate")


class _Progress:
    """tqdm bar on an interactive stderr; otherwise a log line per quarter."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.next_log = total, 0, 0.25
        self.bar = None
        self.enabled = enabled
        batch = os.environ.get("CNVROCK_BATCH", "").lower() in ("1", "true", "yes")
        if enabled and not batch and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="simulating", unit="sample", file=sys.stderr)

    def __call__(self, k: int) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.enabled and self.done / self.total >= self.next_log:
            _log(f"{self.done}/{self.total} samples")
            while self.done / self.total >= self.next_log:
                self.next_log += 0.25

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _settings(n_samples: int, seed: int, hard: bool, overrides: dict) -> dict:
    return {"simulator_version": SIMULATOR_VERSION, "world_seed": WORLD_SEED, "n_samples": int(n_samples),
            "seed": int(seed), "hard": bool(hard),
            "overrides": json.loads(json.dumps(overrides, sort_keys=True, default=list))}


FILES = {
    "chrom_store": "chrom_store", "plasmid_store": "plasmid_store", "amrfinder_gt": "amrfinder_gt.tsv",
    "kleborate_gt": "kleborate_gt.tsv", "metadata": "metadata.tsv", "chrom_gene_coords": "chrom_gene_coords.tsv",
    "plasmid_gene_coords": "plasmid_gene_coords.tsv", "plasmid_gene_families": "plasmid_gene_families.tsv",
    "holdout_ids": "holdout_ids.txt", "gene_truth": "truth/gene_truth.tsv", "segments": "truth/segments.tsv",
    "samples": "truth/samples.tsv", "bin_features": "truth/bin_features.tsv", "params": "params.yaml",
    "cohort": "cohort.json",
}


def simulate_cohort(data_dir, n_samples: int, seed: int = 42, *, hard: bool = False, progress: bool = True,
                    **overrides) -> dict[str, Path]:
    """Write a simulated KpSC cohort into ``data_dir`` (replaced atomically when complete).

    Parameters
    ----------
    data_dir : directory to create (an existing one is replaced only if it holds a simulated cohort).
    n_samples : number of samples (rows of both stores).
    seed : cohort seed; the same seed and settings give identical files.
    hard : the harder preset (15-60x, strong GC bias, ori/ter up to 3, subclonal amplifications).
    progress : progress on stderr (tqdm bar when interactive, else log lines).
    **overrides : any :class:`SimConfig` field, e.g. ``shv_amp_rate=0.05``.

    Returns
    -------
    dict name -> path of every file written (see ``FILES``).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    if not isinstance(n_samples, (int, np.integer)) or isinstance(n_samples, bool) or n_samples < 1:
        raise ParamsError(f"simulate: n_samples = {n_samples!r}; expected a positive integer")
    if data_dir.exists() and any(data_dir.iterdir()) and not (data_dir / "cohort.json").is_file():
        raise InputError(f"simulate: {data_dir} exists, is not empty and holds no simulated cohort "
                         f"(no cohort.json); refusing to replace it. Choose another data_dir.")
    cfg = SimConfig.make(hard=hard, **overrides)
    t0 = time.perf_counter()
    if progress:
        _log(f"simulating {n_samples} samples (seed {seed}{', hard' if hard else ''}) into {data_dir}")
    world = build_world()
    cohort = draw_cohort(world, int(n_samples), int(seed), cfg)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7AB1E]))
    batch = cohort.samples["batch"].to_numpy()
    ids, biosamples = _sample_ids(rng, batch, cfg.n_batches)
    cohort.samples.insert(0, "sample_id", ids)
    bar = _Progress(int(n_samples), bool(progress))
    try:
        chrom, plasmid = simulate_counts(world, cohort, int(seed), cfg, progress=bar)
    finally:
        bar.close()
    gt, kleb, meta, flips = _ground_truth(world, cohort, ids, biosamples, rng, cfg)
    cohort.samples["gt_label_noise"] = flips
    holdout = np.sort(rng.choice(len(ids), size=int(round(cfg.holdout_fraction * len(ids))), replace=False))
    cohort.samples["holdout"] = np.isin(np.arange(len(ids)), holdout)
    settings = _settings(n_samples, seed, hard, overrides)
    prov = {"method": "simulated", "seed": int(seed), "hard": bool(hard), "simulator_version": SIMULATOR_VERSION,
            "world_seed": WORLD_SEED, "reference": "HS11286 (NC_016845.1) + 12 AMR plasmid contigs"}
    with atomic_dir(data_dir) as tmp:
        write_store(tmp / FILES["chrom_store"], chrom, ids, world.chrom_bins,
                    dict(prov, mq_threshold=20, store="chromosome"))
        write_store(tmp / FILES["plasmid_store"], plasmid, ids, world.plasmid_bins,
                    dict(prov, mq_threshold=0, store="plasmid"))
        write_tsv(tmp / FILES["amrfinder_gt"], gt)
        write_tsv(tmp / FILES["kleborate_gt"], kleb)
        write_tsv(tmp / FILES["metadata"], meta)
        for key in ("chrom_gene_coords", "plasmid_gene_coords", "plasmid_gene_families"):
            write_text(tmp / FILES[key], reference.packaged_path(FILES[key]).read_text(encoding="utf-8"))
        write_text(tmp / FILES["holdout_ids"], "".join(f"{ids[i]}\n" for i in holdout))
        write_tsv(tmp / FILES["gene_truth"], _gene_truth(world, cohort, ids))
        write_tsv(tmp / FILES["segments"], _segments_table(cohort, ids))
        samples = cohort.samples.copy()
        for col in samples.columns:
            if samples[col].dtype.kind == "f":
                samples[col] = samples[col].round(5)
        write_tsv(tmp / FILES["samples"], samples)
        write_tsv(tmp / FILES["bin_features"], bin_features(world))
        write_text(tmp / FILES["params"], _params_yaml(int(n_samples), int(seed), bool(hard)))
        write_json(tmp / FILES["cohort"], {"settings": settings, "config": dataclasses.asdict(cfg),
                                           "files": FILES, "seconds": round(time.perf_counter() - t0, 2)})
    if progress:
        _log(f"done in {time.perf_counter() - t0:.1f} s")
    return {name: data_dir / rel for name, rel in FILES.items()}


def _params_yaml(n_samples: int, seed: int, hard: bool) -> str:
    import yaml

    doc = {
        "tier": f"sim{n_samples}_seed{seed}{'_hard' if hard else ''}", "seed": int(seed),
        "store_path": FILES["chrom_store"], "plasmid_store_path": FILES["plasmid_store"], "out_dir": "results",
        "kpsc_gt_path": FILES["amrfinder_gt"], "kpsc_kleborate_gt_path": FILES["kleborate_gt"],
        "kpsc_meta_path": FILES["metadata"], "chrom_gene_coords_path": FILES["chrom_gene_coords"],
        "plasmid_gene_coords_path": FILES["plasmid_gene_coords"],
        "plasmid_gene_families_path": FILES["plasmid_gene_families"], "holdout_ids_path": FILES["holdout_ids"],
    }
    return "# Simulated KpSC cohort written by cnvrock_lib.simulate; paths relative to this file.\n" + \
        yaml.safe_dump(doc, sort_keys=False)


def cohort_is_complete(data_dir, settings: dict | None = None) -> bool:
    """True when ``data_dir`` holds a complete cohort (with ``settings``, when given)."""
    data_dir = Path(data_dir)
    marker = data_dir / "cohort.json"
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if settings is not None and recorded.get("settings") != settings:
        return False
    return all((data_dir / rel).exists() for rel in FILES.values())


def ensure_simulated(params) -> dict[str, Path] | None:
    """Simulate ``params.simulate`` into its ``data_dir`` unless a matching cohort is already there.

    ``params.simulate`` holds ``data_dir`` (absolute), ``n_samples``, optional ``seed``
    (default ``params.seed``), ``hard`` and :class:`SimConfig` overrides. Returns the file
    paths when it simulated, None when the cohort was already complete.
    """
    sim = dict(params.simulate or {})
    if "data_dir" not in sim:
        raise ParamsError("simulate: needs 'data_dir' (where the simulated cohort is written)")
    if "n_samples" not in sim:
        raise ParamsError("simulate: needs 'n_samples' (number of samples to simulate)")
    data_dir = Path(sim.pop("data_dir"))
    n = sim.pop("n_samples")
    seed = sim.pop("seed", params.values.get("seed", 42))
    hard = sim.pop("hard", False)
    progress = sim.pop("progress", True)
    if not isinstance(hard, bool):
        raise ParamsError(f"simulate: 'hard' = {hard!r}; expected true or false")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParamsError(f"simulate: 'seed' = {seed!r}; expected an integer >= 0")
    SimConfig.make(hard=hard, **sim)  # validate before deciding anything
    if cohort_is_complete(data_dir, _settings(n, seed, hard, sim)):
        return None
    return simulate_cohort(data_dir, n, seed, hard=hard, progress=progress, **sim)


# ----------------------------------------------------------------------------- measured back


def _region_pcn(counts: np.ndarray, bins: np.ndarray, contig: str, start: int, end: int,
                chrom_median: np.ndarray) -> np.ndarray:
    """Copies per chromosome of a region: depth per bp of the bins overlapping it / chromosome median per bp."""
    sel = (bins["chrom"] == contig) & (bins["end"] >= start) & (bins["start"] <= end)
    length = float((bins["end"][sel] - bins["start"][sel] + 1).sum())
    return np.asarray(counts[:, sel], dtype=np.float64).sum(axis=1) / length / (chrom_median / 1000.0)


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
        i0, i1 = (r.start - 1) // 1000, min((r.end - 1) // 1000, len(starts) - 1)
        mask[row[r.sample_id], i0:i1 + 1] = False
    return mask


def measure_properties(data_dir) -> pd.DataFrame:
    """Measure back, from a simulated cohort's files, the properties that docs/simulation.md claims.

    Returns one row per property: ``property claim low high measured ok`` (``ok``:
    ``low <= measured <= high``). Low-quality and mixed samples are left out of the
    depth statistics; they are measured on their own rows.
    """
    from .store import open_store

    data_dir = Path(data_dir)
    chrom = open_store(data_dir / FILES["chrom_store"], check_values=False)
    plas = open_store(data_dir / FILES["plasmid_store"], check_values=False)
    read = functools.partial(pd.read_csv, sep="\t", keep_default_na=False)
    smp = read(data_dir / FILES["samples"])
    seg = read(data_dir / FILES["segments"])
    truth = read(data_dir / FILES["gene_truth"])
    feat = read(data_dir / FILES["bin_features"])
    kleb = read(data_dir / FILES["kleborate_gt"])
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
    full = (ends - starts + 1) == 1000
    usable = cn1 & (mapp > 0.99)[None, :] & ~hot[None, :] & full[None, :]
    rows = []

    def add(prop, claim, low, high, value):
        value = float(value)
        rows.append({"property": prop, "claim": claim, "low": low, "high": high,
                     "measured": round(value, 4), "ok": bool(low <= value <= high)})

    add("chromosome bins", "5,334 bins of NC_016845.1", 5334, 5334, C.shape[1])
    add("plasmid bins", "2,031 bins over 12 contigs", 2031, 2031, P.shape[1])
    # depth
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
    # GC
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
    # overdispersion and neighbour correlation (adjacent CN-1 mappable bins)
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
    # ori/ter
    est = ori_ter_fit(C, dist, usable)
    true = smp["ori_ter_ratio"].to_numpy(float)
    err = np.abs(np.log2(est[normal]) - np.log2(true[normal]))
    add("ori/ter fit error (log2), median", "regression recovers the ratio", 0, 0.05, np.median(err))
    add("ori/ter fitted min", "ori/ter ratio 1.0-2.5", 0.95, 1.3, est[normal].min())
    add("ori/ter fitted max", "ori/ter ratio 1.0-2.5", 1.8, 2.6, est[normal].max())
    # unmappable stretches
    unm = mapp < 0.1
    rel = C[np.ix_(~lq, unm)] / med[~lq, None]
    add("unmappable bins (mappability < 0.1)", "about 8 rRNA operons + IS + prophage repeats", 40, 120, unm.sum())
    add("unmappable bins: count / median, 99.9th pct", "drop towards 0 in every sample", 0, 0.2,
        np.percentile(rel, 99.9))
    # population structure
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
    frac = (lin.assign(bp=size).groupby("sample_id")["bp"].sum() / 5_333_942).reindex(ids).fillna(0).to_numpy()
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
        i0, i1 = (r_.start - 1) // 1000 + 1, (r_.end - 1) // 1000 - 1  # whole bins only
        if i1 >= i0:
            dm[row[r_.sample_id], i0:i1 + 1] = True
    dm &= normal[:, None] & (mapp > 0.99)[None, :]
    add("deleted bins: count / median, 99th pct", "deletions read near 0", 0, 0.1,
        np.percentile((C / med[:, None])[dm], 99) if dm.any() else 0)
    # blaSHV
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
        world_shv = build_world().shv
        crr = _region_pcn(C, chrom.bins, reference.CHROMOSOME, world_shv["start"], world_shv["end"], med)
        sel = amp & normal & ~(smp["plasmid_shv_pcn"].to_numpy(float) > 0)
        if sel.sum() >= 3:
            add("blaSHV depth ratio vs true CN, correlation", "amplification visible in depth", 0.8, 1,
                np.corrcoef(crr[sel], shv[sel])[0, 1])
    pshv = smp["plasmid_shv_pcn"].to_numpy(float) > 0
    kl = kleb.set_index("sample_id")["blaSHV"].reindex(ids).to_numpy(int)
    expect = np.floor(smp["shv_cn_major"].to_numpy(float) + 0.5).astype(int) + pshv
    add("Kleborate blaSHV count off truth", "a few % label noise", 0.005, 0.06, np.mean(kl != expect))
    # plasmids: backbone PCN by type, non-carriers, near-identical split
    world = build_world()
    for ptype, (lo, hi) in PCN_RANGE.items():
        if ptype == "ColE-like":
            continue
        vals = []
        for c in world.contigs.loc[world.contigs["type"] == ptype, "contig"]:
            t = smp[f"backbone_pcn:{c}"].to_numpy(float)
            sl = plas.contig_slices()[c]
            blen = plas.bin_lengths[sl]
            dep = np.median(P[:, sl] / blen[None, :] * 1000, axis=1) / med
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
        pcn = _region_pcn(P, plas.bins, r_.contig, int(r_.start), int(r_.end), med)
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
            fam_pcn = sum(_region_pcn(P, plas.bins, panel.loc[m].contig, int(panel.loc[m].start),
                                      int(panel.loc[m].end), med) * (panel.loc[m].end - panel.loc[m].start + 1)
                          for m in world.families["blaCTX-M"])
            mean_len = np.mean([panel.loc[m].end - panel.loc[m].start + 1 for m in world.families["blaCTX-M"]])
            ratio_member = _region_pcn(P, plas.bins, panel.loc["blaCTX-M-14"].contig,
                                       int(panel.loc["blaCTX-M-14"].start), int(panel.loc["blaCTX-M-14"].end),
                                       med)[only] / member["blaCTX-M-14"].to_numpy(float)[only]
            add("CTX-M-14 carriers: member PCN / truth", "near-identical members split reads", 0.4, 0.8,
                np.median(ratio_member))
            add("CTX-M-14 carriers: family PCN / truth", "the family sum keeps them", 0.85, 1.4,
                np.median((fam_pcn / mean_len)[only] / family["blaCTX-M"].to_numpy(float)[only]))
    # low-quality, mixed, GT noise, holdout
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
    return pd.DataFrame(rows)
