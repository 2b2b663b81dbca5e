"""The cohort-learned decision layer (issue #14): no truth reaches a call, calibrated intervals on
autocorrelated flanks, and an accuracy floor on a small fresh simulated cohort of a development world."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import calling
from cnvrock_lib import truth as T
from cnvrock_lib.calling import decision as D
from cnvrock_lib.calling.quick import quick_stage_inputs
from cnvrock_lib.errors import ParamsError
from cnvrock_lib.params import load_params
from cnvrock_lib.simulate import DEV_WORLD_SEEDS, simulate_cohort

# A development world (never a test world) and a cohort seed used nowhere else: not the smoke/demo world.
WORLD = DEV_WORLD_SEEDS[2]
N_SAMPLES = 200
SEED = 7141
# Lowest MCC over blaSHV (extra dosage) and the plasmid families with at least MIN_POS carriers.
FLOOR = 0.75
MIN_POS = 10


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("decision")
    data = root / "data"
    simulate_cohort(data, N_SAMPLES, seed=SEED, world_seed=WORLD, progress=False)
    quick_stage_inputs(data, root / "out", bootstrap_replicates=200)
    return data, root / "out"


def _calls(data, out, **overrides):
    params = load_params(data / "params.yaml", overrides={"out_dir": str(out), "bootstrap_replicates": 200,
                                                           **overrides})
    return calling.stage.call_genes(params, write=False)


def _lowest_mcc(result, data) -> tuple[float, pd.DataFrame]:
    truth = pd.read_csv(data / "truth" / "gene_truth.tsv", sep="\t", dtype={"sample_id": str})
    samples = pd.read_csv(data / "truth" / "samples.tsv", sep="\t", dtype={"sample_id": str})
    scores = T.decision_scores(result.gene_calls, result.plasmid_calls, truth, samples)
    scored = scores[scores.n_pos >= MIN_POS]
    return float(scored.mcc.min()), scores


def test_shuffled_truth_leaves_every_call_unchanged(sim, tmp_path):
    data, out = sim
    before = _calls(data, out)
    shuffled = tmp_path / "data"
    shutil.copytree(data, shuffled)
    rng = np.random.default_rng(0)
    for rel in ("truth/gene_truth.tsv", "truth/samples.tsv", "truth/segments.tsv", "kleborate_gt.tsv",
                "amrfinder_gt.tsv"):
        frame = pd.read_csv(shuffled / rel, sep="\t", dtype=str, keep_default_na=False)
        cols = [c for c in frame.columns if c != "sample_id"]
        frame[cols] = frame[cols].to_numpy()[rng.permutation(len(frame))]
        frame.to_csv(shuffled / rel, sep="\t", index=False)
    assert not pd.read_csv(shuffled / "truth/gene_truth.tsv", sep="\t").equals(
        pd.read_csv(data / "truth/gene_truth.tsv", sep="\t"))
    after = _calls(shuffled, out)
    pd.testing.assert_frame_equal(before.gene_calls, after.gene_calls)
    pd.testing.assert_frame_equal(before.plasmid_calls, after.plasmid_calls)
    pd.testing.assert_frame_equal(before.thresholds, after.thresholds)


def test_accuracy_floor_and_the_original_rules_fall_below_it(sim):
    data, out = sim
    default = _calls(data, out)
    assert set(default.gene_calls.call_rule) == {"cohort_dosage"}
    assert set(default.plasmid_calls[default.plasmid_calls.status == "ok"].call_rule) <= \
        {"cohort_gmm:backbone", "cohort_gmm:threshold", "cohort_gmm:crosstalk"}
    lowest, scores = _lowest_mcc(default, data)
    assert lowest >= FLOOR, scores.to_string()
    original = _calls(data, out, pcn_threshold_method="fixed", chrom_call_rule="original")
    assert set(original.gene_calls.call_rule) == {"original"}
    assert set(original.plasmid_calls.call_rule) <= {"fixed", ""}
    lowest_original, scores = _lowest_mcc(original, data)
    assert lowest_original < FLOOR, scores.to_string()


def test_original_config_gets_the_new_default_unless_the_rule_is_selected():
    params = load_params("tests/data/seed_config_exp32.yaml", check_files=False)
    assert params.pcn_absent_threshold == 0.20 and params.cnv_crr_amp_threshold == 1.75
    assert params.pcn_threshold_method == "cohort_gmm" and params.chrom_call_rule == "cohort_dosage"
    params = load_params("tests/data/seed_config_exp32.yaml", check_files=False,
                         overrides={"chrom_call_rule": "original", "pcn_threshold_method": "fixed"})
    assert calling.ChromConfig.from_params(params).call_rule == "original"
    assert calling.PlasmidConfig.from_params(params).threshold_method == "fixed"


def _ar1(rng, n_rows, n_cols, rho, sd):
    out = np.empty((n_rows, n_cols))
    out[:, 0] = rng.normal(0, sd, n_rows)
    for j in range(1, n_cols):
        out[:, j] = rho * out[:, j - 1] + np.sqrt(1 - rho ** 2) * rng.normal(0, sd, n_rows)
    return out


def test_calibrated_interval_covers_dosage_on_autocorrelated_flanks():
    """Flank copy ratios with AR(1) noise (lag-1 correlation 0.8) and a per-sample gene-bin bias that
    the count bootstrap cannot see: the bootstrap interval alone under-covers; with the cohort's
    model-error term it holds the true dosage about 95 % of the time."""
    rng = np.random.default_rng(11)
    n, n_flank = 800, 120
    true = np.where(rng.random(n) < 0.15, rng.choice([2.0, 3.0, 4.5], n), 1.0)
    depth = rng.uniform(150, 1500, n)                                  # reads per bin at one copy
    flank_ratio = np.exp(_ar1(rng, n, n_flank, 0.8, 0.06))
    flank_counts = rng.poisson(depth[:, None] * flank_ratio)
    bias = np.exp(rng.normal(0, 0.08, n))                              # model error of the gene bins
    weights = np.array([600.0, 260.0])
    gene_counts = rng.poisson(depth[:, None] * (true * bias)[:, None] * np.ones((1, 2)))
    gene_ratio = gene_counts / depth[:, None]
    flank_obs = flank_counts / depth[:, None]
    value, _ = calling.chromosomal.crr(gene_ratio, weights, flank_obs)
    phi = calling.intervals.count_dispersion(flank_obs, flank_counts)
    reps = calling.intervals.bootstrap_crr(gene_ratio, gene_counts.astype(float), weights, flank_obs, phi, 400,
                                           np.random.default_rng(3))
    b_lo, b_hi = calling.intervals.bootstrap_interval(reps)
    boot_cover = np.mean((b_lo <= true) & (true <= b_hi))
    fit = D.fit_dosage(value, b_lo, b_hi)
    lo, hi = D.widen_interval(value, b_lo, b_hi, fit.model_error_sd)
    cover = np.mean((lo <= true) & (true <= hi))
    assert boot_cover < 0.85
    assert 0.92 <= cover <= 0.98
    assert 0.95 <= fit.one_copy_level <= 1.05
    calls = D.extra_dosage_call(value, lo, np.zeros(n), fit, 0.5)
    assert T.mcc(true >= 2, calls == 2) > 0.9


def test_dosage_origin_tells_tandem_from_elsewhere():
    call = np.array([2, 2, 1])
    crr = np.array([3.0, 1.6, 1.0])
    edges = np.array([[2.8, 2.5, 1.0, 1.0], [1.0, 1.02, 0.98, 1.0], [1.0, 1.0, 1.0, 1.0]])
    assert D.dosage_origin(call, crr, edges, np.ones(3)).tolist() == ["tandem", "elsewhere", ""]


def test_cohort_threshold_models_zero_spike_and_cross_talk():
    rng = np.random.default_rng(5)
    zeros = np.zeros(150)
    cross_talk = np.exp(rng.normal(np.log(0.15), 0.3, 120))          # non-carriers reading 0.1-0.3 copies
    carriers = np.exp(rng.normal(np.log(4.0), 0.3, 30))
    fit = calling.thresholds.fit_cohort_threshold(np.concatenate([zeros, cross_talk, carriers]))
    assert fit.rule == "carrier_posterior"
    assert cross_talk.max() < fit.threshold < carriers.min()
    # without carriers, the threshold sits above the background instead of splitting it
    fit = calling.thresholds.fit_cohort_threshold(np.concatenate([zeros, cross_talk]))
    assert fit.rule == "background_tail" and fit.threshold > np.quantile(cross_talk, 0.99)


def test_on_backbone_needs_the_backbone_and_a_matching_gene_pcn():
    pcn = np.array([2.0, 0.4, 2.0, np.nan])
    bb = np.array([2.2, 2.2, 0.0, 2.0])
    assert D.on_backbone(pcn, bb).tolist() == [True, False, False, False]


def test_crosstalk_model_separates_carriers_inside_the_background():
    """Non-carriers read 0.3 copies per element copy carried elsewhere (0-12 copies), which an
    element bin elsewhere in the store shows; carriers at 0.6-3 copies lie inside that background,
    so no PCN threshold separates them, but the residual of the cross-talk model does."""
    rng = np.random.default_rng(8)
    n = 400
    elements = rng.gamma(1.5, 2.0, n)
    carrier = rng.random(n) < 0.1
    pcn = 0.3 * elements * np.exp(rng.normal(0, 0.05, n)) + np.where(carrier, rng.uniform(0.6, 3.0, n), 0.0)
    excess = np.column_stack([rng.normal(0, 0.05, (n, 5)), 0.5 * elements + rng.normal(0, 0.05, n)])
    fit, res = D.fit_crosstalk(pcn, excess, np.arange(6))
    assert fit.credible and fit.bins[0] == 5
    hits = D.crosstalk_carriers(pcn, res, fit, 0.5)
    best_threshold = max(np.nan_to_num(T.mcc(carrier, pcn >= c), nan=-1.0) for c in np.unique(pcn))
    assert best_threshold < 0.75 < T.mcc(carrier, hits)
    # an element bin that says nothing about the gene: no model
    fit, _ = D.fit_crosstalk(pcn, excess[:, :5], np.arange(5))
    assert not fit.credible


def test_supervised_learns_from_training_labels_only(sim, tmp_path):
    data, out = sim
    result = _calls(data, out, pcn_threshold_method="supervised")
    ok = result.plasmid_calls[result.plasmid_calls.status == "ok"]
    fam = result.thresholds[result.thresholds.level == "family"]
    # families without a GT column (blaTEM) or with one class among the training labels keep the fixed threshold
    assert set(ok.call_rule) == {"supervised:training_labels", "fixed"}
    assert set(fam[fam.supervised_n_train > 0].method_used) == {"supervised"}
    # flipping every hold-out sample's AMRFinder label changes nothing; flipping training labels does
    held = set((data / "holdout_ids.txt").read_text().split())
    gt = pd.read_csv(data / "amrfinder_gt.tsv", sep="\t", dtype={"sample_id": str})
    families = [c for c in gt.columns if c in set(fam.gene)]
    for subset, same in ((gt.sample_id.isin(held), True), (~gt.sample_id.isin(held), False)):
        flipped = gt.copy()
        flipped.loc[subset, families] = 1 - flipped.loc[subset, families]
        path = tmp_path / ("holdout_flipped.tsv" if same else "train_flipped.tsv")
        flipped.to_csv(path, sep="\t", index=False)
        other = _calls(data, out, pcn_threshold_method="supervised", kpsc_gt_path=str(path))
        assert other.plasmid_calls.equals(result.plasmid_calls) == same


def test_supervised_without_a_holdout_list_is_a_one_line_error(sim):
    data, out = sim
    params = load_params(data / "params.yaml", overrides={"out_dir": str(out), "holdout_ids_path": None,
                                                           "pcn_threshold_method": "supervised"})
    with pytest.raises(ParamsError, match="supervised needs holdout_ids_path"):
        calling.stage.call_genes(params, write=False)
