"""Stage-03 calls on simulated cohorts against the simulator's truth (docs/calling.md).

Usage: python bench/call_accuracy.py TIER.yaml [TIER.yaml ...] [--out bench/out/call]

Each tier must be simulated (``truth/gene_truth.tsv`` beside its chromosome
store) and, for the chromosomal caller, have run stages 01-02 into its
out_dir. The plasmid caller is run twice, with ``pcn_threshold_method`` fixed
and mixture. Nothing is written into out_dir; per-gene tables go to
``--out/accuracy_<tier>.tsv`` and a Markdown summary is printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnvrock_lib import call
from cnvrock_lib.atomic import write_tsv
from cnvrock_lib.params import load_params
from cnvrock_lib.store import open_store


def score_tier(path: str) -> pd.DataFrame:
    frames = []
    for method in ("fixed", "mixture"):
        params = load_params(path, overrides={"pcn_threshold_method": method})
        truth = pd.read_csv(Path(params.store_path).parent / "truth" / "gene_truth.tsv", sep="\t",
                            dtype={"sample_id": str})
        t0 = time.perf_counter()
        if (params.out_path / "copy_ratios.npy").is_file():
            result = call.call_genes(params, write=False)
            genes, plasmids = result.gene_calls, result.plasmid_calls
        else:
            store = open_store(params.store_path)
            genes = pd.DataFrame(columns=call.GENE_CALL_COLUMNS)
            medians = call.chromosome_medians(params, store)
            plasmids, _ = call.call_plasmid_genes(params, store.sample_ids, medians,
                                                  call.bin_dispersion(store.counts, medians))
        seconds = time.perf_counter() - t0
        scored = call.truth_metrics(genes, plasmids, truth)
        if method == "mixture":
            scored = scored[scored.level != "chromosome"]   # the chromosomal caller ignores the method
        scored.insert(0, "threshold_method", method if method == "mixture" else "fixed")
        scored.insert(0, "tier", params.tier)
        scored["seconds"] = round(seconds, 1)
        frames.append(scored)
    return pd.concat(frames, ignore_index=True)


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tiers", nargs="+")
    ap.add_argument("--out", default="bench/out/call")
    args = ap.parse_args()
    cols = ["tier", "threshold_method", "gene", "level", "mode", "n_callable", "n_pos", "recall", "precision",
            "abs_err_median", "abs_err_median_pos", "interval_coverage", "interval_coverage_carriers"]
    for path in args.tiers:
        table = score_tier(path)
        tier = table.tier.iloc[0]
        write_tsv(Path(args.out) / f"accuracy_{tier}.tsv", table, float_format="%.4g", na_rep="NA")
        shown = table[(table.level != "member")][cols].copy()
        for c in cols[7:]:
            shown[c] = shown[c].map(lambda v: "NA" if not np.isfinite(v) else f"{v:.3f}")
        print(f"\n### {tier}\n")
        print(markdown(shown))


if __name__ == "__main__":
    main()
