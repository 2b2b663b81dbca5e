"""The runner: execute a tier's notebooks in order with papermill, render HTML.

Each stage is skipped when its manifest (params hash, notebook hash, input
fingerprints) matches and its outputs exist; ``force`` re-runs. A lock file
keeps two runs from writing one ``out_dir``. A failing stage raises
:class:`~cnvrock_lib.errors.StageError` naming the stage and the failing cell,
after saving the failed notebook and its HTML. Inputs are checked before any
notebook starts (:func:`preflight`); SIGTERM (Slurm pre-emption or time limit)
is passed on to the running notebook, which stops cleanly, and the run ends
with :class:`~cnvrock_lib.errors.Terminated`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from . import artefacts as A
from .atomic import TMP_PREFIX, is_output_fault, output_error, registered_leftovers, write_json, write_text
from .device import resolve_device
from .errors import CnvrockError, InputError, LockedError, OutputError, ParamsError, StageError, StoreError, Terminated
from .params import Params, write_frozen
from .progress import is_progress_line
from .provenance import library_sha
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


def _names(*arts: A.Artefact) -> tuple[str, ...]:
    return tuple(a.name for a in arts)


# What each stage writes comes from the artefact contract (cnvrock_lib/artefacts.py); what it reads
# from earlier stages is listed here (its notebook included).
STAGES: tuple[Stage, ...] = (
    Stage("01", "01_train_vae.ipynb", (), _names(*A.written_by("01"))),
    Stage("02", "02_segment.ipynb", _names(A.RECONSTRUCTIONS), _names(*A.written_by("02"))),
    Stage("03", "03_call.ipynb", _names(A.RECONSTRUCTIONS, A.COPY_RATIOS, A.STATES, A.STATE_POSTERIORS, A.SAMPLE_QC,
                                        A.MEDIANS), _names(*A.written_by("03"))),
    Stage("04", "04_evaluate.ipynb", _names(A.GENE_CALLS, A.PLASMID_CALLS, A.SEGMENTS, A.SAMPLE_QC),
          _names(*A.written_by("04"))),
)
INPUT_KEYS = ("store_path", "plasmid_store_path", "kpsc_gt_path", "kpsc_kleborate_gt_path", "kpsc_meta_path",
              "plasmid_gene_coords_path", "chrom_gene_coords_path", "plasmid_gene_families_path", "holdout_ids_path")

# The params each stage reads (its notebook and the library code it calls). A stage's
# manifest hashes only these (input paths among them are fingerprinted by content), plus
# the fingerprints of the upstream artefacts it reads: a change of a stage-03 key reruns
# 03 and 04, never training. When unsure whether a key can change a stage's artefacts,
# it is listed. tests/test_run.py checks that every params key is listed here or in
# NO_ARTEFACT_KEYS.
_COMMON = ("simulate", "seed", "store_path", "kpsc_meta_path")
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "01": _COMMON + ("architecture", "latent_dim", "batch_size", "epochs", "lr", "weight_decay", "max_beta",
                     "warmup_epochs", "patience", "val_fraction", "aux_loss", "aux_weight", "aux_warmup_epochs",
                     "aux_n_blocks", "conv_channels", "conv_kernels", "conv_strides", "grad_clip",
                     "vae_min_bin_median", "vae_gene_mask_padding", "vae_gene_fill", "chrom_gene_coords_path",
                     "hmm_low_cov_threshold",  # the stage-01 report's reconstruction error (expected depth)
                     "holdout_ids_path", "device", "num_threads"),
    "02": _COMMON + ("hmm", "hmm_n_states", "hmm_self_transition", "hmm_low_cov_threshold", "hmm_em_iterations",
                     "hmm_batch_size", "cnv_min_cn1_proportion", "cnv_min_confidence", "device", "num_threads"),
    "03": _COMMON + ("cnv", "plasmid_store_path", "chrom_gene_coords_path", "plasmid_gene_coords_path",
                     "plasmid_gene_families_path", "pcn_absent_threshold", "pcn_amp_threshold",
                     "pcn_threshold_method", "chrom_call_rule", "export_formats", "cnv_min_cn1_proportion",
                     "cnv_min_confidence", "cnv_flank_padding",
                     "cnv_crr_amp_threshold", "cnv_crr_gate_threshold", "cnv_crr_min_bins_fallback",
                     "cnv_min_gene_coverage_fraction", "bootstrap_replicates", "eval_species",
                     "pcn_min_chrom_depth", "eval_min_group_n", "num_threads"),
    "04": _COMMON + ("evaluation", "tier", "kpsc_gt_path", "kpsc_kleborate_gt_path", "holdout_ids_path",
                     "plasmid_gene_families_path", "eval_species", "eval_min_group_n", "cnv_crr_amp_threshold",
                     "pcn_amp_threshold", "pcn_absent_threshold", "bootstrap_replicates"),
}
NO_ARTEFACT_KEYS = ("out_dir", "report_dir")  # where artefacts go, not what they hold
SMALL_FILE = 8 << 20  # bytes: files up to this size are fingerprinted by a full content hash
SAMPLE_BLOCK, SAMPLE_BLOCKS = 1 << 16, 32  # larger files: size, mtime and a hash of 32 blocks of 64 KiB


@dataclass
class StageOutcome:
    """What happened to one stage: ``ran``, ``skipped`` (up to date) or ``not available``."""

    stage: str
    status: str
    seconds: float = 0.0
    notebook: Path | None = None
    html: Path | None = None


def file_fingerprint(path: Path) -> list:
    """Identity of one file: ``[size, sha256]`` up to :data:`SMALL_FILE` bytes, else ``[size, mtime_ns, sampled sha256]``.

    Small files (params-sized tables, smoke-tier arrays) are hashed whole, so an edit that
    keeps size and modification time is still seen; large arrays are hashed on
    :data:`SAMPLE_BLOCKS` evenly spaced blocks of :data:`SAMPLE_BLOCK` bytes (first and last included).
    """
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if st.st_size <= SMALL_FILE:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
            return [st.st_size, digest.hexdigest()[:16]]
        for i in range(SAMPLE_BLOCKS):
            handle.seek((st.st_size - SAMPLE_BLOCK) * i // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(SAMPLE_BLOCK))
    return [st.st_size, st.st_mtime_ns, "sampled:" + digest.hexdigest()[:16]]


def _fingerprint(path: Path) -> dict | None:
    """:func:`file_fingerprint` of a file, or of every file in a directory (store); None when absent."""
    if not path.exists():
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path) if path.is_dir() else p.name): file_fingerprint(p) for p in files}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def stage_manifest(params: Params, stage: Stage) -> dict:
    """What decides whether ``stage`` is up to date: its params, notebook, library code, inputs, upstream artefacts.

    Only the keys of :data:`STAGE_PARAMS` for this stage are hashed; input paths among
    them and the upstream artefacts in ``out_dir`` are fingerprinted by content
    (:func:`file_fingerprint`). The runner takes it *before* the stage runs, so an input
    changed while the stage runs makes the next run redo the stage.
    """
    keys = STAGE_PARAMS[stage.key]
    out = params.out_path
    inputs = {key: _fingerprint(Path(params[key])) for key in keys if key in INPUT_KEYS and params[key]}
    upstream = {name: _fingerprint(out / name) for name in stage.reads}
    notebook = NOTEBOOK_DIR / stage.notebook
    return {"stage": stage.key, "params_hash": params.hash(list(keys)),
            "notebook_sha": _sha(notebook) if notebook.is_file() else None,
            "cnvrock": __version__, "library_sha": library_sha(), "inputs": inputs, "upstream": upstream}


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
    lock_path = out_dir / ".cnvrock.lock"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as exc:
        raise output_error(lock_path, exc) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise LockedError(f"out_dir {out_dir} is in use by another CNVRock run ({holder}); "
                          f"wait for it to finish or choose another out_dir") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
    except OSError as exc:
        handle.close()
        raise output_error(lock_path, exc) from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def sweep_stale(out_dir: Path) -> list[Path]:
    """Remove temporary files a killed run left in ``out_dir`` (call only under :func:`out_dir_lock`).

    Atomic writes leave hidden ``.cnvrock-tmp.<name>.<random>`` siblings (and replaced
    stores ``.cnvrock-old.<name>.<random>``) when the process is killed mid-write; they
    never look complete, but they take space. Only names with the project's own prefix
    (:func:`cnvrock_lib.atomic.registered_leftovers`) are removed: a user's hidden files
    are never touched. Returns what was removed.
    """
    import shutil

    removed = []
    for folder in (out_dir, out_dir / "notebooks", out_dir / "manifests"):
        for path in registered_leftovers(folder):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def preflight(params: Params, log: Callable[[str], None] | None = None) -> dict:
    """Cheap checks of every input before any notebook starts (errors exit 2, not after hours of training).

    Opens the stores (shapes, unique ids, sorted bins; values scanned only when they are
    signed or float, as a uint32 store cannot hold a negative or NaN count), checks the gene panels against the stores' contigs and the ground
    truth and metadata tables for their key columns, and reports how the chromosome and
    plasmid stores' sample sets differ. Returns those counts.
    """
    from . import reference
    from .store import open_store

    log = log or (lambda msg: None)
    for key in TEXT_INPUT_KEYS:
        if params[key]:
            _check_utf8(Path(params[key]), key)
    chrom = open_store(params.store_path)
    panel = reference.load_gene_panel(params.chrom_gene_coords_path, "chromosome")
    panel.check_against(chrom.bins, str(params.chrom_gene_coords_path or "packaged chromosome panel"))
    summary = {"chrom_samples": int(chrom.n_samples)}
    if params.plasmid_store_path:
        plasmid = open_store(params.plasmid_store_path)
        if plasmid.layout == "bins":
            reference.load_gene_panel(params.plasmid_gene_coords_path, "plasmid").check_against(
                plasmid.bins, str(params.plasmid_gene_coords_path or "packaged plasmid panel"))
        chrom_ids, plasmid_ids = set(chrom.sample_ids.tolist()), set(plasmid.sample_ids.tolist())
        summary.update(plasmid_samples=len(plasmid_ids), no_plasmid_counts=len(chrom_ids - plasmid_ids),
                       plasmid_only=len(plasmid_ids - chrom_ids))
        if summary["no_plasmid_counts"] or summary["plasmid_only"]:
            log(f"sample sets differ: {summary['no_plasmid_counts']} chromosome-store sample(s) are not in the "
                f"plasmid store (plasmid calls -1, status no_plasmid_counts) and {summary['plasmid_only']} "
                f"plasmid-store sample(s) are not in the chromosome store (not called)")
        if not summary["plasmid_samples"] - summary["plasmid_only"]:
            raise StoreError(f"store {plasmid.path}: none of its {len(plasmid_ids)} sample ids is in the chromosome "
                             f"store {chrom.path} (e.g. {sorted(plasmid_ids)[0]!r} vs {sorted(chrom_ids)[0]!r}); "
                             f"every plasmid call would be -1 — were the stores built from different manifests?")
    from . import evaluation
    from .holdout import read_holdout_ids

    chrom_ids = set(chrom.sample_ids.tolist())
    for key, what, columns in (("kpsc_gt_path", "AMRFinder ground truth", ["sample_id"]),
                               ("kpsc_kleborate_gt_path", "Kleborate ground truth", ["sample_id"]),
                               ("kpsc_meta_path", "metadata", ["sample_id", "Species", "ST"])):
        if params[key]:
            frame = reference.read_tsv(params[key], columns, f"{what} ({key})")
            _check_row_fields(Path(params[key]), f"{what} ({key})")
            if key != "kpsc_meta_path":
                _check_gt_ids(frame, Path(params[key]), f"{what} ({key})", chrom_ids, chrom.path)
    evaluation.load_metadata(params.kpsc_meta_path)  # one row per sample
    if params.kpsc_gt_path or params.kpsc_kleborate_gt_path:
        # Values too (0/1 presence, whole copy counts): a bad value must stop the run before
        # training, not in stage 04 an hour later.
        evaluation.load_ground_truth(params.kpsc_gt_path, params.kpsc_kleborate_gt_path)
    holdout = set(read_holdout_ids(params.holdout_ids_path) or [])
    n_fit = len(chrom_ids - holdout)
    if n_fit < MIN_TRAINING_SAMPLES:
        raise StoreError(f"store {chrom.path}: {chrom.n_samples} sample(s), {n_fit} of them not held out; cohort mode "
                         f"trains the VAE on the cohort and needs at least {MIN_TRAINING_SAMPLES}. Add samples "
                         f"(a few new samples are for case mode, which applies a trained tier's model; not in "
                         f"this version)")
    resolve_device(params.device)   # cuda without a GPU: exit 2 now, not after the data load
    _check_writable(report_dir_for(params))
    return summary


TEXT_INPUT_KEYS = ("kpsc_gt_path", "kpsc_kleborate_gt_path", "kpsc_meta_path", "plasmid_gene_coords_path",
                   "chrom_gene_coords_path", "plasmid_gene_families_path", "holdout_ids_path")


def _check_utf8(path: Path, key: str) -> None:
    """A text input must be UTF-8 (every reader decodes it so); the error names the byte and line."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"key '{key}': {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line}; "
                         f"save the file as UTF-8") from None


