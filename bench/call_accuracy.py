"""Stage-03 calls on simulated cohorts against the simulator's truth (docs/calling.md).

Usage: python bench/call_accuracy.py TIER.yaml [TIER.yaml ...] [--out bench/out/call]
       python bench/call_accuracy.py --decision DATA_DIR [DATA_DIR ...]

``--decision``: each DATA_DIR is a simulated cohort whose stage-02 artefacts are in
DATA_DIR/results (:func:`cnvrock_lib.calling.quick.quick_stage_inputs`); the decision layer's
default, the original rules (fixed + original) and ``mixture`` are scored with
:func:`cnvrock_lib.truth.decision_scores` (MCC, recall, PPV, interval coverage).

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

from cnvrock_lib import calling
from cnvrock_lib import truth as T
from cnvrock_lib.atomic import write_tsv
from cnvrock_lib.params import load_params
from cnvrock_lib.store import open_store


def diagnostics(params, genes: pd.DataFrame, plasmids: pd.DataFrame, samples: pd.DataFrame) -> list[str]:
    """Lines on the simulator's confounders: plasmid-borne blaSHV, low-quality samples, backbone PCN."""
    lines = []
    smp = samples.set_index("sample_id")
    if len(genes):
        shv = genes[genes.gene == "blaSHV"].set_index("sample_id")
        fp = shv[(shv.call == 2) & (smp.loc[shv.index, "shv_cn"] < 2.0)]
        explained = int((smp.loc[fp.index, "plasmid_shv_pcn"] > 0).sum())
        lines.append(f"blaSHV amplified calls with < 2 chromosomal copies: {len(fp)}, of which {explained} carry a "
                     f"plasmid-borne blaSHV copy")
        amp = shv[(smp.loc[shv.index, "shv_cn"] >= 2.0) & (shv.status == "ok")]
        true = smp.loc[amp.index, "shv_cn"]
        inside = int(((amp.crr_lo <= true) & (true <= amp.crr_hi)).sum())
        lines.append(f"blaSHV samples with >= 2 chromosomal copies: 95% interval holds the true CN in {inside} of "
                     f"{len(amp)}; median |CRR / CN - 1| = {float((amp.crr / true - 1).abs().median()):.3f}")
        missed = shv[(smp.loc[shv.index, "shv_cn"] >= 2.0) & (shv.status == "ok") & (shv.call != 2)]
        lines.append(f"blaSHV missed amplifications: {len(missed)}, true CN "
                     f"{sorted(smp.loc[missed.index, 'shv_cn'].round(2).tolist())}, CRR "
                     f"{sorted(missed.crr.round(2).tolist())}")
        for species in sorted(set(smp.species) - {"Klebsiella pneumoniae"}):
            sub = shv[smp.loc[shv.index, "species"] == species]
            lines.append(f"blaSHV in {species}: median CRR {float(sub.crr.median()):.2f}, true CN 0, "
                         f"statuses {sub.status.value_counts().to_dict()}, calls {sub.call.value_counts().to_dict()}")
        low = smp.index[smp.low_quality.astype(bool)]
        flagged = int((shv.loc[low, "status"] != "ok").sum())
        lines.append(f"low-quality samples flagged uncallable (blaSHV row): {flagged} of {len(low)}")
    if len(plasmids):
        mem = plasmids[plasmids.level == "member"]
        panel = pd.read_csv(params.plasmid_gene_coords_path, sep="\t")
        contig = dict(zip(panel.gene, panel.contig))
        errs = []
        for gene, d in mem.groupby("gene"):
            col = f"backbone_pcn:{contig[gene]}"
            if col not in smp.columns:
                continue
            true = smp.loc[d.sample_id, col].to_numpy(dtype=float)
            have = (true > 0) & np.isfinite(d.backbone_pcn.to_numpy(dtype=float)) & (d.call >= 0).to_numpy()
            errs.append(np.abs(d.backbone_pcn.to_numpy(dtype=float)[have] / true[have] - 1))
        truth = pd.read_csv(Path(params.store_path).parent / "truth" / "gene_truth.tsv", sep="\t",
                            dtype={"sample_id": str})
        for gene, d in mem.groupby("gene"):
            col = f"backbone_pcn:{contig[gene]}"
            t = truth[(truth.level == "member") & (truth.gene == gene)].set_index("sample_id").true_cn
            d = d[(d.call >= 0)].set_index("sample_id")
            carrier = d[t.loc[d.index] > 0]
            if col not in smp.columns or carrier.empty:
                continue
            ratio = carrier.pcn / t.loc[carrier.index]
            on = smp.loc[carrier.index, col] > 0
            lines.append(f"member {gene}: median PCN / true CN on its reference plasmid {fmt(ratio[on].median())} "
                         f"(n = {int(on.sum())}), elsewhere {fmt(ratio[~on].median())} (n = {int((~on).sum())})")
        fam = plasmids[(plasmids.level == "family") & (plasmids.call >= 0)].merge(
            truth[truth.level == "family"], on=["sample_id", "gene"])
        for gene, d in fam.groupby("gene", sort=False):
            neg = d[d.true_cn == 0].pcn
            lines.append(f"family {gene}: non-carriers' PCN 95th / 99th percentile / max "
                         f"{neg.quantile(0.95):.2f} / {neg.quantile(0.99):.2f} / {neg.max():.2f}; carriers' 5th "
                         f"percentile {d[d.true_cn > 0].pcn.quantile(0.05):.2f}")
        if errs:
            e = np.concatenate(errs)
            lines.append(f"backbone PCN vs true plasmid PCN where the plasmid is present: median relative error "
                         f"{np.median(e):.3f} (n = {e.size})")
    return lines


