"""Baselines that CNVRock is benchmarked against (docs/BENCHMARKS.md).

Each baseline turns the same 1 kb bins into the same call codes as stage 03
(−1 uncallable, 0 absent, 1 normal/present, 2 amplified) plus a continuous
dosage, so that one scorer (:func:`score_calls`) compares them all against a
simulated cohort's truth:

- raw thresholds: copy ratios = counts ÷ the sample's median count (no VAE),
  CRR against the local flank, fixed CRR thresholds (no HMM); plasmid PCN with
  one global absent threshold;
- hmmlearn on the raw ratios (no VAE), CNVRock's call rule on its states;
- CNVkit segmentation (``haar``, ``hmm``) of the raw log2 ratios, the CRR
  read off the segment means;
- the original implementation's choices: HMM means {0, 1, 1.5, 2.5, 3.5, 5},
  gene bins = bins whose start lies in the gene, a whole-contig flank, and the
  per-bin PCN normalisation (a multi-bin sum ÷ a per-bin median).

Units: counts are reads per bin, ratios/CRR copies, PCN copies per chromosome,
positions bp (1-based inclusive).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from . import calling, geometry
from .evaluation import mcc_from_counts
from .truth import truth_metrics
from .errors import InputError
from .copy_number import CN_STATES
from .hmm import GaussianHMM, uniform_transmat
from .geometry import contig_starts
from .segmentation import copy_ratios, noise_sd

ORIGINAL_HMM_MEANS = (0.0, 1.0, 1.5, 2.5, 3.5, 5.0)
# Threshold-only rule: a gene whose CRR is below this is called absent (the
# midpoint between CN 0 and CN 1; copies).
RAW_ABSENT_CRR = 0.5
# log2 of a zero ratio is undefined; CNVkit gets this floor instead (copies).
MIN_RATIO_FOR_LOG2 = 1e-3


# --------------------------------------------------------------------------
# Ratios without a VAE
# --------------------------------------------------------------------------
def median_normalised_ratios(counts: np.ndarray, medians: np.ndarray,
                             low_cov_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Copy ratios with the sample median as the expected depth of every bin (no VAE).

    Parameters
    ----------
    counts : (n_samples, n_bins) reads per bin.
    medians : (n_samples,) robust median reads per bin of each sample.
    low_cov_threshold : samples whose median is below this (reads) are masked entirely.

    Returns float32 ratios (median 1 over usable bins, NaN masked) and the bool mask.
    """
    counts = np.asarray(counts, dtype=np.float64)
    medians = np.asarray(medians, dtype=np.float64)
    if medians.shape != (counts.shape[0],):
        raise InputError(f"median_normalised_ratios: {medians.shape[0] if medians.ndim else 'scalar'} medians for "
                         f"{counts.shape[0]} samples; expected one median (reads per bin) per sample")
    expected = np.broadcast_to(medians[:, None], counts.shape)
    return copy_ratios(counts, expected, low_cov_threshold)


