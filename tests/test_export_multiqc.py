"""The real MultiQC (in the ``test`` extra) finds the CNVRock section in a finished tier's out_dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from export_fixtures import exported_tier  # noqa: F401

pytest.importorskip("multiqc", reason="needs multiqc (a test extra: pip install -e '.[test]')")


@pytest.fixture(scope="module")
def multiqc_report(exported_tier, tmp_path_factory):
    dest = tmp_path_factory.mktemp("multiqc")
    env = {**os.environ, "MULTIQC_NO_VERSION_CHECK": "1"}
    done = subprocess.run([sys.executable, "-m", "multiqc", str(exported_tier["out_dir"]), "-o", str(dest),
                           "--no-ansi", "--no-version-check"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return dest


def test_multiqc_report_has_the_cnvrock_section(multiqc_report):
    html = (multiqc_report / "multiqc_report.html").read_text(encoding="utf-8")
    assert 'id="cnvrock"' in html  # the section (parent_id) heading
    for anchor in ("cnvrock_dosage_table", "cnvrock_dosage_plot", "cnvrock_dosage_bargraph"):
        assert f'id="{anchor}"' in html, anchor


def test_multiqc_general_stats_carry_cnvrock_columns(multiqc_report, exported_tier):
    stats = pd.read_csv(multiqc_report / "multiqc_data" / "multiqc_general_stats.txt", sep="\t",
                        dtype={"Sample": str})
    qc = pd.read_csv(exported_tier["out_dir"] / "sample_qc.tsv", sep="\t", dtype={"sample_id": str})
    assert set(stats["Sample"]) == set(qc["sample_id"])
    depth = [c for c in stats.columns if c.endswith("median_depth")]
    assert len(depth) == 1
    merged = stats.merge(qc, left_on="Sample", right_on="sample_id")
    assert (merged[depth[0]] == merged["median_depth"]).all()
    data = json.loads((multiqc_report / "multiqc_data" / "multiqc_data.json").read_text())
    assert "cnvrock_dosage_bargraph" in data["report_plot_data"]