def score_tier(path: str) -> pd.DataFrame:
    frames = []
    for method in ("fixed", "mixture"):
        params = load_params(path, overrides={"pcn_threshold_method": method})
        truth = pd.read_csv(Path(params.store_path).parent / "truth" / "gene_truth.tsv", sep="\t",
                            dtype={"sample_id": str})
        t0 = time.perf_counter()
        if (params.out_path / "copy_ratios.npy").is_file():
            result = calling.stage.call_genes(params, write=False)
            genes, plasmids = result.gene_calls, result.plasmid_calls
            print(f"{params.tier} ({method}): stage seconds "
                  f"{ {k: round(v, 2) for k, v in result.seconds.items()} }")
        else:
            store = open_store(params.store_path)
            genes = pd.DataFrame(columns=calling.core.GENE_CALL_COLUMNS)
            medians = calling.stage.chromosome_medians(params, store)
            plasmids, _ = calling.stage.call_plasmid_genes(params, store.sample_ids, medians,
                                                  calling.intervals.bin_dispersion(store.counts, medians))
        seconds = time.perf_counter() - t0
        scored = T.truth_metrics(genes, plasmids, truth)
        fam = plasmids[plasmids.level == "family"].drop_duplicates("gene")
        print(f"{params.tier} ({method}): family absent thresholds "
              f"{dict(zip(fam.gene, fam.absent_threshold.round(3)))}, from {dict(zip(fam.gene, fam.threshold_method))}")
        if method == "fixed":
            samples = pd.read_csv(Path(params.store_path).parent / "truth" / "samples.tsv", sep="\t",
                                  dtype={"sample_id": str})
            for line in diagnostics(params, genes, plasmids, samples):
                print(f"{params.tier}: {line}")
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


def fmt(v) -> str:
    return "NA" if not np.isfinite(v) else f"{v:.2f}"


