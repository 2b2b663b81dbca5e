"""Stage 02: copy ratios, masking, noise and HMM segmentation of every sample.

Copy ratio r_ij = counts_ij / expected_ij (expected = the stage-01 VAE
reconstruction, reads per bin), re-normalised so that the median over each
sample's usable bins is 1 (CN 1). Bins whose *expected* depth is below
``hmm_low_cov_threshold`` are masked: missing emissions in the HMM, whose
state the chain imputes from the neighbours. A bin with high expected but
near-zero observed depth is kept — it is a deletion (CN 0), not a gap.

The pure functions (:func:`copy_ratios`, :func:`noise_sd`,
:func:`segments_from_states`, :func:`truth_cn_per_bin`,
:func:`segmentation_accuracy`) take arrays and no params, for stage 03 and the
benchmarks; :func:`segment_cohort` is the stage, reading the store and
``reconstructions.npy`` and writing the stage-02 artefacts.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from .atomic import atomic_path, write_json, write_parquet, write_tsv
from .errors import InputError, StoreError
from .copy_number import CN1_STATE, CN_STATES
from .geometry import contig_starts
from .hmm import GaussianHMM
from .truth import segmentation_accuracy, truth_cn_per_bin
from .params import Params
from .progress import stderr_logger
from .store import open_store

# Floor of the per-sample noise (copy-ratio units): a noiseless sample would
# otherwise make every state but the nearest one impossible.
MIN_NOISE_SD = 0.02
SEGMENT_COLUMNS = {
    "sample_id": "str", "chrom": "str", "start": "int64", "end": "int64", "n_bins": "int32",
    "n_masked": "int32", "state": "int8", "cn": "float32", "mean_ratio": "float32", "confidence": "float32",
}
# MAD of a normal truncated at ±3 sd, relative to the untruncated MAD (the second pass of noise_sd)
_MAD_TRUNCATION_3SD = float(_scipy_stats.truncnorm(-3, 3).ppf(0.75) / _scipy_stats.norm.ppf(0.75))
QC_COLUMNS = ["sample_id", "median_depth", "usable_fraction", "noise_sd", "cn1_fraction", "qc_pass", "n_segments"]


# ---------------------------------------------------------------------- pure functions
def copy_ratios(counts: np.ndarray, expected: np.ndarray, low_cov_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Copy ratios and the mask of unusable bins.

    Parameters
    ----------
    counts : (n_samples, n_bins) observed reads per bin.
    expected : (n_samples, n_bins) expected reads per bin (the VAE reconstruction).
    low_cov_threshold : bins whose expected depth is below this (reads) are masked.

    Returns
    -------
    ratios : float32 (n_samples, n_bins), observed / expected scaled so that each sample's
        median over usable bins is 1; NaN where masked.
    mask : bool (n_samples, n_bins), True where masked (expected depth low or not finite).
    """
    counts = np.asarray(counts, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if counts.shape != expected.shape:
        raise InputError(f"copy_ratios: counts shape {counts.shape} does not match expected depth shape "
                         f"{expected.shape}")
    with np.errstate(invalid="ignore"):
        mask = ~np.isfinite(expected) | (expected < low_cov_threshold) | (expected <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(mask, np.nan, counts / np.where(mask, 1.0, expected))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-masked samples have no median
        med = np.nanmedian(raw, axis=1)
    # a sample whose usable median is 0 (almost all deleted) cannot be re-centred; keep it raw
    scale = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    return (raw / scale[:, None]).astype(np.float32), mask


def noise_sd(ratios: np.ndarray, mask: np.ndarray, method: str = "level", floor: float = MIN_NOISE_SD) -> np.ndarray:
    """Robust per-sample noise of the copy ratio (copy-ratio units).

    ``method="level"`` (default): MAD of the usable bins around the sample's median,
    scaled by 1.4826 to a normal sd, computed again over the bins within 3 sd of the
    median so that large deletions and gains do not inflate it; it it sees the whole bin-to-bin scatter the HMM's emissions must
    absorb, including slowly varying residual bias.
    ``method="diff"``: MAD of first differences between neighbouring usable bins / √2.
    Blind to CNV steps, but it misses any noise shared by neighbouring bins (on the
    simulated cohort, neighbouring CN-1 bins correlate at about 0.6 and this
    estimate is a third too small; see docs/segmentation.md).

    Samples with fewer than 3 usable bins (pairs) get NaN. Returns float64 (n_samples,),
    at least ``floor``.
    """
    r = np.asarray(ratios, dtype=np.float64)
    mask = np.asarray(mask, bool)
    if method == "level":
        values = np.where(mask, np.nan, r)
        enough = (~mask).sum(1) >= 3
    elif method == "diff":
        pair = ~mask[:, 1:] & ~mask[:, :-1]
        values = np.where(pair, r[:, 1:] - r[:, :-1], np.nan) / np.sqrt(2.0)
        enough = pair.sum(1) >= 3
    else:
        raise InputError(f"noise_sd: method = {method!r}; expected level or diff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmedian(values, axis=1)
        sd = 1.4826 * np.nanmedian(np.abs(values - centre[:, None]), axis=1)
        if method == "level":
            # second pass without bins > 3 sd from the centre: large deletions (ratio 0) and
            # gains would otherwise inflate the MAD by a fraction of their share of bins
            near = np.where(np.abs(values - centre[:, None]) <= 3 * sd[:, None], values, np.nan)
            centre = np.nanmedian(near, axis=1)
            sd = 1.4826 * np.nanmedian(np.abs(near - centre[:, None]), axis=1) / _MAD_TRUNCATION_3SD
    return np.where(enough, np.maximum(sd, floor), np.nan)


def segments_from_states(states: np.ndarray, posteriors: np.ndarray, ratios: np.ndarray, mask: np.ndarray,
                         bins: np.ndarray, sample_ids, cn_values=CN_STATES) -> pd.DataFrame:
    """Run-length encode per-bin states into segments (vectorised over samples and bins).

    A segment is a maximal run of bins of one sample and one contig in one state.

    Parameters
    ----------
    states : int (n_samples, n_bins) state index per bin.
    posteriors : (n_samples, n_bins) posterior of that state.
    ratios : (n_samples, n_bins) copy ratios, NaN where masked.
    mask : bool (n_samples, n_bins), True where masked.
    bins : structured (n_bins,) with ``chrom``, ``start``, ``end`` (bp, 1-based inclusive).
    sample_ids : (n_samples,) ids.
    cn_values : copy number of each state index.

    Returns
    -------
    DataFrame with columns ``sample_id chrom start end n_bins n_masked state cn
    mean_ratio confidence`` (dtypes of :data:`SEGMENT_COLUMNS`; ``mean_ratio``
    NaN when every bin of the segment is masked; ``confidence`` is the mean
    posterior of the segment's state over all its bins).
    """
    states = np.asarray(states)
    n, t = states.shape
    if t != bins.shape[0] or len(sample_ids) != n:
        raise InputError(f"segments_from_states: states {states.shape} do not match {bins.shape[0]} bins and "
                         f"{len(sample_ids)} sample ids")
    new_chain = contig_starts(bins)
    change = np.empty((n, t), dtype=bool)
    change[:, 0] = True
    change[:, 1:] = (states[:, 1:] != states[:, :-1]) | new_chain[None, 1:]
    flat_start = np.flatnonzero(change.ravel())
    row = flat_start // t
    first = flat_start % t
    nxt = np.append(flat_start[1:], n * t)
    last = np.where(row == (nxt - 1) // t, nxt - 1 - row * t, t - 1)
    n_bins = last - first + 1

    def run_sum(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.asarray(values, dtype=np.float64).ravel(), flat_start)

    usable = ~np.asarray(mask, bool)
    n_usable = run_sum(usable)
    ratio_sum = run_sum(np.where(usable, np.nan_to_num(np.asarray(ratios, np.float64)), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ratio = np.where(n_usable > 0, ratio_sum / np.maximum(n_usable, 1), np.nan)
    state = states.ravel()[flat_start]
    cn = np.asarray(cn_values, dtype=np.float64)
    frame = pd.DataFrame({
        "sample_id": np.asarray(sample_ids).astype(str)[row],
        "chrom": bins["chrom"][first].astype(str),
        "start": bins["start"][first].astype(np.int64),
        "end": bins["end"][last].astype(np.int64),
        "n_bins": n_bins.astype(np.int32),
        "n_masked": (n_bins - n_usable).astype(np.int32),
        "state": state.astype(np.int8),
        "cn": cn[state].astype(np.float32),
        "mean_ratio": mean_ratio.astype(np.float32),
        "confidence": (run_sum(posteriors) / n_bins).astype(np.float32),
    })
    return frame


def _hmm_for(params: Params, means=CN_STATES, dtype=np.float32) -> GaussianHMM:
    return GaussianHMM(means, params.hmm_self_transition, dtype=dtype, device=params.device,
                       batch_size=params.hmm_batch_size)


def decode_contigs(model: GaussianHMM, ratios: np.ndarray, sd: np.ndarray, mask: np.ndarray,
                   bins: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Viterbi states and their posteriors with one HMM chain per contig.

    Returns int8 states, float32 posteriors (n_samples, n_bins) and the
    float64 log-likelihood per sample (sum over contigs).
    """
    n, t = ratios.shape
    states = np.zeros((n, t), dtype=np.int8)
    post = np.zeros((n, t), dtype=np.float32)
    loglik = np.zeros(n, dtype=np.float64)
    starts = np.flatnonzero(contig_starts(bins))
    for lo, hi in zip(starts, np.append(starts[1:], t)):
        x = np.where(mask[:, lo:hi], 0.0, ratios[:, lo:hi])
        s, p, ll = model.decode(x, sd, mask[:, lo:hi], posteriors="path")
        states[:, lo:hi] = s
        post[:, lo:hi] = p
        loglik += ll
    return states, post, loglik


# ---------------------------------------------------------------------- the stage
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
    path = params.out_path / "reconstructions.npy"
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


def sample_qc_table(sample_ids, counts_median: np.ndarray, mask: np.ndarray, sd: np.ndarray, states: np.ndarray,
                    post: np.ndarray, n_segments: np.ndarray, min_confidence: float,
                    min_cn1_proportion: float) -> pd.DataFrame:
    """``sample_qc.tsv`` rows: depth, usable fraction, noise, CN-1 fraction and the QC verdict.

    ``cn1_fraction`` is the fraction of usable bins in the CN-1 state with posterior
    ≥ ``min_confidence``; a sample passes when it is ≥ ``min_cn1_proportion``.
    """
    usable = ~mask
    n_usable = usable.sum(1)
    confident_cn1 = (states == CN1_STATE) & (post >= min_confidence) & usable
    with np.errstate(invalid="ignore", divide="ignore"):
        cn1 = np.where(n_usable > 0, confident_cn1.sum(1) / np.maximum(n_usable, 1), 0.0)
    return pd.DataFrame({
        "sample_id": np.asarray(sample_ids).astype(str),
        "median_depth": np.asarray(counts_median, dtype=np.float64),
        "usable_fraction": n_usable / mask.shape[1],
        "noise_sd": np.asarray(sd, dtype=np.float64),
        "cn1_fraction": cn1,
        "qc_pass": (cn1 >= min_cn1_proportion) & (n_usable > 0),
        "n_segments": np.asarray(n_segments, dtype=np.int64),
    })


def _prepare_batch(store, expected, rows: slice, threshold: float, noise_method: str):
    counts = np.asarray(store.counts[rows], dtype=np.float64)
    ratios, mask = copy_ratios(counts, np.asarray(expected[rows]), threshold)
    sd = noise_sd(ratios, mask, noise_method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        depth = np.nanmedian(np.where(mask, np.nan, counts), axis=1)
    # a sample with no usable bins is decoded with a nominal sd (all emissions missing) and fails QC
    sd = np.where(np.isfinite(sd), sd, 1.0)
    return ratios, mask, sd, depth


_stderr_log = stderr_logger("segment")


def segment_cohort(params: Params, log=None, noise_method: str = "level") -> SegmentResult:
    """Stage 02: segment every sample of the store; write the stage-02 artefacts to ``out_dir``.

    Reads ``params.store_path`` and ``out_dir/reconstructions.npy``; writes
    ``copy_ratios.npy`` (float32, NaN masked), ``states.npy`` (int8),
    ``state_posteriors.npy`` (float32), ``segments.parquet``, ``sample_qc.tsv``
    and ``segment_summary.json``. Samples are processed ``hmm_batch_size`` at a time.
    ``noise_method`` selects the noise estimate of :func:`noise_sd`.
    """
    t0 = time.perf_counter()
    log = log or _stderr_log
    store = open_store(params.store_path)
    expected = load_expected(params, store)
    n, t = store.counts.shape
    out = params.out_path
    bins = store.bins
    batch = int(params.hmm_batch_size)
    model = _hmm_for(params)
    files = {name: out / f"{name}.npy" for name in ("copy_ratios", "states", "state_posteriors")}
    files.update(segments=out / "segments.parquet", qc=out / "sample_qc.tsv", summary=out / "segment_summary.json")

    sds = np.zeros(n)
    depth = np.zeros(n)
    history: list[float] = []
    with atomic_path(files["copy_ratios"], suffix=".npy") as tmp_ratios, \
            atomic_path(files["states"], suffix=".npy") as tmp_states, \
            atomic_path(files["state_posteriors"], suffix=".npy") as tmp_post:
        ratios_all = np.lib.format.open_memmap(tmp_ratios, mode="w+", dtype=np.float32, shape=(n, t))
        states_all = np.lib.format.open_memmap(tmp_states, mode="w+", dtype=np.int8, shape=(n, t))
        post_all = np.lib.format.open_memmap(tmp_post, mode="w+", dtype=np.float32, shape=(n, t))
        for lo in range(0, n, batch):
            rows = slice(lo, min(n, lo + batch))
            ratios_all[rows], _, sds[rows], depth[rows] = _prepare_batch(store, expected, rows,
                                                                         params.hmm_low_cov_threshold, noise_method)
        if params.hmm_em_iterations > 0:
            sds, history = _cohort_em(model, ratios_all, sds, bins, params, batch, log)
        frames, qc_frames = [], []
        for lo in range(0, n, batch):
            rows = slice(lo, min(n, lo + batch))
            ratios = np.asarray(ratios_all[rows])
            mask = np.isnan(ratios)
            states, post, _ = decode_contigs(model, ratios, sds[rows], mask, bins)
            states_all[rows], post_all[rows] = states, post
            seg = segments_from_states(states, post, ratios, mask, bins, store.sample_ids[rows])
            frames.append(seg)
            n_seg = seg.groupby("sample_id", sort=False).size().reindex(store.sample_ids[rows]).to_numpy()
            qc_frames.append(sample_qc_table(store.sample_ids[rows], depth[rows], mask, sds[rows], states, post,
                                             n_seg, params.cnv_min_confidence, params.cnv_min_cn1_proportion))
            log(f"stage 02: segmented {rows.stop}/{n} samples")
        for arr in (ratios_all, states_all, post_all):
            arr.flush()
        del ratios_all, states_all, post_all
    segments = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: pd.Series(dtype="object" if d == "str" else d) for c, d in SEGMENT_COLUMNS.items()})
    qc = pd.concat(qc_frames, ignore_index=True)
    write_parquet(files["segments"], segments)
    write_tsv(files["qc"], qc, float_format="%.6g")
    seconds = time.perf_counter() - t0
    write_json(files["summary"], {
        "n_samples": int(n), "n_bins": int(t), "n_segments": int(len(segments)),
        "qc_pass": int(qc["qc_pass"].sum()), "means": model.means_.tolist(), "em_iterations": int(params.hmm_em_iterations),
        "em_log_likelihood": history, "noise_method": noise_method, "backend": model.backend, "device": model.device, "seconds": round(seconds, 2),
    })
    return SegmentResult(out, store.sample_ids, bins, qc, len(segments), model.means_.copy(), history, seconds,
                         model.backend, model.device, files)


def _cohort_em(model: GaussianHMM, ratios_all, sds, bins, params: Params, batch: int, log):
    """EM over the whole cohort in batches: pooled means, per-sample sd."""
    prior = model.means.copy()
    starts = np.flatnonzero(contig_starts(bins))
    t = ratios_all.shape[1]
    history = []
    for it in range(params.hmm_em_iterations):
        stats = np.zeros((ratios_all.shape[0], model.n_states, 3))
        total = 0.0
        for lo in range(0, ratios_all.shape[0], batch):
            rows = slice(lo, min(ratios_all.shape[0], lo + batch))
            ratios = np.asarray(ratios_all[rows])
            mask = np.isnan(ratios)
            for a, b in zip(starts, np.append(starts[1:], t)):
                s, ll = model.sufficient_statistics(np.where(mask[:, a:b], 0.0, ratios[:, a:b]), sds[rows],
                                                    mask[:, a:b])
                stats[rows] += s
                total += float(ll.sum())
        history.append(total)
        sds = model.em_update(stats, sds, prior)
        log(f"stage 02: EM iteration {it + 1}: log-likelihood {total:.6g}, means {np.round(model.means_, 3).tolist()}")
    return sds, history


def pick_examples(qc: pd.DataFrame, segments: pd.DataFrame, min_bins: int = 3) -> dict[str, str]:
    """Example samples for the report: ``amplified``, ``deleted``, ``normal``, ``failed_qc``.

    Amplified: the QC-passing sample with the longest CN ≥ 2 segment (at least ``min_bins``
    bins, mean ratio ≥ 1.75), ties broken by lower noise; deleted: the longest CN-0 segment;
    normal: the QC-passing sample with the highest CN-1 fraction; failed QC: the lowest CN-1
    fraction among failures. A role with no candidate is left out.
    """
    noise = qc.set_index("sample_id")["noise_sd"]
    passing = set(qc.loc[qc["qc_pass"], "sample_id"])
    out: dict[str, str] = {}
    long = segments[(segments["n_bins"] >= min_bins) & segments["sample_id"].isin(passing)]
    for role, sel in (("amplified", (long["cn"] >= 2) & (long["mean_ratio"] >= 1.75)), ("deleted", long["cn"] == 0)):
        cand = long[sel].assign(noise=lambda f: f["sample_id"].map(noise))
        cand = cand[~cand["sample_id"].isin(out.values())]
        if len(cand):
            best = cand.sort_values(["n_bins", "noise"], ascending=[False, True], kind="stable")
            out[role] = str(best["sample_id"].iloc[0])
    ok = qc[qc["qc_pass"] & ~qc["sample_id"].isin(out.values())]
    if len(ok):
        out["normal"] = str(ok.sort_values("cn1_fraction", ascending=False, kind="stable")["sample_id"].iloc[0])
    bad = qc[~qc["qc_pass"]]
    if len(bad):
        out["failed_qc"] = str(bad.sort_values("cn1_fraction", kind="stable")["sample_id"].iloc[0])
    return out


def state_occupancy(states: np.ndarray, mask: np.ndarray | None = None, chunk: int = 1024) -> pd.DataFrame:
    """Fraction of each sample's bins in each state, (n_samples × K) with CN column names."""
    k = len(CN_STATES)
    out = np.zeros((states.shape[0], k))
    for lo in range(0, states.shape[0], chunk):
        s = np.asarray(states[lo:lo + chunk]).astype(np.int64)
        w = None if mask is None else (~np.asarray(mask[lo:lo + chunk])).ravel().astype(float)
        flat = (np.arange(s.shape[0])[:, None] * k + s).ravel()
        counts = np.bincount(flat, weights=w, minlength=s.shape[0] * k).reshape(s.shape[0], k)
        out[lo:lo + chunk] = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return pd.DataFrame(out, columns=[f"CN {c:g}" for c in CN_STATES])


# ---------------------------------------------------------------------- report helpers
def summary_table(result: SegmentResult) -> pd.DataFrame:
    """One-column overview of a run: samples, bins, segments, QC, state means, backend, time."""
    qc = result.qc
    rows = {
        "samples": f"{len(qc):,}",
        "bins per sample": f"{len(result.bins):,}",
        "segments": f"{result.n_segments:,} ({result.n_segments / max(1, len(qc)):.1f} per sample)",
        "samples passing QC": f"{int(qc['qc_pass'].sum()):,} ({qc['qc_pass'].mean():.1%})",
        "median usable fraction of bins": f"{qc['usable_fraction'].median():.3f}",
        "median noise sd (copy ratio)": f"{qc['noise_sd'].median():.3f}",
        "state means (copies)": ", ".join(f"{m:.3f}" for m in result.means),
        "EM iterations": str(len(result.em_history)),
        "HMM backend / device": f"{result.backend} / {result.device}",
        "stage time (s)": f"{result.seconds:.1f}",
    }
    return pd.DataFrame({"value": rows})


def example_tracks(result: SegmentResult, examples: dict[str, str]):
    """Arguments of :func:`cnvrock_lib.plots.segments.sample_tracks` for the example samples."""
    ids = list(examples.values())
    index = {s: i for i, s in enumerate(result.sample_ids.tolist())}
    rows = [index[s] for s in ids]
    ratios = np.asarray(result.load("copy_ratios")[rows], dtype=np.float64)
    labels = [f"{role.replace('_', ' ')} — {sid}" for role, sid in examples.items()]
    return result.bins, ratios, result.segments(ids), labels


def heatmap_rows(result: SegmentResult, params: Params, max_samples: int = 300):
    """States of up to ``max_samples`` samples for the cohort heatmap, grouped by species and ST.

    A seeded subsample (``params.seed``) when the cohort is larger; without metadata, samples
    are ordered by how many bins they have outside CN 1. Returns (states, labels).
    """
    ids = result.sample_ids
    rng = np.random.default_rng(params.seed)
    pick = np.sort(rng.choice(ids.size, max_samples, replace=False)) if ids.size > max_samples else np.arange(ids.size)
    states = np.asarray(result.load("states")[pick])
    order_key = pd.DataFrame({"sample_id": ids[pick], "abnormal": (states != CN1_STATE).sum(1)})
    meta_path = params.kpsc_meta_path
    if meta_path and Path(meta_path).is_file():
        meta = pd.read_csv(meta_path, sep="\t", dtype=str, keep_default_na=False)
        if {"sample_id", "Species", "ST"} <= set(meta.columns):
            order_key = order_key.merge(meta[["sample_id", "Species", "ST"]], on="sample_id", how="left")
            order = order_key.sort_values(["Species", "ST", "abnormal"], kind="stable").index.to_numpy()
            labels = (order_key["Species"].fillna("?") + " " + order_key["ST"].fillna("")).to_numpy()
            return states[order], list(labels[order])
    order = order_key.sort_values("abnormal", kind="stable").index.to_numpy()
    return states[order], list(order_key["sample_id"].to_numpy()[order])


def truth_path(params: Params) -> Path | None:
    """``truth/segments.tsv`` of a simulated tier, or None."""
    sim = params.simulate
    if not sim:
        return None
    path = Path(sim["data_dir"]) / "truth" / "segments.tsv"
    return path if path.is_file() else None


def accuracy_against_truth(params: Params, result: SegmentResult) -> pd.DataFrame | None:
    """:func:`segmentation_accuracy` of the run against the simulator's true segments, as a table.

    Rows: all samples, samples passing QC. None when the tier has no truth table.
    """
    path = truth_path(params)
    if path is None:
        return None
    truth = pd.read_csv(path, sep="\t", dtype={"sample_id": str, "chrom": str})
    states = result.load("states")
    ratios = result.load("copy_ratios")
    qc_pass = result.qc["qc_pass"].to_numpy(bool)
    truth_cn = truth_cn_per_bin(truth, result.bins, result.sample_ids)
    mask = np.isnan(np.asarray(ratios))
    rows = {}
    for name, sel in (("all samples", np.ones_like(qc_pass)), ("samples passing QC", qc_pass)):
        acc = segmentation_accuracy(np.asarray(states)[sel], mask[sel], truth_cn[sel], result.bins)
        flat = {k: v for k, v in acc.items() if not isinstance(v, dict)}
        flat.update({f"recall_{k}": v for k, v in acc["recall_by_class"].items()})
        flat.update({f"precision_{k}": v for k, v in acc["precision_by_class"].items()})
        rows[name] = flat
    return pd.DataFrame(rows)  # metrics as rows, sample sets as columns


def cohort_occupancy(result: SegmentResult, chunk: int = 1024) -> pd.DataFrame:
    """:func:`state_occupancy` of every sample over its usable bins (index: sample_id)."""
    states, ratios = result.load("states"), result.load("copy_ratios")
    parts = [state_occupancy(states[lo:lo + chunk], np.isnan(ratios[lo:lo + chunk]))
             for lo in range(0, states.shape[0], chunk)]
    occ = pd.concat(parts, ignore_index=True)
    occ.index = pd.Index(result.sample_ids, name="sample_id")
    return occ
