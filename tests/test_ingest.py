"""Store builders: GATK TSV, BAM (pysam), mosdepth; build_store, count_sample + gather, CLI."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import cli, ingest, reference, store
from cnvrock_lib.errors import InputError, StoreError

LENGTHS = {"chrA": 5500, "plasB": 2300}


@pytest.fixture()
def bins():
    return reference.make_bins(LENGTHS)


def _counts(n_samples, n_bins, seed=0):
    return np.random.default_rng(seed).poisson(300, (n_samples, n_bins)).astype(np.int64)


def _manifest(tmp_path, rows, name="manifest.tsv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=["sample_id", "path"]).to_csv(path, sep="\t", index=False)
    return path


def _tsv_cohort(tmp_path, bins, n=4, seed=0):
    counts = _counts(n, bins.shape[0], seed)
    rows = []
    for i in range(n):
        ingest.write_gatk_tsv(tmp_path / "tsv" / f"S{i}.tsv", counts[i], bins, sample_name=f"S{i}")
        rows.append((f"S{i}", f"tsv/S{i}.tsv"))
    return counts, _manifest(tmp_path, rows)


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- bins and manifest

def test_resolve_bins_presets_files_and_subsets(tmp_path):
    assert ingest.resolve_bins("chromosome").shape[0] == 5334
    assert ingest.resolve_bins("plasmid").shape[0] == 2031
    assert ingest.resolve_bins("reference").shape[0] == 5334 + 2031
    fasta = tmp_path / "ref.fa"
    fasta.write_text(">c1 desc\n" + "ACGT" * 500 + "\nAC\n>c2\n" + "A" * 999 + "\n")
    b = ingest.resolve_bins(fasta)
    assert b["chrom"].tolist() == ["c1", "c1", "c1", "c2"] and b["end"].tolist() == [1000, 2000, 2002, 999]
    fai = tmp_path / "ref.fa.fai"
    fai.write_text("c1\t2002\t4\t60\t61\nc2\t999\t2100\t60\t61\n")
    np.testing.assert_array_equal(ingest.resolve_bins(fai, contigs=["c2", "c1"])["chrom"], ["c2", "c1", "c1", "c1"])
    with pytest.raises(InputError, match=r"contig\(s\) \['c9'\] are not in"):
        ingest.resolve_bins(fai, contigs=["c9"])
    with pytest.raises(InputError, match="neither a preset"):
        ingest.resolve_bins(tmp_path / "nope.fai")


def test_manifest_resolves_relative_paths_and_rejects_duplicates(tmp_path):
    (tmp_path / "sub").mkdir()
    path = _manifest(tmp_path / "sub", [("A", "a.tsv"), ("B", "/abs/b.tsv")])
    frame = ingest.read_manifest(path)
    assert frame["path"].tolist() == [str(tmp_path / "sub" / "a.tsv"), "/abs/b.tsv"]
    dup = _manifest(tmp_path, [("A", "a"), ("B", "b"), ("A", "c")], "dup.tsv")
    with pytest.raises(InputError, match=r"sample_id 'A' appears more than once \(rows \[2, 4\]\)"):
        ingest.read_manifest(dup)
    bad = tmp_path / "bad.tsv"
    bad.write_text("accession\tfile\nA\ta\n")
    with pytest.raises(InputError, match=r"lacks column\(s\) \['sample_id', 'path'\]"):
        ingest.read_manifest(bad)


def test_settings_are_validated(bins):
    with pytest.raises(InputError, match="unknown counting method 'gatk'"):
        ingest.CountSettings("gatk", bins)
    with pytest.raises(InputError, match="needs min_mapq"):
        ingest.CountSettings("bam", bins)
    with pytest.raises(InputError, match="only with method mosdepth"):
        ingest.CountSettings("bam", bins, min_mapq=20, read_length=150)
    odd = bins.copy()
    odd["start"][1] += 10
    with pytest.raises(InputError, match="not a regular 1000 bp grid"):
        ingest.CountSettings("gatk-tsv", odd)


# --------------------------------------------------------------------------- GATK TSV

def test_gatk_tsv_round_trip_ignores_other_contigs(tmp_path, bins):
    counts = _counts(1, bins.shape[0])[0]
    counts[0], counts[1], counts[-1] = 0, 4294967295, 7
    full = reference.make_bins({**LENGTHS, "other": 3000})
    row = np.concatenate([counts, [5, 6, 7]])
    path = ingest.write_gatk_tsv(tmp_path / "s.tsv", row, full)
    text = path.read_text()
    assert text.startswith("@HD\tVN:1.6\n@SQ\tSN:chrA\tLN:5500\n") and "CONTIG\tSTART\tEND\tCOUNT\nchrA\t1\t1000\t0\n" in text
    got = ingest.read_gatk_tsv(path, bins)
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, counts)
    # the plasmid contig alone, and gzip / CRLF variants of the same file
    np.testing.assert_array_equal(ingest.read_gatk_tsv(path, bins[bins["chrom"] == "plasB"]), counts[-3:])
    (tmp_path / "s.tsv.gz").write_bytes(gzip.compress(text.replace("\n", "\r\n").encode()))
    np.testing.assert_array_equal(ingest.read_gatk_tsv(tmp_path / "s.tsv.gz", bins), counts)


def test_gatk_tsv_fast_path_matches_full_parse_and_checks_every_row(tmp_path, bins):
    """Later files of a known layout take the vectorised path; it must equal the full parse."""
    rng = np.random.default_rng(3)
    first = ingest.write_gatk_tsv(tmp_path / "first.tsv", np.ones(bins.shape[0], int), bins)
    ingest.read_gatk_tsv(first, bins)
    for k in range(20):
        widths = rng.integers(0, 10, bins.shape[0])
        counts = np.minimum(rng.integers(0, 10, bins.shape[0]) * 10 ** widths, 4294967295)
        path = ingest.write_gatk_tsv(tmp_path / f"s{k}.tsv", counts, bins)
        body, _ = ingest._split_tsv(path.read_bytes())
        layout = ingest._LAYOUTS.entries[0]
        fast = ingest._parse_tsv_fast(body, layout)
        assert fast is not None
        np.testing.assert_array_equal(fast, ingest._parse_tsv_slow(body, 1)[3])
        np.testing.assert_array_equal(ingest.read_gatk_tsv(path, bins), counts)
    # a same-length change in the middle of a row's interval text is caught, not only first/last rows
    text = first.read_text().replace("chrA\t3001\t4000\t", "chrA\t3001\t4001\t")
    (tmp_path / "mid.tsv").write_text(text)
    with pytest.raises(InputError, match=r"contig chrA interval 4 is 3001-4001, expected 3001-4000"):
        ingest.read_gatk_tsv(tmp_path / "mid.tsv", bins)


@pytest.mark.parametrize("bad_count, message", [
    ("12.5", r"line 7 is 'chrA\\t1001\\t2000\\t12.5'"),
    ("-3", r"line 7 is 'chrA\\t1001\\t2000\\t-3'"),
    ("NA", r"line 7 .*COUNT a non-negative integer"),
    ("", r"line 7 .*COUNT a non-negative integer"),
    ("99999999999", r"line 7: COUNT 99999999999 does not fit uint32"),
    ("4294967296", r"line 7: COUNT 4294967296 does not fit uint32"),
])
def test_gatk_tsv_bad_count_names_file_and_line(tmp_path, bins, bad_count, message):
    path = ingest.write_gatk_tsv(tmp_path / "s.tsv", np.ones(bins.shape[0], int), bins)
    lines = path.read_text().split("\n")
    assert lines[6] == "chrA\t1001\t2000\t1"  # 4 header lines + column line, then data (1-based line 7)
    lines[6] = "chrA\t1001\t2000\t" + bad_count
    path.write_text("\n".join(lines))
    with pytest.raises(InputError, match=f"CollectReadCounts TSV {path}: {message}"):
        ingest.read_gatk_tsv(path, bins)


def test_gatk_tsv_layout_mismatches_are_named(tmp_path, bins):
    ones = np.ones(bins.shape[0], int)
    good = ingest.write_gatk_tsv(tmp_path / "good.tsv", ones, bins)
    ingest.read_gatk_tsv(good, bins)  # caches this layout
    shifted = bins.copy()
    shifted["start"][2] -= 1
    cases = {
        "shifted": (ingest.write_gatk_tsv(tmp_path / "shift.tsv", ones, shifted),
                    r"contig chrA interval 3 is 2000-3000, expected 2001-3000"),
        "missing contig": (ingest.write_gatk_tsv(tmp_path / "nocontig.tsv", ones[:6], bins[:6]),
                           r"contig plasB is absent \(the file has chrA\)"),
        "other bin size": (ingest.write_gatk_tsv(tmp_path / "bin500.tsv", np.ones(16, int),
                                                 reference.make_bins(LENGTHS, 500)),
                           r"contig chrA has 11 intervals, expected 6"),
    }
    for name, (path, message) in cases.items():
        with pytest.raises(InputError, match=message):
            ingest.read_gatk_tsv(path, bins)
    no_header = tmp_path / "noheader.tsv"
    no_header.write_text("chrA\t1\t1000\t5\n")
    with pytest.raises(InputError, match="no 'CONTIG<TAB>START<TAB>END<TAB>COUNT' header line"):
        ingest.read_gatk_tsv(no_header, bins)
    three = tmp_path / "three.tsv"
    three.write_text(good.read_text().replace("chrA\t1\t1000\t1", "chrA\t1\t1"))
    with pytest.raises(InputError, match=r"line 6 has 3 fields \('chrA\\t1\\t1'\); expected 4"):
        ingest.read_gatk_tsv(three, bins)


# --------------------------------------------------------------------------- mosdepth

def _write_mosdepth(path, bins, depth):
    frame = pd.DataFrame({"c": bins["chrom"], "s": bins["start"] - 1, "e": bins["end"],
                          "d": np.round(depth, 2)})
    path.write_bytes(gzip.compress(frame.to_csv(sep="\t", header=False, index=False).encode()))
    return path


def test_mosdepth_regions_mean_depth_and_read_start_conversion(tmp_path, bins):
    depth = np.linspace(10, 60, bins.shape[0])
    path = _write_mosdepth(tmp_path / "s.regions.bed.gz", bins, depth)
    got = ingest.read_mosdepth_regions(path, bins)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.round(depth, 2), rtol=1e-6)
    starts = ingest.read_mosdepth_regions(path, bins, read_length=150)
    lengths = bins["end"] - bins["start"] + 1
    np.testing.assert_allclose(starts, np.round(depth, 2) * lengths / 150, rtol=1e-5)
    assert ingest.CountSettings("mosdepth", bins, read_length=150).unit == "approx_read_starts_from_depth"
    one_based = _write_mosdepth(tmp_path / "wrong.bed.gz", bins, depth)
    frame = pd.read_csv(one_based, sep="\t", header=None)
    frame[1] += 1  # 1-based starts: not what mosdepth writes
    frame.to_csv(one_based, sep="\t", header=False, index=False)
    with pytest.raises(InputError, match=r"mosdepth regions file .*wrong.bed.gz: contig chrA interval 1 is 2-1000"):
        ingest.read_mosdepth_regions(one_based, bins)
    neg = _write_mosdepth(tmp_path / "neg.bed.gz", bins, np.where(np.arange(bins.shape[0]) == 3, -1.0, depth))
    with pytest.raises(InputError, match=r"bin chrA:3001-4000 has depth -1.0"):
        ingest.read_mosdepth_regions(neg, bins)


# --------------------------------------------------------------------------- BAM via pysam

def _write_bam(path, reads, lengths=LENGTHS, index=True):
    """reads: (contig, pos0, flag, mapq); 50 bp reads."""
    pysam = pytest.importorskip("pysam")
    header = {"HD": {"VN": "1.6", "SO": "unsorted"},
              "SQ": [{"SN": c, "LN": n} for c, n in lengths.items()],
              "PG": [{"ID": "bwa", "PN": "bwa", "VN": "0.7.17-test"}]}
    unsorted = str(path) + ".unsorted.bam"
    with pysam.AlignmentFile(unsorted, "wb", header=header) as out:
        for i, (contig, pos, flag, mapq) in enumerate(reads):
            r = pysam.AlignedSegment(out.header)
            r.query_name, r.flag, r.mapping_quality = f"r{i}", flag, mapq
            r.reference_name, r.reference_start = contig, pos
            r.cigarstring, r.query_sequence = "50M", "A" * 50
            r.query_qualities = pysam.qualitystring_to_array("I" * 50)
            out.write(r)
    pysam.sort("-o", str(path), unsorted)
    os.unlink(unsorted)
    if index:
        pysam.index(str(path))
    return path


BAM_READS = [
    ("chrA", 0, 0, 60), ("chrA", 999, 0, 60),       # both in bin 1 (pos 1 and 1000, 1-based)
    ("chrA", 1000, 0, 60),                           # bin 2
    ("chrA", 1500, 0x4, 60),                         # unmapped (placed): skipped
    ("chrA", 1500, 0x100, 60), ("chrA", 1500, 0x800, 60),  # secondary, supplementary
    ("chrA", 1500, 0x400, 60), ("chrA", 1500, 0x200, 60),  # duplicate, QC-fail
    ("chrA", 1500, 0x1 | 0x2 | 0x40, 19),            # MQ 19: counted only at threshold <= 19
    ("chrA", 1500, 0x1 | 0x2 | 0x80 | 0x10, 20),     # a reverse mate at MQ 20: counted
    ("chrA", 5460, 0, 0),                            # last, partial bin (5001-5500), MQ 0
    ("plasB", 2299 - 49, 0, 60),                     # last bin of the plasmid
    ("other", 10, 0, 60),                            # contig outside the bins
]


@pytest.mark.parametrize("index", [True, False])
def test_bam_read_starts_filters_and_bins(tmp_path, bins, index):
    path = _write_bam(tmp_path / "s.bam", BAM_READS, {**LENGTHS, "other": 500}, index=index)
    at20 = ingest.count_bam(path, bins, min_mapq=20)
    assert at20.dtype == np.uint32
    assert at20.tolist() == [2, 2, 0, 0, 0, 0, 0, 0, 1]
    at0 = ingest.count_bam(path, bins, min_mapq=0)
    assert at0.tolist() == [2, 3, 0, 0, 0, 1, 0, 0, 1]


def test_bam_header_must_match_the_bins(tmp_path, bins):
    wrong_len = _write_bam(tmp_path / "len.bam", BAM_READS[:2], {"chrA": 5400, "plasB": 2300})
    with pytest.raises(InputError, match=r"alignment file .*len.bam: contig chrA is 5400 bp in the header "
                                         r"but 5500 bp in the bins"):
        ingest.count_bam(wrong_len, bins, 20)
    no_contig = _write_bam(tmp_path / "noc.bam", BAM_READS[:2], {"chrA": 5500})
    with pytest.raises(InputError, match=r"contig plasB is not in the header \(header contigs: chrA\)"):
        ingest.count_bam(no_contig, bins, 20)
    junk = tmp_path / "junk.bam"
    junk.write_bytes(b"not a bam at all")
    with pytest.raises(InputError, match="junk.bam: cannot be opened as BAM/CRAM"):
        ingest.count_bam(junk, bins, 20)


# --------------------------------------------------------------------------- build_store

@pytest.mark.parametrize("workers, executor", [(1, "process"), (2, "process"), (2, "thread")])
def test_build_store_from_tsvs(tmp_path, bins, workers, executor):
    counts, manifest = _tsv_cohort(tmp_path, bins, n=5)
    result = ingest.build_store(manifest, tmp_path / "store", ingest.CountSettings("gatk-tsv", bins, min_mapq=20),
                                workers=workers, executor=executor, tool_versions={"gatk": "4.5.0.0"})
    s = store.open_store(result.path)
    assert s.counts.dtype == np.uint32 and s.sample_ids.tolist() == [f"S{i}" for i in range(5)]
    np.testing.assert_array_equal(s.counts, counts)
    np.testing.assert_array_equal(s.bins, bins)
    prov = s.provenance
    assert prov["method"] == "gatk-tsv" and prov["unit"] == "read_starts" and prov["min_mapq"] == 20
    assert prov["tool_versions"]["gatk"] == "4.5.0.0" and prov["skipped"] == [] and prov["n_samples"] == 5
    assert prov["reference_contigs"] == [{"contig": "chrA", "length": 5500, "n_bins": 6},
                                         {"contig": "plasB", "length": 2300, "n_bins": 3}]
    assert _leftovers(tmp_path) == []


def test_build_store_bad_file_fatal_leaves_nothing(tmp_path, bins):
    _, manifest = _tsv_cohort(tmp_path, bins, n=4)
    (tmp_path / "tsv" / "S2.tsv").write_text("@HD\tVN:1.6\nCONTIG\tSTART\tEND\tCOUNT\nchrA\t1\t1000\tx\n")
    settings = ingest.CountSettings("gatk-tsv", bins)
    for workers in (1, 2):
        with pytest.raises(InputError, match=r"sample S2 \(.*S2.tsv\): line 3 is 'chrA\\t1\\t1000\\tx'.*"
                                             r"nothing was written"):
            ingest.build_store(manifest, tmp_path / "store", settings, workers=workers)
        assert not (tmp_path / "store").exists() and _leftovers(tmp_path) == []


def test_build_store_skip_records_reasons_and_keeps_order(tmp_path, bins):
    counts, manifest = _tsv_cohort(tmp_path, bins, n=5)
    os.unlink(tmp_path / "tsv" / "S1.tsv")
    ingest.write_gatk_tsv(tmp_path / "tsv" / "S3.tsv", np.ones(6, int), bins[:6])  # plasmid rows missing
    result = ingest.build_store(manifest, tmp_path / "store", ingest.CountSettings("gatk-tsv", bins),
                                on_error="skip", workers=2)
    s = store.open_store(result.path)
    assert s.sample_ids.tolist() == ["S0", "S2", "S4"]
    np.testing.assert_array_equal(s.counts, counts[[0, 2, 4]])
    skipped = {d["sample_id"]: d["reason"] for d in s.provenance["skipped"]}
    assert skipped == {"S1": "file not found",
                       "S3": "contig plasB is absent (the file has chrA); counted against another reference?"}
    assert s.provenance["n_input_samples"] == 5 and s.provenance["on_error"] == "skip"
    # an existing store is not replaced unless asked
    with pytest.raises(StoreError, match="already exists"):
        ingest.build_store(manifest, tmp_path / "store", ingest.CountSettings("gatk-tsv", bins), on_error="skip")
    all_bad = _manifest(tmp_path, [("X", "nope1.tsv"), ("Y", "nope2.tsv")], "bad.tsv")
    with pytest.raises(StoreError, match=r"no sample could be counted; first failure: sample X .*file not found"):
        ingest.build_store(all_bad, tmp_path / "store2", ingest.CountSettings("gatk-tsv", bins), on_error="skip")
    assert not (tmp_path / "store2").exists() and _leftovers(tmp_path) == []


def test_build_store_from_bams_and_mosdepth(tmp_path, bins):
    bam_rows, md_rows = [], []
    for i in range(3):
        _write_bam(tmp_path / f"B{i}.bam", BAM_READS[: 3 + i])
        bam_rows.append((f"B{i}", f"B{i}.bam"))
        _write_mosdepth(tmp_path / f"M{i}.regions.bed.gz", bins, np.full(bins.shape[0], 10.0 + i))
        md_rows.append((f"M{i}", f"M{i}.regions.bed.gz"))
    res = ingest.build_store(_manifest(tmp_path, bam_rows, "bams.tsv"), tmp_path / "bam_store",
                             ingest.CountSettings("bam", bins, min_mapq=20), workers=2)
    s = store.open_store(res.path)
    assert s.counts[:, :2].tolist() == [[2, 1], [2, 1], [2, 1]]
    assert s.provenance["read_filters"]["skip_flags"] == "0xf04"
    assert s.provenance["aligner_programs_first_sample"][0] == {"ID": "bwa", "PN": "bwa", "VN": "0.7.17-test"}
    assert "pysam" in s.provenance["tool_versions"]
    res = ingest.build_store(_manifest(tmp_path, md_rows, "md.tsv"), tmp_path / "md_store",
                             ingest.CountSettings("mosdepth", bins, min_mapq=0), workers=1)
    s = store.open_store(res.path)
    assert s.counts.dtype == np.float32 and s.counts[:, 0].tolist() == [10.0, 11.0, 12.0]
    assert s.provenance["unit"] == "mean_depth" and "not read starts" in s.provenance["unit_note"]


# --------------------------------------------------------------------------- count_sample + gather

def test_count_sample_gather_and_rerun_counts_only_missing(tmp_path, bins):
    counts, manifest = _tsv_cohort(tmp_path, bins, n=4)
    settings = ingest.CountSettings("gatk-tsv", bins, min_mapq=20)
    cdir = tmp_path / "counts"
    for sid in ("S0", "S2"):
        ingest.count_sample(tmp_path / "tsv" / f"{sid}.tsv", sid, cdir, settings)
    assert ingest.missing_samples(manifest, cdir, settings) == [1, 3]
    with pytest.raises(InputError, match=r"2 of 4 samples have no usable counts file: sample S1 .*not counted"):
        ingest.gather(manifest, cdir, tmp_path / "store", settings)
    assert not (tmp_path / "store").exists()
    stamp = ingest.sample_file(cdir, "S0").stat().st_mtime_ns
    for i in ingest.missing_samples(manifest, cdir, settings) + [0]:
        ingest.count_sample(tmp_path / "tsv" / f"S{i}.tsv", f"S{i}", cdir, settings)
    assert ingest.sample_file(cdir, "S0").stat().st_mtime_ns == stamp  # up to date: not recounted
    assert ingest.missing_samples(manifest, cdir, settings) == []
    assert ingest.missing_samples(manifest, cdir, ingest.CountSettings("gatk-tsv", bins, min_mapq=0)) == [0, 1, 2, 3]
    res = ingest.gather(manifest, cdir, tmp_path / "store", settings)
    s = store.open_store(res.path)
    np.testing.assert_array_equal(s.counts, counts)
    assert s.provenance["gathered_from"] == str(cdir) and s.provenance["min_mapq"] == 20
    # a changed input is stale; settings that differ from the files are refused per sample
    ingest.write_gatk_tsv(tmp_path / "tsv" / "S3.tsv", counts[3] + 1, bins)
    os.utime(tmp_path / "tsv" / "S3.tsv", ns=(1, 1))
    assert ingest.missing_samples(manifest, cdir, settings) == [3]
    with pytest.raises(InputError, match=r"sample S0 .*made with other settings: min_mapq 20 \(expected 0\)"):
        ingest.gather(manifest, cdir, tmp_path / "s0", ingest.CountSettings("gatk-tsv", bins, min_mapq=0))


def test_count_sample_failure_is_recorded_and_skipped_by_gather(tmp_path, bins):
    counts, manifest = _tsv_cohort(tmp_path, bins, n=3)
    (tmp_path / "tsv" / "S1.tsv").write_text("garbage\n")
    settings = ingest.CountSettings("gatk-tsv", bins)
    cdir = tmp_path / "counts"
    with pytest.raises(InputError, match=r"sample S1 \(.*S1.tsv\): no 'CONTIG"):
        ingest.count_sample(tmp_path / "tsv" / "S1.tsv", "S1", cdir, settings)
    for i in range(3):
        ingest.count_sample(tmp_path / "tsv" / f"S{i}.tsv", f"S{i}", cdir, settings, on_error="skip")
    assert (cdir / "S1.failed.json").is_file() and not ingest.sample_file(cdir, "S1").exists()
    res = ingest.gather(manifest, cdir, tmp_path / "store", settings, on_error="skip")
    s = store.open_store(res.path)
    assert s.sample_ids.tolist() == ["S0", "S2"]
    np.testing.assert_array_equal(s.counts, counts[[0, 2]])
    assert s.provenance["skipped"][0]["reason"].startswith("counting failed: no 'CONTIG")


def test_sample_file_names_escape_odd_ids(tmp_path):
    assert ingest.sample_file(tmp_path, "ERR123").name == "ERR123.counts.npz"
    assert ingest.sample_file(tmp_path, "a/b c").name == "a%2Fb%20c.counts.npz"


# --------------------------------------------------------------------------- CLI

def test_cli_build_store_count_sample_gather(tmp_path, bins, capsys):
    counts, manifest = _tsv_cohort(tmp_path, bins, n=3)
    fai = tmp_path / "ref.fa.fai"
    fai.write_text("chrA\t5500\t0\t60\t61\nplasB\t2300\t0\t60\t61\n")
    common = ["--method", "gatk-tsv", "--bins", str(fai), "--min-mapq", "20"]
    assert cli.main(["build-store", *common, "--manifest", str(manifest), "--out", str(tmp_path / "st"),
                     "--workers", "1", "--tool-version", "gatk=4.5.0.0"]) == 0
    assert "3 samples x 9 bins" in capsys.readouterr().out
    np.testing.assert_array_equal(store.open_store(tmp_path / "st").counts, counts)
    cdir = str(tmp_path / "c")
    assert cli.main(["count-sample", *common, "--manifest", str(manifest), "--index", "1", "--counts-dir", cdir]) == 0
    assert cli.main(["gather", *common, "--manifest", str(manifest), "--counts-dir", cdir, "--list-missing"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "0,2"
    assert cli.main(["gather", *common, "--manifest", str(manifest), "--counts-dir", cdir,
                     "--out", str(tmp_path / "g")]) == 2
    assert "2 of 3 samples have no usable counts file" in capsys.readouterr().err
    assert cli.main(["count-sample", *common, "--manifest", str(manifest), "--index", "7", "--counts-dir", cdir]) == 2
    assert "--index 7 is outside the manifest" in capsys.readouterr().err
    assert cli.main(["build-store", "--method", "bam", "--bins", str(fai), "--manifest", str(manifest),
                     "--out", str(tmp_path / "b")]) == 2
    assert "needs min_mapq" in capsys.readouterr().err


# --------------------------------------------------------------------------- issue 15: nothing lost, nothing silent

def _fai(tmp_path):
    fai = tmp_path / "ref.fa.fai"
    fai.write_text("".join(f"{c}\t{n}\t0\t60\t61\n" for c, n in LENGTHS.items()))
    return str(fai)


def _cli(capsys, *args):
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, err


def test_overwrite_never_deletes_inputs_a_file_or_a_non_store_folder(tmp_path, bins, capsys):
    _, manifest = _tsv_cohort(tmp_path, bins, n=2)
    common = ("build-store", "--method", "gatk-tsv", "--bins", _fai(tmp_path), "--manifest", str(manifest),
              "--overwrite")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    code, err = _cli(capsys, *common, "--out", str(tmp_path))          # the folder holding the inputs
    assert code == 2 and f"output store {tmp_path} contains the input" in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    code, err = _cli(capsys, *common, "--out", str(tmp_path / "tsv"))  # the TSVs' own folder
    assert code == 2 and "contains the input" in err and len(list((tmp_path / "tsv").iterdir())) == 2
    (tmp_path / "notes.txt").write_text("mine")
    code, err = _cli(capsys, *common, "--out", str(tmp_path / "notes.txt"))
    assert code == 2 and "is a file, not a store directory" in err
    assert (tmp_path / "notes.txt").read_text() == "mine" and not list(tmp_path.glob(".*"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("mine")
    code, err = _cli(capsys, *common, "--out", str(tmp_path / "results"))
    assert code == 2 and "is not a CNVRock store (no store.json)" in err
    assert (tmp_path / "results" / "keep.txt").read_text() == "mine"
    assert _cli(capsys, *common, "--out", str(tmp_path / "store"))[0] == 0
    assert _cli(capsys, *common, "--out", str(tmp_path / "store"))[0] == 0  # a store is replaced


def test_build_store_refuses_a_non_positive_worker_count(tmp_path, bins, capsys):
    _, manifest = _tsv_cohort(tmp_path, bins, n=2)
    code, err = _cli(capsys, "build-store", "--method", "gatk-tsv", "--bins", _fai(tmp_path), "--manifest",
                     str(manifest), "--out", str(tmp_path / "store"), "--workers", "-2")
    assert code == 2 and "workers = -2: expected a positive whole number" in err
    assert not (tmp_path / "store").exists()


def test_a_corrupt_per_sample_file_is_named_and_recounted(tmp_path, bins, capsys):
    _, manifest = _tsv_cohort(tmp_path, bins, n=3)
    cdir = tmp_path / "counts"
    common = ("--method", "gatk-tsv", "--bins", _fai(tmp_path), "--counts-dir", str(cdir))
    for i in range(3):
        assert _cli(capsys, "count-sample", *common, "--manifest", str(manifest), "--index", str(i))[0] == 0
    bad = ingest.sample_file(cdir, "S1")
    bad.write_bytes(b"PK\x03\x04" + bytes(40))  # a zip header and nothing behind it
    code, err = _cli(capsys, "gather", *common, "--manifest", str(manifest), "--out", str(tmp_path / "store"))
    assert code == 2 and "sample S1" in err and "corrupt or not a count-sample file" in err
    capsys.readouterr()
    assert cli.main(["gather", *common, "--manifest", str(manifest), "--list-missing"]) == 0
    assert capsys.readouterr().out.strip() == "1"
    assert _cli(capsys, "count-sample", *common, "--manifest", str(manifest), "--index", "1")[0] == 0  # no --force
    assert _cli(capsys, "gather", *common, "--manifest", str(manifest), "--out", str(tmp_path / "store"))[0] == 0


def _reads(n, seed, contigs=(("chrA", 5400), ("plasB", 2200))):
    rng = np.random.default_rng(seed)
    return [(c, int(p), 0, 60) for c, length in contigs for p in rng.integers(0, length, n)]


def test_an_empty_bam_is_refused_under_fail_and_skipped_with_a_warning(tmp_path, bins):
    empty = _write_bam(tmp_path / "empty.bam", [])
    full = _write_bam(tmp_path / "full.bam", _reads(200, 0))
    with pytest.raises(InputError, match=r"empty.bam: no read passes the filters"):
        ingest.count_bam(empty, bins, 20)
    manifest = _manifest(tmp_path, [("E", str(empty)), ("F", str(full))])
    settings = ingest.CountSettings("bam", bins, min_mapq=20)
    with pytest.raises(InputError, match=r"sample E .*no read passes the filters"):
        ingest.build_store(manifest, tmp_path / "s1", settings, workers=1, progress=False)
    res = ingest.build_store(manifest, tmp_path / "s2", settings, workers=1, on_error="skip", progress=False)
    assert res.n_samples == 1 and [s["sample_id"] for s in res.skipped] == ["E"]


def test_a_bam_with_another_files_index_points_to_samtools_index(tmp_path, bins):
    import shutil

    big = _write_bam(tmp_path / "big.bam", _reads(3000, 1))
    small = _write_bam(tmp_path / "small.bam", _reads(50, 2))
    shutil.copy(f"{big}.bai", f"{small}.bai")
    with pytest.raises(InputError, match=r"small.bam: reading through its index failed .*samtools index"):
        ingest.count_bam(small, bins, 20)


def test_a_cram_without_its_reference_points_to_reference_fasta(tmp_path, bins, monkeypatch):
    pysam = pytest.importorskip("pysam")
    monkeypatch.setenv("REF_PATH", str(tmp_path / "no_cache"))  # no htslib download or cache
    bam = _write_bam(tmp_path / "a.bam", _reads(300, 3))
    fasta = tmp_path / "ref.fa"
    fasta.write_text("".join(f">{c}\n{'A' * n}\n" for c, n in LENGTHS.items()))
    pysam.faidx(str(fasta))
    with pysam.AlignmentFile(str(bam)) as src, \
            pysam.AlignmentFile(str(tmp_path / "a.cram"), "wc", template=src, reference_filename=str(fasta)) as out:
        for read in src:
            out.write(read)
    moved = tmp_path / "moved.fa"
    fasta.rename(moved)
    os.unlink(f"{fasta}.fai")
    with pytest.raises(InputError, match=r"a.cram: cannot decode the CRAM: its reference sequence was not found"
                                         r".*--reference-fasta"):
        ingest.count_bam(tmp_path / "a.cram", bins, 20)
    assert ingest.count_bam(tmp_path / "a.cram", bins, 20, reference_fasta=moved).sum() == 600
