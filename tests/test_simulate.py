"""Simulator: files and formats, determinism, the measured-back properties of
docs/simulation.md, ensure_simulated, atomic writes. Small cohorts (a few seconds each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import simulate as S
from cnvrock_lib.errors import InputError, ParamsError
from cnvrock_lib.params import load_params
from cnvrock_lib.reference import load_gene_families, load_gene_panel
from cnvrock_lib.store import open_store

N = 300


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """One 300-sample cohort shared by the tests of this file."""
    out = tmp_path_factory.mktemp("sim") / "cohort"
    S.simulate_cohort(out, N, seed=3, progress=False)
    return out


@pytest.fixture(scope="module")
def properties(cohort) -> pd.DataFrame:
    return S.measure_properties(cohort)


def test_writes_every_architecture_file_and_returns_their_paths(cohort):
    paths = {k: cohort / v for k, v in S.FILES.items()}
    for name, path in paths.items():
        assert path.exists(), name
    for rel in ("chrom_store", "plasmid_store", "amrfinder_gt.tsv", "kleborate_gt.tsv", "metadata.tsv",
                "chrom_gene_coords.tsv", "plasmid_gene_coords.tsv", "plasmid_gene_families.tsv",
                "holdout_ids.txt", "truth/gene_truth.tsv", "truth/segments.tsv", "truth/samples.tsv",
                "params.yaml"):
        assert (cohort / rel).exists(), rel
    assert not [p for p in cohort.parent.iterdir() if p.name.endswith(".tmp")]


def test_stores_load_with_reference_geometry_and_provenance(cohort):
    chrom = open_store(cohort / "chrom_store")
    plas = open_store(cohort / "plasmid_store")
    assert chrom.counts.shape == (N, 5334) and plas.counts.shape == (N, 2031)
    assert chrom.counts.dtype == np.uint32 and plas.counts.dtype == np.uint32
    assert list(chrom.sample_ids) == list(plas.sample_ids)
    assert chrom.provenance["method"] == "simulated" and chrom.provenance["seed"] == 3
    assert chrom.provenance["mq_threshold"] == 20 and plas.provenance["mq_threshold"] == 0
    assert len(plas.contig_slices()) == 12
    ids = chrom.sample_ids
    assert len(set(ids)) == N and all(s.startswith("SRR") and s[3:].isdigit() for s in ids)


def test_params_yaml_loads_with_relative_paths(cohort):
    prm = load_params(cohort / "params.yaml")
    assert Path(prm.store_path) == (cohort / "chrom_store").resolve()
    assert Path(prm.out_dir) == (cohort / "results").resolve()
    assert Path(prm.holdout_ids_path).is_file() and Path(prm.kpsc_kleborate_gt_path).is_file()
    text = (cohort / "params.yaml").read_text()
    assert str(cohort) not in text  # relative, so the folder can be moved


def test_tables_have_the_contract_columns_and_one_row_per_sample(cohort):
    ids = list(open_store(cohort / "chrom_store", check_values=False).sample_ids)
    gt = _read(cohort / "amrfinder_gt.tsv")
    assert list(gt.columns) == ["sample_id", "biosample", *S.AMRFINDER_COLUMNS]
    assert list(gt["sample_id"]) == ids and set(np.unique(gt[list(S.AMRFINDER_COLUMNS)])) <= {0, 1}
    kleb = _read(cohort / "kleborate_gt.tsv")
    assert kleb["blaSHV"].dtype.kind == "i" and (kleb["blaSHV"] >= 0).all()
    meta = _read(cohort / "metadata.tsv")
    assert list(meta.columns) == ["sample_id", "Species", "ST", "sample_accession"]
    assert set(meta["Species"]) <= set(S.SPECIES)
    assert meta["ST"].eq("").any() and meta["ST"].str.fullmatch(r"(ST\d+)?").all()
    truth = _read(cohort / "truth/gene_truth.tsv")
    genes = list(load_gene_panel(None, "plasmid").genes["gene"])
    families = load_gene_families()
    per_sample = 1 + len(genes) + len(families)
    assert len(truth) == N * per_sample
    assert set(truth["level"]) == {"chromosome", "member", "family"}
    seg = _read(cohort / "truth/segments.tsv")
    assert {"sample_id", "chrom", "start", "end", "cn"} <= set(seg.columns)
    assert (seg["start"] <= seg["end"]).all() and (seg["cn"] != 1).all()
    smp = _read(cohort / "truth/samples.tsv")
    expected = {"sample_id", "species", "ST", "depth", "ori_ter_ratio", "gc_batch", "low_quality", "mixed"}
    assert expected <= set(smp.columns)
    holdout = (cohort / "holdout_ids.txt").read_text().split()
    assert set(holdout) <= set(ids) and len(holdout) == round(0.25 * N)


def test_family_truth_is_member_sum_plus_off_panel_alleles(cohort):
    truth = _read(cohort / "truth/gene_truth.tsv")
    member = truth[truth["level"] == "member"].pivot(index="sample_id", columns="gene", values="true_cn")
    family = truth[truth["level"] == "family"].pivot(index="sample_id", columns="gene", values="true_cn")
    for fam, members in load_gene_families().items():
        assert (family[fam] >= member[members].sum(axis=1) - 1e-3).all(), fam


def test_same_seed_same_files_and_other_seed_differs(tmp_path):
    a = S.simulate_cohort(tmp_path / "a", 40, seed=11, progress=False)
    b = S.simulate_cohort(tmp_path / "b", 40, seed=11, progress=False)
    c = S.simulate_cohort(tmp_path / "c", 40, seed=12, progress=False)
    for store in ("chrom_store", "plasmid_store"):
        ca, cb, cc = (np.load(p[store] / "counts.npy") for p in (a, b, c))
        np.testing.assert_array_equal(ca, cb)
        assert ca.shape == cc.shape and not np.array_equal(ca, cc)
    for name in ("amrfinder_gt", "kleborate_gt", "metadata", "gene_truth", "segments", "samples", "holdout_ids",
                 "params", "bin_features"):
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert a["metadata"].read_bytes() != c["metadata"].read_bytes()


def test_counts_do_not_depend_on_other_samples_of_the_block_order(tmp_path):
    """Counts are drawn per fixed block of samples: a cohort is reproducible whatever the run."""
    world = S.build_world()
    cfg = S.SimConfig.make()
    coh = S.draw_cohort(world, 20, 5, cfg)
    c1, p1 = S.simulate_counts(world, coh, 5, cfg)
    c2, p2 = S.simulate_counts(world, coh, 5, cfg)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(p1, p2)


def test_every_measured_property_within_its_stated_tolerance(properties):
    bad = properties[~properties["ok"]]
    assert bad.empty, bad[["property", "low", "high", "measured"]].to_string()
    required = ["dispersion index, 1st pct of samples", "ori/ter fit error (log2), median",
                "share of Kp with blaSHV amplification", "lineage deletion size min (kb)",
                "lineage deletion size max (kb)", "blaSHV truth in Kq/Kv, max",
                "unmappable bins: count / median, 99.9th pct", "IncF-like backbone PCN, 95th pct",
                "blaCTX-M-15 PCN in non-carriers with flanking elements, median",
                "blaCTX-M-14 PCN in non-carriers with flanking elements, median",
                "low-depth samples: median count / normal 1st pct, max", "lag-1 correlation of log depth"]
    missing = set(required) - set(properties["property"])
    assert not missing


def test_ori_ter_regression_recovers_each_samples_ratio(cohort):
    chrom = open_store(cohort / "chrom_store", check_values=False)
    smp = _read(cohort / "truth/samples.tsv")
    feat = _read(cohort / "truth/bin_features.tsv")
    good = (smp["low_quality"].astype(str) == "False").to_numpy()
    counts = np.asarray(chrom.counts, dtype=float)
    # blind to the truth segments: drop unmappable bins and bins that read as deleted
    usable = (feat["mappability"] > 0.99).to_numpy()[None, :] & \
        (counts > 0.3 * np.median(counts, axis=1, keepdims=True))
    est = S.ori_ter_fit(counts, feat["replichore_distance"].to_numpy(), usable)
    true = smp["ori_ter_ratio"].to_numpy()
    assert true.min() >= 1.0 and true.max() <= 2.5
    assert np.median(np.abs(np.log2(est[good] / true[good]))) < 0.08
    assert np.corrcoef(est[good], true[good])[0, 1] > 0.95


def test_unmappable_bins_are_near_zero_in_every_normal_sample(cohort):
    chrom = open_store(cohort / "chrom_store", check_values=False)
    smp = _read(cohort / "truth/samples.tsv")
    feat = _read(cohort / "truth/bin_features.tsv")
    counts = np.asarray(chrom.counts, dtype=float)
    med = np.median(counts, axis=1)
    unm = (feat["mappability"] < 0.1).to_numpy()
    good = (smp["low_quality"].astype(str) == "False").to_numpy()
    assert unm.sum() >= 40
    assert feat.loc[unm, "repeat"].str.len().gt(0).all()
    assert (feat["repeat"] == "rRNA").sum() >= 8 * 5
    rel = counts[np.ix_(good, unm)] / med[good, None]
    assert np.median(rel) < 0.05 and (rel.max(axis=1) < 0.5).all()


def test_species_rules_for_blashv(cohort):
    smp = _read(cohort / "truth/samples.tsv")
    truth = _read(cohort / "truth/gene_truth.tsv")
    kleb = _read(cohort / "kleborate_gt.tsv").set_index("sample_id")
    shv = truth[truth["level"] == "chromosome"].set_index("sample_id")["true_cn"]
    nonkp = smp[(smp["species"] != S.SPECIES[0]) & (smp["mixed"].astype(str) == "False")]
    assert len(nonkp) > 10
    assert (shv[nonkp["sample_id"]] == 0).all()
    kp = smp[smp["species"] == S.SPECIES[0]]
    assert (shv[kp["sample_id"]] >= 1).all()
    # Kleborate counts in Kq/Kv: 0 unless a plasmid-borne copy (or a noisy label)
    no_pshv = nonkp[nonkp["plasmid_shv_pcn"] == 0]["sample_id"]
    assert (kleb.loc[no_pshv, "blaSHV"] > 0).mean() < 0.1
    amp = smp[smp["shv_amplified"].astype(str) == "True"]
    assert len(amp) == round(0.035 * len(kp))
    assert (amp["species"] == S.SPECIES[0]).all() and (amp["shv_cn"] >= 1.2).all()


def test_lineage_deletions_are_shared_within_a_lineage(cohort):
    smp = _read(cohort / "truth/samples.tsv")
    seg = _read(cohort / "truth/segments.tsv")
    lin = seg[seg["kind"] == "lineage_deletion"].merge(smp[["sample_id", "lineage", "mixed"]], on="sample_id")
    lin = lin[lin["mixed"].astype(str) == "False"]
    sets = lin.groupby("sample_id").apply(lambda d: (d["lineage"].iloc[0], tuple(zip(d["start"], d["end"]))),
                                          include_groups=False)
    by_lineage: dict = {}
    for lineage, events in sets:
        by_lineage.setdefault(lineage, set()).add(events)
    assert by_lineage and all(len(v) == 1 for v in by_lineage.values())
    size = lin["end"] - lin["start"] + 1
    assert size.min() >= 5000 and size.max() <= 100_000


def test_plasmid_pcn_ranges_by_type_in_truth(cohort):
    smp = _read(cohort / "truth/samples.tsv")
    world = S.build_world()
    for ptype, (lo, hi) in S.PCN_RANGE.items():
        contigs = world.contigs.loc[world.contigs["type"] == ptype, "contig"]
        vals = np.concatenate([smp[f"backbone_pcn:{c}"].to_numpy() for c in contigs]) if len(contigs) else []
        vals = np.asarray(vals)
        vals = vals[vals > 0]
        if len(vals) >= 20:
            p5, p95 = np.percentile(vals, [5, 95])
            assert lo * 0.8 <= p5 and p95 <= hi * 1.3, (ptype, p5, p95)


def test_low_quality_samples_are_flagged_and_shallow_or_noisy(cohort):
    smp = _read(cohort / "truth/samples.tsv")
    chrom = open_store(cohort / "chrom_store", check_values=False)
    med = np.median(np.asarray(chrom.counts, dtype=float), axis=1)
    lq = (smp["low_quality"].astype(str) == "True").to_numpy()
    assert lq.sum() == round(0.01 * N)
    assert smp.loc[lq, "low_quality_reason"].str.len().gt(0).all()
    shallow = lq & smp["low_quality_reason"].str.contains("low_depth").to_numpy()
    if shallow.any():
        assert med[shallow].max() < np.percentile(med[~lq], 1)


def test_hard_preset_is_shallower_and_more_biased(tmp_path):
    cfg = S.SimConfig.make(hard=True)
    assert cfg.depth_range[1] <= 60 and cfg.gc_strength > 1 and cfg.ori_ter_range[1] > 2.5
    paths = S.simulate_cohort(tmp_path / "hard", 30, seed=1, hard=True, progress=False)
    smp = _read(paths["samples"])
    assert smp["depth"].max() <= 60
    assert open_store(paths["chrom_store"]).provenance["hard"] is True


def test_overrides_are_validated_and_applied(tmp_path):
    with pytest.raises(ParamsError, match="shv_amp_rat.*did you mean 'shv_amp_rate'"):
        S.SimConfig.make(shv_amp_rat=0.1)
    with pytest.raises(ParamsError, match="depth_range"):
        S.SimConfig.make(depth_range=50)
    paths = S.simulate_cohort(tmp_path / "o", 40, seed=2, progress=False, depth_range=[50, 60], low_quality_rate=0)
    smp = _read(paths["samples"])
    assert smp["depth"].between(50, 60).all()


class _P:
    """The part of Params that ensure_simulated reads."""

    def __init__(self, simulate, seed=42):
        self.simulate = simulate
        self.values = {"seed": seed}


def test_ensure_simulated_creates_once_and_redoes_on_changed_settings(tmp_path):
    data = tmp_path / "data"
    assert S.ensure_simulated(_P({"data_dir": str(data), "n_samples": 20, "progress": False})) is not None
    stamp = (data / "cohort.json").stat().st_mtime_ns
    assert S.ensure_simulated(_P({"data_dir": str(data), "n_samples": 20, "progress": False})) is None
    assert (data / "cohort.json").stat().st_mtime_ns == stamp
    S.ensure_simulated(_P({"data_dir": str(data), "n_samples": 25, "progress": False}))
    assert open_store(data / "chrom_store").n_samples == 25
    S.ensure_simulated(_P({"data_dir": str(data), "n_samples": 25, "progress": False}, seed=7))
    assert open_store(data / "chrom_store").provenance["seed"] == 7


def test_ensure_simulated_redoes_an_incomplete_cohort(tmp_path):
    data = tmp_path / "data"
    S.simulate_cohort(data, 20, seed=1, progress=False)
    (data / "truth" / "segments.tsv").unlink()
    assert not S.cohort_is_complete(data)
    S.ensure_simulated(_P({"data_dir": str(data), "n_samples": 20, "seed": 1, "progress": False}))
    assert S.cohort_is_complete(data)


def test_bad_settings_and_foreign_directories_are_refused(tmp_path):
    with pytest.raises(ParamsError, match="n_samples"):
        S.ensure_simulated(_P({"data_dir": str(tmp_path / "x")}))
    with pytest.raises(ParamsError, match="unknown setting 'depht_range'"):
        S.ensure_simulated(_P({"data_dir": str(tmp_path / "x"), "n_samples": 5, "depht_range": [1, 2]}))
    with pytest.raises(ParamsError, match="n_samples"):
        S.simulate_cohort(tmp_path / "y", 0)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="refusing to replace"):
        S.simulate_cohort(foreign, 5, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_failed_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(S.files, "_gene_truth", boom)
    with pytest.raises(RuntimeError):
        S.simulate_cohort(tmp_path / "dead", 10, progress=False)
    assert not (tmp_path / "dead").exists()
    assert not list(tmp_path.iterdir())


def test_progress_goes_to_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNVROCK_BATCH", "1")
    S.simulate_cohort(tmp_path / "p", 10, progress=True)
    captured = capsys.readouterr()
    assert "10/10 samples" in captured.err and captured.out == ""


def test_doc_figures_render_from_a_cohort(cohort, tmp_path):
    from matplotlib.figure import Figure

    from cnvrock_lib.plots import simulation as SP

    data = SP.load_cohort(cohort)
    ex = SP.pick_examples(data)
    assert {"low_ori_ter", "high_ori_ter", "normal", "shv_amp_high"} <= set(ex)
    assert isinstance(SP.depth_track(data, ex["normal"]), Figure)
    written = SP.render_doc_figures(cohort, tmp_path / "img", dpi=40)
    assert {p.name for p in written} >= {"sim_ori_ter.png", "sim_gc_bias.png", "sim_shv_amplification.png",
                                         "sim_lineage_deletion.png", "sim_mappability.png", "sim_genome_tracks.png"}
    assert all(p.stat().st_size > 1000 for p in written)
