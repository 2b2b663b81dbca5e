"""Stage 01: train the Conv-VAE on a cohort's chromosome store (SPEC §5).

``train_vae(params)`` normalises the store (per-sample median, log2),
splits the samples (hold-out never trained on nor validated on; a seeded
validation split), trains with β and auxiliary-weight warm-ups, early-stops on
the validation loss, checkpoints every epoch so that a pre-empted job resumes
exactly, and writes the stage-01 artefacts (``docs/ARCHITECTURE.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from . import normalise
from .call import gene_bin_weights
from .progress import stderr_logger
from .atomic import atomic_path, save_npy, write_json, write_tsv
from .errors import InputError, StageError, Terminated
from .model import ConvVAE, ModelConfig, vae_loss
from .params import Params
from .store import open_store

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "recon", "kl", "aux", "beta", "aux_weight", "seconds"]
# Keys whose values change what training computes; a last checkpoint is resumed
# only when they (and the data) are unchanged. Device and threads are left out
# so a job may resume elsewhere.
TRAIN_KEYS = ("architecture", "seed", "latent_dim", "batch_size", "epochs", "lr", "weight_decay", "max_beta",
              "warmup_epochs", "patience", "val_fraction", "aux_loss", "aux_weight", "aux_warmup_epochs",
              "aux_n_blocks", "conv_channels", "conv_kernels", "conv_strides", "grad_clip", "hmm_low_cov_threshold",
              "vae_gene_mask_padding", "chrom_gene_coords_path")
CHECKPOINT = "checkpoint.pth"
CHECKPOINT_LAST = "checkpoint_last.pth"
INFER_BATCH = 512  # samples per inference batch (memory, not results, depends on it)


class TrainingInterrupted(Terminated):
    """Training stopped on SIGTERM (e.g. Slurm pre-emption); ``checkpoint_last.pth`` allows resuming (exit 143)."""


@dataclass
class Split:
    """Store row indices of the training, validation and hold-out samples (disjoint, sorted)."""

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray

    def labels(self, n_samples: int) -> np.ndarray:
        """``train`` / ``val`` / ``holdout`` per store row."""
        out = np.full(n_samples, "train", dtype=object)
        out[self.val] = "val"
        out[self.holdout] = "holdout"
        return out


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


# ----------------------------------------------------------------------------- schedules
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


# ----------------------------------------------------------------------------- data
def read_holdout_ids(path: str | Path | None, sample_ids: np.ndarray) -> np.ndarray:
    """Boolean mask over ``sample_ids`` of the samples listed in ``path`` (one id per line; ``#`` comments).

    Raises InputError naming the file when an id is not in the store.
    """
    mask = np.zeros(len(sample_ids), dtype=bool)
    if not path:
        return mask
    path = Path(path)
    if not path.is_file():
        raise InputError(f"holdout_ids_path: {path} does not exist")
    ids = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    ids = [s for s in ids if s]
    lookup = {s: i for i, s in enumerate(sample_ids.tolist())}
    unknown = [s for s in ids if s not in lookup]
    if unknown:
        raise InputError(f"holdout_ids_path {path}: {len(unknown)} id(s) are not in the store, e.g. "
                         f"{unknown[:3]}; expected run accessions from sample_ids.npy")
    mask[[lookup[s] for s in ids]] = True
    return mask


def split_samples(n_samples: int, holdout_mask: np.ndarray, val_fraction: float, seed: int) -> Split:
    """Seeded split of the non-hold-out samples into training and validation.

    The validation set is ``round(val_fraction · n)`` of the n non-hold-out samples
    (at least 1 when val_fraction > 0 and n ≥ 2). Raises InputError when no
    sample is left to train on.
    """
    pool = np.flatnonzero(~holdout_mask)
    if pool.size == 0:
        raise InputError(f"every one of the {n_samples} store samples is in the hold-out list; nothing to train on")
    n_val = int(round(val_fraction * pool.size))
    if val_fraction > 0 and pool.size >= 2:
        n_val = min(max(n_val, 1), pool.size - 1)
    order = np.random.default_rng(seed).permutation(pool)
    return Split(train=np.sort(order[n_val:]), val=np.sort(order[:n_val]), holdout=np.flatnonzero(holdout_mask))


def normalised_depth(counts: np.ndarray, medians: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """x = log2(counts / m + 1) for every sample, float32 (n_samples, n_bins), read in chunks of samples."""
    out = np.empty(counts.shape, dtype=np.float32)
    for lo in range(0, counts.shape[0], chunk):
        out[lo:lo + chunk] = normalise.log_depth(counts[lo:lo + chunk], medians[lo:lo + chunk])
    return out


def _column_median(x: np.ndarray, rows: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None = None,
                   chunk: int = 512) -> np.ndarray:
    """Median over ``rows`` of every column, computed a block of columns at a time (bounded memory)."""
    out = np.empty(x.shape[1], dtype=np.float64)
    for lo in range(0, x.shape[1], chunk):
        block = x[np.ix_(rows, np.arange(lo, min(lo + chunk, x.shape[1])))].astype(np.float64)
        out[lo:lo + chunk] = np.median(transform(block) if transform else block, axis=0)
    return out


def usable_bins(x: np.ndarray, medians: np.ndarray, train_idx: np.ndarray, low_cov_threshold: float) -> np.ndarray:
    """Bins kept in the reconstruction loss: median training-sample count ≥ ``low_cov_threshold`` (reads).

    Bins near zero in most of the cohort (unmappable at the store's MQ) carry no
    signal and are left out; a deletion in some samples does not mask a bin.
    """
    m = medians[train_idx][:, None]
    cohort_median = _column_median(x, train_idx, lambda b: (np.exp2(b) - 1.0) * m)
    return cohort_median >= low_cov_threshold


def gene_neighbourhood_bins(bins: np.ndarray, genes: pd.DataFrame, padding: int) -> np.ndarray:
    """Bins overlapping any gene ± ``padding`` bp (bool, n_bins); all False when ``padding`` is 0."""
    out = np.zeros(len(bins), dtype=bool)
    if padding <= 0:
        return out
    for row in genes.itertuples():
        idx, _ = gene_bin_weights(bins, row.contig, int(row.start) - padding, int(row.end) + padding)
        out[idx] = True
    return out


def block_assignment(n_bins: int, n_blocks: int) -> np.ndarray:
    """Block index (0 … n_blocks−1) of every bin: contiguous, near-equal runs of bins."""
    n_blocks = max(1, min(n_blocks, n_bins))
    return np.repeat(np.arange(n_blocks), [len(a) for a in np.array_split(np.arange(n_bins), n_blocks)])


def pattern_targets(x: np.ndarray, train_idx: np.ndarray, usable: np.ndarray, n_blocks: int,
                    profile: np.ndarray | None = None, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Regional CNV pattern of every sample for the alignment loss.

    p_i = x_i − median over training samples of x, averaged over the usable bins
    of each of ``n_blocks`` contiguous blocks. ``profile`` (n_bins,) is that median
    when the caller has it already.

    Returns
    -------
    pattern : float32 (n_samples, n_blocks), log2 depth deviation.
    block_bins : float32 (n_blocks,), usable bins per block (0 = block ignored).
    """
    block = block_assignment(x.shape[1], n_blocks)
    n_blocks = int(block.max()) + 1
    assign = np.zeros((x.shape[1], n_blocks), dtype=np.float32)
    assign[np.arange(x.shape[1]), block] = usable.astype(np.float32)
    block_bins = assign.sum(axis=0)
    if profile is None:
        profile = _column_median(x, train_idx)
    profile = np.asarray(profile, dtype=np.float32)
    pattern = np.empty((x.shape[0], n_blocks), dtype=np.float32)
    for lo in range(0, x.shape[0], chunk):
        pattern[lo:lo + chunk] = (x[lo:lo + chunk] - profile) @ assign
    pattern /= np.maximum(block_bins, 1.0)
    return pattern, block_bins


def iter_batches(indices: np.ndarray, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Shuffle ``indices`` (store rows) with ``generator`` and yield them in batches of ``batch_size``."""
    order = torch.randperm(len(indices), generator=generator).numpy()
    for lo in range(0, len(order), batch_size):
        yield indices[order[lo:lo + batch_size]]


# ----------------------------------------------------------------------------- device
def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU raises StageError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise StageError("device: cuda was asked for, but torch sees no CUDA device (set device: auto or cpu)")
    return torch.device(name)


def thread_count(num_threads: int) -> int:
    """CPU threads to use: ``num_threads``, or every core this process may run on when 0."""
    if num_threads > 0:
        return num_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _torch_settings(threads: int, device: torch.device) -> Iterator[None]:
    """Set threads and deterministic algorithms for the run, restoring the caller's settings after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    # On CUDA a few kernels have no deterministic variant; warn rather than fail there.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


class _StopFlag:
    """Turns SIGTERM into a flag checked between batches (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.set = False
        self._old = None

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.set = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


# ----------------------------------------------------------------------------- progress
class _Progress:
    """A tqdm bar over epochs in interactive use; one log line per epoch in batch jobs."""

    def __init__(self, total: int, start: int, enabled: bool | None, log: Callable[[str], None]):
        if enabled is None:
            batch = os.environ.get("CNVROCK_BATCH", "").lower() in ("1", "true", "yes")
            enabled = not batch and (sys.stderr.isatty() or "ipykernel" in sys.modules)
        self.log = log
        self.bar = None
        if enabled:
            try:
                import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
                from tqdm.notebook import tqdm
                if "ipykernel" not in sys.modules:
                    raise ImportError
            except ImportError:
                from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, desc="training", unit="epoch")

    def epoch(self, row: dict, total: int) -> None:
        text = (f"epoch {row['epoch']}/{total} train {row['train_loss']:.2f} val {row['val_loss']:.2f} "
                f"recon {row['recon']:.2f} kl {row['kl']:.2f} aux {row['aux']:.3f} "
                f"beta {row['beta']:.2f} aux_w {row['aux_weight']:.2f} {row['seconds']:.1f} s")
        if self.bar is not None:
            self.bar.set_postfix(train=f"{row['train_loss']:.1f}", val=f"{row['val_loss']:.1f}")
            self.bar.update(1)
        else:
            self.log(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_stderr_log = stderr_logger("train")


# ----------------------------------------------------------------------------- checkpoints
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
    path = Path(out_dir) / (CHECKPOINT if which == "best" else CHECKPOINT_LAST)
    if not path.is_file():
        raise InputError(f"{path.name} not found in {path.parent}; run stage 01 (train) first")
    ckpt = _load_checkpoint(path)
    model = ConvVAE(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


@torch.no_grad()
def encode_and_reconstruct(model: ConvVAE, x: np.ndarray, medians: np.ndarray, device: torch.device | str = "cpu",
                           batch_size: int = INFER_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Latent means and expected depth of every sample, decoded from mu.

    Returns
    -------
    latents : float32 (n_samples, latent_dim).
    expected : float32 (n_samples, n_bins), expected reads per bin (2^x̂ − 1)·m_i.
    """
    model.eval()
    device = torch.device(device)
    latents = np.empty((x.shape[0], model.config.latent_dim), dtype=np.float32)
    expected = np.empty(x.shape, dtype=np.float32)
    for lo in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[lo:lo + batch_size])).to(device)
        mu, _ = model.encode(xb)
        x_hat = model.decode(mu)
        latents[lo:lo + batch_size] = mu.cpu().numpy()
        expected[lo:lo + batch_size] = normalise.expected_counts(x_hat.cpu().numpy(), medians[lo:lo + batch_size])
    return latents, expected


# ----------------------------------------------------------------------------- training
def _data_digest(sample_ids: np.ndarray, medians: np.ndarray, split: Split, n_bins: int, x: np.ndarray) -> str:
    """Identity of the training data and code: ids, medians, bins, split, the training matrix ``x``, library source."""
    from .run import library_sha

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
                                      f"({epoch - 1}) is saved in {CHECKPOINT_LAST} and a rerun resumes from it")
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
    save_npy(out / "medians.npy", medians.astype(np.float64))
    x_np = normalised_depth(store.counts, medians)

    split = split_samples(n_samples, read_holdout_ids(params.holdout_ids_path, store.sample_ids),
                          params.val_fraction, params.seed)
    write_tsv(out / "split.tsv", pd.DataFrame({"sample_id": store.sample_ids, "split": split.labels(n_samples)}))
    usable = usable_bins(x_np, medians, split.train, params.hmm_low_cov_threshold)
    if params.vae_gene_mask_padding > 0:
        from .reference import load_gene_panel

        genes = load_gene_panel(params.chrom_gene_coords_path, "chromosome").genes
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
    data_hash = _data_digest(store.sample_ids, medians, split, n_bins, x_np)
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

        last_path = out / CHECKPOINT_LAST
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
        bar = _Progress(total_epochs, start_epoch - 1, progress, log)

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
                    _save_checkpoint(out / CHECKPOINT, state(epoch))
                _save_checkpoint(last_path, state(epoch))
                write_tsv(out / "training_log.tsv", training_log_frame(history))
                bar.epoch(row, total_epochs)
                if stop.set:
                    raise TrainingInterrupted(f"stage 01: SIGTERM after epoch {epoch}; saved in {CHECKPOINT_LAST}; "
                                              f"a rerun resumes from it")
                epoch += 1
        finally:
            bar.close()
        if stopped_early:
            log(f"early stop after epoch {history[-1]['epoch']}: no better validation loss for {params.patience} "
                f"epochs since epoch {best['epoch']}")

        best_model, _ = load_model(out, "best", device=str(device))
        latents, expected = encode_and_reconstruct(best_model, x_np, medians, device)

    save_npy(out / "latents.npy", latents)
    save_npy(out / "reconstructions.npy", expected)
    write_tsv(out / "training_log.tsv", training_log_frame(history))
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
    write_json(out / "train_summary.json", summary)
    return TrainResult(out_dir=out, checkpoint=out / CHECKPOINT, checkpoint_last=out / CHECKPOINT_LAST,
                       training_log=out / "training_log.tsv", latents=out / "latents.npy",
                       reconstructions=out / "reconstructions.npy", medians=out / "medians.npy",
                       split=out / "split.tsv", summary_path=out / "train_summary.json", summary=summary)


