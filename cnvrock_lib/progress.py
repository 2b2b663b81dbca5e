"""Progress lines on stderr: one prefix for the whole library.

Stages print ``[cnvrock <name>] message`` lines. The runner streams them into the job
log and drops them from the HTML reports (:func:`cnvrock_lib.run.drop_progress_logs`),
which is why they share this prefix.
"""

from __future__ import annotations

import sys
from typing import Callable

PREFIX = "[cnvrock "


def stderr_logger(name: str) -> Callable[[str], None]:
    """A ``log(msg)`` that prints ``[cnvrock <name>] msg`` to stderr, flushed."""
    def log(msg: str) -> None:
        print(f"{PREFIX}{name}] {msg}", file=sys.stderr, flush=True)

    return log


def is_progress_line(line: str) -> bool:
    """True for a line printed by a :func:`stderr_logger`."""
    return line.startswith(PREFIX)
