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


def test_missing_notebook_is_reported_not_available_never_faked(smoke_run, tmp_path, monkeypatch):
    """A stage whose notebook does not exist in this version stops the chain with 'not available'."""
    tier = _copy_tier(smoke_run, tmp_path)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("01_train_vae.ipynb", "03_call.ipynb"):  # 02 is missing: 03 must not run either
        (notebooks / name).write_bytes((R.NOTEBOOK_DIR / name).read_bytes())
    monkeypatch.setattr(R, "NOTEBOOK_DIR", notebooks)
    outcomes = R.run_tier(tier, stages=["02", "03", "04"])
    assert [(o.stage, o.status) for o in outcomes] == [("02", "not available")]
    out = tmp_path / "results"
    assert not (out / "segments.parquet").exists() and not (out / "gene_calls.tsv").exists()
    assert not (out / "notebooks").exists()
    tier_json = json.loads((tmp_path / "reports" / "smoke" / "tier.json").read_text())
    assert tier_json["stages"] == {"02": "not available"}


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
