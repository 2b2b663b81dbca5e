"""Generalisation benchmark (issue #14): CNVRock and the alternatives across simulated worlds.

Usage::

    PYTHONPATH=$PWD .venv/bin/python bench/generalisation.py --quick   # 2 dev worlds x 300 samples (development)
    PYTHONPATH=$PWD .venv/bin/python bench/generalisation.py           # test worlds; writes docs/BENCHMARKS.md

Per world (written-down seeds of ``cnvrock_lib.simulate``: ``DEV_WORLD_SEEDS`` for ``--quick``,
``TEST_WORLD_SEEDS`` otherwise; nothing is chosen on a test world) and cohort size:

1. simulate the cohort (``hard=True`` on every third world, a rule fixed in advance);
2. run stages 01-04 with CNVRock's params defaults (whatever they are when this runs), except a
   short training schedule: the same number of optimiser steps for every cohort size
   (``--steps``, lr 1e-2; see :func:`training_overrides`);
3. call the hold-out samples with the alternatives: the original's rules on the same CNVRock
   dosages (``chrom_call_rule: original``, ``pcn_threshold_method: fixed``), raw-ratio thresholds,
   hmmlearn on raw ratios, CNVkit haar (a seeded subset of the hold-out; it is slow);
4. score every method on the same hold-out samples against the simulator's truth.

Each world's results go to ``--workdir/<world key>/`` (``scores.tsv``, ``paired.tsv``,
``world.json``, stage 04's ``evaluation.txt``); a world whose ``world.json`` exists is not
rerun (resumable). The cohort data and stage artefacts are deleted after scoring unless ``--keep``.
The document section and figure are written from the per-world files (``--doc-only`` rewrites
them without running anything).

Units: dosage in copies (per chromosome for PCN), times in seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cnvrock_lib.atomic import atomic_path, write_json, write_text, write_tsv  # noqa: E402
from cnvrock_lib.evaluation import mcc_from_counts  # noqa: E402

DOC = REPO / "docs" / "BENCHMARKS.md"
IMG = REPO / "docs" / "img" / "bench_generalisation.png"
DOC_KEY = "generalisation"

# Cohort seed of the i-th world of a list (the same for every size), and the hard-world rule.
COHORT_SEED_BASE = 14_000
HARD_EVERY = 3          # world i is hard when i % HARD_EVERY == HARD_EVERY - 1
LR = 1e-2               # the demo tier's learning rate for small cohorts (docs/training.md)
MIN_CLASS = 5           # an MCC needs >= 5 positives and >= 5 negatives among the scored samples
TARGETS = {"median_lowest_mcc": 0.90, "worst_lowest_mcc": 0.80, "coverage": (0.93, 0.97)}

MODES = {
    # sizes: cohort size -> number of worlds (the first ones of the list); big sizes take the worlds
    # listed in big_worlds (indices into the list) so that one of them is hard.
    "quick": dict(worlds="dev", n_worlds=2, sizes={300: 2}, big_worlds=(), steps=15, cnvkit_max=10),
    "default": dict(worlds="test", n_worlds=10, sizes={300: 10, 1000: 10, 5000: 2}, big_worlds=(0, 2),
                    steps=30, cnvkit_max=30),
}

CNVROCK = "CNVRock defaults"
ORIGINAL = "original rules on CNVRock dosages"
RAW = "raw-ratio thresholds"
HMMLEARN = "hmmlearn on raw ratios"
CNVKIT = "CNVkit haar"
SUPERVISED = "CNVRock supervised (training labels)"
METHODS = (CNVROCK, ORIGINAL, RAW, HMMLEARN, CNVKIT)
# The alternatives of the paired blaSHV target (the supervised option is CNVRock itself: its
# chromosomal calls are the default's; only its plasmid thresholds learn from training-sample labels).
ALTERNATIVES = (ORIGINAL, RAW, HMMLEARN, CNVKIT)
# Methods that call both blaSHV and the plasmid families (the others are chromosomal segmenters).
FULL_METHODS = (CNVROCK, SUPERVISED, ORIGINAL, RAW)

SHV = "blaSHV"
EXTRA = "extra dosage (simulator truth)"
KLEBORATE = "Kleborate count >= 2 (recorded labels)"
CHROMOSOMAL = "chromosomal CN >= 2 (tandem truth)"
PRESENCE = "presence"
SHV_LABELS = (EXTRA, KLEBORATE, CHROMOSOMAL)


def code_version() -> dict:
    """The commit this run measures: ``HEAD``, whether the tree had uncommitted changes, and the newest
    commit of the ``decision`` branch that ``HEAD`` contains (the decision layer measured)."""
    import subprocess

    def git(*a):
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"head": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "cnvrock_lib")),
            "decision": git("merge-base", "--", "HEAD", "decision")[:7] if git("rev-parse", "--verify", "-q", "decision") else ""}


def log(msg: str) -> None:
    print(f"[generalisation {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Job:
    """One cohort: a world of a written-down list at one size."""

    kind: str          # "dev" or "test"
    index: int         # position in the world list
    world_seed: int
    n_samples: int
    hard: bool
    seed: int          # cohort seed

    @property
    def key(self) -> str:
        return f"{self.kind}{self.index:02d}_w{self.world_seed}_n{self.n_samples}{'_hard' if self.hard else ''}"


def plan_jobs(mode: str) -> list[Job]:
    """The cohorts of a mode, smallest size first (so that every world has a result early)."""
    from cnvrock_lib.simulate import DEV_WORLD_SEEDS, TEST_WORLD_SEEDS

    cfg = MODES[mode]
    # the reference world is the one every tier was tuned on: left out of the dev list here
    pool = [s for s in DEV_WORLD_SEEDS[1:]] if cfg["worlds"] == "dev" else list(TEST_WORLD_SEEDS)
    seeds = pool[:cfg["n_worlds"]]
    jobs = []
    for size, n_worlds in sorted(cfg["sizes"].items()):
        small = n_worlds >= len(seeds) or not cfg["big_worlds"]
        indices = range(min(n_worlds, len(seeds))) if small else cfg["big_worlds"][:n_worlds]
        for i in indices:
            jobs.append(Job(cfg["worlds"], i, int(seeds[i]), size, i % HARD_EVERY == HARD_EVERY - 1,
                            COHORT_SEED_BASE + i))
    return jobs


def steps_per_epoch(n_samples: int, batch_size: int = 128, val_fraction: float = 0.1,
                    holdout_fraction: float = 0.25) -> int:
    """Optimiser steps per epoch: ceil(training samples ÷ batch), training samples = n × (1 − hold-out
    share) × (1 − validation share)."""
    n_train = max(1, int(n_samples * (1 - holdout_fraction) * (1 - val_fraction)))
    return max(1, math.ceil(n_train / batch_size))


def demo_steps() -> int:
    """Optimiser steps of the demo tier's schedule (params/demo.yaml: its cohort size, epochs, batch)."""
    import yaml

    demo = yaml.safe_load((REPO / "params" / "demo.yaml").read_text())
    return int(demo["epochs"]) * steps_per_epoch(int(demo["simulate"]["n_samples"]), int(demo["batch_size"]))


