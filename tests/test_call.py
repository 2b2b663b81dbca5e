"""Stage 03 callers on constructed cases: pure functions first, then the driver on a tiny out_dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import artefacts, calling, copy_number, geometry
from cnvrock_lib.segmentation import sample_qc_table
from cnvrock_lib.atomic import save_npy
from cnvrock_lib.errors import InputError
from cnvrock_lib.params import resolve_params
from cnvrock_lib.reference import BIN_DTYPE, make_bins
from cnvrock_lib.store import write_store

RULE = calling.chromosomal.ChromRule()


def bins_for(lengths: dict[str, int]) -> np.ndarray:
    return make_bins(lengths)


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------
def test_gene_bins_by_overlap_with_weights():
    bins = bins_for({"chr": 10_000})
    idx, w = geometry.gene_bin_weights(bins, "chr", 2_501, 4_200)   # 2501-3000, 3001-4000, 4001-4200
    assert idx.tolist() == [2, 3, 4]
    assert w.tolist() == [500, 1000, 200]
    # A gene starting inside a bin keeps that bin (the original kept only bins starting in the gene).
    idx, w = geometry.gene_bin_weights(bins, "chr", 1_990, 2_010)
    assert idx.tolist() == [1, 2] and w.tolist() == [11, 10]


def test_flank_is_local_and_one_sided_at_contig_end():
    bins = bins_for({"a": 50_000, "b": 20_000})
    idx, _ = geometry.gene_bin_weights(bins, "a", 45_100, 46_500)
    flank = geometry.flank_bin_indices(bins, "a", 45_100, 46_500, 10_000, idx)
    assert not set(flank) & set(idx)
    assert set(bins["chrom"][flank]) == {"a"}          # never crosses into another contig
    assert bins["start"][flank].min() == 35_001 and bins["end"][flank].max() == 50_000


# --------------------------------------------------------------------------
# CRR and the chromosomal rule
# --------------------------------------------------------------------------
def _region(n_samples: int, n_bins: int, cn: float, rng, sd: float = 0.05) -> np.ndarray:
    return cn * (1 + sd * rng.standard_normal((n_samples, n_bins)))


def test_amplicon_covering_gene_and_part_of_flank():
    rng = np.random.default_rng(0)
    flank = _region(4, 200, 1.0, rng)
    flank[:, 95:120] = _region(4, 25, 4.0, rng)           # the amplicon spills 25 kb into the flank
    gene = _region(4, 2, 4.0, rng)
    value, n_usable = calling.chromosomal.crr(gene, np.array([600, 260]), flank)
    assert np.allclose(value, 4.0, rtol=0.08)              # the flank median stays at 1
    calls = calling.chromosomal.chromosomal_call(value, n_usable, np.zeros(4), np.zeros(4), RULE)
    assert (calls == 2).all()                              # a 2-bin gene relies on CRR alone


def test_deletion_is_absent_and_its_interval_holds_zero():
    rng = np.random.default_rng(1)
    gene_ratio = np.zeros((3, 2))
    flank = _region(3, 200, 1.0, rng)
    value, n_usable = calling.chromosomal.crr(gene_ratio, np.array([500, 500]), flank)
    states = np.zeros((3, 2), dtype=np.int8)
    absent = calling.chromosomal.state_cover(states, np.isfinite(gene_ratio), np.array([500, 500]), (copy_number.CN0_STATE,))
    calls = calling.chromosomal.chromosomal_call(value, n_usable, np.zeros(3), absent, RULE)
    assert (value == 0).all() and (calls == 0).all()
    reps = calling.intervals.bootstrap_crr(gene_ratio, np.zeros((3, 2)), np.array([500, 500]), flank,
                              np.ones(3), 200, np.random.default_rng(0))
    lo, hi = calling.intervals.bootstrap_interval(reps)
    assert (lo <= 0).all() and (hi >= 0).all()


def test_masked_gene_bins_are_left_out_and_all_masked_is_nan():
    ratios = np.array([[np.nan, 2.0, 2.0], [np.nan, np.nan, np.nan]])
    value, n_usable = calling.chromosomal.weighted_gene_ratio(ratios, np.array([1000, 500, 500]))
    assert value[0] == pytest.approx(2.0) and np.isnan(value[1])
    assert n_usable.tolist() == [2, 0]
    calls = calling.chromosomal.chromosomal_call(value, n_usable, np.zeros(2), np.zeros(2), RULE)
    assert calls.tolist() == [2, -1]


def test_long_gene_normal_amplified_only_with_hmm_support_and_gate():
    rng = np.random.default_rng(2)
    w = np.full(10, 1000)
    flank = _region(3, 200, 1.0, rng)
    gene = np.vstack([_region(1, 10, 1.0, rng), _region(1, 10, 2.0, rng), _region(1, 10, 2.0, rng)])
    value, n_usable = calling.chromosomal.crr(gene, w, flank)
    amp_cover = np.array([0.0, 1.0, 0.0])                 # sample 2: CRR high but HMM says CN 1
    calls = calling.chromosomal.chromosomal_call(value, n_usable, amp_cover, np.zeros(3), RULE)
    assert calls.tolist() == [1, 2, 1]                     # a long normal gene is called normal
    strict = calling.chromosomal.ChromRule(gate_threshold=2.5)            # the gate vetoes an HMM-supported call
    assert calling.chromosomal.chromosomal_call(value, n_usable, amp_cover, np.zeros(3), strict).tolist() == [1, 1, 1]
    short = calling.chromosomal.ChromRule(min_bins_hmm=20)                # as a short gene, CRR alone decides
    assert calling.chromosomal.chromosomal_call(value, n_usable, amp_cover, np.zeros(3), short).tolist() == [1, 2, 2]


def test_flank_falls_back_to_genome_baseline_when_unusable():
    flank = np.full((2, 200), np.nan)
    flank[1, :] = 0.0                                      # flank deleted
    base, local = calling.chromosomal.flank_baseline(flank)
    assert base.tolist() == [1.0, 1.0] and not local.any()


def test_cn1_fraction_uses_usable_bins_and_posterior():
    ratios = np.array([[1.0, 1.0, np.nan, 1.0], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    states = np.array([[2, 2, 0, 4], [2, 2, 2, 2]], dtype=np.int8)
    post = np.array([[0.9, 0.4, 0.9, 0.9], [0.9, 0.9, 0.9, 0.9]], dtype=np.float32)
    frac = calling.chromosomal.sample_cn1_fraction(ratios, states, post, 0.5, chunk=1)
    assert frac == pytest.approx([1 / 3, 1.0])


# --------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------
def test_bootstrap_median_matches_brute_force_resampling():
    rng = np.random.default_rng(5)
    values = rng.gamma(2.0, 1.0, size=(2, 41))
    values[1, 30:] = np.nan                                # 30 usable values: even n
    fast = calling.intervals.bootstrap_median(values, 20_000, np.random.default_rng(1))
    for row in range(2):
        x = values[row][np.isfinite(values[row])]
        idx = np.random.default_rng(2).integers(0, x.size, size=(20_000, x.size))
        slow = np.median(x[idx], axis=1)
        assert np.quantile(fast[row], [0.025, 0.5, 0.975]) == pytest.approx(
            np.quantile(slow, [0.025, 0.5, 0.975]), rel=0.03)


def test_bootstrap_interval_covers_truth_for_poisson_counts():
    """Simulate gene counts around CN 2 with Poisson noise; ~95 % of intervals hold 2."""
    rng = np.random.default_rng(7)
    n, depth = 400, 300.0
    truth = 2.0
    flank_counts = rng.poisson(depth, size=(n, 200)).astype(float)
    flank = flank_counts / depth
    gene_counts = rng.poisson(truth * depth, size=(n, 2)).astype(float)
    gene = gene_counts / depth
    reps = calling.intervals.bootstrap_crr(gene, gene_counts, np.array([600, 260]), flank,
                              calling.intervals.count_dispersion(flank, flank_counts), 1000, np.random.default_rng(0))
    lo, hi = calling.intervals.bootstrap_interval(reps)
    inside = np.mean((lo <= truth) & (truth <= hi))
    assert 0.90 <= inside <= 0.99


def test_overdispersion_widens_the_interval():
    rng = np.random.default_rng(8)
    depth = 300.0
    lam = depth * rng.gamma(25.0, 1 / 25.0, size=(50, 200))      # extra-Poisson variation
    flank_counts = rng.poisson(lam).astype(float)
    phi = calling.intervals.count_dispersion(flank_counts / depth, flank_counts)
    assert (phi > 3).all()
    poisson_phi = calling.intervals.count_dispersion(*(2 * [rng.poisson(depth, size=(50, 200)).astype(float)]))
    assert np.median(poisson_phi) < 1.5


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(3)
    flank = _region(5, 50, 1.0, rng)
    args = (np.full((5, 2), 1.0), np.full((5, 2), 300.0), np.array([500, 500]), flank, np.ones(5), 100)
    a = calling.intervals.bootstrap_crr(*args, np.random.default_rng(11))
    b = calling.intervals.bootstrap_crr(*args, np.random.default_rng(11))
    assert np.array_equal(a, b)


# --------------------------------------------------------------------------
# Plasmid functions
# --------------------------------------------------------------------------
def test_pcn_is_per_bp_against_chromosome_depth():
    # 2 copies of a gene spanning 2 kb of bins, chromosome median 500 reads per 1 kb bin
    value = calling.plasmid.pcn(np.array([2 * 2 * 500.0]), 2000, calling.plasmid.chromosome_depth_per_bp(np.array([500.0])))
    assert value == pytest.approx([2.0])


def test_plasmid_call_codes_and_per_gene_threshold():
    v = np.array([0.1, 0.6, 1.2, 3.0, np.nan])
    assert calling.plasmid.plasmid_call(v, 0.2, 1.5).tolist() == [0, 1, 1, 2, -1]
    assert calling.plasmid.plasmid_call(v, 1.0, 1.5).tolist() == [0, 0, 1, 2, -1]


def test_poisson_interval_and_confidence():
    lo, hi = calling.intervals.poisson_interval(np.array([0.0, 100.0]))
    assert lo[0] == 0 and hi[0] == pytest.approx(3.689, abs=1e-3)
    assert lo[1] == pytest.approx(81.36, abs=0.01) and hi[1] == pytest.approx(121.63, abs=0.01)
    conf = calling.plasmid.pcn_call_confidence(np.array([1000.0, 200.0]), np.array([1000.0, 1000.0]),
                                    np.array([1, 0]), 0.2, 1.5)
    assert conf[0] > 0.99 and 0.4 < conf[1] < 0.6     # 200 reads sit on the 0.2 threshold


def test_bin_dispersion_ignores_trends_and_widens_pcn_interval():
    rng = np.random.default_rng(9)
    trend = np.linspace(2.0, 1.0, 2000)[None, :]                   # replication gradient: not noise
    poisson = rng.poisson(400 * trend * np.ones((20, 1))).astype(np.uint32)
    noisy = rng.poisson(400 * trend * rng.gamma(20.0, 1 / 20.0, size=(20, 2000))).astype(np.uint32)
    med = np.median(poisson, axis=1)
    assert np.median(calling.intervals.bin_dispersion(poisson, med, chunk=7)) < 1.3
    phi = calling.intervals.bin_dispersion(noisy, np.median(noisy, axis=1))
    assert (phi > 10).all()
    lo1, hi1 = calling.intervals.poisson_interval(np.array([500.0]))
    lo2, hi2 = calling.intervals.poisson_interval(np.array([500.0]), dispersion=np.array([16.0]))
    assert lo2 < lo1 < 500 < hi1 < hi2
    assert (hi2 - lo2) / (hi1 - lo1) == pytest.approx(4.0, rel=0.1)     # sd grows with sqrt(phi)


def test_mixture_threshold_separates_two_groups_and_rejects_one():
    rng = np.random.default_rng(4)
    carriers = 10 ** rng.normal(np.log10(3.0), 0.15, 150)
    background = 10 ** rng.normal(np.log10(0.2), 0.2, 600)
    fit = calling.thresholds.fit_mixture_threshold(np.concatenate([background, carriers]), amp_threshold=1.5)
    assert 0.4 < fit.threshold < 2.0 and fit.fallback_reason == ""
    assert fit.delta_bic > 10 and fit.ashman_d > 2
    one = calling.thresholds.fit_mixture_threshold(10 ** rng.normal(0.0, 0.2, 500))
    assert np.isnan(one.threshold) and one.fallback_reason
    few = calling.thresholds.fit_mixture_threshold(np.array([0.1, 3.0]))
    assert np.isnan(few.threshold) and "fewer" in few.fallback_reason


def test_mixture_ignores_zero_spike_and_handles_two_carrier_groups():
    rng = np.random.default_rng(6)
    zeros = np.zeros(500)                                          # no reads at all: not a component
    background = 10 ** rng.normal(np.log10(0.25), 0.15, 300)
    low_copy = 10 ** rng.normal(np.log10(1.5), 0.1, 120)           # e.g. IncF-like
    high_copy = 10 ** rng.normal(np.log10(20.0), 0.1, 80)          # e.g. ColE-like
    fit = calling.thresholds.fit_mixture_threshold(np.concatenate([zeros, background, low_copy, high_copy]), 1.5)
    assert fit.n_fit == 500 and fit.n_components == 3
    assert 0.4 < fit.threshold < 1.0
    # Without the background the lowest group is carriers: the threshold would reach amplification.
    no_bg = calling.thresholds.fit_mixture_threshold(np.concatenate([zeros, low_copy, high_copy]), 1.5)
    assert np.isnan(no_bg.threshold) and "amplification" in no_bg.fallback_reason


def test_mixture_method_in_driver(tmp_path):
    params = build_cohort(tmp_path, pcn_threshold_method="mixture")
    result = calling.stage.call_genes(params)
    # 8 samples are too few to learn from: every row falls back to the fixed threshold, and says so.
    assert set(result.thresholds.method_used) == {"fixed"}
    assert result.thresholds.fallback_reason.str.contains("fewer").all()
    assert set(result.plasmid_calls.threshold_method) == {"fixed"}


# --------------------------------------------------------------------------
# Driver on a tiny synthetic out_dir
# --------------------------------------------------------------------------
CHROM = "chr"
CHROM_LEN = 400_000
GENES = [("geneS", CHROM, 200_403, 201_263),    # short (2 bins)
         ("geneL", CHROM, 100_001, 110_000),    # long (10 bins)
         ("geneE", CHROM, 398_601, 399_500)]    # at the contig end
PLASMIDS = {"pA": 30_000, "pB": 20_000}
PGENES = [("famA-1", "pA", 10_401, 11_200, "0.30"), ("solo", "pA", 20_001, 20_500, ""),
          ("famA-2", "pB", 5_401, 6_200, "")]
SAMPLES = ["amp", "del", "normal", "qcfail", "kv", "nometa", "masked", "lowdepth"]


def build_cohort(root: Path, legacy: bool = False, **overrides):
    """A tiny store + stage 01/02 artefacts + panels + metadata; returns params (original rules unless overridden)."""
    rng = np.random.default_rng(0)
    bins = make_bins({CHROM: CHROM_LEN})
    n, m = len(SAMPLES), len(bins)
    depth = np.full(n, 400.0)
    depth[SAMPLES.index("lowdepth")] = 5.0
    cn = np.ones((n, m))
    s_idx, _ = geometry.gene_bin_weights(bins, *GENES[0][1:])
    cn[SAMPLES.index("amp"), s_idx.min() - 8: s_idx.max() + 12] = 4.0     # amplicon over gene + flank part
    cn[SAMPLES.index("amp"), 100:110] = 3.0                                # long gene amplified too
    cn[SAMPLES.index("del"), s_idx] = 0.0
    counts = rng.poisson(depth[:, None] * cn).astype(np.uint32)
    ratios = (counts / depth[:, None]).astype(np.float32)
    ratios[SAMPLES.index("masked"), s_idx] = np.nan
    ratios[SAMPLES.index("lowdepth")] = np.nan
    states = np.digitize(ratios, [0.25, 0.75, 1.25, 1.75, 2.5]).astype(np.int8)
    states[~np.isfinite(ratios)] = 2
    states[SAMPLES.index("qcfail")] = 3
    post = np.full((n, m), 0.95, dtype=np.float32)
    store = root / "chrom_store"
    write_store(store, counts, SAMPLES, bins)
    out = root / "out"
    out.mkdir()
    save_npy(out / "copy_ratios.npy", ratios)
    save_npy(out / "states.npy", states)
    save_npy(out / "state_posteriors.npy", post)
    save_npy(out / "medians.npy", depth)
    pd.DataFrame(GENES, columns=["gene", "contig", "start", "end"]).to_csv(root / "chrom.tsv", sep="\t",
                                                                           index=False)
    pd.DataFrame(PGENES, columns=["gene", "contig", "start", "end", "absent_threshold"]).to_csv(
        root / "plasmid.tsv", sep="\t", index=False)
    pd.DataFrame({"family": ["famA", "solo"], "members": ["famA-1,famA-2", "solo"]}).to_csv(
        root / "families.tsv", sep="\t", index=False)
    meta = pd.DataFrame({"sample_id": [s for s in SAMPLES if s != "nometa"]})
    meta["Species"] = np.where(meta["sample_id"] == "kv", "Klebsiella variicola", "Klebsiella pneumoniae")
    meta["ST"] = "ST11"
    meta.to_csv(root / "meta.tsv", sep="\t", index=False)

    # Plasmid store: "amp" carries famA-1 at PCN 3 whose gene reads split 60/40 with famA-2 (pB),
    # "normal" carries famA-2 at PCN 2; everyone has backbone pA at PCN 3 where famA-1 is carried.
    pbins = make_bins(PLASMIDS)
    per_bin = depth[:, None] * np.ones((n, len(pbins))) * 0.0
    pa = pbins["chrom"] == "pA"
    pb = pbins["chrom"] == "pB"
    amp, normal = SAMPLES.index("amp"), SAMPLES.index("normal")
    per_bin[amp, pa] = 3 * depth[amp]
    per_bin[normal, pb] = 2 * depth[normal]
    g1, _ = geometry.gene_bin_weights(pbins, "pA", 10_401, 11_200)
    g2, _ = geometry.gene_bin_weights(pbins, "pB", 5_401, 6_200)
    moved = 0.4 * per_bin[amp, g1] * 0.8              # 40 % of the gene's reads (gene = 80 % of the bins)
    per_bin[amp, g1] -= moved
    per_bin[amp, g2] += moved
    pcounts = rng.poisson(per_bin).astype(np.uint32)
    if legacy:
        cols = [np.flatnonzero((pbins["chrom"] == c) & (pbins["end"] >= s) & (pbins["start"] <= e))
                for _, c, s, e, _ in PGENES]
        pcounts = np.stack([pcounts[:, c].sum(axis=1) for c in cols], axis=1).astype(np.uint32)
        pbins = np.array([(c, s, e) for _, c, s, e, _ in PGENES], dtype=BIN_DTYPE)
    write_store(root / "plasmid_store", pcounts, SAMPLES, pbins)
    raw = {"store_path": str(store), "plasmid_store_path": str(root / "plasmid_store"), "out_dir": str(out),
           "chrom_gene_coords_path": str(root / "chrom.tsv"), "plasmid_gene_coords_path": str(root / "plasmid.tsv"),
           "plasmid_gene_families_path": str(root / "families.tsv"), "kpsc_meta_path": str(root / "meta.tsv"),
           "eval_species": {"geneS": ["Klebsiella pneumoniae", "Klebsiella quasipneumoniae"]},
           "bootstrap_replicates": 200, "cnv_flank_padding": 50_000,
           # these 8 constructed samples exercise the original rules (too few to learn from)
           "pcn_threshold_method": "fixed", "chrom_call_rule": "original"}
    raw.update(overrides)
    params = resolve_params(raw, root)
    # stage 02's sample QC, as segment_cohort writes it
    qc = sample_qc_table(SAMPLES, depth, ~np.isfinite(ratios), np.full(n, 0.1), states, post, np.ones(n),
                         params.cnv_min_confidence, params.cnv_min_cn1_proportion)
    artefacts.write_table(out, artefacts.SAMPLE_QC, qc, float_format="%.6g")
    return params


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    params = build_cohort(tmp_path_factory.mktemp("call"))
    return params, calling.stage.call_genes(params)


def _row(frame, sample, gene, level=None):
    sel = (frame.sample_id == sample) & (frame.gene == gene)
    if level:
        sel &= frame.level == level
    rows = frame[sel]
    assert len(rows) == 1
    return rows.iloc[0]


def test_driver_writes_contract_columns(cohort):
    params, result = cohort
    for name, cols in (("gene_calls.tsv", calling.core.GENE_CALL_COLUMNS),
                       ("plasmid_gene_calls.tsv", calling.core.PLASMID_CALL_COLUMNS),
                       ("pcn_thresholds.tsv", calling.thresholds.THRESHOLD_COLUMNS)):
        frame = pd.read_csv(params.out_path / name, sep="\t")
        assert list(frame.columns) == cols
    genes = artefacts.read_table(params.out_path, artefacts.GENE_CALLS)
    plasmids = artefacts.read_table(params.out_path, artefacts.PLASMID_CALLS)
    assert len(genes) == len(SAMPLES) * len(GENES)
    assert len(plasmids) == len(SAMPLES) * (len(PGENES) + 2)
    assert set(genes.label) <= set(copy_number.CHROM_LABELS.values())


def test_driver_chromosomal_cases(cohort):
    _, result = cohort
    g = result.gene_calls
    amp = _row(g, "amp", "geneS")
    assert amp.call == 2 and amp.status == "ok" and amp.crr == pytest.approx(4.0, rel=0.1)
    assert amp.crr_lo < 4.0 < amp.crr_hi and 0.5 < amp.confidence <= 1
    assert _row(g, "amp", "geneL").call == 2                    # long gene with HMM support
    deletion = _row(g, "del", "geneS")
    assert deletion.call == 0 and deletion.label == "absent" and deletion.crr < 0.05
    normal = _row(g, "normal", "geneL")
    assert normal.call == 1 and normal.n_gene_bins == 10 and normal.crr == pytest.approx(1.0, abs=0.1)
    end = _row(g, "normal", "geneE")                            # gene at the contig end
    assert end.call == 1 and end.n_gene_bins == 2 and np.isfinite(end.crr_lo)
    assert _row(g, "qcfail", "geneS").status == "qc_fail" and _row(g, "qcfail", "geneS").call == -1
    assert _row(g, "kv", "geneS").status == "species_excluded"
    assert _row(g, "kv", "geneL").status == "ok"                # no species restriction for geneL
    nometa = _row(g, "nometa", "geneS")
    assert nometa.status == "ok" and (nometa.species == "" or pd.isna(nometa.species))
    masked = _row(g, "masked", "geneS")
    assert masked.status == "no_usable_bins" and masked.call == -1 and masked.n_usable_bins == 0
    assert _row(g, "lowdepth", "geneS").status == "qc_fail"


def test_driver_plasmid_cases(cohort):
    _, result = cohort
    p = result.plasmid_calls
    fam = _row(p, "amp", "famA", "family")
    assert fam.call == 2 and fam.pcn == pytest.approx(3.0, rel=0.1)          # shared reads summed back
    member = _row(p, "amp", "famA-1", "member")
    assert member.pcn < 2.8 and member.backbone_pcn == pytest.approx(3.0, rel=0.05)
    assert member.absent_threshold == pytest.approx(0.30)                     # per-gene override
    other = _row(p, "amp", "famA-2", "member")
    assert other.absent_threshold == pytest.approx(0.20) and other.backbone_pcn < 0.1
    assert _row(p, "normal", "famA", "family").call == 2
    assert _row(p, "del", "famA", "family").call == 0
    low = _row(p, "lowdepth", "famA", "family")
    assert low.call == -1 and low.status == "low_depth"
    ok = p[p.status == "ok"]
    assert (ok.pcn_lo <= ok.pcn).all() and (ok.pcn <= ok.pcn_hi).all()
    assert set(p.threshold_method) == {"fixed"}


def test_legacy_per_gene_store_gives_the_same_pcn(tmp_path, cohort):
    params, result = cohort
    legacy = calling.stage.call_genes(build_cohort(tmp_path, legacy=True))
    a = result.plasmid_calls.set_index(["sample_id", "gene", "level"])
    b = legacy.plasmid_calls.set_index(["sample_id", "gene", "level"])
    assert np.allclose(a.pcn, b.pcn.loc[a.index], rtol=1e-4, equal_nan=True)
    assert (a.call == b.call.loc[a.index]).all()
    assert b.backbone_pcn.isna().all()                  # a per-gene store has no backbone


def test_same_params_same_artefacts(tmp_path):
    params = build_cohort(tmp_path)
    calling.stage.call_genes(params)
    first = (params.out_path / "gene_calls.tsv").read_bytes(), (params.out_path / "plasmid_gene_calls.tsv").read_bytes()
    calling.stage.call_genes(params)
    second = (params.out_path / "gene_calls.tsv").read_bytes(), (params.out_path / "plasmid_gene_calls.tsv").read_bytes()
    assert first == second


def test_no_plasmid_store_writes_header_only_tables(tmp_path):
    params = build_cohort(tmp_path, plasmid_store_path=None)
    result = calling.stage.call_genes(params)
    assert result.plasmid_calls.empty
    frame = pd.read_csv(params.out_path / "plasmid_gene_calls.tsv", sep="\t")
    assert list(frame.columns) == calling.core.PLASMID_CALL_COLUMNS and frame.empty


def test_thresholds_are_honoured(tmp_path):
    params = build_cohort(tmp_path, cnv_crr_amp_threshold=5.0, cnv_min_cn1_proportion=0.0,
                          pcn_amp_threshold=10.0, pcn_absent_threshold=2.5)
    result = calling.stage.call_genes(params)
    assert _row(result.gene_calls, "amp", "geneS").call == 1
    assert _row(result.gene_calls, "qcfail", "geneS").status == "ok"
    assert _row(result.plasmid_calls, "amp", "famA", "family").call == 1
    assert _row(result.plasmid_calls, "normal", "famA-2", "member").call == 0     # 2.0 < default 2.5


def test_chromosomal_rule_keys_reach_the_rule(tmp_path):
    """Every seed threshold key of the chromosomal rule is read from params, none keeps its default."""
    params = build_cohort(tmp_path, cnv_crr_amp_threshold=2.5, cnv_crr_gate_threshold=3.5,
                          cnv_crr_min_bins_fallback=7, cnv_min_gene_coverage_fraction=0.8)
    assert calling.chromosomal.ChromRule.from_params(params) == calling.chromosomal.ChromRule(2.5, 3.5, 7, 0.8)


def test_stale_or_missing_artefacts_are_named(tmp_path):
    params = build_cohort(tmp_path)
    save_npy(params.out_path / "states.npy", np.zeros((3, 4), dtype=np.int8))
    with pytest.raises(InputError, match="states.npy has shape"):
        calling.stage.call_genes(params)
    (params.out_path / "states.npy").unlink()
    with pytest.raises(InputError, match="states.npy not found"):
        calling.stage.call_genes(params)


def test_family_member_missing_from_panel_is_named(tmp_path):
    params = build_cohort(tmp_path)
    pd.DataFrame({"family": ["famA"], "members": ["famA-1,famA-9"]}).to_csv(
        Path(params.plasmid_gene_families_path), sep="\t", index=False)
    with pytest.raises(InputError, match="famA-9"):
        calling.stage.call_genes(params)


# --------------------------------------------------------------------------
# Report helpers and figures
# --------------------------------------------------------------------------
def test_call_counts_table(cohort):
    _, result = cohort
    counts = calling.report.call_counts(result.gene_calls, result.plasmid_calls)
    row = counts[(counts.gene == "geneS") & (counts.level == "chromosome")].iloc[0]
    assert (row.amplified, row.absent, row.uncallable) == (1, 1, 4)     # amp; del; qcfail, kv, masked, lowdepth
    assert row[["uncallable", "absent", "normal", "present", "amplified"]].sum() == len(SAMPLES)
    assert "species_excluded 1" in row.statuses
    assert row.rules == "original 4"                                   # which rule made the callable calls
    assert list(counts.level.unique()) == ["chromosome", "family", "member"]


def test_depth_tracks_and_top_amplified(cohort):
    params, result = cohort
    top = calling.report.top_amplified(result.gene_calls, "geneS")
    assert top.sample_id.tolist() == ["amp"]
    tracks = calling.report.depth_tracks(params, ["amp", "normal"], "geneS")
    one = tracks[tracks.sample_id == "amp"]
    assert one.in_gene.sum() == 2 and len(one) == 2 + 100             # ±50 kb flank of 1 kb bins
    assert one[one.in_gene].copy_ratio.mean() == pytest.approx(4.0, rel=0.1)
    with pytest.raises(InputError, match="not in the chromosomal gene panel"):
        calling.report.depth_tracks(params, ["amp"], "nope")


def test_figures_render(cohort):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from cnvrock_lib.plots import calls as plots

    params, result = cohort
    genes = calling.report.with_metadata(result.gene_calls, params.kpsc_meta_path)
    assert (genes[genes.sample_id == "nometa"].ST == "").all()
    figs = [plots.crr_distribution(result.gene_calls), plots.pcn_distribution(result.plasmid_calls),
            plots.dosage_by_st(genes, "crr", min_n=1),
            plots.dosage_by_st(calling.report.with_metadata(result.plasmid_calls[result.plasmid_calls.level == "family"],
                                                  params.kpsc_meta_path), "pcn", min_n=1),
            plots.depth_tracks(calling.report.depth_tracks(params, ["amp"], "geneS"), result.gene_calls),
            plots.call_count_bars(calling.report.call_counts(result.gene_calls, result.plasmid_calls)),
            plots.mixture_fits(result.plasmid_calls, result.thresholds),
            plots.pcn_distribution(result.plasmid_calls.iloc[:0])]
    assert all(isinstance(f, Figure) for f in figs)
    assert len(figs[0].axes) == len(GENES)
    import matplotlib.pyplot as plt

    plt.close("all")
