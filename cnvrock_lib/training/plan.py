"""Stage 01 training plan: the loss-weight schedules (β and auxiliary warm-ups) and the params
that define a training run (a checkpoint is resumed only when they are unchanged)."""

from __future__ import annotations

from ..params import Params

TRAIN_KEYS = ("architecture", "seed", "latent_dim", "batch_size", "epochs", "lr", "weight_decay", "max_beta",
              "warmup_epochs", "patience", "val_fraction", "aux_loss", "aux_weight", "aux_warmup_epochs",
              "aux_n_blocks", "conv_channels", "conv_kernels", "conv_strides", "grad_clip", "vae_min_bin_median",
              "vae_gene_mask_padding", "chrom_gene_coords_path")


def beta_at(epoch: int, max_beta: float, warmup_epochs: int) -> float:
    """β of the KL term at 1-based ``epoch``: 0 at epoch 1, rising linearly to ``max_beta`` at epoch warmup_epochs + 1."""
    if warmup_epochs <= 0:
        return float(max_beta)
    return float(max_beta) * min(1.0, (epoch - 1) / warmup_epochs)


def aux_weight_at(epoch: int, aux_weight: float, aux_warmup_epochs: int) -> float:
    """Weight of the auxiliary loss at 1-based ``epoch`` (same linear warm-up as :func:`beta_at`)."""
    return beta_at(epoch, aux_weight, aux_warmup_epochs)


def warmup_end(params: Params) -> int:
    """First epoch (1-based) at which every loss weight has reached its maximum."""
    last = params.warmup_epochs
    if params.aux_loss != "none" and params.aux_weight > 0:
        last = max(last, params.aux_warmup_epochs)
    return last + 1
