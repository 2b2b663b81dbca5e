"""Open every rendered report and the index in headless Chromium (Debian's package):
no page errors, figures and tables present."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _reports(run_dir: Path) -> list[Path]:
    return sorted(run_dir.rglob("*.html"))


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def test_reports_render_without_errors(browser, smoke_run):
    pages = _reports(smoke_run["reports_root"])
    names = {p.name for p in pages}
    assert {"index.html", "01_train_vae.html", "02_segment.html", "03_call.html", "04_evaluate.html"} <= names
    for page_path in pages:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(page_path.as_uri(), wait_until="load")
        assert not errors, (page_path.name, errors)
        n_img = page.locator("img").count()
        n_table = page.locator("table").count()
        if page_path.name == "index.html":
            assert n_table >= 1 and page.locator("a").count() >= 4
        else:
            assert n_img >= 1, f"{page_path.name}: no figure"
            assert n_table >= 1, f"{page_path.name}: no table"
            # figures are inline PNG, not SVG or JS widgets
            srcs = page.locator("img").evaluate_all("els => els.map(e => e.src.slice(0, 22))")
            assert all(s.startswith("data:image/png") for s in srcs), srcs
            assert "Resolved params" in page.content()
        page.close()
