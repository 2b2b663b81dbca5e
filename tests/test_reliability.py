"""Bad input and faults: each case of docs/RELIABILITY.md gives a clear error or a documented outcome.

Rows already covered elsewhere are referenced there by test name (tests/test_params.py,
tests/test_store.py, tests/test_run.py, tests/test_train.py) and not repeated here.
The slower cases that run notebooks are in tests/test_reliability_faults.py.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cnvrock_lib import atomic, reference, run, store
from cnvrock_lib.errors import InputError, OutputError, ParamsError, StoreError
from cnvrock_lib.params import load_params

REPO = Path(__file__).resolve().parents[1]
N_SAMPLES, N_BINS, N_PLASMID_BINS = 24, 400, 30
CHROM, PLASMID = "chr", "pX"
GENE = ("geneA", CHROM, 200_101, 200_900)          # one chromosomal gene, bins 200
PLASMID_GENE = ("pg1", PLASMID, 10_001, 11_000)     # one plasmid gene, bin 10


# ----------------------------------------------------------------------------- helpers
def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m cnvrock_lib.cli ARGS`` as a user would."""
    env = dict(os.environ, CNVROCK_BATCH="1")
    return subprocess.run([sys.executable, "-m", "cnvrock_lib.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.fixture
def cli_here(capsys):
    """``cnvrock ARGS`` in this process (fast); what it prints and returns, like :func:`cli`."""
    from cnvrock_lib import cli as command

    def invoke(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = command.main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return invoke


def assert_one_line_error(res: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """Exit ``code``, no traceback, exactly one ``cnvrock ...: error:`` line holding every fragment."""
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, res.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def chrom_bins(n_bins: int = N_BINS) -> np.ndarray:
    return reference.make_bins({CHROM: n_bins * 1000 - 400})


def plasmid_bins() -> np.ndarray:
    return reference.make_bins({PLASMID: N_PLASMID_BINS * 1000 - 100})


def make_counts(n_samples: int = N_SAMPLES, n_bins: int = N_BINS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson read counts around a smooth per-bin profile; returns ``(counts, expected)`` (reads per bin)."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(300, 900, n_samples)[:, None]
    profile = 1.0 + 0.3 * np.sin(np.linspace(0, 3 * np.pi, n_bins))[None, :]
    expected = depth * profile
    return rng.poisson(expected).astype(np.uint32), expected.astype(np.float32)


def write_raw_store(path: Path, counts, ids, bins, provenance: dict | None = None) -> Path:
    """A store written without validation, as another tool might have written it."""
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "counts.npy", counts)
    np.save(path / "sample_ids.npy", np.asarray(ids))
    np.save(path / "contigs.npy", bins)
    if provenance is not None:
        (path / "store.json").write_text(json.dumps(provenance))
    return path


def write_panels(root: Path, chrom_gene=GENE, plasmid_gene=PLASMID_GENE) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    chrom = root / "chrom_panel.tsv"
    chrom.write_text("gene\tcontig\tstart\tend\n" + "\t".join(map(str, chrom_gene)) + "\n")
    plas = root / "plasmid_panel.tsv"
    plas.write_text("gene\tcontig\tstart\tend\tabsent_threshold\n" + "\t".join(map(str, plasmid_gene)) + "\t\n")
    fam = root / "families.tsv"
    fam.write_text(f"family\tmembers\nfamA\t{plasmid_gene[0]}\n")
    return {"chrom_gene_coords_path": chrom, "plasmid_gene_coords_path": plas, "plasmid_gene_families_path": fam}


@pytest.fixture
def cohort(tmp_path) -> dict:
    """A small valid cohort: chromosome + plasmid stores, gene panels, and a tier YAML writer."""
    counts, expected = make_counts()
    ids = [f"SRR{i:03d}" for i in range(N_SAMPLES)]
    chrom = store.write_store(tmp_path / "chrom_store", counts, ids, chrom_bins())
    pc, _ = make_counts(N_SAMPLES, N_PLASMID_BINS, seed=1)
    plas = store.write_store(tmp_path / "plasmid_store", pc, ids, plasmid_bins())
    panels = write_panels(tmp_path / "panels")

    def tier(name: str = "tier", **overrides) -> Path:
        raw = {"store_path": str(chrom), "plasmid_store_path": str(plas), "out_dir": str(tmp_path / "out"),
               "report_dir": str(tmp_path / "reports" / name), "tier": name, "bootstrap_replicates": 50,
               **{k: str(v) for k, v in panels.items()}}
        raw.update(overrides)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return {"root": tmp_path, "chrom": chrom, "plasmid": plas, "ids": ids, "counts": counts,
            "expected": expected, "panels": panels, "tier": tier}


def tiny_fs(path: Path, size: str = "64k", read_only: bool = False) -> Path:
    """Mount a small tmpfs at ``path`` (root only); skip where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not root'})")
    return path


@pytest.fixture
def mounts():
    mounted: list[Path] = []
    yield lambda path, **kw: mounted.append(tiny_fs(path, **kw)) or path
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ----------------------------------------------------------------------------- params
def test_cli_misspelt_key_exits_2_with_suggestion(cohort):
    res = cli("run", str(cohort["tier"](epoch=3)))
    assert_one_line_error(res, 2, "unknown key 'epoch'", "did you mean 'epochs'")


def test_cli_wrong_type_and_range_exit_2(cohort, cli_here):
    assert_one_line_error(cli_here("run", str(cohort["tier"](epochs=-3))), 2,
                          "key 'epochs' = -3 is out of range; expected a positive integer")
    assert_one_line_error(cli_here("run", str(cohort["tier"](cnv_min_cn1_proportion=1.5))), 2,
                          "key 'cnv_min_cn1_proportion' = 1.5 is out of range; expected between 0 and 1")


def test_absent_threshold_must_be_below_amp_threshold(cohort):
    with pytest.raises(ParamsError, match=r"'pcn_absent_threshold' = 2.0 must be below 'pcn_amp_threshold' = 1.5"):
        load_params(cohort["tier"](pcn_absent_threshold=2.0))


def test_cli_missing_store_exits_2_naming_key_and_path(cohort, cli_here):
    res = cli_here("run", str(cohort["tier"](store_path=str(cohort["root"] / "no_such_store"))))
    assert_one_line_error(res, 2, "key 'store_path' points to", "no_such_store, which does not exist")


def test_cli_out_dir_inside_input_store_exits_2(cohort, cli_here):
    res = cli_here("run", str(cohort["tier"](out_dir=str(cohort["chrom"] / "results"))))
    assert_one_line_error(res, 2, "lies inside the input store of key 'store_path'", "never writes into an input store")
    assert not (cohort["chrom"] / "results").exists()


def test_out_dir_below_a_file_is_refused_before_any_work(cohort, cli_here):
    blocker = cohort["root"] / "a_file"
    blocker.write_text("not a folder\n")
    res = cli_here("run", str(cohort["tier"](out_dir=str(blocker / "results"))))
    assert_one_line_error(res, 2, "key 'out_dir'", f"{blocker} is a file; expected a folder path")


# ----------------------------------------------------------------------------- stores
@pytest.mark.parametrize("mutate,fragment", [
    (lambda c, i, b: (c, np.array(i[:-1]), b), "sample_ids.npy has 23 ids but counts.npy has 24 rows"),
    (lambda c, i, b: (c, np.array(i[:-1] + [i[0]]), b), "duplicate id 'SRR000' at indices [0, 23]"),
    (lambda c, i, b: (c, np.array(i), b[::-1].copy()), "is unsorted or overlaps bin"),
    (lambda c, i, b: (c.astype(np.int64) - 400, np.array(i), b), "has a negative count at sample"),
    (lambda c, i, b: (np.where(c == c.max(), np.nan, c.astype(np.float32)), np.array(i), b),
     "has a non-finite value at sample"),
])
def test_cli_bad_store_exits_2_before_any_notebook(cohort, mutate, fragment, cli_here):
    """The runner opens both stores (shapes, ids, bins, values) before any notebook starts."""
    c, i, b = mutate(cohort["counts"], list(cohort["ids"]), chrom_bins())
    bad = write_raw_store(cohort["root"] / "bad_store", c, i, b)
    res = cli_here("run", str(cohort["tier"](store_path=str(bad))))
    assert_one_line_error(res, 2, f"store {bad}", fragment)
    assert not (cohort["root"] / "out" / "notebooks").exists()


def test_integral_float_counts_are_accepted(tmp_path):
    counts, _ = make_counts(4, 20)
    path = write_raw_store(tmp_path / "s", counts.astype(np.float64), [f"s{i}" for i in range(4)], chrom_bins(20))
    s = store.open_store(path)
    np.testing.assert_array_equal(s.counts, counts)


def test_fractional_counts_need_a_depth_unit_in_store_json(tmp_path):
    counts, _ = make_counts(4, 20)
    values = counts.astype(np.float32)
    values[2, 7] += 0.25
    ids = [f"s{i}" for i in range(4)]
    path = write_raw_store(tmp_path / "s", values, ids, chrom_bins(20))
    with pytest.raises(StoreError, match=r"counts.npy holds fractional values \(sample 2 \(s2\), bin 7: .*\); "
                                         r"expected whole read counts.*\"unit\": \"mean_depth\""):
        store.open_store(path)
    ok = write_raw_store(tmp_path / "m", values, ids, chrom_bins(20), {"method": "mosdepth", "unit": "mean_depth"})
    assert store.open_store(ok).counts[2, 7] == pytest.approx(values[2, 7])


def test_plasmid_store_with_other_samples_is_reported_and_called_as_missing(cohort):
    """Decision: every chromosome-store sample gets calls; one without plasmid counts is -1 (no_plasmid_counts),
    a plasmid-store sample without chromosome counts is not called; the runner logs both counts."""
    ids = cohort["ids"]
    pc, _ = make_counts(N_SAMPLES, N_PLASMID_BINS, seed=1)
    other_ids = ids[3:] + ["ERR900", "ERR901", "ERR902"]          # 3 missing, 3 extra
    plas = store.write_store(cohort["root"] / "plasmid_other", pc, other_ids, plasmid_bins())
    params = load_params(cohort["tier"](plasmid_store_path=str(plas)))
    messages: list[str] = []
    summary = run.preflight(params, messages.append)
    assert summary["no_plasmid_counts"] == 3 and summary["plasmid_only"] == 3
    assert any("3 chromosome-store sample(s) are not in the plasmid store" in m and
               "3 plasmid-store sample(s) are not in the chromosome store" in m for m in messages)

    from cnvrock_lib import calling

    medians = np.full(N_SAMPLES, 600.0)
    calls, _ = calling.stage.call_plasmid_genes(params, np.asarray(ids), medians)
    missing = calls[calls["sample_id"].isin(ids[:3])]
    assert len(missing) and (missing["call"] == -1).all() and (missing["status"] == "no_plasmid_counts").all()
    assert not calls["sample_id"].isin(["ERR900", "ERR901", "ERR902"]).any()
    assert (calls.loc[~calls["sample_id"].isin(ids[:3]), "status"] == "ok").all()


def _stage02_inputs(cohort, params) -> None:
    """What stage 01 hands stage 02: medians.npy and reconstructions.npy (expected reads per bin)."""
    from cnvrock_lib import normalise

    counts = np.asarray(store.open_store(params.store_path).counts)
    out = params.out_path
    out.mkdir(parents=True, exist_ok=True)
    medians = normalise.sample_medians(counts)
    atomic.save_npy(out / "medians.npy", medians)
    profile = cohort["expected"] / cohort["expected"].mean(axis=1, keepdims=True)
    atomic.save_npy(out / "reconstructions.npy", (profile * medians[:, None]).astype(np.float32))


def test_all_zero_and_low_depth_samples_are_flagged_not_crashed(cohort):
    """Decision: a sample with no reads, or with a median depth below hmm_low_cov_threshold (10 reads/bin),
    is segmented (all bins masked), fails QC and gets uncallable calls (-1) — no crash, no NaN calls."""
    counts = cohort["counts"].copy()
    counts[0] = 0                                                    # an all-zero sample
    counts[1] = np.random.default_rng(3).poisson(4.0, N_BINS)        # median ~4 reads per bin
    chrom = store.write_store(cohort["root"] / "chrom_faulty", counts, cohort["ids"], chrom_bins())
    params = load_params(cohort["tier"](store_path=str(chrom)))
    _stage02_inputs(cohort, params)

    from cnvrock_lib import calling, segmentation

    segmentation.segment_cohort(params)
    qc = pd.read_csv(params.out_path / "sample_qc.tsv", sep="\t").set_index("sample_id")
    assert not qc.loc["SRR000", "qc_pass"] and not qc.loc["SRR001", "qc_pass"]
    assert qc.drop(index=["SRR000", "SRR001"])["qc_pass"].all()
    ratios = np.load(params.out_path / "copy_ratios.npy")
    assert np.isnan(ratios[:2]).all() and not np.isinf(ratios).any()

    result = calling.stage.call_genes(params)
    g = result.gene_calls.set_index("sample_id")
    assert (g.loc[["SRR000", "SRR001"], "call"] == -1).all()
    assert (g.loc[["SRR000", "SRR001"], "status"] == "qc_fail").all()
    p = result.plasmid_calls.set_index("sample_id")
    assert (p.loc[["SRR000", "SRR001"], "call"] == -1).all()
    assert (p.loc[["SRR000", "SRR001"], "status"] == "low_depth").all()


def test_stage01_trains_with_an_all_zero_sample(cohort):
    counts = cohort["counts"].copy()
    counts[0] = 0
    chrom = store.write_store(cohort["root"] / "chrom_zero", counts, cohort["ids"], chrom_bins())
    params = load_params(cohort["tier"](store_path=str(chrom), epochs=2, batch_size=8, warmup_epochs=1,
                                        aux_warmup_epochs=1, conv_channels=[4, 4, 4], aux_n_blocks=8,
                                        num_threads=1))
    from cnvrock_lib import training

    training.train_vae(params, progress=False, log=lambda m: None)
    assert np.load(params.out_path / "medians.npy")[0] == 1.0
    recon = np.load(params.out_path / "reconstructions.npy")
    assert recon.shape == (N_SAMPLES, N_BINS) and np.isfinite(recon).all()


def test_reconstructions_from_another_store_are_refused_by_stage02(cohort):
    params = load_params(cohort["tier"]())
    params.out_path.mkdir(parents=True)
    atomic.save_npy(params.out_path / "reconstructions.npy", np.ones((N_SAMPLES, N_BINS - 7), np.float32))
    atomic.save_npy(params.out_path / "medians.npy", np.full(N_SAMPLES, 600.0))
    from cnvrock_lib import segmentation

    with pytest.raises((InputError, StoreError), match=r"reconstructions.npy.*\(24, 393\).*\(24, 400\)"):
        segmentation.segment_cohort(params)
    assert not (params.out_path / "copy_ratios.npy").exists()


def test_copy_ratios_from_another_store_are_refused_by_stage03(cohort):
    params = load_params(cohort["tier"]())
    out = params.out_path
    out.mkdir(parents=True)
    for name, dtype in (("copy_ratios.npy", np.float32), ("states.npy", np.int8), ("state_posteriors.npy", np.float32)):
        atomic.save_npy(out / name, np.ones((N_SAMPLES + 2, N_BINS), dtype))
    from cnvrock_lib import calling

    with pytest.raises(InputError, match=r"copy_ratios.npy has shape \(26, 400\); expected \(24, 400\)"):
        calling.stage.call_genes(params)


# ----------------------------------------------------------------------------- ground truth and metadata
def _calls(out: Path, ids: list[str]) -> None:
    """Minimal stage-03 tables (columns of docs/ARCHITECTURE.md) for ``ids``: blaSHV normal, famA present."""
    from cnvrock_lib.calling import GENE_CALL_COLUMNS, PLASMID_CALL_COLUMNS

    out.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    call = np.array([2 if i % 4 == 0 else 1 for i in range(n)])
    g = pd.DataFrame({"sample_id": ids, "gene": "blaSHV", "call": call, "label": "normal", "crr": 1.0 + call / 2,
                      "crr_lo": 0.9, "crr_hi": 2.5, "confidence": 0.9, "status": "ok", "n_gene_bins": 1,
                      "n_usable_bins": 1, "species": "Klebsiella pneumoniae"}).reindex(columns=GENE_CALL_COLUMNS, fill_value="")
    pcall = np.array([1 if i % 2 == 0 else 0 for i in range(n)])
    p = pd.DataFrame({"sample_id": ids, "gene": "famA", "level": "family", "call": pcall, "label": "present",
                      "pcn": pcall * 2.0, "pcn_lo": 0.0, "pcn_hi": 3.0, "confidence": 0.9, "status": "ok",
                      "backbone_pcn": 1.0, "absent_threshold": 0.2, "threshold_method": "fixed"}).reindex(columns=PLASMID_CALL_COLUMNS, fill_value="")
    g.to_csv(out / "gene_calls.tsv", sep="\t", index=False)
    p.to_csv(out / "plasmid_gene_calls.tsv", sep="\t", index=False)


def _gt(root: Path, ids: list[str], **columns) -> Path:
    n = len(ids)
    frame = pd.DataFrame({"sample_id": ids, "biosample": "x",
                          "blaSHV": [1] * n, "famA": [1 if i % 2 == 0 else 0 for i in range(n)]})
    for name, values in columns.items():
        if values is None:
            frame = frame.drop(columns=name)
        else:
            frame[name] = values
    path = root / "gt.tsv"
    frame.to_csv(path, sep="\t", index=False)
    return path


def _meta(root: Path, ids: list[str], st: list[str] | None = None) -> Path:
    path = root / "meta.tsv"
    pd.DataFrame({"sample_id": ids, "Species": "Klebsiella pneumoniae",
                  "ST": st or ["ST11"] * len(ids), "sample_accession": "x"}).to_csv(path, sep="\t", index=False)
    return path


def _eval_params(cohort, gt: Path, meta: Path | None = None, kleborate: Path | None = None):
    over = {"kpsc_gt_path": str(gt), "eval_min_group_n": 2}
    if meta:
        over["kpsc_meta_path"] = str(meta)
    if kleborate:
        over["kpsc_kleborate_gt_path"] = str(kleborate)
    return load_params(cohort["tier"](**over))


def test_gt_without_sample_id_column_names_the_file(cohort, cli_here):
    ids = cohort["ids"]
    gt = cohort["root"] / "gt.tsv"
    pd.DataFrame({"run": ids, "blaSHV": 1}).to_csv(gt, sep="\t", index=False)
    params = _eval_params(cohort, gt)
    _calls(params.out_path, ids)
    from cnvrock_lib import evaluation

    with pytest.raises(InputError, match=rf"AMRFinder ground truth file {gt} lacks column\(s\) \['sample_id'\]"):
        evaluation.evaluate(params)
    res = cli_here("run", str(params.source))  # the runner checks it before stage 01
    assert_one_line_error(res, 2, str(gt), "lacks column(s) ['sample_id']")


def test_gt_gene_column_absent_is_reported_not_scored(cohort):
    ids = cohort["ids"]
    params = _eval_params(cohort, _gt(cohort["root"], ids, famA=None), _meta(cohort["root"], ids))
    _calls(params.out_path, ids)
    from cnvrock_lib import evaluation

    result = evaluation.evaluate(params)
    assert set(result.overall["gene"]) == {"blaSHV"}
    assert "no ground-truth column, not evaluated: famA" in result.text


@pytest.mark.parametrize("value", ["2", "0.5", "yes"])
def test_gt_presence_values_must_be_0_or_1(cohort, value, cli_here):
    """Decision: AMRFinder columns hold 0/1 family presence (empty or -1 = missing); anything else is an error
    naming file, column, sample and value — 2 or 0.5 are not silently read as present/absent. The runner
    checks the values before stage 01, not in stage 04 after training."""
    ids = cohort["ids"]
    fam = ["1" if i % 2 == 0 else "0" for i in range(len(ids))]
    fam[5] = value
    gt = _gt(cohort["root"], ids, famA=fam)
    from cnvrock_lib import evaluation

    with pytest.raises(InputError, match=rf"{gt}: column 'famA', sample 'SRR005' has value '{value}'; expected"):
        evaluation.load_ground_truth(gt)
    res = cli_here("run", str(cohort["tier"](kpsc_gt_path=str(gt))))
    assert_one_line_error(res, 2, str(gt), f"column 'famA', sample 'SRR005' has value '{value}'")
    assert not (cohort["root"] / "out" / "notebooks").exists()


def test_kleborate_copy_count_must_be_a_whole_number(cohort):
    ids = cohort["ids"]
    kl = cohort["root"] / "kleborate.tsv"
    counts = ["1"] * len(ids)
    counts[2] = "2.5"
    pd.DataFrame({"sample_id": ids, "blaSHV": counts}).to_csv(kl, sep="\t", index=False)
    from cnvrock_lib import evaluation

    with pytest.raises(InputError, match=rf"{kl}: column 'blaSHV', sample 'SRR002' has value '2.5'; expected"):
        evaluation.load_ground_truth(None, kl)


def test_samples_in_gt_but_not_in_store_and_the_reverse_are_counted(cohort):
    ids = cohort["ids"]
    gt_ids = ids[4:] + ["ERR1", "ERR2"]           # 4 store samples without GT, 2 GT samples not in the store
    params = _eval_params(cohort, _gt(cohort["root"], gt_ids), _meta(cohort["root"], ids))
    _calls(params.out_path, ids)
    from cnvrock_lib import evaluation

    result = evaluation.evaluate(params)
    assert result.summary["gt_without_calls"] == 2 and result.summary["calls_without_gt"] == 4
    assert result.summary["evaluated_samples"] == len(ids) - 4
    lines = {line.split()[0]: line.split()[-1] for line in result.text.splitlines()
             if line.split() and line.split()[0] in ("gt_without_calls", "calls_without_gt")}
    assert lines == {"gt_without_calls": "2", "calls_without_gt": "4"}


def test_empty_st_keeps_the_sample_in_overall(cohort):
    ids = cohort["ids"]
    st = ["ST11" if i % 2 else "" for i in range(len(ids))]
    params = _eval_params(cohort, _gt(cohort["root"], ids), _meta(cohort["root"], ids, st))
    _calls(params.out_path, ids)
    from cnvrock_lib import evaluation

    result = evaluation.evaluate(params)
    overall = result.overall.set_index("gene")
    assert overall.loc["famA", "n_eval"] == len(ids)
    assert set(result.by_st["ST"]) == {"ST11"}
    assert result.by_st.set_index("gene").loc["famA", "n_eval"] == len(ids) // 2


# ----------------------------------------------------------------------------- gene panels
@pytest.mark.parametrize("gene,fragment", [
    (("geneA", "chr9", 1001, 2000), "gene geneA is on contig chr9, which the store does not contain"),
    (("geneA", CHROM, 5000, 4000), "gene geneA has start 5000 > end 4000"),
    (("geneA", CHROM, 399_001, 450_000), "gene geneA ends at 450000 bp, past the end of chr (399600 bp)"),
])
def test_cli_bad_chromosomal_panel_exits_2_before_any_notebook(cohort, gene, fragment, cli_here):
    panels = write_panels(cohort["root"] / "bad_panels", chrom_gene=gene)
    res = cli_here("run", str(cohort["tier"](chrom_gene_coords_path=str(panels["chrom_gene_coords_path"]))))
    assert_one_line_error(res, 2, fragment)
    assert not (cohort["root"] / "out" / "notebooks").exists()


def test_cli_plasmid_gene_past_contig_end_exits_2(cohort, cli_here):
    panels = write_panels(cohort["root"] / "bad_panels", plasmid_gene=("pg1", PLASMID, 29_001, 31_000))
    res = cli_here("run", str(cohort["tier"](plasmid_gene_coords_path=str(panels["plasmid_gene_coords_path"]))))
    assert_one_line_error(res, 2, "gene pg1 ends at 31000 bp, past the end of pX (29900 bp)")


# ----------------------------------------------------------------------------- faults
def test_concurrent_run_on_one_out_dir_is_refused(cohort):
    tier = cohort["tier"]()
    out = cohort["root"] / "out"
    with run.out_dir_lock(out):
        res = cli("run", str(tier))
    assert_one_line_error(res, 4, f"out_dir {out} is in use by another CNVRock run (pid {os.getpid()}")
    assert not (out / "notebooks").exists()


def test_read_only_out_dir_exits_2_naming_the_path(cohort, mounts):
    ro = mounts(cohort["root"] / "ro", read_only=True)
    res = cli("run", str(cohort["tier"](out_dir=str(ro / "results"))))
    assert_one_line_error(res, 2, f"cannot write {ro / 'results'}", "Read-only file system")


def _no_litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def test_full_disk_on_atomic_writes_leaves_nothing(tmp_path, mounts):
    disk = mounts(tmp_path / "disk", size="64k")
    with pytest.raises(OutputError, match=rf"cannot write {disk}/big.npy: .*the filesystem is full"):
        atomic.save_npy(disk / "big.npy", np.zeros(100_000))
    with pytest.raises(OutputError, match=rf"cannot write {disk}/t.tsv: No space left on device \[ENOSPC\]"):
        atomic.write_tsv(disk / "t.tsv", pd.DataFrame({"a": np.arange(100_000)}))
    with pytest.raises(OutputError, match=rf"cannot write {disk}/store"):
        store.write_store(disk / "store", np.ones((50, 1000), np.uint32), [f"s{i}" for i in range(50)],
                          chrom_bins(1000))
    assert _no_litter(disk) == []
    atomic.write_text(disk / "small.txt", "fits\n")  # the space is free again
    assert (disk / "small.txt").read_text() == "fits\n"


def test_full_disk_error_keeps_the_previous_artefact(tmp_path, monkeypatch):
    """Without a tmpfs: a writer failing with ENOSPC half-way leaves the previous complete file in place."""
    target = tmp_path / "reconstructions.npy"
    atomic.save_npy(target, np.arange(5))

    def half_written(file, arr, allow_pickle=False):
        Path(file).write_bytes(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", half_written)
    with pytest.raises(OutputError, match=rf"cannot write {target}: No space left on device \[ENOSPC\]; "
                                          r"nothing was written there"):
        atomic.save_npy(target, np.zeros(10))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(target), np.arange(5))
    assert _no_litter(tmp_path) == ["reconstructions.npy"]


def test_sigkill_mid_write_leaves_only_a_hidden_temp_file_that_the_next_run_removes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = ("import time, numpy as np; from cnvrock_lib.atomic import atomic_path\n"
            f"with atomic_path({str(out / 'latents.npy')!r}, suffix='.npy') as tmp:\n"
            "    open(tmp, 'wb').write(b'partial'); print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    left = _no_litter(out)
    assert "latents.npy" not in left and len(left) == 1 and left[0].startswith(".latents.npy.")
    with run.out_dir_lock(out):
        removed = run.sweep_stale(out)
    assert [p.name for p in removed] == left
    assert _no_litter(out) == [".cnvrock.lock"]


def test_sigterm_outside_a_stage_unwinds_with_exit_143(tmp_path):
    """SIGTERM while the CLI itself works (here: simulating a cohort) removes the partial output and exits 143."""
    target = tmp_path / "sim"
    env = dict(os.environ, CNVROCK_BATCH="1")
    proc = subprocess.Popen([sys.executable, "-m", "cnvrock_lib.cli", "simulate", "--out", str(target),
                             "--n-samples", "1000"], stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while not any(tmp_path.glob(".sim.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    assert_one_line_error(res, 143, "terminated by SIGTERM", "rerun the same command")
    assert not target.exists() and _no_litter(tmp_path) == []


def test_exit_codes_match_the_documented_table():
    from cnvrock_lib import errors

    codes = {cls.__name__: cls.exit_code for cls in (errors.ParamsError, errors.StoreError, errors.InputError,
                                                     errors.OutputError, errors.StageError, errors.LockedError,
                                                     errors.Terminated)}
    assert codes == {"ParamsError": 2, "StoreError": 2, "InputError": 2, "OutputError": 2, "StageError": 3,
                     "LockedError": 4, "Terminated": 143}
    doc = (REPO / "docs" / "RELIABILITY.md").read_text()
    for code in (0, 1, 2, 3, 4, 130, 143):
        assert f"| {code} |" in doc
