"""Worlds: the reference preset, drawn strengths inside their ranges, and the ranges realised in
cohorts of a handful of worlds (measured from the files). Every test of the realised ranges
would fail if ``world_seed`` were ignored (all worlds would then be the reference world)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import simulate as S
from cnvrock_lib.cli import main as cli_main
from cnvrock_lib.errors import ParamsError
from cnvrock_lib.simulate import strengths as W
from cnvrock_lib.store import open_store

WORLDS = (1, 2, 3, 4, 5, 6)  # arbitrary seeds, neither development nor test worlds
N = 200


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[int, Path]:
    """One 200-sample cohort (seed 3) per world."""
    root = tmp_path_factory.mktemp("worlds")
    return {w: S.simulate_cohort(root / f"w{w}", N, seed=3, world_seed=w, progress=False)["cohort"].parent
            for w in WORLDS}


@pytest.fixture(scope="module")
def properties(worlds) -> pd.DataFrame:
    return pd.concat([S.world_properties(d).assign(world=w) for w, d in worlds.items()], ignore_index=True)


def _world(d: Path) -> dict:
    return json.loads((d / "cohort.json").read_text())["world"]


def test_reference_world_keeps_the_fixed_strengths():
    ref = W.world_strengths(S.WORLD_SEED)
    assert ref.preset == "reference" and ref.cohort == {} and ref.family_prevalence is None
    assert ref.flanks == W.FLANKS and ref.elsewhere == W.ELSEWHERE and ref.pcn_by_type == W.PCN_RANGE
    assert S.SimConfig.make(world=ref.cohort) == S.SimConfig()
    assert S.SimConfig.make(hard=True).depth_range == (15.0, 60.0)
    assert S.SimConfig.make(hard=True).gc_strength == 2.5
    drawn = W.world_strengths(7)
    assert drawn.preset == "drawn" and drawn.flanks != W.FLANKS and drawn.cohort


def _span_ok(values, lo, hi, kind, share=0.25):
    """All inside [lo, hi] and both ends of the range reached within ``share`` of its width."""
    values = np.asarray(values, dtype=float)
    f = np.log if kind == "log" else (lambda x: x)
    a, b, v = f(lo), f(hi), f(np.maximum(values, 1e-12))
    inside = (values >= lo - 1e-9).all() and (values <= hi + 1e-9).all()
    return inside and v.min() <= a + share * (b - a) and v.max() >= b - share * (b - a)


def test_drawn_strengths_stay_inside_their_wide_ranges_and_reach_both_ends():
    many = [W.world_strengths(s) for s in range(100, 140)]
    draws = {
        "flank_bp": [bp for st in many for fl in st.flanks.values() for _, _, bp in fl],
        "elsewhere_probability": [p for st in many for p, _ in st.elsewhere.values()],
        "elsewhere_copies": [c for st in many for _, c in st.elsewhere.values()],
        "family_prevalence": [p for st in many for p in st.family_prevalence.values()],
        "st_sigma": [st.st_sigma for st in many],
        "depth_low": [st.cohort["depth_range"][0] for st in many],
    }
    for key in ("shv_amp_rate", "plasmid_shv_rate", "gc_strength", "low_quality_rate", "mixed_rate",
                "kleborate_collapse_rate", "sporadic_plasmid_rate"):
        draws[key] = [st.cohort[key] for st in many]
    assert set(draws) | {"depth_span"} == set(W.RANGES)
    for key, values in draws.items():
        lo, hi, kind = W.RANGES[key]
        assert _span_ok(values, lo, hi, kind), (key, min(values), max(values))
    high = np.array([st.cohort["depth_range"][1] for st in many])
    assert high.max() == W.DEPTH_MAX and (high <= W.DEPTH_MAX).all()
    incf = [st.pcn_by_contig["NC_016846.1"] for st in many]  # the KPC plasmid, IncF-like
    assert min(lo for lo, _ in incf) < 0.6 and max(lo for lo, _ in incf) > 1.5  # low-copy carriers exist
    assert all(abs(sum(st.cohort["library_mix"]) - 1) < 1e-9 for st in many)


def test_world_seed_lists_are_written_down_and_disjoint():
    dev, test = S.world_seeds(3, 10)
    assert dev[0] == S.WORLD_SEED and len(dev) == 3 and len(test) == 10
    assert len(S.TEST_WORLD_SEEDS) >= 10 and not set(S.DEV_WORLD_SEEDS) & set(S.TEST_WORLD_SEEDS)
    assert len(set(S.TEST_WORLD_SEEDS)) == len(S.TEST_WORLD_SEEDS)
    assert S.world_seeds(0, len(S.TEST_WORLD_SEEDS))[1] == list(S.TEST_WORLD_SEEDS)
    with pytest.raises(ParamsError, match="n_test = 99"):
        S.world_seeds(1, 99)


def test_same_world_same_files_other_world_other_structure(tmp_path):
    a = S.simulate_cohort(tmp_path / "a", 30, seed=4, world_seed=5, progress=False)
    b = S.simulate_cohort(tmp_path / "b", 30, seed=4, world_seed=5, progress=False)
    c = S.simulate_cohort(tmp_path / "c", 30, seed=4, world_seed=6, progress=False)
    for name in ("amrfinder_gt", "kleborate_gt", "gene_truth", "segments", "samples", "bin_features", "params"):
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert _world(a["cohort"].parent) == _world(b["cohort"].parent)
    np.testing.assert_array_equal(np.load(a["chrom_store"] / "counts.npy"), np.load(b["chrom_store"] / "counts.npy"))
    assert a["bin_features"].read_bytes() != c["bin_features"].read_bytes()  # the world's structure differs
    assert open_store(c["chrom_store"]).provenance["world_seed"] == 6
    assert "world6" in c["params"].read_text()


def test_cohort_json_records_the_world_and_realised_prevalence_follows_the_draw(worlds):
    target, realised = [], []
    for w, d in worlds.items():
        rec = _world(d)
        assert rec["world_seed"] == w and rec["preset"] == "drawn"
        assert set(rec["crosstalk"]) == set(S.build_world(w).genes["gene"])
        assert rec["carrier_pcn_range"] == {c: list(v) for c, v in W.world_strengths(w).pcn_by_contig.items()}
        truth = _read(d / "truth/gene_truth.tsv")
        fam = truth[truth["level"] == "family"].groupby("gene")["true_cn"].apply(lambda v: (v > 0).mean())
        for f, t in rec["family_prevalence_target"].items():
            target.append(t)
            realised.append(fam[f])
            assert rec["family_prevalence_realised"][f] == pytest.approx(fam[f], abs=1e-3)
    target, realised = np.array(target), np.array(realised)
    assert np.corrcoef(np.log(target), np.log(realised + 0.005))[0, 1] > 0.8
    assert realised.min() < 0.05 and realised.max() > 0.3  # 1-60 % realised, not one shared value


def test_depth_regime_and_blashv_rates_differ_between_worlds(worlds):
    medians, amp = [], []
    for w, d in worlds.items():
        smp = _read(d / "truth/samples.tsv")
        lo, hi = _world(d)["cohort_defaults"]["depth_range"]
        normal = smp[(smp["low_quality"].astype(str) == "False")]
        assert normal["depth"].between(lo, hi).all()
        medians.append(normal["depth"].median())
        kp = smp["species"] == S.SPECIES[0]
        rate = _world(d)["cohort_defaults"]["shv_amp_rate"]
        assert smp.loc[kp, "shv_amplified"].astype(str).eq("True").sum() == round(rate * kp.sum())
        amp.append(rate)
    assert max(medians) / min(medians) > 3 and min(medians) < 40
    assert min(amp) < 0.03 and max(amp) > 0.1


def test_a_fixed_020_threshold_fails_in_some_world_and_not_in_another(properties):
    """Non-carrier background PCN (mobile elements in the gene bins) varies between worlds."""
    by_gene = properties.groupby("gene")
    above = by_gene["noncarrier_above"].agg(["min", "max"])
    assert ((above["max"] >= 0.3) & (above["min"] <= 0.05)).any(), above
    bg = by_gene["noncarrier_pcn_median"].agg(["min", "max"])
    assert ((bg["max"] > 0.2) & (bg["max"] / np.maximum(bg["min"], 1e-3) > 10)).any(), bg


def test_carrier_pcn_distributions_differ_between_worlds(properties, worlds):
    spread = properties.groupby("gene")["carrier_pcn_median"].agg(lambda v: v.max() / v.min())
    assert spread.max() > 2
    low_copy = []
    for w, d in worlds.items():
        smp = _read(d / "truth/samples.tsv")
        world = S.build_world(w)
        for c in world.contigs.loc[world.contigs["type"] == "IncF-like", "contig"]:
            v = smp[f"backbone_pcn:{c}"].to_numpy()
            low_copy.append(((v > 0) & (v < 1.0)).sum() / max(1, (v > 0).sum()))
    assert max(low_copy) > 0.3  # IncF-like carriers at 0.5-1 copies in some world


def test_kleborate_undercounts_collapsed_tandem_copies_and_truth_keeps_its_meaning(worlds):
    collapsed_share = {}
    for w, d in worlds.items():
        smp = _read(d / "truth/samples.tsv").set_index("sample_id")
        truth = _read(d / "truth/gene_truth.tsv")
        shv = truth[truth["level"] == "chromosome"].set_index("sample_id")["true_cn"]
        np.testing.assert_allclose(shv[smp.index].to_numpy(), smp["shv_cn"].round(4).to_numpy(), atol=1e-4)
        kleb = _read(d / "kleborate_gt.tsv").set_index("sample_id")["blaSHV"]
        amp = smp[(smp["shv_amplified"].astype(str) == "True") & (smp["shv_cn_major"] >= 1.5)]
        if len(amp) < 3:
            continue
        flagged = amp["gt_label_noise"].str.contains("kleborate_collapsed")
        clean = ~amp["gt_label_noise"].str.contains("kleborate_blaSHV")
        chrom_count = kleb[amp.index] - (amp["plasmid_shv_pcn"] > 0)
        assert (chrom_count[flagged & clean] == 1).all()
        collapsed_share[w] = (flagged.mean(), _world(d)["cohort_defaults"]["kleborate_collapse_rate"])
    shares = np.array([s for s, _ in collapsed_share.values()])
    rates = np.array([r for _, r in collapsed_share.values()])
    assert shares.max() > 0.4 and shares.min() < 0.2
    assert np.corrcoef(shares, rates)[0, 1] > 0.7


def test_st_structure_differs_between_worlds(worlds):
    top = [(_read(d / "truth/samples.tsv")["lineage"].value_counts(normalize=True)).iloc[0] for d in worlds.values()]
    assert max(top) - min(top) > 0.1


def test_hard_preset_is_relative_to_the_world():
    st = W.world_strengths(4)
    lo, hi = st.cohort["depth_range"]
    cfg = S.SimConfig.make(hard=True, world=st.cohort)
    assert cfg.depth_range == (max(8.0, lo * 15 / 40), max(12.0, hi * 60 / 200))
    assert cfg.gc_strength == pytest.approx(st.cohort["gc_strength"] * 2.5)
    assert cfg.mixed_rate >= 0.05 and cfg.low_quality_rate >= 0.03


class _P:
    """The part of Params that ensure_simulated reads."""

    def __init__(self, simulate, seed=42):
        self.simulate = simulate
        self.values = {"seed": seed}


def test_tier_simulate_block_and_cli_take_a_world_seed(tmp_path, capsys):
    data = tmp_path / "data"
    block = {"data_dir": str(data), "n_samples": 15, "world_seed": 9, "progress": False}
    assert S.ensure_simulated(_P(block)) is not None
    assert json.loads((data / "cohort.json").read_text())["settings"]["world_seed"] == 9
    assert S.ensure_simulated(_P(block)) is None
    S.ensure_simulated(_P(dict(block, world_seed=10)))
    assert open_store(data / "chrom_store").provenance["world_seed"] == 10
    with pytest.raises(ParamsError, match="'world_seed' = 'x'"):
        S.ensure_simulated(_P(dict(block, world_seed="x")))
    assert cli_main(["simulate", "--out", str(tmp_path / "cli"), "--n-samples", "10", "--world-seed", "12"]) == 0
    assert open_store(tmp_path / "cli" / "chrom_store").provenance["world_seed"] == 12
    assert cli_main(["simulate", "--out", str(tmp_path / "bad"), "--n-samples", "10", "--world-seed", "-1"]) == 2
    assert "world_seed = -1; expected an integer >= 0" in capsys.readouterr().err
    assert math.isfinite(_world(tmp_path / "cli")["st_sigma"])


def test_worlds_figure_renders_from_cohorts_of_several_worlds(worlds, tmp_path):
    from cnvrock_lib.plots.simulation import render_worlds_figure

    written = render_worlds_figure({str(w): d for w, d in list(worlds.items())[:3]}, tmp_path / "img", dpi=40)
    assert [p.name for p in written] == ["sim_worlds_pcn.png"] and written[0].stat().st_size > 1000


def test_a_tier_yaml_simulate_block_with_world_seed_loads_and_simulates_that_world(tmp_path):
    import yaml

    from cnvrock_lib.params import load_params

    (tmp_path / "store").mkdir()
    tier = tmp_path / "tier.yaml"
    tier.write_text(yaml.safe_dump({"store_path": "store", "out_dir": "out", "seed": 5,
                                    "simulate": {"data_dir": "sim", "n_samples": 12, "world_seed": 21,
                                                 "progress": False}}))
    prm = load_params(tier)
    assert prm.simulate["world_seed"] == 21
    S.ensure_simulated(prm)
    assert _world(tmp_path / "sim")["world_seed"] == 21
    assert "world21" in (tmp_path / "sim" / "params.yaml").read_text()


def test_world_summary_is_one_flat_record_per_world(worlds):
    rows = pd.DataFrame([S.world_summary(d) for d in worlds.values()])
    assert list(rows["world_seed"]) == list(WORLDS) and (rows["preset"] == "drawn").all()
    genes = list(S.build_world(1).genes["gene"])
    for gene in genes:
        assert {f"carrier_pcn_low:{gene}", f"carrier_pcn_high:{gene}", f"background_pcn:{gene}"} <= set(rows)
        assert (rows[f"carrier_pcn_low:{gene}"] < rows[f"carrier_pcn_high:{gene}"]).all()
    assert rows["background_pcn:blaKPC-2"].nunique() > 1 and rows["depth_low"].nunique() == len(WORLDS)
    first = _world(worlds[WORLDS[0]])
    assert rows.loc[0, "prevalence:blaKPC"] == first["family_prevalence_realised"]["blaKPC"]
