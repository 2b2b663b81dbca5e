"""The artefact contract (cnvrock_lib/artefacts.py): one table, used by the stages and documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnvrock_lib import artefacts as A
from cnvrock_lib.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_architecture_doc_shows_the_contract_table():
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    block = doc.split("<!-- BEGIN artefacts -->", 1)[1].split("<!-- END artefacts -->", 1)[0]
    assert block.strip() == A.contract_markdown().strip(), "run python tools/make_params_doc.py"


def test_every_stage_writes_something_and_names_are_unique():
    for stage in ("01", "02", "03", "04"):
        assert A.written_by(stage)
    assert len(A.ARTEFACTS) == len({a.name for a in A.ARTEFACTS.values()})


def test_load_array_checks_presence_and_shape(tmp_path):
    with pytest.raises(InputError, match=r"reconstructions.npy not found .*stage 01 \(train\) writes it"):
        A.load_array(tmp_path, A.RECONSTRUCTIONS)
    A.save_array(tmp_path, A.RECONSTRUCTIONS, np.ones((3, 4), dtype=np.float64))
    arr = A.load_array(tmp_path, A.RECONSTRUCTIONS, (3, 4))
    assert arr.dtype == np.float32                      # written in the contract dtype
    with pytest.raises(InputError, match=r"shape \(3, 4\); expected \(3, 5\) \(samples x bins"):
        A.load_array(tmp_path, A.RECONSTRUCTIONS, (3, 5))
    (tmp_path / A.STATES.name).write_text("not an array")
    with pytest.raises(InputError, match="not a readable .npy array"):
        A.load_array(tmp_path, A.STATES)


def test_smoke_run_writes_exactly_the_contract(smoke_run):
    """Every file the smoke chain leaves in out_dir is in the table, and every required artefact is there."""
    out = smoke_run["out_dir"]
    written = {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert written == set(A.ARTEFACTS), f"not in the contract: {written - set(A.ARTEFACTS)}; " \
                                        f"missing: {set(A.ARTEFACTS) - written}"
