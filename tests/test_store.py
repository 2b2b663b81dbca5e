"""NPY store: round trip, validation errors, legacy layouts, never writing into inputs."""

import json
import re

import numpy as np
import pytest

from cnvrock_lib import reference, store
from cnvrock_lib.errors import StoreError


def _bins(n=5, chrom="c1"):
    return reference.make_bins({chrom: n * 1000 - 200})


def _write_raw(path, counts, ids, bins):
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "counts.npy", counts)
    np.save(path / "sample_ids.npy", ids, allow_pickle=True)
    np.save(path / "contigs.npy", bins, allow_pickle=True)
    return path


def test_round_trip_memory_mapped(tmp_path):
    counts = np.arange(15, dtype=np.uint32).reshape(3, 5)
    path = store.write_store(tmp_path / "s", counts, ["SRR1", "SRR2", "SRR3"], _bins(), {"method": "test"})
    s = store.open_store(path)
    assert isinstance(s.counts, np.memmap) and not s.counts.flags.writeable
    np.testing.assert_array_equal(s.counts, counts)
    assert s.sample_ids.tolist() == ["SRR1", "SRR2", "SRR3"]
    assert s.bins["end"][-1] == 4800 and s.bin_lengths[-1] == 800
    assert s.layout == "bins" and s.provenance["method"] == "test"
    assert s.contig_slices() == {"c1": slice(0, 5)}
    np.testing.assert_array_equal(s.index_of(["SRR3", "SRR1"]), [2, 0])
    with pytest.raises(StoreError, match="sample 'SRR9' is not in sample_ids.npy"):
        s.index_of(["SRR9"])
    # written stores load without unpickling
    for f in ("sample_ids.npy", "contigs.npy"):
        np.load(path / f, allow_pickle=False)


def test_write_refuses_existing_store(tmp_path):
    counts = np.ones((1, 5), dtype=np.uint32)
    store.write_store(tmp_path / "s", counts, ["a"], _bins())
    with pytest.raises(StoreError, match="already exists"):
        store.write_store(tmp_path / "s", counts, ["a"], _bins())


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(StoreError):
        store.write_store(tmp_path / "s", np.ones((2, 5), dtype=np.uint32), ["a", "a"], _bins())
    assert not (tmp_path / "s").exists()
    assert not any(p.name.startswith(".s.") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda c, i, b: (c, i[:2], b), r"sample_ids.npy has 2 ids but counts.npy has 3 rows"),
        (lambda c, i, b: (c, np.array(["a", "b", "a"]), b), r"duplicate id 'a' at indices \[0, 2\]"),
        (lambda c, i, b: (c, i, b[::-1].copy()), r"bin 1 .* is unsorted or overlaps bin 0"),
        (lambda c, i, b: (c[:, :4], i, b), r"contigs.npy has 5 bins but counts.npy has 4 columns"),
        (lambda c, i, b: (c.astype(np.int64) - 3, i, b), r"negative count at sample 0 \(a\), bin 0"),
        (lambda c, i, b: (np.where(c == 7, np.nan, c.astype(float)), i, b), r"non-finite value at sample 1 \(b\), bin 2"),
        (lambda c, i, b: (c.astype(str), i, b), r"dtype <U.*expected integer read counts"),
    ],
)
def test_validation_names_file_and_index(tmp_path, mutate, pattern):
    counts = np.arange(15, dtype=np.uint32).reshape(3, 5)
    c, i, b = mutate(counts, np.array(["a", "b", "c"]), _bins())
    path = _write_raw(tmp_path / "bad", c, i, b)
    with pytest.raises(StoreError, match=pattern) as err:
        store.open_store(path)
    assert str(path) in str(err.value)


def test_overlapping_bins(tmp_path):
    b = _bins()
    b["start"][2] = 1500
    path = _write_raw(tmp_path / "ov", np.ones((1, 5), np.uint32), np.array(["a"]), b)
    with pytest.raises(StoreError, match="bin 2 .* overlaps bin 1"):
        store.open_store(path)


def test_missing_file_and_not_a_dir(tmp_path):
    with pytest.raises(StoreError, match="is not a directory"):
        store.open_store(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="missing counts.npy"):
        store.open_store(tmp_path / "empty")


def test_object_arrays_need_opt_in_and_convert(tmp_path):
    counts = np.ones((2, 5), dtype=np.uint32)
    ids = np.array(["SRR1", "SRR2"], dtype=object)
    legacy_bins = np.zeros(5, dtype=[("chrom", object), ("start", "<i8"), ("end", "<i8")])
    b = _bins()
    legacy_bins["chrom"], legacy_bins["start"], legacy_bins["end"] = b["chrom"].astype(object), b["start"], b["end"]
    path = _write_raw(tmp_path / "orig", counts, ids, legacy_bins)
    with pytest.raises(StoreError, match="unpickles.*convert-store --trust-pickle"):
        store.open_store(path)
    assert store.open_store(path, allow_pickle=True).sample_ids.tolist() == ["SRR1", "SRR2"]
    before = sorted(p.name for p in path.iterdir())
    new = store.convert_store(path, tmp_path / "converted", trust_pickle=True)
    assert sorted(p.name for p in path.iterdir()) == before  # input store untouched
    s = store.open_store(new)
    assert s.sample_ids.tolist() == ["SRR1", "SRR2"]
    assert json.loads((new / "store.json").read_text())["converted_from"] == str(path.resolve())


