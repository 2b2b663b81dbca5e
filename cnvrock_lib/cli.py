"""The ``cnvrock`` command: a thin layer over the library.

Exit codes: 0 success, 1 unexpected error, 2 bad params or input, 3 a stage
failed, 4 out_dir locked by another run, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CnvrockError


def _cmd_run(args) -> int:
    from .run import run_tier

    stages = [s.strip().zfill(2) for s in args.stages.split(",")] if args.stages else None
    outcomes = run_tier(args.params, stages=stages, force=args.force, show_code=args.show_code)
    for o in outcomes:
        print(f"stage {o.stage}: {o.status}" + (f" ({o.seconds:.1f} s)" if o.status == "ran" else "")
              + (f"  {o.html}" if o.html else ""))
    return 0


def _cmd_simulate(args) -> int:
    from .simulate import simulate_cohort

    paths = simulate_cohort(Path(args.out), n_samples=args.n_samples, seed=args.seed, hard=args.hard)
    print(f"simulated {args.n_samples} samples into {args.out}; params: {paths.get('params')}")
    return 0


def _cmd_convert_store(args) -> int:
    from .store import convert_store

    print(f"converted store written to {convert_store(args.src, args.dst)}")
    return 0


def _cmd_index(args) -> int:
    from .index import build_index

    print(build_index(args.reports))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnvrock", description="CNVRock: dosage of AMR genes in Klebsiella pneumoniae from short-read depth.",
        epilog="Exit codes: 0 ok, 1 unexpected error, 2 bad params or input, 3 stage failed, 4 out_dir locked.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a tier's notebooks (01 train, 02 segment, 03 call, 04 evaluate)")
    p.add_argument("params", help="tier params YAML, e.g. params/demo.yaml")
    p.add_argument("--stages", help="comma-separated stages to run, e.g. 01,02 (default: all)")
    p.add_argument("--force", action="store_true", help="re-run stages that are up to date")
    p.add_argument("--show-code", action="store_true", help="keep code cells in the HTML reports")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("simulate", help="write a simulated KpSC cohort (stores, GT, truth, params.yaml)")
    p.add_argument("--out", required=True, help="directory to create")
    p.add_argument("--n-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--hard", action="store_true", help="harder cohort: low depth, strong GC bias, subclonal CNVs")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("convert-store", help="copy an original (object-dtype) store into a pickle-free one")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=_cmd_convert_store)

    p = sub.add_parser("index", help="rebuild reports/index.html")
    p.add_argument("reports", nargs="?", default="reports")
    p.set_defaults(func=_cmd_index)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CnvrockError as exc:
        print(f"cnvrock {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cnvrock {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
