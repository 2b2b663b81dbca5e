"""Gene-neighbourhood fill (vae_gene_fill): the expected depth around a panel gene comes from the sample's own
flank, so an amplicon that the decoder has learned cannot hide in the expected depth."""

import numpy as np
import pandas as pd
import pytest

from cnvrock_lib import normalise, reference
from cnvrock_lib.errors import ParamsError
from cnvrock_lib.training.fill import NeighbourhoodFill, neighbourhoods

N_BINS = 200  # 1 kb bins on one contig
GENE = pd.DataFrame({"gene": ["g1"], "contig": ["chr"], "start": [100_201], "end": [101_100]})  # bins 100-101


def _bins():
    return reference.make_bins({"chr": N_BINS * 1000})


def _x(relative: np.ndarray) -> np.ndarray:
    """Normalised log depth of relative depth (reads / sample median)."""
    return np.log2(relative + 1.0).astype(np.float32)


def _copy_ratio(observed_rel: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    medians = np.ones(observed_rel.shape[0])
    return observed_rel / normalise.expected_counts(x_hat, medians)


def test_neighbourhood_runs_and_flanks():
    (hood,) = neighbourhoods(_bins(), GENE, 10_000)
    assert (hood.lo, hood.hi) == (90, 112)  # 90,201-111,100 bp, by overlap
    assert hood.left.tolist() == list(range(80, 90)) and hood.right.tolist() == list(range(112, 122))
    with pytest.raises(ParamsError, match="vae_gene_mask_padding"):
        neighbourhoods(_bins(), GENE, 0)


@pytest.mark.parametrize("mode", ["expected", "observed"])
def test_an_absorbed_amplicon_is_reconstructed_at_the_flank_level(mode):
    """A decoder that reproduces a 3-copy amplicon hides it (copy ratio 1); the fill brings back ratio 3."""
    rng = np.random.default_rng(0)
    shape = rng.uniform(0.6, 1.4, N_BINS)                # the cohort's per-bin profile (relative depth)
    profile = _x(shape)
    level = np.array([1.0, 1.3])                          # two samples, the second 1.3x deeper locally
    observed = shape[None, :] * level[:, None]
    observed[:, 95:106] *= 3.0                            # amplicon around the gene, inside the neighbourhood
    x_hat = _x(observed)                                  # the decoder learned the amplicon: it is "expected"
    fill = NeighbourhoodFill(mode, tuple(neighbourhoods(_bins(), GENE, 10_000)), np.ones(N_BINS, bool))

    before = _copy_ratio(observed, x_hat)
    after = _copy_ratio(observed, fill.apply(x_hat, _x(observed), profile))
    np.testing.assert_allclose(before[:, 95:106], 1.0, rtol=1e-4)      # without the fill: hidden
    np.testing.assert_allclose(after[:, 95:106], 3.0, rtol=1e-4)       # with it: 3 copies show
    np.testing.assert_allclose(after[:, 90:95], 1.0, rtol=1e-4)        # unamplified neighbourhood bins stay at 1
    np.testing.assert_array_equal(after[:, :90], before[:, :90])       # outside the neighbourhood: untouched
    np.testing.assert_array_equal(after[:, 112:], before[:, 112:])
    assert fill.n_bins == 22


def test_flank_levels_are_interpolated_and_a_missing_side_takes_the_other():
    profile = _x(np.ones(N_BINS))
    rel = np.ones((1, N_BINS))
    rel[0, 112:] = 2.0                                     # right flank twice as deep (e.g. a gradient step)
    hood = neighbourhoods(_bins(), GENE, 10_000)
    filled = normalise.expected_counts(NeighbourhoodFill("observed", tuple(hood), np.ones(N_BINS, bool))
                                       .apply(_x(rel), _x(rel), profile), np.ones(1))[0]
    assert filled[90] == pytest.approx(2 ** (0.5 / 22), rel=1e-4)         # left edge: the left level (1x) ...
    assert filled[111] == pytest.approx(2 ** (21.5 / 22), rel=1e-4)       # ... rising to the right one (2x)
    assert np.all(np.diff(filled[90:112]) > 0)
    usable = np.ones(N_BINS, bool)
    usable[80:90] = False                                  # left flank not usable: the right level everywhere
    one_sided = normalise.expected_counts(NeighbourhoodFill("observed", tuple(hood), usable)
                                          .apply(_x(rel), _x(rel), profile), np.ones(1))[0]
    np.testing.assert_allclose(one_sided[90:112], 2.0, rtol=1e-4)


def test_unknown_mode_is_refused():
    with pytest.raises(ParamsError, match="vae_gene_fill"):
        NeighbourhoodFill("decoder", (), np.ones(N_BINS, bool))