def docs_tables(table: pd.DataFrame) -> str:
    """The compact tables of docs/calling.md, from the per-tier tables."""
    out = []
    chrom = table[table.level == "chromosome"]
    if len(chrom):
        out.append("| cohort | mode | callable | true positives | recall | precision | median abs. error (all) "
                   "| median abs. error (positives) | interval coverage (all) | interval coverage (CN > 0) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in chrom.itertuples():
            out.append(f"| {r.tier} | {r.mode} | {r.n_callable} | {r.n_pos} | {fmt(r.recall)} | {fmt(r.precision)} | "
                       f"{fmt(r.abs_err_median)} | {fmt(r.abs_err_median_pos)} | {fmt(r.interval_coverage)} | "
                       f"{fmt(r.interval_coverage_carriers)} |")
    fam = table[table.level == "family"]
    tiers = list(dict.fromkeys(fam.tier))
    out.append("")
    out.append("| family | " + " | ".join(f"{t}: carriers | {t}: fixed R / P | {t}: mixture R / P" for t in tiers) + " |")
    out.append("|---|" + "---|---|---|" * len(tiers))
    for gene in dict.fromkeys(fam.gene):
        cells = []
        for t in tiers:
            f = fam[(fam.tier == t) & (fam.gene == gene)].set_index("threshold_method")
            cells += [str(int(f.loc["fixed", "n_pos"])),
                      f"{fmt(f.loc['fixed', 'recall'])} / {fmt(f.loc['fixed', 'precision'])}",
                      f"{fmt(f.loc['mixture', 'recall'])} / {fmt(f.loc['mixture', 'precision'])}"]
        out.append(f"| {gene} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("| family | " + " | ".join(f"{t}: median abs. error | {t}: median rel. error | {t}: interval coverage"
                                         for t in tiers) + " |")
    out.append("|---|" + "---|---|---|" * len(tiers))
    for gene in dict.fromkeys(fam.gene):
        cells = []
        for t in tiers:
            r = fam[(fam.tier == t) & (fam.gene == gene) & (fam.threshold_method == "fixed")].iloc[0]
            cells += [fmt(r.abs_err_median_pos), fmt(r.rel_err_median_pos), fmt(r.interval_coverage_carriers)]
        out.append(f"| {gene} | " + " | ".join(cells) + " |")
    return "\n".join(out)


DECISION_VARIANTS = {"default": {}, "original": {"pcn_threshold_method": "fixed", "chrom_call_rule": "original"},
                     "mixture": {"pcn_threshold_method": "mixture", "chrom_call_rule": "original"}}
SHV_BIN_SHARE = 0.496   # overlap-weighted share of blaSHV's two 1 kb bins that the gene covers (861 bp)


def decision_table(data_dirs: list[str]) -> pd.DataFrame:
    """Scores of the decision variants on simulated cohorts (stage-02 artefacts in DATA_DIR/results)."""
    frames = []
    for data in map(Path, data_dirs):
        truth = pd.read_csv(data / "truth" / "gene_truth.tsv", sep="\t", dtype={"sample_id": str})
        samples = pd.read_csv(data / "truth" / "samples.tsv", sep="\t", dtype={"sample_id": str})
        for name, overrides in DECISION_VARIANTS.items():
            params = load_params(data / "params.yaml", overrides={"out_dir": str(data / "results"), **overrides})
            result = calling.stage.call_genes(params, write=False)
            scores = T.decision_scores(result.gene_calls, result.plasmid_calls, truth, samples, SHV_BIN_SHARE)
            scores.insert(0, "variant", name)
            scores.insert(0, "cohort", data.name)
            frames.append(scores)
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tiers", nargs="+")
    ap.add_argument("--out", default="bench/out/call")
    ap.add_argument("--decision", action="store_true", help="the arguments are simulated DATA_DIRs (see above)")
    args = ap.parse_args()
    if args.decision:
        table = decision_table(args.tiers)
        write_tsv(Path(args.out) / "decision_scores.tsv", table, float_format="%.4g", na_rep="NA")
        print(markdown(table.round(3)))
        print("\nlowest MCC per cohort and variant:\n")
        print(markdown(table.groupby(["cohort", "variant"]).mcc.min().unstack().round(3).reset_index()))
        return
    cols = ["tier", "threshold_method", "gene", "level", "mode", "n_callable", "n_pos", "recall", "precision",
            "abs_err_median", "abs_err_median_pos", "interval_coverage", "interval_coverage_carriers"]
    tables = []
    for path in args.tiers:
        table = score_tier(path)
        tables.append(table)
        tier = table.tier.iloc[0]
        write_tsv(Path(args.out) / f"accuracy_{tier}.tsv", table, float_format="%.4g", na_rep="NA")
        shown = table[(table.level != "member")][cols].copy()
        for c in cols[7:]:
            shown[c] = shown[c].map(lambda v: "NA" if not np.isfinite(v) else f"{v:.3f}")
        print(f"\n### {tier}\n")
        print(markdown(shown))
    print("\n## Tables of docs/calling.md\n")
    print(docs_tables(pd.concat(tables, ignore_index=True)))


if __name__ == "__main__":
    main()
