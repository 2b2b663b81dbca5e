"""Baselines of the benchmark (cnvrock_lib.baselines) on small constructed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import baselines as B
from cnvrock_lib import calling, geometry
from cnvrock_lib.errors import InputError
from cnvrock_lib.reference import make_bins

RULE = calling.chromosomal.ChromRule()


def _panel(start: int, end: int, contig: str = "chr") -> pd.DataFrame:
    return pd.DataFrame({"gene": ["g"], "contig": [contig], "start": [start], "end": [end]})


def test_median_normalised_ratios_centre_each_sample_and_mask_low_depth():
    counts = np.array([[100, 100, 300, 100], [20, 20, 20, 0], [2, 2, 2, 2]], dtype=float)
    medians = np.array([100.0, 20.0, 2.0])
    ratios, mask = B.median_normalised_ratios(counts, medians, low_cov_threshold=10)
    assert ratios[0].tolist() == [1, 1, 3, 1]
    assert ratios[1, 3] == 0            # a zero count is a deletion, not a masked bin
    assert mask[2].all() and np.isnan(ratios[2]).all()
    with pytest.raises(InputError, match="one median"):
        B.median_normalised_ratios(counts, medians[:2], 10)


def test_bin_start_rule_drops_the_bin_a_gene_starts_inside():
    bins = make_bins({"chr": 10_000})
    idx, w = B.bin_start_gene_bins(bins, "chr", 2_501, 4_200)   # bins 2501-3000 (start 2001), 3001-4000, 4001-4200
    assert idx.tolist() == [3, 4] and w.tolist() == [1, 1]
    overlap, _ = geometry.gene_bin_weights(bins, "chr", 2_501, 4_200)
    assert overlap.tolist() == [2, 3, 4]
    idx, _ = B.bin_start_gene_bins(bins, "chr", 2_100, 2_900)    # inside one bin it does not start
    assert idx.size == 0


def test_global_flank_is_the_whole_contig_and_local_is_bounded():
    bins = make_bins({"chr": 50_000, "other": 5_000})
    gi, _, local = B.gene_geometry(bins, "chr", 20_001, 21_000, padding=3_000)
    _, _, glob = B.gene_geometry(bins, "chr", 20_001, 21_000, padding=3_000, flank="global")
    assert gi.tolist() == [20]
    assert local.tolist() == [17, 18, 19, 21, 22, 23]
    assert glob.size == 49 and 20 not in glob and (bins["chrom"][glob] == "chr").all()
    with pytest.raises(InputError, match="flank"):
        B.gene_geometry(bins, "chr", 1, 10, 100, flank="nearby")


def test_threshold_call_codes():
    codes = B.threshold_call(np.array([0.1, 1.0, 1.74, 1.75, np.nan]), amp_threshold=1.75)
    assert codes.tolist() == [0, 1, 1, 2, -1]


def test_global_flank_misses_a_local_depth_shift():
    """A gene at CN 1 inside a region whose depth is 2x (e.g. near oriC) is normal by the local
    flank and looks amplified against the whole contig."""
    bins = make_bins({"chr": 100_000})
    ratios = np.ones((1, 100))
    ratios[0, 40:60] = 2.0
    panel = _panel(50_001, 51_000)
    local = B.call_chromosomal(ratios, bins, panel, RULE, padding=5_000)
    glob = B.call_chromosomal(ratios, bins, panel, RULE, padding=5_000, flank="global")
    assert local.call.tolist() == [1] and local.value.tolist() == [1.0]
    assert glob.call.tolist() == [2] and glob.value.tolist() == [2.0]


def test_call_chromosomal_uses_states_and_callable_mask():
    bins = make_bins({"chr": 30_000})
    ratios = np.ones((3, 30))
    ratios[0, 10:13] = 3.0                     # amplified, HMM agrees
    ratios[1, 10:13] = 3.0                     # high CRR but the HMM says CN 1: vetoed (3 bins)
    states = np.full((3, 30), 2, dtype=np.int8)
    states[0, 10:13] = 5
    panel = _panel(10_001, 13_000)
    out = B.call_chromosomal(ratios, bins, panel, RULE, padding=5_000, states=states,
                             callable_mask={"g": np.array([True, True, False])})
    assert out.call.tolist() == [2, 1, -1]
    # the original means: index 3 means CN 2.5, still an amplified state
    out = B.call_chromosomal(ratios, bins, panel, RULE, padding=5_000, states=np.where(states == 5, 3, 1),
                             state_cn=B.ORIGINAL_HMM_MEANS)
    assert out.call.tolist() == [2, 1, 1]


def test_hmmlearn_and_batched_hmm_agree_on_a_clear_step():
    bins = make_bins({"chr": 200_000})
    rng = np.random.default_rng(0)
    x = np.ones((2, 200)) + rng.normal(0, 0.05, (2, 200))
    x[0, 80:120] += 1.0
    x[1, 50:60] = np.nan                       # masked bins take the preceding state
    ours = B.decode_states(x, bins)
    ref = B.hmmlearn_states(x, bins)
    assert (ref[0, 85:115] == 4).all() and (ref[0, :70] == 2).all()
    usable = np.isfinite(x)
    assert np.array_equal(ours[usable], ref[usable])
    assert (ref[1, 50:60] == ref[1, 49]).all()


def test_family_pcn_original_rule_inflates_multi_bin_genes():
    counts = np.array([2000.0, 0.0])          # 2 bins of a gene at PCN 1 with 1000 reads per bin
    medians = np.array([1000.0, 1000.0])
    per_bp = B.family_pcn(counts, 2000.0, 2, medians, per_bp=True)
    per_bin = B.family_pcn(counts, 2000.0, 2, medians, per_bp=False)
    assert per_bp.tolist() == [1.0, 0.0]
    assert per_bin.tolist() == [2.0, 0.0]      # the original's defect: a carrier looks amplified


def test_score_calls_confusion_mcc_and_dosage_error():
    truth = pd.DataFrame({"sample_id": list("abcde"), "gene": "g", "level": "chromosome",
                          "true_cn": [1, 1, 3, 4, 1]})
    calls = pd.DataFrame({"sample_id": list("abcde"), "gene": "g", "level": "chromosome",
                          "call": [1, 2, 2, 1, -1], "value": [1.0, 2.0, 3.5, 1.0, np.nan]})
    s = B.score_calls(calls, truth).set_index("mode")
    amp = s.loc["amp"]
    assert (amp.n_callable, amp.tp, amp.fp, amp.fn, amp.tn) == (4, 1, 1, 1, 1)
    assert amp.mcc == pytest.approx(0.0)
    assert amp.fnr == pytest.approx(0.5) and amp.ppv == pytest.approx(0.5)
    assert amp.abs_err_median == pytest.approx(np.median([0, 1, 0.5, 3]))
    # presence: every callable truth is positive -> MCC undefined
    assert np.isnan(s.loc["presence"].mcc)


def test_score_calls_plasmid_family_presence():
    truth = pd.DataFrame({"sample_id": list("abcd"), "gene": "F", "level": "family", "true_cn": [0, 0, 2, 5]})
    calls = pd.DataFrame({"sample_id": list("abcd"), "gene": "F", "level": "family", "call": [0, 0, 1, 2],
                          "value": [0.0, 0.1, 2.0, 5.0]})
    s = B.score_calls(calls, truth)
    assert s["mode"].tolist() == ["presence"]
    assert s.mcc.iloc[0] == pytest.approx(1.0) and s.fnr.iloc[0] == 0 and s.ppv.iloc[0] == 1


def test_cnvkit_segments_recover_a_step():
    pytest.importorskip("cnvlib")
    bins = make_bins({"chr": 300_000})
    rng = np.random.default_rng(1)
    x = np.ones((1, 300)) + rng.normal(0, 0.05, (1, 300))
    x[0, 100:140] = 3.0 + rng.normal(0, 0.05, 40)
    x[0, 10:15] = np.nan
    seg = B.cnvkit_segment_ratios(x, bins, "haar")
    assert np.allclose(seg[0, 105:135], 3.0, atol=0.2)
    assert np.allclose(seg[0, 200:300], 1.0, atol=0.1)
    panel = _panel(110_001, 120_000)
    assert B.call_chromosomal(seg, bins, panel, RULE, padding=50_000).call.tolist() == [2]