# ----------------------------------------------------------------------------- notebook helpers
def training_log_frame(history: list[dict]) -> pd.DataFrame:
    """The rows of ``training_log.tsv`` (columns :data:`LOG_COLUMNS`) from the in-memory history."""
    frame = pd.DataFrame(history, columns=LOG_COLUMNS)
    return frame.astype({"epoch": np.int64})


def load_training_log(out_dir: str | Path) -> pd.DataFrame:
    """``training_log.tsv`` of a stage-01 run (one row per epoch)."""
    path = Path(out_dir) / "training_log.tsv"
    if not path.is_file():
        raise InputError(f"training_log.tsv not found in {out_dir}; run stage 01 (train) first")
    return pd.read_csv(path, sep="\t")


def load_train_summary(out_dir: str | Path) -> dict:
    """``train_summary.json`` of a stage-01 run."""
    path = Path(out_dir) / "train_summary.json"
    if not path.is_file():
        raise InputError(f"train_summary.json not found in {out_dir}; run stage 01 (train) first")
    return json.loads(path.read_text())


def latent_pca_table(params: Params, n_components: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """PCA of the latents joined (left) with the metadata.

    Returns
    -------
    table : one row per store sample: ``sample_id split PC1 PC2 Species ST`` (missing metadata → ``unknown``).
    explained : fraction of latent variance explained by each component.
    """
    from sklearn.decomposition import PCA

    out = params.out_path
    latents = np.load(out / "latents.npy")
    split = pd.read_csv(out / "split.tsv", sep="\t", dtype=str, keep_default_na=False)
    k = min(n_components, latents.shape[1], latents.shape[0])
    pca = PCA(n_components=k, random_state=params.seed).fit(latents)
    table = split.copy()
    for i, col in enumerate(pca.transform(latents).T):
        table[f"PC{i + 1}"] = col
    if params.kpsc_meta_path:
        meta = pd.read_csv(params.kpsc_meta_path, sep="\t", dtype=str, keep_default_na=False)
        missing = [c for c in ("sample_id", "Species", "ST") if c not in meta.columns]
        if missing:
            raise InputError(f"kpsc_meta_path {params.kpsc_meta_path} lacks column(s) {missing}")
        table = table.merge(meta[["sample_id", "Species", "ST"]].drop_duplicates("sample_id"), on="sample_id",
                            how="left")
    for col in ("Species", "ST"):
        if col not in table:
            table[col] = "unknown"
        table[col] = table[col].fillna("").replace("", "unknown")
    return table, pca.explained_variance_ratio_


def summary_table(summary: dict) -> pd.DataFrame:
    """``train_summary.json`` as a two-column table for reports (device, throughput, split, stopping)."""
    model = summary.get("model", {})
    rows = [
        ("device", f"{summary['device']} ({summary.get('device_name', '')}), {summary['threads']} CPU thread(s)"),
        ("throughput", f"{summary['samples_per_second']:.0f} training samples / s" if summary.get(
            "samples_per_second") else "n/a"),
        ("training time", f"{summary['train_seconds']:.1f} s over {summary['epochs_run']} epoch(s) "
                          f"(of {summary['epochs']} planned)"),
        ("samples", f"{summary['n_train']} train, {summary['n_val']} validation, {summary['n_holdout']} hold-out "
                    f"(never trained on)"),
        ("bins", f"{summary['n_bins']} ({summary['n_masked_bins']} masked from the reconstruction loss)"),
        ("best epoch", f"{summary['best_epoch']} (loss {summary['best_loss']:.2f})"
                       + ("; stopped early" if summary["stopped_early"] else "")),
        ("resumed", f"from epoch {summary['resumed_from_epoch']}" if summary.get("resumed_from_epoch") else "no"),
        ("model", f"channels {model.get('channels')}, kernels {model.get('kernels')}, strides "
                  f"{model.get('strides')}, latent {model.get('latent_dim')}, {summary.get('n_parameters')} "
                  f"parameters; aux_loss {summary.get('aux_loss')}"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item").rename_axis(None)


def reconstruction_error(params: Params, chunk: int = 256, window: int = 5) -> pd.DataFrame:
    """How well each sample's expected depth fits, from ``reconstructions.npy`` and the store.

    Over bins with expected depth ≥ ``hmm_low_cov_threshold`` (reads), with r = log2((observed + 1) /
    (expected + 1)): ``median_abs_log2`` = median |r|; ``noise_sd`` = robust SD of r from neighbour
    differences; ``excess_score`` = the highest running median of r over ``window`` bins divided by
    ``noise_sd`` (a run of bins above expectation — an amplification the VAE left flat — rather than
    single noisy bins). Columns ``sample_id split median_abs_log2 noise_sd excess_score``, store order.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    out = params.out_path
    st = open_store(params.store_path, check_values=False)
    expected = np.load(out / "reconstructions.npy", mmap_mode="r")
    split = pd.read_csv(out / "split.tsv", sep="\t", dtype=str, keep_default_na=False)
    med, noise, score = (np.full(st.n_samples, np.nan) for _ in range(3))
    for lo in range(0, st.n_samples, chunk):
        exp = np.asarray(expected[lo:lo + chunk], dtype=np.float64)
        ratio = np.log2((np.asarray(st.counts[lo:lo + chunk], dtype=np.float64) + 1) / (exp + 1))
        ratio[exp < params.hmm_low_cov_threshold] = np.nan
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows and windows stay NaN
            med[lo:lo + chunk] = np.nanmedian(np.abs(ratio), axis=1)
            sd = 1.4826 * np.nanmedian(np.abs(np.diff(ratio, axis=1)), axis=1) / np.sqrt(2)
            noise[lo:lo + chunk] = sd
            if ratio.shape[1] >= window:
                run = np.nanmedian(sliding_window_view(ratio, window, axis=1), axis=2)
                score[lo:lo + chunk] = np.nanmax(run, axis=1) / np.maximum(sd, 1e-3)
    return pd.DataFrame({"sample_id": st.sample_ids, "split": split["split"].to_numpy(),
                         "median_abs_log2": med, "noise_sd": noise, "excess_score": score})


def example_tracks(params: Params, errors: pd.DataFrame | None = None) -> dict:
    """Observed and expected depth of a few telling samples for the report.

    The samples: a typical hold-out (or validation) sample (median error), the
    worst-reconstructed sample, and the sample with the strongest run of bins
    above its reconstruction (``excess_score`` of :func:`reconstruction_error`:
    an amplification the VAE should *not* reproduce).
    Returns ``position_mb``, ``observed``, ``expected`` (reads per bin),
    ``sample_ids``, ``labels``.
    """
    errors = reconstruction_error(params) if errors is None else errors
    picks: list[tuple[int, str]] = []
    unseen = errors[errors["split"].isin(["holdout"])]
    unseen = unseen if len(unseen) else errors[errors["split"] == "val"]
    if len(unseen):
        i = (unseen["median_abs_log2"] - unseen["median_abs_log2"].median()).abs().idxmin()
        picks.append((int(i), f"typical {errors.loc[i, 'split']} sample (median |log2 ratio| "
                              f"{errors.loc[i, 'median_abs_log2']:.3f})"))
    i = int(errors["median_abs_log2"].idxmax())
    picks.append((i, f"worst reconstructed ({errors.loc[i, 'split']}; median |log2 ratio| "
                     f"{errors.loc[i, 'median_abs_log2']:.3f})"))
    if errors["excess_score"].notna().any():
        i = int(errors["excess_score"].idxmax())
        picks.append((i, f"strongest run of bins above expectation ({errors.loc[i, 'split']}; running median "
                         f"{errors.loc[i, 'excess_score']:.1f} noise SDs)"))
    seen, rows, labels = set(), [], []
    for i, label in picks:
        if i not in seen:
            seen.add(i)
            rows.append(i)
            labels.append(label)
    st = open_store(params.store_path, check_values=False)
    expected = np.load(params.out_path / "reconstructions.npy", mmap_mode="r")
    mid = (st.bins["start"] + st.bins["end"]) / 2 / 1e6
    return {"position_mb": mid, "observed": np.asarray(st.counts[rows], dtype=np.float64),
            "expected": np.asarray(expected[rows], dtype=np.float64), "sample_ids": st.sample_ids[rows].tolist(),
            "labels": labels}