def test_real_geometry_and_legacy_gene_layout(tmp_path):
    chrom = reference.chromosome_bins()
    assert len(chrom) == 5334 and chrom["start"][1] == 1001 and chrom["end"][-1] == 5333942
    plas = reference.plasmid_bins()
    assert len(plas) == 2031 and store.detect_layout(plas) == "bins"
    panel = reference.load_gene_panel(None, "plasmid").genes
    gene_rows = np.zeros(len(panel), dtype=reference.BIN_DTYPE)
    gene_rows["chrom"], gene_rows["start"], gene_rows["end"] = panel["contig"], panel["start"], panel["end"]
    # one row per gene: contigs differ so rows are valid, layout detected as genes
    order = np.argsort(gene_rows["chrom"], kind="stable")
    path = store.write_store(tmp_path / "legacy", np.ones((2, len(panel)), np.uint32), ["a", "b"], gene_rows[order])
    assert store.open_store(path).layout == "genes"


def test_gene_panel_errors(tmp_path):
    from cnvrock_lib.errors import InputError

    f = tmp_path / "panel.tsv"
    f.write_text("gene\tcontig\tstart\tend\nx\tc1\t500\t100\n")
    with pytest.raises(InputError, match="gene x has start 500 > end 100"):
        reference.load_gene_panel(f)
    f.write_text("gene\tcontig\tstart\tend\nx\tc9\t1\t100\n")
    with pytest.raises(InputError, match="gene x is on contig c9, which the store does not contain"):
        reference.load_gene_panel(f).check_against(_bins(), str(f))
    f.write_text("gene\tcontig\tstart\tend\nx\tc1\t1\t99999\n")
    with pytest.raises(InputError, match="ends at 99999 bp, past the end of c1"):
        reference.load_gene_panel(f).check_against(_bins(), str(f))
    f.write_text("gene\tcontig\tbegin\tend\nx\tc1\t1\t9\n")
    with pytest.raises(InputError, match=r"lacks column\(s\) \['start'\]"):
        reference.load_gene_panel(f)


def test_written_files_follow_the_umask(tmp_path):
    import os

    from cnvrock_lib.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        path = store.write_store(tmp_path / "s", np.ones((1, 5), np.uint32), ["a"], _bins())
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert path.stat().st_mode & 0o777 == 0o755


# --------------------------------------------------------------------------- issue 15
class _Marker:
    """Unpickling this writes a marker file: stands for code a hostile store would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_convert_store_needs_consent_and_never_runs_pickled_code(tmp_path, capsys):
    from cnvrock_lib import cli

    marker = tmp_path / "code_ran"
    ids = np.empty(2, dtype=object)
    ids[0], ids[1] = "SRR1", _Marker(marker)
    path = _write_raw(tmp_path / "hostile", np.ones((2, 5), dtype=np.uint32), ids, _bins())
    for extra in ([], ["--trust-pickle"]):
        capsys.readouterr()
        assert cli.main(["convert-store", *extra, str(path), str(tmp_path / "new")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not marker.exists() and not (tmp_path / "new").exists()
    capsys.readouterr()
    cli.main(["convert-store", str(path), str(tmp_path / "new")])
    assert "pass --trust-pickle" in capsys.readouterr().err
    cli.main(["convert-store", "--trust-pickle", str(path), str(tmp_path / "new")])
    assert "holds a pickled io.open object, which CNVRock refuses to load" in capsys.readouterr().err
    with pytest.raises(StoreError, match="convert-store --trust-pickle"):  # the text run's error recommends
        store.open_store(path)


def test_the_error_for_an_object_store_names_a_flag_that_exists():
    from cnvrock_lib import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["convert-store"]
    assert "--trust-pickle" in sub.format_help()
    assert not any("--allow-pickle" in a.option_strings for a in sub._actions)


@pytest.mark.parametrize("content, fragment", [
    (b"", "counts.npy is empty (0 bytes)"),
    (b"sample\tbin1\nSRR1\t3\n", "counts.npy is not a .npy file: it does not start with the .npy magic bytes"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<u4', 'fortran_order': False, 'shape': (2, 5), }" + b" " * 50 + b"\n",
     "counts.npy is not a readable .npy file"),
])
def test_unreadable_counts_files_are_named_not_a_traceback(tmp_path, content, fragment, capsys):
    path = _write_raw(tmp_path / "s", np.ones((2, 5), dtype=np.uint32), np.array(["a", "b"]), _bins())
    (path / "counts.npy").write_bytes(content)
    with pytest.raises(StoreError, match=re.escape(fragment)) as err:
        store.open_store(path)
    assert "Python objects" not in str(err.value)
