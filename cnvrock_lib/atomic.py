"""Atomic writes: write to a temporary sibling, then rename over the target.

A killed job therefore never leaves a file that looks complete. A write that
fails for want of space or permission raises
:class:`~cnvrock_lib.errors.OutputError` naming the target, after removing the
temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import OutputError

# errno values that say the output location, not the data, is at fault.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_NEARLY_FULL = 1 << 20  # bytes
# Every temporary name this module creates starts with one of these prefixes, and
# nothing else does: the runner's sweep of leftovers (run.sweep_stale) removes only them.
TMP_PREFIX = ".cnvrock-tmp."
OLD_PREFIX = ".cnvrock-old."


def registered_leftovers(folder: Path) -> list[Path]:
    """Hidden temporary files and folders that atomic writes cut short (by SIGKILL) left in ``folder``."""
    if not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir() if p.name.startswith((TMP_PREFIX, OLD_PREFIX)))


def _free_bytes(folder: Path) -> int | None:
    with contextlib.suppress(OSError):
        st = os.statvfs(folder)
        return st.f_bavail * st.f_frsize
    return None


def output_error(target: Path, exc: BaseException) -> OutputError:
    """An :class:`OutputError` naming ``target`` and the system's reason (``exc``)."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc)
    if code is None:  # the writer hid the errno; say what the filesystem says
        free = _free_bytes(target.parent)
        if free is not None and free < _NEARLY_FULL:
            reason = f"{reason} — the filesystem is full ({free} bytes free)"
    name = f" [{errno.errorcode[code]}]" if code in errno.errorcode else ""
    filename = getattr(exc, "filename", None)
    culprit = Path(str(filename)) if filename else None
    # name the culprit only when it says more than the target (a parent that is a file, say)
    hidden_tmp = culprit is not None and culprit.name.startswith(f"{TMP_PREFIX}{target.name}.")
    where = f" ({culprit})" if culprit and culprit != target and not hidden_tmp else ""
    return OutputError(f"cannot write {target}: {reason}{name}{where}; nothing was written there — "
                       f"free space or choose a writable location, then rerun")


def _is_short_write(exc: BaseException) -> bool:
    # numpy's tofile reports a full disk as "N requested and M written", without an errno
    return isinstance(exc, OSError) and exc.errno is None and re.search(r"requested and \d+ written", str(exc)) is not None


def is_output_fault(exc: BaseException, folder: Path) -> bool:
    """True when ``exc`` comes from the output location: no space, read-only, over quota, too big.

    Writers that hide the errno (numpy's short write, torch's "iostream error") are
    recognised by a filesystem left with less than 1 MiB free while the partial file still exists.
    """
    if isinstance(exc, OSError) and (exc.errno in _OUTPUT_ERRNOS or _is_short_write(exc)):
        return True
    if isinstance(exc, (OSError, RuntimeError)):
        free = _free_bytes(folder)
        return free is not None and free < _NEARLY_FULL
    return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On an exception the temporary file is removed and ``target`` is untouched.
    ``suffix`` keeps an extension some writers insist on (``np.save`` adds ``.npy``).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(target, exc) from None
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; shared HPC folders need the umask's modes
        yield tmp_path
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise output_error(target, exc) from None
    except BaseException as exc:
        error = output_error(target, exc) if is_output_fault(exc, target.parent) else None
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if error is not None:
            raise error from None
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; move it onto ``target`` on success.

    An existing ``target`` is replaced only after the new one is complete.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise output_error(target, exc) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if target.exists():
            old = target.with_name(f"{OLD_PREFIX}{target.name}.{os.getpid()}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        error = output_error(target, exc) if is_output_fault(exc, target.parent) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if error is not None:
            raise error from None
        raise


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` to ``path`` (.npy) atomically, never pickling."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(array), allow_pickle=False)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_tsv(path: str | os.PathLike, frame, **kwargs) -> None:
    """Write a pandas DataFrame as TSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("sep", "\t")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def write_parquet(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as Parquet atomically (pyarrow, no index)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")
