"""The simulated world: reference features, the lineage catalogue and the plasmid read placement.

The structure (GC, repeats, islands, lineages, plasmid layout) is drawn from
``np.random.default_rng(world_seed)``. It stands for the biology of one
collection: every cohort of that world shares it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from .. import reference
from ..geometry import contig_slices
from ..reference import BIN_SIZE
from .config import CG258, SPECIES, WORLD_SEED
from .strengths import ADJUST_STREAM, WorldStrengths, world_strengths

# Plasmid types of the reference contigs, keyed by the gene each contig was chosen for;
# contigs not listed are large IncF-like plasmids.
PLASMID_TYPE_BY_GENE = {"blaOXA-48": "IncL", "blaOXA-181": "IncX3"}
# Near-identical panel members (a few SNPs): MAPQ-0 reads split between them.
NEAR_IDENTICAL = (("blaCTX-M-14", "blaCTX-M-27", "blaCTX-M-65"), ("blaNDM-1", "blaNDM-5"),
                  ("blaOXA-48", "blaOXA-181"))
SELF_SHARE = {1: 1.0, 2: 0.65, 3: 0.55}  # share of a gene's reads kept by its own contig
# Further copies of elements on plasmid backbones: (element, copies, bp per copy).
BACKBONE_ELEMENTS = (("IS26", 4, 820), ("IS903", 1, 1057), ("Tn3", 2, 2000), ("intI1", 3, 1000),
                     ("sul1", 3, 840), ("ISCR1", 1, 1500))
INCF_CORE_BP = 20000  # transfer/replication region shared by every IncF-like contig
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
    seed: int = WORLD_SEED
    strengths: WorldStrengths | None = None   # confounder strengths (reference preset or drawn)
    family_prevalence: dict = field(default_factory=dict)  # family -> expected share of carriers


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


@functools.lru_cache(maxsize=8)
def build_world(world_seed: int = WORLD_SEED) -> World:
    """The world ``world_seed``: reference features, lineages, plasmid layout and confounder strengths.

    The structure comes from ``default_rng(world_seed)``; the strengths from
    :func:`strengths.world_strengths` (the reference preset for ``WORLD_SEED``). In a drawn
    world the lineage weights get a log-normal factor (ST structure) and the lineage-plasmid
    prevalences are scaled to the drawn family prevalences, both from a third stream.
    """
    strengths = world_strengths(world_seed)
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
    A, src_names, contig_elements, gene_flank_elements = _plasmid_matrix(rng, cinfo, panel, pbins,
                                                                        strengths.flanks)
    plasmid_gc = np.empty(len(pbins))
    for c, sl in contig_slices(pbins).items():
        plasmid_gc[sl] = plasmid_gc_mean[ptype[c]] + _ar1(rng, sl.stop - sl.start, 0.6, 0.02)
    plasmid_gc = np.clip(plasmid_gc, 0.3, 0.75)

    lineages = _build_lineages(rng, islands, cinfo, panel, G, strengths.elsewhere)
    if strengths.preset != "reference":
        adjust = np.random.default_rng(np.random.SeedSequence([int(world_seed), ADJUST_STREAM]))
        _adjust_lineages(adjust, lineages, strengths, families, dict(zip(panel["gene"], panel["contig"])))
    return World(
        chrom_bins=cbins, plasmid_bins=pbins, genome_length=G, ter_position=ter, gc=gc,
        mappability=mappability, replichore_distance=dist, islands=islands, repeats=repeats,
        hot_bins=hot, hot_factor=hot_factor, species_map=species_map, shv=shv, plasmid_gc=plasmid_gc,
        lineages=lineages, A=A, sources=src_names, src_index={s: i for i, s in enumerate(src_names)},
        contigs=cinfo, genes=panel, families=families, gene_family=gene_family,
        contig_elements=contig_elements, gene_flank_elements=gene_flank_elements, seed=int(world_seed),
        strengths=strengths, family_prevalence=expected_prevalence(lineages, families))


def _plasmid_matrix(rng, cinfo, panel, pbins, flanks_by_gene: dict):
    """Read-placement matrix A (sources x plasmid bins), in copies x share of the bin.

    Sources: the backbone of each contig in ``n_variants`` variants (variants 1-2 lack
    2-20 kb segments), each panel gene, each mobile element (reads of an element spread
    evenly over its k reference copies, as MAPQ-0 reads are placed at random).
    """
    n_variants = 3
    slices = contig_slices(pbins)
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
        first_bin_start = (row.start - 1) // BIN_SIZE * BIN_SIZE + 1
        last_bin_end = min((row.end - 1) // BIN_SIZE * BIN_SIZE + BIN_SIZE, len(labels[row.contig]))
        flanks = {}
        for element, side, bp in flanks_by_gene.get(g, ()):
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
        taken = [((r.start - 1) // BIN_SIZE * BIN_SIZE - 2000, (r.end - 1) // BIN_SIZE * BIN_SIZE + 3000)
                 for r in g_rows.itertuples()]
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
        edges = np.append(np.arange(0, len(lab), BIN_SIZE), len(lab))
        for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            b = sl.start + j
            seg = lab[lo:hi]
            for v in range(n_variants):
                A[index[f"backbone:{c}:{v}"], b] = np.count_nonzero((seg == 0) & ~missing[c][v][lo:hi]) / BIN_SIZE
            for k, element in enumerate(elements):
                bp = np.count_nonzero(seg == 2 + k)
                if bp:
                    A[index[f"element:{element}"], b] += bp / BIN_SIZE / len(element_copies[element])
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
            A[index[f"gene:{g}"], sl] += share * ov / BIN_SIZE * (len_g / len_o)
    return A, names, contig_elements, gene_flank_elements


def _lognormal_range(rng, lo, hi, size):
    """Log-normal draws whose central 95 % spans [lo, hi]."""
    mu = (math.log(lo) + math.log(hi)) / 2
    sigma = (math.log(hi) - math.log(lo)) / (2 * 1.96)
    return np.exp(rng.normal(mu, sigma, size))


def _build_lineages(rng, islands, cinfo, panel, genome_length: int, elsewhere: dict) -> list:
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
        species_del[sp] = _pick_deletions(rng, islands, rng.uniform(0.02, 0.04) * genome_length, [])
    gene_list = list(panel["gene"])
    contig_of = dict(zip(panel["gene"], panel["contig"]))
    lineages = []
    for k, (sp, st, w) in enumerate(entries):
        group = "CG258" if st in CG258 else "other"
        lo, hi = LINEAGE_DELETION[group]
        target = rng.uniform(lo, hi) * genome_length
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
                                     "geneless": GENELESS})
        for element, (p, med) in elsewhere.items():
            lin.elsewhere[element] = float(med * math.exp(rng.normal(0, 0.3))) if rng.random() < p else 0.0
        for g in ("qnrB1", "blaTEM-1"):
            if rng.random() < 0.08:
                lin.cole[g] = float(rng.uniform(0.3, 0.8))
        if st == "ST15" or rng.random() < 0.03:
            lin.chrom_ctxm15 = float(rng.uniform(0.3, 0.7))
        lineages.append(lin)
    return lineages


GENELESS = 0.1  # carriers of a lineage plasmid without its gene (backbone only)
PREVALENCE_CAP = 0.95  # highest within-lineage prevalence a drawn world scales an acquisition to


def _lineage_share(lineages: list) -> np.ndarray:
    """Expected share of a cohort from each lineage (default species mix x weight within the species)."""
    from .config import SimConfig

    sw = np.asarray(SimConfig.species_weights, dtype=float)
    sw = sw / sw.sum()
    species = np.array([lin.species for lin in lineages])
    weight = np.array([lin.weight for lin in lineages])
    totals = np.bincount(species, weights=weight, minlength=len(SPECIES))
    return sw[species] * weight / totals[species]


def _carriage(lineages: list, family: list, members: set) -> list:
    """Every way a lineage carries a member of ``family``: (lineage, kind, key, probability).

    ``kind`` is "acquisition" (a lineage plasmid whose primary gene is a member), "cole",
    "chrom" (scaled by the calibration) or "cargo" (a member riding on another plasmid: fixed).
    """
    out = []
    for k, lin in enumerate(lineages):
        for j, acq in enumerate(lin.acquisitions):
            if acq["gene"] in members:
                out.append((k, "acquisition", j, acq["prevalence"] * (1 - acq["geneless"])))
            elif members & set(acq["cargo"]):
                out.append((k, "cargo", j, acq["prevalence"] * (1 - acq["geneless"])))
        for g, prev in lin.cole.items():
            if g in members:
                out.append((k, "cole", g, prev))
        if "blaCTX-M-15" in members and lin.chrom_ctxm15 > 0:
            out.append((k, "chrom", None, lin.chrom_ctxm15))
    return out


def _family_expectation(share: np.ndarray, ways: list, scale: float) -> float:
    """Expected share of samples carrying the family when its scalable ways are multiplied by ``scale``."""
    if not ways:
        return 0.0
    lin = np.array([w[0] for w in ways])
    p = np.array([w[3] for w in ways], dtype=float)
    scalable = np.array([w[1] != "cargo" for w in ways])
    p = np.where(scalable, np.minimum(PREVALENCE_CAP, p * scale), p)
    log_none = np.bincount(lin, weights=np.log1p(-np.minimum(p, 1 - 1e-12)), minlength=len(share))
    return float((share * (1 - np.exp(log_none))).sum())


def expected_prevalence(lineages: list, families: dict) -> dict:
    """Family -> expected share of samples carrying it (lineage plasmids, ColE-like, chromosomal;
    sporadic carriage and off-panel alleles not counted)."""
    share = _lineage_share(lineages)
    return {f: round(_family_expectation(share, _carriage(lineages, f, set(m)), 1.0), 4)
            for f, m in families.items()}


def _adjust_lineages(rng, lineages: list, strengths: WorldStrengths, families: dict, contig_of: dict) -> None:
    """Drawn world: ST structure (log-normal factor on lineage weights), then lineage-plasmid
    prevalences scaled (and associations added or cargo dropped) towards the drawn family prevalences."""
    for lin in lineages:
        lin.weight = float(lin.weight * math.exp(rng.normal(0.0, strengths.st_sigma)))
    share = _lineage_share(lineages)
    for _ in range(3):  # cargo ties families together: a few passes settle them
        for fam, members in families.items():
            target = strengths.family_prevalence[fam]
            ways = _carriage(lineages, fam, set(members))
            while _family_expectation(share, ways, 0.0) > target:  # cargo alone too common: drop some
                cargo = [w for w in ways if w[1] == "cargo"]
                k, _, j, _ = cargo[int(rng.integers(len(cargo)))]
                acq = lineages[k].acquisitions[j]
                acq["cargo"] = [g for g in acq["cargo"] if g not in members]
                ways = _carriage(lineages, fam, set(members))
            addable = [g for g in members if g in contig_of]
            for _ in range(400):  # too rare even at the cap: new lineage associations
                if _family_expectation(share, ways, 1e6) >= target or not addable:
                    break
                k = int(rng.choice(len(lineages), p=share))
                g = addable[int(rng.integers(len(addable)))]
                lineages[k].acquisitions.append({"contig": contig_of[g], "gene": g, "prevalence": float(rng.beta(2, 3)),
                                                 "variant": int(rng.integers(0, 3)), "cargo": [],
                                                 "geneless": GENELESS})
                ways = _carriage(lineages, fam, set(members))
            lo, hi = 0.0, 1.0
            while _family_expectation(share, ways, hi) < target and hi < 1e6:
                hi *= 2
            for _ in range(40):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if _family_expectation(share, ways, mid) < target else (lo, mid)
            scale = (lo + hi) / 2
            for k, kind, key, _ in ways:
                lin = lineages[k]
                if kind == "acquisition":
                    acq = lin.acquisitions[key]
                    acq["prevalence"] = float(min(PREVALENCE_CAP / (1 - acq["geneless"]), acq["prevalence"] * scale,
                                                  1.0))
                elif kind == "cole":
                    lin.cole[key] = float(min(PREVALENCE_CAP, lin.cole[key] * scale))
                elif kind == "chrom":
                    lin.chrom_ctxm15 = float(min(PREVALENCE_CAP, lin.chrom_ctxm15 * scale))


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


