"""Batched Gaussian HMM: equivalence with hmmlearn, missing emissions, backends, EM."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnvrock_lib.copy_number import CN_STATES
from cnvrock_lib.hmm import GaussianHMM, uniform_transmat

hmmlearn = pytest.importorskip("hmmlearn.hmm")

BACKENDS = ["numba", "torch"]


def _reference(means, self_transition, sd, start=None):
    """An hmmlearn model with the same means, variance, transitions and start probabilities."""
    k = len(means)
    ref = hmmlearn.GaussianHMM(n_components=k, covariance_type="diag", init_params="", params="")
    ref.startprob_ = np.full(k, 1.0 / k) if start is None else np.asarray(start)
    ref.transmat_ = uniform_transmat(k, self_transition)
    ref.means_ = np.asarray(means, dtype=float)[:, None]
    ref.covars_ = np.full((k, 1), sd ** 2)
    return ref


def _simulated(rng, n, t):
    """Piecewise-constant copy ratios (CN 0/1/2/3 segments) plus Gaussian noise."""
    x = np.ones((n, t))
    for i in range(n):
        for _ in range(4):
            lo = rng.integers(0, t - 20)
            x[i, lo:lo + rng.integers(3, 60)] = rng.choice([0.0, 0.5, 2.0, 3.0])
    sd = rng.uniform(0.05, 0.35, n)
    return x + rng.standard_normal((n, t)) * sd[:, None], sd


def _random(rng, n, t):
    return rng.uniform(-0.5, 3.5, (n, t)), rng.uniform(0.2, 1.0, n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["random", "simulated"])
def test_matches_hmmlearn(backend, kind):
    rng = np.random.default_rng(7)
    x, sd = (_random if kind == "random" else _simulated)(rng, 6, 700)
    start = np.array([0.05, 0.05, 0.6, 0.1, 0.1, 0.1])
    model = GaussianHMM(CN_STATES, 0.8, start_prob=start, backend=backend, device="cpu", dtype=np.float64)
    states, post, loglik = model.decode(x, sd, posteriors="full")
    for i in range(x.shape[0]):
        ref = _reference(CN_STATES, 0.8, sd[i], start)
        ref_ll, ref_path = ref.decode(x[i][:, None], algorithm="viterbi")
        assert np.array_equal(states[i], ref_path)
        np.testing.assert_allclose(post[i], ref.predict_proba(x[i][:, None]), atol=1e-5, rtol=0)
        np.testing.assert_allclose(loglik[i], ref.score(x[i][:, None]), rtol=1e-9)
    # the posterior of the path state, as written to state_posteriors.npy
    _, path_post, _ = model.decode(x, sd, posteriors="path")
    np.testing.assert_allclose(path_post, np.take_along_axis(post, states[..., None].astype(int), 2)[..., 0])


@pytest.mark.parametrize("self_transition", [0.05, 0.5, 0.99])
def test_matches_hmmlearn_for_other_transitions(self_transition):
    # 0.05 < 1/K: the best predecessor of a state is then never itself
    rng = np.random.default_rng(3)
    x, sd = _simulated(rng, 3, 300)
    model = GaussianHMM(CN_STATES, self_transition, backend="numba")
    states, post, _ = model.decode(x, sd, posteriors="full")
    for i in range(3):
        ref = _reference(CN_STATES, self_transition, sd[i])
        assert np.array_equal(states[i], ref.decode(x[i][:, None])[1])
        np.testing.assert_allclose(post[i], ref.predict_proba(x[i][:, None]), atol=1e-5, rtol=0)


def _brute_force(logp, start, transmat):
    """Viterbi path and posteriors of one short sequence by enumerating every path."""
    t, k = logp.shape
    best, best_path = -np.inf, None
    post = np.zeros((t, k))
    total = 0.0
    for path in itertools.product(range(k), repeat=t):
        lp = np.log(start[path[0]]) + sum(np.log(transmat[a, b]) for a, b in zip(path, path[1:]))
        lp += logp[np.arange(t), path].sum()
        if lp > best:
            best, best_path = lp, path
        w = np.exp(lp)
        total += w
        post[np.arange(t), path] += w
    return np.array(best_path), post / total, np.log(total)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_emissions_match_brute_force(backend):
    rng = np.random.default_rng(11)
    means = (0.0, 1.0, 2.0)
    x = np.array([[1.1, 0.9, 9.0, 2.2, 1.9], [0.1, -9.0, 0.2, 1.0, 0.05]])
    mask = np.array([[False, False, True, False, False], [False, True, True, False, False]])
    sd = np.array([0.4, 0.6])
    model = GaussianHMM(means, 0.7, backend=backend, device="cpu")
    states, post, loglik = model.decode(x, sd, mask, posteriors="full")
    logp = model.log_emission(x, sd, mask)
    assert (logp[mask] == 0).all()
    for i in range(2):
        path, ref_post, ref_ll = _brute_force(logp[i], model.start_prob, model.transmat)
        assert np.array_equal(states[i], path)
        np.testing.assert_allclose(post[i], ref_post, atol=1e-10)
        np.testing.assert_allclose(loglik[i], ref_ll, rtol=1e-10)
    assert rng is not None


def test_masked_gap_takes_the_state_of_its_neighbours():
    rng = np.random.default_rng(5)
    t = 300
    x = 1 + 0.1 * rng.standard_normal((2, t))
    x[0, 100:200] = 0.02 * rng.standard_normal(100)  # a deletion ...
    mask = np.zeros((2, t), bool)
    mask[:, 140:160] = True  # ... with a masked stretch inside it; sample 1 is normal around its gap
    x[mask] = 7.0  # garbage under the mask must not matter
    states = GaussianHMM(CN_STATES, 0.8).viterbi(x, np.array([0.1, 0.1]), mask)
    assert (states[0, 100:200] == 0).all()
    assert (states[1] == CN_STATES.index(1.0)).all()


def test_float32_batches_and_backends_agree():
    rng = np.random.default_rng(2)
    x, sd = _simulated(rng, 9, 1500)
    mask = rng.random(x.shape) < 0.05
    base_states, base_post, base_ll = GaussianHMM(batch_size=64).decode(x, sd, mask)
    for kwargs in ({"batch_size": 2}, {"dtype": np.float32}, {"backend": "torch", "device": "cpu"},
                   {"backend": "torch", "device": "cpu", "dtype": np.float32, "batch_size": 4}):
        states, post, ll = GaussianHMM(**kwargs).decode(x, sd, mask)
        assert np.array_equal(states, base_states), kwargs
        np.testing.assert_allclose(post, base_post, atol=1e-4)
        np.testing.assert_allclose(ll, base_ll, rtol=1e-5)


def test_posteriors_sum_to_one_and_log_likelihood_is_consistent():
    rng = np.random.default_rng(4)
    x, sd = _simulated(rng, 4, 400)
    model = GaussianHMM()
    post = model.posteriors(x, sd)
    np.testing.assert_allclose(post.sum(2), 1.0, atol=1e-12)
    assert model.viterbi(x, sd).dtype == np.int8
    np.testing.assert_allclose(model.log_likelihood(x, sd), model.decode(x, sd)[2])


def test_em_moves_means_towards_the_data():
    rng = np.random.default_rng(9)
    n, t = 20, 800
    truth = np.ones((n, t))
    truth[:, 300:400] = 2.0
    x = 0.92 * truth + 0.08 * rng.standard_normal((n, t))  # baseline biased low, true sd 0.08
    model = GaussianHMM()
    record = model.fit_em(x, np.full(n, 0.3), n_iter=4)
    sd, history = record.sd, record.log_likelihood
    assert model.means_[2] == pytest.approx(0.92, abs=0.01)
    assert model.means_[4] == pytest.approx(1.84, abs=0.03)
    np.testing.assert_allclose(sd, 0.08, rtol=0.15)
    # Baum-Welch raises the likelihood (up to the small pull of the prior on the means)
    assert history[-1] > history[0]
    assert np.all(np.diff(history) > -1e-3 * abs(history[-1]))
    assert np.all(np.diff(model.means_) >= 0)
    assert model.means_[0] == pytest.approx(0.0, abs=0.05)  # unoccupied states keep their prior mean


@pytest.mark.parametrize("bad, match", [
    (dict(sd=np.array([0.1, 0.0])), "sd of sample 1"),
    (dict(sd=np.array([0.1])), "one value per sample"),
    (dict(mask=np.zeros((2, 5), bool)), "mask shape"),
    (dict(x=np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]])), "not finite at sample 0, bin 1"),
])
def test_bad_input_is_named(bad, match):
    args = dict(x=np.ones((2, 3)), sd=np.array([0.1, 0.1]), mask=None)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        GaussianHMM().decode(args["x"], args["sd"], args["mask"])


def test_bad_model_settings_are_named():
    with pytest.raises(ValueError, match="self_transition"):
        GaussianHMM(self_transition=1.0)
    with pytest.raises(ValueError, match="start_prob"):
        GaussianHMM(start_prob=[0.5, 0.5])
    with pytest.raises(ValueError, match="backend"):
        GaussianHMM(backend="jax")


def test_em_fit_keeps_constructor_means_and_does_not_compound():
    """hmmlearn style: ``means`` stay as given, the fit lands in ``means_``; a second fit equals the first."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.92, 0.05, (4, 300)), rng.normal(1.84, 0.05, (4, 300))], axis=1)
    model = GaussianHMM(CN_STATES, 0.9, backend="numba")
    first = model.fit_em(x, np.full(4, 0.1), n_iter=3)
    assert model.means.tolist() == list(CN_STATES)
    second = model.fit_em(x, np.full(4, 0.1), n_iter=3)
    np.testing.assert_array_equal(first.means, second.means)
    np.testing.assert_array_equal(model.means_, second.means)
    assert second.n_iter == 3 and model.means_[2] != 1.0
