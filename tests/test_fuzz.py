"""Seeded random mutations of a valid cohort's params YAML, ground truth, metadata and stores.

Each case copies a small valid cohort, mutates one input and runs ``cnvrock run`` in this
process up to the first notebook (the notebook itself is replaced by a marker, so no
training happens). Every case must end in one of two ways:

- exit 2 with exactly one ``cnvrock run: error: ...`` line and no traceback, nothing started;
- accepted: the runner got as far as starting stage 01;

and ``out_dir`` must never hold a partial artefact (a temporary name, or a JSON/YAML
file that does not parse). ``CNVROCK_FUZZ_CASES`` sets the number of cases (default 40,
a few seconds, for CI); ``CNVROCK_FUZZ_START`` the first case (each case is seeded by
its number, so a finding is replayed by running that one case).

Run at length: ``CNVROCK_FUZZ_CASES=1200 pytest tests/test_fuzz.py -q -s``.
"""

from __future__ import annotations

import json
import os
import shutil
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from cnvrock_lib import cli
from cnvrock_lib import run as R
from cnvrock_lib.atomic import registered_leftovers
from cnvrock_lib.params import SCHEMA
from test_reliability import (N_PLASMID_BINS, N_SAMPLES, chrom_bins, make_counts, plasmid_bins, write_panels,
                              write_raw_store)

CASES = int(os.environ.get("CNVROCK_FUZZ_CASES", "40"))
START = int(os.environ.get("CNVROCK_FUZZ_START", "0"))
KEYS = sorted(k for k in SCHEMA if k != "simulate")  # a simulate block would generate a cohort
TOKENS = ["", "-1", "0", "1", "2.5", "1e309", ".nan", "-.inf", "[1, 2]", "{a: 1}", "yes", "'x'", "null", "~",
          "caf\xe9", "'  '", "missing/file.tsv", "panels", "gt.tsv", "chrom_store", "0x1F", "1_000", "!!binary AA==",
          "*anchor", "&a 3", "- 1", "'cuda'", "cuda", "auto", "mixture", "align", "sin2", "02_gaussian_hmm"]
CELL_VALUES = ["", "NA", "-1", "0", "1", "2", "0.5", "yes", "1e3", " ", "SRR000", "\r", "nan", "inf", "-0"]


class ReachedStage(Exception):
    """Raised in place of a notebook: the runner accepted every input."""


