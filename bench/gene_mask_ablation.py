"""blaSHV amplification calls with the VAE trained with and without the gene neighbourhood masked.

A cohort in which amplifications are common lets the VAE learn them as cohort
structure and reproduce them in its expected depth, which lowers the copy ratio
at the gene. ``vae_gene_mask_padding`` leaves the bins within ± padding bp of
every chromosomal panel gene out of the reconstruction loss. For each simulated
cohort and padding this trains stage 01 (the demo schedule: lr 1e-2 x 80 epochs,
warm-ups 10/15), runs stages 02-03 and scores the blaSHV amplification calls
(true chromosomal CN >= 2 vs call 2) against ``truth/gene_truth.tsv`` on the
hold-out samples and on all samples.

Usage::

    python bench/gene_mask_ablation.py DATA_DIR [DATA_DIR ...] --padding 0 30000 100000 --work /tmp/maskexp

DATA_DIR: a cohort written by ``simulate_cohort`` (bench/run_all.py's accuracy cohorts use
``shv_amp_rate=0.15``). Prints one Markdown row per cohort x padding x subset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import matthews_corrcoef

from cnvrock_lib import calling, segmentation, training
from cnvrock_lib.params import load_params

SCHEDULE = {"epochs": 80, "lr": 1e-2, "warmup_epochs": 10, "aux_warmup_epochs": 15, "patience": 10}


def score(calls: pd.DataFrame, truth: pd.DataFrame, ids: set | None) -> dict:
    """Confusion counts, recall, PPV, MCC and carriers' median |CRR - CN| (copies) of blaSHV amplification."""
    m = calls[calls.gene == "blaSHV"].merge(truth[truth.gene == "blaSHV"][["sample_id", "true_cn"]], on="sample_id")
    if ids is not None:
        m = m[m.sample_id.isin(ids)]
    m = m[m.call >= 0]
    y, yhat = (m.true_cn >= 2).to_numpy(), (m.call == 2).to_numpy()
    tp, fp, fn = int((y & yhat).sum()), int((~y & yhat).sum()), int((y & ~yhat).sum())
    carriers = m[y]
    return {"n": len(m), "positives": int(y.sum()), "TP": tp, "FP": fp, "FN": fn,
            "recall": tp / max(1, tp + fn), "PPV": tp / max(1, tp + fp), "MCC": matthews_corrcoef(y, yhat),
            "carrier |CRR - CN|": float(np.median(np.abs(carriers.crr - carriers.true_cn))) if len(carriers) else np.nan}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="+")
    ap.add_argument("--padding", type=int, nargs="+", default=[0, 30000])
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args(argv)
    print("| cohort | padding (bp) | samples | n | positives | TP | FP | FN | recall | PPV | MCC | carrier \\|CRR − CN\\| |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for data in args.data:
        truth = pd.read_csv(data / "truth" / "gene_truth.tsv", sep="\t")
        holdout = set((data / "holdout_ids.txt").read_text().split())
        for pad in args.padding:
            out = args.work / f"{data.name}_pad{pad}"
            params = load_params(data / "params.yaml", overrides={"out_dir": str(out), **SCHEDULE,
                                                                  "vae_gene_mask_padding": pad})
            t0 = time.perf_counter()
            training.train_vae(params, progress=False, log=lambda m: None)
            segmentation.segment_cohort(params, log=lambda m: None)
            calls = calling.stage.call_genes(params).gene_calls
            for subset, ids in (("hold-out", holdout), ("all", None)):
                s = score(calls, truth, ids)
                print(f"| {data.name} | {pad:,} | {subset} | {s['n']} | {s['positives']} | {s['TP']} | {s['FP']} | "
                      f"{s['FN']} | {s['recall']:.3f} | {s['PPV']:.3f} | {s['MCC']:.3f} | "
                      f"{s['carrier |CRR - CN|']:.3f} |", flush=True)
            print(f"<!-- {data.name} padding {pad}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
