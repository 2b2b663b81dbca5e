"""Progress and log lines: stdlib ``logging`` under one ``cnvrock`` logger with one handler.

Stages log ``[cnvrock <name>] message`` lines to stderr. The runner streams them into the job
log and drops them from the HTML reports (:func:`is_progress_line`), which is why they share this
prefix. Interactive progress *bars* are tqdm (training, store building); these lines are what batch
jobs see. ``logging.getLogger("cnvrock")`` is the place to change level or destination.
"""

from __future__ import annotations

import logging
import sys
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
