"""The hpc/ chain on a real single-node Slurm (slurmctld + slurmd + munge, as root).

Submits the smoke tier as four dependent jobs (01 on the GPU partition with a
fake GPU, 02-04 on the CPU partition) and checks they run in order and write
their artefacts; a broken params file fails job 01 and the rest never run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from slurm_cluster import LocalSlurm, available

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = available()
    if reason:
        pytest.skip(f"local Slurm not available: {reason}")
    with LocalSlurm(tmp_path_factory.mktemp("slurm")) as slurm:
        yield slurm


def _submit(cluster: LocalSlurm, params: Path, log_dir: Path) -> list[tuple[str, str]]:
    env = dict(cluster.env, CNVROCK_LOG_DIR=str(log_dir), CNVROCK_VENV=str(REPO / ".venv"),
               CNVROCK_GPU_PARTITION="gpu", CNVROCK_CPU_PARTITION="main")
    for stage in ("01", "02", "03", "04"):
        env[f"CNVROCK_MEM_{stage}"] = "1G"
        env[f"CNVROCK_CPUS_{stage}"] = "1"
    res = subprocess.run(["bash", str(REPO / "hpc" / "submit.sh"), str(params)], env=env,
                         capture_output=True, text=True, check=True)
    jobs = [tuple(line.split()[1:3]) for line in res.stdout.strip().splitlines()]
    assert [s for s, _ in jobs] == ["01", "02", "03", "04"]
    return jobs


def _times(cluster: LocalSlurm, job_id: str) -> tuple[str, str, str]:
    out = subprocess.run(["scontrol", "show", "-o", "job", job_id], env=cluster.env,
                         capture_output=True, text=True).stdout
    get = lambda k: re.search(rf"{k}=(\S+)", out).group(1)  # noqa: E731
    return get("StartTime"), get("EndTime"), get("Partition")


def test_smoke_chain_runs_in_order(cluster, smoke_params_path, tmp_path):
    params = yaml.safe_load(smoke_params_path.read_text())
    out_dir = tmp_path / "results"
    params["out_dir"] = str(out_dir)
    params["report_dir"] = str(tmp_path / "reports" / "smoke")
    tier_file = tmp_path / "smoke.yaml"
    tier_file.write_text(yaml.safe_dump(params))
    jobs = _submit(cluster, tier_file, tmp_path / "logs")
    states = cluster.wait_jobs([j for _, j in jobs], timeout=900)
    logs = {p.name: p.read_text() for p in (tmp_path / "logs" / "smoke").glob("*.out")}
    assert set(states.values()) == {"COMPLETED"}, (states, logs)
    times = [_times(cluster, j) for _, j in jobs]
    assert times[0][2] == "gpu" and {t[2] for t in times[1:]} == {"main"}
    for (start_prev, end_prev, _), (start_next, _, _) in zip(times, times[1:]):
        assert start_next >= end_prev, times  # ISO timestamps compare in time order
    for name in ("reconstructions.npy", "segments.parquet", "gene_calls.tsv", "evaluation.txt"):
        assert (out_dir / name).is_file(), name
    assert len(logs) == 4 and all("finished stage" in text for text in logs.values())


def test_broken_params_fail_first_job_and_cancel_the_rest(cluster, smoke_params_path, tmp_path):
    params = yaml.safe_load(smoke_params_path.read_text())
    params["epochs"] = -1
    params["out_dir"] = str(tmp_path / "results")
    tier_file = tmp_path / "smoke.yaml"
    tier_file.write_text(yaml.safe_dump(params))
    jobs = _submit(cluster, tier_file, tmp_path / "logs")
    states = cluster.wait_jobs([j for _, j in jobs], timeout=300)
    assert states[jobs[0][1]] == "FAILED"
    assert all(states[j] == "CANCELLED" for _, j in jobs[1:]), states
    log = next((tmp_path / "logs" / "smoke").glob("01-*.out")).read_text()
    assert "'epochs' = -1 is out of range" in log
    assert not list((tmp_path / "logs" / "smoke").glob("02-*.out"))
    assert not (tmp_path / "results" / "checkpoint.pth").exists()
