"""A smoke tier run through stages 01-03 by the runner with every export requested
(params key ``export_formats``), shared by the tests/test_export*.py files."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, write_tier

ALL_FORMATS = ["vcf", "seg", "bed", "igv", "multiqc"]


# Each test module that imports the fixture registers its own copy of it; this memo makes
# the tier run once per session, however many of those modules run.
_RUN: dict = {}


@pytest.fixture(scope="session")
def exported_tier(tmp_path_factory) -> dict:
    """``{"params": Params, "out_dir": Path, "export": Path, "outcomes": [...]}`` of the exported smoke tier."""
    from cnvrock_lib.params import load_params
    from cnvrock_lib.run import run_tier

    if not _RUN:
        root = tmp_path_factory.mktemp("export_smoke")
        path = write_tier(REPO / "params" / "smoke.yaml", root, root / "data", root / "results",
                          export_formats=ALL_FORMATS)
        outcomes = run_tier(path, stages=["01", "02", "03"])
        params = load_params(path)
        _RUN.update(params=params, params_path=path, out_dir=params.out_path, export=params.out_path / "export",
                    outcomes=outcomes)
    return _RUN


def amplified_sample(out_dir: Path) -> str:
    """A sample whose blaSHV call is amplified (the smoke cohort has a few)."""
    import pandas as pd

    calls = pd.read_csv(out_dir / "gene_calls.tsv", sep="\t", dtype={"sample_id": str})
    amp = calls[(calls["gene"] == "blaSHV") & (calls["label"] == "amplified")]
    assert not amp.empty, "the smoke cohort should hold a blaSHV-amplified sample"
    return str(amp["sample_id"].iloc[0])
