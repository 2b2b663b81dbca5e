"""The runner: execute a tier's notebooks in order with papermill, render HTML.

Each stage is skipped when its manifest (params hash, notebook hash, input
fingerprints) matches and its outputs exist; ``force`` re-runs. A lock file
keeps two runs from writing one ``out_dir``. A failing stage raises
:class:`~cnvrock_lib.errors.StageError` naming the stage and the failing cell,
after saving the failed notebook and its HTML.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .atomic import write_json, write_text
from .errors import LockedError, ParamsError, StageError
from .params import Params
from .report import prepare_params

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its notebook, the artefacts it reads from earlier stages and writes."""

    key: str
    notebook: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]


STAGES: tuple[Stage, ...] = (
    Stage("01", "01_train_vae.ipynb", (),
          ("medians.npy", "checkpoint.pth", "training_log.tsv", "latents.npy", "reconstructions.npy")),
    Stage("02", "02_segment.ipynb", ("reconstructions.npy",),
          ("copy_ratios.npy", "states.npy", "state_posteriors.npy", "segments.parquet", "sample_qc.tsv")),
    Stage("03", "03_call.ipynb", ("reconstructions.npy", "copy_ratios.npy", "states.npy", "state_posteriors.npy",
                                 "sample_qc.tsv", "medians.npy"),
          ("gene_calls.tsv", "plasmid_gene_calls.tsv")),
    Stage("04", "04_evaluate.ipynb", ("gene_calls.tsv", "plasmid_gene_calls.tsv", "segments.parquet", "sample_qc.tsv"),
          ("evaluation.txt", "evaluation_metrics.tsv", "threshold_sweep.tsv")),
)
INPUT_KEYS = ("store_path", "plasmid_store_path", "kpsc_gt_path", "kpsc_kleborate_gt_path", "kpsc_meta_path",
              "plasmid_gene_coords_path", "chrom_gene_coords_path", "plasmid_gene_families_path", "holdout_ids_path")


@dataclass
class StageOutcome:
    """What happened to one stage: ``ran``, ``skipped`` (up to date) or ``not available``."""

    stage: str
    status: str
    seconds: float = 0.0
    notebook: Path | None = None
    html: Path | None = None


def _fingerprint(path: Path) -> dict | None:
    """Size and modification time of a file, or of every file in a directory (store)."""
    if not path.exists():
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path) if path.is_dir() else p.name): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in files}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def stage_manifest(params: Params, stage: Stage) -> dict:
    """The manifest that decides whether ``stage`` is up to date: params, notebook, inputs."""
    out = params.out_path
    inputs = {key: _fingerprint(Path(params[key])) for key in INPUT_KEYS if params[key]}
    upstream = {name: _fingerprint(out / name) for name in stage.reads}
    notebook = NOTEBOOK_DIR / stage.notebook
    return {"stage": stage.key, "params_hash": params.hash(), "notebook_sha": _sha(notebook),
            "cnvrock": __version__, "inputs": inputs, "upstream": upstream}


def _manifest_path(params: Params, stage: Stage) -> Path:
    return params.out_path / "manifests" / f"stage_{stage.key}.json"


def is_up_to_date(params: Params, stage: Stage) -> bool:
    """True when the saved manifest matches and every output of ``stage`` exists."""
    path = _manifest_path(params, stage)
    if not path.is_file() or not all((params.out_path / w).exists() for w in stage.writes):
        return False
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return saved.get("manifest") == stage_manifest(params, stage)


