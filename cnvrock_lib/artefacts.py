"""The artefact contract: every file a stage writes into ``out_dir``, in one table.

Each :class:`Artefact` names its file, the stage that writes it, its format and, for arrays,
its dtype and shape rule. Stages, the runner's manifests, the notebooks, ``explore`` and
``bench/`` read and write through the helpers here (writes go through :mod:`cnvrock_lib.atomic`),
so a file name is spelled once. docs/ARCHITECTURE.md renders the same table.

Shape rules: ``samples`` = rows of the chromosome store, ``bins`` = its bins, ``latent`` =
``latent_dim``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import save_npy, write_json, write_parquet, write_tsv
from .errors import InputError

STAGE_NAMES = {"01": "stage 01 (train)", "02": "stage 02 (segment)", "03": "stage 03 (call)",
               "04": "stage 04 (evaluate)", "all": "every stage"}


@dataclass(frozen=True)
class Artefact:
    """One file in ``out_dir``: its name, writing stage, format and (arrays) dtype and shape rule."""

    name: str
    stage: str                       # "01".."04"; "all" for files every stage refreshes
    kind: str                        # npy | tsv | parquet | json | text | torch | yaml
    description: str
    dtype: str | None = None         # numpy dtype of an npy artefact
    shape: tuple[str, ...] = ()      # shape rule of an npy artefact, e.g. ("samples", "bins")

    def path(self, out_dir: str | Path) -> Path:
        return Path(out_dir) / self.name

    @property
    def writer(self) -> str:
        return STAGE_NAMES[self.stage]


PARAMS_RESOLVED = Artefact("params.resolved.yaml", "all", "yaml", "resolved params (defaults filled, absolute paths)")
# stage 01
MEDIANS = Artefact("medians.npy", "01", "npy", "robust per-sample median, reads per bin", "float64", ("samples",))
CHECKPOINT = Artefact("checkpoint.pth", "01", "torch", "best epoch: model, optimiser, epoch, RNG states, params hash")
CHECKPOINT_LAST = Artefact("checkpoint_last.pth", "01", "torch", "last epoch (resume after pre-emption)")
TRAINING_LOG = Artefact("training_log.tsv", "01", "tsv", "one row per epoch: losses, beta, aux weight, seconds")
LATENTS = Artefact("latents.npy", "01", "npy", "encoder mean mu per store sample", "float32", ("samples", "latent"))
RECONSTRUCTIONS = Artefact("reconstructions.npy", "01", "npy", "expected reads per bin (2^x_hat - 1) * m_i",
                           "float32", ("samples", "bins"))
TRAIN_SUMMARY = Artefact("train_summary.json", "01", "json", "device, threads, throughput, split sizes, best epoch")
SPLIT = Artefact("split.tsv", "01", "tsv", "sample_id split (train / val / holdout), store order")
# stage 02
COPY_RATIOS = Artefact("copy_ratios.npy", "02", "npy", "copy ratio, NaN where masked", "float32", ("samples", "bins"))
STATES = Artefact("states.npy", "02", "npy", "MAP state index into CN_STATES (masked bins: imputed)", "int8",
                  ("samples", "bins"))
STATE_POSTERIORS = Artefact("state_posteriors.npy", "02", "npy", "posterior of the state in states.npy", "float32",
                            ("samples", "bins"))
SEGMENTS = Artefact("segments.parquet", "02", "parquet", "one row per segment (SPEC §6)")
SAMPLE_QC = Artefact("sample_qc.tsv", "02", "tsv", "per-sample depth, usable fraction, noise, CN-1 fraction, QC")
SEGMENT_SUMMARY = Artefact("segment_summary.json", "02", "json", "backend, device, EM record, segment counts, seconds")
# stage 03
GENE_CALLS = Artefact("gene_calls.tsv", "03", "tsv", "chromosomal gene calls: CRR with interval, call, status")
PLASMID_CALLS = Artefact("plasmid_gene_calls.tsv", "03", "tsv", "plasmid member/family calls: PCN with interval")
PCN_THRESHOLDS = Artefact("pcn_thresholds.tsv", "03", "tsv", "per family/member: fixed and learned thresholds")
# stage 04
EVALUATION_TXT = Artefact("evaluation.txt", "04", "text", "the original's fixed-width evaluation report")
EVALUATION_METRICS = Artefact("evaluation_metrics.tsv", "04", "tsv", "the same metrics, tidy")
THRESHOLD_SWEEP = Artefact("threshold_sweep.tsv", "04", "tsv", "MCC and ROC AUC over the CRR/PCN threshold")

ARTEFACTS: dict[str, Artefact] = {a.name: a for a in (
    PARAMS_RESOLVED, MEDIANS, CHECKPOINT, CHECKPOINT_LAST, TRAINING_LOG, LATENTS, RECONSTRUCTIONS, TRAIN_SUMMARY,
    SPLIT, COPY_RATIOS, STATES, STATE_POSTERIORS, SEGMENTS, SAMPLE_QC, SEGMENT_SUMMARY, GENE_CALLS, PLASMID_CALLS,
    PCN_THRESHOLDS, EVALUATION_TXT, EVALUATION_METRICS, THRESHOLD_SWEEP)}


def written_by(stage: str) -> tuple[Artefact, ...]:
    """The artefacts ``stage`` ("01".."04") writes, in table order."""
    return tuple(a for a in ARTEFACTS.values() if a.stage == stage)


def _missing(art: Artefact, out_dir: Path) -> InputError:
    return InputError(f"{art.name} not found in {out_dir}; {art.writer} writes it — run that stage first")


def load_array(out_dir: str | Path, art: Artefact, shape: tuple[int, ...] | None = None,
               mmap: bool = True) -> np.ndarray:
    """An npy artefact, memory-mapped by default, checked against ``shape`` when given.

    Raises :class:`InputError` naming the file, its shape and the stage to rerun when it is
    missing, unreadable or of another shape (e.g. from another store).
    """
    out_dir = Path(out_dir)
    path = art.path(out_dir)
    if not path.is_file():
        raise _missing(art, out_dir)
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path} is not a readable .npy array: {exc}") from None
    if shape is not None and arr.shape != tuple(shape):
        rule = " x ".join(art.shape)
        raise InputError(f"{path} has shape {arr.shape}; expected {tuple(shape)} ({rule} of the store) — "
                         f"is it from another store? rerun {art.writer}")
    return arr


def save_array(out_dir: str | Path, art: Artefact, arr: np.ndarray) -> Path:
    """Write an npy artefact atomically in its contract dtype."""
    path = art.path(out_dir)
    save_npy(path, np.asarray(arr, dtype=art.dtype) if art.dtype else np.asarray(arr))
    return path


def read_table(out_dir: str | Path, art: Artefact, **read_kwargs) -> pd.DataFrame:
    """A tsv or parquet artefact as a frame; ``read_kwargs`` go to ``pd.read_csv`` / ``pd.read_parquet``
    (e.g. ``filters`` to read one sample's segments)."""
    out_dir = Path(out_dir)
    path = art.path(out_dir)
    if not path.is_file():
        raise _missing(art, out_dir)
    if art.kind == "parquet":
        return pd.read_parquet(path, **read_kwargs)
    return pd.read_csv(path, sep="\t", **read_kwargs)


def write_table(out_dir: str | Path, art: Artefact, frame: pd.DataFrame, **format_kwargs) -> Path:
    """Write a tsv or parquet artefact atomically."""
    path = art.path(out_dir)
    if art.kind == "parquet":
        write_parquet(path, frame)
    else:
        write_tsv(path, frame, **format_kwargs)
    return path


def read_json(out_dir: str | Path, art: Artefact) -> dict:
    out_dir = Path(out_dir)
    path = art.path(out_dir)
    if not path.is_file():
        raise _missing(art, out_dir)
    return json.loads(path.read_text())


def save_json(out_dir: str | Path, art: Artefact, data: dict) -> Path:
    path = art.path(out_dir)
    write_json(path, data)
    return path


def contract_markdown() -> str:
    """The artefact table as Markdown (docs/ARCHITECTURE.md)."""
    lines = ["| stage | file | format | content |", "|---|---|---|---|"]
    for a in ARTEFACTS.values():
        fmt = f"{a.kind} {a.dtype} ({' x '.join(a.shape)})" if a.dtype else a.kind
        lines.append(f"| {a.stage} | `{a.name}` | {fmt} | {a.description} |")
    return "\n".join(lines) + "\n"
