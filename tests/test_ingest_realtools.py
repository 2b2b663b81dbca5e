"""Real tools end to end: ART reads -> bwa mem -> samtools sort/index -> stores from BAM, mosdepth
and CollectReadCounts-format TSVs (written from `samtools view`, an independent count).

Toy reference (seeded): a 250 kb chromosome and two plasmids; gene X on plasA has a near-identical
copy X' on plasB (3 SNPs in 900 bp) inside 1.5 kb of identical flanks on each side, as AMR genes
sit inside shared transposons. Samples: S1 carries a 6 kb tandem triplication on the chromosome,
two copies of plasA per chromosome and no plasB; S2 has a normal chromosome and one copy of each
plasmid. Reads: ART HS25 2x150 bp, 40x per contig copy.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import cli, ingest, reference, store

pytestmark = [pytest.mark.realtools, pytest.mark.slow]

TOOLS = ("bwa", "samtools", "art_illumina", "mosdepth")
CHROM_LEN, PLAS_A_LEN, PLAS_B_LEN = 250_000, 60_000, 40_000
AMP_START, AMP_LEN, AMP_COPIES = 100_000, 6_000, 3  # 0-based start: bins 100,001-106,000 (1-based)
GENE_A_START, GENE_B_START, GENE_LEN, FLANK = 30_000, 20_000, 900, 1_500  # 0-based gene starts
FOLD = 40
SAMPLES = {"S1": {"amp": True, "plasA": 2, "plasB": 0}, "S2": {"amp": False, "plasA": 1, "plasB": 1}}


def _need_tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"real-tool test needs {', '.join(missing)} (Debian: bwa samtools "
                    f"art-nextgen-simulation-tools mosdepth libhts-dev; scripts/install_system_tools.sh)")
    probe = subprocess.run(["mosdepth", "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"mosdepth does not run ({probe.stderr.strip()[:120]}); Debian's mosdepth needs libhts-dev")
    pytest.importorskip("pysam")


def _run(cmd: str, cwd: Path) -> None:
    done = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd!r} failed ({done.returncode}): {done.stderr[-2000:]}"


def _random_seq(rng, n, gc=0.55):
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return "".join(rng.choice(list("ACGT"), n, p=p))


def _write_fasta(path: Path, records) -> None:
    with open(path, "w") as out:
        for name, seq in records:
            out.write(f">{name}\n")
            out.writelines(seq[i:i + 80] + "\n" for i in range(0, len(seq), 80))


def _toy_genomes(rng):
    chrom = _random_seq(rng, CHROM_LEN)
    gene = _random_seq(rng, GENE_LEN)
    near = list(gene)
    for pos in (150, 450, 750):  # 3 SNPs in 900 bp
        near[pos] = {"A": "C", "C": "G", "G": "T", "T": "A"}[near[pos]]
    flank_l, flank_r = _random_seq(rng, FLANK), _random_seq(rng, FLANK)
    plas_a = _random_seq(rng, GENE_A_START - FLANK) + flank_l + gene + flank_r
    plas_a += _random_seq(rng, PLAS_A_LEN - len(plas_a))
    plas_b = _random_seq(rng, GENE_B_START - FLANK) + flank_l + "".join(near) + flank_r
    plas_b += _random_seq(rng, PLAS_B_LEN - len(plas_b))
    return chrom, plas_a, plas_b


def _samtools_gatk_tsv(bam: Path, out: Path, bins: np.ndarray, min_mapq: int) -> None:
    """CollectReadCounts-format TSV from `samtools view` (POS = leftmost aligned base), counted apart from pysam."""
    header = subprocess.run(["samtools", "view", "-H", str(bam)], capture_output=True, text=True, check=True).stdout
    lengths = {f.split(":", 1)[1]: None for line in header.splitlines() if line.startswith("@SQ")
               for f in line.split("\t") if f.startswith("SN:")}
    for line in header.splitlines():
        if line.startswith("@SQ"):
            tags = dict(f.split(":", 1) for f in line.split("\t")[1:])
            lengths[tags["SN"]] = int(tags["LN"])
    view = subprocess.run(["samtools", "view", "-F", "0xF04", "-q", str(min_mapq), str(bam)],
                          capture_output=True, text=True, check=True).stdout
    reads = pd.read_csv(pd.io.common.StringIO(view), sep="\t", header=None, usecols=[2, 3], names=["c", "p"])
    counts = np.zeros(bins.shape[0], dtype=np.int64)
    offset = 0
    for contig, length in lengths.items():
        n = (length + 999) // 1000
        pos = reads.loc[reads["c"] == contig, "p"].to_numpy()
        counts[offset:offset + n] = np.bincount((pos - 1) // 1000, minlength=n)
        offset += n
    ingest.write_gatk_tsv(out, counts, bins, sample_name=bam.stem, contig_lengths=lengths)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Reference, reads, BAMs, mosdepth regions and TSVs for the two toy samples (~1 min on 2 cores)."""
    _need_tools()
    root = tmp_path_factory.mktemp("realtools")
    rng = np.random.default_rng(20240611)
    chrom, plas_a, plas_b = _toy_genomes(rng)
    _write_fasta(root / "ref.fa", [("toyChr", chrom), ("plasA", plas_a), ("plasB", plas_b)])
    _run("bwa index ref.fa 2>/dev/null && samtools faidx ref.fa", root)
    all_bins = ingest.resolve_bins(root / "ref.fa")
    rows = {"bam": [], "tsv20": [], "tsv0": [], "md20": [], "md0": []}
    for k, (name, spec) in enumerate(SAMPLES.items()):
        sample_chrom = chrom
        if spec["amp"]:
            unit = chrom[AMP_START:AMP_START + AMP_LEN]
            sample_chrom = chrom[:AMP_START] + unit * AMP_COPIES + chrom[AMP_START + AMP_LEN:]
        records = [("chrom", sample_chrom)]
        records += [(f"plasA_{i}", plas_a) for i in range(spec["plasA"])]
        records += [(f"plasB_{i}", plas_b) for i in range(spec["plasB"])]
        _write_fasta(root / f"{name}.fa", records)
        _run(f"art_illumina -ss HS25 -p -l 150 -f {FOLD} -m 400 -s 30 -rs {11 + k} -na -q "
             f"-i {name}.fa -o {name}_ >/dev/null", root)
        _run(f"bwa mem -t 2 -R '@RG\\tID:{name}\\tSM:{name}' ref.fa {name}_1.fq {name}_2.fq 2>/dev/null "
             f"| samtools sort -@ 1 -o {name}.bam - && samtools index {name}.bam", root)
        for q in (20, 0):
            _run(f"mosdepth -n -x --by 1000 -Q {q} -F 3844 {name}.q{q} {name}.bam", root)
            _samtools_gatk_tsv(root / f"{name}.bam", root / f"{name}.q{q}.counts.tsv", all_bins, q)
            rows[f"md{q}"].append((name, f"{name}.q{q}.regions.bed.gz"))
            rows[f"tsv{q}"].append((name, f"{name}.q{q}.counts.tsv"))
        rows["bam"].append((name, f"{name}.bam"))
    manifests = {}
    for key, items in rows.items():
        manifests[key] = root / f"manifest_{key}.tsv"
        pd.DataFrame(items, columns=["sample_id", "path"]).to_csv(manifests[key], sep="\t", index=False)
    return {"root": root, "manifests": manifests, "ref": root / "ref.fa"}


