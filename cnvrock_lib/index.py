"""``reports/index.html``: every tier that has run, its reports, headline metrics per
gene, and the scaling plot (metric vs number of training samples across tiers)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from . import artefacts as A
from .atomic import write_text


def collect_tiers(reports_root: Path) -> list[dict]:
    """Read ``<reports_root>/<tier>/tier.json`` for every tier that has run."""
    tiers = []
    for meta in sorted(reports_root.glob("*/tier.json")):
        info = json.loads(meta.read_text())
        info["dir"] = meta.parent
        out = Path(info["out_dir"])
        summary = A.TRAIN_SUMMARY.path(out)
        info["n_train"] = json.loads(summary.read_text()).get("n_train") if summary.is_file() else None
        metrics = A.EVALUATION_METRICS.path(out)
        info["metrics"] = headline(metrics) if metrics.is_file() else None
        tiers.append(info)
    return tiers


def headline(metrics_path: Path) -> pd.DataFrame:
    """Overall per-gene rows (gene, mode, MCC, FNR, PPV, n_eval) of an ``evaluation_metrics.tsv``."""
    from .evaluation import headline_metrics

    return headline_metrics(metrics_path.parent)


def _scaling_png(tiers: list[dict]) -> str | None:
    rows = []
    for t in tiers:
        if t["metrics"] is None or not t["n_train"]:
            continue
        for r in t["metrics"].itertuples():
            rows.append({"tier": t["tier"], "n_train": t["n_train"], "gene": r.gene, "mcc": r.mcc})
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(rows).dropna(subset=["mcc"])
    if frame.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=90)
    for gene, g in frame.groupby("gene"):
        g = g.sort_values("n_train")
        ax.plot(g["n_train"], g["mcc"], marker="o", label=gene)
    ax.set_xscale("log")
    ax.set_xlabel("training samples (VAE)")
    ax.set_ylabel("MCC")
    ax.set_title("Scaling: MCC per gene vs training-set size")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def build_index(reports_root: str | Path) -> Path:
    """Write ``<reports_root>/index.html`` and return its path."""
    reports_root = Path(reports_root)
    tiers = collect_tiers(reports_root)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>CNVRock reports</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
             "td:first-child,th:first-child{text-align:left}</style></head><body>",
             "<h1>CNVRock reports</h1>"]
    if not tiers:
        parts.append("<p>No tier has run yet. Run <code>cnvrock run params/demo.yaml</code>.</p>")
    for t in tiers:
        name = html.escape(str(t["tier"]))
        parts.append(f"<h2 id='tier-{name}'>Tier {name}</h2>")
        links = [f"<a href='{html.escape(t['dir'].name)}/{p.name}'>{html.escape(p.stem)}</a>"
                 for p in sorted(t["dir"].glob("*.html"))]
        parts.append("<p>Reports: " + (" · ".join(links) or "none") + "</p>")
        parts.append(f"<p>Training samples: {t['n_train'] if t['n_train'] else 'n/a'} · out_dir "
                     f"<code>{html.escape(str(t['out_dir']))}</code></p>")
        if t["metrics"] is not None and not t["metrics"].empty:
            parts.append(t["metrics"].to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="N/A",
                                              classes="metrics", border=0))
    png = _scaling_png(tiers)
    if png:
        parts.append(f"<h2>Scaling</h2><img alt='scaling plot' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    target = reports_root / "index.html"
    write_text(target, "\n".join(parts))
    return target
