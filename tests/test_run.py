"""The runner: the whole smoke chain, skip when unchanged, failures named, lock, rerun after a kill."""

from __future__ import annotations

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

from cnvrock_lib import run as R
from cnvrock_lib.errors import LockedError, StageError

REPO = Path(__file__).resolve().parents[1]


def test_lock_refuses_a_second_run(tmp_path):
    with R.out_dir_lock(tmp_path):
        code = ("import sys; sys.path.insert(0, %r)\n"
                "from cnvrock_lib.run import out_dir_lock\n"
                "from cnvrock_lib.errors import LockedError\n"
                "try:\n    with out_dir_lock(__import__('pathlib').Path(%r)): print('got it')\n"
                "except LockedError as e: print('locked:', e)\n") % (str(REPO), str(tmp_path))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        assert out.startswith("locked:") and f"pid {os.getpid()}" in out
    with R.out_dir_lock(tmp_path):  # released after the first holder left
        pass


def test_smoke_chain_outputs(smoke_run):
    out = smoke_run["out_dir"]
    assert [o.status for o in smoke_run["outcomes"]] == ["ran"] * 4
    prm = smoke_run["params"]
    n = len(np.load(Path(prm.store_path) / "sample_ids.npy"))
    assert np.load(out / "reconstructions.npy", mmap_mode="r").shape == (n, 5334)
    assert np.load(out / "states.npy", mmap_mode="r").dtype == np.int8
    seg = pd.read_parquet(out / "segments.parquet")
    assert {"sample_id", "chrom", "start", "end", "state", "cn", "confidence"} <= set(seg.columns)
    calls = pd.read_csv(out / "gene_calls.tsv", sep="\t")
    assert set(calls["call"].unique()) <= {-1, 0, 1, 2}
    assert (out / "evaluation.txt").read_text().strip()
    assert (out / "params.resolved.yaml").is_file()
    for stage in R.STAGES:
        assert (out / "notebooks" / stage.notebook).is_file()
        assert (Path(prm.report_dir) / stage.notebook.replace(".ipynb", ".html")).is_file()
    assert (Path(prm.report_dir).parent / "index.html").is_file()


def test_second_run_does_no_work(smoke_run):
    out = smoke_run["out_dir"]
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    outcomes = R.run_tier(smoke_run["params_path"])
    assert [o.status for o in outcomes] == ["skipped"] * 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.npy")} == before


def test_executed_notebooks_pass_nbval_lax(smoke_run):
    executed = sorted((smoke_run["out_dir"] / "notebooks").glob("*.ipynb"))
    assert len(executed) == 4
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                          "--rootdir", str(smoke_run["out_dir"]), *map(str, executed)],
                         capture_output=True, text=True, cwd=REPO / "notebooks",
                         env=dict(os.environ, CNVROCK_BATCH="1"))
    assert res.returncode == 0, res.stdout[-3000:]


def _copy_tier(smoke_run, tmp_path, **overrides) -> Path:
    raw = yaml.safe_load(Path(smoke_run["params_path"]).read_text())
    raw["out_dir"] = str(tmp_path / "results")
    raw["report_dir"] = str(tmp_path / "reports" / "smoke")
    raw.update(overrides)
    f = tmp_path / "smoke.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


def test_failing_stage_is_named_and_its_notebook_kept(smoke_run, tmp_path):
    tier = _copy_tier(smoke_run, tmp_path)
    # stage 02 cannot read a reconstructions.npy of the wrong shape
    out = tmp_path / "results"
    for stage in ("01",):
        R.run_tier(tier, stages=[stage])
    np.save(out / "reconstructions.npy", np.ones((3, 7), dtype=np.float32))
    with pytest.raises(StageError, match=r"stage 02 \(02_segment.ipynb\) failed in cell \d+") as err:
        R.run_tier(tier, stages=["02"])
    assert "reconstructions" in str(err.value)
    assert (out / "notebooks" / "02_segment.ipynb").is_file()
    assert (tmp_path / "reports" / "smoke" / "02_segment.html").is_file()
    assert not (out / "manifests" / "stage_02.json").exists()