# --------------------------------------------------------------------------
# Gene geometry: CNVRock's and the original's
# --------------------------------------------------------------------------
def bin_start_gene_bins(bins: np.ndarray, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """The original's gene bins: bins whose start lies inside the gene, weighted equally.

    A gene that lies inside a single bin it does not start gets no bins (uncallable).
    Returns int64 indices and unit weights.
    """
    inside = (bins["chrom"] == contig) & (bins["start"] >= start) & (bins["start"] <= end)
    idx = np.flatnonzero(inside).astype(np.int64)
    return idx, np.ones(idx.size, dtype=np.int64)


def gene_geometry(bins: np.ndarray, contig: str, start: int, end: int, padding: int,
                  gene_bins: str = "overlap", flank: str = "local") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gene bin indices, their weights (bp) and flank bin indices under either rule set.

    ``gene_bins``: ``overlap`` (CNVRock, weighted by overlap bp) or ``bin_start`` (the original).
    ``flank``: ``local`` (±``padding`` bp) or ``global`` (every other bin of the contig).
    """
    if gene_bins == "overlap":
        idx, weights = geometry.gene_bin_weights(bins, contig, start, end)
    elif gene_bins == "bin_start":
        idx, weights = bin_start_gene_bins(bins, contig, start, end)
    else:
        raise InputError(f"gene_bins={gene_bins!r}; expected 'overlap' or 'bin_start'")
    if flank == "local":
        flank_idx = geometry.flank_bin_indices(bins, contig, start, end, padding, idx)
    elif flank == "global":
        on_contig = bins["chrom"] == contig
        on_contig[idx] = False
        flank_idx = np.flatnonzero(on_contig).astype(np.int64)
    else:
        raise InputError(f"flank={flank!r}; expected 'local' or 'global'")
    return idx, weights, flank_idx


def gene_crr(gene_ratios: np.ndarray, weights: np.ndarray, flank_ratios: np.ndarray,
             flank: str = "local") -> tuple[np.ndarray, np.ndarray]:
    """CRR (copies): weighted gene ratio ÷ flank baseline; ``local`` uses CNVRock's
    :func:`cnvrock_lib.calling.chromosomal.crr` (with its fall-backs), ``global`` the plain median of the flank.
    Returns ``(crr, n_usable_gene_bins)``; NaN where no gene bin is usable."""
    if flank == "local":
        return calling.chromosomal.crr(gene_ratios, weights, flank_ratios)
    gene, n_usable = calling.chromosomal.weighted_gene_ratio(gene_ratios, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base = np.nanmedian(np.asarray(flank_ratios, dtype=np.float64), axis=1)
    base = np.where(np.isfinite(base) & (base > 0), base, 1.0)
    return gene / base, n_usable


# --------------------------------------------------------------------------
# Chromosomal calls
# --------------------------------------------------------------------------
def threshold_call(crr_value: np.ndarray, amp_threshold: float, absent_crr: float = RAW_ABSENT_CRR) -> np.ndarray:
    """Threshold-only rule: 2 if CRR ≥ ``amp_threshold``, 0 if CRR < ``absent_crr``, else 1; −1 for NaN."""
    v = np.asarray(crr_value, dtype=np.float64)
    out = np.where(v >= amp_threshold, 2, np.where(v < absent_crr, 0, 1))
    return np.where(np.isfinite(v), out, -1).astype(np.int8)


def call_chromosomal(ratios: np.ndarray, bins: np.ndarray, panel: pd.DataFrame, rule: calling.chromosomal.ChromRule,
                     padding: int, states: np.ndarray | None = None, state_cn=CN_STATES,
                     gene_bins: str = "overlap", flank: str = "local",
                     callable_mask: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Chromosomal gene calls from copy ratios under a chosen rule set.

    Parameters
    ----------
    ratios : (n_samples, n_bins) copy ratios, NaN where masked.
    bins : the store's bins.
    panel : ``gene contig start end`` rows (bp, 1-based inclusive).
    rule : CNVRock's call thresholds (:class:`cnvrock_lib.calling.chromosomal.ChromRule`).
    padding : flank half-width (bp) for the local flank.
    states : (n_samples, n_bins) state index per bin, or None for the threshold-only rule.
    state_cn : copy number of each state index (amplified = CN ≥ 1.5, absent = CN 0).
    gene_bins, flank : see :func:`gene_geometry`.
    callable_mask : per gene, bool (n_samples,) of samples allowed a call (e.g. species, QC); others get −1.

    Returns a frame ``gene call value n_usable_bins`` in panel × sample order (row ``i`` of
    each gene block is sample ``i``).
    """
    state_cn = np.asarray(state_cn, dtype=np.float64)
    amp_states = tuple(np.flatnonzero(state_cn >= 1.5))
    absent_states = tuple(np.flatnonzero(state_cn == 0))
    frames = []
    for gene in panel.itertuples():
        idx, weights, flank_idx = gene_geometry(bins, gene.contig, int(gene.start), int(gene.end), padding,
                                                gene_bins, flank)
        g_ratio = np.asarray(ratios[:, idx], dtype=np.float64)
        value, n_usable = gene_crr(g_ratio, weights, np.asarray(ratios[:, flank_idx], dtype=np.float64), flank)
        if states is None:
            codes = threshold_call(value, rule.amp_threshold)
        else:
            g_state = np.asarray(states[:, idx])
            usable = np.isfinite(g_ratio)
            codes = calling.chromosomal.chromosomal_call(value, n_usable, calling.chromosomal.state_cover(g_state, usable, weights, amp_states),
                                          calling.chromosomal.state_cover(g_state, usable, weights, absent_states), rule)
        if callable_mask is not None and gene.gene in callable_mask:
            codes = np.where(callable_mask[gene.gene], codes, -1).astype(np.int8)
        frames.append(pd.DataFrame({"gene": gene.gene, "call": codes, "value": value,
                                    "n_usable_bins": n_usable.astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------
# Segmenters on raw ratios
# --------------------------------------------------------------------------
def decode_states(ratios: np.ndarray, bins: np.ndarray, means=CN_STATES, self_transition: float = 0.8,
                  sd: np.ndarray | None = None) -> np.ndarray:
    """MAP states (int8) of CNVRock's batched HMM with the given state means, one chain per contig."""
    from .segmentation import decode_contigs

    ratios = np.asarray(ratios, dtype=np.float64)
    mask = ~np.isfinite(ratios)
    sd = noise_sd(ratios, mask) if sd is None else np.asarray(sd, dtype=np.float64)
    sd = np.where(np.isfinite(sd), sd, 1.0)
    states, _, _ = decode_contigs(GaussianHMM(means, self_transition), ratios, sd, mask, bins)
    return states


def hmmlearn_states(ratios: np.ndarray, bins: np.ndarray, means=CN_STATES, self_transition: float = 0.8,
                    sd: np.ndarray | None = None) -> np.ndarray:
    """Viterbi states from ``hmmlearn.hmm.GaussianHMM`` (fixed parameters), one sample and contig at a time.

    hmmlearn has no missing values, so masked bins are left out of its input and
    take the state of the preceding usable bin (the following one at a contig start).
    Variance per sample = ``sd``² (default: :func:`cnvrock_lib.segmentation.noise_sd`).
    Returns int8 (n_samples, n_bins).
    """
    from hmmlearn import hmm

    ratios = np.asarray(ratios, dtype=np.float64)
    mask = ~np.isfinite(ratios)
    sd = noise_sd(ratios, mask) if sd is None else np.asarray(sd, dtype=np.float64)
    k = len(means)
    model = hmm.GaussianHMM(n_components=k, covariance_type="diag", init_params="", params="")
    model.startprob_ = np.full(k, 1.0 / k)
    model.transmat_ = uniform_transmat(k, self_transition)
    model.means_ = np.asarray(means, dtype=np.float64)[:, None]
    normal = int(np.argmin(np.abs(np.asarray(means) - 1.0)))
    n, t = ratios.shape
    states = np.full((n, t), normal, dtype=np.int8)
    starts = np.flatnonzero(contig_starts(bins))
    for i in range(n):
        if not np.isfinite(sd[i]):
            continue
        model.covars_ = np.full((k, 1), sd[i] ** 2)
        for lo, hi in zip(starts, np.append(starts[1:], t)):
            use = ~mask[i, lo:hi]
            if not use.any():
                continue
            path = model.decode(ratios[i, lo:hi][use][:, None], algorithm="viterbi")[1]
            # carry each decoded state forward over the masked bins after it
            pos = np.cumsum(use) - 1
            states[i, lo:hi] = path[np.maximum(pos, 0)]
    return states


def cnvkit_segment_ratios(ratios: np.ndarray, bins: np.ndarray, method: str = "haar",
                          sample_ids=None) -> np.ndarray:
    """Per-bin segment means (copies) from CNVkit's segmentation of each sample's log2 ratios.

    Uses ``cnvlib.segmentation.do_segmentation`` (CNVkit, a benchmark-only extra) on a
    ``CopyNumArray`` of the usable bins (log2 of the ratio, floored at
    ``MIN_RATIO_FOR_LOG2``; 0-based half-open coordinates as CNVkit expects).
    Masked bins get the mean of the segment that spans them (NaN outside any segment).
    Returns float64 (n_samples, n_bins).
    """
    try:
        from cnvlib import segmentation
        from cnvlib.cnary import CopyNumArray
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise InputError("CNVkit is not installed; install the benchmark extra: pip install -e '.[bench]'") from exc
    ratios = np.asarray(ratios, dtype=np.float64)
    n, t = ratios.shape
    out = np.full((n, t), np.nan)
    chrom = bins["chrom"].astype(str)
    start0 = bins["start"].astype(np.int64) - 1
    end = bins["end"].astype(np.int64)
    ids = np.arange(n).astype(str) if sample_ids is None else np.asarray(sample_ids).astype(str)
    # CNVkit logs one INFO line per segmented chromosome through the root logger: silence INFO for
    # this call only (logging.disable), leaving every logger's configured level as it was.
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        for i in range(n):
            use = np.isfinite(ratios[i])
            if use.sum() < 2:
                continue
            frame = pd.DataFrame({"chromosome": chrom[use], "start": start0[use], "end": end[use], "gene": "-",
                                  "log2": np.log2(np.maximum(ratios[i, use], MIN_RATIO_FOR_LOG2)),
                                  "depth": 1.0, "weight": 1.0})
            seg = segmentation.do_segmentation(CopyNumArray(frame, {"sample_id": ids[i]}), method)
            for s in seg.data.itertuples():
                inside = (chrom == s.chromosome) & (start0 >= s.start) & (end <= s.end)
                out[i, inside] = 2.0 ** s.log2
    finally:
        logging.disable(previous)
    return out


# --------------------------------------------------------------------------
# Plasmid families
# --------------------------------------------------------------------------
def family_counts(plasmid_store, panel: pd.DataFrame, families: dict[str, list[str]], sample_ids,
                  source: str = "panel") -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, int]]:
    """Per family: summed reads of its members' bins (rows follow ``sample_ids``; NaN where the
    plasmid store lacks a sample), the mean member length (bp) and the number of bins summed."""
    regions = {r.gene: r for r in calling.plasmid.plasmid_regions(plasmid_store, panel, source)}
    lookup = {s: i for i, s in enumerate(plasmid_store.sample_ids.tolist())}
    rows = np.array([lookup.get(s, -1) for s in np.asarray(sample_ids).tolist()], dtype=np.int64)
    present = rows >= 0
    counts, lengths, n_bins = {}, {}, {}
    for fam, members in families.items():
        cols = np.concatenate([regions[m].columns for m in members])
        total = np.full(rows.size, np.nan)
        total[present] = np.asarray(plasmid_store.counts[rows[present]][:, cols], dtype=np.float64).sum(axis=1)
        counts[fam] = total
        lengths[fam] = float(np.mean([regions[m].length_bp for m in members]))
        n_bins[fam] = int(cols.size) // max(len(members), 1)
    return counts, lengths, n_bins


def family_pcn(counts: np.ndarray, length_bp: float, n_bins: int, medians: np.ndarray,
               per_bp: bool = True) -> np.ndarray:
    """PCN (copies per chromosome) of a family: CNVRock's per-bp rule, or the original's
    multi-bin sum ÷ the per-bin chromosome median (``per_bp=False``; ``n_bins`` unused)."""
    medians = np.asarray(medians, dtype=np.float64)
    if per_bp:
        return calling.plasmid.pcn(counts, length_bp, calling.plasmid.chromosome_depth_per_bp(medians))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(medians > 0, np.asarray(counts, dtype=np.float64) / medians, np.nan)


# --------------------------------------------------------------------------
# Scoring against the simulator's truth
# --------------------------------------------------------------------------
def score_calls(calls: pd.DataFrame, truth: pd.DataFrame, amp_min_cn: float = 2.0) -> pd.DataFrame:
    """Per gene × level × mode: confusion counts, MCC, FNR, PPV, recall, dosage error.

    Parameters
    ----------
    calls : ``sample_id gene level call value`` (call −1 = uncallable, left out of the scores).
    truth : ``sample_id gene level true_cn`` (``truth/gene_truth.tsv``).
    amp_min_cn : true copies at or above which a chromosomal gene counts as amplified.

    Returns the columns of :func:`cnvrock_lib.truth.truth_metrics` plus ``tn mcc fnr ppv``.
    MCC follows scikit-learn (0 when the prediction has one class) and is NaN unless the
    truth has both classes among callable samples.
    """
    base = calls[["sample_id", "gene", "level", "call", "value"]]
    chrom = base[base.level == "chromosome"].drop(columns="level").rename(columns={"value": "crr"})
    plasmid = base[base.level != "chromosome"].rename(columns={"value": "pcn"})
    scored = truth_metrics(chrom.assign(crr_lo=np.nan, crr_hi=np.nan),
                                plasmid.assign(pcn_lo=np.nan, pcn_hi=np.nan), truth, amp_min_cn=amp_min_cn)
    if scored.empty:
        return scored
    tp, fp, fn = (scored[c].astype(float) for c in ("tp", "fp", "fn"))
    tn = scored["n_callable"].astype(float) - tp - fp - fn
    mcc = [mcc_from_counts(*row) for row in zip(tp, fp, fn, tn)]
    with np.errstate(invalid="ignore", divide="ignore"):
        fnr = np.where(tp + fn > 0, fn / (tp + fn), np.nan)
    scored["tn"] = tn.astype(np.int64)
    scored["mcc"] = mcc
    scored["fnr"] = fnr
    scored["ppv"] = scored["precision"]
    return scored
