"""Segmentation accuracy of stage 02 on a simulated cohort against its true segments.

Runs :func:`cnvrock_lib.segmentation.segment_cohort` with each noise estimate in
``--noise`` and ``hmm_em_iterations`` in ``--em`` (default 0 1 2 3) on a simulated tier whose stage 01 has run (its
``reconstructions.npy`` is the expected depth), and, for comparison, with a
naive expected depth (the cohort's median profile scaled by each sample's
median depth) instead of the VAE's. Each run writes into its own folder under
``--work``; the stage's artefacts in the tier's own ``out_dir`` are not touched.

Prints one row per run (bin accuracy, loss/gain recall and precision, breakpoint
error) and writes them as TSV.

Usage::

    .venv/bin/python bench/segment_accuracy.py params/demo.yaml --work /tmp/segacc
    .venv/bin/python bench/segment_accuracy.py params/demo.yaml --out-dir /tmp/run --work /tmp/segacc --em 0 2 \
        --self-transition 0.95 0.99
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnvrock_lib import artefacts as A
from cnvrock_lib import segmentation
from cnvrock_lib import truth as T
from cnvrock_lib.atomic import write_tsv
from cnvrock_lib.normalise import sample_medians
from cnvrock_lib.params import load_params
from cnvrock_lib.store import open_store

COLUMNS = ["expected_depth", "noise", "em_iterations", "self_transition", "bin_accuracy", "bin_accuracy_usable", "recall_loss", "precision_loss",
           "recall_gain", "precision_gain", "recall_normal", "breakpoints_true", "breakpoints_found",
           "breakpoint_error_median_bp", "breakpoint_error_p90_bp", "breakpoints_called_per_sample", "breakpoint_precision", "qc_pass",
           "means", "seconds"]


def cohort_median_expected(store) -> np.ndarray:
    """Naive expected depth: median over samples of depth-normalised counts × each sample's median."""
    counts = np.asarray(store.counts, dtype=np.float64)
    m = sample_medians(counts)
    profile = np.median(counts / m[:, None], axis=0)
    return (m[:, None] * profile[None, :]).astype(np.float32)


def noise_check(params_path: Path, run_dir: Path) -> pd.DataFrame:
    """The noise estimates of :func:`segmentation.noise_sd` against the scatter of true CN-1 bins.

    Per sample: the robust sd (1.4826 × MAD) of the copy ratio over usable bins whose
    true CN is 1, the "level" and "diff" estimates, and the lag-1 correlation of
    neighbouring true-CN-1 bins; the table gives medians over samples.
    """
    params = load_params(params_path, overrides={"out_dir": str(run_dir)})
    store = open_store(params.store_path, check_values=False)
    ratios = np.load(A.COPY_RATIOS.path(run_dir)).astype(np.float64)
    mask = np.isnan(ratios)
    truth = pd.read_csv(segmentation.report.truth_path(params), sep="\t", dtype={"sample_id": str})
    cn1 = (T.truth_cn_per_bin(truth, store.bins, store.sample_ids) == 1) & ~mask
    robust, lag1 = [], []
    for r, ok in zip(ratios, cn1):
        v = r[ok]
        robust.append(1.4826 * np.median(np.abs(v - np.median(v))))
        pair = ok[1:] & ok[:-1]
        lag1.append(np.corrcoef(r[1:][pair], r[:-1][pair])[0, 1])
    return pd.DataFrame({"median over samples": {
        "robust sd of true CN-1 bins": float(np.median(robust)),
        "noise_sd level (default)": float(np.median(segmentation.noise_sd(ratios, mask, "level"))),
        "noise_sd diff": float(np.median(segmentation.noise_sd(ratios, mask, "diff"))),
        "lag-1 correlation of CN-1 bins": float(np.nanmedian(lag1)),
    }})


def confusion_of(params_path: Path, run_dir: Path) -> pd.DataFrame:
    """:func:`cnvrock_lib.truth.state_confusion` of one run's states against the truth."""
    params = load_params(params_path, overrides={"out_dir": str(run_dir)})
    store = open_store(params.store_path, check_values=False)
    truth = pd.read_csv(segmentation.report.truth_path(params), sep="\t", dtype={"sample_id": str})
    mask = np.isnan(np.load(A.COPY_RATIOS.path(run_dir)))
    truth_cn = T.truth_cn_per_bin(truth, store.bins, store.sample_ids)
    return T.state_confusion(np.load(A.STATES.path(run_dir)), mask, truth_cn)


