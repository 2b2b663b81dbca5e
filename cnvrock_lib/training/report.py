"""Stage 01 report helpers: the training log, the summary table, the latent PCA and the
reconstruction error of every sample, with example depth tracks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import artefacts as A
from ..errors import InputError
from ..params import Params
from ..store import open_store

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "recon", "kl", "aux", "beta", "aux_weight", "seconds"]


def training_log_frame(history: list[dict]) -> pd.DataFrame:
    """The rows of ``training_log.tsv`` (columns :data:`LOG_COLUMNS`) from the in-memory history."""
    frame = pd.DataFrame(history, columns=LOG_COLUMNS)
    return frame.astype({"epoch": np.int64})


def load_training_log(out_dir: str | Path) -> pd.DataFrame:
    """``training_log.tsv`` of a stage-01 run (one row per epoch)."""
    return A.read_table(out_dir, A.TRAINING_LOG)


def load_train_summary(out_dir: str | Path) -> dict:
    """``train_summary.json`` of a stage-01 run."""
    return A.read_json(out_dir, A.TRAIN_SUMMARY)


def latent_pca_table(params: Params, n_components: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """PCA of the latents joined (left) with the metadata.

    Returns
    -------
    table : one row per store sample: ``sample_id split PC1 PC2 Species ST`` (missing metadata → ``unknown``).
    explained : fraction of latent variance explained by each component.
    """
    from sklearn.decomposition import PCA

    out = params.out_path
    latents = np.asarray(A.load_array(out, A.LATENTS))
    split = A.read_table(out, A.SPLIT, dtype=str, keep_default_na=False)
    k = min(n_components, latents.shape[1], latents.shape[0])
    pca = PCA(n_components=k, random_state=params.seed).fit(latents)
    table = split.copy()
    for i, col in enumerate(pca.transform(latents).T):
        table[f"PC{i + 1}"] = col
    if params.kpsc_meta_path:
        meta = pd.read_csv(params.kpsc_meta_path, sep="\t", dtype=str, keep_default_na=False)
        missing = [c for c in ("sample_id", "Species", "ST") if c not in meta.columns]
        if missing:
            raise InputError(f"kpsc_meta_path {params.kpsc_meta_path} lacks column(s) {missing}")
        table = table.merge(meta[["sample_id", "Species", "ST"]].drop_duplicates("sample_id"), on="sample_id",
                            how="left")
    for col in ("Species", "ST"):
        if col not in table:
            table[col] = "unknown"
        table[col] = table[col].fillna("").replace("", "unknown")
    return table, pca.explained_variance_ratio_


def summary_table(summary: dict) -> pd.DataFrame:
    """``train_summary.json`` as a two-column table for reports (device, throughput, split, stopping)."""
    model = summary.get("model", {})
    rows = [
        ("device", f"{summary['device']} ({summary.get('device_name', '')}), {summary['threads']} CPU thread(s)"),
        ("throughput", f"{summary['samples_per_second']:.0f} training samples / s" if summary.get(
            "samples_per_second") else "n/a"),
        ("training time", f"{summary['train_seconds']:.1f} s over {summary['epochs_run']} epoch(s) "
                          f"(of {summary['epochs']} planned)"),
        ("samples", f"{summary['n_train']} train, {summary['n_val']} validation, {summary['n_holdout']} hold-out "
                    f"(never trained on)"),
        ("bins", f"{summary['n_bins']} ({summary['n_masked_bins']} masked from the reconstruction loss)"
                 + (f"; {summary['gene_fill']['bins_per_sample']} gene-neighbourhood bins filled from the sample's "
                    f"{summary['gene_fill']['mode']} flank level" if summary.get("gene_fill") else "")),
        ("best epoch", f"{summary['best_epoch']} (loss {summary['best_loss']:.2f})"
                       + ("; stopped early" if summary["stopped_early"] else "")),
        ("resumed", f"from epoch {summary['resumed_from_epoch']}" if summary.get("resumed_from_epoch") else "no"),
        ("model", f"channels {model.get('channels')}, kernels {model.get('kernels')}, strides "
                  f"{model.get('strides')}, latent {model.get('latent_dim')}, {summary.get('n_parameters')} "
                  f"parameters; aux_loss {summary.get('aux_loss')}"),
    ]
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item").rename_axis(None)


def reconstruction_error(params: Params, chunk: int = 256, window: int = 5) -> pd.DataFrame:
    """How well each sample's expected depth fits, from ``reconstructions.npy`` and the store.

    Over bins with expected depth ≥ ``hmm_low_cov_threshold`` (reads), with r = log2((observed + 1) /
    (expected + 1)): ``median_abs_log2`` = median |r|; ``noise_sd`` = robust SD of r from neighbour
    differences; ``excess_score`` = the highest running median of r over ``window`` bins divided by
    ``noise_sd`` (a run of bins above expectation — an amplification the VAE left flat — rather than
    single noisy bins). Columns ``sample_id split median_abs_log2 noise_sd excess_score``, store order.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    out = params.out_path
    st = open_store(params.store_path, check_values=False)
    expected = A.load_array(out, A.RECONSTRUCTIONS, st.counts.shape)
    split = A.read_table(out, A.SPLIT, dtype=str, keep_default_na=False)
    med, noise, score = (np.full(st.n_samples, np.nan) for _ in range(3))
    for lo in range(0, st.n_samples, chunk):
        exp = np.asarray(expected[lo:lo + chunk], dtype=np.float64)
        ratio = np.log2((np.asarray(st.counts[lo:lo + chunk], dtype=np.float64) + 1) / (exp + 1))
        ratio[exp < params.hmm_low_cov_threshold] = np.nan
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows and windows stay NaN
            med[lo:lo + chunk] = np.nanmedian(np.abs(ratio), axis=1)
            sd = 1.4826 * np.nanmedian(np.abs(np.diff(ratio, axis=1)), axis=1) / np.sqrt(2)
            noise[lo:lo + chunk] = sd
            if ratio.shape[1] >= window:
                run = np.nanmedian(sliding_window_view(ratio, window, axis=1), axis=2)
                score[lo:lo + chunk] = np.nanmax(run, axis=1) / np.maximum(sd, 1e-3)
    return pd.DataFrame({"sample_id": st.sample_ids, "split": split["split"].to_numpy(),
                         "median_abs_log2": med, "noise_sd": noise, "excess_score": score})


