"""Stage 02: copy ratios, masking, noise, segments, QC and the artefacts of segment_cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from cnvrock_lib import segmentation as S
from cnvrock_lib import truth as T
from cnvrock_lib.errors import InputError, StoreError
from cnvrock_lib.copy_number import CN_STATES
from cnvrock_lib.params import load_params
from cnvrock_lib.reference import make_bins
from cnvrock_lib.store import write_store

CN0, CN1, CN2, CN3 = (CN_STATES.index(c) for c in (0.0, 1.0, 2.0, 3.0))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A small two-contig store with known CNVs and a synthetic 'reconstruction'.

    expected = per-sample depth × a smooth bias; sample 0 normal, 1 a deletion, 2 an
    amplification (CN 3), 3 very noisy (should fail QC); every sample has a stretch of
    low expected depth (masked) on contig A; sample 1's deletion contains part of it.
    """
    root = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(0)
    bins = make_bins({"chrA": 300_000, "chrB": 120_500})
    n, t = 8, bins.shape[0]
    depth = rng.uniform(300, 600, n)
    bias = 1 + 0.3 * np.sin(np.arange(t) / 25.0)
    expected = depth[:, None] * bias[None, :]
    expected[:, 60:70] = 3.0  # unmappable: expected depth below the threshold of 10 reads
    cn = np.ones((n, t))
    cn[1, 50:90] = 0.0
    cn[2, 150:175] = 3.0
    cn[2, 310:330] = 2.0  # on contig B
    lam = expected * cn
    counts = rng.poisson(lam).astype(np.float64)
    counts[3] = rng.poisson(expected[3] * rng.lognormal(0, 0.9, t))  # contamination-like noise
    store = write_store(root / "store", counts.astype(np.uint32), [f"S{i}" for i in range(n)], bins)
    out = root / "out"
    out.mkdir()
    np.save(out / "reconstructions.npy", expected.astype(np.float32))
    yaml_path = root / "tier.yaml"
    yaml_path.write_text(yaml.safe_dump({"store_path": str(store), "out_dir": str(out), "hmm_batch_size": 3}))
    return {"params_path": yaml_path, "params": load_params(yaml_path), "counts": counts, "expected": expected,
            "cn": cn, "bins": bins}


@pytest.fixture(scope="module")
def result(cohort):
    return S.segment_cohort(cohort["params"])


def test_copy_ratios_mask_low_expected_depth_but_keep_deletions():
    counts = np.array([[100, 0, 50, 200, 100, 1], [10, 10, 10, 10, 10, 10]], dtype=float)
    expected = np.array([[100, 100, 50, 100, 100, 5], [np.nan, 10, 10, 10, 10, 10]], dtype=float)
    ratios, mask = S.copy_ratios(counts, expected, low_cov_threshold=10)
    assert mask.tolist() == [[False, False, False, False, False, True], [True, False, False, False, False, False]]
    assert ratios.dtype == np.float32
    assert np.isnan(ratios[mask]).all()
    assert ratios[0, 1] == 0.0  # high expected, no reads: a deletion, not a masked bin
    assert np.nanmedian(ratios, axis=1).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(ratios[0, :5], [1, 0, 1, 2, 1])


def test_copy_ratios_rejects_mismatched_shapes():
    with pytest.raises(InputError, match="does not match expected depth shape"):
        S.copy_ratios(np.ones((2, 3)), np.ones((2, 4)), 10)


def test_noise_sd_is_robust_to_steps_outliers_and_masks():
    rng = np.random.default_rng(1)
    sd_true = np.array([0.05, 0.1, 0.3])
    x = 1 + rng.standard_normal((3, 4000)) * sd_true[:, None]
    x[:, 1000:1300] -= 1.0  # a deletion (ratio 0) ...
    x[:, 1300:1500] += 2.0  # ... and a gain to CN 3
    x[:, ::97] = 25.0  # outlier bins
    mask = np.zeros_like(x, bool)
    mask[:, 2000:2600] = True
    x[mask] = np.nan
    np.testing.assert_allclose(S.noise_sd(x, mask), sd_true, rtol=0.1)
    np.testing.assert_allclose(S.noise_sd(x, mask, method="diff"), sd_true, rtol=0.1)
    # noise shared by neighbouring bins: the level estimate sees it, first differences do not
    smooth = np.repeat(rng.standard_normal((1, 400)) * 0.2, 10, axis=1)
    no_mask = np.zeros_like(smooth, bool)
    assert S.noise_sd(1 + smooth, no_mask)[0] == pytest.approx(0.2, rel=0.15)
    assert S.noise_sd(1 + smooth, no_mask, method="diff")[0] < 0.05
    all_masked = S.noise_sd(np.full((1, 10), np.nan), np.ones((1, 10), bool))
    assert np.isnan(all_masked).all()


