"""Load and validate a tier's params YAML (the original ``config.yaml`` schema).

Every key of the original schema is honoured with its meaning and default;
the keys CNVRock adds are optional. Validation happens before any work:
unknown keys, wrong types or ranges and missing input files raise
:class:`~cnvrock_lib.errors.ParamsError` naming the key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import registry
from .errors import ParamsError


@dataclass(frozen=True)
class Key:
    """One params key: its default, expected type, a range check and whether it is a path."""

    default: Any
    kind: type | tuple
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    path: str | None = None  # "in" (must exist), "out" (written) or None
    doc: str = ""


def _pos(x):
    return x > 0


def _nonneg(x):
    return x >= 0


def _frac(x):
    return 0 <= x <= 1


def _open_frac(x):
    return 0 < x < 1


NUM = (int, float)
OPT_PATH = (str, type(None))

SCHEMA: dict[str, Key] = {
    # --- modules (registry names) ---
    "architecture": Key("06_conv_vae", str, doc="VAE implementation"),
    "hmm": Key("02_gaussian_hmm", str, doc="segmenter implementation"),
    "cnv": Key("06_gene_cnv_caller", str, doc="gene caller implementation"),
    "evaluation": Key("04_kpsc_evaluation", str, doc="evaluation implementation"),
    # --- data ---
    "store_path": Key(None, str, path="in", doc="chromosome NPY store (directory)"),
    "plasmid_store_path": Key(None, OPT_PATH, path="in", doc="plasmid NPY store (directory)"),
    "out_dir": Key(None, str, path="out", doc="where the artefacts go"),
    # --- ground truth ---
    "kpsc_gt_path": Key(None, OPT_PATH, path="in", doc="AMRFinder family presence TSV"),
    "kpsc_kleborate_gt_path": Key(None, OPT_PATH, path="in", doc="Kleborate TSV (blaSHV copy count)"),
    "kpsc_meta_path": Key(None, OPT_PATH, path="in", doc="metadata TSV (Species, ST)"),
    # --- plasmid genes ---
    "plasmid_gene_coords_path": Key(None, OPT_PATH, path="in", doc="plasmid gene panel; default packaged"),
    "pcn_absent_threshold": Key(0.20, NUM, _nonneg, ">= 0 (copies per chromosome)", doc="plasmid gene absent below this PCN unless the panel's absent_threshold column says otherwise (pcn_threshold_method: fixed, and mixture fallbacks)"),
    "pcn_amp_threshold": Key(1.50, NUM, _pos, "> 0 (copies per chromosome)", doc='plasmid gene amplified at or above this PCN'),
    # --- VAE ---
    "latent_dim": Key(10, int, _pos, "a positive integer", doc='VAE latent dimensions'),
    "batch_size": Key(128, int, _pos, "a positive integer", doc='training batch (samples)'),
    "epochs": Key(150, int, _pos, "a positive integer", doc='maximum training epochs'),
    "lr": Key(1.0e-4, NUM, _pos, "> 0", doc='Adam learning rate'),
    "weight_decay": Key(1.0e-5, NUM, _nonneg, ">= 0", doc='Adam weight decay'),
    "max_beta": Key(1.0, NUM, _nonneg, ">= 0", doc='KL weight after its warm-up'),
    "warmup_epochs": Key(20, int, _nonneg, ">= 0", doc='epochs over which the KL weight rises 0 -> max_beta'),
    "patience": Key(20, int, _pos, "a positive integer", doc='early stopping: epochs without a better validation loss (after the warm-ups)'),
    # --- HMM ---
    "hmm_n_states": Key(6, int, lambda x: x == 6, "6 (CN 0, 0.5, 1, 1.5, 2, 3)", doc='HMM states (fixed by the CN set)'),
    "hmm_self_transition": Key(0.80, NUM, _open_frac, "strictly between 0 and 1", doc='HMM probability of staying in a state from bin to bin'),
    "hmm_low_cov_threshold": Key(10, NUM, _nonneg, ">= 0 (reads per bin)", doc='bins whose expected depth is below this are masked (missing emissions); also masked from the VAE loss'),
    # --- chromosomal caller ---
    "cnv_min_cn1_proportion": Key(0.55, NUM, _frac, "between 0 and 1", doc='sample QC: share of usable bins confidently in CN 1 needed to call a sample'),
    "cnv_min_confidence": Key(0.50, NUM, _frac, "between 0 and 1", doc='posterior that counts as confident for the QC share'),
    "cnv_flank_padding": Key(100000, int, _pos, "a positive integer (bp)", doc='local flank of a chromosomal gene: bins within this many bp, gene bins excluded'),
    "cnv_crr_amp_threshold": Key(1.75, NUM, _pos, "> 0 (copy ratio)", doc='chromosomal gene amplified at or above this CRR (chrom_call_rule: original only)'),
    "cnv_crr_gate_threshold": Key(1.75, NUM, _pos, "> 0 (copy ratio)", doc='CRR needed beside HMM support for genes with enough bins'),
    "cnv_crr_min_bins_fallback": Key(3, int, _pos, "a positive integer (bins)", doc='genes with at least this many usable bins also need HMM support to be amplified'),
    "cnv_min_gene_coverage_fraction": Key(0.50, NUM, _frac, "between 0 and 1", doc='share of gene bins the HMM state must cover (gain or CN 0)'),
    "eval_min_group_n": Key(10, int, _pos, "a positive integer (samples)", doc='stage 04 groups (ST) need this many evaluable samples'),
    # --- added by CNVRock (all optional) ---
    "tier": Key(None, OPT_PATH, doc="tier name; default: the YAML's file stem"),
    "seed": Key(42, int, _nonneg, ">= 0", doc='seed of every random draw (split, batches, bootstrap)'),
    "device": Key("auto", str, lambda x: x in ("auto", "cpu", "cuda"), "one of auto, cpu, cuda", doc='torch device for training and the HMM'),
    "val_fraction": Key(0.1, NUM, lambda x: 0 <= x < 0.9, "in [0, 0.9)", doc='share of non-hold-out samples used for validation (early stopping)'),
    "aux_loss": Key("align", str, lambda x: x in ("align", "sin2", "none"), "one of align, sin2, none", doc="auxiliary loss: CNV-pattern alignment, the original's sin2 penalty, or none"),
    "aux_weight": Key(1.0, NUM, _nonneg, ">= 0", doc='auxiliary loss weight after its warm-up'),
    "aux_warmup_epochs": Key(30, int, _nonneg, ">= 0", doc='epochs over which the auxiliary weight rises'),
    "aux_n_blocks": Key(64, int, _pos, "a positive integer (regional blocks)", doc='regional blocks of the alignment target'),
    "conv_channels": Key([16, 32, 64], list, lambda x: len(x) == 3 and all(isinstance(v, int) and v > 0 for v in x), "three positive integers", doc='encoder channels of the three convolutions'),
    "conv_kernels": Key([9, 9, 9], list, lambda x: len(x) == 3 and all(isinstance(v, int) and v > 0 for v in x), "three positive integers", doc='kernel sizes (bins) of the three convolutions'),
    # [8, 4, 4]: about the validation MSE of [4, 4, 4] at ~1.8x its CPU training throughput (docs/training.md)
    "conv_strides": Key([8, 4, 4], list, lambda x: len(x) == 3 and all(isinstance(v, int) and v > 0 for v in x), "three positive integers", doc='strides of the three convolutions'),
    "grad_clip": Key(5.0, NUM, _pos, "> 0 (gradient norm)", doc='gradient-norm clip'),
    # bp on each side of every chromosomal panel gene left out of the reconstruction loss, so the
    # VAE cannot learn a common amplification of the gene as cohort structure (docs/training.md)
    "vae_gene_mask_padding": Key(0, int, _nonneg, ">= 0 (bp; 0 = off)", doc='leave bins within this many bp of each chromosomal panel gene out of the VAE loss'),
    "num_threads": Key(0, int, _nonneg, ">= 0 (0 = all cores)", doc='CPU threads for torch and the HMM kernel'),
    "hmm_em_iterations": Key(0, int, _nonneg, ">= 0 (0 = fixed means)", doc='EM refinement of the state means and noise (0 = the fixed CN set)'),
    "hmm_batch_size": Key(512, int, _pos, "a positive integer (samples per batch)", doc='samples decoded at a time (memory)'),
    "bootstrap_replicates": Key(1000, int, _pos, "a positive integer", doc='replicates of the parametric bootstrap behind the 95 % intervals'),
    "pcn_threshold_method": Key("cohort_gmm", str, lambda x: x in ("cohort_gmm", "fixed", "mixture", "supervised"), "one of cohort_gmm, fixed, mixture, supervised", doc='plasmid absent call: cohort_gmm (default: backbone-explained carriers plus a threshold learned per family from the cohort), fixed (the original pcn_absent_threshold), mixture (the earlier learned threshold) or supervised (per family the MCC-best threshold on the AMRFinder labels of the training samples only; needs kpsc_gt_path and holdout_ids_path)'),
    "chrom_call_rule": Key("cohort_dosage", str, lambda x: x in ("cohort_dosage", "original"), "one of cohort_dosage, original", doc='chromosomal call: cohort_dosage (default: extra dosage when the CRR lies above the cohort one-copy level by a z learned from the cohort size, with calibrated intervals) or original (cnv_crr_amp_threshold and HMM support)'),
    "chrom_gene_coords_path": Key(None, OPT_PATH, path="in", doc="chromosomal gene panel; default packaged (blaSHV)"),
    "plasmid_gene_families_path": Key(None, OPT_PATH, path="in", doc="gene families; default packaged"),
    "eval_species": Key(
        {"blaSHV": ["Klebsiella pneumoniae", "Klebsiella quasipneumoniae"]},
        dict,
        lambda x: all(isinstance(v, list) for v in x.values()),
        "a mapping gene -> list of species",
        doc="per chromosomal gene, the species in which it is callable (others: species_excluded)",
    ),
    "holdout_ids_path": Key(None, OPT_PATH, path="in", doc="one sample_id per line"),
    "report_dir": Key(None, OPT_PATH, path="out", doc="default: <repo>/reports/<tier>"),
    "export_formats": Key([], list, lambda x: all(f in ("vcf", "seg", "bed", "igv", "multiqc") for f in x), "a list of vcf, seg, bed, igv, multiqc", doc="exports written to out_dir/export after stage 03 (docs/exports.md)"),
    "simulate": Key(None, (dict, type(None)), doc="simulator settings for a simulated tier"),
}

# Keys of the original implementation that are accepted (and recorded) but
# have no effect of their own here; some feed an added key when it is unset.
LEGACY_KEYS: dict[str, str] = {
    "normalise": "per-sample median normalisation is always applied",
    "sin_loss_max_weight": "used as aux_weight when aux_loss is sin2",
    "sin_loss_warmup_epochs": "used as aux_warmup_epochs when aux_loss is sin2",
    "hmm_n_jobs": "the HMM is batched over samples; no process pool",
    "plasmid_cnv": "the plasmid caller always runs when plasmid_store_path is set",
    "num_workers": "data are held in memory; no loader workers",
    "device_id": "use device",
}


@dataclass
class Params:
    """Resolved params: every key filled, paths absolute. Attribute access: ``p.epochs``."""

    values: dict[str, Any]
    source: Path | None = None
    legacy: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the resolved values (paths as strings)."""
        out = dict(self.values)
        if self.legacy:
            out["legacy_keys"] = dict(self.legacy)
        return out

    def hash(self, keys: list[str] | None = None) -> str:
        """SHA-256 (16 hex chars) of the resolved values, or of ``keys`` only."""
        chosen = {k: self.values[k] for k in (keys or sorted(self.values))}
        blob = json.dumps(chosen, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def out_path(self) -> Path:
        return Path(self.values["out_dir"])

    def to_yaml(self) -> str:
        """The resolved params as YAML, with the software versions that read them."""
        doc = {"params": self.to_dict(), "source": str(self.source) if self.source else None,
               "python": platform.python_version()}
        return yaml.safe_dump(doc, sort_keys=False)


def _closest(name: str) -> str:
    match = difflib.get_close_matches(name, list(SCHEMA) + list(LEGACY_KEYS), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(sorted(SCHEMA))}"


def _check_type(key: str, value: Any, spec: Key, where: str) -> Any:
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ParamsError(f"{where}: key '{key}' = {value!r} is a boolean; expected {spec.expect or kinds}")
    if float in kinds and isinstance(value, str):
        # PyYAML reads "1e-4" (no dot) as a string; accept numeric text for numeric keys.
        try:
            value = float(value)
        except ValueError:
            pass
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ParamsError(f"{where}: key '{key}' = {value!r} has type {type(value).__name__}; expected {names}"
                          + (f" ({spec.expect})" if spec.expect else ""))
    if value is not None and spec.check is not None and not spec.check(value):
        raise ParamsError(f"{where}: key '{key}' = {value!r} is out of range; expected {spec.expect}")
    return value


def resolve_params(raw: dict[str, Any], base_dir: Path, where: str = "params",
                   check_files: bool = True) -> Params:
    """Validate ``raw`` against the schema and resolve paths against ``base_dir``."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a YAML mapping of keys to values, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    legacy: dict[str, Any] = {}
    for key, value in raw.items():
        if key in LEGACY_KEYS:
            legacy[key] = value
            continue
        if key not in SCHEMA:
            raise ParamsError(f"{where}: unknown key '{key}'{_closest(str(key))}")
        values[key] = _check_type(key, value, SCHEMA[key], where)
    for key, spec in SCHEMA.items():
        if key not in values:
            if spec.default is None and key in ("store_path", "out_dir"):
                raise ParamsError(f"{where}: required key '{key}' is missing ({spec.doc})")
            values[key] = json.loads(json.dumps(spec.default))  # deep copy
    for key in ("architecture", "hmm", "cnv", "evaluation"):
        if values[key] not in registry.REGISTRY[key]:
            raise ParamsError(f"{where}: key '{key}' = {values[key]!r} is not a registered "
                              f"implementation; known: {', '.join(registry.known_names(key))}")
    if values["aux_loss"] == "sin2":
        if "sin_loss_max_weight" in legacy and "aux_weight" not in raw:
            values["aux_weight"] = float(legacy["sin_loss_max_weight"])
        if "sin_loss_warmup_epochs" in legacy and "aux_warmup_epochs" not in raw:
            values["aux_warmup_epochs"] = int(legacy["sin_loss_warmup_epochs"])
    for key, spec in SCHEMA.items():
        if spec.path and values[key] is not None:
            path = Path(values[key]).expanduser()
            path = (base_dir / path) if not path.is_absolute() else path
            values[key] = str(path.resolve())
            if spec.path == "in" and check_files and not path.exists():
                raise ParamsError(f"{where}: key '{key}' points to {path.resolve()}, which does not exist")
    sim = values["simulate"]
    if sim is not None:
        if "data_dir" not in sim:
            raise ParamsError(f"{where}: key 'simulate' needs 'data_dir' (where the simulated cohort is written)")
        data_dir = Path(str(sim["data_dir"])).expanduser()
        sim["data_dir"] = str((base_dir / data_dir).resolve() if not data_dir.is_absolute() else data_dir)
    if values["tier"] is None:
        values["tier"] = Path(where).stem if where.endswith((".yaml", ".yml")) else "custom"
    if values["pcn_absent_threshold"] >= values["pcn_amp_threshold"]:
        raise ParamsError(f"{where}: key 'pcn_absent_threshold' = {values['pcn_absent_threshold']} must be below "
                          f"'pcn_amp_threshold' = {values['pcn_amp_threshold']} (copies per chromosome); "
                          f"otherwise no sample can be called present")
    for key, spec in SCHEMA.items():
        if spec.path == "out" and values[key] is not None and check_files:
            blocker = next((q for q in (Path(values[key]), *Path(values[key]).parents) if q.exists()), None)
            if blocker is not None and not blocker.is_dir():
                raise ParamsError(f"{where}: key '{key}' = {values[key]} cannot be a folder: {blocker} is a file; "
                                  f"expected a folder path")
    out = Path(values["out_dir"])
    for key in ("store_path", "plasmid_store_path"):
        store = values[key]
        if store and (out == Path(store) or Path(store) in out.parents):
            raise ParamsError(f"{where}: out_dir {out} lies inside the input store of key '{key}' "
                              f"({store}); CNVRock never writes into an input store")
    return Params(values, legacy=legacy)


def load_params(path: str | Path, check_files: bool = True, overrides: dict[str, Any] | None = None) -> Params:
    """Load a tier YAML, validate it and resolve its paths against the YAML's directory.

    Parameters
    ----------
    path : the YAML file.
    check_files : raise if an input path (store, GT, panel) does not exist.
    overrides : keys replacing those of the file (validated the same way).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"params file {path} is not valid YAML: {exc}") from None
    raw = dict(raw or {}) if isinstance(raw, dict) or raw is None else raw
    if isinstance(raw, dict) and overrides:
        raw.update(overrides)
    params = resolve_params(raw, path.parent, where=str(path), check_files=check_files)
    params.source = path
    return params