def test_killed_stage_reruns_to_correct_artefacts(smoke_run, tmp_path):
    tier = _copy_tier(smoke_run, tmp_path)
    cmd = [sys.executable, "-m", "cnvrock_lib.cli", "run", str(tier), "--stages", "01"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    out = tmp_path / "results"
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "training_log.tsv").exists() and not (out / "checkpoint_last.pth").exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifests" / "stage_01.json").exists()
    outcomes = R.run_tier(tier, stages=["01"])
    assert outcomes[0].status == "ran"
    ref = smoke_run["out_dir"]
    for name in ("latents.npy", "reconstructions.npy", "medians.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(ref / name), err_msg=name)
    assert json.loads((out / "manifests" / "stage_01.json").read_text())["manifest"]["stage"] == "01"


def test_a_missing_notebook_fails_before_anything_runs(smoke_run, tmp_path, monkeypatch, capsys):
    """A requested stage without its notebook (a non-editable install) exits non-zero before any stage runs."""
    from cnvrock_lib import cli

    tier = _copy_tier(smoke_run, tmp_path)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01_train_vae.ipynb", "03_call.ipynb"):  # 02 is missing: 03 must not run either
        (notebooks / name).write_bytes((R.NOTEBOOK_DIR / name).read_bytes())
    monkeypatch.setattr(R, "NOTEBOOK_DIR", notebooks)
    with pytest.raises(StageError, match=r"stage\(s\) 02 \(02_segment.ipynb\), 04 \(04_evaluate.ipynb\) cannot run: no such notebook"):
        R.run_tier(tier, stages=["02", "03", "04"])
    out = tmp_path / "results"
    assert not out.exists()
    assert cli.main(["run", str(tier)]) == 3
    err = capsys.readouterr().err
    assert "cannot run: no such notebook" in err and "Traceback" not in err and not out.exists()


def test_progress_lines_stay_out_of_the_html_report(tmp_path):
    """[cnvrock ...] progress lines belong to the job log; other stderr (warnings) stays in the report."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr",
                                           text="[cnvrock train] epoch 1/80 train 1.0\n[cnvrock train] epoch 2/80\n"),
                    nbformat.v4.new_output("stream", name="stderr",
                                           text="[cnvrock segment] stage 02: segmented 10/10\nUserWarning: odd\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="[cnvrock train] printed on stdout\n")]
    nb.cells = [cell]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    html = R.render_html(path, tmp_path / "x.html").read_text()
    assert "epoch 1/80" not in html and "segmented 10/10" not in html
    assert "UserWarning: odd" in html and "printed on stdout" in html
    assert "epoch 1/80" in path.read_text()  # the executed notebook keeps everything


# ----------------------------------------------------------------------------- issue 15: the stage cache
def _copy_results(smoke_run, tmp_path, **overrides) -> Path:
    """A tier whose out_dir is a copy (mtimes kept) of the finished smoke run's."""
    import shutil

    shutil.copytree(smoke_run["out_dir"], tmp_path / "results")
    return _copy_tier(smoke_run, tmp_path, **overrides)


def test_every_params_key_is_read_by_a_stage_or_declared_artefact_free():
    from cnvrock_lib.params import SCHEMA

    listed = set(R.NO_ARTEFACT_KEYS).union(*R.STAGE_PARAMS.values())
    assert set(SCHEMA) - listed == set()
    assert listed - set(SCHEMA) == set()
    assert set(R.STAGE_PARAMS) == {s.key for s in R.STAGES}


def test_a_stage03_key_change_reruns_only_stages_03_and_04(smoke_run, tmp_path):
    tier = _copy_results(smoke_run, tmp_path, pcn_threshold_method="mixture")
    outcomes = R.run_tier(tier)
    assert [(o.stage, o.status) for o in outcomes] == [("01", "skipped"), ("02", "skipped"), ("03", "ran"),
                                                       ("04", "ran")]
    assert [o.status for o in R.run_tier(tier)] == ["skipped"] * 4


def test_a_yaml_edit_during_a_run_cannot_poison_the_cache(smoke_run, tmp_path, monkeypatch):
    """The YAML is edited while stage 02 runs and put back afterwards: no stage saw the edit."""
    tier = _copy_results(smoke_run, tmp_path)
    for key in ("02", "03", "04"):
        (tmp_path / "results" / "manifests" / f"stage_{key}.json").unlink()
    original = tier.read_text()
    real_execute = R._execute

    def edit_during_stage_02(stage, *args, **kwargs):
        if stage.key == "02":
            tier.write_text(original + "cnv_crr_amp_threshold: 0.3\n")
        return real_execute(stage, *args, **kwargs)

    monkeypatch.setattr(R, "_execute", edit_during_stage_02)
    assert [o.status for o in R.run_tier(tier)] == ["skipped", "ran", "ran", "ran"]
    monkeypatch.undo()
    tier.write_text(original)
    assert [o.status for o in R.run_tier(tier)] == ["skipped"] * 4
    out, ref = tmp_path / "results", smoke_run["out_dir"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "gene_calls.tsv", sep="\t"),
                                  pd.read_csv(ref / "gene_calls.tsv", sep="\t"))
    resolved = yaml.safe_load((out / "params.resolved.yaml").read_text())
    assert resolved["params"]["cnv_crr_amp_threshold"] == 1.75
    assert resolved["source"] == str(tier)


