"""Progress and log lines: stdlib ``logging`` under one ``cnvrock`` logger with one handler.

Stages log ``[cnvrock <name>] message`` lines to stderr. The runner streams them into the job
log and drops them from the HTML reports (:func:`is_progress_line`), which is why they share this
prefix. Interactive progress *bars* are tqdm (training, store building); these lines are what batch
jobs see. ``logging.getLogger("cnvrock")`` is the place to change level or destination.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable

PREFIX = "[cnvrock "
ROOT = "cnvrock"


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (a notebook kernel replaces it after import), flushed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break a stage
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        name = record.name.split(".", 1)[1] if "." in record.name else record.name
        return f"{PREFIX}{name}] {record.getMessage()}"


def _root_logger() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False   # the application's root logging config does not print them twice
    return root


def get_logger(name: str) -> logging.Logger:
    """The ``cnvrock.<name>`` logger (its lines read ``[cnvrock <name>] …``)."""
    _root_logger()
    return logging.getLogger(f"{ROOT}.{name}")


def stderr_logger(name: str) -> Callable[[str], None]:
    """A ``log(msg)`` callable for stage code: ``get_logger(name).info``."""
    return get_logger(name).info


def is_progress_line(line: str) -> bool:
    """True for a line logged through this module."""
    return line.startswith(PREFIX)


def batch_mode() -> bool:
    """True when ``CNVROCK_BATCH`` is 1/true/yes (the runner and the Slurm scripts set it): log lines, no bars."""
    return os.environ.get("CNVROCK_BATCH", "").strip().lower() in ("1", "true", "yes")


def interactive() -> bool:
    """A person is watching: not a batch job, and stderr is a terminal or a notebook kernel."""
    return not batch_mode() and (sys.stderr.isatty() or "ipykernel" in sys.modules)


class Progress:
    """Progress over ``total`` units: a tqdm bar when interactive, log lines otherwise.

    Parameters
    ----------
    total, desc, unit : size, label and unit name of the work (e.g. 80, "training", "epoch").
    log : where lines go when there is no bar (a :func:`stderr_logger`).
    bar : True / False, or None to decide with :func:`interactive`.
    initial : units already done (a resumed run).
    every : without a bar and without a ``line`` per update, log "done/total units" each time this
        fraction of the work completes (e.g. 0.25); None logs only the lines given to :meth:`update`.
    quiet : no lines at all (a bar may still show).
    rate : add the throughput (units per second) to the ``every`` lines.
    """

    def __init__(self, total: int, desc: str, unit: str, log: Callable[[str], None], bar: bool | None = None,
                 initial: int = 0, every: float | None = None, quiet: bool = False, rate: bool = False):
        self.total, self.done, self.unit, self.log, self.desc = int(total), int(initial), unit, log, desc
        self.rate, self.t0 = rate, time.perf_counter()
        self.every, self.quiet = every, quiet
        self.next_log = every if every else None
        self.bar = None
        if interactive() if bar is None else bar:
            self.bar = _tqdm()(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr)

    def update(self, n: int = 1, line: str | None = None, postfix: dict | None = None) -> None:
        """``n`` more units done; ``line`` is logged when there is no bar, ``postfix`` shown on the bar."""
        self.done += n
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(**postfix)
            self.bar.update(n)
        elif self.quiet:
            return
        elif line is not None:
            self.log(line)
        elif self.next_log is not None and self.total > 0 and self.done / self.total >= self.next_log:
            line = f"{self.desc}: {self.done}/{self.total} {self.unit}s"
            if self.rate:
                line += f" ({self.done / max(time.perf_counter() - self.t0, 1e-9):.0f} {self.unit}s/s)"
            self.log(line)
            while self.done / self.total >= self.next_log:
                self.next_log += self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _tqdm():
    """tqdm's notebook widget inside a kernel with ipywidgets, else the terminal bar."""
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
            from tqdm.notebook import tqdm
            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm
    return tqdm
