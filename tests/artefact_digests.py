"""Content digests of a finished tier's artefacts, for the behaviour-preserving refactor check.

A digest is taken of what an artefact *means*, not of bytes that legitimately vary between two runs
of the same params: wall-clock seconds and throughput, the params hash (it covers absolute paths),
the training-data hash (it covers the library source) and temp-dir prefixes. Everything else — every array, table, checkpoint tensor — must match bit for bit.

Regenerate the committed reference (only when a change is *meant* to alter artefacts, and say so in
the commit) with::

    .venv/bin/cnvrock run params/smoke.yaml --force
    .venv/bin/python tests/artefact_digests.py results/smoke > tests/data/smoke_artefact_digests.json
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# Keys whose values are wall-clock measurements or path-dependent hashes, not results.
# data_hash covers the library source (a code change must not resume an old checkpoint), so it changes
# with any code edit while the artefacts stay the same.
VOLATILE_JSON_KEYS = {"samples_per_second", "train_seconds", "seconds", "params_hash", "data_hash"}
VOLATILE_COLUMNS = {"training_log.tsv": ["seconds"]}
# evaluation.txt header lines that name the run's time and paths, not its results
VOLATILE_LINE_PREFIXES = {"evaluation.txt": ("Generated:", "Out dir:", "AMRFinder GT:", "Kleborate GT:", "Metadata:",
                                             "Hold-out ids:")}
# Not results: the runner's bookkeeping, resolved paths, rendered notebooks.
SKIPPED = {"params.resolved.yaml", ".cnvrock.lock"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def _array_digest(arr: np.ndarray) -> str:
    arr = np.ascontiguousarray(arr)
    return _sha(f"{arr.dtype.str}{arr.shape}".encode() + arr.tobytes())


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE_JSON_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _checkpoint_digest(path: Path) -> str:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    parts = [f"epoch={state.get('epoch')}".encode()]
    for name, tensor in sorted(state["model"].items()):
        parts.append(name.encode() + _array_digest(tensor.detach().cpu().numpy()).encode())
    history = [_strip(row) for row in state.get("history", [])]
    parts.append(json.dumps(history, sort_keys=True).encode())
    return _sha(b"|".join(parts))


def artefact_digest(path: Path) -> str:
    """Digest of one artefact file by its meaning (see module docstring)."""
    name = path.name
    if name.endswith(".npy"):
        return _array_digest(np.load(path))
    if name.endswith(".parquet"):
        return _sha(pd.read_parquet(path).to_csv(index=False).encode())
    if name.endswith(".pth"):
        return _checkpoint_digest(path)
    if name.endswith(".json"):
        return _sha(json.dumps(_strip(json.loads(path.read_text())), sort_keys=True).encode())
    if name in VOLATILE_COLUMNS:
        frame = pd.read_csv(path, sep="\t").drop(columns=VOLATILE_COLUMNS[name])
        buf = io.StringIO()
        frame.to_csv(buf, sep="\t", index=False)
        return _sha(buf.getvalue().encode())
    if name in VOLATILE_LINE_PREFIXES:
        lines = path.read_text().splitlines(keepends=True)
        return _sha("".join(ln for ln in lines if not ln.startswith(VOLATILE_LINE_PREFIXES[name])).encode())
    return _sha(path.read_bytes())


def tier_digests(out_dir: str | Path) -> dict[str, str]:
    """Digest of every artefact file directly in ``out_dir`` (not manifests/ or notebooks/)."""
    out = Path(out_dir)
    return {p.name: artefact_digest(p) for p in sorted(out.iterdir())
            if p.is_file() and p.name not in SKIPPED and not p.name.startswith(".")}


if __name__ == "__main__":
    print(json.dumps(tier_digests(sys.argv[1]), indent=1, sort_keys=True))
