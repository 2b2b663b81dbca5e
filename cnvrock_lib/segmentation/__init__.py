"""Stage 02, segmentation (SPEC §6):

- :mod:`.core` — copy ratios, masking, noise, batched HMM decoding, segments and sample QC (pure);
- :mod:`.stage` — the driver :func:`segment_cohort` (reads the store and reconstructions, writes artefacts);
- :mod:`.report` — examples, occupancy, heatmap rows and truth accuracy for the stage-02 report.
"""

from . import report  # noqa: F401  (segmentation.report for the notebooks)
from .core import (QC_COLUMNS, SEGMENT_COLUMNS, SegmentConfig, build_hmm, copy_ratios, decode_contigs, noise_sd,
                   sample_qc_table, segments_from_states)
from .stage import SegmentResult, load_expected, segment_cohort

__all__ = ["QC_COLUMNS", "SEGMENT_COLUMNS", "SegmentConfig", "SegmentResult", "build_hmm", "copy_ratios",
           "decode_contigs", "load_expected", "noise_sd", "sample_qc_table", "segment_cohort",
           "segments_from_states"]
