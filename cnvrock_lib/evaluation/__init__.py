"""Stage 04, evaluation against assembly-based ground truth (SPEC §8):

- :mod:`.metrics` — labels per mode, confusion counts, MCC (scikit-learn), sweeps (pure);
- :mod:`.inputs` — ground truth, metadata and call tables, checked;
- :mod:`.tables` — the evaluation table and its summaries;
- :mod:`.text` — the fixed-width ``evaluation.txt`` in the original's layout;
- :mod:`.stage` — the driver :func:`evaluate` and :func:`headline_metrics` (reports index).
"""

from ..copy_number import CHROM_LABELS, PLASMID_LABELS
from .inputs import UNKNOWN, GroundTruth, load_ground_truth, load_metadata, load_predictions
from .metrics import (MODES, OUTCOMES, binary_metrics, labels_from_calls, labels_from_gt, mcc_from_counts, outcomes,
                      threshold_sweep, value_percentiles)
from .stage import EvaluationResult, evaluate, headline_metrics
from .tables import build_table, segment_diagnostics, summarise, sweep_table, tidy_metrics
from .text import _fmt, format_evaluation_txt, header_fields

__all__ = ["CHROM_LABELS", "MODES", "OUTCOMES", "PLASMID_LABELS", "UNKNOWN", "EvaluationResult", "GroundTruth",
           "_fmt", "binary_metrics", "build_table", "evaluate", "format_evaluation_txt", "header_fields",
           "headline_metrics", "labels_from_calls", "labels_from_gt", "load_ground_truth", "load_metadata",
           "load_predictions", "mcc_from_counts", "outcomes", "segment_diagnostics", "summarise", "sweep_table",
           "threshold_sweep", "tidy_metrics", "value_percentiles"]