def training_overrides(n_samples: int, steps: int, batch_size: int = 128, val_fraction: float = 0.1,
                       holdout_fraction: float = 0.25) -> dict:
    """Params overrides for a short schedule of about ``steps`` optimiser steps, whatever the size.

    Epochs = ceil(steps ÷ steps per epoch), steps per epoch = ceil(training samples ÷ batch), with
    training samples = n × (1 − hold-out share) × (1 − validation share). Warm-ups scale as the demo
    tier's (1/8 and 3/16 of the epochs, at least 1).
    """
    epochs = max(2, math.ceil(steps / steps_per_epoch(n_samples, batch_size, val_fraction, holdout_fraction)))
    return {"epochs": epochs, "lr": LR, "warmup_epochs": max(1, epochs // 8),
            "aux_warmup_epochs": max(1, epochs * 3 // 16), "patience": 10}


# Rough seconds per sample of everything but training, and per sample-epoch of training, measured on
# the shared 2-core machine under a load average of ~9 (dev world, 1,000 samples); plus CNVkit haar.
SEC_PER_SAMPLE = 0.035
SEC_PER_SAMPLE_EPOCH = 0.010
SEC_PER_CNVKIT_SAMPLE = 0.5


def estimate_seconds(jobs: list[Job], steps: int, cnvkit_max: int) -> float:
    """A rough wall-time estimate (s) of ``jobs`` from the constants above (not a measurement)."""
    total = 0.0
    for job in jobs:
        epochs = training_overrides(job.n_samples, steps)["epochs"]
        total += job.n_samples * (SEC_PER_SAMPLE + epochs * SEC_PER_SAMPLE_EPOCH) + cnvkit_max * SEC_PER_CNVKIT_SAMPLE
    return total


# ----------------------------------------------------------------------------- truth
def shv_bin_share(bins: np.ndarray, contig: str, start: int, end: int) -> float:
    """Share of one extra gene copy that reaches blaSHV's overlap-weighted gene ratio (copies per copy).

    A copy elsewhere adds reads over the gene only: bin i gains w_i ÷ L_i copies (w_i overlap bp, L_i
    bin length), and the gene ratio weights bins by w_i, so the gain is Σ w_i² / L_i ÷ Σ w_i.
    """
    from cnvrock_lib import geometry

    idx, weights = geometry.gene_bin_weights(bins, contig, start, end)
    w = np.asarray(weights, dtype=np.float64)
    length = (bins["end"][idx] - bins["start"][idx] + 1).astype(np.float64)
    return float((w ** 2 / length).sum() / w.sum())


def truth_table(data_dir: Path, share: float) -> pd.DataFrame:
    """Every scored truth of a simulated cohort: ``sample_id gene level label positive true_value``.

    blaSHV under three labels: ``EXTRA`` (rounded majority chromosomal copies + a plasmid-borne copy
    ≥ 2, :func:`cnvrock_lib.truth.shv_dosage_truth`; dosage = copies the gene bins read), ``KLEBORATE``
    (the recorded ``kleborate_gt.tsv`` count ≥ 2, with tandem collapse and label noise; no dosage) and
    ``CHROMOSOMAL`` (``gene_truth.tsv`` chromosomal CN ≥ 2; dosage = that CN). Plasmid members and
    families: ``PRESENCE`` (true CN > 0; dosage = true PCN).
    """
    from cnvrock_lib.truth import shv_dosage_truth

    samples = pd.read_csv(data_dir / "truth" / "samples.tsv", sep="\t", dtype={"sample_id": str})
    gene_truth = pd.read_csv(data_dir / "truth" / "gene_truth.tsv", sep="\t", dtype={"sample_id": str})
    kleb = pd.read_csv(data_dir / "kleborate_gt.tsv", sep="\t", dtype={"sample_id": str})
    shv = shv_dosage_truth(samples, share)
    parts = [pd.DataFrame({"sample_id": shv.sample_id, "gene": SHV, "level": "chromosome", "label": EXTRA,
                           "positive": shv.extra_dosage.to_numpy(bool), "true_value": shv.true_dosage})]
    count = pd.to_numeric(kleb[SHV], errors="coerce")
    parts.append(pd.DataFrame({"sample_id": kleb.sample_id, "gene": SHV, "level": "chromosome", "label": KLEBORATE,
                               "positive": (count >= 2).to_numpy(), "true_value": np.nan})[count.notna().to_numpy()])
    chrom = gene_truth[(gene_truth.gene == SHV) & (gene_truth.level == "chromosome")]
    parts.append(pd.DataFrame({"sample_id": chrom.sample_id, "gene": SHV, "level": "chromosome",
                               "label": CHROMOSOMAL, "positive": (chrom.true_cn >= 2).to_numpy(),
                               "true_value": chrom.true_cn.to_numpy(float)}))
    plas = gene_truth[gene_truth.level != "chromosome"]
    parts.append(pd.DataFrame({"sample_id": plas.sample_id, "gene": plas.gene, "level": plas.level,
                               "label": PRESENCE, "positive": (plas.true_cn > 0).to_numpy(),
                               "true_value": plas.true_cn.to_numpy(float)}))
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- scoring (pure)
def gated_mcc(tp: int, fp: int, fn: int, tn: int, min_class: int = MIN_CLASS) -> float:
    """MCC (scikit-learn's convention) or NaN when the truth has < ``min_class`` positives or negatives."""
    if tp + fn < min_class or tn + fp < min_class:
        return float("nan")
    return mcc_from_counts(tp, fp, fn, tn)


def score_methods(calls: pd.DataFrame, truth: pd.DataFrame, min_class: int = MIN_CLASS) -> pd.DataFrame:
    """Per method × gene × level × truth label: confusion counts, MCC, recall, PPV, dosage error, coverage.

    Parameters
    ----------
    calls : ``method sample_id gene level call value lo hi`` (call −1 = uncallable, left out;
        chromosomal positive = call 2, plasmid positive = call ≥ 1; ``lo``/``hi`` NaN when a method has
        no interval).
    truth : :func:`truth_table` rows (only samples present in ``calls`` are scored).
    min_class : an MCC needs this many positives and negatives, else NaN.

    Returns one row per combination with ``n n_pos tp fp fn tn mcc recall ppv abs_err_median``
    (median |value − true dosage|, copies), ``coverage`` and ``coverage_pos`` (share of scored and of
    positive samples whose true dosage lies in [lo, hi]; NaN without intervals or dosage).
    """
    merged = calls[calls.call >= 0].merge(truth, on=["sample_id", "gene", "level"], how="inner")
    rows = []
    for (method, gene, level, label), d in merged.groupby(["method", "gene", "level", "label"], sort=False):
        t = d.positive.to_numpy(bool)
        p = (d.call == 2).to_numpy() if level == "chromosome" else (d.call >= 1).to_numpy()
        tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
        tn = int(t.size) - tp - fp - fn
        err = (d.value - d.true_value).abs()
        has_iv = d.lo.notna() & d.hi.notna() & d.true_value.notna()
        inside = ((d.lo <= d.true_value) & (d.true_value <= d.hi))[has_iv]
        inside_pos = inside[t[has_iv.to_numpy()]]
        rows.append({"method": method, "gene": gene, "level": level, "label": label, "n": int(t.size),
                     "n_pos": int(t.sum()), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                     "mcc": gated_mcc(tp, fp, fn, tn, min_class),
                     "recall": tp / (tp + fn) if tp + fn else np.nan,
                     "ppv": tp / (tp + fp) if tp + fp else np.nan,
                     "abs_err_median": float(err.median()) if err.notna().any() else np.nan,
                     "coverage": float(inside.mean()) if len(inside) else np.nan,
                     "n_coverage": int(len(inside)),
                     "coverage_pos": float(inside_pos.mean()) if len(inside_pos) else np.nan,
                     "n_coverage_pos": int(len(inside_pos))})
    return pd.DataFrame(rows)


def paired_shv(calls: pd.DataFrame, truth: pd.DataFrame, reference: str = CNVROCK, label: str = EXTRA,
               min_class: int = MIN_CLASS, others=None) -> pd.DataFrame:
    """blaSHV MCC of ``reference`` and of each other method (or of ``others`` only) on the samples that
    both call (call ≥ 0).

    Returns ``method n n_pos mcc_reference mcc_method`` (one row per other method with any blaSHV call).
    """
    shv = calls[(calls.gene == SHV) & (calls.level == "chromosome") & (calls.call >= 0)]
    tru = truth[(truth.gene == SHV) & (truth.label == label)][["sample_id", "positive"]]
    ref = shv[shv.method == reference][["sample_id", "call"]]
    rows = []
    rest = shv[shv.method != reference] if others is None else shv[shv.method.isin(list(others))]
    for method, d in rest.groupby("method", sort=False):
        both = ref.merge(d[["sample_id", "call"]], on="sample_id", suffixes=("_ref", "_alt")).merge(tru, on="sample_id")
        t = both.positive.to_numpy(bool)
        out = {"method": method, "label": label, "n": int(t.size), "n_pos": int(t.sum())}
        for col, name in (("call_ref", "mcc_reference"), ("call_alt", "mcc_method")):
            p = (both[col] == 2).to_numpy()
            tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
            out[name] = gated_mcc(tp, fp, fn, int(t.size) - tp - fp - fn, min_class)
        rows.append(out)
    return pd.DataFrame(rows, columns=["method", "label", "n", "n_pos", "mcc_reference", "mcc_method"])


def lowest_mcc(scores: pd.DataFrame, families: list[str]) -> pd.DataFrame:
    """Per method (and any ``world``/``size`` columns): the lowest MCC over blaSHV extra dosage and the families.

    Families are scored at ``level == "family"`` (presence). Targets whose MCC is NaN (too few
    positives or negatives) are left out; ``n_targets`` says how many entered and ``worst`` names the
    target with the lowest MCC.
    """
    keys = [c for c in ("key", "world_seed", "n_samples", "hard") if c in scores.columns] + ["method"]
    chosen = scores[((scores.gene == SHV) & (scores.label == EXTRA))
                    | ((scores.level == "family") & scores.gene.isin(families))]
    rows = []
    for group, d in chosen.groupby(keys, sort=False):
        ok = d[d.mcc.notna()]
        worst = ok.loc[ok.mcc.idxmin()] if len(ok) else None
        rows.append(dict(zip(keys, group if isinstance(group, tuple) else (group,)),
                         lowest_mcc=float(worst.mcc) if worst is not None else np.nan,
                         worst=str(worst.gene) if worst is not None else "", n_targets=int(len(ok))))
    return pd.DataFrame(rows)


def target_summary(lowest: pd.DataFrame, paired: pd.DataFrame, scores: pd.DataFrame,
                   reference: str = CNVROCK) -> dict:
    """The issue's targets, reached or not, from per-world results (pure: no I/O).

    Parameters
    ----------
    lowest : :func:`lowest_mcc` rows with a ``key`` column (one cohort per key).
    paired : :func:`paired_shv` rows with a ``key`` column.
    scores : :func:`score_methods` rows with a ``key`` column (coverage of ``reference``).

    Returns a dict: ``median_lowest_mcc``, ``worst_lowest_mcc`` and ``worst_key`` of the reference
    method; ``paired`` (per alternative: cohorts compared, cohorts where the reference's blaSHV MCC is
    ≥ the alternative's, the median difference); ``coverage`` (pooled share of true dosages inside the
    reference's 95 % intervals, blaSHV extra-dosage truth and families, all scored samples and
    positives) and whether each target is met.
    """
    ref = lowest[(lowest.method == reference) & lowest.lowest_mcc.notna()]
    out = {"n_cohorts": int(ref.key.nunique()),
           "median_lowest_mcc": float(ref.lowest_mcc.median()) if len(ref) else np.nan,
           "worst_lowest_mcc": float(ref.lowest_mcc.min()) if len(ref) else np.nan,
           "worst_key": str(ref.loc[ref.lowest_mcc.idxmin(), "key"]) if len(ref) else ""}
    out["median_met"] = bool(out["median_lowest_mcc"] >= TARGETS["median_lowest_mcc"])
    out["worst_met"] = bool(out["worst_lowest_mcc"] >= TARGETS["worst_lowest_mcc"])
    pairs = {}
    ok = paired[paired.mcc_reference.notna() & paired.mcc_method.notna()]
    for method, d in ok.groupby("method", sort=False):
        diff = d.mcc_reference - d.mcc_method
        pairs[method] = {"cohorts": int(len(d)), "reference_at_least": int((diff >= 0).sum()),
                         "median_difference": float(diff.median())}
    out["paired"] = pairs
    out["paired_met"] = bool(pairs) and all(v["reference_at_least"] == v["cohorts"] for v in pairs.values())
    cov = pooled_coverage(scores[scores.method == reference])
    lo, hi = TARGETS["coverage"]
    out["coverage"] = cov
    out["coverage_met"] = all(lo <= v <= hi for v in cov.values() if np.isfinite(v)) and \
        any(np.isfinite(v) for v in cov.values())
    return out


# ----------------------------------------------------------------------------- one world
def _frame(method: str, sample_id, gene, level, call, value, lo=np.nan, hi=np.nan) -> pd.DataFrame:
    return pd.DataFrame({"method": method, "sample_id": np.asarray(sample_id).astype(str), "gene": gene,
                         "level": level, "call": np.asarray(call).astype(np.int64), "value": value,
                         "lo": lo, "hi": hi})


def _pipeline_calls(method: str, result) -> list[pd.DataFrame]:
    gc, pc = result.gene_calls, result.plasmid_calls
    return [_frame(method, gc.sample_id, gc.gene, "chromosome", gc.call, gc.crr, gc.crr_lo, gc.crr_hi),
            _frame(method, pc.sample_id, pc.gene, pc.level, pc.call, pc.pcn, pc.pcn_lo, pc.pcn_hi)]


def _rules(result) -> dict:
    """Which rule made the calls (``call_rule`` columns of stage 03, when present)."""
    out = {}
    for name, table in (("chromosome", result.gene_calls), ("plasmid", result.plasmid_calls)):
        col = "call_rule" if "call_rule" in table.columns else "threshold_method"
        if col in table.columns:
            out[name] = sorted(str(v) for v in table[col].dropna().unique() if str(v))
    return out


def run_world(job: Job, cfg: dict, work: Path, keep: bool = False) -> dict:
    """Simulate, run the pipeline and every alternative, score on the hold-out; write ``work/<key>/``."""
    from cnvrock_lib import baselines as B
    from cnvrock_lib import calling, evaluation, reference, segmentation, training
    from cnvrock_lib.holdout import read_holdout_ids
    from cnvrock_lib.params import load_params
    from cnvrock_lib.simulate import simulate_cohort, world_summary
    from cnvrock_lib.store import open_store

    wdir = work / job.key
    data, out = wdir / "data", wdir / "results"
    wdir.mkdir(parents=True, exist_ok=True)
    timings = {}
    t = time.perf_counter()
    if not (data / "cohort.json").is_file():
        simulate_cohort(data, job.n_samples, job.seed, hard=job.hard, world_seed=job.world_seed, progress=False)
    timings["simulate"] = time.perf_counter() - t
    sched = training_overrides(job.n_samples, cfg["steps"])
    params = load_params(data / "params.yaml", overrides={"out_dir": str(out), "seed": job.seed, **sched})
    quiet = lambda *_: None  # noqa: E731
    for stage, fn in (("train", lambda: training.train_vae(params, progress=False, log=quiet)),
                      ("segment", lambda: segmentation.segment_cohort(params, log=quiet)),
                      ("call", lambda: calling.call_genes(params)),
                      ("evaluate", lambda: evaluation.evaluate(params))):
        t = time.perf_counter()
        value = fn()
        timings[stage] = time.perf_counter() - t
        if stage == "call":
            result = value
    t = time.perf_counter()
    original = calling.call_genes(load_params(data / "params.yaml", overrides={
        "out_dir": str(out), "seed": job.seed, **sched, "chrom_call_rule": "original",
        "pcn_threshold_method": "fixed"}), write=False)
    timings["call_original"] = time.perf_counter() - t
    t = time.perf_counter()
    supervised = calling.call_genes(load_params(data / "params.yaml", overrides={
        "out_dir": str(out), "seed": job.seed, **sched, "pcn_threshold_method": "supervised"}), write=False)
    timings["call_supervised"] = time.perf_counter() - t

    store = open_store(params.store_path)
    ids = store.sample_ids.astype(str)
    holdout = set(read_holdout_ids(params.holdout_ids_path))
    rows_h = np.flatnonzero(np.isin(ids, list(holdout)))
    h_ids = ids[rows_h]
    panel = reference.load_gene_panel(params.chrom_gene_coords_path, "chromosome").genes
    shv_row = panel[panel.gene == SHV].iloc[0]
    share = shv_bin_share(store.bins, shv_row.contig, int(shv_row.start), int(shv_row.end))
    truth = truth_table(data, share)
    frames = (_pipeline_calls(CNVROCK, result) + _pipeline_calls(ORIGINAL, original)
              + _pipeline_calls(SUPERVISED, supervised))

    # raw ratios of the hold-out samples (no VAE), then thresholds, hmmlearn and CNVkit on them
    t = time.perf_counter()
    rule = calling.chromosomal.ChromRule.from_params(params)
    pad = int(params.cnv_flank_padding)
    species = calling.stage.load_species(params.kpsc_meta_path, store.sample_ids)[rows_h]
    species_ok = {g: calling.core.species_callable(g, species, params.eval_species) for g in panel.gene}
    medians = np.load(out / "medians.npy")[rows_h]
    raw, _ = B.median_normalised_ratios(np.asarray(store.counts[rows_h], dtype=np.float64), medians,
                                        params.hmm_low_cov_threshold)
    tiled = np.tile(h_ids, len(panel))

    def chrom_frame(method: str, calls: pd.DataFrame, sample_ids=tiled) -> pd.DataFrame:
        return _frame(method, sample_ids, calls.gene, "chromosome", calls.call, calls.value)

    frames.append(chrom_frame(RAW, B.call_chromosomal(raw, store.bins, panel, rule, pad, callable_mask=species_ok)))
    timings["raw"] = time.perf_counter() - t
    t = time.perf_counter()
    states = B.hmmlearn_states(raw, store.bins, self_transition=params.hmm_self_transition)
    frames.append(chrom_frame(HMMLEARN, B.call_chromosomal(raw, store.bins, panel, rule, pad, states=states,
                                                           callable_mask=species_ok)))
    timings["hmmlearn"] = time.perf_counter() - t
    # CNVkit: a seeded subset of the hold-out (up to half of it blaSHV extra-dosage positives, so that
    # recall can be compared at all); CNVRock is paired with it on the same samples.
    pos_ids = set(truth[(truth.label == EXTRA) & truth.positive].sample_id)
    is_pos = np.isin(h_ids, list(pos_ids))
    rng = np.random.default_rng(job.seed)
    cap = min(cfg["cnvkit_max"], len(h_ids))
    pos = rng.permutation(np.flatnonzero(is_pos))[:(cap + 1) // 2]
    neg = rng.permutation(np.flatnonzero(~is_pos))[:cap - len(pos)]
    sub = np.sort(np.concatenate([pos, neg])).astype(np.int64)
    t = time.perf_counter()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # CNVkit logs a warning per smoothing overshoot through the root logger
    try:
        seg = B.cnvkit_segment_ratios(raw[sub], store.bins, "haar", h_ids[sub])
        frames.append(chrom_frame(CNVKIT, B.call_chromosomal(seg, store.bins, panel, rule, pad, callable_mask={
            g: m[sub] for g, m in species_ok.items()}), np.tile(h_ids[sub], len(panel))))
        timings["cnvkit_error"] = ""
    except Exception as exc:  # noqa: BLE001 - CNVkit is an optional extra; reported in world.json
        timings["cnvkit_error"] = f"{type(exc).__name__}: {exc}"[:300]
        log(f"  CNVkit haar failed: {timings['cnvkit_error']}")
    finally:
        root.setLevel(level)
    timings["cnvkit_haar"] = time.perf_counter() - t
    timings["cnvkit_samples"] = int(len(sub))

    # plasmid families without the pipeline: raw per-bp PCN, one global absent threshold
    pstore = open_store(params.plasmid_store_path)
    ppanel = reference.load_gene_panel(params.plasmid_gene_coords_path, "plasmid").genes
    families = reference.load_gene_families(params.plasmid_gene_families_path)
    fcounts, flen, fbins = B.family_counts(pstore, ppanel, families, h_ids)
    callable_ = medians >= float(params.hmm_low_cov_threshold)
    for fam in families:
        pcn = B.family_pcn(fcounts[fam], flen[fam], fbins[fam], medians, per_bp=True)
        codes = np.where(callable_ & np.isfinite(pcn), calling.plasmid.plasmid_call(
            pcn, float(params.pcn_absent_threshold), float(params.pcn_amp_threshold)), -1)
        frames.append(_frame(RAW, h_ids, fam, "family", codes, pcn))

    calls = pd.concat(frames, ignore_index=True)
    calls = calls[calls.sample_id.isin(holdout)]
    scores = score_methods(calls, truth)
    paired = pd.concat([paired_shv(calls, truth, label=lab, others=ALTERNATIVES) for lab in SHV_LABELS],
                       ignore_index=True)
    record = {"job": asdict(job), "key": job.key, "schedule": sched, "timings": {
        k: round(v, 2) if isinstance(v, float) else v for k, v in timings.items()},
        "n_holdout": int(len(h_ids)), "shv_bin_share": share, "rules": {
            CNVROCK: _rules(result), ORIGINAL: _rules(original), SUPERVISED: _rules(supervised)},
        "world": world_summary(data), "families": list(families), "load_average": round(os.getloadavg()[0], 2),
        "code": cfg.get("code", {})}
    # the hold-out calls and truth stay beside the scores, so that a cohort can be rescored without rerunning
    write_tsv(wdir / "calls.tsv", calls, index=False, float_format="%.6g", na_rep="NA")
    write_tsv(wdir / "truth.tsv", truth[truth.sample_id.isin(holdout)], index=False, float_format="%.6g", na_rep="NA")
    write_tsv(wdir / "scores.tsv", scores, index=False, float_format="%.6g", na_rep="NA")
    write_tsv(wdir / "paired.tsv", paired, index=False, float_format="%.6g", na_rep="NA")
    shutil.copyfile(out / "evaluation.txt", wdir / "evaluation.txt.tmp")
    os.replace(wdir / "evaluation.txt.tmp", wdir / "evaluation.txt")
    write_json(wdir / "world.json", record)   # written last: its presence marks the world done
    if not keep:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    return record


# ----------------------------------------------------------------------------- collect
def collect(work: Path, jobs: list[Job]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Scores, paired scores and world records of the finished jobs (``world.json`` present)."""
    scores, paired, records = [], [], []
    for job in jobs:
        wdir = work / job.key
        if not (wdir / "world.json").is_file():
            continue
        rec = json.loads((wdir / "world.json").read_text())
        records.append(rec)
        tag = {"key": job.key, "world_seed": job.world_seed, "n_samples": job.n_samples, "hard": job.hard}
        scores.append(pd.read_csv(wdir / "scores.tsv", sep="\t").assign(**tag))
        paired.append(pd.read_csv(wdir / "paired.tsv", sep="\t").assign(**tag))
    if not records:
        return pd.DataFrame(), pd.DataFrame(), []
    return pd.concat(scores, ignore_index=True), pd.concat(paired, ignore_index=True), records


# ----------------------------------------------------------------------------- document
def _f(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return str(v)


def world_rows(scores: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """One row per cohort: world, size, hard, key drawn strengths, lowest MCC and blaSHV MCC per method."""
    families = records[0]["families"]
    low = lowest_mcc(scores, families)
    shv = scores[(scores.gene == SHV) & (scores.label == EXTRA)]
    rows = []
    for rec in records:
        w = rec["world"]
        bg = [v for k, v in w.items() if k.startswith("background_pcn:") and v is not None]
        row = {"key": rec["key"], "world_seed": rec["job"]["world_seed"], "n_samples": rec["job"]["n_samples"],
               "hard": rec["job"]["hard"], "depth": f"{w['depth_low']:.0f}-{w['depth_high']:.0f}x",
               "shv_amp_rate": w["shv_amp_rate"], "plasmid_shv_rate": w["plasmid_shv_rate"],
               "collapse": w["kleborate_collapse_rate"], "max_background_pcn": max(bg) if bg else np.nan,
               "n_holdout": rec["n_holdout"], "epochs": rec["schedule"]["epochs"]}
        for m in dict.fromkeys(FULL_METHODS + METHODS):
            r = low[(low.key == rec["key"]) & (low.method == m)]
            row[f"low:{m}"] = float(r.lowest_mcc.iloc[0]) if len(r) else np.nan
            row[f"worst:{m}"] = str(r.worst.iloc[0]) if len(r) else ""
            row[f"ntargets:{m}"] = int(r.n_targets.iloc[0]) if len(r) else 0
            s = shv[(shv.key == rec["key"]) & (shv.method == m)]
            row[f"shv:{m}"] = float(s.mcc.iloc[0]) if len(s) else np.nan
            row[f"shvpos:{m}"] = int(s.n_pos.iloc[0]) if len(s) else 0
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_coverage(scores: pd.DataFrame) -> dict:
    """Pooled 95 % interval coverage of the rows of one method: ``blaSHV:all``, ``blaSHV:positives``
    (extra-dosage truth), ``families:all``, ``families:positives`` (each cohort weighted by its samples)."""
    out = {}
    for name, sel in (("blaSHV", (scores.gene == SHV) & (scores.label == EXTRA)), ("families", scores.level == "family")):
        for col, n_col, tag in (("coverage", "n_coverage", "all"), ("coverage_pos", "n_coverage_pos", "positives")):
            w, v = scores.loc[sel, n_col].astype(float), scores.loc[sel, col].astype(float)
            use = w > 0
            out[f"{name}:{tag}"] = float((v[use] * w[use]).sum() / w[use].sum()) if use.any() else np.nan
    return out


def coverage_by_cohort(scores: pd.DataFrame, reference: str = CNVROCK) -> pd.DataFrame:
    """Per cohort (``key``): :func:`pooled_coverage` of ``reference``."""
    mine = scores[scores.method == reference]
    return pd.DataFrame([{"key": key, **pooled_coverage(d)} for key, d in mine.groupby("key", sort=False)])


def figure(table: pd.DataFrame, coverage: pd.DataFrame, path: Path) -> None:
    """Lowest MCC per cohort and method; blaSHV MCC per method; coverage of CNVRock's intervals per cohort."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), gridspec_kw={"width_ratios": [3, 2, 2]})
    x = np.arange(len(table))
    labels = [f"{str(r.world_seed)[:4]}..\n{r.n_samples}{' H' if r.hard else ''}" for r in table.itertuples()]
    markers = dict(zip(FULL_METHODS, ("o", "P", "s", "^")))
    ax = axes[0]
    for i, m in enumerate(FULL_METHODS):
        ax.scatter(x + (i - 1.5) * 0.16, table[f"low:{m}"], marker=markers[m], label=m, s=24)
    ax.axhline(TARGETS["median_lowest_mcc"], color="g", lw=0.8, ls="--", label="target: median 0.90")
    ax.axhline(TARGETS["worst_lowest_mcc"], color="r", lw=0.8, ls=":", label="target: worst 0.80")
    ax.set_xticks(x, labels, fontsize=6)
    ax.set_ylabel("lowest MCC (blaSHV extra dosage + 7 families)")
    ax.set_title("Lowest MCC per cohort (hold-out; world seed, size, H = hard)", fontsize=10)
    ax.set_ylim(-0.15, 1.05)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    ax = axes[1]
    data = [table[f"shv:{m}"].dropna().to_numpy() for m in METHODS]
    ax.boxplot(data, showfliers=False)
    for i, d in enumerate(data):
        ax.scatter(np.full(d.size, i + 1) + np.linspace(-0.15, 0.15, d.size), d, s=10, alpha=0.7)
    short = ("CNVRock\ndefaults", "original rules\n(CNVRock dosage)", "raw-ratio\nthresholds", "hmmlearn\n(raw ratios)",
             "CNVkit haar\n(subset)")
    ax.set_xticks(np.arange(1, len(METHODS) + 1), short, fontsize=7)
    ax.set_ylim(-0.15, 1.05)
    ax.set_ylabel("blaSHV MCC, extra dosage (simulator truth)")
    ax.set_title("blaSHV per cohort (CNVkit: on its hold-out subset)", fontsize=10)
    ax = axes[2]
    ax.axhspan(*TARGETS["coverage"], color="g", alpha=0.15, label="target 0.93-0.97")
    cov = coverage.set_index("key").reindex(table.key)
    for i, (col, mk) in enumerate((("blaSHV:all", "o"), ("blaSHV:positives", "^"), ("families:all", "s"),
                                   ("families:positives", "v"))):
        ax.scatter(x + (i - 1.5) * 0.15, cov[col], marker=mk, s=18, label=col.replace(":", ", "))
    ax.set_xticks(x, [str(i + 1) for i in x], fontsize=6)
    ax.set_xlabel("cohort (the order of the left panel)", fontsize=8)
    ax.set_ylim(0.4, 1.02)
    ax.set_ylabel("share of true dosages inside CNVRock's 95 % interval")
    ax.set_title("Interval coverage per cohort", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def doc_text(scores: pd.DataFrame, paired: pd.DataFrame, records: list[dict], mode: str, cfg: dict,
             command: str, wall_min: float | None, img_rel: str, missing: list[str] | None = None) -> str:
    """The Markdown of the generalisation section (between the BEGIN/END markers)."""
    table = world_rows(scores, records)
    low = lowest_mcc(scores, records[0]["families"])
    summary = target_summary(low, paired[paired.label == EXTRA], scores)
    loads = [r["load_average"] for r in records]
    codes = sorted({f"{r.get('code', {}).get('head') or '?'}"
                    + (" + uncommitted changes" if r.get("code", {}).get("dirty") else "")
                    + f" (decision branch up to {r.get('code', {}).get('decision') or '?'})" for r in records})
    rules = records[0]["rules"]
    per_sample = [r["timings"]["cnvkit_haar"] / r["timings"]["cnvkit_samples"] for r in records
                  if r.get("timings", {}).get("cnvkit_samples")]
    cnvkit_s = float(np.median(per_sample)) if per_sample else float("nan")
    stage_min = sum(v for r in records for k, v in r.get("timings", {}).items()
                    if isinstance(v, float) and k != "cnvkit_samples") / 60
    L = [f"Generated by `{command}` ({mode} settings; "
         + (f"{wall_min:.0f} min wall for the cohorts run by this invocation; " if wall_min is not None else "")
         + f"{stage_min:.0f} min summed over the timed steps of the {len(records)} cohorts; "
         + f"1-minute load average {min(loads):.1f}-{max(loads):.1f} while the cohorts were scored, on a "
         f"2-core machine shared with other engineers). Worlds: "
         f"{'the `TEST_WORLD_SEEDS`' if cfg['worlds'] == 'test' else 'development worlds (`DEV_WORLD_SEEDS`)'} of "
         "`cnvrock_lib/simulate/strengths.py`, written down before this benchmark existed; nothing was chosen "
         "on them. Every third world of the list is simulated with `hard=True`.", "",
         f"**What ran.** Code measured: {'; '.join(codes)}. "
         f"Stages 01-04 with the params defaults of that code, except the training schedule: "
         f"about {cfg['steps']} optimiser steps per cohort whatever its size (lr {LR:g}; epochs = "
         + ", ".join(f"{n}: {training_overrides(n, cfg['steps'])['epochs']}" for n in sorted(cfg["sizes"]))
         + f") instead of the demo tier's {demo_steps()}, so that the run fits the time budget; the VAE is undertrained "
         "and CNVRock's numbers may improve with a full schedule (not measured here). Rules that made "
         f"CNVRock's calls: chromosome {', '.join(rules[CNVROCK].get('chromosome', [])) or 'n/a'}; plasmid "
         f"{', '.join(rules[CNVROCK].get('plasmid', [])) or 'n/a'}. The original rules: "
         f"{', '.join(rules[ORIGINAL].get('chromosome', []) + rules[ORIGINAL].get('plasmid', [])) or 'n/a'} "
         "(`chrom_call_rule: original`, `pcn_threshold_method: fixed`) on the same CNVRock dosages. "
         f"**{SUPERVISED}** (`pcn_threshold_method: supervised`; plasmid rule "
         f"{', '.join(rules.get(SUPERVISED, {}).get('plasmid', [])) or 'n/a'}) learns each family's threshold "
         "from the AMRFinder labels of the training samples only (never the hold-out); its chromosomal calls are "
         "the default's. It is reported beside the defaults, not as one of the alternatives.", "",
         "**How scored.** All methods on the same hold-out samples (`holdout_ids.txt`, 25 % of each cohort), "
         "callable samples only. *blaSHV* positive = **extra dosage (simulator truth)**: rounded majority "
         "chromosomal copies + a plasmid-borne copy ≥ 2, i.e. what a Kleborate count ≥ 2 means before tandem "
         "collapse and label noise; call 2 = positive. Also reported, labelled: the **recorded Kleborate "
         "count ≥ 2** (`kleborate_gt.tsv`, with the world's collapse and label noise) and the **chromosomal "
         "truth** (tandem CN ≥ 2). Families: presence (true PCN > 0) against call ≥ 1. An MCC needs ≥ "
         f"{MIN_CLASS} positives and ≥ {MIN_CLASS} negatives, else n/a; the **lowest MCC** is the minimum over "
         "*blaSHV* extra dosage and the seven families (KPC, CTX-M, NDM, OXA-48-like, TEM, qnrB, aac6-Ib-cr; "
         "the issue's 'six' lists seven) that have an MCC. hmmlearn and CNVkit segment the chromosome only "
         "(no plasmid caller): their column is *blaSHV* only. CNVkit haar ran on a seeded subset of each "
         f"hold-out (≤ {cfg['cnvkit_max']} samples, up to half of them *blaSHV* positives; pure-Python "
         f"CNVkit took {cnvkit_s:.2f} s per sample here, median over cohorts). Raw-ratio thresholds: copy ratios = counts ÷ sample median, "
         "CRR ≥ `cnv_crr_amp_threshold`; family PCN ≥ `pcn_absent_threshold`.", ""]

    L += ["### Targets of the issue on these worlds", "",
          "| target | reached | met? |", "|---|---|---|",
          f"| median over cohorts of CNVRock's lowest MCC ≥ {TARGETS['median_lowest_mcc']:.2f} | "
          f"{_f(summary['median_lowest_mcc'], 3)} over {summary['n_cohorts']} cohorts | "
          f"{'yes' if summary['median_met'] else '**no**'} |",
          f"| worst cohort ≥ {TARGETS['worst_lowest_mcc']:.2f} | {_f(summary['worst_lowest_mcc'], 3)} "
          f"(`{summary['worst_key']}`) | {'yes' if summary['worst_met'] else '**no**'} |"]
    for m, v in summary["paired"].items():
        L.append(f"| CNVRock *blaSHV* MCC ≥ {m}, paired on the same samples | in {v['reference_at_least']} of "
                 f"{v['cohorts']} cohorts (median difference {v['median_difference']:+.3f}) | "
                 f"{'yes' if v['reference_at_least'] == v['cohorts'] else '**no**'} |")
    cov = summary["coverage"]
    lo, hi = TARGETS["coverage"]
    for k, v in cov.items():
        L.append(f"| 95 % interval coverage {lo:.2f}-{hi:.2f}, {k.replace(':', ', ')} (pooled) | {_f(v, 3)} | "
                 f"{'yes' if np.isfinite(v) and lo <= v <= hi else '**no**'} |")
    by_size = table.groupby("n_samples")[f"low:{CNVROCK}"].agg(["median", "min", "count"])
    L += ["", "By cohort size, CNVRock's lowest MCC: " + "; ".join(
        f"{n} samples: median {_f(r['median'], 3)}, worst {_f(r['min'], 3)} ({int(r['count'])} cohorts)"
        for n, r in by_size.iterrows()) + "."]
    if missing:
        L += ["", f"**Not finished** (planned but without results when this was written): {', '.join(missing)}."]
    L += ["", f"Paired comparisons count only cohorts where both MCCs exist (≥ {MIN_CLASS} positives and negatives among "
          "the samples both methods call); coverage is CNVRock's `crr_lo`-`crr_hi` around the dosage the "
          f"*blaSHV* bins read (chromosomal CN + {records[0].get('shv_bin_share', float('nan')):.2f} × a plasmid-borne "
          "copy's PCN) and `pcn_lo`-`pcn_hi` "
          "around the true family PCN.", ""]

    L += ["### Test-world table" if cfg["worlds"] == "test" else "### Development-world table", "",
          "Lowest MCC per method (the target that gave it in brackets) and *blaSHV* MCC (extra dosage). "
          "Drawn strengths: depth range, *blaSHV* amplification prevalence, plasmid-borne *blaSHV* share, "
          "Kleborate collapse share, and the highest median non-carrier background PCN (cross-talk) over "
          "the families.", "",
          "| world | n | hard | depth | SHV amp | plasmid SHV | collapse | max bg PCN | hold-out | "
          "lowest: CNVRock | lowest: supervised | lowest: original | lowest: raw | SHV: CNVRock | SHV: original | "
          "SHV: raw | SHV: hmmlearn | SHV: CNVkit haar |", "|" + "---|" * 18]
    for r in table.itertuples(index=False):
        rd = dict(zip(table.columns, r))

        def low_cell(m):
            return f"{_f(rd[f'low:{m}'])} ({rd[f'worst:{m}']})" if np.isfinite(rd[f"low:{m}"]) else "n/a"
        L.append(f"| {rd['world_seed']} | {rd['n_samples']} | {'yes' if rd['hard'] else ''} | {rd['depth']} | "
                 f"{_f(rd['shv_amp_rate'], 3)} | {_f(rd['plasmid_shv_rate'], 3)} | {_f(rd['collapse'])} | "
                 f"{_f(rd['max_background_pcn'])} | {rd['n_holdout']} | "
                 + " | ".join(low_cell(m) for m in FULL_METHODS) + " | "
                 + " | ".join(f"{_f(rd[f'shv:{m}'])}" + (f" ({rd[f'shvpos:{m}']}+)" if m == CNVROCK else "")
                              for m in METHODS) + " |")
    L += ["", "(n+) after CNVRock's *blaSHV* MCC = extra-dosage positives among its scored hold-out samples.", ""]

    L += per_target_lines(scores)
    L += ["", f"![generalisation]({img_rel})", "",
          "Raw per-cohort results (every gene, member and family, all three *blaSHV* labels, coverage of "
          "all samples and of positives, timings): `<workdir>/<cohort>/scores.tsv`, `paired.tsv`, "
          "`world.json`, and stage 04's `evaluation.txt`.", ""]
    L += verdict_lines(summary, table, scores)
    return "\n".join(L)


def pooled_mcc(scores: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Confusion counts summed over cohorts per ``keys``, with the MCC, recall and PPV recomputed from them,
    and the medians over cohorts of the per-cohort MCC (where it exists) and dosage error."""
    agg = scores.groupby(keys, sort=False).agg(
        cohorts=("key", "nunique"), cohorts_mcc=("mcc", "count"), mcc_median=("mcc", "median"),
        err=("abs_err_median", "median"), n_pos=("n_pos", "sum"), tp=("tp", "sum"), fp=("fp", "sum"),
        fn=("fn", "sum"), tn=("tn", "sum")).reset_index()
    agg["mcc_pooled"] = [gated_mcc(*r) for r in zip(agg.tp, agg.fp, agg.fn, agg.tn)]
    with np.errstate(invalid="ignore", divide="ignore"):
        agg["recall"] = np.where(agg.tp + agg.fn > 0, agg.tp / (agg.tp + agg.fn), np.nan)
        agg["ppv"] = np.where(agg.tp + agg.fp > 0, agg.tp / (agg.tp + agg.fp), np.nan)
    return agg


def per_target_lines(scores: pd.DataFrame) -> list[str]:
    """Markdown tables: blaSHV (three labels) and families per method; members for CNVRock and the original."""
    sel = scores[(scores.level == "family") | (scores.gene == SHV)]
    sel = sel.assign(target=np.where(sel.gene == SHV, SHV + ": " + sel.label, sel.gene))
    agg = pooled_mcc(sel, ["target", "method"])
    L = ["### Per gene and family, over all cohorts", "",
         "Pooled = confusion counts summed over every cohort (hold-out samples), then MCC / recall / PPV; "
         "median MCC = median of the per-cohort MCCs where they exist (`cohorts with MCC`); dosage error = "
         "median over cohorts of the median |dosage − truth| (copies; n/a where the label has no dosage).", "",
         "| target | method | cohorts (with MCC) | positives | pooled MCC | recall | PPV | median MCC | dosage error |",
         "|---|---|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(dict.fromkeys(FULL_METHODS + METHODS))}
    agg = agg.assign(o=agg.method.map(order)).sort_values(["target", "o"])
    for r in agg.itertuples():
        L.append(f"| {r.target} | {r.method} | {r.cohorts} ({r.cohorts_mcc}) | {r.n_pos} | {_f(r.mcc_pooled)} | "
                 f"{_f(r.recall)} | {_f(r.ppv)} | {_f(r.mcc_median)} | {_f(r.err)} |")
    members = pooled_mcc(scores[(scores.level == "member") & scores.method.isin([CNVROCK, ORIGINAL])],
                         ["gene", "method"])
    if len(members):
        L += ["", "Plasmid members (genes), pooled over cohorts:", "",
              "| gene | CNVRock: pooled MCC | recall | PPV | original: pooled MCC | recall | PPV | positives |",
              "|---|---|---|---|---|---|---|---|"]
        for gene, d in members.groupby("gene", sort=True):
            c, o = d[d.method == CNVROCK], d[d.method == ORIGINAL]
            cells = []
            for part in (c, o):
                cells += [_f(part.mcc_pooled.iloc[0]), _f(part.recall.iloc[0]), _f(part.ppv.iloc[0])] if len(part) \
                    else ["n/a"] * 3
            L.append(f"| {gene} | " + " | ".join(cells) + f" | {int(d.n_pos.iloc[0])} |")
    return L + [""]


def verdict_lines(summary: dict, table: pd.DataFrame, scores: pd.DataFrame) -> list[str]:
    """Plain statements of where CNVRock wins and loses, from the numbers."""
    L = ["### What the numbers say", ""]
    sel = scores[((scores.gene == SHV) & (scores.label == EXTRA)) | (scores.level == "family")]
    pooled = pooled_mcc(sel, ["gene", "method"]).set_index(["gene", "method"]).mcc_pooled
    losses = []
    for gene in pooled.index.get_level_values(0).unique():
        mine = pooled.get((gene, CNVROCK), np.nan)
        for m in (SUPERVISED,) + ALTERNATIVES:
            other = pooled.get((gene, m), np.nan)
            if np.isfinite(mine) and np.isfinite(other) and other > mine:
                losses.append(f"{gene} ({m} {other:.3f} vs CNVRock {mine:.3f})")
    L.append("* Pooled over cohorts, CNVRock's MCC is below another row's on: "
             + ("; ".join(losses) if losses else "no target") + " (*blaSHV*: extra dosage; CNVkit on its subset).")
    L.append(f"* CNVRock's lowest MCC: median {_f(summary['median_lowest_mcc'], 3)}, worst "
             f"{_f(summary['worst_lowest_mcc'], 3)} (targets 0.90 and 0.80: "
             f"{'met' if summary['median_met'] else 'not met'} / {'met' if summary['worst_met'] else 'not met'}).")
    for m in (ORIGINAL, RAW):
        v = table[f"low:{m}"].dropna()
        if len(v):
            L.append(f"* {m}: median lowest MCC {_f(float(v.median()), 3)}, worst {_f(float(v.min()), 3)}.")
    for m, v in summary["paired"].items():
        verb = "at least as good as" if v["reference_at_least"] == v["cohorts"] else "beaten by"
        L.append(f"* *blaSHV*, paired: CNVRock is {verb} {m} in "
                 f"{v['cohorts'] - v['reference_at_least'] if verb == 'beaten by' else v['reference_at_least']}"
                 f" of {v['cohorts']} cohorts (median MCC difference {v['median_difference']:+.3f}).")
    same = table[f"shv:{RAW}"].equals(table[f"shv:{HMMLEARN}"])
    if same:
        L.append("* Raw-ratio thresholds and hmmlearn give the same *blaSHV* MCC in every cohort: *blaSHV* has "
                 "fewer usable bins than `cnv_crr_min_bins_fallback`, so its call rests on the CRR alone and the "
                 "HMM states never enter it.")
    worst = table.groupby(f"worst:{CNVROCK}").size().sort_values(ascending=False)
    if len(worst):
        L.append("* The target that gave CNVRock's lowest MCC, counted over cohorts: "
                 + ", ".join(f"{k} {v}" for k, v in worst.items() if k) + ".")
    return L + [""]


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 development worlds x 300 samples")
    ap.add_argument("--workdir", type=Path, default=None, help="results per cohort (default bench/out/generalisation_<mode>)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per cohort (default: the mode's)")
    ap.add_argument("--keep", action="store_true", help="keep each cohort's data and stage artefacts")
    ap.add_argument("--doc-only", action="store_true", help="rewrite the document from finished cohorts")
    ap.add_argument("--no-doc", action="store_true", help="do not touch docs/BENCHMARKS.md")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "default"
    cfg = dict(MODES[mode])
    if args.steps is not None:
        if args.steps < 1:
            print(f"generalisation: --steps = {args.steps}; expected a positive integer", file=sys.stderr)
            return 2
        cfg["steps"] = args.steps
    work = (args.workdir or REPO / "bench" / "out" / f"generalisation_{mode}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg["code"] = code_version()
    jobs = plan_jobs(mode)
    todo = [j for j in jobs if not (work / j.key / "world.json").is_file()]
    t0 = time.perf_counter()
    failed: list[str] = []
    if not args.doc_only:
        est = estimate_seconds(todo, cfg["steps"], cfg["cnvkit_max"])
        log(f"{mode}: {len(jobs)} cohorts ({len(jobs) - len(todo)} already done in {work}); "
            f"estimated {est / 60:.0f} min for the rest on 2 busy cores (load {os.getloadavg()[0]:.1f})")
        for k, job in enumerate(todo, 1):
            t = time.perf_counter()
            log(f"[{k}/{len(todo)}] {job.key}: simulate, stages 01-04 "
                f"({training_overrides(job.n_samples, cfg['steps'])['epochs']} epochs), alternatives, scores")
            try:
                rec = run_world(job, cfg, work, keep=args.keep)
            except Exception as exc:  # noqa: BLE001 - one failed cohort must not lose the others; reported
                msg = f"{type(exc).__name__}: {exc}"
                log(f"    FAILED: {msg[:500]}")
                write_json(work / job.key / "error.json", {"key": job.key, "error": msg[:2000]})
                failed.append(job.key)
                continue
            left = estimate_seconds(todo[k:], cfg["steps"], cfg["cnvkit_max"])
            log(f"    done in {time.perf_counter() - t:.0f} s ({', '.join(f'{s} {v:.0f}' for s, v in rec['timings'].items() if isinstance(v, float))}); "
                f"about {left / 60:.0f} min left")
    wall = (time.perf_counter() - t0) / 60 if todo and not args.doc_only else None
    scores, paired, records = collect(work, jobs)
    done = {r["key"] for r in records}
    missing = [j.key for j in jobs if j.key not in done]
    if not records:
        print(f"generalisation: no finished cohort in {work}; run without --doc-only first", file=sys.stderr)
        return 2
    low = lowest_mcc(scores, records[0]["families"])
    summary = target_summary(low, paired[paired.label == EXTRA], scores)
    write_json(work / "summary.json", summary)
    print(world_rows(scores, records).drop(columns=[c for c in world_rows(scores, records).columns
                                                    if c.startswith(("worst:", "ntargets:", "shvpos:"))]
                                           ).to_string(index=False))
    print(json.dumps(summary, indent=1))
    if args.no_doc:
        return 0
    from doc_blocks import write_doc_block

    command = "PYTHONPATH=$PWD .venv/bin/python bench/generalisation.py" + (" --quick" if args.quick else "")
    text = doc_text(scores, paired, records, mode, cfg, command, wall, "img/" + IMG.name, missing)
    if mode == "quick":
        # development runs do not overwrite the test-world section
        write_text(work / "generalisation.md", text)
        figure(world_rows(scores, records), coverage_by_cohort(scores), work / IMG.name)
        log(f"quick mode: section written to {work / 'generalisation.md'} (docs untouched)")
        return 0
    figure(world_rows(scores, records), coverage_by_cohort(scores), IMG)
    write_doc_block(DOC, DOC_KEY, text)
    log(f"wrote {DOC} (section '{DOC_KEY}') and {IMG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
