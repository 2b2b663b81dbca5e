"""Write docs/PARAMS.md from cnvrock_lib.params.SCHEMA and the artefact table of docs/ARCHITECTURE.md
from cnvrock_lib.artefacts (tests check both are current)."""

from pathlib import Path
import sys

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from doc_blocks import write_doc_block  # noqa: E402
from cnvrock_lib.artefacts import contract_markdown  # noqa: E402
from cnvrock_lib.atomic import write_text  # noqa: E402
from cnvrock_lib.params import reference_markdown  # noqa: E402

if __name__ == "__main__":
    write_text(REPO / "docs" / "PARAMS.md", reference_markdown())
    write_doc_block(REPO / "docs" / "ARCHITECTURE.md", "artefacts", contract_markdown())
    print("wrote docs/PARAMS.md and the artefact table of docs/ARCHITECTURE.md")
