"""How strong each confounder is in a world: the reference preset and the wide ranges of other worlds.

A world is named by its ``world_seed``. The **reference world** (``WORLD_SEED``) keeps the
fixed strengths below (``FLANKS``, ``ELSEWHERE``, ``PCN_RANGE``, the ``SimConfig``
defaults): every existing tier and test simulates it, byte for byte as before worlds
existed. **Every other world** draws its strengths from ``RANGES`` with an RNG stream of
its own (``SeedSequence([world_seed, STRENGTH_STREAM])``), separate from the stream that
draws the world's structure (``default_rng(world_seed)``: GC, repeats, islands, lineages,
plasmid layout). The ranges are wide on purpose: a fixed rule tuned in one world should
fail in some others (SPEC §4.1, "Worlds"). docs/simulation.md lists them.

``world_seeds(n_dev, n_test)`` hands out world seeds from the written-down lists
``DEV_WORLD_SEEDS`` and ``TEST_WORLD_SEEDS``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import reference
from ..errors import ParamsError
from .config import WORLD_SEED

STRENGTH_STREAM = 0x5731  # second entry of the strengths' SeedSequence; the structure uses the bare seed
ADJUST_STREAM = 0xAD7  # stream of the per-lineage adjustments of a drawn world (ST weights, prevalence)

# ----------------------------------------------------------------------------- reference strengths
# Plasmid copy number per plasmid type: log-normal whose central 95 % spans the range.
PCN_RANGE = {"IncF-like": (1.0, 3.0), "IncL": (1.0, 5.0), "IncX3": (2.0, 6.0), "ColE-like": (10.0, 40.0)}
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
# Element copies carried elsewhere (non-reference plasmids, chromosome) by a lineage:
# (probability that a lineage carries it, median copies when it does).
ELSEWHERE = {"ISEcp1": (0.35, 2.5), "IS26": (0.75, 4.0), "Tn3": (0.5, 3.0), "IS903": (0.45, 2.5),
             "intI1": (0.5, 1.0), "sul1": (0.6, 2.0), "ISCR1": (0.15, 1.0), "ISKpn7": (0.03, 1.0),
             "ISKpn6": (0.03, 1.0), "ISAba125": (0.02, 1.0), "IS1999": (0.03, 1.0), "IncF_core": (0.7, 1.7)}

# ----------------------------------------------------------------------------- ranges of drawn worlds
# (low, high) of each drawn strength; "log" ranges are drawn log-uniformly.
RANGES = {
    "flank_bp": (30.0, 950.0, "log"),          # bp of each flanking element inside its gene's bins
    "elsewhere_probability": (0.02, 0.9, "uniform"),  # share of lineages carrying an element elsewhere
    "elsewhere_copies": (0.5, 8.0, "log"),     # median copies of it when they do
    "family_prevalence": (0.01, 0.60, "log"),  # target share of samples carrying each plasmid family
    "shv_amp_rate": (0.01, 0.20, "log"),       # share of K. pneumoniae with a blaSHV amplification
    "plasmid_shv_rate": (0.0, 0.10, "uniform"),  # share of samples with a plasmid-borne blaSHV
    "depth_low": (10.0, 80.0, "log"),          # x, low end of the world's depth range
    "depth_span": (2.0, 6.0, "log"),           # high end = low x span, at most DEPTH_MAX
    "gc_strength": (0.3, 3.0, "log"),          # multiplies every GC-bias curvature
    "low_quality_rate": (0.0, 0.08, "uniform"),
    "mixed_rate": (0.0, 0.08, "uniform"),
    "st_sigma": (0.0, 1.5, "uniform"),         # sd of a log-normal factor on every lineage weight
    "kleborate_collapse_rate": (0.0, 0.9, "uniform"),  # amplified blaSHV collapsed to 1 copy in the assembly
    "sporadic_plasmid_rate": (0.001, 0.01, "log"),  # per reference plasmid, outside lineage associations
}
DEPTH_MAX = 200.0
# Carrier PCN per reference plasmid (its primary gene's family): the low end of the log-normal's
# central 95 % and the ratio high / low, by plasmid type. IncF-like carriers reach 0.5-1 copies.
PCN_LOW = {"IncF-like": (0.5, 2.0), "IncL": (0.7, 3.0), "IncX3": (1.0, 4.0), "ColE-like": (5.0, 20.0)}
PCN_RATIO = (1.5, 5.0)
LIBRARY_MIX_ALPHA = 1.0  # Dirichlet concentration of the PCR / Nextera / PCR-free mix

# ----------------------------------------------------------------------------- world seed lists
# Written down once: np.random.SeedSequence(20261205).generate_state(19), the first 3 for
# development (after the reference world), the other 16 for test. Development worlds may be used
# to choose defaults and thresholds. TEST worlds must never be used to choose anything: only to
# report, once every choice is fixed.
DEV_WORLD_SEEDS = (WORLD_SEED, 3203859712, 998588323, 2635407826)
TEST_WORLD_SEEDS = (3015424831, 3508438601, 1601060568, 3678206907, 2520196035, 3158542900, 231700873,
                    4083343845, 1219087629, 804938413, 245482743, 2184680560, 454237703, 2298475656,
                    120329674, 2001193088)


def world_seeds(n_dev: int, n_test: int) -> tuple[list[int], list[int]]:
    """The first ``n_dev`` development and ``n_test`` test world seeds of the written-down lists.

    Test worlds are for reporting only; never choose a default or threshold on them.
    """
    for name, n, pool in (("n_dev", n_dev, DEV_WORLD_SEEDS), ("n_test", n_test, TEST_WORLD_SEEDS)):
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(pool):
            raise ParamsError(f"world_seeds: {name} = {n!r}; expected an integer from 0 to {len(pool)}")
    return list(DEV_WORLD_SEEDS[:n_dev]), list(TEST_WORLD_SEEDS[:n_test])


@dataclass(frozen=True)
class WorldStrengths:
    """Confounder strengths of one world (see the module docstring)."""

    world_seed: int
    preset: str                     # "reference" or "drawn"
    flanks: dict                    # gene -> ((element, side, bp inside the gene bins), ...)
    elsewhere: dict                 # element -> (share of lineages, median copies)
    pcn_by_contig: dict             # plasmid contig -> (low, high) of its carriers' PCN (copies/chromosome)
    pcn_by_type: dict               # plasmid type -> (low, high): plasmid-borne blaSHV, ColE-like genes
    family_prevalence: dict | None  # family -> target share of samples (None: reference associations)
    st_sigma: float                 # sd of the log-normal factor on lineage weights (0: none)
    cohort: dict                    # SimConfig defaults of this world (empty for the reference)

    def as_dict(self) -> dict:
        """JSON-ready summary for cohort.json."""
        return {"world_seed": self.world_seed, "preset": self.preset,
                "flanks_bp": {g: {f"{el}:{side}": bp for el, side, bp in fl} for g, fl in self.flanks.items()},
                "elsewhere": {el: list(v) for el, v in self.elsewhere.items()},
                "carrier_pcn_range": {c: list(v) for c, v in self.pcn_by_contig.items()},
                "pcn_by_type": {t: list(v) for t, v in self.pcn_by_type.items()},
                "family_prevalence_target": self.family_prevalence, "st_sigma": self.st_sigma,
                "cohort_defaults": {k: list(v) if isinstance(v, tuple) else v for k, v in self.cohort.items()}}


def _draw(rng: np.random.Generator, key: str) -> float:
    lo, hi, kind = RANGES[key]
    if kind == "log":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(lo, hi))


def _contig_types() -> dict:
    """Plasmid contig -> plasmid type (the same rule the world uses)."""
    from .world import PLASMID_TYPE_BY_GENE

    contigs = reference.load_contigs()
    panel = reference.load_gene_panel(None, "plasmid").genes
    gene_of = dict(zip(panel["contig"], panel["gene"]))
    return {c: PLASMID_TYPE_BY_GENE.get(gene_of.get(c, ""), "IncF-like")
            for c in contigs.loc[contigs["role"] == "plasmid", "contig"]}


@functools.lru_cache(maxsize=64)
def world_strengths(world_seed: int = WORLD_SEED) -> WorldStrengths:
    """The confounder strengths of world ``world_seed``: the reference preset or drawn from ``RANGES``."""
    if isinstance(world_seed, bool) or not isinstance(world_seed, (int, np.integer)) or world_seed < 0:
        raise ParamsError(f"simulate: world_seed = {world_seed!r}; expected an integer >= 0")
    world_seed = int(world_seed)
    types = _contig_types()
    if world_seed == WORLD_SEED:
        return WorldStrengths(world_seed, "reference", dict(FLANKS), dict(ELSEWHERE),
                              {c: PCN_RANGE[t] for c, t in types.items()}, dict(PCN_RANGE), None, 0.0, {})
    rng = np.random.default_rng(np.random.SeedSequence([world_seed, STRENGTH_STREAM]))
    flanks = {g: tuple((el, side, int(round(_draw(rng, "flank_bp")))) for el, side, _ in fl)
              for g, fl in FLANKS.items()}
    elsewhere = {el: (round(_draw(rng, "elsewhere_probability"), 4), round(_draw(rng, "elsewhere_copies"), 3))
                 for el in ELSEWHERE}

    def pcn_range(ptype: str) -> tuple:
        lo = float(math.exp(rng.uniform(*np.log(PCN_LOW[ptype]))))
        ratio = float(math.exp(rng.uniform(*np.log(PCN_RATIO))))
        return round(lo, 3), round(lo * ratio, 3)

    by_type = {t: pcn_range(t) for t in PCN_RANGE}
    by_contig = {c: pcn_range(t) for c, t in types.items()}
    families = reference.load_gene_families(None)
    prevalence = {f: round(_draw(rng, "family_prevalence"), 4) for f in families}
    depth_low = _draw(rng, "depth_low")
    depth_high = min(DEPTH_MAX, depth_low * _draw(rng, "depth_span"))
    mix = rng.dirichlet(np.full(3, LIBRARY_MIX_ALPHA))
    cohort = {"depth_range": (round(depth_low, 2), round(max(depth_high, 1.5 * depth_low), 2)),
              "gc_strength": round(_draw(rng, "gc_strength"), 3),
              "shv_amp_rate": round(_draw(rng, "shv_amp_rate"), 4),
              "plasmid_shv_rate": round(_draw(rng, "plasmid_shv_rate"), 4),
              "low_quality_rate": round(_draw(rng, "low_quality_rate"), 4),
              "mixed_rate": round(_draw(rng, "mixed_rate"), 4),
              "library_mix": tuple(float(x) for x in mix),
              "kleborate_collapse_rate": round(_draw(rng, "kleborate_collapse_rate"), 3),
              "sporadic_plasmid_rate": round(_draw(rng, "sporadic_plasmid_rate"), 5)}
    return WorldStrengths(world_seed, "drawn", flanks, elsewhere, by_contig, by_type, prevalence,
                          round(_draw(rng, "st_sigma"), 3), cohort)