def test_an_input_edited_during_its_stage_makes_the_stage_rerun(smoke_run, tmp_path, monkeypatch):
    import shutil

    gt = tmp_path / "gt.tsv"
    shutil.copy(smoke_run["params"].kpsc_gt_path, gt)
    tier = _copy_results(smoke_run, tmp_path, kpsc_gt_path=str(gt))
    (tmp_path / "results" / "manifests" / "stage_04.json").unlink()
    real_execute = R._execute

    def edit_during_stage_04(stage, *args, **kwargs):
        result = real_execute(stage, *args, **kwargs)
        if stage.key == "04":
            gt.write_text(gt.read_text() + "\n")
        return result

    monkeypatch.setattr(R, "_execute", edit_during_stage_04)
    assert [o.status for o in R.run_tier(tier, stages=["04"])] == ["ran"]
    monkeypatch.undo()
    assert [o.status for o in R.run_tier(tier, stages=["04"])] == ["ran"]


def test_a_same_size_edit_with_its_mtime_restored_changes_the_fingerprint(smoke_run, tmp_path):
    import shutil

    gt = tmp_path / "gt.tsv"
    shutil.copy(smoke_run["params"].kpsc_gt_path, gt)
    tier = _copy_tier(smoke_run, tmp_path, kpsc_gt_path=str(gt))
    from cnvrock_lib.params import load_params

    stage = R.STAGES[3]
    before = R.stage_manifest(load_params(tier), stage)
    st = gt.stat()
    text = gt.read_text()
    flipped = text.replace("\t0\n", "\t1\n", 1) if "\t0\n" in text else text.replace("\t1\n", "\t0\n", 1)
    assert flipped != text and len(flipped) == len(text)
    gt.write_text(flipped)
    os.utime(gt, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert gt.stat().st_size == st.st_size and gt.stat().st_mtime_ns == st.st_mtime_ns
    assert R.stage_manifest(load_params(tier), stage)["inputs"] != before["inputs"]


def test_large_files_are_fingerprinted_by_size_mtime_and_sampled_content(tmp_path):
    big = tmp_path / "big.npy"
    big.write_bytes(bytes(R.SMALL_FILE + 1000))
    first = R.file_fingerprint(big)
    st = big.stat()
    with open(big, "r+b") as handle:  # the last block is always sampled
        handle.seek(st.st_size - 10)
        handle.write(b"x")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert R.file_fingerprint(big) != first and len(first) == 3


def test_stages_after_an_unfinished_stage01_are_refused(smoke_run, tmp_path):
    tier = _copy_results(smoke_run, tmp_path)
    (tmp_path / "results" / "manifests" / "stage_01.json").unlink()  # as after a killed stage 01
    with pytest.raises(StageError, match=r"stage 02 reads reconstructions.npy from stage 01, which is not up to date"):
        R.run_tier(tier, stages=["02", "03", "04"])
    assert not (tmp_path / "results" / "manifests" / "stage_01.json").exists()


def test_force_trains_afresh_instead_of_resuming(smoke_run, tmp_path):
    tier = _copy_results(smoke_run, tmp_path)
    assert (tmp_path / "results" / "checkpoint_last.pth").is_file()
    assert [o.status for o in R.run_tier(tier, stages=["01"], force=True)] == ["ran"]
    summary = json.loads((tmp_path / "results" / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] is None
