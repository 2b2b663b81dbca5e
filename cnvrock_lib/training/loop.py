"""Stage 01 training loop: :func:`fit` over epochs (warm-ups, early stopping, checkpoints), one
epoch of mini-batch updates, the validation loss, :func:`resume` from a last checkpoint, and the
identity of the training data that a resumed checkpoint must match. Loss parts come back by name
(:func:`cnvrock_lib.model.vae_loss`)."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import artefacts as A
from ..model import vae_loss
from ..provenance import library_sha
from ..errors import StageError
from .checkpoints import INFER_BATCH, _load_checkpoint, _save_checkpoint
from .data import Split, iter_batches
from .plan import aux_weight_at, beta_at, warmup_end
from .report import training_log_frame
from .runtime import TrainingInterrupted, _StopFlag, epoch_line


def _data_digest(sample_ids: np.ndarray, medians: np.ndarray, split: Split, n_bins: int, x: np.ndarray) -> str:
    """Identity of the training data and code: ids, medians, bins, split, the training matrix ``x``, library source.

    A last checkpoint is resumed only when this is unchanged, so new counts with the same medians, or a
    code change, train afresh.
    """
    h = hashlib.sha256(library_sha().encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update("\n".join(sample_ids.tolist()).encode())
    h.update(np.ascontiguousarray(medians, dtype=np.float64).tobytes())
    h.update(str(n_bins).encode())
    for part in (split.train, split.val, split.holdout):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _run_epoch(model, optimiser, x, pattern, idx, batch_size, generator, tensors, beta, aux_w, params, device,
               stop: _StopFlag, epoch: int) -> dict:
    model.train()
    sums = {"total": 0.0, "recon": 0.0, "kl": 0.0, "aux": 0.0}
    n_seen = 0
    for rows in iter_batches(idx, batch_size, generator):
        xb = x[torch.from_numpy(rows).to(x.device)].to(device)
        pb = pattern[torch.from_numpy(rows).to(pattern.device)].to(device) if pattern is not None else None
        x_hat, mu, logvar = model(xb, generator=generator)
        parts = vae_loss(model, xb, x_hat, mu, logvar, tensors["bin_weight"], beta, aux_w, params.aux_loss,
                         pb, tensors.get("block_bins"))
        optimiser.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        optimiser.step()
        for key in sums:
            sums[key] += float(parts[key].detach()) * len(rows)
        n_seen += len(rows)
        if stop.set:
            raise TrainingInterrupted(f"stage 01: SIGTERM during epoch {epoch}; the last completed epoch "
                                      f"({epoch - 1}) is saved in {A.CHECKPOINT_LAST.name} and a rerun resumes from it")
    return {k: v / max(n_seen, 1) for k, v in sums.items()}


@torch.no_grad()
def _validate(model, x, pattern, idx, tensors, beta, aux_w, params, device) -> float:
    """Mean validation loss per sample, decoded from mu (no sampling noise in the stopping rule)."""
    if len(idx) == 0:
        return float("nan")
    model.eval()
    total = 0.0
    for lo in range(0, len(idx), INFER_BATCH):
        rows = torch.from_numpy(idx[lo:lo + INFER_BATCH])
        xb = x[rows.to(x.device)].to(device)
        pb = pattern[rows.to(pattern.device)].to(device) if pattern is not None else None
        x_hat, mu, logvar = model(xb)
        parts = vae_loss(model, xb, x_hat, mu, logvar, tensors["bin_weight"], beta, aux_w, params.aux_loss,
                         pb, tensors.get("block_bins"))
        total += float(parts["total"]) * len(rows)
    return total / len(idx)


@dataclass
class TrainingState:
    """Where a run stands after its last completed epoch (what ``checkpoint_last.pth`` restores)."""

    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"loss": math.inf, "epoch": 0})
    since_best: int = 0
    stopped_early: bool = False
    finished: bool = False
    next_epoch: int = 1
    resumed_from: int = 0


@dataclass
class Run:
    """The objects one training run updates, and what identifies it in a checkpoint."""

    model: torch.nn.Module
    optimiser: torch.optim.Optimizer
    generator: torch.Generator
    params_hash: str
    data_hash: str
    model_config: dict

    def checkpoint(self, epoch: int, state: TrainingState, aux_loss: str) -> dict:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(), "epoch": epoch,
                "generator_state": self.generator.get_state(), "torch_rng_state": torch.get_rng_state(),
                "params_hash": self.params_hash, "data_hash": self.data_hash, "model_config": self.model_config,
                "history": state.history, "best": state.best, "since_best": state.since_best,
                "stopped_early": state.stopped_early, "finished": state.finished, "aux_loss": aux_loss}


def resume(run: Run, last_path, log) -> TrainingState:
    """The state saved in ``last_path`` when it was written by this run's params and data (model,
    optimiser and RNG states restored into ``run``); a fresh state otherwise."""
    if not last_path.is_file():
        return TrainingState()
    ckpt = _load_checkpoint(last_path)
    if ckpt.get("params_hash") != run.params_hash or ckpt.get("data_hash") != run.data_hash:
        log(f"{last_path.name} was written with other params or data; training afresh")
        return TrainingState()
    run.model.load_state_dict(ckpt["model"])
    run.optimiser.load_state_dict(ckpt["optimiser"])
    run.generator.set_state(ckpt["generator_state"])
    torch.set_rng_state(ckpt["torch_rng_state"])
    log(f"resuming from {last_path.name} after epoch {ckpt['epoch']}")
    return TrainingState(list(ckpt["history"]), dict(ckpt["best"]), ckpt["since_best"], ckpt["stopped_early"],
                         ckpt["finished"], int(ckpt["epoch"]) + 1, int(ckpt["epoch"]) + 1)


def fit(run: Run, state: TrainingState, x, pattern, split: Split, tensors: dict, params, device, out, stop: _StopFlag,
        bar) -> TrainingState:
    """Train epoch by epoch from ``state.next_epoch``: β and auxiliary warm-ups, early stop on the
    validation loss (never before warm-up ends), a checkpoint of the best and of every epoch, and the
    training log after each epoch. SIGTERM stops after the epoch in progress is abandoned or saved."""
    total_epochs = params.epochs
    full_from = min(warmup_end(params), total_epochs)
    epoch = state.next_epoch
    while epoch <= total_epochs and not state.finished:
        t0 = time.perf_counter()
        beta = beta_at(epoch, params.max_beta, params.warmup_epochs)
        aux_w = aux_weight_at(epoch, params.aux_weight, params.aux_warmup_epochs) if params.aux_loss != "none" else 0.0
        parts = _run_epoch(run.model, run.optimiser, x, pattern, split.train, params.batch_size, run.generator,
                           tensors, beta, aux_w, params, device, stop, epoch)
        train_seconds = time.perf_counter() - t0
        val_loss = _validate(run.model, x, pattern, split.val, tensors, beta, aux_w, params, device)
        if not math.isfinite(parts["total"]) or (len(split.val) and not math.isfinite(val_loss)):
            raise StageError(f"stage 01: the loss became non-finite at epoch {epoch} (train "
                             f"{parts['total']}, val {val_loss}); lower lr or grad_clip")
        monitor = val_loss if len(split.val) else parts["total"]
        if epoch >= full_from:
            if monitor < state.best["loss"]:
                state.best, state.since_best = {"loss": monitor, "epoch": epoch}, 0
            else:
                state.since_best += 1
            state.stopped_early = bool(len(split.val)) and state.since_best >= params.patience
        state.finished = state.stopped_early or epoch == total_epochs
        row = {"epoch": epoch, "train_loss": parts["total"], "val_loss": val_loss, "recon": parts["recon"],
               "kl": parts["kl"], "aux": parts["aux"], "beta": beta, "aux_weight": aux_w,
               "seconds": time.perf_counter() - t0, "train_seconds": train_seconds, "n_train": int(len(split.train))}
        state.history.append(row)
        if state.best["epoch"] == epoch:
            _save_checkpoint(A.CHECKPOINT.path(out), run.checkpoint(epoch, state, params.aux_loss))
        _save_checkpoint(A.CHECKPOINT_LAST.path(out), run.checkpoint(epoch, state, params.aux_loss))
        A.write_table(out, A.TRAINING_LOG, training_log_frame(state.history))
        bar.update(1, line=epoch_line(row, total_epochs),
                   postfix={"train": f"{row['train_loss']:.1f}", "val": f"{row['val_loss']:.1f}"})
        if stop.set:
            raise TrainingInterrupted(f"stage 01: SIGTERM after epoch {epoch}; saved in {A.CHECKPOINT_LAST.name}; "
                                      f"a rerun resumes from it")
        epoch += 1
    return state