@contextlib.contextmanager
def out_dir_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for this process; refuse if another run holds it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir / ".cnvrock.lock"
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise LockedError(f"out_dir {out_dir} is in use by another CNVRock run ({holder}); "
                          f"wait for it to finish or choose another out_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def report_dir_for(params: Params) -> Path:
    """Where a tier's HTML reports go: ``report_dir`` or ``<repo>/reports/<tier>``."""
    return Path(params.report_dir) if params.report_dir else REPO_ROOT / "reports" / str(params.tier)


def render_html(notebook: Path, html_path: Path, show_code: bool = False) -> Path:
    """Render an executed notebook to HTML (code hidden unless ``show_code``), atomically."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.exclude_input = not show_code
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    write_text(html_path, body)
    return html_path


def _execute(stage: Stage, params: Params, executed: Path, log: Callable[[str], None]) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    os.environ.setdefault("CNVROCK_BATCH", "1")  # one log line per epoch, no progress bars
    try:
        pm.execute_notebook(
            str(NOTEBOOK_DIR / stage.notebook), str(executed),
            parameters={"params_path": str(params.source)},
            cwd=str(NOTEBOOK_DIR), kernel_name="python3", progress_bar=False,
            log_output=False, request_save_on_cell_execute=True,
        )
    except PapermillExecutionError as exc:
        raise StageError(
            f"stage {stage.key} ({stage.notebook}) failed in cell {exc.exec_count} (index {exc.cell_index}): "
            f"{exc.ename}: {exc.evalue}\n  executed notebook: {executed}"
        ) from None


def run_tier(params_path: str | Path, stages: list[str] | None = None, force: bool = False,
             show_code: bool = False, log: Callable[[str], None] | None = None) -> list[StageOutcome]:
    """Run the stages of a tier in order (all by default).

    Parameters
    ----------
    params_path : the tier YAML.
    stages : stage keys to run (``["01", "02"]``); default all four.
    force : re-run stages even when up to date.
    show_code : keep code cells in the HTML reports.
    """
    log = log or (lambda msg: print(f"[cnvrock] {msg}", file=sys.stderr, flush=True))
    wanted = stages or [s.key for s in STAGES]
    unknown = sorted(set(wanted) - {s.key for s in STAGES})
    if unknown:
        raise ParamsError(f"unknown stage(s) {unknown}; stages are {[s.key for s in STAGES]}")
    params = prepare_params(params_path)
    reports = report_dir_for(params)
    outcomes: list[StageOutcome] = []
    with out_dir_lock(params.out_path):
        for stage in STAGES:
            if stage.key not in wanted:
                continue
            notebook = NOTEBOOK_DIR / stage.notebook
            if not notebook.is_file():
                log(f"stage {stage.key}: {stage.notebook} is not available in this version; stopping here")
                outcomes.append(StageOutcome(stage.key, "not available"))
                break
            executed = params.out_path / "notebooks" / stage.notebook
            html = reports / stage.notebook.replace(".ipynb", ".html")
            if not force and is_up_to_date(params, stage):
                log(f"stage {stage.key}: up to date, skipped (use --force to re-run)")
                outcomes.append(StageOutcome(stage.key, "skipped", 0.0, executed, html))
                continue
            missing = [r for r in stage.reads if not (params.out_path / r).exists()]
            if missing:
                raise StageError(f"stage {stage.key} needs {missing} in {params.out_path}; run the earlier stages first")
            _manifest_path(params, stage).unlink(missing_ok=True)
            log(f"stage {stage.key}: running {stage.notebook} (tier {params.tier}) ...")
            started = time.time()
            executed.parent.mkdir(parents=True, exist_ok=True)
            try:
                _execute(stage, params, executed, log)
            finally:
                if executed.exists():
                    render_html(executed, html, show_code)
            seconds = time.time() - started
            write_json(_manifest_path(params, stage), {"manifest": stage_manifest(params, stage),
                                                       "seconds": round(seconds, 2),
                                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
            log(f"stage {stage.key}: done in {seconds:.1f} s -> {html}")
            outcomes.append(StageOutcome(stage.key, "ran", seconds, executed, html))
    write_json(reports / "tier.json", {"tier": params.tier, "out_dir": str(params.out_path),
                                       "params": str(params.source),
                                       "stages": {o.stage: o.status for o in outcomes}})
    from .index import build_index

    build_index(reports.parent)
    return outcomes
