"""Simulator speed, determinism and the measured-back properties of docs/simulation.md.

Usage: python bench/simulate_speed.py [--n-samples 5000] [--seed 42] [--hard] [--world-seed W]
                                      [--workdir /tmp/cnvrock_bench_sim] [--repeat-check 200]
                                      [--properties] [--figures docs/img] [--write-docs]
                                      [--worlds-figure docs/img] [--worlds-n 1000]

Times ``simulate_cohort`` end to end (world, per-sample draws, counts, files), and
the counting step alone, then prints samples per second. ``--repeat-check N``
simulates N samples twice and once with another seed and reports whether the
files are identical (they must be for the same seed). ``--properties`` prints
``measure_properties`` of the timed cohort as a Markdown table (the table in
docs/simulation.md comes from this). ``--figures DIR`` renders the sim_*.png
figures of the docs from the timed cohort. ``--write-docs`` also writes the speed
and property tables between their BEGIN/END markers in docs/simulation.md.
``--world-seed`` times a cohort of another world (default: the reference world).
``--worlds-figure DIR`` simulates ``--worlds-n`` samples in each of six worlds (the
development worlds and worlds 1 and 2; never a test world) and writes sim_worlds_pcn.png
and, with ``--write-docs``, their drawn and realised settings into docs/simulation.md.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from cnvrock_lib import simulate as S
from doc_blocks import write_doc_block

DOC = Path(__file__).resolve().parents[1] / "docs" / "simulation.md"


def _md_table(frame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _same_files(a: Path, b: Path) -> bool:
    names = [rel for rel in S.FILES.values() if rel != "cohort.json"]  # it records the run time
    for rel in names:
        pa, pb = a / rel, b / rel
        if pa.is_dir():
            for f in ("counts.npy", "sample_ids.npy", "contigs.npy"):
                if not filecmp.cmp(pa / f, pb / f, shallow=False):
                    return False
        elif not filecmp.cmp(pa, pb, shallow=False):
            return False
    return True


def _worlds_figure(args, work: Path) -> None:
    """Six worlds' cohorts -> sim_worlds_pcn.png and a table of their drawn and realised settings."""
    import pandas as pd

    from cnvrock_lib.plots.simulation import render_worlds_figure

    seeds = list(S.world_seeds(len(S.DEV_WORLD_SEEDS), 0)[0]) + [1, 2]
    dirs, rows = {}, []
    for w in seeds:
        label = f"{w} (reference)" if w == S.WORLD_SEED else str(w)
        dirs[label] = work / f"world_{w}"
        S.simulate_cohort(dirs[label], args.worlds_n, args.seed, world_seed=w, progress=False)
        rec = S.world_summary(dirs[label])
        props = S.world_properties(dirs[label]).set_index("gene")
        rows.append({"world": label, "depth (x)": f"{rec['depth_low']:.0f}-{rec['depth_high']:.0f}",
                     "GC strength": rec["gc_strength"], "blaSHV amp": rec["shv_amp_rate"],
                     "plasmid blaSHV": rec["plasmid_shv_rate"], "collapse": rec["kleborate_collapse_rate"],
                     "prevalence KPC / CTX-M / OXA-48-like": " / ".join(
                         f"{rec[f'prevalence:{f}']:.2f}" for f in ("blaKPC", "blaCTX-M", "blaOXA-48-like")),
                     "non-carriers > 0.20 (KPC-2 / CTX-M-15 / OXA-48)": " / ".join(
                         f"{props.loc[g, 'noncarrier_above']:.2f}" for g in ("blaKPC-2", "blaCTX-M-15", "blaOXA-48"))})
    for path in render_worlds_figure(dirs, args.worlds_figure):
        print(f"wrote {path}")
    table = (f"Six worlds, {args.worlds_n} samples each (seed {args.seed}), from "
             f"`python bench/simulate_speed.py --worlds-figure docs/img --worlds-n {args.worlds_n} --write-docs`: "
             f"drawn settings and what they do to a fixed 0.20 PCN threshold (measured from the stores).\n\n"
             + _md_table(pd.DataFrame(rows)))
    print("\n" + table)
    if args.write_docs:
        write_doc_block(DOC, "worlds", table)
        write_doc_block(DOC, "ranges", _ranges_table())


