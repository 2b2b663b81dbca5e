"""The ``cnvrock`` command: a thin layer over the library.

Exit codes: 0 success, 1 unexpected error, 2 bad params or input (or an output
location that cannot be written), 3 a stage failed, 4 out_dir locked by another
run, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). See docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .errors import CnvrockError, Terminated


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

    world = {} if args.world_seed is None else {"world_seed": args.world_seed}
    paths = simulate_cohort(Path(args.out), n_samples=args.n_samples, seed=args.seed, hard=args.hard, **world)
    print(f"simulated {args.n_samples} samples into {args.out}; params: {paths.get('params')}")
    return 0


def _cmd_convert_store(args) -> int:
    from .store import convert_store

    print(f"converted store written to {convert_store(args.src, args.dst, trust_pickle=args.trust_pickle)}")
    return 0


def _cmd_index(args) -> int:
    from .index import build_index

    print(build_index(args.reports))
    return 0


def _cmd_build_store(args) -> int:
    """``build-store``, ``count-sample`` and ``gather``: real data in (see docs/ingest.md)."""
    from . import ingest
    from .errors import InputError

    min_mapq = args.min_mapq if args.min_mapq is not None else ingest.default_min_mapq(args.bins)
    contigs = [c for c in args.contigs.split(",") if c] if args.contigs else None
    settings = ingest.CountSettings(method=args.method, bins=ingest.resolve_bins(args.bins, contigs),
                                    min_mapq=min_mapq, reference_fasta=args.reference_fasta,
                                    read_length=args.read_length)
    if args.command == "count-sample":
        if args.input:
            if not args.sample_id:
                raise InputError("count-sample --input needs --sample-id")
            sample_id, path = args.sample_id, args.input
        elif args.manifest:
            samples = ingest.read_manifest(args.manifest)
            if args.index is not None:
                if not 0 <= args.index < len(samples):
                    raise InputError(f"count-sample: --index {args.index} is outside the manifest "
                                     f"{args.manifest} (rows 0..{len(samples) - 1})")
                row = samples.iloc[args.index]
            elif args.sample_id:
                hit = samples[samples["sample_id"] == args.sample_id]
                if hit.empty:
                    raise InputError(f"count-sample: sample {args.sample_id!r} is not in {args.manifest}")
                row = hit.iloc[0]
            else:
                raise InputError("count-sample --manifest needs --index (0-based row) or --sample-id")
            sample_id, path = row["sample_id"], row["path"]
        else:
            raise InputError("count-sample needs --input PATH --sample-id ID, or --manifest with --index/--sample-id")
        out = ingest.count_sample(path, sample_id, args.counts_dir, settings, on_error=args.on_error,
                                  force=args.force)
        print(f"sample {sample_id}: " + (f"counts in {out}" if out else "failed; reason recorded in "
                                         f"{args.counts_dir} (skipped by gather --on-error skip)"))
        return 0
    if args.command == "gather" and args.list_missing:
        print(",".join(map(str, ingest.missing_samples(args.manifest, args.counts_dir, settings))))
        return 0
    if args.command == "gather":
        if not args.out:
            raise InputError("gather needs --out (the store directory to create), or --list-missing")
        result = ingest.gather(args.manifest, args.counts_dir, args.out, settings, on_error=args.on_error,
                               overwrite=args.overwrite)
    else:
        result = ingest.build_store(args.manifest, args.out, settings, on_error=args.on_error,
                                    workers=args.workers, overwrite=args.overwrite,
                                    tool_versions=ingest.parse_tool_versions(args.tool_version))
    print(f"store {result.path}: {result.n_samples} samples x {result.n_bins} bins "
          f"({settings.method}, unit {settings.unit}, {result.seconds:.1f} s)")
    for s in result.skipped:
        print(f"  skipped {s['sample_id']} ({s['path']}): {s['reason']}")
    return 0


def _cmd_export(args) -> int:
    """``export``: VCF/SEG/BED/IGV/MultiQC files of a finished tier (docs/exports.md)."""
    from .export import export

    samples = [s for s in args.samples.split(",") if s] if args.samples else None
    for fmt, paths in export(args.out_dir, args.format, samples).items():
        print(f"{fmt}: {len(paths)} file(s) in {paths[0].parent}" if paths else f"{fmt}: nothing written")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnvrock", description="CNVRock: dosage of AMR genes in Klebsiella pneumoniae from short-read depth.",
        epilog="Exit codes: 0 ok, 1 unexpected error, 2 bad params, input or unwritable output, 3 stage failed, "
               "4 out_dir locked, 130 interrupted, 143 terminated (SIGTERM).")
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
    p.add_argument("--world-seed", type=int, default=None,
                   help="world (default: the reference world, 11286); any other draws its confounder "
                        "strengths from wide ranges (docs/simulation.md)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("convert-store", help="copy an original (object-dtype) store into a pickle-free one")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--trust-pickle", action="store_true",
                   help="confirm that you trust SRC: its object arrays are read (strings, numbers, numpy "
                        "arrays only; anything else is refused)")
    p.set_defaults(func=_cmd_convert_store)

    p = sub.add_parser("index", help="rebuild reports/index.html")
    p.add_argument("reports", nargs="?", default="reports")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("export", help="write VCF/SEG/BED/IGV/MultiQC files of a finished tier into OUT_DIR/export")
    p.add_argument("out_dir", help="the tier's out_dir (after stages 02 and 03)")
    p.add_argument("--format", required=True, action="extend", nargs="+", metavar="FORMAT",
                   help="one or more of vcf, seg, bed, igv, multiqc")
    p.add_argument("--samples", help="comma-separated sample_ids (default: all)")
    p.set_defaults(func=_cmd_export)

    for verb, text in (("build-store", "count samples (GATK TSV, BAM/CRAM, mosdepth) into a new NPY store"),
                       ("count-sample", "count one sample into a per-sample file (one cluster job)"),
                       ("gather", "assemble a store from per-sample files of count-sample")):
        p = sub.add_parser(verb, help=text, description=text + "; see docs/ingest.md.")
        p.add_argument("--method", required=True, choices=["gatk-tsv", "bam", "mosdepth"],
                       help="input kind: CollectReadCounts TSV, BAM/CRAM (counted here), mosdepth regions")
        p.add_argument("--bins", required=True, help="chromosome | plasmid | reference | FASTA/.fai/'contig length' TSV")
        p.add_argument("--contigs", help="comma-separated contigs to keep from --bins, in order")
        p.add_argument("--min-mapq", type=int, help="MAPQ threshold (applied for bam, recorded otherwise); "
                       "default 20 for --bins chromosome, 0 for plasmid")
        p.add_argument("--reference-fasta", help="FASTA to decode CRAM files")
        p.add_argument("--read-length", type=float, help="mosdepth: convert mean depth to read starts (bp)")
        p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                       help="a bad sample is fatal (default) or skipped and listed in store.json")
        if verb != "count-sample":
            p.add_argument("--manifest", required=True, help="TSV with columns sample_id, path")
            p.add_argument("--out", required=verb == "build-store", help="store directory to create")
            p.add_argument("--overwrite", action="store_true", help="replace an existing store")
        if verb == "build-store":
            p.add_argument("--workers", type=int, help="parallel workers (default: usable CPUs)")
            p.add_argument("--tool-version", action="append", default=[], metavar="NAME=VERSION",
                           help="record a tool version in store.json, e.g. gatk=4.5.0.0 (repeatable)")
        else:
            p.add_argument("--counts-dir", required=True, help="directory of per-sample counts files")
        if verb == "count-sample":
            p.add_argument("--manifest", help="TSV with columns sample_id, path")
            p.add_argument("--index", type=int, help="0-based manifest row, e.g. $SLURM_ARRAY_TASK_ID")
            p.add_argument("--sample-id", help="sample to count (with --input, or looked up in --manifest)")
            p.add_argument("--input", help="the sample's file (instead of --manifest)")
            p.add_argument("--force", action="store_true", help="recount even if an up-to-date file exists")
        if verb == "gather":
            p.add_argument("--list-missing", action="store_true",
                           help="print the 0-based manifest rows without an up-to-date counts file and exit")
        p.set_defaults(func=_cmd_build_store)
    return parser


def _raise_terminated(signum, frame):
    raise Terminated("terminated by SIGTERM (Slurm pre-emption, time limit or kill); files written so far "
                     "are complete; rerun the same command to continue")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: temporary files removed, locks released, a one-line message
        old_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return args.func(args)
    except CnvrockError as exc:
        print(f"cnvrock {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"cnvrock {args.command}: error: interrupted (Ctrl-C); files written so far are complete; "
              f"rerun the same command to continue", file=sys.stderr)
        return 130
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)


if __name__ == "__main__":
    sys.exit(main())
