"""Shared fixtures: the smoke tier, simulated once per test session into a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("CNVROCK_BATCH", "1")  # log lines, not progress bars, in test output


def write_tier(src: Path, dest_dir: Path, data_dir: Path, out_dir: Path, **overrides) -> Path:
    """Copy a tier YAML into ``dest_dir`` with its data and results moved to temp locations."""
    raw = yaml.safe_load(src.read_text())
    old = Path(raw["simulate"]["data_dir"])
    for key, value in list(raw.items()):
        if isinstance(value, str) and value.startswith(str(old)):
            raw[key] = str(data_dir / Path(value).relative_to(old))
    raw["simulate"]["data_dir"] = str(data_dir)
    raw["out_dir"] = str(out_dir)
    raw["report_dir"] = str(dest_dir / "reports" / raw["tier"])
    raw.update(overrides)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{raw['tier']}.yaml"
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


@pytest.fixture(scope="session")
def smoke_params_path(tmp_path_factory) -> Path:
    """A smoke tier YAML whose simulated cohort lives in a session temp dir (simulated once)."""
    from cnvrock_lib.report import prepare_params

    root = tmp_path_factory.mktemp("smoke")
    path = write_tier(REPO / "params" / "smoke.yaml", root, root / "data", root / "results")
    prepare_params(path)
    return path


@pytest.fixture(scope="session")
def smoke_params(smoke_params_path):
    from cnvrock_lib.params import load_params

    return load_params(smoke_params_path)


@pytest.fixture(scope="session")
def smoke_run(smoke_params_path, smoke_params):
    """The whole smoke chain run once through the runner (papermill + nbconvert)."""
    from cnvrock_lib.run import run_tier

    from artefact_digests import tier_digests

    outcomes = run_tier(smoke_params_path)
    # digests as the chain first wrote them (later tests rerun notebooks in this out_dir)
    return {"params_path": smoke_params_path, "params": smoke_params, "outcomes": outcomes,
            "out_dir": smoke_params.out_path, "reports_root": Path(smoke_params.report_dir).parent,
            "digests": tier_digests(smoke_params.out_path)}
