"""Whole stores: :func:`build_store` (parallel over samples, streaming into a preallocated
``counts.npy`` inside a temporary directory renamed into place when complete) and :func:`gather`
(the per-sample files of a Slurm array into one store), with their provenance."""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..atomic import atomic_dir
from ..errors import InputError, StoreError
from ..progress import Progress, get_logger
from ..reference import BIN_DTYPE
from .inputs import MOSDEPTH_UNIT_NOTE, READ_START_CONVENTION, SKIPPED_READS, SKIP_FLAGS, _as_manifest, _contig_table
from .sample import _bam_programs, _check_on_error, _sample_message, _versions, CountSettings, _count_one, _count_task, _failed_file, _init_worker, _read_sample_file, sample_file

_log = get_logger("ingest")

@dataclass
class BuildResult:
    """What a store build did: the store path, samples kept, samples skipped (with reasons)."""

    path: Path
    n_samples: int
    n_bins: int
    skipped: list[dict]
    seconds: float
    provenance: dict


def default_workers() -> int:
    """Worker processes: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _provenance(settings: CountSettings, extra_versions: dict | None, manifest_name: str) -> dict:
    prov = {
        "builder": "cnvrock_lib.ingest",
        **settings.describe(),
        "bin_size": int(settings.bins["end"][0] - settings.bins["start"][0] + 1),
        "bins": "1-based inclusive, like GATK intervals; the last bin of a contig is partial",
        "reference_contigs": _contig_table(settings.bins),
        "tool_versions": _versions(settings, extra_versions),
        "manifest": manifest_name,
    }
    if settings.method == "bam":
        prov["read_filters"] = {"skipped_reads": list(SKIPPED_READS), "skip_flags": hex(SKIP_FLAGS),
                                "min_mapq": int(settings.min_mapq)}
        prov["read_start_convention"] = READ_START_CONVENTION
        if settings.reference_fasta:
            prov["reference_fasta"] = str(settings.reference_fasta)
    elif settings.method == "gatk-tsv":
        prov["read_start_convention"] = ("as counted by GATK CollectReadCounts (read start in the bin); "
                                         "min_mapq is as declared by the user, not checked here")
    else:
        prov["unit_note"] = MOSDEPTH_UNIT_NOTE
        prov["min_mapq_note"] = "as declared by the user (mosdepth -Q), not checked here"
    return prov


def _shrink_rows(npy: Path, n_rows: int) -> None:
    """Keep the first ``n_rows`` of a 2-D .npy on disk (after skipped samples)."""
    src = np.load(npy, mmap_mode="r")
    tmp = npy.with_name(npy.name + ".shrink.npy")
    dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=src.dtype, shape=(n_rows, src.shape[1]))
    step = max(1, (1 << 26) // max(1, src.shape[1] * src.dtype.itemsize))
    for lo in range(0, n_rows, step):
        dst[lo:lo + step] = src[lo:min(lo + step, n_rows)]
    dst.flush()
    del dst, src
    os.replace(tmp, npy)


def _iter_results(tasks: list, settings: CountSettings, workers: int, executor: str) -> Iterator[tuple]:
    """Results in task order; a pool's pending tasks are cancelled if the consumer stops early."""
    if workers <= 1 or len(tasks) <= 1:
        for index, path in tasks:
            yield (index, *_count_one(path, settings))
        return
    if executor not in ("process", "thread"):
        raise InputError(f"executor = {executor!r}; expected 'process' or 'thread'")
    pool_cls = ProcessPoolExecutor if executor == "process" else ThreadPoolExecutor
    pool = pool_cls(max_workers=workers, initializer=_init_worker, initargs=(settings,))
    try:
        chunk = max(1, min(64, len(tasks) // (workers * 8))) if executor == "process" else 1
        kwargs = {"chunksize": chunk} if executor == "process" else {}
        yield from pool.map(_count_task, tasks, **kwargs)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_out(out: Path, overwrite: bool, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an ``out`` that exists (unless ``overwrite``) or that is not a store ``--overwrite`` may replace."""
    from ..store import check_replaceable

    if out.exists() and not overwrite:
        raise StoreError(f"store {out} already exists; refusing to overwrite it (pass overwrite / --overwrite)")
    check_replaceable(out, inputs)


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise InputError(f"workers = {workers!r}: expected a positive whole number of parallel workers "
                         f"(omit --workers for the usable CPUs)")
    return int(workers)


def _sample_progress(n: int, what: str, progress: bool) -> Progress:
    """A bar when interactive, else a line every 10 % with the rate; nothing when ``progress`` is False."""
    return Progress(n, what, "sample", _log.info, bar=None if progress else False, every=0.1, quiet=not progress,
                    rate=True)


def build_store(manifest, out: str | os.PathLike, settings: CountSettings, *, on_error: str = "fail",
                workers: int | None = None, executor: str = "auto", overwrite: bool = False,
                tool_versions: dict | None = None, progress: bool = True) -> BuildResult:
    """Count every sample of a manifest into a new store directory.

    Parameters
    ----------
    manifest : TSV path (``sample_id path``) or a DataFrame with those columns.
    out : the store directory to create (written complete or not at all).
    settings : method, bins and MQ threshold (:class:`CountSettings`).
    on_error : ``"fail"``: the first bad file raises InputError (sample, path, reason)
        and nothing is written; ``"skip"``: bad samples are left out and listed
        under ``skipped`` in ``store.json``.
    workers : parallel workers (default: the usable CPUs); 1 counts in-process.
    executor : ``"process"``, ``"thread"`` or ``"auto"``: threads for text inputs (their C
        parsers release the GIL; measured faster than processes, bench/store_build.py),
        processes for BAM/CRAM (a Python loop over reads).
    tool_versions : extra versions to record, e.g. ``{"gatk": "4.5.0.0"}``.

    Rows of ``counts.npy`` follow the manifest order (skipped samples removed).
    """
    _check_on_error(on_error)
    samples, manifest_name = _as_manifest(manifest)
    out = Path(out).expanduser().resolve()
    _check_out(out, overwrite, [manifest_name, *samples["path"]])
    workers = _check_workers(workers)
    if executor == "auto":
        executor = "process" if settings.method == "bam" else "thread"
    t0 = time.perf_counter()
    n, n_bins = len(samples), settings.bins.shape[0]
    if n == 0:
        raise InputError(f"manifest {manifest_name} lists no samples")
    ids = samples["sample_id"].tolist()
    paths = samples["path"].tolist()
    tasks = [(i, paths[i]) for i in range(n)]
    skipped: list[dict] = []
    kept: list[int] = []
    bar = _sample_progress(n, f"build-store {out.name}", progress)
    with atomic_dir(out) as tmp:
        counts = np.lib.format.open_memmap(tmp / "counts.npy", mode="w+", dtype=settings.dtype,
                                           shape=(n, n_bins))
        try:
            for i, row, reason in _iter_results(tasks, settings, workers, executor):
                bar.update()
                if reason is not None:
                    if on_error == "fail":
                        raise InputError(_sample_message(ids[i], paths[i], reason)
                                         + "; nothing was written (on_error='skip' leaves such samples out)")
                    _log.warning("skipping %s", _sample_message(ids[i], paths[i], reason))
                    skipped.append({"sample_id": ids[i], "path": paths[i], "reason": reason})
                    continue
                counts[len(kept)] = row
                kept.append(i)
        finally:
            bar.close()
        counts.flush()
        del counts
        if not kept:
            raise StoreError(f"store {out}: no sample could be counted; first failure: "
                             f"{_sample_message(**skipped[0])}")
        if len(kept) < n:
            _shrink_rows(tmp / "counts.npy", len(kept))
        prov = _provenance(settings, tool_versions, manifest_name)
        if settings.method == "bam":
            prov["aligner_programs_first_sample"] = _bam_programs(Path(paths[kept[0]]))
        seconds = time.perf_counter() - t0
        prov.update(_finish_provenance(len(kept), n, skipped, on_error, seconds, workers=workers,
                                       executor=executor if workers > 1 else "in-process"))
        _write_store_files(tmp, [ids[i] for i in kept], settings.bins, prov)
    return BuildResult(out, len(kept), n_bins, skipped, seconds, prov)


def _finish_provenance(n_kept: int, n_input: int, skipped: list, on_error: str, seconds: float, **extra) -> dict:
    return {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_samples": n_kept, "n_input_samples": n_input, "n_skipped": len(skipped),
            "skipped": skipped, "on_error": on_error, "build_seconds": round(seconds, 3), **extra}


def _write_store_files(tmp: Path, sample_ids: list[str], bins: np.ndarray, prov: dict) -> None:
    from ..store import validate, write_store_files

    prov["n_bins"] = int(bins.shape[0])
    write_store_files(tmp, sample_ids, bins, prov)
    counts = np.load(tmp / "counts.npy", mmap_mode="r")
    validate(tmp, counts, np.asarray(sample_ids, dtype=str), bins.astype(BIN_DTYPE), check_values=False)


def gather(manifest, counts_dir: str | os.PathLike, out: str | os.PathLike, settings: CountSettings, *,
           on_error: str = "fail", overwrite: bool = False, progress: bool = True) -> BuildResult:
    """Assemble a store from the per-sample files of :func:`count_sample`.

    Every counts file must carry the same settings (method, MQ, unit, bins) as
    ``settings``. A sample without a counts file (not counted, or failed) is
    fatal with ``on_error="fail"`` (the message lists how many and which), or
    left out and listed in ``store.json`` with ``"skip"``. Rows follow the manifest.
    """
    _check_on_error(on_error)
    samples, manifest_name = _as_manifest(manifest)
    counts_dir = Path(counts_dir).expanduser().resolve()
    out = Path(out).expanduser().resolve()
    _check_out(out, overwrite, [manifest_name, counts_dir, *samples["path"]])
    if not counts_dir.is_dir():
        raise InputError(f"counts directory {counts_dir} does not exist (run count-sample first)")
    t0 = time.perf_counter()
    want = settings.describe()
    n, n_bins = len(samples), settings.bins.shape[0]
    ids, paths = samples["sample_id"].tolist(), samples["path"].tolist()
    problems: list[dict] = []
    kept: list[int] = []
    first_meta: dict | None = None
    bar = _sample_progress(n, f"gather {out.name}", progress)
    with atomic_dir(out) as tmp:
        counts = np.lib.format.open_memmap(tmp / "counts.npy", mode="w+", dtype=settings.dtype,
                                           shape=(n, n_bins))
        try:
            for i, (sid, path) in enumerate(zip(ids, paths)):
                bar.update()
                file = sample_file(counts_dir, sid)
                reason = None
                if not file.is_file():
                    failed = _failed_file(counts_dir, sid)
                    if failed.is_file():
                        reason = "counting failed: " + json.loads(failed.read_text()).get("reason", "?")
                    else:
                        reason = f"not counted (no {file.name} in {counts_dir})"
                else:
                    try:
                        row, meta = _read_sample_file(file)
                    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
                        row, meta, reason = None, {}, f"unreadable counts file {file}: {exc}"
                    if reason is None:
                        diff = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
                        if diff:
                            shown = "; ".join(f"{k} {a!r} (expected {b!r})" for k, (a, b) in diff.items())
                            reason = f"counts file {file.name} was made with other settings: {shown}"
                        elif meta.get("sample_id") != sid:
                            reason = f"counts file {file.name} is for sample {meta.get('sample_id')!r}"
                        elif row.shape != (n_bins,):
                            reason = f"counts file {file.name} has shape {row.shape}, expected ({n_bins},)"
                if reason is not None:
                    problems.append({"sample_id": sid, "path": path, "reason": reason})
                    continue
                first_meta = first_meta or meta
                counts[len(kept)] = row
                kept.append(i)
        finally:
            bar.close()
        if problems and on_error == "fail":
            shown = "; ".join(_sample_message(**p) for p in problems[:3])
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise InputError(f"gather into {out}: {len(problems)} of {n} samples have no usable counts file: "
                             f"{shown}{more}; nothing was written. Count them again (cnvrock gather "
                             f"--list-missing gives their manifest rows) or pass --on-error skip")
        counts.flush()
        del counts
        if not kept:
            raise StoreError(f"store {out}: no sample has a usable counts file in {counts_dir}")
        if len(kept) < n:
            _shrink_rows(tmp / "counts.npy", len(kept))
        prov = _provenance(settings, (first_meta or {}).get("tool_versions"), manifest_name)
        prov["gathered_from"] = str(counts_dir)
        if first_meta and first_meta.get("aligner_programs"):
            prov["aligner_programs_first_sample"] = first_meta["aligner_programs"]
        seconds = time.perf_counter() - t0
        prov.update(_finish_provenance(len(kept), n, problems, on_error, seconds))
        _write_store_files(tmp, [ids[i] for i in kept], settings.bins, prov)
    return BuildResult(out, len(kept), n_bins, problems, seconds, prov)