def _ranges_table() -> str:
    """The ranges of drawn worlds, from cnvrock_lib.simulate.strengths (never retyped)."""
    from cnvrock_lib.simulate import strengths as W

    lines = ["| strength | low | high | drawn |", "|---|---|---|---|"]
    for key, (lo, hi, kind) in W.RANGES.items():
        lines.append(f"| `{key}` | {lo:g} | {hi:g} | {'log-uniform' if kind == 'log' else 'uniform'} |")
    for ptype, (lo, hi) in W.PCN_LOW.items():
        lines.append(f"| carrier PCN low end, {ptype} (`PCN_LOW`) | {lo:g} | {hi:g} | log-uniform |")
    lines.append(f"| carrier PCN high / low (`PCN_RATIO`) | {W.PCN_RATIO[0]:g} | {W.PCN_RATIO[1]:g} | log-uniform |")
    lines.append(f"| library mix PCR / Nextera / PCR-free | | | Dirichlet({W.LIBRARY_MIX_ALPHA:g}, "
                 f"{W.LIBRARY_MIX_ALPHA:g}, {W.LIBRARY_MIX_ALPHA:g}) |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--hard", action="store_true")
    ap.add_argument("--world-seed", type=int, default=S.WORLD_SEED)
    ap.add_argument("--worlds-figure", default=None, help="folder for sim_worlds_pcn.png")
    ap.add_argument("--worlds-n", type=int, default=1000, help="samples per world of the worlds figure")
    ap.add_argument("--workdir", default="/tmp/cnvrock_bench_sim")
    ap.add_argument("--repeat-check", type=int, default=200, help="samples for the determinism check (0: skip)")
    ap.add_argument("--properties", action="store_true")
    ap.add_argument("--figures", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the simulated cohort")
    ap.add_argument("--write-docs", action="store_true", help="write the tables into docs/simulation.md")
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; numpy {np.__version__}")

    t0 = time.perf_counter()
    world = S.build_world(args.world_seed)
    t_world = time.perf_counter() - t0
    cfg = S.SimConfig.make(hard=args.hard, world=world.strengths.cohort)
    t0 = time.perf_counter()
    cohort = S.draw_cohort(world, args.n_samples, args.seed, cfg)
    t_draw = time.perf_counter() - t0
    t0 = time.perf_counter()
    S.simulate_counts(world, cohort, args.seed, cfg)
    t_counts = time.perf_counter() - t0
    del cohort

    target = work / "cohort"
    t0 = time.perf_counter()
    S.simulate_cohort(target, args.n_samples, args.seed, hard=args.hard, world_seed=args.world_seed, progress=False)
    t_total = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 1e6
    load = os.getloadavg()[0]
    speed = "\n".join([
        f"Measured by `python bench/simulate_speed.py --n-samples {args.n_samples} --seed {args.seed}"
        f"{'' if args.world_seed == S.WORLD_SEED else f' --world-seed {args.world_seed}'}` "
        f"({platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, load average {load:.2f} at the "
        f"end of the timed run): {args.n_samples} samples x 5,334 + 2,031 bins.", "",
        "| step | seconds |", "|---|---|",
        f"| build the world (cached per process) | {t_world:.2f} |",
        f"| per-sample draws (draw_cohort) | {t_draw:.2f} |",
        f"| read counts (simulate_counts) | {t_counts:.2f} |",
        f"| simulate_cohort end to end (world cached; all files written) | {t_total:.2f} |", "",
        f"{args.n_samples / t_total:.0f} samples/s end to end; {size:.0f} MB written."])
    print("\n" + speed)

    if args.repeat_check:
        a, b, c = (work / f"repeat_{k}" for k in "abc")
        S.simulate_cohort(a, args.repeat_check, args.seed, hard=args.hard, progress=False)
        S.simulate_cohort(b, args.repeat_check, args.seed, hard=args.hard, progress=False)
        S.simulate_cohort(c, args.repeat_check, args.seed + 1, hard=args.hard, progress=False)
        determinism = (f"Determinism ({args.repeat_check} samples): same seed identical files: "
                       f"{_same_files(a, b)}; seed {args.seed + 1} identical to seed {args.seed}: {_same_files(a, c)}.")
        print("\n" + determinism)
        speed += "\n" + determinism

    if args.properties:
        t0 = time.perf_counter()
        props = S.measure_properties(target)
        print(f"\nmeasured back from the {args.n_samples}-sample cohort ({time.perf_counter() - t0:.1f} s); "
              f"{int(props['ok'].sum())}/{len(props)} within tolerance\n")
        props = props.assign(range=[f"{lo:g} to {hi:g}" for lo, hi in zip(props["low"], props["high"])])
        table = (f"Measured back from the {args.n_samples}-sample cohort (seed {args.seed}): "
                 f"{int(props['ok'].sum())}/{len(props)} within tolerance.\n\n"
                 + _md_table(props[["property", "claim", "range", "measured", "ok"]]))
        print(table)
        if args.write_docs:
            write_doc_block(DOC, "properties", table)
    if args.write_docs:
        write_doc_block(DOC, "speed", speed)

    if args.figures:
        from cnvrock_lib.plots.simulation import render_doc_figures

        for path in render_doc_figures(target, args.figures):
            print(f"wrote {path}")
    if args.worlds_figure:
        _worlds_figure(args, work)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
