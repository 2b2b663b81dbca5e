"""What every notebook does first: load params, make sure the data exist, and
show the resolved params and software versions at the top of the report."""

from __future__ import annotations

from pathlib import Path

from .params import Params, load_params, write_resolved
from .provenance import software_versions

def prepare_params(params_path: str | Path) -> Params:
    """Load params; for a simulated tier whose data are missing, simulate them first."""
    params = load_params(params_path, check_files=False)
    if params.simulate is not None:
        from .simulate import ensure_simulated

        ensure_simulated(params)
    return load_params(params_path, check_files=True)


def setup_notebook(params_path: str | Path, stage: str, show: bool = True) -> Params:
    """Load and validate params, write ``params.resolved.yaml``, and display the report header."""
    params = prepare_params(params_path)
    try:
        params.out_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from .atomic import output_error

        raise output_error(params.out_path, exc) from None
    use_png_figures()
    _table_display()
    write_resolved(params)
    if show:
        display_header(params, stage)
    return params


def _table_display() -> None:
    """Show report tables whole: no '...' in the cells of summary tables (pandas cuts at 50 characters)."""
    import pandas as pd

    pd.set_option("display.max_colwidth", 200)


def use_png_figures(dpi: int = 90) -> None:
    """Inline figures as PNG at a modest dpi, so reports stay small and render anywhere."""
    import matplotlib

    matplotlib.rcParams["figure.dpi"] = dpi
    matplotlib.rcParams["savefig.dpi"] = dpi
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # outside IPython
        pass


def header_html(params: Params, stage: str) -> str:
    """HTML block: tier, stage, resolved params (collapsible) and software versions."""
    import html

    rows = "".join(f"<tr><td><code>{html.escape(str(k))}</code></td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in params.to_dict().items())
    versions = ", ".join(f"{k} {v}" for k, v in software_versions().items())
    return (
        f"<div style='font-family:sans-serif'><h2>CNVRock — tier <code>{html.escape(str(params.tier))}</code>,"
        f" stage {html.escape(stage)}</h2>"
        f"<p><b>Params:</b> {html.escape(str(params.source))} (hash {params.hash()})<br>"
        f"<b>Software:</b> {html.escape(versions)}</p>"
        f"<details><summary>Resolved params</summary><table>{rows}</table></details></div>"
    )


def display_header(params: Params, stage: str) -> None:
    """Show :func:`header_html` in a notebook (no-op outside IPython)."""
    try:
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return
    display(HTML(header_html(params, stage)))
