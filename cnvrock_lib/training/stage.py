"""Stage 01 driver: train the Conv-VAE on a cohort's chromosome store (SPEC §5).

:func:`train_vae` normalises the store (per-sample median, log2), splits the samples (hold-out
never trained on nor validated on; a seeded validation split), trains with β and auxiliary-weight
warm-ups, early-stops on the validation loss, checkpoints every epoch so that a pre-empted job
resumes exactly, and writes the stage-01 artefacts through :mod:`cnvrock_lib.artefacts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .. import artefacts as A
from .. import normalise
from ..device import resolve_device
from ..errors import InputError
from ..geometry import gene_neighbourhood_bins
from ..holdout import holdout_mask
from ..model import ConvVAE
from ..params import Params
from ..progress import Progress, stderr_logger
from ..store import open_store
from .checkpoints import encode_and_reconstruct, load_model, model_config_from_params
from .data import Split, _column_median, normalised_depth, pattern_targets, split_samples, usable_bins
from .fill import NeighbourhoodFill, neighbourhoods
from .loop import Run, TrainingState, _data_digest, fit, resume
from .plan import TRAIN_KEYS
from .report import training_log_frame
from .runtime import _StopFlag, _torch_settings, thread_count

_stderr_log = stderr_logger("train")


@dataclass
class TrainResult:
    """Paths of the stage-01 artefacts and the training summary."""

    out_dir: Path
    checkpoint: Path
    checkpoint_last: Path
    training_log: Path
    latents: Path
    reconstructions: Path
    medians: Path
    split: Path
    summary_path: Path
    summary: dict = field(default_factory=dict)


@dataclass
class TrainingData:
    """The normalised cohort and what the loss needs from it (arrays; no file I/O after loading)."""

    medians: np.ndarray               # (n,) reads per bin
    x: np.ndarray                     # (n, n_bins) float32 log2(counts / m + 1)
    split: Split
    usable: np.ndarray                # (n_bins,) bool: bins in the reconstruction loss
    profile: np.ndarray               # (n_bins,) float32 cohort median of x over training samples
    pattern: np.ndarray | None        # (n, n_blocks) alignment-loss targets, or None
    block_bins: np.ndarray | None
    fill: NeighbourhoodFill | None    # gene-neighbourhood fill of the reconstruction, or None


def training_data(params: Params, store) -> TrainingData:
    """Normalise the store, split the samples, choose the loss bins and the auxiliary targets."""
    n_samples = store.n_samples
    medians = normalise.sample_medians(store.counts)
    x_np = normalised_depth(store.counts, medians)
    split = split_samples(n_samples, holdout_mask(params.holdout_ids_path, store.sample_ids),
                          params.val_fraction, params.seed)
    usable = usable_bins(x_np, medians, split.train, params.vae_min_bin_median)
    fill = None  # vae_gene_fill acts on the masked neighbourhood: with no padding there is nothing to fill
    if params.vae_gene_mask_padding > 0:
        from ..reference import load_gene_panel

        genes = load_gene_panel(params.chrom_gene_coords_path, "chromosome").genes
        if params.vae_gene_fill != "none":
            fill = NeighbourhoodFill(params.vae_gene_fill,
                                     tuple(neighbourhoods(store.bins, genes, int(params.vae_gene_mask_padding))),
                                     usable.copy())
        usable &= ~gene_neighbourhood_bins(store.bins, genes, int(params.vae_gene_mask_padding))
    if not usable.any():
        raise InputError(f"store {store.path}: no bin has a median training count >= vae_min_bin_median "
                         f"({params.vae_min_bin_median} reads); nothing to learn from")
    profile = _column_median(x_np, split.train).astype(np.float32)
    pattern_np, block_bins = (pattern_targets(x_np, split.train, usable, params.aux_n_blocks, profile)
                              if params.aux_loss == "align" else (None, None))
    return TrainingData(medians, x_np, split, usable, profile, pattern_np, block_bins, fill)


def train_vae(params: Params, progress: bool | None = None, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train the Conv-VAE on ``params.store_path`` and write the stage-01 artefacts into ``params.out_path``.

    Parameters
    ----------
    params : resolved params (:func:`cnvrock_lib.params.load_params`).
    progress : tqdm bar (True), one log line per epoch (False), or decide from the
        environment (None: bar when interactive, lines when ``CNVROCK_BATCH=1`` or stderr is no TTY).
    log : where log lines go (default: stderr).

    A matching ``checkpoint_last.pth`` in ``out_dir`` (same training params and
    data) is resumed; on SIGTERM the current epoch is abandoned and
    :class:`TrainingInterrupted` is raised (the previous epoch is saved).
    """
    log = log or _stderr_log
    out = params.out_path
    out.mkdir(parents=True, exist_ok=True)
    store = open_store(params.store_path)
    n_samples, n_bins = store.counts.shape
    if n_samples < 2:
        raise InputError(f"store {store.path}: {n_samples} sample(s); the VAE needs at least 2")
    data = training_data(params, store)
    split, usable = data.split, data.usable
    A.save_array(out, A.MEDIANS, data.medians)
    A.write_table(out, A.SPLIT, pd.DataFrame({"sample_id": store.sample_ids, "split": split.labels(n_samples)}))

    device = resolve_device(params.device)
    threads = thread_count(params.num_threads)
    config = model_config_from_params(params, n_bins)

    with _torch_settings(threads, device), _StopFlag() as stop:
        torch.manual_seed(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model = ConvVAE(config)
        model.set_baseline(data.profile)
        model = model.to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        run = Run(model, optimiser, generator, params.hash(list(TRAIN_KEYS)),
                  _data_digest(store.sample_ids, data.medians, split, n_bins, data.x), config.to_dict())
        state = resume(run, A.CHECKPOINT_LAST.path(out), log)

        x = torch.from_numpy(data.x).to(device)
        pattern = torch.from_numpy(data.pattern).to(device) if data.pattern is not None else None
        tensors = {"bin_weight": torch.from_numpy(usable.astype(np.float32)).to(device)}
        if data.block_bins is not None:
            tensors["block_bins"] = torch.from_numpy(data.block_bins).to(device)

        log(f"device {device}, {threads} thread(s); {len(split.train)} train / {len(split.val)} val / "
            f"{len(split.holdout)} hold-out samples; {n_bins} bins ({int((~usable).sum())} masked); "
            f"aux_loss {params.aux_loss}")
        bar = Progress(params.epochs, "training", "epoch", log, bar=progress, initial=state.next_epoch - 1)
        try:
            state = fit(run, state, x, pattern, split, tensors, params, device, out, stop, bar)
        finally:
            bar.close()
        if state.stopped_early:
            log(f"early stop after epoch {state.history[-1]['epoch']}: no better validation loss for "
                f"{params.patience} epochs since epoch {state.best['epoch']}")

        best_model, _ = load_model(out, "best", device=str(device))
        latents, expected = encode_and_reconstruct(best_model, data.x, data.medians, device, fill=data.fill)

    A.save_array(out, A.LATENTS, latents)
    A.save_array(out, A.RECONSTRUCTIONS, expected)
    A.write_table(out, A.TRAINING_LOG, training_log_frame(state.history))
    summary = _summary(run, state, data, params, device, threads, n_samples, n_bins)
    A.save_json(out, A.TRAIN_SUMMARY, summary)
    return TrainResult(out_dir=out, checkpoint=A.CHECKPOINT.path(out), checkpoint_last=A.CHECKPOINT_LAST.path(out),
                       training_log=A.TRAINING_LOG.path(out), latents=A.LATENTS.path(out),
                       reconstructions=A.RECONSTRUCTIONS.path(out), medians=A.MEDIANS.path(out),
                       split=A.SPLIT.path(out), summary_path=A.TRAIN_SUMMARY.path(out), summary=summary)


def _summary(run: Run, state: TrainingState, data: TrainingData, params: Params, device, threads: int,
             n_samples: int, n_bins: int) -> dict:
    """``train_summary.json``: device, throughput, split sizes, stopping, model."""
    history, split = state.history, data.split
    train_time = sum(r["train_seconds"] for r in history)
    summary = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        "cpu", "threads": threads, "torch": torch.__version__,
        "samples_per_second": sum(r["n_train"] for r in history) / train_time if train_time > 0 else None,
        "train_seconds": train_time, "n_samples": int(n_samples), "n_bins": int(n_bins),
        "n_train": int(len(split.train)), "n_val": int(len(split.val)), "n_holdout": int(len(split.holdout)),
        "n_masked_bins": int((~data.usable).sum()), "best_epoch": int(state.best["epoch"]),
        "best_loss": float(state.best["loss"]), "epochs_run": len(history), "epochs": params.epochs,
        "stopped_early": bool(state.stopped_early), "resumed_from_epoch": state.resumed_from or None,
        "params_hash": run.params_hash, "data_hash": run.data_hash, "aux_loss": params.aux_loss,
        "model": run.model_config, "n_parameters": int(sum(p.numel() for p in run.model.parameters())),
    }
    if data.fill is not None:  # only when asked, so that runs without the fill keep their summary unchanged
        summary["gene_fill"] = {"mode": data.fill.mode, "bins_per_sample": data.fill.n_bins}
    return summary
