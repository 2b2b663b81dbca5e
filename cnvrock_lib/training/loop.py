"""Stage 01 training loop: one epoch of mini-batch updates, the validation loss, and the identity
of the training data that a resumed checkpoint must match. Loss parts come back by name
(:func:`cnvrock_lib.model.vae_loss`)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .. import artefacts as A
from ..model import vae_loss
from ..provenance import library_sha
from .checkpoints import INFER_BATCH
from .data import Split, iter_batches
from .runtime import TrainingInterrupted, _StopFlag


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
