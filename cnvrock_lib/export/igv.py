"""IGV exports: per-sample tracks, an IGV desktop session and an igv.js page.

Per exported sample, in ``out_dir/export/igv/``:

* ``SAMPLE.copy_ratio.bedgraph``: copy ratio per unmasked 1 kb bin (0-based starts);
* ``SAMPLE.seg``: the sample's segments (SEG, log2 copy ratio);
* ``SAMPLE.gene_dosage.bed``: its gene calls (BED9, coloured by call);
* ``SAMPLE.xml``: IGV desktop session loading ``cnvrock.chrom.sizes`` (the reference
  contigs) and the three tracks plus ``gene_panel.bed``, at the first chromosomal gene;
* ``SAMPLE.html``: the same tracks in igv.js (bundled ``igv.min.js`` beside it, no CDN;
  track data inlined as data URLs, so the page opens from disk).
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_text
from .bed import PANEL_NAME, dosage_bed_text, panel_bed_text
from .core import ExportData
from .seg import seg_table

IGV_DIRNAME = "igv"
CHROM_SIZES = "cnvrock.chrom.sizes"
IGV_JS = "igv.min.js"
LOCUS_PAD = 100_000  # bp either side of the first chromosomal gene


def igv_js_path() -> Path:
    """The bundled igv.js (npm package ``igv``, MIT; version in cnvrock_lib/data/igv/README.md)."""
    return Path(str(resources.files("cnvrock_lib") / "data" / "igv" / IGV_JS))


def _safe(sample: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in sample)


def default_locus(data: ExportData) -> str:
    """``contig:start-end`` around the first chromosomal panel gene (±100 kb), else the first contig."""
    chrom = data.genes[data.genes["kind"] == "chromosome"]
    lengths = dict(zip(data.contigs["contig"], data.contigs["length"]))
    if chrom.empty:
        first = data.contigs.iloc[0]
        return f"{first['contig']}:1-{int(first['length'])}"
    g = chrom.iloc[0]
    return f"{g['contig']}:{max(1, int(g['start']) - LOCUS_PAD)}-{min(lengths[g['contig']], int(g['end']) + LOCUS_PAD)}"


def chrom_sizes_text(data: ExportData) -> str:
    """``contig<TAB>length`` lines of the reference contigs (UCSC chrom.sizes)."""
    return "".join(f"{c}\t{int(n)}\n" for c, n in zip(data.contigs["contig"], data.contigs["length"]))


def bedgraph_text(data: ExportData, sample: str) -> str:
    """The sample's copy ratio per unmasked bin as bedGraph (track line, 0-based starts, 3 decimals)."""
    track = data.copy_ratio_track(sample)
    track = track[np.isfinite(track["copy_ratio"])]
    rows = "".join(f"{c}\t{s - 1}\t{e}\t{v:.3f}\n" for c, s, e, v in
                   zip(track["chrom"], track["start"], track["end"], track["copy_ratio"]))
    return f'track type=bedGraph name="{sample} copy ratio" graphType=points viewLimits=0:4\n' + rows


def sample_seg_text(data: ExportData, sample: str) -> str:
    """The sample's SEG rows (header + rows, seg.mean with 4 decimals)."""
    table = seg_table(data)
    return table[table["ID"] == sample].to_csv(sep="\t", index=False, float_format="%.4f", na_rep="NA")


def sample_tracks(data: ExportData, sample: str) -> dict[str, str]:
    """File name → text of the sample's tracks (bedGraph, SEG, gene dosage BED)."""
    stem = _safe(sample)
    return {f"{stem}.copy_ratio.bedgraph": bedgraph_text(data, sample),
            f"{stem}.seg": sample_seg_text(data, sample),
            f"{stem}.gene_dosage.bed": dosage_bed_text(data, [sample])}


def session_xml(data: ExportData, sample: str) -> str:
    """IGV desktop session (paths relative to the session file) for one sample."""
    stem = _safe(sample)
    session = ET.Element("Session", genome=CHROM_SIZES, locus=default_locus(data), version="8")
    res = ET.SubElement(session, "Resources")
    for name, kind in ((f"{stem}.copy_ratio.bedgraph", "bedgraph"), (f"{stem}.seg", "seg"),
                       (f"{stem}.gene_dosage.bed", "bed"), (f"../{PANEL_NAME}", "bed")):
        ET.SubElement(res, "Resource", path=name, type=kind)
    ET.indent(session)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + ET.tostring(session, encoding="unicode") + "\n"