MIN_TRAINING_SAMPLES = 10  # samples not held out: training, validation and the cohort's own QC reference


def _check_row_fields(path: Path, what: str) -> None:
    """Every row of a TSV has as many fields as its header (a short row would be read as missing values)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
        for number, line in enumerate(handle, start=2):
            line = line.rstrip("\r\n")
            if line.strip() and len(line.split("\t")) != len(header):
                raise InputError(f"{what} {path}: line {number} has {len(line.split(chr(9)))} tab-separated "
                                 f"field(s); the header has {len(header)} ({', '.join(header[:6])}"
                                 f"{' ...' if len(header) > 6 else ''}); expected one value (or empty) per column")


def _check_gt_ids(frame, path: Path, what: str, store_ids: set, store_path: Path) -> None:
    """A ground truth must have rows, and some of its ids must be samples of the store."""
    ids = set(frame["sample_id"].astype(str).str.strip())
    if not ids:
        raise InputError(f"{what} {path} has a header but no rows; expected one row per sample "
                         f"(every metric would be N/A)")
    if not ids & store_ids:
        raise InputError(f"{what} {path}: none of its {len(ids)} sample ids is in the store {store_path} "
                         f"(e.g. {sorted(ids)[0]!r} vs the store's {sorted(store_ids)[0]!r}); every metric would "
                         f"be N/A — is it the ground truth of another cohort?")


def _check_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file in it, or raise OutputError naming it."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=TMP_PREFIX):
            pass
    except OSError as exc:
        raise output_error(folder, exc) from None


def _child_pids() -> list[int]:
    """Process ids of this process's children (the notebook kernel); Linux /proc, [] elsewhere."""
    me, pids = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == me:
                pids.append(int(stat.parent.name))
    return pids


