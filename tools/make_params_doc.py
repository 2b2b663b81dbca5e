"""Write docs/PARAMS.md from cnvrock_lib.params.SCHEMA (tests/test_params.py checks it is current)."""

from pathlib import Path
import sys

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnvrock_lib.atomic import write_text  # noqa: E402
from cnvrock_lib.params import reference_markdown  # noqa: E402

if __name__ == "__main__":
    write_text(REPO / "docs" / "PARAMS.md", reference_markdown())
    print("wrote docs/PARAMS.md")
