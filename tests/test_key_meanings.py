"""One key, one meaning: ``hmm_low_cov_threshold`` keeps its seed meaning (stage 02 masks bins of low
*expected* depth); the VAE's low-coverage bins and the plasmid caller's low-depth samples have keys of
their own (``vae_min_bin_median``, ``pcn_min_chrom_depth``)."""

from __future__ import annotations

import numpy as np
import pytest

from cnvrock_lib import calling, training
from cnvrock_lib.errors import InputError
from test_call import _row, build_cohort
from test_train import cohort, make_params  # noqa: F401  (fixture)


def test_vae_min_bin_median_not_hmm_low_cov_threshold_selects_the_vae_bins(cohort, tmp_path):  # noqa: F811
    with pytest.raises(InputError, match=r"no bin has a median training count >= vae_min_bin_median \(1000000000.0 reads\)"):
        training.train_vae(make_params(cohort, tmp_path / "a", epochs=1, vae_min_bin_median=1e9),
                           progress=False, log=lambda m: None)
    # the stage-02 key no longer empties the VAE loss
    result = training.train_vae(make_params(cohort, tmp_path / "b", epochs=1, hmm_low_cov_threshold=1e9),
                                progress=False, log=lambda m: None)
    assert result.summary["n_masked_bins"] < result.summary["n_bins"]


def test_pcn_min_chrom_depth_not_hmm_low_cov_threshold_makes_plasmid_calls_low_depth(tmp_path):
    strict = calling.stage.call_genes(build_cohort(tmp_path / "a", pcn_min_chrom_depth=1e6))
    assert set(strict.plasmid_calls.status) == {"low_depth"}
    assert (strict.plasmid_calls.call == -1).all()
    loose = calling.stage.call_genes(build_cohort(tmp_path / "b", hmm_low_cov_threshold=1e6))
    assert _row(loose.plasmid_calls, "amp", "famA", "family").status == "ok"
    assert np.isfinite(_row(loose.plasmid_calls, "amp", "famA", "family").pcn)
