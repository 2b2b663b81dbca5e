"""Stage 01 checkpoints: atomic save and safe load, rebuilding the trained model, and encoding
every sample (latent means and expected depth decoded from them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import artefacts as A
from .. import normalise
from ..atomic import atomic_path
from ..errors import InputError
from ..model import ConvVAE, ModelConfig
from ..params import Params
from .fill import NeighbourhoodFill

INFER_BATCH = 512  # samples per inference batch (memory, not results, depends on it)


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise InputError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); "
                         f"delete it to train afresh") from None


def model_config_from_params(params: Params, n_bins: int) -> ModelConfig:
    """The :class:`ModelConfig` that ``params`` ask for on a store of ``n_bins`` bins."""
    return ModelConfig(n_bins=n_bins, latent_dim=params.latent_dim, channels=tuple(params.conv_channels),
                       kernels=tuple(params.conv_kernels), strides=tuple(params.conv_strides),
                       aux_n_blocks=min(params.aux_n_blocks, n_bins) if params.aux_loss == "align" else 0)


def load_model(out_dir: str | Path, which: str = "best", device: str = "cpu") -> tuple[ConvVAE, dict]:
    """Rebuild the trained model from ``out_dir/checkpoint.pth`` (``which="last"``: checkpoint_last.pth).

    Returns
    -------
    model : :class:`ConvVAE` in eval mode on ``device``.
    checkpoint : the checkpoint dict (epoch, params_hash, best_epoch, history, ...).
    """
    path = (A.CHECKPOINT if which == "best" else A.CHECKPOINT_LAST).path(out_dir)
    if not path.is_file():
        raise InputError(f"{path.name} not found in {path.parent}; run stage 01 (train) first")
    ckpt = _load_checkpoint(path)
    model = ConvVAE(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


@torch.no_grad()
def encode_and_reconstruct(model: ConvVAE, x: np.ndarray, medians: np.ndarray, device: torch.device | str = "cpu",
                           batch_size: int = INFER_BATCH, fill: NeighbourhoodFill | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Latent means and expected depth of every sample, decoded from mu.

    ``fill``: replace the decoded gene neighbourhoods by the flank-scaled cohort profile
    (:class:`~cnvrock_lib.training.fill.NeighbourhoodFill`); None keeps the decoder's output.

    Returns
    -------
    latents : float32 (n_samples, latent_dim).
    expected : float32 (n_samples, n_bins), expected reads per bin (2^x̂ − 1)·m_i.
    """
    model.eval()
    device = torch.device(device)
    latents = np.empty((x.shape[0], model.config.latent_dim), dtype=np.float32)
    expected = np.empty(x.shape, dtype=np.float32)
    profile = model.baseline.cpu().numpy() if fill is not None else None
    for lo in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[lo:lo + batch_size])).to(device)
        mu, _ = model.encode(xb)
        x_hat = model.decode(mu).cpu().numpy()
        if fill is not None:
            x_hat = fill.apply(x_hat, x[lo:lo + batch_size], profile)
        latents[lo:lo + batch_size] = mu.cpu().numpy()
        expected[lo:lo + batch_size] = normalise.expected_counts(x_hat, medians[lo:lo + batch_size])
    return latents, expected
