"""The pure cores of stage 03: arrays and frames in, call tables out, no file I/O.

:func:`call_chromosomal` applies the chromosomal rule (SPEC §7.1) with bootstrap intervals to
every sample × panel gene; :func:`call_plasmid` computes member and family PCN, learns or fixes
their absent thresholds and calls them (SPEC §7.2). The driver (:mod:`.stage`) reads the
artefacts and stores and writes the tables; case mode and the benchmarks call these directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..geometry import flank_bin_indices, gene_bin_weights
from ..copy_number import AMP_MIN_STATE, CHROM_LABELS, CN0_STATE, CN_STATES, PLASMID_LABELS
from ..params import Params
from . import decision as D
from .chromosomal import ChromRule, chromosomal_call, crr, flank_baseline, state_cover
from .intervals import bootstrap_crr, bootstrap_interval, count_dispersion, poisson_interval
from .plasmid import (MIN_BACKBONE_BIN_BP, PlasmidRegion, backbone_pcn, chromosome_depth_per_bp, pcn,
                      pcn_call_confidence, plasmid_call)
from .thresholds import COHORT_CARRIER_MIN, THRESHOLD_COLUMNS, threshold_table

GENE_CALL_COLUMNS = ["sample_id", "gene", "call", "label", "crr", "crr_lo", "crr_hi", "confidence",
                     "status", "n_gene_bins", "n_usable_bins", "species", "call_rule", "dosage_origin",
                     "interval_kind"]
PLASMID_CALL_COLUMNS = ["sample_id", "gene", "level", "call", "label", "pcn", "pcn_lo", "pcn_hi",
                        "confidence", "status", "backbone_pcn", "absent_threshold", "threshold_method",
                        "call_rule", "interval_kind"]
# interval_kind values: what the 95 % interval accounts for
CRR_INTERVAL_KIND = "bootstrap+model_error"
PCN_INTERVAL_KIND = "counting+model_error"


@dataclass(frozen=True)
class ChromConfig:
    """What the chromosomal core needs from the params."""

    rule: ChromRule
    flank_padding: int            # cnv_flank_padding (bp)
    bootstrap_replicates: int
    seed: int
    eval_species: dict            # gene -> species for which it is callable
    call_rule: str = "cohort_dosage"   # chrom_call_rule: cohort_dosage | original

    @classmethod
    def from_params(cls, params: Params) -> "ChromConfig":
        return cls(ChromRule.from_params(params), int(params.cnv_flank_padding), int(params.bootstrap_replicates),
                   int(params.seed), dict(params.eval_species), str(params.chrom_call_rule))


@dataclass(frozen=True)
class PlasmidConfig:
    """What the plasmid core needs from the params."""

    absent_threshold: float       # pcn_absent_threshold (copies), for genes without their own
    amp_threshold: float          # pcn_amp_threshold (copies)
    threshold_method: str         # cohort_gmm | fixed | mixture | supervised
    min_chrom_depth: float        # samples below this median chromosome depth (reads per bin) are uncallable

    @classmethod
    def from_params(cls, params: Params) -> "PlasmidConfig":
        return cls(float(params.pcn_absent_threshold), float(params.pcn_amp_threshold),
                   str(params.pcn_threshold_method), float(params.hmm_low_cov_threshold))


def _round(frame: pd.DataFrame, cols: list[str], digits: int = 5) -> pd.DataFrame:
    for c in cols:
        frame[c] = frame[c].astype(float).round(digits)
    return frame


def species_callable(gene: str, species: np.ndarray, eval_species: dict) -> np.ndarray:
    """True where the gene is callable for the sample's species; unknown species ('') are callable."""
    allowed = eval_species.get(gene)
    if allowed is None:
        return np.ones(len(species), dtype=bool)
    allowed = {a.strip() for a in allowed}
    return np.array([(s == "") or (s in allowed) for s in species], dtype=bool)


