"""Batched hidden Markov models for copy-ratio segmentation (stage 02).

The model follows hmmlearn's layout: one base class, :class:`BatchedHMM`, owns
the transition model and the decoders; a subclass supplies the emission
log-densities (:meth:`BatchedHMM.log_emission`). :class:`GaussianHMM` is the
6-state copy-number model of SPEC §6: Gaussian emissions with state means at
CN {0, 0.5, 1, 1.5, 2, 3} and one noise level per sample.

Arrays are batched over samples: ``x`` (n_samples, n_bins) copy ratios,
``sd`` (n_samples,) noise, ``mask`` (n_samples, n_bins) True where a bin is
masked. A masked bin is a *missing emission*: it contributes log-probability
0 to every state, so its state is imputed by the chain from its neighbours.

Algorithms (identical results on every backend):

- Viterbi runs in log space, max-plus, exactly as hmmlearn does it.
- Forward–backward exponentiates each bin's emission log-densities once,
  after subtracting that bin's maximum, and runs the scaled recursion
  (each step normalised to sum 1, the log of the scale factors kept). This is
  the log-space recursion with its logsumexp factored out: as stable, but
  without an exp/log per state per step, which dominates the cost.

Backends: ``numba`` (compiled CPU kernel, parallel over samples; the default
on CPU) and ``torch`` (batched tensors, the recursion stepping over bins with
all samples of a batch at once; the default on CUDA, and the CPU fallback
when numba is not installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .copy_number import CN_STATES
from .device import resolve_device

LOG_2PI = math.log(2.0 * math.pi)
# Emission log-densities are floored here so that an outlier bin far from
# every state mean cannot underflow all states at once in float32.
_MIN_SD = 1e-6

try:  # numba is optional: without it the CPU path uses torch
    import numba as _numba
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _numba = None


def uniform_transmat(n_states: int, self_transition: float) -> np.ndarray:
    """Transition matrix with ``self_transition`` on the diagonal and the rest spread uniformly.

    Returns float64 (n_states, n_states); rows sum to 1.
    """
    if not 0.0 < self_transition < 1.0:
        raise ValueError(f"hmm: self_transition = {self_transition!r}; expected strictly between 0 and 1")
    off = (1.0 - self_transition) / (n_states - 1)
    transmat = np.full((n_states, n_states), off, dtype=np.float64)
    np.fill_diagonal(transmat, self_transition)
    return transmat


class BatchedHMM:
    """A discrete-state HMM decoded for many samples at once.

    Transitions: ``self_transition`` on the diagonal, the rest spread uniformly
    over the other states (the copy-number model of SPEC §6). Subclasses
    implement :meth:`log_emission`. Decoding works in ``batch_size`` samples
    at a time to bound memory.

    Parameters
    ----------
    n_states : number of states K.
    self_transition : probability of staying in a state between adjacent bins.
    start_prob : (K,) initial state probabilities; default uniform.
    dtype : float64 or float32: the dtype of the returned posteriors and of the torch
        computation (float32 is much faster on GPUs). The numba kernel always
        computes in float64.
    device : ``auto``, ``cpu`` or ``cuda``.
    backend : ``auto`` (numba on CPU when installed, else torch), ``numba`` or ``torch``.
    batch_size : samples per batch (memory: batch × bins × K values per array).
    """

    def __init__(self, n_states: int, self_transition: float = 0.8, start_prob: np.ndarray | None = None,
                 dtype=np.float64, device: str = "auto", backend: str = "auto", batch_size: int = 512):
        k = int(n_states)
        if k < 2:
            raise ValueError(f"hmm: n_states = {n_states!r}; expected at least 2")
        transmat = uniform_transmat(k, self_transition)
        start_prob = np.full(k, 1.0 / k) if start_prob is None else np.asarray(start_prob, dtype=np.float64)
        if start_prob.shape != (k,) or not np.isclose(start_prob.sum(), 1.0) or (start_prob < 0).any():
            raise ValueError(f"hmm: start_prob must be {k} non-negative values summing to 1, got {start_prob}")
        self.n_states = k
        self.transmat = transmat
        self.self_transition = float(self_transition)
        self.start_prob = start_prob
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"hmm: dtype {self.dtype} not supported; expected float32 or float64")
        self.device = resolve_device(device).type
        if backend == "auto":
            backend = "numba" if (self.device == "cpu" and _numba is not None) else "torch"
        if backend not in ("numba", "torch"):
            raise ValueError(f"hmm: backend = {backend!r}; expected auto, numba or torch")
        if backend == "numba" and (_numba is None or self.device != "cpu"):
            raise ValueError("hmm: backend 'numba' needs the numba package and device 'cpu'")
        self.backend = backend
        self.batch_size = int(batch_size)

    # ------------------------------------------------------------------ template
    def log_emission(self, x: np.ndarray, sd: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Emission log-densities (n_samples, n_bins, K); 0 where masked. Subclasses implement this."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def viterbi(self, x, sd, mask=None) -> np.ndarray:
        """Most probable state path, int8 (n_samples, n_bins) state indices."""
        return self.decode(x, sd, mask, posteriors="none")[0]

    def posteriors(self, x, sd, mask=None) -> np.ndarray:
        """Posterior state probabilities (n_samples, n_bins, K) from forward–backward."""
        return self.decode(x, sd, mask, posteriors="full")[1]

    def log_likelihood(self, x, sd, mask=None) -> np.ndarray:
        """Log-likelihood of each sample's sequence under the model, float64 (n_samples,)."""
        return self.decode(x, sd, mask, posteriors="none", viterbi=False)[2]

    def decode(self, x, sd, mask=None, posteriors: str = "path", viterbi: bool = True):
        """Viterbi path, posteriors and log-likelihood in one pass over the data.

        Parameters
        ----------
        x : (n_samples, n_bins) observations (copy ratio); values under ``mask`` are ignored.
        sd : (n_samples,) emission noise per sample (copy-ratio units).
        mask : (n_samples, n_bins) bool, True where the emission is missing.
        posteriors : ``"path"`` — posterior of the Viterbi state per bin (n_samples, n_bins);
            ``"full"`` — all states (n_samples, n_bins, K); ``"none"``.
        viterbi : compute the Viterbi path (else ``states`` is None).

        Returns
        -------
        states : int8 (n_samples, n_bins) or None
        post : array in ``dtype`` as asked above, or None
        loglik : float64 (n_samples,)
        """
        x, sd, mask = self._check(x, sd, mask)
        n, t = x.shape
        k = self.n_states
        want = {"none": 0, "path": 1, "full": 2}.get(posteriors)
        if want is None:
            raise ValueError(f"hmm: posteriors = {posteriors!r}; expected none, path or full")
        if want == 1 and not viterbi:
            raise ValueError("hmm: posteriors='path' needs the Viterbi path (viterbi=True)")
        states = np.zeros((n, t), dtype=np.int8) if viterbi else None
        post = (np.zeros((n, t, k), dtype=self.dtype) if want == 2 else
                np.zeros((n, t), dtype=self.dtype) if want == 1 else None)
        loglik = np.zeros(n, dtype=np.float64)
        for lo in range(0, n, self.batch_size):
            sl = slice(lo, min(n, lo + self.batch_size))
            self._decode_batch(x[sl], sd[sl], mask[sl], states[sl] if viterbi else None,
                               post[sl] if want else None, loglik[sl], want)
        return states, post, loglik

    def sufficient_statistics(self, x, sd, mask=None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior-weighted statistics for EM over usable bins.

        Returns ``stats`` float64 (n_samples, K, 3) = (Σγ, Σγx, Σγx²) per state and
        ``loglik`` (n_samples,).
        """
        x, sd, mask = self._check(x, sd, mask)
        n = x.shape[0]
        stats = np.zeros((n, self.n_states, 3), dtype=np.float64)
        loglik = np.zeros(n, dtype=np.float64)
        for lo in range(0, n, self.batch_size):
            sl = slice(lo, min(n, lo + self.batch_size))
            gamma = np.zeros((sl.stop - lo, x.shape[1], self.n_states), dtype=self.dtype)
            self._decode_batch(x[sl], sd[sl], mask[sl], None, gamma, loglik[sl], 2)
            w = np.where(mask[sl][:, :, None], 0.0, gamma.astype(np.float64))
            xv = np.where(mask[sl], 0.0, x[sl]).astype(np.float64)[:, :, None]
            stats[sl, :, 0] = w.sum(1)
            stats[sl, :, 1] = (w * xv).sum(1)
            stats[sl, :, 2] = (w * xv * xv).sum(1)
        return stats, loglik

    # ------------------------------------------------------------------ internals
    def _check(self, x, sd, mask):
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"hmm: x must be 2-D (samples × bins), got shape {x.shape}")
        n, t = x.shape
        if t == 0:
            raise ValueError("hmm: x has no bins")
        sd = np.broadcast_to(np.asarray(sd, dtype=np.float64), (n,)) if np.ndim(sd) == 0 else np.asarray(sd, np.float64)
        if sd.shape != (n,):
            raise ValueError(f"hmm: sd must have one value per sample ({n}), got shape {sd.shape}")
        if not np.all(np.isfinite(sd)) or (sd <= 0).any():
            bad = int(np.flatnonzero(~(np.isfinite(sd) & (sd > 0)))[0])
            raise ValueError(f"hmm: sd of sample {bad} is {sd[bad]!r}; expected a positive finite noise level")
        mask = np.zeros((n, t), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != (n, t):
            raise ValueError(f"hmm: mask shape {mask.shape} does not match x shape {x.shape}")
        for lo in range(0, n, 256):  # in blocks: the temporaries of a whole cohort are large
            bad = ~np.isfinite(x[lo:lo + 256])
            bad &= ~mask[lo:lo + 256]
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(f"hmm: x is not finite at sample {lo + r}, bin {c} and that bin is not masked")
        return x, sd, mask

    def _decode_batch(self, x, sd, mask, states, post, loglik, want: int) -> None:
        """Decode one batch into the output views; subclasses may fuse the emission step."""
        self._run(self.log_emission(x, sd, mask), states, post, loglik, want)

    def _log_start(self) -> np.ndarray:
        return np.log(np.maximum(self.start_prob, np.finfo(np.float64).tiny))

    @property
    def move_prob(self) -> float:
        """Probability of moving to one given other state between adjacent bins."""
        return float(self.transmat[0, 1])

    @staticmethod
    def _kernel_outputs(n, states, post):
        """Arrays the numba kernel writes: int8 states and a float64 3-D posterior array.

        The kernel computes in float64 whatever ``dtype`` is (one compiled
        signature); unused outputs get empty placeholders.
        """
        st = states if states is not None else np.zeros((n, 0), np.int8)
        if post is None:
            return st, np.zeros((n, 0, 1), np.float64)
        pp = post if post.dtype == np.float64 else np.empty(post.shape, np.float64)  # fully written
        return st, pp if pp.ndim == 3 else pp[:, :, None]

    @staticmethod
    def _copy_back(post, pp) -> None:
        if post is not None and post.dtype != np.float64:
            post[:] = pp.reshape(post.shape)

    def _run(self, logp: np.ndarray, states, post, loglik, want: int) -> None:
        if self.backend == "numba":
            logp = np.ascontiguousarray(logp, dtype=np.float64)
            st, pp = self._kernel_outputs(logp.shape[0], states, post)
            _decode_logp(logp, self._log_start(), self.self_transition, self.move_prob,
                         states is not None, want, st, pp, loglik, _chunk_bounds(logp.shape[0]),
                         self.dtype == np.float32)
            self._copy_back(post, pp)
        else:
            _torch_decode(logp, self.start_prob, self.transmat, self.dtype, self.device, states, post, loglik, want)


class GaussianHMM(BatchedHMM):
    """Copy-number HMM: Gaussian emissions at ``means`` with one noise sd per sample.

    Parameters
    ----------
    means : (K,) state means in copy-ratio units (CN 1 = ratio 1); default :data:`CN_STATES`.
    self_transition : probability of staying in a state between adjacent bins; the rest
        is spread uniformly over the other states.
    start_prob : (K,) initial probabilities; default uniform.
    **kwargs : ``dtype``, ``device``, ``backend``, ``batch_size`` of :class:`BatchedHMM`.
    """

    def __init__(self, means=CN_STATES, self_transition: float = 0.8, start_prob=None, **kwargs):
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 1 or means.size < 2 or not np.all(np.isfinite(means)):
            raise ValueError(f"hmm: means must be a 1-D array of at least 2 finite values, got {means}")
        super().__init__(means.size, self_transition, start_prob, **kwargs)
        self.means = means                 # as given (the EM prior); never changed by a fit
        self.means_ = means.copy()         # fitted state means used for decoding (= means until a fit)

    def log_emission(self, x, sd, mask=None):
        """Gaussian log-densities log N(x; mean_k, sd²), (n_samples, n_bins, K) in ``dtype``; 0 where masked."""
        x = np.asarray(x, dtype=np.float64)
        var = np.maximum(np.asarray(sd, dtype=np.float64), _MIN_SD)[:, None, None] ** 2
        xv = np.where(mask, 0.0, x) if mask is not None else x
        logp = -0.5 * (LOG_2PI + np.log(var) + (xv[:, :, None] - self.means_) ** 2 / var)
        if mask is not None:
            logp[mask] = 0.0
        return logp.astype(self.dtype, copy=False)

    def _decode_batch(self, x, sd, mask, states, post, loglik, want: int) -> None:
        if self.backend != "numba":
            return super()._decode_batch(x, sd, mask, states, post, loglik, want)
        # fused: the Gaussian densities are computed inside the kernel, never stored (n, T, K)
        st, pp = self._kernel_outputs(x.shape[0], states, post)
        _decode_gaussian(np.ascontiguousarray(x, dtype=np.float64), np.asarray(sd, np.float64),
                         np.ascontiguousarray(mask), self.means_, self._log_start(), self.self_transition,
                         self.move_prob, states is not None, want, st, pp, loglik, _chunk_bounds(x.shape[0]),
                         self.dtype == np.float32)
        self._copy_back(post, pp)

    def em_update(self, stats: np.ndarray, sd: np.ndarray, prior_means: np.ndarray,
                  prior_weight: float = 100.0) -> np.ndarray:
        """One M-step from :meth:`sufficient_statistics`: pooled means, per-sample sd.

        Each sample's statistics are weighted by its precision 1/sd². The means get a
        conjugate prior centred on ``prior_means`` worth ``prior_weight`` bins (at the
        median precision), so a state no sample occupies keeps its mean, and they stay in CN order.
        ``self.means_`` is updated; returns the new sd (n_samples,) (copy-ratio units).
        """
        # samples differ in noise: the ML pooled mean weights each sample by its precision
        precision = 1.0 / np.asarray(sd, dtype=np.float64) ** 2
        prior_precision = prior_weight * float(np.median(precision))
        num = (stats[..., 1] * precision[:, None]).sum(0) + prior_precision * prior_means
        den = (stats[..., 0] * precision[:, None]).sum(0) + prior_precision
        means = num / den
        self.means_ = np.maximum.accumulate(means)  # a state mean may not overtake its neighbour
        n_k, s_x, s_xx = stats[..., 0], stats[..., 1], stats[..., 2]
        resid = (s_xx - 2 * self.means_ * s_x + self.means_ ** 2 * n_k).sum(1)
        n_used = n_k.sum(1)
        new_sd = np.sqrt(np.maximum(resid, 0) / np.maximum(n_used, 1))
        return np.maximum(np.where(n_used > 1, new_sd, sd), 1e-3)

    def fit_em(self, x, sd, mask=None, n_iter: int = 1, prior_weight: float = 100.0) -> "EMRecord":
        """Refine the state means (pooled over samples) and each sample's sd by Baum–Welch.

        Starts from the constructor's ``means`` every time (a second fit does not compound the
        first), leaves the result in ``means_``; transitions are not re-estimated (see
        :meth:`em_update`). Returns an :class:`EMRecord`.
        """
        x, sd, mask = self._check(x, sd, mask)
        sd = sd.copy()
        self.means_ = self.means.copy()
        history = []
        for _ in range(int(n_iter)):
            stats, loglik = self.sufficient_statistics(x, sd, mask)
            history.append(float(loglik.sum()))
            sd = self.em_update(stats, sd, self.means, prior_weight)
        return EMRecord(sd=sd, log_likelihood=history, means=self.means_.copy())


@dataclass
class EMRecord:
    """What :meth:`GaussianHMM.fit_em` did: the refined per-sample sd (copy-ratio units), the total
    log-likelihood before each iteration, and the fitted state means."""

    sd: np.ndarray
    log_likelihood: list[float]
    means: np.ndarray

    @property
    def n_iter(self) -> int:
        return len(self.log_likelihood)


# ---------------------------------------------------------------------- numba kernels
def _decode_one(lp, log_start, stay, move, want_path, want_post, states_row, post_row, lattice, emis, alpha, scale, back,
                fast_exp):
    """Decode one sequence: Viterbi into ``states_row``, posteriors into ``post_row``; return log-likelihood.

    ``lattice``, ``emis``, ``alpha`` (T, K), ``scale`` (T,) and ``back`` (T, K) int8
    are scratch space reused across sequences (allocating them per sequence costs
    more than the recursion). ``fast_exp`` computes the emission probabilities of
    forward–backward in single precision (the Viterbi path never uses them).

    Transitions are ``stay`` on the diagonal and ``move`` elsewhere, so the
    K×K step reduces to O(K): a state is entered either from itself or from
    the best (Viterbi) / the sum (forward) of the others.
    """
    t_len, k = lp.shape
    if want_path:
        log_stay = np.log(stay)
        log_move = np.log(move)
        stay_wins = log_stay >= log_move
        for j in range(k):
            lattice[0, j] = log_start[j] + lp[0, j]
        for t in range(1, t_len):
            prev = lattice[t - 1]
            # best and second-best previous states (first index on ties)
            i1 = 0
            for i in range(1, k):
                if prev[i] > prev[i1]:
                    i1 = i
            i2 = 1 if i1 == 0 else 0
            if not stay_wins:  # the runner-up is needed only when staying can lose to moving
                for i in range(k):
                    if i != i1 and prev[i] > prev[i2]:
                        i2 = i
            for j in range(k):
                if stay_wins and j == i1:  # stay >= move from any other state
                    lattice[t, j] = prev[j] + log_stay + lp[t, j]
                    back[t, j] = j
                    continue
                other = i2 if j == i1 else i1
                v_stay = prev[j] + log_stay
                v_move = prev[other] + log_move
                # max over i of prev[i] + log A[i, j]; on an exact tie the lower index wins, as in hmmlearn
                if v_stay > v_move or (v_stay == v_move and j < other):
                    lattice[t, j] = v_stay + lp[t, j]
                    back[t, j] = j
                else:
                    lattice[t, j] = v_move + lp[t, j]
                    back[t, j] = other
        state = 0
        for j in range(1, k):
            if lattice[t_len - 1, j] > lattice[t_len - 1, state]:
                state = j
        states_row[t_len - 1] = state
        for t in range(t_len - 1, 0, -1):
            state = back[t, state]
            states_row[t - 1] = state
    # forward: each bin's peak log-density factored out, then the scaled recursion
    total = 0.0
    for t in range(t_len):
        m = lp[t, 0]
        for j in range(1, k):
            if lp[t, j] > m:
                m = lp[t, j]
        total += m
        for j in range(k):
            # below e^-60 a state's relative likelihood cannot move a posterior by 1e-20; skip the exp
            d = lp[t, j] - m
            if d <= -60.0:
                emis[t, j] = 0.0
            elif fast_exp:  # single-precision exp: about twice as fast, relative error ~1e-7
                emis[t, j] = np.exp(np.float32(d))
            else:
                emis[t, j] = np.exp(d)
    diag = stay - move
    for t in range(t_len):
        c = 0.0
        if t == 0:
            for j in range(k):
                alpha[0, j] = np.exp(log_start[j]) * emis[0, j]
                c += alpha[0, j]
        else:
            # alpha[t-1] sums to 1, so sum_i alpha[t-1, i] A[i, j] = diag * alpha[t-1, j] + move
            for j in range(k):
                alpha[t, j] = (diag * alpha[t - 1, j] + move) * emis[t, j]
                c += alpha[t, j]
        scale[t] = c
        total += np.log(c)
        for j in range(k):
            alpha[t, j] /= c
    if want_post == 0:
        return total
    beta = np.ones(k, dtype=np.float64)
    for t in range(t_len - 1, -1, -1):
        if t < t_len - 1:
            acc = 0.0
            for j in range(k):
                beta[j] *= emis[t + 1, j]
                acc += beta[j]
            for j in range(k):
                beta[j] = (diag * beta[j] + move * acc) / scale[t + 1]
        norm = 0.0
        for j in range(k):
            norm += alpha[t, j] * beta[j]
        if want_post == 2:
            for j in range(k):
                post_row[t, j] = alpha[t, j] * beta[j] / norm
        else:
            j = states_row[t]
            post_row[t, 0] = alpha[t, j] * beta[j] / norm
    return total


def _scratch(t_len, k):
    """Per-chunk scratch of :func:`_decode_one`: lattice, emissions, alpha (T, K), scale (T,), back-pointers."""
    return (np.empty((t_len, k), dtype=np.float64), np.empty((t_len, k), dtype=np.float64),
            np.empty((t_len, k), dtype=np.float64), np.empty(t_len, dtype=np.float64),
            np.empty((t_len, k), dtype=np.int8))


def _decode_logp(logp, log_start, stay, move, want_path, want_post, states, post, loglik, bounds, fast_exp):
    """Batch driver over precomputed emission log-densities (n, T, K), parallel over chunks of samples."""
    n, t_len, k = logp.shape
    for c in _prange(bounds.size - 1):
        lattice, emis, alpha, scale, back = _scratch(t_len, k)
        for s in range(bounds[c], bounds[c + 1]):
            loglik[s] = _decode_one(logp[s], log_start, stay, move, want_path, want_post, states[s], post[s],
                                    lattice, emis, alpha, scale, back, fast_exp)


def _decode_gaussian(x, sd, mask, means, log_start, stay, move, want_path, want_post, states, post, loglik,
                     bounds, fast_exp):
    """Batch driver with the Gaussian log-densities computed per sample inside the kernel."""
    n, t_len = x.shape
    k = means.shape[0]
    for c in _prange(bounds.size - 1):
        lp = np.empty((t_len, k), dtype=np.float64)
        lattice, emis, alpha, scale, back = _scratch(t_len, k)
        for s in range(bounds[c], bounds[c + 1]):
            var = max(sd[s], 1e-6) ** 2
            const = LOG_2PI + np.log(var)
            inv_var = 1.0 / var
            for t in range(t_len):
                if mask[s, t]:
                    for j in range(k):
                        lp[t, j] = 0.0
                else:
                    for j in range(k):
                        d = x[s, t] - means[j]
                        lp[t, j] = -0.5 * (const + d * d * inv_var)
            loglik[s] = _decode_one(lp, log_start, stay, move, want_path, want_post, states[s], post[s],
                                    lattice, emis, alpha, scale, back, fast_exp)


def _chunk_bounds(n_samples: int) -> np.ndarray:
    """Bounds of contiguous sample chunks for the kernel: a few per thread, so uneven chunks even out."""
    threads = _numba.get_num_threads() if _numba is not None else 1
    return np.linspace(0, n_samples, max(1, min(n_samples, 4 * threads)) + 1).astype(np.int64)


_prange = range
if _numba is not None:
    _prange = _numba.prange
    _decode_one = _numba.njit(cache=True, nogil=True)(_decode_one)
    _scratch = _numba.njit(cache=True, nogil=True)(_scratch)
    _decode_logp = _numba.njit(cache=True, nogil=True, parallel=True)(_decode_logp)
    _decode_gaussian = _numba.njit(cache=True, nogil=True, parallel=True)(_decode_gaussian)


# ---------------------------------------------------------------------- torch backend
def _torch_decode(logp, start_prob, transmat, dtype, device, states, post, loglik, want) -> None:
    """Same algorithms as the numba kernel, stepping over bins with the whole batch at once."""
    import torch

    if device != "cpu":
        return _torch_decode_impl(logp, start_prob, transmat, dtype, device, states, post, loglik, want)
    # Each step works on a tiny (batch, K) tensor: intra-op threads only add barrier waits,
    # which on a busy machine cost milliseconds per step.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _torch_decode_impl(logp, start_prob, transmat, dtype, device, states, post, loglik, want)
    finally:
        torch.set_num_threads(threads)


def _torch_decode_impl(logp, start_prob, transmat, dtype, device, states, post, loglik, want) -> None:
    import torch

    tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    dev = torch.device(device)
    lp = torch.as_tensor(np.ascontiguousarray(logp.transpose(1, 0, 2)), dtype=tdtype, device=dev)  # (T, B, K)
    t_len, n, k = lp.shape
    tiny = np.finfo(np.float64).tiny
    lstart = torch.as_tensor(np.log(np.maximum(start_prob, tiny)), dtype=tdtype, device=dev)
    # transposed, (to, from), so the max over predecessors runs along the last, contiguous axis
    ltrans_t = torch.as_tensor(np.log(np.maximum(transmat, tiny)).T.copy(), dtype=tdtype, device=dev)
    trans = torch.as_tensor(transmat, dtype=tdtype, device=dev)
    with torch.no_grad():
        if states is not None:
            back = torch.empty((t_len, n, k), dtype=torch.int64, device=dev)
            delta = lstart + lp[0]
            for t in range(1, t_len):
                best, arg = (delta[:, None, :] + ltrans_t).max(2)  # first index on ties, like hmmlearn
                back[t] = arg
                delta = best + lp[t]
                if tdtype == torch.float32:  # keep magnitudes small so float32 keeps near-ties apart
                    delta = delta - delta.max(1, keepdim=True).values
            path = torch.empty((t_len, n), dtype=torch.int64, device=dev)
            path[-1] = delta.argmax(1)
            for t in range(t_len - 1, 0, -1):
                path[t - 1] = back[t].gather(1, path[t][:, None])[:, 0]
            states[:] = path.T.to(torch.int8).cpu().numpy()
        peak = lp.max(2, keepdim=True).values
        rel = lp - peak
        # as in the numba kernel: below e^-60 a state's emission is 0 (no denormals, which are slow)
        emis = torch.where(rel > -60.0, torch.exp(rel), torch.zeros((), dtype=tdtype, device=dev))
        del rel
        alpha = torch.empty_like(lp)
        scale = torch.empty((t_len, n), dtype=tdtype, device=dev)
        cur = torch.exp(lstart) * emis[0]
        for t in range(t_len):
            if t:
                cur = (alpha[t - 1] @ trans) * emis[t]
            scale[t] = cur.sum(1)
            alpha[t] = cur / scale[t][:, None]
        loglik[:] = (torch.log(scale).sum(0) + peak[:, :, 0].sum(0)).double().cpu().numpy()
        if not want:
            return
        gamma = torch.empty_like(lp)
        beta = torch.ones((n, k), dtype=tdtype, device=dev)
        for t in range(t_len - 1, -1, -1):
            if t < t_len - 1:
                beta = ((emis[t + 1] * beta) @ trans.T) / scale[t + 1][:, None]
            g = alpha[t] * beta
            gamma[t] = g / g.sum(1, keepdim=True)
        if want == 2:
            post[:] = gamma.permute(1, 0, 2).cpu().numpy()
        else:
            idx = torch.as_tensor(states.astype(np.int64).T, device=dev)[:, :, None]  # (T, B, 1)
            post[:] = gamma.gather(2, idx)[:, :, 0].T.cpu().numpy()
