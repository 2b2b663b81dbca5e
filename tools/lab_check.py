"""Open notebooks in a real JupyterLab in headless Chromium, run all their cells, and report.

What a user does in JupyterLab, done by a script: start ``jupyter lab`` on
localhost over ``notebooks/``, open each notebook, *Run > Run All Cells* through
the menu, wait until the kernel has executed every code cell, then count error
outputs and figures and save a screenshot. The notebooks run with their
committed parameters cell unless ``--params`` names another tier YAML (that one
line changed, as a user would edit it). JupyterLab opens copies in a temporary
folder beside ``notebooks/``, so its autosave never writes outputs into the
committed notebooks.

Needs ``pip install -e '.[lab,test]'`` (JupyterLab, Playwright) and Chromium
(Debian ``chromium``). Usage::

    .venv/bin/python tools/lab_check.py                       # every notebook, demo tier defaults
    .venv/bin/python tools/lab_check.py explore_sample.ipynb --out /tmp/lab --params /tmp/smoke.yaml

Exit code 0 when every notebook ran without an error output, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CHAIN = ["01_train_vae.ipynb", "02_segment.ipynb", "03_call.ipynb", "04_evaluate.ipynb", "explore_sample.ipynb"]


@dataclass
class LabResult:
    notebook: str
    code_cells: int
    executed: int
    errors: list[str]
    figures: int
    seconds: float
    screenshot: str | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, log_path: Path) -> tuple[subprocess.Popen, str, str]:
    """Start ``jupyter lab`` on localhost serving ``root``; return (process, base URL, token).

    Its workspace (open tabs) lives beside the log, so no tab of an earlier session is restored.
    """
    port, token = _free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    workspaces = log_path.parent / "workspaces"
    shutil.rmtree(workspaces, ignore_errors=True)
    cmd = [str(jupyter) if jupyter.exists() else "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.workspaces_dir={workspaces}", "--LabApp.news_url=", "--allow-root"]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"jupyter lab exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return proc, base, token
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"jupyter lab did not answer within 120 s; see {log_path}")


def stop_lab(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front


def _prompts(page) -> list[str]:
    return page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").evaluate_all(
        "els => els.map(e => e.textContent.trim())")


def run_in_lab(page, base: str, token: str, rel_path: str, timeout: float, shot: Path | None) -> LabResult:
    """Open ``rel_path`` (relative to the server root), run all cells from the menu, wait, collect."""
    t0 = time.time()
    # ?reset: a fresh workspace, so the tab in front is this notebook and no earlier one
    page.goto(f"{base}/lab/tree/{rel_path}?reset&token={token}", wait_until="domcontentloaded")
    page.locator(f"{PANEL} .jp-Cell").first.wait_for(timeout=120_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)
    page.get_by_text("| Idle").first.wait_for(timeout=120_000)  # the kernel has started and answers
    n_code = page.locator(f"{PANEL} .jp-CodeCell").count()
    deadline = t0 + timeout
    started = False
    for _ in range(5):  # a Run All sent while the kernel connection settles can be dropped: send it again
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        for _ in range(20):
            time.sleep(0.5)
            if any(p != "[ ]:" for p in _prompts(page)):
                started = True
                break
        if started:
            break
    while time.time() < deadline:
        prompts = _prompts(page)
        has_error = page.locator(f"{PANEL} [data-mime-type='application/vnd.jupyter.error']").count() > 0
        done = prompts and all(p.startswith("[") and p[1:-2].isdigit() for p in prompts)
        if done or (has_error and not any("*" in p for p in prompts)):
            break
        time.sleep(1.0)
    else:
        if shot is not None:
            page.screenshot(path=str(shot))
        raise TimeoutError(f"{rel_path}: cells still running after {timeout:.0f} s: {_prompts(page)}"
                           + (f"; screenshot {shot}" if shot else ""))
    prompts = _prompts(page)
    errors = page.locator(f"{PANEL} [data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
    figures = page.locator(f"{PANEL} .jp-OutputArea-output img").count()
    if shot is not None:
        page.screenshot(path=str(shot))
    return LabResult(rel_path, n_code, sum(p[1:-2].isdigit() for p in prompts), [e[:500] for e in errors],
                     figures, round(time.time() - t0, 1), str(shot) if shot else None)


def _with_params(notebook: Path, params: Path | None, folder: Path) -> Path:
    """A copy of ``notebook`` in ``folder``; with ``params``, its ``params_path = ...`` line names them."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if params is not None and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = [f"params_path = {str(params)!r}\n" if line.startswith("params_path") else line
                              for line in cell["source"]]
    target = folder / notebook.name
    target.write_text(json.dumps(nb, indent=1))
    return target


def check(notebooks: list[str], out: Path, params: Path | None = None, timeout: float = 900,
          log=print) -> list[LabResult]:
    """Run ``notebooks`` (names under ``notebooks/``) in JupyterLab; screenshots and lab log go to ``out``."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium not found (Debian: apt-get install chromium)")
    out.mkdir(parents=True, exist_ok=True)
    # Copies, so that JupyterLab's autosave never writes outputs into the committed notebooks; in a
    # sibling of notebooks/ so that their relative paths (../params/demo.yaml) still resolve.
    work = Path(tempfile.mkdtemp(prefix="lab_check_tmp_", dir=REPO))
    rel = []
    for name in notebooks:
        _with_params(NOTEBOOKS / name, params.resolve() if params else None, work)
        rel.append(f"{work.name}/{name}")
    proc, base, token = start_lab(REPO, out / "jupyterlab.log")
    results = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            for path in rel:
                log(f"[lab_check] {path}: running all cells in JupyterLab ...")
                res = run_in_lab(page, base, token, path, timeout, out / (Path(path).stem + ".png"))
                log(f"[lab_check] {path}: {res.executed}/{res.code_cells} code cells executed, "
                    f"{len(res.errors)} error output(s), {res.figures} figure(s), {res.seconds} s")
                results.append(res)
                page.goto("about:blank")
            browser.close()
    finally:
        stop_lab(proc)
        shutil.rmtree(work, ignore_errors=True)
    (out / "lab_check.json").write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", default=CHAIN)
    ap.add_argument("--out", type=Path, default=Path("/tmp/cnvrock_lab_check"))
    ap.add_argument("--params", type=Path, help="tier YAML to put into each notebook's parameters cell")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per notebook")
    args = ap.parse_args(argv)
    results = check(args.notebooks, args.out, args.params, args.timeout)
    bad = [r for r in results if r.errors or r.executed < r.code_cells]
    for r in bad:
        print(f"[lab_check] FAILED {r.notebook}: {r.executed}/{r.code_cells} executed; {r.errors[:1]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
