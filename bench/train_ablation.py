"""Stage-01 measurements on the simulated demo cohort, written into docs/training.md.

Experiments (each trains the VAE several times on the demo tier's data, CPU):
  arch    conv channels/kernels/strides: training speed vs reconstruction error
  aux     aux_loss none / align / sin2 (x seeds): reconstruction error, structure
          carried by the latent (cross-validated R²), flatness at true amplifications
  schedule  lr / batch size / epochs on the default architecture (the demo budget)
  epochs  one long run with early stopping off: validation loss per epoch

Usage: python bench/train_ablation.py {arch,schedule,aux,epochs} [--set lr=3e-3 ...] [--seeds 42 7] [--no-docs]
Results: bench/out/train_<experiment>.json, and the matching table between the
markers <!-- BEGIN <experiment> --> / <!-- END <experiment> --> in docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnvrock_lib import artefacts as A  # noqa: E402
from cnvrock_lib import training  # noqa: E402
from cnvrock_lib.params import load_params  # noqa: E402
from cnvrock_lib.report import prepare_params  # noqa: E402
from cnvrock_lib.store import open_store  # noqa: E402
from doc_blocks import write_doc_block  # noqa: E402

OUT = REPO / "bench" / "out"
DOC = REPO / "docs" / "training.md"
SCHEDULES = {  # name: overrides of demo.yaml (which has lr 1e-3, batch 128, 40 epochs)
    "lr1e-3_b128_e40": {"lr": 1e-3},
    "lr3e-3_b128_e40": {"lr": 3e-3},
    "lr1e-2_b128_e40": {"lr": 1e-2},
    "lr3e-3_b64_e40": {"lr": 3e-3, "batch_size": 64},
    "lr3e-3_b32_e40": {"lr": 3e-3, "batch_size": 32},
    "lr1e-2_b128_e80": {"lr": 1e-2, "epochs": 80},
    "lr1e-2_b128_e120": {"lr": 1e-2, "epochs": 120},
}
ARCHS = [  # (channels, kernels, strides)
    ([8, 16, 32], [9, 9, 9], [4, 4, 4]),
    ([16, 32, 64], [9, 9, 9], [4, 4, 4]),
    ([16, 32, 64], [9, 9, 9], [8, 4, 4]),
    ([8, 16, 32], [9, 9, 9], [8, 4, 2]),
]  # (32, 64, 128) is left out: far slower per sample (bench/train_throughput.py --all-archs)


def demo_params(out_dir: Path, **overrides):
    """The demo tier's params (its cohort simulated if missing) with out_dir and ``overrides`` replaced."""
    base = prepare_params(REPO / "params" / "demo.yaml")
    return load_params(base.source, overrides={"out_dir": str(out_dir), **overrides}), base


def _x(counts: np.ndarray, medians: np.ndarray) -> np.ndarray:
    return np.log2(counts / medians[:, None] + 1.0)


