"""Stage-03 inputs for a simulated cohort without the VAE, for benchmarks and tests of the decision layer.

Stage 01 is replaced by a naive expected depth (the cohort's median depth-normalised profile ×
each sample's median count); stage 02 (:func:`cnvrock_lib.segmentation.segment_cohort`) then runs as
usual, and :func:`cnvrock_lib.calling.stage.call_genes` reads its artefacts. The calls differ
from a full run only through the expected depth (the CRR divides by a local flank, which removes
most of what the VAE models). No truth is read here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import segmentation
from ..atomic import save_npy
from ..normalise import sample_medians
from ..params import Params, load_params
from ..store import open_store


def median_profile_expected(counts: np.ndarray) -> np.ndarray:
    """Naive expected reads per bin: median over samples of depth-normalised counts × each sample's median.

    Returns float32 (n_samples, n_bins) reads per bin.
    """
    counts = np.asarray(counts, dtype=np.float64)
    m = sample_medians(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.median(counts / np.where(m > 0, m, 1.0)[:, None], axis=0)
    return (m[:, None] * profile[None, :]).astype(np.float32)


def quick_stage_inputs(data_dir: str | Path, out_dir: str | Path, **overrides) -> Params:
    """Write stage-02 artefacts for the simulated cohort in ``data_dir`` into ``out_dir``.

    Parameters
    ----------
    data_dir : a folder written by :func:`cnvrock_lib.simulate.simulate_cohort` (its ``params.yaml``).
    out_dir : where ``reconstructions.npy`` (naive) and the stage-02 artefacts go.
    **overrides : params keys (e.g. ``pcn_threshold_method``).

    Returns the :class:`Params` to hand to :func:`cnvrock_lib.calling.stage.call_genes`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = load_params(Path(data_dir) / "params.yaml", overrides={"out_dir": str(out), **overrides})
    store = open_store(params.store_path)
    save_npy(out / "reconstructions.npy", median_profile_expected(store.counts))
    segmentation.segment_cohort(params, log=lambda *_: None)
    return params
