"""Write benchmark output into the docs between ``<!-- BEGIN key -->`` and ``<!-- END key -->`` markers."""

from __future__ import annotations

from pathlib import Path


def write_doc_block(doc: Path, key: str, text: str) -> None:
    """Replace what stands between the ``key`` markers of ``doc`` with ``text`` (stripped, one line per side)."""
    body = doc.read_text()
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    if begin not in body or end not in body.split(begin, 1)[1]:
        raise SystemExit(f"{doc} has no {begin} ... {end} markers")
    head, rest = body.split(begin, 1)
    doc.write_text(head + begin + "\n" + text.strip() + "\n" + end + rest.split(end, 1)[1])
