"""Faults while a stage's notebook runs: SIGTERM (Slurm pre-emption), a killed kernel, a full disk.

These run stage 01 of the smoke tier through ``python -m cnvrock_lib.cli run`` (a kernel
start each, so tens of seconds per test). SIGKILL of the whole run and the rerun's
correct artefacts are in tests/test_run.py; the exact resume of training after SIGTERM
in tests/test_train.py. See docs/RELIABILITY.md.
"""

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
import torch
import yaml

from cnvrock_lib import run as R

from test_reliability import assert_one_line_error, tiny_fs

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 8


def tier_copy(smoke_params_path: Path, root: Path, **overrides) -> Path:
    """The smoke tier with its results and reports under ``root`` (same simulated data)."""
    raw = yaml.safe_load(Path(smoke_params_path).read_text())
    raw.update({"out_dir": str(root / "results"), "report_dir": str(root / "reports" / "smoke"), **overrides})
    root.mkdir(parents=True, exist_ok=True)
    path = root / "smoke.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def start_run(tier: Path, *stages: str) -> subprocess.Popen:
    env = dict(os.environ, CNVROCK_BATCH="1")
    return subprocess.Popen([sys.executable, "-m", "cnvrock_lib.cli", "run", str(tier), "--stages", ",".join(stages)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            start_new_session=True)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the notebook kernel runs in its own session)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            pytest.fail(f"{path.name} never appeared (exit {proc.returncode}): {err[-2000:]}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, pids: list[int]) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=180)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    lingering = [p for p in pids if Path(f"/proc/{p}").exists()]
    assert not lingering, f"processes still running after the run ended: {lingering}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def notebook_errors(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [f"{o['ename']}: {o['evalue']}" for c in nb["cells"] for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


def assert_complete_artefacts(out: Path) -> None:
    """Every file in ``out_dir`` is complete: no temporary litter, every array and table loads."""
    names = [p.name for p in out.rglob("*") if p.is_file()]
    assert not [n for n in names if ".tmp" in n or n.endswith(".old")], names
    for path in out.glob("*.npy"):
        np.load(path)
    for path in out.glob("*.tsv"):
        pd.read_csv(path, sep="\t")
    for path in out.glob("*.pth"):
        torch.load(path, weights_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("who", ["job", "runner"])
def test_sigterm_during_training_stops_cleanly_and_the_rerun_resumes(smoke_params_path, tmp_path, who):
    """Slurm pre-emption signals every process of the job ("job"); ``kill PID`` only the runner ("runner"),
    which passes SIGTERM on to the kernel. Either way: exit 143, one line, the last epoch kept."""
    tier = tier_copy(smoke_params_path, tmp_path, epochs=EPOCHS, patience=EPOCHS)
    out = tmp_path / "results"
    proc = start_run(tier, "01")
    wait_for(out / "checkpoint_last.pth", proc)
    pids = descendants(proc.pid)
    for pid in pids if who == "job" else [proc.pid]:
        os.kill(pid, signal.SIGTERM)
    res = finish(proc, pids)
    assert_one_line_error(res, 143, "stopped by SIGTERM during stage 01 (01_train_vae.ipynb)",
                          "rerun the same command", "resumes from it")
    saved = torch.load(out / "checkpoint_last.pth", weights_only=False)["epoch"]
    assert 1 <= saved < EPOCHS
    assert not (out / "manifests" / "stage_01.json").exists()
    executed = out / "notebooks" / "01_train_vae.ipynb"
    assert any(e.startswith("TrainingInterrupted: stage 01: SIGTERM") for e in notebook_errors(executed))
    assert (tmp_path / "reports" / "smoke" / "01_train_vae.html").is_file()
    assert_complete_artefacts(out)
    if who == "runner":
        return
    outcomes = R.run_tier(tier, stages=["01"])
    assert outcomes[0].status == "ran"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == saved + 1
    log = pd.read_csv(out / "training_log.tsv", sep="\t")
    assert log["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert np.load(out / "reconstructions.npy").shape[1] == 5334


@pytest.mark.slow
def test_kernel_killed_mid_stage_is_a_named_stage_failure(smoke_params_path, tmp_path):
    """The out-of-memory killer takes the kernel, not the runner: exit 3 naming the stage."""
    tier = tier_copy(smoke_params_path, tmp_path, epochs=EPOCHS, patience=EPOCHS)
    out = tmp_path / "results"
    proc = start_run(tier, "01")
    wait_for(out / "checkpoint_last.pth", proc)
    pids = descendants(proc.pid)
    kernels = [p for p in pids if p != proc.pid]
    assert kernels
    for pid in kernels:
        os.kill(pid, signal.SIGKILL)
    res = finish(proc, pids)
    assert_one_line_error(res, 3, "stage 01 (01_train_vae.ipynb): the notebook kernel died")
    assert not (out / "manifests" / "stage_01.json").exists()
    assert (out / "notebooks" / "01_train_vae.ipynb").is_file()
    assert_complete_artefacts(out)


@pytest.mark.slow
def test_full_disk_during_a_stage_names_the_file_and_leaves_no_partial_artefact(smoke_params_path, tmp_path):
    disk = tiny_fs(tmp_path / "disk", size="1m")  # params, notebook and medians fit; a 2.6 MB checkpoint does not
    try:
        tier = tier_copy(smoke_params_path, tmp_path, out_dir=str(disk / "results"))
        proc = start_run(tier, "01")
        res = finish(proc, descendants(proc.pid))
        line = assert_one_line_error(res, res.returncode, "cannot write", str(disk / "results"))
        assert res.returncode in (2, 3), res.stderr[-2000:]
        assert "No space left on device" in line or "the filesystem is full" in line
        assert not (disk / "results" / "manifests" / "stage_01.json").exists()
        assert_complete_artefacts(disk / "results")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_finished_stages_log_no_kernel_noise(smoke_params_path, tmp_path):
    """Ctrl-C (SIGINT to the runner's process group) exits 130 with one line, no kernel traceback;
    a stage that succeeds logs nothing from the kernel's own logger (jupyter_client interrupts
    every kernel it shuts down, which ipykernel logs as an ERROR)."""
    tier = tier_copy(smoke_params_path, tmp_path, epochs=EPOCHS, patience=EPOCHS)
    out = tmp_path / "results"
    proc = start_run(tier, "01")
    wait_for(out / "checkpoint_last.pth", proc)
    pids = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    res = finish(proc, pids)
    assert_one_line_error(res, 130, "interrupted (Ctrl-C)", "rerun the same command")
    assert "ZMQError" not in res.stderr and "[IPKernelApp]" not in res.stderr, res.stderr[-3000:]
    assert not (out / "manifests" / "stage_01.json").exists()
    assert_complete_artefacts(out)
    proc = start_run(tier, "01")
    res = finish(proc, descendants(proc.pid))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "KeyboardInterrupt" not in res.stderr and "[IPKernelApp]" not in res.stderr, res.stderr[-3000:]