def _data_url(text: str) -> str:
    return "data:text/plain;base64," + base64.b64encode(text.encode()).decode()


def igv_config(data: ExportData, sample: str) -> dict:
    """igv.js ``createBrowser`` options: reference contigs and the sample's tracks as data URLs."""
    tracks = sample_tracks(data, sample)
    stem = _safe(sample)
    return {
        "loadDefaultGenomes": False,  # igv.js would fetch its genome list from igv.org
        # igv.js 3.8 reads a chrom.sizes reference from a URL or a File, not from a data URL: the
        # page turns ``chromSizes`` into a File before it builds the browser
        "reference": {"id": "cnvrock-hs11286", "name": "HS11286 + AMR plasmids", "format": "chromsizes",
                      "chromSizes": chrom_sizes_text(data)},
        "locus": default_locus(data),
        "tracks": [
            {"name": f"{sample} copy ratio", "type": "wig", "format": "bedgraph", "graphType": "points",
             "min": 0, "max": 4, "height": 120, "color": "rgb(40,40,40)",
             "url": _data_url(tracks[f"{stem}.copy_ratio.bedgraph"])},
            {"name": f"{sample} segments (log2 CR)", "type": "seg", "format": "seg", "height": 30,
             "url": _data_url(tracks[f"{stem}.seg"])},
            {"name": "gene dosage", "type": "annotation", "format": "bed", "displayMode": "EXPANDED",
             "url": _data_url(tracks[f"{stem}.gene_dosage.bed"])},
            {"name": "gene panel", "type": "annotation", "format": "bed", "url": _data_url(panel_bed_text(data))},
        ],
    }


def igv_page(data: ExportData, sample: str, script_src: str | None = IGV_JS) -> str:
    """A standalone HTML page showing ``sample`` in igv.js.

    ``script_src``: where the page loads igv.js from (a path beside the page); ``None``
    inlines the bundled igv.js (for notebooks). ``window.cnvrockIgv`` is set to
    ``"ready"`` once the browser is built, or to ``"error: ..."``.
    """
    if script_src is None:
        script = "<script>" + igv_js_path().read_text(encoding="utf-8").replace("</script", "<\\/script") + "</script>"
    else:
        script = f'<script src="{script_src}"></script>'
    config = json.dumps(igv_config(data, sample)).replace("</", "<\\/")  # no "</script>" inside the script
    title = html.escape(f"CNVRock {data.version}: {sample} in igv.js")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: sans-serif; margin: 12px; }} #igv {{ border: 1px solid #ccc; }}</style>
{script}
</head><body>
<h3>{title}</h3>
<p>Tier {html.escape(str(data.params.values.get("tier")))}, params {data.params_hash}. Tracks: copy ratio per 1 kb bin,
HMM segments (log2 copy ratio), gene dosage calls (red amplified, blue absent), gene panel.</p>
<div id="igv"></div>
<script>
window.cnvrockIgv = "loading";
const config = {config};
config.reference.url = new File([config.reference.chromSizes], "cnvrock.chrom.sizes");
delete config.reference.chromSizes;
igv.createBrowser(document.getElementById("igv"), config)
  .then(function (b) {{ window.cnvrockBrowser = b; window.cnvrockIgv = "ready"; }})
  .catch(function (e) {{ window.cnvrockIgv = "error: " + e; console.error(e); }});
</script>
</body></html>
"""


def write_igv(data: ExportData, dest: Path | None = None) -> list[Path]:
    """Write ``cnvrock.chrom.sizes``, ``igv.min.js`` and per sample its tracks, session XML and HTML page.

    ``dest`` defaults to ``out_dir/export``; the files go to ``dest/igv`` (``gene_panel.bed``
    to ``dest``, where the sessions expect it). Returns the written paths.
    """
    dest = Path(dest or data.export_dir)
    folder = dest / IGV_DIRNAME
    written = [folder / CHROM_SIZES, dest / PANEL_NAME, folder / IGV_JS]
    write_text(written[0], chrom_sizes_text(data))
    write_text(written[1], panel_bed_text(data))
    with atomic_path(written[2]) as tmp:
        shutil.copyfile(igv_js_path(), tmp)
    for sample in data.samples:
        stem = _safe(sample)
        files = {**sample_tracks(data, sample), f"{stem}.xml": session_xml(data, sample),
                 f"{stem}.html": igv_page(data, sample)}
        for name, text in files.items():
            write_text(folder / name, text)
            written.append(folder / name)
    return written
