"""The refactor guard: the smoke tier's artefacts equal a reference made before the refactor.

The reference (tests/data/smoke_artefact_digests.json) was produced by the code at commit 8e2d7ba,
before the stage modules were split into drivers over pure cores. A change that is *meant* to alter
artefacts regenerates it (see tests/artefact_digests.py) and says why in its commit message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCE = Path(__file__).parent / "data" / "smoke_artefact_digests.json"


@pytest.mark.slow
def test_smoke_artefacts_equal_the_reference(smoke_run):
    expected = json.loads(REFERENCE.read_text())
    actual = smoke_run["digests"]
    missing = sorted(set(expected) - set(actual))
    assert not missing, f"artefacts no longer written: {missing}"
    changed = sorted(name for name in expected if actual[name] != expected[name])
    assert not changed, f"artefacts differ from the pre-refactor reference: {changed}"
