"""One sample: the counting settings of a store, and counting one input file into a row (in a worker
process or, at cluster scale, into a small per-sample ``.npz`` that :func:`.build.gather` assembles)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import InputError
from ..progress import get_logger
from ..provenance import package_versions
from .inputs import FAILED_FILE_SUFFIX, METHODS, SAMPLE_FILE_SUFFIX, UNITS, _as_manifest, bins_digest
from .readers import _BadFile, _count_bam, _count_gatk_tsv, _count_mosdepth

_log = get_logger("ingest")

@dataclass(frozen=True)
class CountSettings:
    """How every sample of a store is counted.

    Attributes
    ----------
    method : ``gatk-tsv``, ``bam`` or ``mosdepth``.
    bins : structured bins array (1-based inclusive).
    min_mapq : MAPQ threshold; applied for ``bam``, declared (recorded only) otherwise.
    reference_fasta : FASTA for CRAM decoding (bam only).
    read_length : mosdepth only: convert mean depth to read starts with this read length (bp).
    """

    method: str
    bins: np.ndarray = field(repr=False)
    min_mapq: int | None = None
    reference_fasta: str | None = None
    read_length: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown counting method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.method == "bam" and self.min_mapq is None:
            raise InputError("counting from BAM/CRAM needs min_mapq (20 for the chromosome store, "
                             "0 for the plasmid store)")
        if self.min_mapq is not None and (int(self.min_mapq) != self.min_mapq or self.min_mapq < 0):
            raise InputError(f"min_mapq = {self.min_mapq!r}; expected an integer >= 0")
        if self.read_length is not None and (self.method != "mosdepth" or self.read_length <= 0):
            raise InputError("read_length converts mosdepth depth to read starts: only with method "
                             "mosdepth, and > 0 (bp)")
        if self.bins.shape[0] == 0:
            raise InputError("the bins are empty")
        from ..store import detect_layout

        if detect_layout(self.bins, self.bin_size) != "bins":
            raise InputError(f"the bins are not a regular {self.bin_size} bp grid starting at 1 on each contig")
        object.__setattr__(self, "digest", bins_digest(self.bins))

    @property
    def bin_size(self) -> int:
        return int((self.bins["end"] - self.bins["start"] + 1).max())

    @property
    def unit(self) -> str:
        if self.method == "mosdepth" and self.read_length:
            return "approx_read_starts_from_depth"
        return UNITS[self.method]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.method == "mosdepth" else np.uint32)

    def describe(self) -> dict:
        """The settings as recorded in provenance and per-sample files."""
        return {"method": self.method, "unit": self.unit,
                "min_mapq": None if self.min_mapq is None else int(self.min_mapq),
                "min_mapq_applied_here": self.method == "bam",
                "read_length": self.read_length, "bins_sha256": self.digest,
                "n_bins": int(self.bins.shape[0]), "dtype": self.dtype.name}


_WORKER_SETTINGS: CountSettings | None = None


def _init_worker(settings: CountSettings) -> None:
    """Pool initializer: the settings (with the bins array) travel once per worker, not per task."""
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings


def _count_one(path: str, settings: CountSettings) -> tuple[np.ndarray | None, str | None]:
    """(row, None) or (None, reason) for one input file."""
    path = Path(path)
    try:
        if not path.is_file():
            raise _BadFile("file not found")
        if settings.method == "gatk-tsv":
            return _count_gatk_tsv(path, settings.bins, settings.digest), None
        if settings.method == "mosdepth":
            return _count_mosdepth(path, settings.bins, settings.read_length), None
        return _count_bam(path, settings.bins, settings.min_mapq, settings.reference_fasta), None
    except _BadFile as exc:
        return None, str(exc)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _count_task(task: tuple[int, str]) -> tuple[int, np.ndarray | None, str | None]:
    """Worker: (index, path) -> (index, row, None) or (index, None, reason)."""
    index, path = task
    row, reason = _count_one(path, _WORKER_SETTINGS)
    return index, row, reason


def sample_file(counts_dir: str | os.PathLike, sample_id: str) -> Path:
    """Path of one sample's counts file in ``counts_dir`` (the id is %-escaped for the file system)."""
    return Path(counts_dir) / (urllib.parse.quote(sample_id, safe="") + SAMPLE_FILE_SUFFIX)


def _failed_file(counts_dir, sample_id: str) -> Path:
    return Path(counts_dir) / (urllib.parse.quote(sample_id, safe="") + FAILED_FILE_SUFFIX)


