"""The generalisation benchmark's pure parts (bench/generalisation.py): plan, scoring, aggregation, document.

Constructed call and truth tables only; nothing is simulated or trained, nothing is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import matthews_corrcoef

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import generalisation as G  # noqa: E402
from cnvrock_lib.simulate import DEV_WORLD_SEEDS, TEST_WORLD_SEEDS  # noqa: E402

FAMILIES = ["blaKPC", "blaTEM"]


def _ids(n: int, prefix: str = "s") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def _truth(n: int = 40, n_pos: int = 10) -> pd.DataFrame:
    """blaSHV (extra dosage and chromosomal) and two families; the first n_pos samples are positive."""
    ids = _ids(n)
    pos = np.arange(n) < n_pos
    rows = [pd.DataFrame({"sample_id": ids, "gene": G.SHV, "level": "chromosome", "label": G.EXTRA,
                          "positive": pos, "true_value": np.where(pos, 2.0, 1.0)}),
            pd.DataFrame({"sample_id": ids, "gene": G.SHV, "level": "chromosome", "label": G.CHROMOSOMAL,
                          "positive": pos & (np.arange(n) % 2 == 0), "true_value": np.where(pos, 2.0, 1.0)})]
    for fam in FAMILIES:
        rows.append(pd.DataFrame({"sample_id": ids, "gene": fam, "level": "family", "label": G.PRESENCE,
                                  "positive": pos, "true_value": np.where(pos, 3.0, 0.0)}))
    rows.append(pd.DataFrame({"sample_id": ids, "gene": "blaKPC-2", "level": "member", "label": G.PRESENCE,
                              "positive": pos, "true_value": np.where(pos, 3.0, 0.0)}))
    return pd.concat(rows, ignore_index=True)


def _calls(method: str, truth: pd.DataFrame, flip: dict[str, int] | None = None,
           uncallable: int = 0) -> pd.DataFrame:
    """Perfect calls for every (gene, level) of ``truth`` except ``flip[gene]`` negatives called positive."""
    flip = flip or {}
    frames = []
    base = truth.drop_duplicates(["sample_id", "gene", "level"])
    for (gene, level), d in base.groupby(["gene", "level"], sort=False):
        pos = d.positive.to_numpy(bool).copy()
        neg = np.flatnonzero(~pos)[:flip.get(gene, 0)]
        pos[neg] = True
        call = np.where(pos, 2 if level == "chromosome" else 1, 1 if level == "chromosome" else 0)
        call[:uncallable] = -1
        frames.append(pd.DataFrame({"method": method, "sample_id": d.sample_id, "gene": gene, "level": level,
                                    "call": call, "value": d.true_value + 0.1, "lo": d.true_value - 0.5,
                                    "hi": d.true_value + 0.5}))
    return pd.concat(frames, ignore_index=True)


def test_plan_reports_on_test_worlds_only_and_marks_every_third_hard():
    jobs = G.plan_jobs("default")
    assert {j.world_seed for j in jobs} <= set(TEST_WORLD_SEEDS)
    assert len({j.world_seed for j in jobs if j.n_samples == 300}) >= 10
    assert {j.n_samples for j in jobs} == {300, 1000, 5000}
    assert all(j.hard == (j.index % 3 == 2) for j in jobs)
    big = [j for j in jobs if j.n_samples == 5000]
    assert any(j.hard for j in big) and any(not j.hard for j in big)
    assert len({j.key for j in jobs}) == len(jobs)
    quick = G.plan_jobs("quick")
    assert {j.world_seed for j in quick} <= set(DEV_WORLD_SEEDS) - {DEV_WORLD_SEEDS[0]}
    assert not {j.world_seed for j in quick} & set(TEST_WORLD_SEEDS)


def test_training_schedule_keeps_the_step_count_across_sizes():
    small, big = G.training_overrides(300, 30), G.training_overrides(5000, 30)
    assert small["epochs"] > big["epochs"] >= 2
    for n in (300, 1000, 5000):
        ep = G.training_overrides(n, 30)["epochs"]
        per_epoch = -(-int(n * 0.75 * 0.9) // 128)
        assert ep * per_epoch >= 30


def test_gated_mcc_needs_five_of_each_class():
    assert np.isnan(G.gated_mcc(tp=4, fp=0, fn=0, tn=50))
    assert np.isnan(G.gated_mcc(tp=10, fp=0, fn=0, tn=4))
    y = [1] * 8 + [0] * 2 + [0] * 40 + [1] * 3
    p = [1] * 8 + [0] * 2 + [0] * 40 + [0] * 3
    assert G.gated_mcc(8, 0, 3, 42) == pytest.approx(matthews_corrcoef(y, p))


def test_score_methods_counts_positives_by_level_and_leaves_out_uncallable():
    truth = _truth()
    calls = _calls("A", truth, flip={G.SHV: 3}, uncallable=2)
    scores = G.score_methods(calls, truth).set_index(["gene", "label"])
    shv = scores.loc[(G.SHV, G.EXTRA)]
    # 2 uncallable positives left out; 3 negatives called 2
    assert (shv.n, shv.n_pos, shv.tp, shv.fp, shv.fn) == (38, 8, 8, 3, 0)
    assert shv.ppv == pytest.approx(8 / 11)
    assert shv.recall == 1.0
    assert shv.abs_err_median == pytest.approx(0.1)
    assert shv.coverage == 1.0 and shv.coverage_pos == 1.0
    kpc = scores.loc[("blaKPC", G.PRESENCE)]
    assert kpc.mcc == pytest.approx(1.0) and kpc.fp == 0
    # a chromosomal call of 1 is not a positive; a plasmid call of 1 is
    one = calls.assign(call=np.where(calls.call >= 0, 1, -1))
    s1 = G.score_methods(one, truth).set_index(["gene", "label"])
    assert s1.loc[(G.SHV, G.EXTRA), "tp"] == 0
    assert s1.loc[("blaKPC", G.PRESENCE), "tp"] == 8


def test_score_methods_coverage_counts_truth_outside_the_interval():
    truth = _truth()
    calls = _calls("A", truth)
    shifted = calls.assign(lo=calls.lo + 0.6, hi=calls.hi + 0.6)  # truth now below every interval
    s = G.score_methods(shifted, truth).set_index(["gene", "label"])
    assert s.loc[(G.SHV, G.EXTRA), "coverage"] == 0.0
    no_iv = calls.assign(lo=np.nan, hi=np.nan)
    assert np.isnan(G.score_methods(no_iv, truth).set_index(["gene", "label"]).loc[(G.SHV, G.EXTRA), "coverage"])


def test_paired_shv_scores_both_methods_on_the_samples_both_call():
    truth = _truth()
    ref = _calls(G.CNVROCK, truth)
    alt = _calls("alt", truth, flip={G.SHV: 6})
    # the alternative calls only the last 30 samples: 10 positives lie in the first 10, so 0 positives remain
    alt_sub = alt[alt.sample_id.isin(_ids(40)[10:])]
    p = G.paired_shv(pd.concat([ref, alt_sub]), truth)
    assert p.loc[0, "n"] == 30 and p.loc[0, "n_pos"] == 0
    assert np.isnan(p.loc[0, "mcc_reference"])
    p2 = G.paired_shv(pd.concat([ref, alt]), truth).iloc[0]
    assert p2.n == 40 and p2.mcc_reference == pytest.approx(1.0) and p2.mcc_method < 1.0
    # only the named alternatives are paired (the supervised option is CNVRock itself)
    sup = _calls(G.SUPERVISED, truth)
    p3 = G.paired_shv(pd.concat([ref, alt, sup]), truth, others=["alt"])
    assert p3.method.tolist() == ["alt"]


def _scores_for(key: str, flips: dict[str, int], method: str = G.CNVROCK, **tag) -> pd.DataFrame:
    truth = _truth()
    return G.score_methods(_calls(method, truth, flip=flips), truth).assign(key=key, **tag)


def test_lowest_mcc_takes_blashv_extra_dosage_and_families_only():
    s = _scores_for("w1", {"blaTEM": 8, "blaKPC-2": 30})   # the member is worse but is not a target
    low = G.lowest_mcc(s, FAMILIES).iloc[0]
    assert low.worst == "blaTEM"
    assert low.n_targets == 3
    tem = s[(s.gene == "blaTEM")].mcc.iloc[0]
    assert low.lowest_mcc == pytest.approx(tem)
    # a target without an MCC (too few positives) is left out, not counted as 0
    s2 = s.copy()
    s2.loc[s2.gene == "blaTEM", "mcc"] = np.nan
    low2 = G.lowest_mcc(s2, FAMILIES).iloc[0]
    assert low2.n_targets == 2 and low2.lowest_mcc == pytest.approx(1.0)


def test_target_summary_reports_misses_and_paired_losses():
    scores = pd.concat([_scores_for("w1", {}), _scores_for("w2", {"blaTEM": 10}), _scores_for("w3", {G.SHV: 20})])
    low = G.lowest_mcc(scores, FAMILIES)
    paired = pd.DataFrame({"key": ["w1", "w2", "w3"], "method": "raw", "label": G.EXTRA, "n": 40, "n_pos": 10,
                           "mcc_reference": [1.0, 0.9, 0.5], "mcc_method": [0.8, 0.9, 0.7]})
    summary = G.target_summary(low, paired, scores)
    per_world = low.set_index("key").lowest_mcc
    assert summary["n_cohorts"] == 3
    assert summary["median_lowest_mcc"] == pytest.approx(per_world.median())
    assert summary["worst_lowest_mcc"] == pytest.approx(per_world.min())
    assert summary["worst_key"] == per_world.idxmin()
    assert not summary["worst_met"]
    assert summary["paired"]["raw"] == {"cohorts": 3, "reference_at_least": 2, "median_difference": pytest.approx(0.0)}
    assert not summary["paired_met"]
    # every true dosage lies inside the constructed intervals: coverage 1.0 is above the 0.93-0.97 band
    assert summary["coverage"]["blaSHV:all"] == 1.0
    assert not summary["coverage_met"]


def test_target_summary_meets_targets_on_good_worlds():
    scores = pd.concat([_scores_for(f"w{i}", {}) for i in range(3)])
    paired = pd.DataFrame({"key": ["w0"], "method": "raw", "label": G.EXTRA, "n": 40, "n_pos": 10,
                           "mcc_reference": [1.0], "mcc_method": [0.9]})
    summary = G.target_summary(G.lowest_mcc(scores, FAMILIES), paired, scores)
    assert summary["median_met"] and summary["worst_met"] and summary["paired_met"]


def test_shv_bin_share_from_overlap_geometry():
    bins = np.array([("c", 1, 1000), ("c", 1001, 2000), ("c", 2001, 3000)],
                    dtype=[("chrom", "U8"), ("start", "i8"), ("end", "i8")])
    # a gene of 861 bp covering 598 bp of bin 1 and 263 bp of bin 2 (blaSHV's layout)
    share = G.shv_bin_share(bins, "c", 403, 1263)
    assert share == pytest.approx((598 ** 2 + 263 ** 2) / 1000 / 861)
    # a gene filling one whole bin adds a whole copy
    assert G.shv_bin_share(bins, "c", 1001, 2000) == pytest.approx(1.0)


def test_document_section_says_no_where_a_target_is_missed():
    truth = _truth()
    scores, paired, records = [], [], []
    for i, flips in enumerate(({}, {"blaTEM": 12})):
        key = f"test{i:02d}_w{i}_n300"
        calls = pd.concat([_calls(G.CNVROCK, truth, flip=flips), _calls(G.RAW, truth, flip={G.SHV: 4})])
        tag = {"key": key, "world_seed": i, "n_samples": 300, "hard": i == 1}
        scores.append(G.score_methods(calls, truth).assign(**tag))
        paired.append(G.paired_shv(calls, truth).assign(**tag))
        world = {"depth_low": 10.0, "depth_high": 40.0, "shv_amp_rate": 0.1, "plasmid_shv_rate": 0.02,
                 "kleborate_collapse_rate": 0.5, "background_pcn:blaKPC-2": 0.3}
        records.append({"key": key, "job": {"world_seed": i, "n_samples": 300, "hard": i == 1}, "world": world,
                        "n_holdout": 40, "schedule": {"epochs": 15}, "families": FAMILIES, "load_average": 3.0,
                        "rules": {G.CNVROCK: {"chromosome": ["cohort_dosage"]}, G.ORIGINAL: {}}})
    scores, paired = pd.concat(scores, ignore_index=True), pd.concat(paired, ignore_index=True)
    text = G.doc_text(scores, paired, records, "default", G.MODES["default"], "cmd", None, "img/x.png")
    assert "| worst cohort ≥ 0.80 |" in text
    worst_line = next(line for line in text.splitlines() if line.startswith("| worst cohort"))
    assert worst_line.endswith("**no** |") and "test01_w1_n300" in worst_line
    assert "cohort_dosage" in text
    assert text.count("\n| 0 | 300 |") + text.count("\n| 1 | 300 |") == 2