def _bins(toy, contigs):
    return ingest.resolve_bins(toy["ref"], contigs=contigs)


def _amp_ratio(counts_row, bins):
    """Per-bin ratio to the chromosome median in the fully amplified bins."""
    chrom_counts = np.asarray(counts_row, dtype=float)
    first = AMP_START // 1000
    return chrom_counts[first:first + AMP_LEN // 1000] / np.median(chrom_counts)


def test_chromosome_stores_show_the_triplication(toy, tmp_path):
    chrom = _bins(toy, ["toyChr"])
    built = {}
    built["bam"] = ingest.build_store(toy["manifests"]["bam"], tmp_path / "bam",
                                      ingest.CountSettings("bam", chrom, min_mapq=20), workers=2)
    built["tsv"] = ingest.build_store(toy["manifests"]["tsv20"], tmp_path / "tsv",
                                      ingest.CountSettings("gatk-tsv", chrom, min_mapq=20))
    assert cli.main(["build-store", "--method", "mosdepth", "--bins", str(toy["ref"]), "--contigs", "toyChr",
                     "--min-mapq", "20", "--manifest", str(toy["manifests"]["md20"]),
                     "--out", str(tmp_path / "md"), "--tool-version", "mosdepth=0.3.3"]) == 0
    stores = {k: store.open_store(tmp_path / k) for k in ("bam", "tsv", "md")}
    # pysam and the samtools-based TSVs count exactly the same reads
    np.testing.assert_array_equal(stores["bam"].counts, stores["tsv"].counts)
    assert stores["md"].counts.dtype == np.float32 and stores["md"].provenance["unit"] == "mean_depth"
    assert stores["md"].provenance["tool_versions"]["mosdepth"] == "0.3.3"
    assert stores["bam"].provenance["min_mapq"] == 20 and stores["bam"].provenance["n_samples"] == 2
    assert any(p.get("PN") == "bwa" for p in stores["bam"].provenance["aligner_programs_first_sample"])
    for kind, s in stores.items():
        s1, s2 = s.index_of(["S1", "S2"])
        amp = _amp_ratio(s.counts[s1], chrom)
        print(f"[figures] {kind} store, MQ>=20: S1 amplified bins / chromosome median = {amp.mean():.2f} "
              f"(bins {amp.min():.2f}-{amp.max():.2f}); S2 same bins {_amp_ratio(s.counts[s2], chrom).mean():.2f}")
        assert 2.7 < amp.mean() < 3.3, (kind, amp)
        assert np.all((amp > 2.4) & (amp < 3.6)), (kind, amp)
        normal = _amp_ratio(s.counts[s2], chrom)
        assert 0.85 < normal.mean() < 1.15, (kind, normal)
    # read starts per bin ~ depth x 1000 / 150 for 150 bp reads (both mates counted)
    ratio = np.median(stores["bam"].counts[1]) / np.median(stores["md"].counts[1])
    print(f"[figures] S2 median read starts per bin / median mosdepth depth = {ratio:.2f} (1000/150 = 6.67)")
    assert 1000 / 150 * 0.85 < ratio < 1000 / 150 * 1.15


def test_near_identical_genes_split_at_mq0_and_vanish_at_mq20(toy, tmp_path):
    plas = _bins(toy, ["plasA", "plasB"])
    counts = {}
    for q in (0, 20):
        res = ingest.build_store(toy["manifests"]["bam"], tmp_path / f"plas{q}",
                                 ingest.CountSettings("bam", plas, min_mapq=q), workers=1)
        counts[q] = np.asarray(store.open_store(res.path).counts, dtype=float)
    n_a = PLAS_A_LEN // 1000
    gene_a, gene_b = GENE_A_START // 1000, n_a + GENE_B_START // 1000
    backbone_a = np.median(counts[20][:, 5:25], axis=1)  # unique plasA bins, per sample
    backbone_b = np.median(counts[20][:, n_a + 5:n_a + 15], axis=1)
    # S1 carries only X (plasA, 2 copies): at MQ 0 a share of its reads lands on X' (plasB) ...
    s1_a, s1_b = counts[0][0, gene_a], counts[0][0, gene_b]
    flank_a, flank_b = [gene_a - 1, gene_a + 1], [gene_b - 1, gene_b + 1]  # bins wholly inside the flanks
    for q in (0, 20):
        c = counts[q][0] / backbone_a[0]
        print(f"[figures] S1 MQ>={q}: gene bin X {c[gene_a]:.2f}, X' {c[gene_b]:.2f}, family sum "
              f"{c[gene_a] + c[gene_b]:.2f}; identical-flank bins X {np.round(c[flank_a], 2).tolist()}, "
              f"X' {np.round(c[flank_b], 2).tolist()} (x plasA backbone read starts)")
    assert s1_b > 0.1 * backbone_a[0], (s1_a, s1_b, backbone_a)
    # ... and the family sum X + X' recovers the gene's depth; at MQ >= 20 the split reads are gone
    assert abs((s1_a + s1_b) / backbone_a[0] - 1) < 0.15
    assert counts[20][0, gene_b] < 0.02 * backbone_a[0]
    assert counts[20][0, gene_a] < 0.85 * counts[0][0, gene_a]
    # the identical flanks: at MQ 0 split between the copies, at MQ 20 almost nothing is left
    assert np.all(counts[0][0, flank_b] > 0.2 * backbone_a[0])
    assert abs(np.mean(counts[0][0, flank_a] + counts[0][0, flank_b]) / backbone_a[0] - 1) < 0.15
    assert np.all(counts[20][0, flank_b] == 0) and np.all(counts[20][0, flank_a] < 0.25 * backbone_a[0])
    # S2 carries both: the family sum equals the sum of the two plasmids' depths
    s2_sum = counts[0][1, gene_a] + counts[0][1, gene_b]
    print(f"[figures] S2 MQ>=0: family sum X + X' = {s2_sum / (backbone_a[1] + backbone_b[1]):.2f} x (plasA + plasB "
          f"backbones); S1/S2 plasA backbone = {backbone_a[0] / backbone_a[1]:.2f} (PCN 2 vs 1)")
    assert abs(s2_sum / (backbone_a[1] + backbone_b[1]) - 1) < 0.15
    assert backbone_b[0] == 0 and 1.7 < backbone_a[0] / backbone_a[1] < 2.3  # PCN 2 vs 1


def test_count_sample_and_gather_on_real_bams(toy, tmp_path):
    chrom = _bins(toy, ["toyChr"])
    settings = ingest.CountSettings("bam", chrom, min_mapq=20)
    samples = ingest.read_manifest(toy["manifests"]["bam"])
    cdir = tmp_path / "counts"
    first = samples.iloc[0]
    ingest.count_sample(first["path"], first["sample_id"], cdir, settings)
    assert ingest.missing_samples(toy["manifests"]["bam"], cdir, settings) == [1]
    args = ["--method", "bam", "--bins", str(toy["ref"]), "--contigs", "toyChr", "--min-mapq", "20",
            "--manifest", str(toy["manifests"]["bam"]), "--counts-dir", str(cdir)]
    assert cli.main(["count-sample", *args, "--index", "1"]) == 0
    assert cli.main(["gather", *args, "--out", str(tmp_path / "gathered")]) == 0
    direct = ingest.build_store(toy["manifests"]["bam"], tmp_path / "direct", settings, workers=1)
    np.testing.assert_array_equal(store.open_store(tmp_path / "gathered").counts,
                                  store.open_store(direct.path).counts)


def test_mosdepth_and_tsv_layouts_match_the_reference_bins(toy):
    """mosdepth's 0-based regions and the TSV intervals line up with make_bins over the .fai."""
    md = Path(toy["root"]) / "S2.q0.regions.bed.gz"
    first = gzip.decompress(md.read_bytes()).decode().splitlines()[0].split("\t")
    assert first[:3] == ["toyChr", "0", "1000"]
    lengths = dict(line.split("\t")[:2] for line in (Path(str(toy["ref"]) + ".fai")).read_text().splitlines())
    bins = reference.make_bins({k: int(v) for k, v in lengths.items()})
    np.testing.assert_array_equal(ingest.resolve_bins(toy["ref"]), bins)


def test_stages_02_03_on_stores_built_from_real_tools(toy, tmp_path):
    """Stores built from the toy BAMs go through stage 02 (segment) and stage 03 (call).

    Stage 01 (the VAE) needs a cohort, not two samples; its artefacts are stood in for by
    the toy genome's known expectation: uniform depth, i.e. each sample's median per bin.
    """
    segmentation = pytest.importorskip("cnvrock_lib.segmentation")
    from cnvrock_lib import calling, normalise
    from cnvrock_lib.atomic import save_npy
    from cnvrock_lib.params import load_params

    chrom_store = ingest.build_store(toy["manifests"]["bam"], tmp_path / "chrom_store",
                                     ingest.CountSettings("bam", _bins(toy, ["toyChr"]), min_mapq=20)).path
    plasmid_store = ingest.build_store(toy["manifests"]["bam"], tmp_path / "plasmid_store",
                                       ingest.CountSettings("bam", _bins(toy, ["plasA", "plasB"]), min_mapq=0)).path
    amp_gene = (AMP_START + 2001, AMP_START + 2900)  # 1-based, inside the triplicated 6 kb
    (tmp_path / "chrom_genes.tsv").write_text(f"gene\tcontig\tstart\tend\ntoyAMP\ttoyChr\t{amp_gene[0]}\t{amp_gene[1]}\n")
    (tmp_path / "plasmid_genes.tsv").write_text(
        "gene\tcontig\tstart\tend\tabsent_threshold\n"
        f"geneX\tplasA\t{GENE_A_START + 1}\t{GENE_A_START + GENE_LEN}\t\n"
        f"geneXp\tplasB\t{GENE_B_START + 1}\t{GENE_B_START + GENE_LEN}\t\n")
    (tmp_path / "families.tsv").write_text("family\tmembers\nfamX\tgeneX,geneXp\n")
    out_dir = tmp_path / "results"
    (tmp_path / "realtools.yaml").write_text(
        "tier: realtools\nstore_path: chrom_store\nplasmid_store_path: plasmid_store\nout_dir: results\n"
        "chrom_gene_coords_path: chrom_genes.tsv\nplasmid_gene_coords_path: plasmid_genes.tsv\n"
        "plasmid_gene_families_path: families.tsv\nbootstrap_replicates: 200\nseed: 7\n")
    params = load_params(tmp_path / "realtools.yaml")
    counts = np.asarray(store.open_store(chrom_store).counts)
    medians = normalise.sample_medians(counts)
    out_dir.mkdir()
    save_npy(out_dir / "medians.npy", medians)
    save_npy(out_dir / "reconstructions.npy", np.repeat(medians[:, None], counts.shape[1], axis=1).astype(np.float32))

    segmentation.segment_cohort(params)
    segments = pd.read_parquet(out_dir / "segments.parquet")
    s1_amp = segments[(segments["sample_id"] == "S1") & (segments["start"] <= AMP_START + 2001)
                      & (segments["end"] >= AMP_START + 5000)]
    assert s1_amp["cn"].tolist() == [3.0], segments[segments["sample_id"] == "S1"]
    s2 = segments[segments["sample_id"] == "S2"]
    over_amp = s2[(s2["end"] >= AMP_START + 1) & (s2["start"] <= AMP_START + AMP_LEN)]
    assert over_amp["cn"].tolist() == [1.0]
    assert s2.loc[s2["cn"] == 1.0, "n_bins"].sum() >= 0.95 * s2["n_bins"].sum()
    print(f"[figures] stage 02 on the BAM store: S1 segment {s1_amp['start'].iloc[0]}-{s1_amp['end'].iloc[0]} "
          f"CN {s1_amp['cn'].iloc[0]:g} (mean ratio {s1_amp['mean_ratio'].iloc[0]:.2f}); S2 segments "
          + ", ".join(f"{r.start}-{r.end} CN {r.cn:g} ({r.mean_ratio:.2f})" for r in s2.itertuples()))

    result = calling.stage.call_genes(params)
    chrom_calls = result.gene_calls.set_index("sample_id")
    print("[figures] stage 03 on BAM stores: toyAMP CRR S1 "
          f"{chrom_calls.loc['S1', 'crr']:.2f} ({chrom_calls.loc['S1', 'label']}), S2 "
          f"{chrom_calls.loc['S2', 'crr']:.2f} ({chrom_calls.loc['S2', 'label']})")
    assert chrom_calls.loc["S1", "label"] == "amplified" and 2.5 < chrom_calls.loc["S1", "crr"] < 3.5
    assert chrom_calls.loc["S2", "label"] == "normal" and 0.8 < chrom_calls.loc["S2", "crr"] < 1.2
    plasmid = result.plasmid_calls
    family = plasmid[plasmid["level"] == "family"].set_index("sample_id")
    print(f"[figures] stage 03 on BAM stores: famX PCN S1 {family.loc['S1', 'pcn']:.2f}, S2 {family.loc['S2', 'pcn']:.2f}")
    # S1: X on two copies of plasA; S2: X on plasA + X' on plasB, one copy each -> both ~2 per chromosome
    for sid in ("S1", "S2"):
        assert family.loc[sid, "label"] in ("present", "amplified")
        assert 1.7 < family.loc[sid, "pcn"] < 2.3


def test_cram_counts_equal_bam_counts(toy, tmp_path):
    root = Path(toy["root"])
    _run(f"samtools view -C -T {toy['ref']} -o {tmp_path / 'S1.cram'} S1.bam && samtools index {tmp_path / 'S1.cram'}",
         root)
    bins = ingest.resolve_bins(toy["ref"])
    from_bam = ingest.count_bam(root / "S1.bam", bins, 20)
    from_cram = ingest.count_bam(tmp_path / "S1.cram", bins, 20, reference_fasta=toy["ref"])
    assert from_bam.sum() > 0
    np.testing.assert_array_equal(from_cram, from_bam)