def _source_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_sample_file(file: Path) -> tuple[np.ndarray, dict]:
    """``(counts, meta)`` of a per-sample file; any fault (truncated, corrupt, not an .npz) is a ValueError."""
    try:
        with np.load(file, allow_pickle=False) as z:
            return np.asarray(z["counts"]), json.loads(str(z["meta"]))
    except OSError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, zlib.error, KeyError ... from a damaged file
        raise ValueError(f"corrupt or not a count-sample file ({type(exc).__name__}: {exc})") from None


def _is_current(file: Path, settings: CountSettings, source: Path) -> bool:
    if not file.is_file():
        return False
    try:
        _, meta = _read_sample_file(file)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return False
    want = settings.describe()
    same_settings = all(meta.get(k) == v for k, v in want.items())
    try:
        same_source = meta.get("source") == _source_fingerprint(source)
    except OSError:
        same_source = False
    return same_settings and same_source


def count_sample(input_path: str | os.PathLike, sample_id: str, counts_dir: str | os.PathLike,
                 settings: CountSettings, *, on_error: str = "fail", force: bool = False) -> Path | None:
    """Count one sample into ``counts_dir/<sample_id>.counts.npz`` (one cluster job).

    The file holds ``counts`` (the store row) and ``meta`` (JSON: settings, bins
    digest, source path/size/mtime, versions). An up-to-date file (same settings,
    same source file) is kept unless ``force``, so a rerun counts only what is
    missing or stale. On a bad input, ``on_error="fail"`` raises InputError;
    ``"skip"`` writes ``<sample_id>.failed.json`` with the reason (read by
    :func:`gather`) and returns None. Returns the counts file path.
    """
    _check_on_error(on_error)
    source = Path(input_path).expanduser().resolve()
    counts_dir = Path(counts_dir).expanduser().resolve()
    counts_dir.mkdir(parents=True, exist_ok=True)
    target = sample_file(counts_dir, sample_id)
    failed = _failed_file(counts_dir, sample_id)
    if not force and _is_current(target, settings, source):
        _log.info("sample %s: %s is up to date", sample_id, target)
        return target
    row, reason = _count_one(str(source), settings)
    if reason is not None:
        if on_error == "fail":
            raise InputError(_sample_message(sample_id, str(source), reason))
        write_json(failed, {"sample_id": sample_id, "path": str(source), "reason": reason,
                            **settings.describe()})
        target.unlink(missing_ok=True)
        return None
    meta = {"sample_id": sample_id, "source": _source_fingerprint(source), **settings.describe(),
            "tool_versions": _versions(settings, None),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if settings.method == "bam":
        meta["aligner_programs"] = _bam_programs(source)
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, counts=row, meta=np.array(json.dumps(meta, default=str)))
    failed.unlink(missing_ok=True)
    return target


def missing_samples(manifest, counts_dir: str | os.PathLike, settings: CountSettings) -> list[int]:
    """0-based manifest rows whose counts file is absent or stale (for ``sbatch --array``)."""
    samples, _ = _as_manifest(manifest)
    return [i for i, (sid, p) in enumerate(zip(samples["sample_id"], samples["path"]))
            if not _is_current(sample_file(counts_dir, sid), settings, Path(p))]


def _versions(settings: CountSettings, extra: dict | None) -> dict:
    out = package_versions(("cnvrock", "numpy", "pandas") + (("pysam",) if settings.method == "bam" else ()))
    if settings.method == "bam":
        import pysam.version

        out["htslib (pysam)"] = pysam.version.__htslib_version__
    out.update(extra or {})
    return out


def _bam_programs(path: Path) -> list[dict]:
    """The @PG records (aligner, sorter) of one BAM header, for provenance."""
    try:
        import pysam

        with pysam.AlignmentFile(str(path), "rc" if path.suffix == ".cram" else "rb") as bam:
            return [{k: pg.get(k) for k in ("ID", "PN", "VN") if k in pg} for pg in bam.header.to_dict().get("PG", [])]
    except (ValueError, OSError, ImportError):
        return []


def _check_on_error(on_error: str) -> None:
    if on_error not in ("fail", "skip"):
        raise InputError(f"on_error = {on_error!r}; expected 'fail' or 'skip'")


def _sample_message(sample_id: str, path: str, reason: str) -> str:
    return f"sample {sample_id} ({path}): {reason}"
