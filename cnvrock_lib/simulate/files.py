"""Writing a cohort: truth and ground-truth tables, ``simulate_cohort`` and ``ensure_simulated``."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import reference
from ..atomic import atomic_dir, write_json, write_text, write_tsv
from ..errors import InputError, ParamsError
from ..progress import Progress, stderr_logger
from ..store import write_store
from .cohort import Cohort, _sample_ids, draw_cohort
from ..reference import BIN_SIZE
from .config import AMRFINDER_COLUMNS, SIMULATOR_VERSION, WORLD_SEED, SimConfig
from .counts import simulate_counts
from .world import World, _interval_overlap, build_world



def _gene_truth(world: World, cohort: Cohort, ids: np.ndarray) -> pd.DataFrame:
    genes = list(world.genes["gene"])
    fams = list(world.families)
    n = len(ids)
    parts = [pd.DataFrame({"sample_id": ids, "gene": world.shv["gene"], "level": "chromosome",
                           "true_cn": cohort.samples["shv_cn"].to_numpy()})]
    for j, g in enumerate(genes):
        parts.append(pd.DataFrame({"sample_id": ids, "gene": g, "level": "member",
                                   "true_cn": cohort.member_cn[:, j]}))
    gidx = {g: j for j, g in enumerate(genes)}
    for j, f in enumerate(fams):
        total = cohort.offpanel[:, j] + sum(cohort.member_cn[:, gidx[g]] for g in world.families[f] if g in gidx)
        parts.append(pd.DataFrame({"sample_id": ids, "gene": f, "level": "family", "true_cn": total}))
    out = pd.concat(parts, ignore_index=True)
    out["true_cn"] = out["true_cn"].round(4)
    # one block of rows per sample, in store order: chromosome, members, families
    order = np.tile(np.arange(n), len(parts))
    return out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def _ground_truth(world: World, cohort: Cohort, ids, biosamples, rng, cfg: SimConfig, collapse_rng=None):
    """AMRFinder-style family presence and Kleborate-style blaSHV counts, with label noise.

    With ``cfg.kleborate_collapse_rate`` > 0 the assembly of that share of the blaSHV-amplified
    samples collapses the tandem copies: Kleborate counts 1 chromosomal copy (drawn from
    ``collapse_rng``, so the other streams are untouched).
    """
    smp = cohort.samples
    n = len(ids)
    genes = list(world.genes["gene"])
    gidx = {g: j for j, g in enumerate(genes)}
    fams = list(world.families)
    gt = pd.DataFrame({"sample_id": ids, "biosample": biosamples})
    has_pshv = smp["plasmid_shv_pcn"].to_numpy() > 0
    shv_major = smp["shv_cn_major"].to_numpy()
    flips = [[] for _ in range(n)]
    for col in AMRFINDER_COLUMNS:
        if col == world.shv["gene"]:
            present = (shv_major >= 0.5) | has_pshv
        elif col in world.families:
            j = fams.index(col)
            copies = cohort.offpanel_major[:, j] + sum(cohort.member_major[:, gidx[g]]
                                                       for g in world.families[col] if g in gidx)
            present = copies > 0
        else:
            present = np.zeros(n, dtype=bool)
        u = rng.random(n)
        flip = np.where(present, u < cfg.gt_fn_rate, u < cfg.gt_fp_rate)
        for i in np.flatnonzero(flip):
            flips[i].append(col)
        gt[col] = (present ^ flip).astype(int)
    chrom_count = np.floor(shv_major + 0.5).astype(int)
    if cfg.kleborate_collapse_rate > 0:
        amplified = smp["shv_amplified"].to_numpy(bool) & (chrom_count > 1)
        collapsed = amplified & (collapse_rng.random(n) < cfg.kleborate_collapse_rate)
        chrom_count = np.where(collapsed, 1, chrom_count)
        for i in np.flatnonzero(collapsed):
            flips[i].append("kleborate_collapsed")
    count = chrom_count + has_pshv.astype(int)
    noisy = rng.random(n) < cfg.kleborate_noise_rate
    step = np.where(rng.random(n) < 0.5, -1, 1)
    count = np.where(noisy, np.maximum(0, count + step), count)
    for i in np.flatnonzero(noisy):
        flips[i].append("kleborate_blaSHV")
    carb = [f for f in ("blaKPC", "blaNDM", "blaOXA-48-like") if f in gt]
    esbl = [f for f in ("blaCTX-M",) if f in gt]
    resistance = np.where(gt[carb].sum(axis=1) > 0, 2, np.where(gt[esbl].sum(axis=1) > 0, 1, 0)) if carb else 0
    kleb = pd.DataFrame({
        "sample_id": ids, "strain": ids, "species": smp["species"].to_numpy(), "ST": smp["ST"].to_numpy(),
        "virulence_score": rng.choice([0, 1, 3, 4], size=n, p=[0.7, 0.15, 0.1, 0.05]),
        "resistance_score": resistance, "blaSHV": count,
    })
    meta = pd.DataFrame({"sample_id": ids, "Species": smp["species"].to_numpy(), "ST": smp["ST"].to_numpy(),
                         "sample_accession": biosamples})
    return gt, kleb, meta, [",".join(f) for f in flips]


def world_record(world: World, cohort: Cohort) -> dict:
    """What a benchmark reports about the world of a cohort (cohort.json ``world``).

    The drawn strengths (:meth:`WorldStrengths.as_dict`), the family prevalences the world
    expects and those realised in this cohort (share of samples with family truth > 0), and
    per plasmid gene the cross-talk of mobile elements: PCN added per element copy
    (copies per chromosome, from the read-placement matrix) and the noise-free background PCN
    of the cohort's family non-carriers (median and 90th percentile).
    """
    rec = world.strengths.as_dict()
    fams = list(world.families)
    genes = list(world.genes["gene"])
    gidx = {g: j for j, g in enumerate(genes)}
    carrier = {}
    for j, f in enumerate(fams):
        total = cohort.offpanel[:, j] + sum(cohort.member_cn[:, gidx[g]] for g in world.families[f] if g in gidx)
        carrier[f] = total > 0
    rec["family_prevalence_expected"] = dict(world.family_prevalence)
    rec["family_prevalence_realised"] = {f: round(float(c.mean()), 4) for f, c in carrier.items()}
    pb = world.plasmid_bins
    elements = [s for s in world.sources if s.startswith("element:")]
    rows = [world.src_index[s] for s in elements]
    crosstalk = {}
    for row in world.genes.itertuples():
        sel = (pb["chrom"] == row.contig) & (pb["end"] >= row.start) & (pb["start"] <= row.end)
        length = float((pb["end"][sel] - pb["start"][sel] + 1).sum())
        per_copy = world.A[rows][:, sel].sum(axis=1) * BIN_SIZE / length
        background = cohort.weights[:, rows] @ per_copy
        non = ~carrier[world.gene_family[row.gene]]
        crosstalk[row.gene] = {
            "pcn_per_element_copy": {e.split(":", 1)[1]: round(float(v), 4)
                                     for e, v in zip(elements, per_copy) if v > 0},
            "noncarrier_background_pcn_median": round(float(np.median(background[non])), 4) if non.any() else None,
            "noncarrier_background_pcn_p90": round(float(np.percentile(background[non], 90)), 4) if non.any() else None}
    rec["crosstalk"] = crosstalk
    return rec


def _segments_table(cohort: Cohort, ids) -> pd.DataFrame:
    rows = [(ids[i], s, e, c, k) for i, segs in enumerate(cohort.segments) for s, e, c, k in segs]
    out = pd.DataFrame(rows, columns=["sample_id", "start", "end", "cn", "kind"])
    out.insert(1, "chrom", reference.CHROMOSOME)
    return out


def bin_features(world: World | None = None) -> pd.DataFrame:
    """Per chromosome bin: ``chrom start end gc mappability replichore_distance island repeat hot``."""
    world = world or build_world()
    cb = world.chrom_bins
    island = np.zeros(len(cb), dtype=bool)
    for s, e in world.islands:
        island |= _interval_overlap(cb["start"], cb["end"], int(s), int(e)) > 0
    repeat = np.full(len(cb), "", dtype=object)
    for r in world.repeats.itertuples():
        sel = _interval_overlap(cb["start"], cb["end"], r.start, r.end) > 0
        repeat[sel] = np.where(repeat[sel] == "", r.kind, repeat[sel])
    hot = np.zeros(len(cb), dtype=bool)
    hot[world.hot_bins] = True
    return pd.DataFrame({"chrom": cb["chrom"], "start": cb["start"], "end": cb["end"],
                         "gc": world.gc.round(4), "mappability": world.mappability.round(4),
                         "replichore_distance": world.replichore_distance.round(5),
                         "island": island, "repeat": repeat, "hot": hot})


# ----------------------------------------------------------------------------- entry points


_log = stderr_logger("simulate")


def _settings(n_samples: int, seed: int, hard: bool, overrides: dict, world_seed: int = WORLD_SEED) -> dict:
    return {"simulator_version": SIMULATOR_VERSION, "world_seed": int(world_seed), "n_samples": int(n_samples),
            "seed": int(seed), "hard": bool(hard),
            "overrides": json.loads(json.dumps(overrides, sort_keys=True, default=list))}


COLLAPSE_STREAM = 0xC011  # stream of the Kleborate collapse draws (leaves the other streams untouched)
FILES = {
    "chrom_store": "chrom_store", "plasmid_store": "plasmid_store", "amrfinder_gt": "amrfinder_gt.tsv",
    "kleborate_gt": "kleborate_gt.tsv", "metadata": "metadata.tsv", "chrom_gene_coords": "chrom_gene_coords.tsv",
    "plasmid_gene_coords": "plasmid_gene_coords.tsv", "plasmid_gene_families": "plasmid_gene_families.tsv",
    "holdout_ids": "holdout_ids.txt", "gene_truth": "truth/gene_truth.tsv", "segments": "truth/segments.tsv",
    "samples": "truth/samples.tsv", "bin_features": "truth/bin_features.tsv", "params": "params.yaml",
    "cohort": "cohort.json",
}


def simulate_cohort(data_dir, n_samples: int, seed: int = 42, *, hard: bool = False,
                    world_seed: int = WORLD_SEED, progress: bool = True, **overrides) -> dict[str, Path]:
    """Write a simulated KpSC cohort into ``data_dir`` (replaced atomically when complete).

    Parameters
    ----------
    data_dir : directory to create (an existing one is replaced only if it holds a simulated cohort).
    n_samples : number of samples (rows of both stores).
    seed : cohort seed; the same seed and settings give identical files.
    hard : the harder preset (15-60x, strong GC bias, ori/ter up to 3, subclonal amplifications).
    world_seed : the world (``WORLD_SEED``: the reference world; any other draws its confounder
        strengths, see :mod:`cnvrock_lib.simulate.strengths`). Recorded in cohort.json ``world``.
    progress : progress on stderr (tqdm bar when interactive, else log lines).
    **overrides : any :class:`SimConfig` field, e.g. ``shv_amp_rate=0.05``.

    Returns
    -------
    dict name -> path of every file written (see ``FILES``).
    """
    data_dir = Path(data_dir).expanduser().resolve()
    if not isinstance(n_samples, (int, np.integer)) or isinstance(n_samples, bool) or n_samples < 1:
        raise ParamsError(f"simulate: n_samples = {n_samples!r}; expected a positive integer")
    if data_dir.exists() and any(data_dir.iterdir()) and not (data_dir / "cohort.json").is_file():
        raise InputError(f"simulate: {data_dir} exists, is not empty and holds no simulated cohort "
                         f"(no cohort.json); refusing to replace it. Choose another data_dir.")
    world = build_world(world_seed)
    cfg = SimConfig.make(hard=hard, world=world.strengths.cohort, **overrides)
    t0 = time.perf_counter()
    if progress:
        where = "" if world_seed == WORLD_SEED else f", world {world_seed}"
        _log(f"simulating {n_samples} samples (seed {seed}{where}{', hard' if hard else ''}) into {data_dir}")
    cohort = draw_cohort(world, int(n_samples), int(seed), cfg)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7AB1E]))
    batch = cohort.samples["batch"].to_numpy()
    ids, biosamples = _sample_ids(rng, batch, cfg.n_batches)
    cohort.samples.insert(0, "sample_id", ids)
    bar = Progress(int(n_samples), "simulating", "sample", _log, bar=None if progress else False,
                   every=0.25, quiet=not progress)
    try:
        chrom, plasmid = simulate_counts(world, cohort, int(seed), cfg, progress=bar.update)
    finally:
        bar.close()
    collapse_rng = np.random.default_rng(np.random.SeedSequence([int(seed), COLLAPSE_STREAM]))
    gt, kleb, meta, flips = _ground_truth(world, cohort, ids, biosamples, rng, cfg, collapse_rng)
    cohort.samples["gt_label_noise"] = flips
    holdout = np.sort(rng.choice(len(ids), size=int(round(cfg.holdout_fraction * len(ids))), replace=False))
    cohort.samples["holdout"] = np.isin(np.arange(len(ids)), holdout)
    settings = _settings(n_samples, seed, hard, overrides, world_seed)
    prov = {"method": "simulated", "seed": int(seed), "hard": bool(hard), "simulator_version": SIMULATOR_VERSION,
            "world_seed": int(world_seed), "reference": "HS11286 (NC_016845.1) + 12 AMR plasmid contigs"}
    with atomic_dir(data_dir) as tmp:
        write_store(tmp / FILES["chrom_store"], chrom, ids, world.chrom_bins,
                    dict(prov, mq_threshold=20, store="chromosome"))
        write_store(tmp / FILES["plasmid_store"], plasmid, ids, world.plasmid_bins,
                    dict(prov, mq_threshold=0, store="plasmid"))
        write_tsv(tmp / FILES["amrfinder_gt"], gt)
        write_tsv(tmp / FILES["kleborate_gt"], kleb)
        write_tsv(tmp / FILES["metadata"], meta)
        for key in ("chrom_gene_coords", "plasmid_gene_coords", "plasmid_gene_families"):
            write_text(tmp / FILES[key], reference.packaged_path(FILES[key]).read_text(encoding="utf-8"))
        write_text(tmp / FILES["holdout_ids"], "".join(f"{ids[i]}\n" for i in holdout))
        write_tsv(tmp / FILES["gene_truth"], _gene_truth(world, cohort, ids))
        write_tsv(tmp / FILES["segments"], _segments_table(cohort, ids))
        samples = cohort.samples.copy()
        for col in samples.columns:
            if samples[col].dtype.kind == "f":
                samples[col] = samples[col].round(5)
        write_tsv(tmp / FILES["samples"], samples)
        write_tsv(tmp / FILES["bin_features"], bin_features(world))
        write_text(tmp / FILES["params"], _params_yaml(int(n_samples), int(seed), bool(hard), int(world_seed)))
        write_json(tmp / FILES["cohort"], {"settings": settings, "config": dataclasses.asdict(cfg),
                                           "world": world_record(world, cohort), "files": FILES,
                                           "seconds": round(time.perf_counter() - t0, 2)})
    if progress:
        _log(f"done in {time.perf_counter() - t0:.1f} s")
    return {name: data_dir / rel for name, rel in FILES.items()}


def _params_yaml(n_samples: int, seed: int, hard: bool, world_seed: int = WORLD_SEED) -> str:
    import yaml

    world = "" if world_seed == WORLD_SEED else f"_world{world_seed}"
    doc = {
        "tier": f"sim{n_samples}_seed{seed}{world}{'_hard' if hard else ''}", "seed": int(seed),
        "store_path": FILES["chrom_store"], "plasmid_store_path": FILES["plasmid_store"], "out_dir": "results",
        "kpsc_gt_path": FILES["amrfinder_gt"], "kpsc_kleborate_gt_path": FILES["kleborate_gt"],
        "kpsc_meta_path": FILES["metadata"], "chrom_gene_coords_path": FILES["chrom_gene_coords"],
        "plasmid_gene_coords_path": FILES["plasmid_gene_coords"],
        "plasmid_gene_families_path": FILES["plasmid_gene_families"], "holdout_ids_path": FILES["holdout_ids"],
    }
    return "# Simulated KpSC cohort written by cnvrock_lib.simulate; paths relative to this file.\n" + \
        yaml.safe_dump(doc, sort_keys=False)


def cohort_is_complete(data_dir, settings: dict | None = None) -> bool:
    """True when ``data_dir`` holds a complete cohort (with ``settings``, when given)."""
    data_dir = Path(data_dir)
    marker = data_dir / "cohort.json"
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    if settings is not None and recorded.get("settings") != settings:
        return False
    return all((data_dir / rel).exists() for rel in FILES.values())


def ensure_simulated(params) -> dict[str, Path] | None:
    """Simulate ``params.simulate`` into its ``data_dir`` unless a matching cohort is already there.

    ``params.simulate`` holds ``data_dir`` (absolute), ``n_samples``, optional ``seed``
    (default ``params.seed``), ``world_seed`` (default ``WORLD_SEED``), ``hard`` and :class:`SimConfig`
    overrides. Returns the file paths when it simulated, None when the cohort was already complete.
    """
    sim = dict(params.simulate or {})
    if "data_dir" not in sim:
        raise ParamsError("simulate: needs 'data_dir' (where the simulated cohort is written)")
    if "n_samples" not in sim:
        raise ParamsError("simulate: needs 'n_samples' (number of samples to simulate)")
    data_dir = Path(sim.pop("data_dir"))
    n = sim.pop("n_samples")
    seed = sim.pop("seed", params.values.get("seed", 42))
    hard = sim.pop("hard", False)
    progress = sim.pop("progress", True)
    world_seed = sim.pop("world_seed", WORLD_SEED)
    if isinstance(world_seed, bool) or not isinstance(world_seed, int) or world_seed < 0:
        raise ParamsError(f"simulate: 'world_seed' = {world_seed!r}; expected an integer >= 0")
    if not isinstance(hard, bool):
        raise ParamsError(f"simulate: 'hard' = {hard!r}; expected true or false")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParamsError(f"simulate: 'seed' = {seed!r}; expected an integer >= 0")
    SimConfig.make(hard=hard, **sim)  # validate before deciding anything
    if cohort_is_complete(data_dir, _settings(n, seed, hard, sim, world_seed)):
        return None
    return simulate_cohort(data_dir, n, seed, hard=hard, world_seed=world_seed, progress=progress, **sim)


