"""NPY stores: ``counts.npy`` (samples x bins), ``sample_ids.npy``, ``contigs.npy``
and an optional ``store.json`` provenance file — the original's format.

Stores are read memory-mapped and never written into. Stores written here use
unicode and plain structured dtypes so they load without unpickling.
"""

from __future__ import annotations

import datetime as _dt
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_dir
from .errors import StoreError
from .geometry import contig_slices
from .reference import BIN_DTYPE, BIN_SIZE

STORE_FILES = ("counts.npy", "sample_ids.npy", "contigs.npy")


@dataclass
class NpyStore:
    """An opened store. ``counts`` is memory-mapped read-only (reads per bin)."""

    path: Path
    counts: np.ndarray
    sample_ids: np.ndarray
    bins: np.ndarray
    provenance: dict = field(default_factory=dict)
    layout: str = "bins"  # "bins" (1 kb grid) or "genes" (legacy per-gene plasmid store)

    @property
    def n_samples(self) -> int:
        return self.counts.shape[0]

    @property
    def n_bins(self) -> int:
        return self.counts.shape[1]

    @property
    def bin_lengths(self) -> np.ndarray:
        """Length of each bin (bp)."""
        return (self.bins["end"] - self.bins["start"] + 1).astype(np.int64)

    def contig_slices(self) -> dict[str, slice]:
        """``{contig: slice of bin indices}`` in store order (bins are contiguous per contig)."""
        return contig_slices(self.bins)

    def index_of(self, sample_ids) -> np.ndarray:
        """Row indices of ``sample_ids``; raises StoreError naming the first unknown id."""
        lookup = {s: i for i, s in enumerate(self.sample_ids.tolist())}
        try:
            return np.array([lookup[s] for s in sample_ids], dtype=np.int64)
        except KeyError as exc:
            raise StoreError(f"store {self.path}: sample {exc.args[0]!r} is not in sample_ids.npy") from None