def call_chromosomal(sample_ids: np.ndarray, counts: np.ndarray, bins: np.ndarray, ratios: np.ndarray,
                     states: np.ndarray, posteriors: np.ndarray, qc_pass: np.ndarray, species: np.ndarray,
                     genes: pd.DataFrame, config: ChromConfig) -> pd.DataFrame:
    """Chromosomal gene calls (SPEC §7.1) for every sample × gene: the ``gene_calls.tsv`` table.

    Parameters
    ----------
    sample_ids : (n,) the store's samples.
    counts : (n, n_bins) reads per bin (a memory-map is fine: only gene and flank columns are read).
    bins : the store's bins.
    ratios, states, posteriors : (n, n_bins) stage-02 copy ratios (NaN masked), state indices, posteriors.
    qc_pass : (n,) bool, stage-02 sample QC.
    species : (n,) species per sample ('' unknown).
    genes : panel rows ``gene contig start end`` (bp, 1-based inclusive).
    """
    n = len(sample_ids)
    rule = config.rule
    frames = []
    for k, gene in enumerate(genes.itertuples()):
        idx, weights = gene_bin_weights(bins, gene.contig, int(gene.start), int(gene.end))
        flank = flank_bin_indices(bins, gene.contig, int(gene.start), int(gene.end), config.flank_padding, idx)
        g_ratio = np.asarray(ratios[:, idx], dtype=np.float64)
        g_state = np.asarray(states[:, idx])
        g_post = np.asarray(posteriors[:, idx], dtype=np.float64)
        g_count = np.asarray(counts[:, idx], dtype=np.float64)
        f_ratio = np.asarray(ratios[:, flank], dtype=np.float64)
        f_count = np.asarray(counts[:, flank], dtype=np.float64)
        value, n_usable = crr(g_ratio, weights, f_ratio)
        usable = np.isfinite(g_ratio)
        amp_cover = state_cover(g_state, usable, weights, tuple(range(AMP_MIN_STATE, len(CN_STATES))))
        absent_cover = state_cover(g_state, usable, weights, (CN0_STATE,))
        call = chromosomal_call(value, n_usable, amp_cover, absent_cover, rule)
        species_ok = species_callable(gene.gene, species, config.eval_species)
        status = np.where(~species_ok, "species_excluded",
                          np.where(~qc_pass, "qc_fail", np.where(n_usable == 0, "no_usable_bins", "ok")))
        call = np.where(status == "ok", call, -1).astype(np.int8)

        lo = np.full(n, np.nan)
        hi = np.full(n, np.nan)
        confidence = np.full(n, np.nan)
        origin = np.full(n, "", dtype=object)
        ok = status == "ok"
        if ok.any():
            rng = np.random.default_rng([config.seed, 3, k])
            phi = count_dispersion(f_ratio[ok], f_count[ok])
            reps = bootstrap_crr(g_ratio[ok], g_count[ok], weights, f_ratio[ok], phi,
                                 config.bootstrap_replicates, rng)
            b_lo, b_hi = bootstrap_interval(reps)
            fit = D.fit_dosage(value[ok], b_lo, b_hi)
            lo[ok], hi[ok] = D.widen_interval(value[ok], b_lo, b_hi, fit.model_error_sd)
            w = np.where(usable[ok], weights[None, :], 0.0)
            mean_post = (w * np.nan_to_num(g_post[ok])).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
            if config.call_rule == "original":
                rep_calls = chromosomal_call(reps, n_usable[ok][:, None], amp_cover[ok][:, None],
                                             absent_cover[ok][:, None], rule)
                confidence[ok] = (rep_calls == call[ok][:, None]).mean(axis=1) * mean_post
            else:
                call[ok] = D.extra_dosage_call(value[ok], lo[ok], absent_cover[ok], fit, rule.min_cover)
                confidence[ok] = D.call_side_probability(value[ok], lo[ok], hi[ok], fit, call[ok])
            edge = flank[(flank >= idx.min() - D.ORIGIN_EDGE_BINS) & (flank <= idx.max() + D.ORIGIN_EDGE_BINS)] \
                if idx.size else flank[:0]
            baseline, _ = flank_baseline(f_ratio[ok])
            origin[ok] = D.dosage_origin(call[ok], value[ok], np.asarray(ratios[:, edge], dtype=np.float64)[ok],
                                         baseline)
        frames.append(pd.DataFrame({
            "sample_id": sample_ids, "gene": gene.gene, "call": call,
            "label": pd.Series(call).map(CHROM_LABELS).to_numpy(),
            "crr": value, "crr_lo": lo, "crr_hi": hi, "confidence": confidence, "status": status,
            "n_gene_bins": np.full(n, idx.size, dtype=np.int64), "n_usable_bins": n_usable.astype(np.int64),
            "species": species, "call_rule": config.call_rule, "dosage_origin": origin,
            "interval_kind": CRR_INTERVAL_KIND,
        }))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=GENE_CALL_COLUMNS)
    return _round(table[GENE_CALL_COLUMNS], ["crr", "crr_lo", "crr_hi", "confidence"])


