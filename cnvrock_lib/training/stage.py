"""Stage 01 driver: train the Conv-VAE on a cohort's chromosome store (SPEC §5).

:func:`train_vae` normalises the store (per-sample median, log2), splits the samples (hold-out
never trained on nor validated on; a seeded validation split), trains with β and auxiliary-weight
warm-ups, early-stops on the validation loss, checkpoints every epoch so that a pre-empted job
resumes exactly, and writes the stage-01 artefacts through :mod:`cnvrock_lib.artefacts`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .. import artefacts as A
from .. import normalise
from ..device import resolve_device
from ..errors import InputError, StageError
from ..geometry import gene_neighbourhood_bins
from ..holdout import holdout_mask
from ..model import ConvVAE
from ..params import Params
from ..progress import Progress, stderr_logger
from ..store import open_store
from .checkpoints import _load_checkpoint, _save_checkpoint, encode_and_reconstruct, load_model, model_config_from_params
from .data import _column_median, normalised_depth, pattern_targets, split_samples, usable_bins
from .fill import NeighbourhoodFill, neighbourhoods
from .loop import _data_digest, _run_epoch, _validate
from .plan import TRAIN_KEYS, aux_weight_at, beta_at, warmup_end
from .report import training_log_frame
from .runtime import TrainingInterrupted, _StopFlag, _torch_settings, epoch_line, thread_count

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
    medians = normalise.sample_medians(store.counts)
    A.save_array(out, A.MEDIANS, medians)
    x_np = normalised_depth(store.counts, medians)

    split = split_samples(n_samples, holdout_mask(params.holdout_ids_path, store.sample_ids),
                          params.val_fraction, params.seed)
    A.write_table(out, A.SPLIT, pd.DataFrame({"sample_id": store.sample_ids, "split": split.labels(n_samples)}))
    usable = usable_bins(x_np, medians, split.train, params.hmm_low_cov_threshold)
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
        raise InputError(f"store {store.path}: no bin has a median training count >= hmm_low_cov_threshold "
                         f"({params.hmm_low_cov_threshold} reads); nothing to learn from")
    profile = _column_median(x_np, split.train).astype(np.float32)
    pattern_np, block_bins = (pattern_targets(x_np, split.train, usable, params.aux_n_blocks, profile)
                              if params.aux_loss == "align" else (None, None))

    device = resolve_device(params.device)
    threads = thread_count(params.num_threads)
    config = model_config_from_params(params, n_bins)
    params_hash = params.hash(list(TRAIN_KEYS))
    data_hash = _data_digest(store.sample_ids, medians, split, n_bins)
    total_epochs = params.epochs
    full_from = min(warmup_end(params), total_epochs)

    with _torch_settings(threads, device), _StopFlag() as stop:
        torch.manual_seed(params.seed)
        generator = torch.Generator().manual_seed(params.seed)
        model = ConvVAE(config)
        model.set_baseline(profile)
        model = model.to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        history: list[dict] = []
        best = {"loss": math.inf, "epoch": 0}
        since_best, stopped_early, finished, start_epoch = 0, False, False, 1

        last_path = A.CHECKPOINT_LAST.path(out)
        resumed_from = 0
        if last_path.is_file():
            ckpt = _load_checkpoint(last_path)
            if ckpt.get("params_hash") == params_hash and ckpt.get("data_hash") == data_hash:
                model.load_state_dict(ckpt["model"])
                optimiser.load_state_dict(ckpt["optimiser"])
                generator.set_state(ckpt["generator_state"])
                torch.set_rng_state(ckpt["torch_rng_state"])
                history, best = list(ckpt["history"]), dict(ckpt["best"])
                since_best, stopped_early, finished = ckpt["since_best"], ckpt["stopped_early"], ckpt["finished"]
                start_epoch = resumed_from = int(ckpt["epoch"]) + 1
                log(f"resuming from {last_path.name} after epoch {ckpt['epoch']}")
            else:
                log(f"{last_path.name} was written with other params or data; training afresh")

        x = torch.from_numpy(x_np).to(device)
        pattern = torch.from_numpy(pattern_np).to(device) if pattern_np is not None else None
        tensors = {"bin_weight": torch.from_numpy(usable.astype(np.float32)).to(device)}
        if block_bins is not None:
            tensors["block_bins"] = torch.from_numpy(block_bins).to(device)

        log(f"device {device}, {threads} thread(s); {len(split.train)} train / {len(split.val)} val / "
            f"{len(split.holdout)} hold-out samples; {n_bins} bins ({int((~usable).sum())} masked); "
            f"aux_loss {params.aux_loss}")
        bar = Progress(total_epochs, "training", "epoch", log, bar=progress, initial=start_epoch - 1)

        def state(epoch: int) -> dict:
            return {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch,
                    "generator_state": generator.get_state(), "torch_rng_state": torch.get_rng_state(),
                    "params_hash": params_hash, "data_hash": data_hash, "model_config": config.to_dict(),
                    "history": history, "best": best, "since_best": since_best, "stopped_early": stopped_early,
                    "finished": finished, "aux_loss": params.aux_loss}

        try:
            epoch = start_epoch
            while epoch <= total_epochs and not finished:
                t0 = time.perf_counter()
                beta = beta_at(epoch, params.max_beta, params.warmup_epochs)
                aux_w = aux_weight_at(epoch, params.aux_weight, params.aux_warmup_epochs) \
                    if params.aux_loss != "none" else 0.0
                parts = _run_epoch(model, optimiser, x, pattern, split.train, params.batch_size, generator, tensors,
                                   beta, aux_w, params, device, stop, epoch)
                train_seconds = time.perf_counter() - t0
                val_loss = _validate(model, x, pattern, split.val, tensors, beta, aux_w, params, device)
                if not math.isfinite(parts["total"]) or (len(split.val) and not math.isfinite(val_loss)):
                    raise StageError(f"stage 01: the loss became non-finite at epoch {epoch} (train "
                                     f"{parts['total']}, val {val_loss}); lower lr or grad_clip")
                monitor = val_loss if len(split.val) else parts["total"]
                if epoch >= full_from:
                    if monitor < best["loss"]:
                        best, since_best = {"loss": monitor, "epoch": epoch}, 0
                    else:
                        since_best += 1
                    stopped_early = bool(len(split.val)) and since_best >= params.patience
                finished = stopped_early or epoch == total_epochs
                row = {"epoch": epoch, "train_loss": parts["total"], "val_loss": val_loss, "recon": parts["recon"],
                       "kl": parts["kl"], "aux": parts["aux"], "beta": beta, "aux_weight": aux_w,
                       "seconds": time.perf_counter() - t0, "train_seconds": train_seconds,
                       "n_train": int(len(split.train))}
                history.append(row)
                if best["epoch"] == epoch:
                    _save_checkpoint(A.CHECKPOINT.path(out), state(epoch))
                _save_checkpoint(last_path, state(epoch))
                A.write_table(out, A.TRAINING_LOG, training_log_frame(history))
                bar.update(1, line=epoch_line(row, total_epochs),
                           postfix={"train": f"{row['train_loss']:.1f}", "val": f"{row['val_loss']:.1f}"})
                if stop.set:
                    raise TrainingInterrupted(f"stage 01: SIGTERM after epoch {epoch}; saved in {A.CHECKPOINT_LAST.name}; "
                                              f"a rerun resumes from it")
                epoch += 1
        finally:
            bar.close()
        if stopped_early:
            log(f"early stop after epoch {history[-1]['epoch']}: no better validation loss for {params.patience} "
                f"epochs since epoch {best['epoch']}")

        best_model, _ = load_model(out, "best", device=str(device))
        latents, expected = encode_and_reconstruct(best_model, x_np, medians, device, fill=fill)

    A.save_array(out, A.LATENTS, latents)
    A.save_array(out, A.RECONSTRUCTIONS, expected)
    A.write_table(out, A.TRAINING_LOG, training_log_frame(history))
    train_time = sum(r["train_seconds"] for r in history)
    summary = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        "cpu", "threads": threads, "torch": torch.__version__,
        "samples_per_second": sum(r["n_train"] for r in history) / train_time if train_time > 0 else None,
        "train_seconds": train_time, "n_samples": int(n_samples), "n_bins": int(n_bins),
        "n_train": int(len(split.train)), "n_val": int(len(split.val)), "n_holdout": int(len(split.holdout)),
        "n_masked_bins": int((~usable).sum()), "best_epoch": int(best["epoch"]), "best_loss": float(best["loss"]),
        "epochs_run": len(history), "epochs": total_epochs, "stopped_early": bool(stopped_early),
        "resumed_from_epoch": resumed_from or None, "params_hash": params_hash, "data_hash": data_hash,
        "aux_loss": params.aux_loss, "model": config.to_dict(),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    if fill is not None:  # only when asked, so that runs without the fill keep their summary unchanged
        summary["gene_fill"] = {"mode": fill.mode, "bins_per_sample": fill.n_bins}
    A.save_json(out, A.TRAIN_SUMMARY, summary)
    return TrainResult(out_dir=out, checkpoint=A.CHECKPOINT.path(out), checkpoint_last=A.CHECKPOINT_LAST.path(out),
                       training_log=A.TRAINING_LOG.path(out), latents=A.LATENTS.path(out),
                       reconstructions=A.RECONSTRUCTIONS.path(out), medians=A.MEDIANS.path(out),
                       split=A.SPLIT.path(out), summary_path=A.TRAIN_SUMMARY.path(out), summary=summary)