def test_segments_from_states_run_length_encodes_per_sample_and_contig():
    bins = make_bins({"A": 4000, "B": 2500})  # A: 4 bins, B: 3 bins (last partial)
    states = np.array([[2, 2, 0, 0, 0, 0, 2], [5, 5, 5, 5, 5, 5, 5]], dtype=np.int8)
    post = np.array([[1, .8, .6, .6, .9, .9, 1], [1] * 7], dtype=np.float32)
    ratios = np.array([[1, 1.2, np.nan, np.nan, 0.1, 0.0, 1], [3] * 7], dtype=np.float32)
    mask = np.isnan(ratios)
    seg = S.segments_from_states(states, post, ratios, mask, bins, ["s1", "s2"])
    assert list(seg.columns) == list(S.SEGMENT_COLUMNS)
    assert {c: str(seg[c].dtype) for c in seg.columns if c not in ("sample_id", "chrom")} == {
        c: d for c, d in S.SEGMENT_COLUMNS.items() if d != "str"}
    expect = pd.DataFrame({
        "sample_id": ["s1", "s1", "s1", "s1", "s2", "s2"],
        "chrom": ["A", "A", "B", "B", "A", "B"],
        "start": [1, 2001, 1, 2001, 1, 1],
        "end": [2000, 4000, 2000, 2500, 4000, 2500],
        "n_bins": [2, 2, 2, 1, 4, 3],
        "n_masked": [0, 2, 0, 0, 0, 0],
        "state": [2, 0, 0, 2, 5, 5],
        "cn": [1.0, 0.0, 0.0, 1.0, 3.0, 3.0],
    })
    pd.testing.assert_frame_equal(seg[expect.columns], expect, check_dtype=False)
    np.testing.assert_allclose(seg["mean_ratio"], [1.1, np.nan, 0.05, 1.0, 3.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(seg["confidence"], [0.9, 0.6, 0.9, 1.0, 1.0, 1.0], rtol=1e-6)


def test_segment_cohort_writes_the_documented_artefacts(cohort, result):
    out = cohort["params"].out_path
    n, t = cohort["counts"].shape
    ratios = np.load(out / "copy_ratios.npy")
    states = np.load(out / "states.npy")
    post = np.load(out / "state_posteriors.npy")
    assert (ratios.dtype, states.dtype, post.dtype) == (np.float32, np.int8, np.float32)
    assert ratios.shape == states.shape == post.shape == (n, t)
    assert np.isnan(ratios[:, 60:70]).all() and not np.isnan(ratios[:, :60]).any()
    assert ((post > 0) & (post <= 1 + 1e-6)).all()
    seg = pd.read_parquet(out / "segments.parquet")
    assert list(seg.columns) == list(S.SEGMENT_COLUMNS)
    assert seg.groupby("sample_id")["n_bins"].sum().to_dict() == {f"S{i}": t for i in range(n)}
    qc = pd.read_csv(out / "sample_qc.tsv", sep="\t")
    assert list(qc.columns) == S.QC_COLUMNS
    assert qc["usable_fraction"].tolist() == pytest.approx([(t - 10) / t] * n)
    assert (qc["n_segments"].to_numpy() == seg.groupby("sample_id", sort=False).size().to_numpy()).all()
    assert result.n_segments == len(seg)


def test_segment_cohort_calls_the_planted_copy_numbers(cohort, result):
    states = result.load("states")
    normal = [0, 4, 5, 6, 7]
    assert (states[normal] == CN1).mean() > 0.99
    assert (states[1, 50:90] == CN0).all()  # the deletion, including its masked stretch (60-70)
    assert (states[2, 150:175] == CN3).all()
    assert (states[2, 310:330] == CN2).all()
    assert (states[2, 60:70] == CN1).all()  # a masked gap in a normal region is imputed as CN 1
    qc = result.qc.set_index("sample_id")
    assert not qc.loc["S3", "qc_pass"] and qc.drop("S3")["qc_pass"].all()
    assert qc.loc["S3", "noise_sd"] > 3 * qc.drop("S3")["noise_sd"].max()
    examples = S.report.pick_examples(result.qc, result.segments())
    assert examples == {"amplified": "S2", "deleted": "S1", "normal": examples["normal"], "failed_qc": "S3"}
    assert examples["normal"] in {"S0", "S4", "S5", "S6", "S7"}


def test_segment_cohort_is_deterministic_and_batch_independent(cohort, result, tmp_path):
    raw = yaml.safe_load(cohort["params_path"].read_text())
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "out" / "reconstructions.npy", cohort["expected"].astype(np.float32))
    raw.update(out_dir=str(tmp_path / "out"), hmm_batch_size=512)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    again = S.segment_cohort(load_params(tmp_path / "t.yaml"))
    for name in ("copy_ratios", "states", "state_posteriors"):
        np.testing.assert_array_equal(again.load(name), result.load(name))
    pd.testing.assert_frame_equal(again.segments(), result.segments())


def test_em_refinement_runs_and_is_recorded(cohort, tmp_path):
    raw = yaml.safe_load(cohort["params_path"].read_text())
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "out" / "reconstructions.npy", cohort["expected"].astype(np.float32))
    raw.update(out_dir=str(tmp_path / "out"), hmm_em_iterations=2)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    res = S.segment_cohort(load_params(tmp_path / "t.yaml"))
    assert len(res.em_history) == 2 and res.em_history[1] > res.em_history[0]
    assert res.means[CN1] == pytest.approx(1.0, abs=0.05)
    summary = yaml.safe_load((tmp_path / "out" / "segment_summary.json").read_text())
    assert summary["em_iterations"] == 2 and len(summary["means"]) == 6