# What an original store's object arrays may hold: numpy arrays, dtypes and scalars
# (strings and numbers are plain pickle opcodes). Anything else would run code on load.
_PICKLE_ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                   for n in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays of strings and numbers; any other callable is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def load_object_array(file: Path) -> np.ndarray:
    """Read an object-dtype ``.npy`` with :class:`_ArrayOnlyUnpickler`: strings and numbers, never code.

    Raises StoreError naming the file and the refused callable when the pickle holds anything else.
    """
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(handle)
            if not dtype.hasobject:
                return np.load(file, allow_pickle=False)
            array = _ArrayOnlyUnpickler(handle, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise StoreError(f"{file} holds a pickled {exc} object, which CNVRock refuses to load (it could run code); "
                         f"only strings, numbers and numpy arrays are read from an original store") from None
    except Exception as exc:  # a damaged or foreign file
        raise StoreError(f"{file} is not a readable .npy file: {type(exc).__name__}: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise StoreError(f"{file} holds a pickled {type(array).__name__}, expected a numpy array")
    return array


def _load(path: Path, name: str, allow_pickle: bool, mmap: bool = False) -> np.ndarray:
    file = path / name
    if not file.is_file():
        raise StoreError(f"store {path}: missing {name} (a store holds {', '.join(STORE_FILES)})")
    if file.stat().st_size == 0:
        raise StoreError(f"store {path}: {name} is empty (0 bytes); expected a .npy array — was its writing "
                         f"cut short? rebuild the store")
    with open(file, "rb") as handle:
        head = handle.read(6)
    if head != b"\x93NUMPY":
        raise StoreError(f"store {path}: {name} is not a .npy file: it does not start with the .npy magic bytes "
                         f"(found {head!r}); is it a text or other file?")
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            if allow_pickle:
                return load_object_array(file)
            raise StoreError(
                f"store {path}: {name} holds Python objects, and loading them unpickles, which can "
                f"execute code from the file. If you trust this store, convert it once with "
                f"`cnvrock convert-store --trust-pickle {path} NEW_DIR` (it reads only strings, numbers "
                f"and numpy arrays from the file)."
            ) from None
        raise StoreError(f"store {path}: {name} is not a readable .npy file: {type(exc).__name__}: {exc}") from None
    except (OSError, EOFError) as exc:
        raise StoreError(f"store {path}: {name} is not a readable .npy file: {type(exc).__name__}: {exc}") from None


def _as_bins(raw: np.ndarray, path: Path) -> np.ndarray:
    names = raw.dtype.names or ()
    if not {"chrom", "start", "end"} <= set(names):
        raise StoreError(f"store {path}: contigs.npy must be a structured array with fields chrom, start, end; "
                         f"found fields {names or 'none'} (dtype {raw.dtype})")
    bins = np.empty(raw.shape[0], dtype=BIN_DTYPE)
    bins["chrom"] = np.asarray(raw["chrom"]).astype(str)
    for col in ("start", "end"):
        try:
            bins[col] = np.asarray(raw[col]).astype(np.int64)
        except (TypeError, ValueError):
            raise StoreError(f"store {path}: contigs.npy field {col} is not integer") from None
    return bins


def detect_layout(bins: np.ndarray, bin_size: int = BIN_SIZE) -> str:
    """``"bins"`` for a regular 1 kb grid, ``"genes"`` for a legacy per-gene store."""
    on_grid = (bins["start"] - 1) % bin_size == 0
    full = (bins["end"] - bins["start"] + 1) == bin_size
    chrom = bins["chrom"]
    last_of_contig = np.append(chrom[1:] != chrom[:-1], True)
    return "bins" if bool(np.all(on_grid & (full | last_of_contig))) else "genes"


DEPTH_UNITS = ("mean_depth", "approx_read_starts_from_depth")  # store.json "unit" of mosdepth stores


def holds_depth(provenance: dict | None) -> bool:
    """True when ``store.json`` says the values are mosdepth mean depth (fractions allowed), not read counts."""
    prov = provenance or {}
    return prov.get("unit") in DEPTH_UNITS or prov.get("method") == "mosdepth"


def validate(path: Path, counts: np.ndarray, sample_ids: np.ndarray, bins: np.ndarray,
             check_values: bool = True, provenance: dict | None = None) -> None:
    """Check shapes, unique ids, sorted non-overlapping bins, non-negative finite counts.

    Float counts must be whole numbers (read counts saved as float) unless
    ``provenance`` (``store.json``) declares mosdepth mean depth. Raises
    StoreError naming the store, file and offending index.
    """
    if counts.ndim != 2:
        raise StoreError(f"store {path}: counts.npy must be 2-D (samples x bins), got shape {counts.shape}")
    if sample_ids.ndim != 1 or sample_ids.shape[0] != counts.shape[0]:
        raise StoreError(f"store {path}: sample_ids.npy has {sample_ids.shape[0] if sample_ids.ndim else 0} "
                         f"ids but counts.npy has {counts.shape[0]} rows")
    if bins.shape[0] != counts.shape[1]:
        raise StoreError(f"store {path}: contigs.npy has {bins.shape[0]} bins but counts.npy has "
                         f"{counts.shape[1]} columns")
    ids = sample_ids.astype(str)
    uniq, first, n = np.unique(ids, return_index=True, return_counts=True)
    if (n > 1).any():
        dup = str(uniq[n > 1][0])
        where = np.flatnonzero(ids == dup)
        raise StoreError(f"store {path}: sample_ids.npy has duplicate id {dup!r} at indices {where.tolist()}")
    empty = np.flatnonzero(np.char.str_len(ids) == 0)
    if empty.size:
        raise StoreError(f"store {path}: sample_ids.npy has an empty id at index {int(empty[0])}")
    padded = np.flatnonzero(np.char.strip(ids) != ids)
    if padded.size:
        i = int(padded[0])
        raise StoreError(f"store {path}: sample_ids.npy id {str(ids[i])!r} at index {i} has leading or trailing "
                         f"whitespace; expected bare ids (they must match the other store, ground truth and "
                         f"metadata exactly) — rebuild the store from a manifest without padded ids")
    bad = np.flatnonzero(bins["start"] > bins["end"])
    if bad.size:
        raise StoreError(f"store {path}: contigs.npy bin {int(bad[0])} has start > end")
    same = bins["chrom"][1:] == bins["chrom"][:-1]
    overlap = np.flatnonzero(same & (bins["start"][1:] <= bins["end"][:-1]))
    if overlap.size:
        i = int(overlap[0]) + 1
        raise StoreError(f"store {path}: contigs.npy bin {i} ({bins['chrom'][i]}:{bins['start'][i]}-"
                         f"{bins['end'][i]}) is unsorted or overlaps bin {i - 1}")
    chrom = bins["chrom"]
    run_starts = chrom[np.concatenate([[True], chrom[1:] != chrom[:-1]])] if chrom.size else chrom
    names, runs = np.unique(run_starts, return_counts=True)
    if (runs > 1).any():
        raise StoreError(f"store {path}: contigs.npy bins of contig {str(names[runs > 1][0])} are not contiguous")
    if not check_values:
        return
    kind = counts.dtype.kind
    depth = holds_depth(provenance)
    if kind not in "uif":
        raise StoreError(f"store {path}: counts.npy has dtype {counts.dtype}; expected integer read counts")
    step = max(1, 1 << 24 // max(1, counts.shape[1]))  # about 16M values per chunk
    for lo in range(0, counts.shape[0], step):
        block = np.asarray(counts[lo:lo + step])
        if kind == "f":
            bad_rows, bad_cols = np.nonzero(~np.isfinite(block))
            if bad_rows.size:
                r, c = lo + int(bad_rows[0]), int(bad_cols[0])
                raise StoreError(f"store {path}: counts.npy has a non-finite value at sample {r} "
                                 f"({ids[r]}), bin {c}")
            if not depth:
                bad_rows, bad_cols = np.nonzero(block != np.floor(block))
                if bad_rows.size:
                    r, c = lo + int(bad_rows[0]), int(bad_cols[0])
                    raise StoreError(
                        f"store {path}: counts.npy holds fractional values (sample {r} ({ids[r]}), bin {c}: "
                        f"{block[bad_rows[0], c]}); expected whole read counts. A mosdepth mean-depth store "
                        f"must say so in store.json (\"unit\": \"mean_depth\"; `cnvrock build-store --method "
                        f"mosdepth` writes it)")
        if kind != "u":
            bad_rows, bad_cols = np.nonzero(block < 0)
            if bad_rows.size:
                r, c = lo + int(bad_rows[0]), int(bad_cols[0])
                raise StoreError(f"store {path}: counts.npy has a negative count at sample {r} ({ids[r]}), "
                                 f"bin {c}: {block[bad_rows[0], c]}")


def open_store(path: str | Path, allow_pickle: bool = False, check_values: bool = True) -> NpyStore:
    """Open and validate a store directory (counts memory-mapped, read-only).

    Parameters
    ----------
    path : the store directory.
    allow_pickle : accept object arrays from the original (unpickling can execute code).
    check_values : scan counts for negative or non-finite values (one pass over the file).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise StoreError(f"store not found: {path} is not a directory")
    counts = _load(path, "counts.npy", allow_pickle=False, mmap=True)
    sample_ids = np.asarray(_load(path, "sample_ids.npy", allow_pickle)).astype(str)
    bins = _as_bins(_load(path, "contigs.npy", allow_pickle), path)
    provenance = {}
    if (path / "store.json").is_file():
        try:
            provenance = json.loads((path / "store.json").read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"store {path}: store.json is not valid JSON: {exc}") from None
        if not isinstance(provenance, dict):
            raise StoreError(f"store {path}: store.json must hold a JSON object, found {type(provenance).__name__}")
    validate(path, counts, sample_ids, bins, check_values=check_values, provenance=provenance)
    return NpyStore(path, counts, sample_ids, bins, provenance, layout=detect_layout(bins))


def check_replaceable(out: str | Path, inputs=()) -> None:
    """Refuse to replace ``out`` unless it is a CNVRock store directory holding none of ``inputs``.

    ``--overwrite`` must never delete a folder of input files, a manifest or a
    regular file that happens to be named as the output.
    """
    out = Path(out).expanduser().resolve()
    for item in inputs:
        src = Path(str(item)).expanduser().resolve()
        if src == out or out in src.parents:
            raise StoreError(f"output store {out} contains the input {src}; refusing to write there "
                             f"(it would be deleted) — choose a new output directory")
    if not out.exists():
        return
    if not out.is_dir():
        raise StoreError(f"output store {out} is a file, not a store directory; refusing to replace it")
    if not (out / "store.json").is_file():
        raise StoreError(f"output store {out} exists and is not a CNVRock store (no store.json); overwrite "
                         f"replaces only a store written by cnvrock — choose a new output directory")


def write_store(path: str | Path, counts: np.ndarray, sample_ids, bins: np.ndarray,
                provenance: dict | None = None, overwrite: bool = False) -> Path:
    """Write a store directory atomically (complete or absent, never half-written).

    ``counts`` is saved as given (uint32 for read counts, float32 for mosdepth depth).
    """
    path = Path(path).expanduser().resolve()
    if path.exists() and not overwrite:
        raise StoreError(f"store {path} already exists; refusing to overwrite an existing store")
    check_replaceable(path)
    sample_ids = np.asarray(sample_ids).astype(str)
    bins = np.asarray(bins).astype(BIN_DTYPE)
    validate(path, counts, sample_ids, bins, provenance=provenance)
    prov = dict(provenance or {})
    prov.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    prov.setdefault("n_samples", int(counts.shape[0]))
    prov.setdefault("n_bins", int(counts.shape[1]))
    with atomic_dir(path) as tmp:
        np.save(tmp / "counts.npy", counts, allow_pickle=False)
        write_store_files(tmp, sample_ids, bins, prov)
    return path


def write_store_files(folder: Path, sample_ids, bins: np.ndarray, provenance: dict) -> None:
    """Write a store's ``sample_ids.npy``, ``contigs.npy`` and ``store.json`` into ``folder`` (a temporary
    store directory: :func:`write_store` and the builders of :mod:`cnvrock_lib.ingest` write ``counts.npy``
    themselves, in one piece or streamed)."""
    np.save(folder / "sample_ids.npy", np.asarray(sample_ids).astype(str), allow_pickle=False)
    np.save(folder / "contigs.npy", np.asarray(bins).astype(BIN_DTYPE), allow_pickle=False)
    (folder / "store.json").write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")


def convert_store(src: str | Path, dst: str | Path, trust_pickle: bool = False) -> Path:
    """One-time conversion of an original (object-dtype) store into a pickle-free copy.

    ``trust_pickle`` must be set: the source's object arrays are read with a restricted
    unpickler (strings, numbers and numpy arrays only; anything else is refused).
    """
    if not trust_pickle:
        raise StoreError(f"convert-store reads pickled object arrays from {src}; pass --trust-pickle "
                         f"(trust_pickle=True) if you trust this store. Only strings, numbers and numpy "
                         f"arrays are read; any other pickled object is refused")
    store = open_store(src, allow_pickle=True)
    prov = dict(store.provenance)
    prov["converted_from"] = str(store.path)
    return write_store(dst, np.asarray(store.counts), store.sample_ids, store.bins, prov)
