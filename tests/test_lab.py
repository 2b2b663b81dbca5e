"""The notebooks in a real JupyterLab: headless Chromium opens each one, runs all cells from the
Run menu, and no cell ends in an error (tools/lab_check.py, on the smoke tier's params)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab_check():
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    for module in ("jupyterlab", "playwright"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    sys.path.insert(0, str(REPO / "tools"))
    import lab_check

    return lab_check


def test_every_notebook_runs_top_to_bottom_in_jupyterlab(lab_check, smoke_params_path, tmp_path):
    # the smoke cohort's inputs, but an out_dir of its own: the session's smoke run stays untouched
    raw = yaml.safe_load(Path(smoke_params_path).read_text())
    raw.update(out_dir=str(tmp_path / "results"), report_dir=str(tmp_path / "reports" / "smoke"))
    tier = tmp_path / "smoke.yaml"
    tier.write_text(yaml.safe_dump(raw))
    results = lab_check.check(lab_check.CHAIN, tmp_path / "lab", params=tier, timeout=300, log=lambda m: None)
    assert [Path(r.notebook).name for r in results] == lab_check.CHAIN
    for r in results:
        assert r.executed == r.code_cells and r.code_cells > 0, r
        assert not r.errors, (r.notebook, r.errors)
        assert r.figures >= 1, r.notebook
        assert Path(r.screenshot).stat().st_size > 10_000
    assert not list(REPO.glob("lab_check_tmp_*")), "the temporary notebook copies were not removed"