def example_tracks(params: Params, errors: pd.DataFrame | None = None) -> dict:
    """Observed and expected depth of a few telling samples for the report.

    The samples: a typical hold-out (or validation) sample (median error), the
    worst-reconstructed sample, and the sample with the strongest run of bins
    above its reconstruction (``excess_score`` of :func:`reconstruction_error`:
    an amplification the VAE should *not* reproduce).
    Returns ``position_mb``, ``observed``, ``expected`` (reads per bin),
    ``sample_ids``, ``labels``.
    """
    errors = reconstruction_error(params) if errors is None else errors
    picks: list[tuple[int, str]] = []
    unseen = errors[errors["split"].isin(["holdout"])]
    unseen = unseen if len(unseen) else errors[errors["split"] == "val"]
    if len(unseen):
        i = (unseen["median_abs_log2"] - unseen["median_abs_log2"].median()).abs().idxmin()
        picks.append((int(i), f"typical {errors.loc[i, 'split']} sample (median |log2 ratio| "
                              f"{errors.loc[i, 'median_abs_log2']:.3f})"))
    i = int(errors["median_abs_log2"].idxmax())
    picks.append((i, f"worst reconstructed ({errors.loc[i, 'split']}; median |log2 ratio| "
                     f"{errors.loc[i, 'median_abs_log2']:.3f})"))
    if errors["excess_score"].notna().any():
        i = int(errors["excess_score"].idxmax())
        picks.append((i, f"strongest run of bins above expectation ({errors.loc[i, 'split']}; running median "
                         f"{errors.loc[i, 'excess_score']:.1f} noise SDs)"))
    seen, rows, labels = set(), [], []
    for i, label in picks:
        if i not in seen:
            seen.add(i)
            rows.append(i)
            labels.append(label)
    st = open_store(params.store_path, check_values=False)
    expected = A.load_array(params.out_path, A.RECONSTRUCTIONS, st.counts.shape)
    mid = (st.bins["start"] + st.bins["end"]) / 2 / 1e6
    return {"position_mb": mid, "observed": np.asarray(st.counts[rows], dtype=np.float64),
            "expected": np.asarray(expected[rows], dtype=np.float64), "sample_ids": st.sample_ids[rows].tolist(),
            "labels": labels}
