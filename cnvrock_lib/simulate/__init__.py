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

Modules: ``config`` (constants, :class:`SimConfig`), ``world`` (the world),
``cohort`` (per-sample draws), ``counts`` (read counts), ``files`` (tables and
the entry points ``simulate_cohort`` / ``ensure_simulated``), ``check`` (the
self-check ``measure_properties``).
"""

from .check import (cohort_world_seed, gc_curve_fit, gene_pcn, measure_properties, ori_ter_fit, region_pcn,
                    world_properties, world_summary)
from .cohort import Cohort, draw_cohort
from .config import AMRFINDER_COLUMNS, BLOCK, CG258, SIMULATOR_VERSION, SPECIES, WORLD_SEED, SimConfig
from .counts import simulate_counts
from .files import FILES, bin_features, cohort_is_complete, ensure_simulated, simulate_cohort, world_record
from .strengths import (DEV_WORLD_SEEDS, PCN_RANGE, RANGES, TEST_WORLD_SEEDS, WorldStrengths, world_seeds,
                        world_strengths)
from .world import GC_CURVES, LIBRARY_TYPES, Lineage, World, build_world

__all__ = [
    "AMRFINDER_COLUMNS", "BLOCK", "CG258", "DEV_WORLD_SEEDS", "FILES", "GC_CURVES", "LIBRARY_TYPES", "PCN_RANGE",
    "RANGES", "SIMULATOR_VERSION", "SPECIES", "TEST_WORLD_SEEDS", "WORLD_SEED", "Cohort", "Lineage", "SimConfig",
    "World", "WorldStrengths", "bin_features", "build_world", "cohort_is_complete", "cohort_world_seed",
    "draw_cohort", "ensure_simulated", "gc_curve_fit", "gene_pcn", "measure_properties", "ori_ter_fit", "region_pcn",
    "simulate_cohort", "simulate_counts", "world_properties", "world_record", "world_seeds", "world_strengths",
    "world_summary",
]
