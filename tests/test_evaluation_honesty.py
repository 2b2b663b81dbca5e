"""Stage 04 states its uncertainty: bootstrap intervals of MCC/recall/PPV, no MCC for ST groups with
fewer than 5 positives or negatives, and blaSHV scored against both definitions of a positive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import matthews_corrcoef, precision_score, recall_score

from cnvrock_lib import evaluation as ev
from cnvrock_lib.evaluation import tables
from cnvrock_lib.evaluation.metrics import MIN_GROUP_CLASS, metric_intervals


def _labels(tp, fp, fn, tn):
    t = np.array([1] * tp + [0] * fp + [1] * fn + [0] * tn)
    p = np.array([1] * tp + [1] * fp + [0] * fn + [0] * tn)
    return t, p


def test_intervals_equal_a_row_bootstrap_and_hold_the_estimate():
    tp, fp, fn, tn = 30, 6, 9, 155
    got = metric_intervals(tp, fp, fn, tn, np.random.default_rng(1), n_replicates=4000)
    t, p = _labels(tp, fp, fn, tn)
    rng = np.random.default_rng(2)
    reps = {"mcc": [], "recall": [], "ppv": []}
    for _ in range(1500):   # the textbook bootstrap: resample the samples, recompute with scikit-learn
        i = rng.integers(0, t.size, t.size)
        reps["mcc"].append(matthews_corrcoef(t[i], p[i]))
        reps["recall"].append(recall_score(t[i], p[i]))
        reps["ppv"].append(precision_score(t[i], p[i]))
    for name, point in (("mcc", matthews_corrcoef(t, p)), ("recall", recall_score(t, p)),
                        ("ppv", precision_score(t, p))):
        lo, hi = np.quantile(reps[name], [0.025, 0.975])
        assert got[f"{name}_lo"] == pytest.approx(lo, abs=0.03) and got[f"{name}_hi"] == pytest.approx(hi, abs=0.03)
        assert got[f"{name}_lo"] < point < got[f"{name}_hi"]
    wide = metric_intervals(3, 1, 1, 15, np.random.default_rng(1))
    assert wide["mcc_hi"] - wide["mcc_lo"] > got["mcc_hi"] - got["mcc_lo"]   # fewer samples, wider
    assert np.isnan(metric_intervals(0, 2, 0, 9, np.random.default_rng(1))["mcc_lo"])   # no positive: undefined


def _table(groups: dict[str, tuple[int, int, int, int]]) -> pd.DataFrame:
    rows = []
    for st, cells in groups.items():
        t, p = _labels(*cells)
        for k, (a, b) in enumerate(zip(t, p)):
            rows.append({"sample_id": f"{st}_{k}", "gene": "blaKPC", "kind": "family", "mode": "presence",
                         "gt": a, "pred": b, "ST": st, "species": "Klebsiella pneumoniae", "call": b,
                         "outcome": "TP", "value": float(b), "value_name": "pcn", "status": "ok"})
    return pd.DataFrame(rows)


def test_st_groups_need_five_positives_and_five_negatives_for_an_mcc():
    table = _table({"ST11": (5, 1, 1, 6), "ST258": (3, 0, 1, 20), "ST15": (6, 0, 0, 4)})
    by_st = tables.summarise(table, min_group_n=3)["by_st"].set_index("ST")
    assert np.isfinite(by_st.loc["ST11", "mcc"]) and np.isfinite(by_st.loc["ST11", "mcc_lo"])
    assert np.isnan(by_st.loc["ST258", "mcc"]) and np.isnan(by_st.loc["ST15", "mcc"])   # 4 pos / 4 neg
    assert by_st.loc["ST258", "n_eval"] == 24 and MIN_GROUP_CLASS == 5
    overall = tables.summarise(table, min_group_n=3)["overall"].iloc[0]
    assert overall.mcc_lo <= overall.mcc <= overall.mcc_hi


def test_blashv_is_scored_against_both_definitions_and_labelled():
    ids = [f"S{i}" for i in range(12)]
    # S0-S2 tandem amplifications, S3-S4 plasmid-borne extra copy (assembly count 2, chromosome 1)
    gt = [1, 1, 1, 1, 1] + [0] * 7
    pred = [1, 1, 1, 1, 0] + [0] * 7
    table = pd.DataFrame({"sample_id": ids, "gene": "blaSHV", "kind": "chromosome", "mode": "amp", "gt": gt,
                          "pred": pred})
    truth = pd.DataFrame({"sample_id": ids, "gene": "blaSHV", "level": "chromosome",
                          "true_cn": [3, 2, 4, 1, 1] + [1] * 7})
    defs = tables.positive_definitions(table, truth).set_index("definition")
    assert set(defs.index) == {tables.ASSEMBLY_DEFINITION, tables.CHROMOSOMAL_DEFINITION}
    assert defs.loc[tables.ASSEMBLY_DEFINITION, "n_pos"] == 5 and defs.loc[tables.ASSEMBLY_DEFINITION, "tp"] == 4
    assert defs.loc[tables.CHROMOSOMAL_DEFINITION, "n_pos"] == 3 and defs.loc[tables.CHROMOSOMAL_DEFINITION, "fp"] == 1
    only_assembly = tables.positive_definitions(table, None)
    assert list(only_assembly["definition"]) == [tables.ASSEMBLY_DEFINITION]


def test_the_tidy_table_and_the_text_carry_the_intervals(tmp_path):
    from test_evaluate import make_cohort

    from cnvrock_lib.params import load_params

    result = ev.evaluate(load_params(make_cohort(tmp_path), check_files=False))
    tidy = pd.read_csv(result.paths["evaluation_metrics.tsv"], sep="\t")
    overall = tidy[tidy["scope"] == "overall"]
    assert {"mcc_lo", "mcc_hi", "recall_lo", "recall_hi", "ppv_lo", "ppv_hi"} <= set(overall["metric"])
    assert "CNVROCK OVERALL WITH 95 % INTERVALS" in result.text
    assert "positive = assembly copy count >= 2" in result.text
    # additions come after every original block
    assert result.text.index("CNVROCK OVERALL") > result.text.index("SEGMENT DIAGNOSTICS")
