"""Stage 04 (evaluation) on small hand-made calls, ground truth and metadata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import confusion_matrix, matthews_corrcoef, precision_score, recall_score, roc_auc_score

from cnvrock_lib import evaluation as ev
from cnvrock_lib.errors import InputError
from cnvrock_lib.params import load_params

GOLDEN = Path(__file__).parent / "data" / "evaluation_golden.txt"
KP, KQ, KV = "Klebsiella pneumoniae", "Klebsiella quasipneumoniae", "Klebsiella variicola"
NAN = float("nan")
NO_META = None  # sample without a metadata row
NO_ROW = "no row"  # sample without a call row for this gene

# id, species, ST, Kleborate blaSHV count, AMRFinder blaSHV, blaSHV call, CRR,
# blaKPC GT, blaKPC family call, PCN, blaCTX-M GT, blaCTX-M family call, PCN
COHORT = [
    ("S01", KP, "ST258", 1, 1, 1, 1.02, 1, 1, 1.80, 0, 0, 0.05),
    ("S02", KP, "ST258", 3, 1, 2, 2.90, 1, 1, 2.40, 0, 0, 0.10),
    ("S03", KP, "ST258", 2, 1, 1, 1.60, 1, 1, 1.20, 1, 1, 1.10),   # blaSHV amp missed (FN)
    ("S04", KP, "ST258", 1, 1, 2, 1.90, 0, 0, 0.10, 1, 1, 0.90),   # blaSHV amp over-called (FP)
    ("S05", KP, "ST11", 1, 1, 1, 0.98, 1, 2, 3.50, 0, 1, 0.60),    # CTX-M FP
    ("S06", KP, "ST11", 4, 1, 2, 3.80, 0, 0, 0.00, 1, 0, 0.30),    # CTX-M FN
    ("S07", KP, "ST11", 1, 1, -1, NAN, 1, -1, NAN, 1, -1, NAN),    # uncallable (QC fail)
    ("S08", KP, "", 1, 1, 1, 1.10, 0, 0, 0.05, 0, 0, 0.00),        # ST empty
    ("S09", KQ, "ST999", 0, 0, 0, 0.02, 0, 0, 0.00, "", 0, 0.00),  # CTX-M GT missing
    ("S10", KV, "ST888", 0, 0, -1, NAN, 1, 1, 2.00, 1, 1, 1.40),   # blaSHV outside callable species
    ("S11", NO_META, None, 1, 1, 1, 1.05, 0, 0, 0.10, 0, 0, 0.20),  # no metadata row
    ("S12", KP, "ST258", 1, 1, 1, 0.95, 1, NO_ROW, NAN, 0, 0, 0.10),  # no blaKPC call row
    ("S13", KP, "ST258", 5, 1, 2, 4.10, 1, 1, 1.50, 1, 1, 1.00),   # not in the hold-out list
    ("S15", KP, "ST11", 1, 1, 1, 1.00, 0, 0, 0.02, 0, 0, 0.00),
]
HOLDOUT = [r[0] for r in COHORT if r[0] != "S13"] + ["S14", "S99"]  # S14: GT but no calls; S99: unknown


def _tsv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, sep="\t", index=False, na_rep="")
    return path


def make_cohort(root: Path, *, kleborate: bool = True, meta: bool = True, holdout: bool = True,
                gt_drop: tuple[str, ...] = (), plasmid_levels: str = "both", min_group_n: int = 3,
                extra: dict | None = None) -> Path:
    """Write the hand-made cohort (calls, GT, metadata, hold-out, QC, segments) and a params YAML."""
    data, out = root / "data", root / "out"
    (data / "store").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    ids = [r[0] for r in COHORT]
    gt = pd.DataFrame({"sample_id": ids + ["S14"], "biosample": [f"SAMN{i:03d}" for i in range(len(ids) + 1)],
                       "blaSHV": [r[4] for r in COHORT] + [1], "blaKPC": [r[7] for r in COHORT] + [0],
                       "blaCTX-M": [r[10] for r in COHORT] + [0], "qnrB": 0})
    _tsv(data / "amrfinder.tsv", gt.drop(columns=list(gt_drop)))
    _tsv(data / "kleborate.tsv", pd.DataFrame({"sample_id": ids + ["S14"], "ST": [r[2] or "" for r in COHORT] + [""],
                                               "blaSHV": [r[3] for r in COHORT] + [1]}))
    _tsv(data / "metadata.tsv", pd.DataFrame(
        [{"sample_id": r[0], "Species": r[1], "ST": r[2], "sample_accession": f"SAMEA{r[0]}"}
         for r in COHORT if r[1] is not NO_META]))
    (data / "holdout.txt").write_text("# hold-out samples\n" + "\n".join(HOLDOUT) + "\n\n")

    status = {-1: "qc_fail"}
    chrom_rows = []
    for r in COHORT:
        call = r[5]
        st = "species_excluded" if r[1] == KV else status.get(call, "ok")
        chrom_rows.append({"sample_id": r[0], "gene": "blaSHV", "call": call,
                           "label": ev.CHROM_LABELS[call], "crr": r[6], "crr_lo": r[6] * 0.9 if r[6] == r[6] else NAN,
                           "crr_hi": r[6] * 1.1 if r[6] == r[6] else NAN, "confidence": 0.9, "status": st,
                           "n_gene_bins": 2, "n_usable_bins": 2, "species": r[1] or ""})
    _tsv(out / "gene_calls.tsv", pd.DataFrame(chrom_rows))
    prow = []
    for r in COHORT:
        for fam, call, pcn, member in (("blaKPC", r[8], r[9], "blaKPC-2"), ("blaCTX-M", r[11], r[12], "blaCTX-M-15"),
                                       ("blaNDM", 0, 0.01, "blaNDM-1")):
            if call == NO_ROW:
                continue
            base = {"sample_id": r[0], "pcn_lo": NAN, "pcn_hi": NAN, "confidence": 1.0,
                    "status": "ok" if call >= 0 else "low_depth", "backbone_pcn": NAN, "absent_threshold": 0.2,
                    "threshold_method": "fixed"}
            if plasmid_levels in ("both", "family"):
                prow.append({**base, "gene": fam, "level": "family", "call": call,
                             "label": ev.PLASMID_LABELS[call], "pcn": pcn})
            if plasmid_levels in ("both", "member"):
                # member rows differ from the family rows: only family rows may be scored
                mcall = call if plasmid_levels == "member" else (0 if call >= 0 else -1)
                prow.append({**base, "gene": member, "level": "member", "call": mcall,
                             "label": ev.PLASMID_LABELS[mcall], "pcn": pcn if plasmid_levels == "member" else 0.0})
                if plasmid_levels == "member" and fam == "blaCTX-M":
                    prow.append({**base, "gene": "blaCTX-M-14", "level": "member", "call": 0 if call >= 0 else -1,
                                 "label": "absent", "pcn": 0.05})
    _tsv(out / "plasmid_gene_calls.tsv", pd.DataFrame(prow))
    _tsv(out / "sample_qc.tsv", pd.DataFrame(
        [{"sample_id": r[0], "median_depth": 500.0, "usable_fraction": 0.95 - 0.01 * i,
          "noise_sd": 0.1, "cn1_fraction": 0.3 if r[0] == "S07" else 0.9, "qc_pass": r[0] != "S07",
          "n_segments": 1} for i, r in enumerate(COHORT)]))
    seg = []
    for i, r in enumerate(COHORT):
        if r[3] >= 2:  # an amplified stretch around blaSHV: two CN transitions
            seg += [(r[0], 1, 2_549_000, 1.0, 2549), (r[0], 2_549_001, 2_560_000, 2.0, 11),
                    (r[0], 2_560_001, 5_333_000, 1.0, 2773)]
        elif i % 4 == 0:  # a private deletion
            seg += [(r[0], 1, 1_000_000, 1.0, 1000), (r[0], 1_000_001, 1_010_000, 0.0, 10),
                    (r[0], 1_010_001, 5_333_000, 1.0, 4323)]
        else:
            seg.append((r[0], 1, 5_333_000, 1.0, 5333))
    seg = pd.DataFrame(seg, columns=["sample_id", "start", "end", "cn", "n_bins"])
    seg["chrom"], seg["n_masked"], seg["state"], seg["confidence"] = "NC_016845.1", 0, 2, 0.99
    seg["mean_ratio"] = seg["cn"]
    seg.to_parquet(out / "segments.parquet", index=False)

    raw = {"tier": "handmade", "store_path": str(data / "store"), "out_dir": str(out),
           "kpsc_gt_path": str(data / "amrfinder.tsv"),
           "kpsc_kleborate_gt_path": str(data / "kleborate.tsv") if kleborate else None,
           "kpsc_meta_path": str(data / "metadata.tsv") if meta else None,
           "holdout_ids_path": str(data / "holdout.txt") if holdout else None,
           "eval_min_group_n": min_group_n, **(extra or {})}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def cohort(tmp_path):
    return load_params(make_cohort(tmp_path))


def overall_row(result, gene):
    return result.overall.set_index("gene").loc[gene]


# ---------------------------------------------------------------- pure functions

@pytest.mark.parametrize("mode, gt, calls, exp_gt, exp_pred", [
    ("amp", [0, 1, 2, 5, NAN], [0, 1, 2, -1, 2], [0, 0, 1, 1, -1], [0, 0, 1, -1, 1]),
    ("presence", [0, 1, 2, 5, NAN], [0, 1, 2, -1, NAN], [0, 1, 1, 1, -1], [0, 1, 1, -1, -1]),
    ("del", [0, 1, 2, 0, NAN], [0, 1, 2, -1, 0], [1, 0, 0, 1, -1], [1, 0, 0, -1, 1]),
])
def test_labels_per_mode_keep_missing_missing(mode, gt, calls, exp_gt, exp_pred):
    assert ev.labels_from_gt(gt, mode).tolist() == exp_gt
    assert ev.labels_from_calls(calls, mode).tolist() == exp_pred


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown evaluation mode 'dup'"):
        ev.labels_from_gt([1], "dup")


def test_binary_metrics_match_scikit_learn():
    rng = np.random.default_rng(3)
    y_true = rng.integers(-1, 2, 400)
    y_pred = np.where(rng.random(400) < 0.8, y_true, rng.integers(-1, 2, 400))
    m = ev.binary_metrics(y_true, y_pred)
    both = (y_true >= 0) & (y_pred >= 0)
    t, p = y_true[both], y_pred[both]
    tn, fp, fn, tp = confusion_matrix(t, p, labels=[0, 1]).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(t, p))
    assert m["ppv"] == pytest.approx(precision_score(t, p))
    assert m["recall"] == pytest.approx(recall_score(t, p))
    assert m["fnr"] == pytest.approx(1 - recall_score(t, p))
    assert m["n_eval"] == both.sum() and m["n_pos"] == (t == 1).sum()
    assert m["call_rate"] == pytest.approx(np.mean(y_pred[y_true >= 0] >= 0))


def test_binary_metrics_hand_computed():
    # TP TP FP FN TN TN TN, plus a missing prediction with GT positive and a missing GT
    y_true = [1, 1, 0, 1, 0, 0, 0, 1, -1]
    y_pred = [1, 1, 1, 0, 0, 0, 0, -1, 1]
    m = ev.binary_metrics(y_true, y_pred)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 3)
    assert m["mcc"] == pytest.approx((2 * 3 - 1 * 1) / np.sqrt(3 * 3 * 4 * 4))
    assert m["fnr"] == pytest.approx(1 / 3) and m["ppv"] == pytest.approx(2 / 3)
    assert m["n_eval"] == 7 and m["n_pos"] == 3 and m["n_gt"] == 8
    assert m["call_rate"] == pytest.approx(7 / 8)
    assert m["gt_miss"] == pytest.approx(1 / 9) and m["pred_miss"] == pytest.approx(1 / 9)
    assert m["delta"] == pytest.approx(1 / 9)  # only the sample whose GT is present counts


def test_undefined_metrics_are_nan_and_printed_as_na():
    one_class = ev.binary_metrics([0, 0, 0, -1], [0, 1, 0, 0])
    assert np.isnan(one_class["mcc"]) and np.isnan(one_class["fnr"])
    assert one_class["ppv"] == 0.0  # one predicted positive, which is false
    no_calls = ev.binary_metrics([1, 0, 1], [0, 0, 0])
    assert np.isnan(no_calls["ppv"]) and no_calls["mcc"] == 0.0 and no_calls["fnr"] == 1.0
    nothing = ev.binary_metrics([-1, -1], [1, 0])
    assert nothing["n_eval"] == 0 and np.isnan(nothing["call_rate"])
    assert ev._fmt(np.nan) == "N/A" and ev._fmt(None) == "N/A"
    assert ev._fmt(-0.0001) == "0.000" and ev._fmt(0.4166) == "0.417" and ev._fmt(np.int64(7)) == "7"


def test_threshold_sweep_matches_scikit_learn():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    v = np.round(np.where(y == 1, rng.lognormal(0.5, 0.5, 300), rng.lognormal(-1, 0.7, 300)), 2)
    v[:5] = np.nan
    sweep = ev.threshold_sweep(y, v, "presence", max_thresholds=1000, extra_thresholds=[0.2])
    ok = np.isfinite(v)
    assert 0.2 in set(sweep["threshold"])
    for row in sweep.sample(25, random_state=1).itertuples():
        pred = (v[ok] >= row.threshold).astype(int)
        assert row.mcc == pytest.approx(matthews_corrcoef(y[ok], pred), abs=1e-12)
        assert row.tpr == pytest.approx(recall_score(y[ok], pred))
        assert row.fpr == pytest.approx(np.mean(pred[y[ok] == 0]))
    assert sweep["auc"].iloc[0] == pytest.approx(roc_auc_score(y[ok], v[ok]))
    assert (sweep["n"] == ok.sum()).all()
    dele = ev.threshold_sweep(1 - y, v, "del", max_thresholds=1000)
    row = dele.iloc[len(dele) // 2]
    pred = (v[ok] <= row.threshold).astype(int)
    assert row.mcc == pytest.approx(matthews_corrcoef(1 - y[ok], pred), abs=1e-12)
    assert dele["auc"].iloc[0] == pytest.approx(roc_auc_score(y[ok], v[ok]))
    assert ev.threshold_sweep([0, 0, 0], [0.1, 0.2, 0.3]).empty  # one class: no sweep
    assert len(ev.threshold_sweep(y, v, max_thresholds=20)) <= 20


def test_value_percentiles():
    p = ev.value_percentiles([np.nan, 1, 2, 3, 4, 5])
    assert p["n_values"] == 5 and p["p50"] == 3 and p["p10"] == pytest.approx(1.4)
    assert np.isnan(ev.value_percentiles([np.nan])["p90"])


# ---------------------------------------------------------------- joins and modes

def test_overall_on_the_handmade_cohort(cohort):
    result = ev.evaluate(cohort)
    shv = overall_row(result, "blaSHV")
    # blaSHV amp (Kleborate): S13 not in hold-out, S10 (Kv) excluded, S07 uncallable.
    assert shv["mode"] == "amp"
    assert (shv.tp, shv.fp, shv.fn, shv.tn) == (2, 1, 1, 7)
    assert shv.n_eval == 11 and shv.n == 12 and shv.call_rate == pytest.approx(11 / 12)
    kpc = overall_row(result, "blaKPC")
    assert kpc["mode"] == "presence" and (kpc.tp, kpc.fp, kpc.fn, kpc.tn) == (5, 0, 0, 6)
    assert set(result.overall["gene"]) == {"blaSHV", "blaKPC", "blaCTX-M"}
    for name in ("evaluation.txt", "evaluation_metrics.tsv", "threshold_sweep.tsv"):
        assert (cohort.out_path / name).is_file()
    assert not list(cohort.out_path.glob(".*tmp*"))


def test_missing_predictions_stay_missing(cohort):
    result = ev.evaluate(cohort, write=False)
    t = result.table.set_index(["gene", "sample_id"])
    assert t.loc[("blaKPC", "S12"), "call"] == -1 and t.loc[("blaKPC", "S12"), "pred"] == -1
    assert t.loc[("blaKPC", "S12"), "outcome"] == ""
    assert t.loc[("blaSHV", "S07"), "pred"] == -1
    kpc = overall_row(result, "blaKPC")
    assert kpc.fn == 0  # S12 (GT positive, no row) and S07 (call -1) are not negatives
    assert kpc.n_gt == 13 and kpc.n_eval == 11 and kpc.call_rate == pytest.approx(11 / 13)
    assert kpc.pred_miss == pytest.approx(2 / 13) and kpc.delta == pytest.approx(2 / 13)
    ctx = overall_row(result, "blaCTX-M")
    assert ctx.gt_miss == pytest.approx(1 / 13)  # S09 has an empty GT value


def test_metadata_is_a_left_join(cohort):
    result = ev.evaluate(cohort, write=False)
    s11 = result.table[result.table["sample_id"] == "S11"]
    # no species anywhere: "unknown", and kept for blaSHV (not known to be uncallable)
    assert len(s11) == 3 and (s11["species"] == ev.UNKNOWN).all()
    assert s11["ST"].isna().all()
    assert result.summary["without_metadata"] == 1
    kpc = overall_row(result, "blaKPC")
    assert kpc.n == 13  # every evaluated sample, with or without metadata


def test_without_metadata_file_everything_is_still_scored(tmp_path):
    params = load_params(make_cohort(tmp_path, meta=False))
    result = ev.evaluate(params, write=False)
    assert overall_row(result, "blaKPC").n == 13
    assert result.by_st.empty
    assert any("no metadata" in n for n in result.notes)
    # species from the calls' own column: K. variicola still excluded for blaSHV
    shv = result.table[result.table["gene"] == "blaSHV"].set_index("sample_id")
    assert "S10" not in shv.index and shv.loc["S01", "species"] == KP


def test_holdout_restricts_the_samples(cohort, tmp_path):
    result = ev.evaluate(cohort, write=False)
    ids = set(result.table["sample_id"])
    assert "S13" not in ids and "S14" not in ids and "S99" not in ids
    assert result.summary["evaluated_samples"] == 13 and result.summary["holdout_not_joined"] == 2
    everyone = ev.evaluate(load_params(make_cohort(tmp_path / "all", holdout=False)), write=False)
    assert "S13" in set(everyone.table["sample_id"]) and "S14" not in set(everyone.table["sample_id"])


def test_species_exclusion(cohort):
    result = ev.evaluate(cohort, write=False)
    t = result.table
    assert "S10" not in set(t.loc[t["gene"] == "blaSHV", "sample_id"])  # K. variicola: blaSHV not callable
    assert "S10" in set(t.loc[t["gene"] == "blaKPC", "sample_id"])     # plasmid genes: every species
    assert "S09" in set(t.loc[t["gene"] == "blaSHV", "sample_id"])     # K. quasipneumoniae is callable
    assert KV not in set(result.by_species.loc[result.by_species["gene"] == "blaSHV", "species"])
    wider = load_params(make_cohort(cohort.out_path.parent / "wide",
                                    extra={"eval_species": {"blaSHV": [KP, KQ, KV]}}))
    assert "S10" in set(ev.evaluate(wider, write=False).table.query("gene == 'blaSHV'")["sample_id"])


def test_kleborate_counts_set_amp_mode_else_presence(tmp_path):
    result = ev.evaluate(load_params(make_cohort(tmp_path, kleborate=False)), write=False)
    shv = overall_row(result, "blaSHV")
    assert shv["mode"] == "presence"
    # presence: every Kp/Kq sample with a call; S09 (Kq) is absent and called absent
    assert (shv.tp, shv.fp, shv.fn, shv.tn) == (10, 0, 0, 1)


def test_mode_override_scores_deletions(cohort):
    result = ev.evaluate(cohort, modes={"blaSHV": "del"}, write=False)
    shv = overall_row(result, "blaSHV")
    assert shv["mode"] == "del" and (shv.tp, shv.fp, shv.fn, shv.tn) == (1, 0, 0, 10)
    with pytest.raises(InputError, match="expected one of amp, presence, del"):
        ev.evaluate(cohort, modes={"blaSHV": "dup"}, write=False)


def test_plasmid_genes_scored_by_family(cohort):
    result = ev.evaluate(cohort, write=False)
    genes = set(result.table["gene"])
    assert {"blaKPC", "blaCTX-M"} <= genes and not genes & {"blaKPC-2", "blaCTX-M-15"}
    ctx = overall_row(result, "blaCTX-M")
    # family rows, not the member rows (which say "absent" everywhere): TP S03 S04 S10, FP S05, FN S06
    assert (ctx.tp, ctx.fp, ctx.fn, ctx.tn) == (3, 1, 1, 6)


def test_families_rebuilt_from_member_rows(tmp_path):
    params = load_params(make_cohort(tmp_path, plasmid_levels="member"))
    result = ev.evaluate(params, write=False)
    ctx = overall_row(result, "blaCTX-M")
    assert (ctx.tp, ctx.fp, ctx.fn, ctx.tn) == (3, 1, 1, 6)
    t = result.table.set_index(["gene", "sample_id"])
    # family PCN = sum of members (CTX-M-15 + CTX-M-14)
    assert t.loc[("blaCTX-M", "S03"), "value"] == pytest.approx(1.10 + 0.05)
    assert any("rebuilt from member calls" in n for n in result.notes)


def test_gt_file_lacking_a_gene_column(tmp_path):
    params = load_params(make_cohort(tmp_path, gt_drop=("blaCTX-M",)))
    result = ev.evaluate(params)
    assert "blaCTX-M" not in set(result.overall["gene"]) and "blaKPC" in set(result.overall["gene"])
    assert any("no ground-truth column" in n and "blaCTX-M" in n and "blaNDM" in n for n in result.notes)
    assert "note: no ground-truth column, not evaluated: blaCTX-M, blaNDM" in result.text
    assert any("ground truth without calls" in n and "qnrB" in n for n in result.notes)


def test_gt_without_sample_id_or_with_bad_values_is_an_error(tmp_path, cohort):
    gt_path = Path(cohort.kpsc_gt_path)
    frame = pd.read_csv(gt_path, sep="\t", dtype=str, keep_default_na=False)
    frame.rename(columns={"sample_id": "run"}).to_csv(gt_path, sep="\t", index=False)
    with pytest.raises(InputError, match=r"lacks column\(s\) \['sample_id'\]"):
        ev.evaluate(cohort)
    frame.loc[2, "blaKPC"] = "yes"
    frame.to_csv(gt_path, sep="\t", index=False)
    with pytest.raises(InputError, match=r"amrfinder.tsv: column 'blaKPC', sample 'S03' has value 'yes'"):
        ev.evaluate(cohort)
    frame.loc[2, "blaKPC"] = "1"
    frame.loc[3, "sample_id"] = "S01"
    frame.to_csv(gt_path, sep="\t", index=False)
    with pytest.raises(InputError, match="sample_id 'S01' appears more than once"):
        ev.evaluate(cohort)


def test_bad_calls_and_missing_inputs_are_errors(cohort):
    calls_path = cohort.out_path / "gene_calls.tsv"
    frame = pd.read_csv(calls_path, sep="\t", dtype=str, keep_default_na=False)
    frame.loc[1, "call"] = "3"
    frame.to_csv(calls_path, sep="\t", index=False)
    with pytest.raises(InputError, match=r"sample 'S02', gene 'blaSHV' has call '3'; expected -1, 0, 1 or 2"):
        ev.evaluate(cohort)
    calls_path.unlink()
    with pytest.raises(InputError, match="gene_calls.tsv not found .* run stage 03"):
        ev.evaluate(cohort)
    with pytest.raises(InputError, match="evaluation_metrics.tsv not found"):
        ev.headline_metrics(cohort.out_path)


def test_no_shared_samples_is_an_error(cohort):
    gt_path = Path(cohort.kpsc_gt_path)
    frame = pd.read_csv(gt_path, sep="\t", dtype=str, keep_default_na=False)
    frame["sample_id"] = "X" + frame["sample_id"]
    frame.to_csv(gt_path, sep="\t", index=False)
    Path(cohort.kpsc_kleborate_gt_path).write_text("sample_id\tST\n")
    with pytest.raises(InputError, match="no sample is in both the ground truth"):
        ev.evaluate(cohort)


def test_st_groups_need_eval_min_group_n(tmp_path):
    strict = ev.evaluate(load_params(make_cohort(tmp_path / "a", min_group_n=3)), write=False)
    assert set(strict.by_st["ST"]) == {"ST258", "ST11"}
    assert (strict.by_st["n_eval"] >= 3).all()
    # ST11: S05, S06, S15 evaluable for blaSHV (S07 uncallable) -> 3
    assert strict.by_st.set_index(["ST", "gene"]).loc[("ST11", "blaSHV"), "n_eval"] == 3
    loose = ev.evaluate(load_params(make_cohort(tmp_path / "b", min_group_n=1)), write=False)
    assert {"ST999", "ST888"} <= set(loose.by_st["ST"])
    assert "" not in set(loose.by_st["ST"])  # an empty ST is not a group
    strictest = ev.evaluate(load_params(make_cohort(tmp_path / "c", min_group_n=5)), write=False)
    assert set(strictest.by_st["ST"]) == {"ST258"}


def test_percentiles_by_label_and_outcome(cohort):
    result = ev.evaluate(cohort, write=False)
    by_label = result.by_label.set_index(["gene", "label"])
    amp = by_label.loc[("blaSHV", "amplified")]
    assert amp.n_samples == 3 and amp.p50 == pytest.approx(2.90)  # S02 2.9, S04 1.9, S06 3.8
    assert by_label.loc[("blaSHV", "uncallable"), "n_values"] == 0  # S07 has no CRR
    assert by_label.loc[("blaSHV", "uncallable"), "n_samples"] == 1
    assert ("blaKPC", "present") in by_label.index and ("blaSHV", "normal") in by_label.index
    fn = result.by_outcome.set_index(["gene", "outcome"]).loc[("blaSHV", "FN")]
    assert fn.n_samples == 1 and fn.p50 == pytest.approx(1.60)


def test_segment_diagnostics(cohort):
    result = ev.evaluate(cohort, write=False)
    seg = dict(zip(result.segments["metric"], result.segments["value"]))
    assert seg["samples_with_qc"] == 13 and seg["qc_pass_fraction"] == pytest.approx(12 / 13)
    # S02, S03, S06 amplified (2 transitions), S01, S05, S09 deletions (2 each; i % 4 == 0)
    assert seg["samples_with_non_cn1_segment"] == pytest.approx(6 / 13)
    assert seg["cn_transitions_mean"] == pytest.approx(12 / 13)
    path = cohort.out_path / "segments.parquet"
    pd.read_parquet(path).sample(frac=1, random_state=0).to_parquet(path, index=False)  # row order must not matter
    shuffled = ev.evaluate(cohort, write=False).segments
    pd.testing.assert_frame_equal(shuffled, result.segments)
    path.unlink()
    result = ev.evaluate(cohort, write=False)
    assert "samples_with_segments" not in set(result.segments["metric"])
    assert any("segments.parquet not found" in n for n in result.notes)


def test_tidy_metrics_and_headline_agree_with_the_text(cohort):
    result = ev.evaluate(cohort)
    tidy = pd.read_csv(cohort.out_path / "evaluation_metrics.tsv", sep="\t")
    assert list(tidy.columns) == ["scope", "group", "gene", "mode", "metric", "value"]
    assert {"overall", "species", "st", "value_by_label", "value_by_outcome", "segments",
            "call_status"} <= set(tidy["scope"])
    head = ev.headline_metrics(cohort.out_path)
    assert list(head.columns) == ["gene", "mode", "mcc", "fnr", "ppv", "n_eval"]
    assert list(head["gene"]) == list(result.overall["gene"])
    for row in head.itertuples():
        ref = overall_row(result, row.gene)
        assert row.mcc == pytest.approx(ref.mcc, nan_ok=True) and row.n_eval == ref.n_eval
        line = next(x for x in result.text.splitlines() if x.startswith(row.gene + " "))
        assert line.split()[2] == ev._fmt(ref.mcc, 2)
    sweep = pd.read_csv(cohort.out_path / "threshold_sweep.tsv", sep="\t")
    assert {"family", "threshold", "mcc", "tpr", "fpr", "ppv", "n", "auc"} <= set(sweep.columns)
    assert set(sweep["family"]) == {"blaSHV", "blaKPC", "blaCTX-M"}
    kpc = sweep[sweep["family"] == "blaKPC"]
    assert 0.2 in set(kpc["threshold"].round(6)) and kpc["auc"].iloc[0] == pytest.approx(1.0)
    assert (kpc["used_threshold"] == 0.2).all()  # the caller's absent threshold (plasmid rows)
    shv = sweep[sweep["family"] == "blaSHV"]
    assert (shv["used_threshold"] == cohort.cnv_crr_amp_threshold).all()
    assert 1.75 in set(shv["threshold"].round(6))


def test_same_inputs_same_artefacts(cohort):
    ev.evaluate(cohort)
    first = {n: (cohort.out_path / n).read_bytes() for n in
             ("evaluation.txt", "evaluation_metrics.tsv", "threshold_sweep.tsv")}
    ev.evaluate(cohort)
    assert first == {n: (cohort.out_path / n).read_bytes() for n in first}


def test_evaluation_txt_layout(cohort):
    text = ev.evaluate(cohort, write=False).text
    lines = text.splitlines()
    for title in ("OVERALL", "MISSINGNESS", "CRR/PCN BY PREDICTED LABEL", "CRR/PCN BY CALL OUTCOME",
                  "BY SPECIES", "BY SEQUENCE TYPE", "SEGMENT DIAGNOSTICS"):
        i = lines.index(title)
        assert lines[i - 1] == "=" * 64 and lines[i + 1] == "=" * 64 and lines[i + 3] == "-" * 64
    i = lines.index("OVERALL")
    assert lines[i + 2].split() == ["Gene", "Mode", "MCC", "FNR", "PPV", "call_rate", "n_eval"]
    assert all(len(x) <= 64 for x in lines[i:lines.index("MISSINGNESS")])
    # whitespace splitting gives one field per column for every gene row
    assert all(len(x.split()) == 7 for x in lines[i + 4:lines.index("MISSINGNESS") - 2])


def test_golden_file(cohort):
    """The evaluation.txt layout is frozen; regenerate with CNVROCK_UPDATE_GOLDEN=1 only on purpose.

    The header's generated time and the temp folder differ per run; they are replaced by
    ``<GENERATED>`` and ``<ROOT>`` before the comparison. Then the OVERALL header and rows are
    checked character by character against SPEC §8: ``Gene`` 12 left, ``Mode`` 9 left,
    ``MCC FNR PPV`` 5 right, ``call_rate`` 10 right, ``n_eval`` 8 right, one space between fields,
    floats with two decimals, ``N/A`` for undefined.
    """
    import re

    text = ev.evaluate(cohort, write=False).text
    root = str(cohort.out_path.parent)
    text = re.sub(r"(?m)^(Generated: +)\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", r"\1<GENERATED>",
                  text.replace(root, "<ROOT>"))
    if os.environ.get("CNVROCK_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    lines = text.splitlines()
    assert lines[:3] == ["=" * 64, "GUIDANCE", "=" * 64]
    head = lines.index("KpSC experiment evaluation")
    assert lines[head + 2:head + 4] == ["Generated:        <GENERATED>", "Out dir:          <ROOT>/out"]
    assert head < lines.index("OVERALL") < lines.index("SEGMENT DIAGNOSTICS") < lines.index("CNVROCK SUMMARY")
    i = lines.index("OVERALL")
    assert lines[i + 2] == "Gene         Mode        MCC   FNR   PPV  call_rate   n_eval"
    rows = lines[i + 4:lines.index("MISSINGNESS") - 2]
    assert len(rows) == 3
    number = re.compile(r"^ *(-?\d\.\d\d|N/A)$")
    for row in rows:
        assert len(row) == 60 and all(row[k] == " " for k in (12, 22, 28, 34, 40, 51)), repr(row)
        gene, mode = row[0:12].rstrip(), row[13:22].rstrip()
        assert gene and mode in ("amp", "presence", "del") and not row[0].isspace()
        for lo, hi in ((23, 28), (29, 34), (35, 40), (41, 51)):
            assert number.match(row[lo:hi]), (row, row[lo:hi])
        assert re.fullmatch(r" *\d+", row[52:60])


def test_plots_return_figures(cohort):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from cnvrock_lib.plots import evaluation as pe

    result = ev.evaluate(cohort, write=False)
    for fig in (pe.metrics_bars(result.overall), pe.st_heatmap(result.by_st),
                pe.confusion_matrices(result.overall), pe.threshold_curves(result.sweep, result.overall),
                pe.roc_curves(result.sweep, result.overall), pe.value_by_truth(result.table)):
        assert isinstance(fig, Figure) and fig.axes
        plt.close(fig)
    empty = pe.st_heatmap(result.by_st.iloc[0:0])
    assert isinstance(empty, Figure)
    plt.close(empty)


def test_mcc_from_counts_is_sklearns_mcc():
    rng = np.random.default_rng(5)
    for _ in range(20):
        t = rng.integers(0, 2, 60)
        p = np.where(rng.random(60) < 0.7, t, 1 - t)
        tp, fp = int(((t == 1) & (p == 1)).sum()), int(((t == 0) & (p == 1)).sum())
        fn, tn = int(((t == 1) & (p == 0)).sum()), int(((t == 0) & (p == 0)).sum())
        assert ev.mcc_from_counts(tp, fp, fn, tn) == pytest.approx(matthews_corrcoef(t, p), abs=1e-12)
    assert np.isnan(ev.mcc_from_counts(0, 3, 0, 5))       # truth has one class: undefined
    assert ev.mcc_from_counts(4, 3, 0, 0) == 0.0          # prediction has one class: sklearn's 0
