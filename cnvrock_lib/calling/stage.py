"""Stage 03 driver: read the stage 01/02 artefacts, the stores and the panels; call; write.

:func:`call_genes` is what ``notebooks/03_call.ipynb`` runs. The calling itself is in
:mod:`.core` (pure); this module only gathers its inputs and writes ``gene_calls.tsv``,
``plasmid_gene_calls.tsv`` and ``pcn_thresholds.tsv`` through :mod:`cnvrock_lib.artefacts`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import artefacts as A
from .. import reference
from ..geometry import contig_slices
from ..errors import InputError, ParamsError
from ..holdout import holdout_mask
from ..normalise import sample_medians
from ..params import Params
from ..store import NpyStore, open_store
from .core import (ChromConfig, PlasmidConfig, PlasmidInputs, call_chromosomal, call_plasmid,
                   empty_plasmid_tables)
from .intervals import bin_dispersion
from .plasmid import chromosome_depth_per_bp, plasmid_regions

TABLE_FORMAT = {"na_rep": "NA", "float_format": "%.6g"}


@dataclass
class CallResult:
    """What stage 03 produced: the tidy call tables and where they were written."""

    gene_calls: pd.DataFrame
    plasmid_calls: pd.DataFrame
    thresholds: pd.DataFrame
    sample_qc: pd.DataFrame          # sample_id, cn1_fraction, qc_pass, chrom_depth_bp
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def load_species(meta_path: str | None, sample_ids: np.ndarray) -> np.ndarray:
    """Species per sample from the metadata TSV (``Species`` column); '' where unknown."""
    out = np.full(len(sample_ids), "", dtype=object)
    if not meta_path:
        return out
    meta = reference.read_tsv(meta_path, ["sample_id", "Species"], "metadata (kpsc_meta_path)")
    dup = meta["sample_id"].duplicated()
    if dup.any():
        raise InputError(f"metadata {meta_path}: sample_id {meta['sample_id'][dup].iloc[0]!r} appears twice")
    lookup = dict(zip(meta["sample_id"], meta["Species"].str.strip()))
    return np.array([lookup.get(s, "") for s in sample_ids], dtype=object)


def load_sample_qc(out_dir: Path, sample_ids: np.ndarray) -> pd.DataFrame:
    """Stage 02's ``sample_qc.tsv``, checked to list the chromosome store's samples in order."""
    path = A.SAMPLE_QC.path(out_dir)
    if not path.is_file():
        raise InputError(f"{A.SAMPLE_QC.name} not found in {out_dir}; {A.SAMPLE_QC.writer} writes it — "
                         f"run that stage first")
    qc = reference.read_tsv(path, ["sample_id", "cn1_fraction", "qc_pass"], "stage-02 sample QC")
    if len(qc) != len(sample_ids) or not np.array_equal(qc["sample_id"].to_numpy(dtype=str), sample_ids):
        raise InputError(f"{path} lists {len(qc)} samples that do not match the {len(sample_ids)} samples of the "
                         f"chromosome store in order; the stage-02 artefacts are stale — rerun stage 02")
    passed = qc["qc_pass"].astype(str).str.strip().str.lower()
    if not passed.isin(["true", "false"]).all():
        raise InputError(f"{path}: column qc_pass must hold True/False; rerun stage 02")
    return pd.DataFrame({"sample_id": sample_ids, "cn1_fraction": qc["cn1_fraction"].astype(float).to_numpy(),
                         "qc_pass": (passed == "true").to_numpy()})


def chromosome_medians(params: Params, store: NpyStore) -> np.ndarray:
    """Per-sample robust median chromosome counts (reads per bin): stage 01's ``medians.npy`` when it
    exists (checked against the store), else computed with :func:`cnvrock_lib.normalise.sample_medians`."""
    if A.MEDIANS.path(params.out_path).is_file():
        return np.asarray(A.load_array(params.out_path, A.MEDIANS, (store.n_samples,), mmap=False), dtype=np.float64)
    return sample_medians(store.counts)


def stage_arrays(out_dir: Path, store: NpyStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 02's copy ratios, states and posteriors (memory-mapped, checked against the store)."""
    shape = store.counts.shape
    return tuple(A.load_array(out_dir, art, shape) for art in (A.COPY_RATIOS, A.STATES, A.STATE_POSTERIORS))


def plasmid_inputs(params: Params, sample_ids: np.ndarray) -> PlasmidInputs:
    """Open the plasmid store and panel, check them, and align the counts to ``sample_ids``."""
    store = open_store(params.plasmid_store_path)
    panel_obj = reference.load_gene_panel(params.plasmid_gene_coords_path, "plasmid")
    panel = panel_obj.genes
    source = str(params.plasmid_gene_coords_path or "packaged panel")
    if store.layout == "bins":
        panel_obj.check_against(store.bins, source)
    families = reference.load_gene_families(params.plasmid_gene_families_path)
    genes = set(panel["gene"])
    for fam, members in families.items():
        missing = [m for m in members if m not in genes]
        if missing:
            raise InputError(f"gene families {params.plasmid_gene_families_path or 'packaged'}: family {fam} "
                             f"lists {missing}, which the plasmid gene panel {source} does not contain")
    regions = {r.gene: r for r in plasmid_regions(store, panel, source)}

    lookup = {s: i for i, s in enumerate(store.sample_ids.tolist())}
    rows = np.array([lookup.get(s, -1) for s in sample_ids], dtype=np.int64)
    present = rows >= 0
    # One pass over the plasmid store, aligned to the chromosome store's samples.
    if present.all() and np.array_equal(rows, np.arange(store.n_samples)):
        aligned = np.asarray(store.counts)
    else:
        aligned = np.zeros((len(sample_ids), store.n_bins), dtype=store.counts.dtype)
        aligned[present] = np.asarray(store.counts)[rows[present]]
    columns = {c: np.arange(sl.start, sl.stop) for c, sl in contig_slices(store.bins).items()} \
        if store.layout == "bins" else {}
    return PlasmidInputs(aligned, present, regions, columns, store.bin_lengths, panel, families)