# ----------------------------------------------------------------------------- the valid cohort
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_base")
    counts, _ = make_counts()
    ids = [f"SRR{i:03d}" for i in range(N_SAMPLES)]
    write_raw_store(root / "chrom_store", counts, ids, chrom_bins(), {"unit": "read_counts"})
    pc, _ = make_counts(N_SAMPLES, N_PLASMID_BINS, seed=1)
    write_raw_store(root / "plasmid_store", pc, ids, plasmid_bins(), {"unit": "read_counts"})
    panels = write_panels(root / "panels")
    rng = np.random.default_rng(7)
    (root / "gt.tsv").write_text("sample_id\tfamA\n" + "".join(f"{s}\t{rng.integers(0, 2)}\n" for s in ids))
    (root / "kleborate.tsv").write_text("sample_id\tblaSHV\n" + "".join(f"{s}\t{rng.integers(1, 4)}\n" for s in ids))
    (root / "meta.tsv").write_text("sample_id\tSpecies\tST\n" + "".join(f"{s}\tKlebsiella pneumoniae\tST{i % 3}\n"
                                                                         for i, s in enumerate(ids)))
    (root / "holdout.txt").write_text("".join(f"{s}\n" for s in ids[:4]))
    raw = {"tier": "fuzz", "store_path": "chrom_store", "plasmid_store_path": "plasmid_store", "out_dir": "out",
           "report_dir": "reports", "kpsc_gt_path": "gt.tsv", "kpsc_kleborate_gt_path": "kleborate.tsv",
           "kpsc_meta_path": "meta.tsv", "holdout_ids_path": "holdout.txt", "epochs": 3, "batch_size": 8,
           "device": "cpu", "bootstrap_replicates": 50,
           **{k: str(Path(v).relative_to(root)) for k, v in panels.items()}}
    (root / "tier.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


# ----------------------------------------------------------------------------- mutators
def _mutate_yaml(case: Path, rng: np.random.Generator) -> str:
    path = case / "tier.yaml"
    lines = path.read_text().splitlines()
    kind = rng.choice(["value", "value", "key", "delete", "duplicate", "bytes", "truncate", "indent"])
    i = int(rng.integers(len(lines)))
    if kind == "value":
        key = lines[i].split(":", 1)[0]
        lines[i] = f"{key}: {rng.choice(TOKENS)}"
    elif kind == "key":
        lines.append(f"{rng.choice(KEYS + ['epoch', 'cnv_crr_amp', 'sin_loss_max_weight'])}: {rng.choice(TOKENS)}")
    elif kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.append(lines[i])
    elif kind == "indent":
        lines[i] = "  " + lines[i]
    text = "\n".join(lines) + "\n"
    data = text.encode("utf-8", "surrogateescape")
    if kind == "bytes":
        at = int(rng.integers(len(data)))
        data = data[:at] + bytes(rng.integers(0, 256, int(rng.integers(1, 4))).astype(np.uint8)) + data[at:]
    elif kind == "truncate":
        data = data[:int(rng.integers(len(data)))]
    path.write_bytes(data)
    return f"yaml:{kind}"


def _mutate_table(case: Path, rng: np.random.Generator) -> str:
    name = str(rng.choice(["gt.tsv", "kleborate.tsv", "meta.tsv", "holdout.txt", "panels/chrom_panel.tsv",
                           "panels/plasmid_panel.tsv", "panels/families.tsv"]))
    path = case / name
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    kind = rng.choice(["cell", "cell", "drop_field", "extra_field", "header_only", "no_header", "dup_row",
                       "unknown_ids", "bytes", "empty"])
    r = int(rng.integers(len(rows)))
    c = int(rng.integers(len(rows[r])))
    if kind == "cell":
        rows[r][c] = str(rng.choice(CELL_VALUES))
    elif kind == "drop_field" and len(rows[r]) > 1:
        del rows[r][c]
    elif kind == "extra_field":
        rows[r].append("1")
    elif kind == "header_only":
        rows = rows[:1]
    elif kind == "no_header":
        rows = rows[1:]
    elif kind == "dup_row" and len(rows) > 1:
        rows.append(rows[max(1, r)])
    elif kind == "unknown_ids":
        rows = [rows[0]] + [[f"ERR{i}", *row[1:]] for i, row in enumerate(rows[1:])]
    text = "".join("\t".join(row) + "\n" for row in rows).encode()
    if kind == "bytes":
        at = int(rng.integers(len(text)))
        text = text[:at] + b"\xff\x00\xe9" + text[at:]
    elif kind == "empty":
        text = b""
    path.write_bytes(text)
    return f"table:{name}:{kind}"


def _mutate_store(case: Path, rng: np.random.Generator) -> str:
    folder = case / str(rng.choice(["chrom_store", "plasmid_store"]))
    counts = np.load(folder / "counts.npy")
    ids = np.load(folder / "sample_ids.npy")
    bins = np.load(folder / "contigs.npy")
    kind = str(rng.choice(["zero_bytes", "truncate", "text", "float_frac", "nan", "negative", "one_d", "rows",
                           "ids_dup", "ids_empty", "ids_padded", "ids_int", "ids_object", "bins_unsorted",
                           "bins_field", "bins_start_end", "json_bad", "json_list", "delete", "int8"]))
    name = "counts.npy"
    if kind == "zero_bytes":
        (folder / name).write_bytes(b"")
    elif kind == "truncate":
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:int(rng.integers(len(data)))])
    elif kind == "text":
        (folder / name).write_text("sample\tbin\n1\t2\n")
    elif kind in ("float_frac", "nan", "negative", "int8"):
        values = counts.astype(np.int8 if kind == "int8" else np.float64)
        r, c = int(rng.integers(values.shape[0])), int(rng.integers(values.shape[1]))
        values[r, c] = {"float_frac": 2.5, "nan": np.nan, "negative": -3, "int8": -1}[kind]
        np.save(folder / name, values)
    elif kind == "one_d":
        np.save(folder / name, counts[0])
    elif kind == "rows":
        np.save(folder / name, counts[:-1])
    elif kind.startswith("ids_"):
        name = "sample_ids.npy"
        new = ids.astype(object if kind == "ids_object" else ids.dtype)
        i = int(rng.integers(len(new)))
        if kind == "ids_dup":
            new[i] = new[(i + 1) % len(new)]
        elif kind == "ids_empty":
            new[i] = ""
        elif kind == "ids_padded":
            new = np.array([f"{s} " for s in ids])
        elif kind == "ids_int":
            new = np.arange(len(ids))
        np.save(folder / name, new, allow_pickle=True)
    elif kind.startswith("bins_"):
        name = "contigs.npy"
        new = bins.copy()
        if kind == "bins_unsorted":
            new["start"][[0, 1]] = new["start"][[1, 0]]
            new["end"][[0, 1]] = new["end"][[1, 0]]
        elif kind == "bins_start_end":
            new["start"][3] = new["end"][3] + 10
        else:
            new = np.zeros(len(bins), dtype=[("contig", "U8"), ("begin", "<i8")])
        np.save(folder / name, new)
    elif kind == "json_bad":
        (folder / "store.json").write_text("{unit: read")
    elif kind == "json_list":
        (folder / "store.json").write_text("[1, 2]")
    elif kind == "delete":
        (folder / str(rng.choice(["counts.npy", "sample_ids.npy", "contigs.npy"]))).unlink()
    return f"store:{folder.name}:{kind}"


