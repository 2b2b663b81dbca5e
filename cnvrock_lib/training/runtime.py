"""Stage 01 runtime: CPU threads and deterministic torch settings, SIGTERM as a flag checked
between batches, and progress output (a tqdm bar when interactive, one log line per epoch in
batch jobs)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

import torch

from ..errors import Terminated


class TrainingInterrupted(Terminated):
    """Training stopped on SIGTERM (e.g. Slurm pre-emption); ``checkpoint_last.pth`` allows resuming (exit 143)."""


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


def epoch_line(row: dict, total: int) -> str:
    """The one log line of an epoch in batch jobs (losses, weights, seconds)."""
    return (f"epoch {row['epoch']}/{total} train {row['train_loss']:.2f} val {row['val_loss']:.2f} "
            f"recon {row['recon']:.2f} kl {row['kl']:.2f} aux {row['aux']:.3f} "
            f"beta {row['beta']:.2f} aux_w {row['aux_weight']:.2f} {row['seconds']:.1f} s")