def evaluate_run(params, truth_dir: Path) -> dict:
    """Reconstruction error per split, latent R² of known structure, copy ratio at true CNVs."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = params.out_path
    st = open_store(params.store_path, check_values=False)
    counts = np.asarray(st.counts, dtype=np.float64)
    medians = np.load(A.MEDIANS.path(out))
    expected = np.load(A.RECONSTRUCTIONS.path(out)).astype(np.float64)
    latents = np.load(A.LATENTS.path(out)).astype(np.float64)
    split = A.read_table(out, A.SPLIT)["split"].to_numpy()
    train_idx = np.flatnonzero(split == "train")
    x = _x(counts, medians).astype(np.float32)
    usable = training.usable_bins(x, medians, train_idx, params.hmm_low_cov_threshold)
    sq = (x - _x(expected, medians)) ** 2
    res: dict = {}
    for name in ("train", "val", "holdout"):
        rows = split == name
        res[f"mse_{name}"] = float(sq[np.ix_(rows, usable)].mean()) if rows.any() else float("nan")

    # GC bias left in the residual: per sample |corr(x - x_hat, bin GC)| over usable bins (median over
    # samples), beside the same for the raw deviation from the cohort's median profile.
    gc = pd.read_csv(truth_dir / "bin_features.tsv", sep="\t")["gc"].to_numpy(dtype=float)[usable]

    def gc_corr(dev: np.ndarray) -> float:
        dev = dev[:, usable] - dev[:, usable].mean(axis=1, keepdims=True)
        g = gc - gc.mean()
        r = dev @ g / (np.linalg.norm(dev, axis=1) * np.linalg.norm(g))
        return float(np.median(np.abs(r)))

    res["gc_corr_raw"] = gc_corr(x - np.median(x[train_idx], axis=0))
    res["gc_corr_residual"] = gc_corr(x - _x(expected, medians))

    samples = pd.read_csv(truth_dir / "samples.tsv", sep="\t", dtype={"sample_id": str})
    samples = samples.set_index("sample_id").loc[st.sample_ids]
    segs = pd.read_csv(truth_dir / "segments.tsv", sep="\t", dtype={"sample_id": str})
    row_of = {s: i for i, s in enumerate(st.sample_ids)}
    lin = segs[segs["kind"] == "lineage_deletion"]
    keys = pd.Index(sorted(set(zip(lin["start"], lin["end"]))))
    lin_mat = np.zeros((st.n_samples, len(keys)))
    lin_mat[lin["sample_id"].map(row_of).to_numpy(), keys.get_indexer(list(zip(lin["start"], lin["end"])))] = 1.0
    lin_mat = lin_mat[:, lin_mat.std(axis=0) > 0]
    targets = {"lineage_deletions": lin_mat,
               "ori_ter": np.log2(samples["ori_ter_ratio"].to_numpy(dtype=float))[:, None],
               "gc_batch": pd.get_dummies(samples["gc_batch"]).to_numpy(dtype=float)}
    folds = KFold(5, shuffle=True, random_state=0)
    models = {"linear": LinearRegression(), "knn": KNeighborsRegressor(15)}
    for tname, y in targets.items():
        for mname, model in models.items():
            pred = cross_val_predict(make_pipeline(StandardScaler(), model), latents, y, cv=folds)
            res[f"r2_{tname}_{mname}"] = float(r2_score(y, pred, multioutput="variance_weighted"))

    # Copy ratio at bins wholly inside true CNV segments (observed / expected, sample median 1).
    ratio = counts / np.maximum(expected, 1e-9)
    ratio[(expected < params.hmm_low_cov_threshold) | ~usable[None, :]] = np.nan
    ratio /= np.nanmedian(ratio, axis=1, keepdims=True)
    starts, ends = st.bins["start"], st.bins["end"]
    for kind, label in ((("amplification", "shv_amplification"), "amp"), (("private_deletion",), "del")):
        chosen = segs[segs["kind"].isin(kind)]
        rows = {"seen": [], "unseen": []}
        for seg in chosen.itertuples():
            i = row_of[seg.sample_id]
            inside = (starts >= seg.start) & (ends <= seg.end)
            vals = ratio[i, inside]
            if not np.isfinite(vals).any():
                continue
            r = float(np.nanmedian(vals))
            kept = (r - 1.0) / (seg.cn - 1.0) if seg.cn != 1 else np.nan
            rows["seen" if split[i] == "train" else "unseen"].append(kept)
        for group, kept in rows.items():
            res[f"{label}_kept_{group}"] = float(np.median(kept)) if kept else float("nan")
            res[f"{label}_n_{group}"] = len(kept)
    # False gains: bins outside every true CNV segment whose copy ratio reaches the caller's amplification
    # threshold (1.75) - typically a deletion the VAE expects in a sample that does not carry it.
    in_cnv = np.zeros(ratio.shape, dtype=bool)
    for seg in segs.itertuples():
        in_cnv[row_of[seg.sample_id], (ends >= seg.start) & (starts <= seg.end)] = True
    clean = ~in_cnv & np.isfinite(ratio) & ~samples["low_quality"].to_numpy(dtype=bool)[:, None]
    # "well covered": expected depth >= 25 % of the sample's median (leaves out the near-unmappable
    # stretches, which keep a few per cent of the depth and pass the 10-read mask at this depth).
    covered = expected >= 0.25 * medians[:, None]
    lineage_region = np.zeros(st.n_bins, dtype=bool)  # bins deleted in some lineage
    for seg in lin.itertuples():
        lineage_region[(ends >= seg.start) & (starts <= seg.end)] = True
    covered_gain = clean & covered & (np.nan_to_num(ratio) >= 1.75)
    res["false_gain_covered_in_lineage_region"] = float(lineage_region[np.nonzero(covered_gain)[1]].mean())
    res["lineage_region_fraction"] = float(lineage_region.mean())
    for scope, keep in (("", clean), ("_covered", clean & covered)):
        gain = keep & (np.nan_to_num(ratio) >= 1.75)
        runs = np.lib.stride_tricks.sliding_window_view(gain, 3, axis=1).all(axis=2).any(axis=1)
        for group, rows in (("seen", split == "train"), ("unseen", split != "train")):
            rows = rows & ~samples["low_quality"].to_numpy(dtype=bool)
            res[f"false_gain{scope}_bins_{group}"] = float(gain[rows].sum() / max(keep[rows].sum(), 1))
            res[f"false_gain{scope}_samples_{group}"] = float(runs[rows].mean())
    summary = training.load_train_summary(out)
    res.update({k: summary[k] for k in ("samples_per_second", "train_seconds", "epochs_run", "best_epoch",
                                        "n_parameters", "stopped_early")})
    return res


def run_variant(name: str, out_root: Path, **overrides) -> dict:
    params, base = demo_params(out_root / name, **overrides)
    t0 = time.perf_counter()
    training.train_vae(params, progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    res = {"variant": name, "wall_seconds": wall, **overrides,
           **evaluate_run(params, Path(base.simulate["data_dir"]) / "truth")}
    print(json.dumps(res), flush=True)
    return res


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {training.thread_count(0)} cores, torch "
            f"{torch.__version__}, load average {load:.1f} at start")


def fmt(v, digits=3):
    if isinstance(v, float):
        return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def table(frame: pd.DataFrame, cols: dict) -> str:
    """Markdown table of ``cols`` ({column: header}); MSE columns with 4 decimals, others 3."""
    head = "| " + " | ".join(cols.values()) + " |\n|" + "---|" * len(cols) + "\n"
    digits = {c: 4 if c.startswith("mse") else 1 if ("epoch" in c or "wall" in c) else 3 for c in cols}
    body = "".join("| " + " | ".join(fmt(r[c], digits[c]) for c in cols) + " |\n"
                   for r in frame.to_dict("records"))
    return head + body


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", choices=["arch", "schedule", "aux", "epochs"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="params overrides for every run (YAML values), e.g. lr=3e-3 epochs=60")
    ap.add_argument("--render", action="store_true",
                    help="no training: rewrite the docs table from bench/out/train_<experiment>.json")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/training.md")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    result_path = OUT / f"train_{args.experiment}.json"
    if args.render:
        result = json.loads(result_path.read_text())
    else:
        result = run_experiment(args)
        result_path.write_text(json.dumps(result, indent=1, default=str))
    text = render(args.experiment, result)
    print(text)
    if not args.no_docs:
        write_doc_block(DOC, args.experiment, text)
    return 0


def run_experiment(args) -> dict:
    """Train the variants of ``args.experiment``; returns {machine, cmd, extra, rows}."""
    import yaml

    root = OUT / f"train_{args.experiment}"
    env = machine()
    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    cmd = " ".join(["python bench/train_ablation.py", args.experiment] + (["--set", *args.set] if args.set else [])
                   + (["--seeds", *map(str, args.seeds)] if args.experiment == "aux" else []))
    rows = []
    if args.experiment == "arch":
        for ch, k, s in ARCHS:
            name = f"c{'-'.join(map(str, ch))}_k{'-'.join(map(str, k))}_s{'-'.join(map(str, s))}"
            rows.append(run_variant(name, root, conv_channels=ch, conv_kernels=k, conv_strides=s, **extra))
    elif args.experiment == "schedule":
        for name, overrides in SCHEDULES.items():
            rows.append(run_variant(name, root, **{**extra, **overrides}))
    elif args.experiment == "aux":
        for seed in args.seeds:
            for aux in ("none", "align", "sin2"):
                rows.append(run_variant(f"{aux}_seed{seed}", root, aux_loss=aux, seed=seed, **extra))
    else:
        params, _ = demo_params(root / "long", **{"epochs": 120, **extra, "patience": 1000})
        t0 = time.perf_counter()
        training.train_vae(params, progress=False, log=lambda m: None)
        rows = training.load_training_log(params.out_path).to_dict("records")
        extra["wall_seconds"] = time.perf_counter() - t0
        extra["warmup_end"] = training.warmup_end(params)
    return {"machine": env, "cmd": cmd, "extra": extra, "rows": rows}


def render(experiment: str, result: dict) -> str:
    """Markdown for docs/training.md from a saved result."""
    frame = pd.DataFrame(result["rows"])
    text = f"Measured by `{result['cmd']}` on the demo cohort ({result['machine']}).\n\n"
    if experiment == "arch":
        text += table(frame, {"conv_channels": "channels", "conv_kernels": "kernels", "conv_strides": "strides",
                              "n_parameters": "parameters", "epochs_run": "epochs", "best_epoch": "best epoch",
                              "mse_train": "train MSE", "mse_val": "val MSE", "mse_holdout": "hold-out MSE",
                              "r2_lineage_deletions_knn": "R² lineage del. (kNN)",
                              "r2_ori_ter_knn": "R² log2 ori/ter (kNN)",
                              "false_gain_samples_unseen": "samples with a false gain (unseen)",
                              "false_gain_covered_samples_unseen": "… in well-covered bins (unseen)"})
        text += ("\nMSE: squared error of the normalised log depth per usable bin, decoded from mu. Training "
                 "speed of these architectures: see Throughput (timed apart from this run, as the machine "
                 "is shared).\n")
    elif experiment == "schedule":
        for col, default in (("batch_size", 128), ("epochs", 40)):
            frame[col] = frame[col].fillna(default).astype(int) if col in frame else default
        text += table(frame, {"lr": "lr", "batch_size": "batch", "epochs": "epochs", "best_epoch": "best epoch",
                              "wall_seconds": "wall s", "mse_train": "train MSE", "mse_val": "val MSE",
                              "mse_holdout": "hold-out MSE", "r2_ori_ter_linear": "R² log2 ori/ter (linear)",
                              "amp_kept_seen": "amp. excess kept (trained on)",
                              "amp_kept_unseen": "amp. excess kept (unseen)",
                              "false_gain_covered_samples_unseen": "samples with a false gain, well-covered "
                                                                   "bins (unseen)"})
        text += ("\nWall s: the whole `train_vae` call (normalisation, training, validation, inference, "
                 "writing), on the shared machine. Metrics as in the aux ablation below.\n")
    elif experiment == "aux":
        cols = ["mse_val", "mse_holdout", "r2_lineage_deletions_linear", "r2_lineage_deletions_knn",
                "r2_ori_ter_linear", "r2_ori_ter_knn", "r2_gc_batch_linear", "r2_gc_batch_knn",
                "amp_kept_seen", "amp_kept_unseen", "del_kept_seen", "del_kept_unseen", "gc_corr_residual", "false_gain_samples_seen", "false_gain_samples_unseen",
                "false_gain_covered_samples_seen", "false_gain_covered_samples_unseen", "best_epoch"]
        mean = frame.groupby("aux_loss", sort=False)[cols].mean().reset_index()
        seeds = sorted(set(frame["seed"]))
        n = frame.iloc[0]
        text += table(mean, {"aux_loss": "aux_loss", "mse_val": "val MSE", "mse_holdout": "hold-out MSE",
                             "r2_lineage_deletions_linear": "R² lineage del. (linear)",
                             "r2_lineage_deletions_knn": "R² lineage del. (kNN)",
                             "r2_ori_ter_linear": "R² log2 ori/ter (linear)",
                             "r2_ori_ter_knn": "R² log2 ori/ter (kNN)",
                             "r2_gc_batch_linear": "R² GC batch (linear)", "r2_gc_batch_knn": "R² GC batch (kNN)",
                             "amp_kept_seen": "amp. excess kept (trained on)",
                             "amp_kept_unseen": "amp. excess kept (unseen)",
                             "del_kept_seen": "private del. drop kept (trained on)",
                             "del_kept_unseen": "private del. drop kept (unseen)",
                             "gc_corr_residual": "GC left in residual",
                             "false_gain_samples_seen": "samples with a false gain (trained on)",
                             "false_gain_samples_unseen": "samples with a false gain (unseen)",
                             "false_gain_covered_samples_seen": "… in well-covered bins (trained on)",
                             "false_gain_covered_samples_unseen": "… in well-covered bins (unseen)",
                             "best_epoch": "best epoch"})
        text += ("\nA false gain: 3 or more consecutive bins outside every true CNV segment of the sample with "
                 "copy ratio ≥ 1.75 (the caller's amplification threshold), low-quality samples left out; "
                 "well-covered bins: expected depth ≥ 25 % of the sample median (this leaves out the "
                 "near-unmappable rRNA/IS stretches).\n")
        text += (f"Of the false-gain bins in well-covered bins, {frame['false_gain_covered_in_lineage_region'].mean():.2f} "
                 f"(mean over runs) lie in a region deleted in some lineage, which holds "
                 f"{frame['lineage_region_fraction'].iloc[0]:.2f} of the chromosome's bins.\n")
        text += (f"\nGC left in residual: median over samples of |corr(x − x̂, bin GC)| over usable bins; the "
                 f"raw deviation from the cohort's median profile gives {frame['gc_corr_raw'].iloc[0]:.3f}.\n")
        text += (f"\nMeans over seeds {seeds}. Segments scored: {int(n['amp_n_seen'])} amplifications in "
                 f"training samples and {int(n['amp_n_unseen'])} in validation/hold-out samples; "
                 f"{int(n['del_n_seen'])} / {int(n['del_n_unseen'])} private deletions.\n\nPer seed:\n\n")
        text += table(frame, {"variant": "run", "mse_val": "val MSE", "mse_holdout": "hold-out MSE",
                              "r2_lineage_deletions_linear": "R² lin. del. (linear)",
                              "r2_ori_ter_linear": "R² ori/ter (linear)", "r2_gc_batch_linear": "R² GC (linear)",
                              "amp_kept_seen": "amp. kept (seen)", "amp_kept_unseen": "amp. kept (unseen)",
                              "best_epoch": "best epoch"})
    else:
        extra = result["extra"]
        after = frame[frame["epoch"] >= extra["warmup_end"]]
        best = float(after["val_loss"].min())
        marks = {pct: int(after[after["val_loss"] <= best * (1 + pct / 100)]["epoch"].iloc[0])
                 for pct in (10, 5, 2, 1)}
        keep = frame[frame["epoch"].isin(sorted({1, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150,
                                                 len(frame)}))]
        text += table(keep, {"epoch": "epoch", "train_loss": "train loss", "val_loss": "val loss",
                             "recon": "recon", "kl": "KL", "aux": "aux", "beta": "β", "aux_weight": "aux weight"})
        text += (f"\nAfter the warm-ups (from epoch {extra['warmup_end']}), the first epoch whose validation "
                 "loss is within " + ", ".join(f"{p} % of the best: {e}" for p, e in marks.items())
                 + f" (best {best:.2f} at epoch {int(after.loc[after['val_loss'].idxmin(), 'epoch'])}; "
                   f"{len(frame)} epochs in {extra['wall_seconds']:.0f} s wall on the shared machine).\n")
    return text


if __name__ == "__main__":
    sys.exit(main())