def qc_check(params_path: Path, run_dir: Path) -> pd.DataFrame:
    """``sample_qc.tsv`` of one run against the simulator's ``low_quality`` flag (truth/samples.tsv)."""
    params = load_params(params_path, overrides={"out_dir": str(run_dir)})
    truth = pd.read_csv(segmentation.report.truth_path(params).parent / "samples.tsv", sep="\t", dtype={"sample_id": str})
    qc = A.read_table(run_dir, A.SAMPLE_QC, dtype={"sample_id": str})
    both = truth[["sample_id", "low_quality"]].merge(qc, on="sample_id")
    both["low_quality"] = both["low_quality"].astype(str).str.lower() == "true"
    out = both.groupby("low_quality").agg(samples=("sample_id", "size"), qc_pass=("qc_pass", "sum"),
                                          noise_sd_min=("noise_sd", "min"), noise_sd_median=("noise_sd", "median"),
                                          noise_sd_max=("noise_sd", "max"))
    out.index = out.index.map({False: "simulated normal quality", True: "simulated low quality"})
    return out


def run_one(params_path: Path, out: Path, expected: np.ndarray, em: int, label: str, noise: str,
            self_transition: float | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    A.save_array(out, A.RECONSTRUCTIONS, expected)
    overrides = {"out_dir": str(out), "hmm_em_iterations": em}
    if self_transition is not None:
        overrides["hmm_self_transition"] = self_transition
    params = load_params(params_path, overrides=overrides)
    t0 = time.perf_counter()
    result = segmentation.segment_cohort(params, noise_method=noise)
    seconds = time.perf_counter() - t0
    table = segmentation.report.accuracy_against_truth(params, result)
    if table is None:
        raise SystemExit(f"{params_path}: no truth/segments.tsv (not a simulated tier?)")
    row = table["all samples"].to_dict()
    row.update(expected_depth=label, noise=noise, em_iterations=em, self_transition=params.hmm_self_transition, qc_pass=int(result.qc["qc_pass"].sum()),
               means=" ".join(f"{m:.3f}" for m in result.means), seconds=round(seconds, 1))
    return row


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("params", type=Path, help="a simulated tier YAML (e.g. params/demo.yaml)")
    ap.add_argument("--out-dir", type=Path, help="where stage 01 wrote reconstructions.npy (default: the tier's out_dir)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for the runs")
    ap.add_argument("--em", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--noise", nargs="+", default=["level", "diff"], help="noise estimates to compare (noise_sd)")
    ap.add_argument("--self-transition", type=float, nargs="*", default=[],
                    help="also run these hmm_self_transition values (first noise estimate, first EM setting)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the cohort-median expected depth")
    args = ap.parse_args(argv)

    base = load_params(args.params)
    recon_dir = args.out_dir or base.out_path
    recon = np.load(A.RECONSTRUCTIONS.path(recon_dir))
    rows = []

    def show(row):
        rows.append(row)
        print(pd.DataFrame([row])[COLUMNS].to_string(index=False, header=len(rows) == 1), flush=True)

    for noise in args.noise:
        for em in args.em:
            show(run_one(args.params, args.work / f"vae_{noise}_em{em}", recon, em, "VAE reconstruction", noise))
    for p_stay in args.self_transition:
        show(run_one(args.params, args.work / f"vae_stay{p_stay}", recon, args.em[0], "VAE reconstruction",
                     args.noise[0], p_stay))
    if not args.no_baseline:
        naive = cohort_median_expected(open_store(base.store_path))
        show(run_one(args.params, args.work / "median", naive, args.em[0], "cohort median profile", args.noise[0]))
    first = args.work / f"vae_{args.noise[0]}_em{args.em[0]}"
    confusion = confusion_of(args.params, first)
    print("\n" + confusion.round(4).to_string())
    write_tsv(args.work / "state_confusion.tsv", confusion, index=True)
    qc = qc_check(args.params, first)
    print("\n" + qc.round(3).to_string())
    write_tsv(args.work / "qc_check.tsv", qc, index=True)
    noise = noise_check(args.params, first)
    print("\n" + noise.round(4).to_string())
    write_tsv(args.work / "noise_check.tsv", noise, index=True)
    frame = pd.DataFrame(rows)[COLUMNS]
    write_tsv(args.work / "segment_accuracy.tsv", frame)
    print(f"\nwritten: {args.work / 'segment_accuracy.tsv'}")
    return frame


if __name__ == "__main__":
    main()
