"""Browse one sample across all stages: observed and expected depth, copy ratio,
segments, gene calls and its nearest neighbours in latent space.

Used by ``notebooks/explore_sample.ipynb`` (outside the chain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import artefacts as A
from .copy_number import CN_STATES
from .params import Params
from .store import open_store

@dataclass
class SampleView:
    """Everything CNVRock knows about one sample (arrays over the chromosome bins)."""

    sample_id: str
    index: int
    bins: pd.DataFrame          # chrom, start, end (bp)
    observed: np.ndarray        # reads per bin
    expected: np.ndarray        # reads per bin (VAE reconstruction)
    copy_ratio: np.ndarray      # NaN where masked
    state_cn: np.ndarray        # copies, MAP state per bin
    segments: pd.DataFrame
    gene_calls: pd.DataFrame
    plasmid_calls: pd.DataFrame
    neighbours: pd.DataFrame    # sample_id, distance (latent space), with metadata where known


def nearest_in_latent(latents: np.ndarray, index: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of the ``k`` nearest other samples in latent space."""
    dist = np.linalg.norm(latents - latents[index], axis=1)
    dist[index] = np.inf
    order = np.argsort(dist, kind="stable")[:k]
    return order, dist[order]


def sample_view(params: Params, sample_id: str | None = None, k_neighbours: int = 5) -> SampleView:
    """Collect :class:`SampleView` for ``sample_id`` (default: the first sample of the store)."""
    out = params.out_path
    store = open_store(params.store_path, check_values=False)
    ids = store.sample_ids
    sample_id = str(ids[0]) if sample_id is None else sample_id
    index = int(store.index_of([sample_id])[0])
    shape = store.counts.shape
    expected = A.load_array(out, A.RECONSTRUCTIONS, shape)[index]
    ratios = A.load_array(out, A.COPY_RATIOS, shape)[index]
    states = A.load_array(out, A.STATES, shape)[index]
    latents = np.asarray(A.load_array(out, A.LATENTS))
    segments = A.read_table(out, A.SEGMENTS, filters=[("sample_id", "==", sample_id)])
    calls = A.read_table(out, A.GENE_CALLS)
    pcalls = A.read_table(out, A.PLASMID_CALLS) if A.PLASMID_CALLS.path(out).exists() \
        else pd.DataFrame(columns=["sample_id"])
    nn_idx, nn_dist = nearest_in_latent(latents, index, k_neighbours)
    neighbours = pd.DataFrame({"sample_id": ids[nn_idx], "latent_distance": nn_dist})
    if params.kpsc_meta_path:
        meta = pd.read_csv(params.kpsc_meta_path, sep="\t", dtype=str)
        neighbours = neighbours.merge(meta[["sample_id", "Species", "ST"]], on="sample_id", how="left")
    bins = pd.DataFrame({"chrom": store.bins["chrom"], "start": store.bins["start"], "end": store.bins["end"]})
    return SampleView(
        sample_id=sample_id, index=index, bins=bins,
        observed=np.asarray(store.counts[index], dtype=np.float64), expected=np.asarray(expected, dtype=np.float64),
        copy_ratio=np.asarray(ratios, dtype=np.float64), state_cn=np.asarray(CN_STATES)[np.asarray(states)],
        segments=segments.reset_index(drop=True),
        gene_calls=calls[calls["sample_id"] == sample_id].reset_index(drop=True),
        plasmid_calls=pcalls[pcalls["sample_id"] == sample_id].reset_index(drop=True),
        neighbours=neighbours,
    )


def plot_sample(view: SampleView, region: tuple[int, int] | None = None):
    """Depth (observed vs expected) and copy ratio with the HMM state, genome-wide or in ``region`` (bp)."""
    import matplotlib.pyplot as plt

    mid = (view.bins["start"].to_numpy() + view.bins["end"].to_numpy()) / 2 / 1e6
    sel = slice(None)
    if region is not None:
        lo, hi = region
        sel = (view.bins["end"].to_numpy() >= lo) & (view.bins["start"].to_numpy() <= hi)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    ax1.plot(mid[sel], view.observed[sel], ".", ms=2, color="0.5", label="observed")
    ax1.plot(mid[sel], view.expected[sel], "-", lw=0.8, color="tab:blue", label="expected (VAE)")
    ax1.set_ylabel("reads per 1 kb bin")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(f"{view.sample_id}: depth and copy ratio")
    ax2.plot(mid[sel], view.copy_ratio[sel], ".", ms=2, color="0.4", label="copy ratio")
    ax2.step(mid[sel], view.state_cn[sel], where="mid", color="tab:red", lw=1.2, label="HMM state (CN)")
    ax2.set_ylim(-0.1, 3.6)
    ax2.set_ylabel("copies")
    ax2.set_xlabel("position on the chromosome (Mb)")
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def igv_view(params: Params, sample_id: str | None = None, height: int = 560):
    """The sample in igv.js (bundled, inlined; no CDN) as an IPython ``HTML`` object for a notebook.

    Shows the same tracks as ``cnvrock export --format igv``: copy ratio per bin, the
    sample's segments, its gene dosage calls and the gene panel, around blaSHV.
    ``height`` is the frame height in pixels.
    """
    import html

    from IPython.display import HTML

    from .export.core import load_export_data
    from .export.igv import igv_page

    if sample_id is None:
        sample_id = str(open_store(params.store_path, check_values=False).sample_ids[0])
    page = igv_page(load_export_data(params.out_path, [sample_id]), sample_id, script_src=None)
    return HTML(f'<div class="cnvrock-igv"><iframe srcdoc="{html.escape(page, quote=True)}" '
                f'style="width:100%;height:{height}px;border:0" title="igv.js: {html.escape(sample_id)}"></iframe></div>')