@contextlib.contextmanager
def sigterm_forwarded() -> Iterator[dict]:
    """Note SIGTERM and pass it on to the notebook kernel instead of dying at once.

    Slurm signals every process of a job; ``kill PID`` signals only the runner. Either
    way the kernel gets one SIGTERM: training then finishes its batch, keeps the last
    completed epoch in ``checkpoint_last.pth`` and stops. Yields ``{"signal": None | int}``.
    """
    state: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handle(signum, frame):
        if state["signal"] is None:
            state["signal"] = signum
            for pid in _child_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)

    old = signal.signal(signal.SIGTERM, handle)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, old)


def _terminated(stage: Stage, during: bool) -> Terminated:
    resume = (" Stage 01 keeps the last completed epoch in checkpoint_last.pth and resumes from it."
              if stage.key == "01" else "")
    when = f"stopped by SIGTERM during stage {stage.key} ({stage.notebook})" if during else \
        f"stopped by SIGTERM before stage {stage.key}"
    return Terminated(f"{when} (Slurm pre-emption, time limit or kill); every artefact written so far is "
                      f"complete; rerun the same command to continue.{resume}")


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
    body, _ = exporter.from_notebook_node(drop_progress_logs(nbformat.read(notebook, as_version=4)))
    write_text(html_path, strip_remote_scripts(body))
    return html_path


