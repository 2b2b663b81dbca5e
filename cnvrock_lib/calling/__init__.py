"""Stage 03, gene calling (SPEC §7), one module per concern:

- :mod:`.chromosomal` — CRR to a local flank, HMM state cover, the original's call rule, sample QC;
- :mod:`.plasmid` — PCN per bp, backbone PCN, plasmid-store gene regions, the fixed-threshold call;
- :mod:`.intervals` — the CRR bootstrap, PCN counting intervals, count overdispersion;
- :mod:`.thresholds` — cohort-learned absent thresholds (cohort_gmm, mixture) and their table;
- :mod:`.decision` — the cohort-learned decision layer: extra-dosage calls, calibrated intervals,
  backbone and cross-talk evidence for plasmid genes, the optional supervised threshold;
- :mod:`.quick` — stage-03 inputs for a simulated cohort without the VAE (benchmarks, tests);
- :mod:`.core` — the pure cores: arrays and frames in, call tables out;
- :mod:`.stage` — the driver :func:`call_genes` (reads artefacts, writes the tables);
- :mod:`.report` — tables and tracks for the stage-03 report.
"""

from .core import GENE_CALL_COLUMNS, PLASMID_CALL_COLUMNS, ChromConfig, PlasmidConfig, call_chromosomal, call_plasmid
from . import report  # noqa: F401  (calling.report for the notebooks)
from .stage import CallResult, call_genes

__all__ = ["GENE_CALL_COLUMNS", "PLASMID_CALL_COLUMNS", "ChromConfig", "PlasmidConfig", "CallResult",
           "call_chromosomal", "call_genes", "call_plasmid"]
