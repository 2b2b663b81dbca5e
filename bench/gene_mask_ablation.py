"""blaSHV amplification calls with the VAE trained with and without the gene neighbourhood masked,
and with the masked neighbourhood filled from the sample's own flank.

A cohort in which amplifications are common lets the VAE learn them as cohort
structure and reproduce them in its expected depth, which lowers the copy ratio
at the gene. ``vae_gene_mask_padding`` leaves the bins within ± padding bp of
every chromosomal panel gene out of the reconstruction loss; ``vae_gene_fill``
(``expected`` / ``observed``) replaces the decoder's output there by the cohort
profile scaled to the sample's flank level (docs/training.md). For each simulated
cohort and variant ``PADDING:FILL`` this trains stage 01 (the demo schedule: lr
1e-2 x 80 epochs, warm-ups 10/15; variants with the same padding share one
trained model, since the fill only changes the decoded output), runs stages
02-03 and scores the blaSHV amplification calls (true chromosomal CN >= 2 vs
call 2) against ``truth/gene_truth.tsv`` on the hold-out samples and on all
samples, and stage 02's bin-level accuracy against ``truth/segments.tsv``
inside and outside the ± 30 kb gene neighbourhood.

Usage::

    python bench/gene_mask_ablation.py DATA_DIR [DATA_DIR ...] --work /tmp/maskexp \\
        --variants 0:none 30000:none 30000:expected 30000:observed

DATA_DIR: a cohort written by ``simulate_cohort`` (e.g. a development world with a high
blaSHV amplification prevalence; never a test world). Prints one Markdown row per
cohort x variant x subset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import matthews_corrcoef

from cnvrock_lib import calling, segmentation, training
from cnvrock_lib import truth as T
from cnvrock_lib.geometry import gene_neighbourhood_bins
from cnvrock_lib.params import load_params
from cnvrock_lib.reference import load_gene_panel
from cnvrock_lib.store import open_store

SCHEDULE = {"epochs": 80, "lr": 1e-2, "warmup_epochs": 10, "aux_warmup_epochs": 15, "patience": 10}
SCORE_PADDING = 30_000  # bp: the neighbourhood in which bin accuracy is scored apart from the rest


def score(calls: pd.DataFrame, truth: pd.DataFrame, ids: set | None) -> dict:
    """Confusion counts, recall, PPV, MCC and carriers' median |CRR - CN| and CRR - CN (copies) of blaSHV."""
    m = calls[calls.gene == "blaSHV"].merge(truth[truth.gene == "blaSHV"][["sample_id", "true_cn"]], on="sample_id")
    if ids is not None:
        m = m[m.sample_id.isin(ids)]
    m = m[m.call >= 0]
    y, yhat = (m.true_cn >= 2).to_numpy(), (m.call == 2).to_numpy()
    tp, fp, fn = int((y & yhat).sum()), int((~y & yhat).sum()), int((y & ~yhat).sum())
    carriers = m[y]
    err = carriers.crr - carriers.true_cn
    return {"n": len(m), "positives": int(y.sum()), "TP": tp, "FP": fp, "FN": fn,
            "recall": tp / max(1, tp + fn), "PPV": tp / max(1, tp + fp), "MCC": matthews_corrcoef(y, yhat),
            "abs_err": float(np.median(np.abs(err))) if len(carriers) else np.nan,
            "bias": float(np.median(err)) if len(carriers) else np.nan}


def bin_accuracy(params, segments: Path, near: np.ndarray) -> tuple[float, float]:
    """Stage-02 accuracy on usable bins (called state = nearest state to the true CN), outside and inside ``near``.

    ``segments``: the cohort's ``truth/segments.tsv``.
    """
    out = params.out_path
    states = np.load(out / "states.npy", mmap_mode="r")
    ratios = np.load(out / "copy_ratios.npy", mmap_mode="r")
    store = open_store(params.store_path)
    truth = pd.read_csv(segments, sep="\t", dtype={"sample_id": str, "chrom": str})
    truth_cn = T.truth_cn_per_bin(truth, store.bins, store.sample_ids)
    right = np.asarray(states) == T.nearest_state(truth_cn)
    usable = np.isfinite(np.asarray(ratios))
    return (float(right[usable & ~near[None, :]].mean()), float(right[usable & near[None, :]].mean()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="+")
    ap.add_argument("--variants", nargs="+", default=["0:none", "30000:none", "30000:expected", "30000:observed"],
                    help="PADDING:FILL pairs (vae_gene_mask_padding bp : vae_gene_fill)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the cohort's params)")
    args = ap.parse_args(argv)
    seed = {} if args.seed is None else {"seed": args.seed}
    tag = f"_seed{args.seed}" if seed else ""
    variants = [(int(v.split(":")[0]), v.split(":")[1]) for v in args.variants]
    print("| cohort | padding (bp) | fill | samples | n | positives | TP | FP | FN | recall | PPV | MCC | "
          "carrier \\|CRR − CN\\| | carrier CRR − CN | bin acc. outside | bin acc. inside |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for data in args.data:
        name = data.name + (f" (seed {args.seed})" if seed else "")
        truth = pd.read_csv(data / "truth" / "gene_truth.tsv", sep="\t")
        holdout = set((data / "holdout_ids.txt").read_text().split())
        for pad, fill in variants:
            out = args.work / f"{data.name}_pad{pad}{tag}"  # one trained model per padding (and seed)
            params = load_params(data / "params.yaml", overrides={"out_dir": str(out), **SCHEDULE, **seed,
                                                                  "vae_gene_mask_padding": pad,
                                                                  "vae_gene_fill": fill})
            genes = load_gene_panel(params.chrom_gene_coords_path, "chromosome").genes
            near = gene_neighbourhood_bins(open_store(params.store_path).bins, genes, SCORE_PADDING)
            t0 = time.perf_counter()
            training.train_vae(params, progress=False, log=lambda m: None)
            segmentation.segment_cohort(params, log=lambda m: None)
            calls = calling.stage.call_genes(params).gene_calls
            acc_out, acc_in = bin_accuracy(params, data / "truth" / "segments.tsv", near)
            for subset, ids in (("hold-out", holdout), ("all", None)):
                s = score(calls, truth, ids)
                print(f"| {name} | {pad:,} | {fill} | {subset} | {s['n']} | {s['positives']} | {s['TP']} | "
                      f"{s['FP']} | {s['FN']} | {s['recall']:.3f} | {s['PPV']:.3f} | {s['MCC']:.3f} | "
                      f"{s['abs_err']:.3f} | {s['bias']:+.3f} | {acc_out:.4f} | {acc_in:.4f} |", flush=True)
            print(f"<!-- {data.name} padding {pad} fill {fill}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