def drop_progress_logs(nb):
    """Remove the library's own progress lines (``[cnvrock ...]`` on stderr) from a notebook's outputs.

    They are for the job log (the runner streams them there live) and stay in the
    executed notebook; in the HTML report 80 epoch lines would bury the figures, and
    ``training_log.tsv`` holds the same numbers. Other stderr text (warnings) is kept.
    """
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [line for line in "".join(output.get("text", "")).splitlines(keepends=True)
                         if not is_progress_line(line)]
                if not "".join(lines).strip():
                    continue
                output["text"] = "".join(lines)
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return nb


_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", re.IGNORECASE)


def strip_remote_scripts(html_text: str) -> str:
    """Drop ``<script src="https://...">`` tags (nbconvert's CDN require.js and MathJax).

    Reports hold no widgets or maths, and cluster nodes and browsers on closed
    networks cannot reach a CDN: without them a report is self-contained and
    opens offline without failed requests.
    """
    return _REMOTE_SCRIPT.sub("", html_text)


@contextlib.contextmanager
def quiet_ctrl_c() -> Iterator[None]:
    """Ctrl-C ends the run with one line: from the moment SIGINT arrives, asyncio's logger is silenced.

    nbclient's pending cell task ends in DeadKernelError once the kernel is shut down, and
    asyncio would print "Task exception was never retrieved" with a traceback when the task
    is collected. The KeyboardInterrupt itself is raised as usual (exit 130).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum, frame):
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _execute(stage: Stage, frozen: Path, running: Path, executed: Path, log: Callable[[str], None]) -> None:
    """Run the stage's notebook with papermill, saving into ``running``; errors name ``executed``."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    os.environ.setdefault("CNVROCK_BATCH", "1")  # one log line per epoch, no progress bars
    try:
        with quiet_ctrl_c():
            pm.execute_notebook(
                str(NOTEBOOK_DIR / stage.notebook), str(running),
                parameters={"params_path": str(frozen)},
                cwd=str(NOTEBOOK_DIR), kernel_name="python3", progress_bar=False,
                log_output=False, request_save_on_cell_execute=True,
                stderr_file=sys.stderr,  # the kernel's progress lines reach the job log as they happen
                # the kernel talks to papermill on localhost only: its start-up warning about
                # unencrypted TCP would be printed once per stage into every job log
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except PapermillExecutionError as exc:
        raise StageError(
            f"stage {stage.key} ({stage.notebook}) failed in cell {exc.exec_count} (index {exc.cell_index}): "
            f"{exc.ename}: {exc.evalue}\n  executed notebook: {executed}"
        ) from None
    except DeadKernelError:
        raise StageError(f"stage {stage.key} ({stage.notebook}): the notebook kernel died (killed by a signal "
                         f"or the out-of-memory killer?); see the executed notebook {executed} and the job's "
                         f"memory limit") from None
    except OSError as exc:  # papermill writes the executed notebook itself
        if is_output_fault(exc, running.parent):
            raise output_error(executed, exc) from None
        raise


def _finish_notebook(running: Path, executed: Path, html: Path, show_code: bool, failed: bool,
                     log: Callable[[str], None]) -> None:
    """Move the executed notebook into place and render its HTML; a failure here never hides the stage's own."""
    try:
        if running.exists():
            os.replace(running, executed)
        if executed.exists():
            render_html(executed, html, show_code)
    except (OSError, CnvrockError, ValueError) as exc:  # ValueError: nbformat on a truncated notebook
        if not failed:
            raise output_error(html, exc) if isinstance(exc, OSError) else exc
        log(f"could not keep the executed notebook or its HTML ({type(exc).__name__}: {exc})")


def _missing_notebooks(wanted: list[str]) -> None:
    """Refuse a run whose requested stages lack their notebook (e.g. a non-editable install without notebooks/)."""
    missing = [f"{s.key} ({s.notebook})" for s in STAGES if s.key in wanted and not (NOTEBOOK_DIR / s.notebook).is_file()]
    if missing:
        raise StageError(f"stage(s) {', '.join(missing)} cannot run: no such notebook in {NOTEBOOK_DIR}; "
                         f"this installation lacks the notebooks — run from a source checkout "
                         f"(pip install -e .); nothing was run")


def _check_upstream(params: Params, wanted: list[str]) -> None:
    """Refuse to run a stage on artefacts of an earlier stage that is neither requested nor up to date."""
    producer = {name: st for st in STAGES for name in st.writes}
    for stage in STAGES:
        if stage.key not in wanted:
            continue
        for earlier in sorted({producer[r].key for r in stage.reads if r in producer}):
            if earlier in wanted:
                continue
            up = next(st for st in STAGES if st.key == earlier)
            if not is_up_to_date(params, up):
                raise StageError(f"stage {stage.key} reads {', '.join(r for r in stage.reads if r in up.writes)} "
                                 f"from stage {earlier}, which is not up to date in {params.out_path} (unfinished, "
                                 f"or its params, inputs or code changed); run stage {earlier} first or add it "
                                 f"to --stages")


def run_tier(params_path: str | Path, stages: list[str] | None = None, force: bool = False,
             show_code: bool = False, log: Callable[[str], None] | None = None) -> list[StageOutcome]:
    """Run the stages of a tier in order (all by default).

    The YAML is read once: every notebook gets a frozen copy of the resolved params
    (``out_dir/manifests/params.frozen.yaml``), so editing the YAML during a run changes nothing.

    Parameters
    ----------
    params_path : the tier YAML.
    stages : stage keys to run (``["01", "02"]``); default all four.
    force : re-run stages even when up to date; stage 01 then trains afresh (no resume).
    show_code : keep code cells in the HTML reports.
    """
    log = log or (lambda msg: print(f"[cnvrock] {msg}", file=sys.stderr, flush=True))
    wanted = stages or [s.key for s in STAGES]
    unknown = sorted(set(wanted) - {s.key for s in STAGES})
    if unknown:
        raise ParamsError(f"unknown stage(s) {unknown}; stages are {[s.key for s in STAGES]}")
    _missing_notebooks(wanted)
    params = prepare_params(params_path)
    preflight(params, log)
    reports = report_dir_for(params)
    outcomes: list[StageOutcome] = []
    with out_dir_lock(params.out_path), sigterm_forwarded() as sigterm:
        stale = sweep_stale(params.out_path)
        if stale:
            log(f"removed {len(stale)} temporary file(s) left by an interrupted run: "
                f"{', '.join(p.name for p in stale[:3])}{' ...' if len(stale) > 3 else ''}")
        _check_upstream(params, wanted)
        frozen = write_frozen(params, params.out_path / "manifests" / "params.frozen.yaml")
        for stage in STAGES:
            if stage.key not in wanted:
                continue
            if sigterm["signal"] is not None:
                raise _terminated(stage, during=False)
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
            if force and stage.key == "01":  # --force trains afresh, never resumes
                A.CHECKPOINT_LAST.path(params.out_path).unlink(missing_ok=True)
            manifest = stage_manifest(params, stage)  # before the stage: what it reads, not what is there after
            log(f"stage {stage.key}: running {stage.notebook} (tier {params.tier}) ...")
            started = time.time()
            # papermill saves after every cell; under a hidden name until the stage ends
            running = executed.with_name(f"{TMP_PREFIX}{executed.name}.running.tmp.ipynb")
            try:
                executed.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise output_error(executed, exc) from None
            try:
                _execute(stage, frozen, running, executed, log)
            except OutputError:
                running.unlink(missing_ok=True)  # possibly truncated: not worth keeping
                raise
            except BaseException:
                _finish_notebook(running, executed, html, show_code, True, log)
                sweep_stale(params.out_path)  # a killed kernel cannot remove its own temp files
                if sigterm["signal"] is not None:
                    raise _terminated(stage, during=True) from None
                raise
            _finish_notebook(running, executed, html, show_code, False, log)
            seconds = time.time() - started
            write_json(_manifest_path(params, stage), {"manifest": manifest, "seconds": round(seconds, 2),
                                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
            log(f"stage {stage.key}: done in {seconds:.1f} s -> {html}")
            outcomes.append(StageOutcome(stage.key, "ran", seconds, executed, html))
            if stage.key == "03" and params.export_formats:  # params key export_formats; docs/exports.md
                from .export import export

                log(f"export: {', '.join(params.export_formats)} -> {params.out_path / 'export'}")
                export(params.out_path, params.export_formats)
    write_json(reports / "tier.json", {"tier": params.tier, "out_dir": str(params.out_path),
                                       "params": str(params.source),
                                       "stages": {o.stage: o.status for o in outcomes}})
    from .index import build_index

    build_index(reports.parent)
    return outcomes
