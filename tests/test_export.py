"""Exports (issue 17): VCF read back by the real bcftools and tabix, SEG by a strict
reader, BED, IGV session/tracks and MultiQC files, all compared with the stage TSVs."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from export_fixtures import amplified_sample, exported_tier  # noqa: F401

BCFTOOLS = shutil.which("bcftools")
TABIX = shutil.which("tabix")
needs_bcftools = pytest.mark.skipif(BCFTOOLS is None, reason="needs bcftools (Debian: apt-get install bcftools)")
needs_tabix = pytest.mark.skipif(TABIX is None, reason="needs tabix (Debian: apt-get install tabix)")
pytest.importorskip("pysam")


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (cmd, done.stderr)
    return done.stdout


def _query(vcf: Path, level: str, fields: str) -> pd.DataFrame:
    """bcftools query of one record level, one row per (record, sample) with a value, '.' as NaN."""
    out = _run(BCFTOOLS, "query", "-i", f'INFO/LEVEL="{level}"', "-f", f"[{fields}\\n]", str(vcf))
    rows = [line.split("\t") for line in out.splitlines()]
    return pd.DataFrame(rows)


def _num(series) -> np.ndarray:
    return pd.to_numeric(series.replace(".", np.nan)).to_numpy(dtype=float)


@pytest.fixture(scope="module")
def tables(exported_tier):
    out = exported_tier["out_dir"]
    return {"genes": pd.read_csv(out / "gene_calls.tsv", sep="\t", dtype={"sample_id": str}),
            "plasmid": pd.read_csv(out / "plasmid_gene_calls.tsv", sep="\t", dtype={"sample_id": str}),
            "qc": pd.read_csv(out / "sample_qc.tsv", sep="\t", dtype={"sample_id": str}),
            "segments": pd.read_parquet(out / "segments.parquet")}


def test_runner_exports_after_stage_03(exported_tier):
    assert [o.stage for o in exported_tier["outcomes"]] == ["01", "02", "03"]
    exp = exported_tier["export"]
    for name in ("cnvrock.vcf.gz", "cnvrock.vcf.gz.tbi", "cnvrock.seg", "gene_dosage.bed", "gene_panel.bed",
                 "igv/cnvrock.chrom.sizes", "igv/igv.min.js", "multiqc/cnvrock_general_stats_mqc.tsv",
                 "multiqc/cnvrock_dosage_table_mqc.yaml", "multiqc/cnvrock_dosage_plot_mqc.yaml"):
        assert (exp / name).is_file(), name
    assert not list(exp.rglob(".*tmp*")), "temporary files left behind"


@needs_bcftools
def test_vcf_header_names_contigs_version_and_params_hash(exported_tier):
    from cnvrock_lib import __version__
    from cnvrock_lib.reference import load_contigs

    header = _run(BCFTOOLS, "view", "-h", str(exported_tier["export"] / "cnvrock.vcf.gz")).splitlines()
    assert header[0] == "##fileformat=VCFv4.2"
    contigs = [line for line in header if line.startswith("##contig=")]
    ref = load_contigs()
    assert contigs == [f"##contig=<ID={c},length={n}>" for c, n in zip(ref["contig"], ref["length"])]
    assert f"##cnvrock_params_hash={exported_tier['params'].hash()}" in header
    assert f"##source=CNVRock {__version__}" in header
    for key in ("CN", "SQ", "NB", "DS", "DSL", "DSH", "GCALL", "GLAB", "CQ"):
        assert any(line.startswith(f"##FORMAT=<ID={key},") for line in header), key
    samples = _run(BCFTOOLS, "query", "-l", str(exported_tier["export"] / "cnvrock.vcf.gz")).split()
    qc = pd.read_csv(exported_tier["out_dir"] / "sample_qc.tsv", sep="\t", dtype={"sample_id": str})
    assert samples == qc["sample_id"].tolist()


@needs_bcftools
def test_vcf_gene_dosages_equal_the_call_tables(exported_tier, tables):
    vcf = exported_tier["export"] / "cnvrock.vcf.gz"
    fields = "%ID\t%SAMPLE\t%DS\t%DSL\t%DSH\t%GCALL\t%GLAB\t%CQ\t%STATUS"
    cases = [("chromosome", tables["genes"], ("crr", "crr_lo", "crr_hi")),
             ("member", tables["plasmid"][tables["plasmid"]["level"] == "member"], ("pcn", "pcn_lo", "pcn_hi")),
             ("family", tables["plasmid"][tables["plasmid"]["level"] == "family"], ("pcn", "pcn_lo", "pcn_hi"))]
    for level, tsv, (value, lo, hi) in cases:
        got = _query(vcf, level, fields)
        got.columns = ["gene", "sample_id", "ds", "dsl", "dsh", "vcf_call", "vcf_label", "cq", "vcf_status"]
        merged = tsv.merge(got, on=["gene", "sample_id"], how="outer", indicator=True)
        assert (merged["_merge"] == "both").all(), (level, merged[merged["_merge"] != "both"].head())
        assert len(merged) == len(tsv) > 0
        for ours, theirs in ((value, "ds"), (lo, "dsl"), (hi, "dsh")):
            np.testing.assert_allclose(_num(merged[theirs]), merged[ours].to_numpy(float), rtol=1e-5, atol=1e-6,
                                       equal_nan=True, err_msg=f"{level} {ours}")
        assert (merged["vcf_call"].astype(int) == merged["call"]).all()
        assert (merged["vcf_label"] == merged["label"]).all() and (merged["vcf_status"] == merged["status"]).all()
        expected_cq = np.minimum(np.round(-10 * np.log10(np.clip(1 - merged["confidence"], 10 ** -9.9, 1))), 99)
        np.testing.assert_array_equal(_num(merged["cq"]), expected_cq)


@needs_bcftools
def test_vcf_segments_equal_segments_parquet(exported_tier, tables):
    vcf = exported_tier["export"] / "cnvrock.vcf.gz"
    got = _query(vcf, "segment", "%CHROM\t%POS\t%END\t%ALT\t%SAMPLE\t%CN\t%SQ\t%NB\t%NM\t%CR")
    got.columns = ["chrom", "start", "end", "alt", "sample_id", "cn", "sq", "nb", "nm", "cr"]
    got = got[got["cn"] != "."]
    seg = tables["segments"]
    seg = seg[seg["cn"] != 1.0]
    assert len(got) == len(seg) > 0
    got = got.astype({"start": int, "end": int})
    merged = seg.merge(got, on=["sample_id", "chrom", "start", "end"], how="inner")
    assert len(merged) == len(seg)
    np.testing.assert_array_equal(merged["cn_y"].astype(float), merged["cn_x"].astype(float))
    assert (merged["alt"] == np.where(merged["cn_x"] < 1, "<DEL>", "<DUP>")).all()
    np.testing.assert_array_equal(merged["nb"].astype(int), merged["n_bins"])
    np.testing.assert_array_equal(merged["nm"].astype(int), merged["n_masked"])
    np.testing.assert_allclose(_num(merged["cr"]), merged["mean_ratio"].astype(float), rtol=1e-5, equal_nan=True)
    conf = merged["confidence"].astype(float)
    np.testing.assert_array_equal(merged["sq"].astype(int),
                                  np.minimum(np.round(-10 * np.log10(np.clip(1 - conf, 10 ** -9.9, 1))), 99))


@needs_bcftools
@needs_tabix
def test_tabix_indexes_the_vcf_and_regions_query(exported_tier, tmp_path):
    vcf = exported_tier["export"] / "cnvrock.vcf.gz"
    copy = tmp_path / "copy.vcf.gz"
    shutil.copyfile(vcf, copy)
    _run(TABIX, "-p", "vcf", "-f", str(copy))  # fails on a plain-gzip or unsorted file
    assert (tmp_path / "copy.vcf.gz.tbi").stat().st_size > 0
    from cnvrock_lib.reference import load_gene_panel

    shv = load_gene_panel(None, "chromosome").genes.iloc[0]
    region = f"{shv.contig}:{shv.start}-{shv.end}"
    ids = {line.split("\t")[2] for line in _run(TABIX, str(vcf), region).splitlines()}  # the exported index
    assert shv.gene in ids
    viewed = _run(BCFTOOLS, "view", "-H", "-r", region, "-i", 'INFO/LEVEL="chromosome"', str(vcf)).splitlines()
    assert [line.split("\t")[2] for line in viewed] == [shv.gene]


def read_seg_strict(path: Path, contigs: dict[str, int]) -> pd.DataFrame:
    """A strict SEG reader: exact header, six tab-separated fields, typed values, ordered non-overlapping rows."""
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["ID", "chrom", "loc.start", "loc.end", "num.mark", "seg.mean"]
    rows, seen, last = [], [], None
    for n, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        assert len(f) == 6, f"line {n}: {len(f)} fields"
        sid, chrom, start, end, marks, mean = f
        assert sid and not any(c.isspace() for c in sid), f"line {n}: bad ID"
        assert chrom in contigs, f"line {n}: unknown contig {chrom}"
        start, end, marks = int(start), int(end), int(marks)
        assert 1 <= start <= end <= contigs[chrom], f"line {n}: interval"
        assert 0 <= marks <= (end - start) // 1000 + 1, f"line {n}: num.mark"
        value = float("nan") if mean == "NA" else float(mean)
        assert mean == "NA" or (np.isfinite(value) and mean == f"{value:.4f}"), f"line {n}: seg.mean {mean}"
        if sid != (last[0] if last else None):
            assert sid not in seen, f"line {n}: sample {sid} not contiguous"
            seen.append(sid)
        elif last[1] == chrom:
            assert start > last[3], f"line {n}: overlaps or out of order"
        last = (sid, chrom, start, end)
        rows.append((sid, chrom, start, end, marks, value))
    return pd.DataFrame(rows, columns=["ID", "chrom", "loc.start", "loc.end", "num.mark", "seg.mean"])


def test_seg_parses_strictly_and_equals_segments(exported_tier, tables):
    from cnvrock_lib.reference import load_contigs

    ref = load_contigs()
    seg = read_seg_strict(exported_tier["export"] / "cnvrock.seg", dict(zip(ref["contig"], ref["length"])))
    parquet = tables["segments"]
    assert len(seg) == len(parquet)
    merged = parquet.merge(seg, left_on=["sample_id", "chrom", "start", "end"],
                           right_on=["ID", "chrom", "loc.start", "loc.end"])
    assert len(merged) == len(parquet)
    np.testing.assert_array_equal(merged["num.mark"], merged["n_bins"] - merged["n_masked"])
    with np.errstate(divide="ignore"):  # log2(0) = -inf, floored at -10
        expected = np.maximum(np.log2(np.maximum(merged["mean_ratio"].astype(float), 0)), -10.0)
    np.testing.assert_allclose(merged["seg.mean"], expected, atol=5e-5)


def test_bed_gene_dosages_equal_the_calls(exported_tier, tables):
    from cnvrock_lib.reference import load_gene_panel

    lines = (exported_tier["export"] / "gene_dosage.bed").read_text().splitlines()
    assert lines[0].startswith("track ")
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 9 for r in rows)
    bed = pd.DataFrame(rows, columns=["chrom", "start0", "end", "name", "score", "strand", "ts", "te", "rgb"])
    bed[["sample_id", "gene", "label", "dosage"]] = bed["name"].str.split("|", expand=True)
    panel = pd.concat([load_gene_panel(None, "chromosome").genes, load_gene_panel(None, "plasmid").genes])
    bed = bed.merge(panel, on="gene")
    assert (bed["start0"].astype(int) == bed["start"] - 1).all() and (bed["end_x"].astype(int) == bed["end_y"]).all()
    assert (bed["chrom"] == bed["contig"]).all()
    members = tables["plasmid"][tables["plasmid"]["level"] == "member"].rename(columns={"pcn": "value"})
    calls = pd.concat([tables["genes"].rename(columns={"crr": "value"}), members])
    merged = calls.merge(bed, on=["sample_id", "gene"])
    assert len(merged) == len(calls) == len(bed)
    assert (merged["label_x"] == merged["label_y"]).all()
    np.testing.assert_allclose(_num(merged["dosage"].replace("NA", ".")), merged["value"], atol=5e-4, equal_nan=True)
    assert merged["score"].astype(int).between(0, 1000).all()
    panel_lines = (exported_tier["export"] / "gene_panel.bed").read_text().splitlines()[1:]
    assert [line.split("\t")[3] for line in panel_lines] == panel["gene"].tolist()


def test_igv_session_tracks_and_page(exported_tier):
    out, exp = exported_tier["out_dir"], exported_tier["export"]
    sample = amplified_sample(out)
    session = exp / "igv" / f"{sample}.xml"
    root = ET.parse(session).getroot()
    assert root.tag == "Session" and root.get("genome") == "cnvrock.chrom.sizes"
    assert root.get("locus").startswith("NC_016845.1:")
    paths = [r.get("path") for r in root.iter("Resource")]
    assert len(paths) == 4 and all((session.parent / p).is_file() for p in paths)
    sizes = (exp / "igv" / "cnvrock.chrom.sizes").read_text().split()
    assert sizes[:2] == ["NC_016845.1", "5333942"]
    # the bedGraph holds the sample's copy_ratios.npy row (finite bins, 3 decimals)
    from cnvrock_lib.store import open_store

    store = open_store(exported_tier["params"].store_path, check_values=False)
    ratios = np.load(out / "copy_ratios.npy")[store.index_of([sample])[0]]
    graph = pd.read_csv(exp / "igv" / f"{sample}.copy_ratio.bedgraph", sep="\t", skiprows=1, header=None)
    finite = np.isfinite(ratios)
    assert len(graph) == finite.sum()
    np.testing.assert_array_equal(graph[1].to_numpy(), store.bins["start"][finite] - 1)
    np.testing.assert_allclose(graph[3].to_numpy(), ratios[finite], atol=5e-4)
    page = (exp / "igv" / f"{sample}.html").read_text()
    assert '<script src="igv.min.js"></script>' in page and "cdn" not in page.lower()
    from cnvrock_lib.export.igv import igv_js_path

    assert (exp / "igv" / "igv.min.js").read_bytes() == igv_js_path().read_bytes()


def test_multiqc_files_hold_the_qc_and_dosage_numbers(exported_tier, tables):
    import yaml

    mqc = exported_tier["export"] / "multiqc"
    stats = pd.read_csv(mqc / "cnvrock_general_stats_mqc.tsv", sep="\t", comment="#", dtype={"Sample": str})
    header = yaml.safe_load("\n".join(line[2:] for line in (mqc / "cnvrock_general_stats_mqc.tsv").read_text()
                                      .splitlines() if line.startswith("# ")))
    assert header["plot_type"] == "generalstats"
    merged = stats.merge(tables["qc"], left_on="Sample", right_on="sample_id")
    assert len(merged) == len(tables["qc"])
    np.testing.assert_allclose(merged["median_depth_x"], merged["median_depth_y"], atol=1e-4)
    np.testing.assert_allclose(merged["noise_sd_x"], merged["noise_sd_y"], atol=1e-4)
    assert (merged["qc_pass_x"] == merged["qc_pass_y"].astype(int)).all()
    shv = tables["genes"][tables["genes"]["gene"] == "blaSHV"].set_index("sample_id")["crr"]
    np.testing.assert_allclose(stats.set_index("Sample")["blaSHV_crr"], shv.reindex(stats["Sample"]), atol=1e-4,
                               equal_nan=True)
    fam = tables["plasmid"][tables["plasmid"]["level"] == "family"]
    carried = fam[fam["call"] >= 1].groupby("sample_id").size()
    np.testing.assert_array_equal(stats.set_index("Sample")["n_families_carried"],
                                  carried.reindex(stats["Sample"]).fillna(0).astype(int))
    table = yaml.safe_load((mqc / "cnvrock_dosage_table_mqc.yaml").read_text())
    plot = yaml.safe_load((mqc / "cnvrock_dosage_plot_mqc.yaml").read_text())
    assert table["parent_id"] == plot["parent_id"] == "cnvrock" and plot["plot_type"] == "bargraph"
    assert set(table["data"]) == set(plot["data"]) == set(tables["qc"]["sample_id"])


def _copy_out_dir(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("params.resolved.yaml", "segments.parquet", "gene_calls.tsv", "plasmid_gene_calls.tsv",
                 "sample_qc.tsv", "copy_ratios.npy"):
        shutil.copyfile(src / name, dest / name)
    return dest


def test_cli_export_subset_of_samples(exported_tier, tmp_path, capsys):
    from cnvrock_lib.cli import main

    out = _copy_out_dir(exported_tier["out_dir"], tmp_path / "out")
    sample = amplified_sample(out)
    assert main(["export", str(out), "--format", "seg", "bed", "--samples", sample]) == 0
    seg = pd.read_csv(out / "export" / "cnvrock.seg", sep="\t", dtype={"ID": str})
    assert set(seg["ID"]) == {sample}
    assert "seg: 1 file(s)" in capsys.readouterr().out
    assert not (out / "export" / "cnvrock.vcf.gz").exists()


@pytest.mark.parametrize("args, message", [
    (["--format", "xls"], "unknown export format(s) ['xls']"),
    (["--format", "seg", "--samples", "NOT_A_SAMPLE"], "sample(s) ['NOT_A_SAMPLE'] not in"),
])
def test_cli_export_bad_input_is_a_one_line_error(exported_tier, tmp_path, capsys, args, message):
    from cnvrock_lib.cli import main

    out = _copy_out_dir(exported_tier["out_dir"], tmp_path / "out")
    assert main(["export", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_export_of_an_unfinished_out_dir_names_the_missing_file(exported_tier, tmp_path, capsys):
    from cnvrock_lib.cli import main

    out = _copy_out_dir(exported_tier["out_dir"], tmp_path / "out")
    (out / "gene_calls.tsv").unlink()
    assert main(["export", str(out), "--format", "bed"]) == 2
    err = capsys.readouterr().err
    assert "gene_calls.tsv not found" in err and "stage 03" in err
    assert main(["export", str(tmp_path / "nowhere"), "--format", "bed"]) == 2


def test_params_key_export_formats(tmp_path):
    from cnvrock_lib.errors import ParamsError
    from cnvrock_lib.export import FORMATS
    from cnvrock_lib.params import SCHEMA, load_params

    assert SCHEMA["export_formats"].default == []
    assert SCHEMA["export_formats"].check(list(FORMATS))  # the schema knows every writer
    src = Path(__file__).resolve().parents[1] / "params" / "smoke.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(src.read_text() + "export_formats: [vcf, xls]\n")
    with pytest.raises(ParamsError, match="export_formats"):
        load_params(bad, check_files=False)


def test_phred_and_log2_floor():
    from cnvrock_lib.export.core import log2_ratio, phred

    np.testing.assert_array_equal(phred([0.0, 0.9, 0.99, 1.0]), [0, 10, 20, 99])
    out = log2_ratio([1.0, 2.0, 0.0, np.nan])
    np.testing.assert_array_equal(out[:3], [0.0, 1.0, -10.0])
    assert np.isnan(out[3])


@pytest.mark.parametrize("fmt", ["vcf", "igv"])
def test_unwritable_export_folder_is_a_one_line_error(exported_tier, tmp_path, capsys, fmt):
    from cnvrock_lib.cli import main

    out = _copy_out_dir(exported_tier["out_dir"], tmp_path / "out")
    (out / "export").write_text("a file where the export folder should go\n")
    assert main(["export", str(out), "--format", fmt, "--samples", amplified_sample(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and str(out / "export") in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary left
