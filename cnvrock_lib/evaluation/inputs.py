"""Stage 04 inputs: the ground-truth tables (AMRFinder presence, Kleborate blaSHV counts), the
metadata, and the stage-03 call tables, each checked with errors that name file, column and row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import artefacts as A
from ..errors import InputError
from ..reference import read_tsv

MISSING_TOKENS = {"", "na", "nan", "n/a", "none", "null", "-"}


UNKNOWN = "unknown"


METADATA_COLUMNS = ("Species", "ST")


def _text_to_numbers(frame: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series, int | None]:
    """A text column as (stripped text, float with NaN for missing tokens, row of the first non-number or None)."""
    raw = frame[column].astype(str).str.strip()
    missing = raw.str.lower().isin(MISSING_TOKENS)
    numbers = pd.to_numeric(raw.where(~missing), errors="coerce")
    bad = numbers.isna() & ~missing
    first_bad = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else None
    return raw, numbers, first_bad


def _parse_numbers(frame: pd.DataFrame, column: str, path, what: str, allow_missing_code: bool = True,
                   kind: str = "number") -> pd.Series:
    """Text column -> float (NaN = missing); non-numeric or negative values raise InputError.

    ``kind`` ``"presence"`` also requires 0 or 1; ``"count"`` requires whole numbers (copies).
    """
    raw, numbers, i = _text_to_numbers(frame, column)
    if i is not None:
        raise InputError(f"{what} {path}: column {column!r}, sample {frame['sample_id'].iloc[i]!r} has "
                         f"value {raw.iloc[i]!r}; expected a number (0/1 or a copy count) or empty for missing")
    if allow_missing_code:
        numbers = numbers.where(numbers != -1)  # −1 is the pipeline's own "missing" code
    negative = numbers < 0
    if negative.any():
        i = int(np.flatnonzero(negative.to_numpy())[0])
        raise InputError(f"{what} {path}: column {column!r}, sample {frame['sample_id'].iloc[i]!r} has "
                         f"value {raw.iloc[i]!r}; expected a non-negative number (or empty/-1 for missing)")
    if kind == "presence":
        wrong, expected = ~numbers.isna() & ~numbers.isin([0, 1]), "0 or 1 (family presence) or empty/-1 for missing"
    elif kind == "count":
        wrong, expected = ~numbers.isna() & (numbers != np.round(numbers)), "a whole copy count or empty/-1 for missing"
    else:
        wrong, expected = pd.Series(False, index=numbers.index), ""
    if wrong.any():
        i = int(np.flatnonzero(wrong.to_numpy())[0])
        raise InputError(f"{what} {path}: column {column!r}, sample {frame['sample_id'].iloc[i]!r} has "
                         f"value {raw.iloc[i]!r}; expected {expected}")
    return numbers.astype(np.float64)


def _check_unique_ids(frame: pd.DataFrame, path, what: str) -> None:
    frame["sample_id"] = frame["sample_id"].astype(str).str.strip()
    dup = frame["sample_id"].duplicated()
    if dup.any():
        raise InputError(f"{what} {path}: sample_id {frame.loc[dup, 'sample_id'].iloc[0]!r} appears more than "
                         f"once; expected one row per sample")
    empty = frame["sample_id"] == ""
    if empty.any():
        raise InputError(f"{what} {path}: row {int(np.flatnonzero(empty.to_numpy())[0]) + 2} has an empty sample_id")


@dataclass
class GroundTruth:
    """GT values per sample (index ``sample_id``; columns genes/families; float, NaN missing).

    ``modes`` maps each gene to its scoring mode and ``sources`` to the file it came from.
    """

    values: pd.DataFrame
    modes: dict[str, str]
    sources: dict[str, str]


def load_ground_truth(gt_path: str | Path | None, kleborate_path: str | Path | None = None,
                      count_genes: tuple[str, ...] = ("blaSHV",)) -> GroundTruth:
    """Read the AMRFinder GT (0/1 family presence) and the optional Kleborate copy counts.

    A Kleborate column named in ``count_genes`` (blaSHV: assembly copy count)
    overrides the AMRFinder column and puts the gene in ``amp`` mode (positive
    = ≥ 2 copies); every other GT column is scored in ``presence`` mode.
    Samples of either file are kept (outer join); a value a file lacks is missing.
    """
    tables, modes, sources = [], {}, {}
    if gt_path:
        gt = read_tsv(gt_path, ["sample_id"], "AMRFinder ground truth")
        _check_unique_ids(gt, gt_path, "AMRFinder ground truth")
        genes = [c for c in gt.columns if c not in ("sample_id", "biosample")]
        values = pd.DataFrame({g: _parse_numbers(gt, g, gt_path, "AMRFinder ground truth", kind="presence")
                               for g in genes})
        values.index = pd.Index(gt["sample_id"], name="sample_id")
        tables.append(values)
        modes.update({g: "presence" for g in genes})
        sources.update({g: "AMRFinder" for g in genes})
    if kleborate_path:
        kl = read_tsv(kleborate_path, ["sample_id"], "Kleborate ground truth")
        _check_unique_ids(kl, kleborate_path, "Kleborate ground truth")
        genes = [g for g in count_genes if g in kl.columns]
        if genes:
            values = pd.DataFrame({g: _parse_numbers(kl, g, kleborate_path, "Kleborate ground truth", kind="count")
                                   for g in genes})
            values.index = pd.Index(kl["sample_id"], name="sample_id")
            if tables:
                tables[0] = tables[0].drop(columns=[g for g in genes if g in tables[0].columns])
            tables.append(values)
            modes.update({g: "amp" for g in genes})
            sources.update({g: "Kleborate" for g in genes})
    if not tables:
        raise InputError("no ground truth to evaluate against: set kpsc_gt_path (AMRFinder family presence) "
                         "and/or kpsc_kleborate_gt_path (with a blaSHV copy-count column)")
    values = tables[0] if len(tables) == 1 else tables[0].join(tables[1], how="outer")
    values.index.name = "sample_id"
    return GroundTruth(values.sort_index(), modes, sources)


def load_metadata(meta_path: str | Path | None) -> pd.DataFrame:
    """Metadata ``Species ST`` indexed by ``sample_id`` (empty strings become NaN)."""
    if not meta_path:
        return pd.DataFrame(columns=list(METADATA_COLUMNS), index=pd.Index([], name="sample_id"), dtype=object)
    meta = read_tsv(meta_path, ["sample_id", *METADATA_COLUMNS], "metadata")
    _check_unique_ids(meta, meta_path, "metadata")
    meta = meta.set_index("sample_id")[list(METADATA_COLUMNS)]
    return meta.apply(lambda col: col.str.strip().replace("", np.nan))


def _parse_calls(frame: pd.DataFrame, path, what: str) -> pd.Series:
    raw = frame["call"].astype(str).str.strip()
    codes = pd.to_numeric(raw, errors="coerce")
    bad = ~codes.isin([-1, 0, 1, 2])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{what} {path}: sample {frame['sample_id'].iloc[i]!r}, gene {frame['gene'].iloc[i]!r} "
                         f"has call {raw.iloc[i]!r}; expected -1, 0, 1 or 2")
    return codes.astype(np.int64)


def _parse_values(frame: pd.DataFrame, column: str, path, what: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    raw, numbers, i = _text_to_numbers(frame, column)
    if i is not None:
        raise InputError(f"{what} {path}: sample {frame['sample_id'].iloc[i]!r}, gene {frame['gene'].iloc[i]!r} "
                         f"has {column}={raw.iloc[i]!r}; expected a number (copies) or empty")
    return numbers.astype(np.float64)


def load_predictions(out_dir: str | Path, families: dict[str, list[str]]) -> tuple[pd.DataFrame, list[str]]:
    """Stage-03 calls in long form ``sample_id gene kind call value value_name status species``.

    Chromosomal genes come from ``gene_calls.tsv`` (value = CRR); plasmid genes
    from the family-level rows of ``plasmid_gene_calls.tsv`` (value = PCN). A
    family without family-level rows is rebuilt from its members (call = the
    highest callable member call, PCN = the sum of member PCNs) and noted.
    Returns the table and notes.
    """
    out_dir = Path(out_dir)
    notes: list[str] = []
    chrom_path = A.GENE_CALLS.path(out_dir)
    if not chrom_path.is_file():
        raise InputError(f"gene_calls.tsv not found in {out_dir}; run stage 03 (03_call.ipynb) first")
    parts = []
    chrom = read_tsv(chrom_path, ["sample_id", "gene", "call"], "chromosomal gene calls")
    parts.append(_calls_frame(chrom, chrom_path, "chromosomal gene calls", "chromosome", "crr"))
    plasmid_path = A.PLASMID_CALLS.path(out_dir)
    if plasmid_path.is_file():
        plasmid = read_tsv(plasmid_path, ["sample_id", "gene", "call"], "plasmid gene calls")
        if "level" not in plasmid.columns:  # legacy: one row per gene, family names mark families
            plasmid["level"] = np.where(plasmid["gene"].isin(list(families)), "family", "member")
        fam_rows = plasmid[plasmid["level"].str.strip() == "family"]
        fam = _calls_frame(fam_rows, plasmid_path, "plasmid gene calls", "plasmid", "pcn")
        members = plasmid[plasmid["level"].str.strip() != "family"]
        rebuilt = _families_from_members(members, plasmid_path, families, set(fam["gene"]))
        if not rebuilt.empty:
            notes.append(f"families rebuilt from member calls (no family-level rows): "
                         f"{', '.join(sorted(rebuilt['gene'].unique()))}")
        parts += [fam, rebuilt]
    else:
        notes.append("plasmid_gene_calls.tsv not found: plasmid families not evaluated")
    calls = pd.concat([p for p in parts if not p.empty], ignore_index=True) if any(
        not p.empty for p in parts) else parts[0]
    dup = calls.duplicated(["sample_id", "gene"])
    if dup.any():
        row = calls[dup].iloc[0]
        raise InputError(f"calls in {out_dir}: sample {row.sample_id!r} has more than one call for gene "
                         f"{row.gene!r}; expected one row per sample and gene (per level)")
    return calls, notes


def _calls_frame(frame: pd.DataFrame, path, what: str, kind: str, value_name: str) -> pd.DataFrame:
    frame = frame.copy()
    frame["sample_id"] = frame["sample_id"].astype(str).str.strip()
    return pd.DataFrame({
        "sample_id": frame["sample_id"].to_numpy(),
        "gene": frame["gene"].astype(str).str.strip().to_numpy(),
        "kind": kind,
        "call": _parse_calls(frame, path, what).to_numpy(),
        "value": _parse_values(frame, value_name, path, what).to_numpy(),
        "value_name": value_name.upper(),
        "status": (frame["status"].astype(str).str.strip() if "status" in frame.columns
                   else pd.Series("", index=frame.index)).to_numpy(),
        "species": (frame["species"].astype(str).str.strip().replace("", np.nan) if "species" in frame.columns
                    else pd.Series(np.nan, index=frame.index, dtype=object)).to_numpy(),
        # the absent threshold the caller applied (plasmid rows; copies)
        "threshold": pd.to_numeric(frame["absent_threshold"], errors="coerce").to_numpy(dtype=np.float64)
        if "absent_threshold" in frame.columns else np.nan,
    })


def _families_from_members(members: pd.DataFrame, path, families: dict[str, list[str]],
                           have: set[str]) -> pd.DataFrame:
    member_of = {m: fam for fam, ms in families.items() if fam not in have for m in ms}
    members = members[members["gene"].str.strip().isin(list(member_of))]
    if members.empty:
        return pd.DataFrame()
    frame = _calls_frame(members, path, "plasmid gene calls", "plasmid", "pcn")
    frame["gene"] = frame["gene"].map(member_of)
    # −1 calls must not win a max over callable members
    frame["callable_call"] = frame["call"].where(frame["call"] >= 0)
    grouped = frame.groupby(["sample_id", "gene"], sort=True)
    out = grouped.agg(call=("callable_call", "max"), value=("value", lambda v: v.sum(min_count=1)),
                      status=("status", "first"), species=("species", "first"),
                      threshold=("threshold", "max")).reset_index()
    out["call"] = out["call"].fillna(-1).astype(np.int64)
    out["kind"] = "plasmid"
    out["value_name"] = "PCN"
    return out[["sample_id", "gene", "kind", "call", "value", "value_name", "status", "species", "threshold"]]