@dataclass
class PlasmidInputs:
    """Plasmid-store counts aligned to the chromosome store's samples, and the panel geometry."""

    counts: np.ndarray                      # (n, n_plasmid_bins) reads; zero rows where absent
    present: np.ndarray                     # (n,) bool: the sample has plasmid counts
    regions: dict[str, PlasmidRegion]       # gene -> store columns and effective length (bp)
    contig_columns: dict[str, np.ndarray]   # contig -> its bin columns (per-bin stores; {} for legacy)
    bin_lengths: np.ndarray                 # (n_plasmid_bins,) bp
    genes: pd.DataFrame                     # panel rows (gene contig start end [absent_threshold])
    families: dict[str, list[str]]          # family -> members


def call_plasmid(sample_ids: np.ndarray, medians: np.ndarray, dispersion: np.ndarray | None,
                 inputs: PlasmidInputs, config: PlasmidConfig,
                 train_labels: dict[str, np.ndarray] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plasmid gene calls (SPEC §7.2) at member and family level, and the threshold table.

    Parameters
    ----------
    sample_ids : (n,) samples of the chromosome store (the rows of the output).
    medians : (n,) their robust median chromosome counts (reads per 1 kb bin).
    dispersion : (n,) bin-level count overdispersion φ for the PCN intervals; None = Poisson.
    train_labels : family -> (n,) int8 ground-truth labels of the TRAINING samples (1 present,
        0 absent, −1 unknown or hold-out); only ``pcn_threshold_method: supervised`` reads them.

    Returns ``(plasmid_gene_calls, pcn_thresholds)`` tables.
    """
    n = len(sample_ids)
    present = inputs.present
    depth_bp = chromosome_depth_per_bp(medians)
    low_depth = np.asarray(medians) < config.min_chrom_depth
    status = np.where(~present, "no_plasmid_counts", np.where(low_depth, "low_depth", "ok"))
    callable_ = status == "ok"

    def gather(cols: np.ndarray) -> np.ndarray:
        return np.asarray(inputs.counts[:, cols], dtype=np.float64)

    regions = inputs.regions
    member_counts = {g: gather(r.columns).sum(axis=1) for g, r in regions.items()}
    backbone = {}
    for g, r in regions.items():
        if r.contig in inputs.contig_columns:
            cols = inputs.contig_columns[r.contig]
            backbone[g] = backbone_pcn(gather(cols), inputs.bin_lengths[cols], depth_bp)
        else:
            backbone[g] = np.full(n, np.nan)

    entries = []   # (level, name, counts, length, backbone, fixed threshold)
    for row in inputs.genes.itertuples():
        thr = getattr(row, "absent_threshold", np.nan)
        thr = config.absent_threshold if thr is None or not np.isfinite(thr) else float(thr)
        r = regions[row.gene]
        entries.append(("member", row.gene, member_counts[row.gene], float(r.length_bp), backbone[row.gene], thr))
    member_thr = {e[1]: e[5] for e in entries}
    for fam, members in inputs.families.items():
        counts = np.sum([member_counts[m] for m in members], axis=0)
        length = float(np.mean([regions[m].length_bp for m in members]))
        member_pcn = np.stack([pcn(member_counts[m], regions[m].length_bp, depth_bp) for m in members])
        best = np.argmax(np.nan_to_num(member_pcn, nan=-1.0), axis=0)
        bb = np.stack([backbone[m] for m in members])[best, np.arange(n)]
        # A family is called against the most conservative of its members' thresholds.
        entries.append(("family", fam, counts, length, bb, max(member_thr[m] for m in members)))

    values = {(lvl, name): pcn(c, L, depth_bp) for lvl, name, c, L, _, _ in entries}
    fixed = {(lvl, name): thr for lvl, name, _, _, _, thr in entries}
    on_bb = {(lvl, name): D.on_backbone(values[(lvl, name)], bb) for lvl, name, _, _, bb, _ in entries}
    thresholds = threshold_table({k: v[callable_] for k, v in values.items()}, fixed,
                                 config.threshold_method, config.amp_threshold,
                                 {k: ~v[callable_] for k, v in on_bb.items()})
    if config.threshold_method == "supervised":
        family_of = {m: fam for fam, members in inputs.families.items() for m in members}
        sup = []
        for r in thresholds.itertuples():
            fam = r.gene if r.level == "family" else family_of.get(r.gene, r.gene)
            labels = (train_labels or {}).get(fam)
            fit = D.supervised_threshold(values[(r.level, r.gene)], labels, callable_) if labels is not None \
                else D.SupervisedFit(float("nan"), 0, 0, float("nan"), f"no ground-truth column {fam}")
            sup.append(fit)
        thresholds["supervised_threshold"] = [f.threshold for f in sup]
        thresholds["supervised_n_train"] = [f.n_train for f in sup]
        thresholds["supervised_train_mcc"] = [f.train_mcc for f in sup]
        thresholds["fallback_reason"] = [f.note for f in sup]
        learned = np.array([np.isfinite(f.threshold) for f in sup])
        thresholds["used_threshold"] = np.where(learned, thresholds["supervised_threshold"],
                                                thresholds["fixed_threshold"])
        thresholds["method_used"] = np.where(learned, "supervised", "fixed")
    used = {(r.level, r.gene): (r.used_threshold, r.method_used) for r in thresholds.itertuples()}
    amp = config.amp_threshold
    phi = np.ones(n) if dispersion is None else np.asarray(dispersion, dtype=np.float64)
    frames, model_sd, crosstalk = [], [], []
    excess = candidates = None
    if config.threshold_method == "cohort_gmm" and inputs.contig_columns:
        excess = D.element_excess(inputs.counts, inputs.bin_lengths, depth_bp, inputs.contig_columns)
        in_gene = np.zeros(excess.shape[1], dtype=bool)
        for r in regions.values():
            in_gene[r.columns] = True
        candidates = np.flatnonzero(~in_gene & (np.asarray(inputs.bin_lengths) >= MIN_BACKBONE_BIN_BP))
    for lvl, name, counts, length, bb, _ in entries:
        value = values[(lvl, name)]
        thr, method = used[(lvl, name)]
        call = plasmid_call(value, thr, amp)
        rule = np.full(n, "supervised:training_labels" if method == "supervised" else method, dtype=object)
        if method == "cohort_gmm":
            on = on_bb[(lvl, name)]
            rule = np.where(on, "cohort_gmm:backbone", "cohort_gmm:threshold").astype(object)
            off = callable_ & ~on
            fit = None
            if excess is not None:
                fit, res = D.fit_crosstalk(np.where(off, value, np.nan), excess, candidates)
                extra = off & D.crosstalk_carriers(value, res, fit, D.CROSSTALK_MIN_PCN) & (call == 0)
                rule = np.where(extra, "cohort_gmm:crosstalk", rule)
                on = on | extra
            crosstalk.append(fit)
            call = np.where(on & (call == 0), 1, call).astype(np.int8)
        else:
            crosstalk.append(None)
        call = np.where(callable_, call, -1).astype(np.int8)
        reads_per_copy = length * depth_bp
        c_lo, c_hi = poisson_interval(counts, dispersion=phi)
        lo, hi = c_lo / reads_per_copy, c_hi / reads_per_copy
        sd = D.pcn_model_error(value[callable_], lo[callable_], hi[callable_], bb[callable_],
                               on_bb[(lvl, name)][callable_])
        model_sd.append(sd)
        lo, hi = D.widen_interval(value, lo, hi, sd)
        lo = np.where(call == 0, 0.0, lo)          # an absent call's reads may be cross-talk only
        conf = pcn_call_confidence(counts, reads_per_copy, call, thr, amp, dispersion=phi)
        frames.append(pd.DataFrame({
            "sample_id": sample_ids, "gene": name, "level": lvl, "call": call,
            "label": pd.Series(call).map(PLASMID_LABELS).to_numpy(),
            "pcn": np.where(present, value, np.nan),
            "pcn_lo": np.where(callable_, lo, np.nan),
            "pcn_hi": np.where(callable_, hi, np.nan),
            "confidence": np.where(callable_, conf, np.nan), "status": status,
            "backbone_pcn": np.where(present, bb, np.nan), "absent_threshold": thr, "threshold_method": method,
            "call_rule": np.where(callable_, rule, ""), "interval_kind": PCN_INTERVAL_KIND,
        }))
    thresholds["pcn_model_error_sd"] = model_sd
    thresholds["crosstalk_credible"] = [bool(f.credible) if f else False for f in crosstalk]
    thresholds["crosstalk_bins"] = [",".join(map(str, f.bins)) if f else "" for f in crosstalk]
    thresholds["crosstalk_corr"] = [f.corr if f else np.nan for f in crosstalk]
    thresholds["crosstalk_residual_sd"] = [f.residual_sd if f else np.nan for f in crosstalk]
    thresholds["crosstalk_threshold"] = [f.threshold if f else np.nan for f in crosstalk]
    thresholds["n_crosstalk_carriers"] = [int((t.call_rule == "cohort_gmm:crosstalk").sum()) for t in frames]
    table = pd.concat(frames, ignore_index=True)[PLASMID_CALL_COLUMNS]
    return _round(table, ["pcn", "pcn_lo", "pcn_hi", "confidence", "backbone_pcn", "absent_threshold"]), thresholds


def empty_plasmid_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Header-only plasmid call and threshold tables (no plasmid store)."""
    return pd.DataFrame(columns=PLASMID_CALL_COLUMNS), pd.DataFrame(columns=THRESHOLD_COLUMNS)
