"""Stage 02 driver: read the store and ``reconstructions.npy``, segment every sample batch by
batch with :mod:`.core`, and write the stage-02 artefacts through :mod:`cnvrock_lib.artefacts`
(the three per-bin arrays stream into memory-mapped temp files that are renamed when complete)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import artefacts as A
from ..atomic import atomic_path
from ..errors import InputError, StoreError
from ..params import Params
from ..progress import stderr_logger
from ..store import open_store
from .core import SEGMENT_COLUMNS, SegmentConfig, build_hmm, cohort_em, decode_batch, prepare_batch

_stderr_log = stderr_logger("segment")
ARRAYS = {"copy_ratios": A.COPY_RATIOS, "states": A.STATES, "state_posteriors": A.STATE_POSTERIORS}


@dataclass
class SegmentResult:
    """What stage 02 wrote and the numbers its report shows."""

    out_dir: Path
    sample_ids: np.ndarray
    bins: np.ndarray
    qc: pd.DataFrame
    n_segments: int
    means: np.ndarray
    em_history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = ""
    device: str = ""
    files: dict[str, Path] = field(default_factory=dict)

    def load(self, name: str, mmap: bool = True) -> np.ndarray:
        """One of the stage's .npy artefacts (``copy_ratios``, ``states``, ``state_posteriors``)."""
        return np.load(self.files[name], mmap_mode="r" if mmap else None)

    def segments(self, sample_ids=None) -> pd.DataFrame:
        """``segments.parquet``, optionally only for ``sample_ids``."""
        filters = [("sample_id", "in", list(sample_ids))] if sample_ids is not None else None
        return pd.read_parquet(self.files["segments"], filters=filters)


def load_expected(params: Params, store) -> np.ndarray:
    """``out_dir/reconstructions.npy`` memory-mapped, checked against the store's shape."""
    path = A.RECONSTRUCTIONS.path(params.out_path)
    if not path.is_file():
        raise InputError(f"stage 02 needs {path} (expected reads per bin, written by stage 01); run stage 01 first")
    try:
        expected = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise InputError(f"{path} is not a readable .npy array: {exc}") from None
    if expected.shape != store.counts.shape:
        raise StoreError(f"{path} has shape {expected.shape} but the store {store.path} has counts "
                         f"{store.counts.shape} (samples × bins); re-run stage 01 on this store")
    if expected.dtype.kind not in "fiu":
        raise InputError(f"{path} has dtype {expected.dtype}; expected float32 reads per bin")
    return expected


def segment_cohort(params: Params, log=None, noise_method: str = "level") -> SegmentResult:
    """Stage 02: segment every sample of the store; write the stage-02 artefacts to ``out_dir``.

    Reads ``params.store_path`` and ``out_dir/reconstructions.npy``; writes
    ``copy_ratios.npy`` (float32, NaN masked), ``states.npy`` (int8),
    ``state_posteriors.npy`` (float32), ``segments.parquet``, ``sample_qc.tsv``
    and ``segment_summary.json``. Samples are processed ``hmm_batch_size`` at a time.
    ``noise_method`` selects the noise estimate of :func:`.core.noise_sd`.
    """
    t0 = time.perf_counter()
    log = log or _stderr_log
    config = SegmentConfig.from_params(params, noise_method)
    store = open_store(params.store_path)
    expected = load_expected(params, store)
    n, t = store.counts.shape
    out = params.out_path
    bins = store.bins
    batch = config.batch_size
    model = build_hmm(config)
    files = {name: art.path(out) for name, art in ARRAYS.items()}
    files.update(segments=A.SEGMENTS.path(out), qc=A.SAMPLE_QC.path(out), summary=A.SEGMENT_SUMMARY.path(out))

    sds = np.zeros(n)
    depth = np.zeros(n)
    history: list[float] = []
    with atomic_path(files["copy_ratios"], suffix=".npy") as tmp_ratios, \
            atomic_path(files["states"], suffix=".npy") as tmp_states, \
            atomic_path(files["state_posteriors"], suffix=".npy") as tmp_post:
        ratios_all = np.lib.format.open_memmap(tmp_ratios, mode="w+", dtype=A.COPY_RATIOS.dtype, shape=(n, t))
        states_all = np.lib.format.open_memmap(tmp_states, mode="w+", dtype=A.STATES.dtype, shape=(n, t))
        post_all = np.lib.format.open_memmap(tmp_post, mode="w+", dtype=A.STATE_POSTERIORS.dtype, shape=(n, t))
        for lo in range(0, n, batch):
            rows = slice(lo, min(n, lo + batch))
            ratios_all[rows], _, sds[rows], depth[rows] = prepare_batch(store.counts[rows], expected[rows], config)
        if config.em_iterations > 0:
            sds, history = cohort_em(model, ratios_all, sds, bins, config, log)
        frames, qc_frames = [], []
        for lo in range(0, n, batch):
            rows = slice(lo, min(n, lo + batch))
            states, post, seg, qc = decode_batch(model, np.asarray(ratios_all[rows]), sds[rows], depth[rows], bins,
                                                 store.sample_ids[rows], config)
            states_all[rows], post_all[rows] = states, post
            frames.append(seg)
            qc_frames.append(qc)
            log(f"stage 02: segmented {rows.stop}/{n} samples")
        for arr in (ratios_all, states_all, post_all):
            arr.flush()
        del ratios_all, states_all, post_all
    segments = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: pd.Series(dtype="object" if d == "str" else d) for c, d in SEGMENT_COLUMNS.items()})
    qc = pd.concat(qc_frames, ignore_index=True)
    A.write_table(out, A.SEGMENTS, segments)
    A.write_table(out, A.SAMPLE_QC, qc, float_format="%.6g")
    seconds = time.perf_counter() - t0
    A.save_json(out, A.SEGMENT_SUMMARY, {
        "n_samples": int(n), "n_bins": int(t), "n_segments": int(len(segments)),
        "qc_pass": int(qc["qc_pass"].sum()), "means": model.means_.tolist(), "em_iterations": config.em_iterations,
        "em_log_likelihood": history, "noise_method": noise_method, "backend": model.backend, "device": model.device,
        "seconds": round(seconds, 2),
    })
    return SegmentResult(out, store.sample_ids, bins, qc, len(segments), model.means_.copy(), history, seconds,
                         model.backend, model.device, files)