MUTATORS = (_mutate_yaml, _mutate_table, _mutate_store)


# ----------------------------------------------------------------------------- one case
def _partial_artefacts(out: Path) -> list[str]:
    """Temporary names or unparsable JSON/YAML left in ``out`` (and its subfolders)."""
    bad = [str(p) for folder in (out, out / "manifests", out / "notebooks") for p in registered_leftovers(folder)]
    for path in out.rglob("*"):
        if path.suffix in (".json", ".yaml") and path.is_file():
            try:
                (json.loads if path.suffix == ".json" else yaml.safe_load)(path.read_text())
            except Exception as exc:  # noqa: BLE001 - any parse failure is a finding
                bad.append(f"{path}: {exc}")
    return bad


def run_case(base: Path, root: Path, number: int, capsys) -> tuple[str, str, str]:
    """Mutate a copy of ``base`` (seeded by ``number``) and run; returns ``(mutation, outcome, detail)``."""
    rng = np.random.default_rng(number)
    case = root / f"case{number}"
    shutil.copytree(base, case)
    mutation = "+".join(MUTATORS[int(i)](case, rng) for i in
                        rng.choice(len(MUTATORS), size=int(rng.integers(1, 3)), replace=False))
    capsys.readouterr()
    try:
        code = cli.main(["run", str(case / "tier.yaml"), "--stages", "01"])
    except ReachedStage:
        outcome, detail = "accepted", ""
    except SystemExit as exc:
        outcome, detail = "finding", f"SystemExit {exc.code}"
    except Exception:  # noqa: BLE001 - an escaped exception is exactly what the fuzz looks for
        outcome, detail = "finding", traceback.format_exc(limit=4)
    else:
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[cnvrock")]
        if code == 2 and len(lines) == 1 and lines[0].startswith("cnvrock run: error: ") and "Traceback" not in err:
            outcome, detail = "error 2", lines[0]
        else:
            outcome, detail = "finding", f"exit {code}: {err[-1500:]}"
    partial = _partial_artefacts(case / "out")
    if partial:
        outcome, detail = "finding", f"partial artefacts: {partial}"
    if outcome == "error 2" and (case / "out" / "medians.npy").exists():
        outcome, detail = "finding", "refused after work had started"
    shutil.rmtree(case, ignore_errors=True)
    return mutation, outcome, detail


def test_fuzz_inputs_give_one_line_errors_or_are_accepted(base, tmp_path, monkeypatch, capsys):
    def reached(*args, **kwargs):
        raise ReachedStage()

    monkeypatch.setattr(R, "_execute", reached)
    monkeypatch.setattr(R, "build_index", lambda *a, **k: None, raising=False)
    results = [run_case(base, tmp_path, n, capsys) for n in range(START, START + CASES)]
    tally = Counter(outcome for _, outcome, _ in results)
    with capsys.disabled():
        print(f"\nfuzz cases {START}..{START + CASES - 1}: {dict(tally)}")
        kinds = Counter(part.split(":")[0] + ":" + part.split(":")[-1] for m, _, _ in results for part in m.split("+"))
        print(f"mutations: {len(kinds)} kinds, most common {kinds.most_common(5)}")
    findings = [(START + i, m, d) for i, (m, o, d) in enumerate(results) if o == "finding"]
    assert not findings, "\n\n".join(f"case {n} ({m}):\n{d}" for n, m, d in findings[:5])
    assert tally["accepted"] + tally["error 2"] == CASES
