"""Store-building throughput: a chromosome store from N GATK CollectReadCounts TSV files.

Usage: python bench/store_build.py [--n-samples 5000] [--workdir /tmp/cnvrock_bench_store]
                                   [--workers 1,2] [--repeats 1] [--json out.json]
       python bench/store_build.py --bam SAMPLE.bam --bins REF.fa [--min-mapq 20]   (BAM counting speed)

The counts come from the simulator (cnvrock_lib.simulate, the chromosome store of a
simulated cohort, 5,334 bins, 40-200x), each sample written as a CollectReadCounts TSV
(@HD/@SQ/@RG header, CONTIG START END COUNT). Timed, on warm page cache (the files were
just written; the benchmark does not drop caches on a shared machine):

- naive: one ``pandas.read_csv(path, sep="\\t", comment="@")`` per file, ``COUNT`` column
  stacked and saved with ``np.save`` (no check of the intervals);
- ``ingest.build_store`` with each worker count (thread pool, the default for text inputs;
  and a process pool), which checks every file's intervals against the bins and writes
  the store atomically with provenance.

The stores are compared (identical counts) before the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnvrock_lib import ingest, store


def prepare(workdir: Path, n_samples: int, seed: int) -> tuple[Path, np.ndarray]:
    """Simulate (once) and write one TSV per sample; returns the manifest and the counts."""
    from cnvrock_lib.simulate import simulate_cohort

    sim = workdir / f"sim_{n_samples}_{seed}"
    if not (sim / "chrom_store" / "counts.npy").is_file():
        t = time.perf_counter()
        simulate_cohort(sim, n_samples=n_samples, seed=seed, progress=False)
        print(f"simulated {n_samples} samples in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    chrom = store.open_store(sim / "chrom_store")
    manifest = workdir / f"manifest_{n_samples}_{seed}.tsv"
    tsv_dir = workdir / f"tsv_{n_samples}_{seed}"
    if not manifest.is_file():
        t = time.perf_counter()
        tsv_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for sid, row in zip(chrom.sample_ids, chrom.counts):
            paths.append(ingest.write_gatk_tsv(tsv_dir / f"{sid}.counts.tsv", row, chrom.bins, sample_name=sid))
        pd.DataFrame({"sample_id": chrom.sample_ids, "path": [str(p) for p in paths]}).to_csv(
            manifest, sep="\t", index=False)
        print(f"wrote {n_samples} TSVs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return manifest, np.asarray(chrom.counts)


def naive(manifest: Path, out: Path) -> float:
    """What a first script does: one pandas read per file, stack, save."""
    t = time.perf_counter()
    samples = pd.read_csv(manifest, sep="\t")
    rows = [pd.read_csv(p, sep="\t", comment="@")["COUNT"].to_numpy() for p in samples["path"]]
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "counts.npy", np.vstack(rows).astype(np.uint32))
    return time.perf_counter() - t


def bam_speed(bam: str, bins_spec: str, min_mapq: int, repeats: int) -> None:
    """Reads per second of ``ingest.count_bam`` on one BAM, beside ``samtools view -c`` with the same filters."""
    import subprocess

    bins = ingest.resolve_bins(bins_spec)
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        counted = int(ingest.count_bam(bam, bins, min_mapq).sum())
        times.append(time.perf_counter() - t)
    line = f"count_bam {bam}: {counted} reads counted (MQ >= {min_mapq}) in {min(times):.3f} s (best of {len(times)})"
    if shutil.which("samtools"):
        cmd = ["samtools", "view", "-c", "-F", "0xF04", "-q", str(min_mapq), bam]
        t = time.perf_counter()
        same = int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        line += f"; samtools view -c: {same} reads in {time.perf_counter() - t:.3f} s"
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bam", help="time count_bam on this BAM instead of the TSV benchmark")
    ap.add_argument("--bins", help="with --bam: bins spec (FASTA, .fai, chromosome, plasmid)")
    ap.add_argument("--min-mapq", type=int, default=20)
    ap.add_argument("--n-samples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", default="/tmp/cnvrock_bench_store")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts for build_store")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per variant (the best is reported)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--clean", action="store_true", help="delete the TSVs and simulated data afterwards")
    args = ap.parse_args()
    if args.bam:
        bam_speed(args.bam, args.bins or "chromosome", args.min_mapq, args.repeats)
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest, truth = prepare(workdir, args.n_samples, args.seed)
    bins = ingest.resolve_bins("chromosome")
    settings = ingest.CountSettings("gatk-tsv", bins, min_mapq=20)
    workers = [int(w) for w in args.workers.split(",")]
    variants = [("naive pandas loop", None, None)]
    for w in workers:
        variants += [(f"build_store thread x{w}" if w > 1 else "build_store in-process", w, "thread")] + \
            ([(f"build_store process x{w}", w, "process")] if w > 1 else [])
    results = []
    for name, n_workers, executor in variants:
        times = []
        for _ in range(args.repeats):
            out = workdir / "out_store"
            shutil.rmtree(out, ignore_errors=True)
            if n_workers is None:
                times.append(naive(manifest, out))
                got = np.load(out / "counts.npy", mmap_mode="r")
            else:
                t = time.perf_counter()
                ingest.build_store(manifest, out, settings, workers=n_workers, executor=executor, progress=False)
                times.append(time.perf_counter() - t)
                got = store.open_store(out).counts
            assert np.array_equal(got, truth), f"{name}: counts differ from the simulated store"
        best = min(times)
        results.append({"variant": name, "seconds": round(best, 2),
                        "samples_per_s": round(args.n_samples / best, 1)})
    shutil.rmtree(workdir / "out_store", ignore_errors=True)
    base = results[0]["seconds"]
    info = {"n_samples": args.n_samples, "n_bins": int(bins.shape[0]), "cpus": ingest.default_workers(),
            "python": platform.python_version(), "load_average_1min": round(os.getloadavg()[0], 2)}
    print(f"{args.n_samples} CollectReadCounts TSVs x {bins.shape[0]} bins; {info['cpus']} CPUs; "
          f"load average {info['load_average_1min']}; best of {args.repeats}")
    print(f"{'variant':28s} {'seconds':>8s} {'samples/s':>10s} {'speed-up':>9s}")
    for r in results:
        r["speedup_vs_naive"] = round(base / r["seconds"], 2)
        print(f"{r['variant']:28s} {r['seconds']:8.2f} {r['samples_per_s']:10.1f} {r['speedup_vs_naive']:8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=2) + "\n")
    if args.clean:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
