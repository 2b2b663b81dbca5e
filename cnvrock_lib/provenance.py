"""Where results came from: package versions and the identity of the library's own source code.

One place for the versions shown at the top of every report and recorded in ``store.json``, and
for the source hash that makes a code change rerun stages and refuse to resume a checkpoint.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

REPORTED = ("cnvrock", "numpy", "pandas", "torch", "scikit-learn", "pyarrow", "papermill", "matplotlib")


def package_versions(names) -> dict[str, str]:
    """Installed versions of ``names`` (``not installed`` where absent)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def software_versions() -> dict[str, str]:
    """Python and the main packages, as every report shows them."""
    return {"python": platform.python_version(), **package_versions(REPORTED)}


def library_sha() -> str:
    """Hash of the library's source files (16 hex digits): a code change makes every stage out of date."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