def test_reconstruction_errors_name_the_file(cohort, tmp_path):
    raw = yaml.safe_load(cohort["params_path"].read_text())
    raw.update(out_dir=str(tmp_path / "out"))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "t.yaml")
    with pytest.raises(InputError, match="reconstructions.npy.*run stage 01"):
        S.segment_cohort(params)
    (tmp_path / "out").mkdir()
    np.save(tmp_path / "out" / "reconstructions.npy", np.ones((3, 5), np.float32))
    with pytest.raises(StoreError, match=r"reconstructions.npy has shape \(3, 5\)"):
        S.segment_cohort(params)
    assert not (tmp_path / "out" / "states.npy").exists()


def test_truth_and_accuracy(cohort, result):
    truth = pd.DataFrame({"sample_id": ["S1", "S2", "S2", "nobody"], "chrom": ["chrA", "chrA", "chrB", "chrA"],
                          "start": [50_001, 150_001, 10_001, 1], "end": [90_000, 175_000, 30_000, 9_000],
                          "cn": [0.0, 3.0, 2.0, 0.0]})
    truth_cn = T.truth_cn_per_bin(truth, cohort["bins"], result.sample_ids)
    np.testing.assert_array_equal(truth_cn, cohort["cn"])
    mask = np.isnan(result.load("copy_ratios"))
    perfect = T.segmentation_accuracy(T.nearest_state(truth_cn), mask, truth_cn, cohort["bins"])
    assert perfect["bin_accuracy"] == 1.0 and perfect["breakpoints_found"] == perfect["breakpoints_true"] == 6
    assert perfect["breakpoint_error_median_bp"] == 0.0 and perfect["breakpoint_precision"] == 1.0
    assert perfect["recall_by_class"] == {"loss": 1.0, "normal": 1.0, "gain": 1.0}
    called = T.segmentation_accuracy(result.load("states")[[0, 1, 2]], mask[[0, 1, 2]], truth_cn[[0, 1, 2]],
                                     cohort["bins"])
    assert called["bin_accuracy"] > 0.99 and called["breakpoints_found"] == 6
    assert called["breakpoint_error_p90_bp"] <= 2000
    assert T.nearest_state(np.array([0.2, 0.7, 1.2, 2.6, 7.0])).tolist() == [CN0, 1, CN1, CN3, CN3]
    conf = T.state_confusion(T.nearest_state(truth_cn), mask, truth_cn)
    assert list(conf.index) == ["true CN 0", "true CN 1", "true CN 2", "true CN 3"]
    assert np.allclose(np.diag(conf.drop(columns="bins")[["called CN 0", "called CN 1", "called CN 2",
                                                           "called CN 3"]].to_numpy()), 1.0)
    assert conf["bins"].sum() == (~mask).sum()


def test_state_occupancy_counts_usable_bins():
    states = np.array([[2, 2, 0, 5], [2, 2, 2, 2]])
    mask = np.array([[False, False, False, True], [False] * 4])
    occ = S.report.state_occupancy(states, mask)
    assert occ.loc[0, "CN 1"] == pytest.approx(2 / 3) and occ.loc[0, "CN 3"] == 0
    assert occ.loc[1, "CN 1"] == 1.0


def test_report_helpers_and_figures(cohort, result):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from cnvrock_lib.plots import segments as P

    params = cohort["params"]
    assert "samples passing QC" in S.report.summary_table(result).index
    examples = S.report.pick_examples(result.qc, result.segments())
    bins, ratios, segs, labels = S.report.example_tracks(result, examples)
    assert ratios.shape == (4, len(bins)) and labels[0] == "amplified — S2"
    states, row_labels = S.report.heatmap_rows(result, params, max_samples=5)
    assert states.shape == (5, len(bins)) and len(row_labels) == 5
    occ = S.report.cohort_occupancy(result)
    np.testing.assert_allclose(occ.sum(axis=1), 1.0)
    assert S.report.accuracy_against_truth(params, result) is None  # not a simulated tier
    figures = [P.sample_tracks(bins, ratios, segs, labels), P.state_heatmap(states, row_labels),
               P.state_occupancy(occ), P.segment_lengths(result.segments()),
               P.qc_distribution(result.qc, params.cnv_min_cn1_proportion)]
    assert all(isinstance(f, Figure) for f in figures)
    assert len(figures[0].axes) == 4
    import matplotlib.pyplot as plt

    plt.close("all")