def training_labels(params: Params, sample_ids: np.ndarray) -> dict[str, np.ndarray] | None:
    """AMRFinder family labels of the TRAINING samples for ``pcn_threshold_method: supervised``
    (None for every other method: no truth reaches those calls).

    Returns family -> int8 (n,) with 1 present, 0 absent, −1 unknown or hold-out. Raises
    ParamsError when ``kpsc_gt_path`` or ``holdout_ids_path`` is unset (without a hold-out list
    there is nothing left to evaluate the supervised calls on).
    """
    if params.pcn_threshold_method != "supervised":
        return None
    from ..evaluation import labels_from_gt, load_ground_truth

    for key in ("kpsc_gt_path", "holdout_ids_path"):
        if not getattr(params, key):
            raise ParamsError(f"pcn_threshold_method: supervised needs {key} (training labels are the "
                              f"AMRFinder GT of the samples not in the hold-out list)")
    truth = load_ground_truth(params.kpsc_gt_path).values
    held = holdout_mask(params.holdout_ids_path, sample_ids)
    ids = pd.Index(np.asarray(sample_ids).astype(str))
    out = {}
    for fam in truth.columns:
        labels = labels_from_gt(truth[fam].reindex(ids).to_numpy(dtype=np.float64), "presence")
        out[fam] = np.where(held, -1, labels).astype(np.int8)
    return out


def call_genes(params: Params, write: bool = True) -> CallResult:
    """Stage 03: chromosomal and plasmid gene calls for every sample of the chromosome store.

    Reads ``copy_ratios.npy``, ``states.npy``, ``state_posteriors.npy``, ``sample_qc.tsv``
    (stage 02), ``medians.npy`` (stage 01), the stores and the gene panels; writes
    ``gene_calls.tsv``, ``plasmid_gene_calls.tsv`` and ``pcn_thresholds.tsv`` into ``out_dir``
    (header-only plasmid tables when ``plasmid_store_path`` is unset) and returns them as a
    :class:`CallResult`.
    """
    t0 = time.perf_counter()
    out_dir = params.out_path
    store = open_store(params.store_path)
    ratios, states, posteriors = stage_arrays(out_dir, store)
    qc = load_sample_qc(out_dir, store.sample_ids)
    medians = chromosome_medians(params, store)
    seconds = {"qc": time.perf_counter() - t0}

    t1 = time.perf_counter()
    panel = reference.load_gene_panel(params.chrom_gene_coords_path, "chromosome")
    panel.check_against(store.bins, str(params.chrom_gene_coords_path or "packaged panel"))
    species = load_species(params.kpsc_meta_path, store.sample_ids)
    gene_calls = call_chromosomal(store.sample_ids, store.counts, store.bins, ratios, states, posteriors,
                                  qc["qc_pass"].to_numpy(), species, panel.genes, ChromConfig.from_params(params))
    seconds["chromosomal"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    if params.plasmid_store_path:
        plasmid_calls, thresholds = call_plasmid(store.sample_ids, medians, bin_dispersion(store.counts, medians),
                                                 plasmid_inputs(params, store.sample_ids),
                                                 PlasmidConfig.from_params(params),
                                                 training_labels(params, store.sample_ids))
    else:
        plasmid_calls, thresholds = empty_plasmid_tables()
    seconds["plasmid"] = time.perf_counter() - t2

    qc = qc.assign(chrom_depth_bp=chromosome_depth_per_bp(medians))
    paths = {}
    if write:
        for art, frame in ((A.GENE_CALLS, gene_calls), (A.PLASMID_CALLS, plasmid_calls),
                           (A.PCN_THRESHOLDS, thresholds)):
            paths[art.name] = A.write_table(out_dir, art, frame, **TABLE_FORMAT)
    return CallResult(gene_calls, plasmid_calls, thresholds, qc, paths, seconds)


def call_plasmid_genes(params: Params, sample_ids: np.ndarray, medians: np.ndarray,
                       dispersion: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`.core.call_plasmid` on the plasmid store and panels that ``params`` name (for benchmarks
    that vary the params). Returns ``(plasmid_gene_calls, pcn_thresholds)``, not written."""
    return call_plasmid(sample_ids, medians, dispersion, plasmid_inputs(params, sample_ids),
                        PlasmidConfig.from_params(params), training_labels(params, sample_ids))