def write_resolved(params: Params) -> Path:
    """Write ``out_dir/params.resolved.yaml`` (atomically) and return its path."""
    from .atomic import write_text

    target = params.out_path / "params.resolved.yaml"
    write_text(target, params.to_yaml())
    return target


def reference_markdown() -> str:
    """The params reference (docs/PARAMS.md): every key with its default, expectation and meaning."""
    import json

    def show(value: Any) -> str:
        return "—" if value is None else f"`{json.dumps(value)}`"

    lines = ["# Params reference", "",
             "Generated from `cnvrock_lib.params.SCHEMA` by `python tools/make_params_doc.py`; a test keeps it",
             "in step with the code. Keys above the line \"added by CNVRock\" are the original `config.yaml`",
             "schema with its defaults; relative paths resolve against the YAML file's own directory.", "",
             "| key | default | expected | meaning |", "|---|---|---|---|"]
    for key, spec in SCHEMA.items():
        if key == "tier":
            lines.append("| *added by CNVRock* | | | |")
        expect = spec.expect or ("an existing path" if spec.path == "in" else "a path" if spec.path else "")
        lines.append(f"| `{key}` | {show(spec.default)} | {expect} | {spec.doc} |")
    lines += ["", "Legacy keys of the original, accepted and reported in `params.resolved.yaml`:", "",
              "| key | what happens |", "|---|---|"]
    lines += [f"| `{key}` | {what} |" for key, what in LEGACY_KEYS.items()]
    return "\n".join(lines) + "\n"
