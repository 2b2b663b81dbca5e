"""The hold-out list (``holdout_ids_path``): samples never trained on and the evaluation subset.

One parser for stage 01 (which samples to leave out of training) and stage 04 (which samples to
score), so both read the same set from the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError


def read_holdout_ids(path: str | Path | None) -> list[str] | None:
    """Sample ids of a hold-out file: one per line; blank lines and ``#`` comments (whole-line or
    trailing) ignored. None when ``path`` is unset; InputError when the file is missing or empty."""
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        raise InputError(f"hold-out id file not found: {path} (key holdout_ids_path)")
    ids = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise InputError(f"hold-out id file {path} (key holdout_ids_path) lists no sample ids; expected one per line")
    return ids


def holdout_mask(path: str | Path | None, sample_ids: np.ndarray) -> np.ndarray:
    """Boolean mask over ``sample_ids`` of the samples listed in ``path`` (all False when unset).

    Raises InputError naming the file when an id is not among ``sample_ids``.
    """
    mask = np.zeros(len(sample_ids), dtype=bool)
    ids = read_holdout_ids(path)
    if ids is None:
        return mask
    lookup = {s: i for i, s in enumerate(np.asarray(sample_ids).tolist())}
    unknown = [s for s in ids if s not in lookup]
    if unknown:
        raise InputError(f"holdout_ids_path {path}: {len(unknown)} id(s) are not in the store, e.g. "
                         f"{unknown[:3]}; expected run accessions from sample_ids.npy")
    mask[[lookup[s] for s in ids]] = True
    return mask
