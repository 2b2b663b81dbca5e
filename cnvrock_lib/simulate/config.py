"""Simulator settings: module-wide constants and the cohort-level :class:`SimConfig`."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from ..errors import ParamsError

SIMULATOR_VERSION = 1
WORLD_SEED = 11286  # the reference world: the one every existing tier and test simulates
BLOCK = 256  # samples per noise block (fixed so counts do not depend on chunking)
SPECIES = ("Klebsiella pneumoniae", "Klebsiella quasipneumoniae", "Klebsiella variicola")
CG258 = ("ST258", "ST11", "ST512", "ST340", "ST437")
AMRFINDER_COLUMNS = ("blaSHV", "blaKPC", "blaNDM", "blaCTX-M", "qnrB", "blaOXA-48-like", "aac6-Ib-cr")



@dataclass(frozen=True)
class SimConfig:
    """Cohort-level settings; ``hard=True`` and ``**overrides`` change them (see docs/simulation.md).

    Ranges are (low, high). Depth in x coverage, rates are fractions of samples.
    """

    depth_range: tuple = (40.0, 200.0)          # x coverage of normal samples
    read_lengths: tuple = (100, 125, 150)       # bp, one per sequencing batch
    insert_range: tuple = (300.0, 550.0)        # bp, mean insert size per batch
    n_batches: int = 10
    ori_ter_range: tuple = (1.0, 2.5)           # ori/ter depth ratio
    ori_ter_beta: tuple = (2.0, 4.0)            # Beta shape of the ratio within its range
    gc_strength: float = 1.0                    # multiplies every batch GC-bias curvature
    smooth_sd_range: tuple = (0.02, 0.06)       # log-scale sd of the neighbour-correlated wave
    smooth_rho_range: tuple = (0.6, 0.9)        # lag-1 correlation of that wave (1 kb bins)
    nb_phi_range: tuple = (0.002, 0.010)        # negative-binomial dispersion (var = mu + phi mu^2)
    outlier_rate: float = 2e-4                  # per sample x bin
    species_weights: tuple = (0.86, 0.08, 0.06)  # Kp, Kq, Kv
    shv_amp_rate: float = 0.035                 # share of K. pneumoniae with a blaSHV amplification
    shv_cn_decay: float = 0.55                  # P(CN = k) ~ decay^(k - 2), k = 2..10
    shv_nonint_rate: float = 0.3                # amplified samples with a non-integer population mean
    shv_subclonal_rate: float = 0.0             # amplified samples carried by a subclone (mean 1.2-2)
    other_amp_rate: float = 0.03                # other chromosomal amplifications (10-300 kb, CN 2-3)
    private_del_rate: float = 0.10              # samples with private deletions (5-50 kb)
    plasmid_shv_rate: float = 0.04              # samples with a plasmid-borne blaSHV copy
    sporadic_plasmid_rate: float = 0.01         # per plasmid type, outside lineage associations
    tandem_dup_rate: float = 0.03               # gene carriages duplicated in tandem on the plasmid
    mixed_rate: float = 0.02                    # samples with a minority strain
    minority_range: tuple = (0.05, 0.30)        # minority strain fraction
    low_quality_rate: float = 0.01              # very low depth and/or contamination-like noise
    gt_fn_rate: float = 0.03                    # AMRFinder label noise, present -> absent
    gt_fp_rate: float = 0.005                   # AMRFinder label noise, absent -> present
    kleborate_noise_rate: float = 0.03          # blaSHV copy count off by one
    holdout_fraction: float = 0.25
    empty_st_rate: float = 0.0                  # extra ST erasure on top of the novel lineages
    library_mix: tuple = (0.45, 0.35, 0.20)     # batch library types PCR / Nextera / PCR-free (sums to 1)
    kleborate_collapse_rate: float = 0.0        # amplified blaSHV counted once (tandem copies collapsed)

    @classmethod
    def make(cls, hard: bool = False, world: dict | None = None, **overrides) -> "SimConfig":
        """Defaults, a world's defaults (``world``), the hard preset, then ``overrides`` (validated).

        The hard preset is relative to the world: depth range x (15/40, 60/200) (at least 8x and
        12x), GC-bias strength x 2.5, mixed and low-quality shares at least 5 % and 3 %; for the
        reference world this is depth 15-60x and strength 2.5, as it always was.
        """
        cfg = dataclasses.replace(cls(), **(world or {}))
        if hard:
            lo, hi = cfg.depth_range
            cfg = dataclasses.replace(
                cfg, depth_range=(max(8.0, lo * 15 / 40), max(12.0, hi * 60 / 200)), gc_strength=cfg.gc_strength * 2.5,
                ori_ter_range=(1.3, 3.0), ori_ter_beta=(3.0, 3.0), smooth_sd_range=(0.04, 0.10),
                nb_phi_range=(0.005, 0.02), shv_subclonal_rate=0.4, shv_nonint_rate=0.5,
                mixed_rate=max(cfg.mixed_rate, 0.05), low_quality_rate=max(cfg.low_quality_rate, 0.03),
                gt_fn_rate=0.05, gt_fp_rate=0.01)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        clean = {}
        for key, value in overrides.items():
            if key not in fields:
                match = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
                hint = f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(fields)}"
                raise ParamsError(f"simulate: unknown setting '{key}'{hint}")
            default = getattr(cfg, key)
            if isinstance(default, tuple):
                if not isinstance(value, (list, tuple)) or len(value) != len(default) or \
                        not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                    raise ParamsError(f"simulate: setting '{key}' = {value!r}; expected a list of "
                                      f"{len(default)} numbers like {list(default)}")
                value = tuple(type(d)(v) for d, v in zip(default, value))
                if key.endswith("_range") and not 0 <= value[0] <= value[1]:
                    raise ParamsError(f"simulate: setting '{key}' = {list(value)}; expected 0 <= low <= high")
                if key == "library_mix" and (min(value) < 0 or abs(sum(value) - 1) > 1e-6):
                    raise ParamsError(f"simulate: setting '{key}' = {list(value)}; expected 3 shares >= 0 "
                                      f"that sum to 1")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ParamsError(f"simulate: setting '{key}' = {value!r}; expected a positive integer")
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ParamsError(f"simulate: setting '{key}' = {value!r}; expected a number >= 0")
                value = float(value)
            clean[key] = value
        return dataclasses.replace(cfg, **clean)


