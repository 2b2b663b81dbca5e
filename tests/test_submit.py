"""hpc/submit.sh without a cluster: a stand-in ``sbatch`` that applies ``--export`` the way Slurm does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Slurm's --export: a comma-separated list of ALL, NONE, NAME (taken from the environment)
# or NAME=value; the job sees the result. This stand-in records it and prints a job id.
FAKE_SBATCH = """#!{python}
import json, os, sys
args = sys.argv[1:]
spec = args[args.index("--export") + 1] if "--export" in args else "ALL"
env = {{}}
for item in spec.split(","):
    if item == "ALL":
        env.update(os.environ)
    elif "=" in item:
        name, value = item.split("=", 1)
        env[name] = value
    elif item in os.environ:
        env[item] = os.environ[item]
with open({record!r}, "a") as out:
    out.write(json.dumps({{"args": args, "params": env.get("CNVROCK_PARAMS"), "stage": env.get("CNVROCK_STAGE")}}) + "\\n")
n = sum(1 for _ in open({record!r}))
print(f"{{1000 + n}};cluster")
"""


def _submit(tmp_path: Path, params: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    record = tmp_path / "jobs.jsonl"
    sbatch = bindir / "sbatch"
    sbatch.write_text(FAKE_SBATCH.format(python=sys.executable, record=str(record)))
    sbatch.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", CNVROCK_LOG_DIR=str(tmp_path / "logs"))
    env.pop("CNVROCK_PARAMS", None)
    res = subprocess.run(["bash", str(REPO / "hpc" / "submit.sh"), str(params)], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    jobs = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return res, jobs


def test_a_comma_in_the_params_path_reaches_every_job_whole(tmp_path):
    folder = tmp_path / "runs,2026"
    folder.mkdir()
    params = folder / "tier.yaml"
    params.write_text("tier: demo\n")
    res, jobs = _submit(tmp_path, params)
    assert res.returncode == 0, res.stderr
    assert [j["stage"] for j in jobs] == ["01", "02", "03", "04"]
    assert {j["params"] for j in jobs} == {str(params)}


@pytest.mark.parametrize("line, folder", [("tier: 'x'", "x"), ('tier: "x" # quoted', "x"), ("tier: x", "x"),
                                          ("tier: 'a b/c'", "a_b_c")])
def test_the_log_folder_is_the_bare_tier_name(tmp_path, line, folder):
    params = tmp_path / "p.yaml"
    params.write_text(f"{line}\nepochs: 3\n")
    res, jobs = _submit(tmp_path, params)
    assert res.returncode == 0, res.stderr
    assert [p.name for p in (tmp_path / "logs").iterdir()] == [folder]
    assert res.stdout.splitlines()[0].split()[0] == folder
