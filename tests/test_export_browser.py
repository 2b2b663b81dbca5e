"""The igv.js view of a blaSHV-amplified sample opens in headless Chromium (Debian's package)
with no page errors and no request leaving the machine: the exported per-sample page and the
igv.js cell of notebooks/explore_sample.ipynb (executed by papermill)."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_fixtures import amplified_sample, exported_tier  # noqa: F401
from test_browser import browser  # noqa: F401  (headless Debian Chromium, skips without it)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TRACKS = ["copy ratio", "segments (log2 CR)", "gene dosage", "gene panel"]


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors, remote = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: remote.append(req.url) if not req.url.startswith(("file:", "data:", "blob:",
                                                                                      "about:")) else None)
    page.goto(url, wait_until="load")
    return page, errors, remote


def _igv_state(frame) -> tuple[str, list[str]]:
    frame.wait_for_function("window.cnvrockIgv && window.cnvrockIgv !== 'loading'", timeout=60_000)
    names = frame.evaluate("window.cnvrockBrowser ? window.cnvrockBrowser.trackViews"
                           ".map(v => v.track.name || '') : []")
    return frame.evaluate("window.cnvrockIgv"), names


def _check(state, names, sample, errors, remote):
    assert state == "ready", (state, errors)
    assert not errors, errors
    assert not remote, f"requests left the machine: {remote[:3]}"
    for track in TRACKS:
        assert any(track in n for n in names), (track, names)
    assert any(n.startswith(sample) for n in names)


def test_exported_igv_page_of_an_amplified_sample(browser, exported_tier):
    sample = amplified_sample(exported_tier["out_dir"])
    page_path = exported_tier["export"] / "igv" / f"{sample}.html"
    page, errors, remote = _open(browser, page_path.as_uri())
    state, names = _igv_state(page)
    _check(state, names, sample, errors, remote)
    # the blaSHV call of this sample is drawn: igv.js holds its BED feature in the dosage track
    features = page.evaluate("""async () => {
        const v = window.cnvrockBrowser.trackViews.find(v => v.track.name === 'gene dosage');
        const f = await v.track.getFeatures('NC_016845.1', 2540000, 2560000);
        return f.map(x => x.name);
    }""")
    assert any(name.startswith(f"{sample}|blaSHV|amplified|") for name in features), features
    page.close()


def test_notebook_igv_cell_renders(browser, exported_tier, tmp_path):
    papermill = pytest.importorskip("papermill")
    import nbformat

    sample = amplified_sample(exported_tier["out_dir"])
    executed = tmp_path / "explore.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "explore_sample.ipynb"), str(executed),
                               parameters={"params_path": str(exported_tier["params_path"]), "sample_id": sample},
                               cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3")
    nb = nbformat.read(executed, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "igv_view" in c.source)
    html = [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    assert len(html) == 1
    assert not [o for o in cell.outputs if o.output_type == "stream"], "the igv cell printed warnings"
    page_path = tmp_path / "igv_cell.html"
    page_path.write_text("<!DOCTYPE html><html><body>" + "".join(html[0]) + "</body></html>", encoding="utf-8")
    page, errors, remote = _open(browser, page_path.as_uri())
    frame = page.frames[1]  # the iframe that holds the igv.js page
    state, names = _igv_state(frame)
    _check(state, names, sample, errors, remote)
    page.close()
