"""The reference world does not change: small cohorts of ``WORLD_SEED`` must be byte-identical
to the digests recorded before worlds were added (tests/data/sim_reference_digests.json).

Every file the simulator writes is compared. Two JSON files hold run-dependent or newly added
fields and are compared without them: ``store.json`` without its creation time, ``cohort.json``
without the run time and without keys added after the digests were recorded (the ``world``
block, new ``SimConfig`` fields). The digests were written by
``python tests/test_simulate_reference.py --write`` at commit 8e2d7ba (numpy 2.4.6); a numpy
release that changes its random streams would also change them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from cnvrock_lib import simulate as S

DIGESTS = Path(__file__).parent / "data" / "sim_reference_digests.json"
COHORTS = {"normal": {"n_samples": 60, "seed": 42, "hard": False},
           "hard": {"n_samples": 40, "seed": 1, "hard": True}}


def _normalised(path: Path, legacy_config: list[str] | None) -> bytes:
    data = path.read_bytes()
    if path.name == "store.json":
        doc = json.loads(data)
        doc.pop("created", None)
        return json.dumps(doc, sort_keys=True).encode()
    if path.name == "cohort.json":
        doc = json.loads(data)
        keep = {"settings": doc["settings"], "files": doc["files"], "config": doc["config"]}
        if legacy_config is not None:
            keep["config"] = {k: v for k, v in doc["config"].items() if k in legacy_config}
        return json.dumps(keep, sort_keys=True).encode()
    return data


def digests(root: Path, legacy_config: list[str] | None = None) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> hex digest), JSON files normalised."""
    return {str(p.relative_to(root)): hashlib.sha256(_normalised(p, legacy_config)).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(COHORTS))
def test_reference_world_cohort_is_byte_identical_to_the_recorded_digests(name, tmp_path):
    recorded = json.loads(DIGESTS.read_text())
    spec = COHORTS[name]
    S.simulate_cohort(tmp_path / name, spec["n_samples"], spec["seed"], hard=spec["hard"], progress=False)
    now = digests(tmp_path / name, recorded["legacy_config_keys"])
    expected = recorded["cohorts"][name]
    changed = sorted(k for k in expected if now.get(k) != expected[k])
    assert not changed, f"reference-world files changed: {changed}"
    assert set(now) == set(expected), sorted(set(now) ^ set(expected))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    out: dict = {"cohorts": {}, "legacy_config_keys": None}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in COHORTS.items():
            S.simulate_cohort(Path(tmp) / name, spec["n_samples"], spec["seed"], hard=spec["hard"], progress=False)
            out["cohorts"][name] = digests(Path(tmp) / name)
            out["legacy_config_keys"] = sorted(json.loads((Path(tmp) / name / "cohort.json").read_text())["config"])
    DIGESTS.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}")
