"""Hidden Markov models fitted by expectation-maximization (Baum-Welch).

One self-contained file: it imports only the standard library, numpy, scipy
and numba, and works when copied alone into another project. The estimators
``CategoricalHMM`` and ``GaussianHMM`` follow ``hmmlearn.hmm`` (names,
parameters, shapes, the ``params`` / ``init_params`` letter strings), so
switching is a change of import. Differences from hmmlearn are listed at the
end of this docstring.

Model
-----
Several independent sequences s = 1..S, sequence s of length T_s, stacked
row-wise in X (n_samples = sum_s T_s rows) and described by ``lengths``:

    z_1 ~ Categorical(pi),     z_t | z_{t-1} = j ~ Categorical(A_j.)
    x_t | z_t = k ~ b_k:
        CategoricalHMM:  b_k(m) = E_km,  m in {0..M-1}          (emissionprob_)
        GaussianHMM:     b_k(x) = N(x | mu_k, Sigma_k), x in R^D (means_, covars_)

Covariance types: 'full' (one Sigma_k each), 'tied' (one Sigma shared),
'diag' (Sigma_k = diag(s_k)), 'spherical' (Sigma_k = s_k I).

E-step: forward-backward with scaling (Rabiner 1989, sec. V.A)
---------------------------------------------------------------
Emissions enter each step through b~_t(k) = b_t(k) / m_t with the shift
m_t = max_k b_t(k) (computed in log space), so the largest is exactly 1 and
no emission density can underflow or overflow. Then, for one sequence,

    alpha^_1(k) = pi_k b~_1(k) / c_1
    alpha^_t(k) = [sum_j alpha^_{t-1}(j) A_jk] b~_t(k) / c_t,   c_t = the sum over k of the bracket
    beta^_T(j)  = 1
    beta^_t(j)  = sum_k A_jk b~_{t+1}(k) beta^_{t+1}(k) / c_{t+1}

alpha^_t(k) = P(z_t = k | x_1..x_t) always sums to 1, so nothing underflows
however long the sequence (a single sequence of 10^6 steps is tested), and

    log p(x_1..x_T) = sum_t (log c_t + log m_t)
    gamma_t(k)      = alpha^_t(k) beta^_t(k)                        = P(z_t = k | x)
    xi_t(j, k)      = alpha^_t(j) A_jk b~_{t+1}(k) beta^_{t+1}(k) / c_{t+1}
                                                               = P(z_t = j, z_{t+1} = k | x)

``implementation='log'`` runs the same recursions on log alpha and log beta
with logsumexp instead of scaling; the two agree to round-off (a harness
oracle). Viterbi always runs in log space:

    delta_1(k) = log pi_k + log b_1(k)
    delta_t(k) = max_j (delta_{t-1}(j) + log A_jk) + log b_t(k),  back_t(k) = the argmax

The E-step returns additive sufficient statistics, summed over sequences:

    S_start(k) = sum_s gamma_1^s(k)           S_trans(j, k) = sum_s sum_t xi_t^s(j, k)
    categorical:  S_obs(k, m) = sum_t gamma_t(k) [x_t = m]
    Gaussian:     N_k = sum_t gamma_t(k),  S1_k = sum_t gamma_t(k) (x_t - c_k),
                  S2_k = sum_t gamma_t(k) (x_t - c_k)(x_t - c_k)^T   (diagonal only
                  for 'diag' / 'spherical'), centred on the current means c_k so
                  that no precision is lost when |mean| >> standard deviation.

Work is split into fixed chunks of whole sequences (about CHUNK_STEPS steps
each, fixed by ``lengths`` alone); ``prange`` runs over chunks and the
partial sums are added in chunk order, so results are bit-identical for any
number of numba threads.

M-step and priors (maximum a posteriori; hmmlearn's formulas)
--------------------------------------------------------------
With Dirichlet priors a (startprob_prior), A0 (transmat_prior, per row),
e (emissionprob_prior), all >= 1:

    pi_k  ∝ S_start(k) + a_k - 1      A_jk ∝ S_trans(j, k) + A0_jk - 1
    E_km  ∝ S_obs(k, m) + e_km - 1
    mu_k  = (w m0 + sum_t gamma_t(k) x_t) / (w + N_k)          (means_weight w, means_prior m0)
    diag:      s_kd     = (p + C_kd) / (max(nu - 1, 0) + N_k)
    spherical: s_k      = (D p + sum_d C_kd) / (D (max(nu - 1, 0) + N_k))
    full:      Sigma_k  = (P + C_k) / (max(nu - D, 0) + N_k)
    tied:      Sigma    = (P + sum_k C_k) / (max(nu - D, 0) + sum_k N_k)
    C_k = sum_t gamma_t(k) (x_t - mu_k)(x_t - mu_k)^T + w (mu_k - m0)(mu_k - m0)^T

with covars_prior p (P = p I for 'full'/'tied' when p is a number, or the
(D, D) matrix given) and covars_weight nu. Each update is the exact joint
maximiser of Q(theta) + log p(theta), where, up to an additive constant,

    log p(theta) = sum_k (a_k - 1) log pi_k + sum_jk (A0_jk - 1) log A_jk
                 + sum_km (e_km - 1) log E_km                           (categorical)
                 - 1/2 sum_k [ n0 log|Sigma_k| + tr(Sigma_k^-1 (P + w (mu_k - m0)(mu_k - m0)^T)) ]
                   (n0 = max(nu - 1, 0) per dimension for 'diag'/'spherical',
                    max(nu - D, 0) for 'full'; 'tied' counts P and n0 once)

so EM never decreases the log-posterior  log p(X | theta) + log p(theta),
which is what ``history_`` records (the plain log-likelihood when the priors
are flat: all Dirichlet priors 1 and, for Gaussians, covars_prior = 0,
means_weight = 0, covars_weight <= 1 (D for 'full'/'tied')). ``score``
returns the log-likelihood alone, as in hmmlearn.

Covariance floor. Every covariance eigenvalue is kept >= min_covar at every
M-step: the variances of 'diag'/'spherical' are raised to min_covar, and the
eigenvalues of a 'full'/'tied' matrix below min_covar are raised to it, with
its eigenvectors kept. That is the exact maximiser of the M-step objective
over {Sigma : Sigma >= min_covar I} (the objective depends on Sigma only
through its eigenvalues relative to the target's eigenbasis and is unimodal
in each), so EM stays monotone and a state that collapses onto one point
keeps a positive-definite covariance, never NaN. On data of unit scale the
floor (1e-3) is never reached; lower ``min_covar`` for data on a smaller scale.
(On data so large that min_covar is below the round-off of a covariance, the
floor is 16 D eps sum_d range_d^2 instead, a bound on that round-off; it is
fixed for the whole fit, so EM stays monotone on collinear data of scale 1e8.)

A state that receives (numerically) no posterior mass (N_k <= 1e-200, or a
transition row whose S_trans row is 0 with a flat prior) keeps its previous
parameters. Its data terms in Q are zero, so keeping them cannot lower Q +
log p (with a proper prior term the supremum may lie at infinity); EM stays
monotone and nothing overflows.

Objective, convergence and restarts
-----------------------------------
``history_[t]`` is the total log-posterior after t iterations (``history_[0]``
at the starting parameters), computed at those parameters by the next
E-step, never one iteration late. EM stops when the gain is below ``tol``
(``tol=0`` runs exactly ``n_iter`` iterations). A fall larger than the
round-off of the sum, rho (|sum_t log c_t| + sum_t |log m_t| + |objective|),
is a defect EM cannot produce: it never counts as convergence and fit warns
once. rho = 1e-10, or for 'full'/'tied' D kappa eps when larger (kappa the
largest condition number of a covariance: a log-density through a Cholesky
factor loses about that much, e.g. 1e-3 relative on collinear data).

Baum-Welch converges to a local maximum that depends on the start. ``fit``
draws ``n_init`` starting points (data-driven: k-means++ means and the
k-means label sequence for Gaussians; emission rows scattered around the
symbol frequencies for categorical emissions), runs ``init_iter`` cheap
iterations from each, and continues only the best to convergence.

Unseen symbols. A symbol that never occurs in training gets emission
probability 0 in every state (the maximum-likelihood estimate) unless
emissionprob_prior > 1 smooths it. A sequence containing it then has
probability 0: ``score`` returns -inf and the posterior methods
(predict, predict_proba, decode, score_samples) raise ValueError.

Array shapes
------------
    X                    (n_samples, 1) int  or (n_samples,) int   categorical
                         (n_samples, n_features) float             Gaussian
    lengths              (n_sequences,) int, sum = n_samples
    startprob_           (K,)           transmat_  (K, K), rows sum to 1
    emissionprob_        (K, M)
    means_               (K, D)
    covars_              (K, D, D) for every covariance type (as hmmlearn); the
                         stored form ``_covars_`` is (K,) spherical, (K, D)
                         diag, (K, D, D) full, (D, D) tied
    predict_proba        (n_samples, K)

Differences from hmmlearn
-------------------------
* n_init / init_iter restarts (above); n_iter defaults to 100 (hmmlearn: 10).
* implementation defaults to 'scaling' (hmmlearn: 'log'); both exist.
* history_ is the log-posterior (hmmlearn monitors the log-likelihood, even
  with priors on) and a fall is never convergence.
* A number covars_prior p means P = p I for 'full'/'tied' (hmmlearn adds p
  to every entry of the matrix, which is not an inverse-Wishart scale).
* min_covar floors the covariances at every M-step (hmmlearn: only at init).
* Dirichlet priors must be >= 1 (below 1 the log-posterior is unbounded).
* decode(algorithm='map') returns sum_t log max_k gamma_t(k) (hmmlearn returns
  the sum of the probabilities themselves).
* The constructor's n_features is never changed; the fitted number of symbols
  or features is ``n_features_``.

References
----------
L. R. Rabiner (1989), A tutorial on hidden Markov models and selected
applications in speech recognition, Proc. IEEE 77(2), 257-286.
L. E. Baum, T. Petrie, G. Soules, N. Weiss (1970), A maximization technique
occurring in the statistical analysis of probabilistic functions of Markov
chains, Ann. Math. Statist. 41(1), 164-171.
A. P. Dempster, N. M. Laird, D. B. Rubin (1977), Maximum likelihood from
incomplete data via the EM algorithm, JRSS B 39(1), 1-38.
X. Huang, A. Acero, H.-W. Hon (2001), Spoken Language Processing, 443-445
(the MAP updates hmmlearn uses).
"""

import inspect
import math
import time
import warnings
from collections import deque
from contextlib import contextmanager
from types import SimpleNamespace

import numba
import numpy as np
from numba import njit, prange

# Sequences are grouped into chunks of at least this many steps (a sequence
# is never split). The grouping depends on ``lengths`` alone, so the order of
# every floating-point sum is the same for any thread count.
CHUNK_STEPS = 8192
# Rows per chunk of the emission kernels (fixed for the same reason).
ROW_CHUNK = 4096
# Rows (time steps) per block of the vectorised loops: sums over rows are kept
# in BLOCK lanes (lane i takes rows i, i + BLOCK, ...) and the inner loops run
# over the rows of a block, so they vectorise; the lanes are added in order.
BLOCK = 64
_LOG_2PI = math.log(2.0 * math.pi)
_DBL_MIN = 2.2250738585072014e-308     # smallest normal double: c_t below it is underflow
# Without n_features, the number of symbols is max(X) + 1; beyond this the
# (K, M) emission matrix is surely a mistake (sparse or hashed codes).
_MAX_INFERRED_SYMBOLS = 10_000_000
# At most this many per-chunk partial sums of categorical emission statistics
# (fewer, longer chunks when K * M is large): 2^22 doubles, 32 MiB.
_STATS_BUDGET = 1 << 22


# ----------------------------------------------------------------------------
# Kernels. Plain arrays and numbers in, preallocated arrays out.
# ----------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _forward_backward_scaled(rows, shift, bidx, seq_start, chunk_seq, pi, A, AT, backward,
                             alpha, gamma, wbuf, c, seq_ll, p_start, p_trans, p_ll, p_abs):
    """Scaled forward-backward over all sequences (see the module docstring).

    b~_t = rows[bidx[t]] (largest entry 1), log m_t = shift[bidx[t]].
    On return alpha[t] = alpha^_t and gamma[t] = gamma_t (when backward);
    p_* hold per-chunk partial statistics: p_start (start posteriors),
    p_trans (sum_t xi_t), p_ll (log-likelihood), p_abs (|sum_t log c_t| +
    sum_t |log m_t|, the round-off scale of the sum). wbuf and c are work.
    A sequence is left out of the partial sums, gets seq_ll = NaN and gamma
    rows of NaN (the caller reruns it in log space) when the scaled numbers
    cannot be trusted:
    * some c_t is below the smallest normal number (every state the chain can
      be in has an emission e^-708 below the best state's, or it is impossible);
    * some beta^ exceeds 1e280: a state whose scaled emission was flushed to 0
      (or whose alpha^ underflowed) explains the rest of the sequence so much
      better that its lost mass may matter;
    * some gamma_t does not sum to 1 within 1e-8 (mass lost in the forward).
    The last two checks run only for a sequence whose forward pass saw a
    filtered probability below 1e-280 (otherwise sum_j alpha^ beta^ = 1 keeps
    every beta^ below 1e280 and nothing was lost); for such a sequence the
    backward pass runs even when backward is False.
    """
    K = pi.shape[0]
    for ch in prange(chunk_seq.shape[0] - 1):
        lanes = np.zeros((K, K, BLOCK))   # sum_t alpha^_t(j) w_{t+1}(k), in BLOCK lanes over t
        aT = np.empty((K, BLOCK))
        wT = np.empty((K, BLOCK))
        pred = np.empty(K)
        beta = np.empty(K)
        ps = np.zeros(K)
        ll_chunk = 0.0
        abs_chunk = 0.0
        for s in range(chunk_seq[ch], chunk_seq[ch + 1]):
            a = seq_start[s]
            b = seq_start[s + 1]
            # forward: alpha^_t(k) = [sum_j alpha^_{t-1}(j) A_jk] b~_t(k) / c_t
            # log prod_t c_t without a log per step: c_t <= 1 (the b~ are <= 1 and the
            # prediction sums to 1), so the running product only falls; it is
            # moved into the log when below 1e-200, and a c_t below 1e-100 is
            # logged on its own, so the product never leaves the normal range.
            logc = 0.0
            prod = 1.0
            shsum = 0.0
            shabs = 0.0
            ok = True
            suspect = False
            prev = alpha[a]
            for t in range(a, b):
                r = bidx[t]
                row = rows[r]
                cur = alpha[t]
                if t == a:
                    for k in range(K):
                        pred[k] = pi[k]
                else:
                    a0 = prev[0]
                    A0 = A[0]
                    for k in range(K):
                        pred[k] = a0 * A0[k]
                    for j in range(1, K):
                        aj = prev[j]
                        Aj = A[j]
                        for k in range(K):
                            pred[k] += aj * Aj[k]
                # (no fast-math: this sum is taken in k order however the loop is compiled)
                ct = 0.0
                mn = np.inf
                for k in range(K):
                    v = pred[k] * row[k]
                    pred[k] = v
                    ct += v
                    mn = v if v < mn else mn
                if not ct >= _DBL_MIN:
                    ok = False
                    break
                if mn < 1e-280 * ct:
                    suspect = True          # some alpha^_t(k) < 1e-280: mass may have been lost
                inv = 1.0 / ct
                for k in range(K):
                    cur[k] = pred[k] * inv
                prev = cur
                c[t] = inv
                if ct < 1e-100:
                    logc += math.log(ct)
                else:
                    prod *= ct
                    if prod < 1e-200:
                        logc += math.log(prod)
                        prod = 1.0
                sh = shift[r]
                shsum += sh
                shabs += abs(sh)
            logc += math.log(prod)
            if ok and (backward or suspect):
                # backward: w_{t+1}(k) = b~_{t+1}(k) beta^_{t+1}(k) / c_{t+1} (kept in wbuf),
                # beta^_t(j) = sum_k A_jk w_{t+1}(k),  gamma_t = alpha^_t beta^_t;
                # w_t is made in the same loop as gamma_t, from the same beta^_t
                last = alpha[b - 1]
                g = gamma[b - 1]
                w = wbuf[b - 1]
                row = rows[bidx[b - 1]]
                inv = c[b - 1]
                for k in range(K):
                    g[k] = last[k]
                    w[k] = row[k] * inv                     # beta^_{b-1} = 1
                for t in range(b - 2, a - 1, -1):
                    w = wbuf[t + 1]
                    w0 = w[0]
                    AT0 = AT[0]
                    for j in range(K):
                        beta[j] = AT0[j] * w0
                    for k in range(1, K):
                        wk = w[k]
                        ATk = AT[k]
                        for j in range(K):
                            beta[j] += ATk[j] * wk
                    cur = alpha[t]
                    g = gamma[t]
                    wn = wbuf[t]
                    row = rows[bidx[t]]
                    inv = c[t]
                    for j in range(K):
                        bj = beta[j]
                        g[j] = cur[j] * bj
                        wn[j] = row[j] * bj * inv
                    if suspect:
                        # gamma_t must sum to 1 and beta^ stay below 1e280 (without a suspect
                        # forward every alpha^ >= 1e-280, and sum_j alpha^ beta^ = 1 bounds beta^)
                        gsum = 0.0
                        big = 0.0
                        for j in range(K):
                            gsum += g[j]
                            big = big if big >= beta[j] else beta[j]
                        if not (abs(gsum - 1.0) <= 1e-8 and big <= 1e280):
                            ok = False
                            break
            if not ok:
                seq_ll[s] = np.nan
                for t in range(a, b):
                    g = gamma[t]
                    for k in range(K):
                        g[k] = np.nan
                continue
            seq_ll[s] = logc + shsum
            ll_chunk += logc + shsum
            abs_chunk += abs(logc) + shabs
            if not backward:               # score: the forward pass (checked) is all it needs
                continue
            first = gamma[a]
            for k in range(K):
                ps[k] += first[k]
            # xi_t(j, k) = alpha^_t(j) A_jk w_{t+1}(k): the sum over t of alpha^_t(j) w_{t+1}(k)
            # is taken here in BLOCK lanes (inner loops over time steps, so they
            # vectorise), and multiplied by A_jk once per chunk
            for t0 in range(a, b - 1, BLOCK):
                nb = min(BLOCK, b - 1 - t0)
                for i in range(nb):
                    at = alpha[t0 + i]
                    wt = wbuf[t0 + i + 1]
                    for k in range(K):
                        aT[k, i] = at[k]
                        wT[k, i] = wt[k]
                for j in range(K):
                    aj = aT[j]
                    for k in range(K):
                        wk = wT[k]
                        lane = lanes[j, k]
                        for i in range(nb):
                            lane[i] += aj[i] * wk[i]
        for k in range(K):
            p_start[ch, k] = ps[k]
        for j in range(K):
            for k in range(K):
                tot = 0.0
                for i in range(BLOCK):
                    tot += lanes[j, k, i]
                p_trans[ch, j, k] = A[j, k] * tot
        p_ll[ch] = ll_chunk
        p_abs[ch] = abs_chunk


@njit(cache=True)
def _logsumexp_vec(v):
    m = -np.inf
    for i in range(v.shape[0]):
        if v[i] > m:
            m = v[i]
    if m == -np.inf:
        return -np.inf
    s = 0.0
    for i in range(v.shape[0]):
        s += math.exp(v[i] - m)
    return m + math.log(s)


@njit(cache=True)
def _normalised_exp_row(la, lb, out):
    """out[k] = exp(la[k] + lb[k] - logsumexp_j(la[j] + lb[j]))."""
    K = la.shape[0]
    m = -np.inf
    for k in range(K):
        v = la[k] + lb[k]
        out[k] = v
        if v > m:
            m = v
    for k in range(K):
        out[k] = math.exp(out[k] - m)
    tot = 0.0
    for k in range(K):
        tot += out[k]
    for k in range(K):
        out[k] = out[k] / tot


@njit(cache=True, parallel=True)
def _forward_backward_log(lrows, bidx, seq_start, chunk_seq, logpi, logA, backward,
                          post, la, seq_ll, p_start, p_trans, p_ll, p_abs):
    """Forward-backward in log space; same outputs as the scaled kernel.

    log b_t = lrows[bidx[t]]; la is (n_samples, K) work for log alpha.
    """
    K = logpi.shape[0]
    for ch in prange(chunk_seq.shape[0] - 1):
        xi = np.zeros((K, K))
        e2 = np.empty((K, K))
        tmp = np.empty(K)
        lb = np.empty(K)
        lb_new = np.empty(K)
        u = np.empty(K)
        ll_chunk = 0.0
        abs_chunk = 0.0
        for k in range(K):
            p_start[ch, k] = 0.0
        for s in range(chunk_seq[ch], chunk_seq[ch + 1]):
            a = seq_start[s]
            b = seq_start[s + 1]
            # forward: log alpha_t(k) = log b_t(k) + logsumexp_j(log alpha_{t-1}(j) + log A_jk)
            r = bidx[a]
            for k in range(K):
                la[a, k] = logpi[k] + lrows[r, k]
            prev = _logsumexp_vec(la[a])
            absum = abs(prev)
            for t in range(a + 1, b):
                r = bidx[t]
                for k in range(K):
                    for j in range(K):
                        tmp[j] = la[t - 1, j] + logA[j, k]
                    la[t, k] = lrows[r, k] + _logsumexp_vec(tmp)
                cur = _logsumexp_vec(la[t])
                absum += abs(cur - prev)
                prev = cur
            ll = prev
            seq_ll[s] = ll
            if ll == -np.inf:
                ll_chunk = -np.inf
                for t in range(a, b):
                    for k in range(K):
                        post[t, k] = np.nan
                continue
            ll_chunk += ll
            abs_chunk += absum
            if not backward:
                continue
            # backward: log beta_t(j) = logsumexp_k(log A_jk + log b_{t+1}(k) + log beta_{t+1}(k))
            # gamma_t(j) ∝ exp(log alpha_t(j) + log beta_t(j)) and
            # xi_t(j, k) ∝ exp(log alpha_t(j) + log A_jk + log b_{t+1}(k) + log beta_{t+1}(k)),
            # each normalised by its own sum (not by exp(ll)): the round-off
            # that log alpha and log beta accumulate along the sequence is
            # shared by all states and cancels.
            for k in range(K):
                lb[k] = 0.0
            _normalised_exp_row(la[b - 1], lb, post[b - 1])
            for t in range(b - 2, a - 1, -1):
                r = bidx[t + 1]
                for k in range(K):
                    u[k] = lrows[r, k] + lb[k]
                m = -np.inf
                for j in range(K):
                    for k in range(K):
                        v = la[t, j] + logA[j, k] + u[k]
                        e2[j, k] = v
                        if v > m:
                            m = v
                tot = 0.0
                for j in range(K):
                    for k in range(K):
                        e2[j, k] = math.exp(e2[j, k] - m)
                for j in range(K):
                    for k in range(K):
                        tot += e2[j, k]
                for j in range(K):
                    for k in range(K):
                        xi[j, k] += e2[j, k] / tot
                for j in range(K):
                    for k in range(K):
                        tmp[k] = logA[j, k] + u[k]
                    lb_new[j] = _logsumexp_vec(tmp)
                for j in range(K):
                    lb[j] = lb_new[j]
                _normalised_exp_row(la[t], lb, post[t])
            for k in range(K):
                p_start[ch, k] += post[a, k]
        for j in range(K):
            for k in range(K):
                p_trans[ch, j, k] = xi[j, k]
        p_ll[ch] = ll_chunk
        p_abs[ch] = abs_chunk


@njit(cache=True, parallel=True)
def _viterbi_kernel(lrows, bidx, seq_start, logpi, logA, back, path, seq_lp):
    """Most probable state path of each sequence, in log space (ties: lowest state)."""
    K = logpi.shape[0]
    for s in prange(seq_start.shape[0] - 1):
        a = seq_start[s]
        b = seq_start[s + 1]
        d = np.empty(K)
        dn = np.empty(K)
        r = bidx[a]
        for k in range(K):
            d[k] = logpi[k] + lrows[r, k]
        # delta_t(k) = max_j (delta_{t-1}(j) + log A_jk) + log b_t(k)
        for t in range(a + 1, b):
            r = bidx[t]
            for k in range(K):
                best = -np.inf
                arg = 0
                for j in range(K):
                    v = d[j] + logA[j, k]
                    if v > best:
                        best = v
                        arg = j
                dn[k] = best + lrows[r, k]
                back[t, k] = arg
            for k in range(K):
                d[k] = dn[k]
        best = -np.inf
        arg = 0
        for k in range(K):
            if d[k] > best:
                best = d[k]
                arg = k
        seq_lp[s] = best
        path[b - 1] = arg
        for t in range(b - 1, a, -1):
            arg = back[t, arg]
            path[t - 1] = arg


# exp(x) = 2^n exp(r), x = n ln 2 + r with ln 2 = _LN2_HI + _LN2_LO (n _LN2_HI
# exact for |n| < 2^21). Below _EXP_MIN exp is flushed to 0 (the relative size
# of a scaled emission against the largest one, e^-708 ~ 1e-308).
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_MIN = -708.0


@njit(cache=True)
def _exp_shifted(a, shift, nb):
    """a[b] <- exp(a[b] - shift[b]) for a[b] <= shift[b], b < nb, in place and branch-free.

    math.exp is a scalar libm call; this loop vectorises. With x = a - shift:
    n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2], exp(x) = 2^n exp(r),
    exp(r) by its Taylor series to degree 13 (remainder below 5e-18
    relative), 2^n written as its bit pattern. x below _EXP_MIN gives 0.
    """
    bits = a.view(np.int64)
    for b in range(nb):
        x = a[b] - shift[b]
        x = x if x > _EXP_MIN else _EXP_MIN
        n = math.floor(x * _INV_LN2 + 0.5)
        r = (x - n * _LN2_HI) - n * _LN2_LO
        # exp(r) = sum_{j=0}^{13} r^j / j!   (Horner)
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        # 2^n: biased exponent n + 1023 in bits 52..62
        bits[b] = (np.int64(n) + 1023) << 52
        a[b] = p * a[b] if x > _EXP_MIN else 0.0


@njit(cache=True)
def _load_block(Xt, t0, nb, x):
    """x[d, :nb] = Xt[d, t0:t0 + nb] (a contiguous copy the block's loops index by row only)."""
    for d in range(Xt.shape[0]):
        xs = Xt[d, t0:t0 + nb]
        xd = x[d]
        for b in range(nb):
            xd[b] = xs[b]


@njit(cache=True, parallel=True)
def _gauss_emission_kernel(Xt, means, prec, prec_diag, logdet, is_diag, scaled, out, shift):
    """Gaussian emissions of every row, in blocks of BLOCK rows.

    log b_t(k) = -D/2 log 2 pi + logdet_k - |y|^2 / 2, with
      full/tied:      y_j = sum_{i <= j} (x_i - mu_ki) P_k,ij   (Sigma_k^-1 = P_k P_k^T, P_k upper)
      diag/spherical: y_d = (x_d - mu_kd) prec_diag_kd
    scaled=False: out[t, k] = log b_t(k).
    scaled=True:  out[t, k] = b~_t(k) = exp(log b_t(k) - m_t), shift[t] = m_t = max_k log b_t(k).
    """
    D, n = Xt.shape
    K = means.shape[0]
    base = -0.5 * D * math.log(2.0 * math.pi)
    n_blocks = (n + BLOCK - 1) // BLOCK
    per_chunk = ROW_CHUNK // BLOCK
    n_chunks = (n_blocks + per_chunk - 1) // per_chunk
    for ch in prange(n_chunks):
        x = np.empty((D, BLOCK))
        e = np.empty((D, BLOCK))
        lb = np.empty((K, BLOCK))
        q = np.empty(BLOCK)
        y = np.empty(BLOCK)
        m = np.empty(BLOCK)
        for blk in range(ch * per_chunk, min(n_blocks, (ch + 1) * per_chunk)):
            t0 = blk * BLOCK
            nb = min(BLOCK, n - t0)
            _load_block(Xt, t0, nb, x)
            for k in range(K):
                for d in range(D):
                    xd = x[d]
                    ed = e[d]
                    mu = means[k, d]
                    for b in range(nb):
                        ed[b] = xd[b] - mu
                for b in range(nb):
                    q[b] = 0.0
                if is_diag:
                    for d in range(D):
                        ed = e[d]
                        s = prec_diag[k, d]
                        for b in range(nb):
                            v = ed[b] * s
                            q[b] += v * v
                else:
                    for j in range(D):
                        for b in range(nb):
                            y[b] = 0.0
                        for i in range(j + 1):
                            ei = e[i]
                            pij = prec[k, i, j]
                            for b in range(nb):
                                y[b] += ei[b] * pij
                        for b in range(nb):
                            q[b] += y[b] * y[b]
                lk = lb[k]
                c0 = base + logdet[k]
                for b in range(nb):
                    lk[b] = c0 - 0.5 * q[b]
            if scaled:
                # m_t = max_k log b_t(k); b~_t(k) = exp(log b_t(k) - m_t)
                for b in range(nb):
                    m[b] = lb[0, b]
                for k in range(1, K):
                    lk = lb[k]
                    for b in range(nb):
                        m[b] = lk[b] if lk[b] > m[b] else m[b]
                for k in range(K):
                    _exp_shifted(lb[k], m, nb)
                for b in range(nb):
                    shift[t0 + b] = m[b]
            for b in range(nb):
                for k in range(K):
                    out[t0 + b, k] = lb[k, b]


@njit(cache=True, parallel=True)
def _cat_stats_kernel(x, post, n_symbols, rows_per_chunk, p_obs):
    """p_obs[ch, k, m] = sum over the chunk's rows t with x_t = m of gamma_t(k)."""
    n, K = post.shape
    for ch in prange(p_obs.shape[0]):
        for k in range(K):
            for m in range(n_symbols):
                p_obs[ch, k, m] = 0.0
        for t in range(ch * rows_per_chunk, min(n, (ch + 1) * rows_per_chunk)):
            m = x[t]
            for k in range(K):
                p_obs[ch, k, m] += post[t, k]


@njit(cache=True, parallel=True)
def _gauss_stats_kernel(Xt, post, centres, full, p_n, p_s1, p_s2):
    """Per row chunk: N_k, S1_k = sum gamma (x - c_k), S2_k = sum gamma (x - c_k)(x - c_k)^T.

    S2 is the upper triangle (K, D (D + 1) / 2) when full, else the (K, D)
    diagonal. Each sum is kept in BLOCK lanes (lane b takes rows b, b + BLOCK,
    ...), so the inner loops run over rows and vectorise; the lanes are then
    added in lane order. The order of every sum depends on the chunking only.
    """
    D, n = Xt.shape
    K = post.shape[1]
    n2 = p_s2.shape[2]
    n_blocks = (n + BLOCK - 1) // BLOCK
    per_chunk = ROW_CHUNK // BLOCK
    for ch in prange(p_n.shape[0]):
        x = np.empty((D, BLOCK))
        e = np.empty((D, BLOCK))
        ge = np.empty((D, BLOCK))
        g = np.empty(BLOCK)
        accn = np.zeros((K, BLOCK))
        acc1 = np.zeros((K, D, BLOCK))
        acc2 = np.zeros((K, n2, BLOCK))
        for blk in range(ch * per_chunk, min(n_blocks, (ch + 1) * per_chunk)):
            t0 = blk * BLOCK
            nb = min(BLOCK, n - t0)
            _load_block(Xt, t0, nb, x)
            for k in range(K):
                for b in range(nb):
                    g[b] = post[t0 + b, k]
                an = accn[k]
                for b in range(nb):
                    an[b] += g[b]
                for d in range(D):
                    xd = x[d]
                    ed = e[d]
                    gd = ge[d]
                    a1 = acc1[k, d]
                    mu = centres[k, d]
                    for b in range(nb):
                        ed[b] = xd[b] - mu
                    for b in range(nb):
                        gd[b] = g[b] * ed[b]
                    for b in range(nb):
                        a1[b] += gd[b]
                if full:
                    ij = 0
                    for i in range(D):
                        gi = ge[i]
                        for j in range(i, D):
                            ej = e[j]
                            a2 = acc2[k, ij]
                            for b in range(nb):
                                a2[b] += gi[b] * ej[b]
                            ij += 1
                else:
                    for d in range(D):
                        gd = ge[d]
                        ed = e[d]
                        a2 = acc2[k, d]
                        for b in range(nb):
                            a2[b] += gd[b] * ed[b]
        # lanes added in lane order
        for k in range(K):
            s = 0.0
            for b in range(BLOCK):
                s += accn[k, b]
            p_n[ch, k] = s
            for d in range(D):
                s = 0.0
                for b in range(BLOCK):
                    s += acc1[k, d, b]
                p_s1[ch, k, d] = s
            for r in range(n2):
                s = 0.0
                for b in range(BLOCK):
                    s += acc2[k, r, b]
                p_s2[ch, k, r] = s


@njit(cache=True)
def _precision_cholesky_kernel(cov, prec, logdet):
    """For each k: Sigma_k = L L^T (Cholesky), prec_k = L^-T (upper), logdet_k = sum_j log prec_k,jj.

    Serial and LAPACK-free on purpose: a threaded BLAS call leaves worker
    threads spinning that take the cores from the next parallel E-step.
    Returns the index of the first matrix that is not positive definite, or -1.
    """
    K, D, _ = cov.shape
    L = np.empty((D, D))
    for k in range(K):
        # L_jj = sqrt(S_jj - sum_{m<j} L_jm^2),  L_ij = (S_ij - sum_{m<j} L_im L_jm) / L_jj  (i > j)
        for j in range(D):
            s = cov[k, j, j]
            for m in range(j):
                s -= L[j, m] * L[j, m]
            if not s > 0.0:
                return k
            L[j, j] = math.sqrt(s)
            for i in range(j + 1, D):
                t = cov[k, i, j]
                for m in range(j):
                    t -= L[i, m] * L[j, m]
                L[i, j] = t / L[j, j]
            for i in range(j):
                L[i, j] = 0.0
        # Y = L^-1 by forward substitution, column by column; prec = Y^T
        ld = 0.0
        for c in range(D):
            for i in range(D):
                if i < c:
                    prec[k, c, i] = 0.0
                    continue
                t = 1.0 if i == c else 0.0
                for m in range(c, i):
                    t -= L[i, m] * prec[k, c, m]
                prec[k, c, i] = t / L[i, i]
        for j in range(D):
            ld += math.log(prec[k, j, j])
        logdet[k] = ld
    return -1


@njit(cache=True)
def _sample_states_kernel(cum_start, cum_trans, u, first, out):
    """Inverse-CDF draws of a state path: z_0 from cum_start (or first >= 0), then rows of cum_trans."""
    K = cum_start.shape[0]
    if first >= 0:
        z = first
    else:
        z = 0
        while z < K - 1 and u[0] >= cum_start[z]:
            z += 1
    out[0] = z
    for t in range(1, u.shape[0]):
        nz = 0
        while nz < K - 1 and u[t] >= cum_trans[z, nz]:
            nz += 1
        z = nz
        out[t] = z


# ----------------------------------------------------------------------------
# Python side: validation, layout, M-step.
# ----------------------------------------------------------------------------


class NotFittedError(ValueError, AttributeError):
    """The estimator has no parameters yet (fit it, or set them)."""


class ConvergenceWarning(UserWarning):
    """EM stopped at n_iter before the gain fell below tol."""


@contextmanager
def _threads_for(n_rows):
    """One numba thread for work that fits in one chunk (thread start-up would dominate)."""
    if n_rows > ROW_CHUNK:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _as_rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2 ** 63, dtype=np.int64))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        if random_state is not None and random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, a Generator or None; got {random_state}.")
        return np.random.default_rng(random_state)
    raise ValueError(f"random_state must be an int, a numpy Generator or None; got {type(random_state).__name__}.")


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _reject_strings(arr, name):
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got an array of dtype {arr.dtype}.")


def _check_lengths(lengths, n):
    """(lengths as int64, seq_start) after checking they are positive and sum to n."""
    if lengths is None:
        lengths = np.array([n], dtype=np.int64)
    else:
        lengths = np.asarray(lengths)
        if lengths.ndim == 0:
            lengths = lengths.reshape(1)
        if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
            if lengths.ndim == 1 and lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths)):
                lengths = lengths.astype(np.int64)
            else:
                raise ValueError("lengths must be a 1-D sequence of integers.")
        lengths = lengths.astype(np.int64)
        if len(lengths) == 0:
            raise ValueError("lengths is empty; it needs one entry per sequence.")
        if (lengths < 1).any():
            raise ValueError(f"Every sequence length must be at least 1; got {int(lengths.min())}.")
        if int(lengths.sum()) != n:
            raise ValueError(f"lengths sum to {int(lengths.sum())}, but X has {n} samples.")
    seq_start = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=seq_start[1:])
    return lengths, seq_start


def _chunk_sequences(lengths):
    """Boundaries (sequence indices) of chunks of whole sequences, each >= CHUNK_STEPS steps but the last."""
    bounds = [0]
    acc = 0
    for i, L in enumerate(lengths):
        acc += int(L)
        if acc >= CHUNK_STEPS:
            bounds.append(i + 1)
            acc = 0
    if bounds[-1] != len(lengths):
        bounds.append(len(lengths))
    return np.asarray(bounds, dtype=np.int64)


def _check_prob_array(value, shape, name):
    """A probability vector / row-stochastic matrix of the given shape, or ValueError."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric.")
    arr = arr.astype(np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {arr.shape}.")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be finite and non-negative.")
    sums = arr.sum(axis=-1)
    if np.abs(sums - 1.0).max() > 1e-8:
        raise ValueError(f"Each row of {name} must sum to 1; the sums range from {sums.min():.6g} to {sums.max():.6g}.")
    return arr / arr.sum(axis=-1, keepdims=True)


def _check_dirichlet(value, shape, name):
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric.")
    try:
        arr = np.broadcast_to(arr.astype(np.float64), shape)
    except ValueError:
        raise ValueError(f"{name} must be a number or broadcast to shape {shape}; got shape {arr.shape}.") from None
    if not np.isfinite(arr).all() or (arr < 1.0).any():
        raise ValueError(f"{name} must be finite and >= 1 (a Dirichlet prior below 1 has an unbounded "
                         f"log-posterior, so EM has no maximiser).")
    return arr


def _xlogy(x, y):
    """sum x log y with 0 log y = 0 (and x log 0 = -inf for x > 0)."""
    if not x.any():                 # a flat prior: nothing to add (the common case, kept cheap)
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = x * np.log(y)
    return float(np.where(x == 0, 0.0, terms).sum())


def _normalise_rows(counts, old):
    """Rows of counts divided by their sums; a row summing to 0 keeps the old row."""
    s = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = counts / s
    return np.where(s > 0, out, old)


class _BaseHMM:
    """Shared forward-backward, EM loop, decoding and sampling."""

    _letters = "st"

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *,
                 algorithm="viterbi", random_state=None, n_iter=100, tol=1e-2,
                 verbose=False, params=None, init_params=None, implementation="scaling",
                 n_init=10, init_iter=10):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = self._letters if params is None else params
        self.init_params = self._letters if init_params is None else init_params
        self.implementation = implementation
        self.n_init = n_init
        self.init_iter = init_iter

    # -- scikit-learn style plumbing ---------------------------------------

    def get_params(self, deep=True):
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {p: getattr(self, p) for p in names}

    def set_params(self, **params):
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}.")
            setattr(self, key, value)
        return self

    def __repr__(self):
        return f"{type(self).__name__}(n_components={self.n_components})"

    # -- validation ---------------------------------------------------------

    @staticmethod
    def _int_param(value, name, low):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        return int(value)

    def _check_hyperparameters(self):
        K = self._int_param(self.n_components, "n_components", 1)
        self._int_param(self.n_iter, "n_iter", 0)
        self._int_param(self.n_init, "n_init", 1)
        self._int_param(self.init_iter, "init_iter", 0)
        if not isinstance(self.tol, (int, float, np.floating, np.integer)) or not (self.tol >= 0 and np.isfinite(self.tol)):
            raise ValueError(f"tol must be a finite number >= 0; got {self.tol!r}.")
        if self.algorithm not in ("viterbi", "map"):
            raise ValueError(f"algorithm must be 'viterbi' or 'map'; got {self.algorithm!r}.")
        if self.implementation not in ("scaling", "log"):
            raise ValueError(f"implementation must be 'scaling' or 'log'; got {self.implementation!r}.")
        for name in ("params", "init_params"):
            v = getattr(self, name)
            if not isinstance(v, str) or set(v) - set(self._letters):
                raise ValueError(f"{name} must be a string of the letters {self._letters!r}; got {v!r}.")
        return K

    def _check_fitted(self):
        missing = [a for a in self._param_attrs() if not hasattr(self, a)]
        if missing:
            raise NotFittedError(f"This {type(self).__name__} has no {', '.join(missing)} yet; call fit "
                                 f"or set the parameters first.")

    def _param_attrs(self):
        return ("startprob_", "transmat_") + self._emission_attrs

    def _checked_transitions(self, K):
        pi = _check_prob_array(self.startprob_, (K,), "startprob_")
        A = _check_prob_array(self.transmat_, (K, K), "transmat_")
        return pi, A

    # -- layout ---------------------------------------------------------------

    def _layout(self, X, lengths, fitting=False):
        """Validated data plus the fixed chunking of sequences and rows."""
        X = self._validate_X(X, fitting)
        n = len(X)
        if n == 0:
            raise ValueError("X has no samples.")
        lengths, seq_start = _check_lengths(lengths, n)
        return {"X": X, "n": n, "lengths": lengths, "seq_start": seq_start,
                "chunk_seq": _chunk_sequences(lengths),
                "n_row_chunks": (n + ROW_CHUNK - 1) // ROW_CHUNK}

    # -- E-step ---------------------------------------------------------------

    def _forward_backward(self, lay, implementation=None, backward=True):
        """(post, seq_ll, start, trans, ll, absum) at the current parameters.

        With 'scaling', a sequence whose scaled recursion underflows (seq_ll
        NaN from the kernel) is rerun in log space, and its posteriors and
        statistics replace the missing ones (added after the chunk partials,
        in sequence order, so the result is still independent of threads).
        """
        impl = implementation or self.implementation
        K = self.n_components
        n, cs = lay["n"], lay["chunk_seq"]
        nch = len(cs) - 1
        post = _buffer(lay, "post", (n, K))
        seq_ll = np.empty(len(lay["seq_start"]) - 1)
        p_start, p_trans = np.empty((nch, K)), np.empty((nch, K, K))
        p_ll, p_abs = np.empty(nch), np.empty(nch)
        pi, A = self.startprob_, self.transmat_
        emissions = self._emission_rows(lay, log=impl != "scaling")
        with _threads_for(n if nch > 1 else 0), np.errstate(divide="ignore"):
            if impl == "scaling":
                rows, shift, bidx = emissions
                _forward_backward_scaled(rows, shift, bidx, lay["seq_start"], cs, pi, A,
                                         np.ascontiguousarray(A.T), backward, _buffer(lay, "alpha", (n, K)), post,
                                         _buffer(lay, "w", (n, K)), _buffer(lay, "c", (n,)), seq_ll,
                                         p_start, p_trans, p_ll, p_abs)
            else:
                lrows, bidx = emissions
                _forward_backward_log(lrows, bidx, lay["seq_start"], cs, np.log(pi), np.log(A), backward,
                                      post, _buffer(lay, "la", (n, K)), seq_ll, p_start, p_trans, p_ll, p_abs)
        start, trans = _ordered_sum(p_start), _ordered_sum(p_trans)
        ll, absum = float(_ordered_sum(p_ll)), float(_ordered_sum(p_abs))
        redo = np.flatnonzero(np.isnan(seq_ll))
        if redo.size and impl != "scaling":
            raise ValueError("The parameters are not finite, so the forward-backward recursion is undefined.")
        if redo.size:
            ss = lay["seq_start"]
            idx = np.concatenate([np.arange(ss[i], ss[i + 1]) for i in redo])
            sub = self._layout(lay["X"][idx], lay["lengths"][redo])
            sub_post, sub_ll, sub_start, sub_trans, sub_total, sub_abs = self._forward_backward(sub, "log", backward)
            post[idx] = sub_post
            seq_ll[redo] = sub_ll
            start, trans = start + sub_start, trans + sub_trans
            ll, absum = ll + sub_total, absum + sub_abs
        return post, seq_ll, start, trans, ll, absum

    def _e_step(self, lay):
        """(log-likelihood, round-off scale, sufficient statistics) at the current parameters."""
        post, seq_ll, start, trans, ll, absum = self._forward_backward(lay)
        if not np.isfinite(ll):
            bad = int(np.flatnonzero(~np.isfinite(seq_ll))[0])
            raise ValueError(f"Sequence {bad} has probability zero under the current parameters (a symbol no "
                             f"state emits, or a transition the start forbids), so EM cannot proceed.")
        stats = {"start": start, "trans": trans}
        stats.update(self._emission_stats(lay, post))
        if not all(np.isfinite(v).all() for v in stats.values()):
            raise ValueError("The E-step statistics are not finite; check the data for extreme values.")
        return ll, absum, stats

    def _sufficient_statistics(self, X, lengths=None):
        """E-step statistics at the current parameters (a dict; also 'll', the log-likelihood)."""
        self._check_fitted()
        self._prepare_parameters()
        lay = self._layout(X, lengths)
        ll, _, stats = self._e_step(lay)
        return {**stats, "ll": ll}

    # -- M-step ---------------------------------------------------------------

    def _m_step(self, stats):
        K = self.n_components
        if "s" in self.params:
            self.startprob_ = _normalise_rows(stats["start"] + self._start_prior - 1.0, self.startprob_)
        if "t" in self.params:
            self.transmat_ = _normalise_rows(stats["trans"] + self._trans_prior - 1.0, self.transmat_)
        self._m_step_emissions(stats)
        assert self.transmat_.shape == (K, K)

    def _setup_priors(self, lay):
        K = self.n_components
        self._start_prior = _check_dirichlet(self.startprob_prior, (K,), "startprob_prior")
        self._trans_prior = _check_dirichlet(self.transmat_prior, (K, K), "transmat_prior")
        self._setup_emission_priors(lay)

    def _log_prior(self):
        return (_xlogy(self._start_prior - 1.0, self.startprob_) + _xlogy(self._trans_prior - 1.0, self.transmat_)
                + self._log_prior_emissions())

    # -- fit ------------------------------------------------------------------

    def fit(self, X, lengths=None):
        """Estimate the parameters by EM (Baum-Welch) with restarts; returns self."""
        K = self._check_hyperparameters()
        self._n_features_fitted = None           # a refit takes its sizes from the new data
        lay = self._layout(X, lengths, fitting=True)
        if lay["n"] < K and self.init_params:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {K}, "
                             f"n_samples = {lay['n']}.")
        self._setup_fit(lay)
        self._setup_priors(lay)
        given = {a: getattr(self, a) for a in self._param_attrs() if hasattr(self, a)}
        missing = [a for a in self._param_attrs() if a not in given
                   and self._letter_of[a] not in self.init_params]
        if missing:
            raise ValueError(f"init_params={self.init_params!r} leaves {', '.join(missing)} to you, but it is "
                             f"not set.")
        rng = _as_rng(self.random_state)
        randomised = any(letter in self.init_params for letter in self._random_letters)
        n_cand = self.n_init if randomised else 1
        screen = min(self.init_iter, self.n_iter) if n_cand > 1 else self.n_iter
        best = None
        for i in range(n_cand):
            for a, v in given.items():
                setattr(self, a, v)
            self._initialize(lay, rng)
            self._prepare_parameters()
            run = self._em(lay, None, screen)
            if self.verbose:
                print(f"start {i}: {len(run['history']) - 1} iterations, log-posterior {run['history'][-1]:.6f}")
            if best is None or run["history"][-1] > best["history"][-1]:
                best = run
        self._set_state(best["state"])
        if not best["converged"] and screen < self.n_iter:
            best = self._em(lay, best, self.n_iter - screen)
        self._set_state(best["state"])
        self.history_ = np.asarray(best["history"])
        self.n_iter_ = len(self.history_) - 1
        self.converged_ = best["converged"]
        self.n_features_ = self._n_features_fitted
        # hmmlearn's ConvergenceMonitor fields, for code that reads monitor_
        self.monitor_ = SimpleNamespace(tol=self.tol, n_iter=self.n_iter, verbose=self.verbose,
                                        history=deque(self.history_[-2:], maxlen=2), iter=self.n_iter_,
                                        converged=self.converged_)
        if best["falls"]:
            it, fall = best["falls"][0]
            warnings.warn(f"The log-posterior fell by more than round-off at {len(best['falls'])} iteration(s), "
                          f"first at iteration {it} (by {fall:.3e}), which EM never does; no such iteration "
                          f"counts as convergence.", RuntimeWarning, stacklevel=2)
        if not self.converged_ and self.n_iter > 0 and self.tol > 0:
            warnings.warn("EM stopped at n_iter before the gain fell below tol; increase n_iter.",
                          ConvergenceWarning, stacklevel=2)
        return self

    def _em(self, lay, run, n_steps):
        """Run up to n_steps EM iterations, from run (a previous run's end) or from the current parameters."""
        if run is None:
            ll, absum, stats = self._e_step(lay)
            history = [ll + self._log_prior()]
            if not np.isfinite(history[0]):
                raise ValueError("The starting parameters have zero prior density (a zero probability where "
                                 "the Dirichlet prior exceeds 1).")
            falls = []
        else:
            history, stats, absum, falls = list(run["history"]), run["stats"], run["absum"], list(run["falls"])
        converged = False
        for _ in range(n_steps):
            self._m_step(stats)
            self._derive()          # the M-step's output is valid by construction: no re-validation
            ll, absum, stats = self._e_step(lay)
            obj = ll + self._log_prior()
            if not np.isfinite(obj):
                raise ValueError("The log-posterior became non-finite; check the data for extreme values.")
            history.append(obj)
            change = obj - history[-2]
            if self.verbose and self.verbose >= 2:
                print(f"  iteration {len(history) - 1}: {obj:.10g} (change {change:.3e})")
            if change < -1e-10 * (absum + abs(obj)) and change < -self._roundoff() * (absum + abs(obj)):
                falls.append((len(history) - 1, -change))
                continue
            if self.tol > 0 and change < self.tol:
                converged = True
                break
        return {"history": history, "stats": stats, "absum": absum, "converged": converged, "falls": falls,
                "state": self._get_state()}

    def _roundoff(self):
        """Relative round-off of one emission log-density (only asked for after a fall)."""
        return 1e-10

    def _get_state(self):
        return {a: np.copy(getattr(self, a)) for a in self._param_attrs()}

    def _set_state(self, state):
        for a, v in state.items():
            setattr(self, a, v)
        self._prepare_parameters()

    # -- inference ------------------------------------------------------------

    def _ready(self, X, lengths):
        self._check_fitted()
        self._check_hyperparameters()
        self._prepare_parameters()
        return self._layout(X, lengths)

    def score(self, X, lengths=None):
        """Total log-likelihood log p(X | theta) of all sequences (no prior term)."""
        lay = self._ready(X, lengths)
        _, seq_ll, *_ = self._forward_backward(lay, backward=False)
        return float(_ordered_sum(seq_ll)) if np.isfinite(seq_ll).all() else -np.inf

    def log_posterior(self, X, lengths=None):
        """log p(X | theta) + log p(theta) (up to a constant): the objective history_ records."""
        lay = self._ready(X, lengths)
        self._setup_priors(lay)
        _, seq_ll, *_ = self._forward_backward(lay, backward=False)
        ll = float(_ordered_sum(seq_ll)) if np.isfinite(seq_ll).all() else -np.inf
        return ll + self._log_prior()

    def _posteriors(self, X, lengths):
        lay = self._ready(X, lengths)
        post, seq_ll, *_ = self._forward_backward(lay)
        if not np.isfinite(seq_ll).all():
            bad = int(np.flatnonzero(~np.isfinite(seq_ll))[0])
            raise ValueError(f"Sequence {bad} has probability zero under the model (for example a symbol no "
                             f"state emits), so its state posteriors are undefined.")
        return float(_ordered_sum(seq_ll)), post

    def score_samples(self, X, lengths=None):
        """(total log-likelihood, state posteriors gamma of shape (n_samples, n_components))."""
        return self._posteriors(X, lengths)

    def predict_proba(self, X, lengths=None):
        """State posteriors P(z_t = k | X), shape (n_samples, n_components)."""
        return self._posteriors(X, lengths)[1]

    def _viterbi(self, lay):
        K = self.n_components
        with np.errstate(divide="ignore"):
            lrows, bidx = self._emission_rows(lay, log=True)
            logpi, logA = np.log(self.startprob_), np.log(self.transmat_)
        path = np.empty(lay["n"], dtype=np.int64)
        seq_lp = np.empty(len(lay["seq_start"]) - 1)
        with _threads_for(lay["n"] if len(seq_lp) > 1 else 0):
            _viterbi_kernel(lrows, bidx, lay["seq_start"], logpi, logA,
                            np.zeros((lay["n"], K), dtype=np.int64), path, seq_lp)
        if not np.isfinite(seq_lp).all():
            bad = int(np.flatnonzero(~np.isfinite(seq_lp))[0])
            raise ValueError(f"Sequence {bad} has probability zero under the model (for example a symbol no "
                             f"state emits), so it has no most likely state path.")
        return float(_ordered_sum(seq_lp)), path

    def decode(self, X, lengths=None, algorithm=None):
        """(log probability, state path): 'viterbi' gives log max_z p(X, z); 'map' sum_t log max_k gamma_t(k)."""
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in ("viterbi", "map"):
            raise ValueError(f"algorithm must be 'viterbi' or 'map'; got {algorithm!r}.")
        if algorithm == "viterbi":
            return self._viterbi(self._ready(X, lengths))
        _, post = self._posteriors(X, lengths)
        with np.errstate(divide="ignore"):
            return float(np.log(post.max(axis=1)).sum()), post.argmax(axis=1)

    def predict(self, X, lengths=None):
        """The most likely state of each sample (Viterbi path, or 'map' posterior argmax per algorithm)."""
        return self.decode(X, lengths)[1]

    def _n_parameters(self):
        K = self.n_components
        counts = {"s": K - 1, "t": K * (K - 1)}
        counts.update(self._emission_parameter_counts())
        return sum(v for k, v in counts.items() if k in self.params)

    def bic(self, X, lengths=None):
        """Bayesian information criterion -2 log L + (free parameters) log n_samples (lower is better)."""
        n = self._ready(X, lengths)["n"]
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(n)

    def aic(self, X, lengths=None):
        """Akaike information criterion -2 log L + 2 (free parameters) (lower is better)."""
        self._ready(X, lengths)
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """(X, state_sequence): one sequence of n_samples steps drawn from the model."""
        self._check_fitted()
        self._check_hyperparameters()
        self._prepare_parameters()
        n = self._int_param(n_samples, "n_samples", 1)
        K = self.n_components
        first = -1
        if currstate is not None:
            first = self._int_param(currstate, "currstate", 0)
            if first >= K:
                raise ValueError(f"currstate must be below n_components = {K}; got {first}.")
        rng = _as_rng(self.random_state if random_state is None else random_state)
        states = np.empty(n, dtype=np.int64)
        _sample_states_kernel(np.cumsum(self.startprob_), np.cumsum(self.transmat_, axis=1),
                              rng.random(n), first, states)
        return self._sample_emissions(states, rng), states


def _buffer(lay, name, shape, dtype=np.float64):
    """A work array kept in the layout, reused across EM iterations (no fresh pages per E-step)."""
    buf = lay.setdefault("buffers", {})
    arr = buf.get(name)
    if arr is None or arr.shape != shape or arr.dtype != dtype:
        arr = buf[name] = np.empty(shape, dtype=dtype)
    return arr


def _ordered_sum(partials):
    """Sum of per-chunk partials along axis 0, strictly in chunk order."""
    out = np.array(partials[0], dtype=np.float64, copy=True)
    for p in partials[1:]:
        out += p
    return out


# ----------------------------------------------------------------------------
# Categorical emissions
# ----------------------------------------------------------------------------


class CategoricalHMM(_BaseHMM):
    """HMM with categorical emissions (hmmlearn.hmm.CategoricalHMM).

    Parameters
    ----------
    n_components : int
        Number of states K.
    startprob_prior, transmat_prior, emissionprob_prior : float or array, >= 1
        Dirichlet priors of startprob_ (K,), each row of transmat_ (K, K) and
        each row of emissionprob_ (K, M). 1 is flat (maximum likelihood);
        emissionprob_prior > 1 gives unseen symbols positive probability.
    n_features : int or None
        Number of symbols M; None takes max(X) + 1 at fit. The fitted value is
        ``n_features_``.
    algorithm : 'viterbi' or 'map'
        Decoder of predict / decode.
    random_state : int, numpy Generator or None
    n_iter : int
        Most EM iterations of the best start (tol=0: exactly n_iter).
    tol : float
        Stop when the log-posterior gains less than tol.
    verbose : bool or int
    params, init_params : str
        Letters of the parameters EM updates / fit initialises: 's' startprob,
        't' transmat, 'e' emissionprob. Parameters left out of init_params
        must be set on the estimator before fit.
    implementation : 'scaling' or 'log'
        Forward-backward with scaled probabilities or in log space.
    n_init : int
        Number of starting points (each refined by init_iter iterations; the
        best is run to convergence).
    init_iter : int
        EM iterations per starting point in the screening round.

    Attributes
    ----------
    startprob_ (K,), transmat_ (K, K), emissionprob_ (K, M), n_features_,
    history_ (log-posterior per iteration, history_[0] at the start),
    n_iter_, converged_, and monitor_ (hmmlearn's fields: history holds the
    last two entries of history_, iter, converged).
    """

    _letters = "ste"
    _random_letters = "te"           # the letters whose initialisation draws from the rng
    _emission_attrs = ("emissionprob_",)
    _letter_of = {"startprob_": "s", "transmat_": "t", "emissionprob_": "e"}

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *,
                 emissionprob_prior=1.0, n_features=None, algorithm="viterbi",
                 random_state=None, n_iter=100, tol=1e-2, verbose=False,
                 params="ste", init_params="ste", implementation="scaling",
                 n_init=10, init_iter=10):
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm=algorithm,
                         random_state=random_state, n_iter=n_iter, tol=tol, verbose=verbose,
                         params=params, init_params=init_params, implementation=implementation,
                         n_init=n_init, init_iter=init_iter)
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features

    def _check_hyperparameters(self):
        K = super()._check_hyperparameters()
        if self.n_features is not None:
            self._int_param(self.n_features, "n_features", 1)
        return K

    def _symbols(self, fitting=False):
        """The number of symbols M in force (fitted, given, or set through emissionprob_).

        fitting: at the start of fit, where an emissionprob_ that fit will
        re-initialise (or a previous fit's size) does not count.
        """
        if getattr(self, "_n_features_fitted", None) is not None:
            return self._n_features_fitted
        if self.n_features is not None:
            return self.n_features
        if hasattr(self, "emissionprob_") and not (fitting and "e" in self.init_params):
            return np.shape(self.emissionprob_)[-1]
        return None

    def _validate_X(self, X, fitting=False):
        arr = np.asarray(X)
        _reject_strings(arr, "X")
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"X must be a 1-D array of symbols or of shape (n_samples, 1); got shape "
                             f"{np.shape(X)}.")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
                raise ValueError("Symbols must be non-negative integers; X has a non-integer value.")
        if arr.size and arr.min() < 0:
            raise ValueError(f"Symbols must be non-negative integers; X has {arr.min():g}.")
        M = self._symbols(fitting)
        limit = M if M is not None else _MAX_INFERRED_SYMBOLS
        if arr.size and arr.max() >= limit:
            if M is None:
                raise ValueError(f"Symbol {arr.max():g} is too large to infer n_features from the data; set "
                                 f"n_features or recode the symbols as 0..M-1.")
            raise ValueError(f"Symbol {arr.max():g} is out of range: the model has n_features = {M} "
                             f"symbols (0 to {M - 1}).")
        arr = arr.astype(np.int64)
        return arr

    def _setup_fit(self, lay):
        if self.n_features is not None:
            self._int_param(self.n_features, "n_features", 1)
        self._n_features_fitted = None
        M = self.n_features if self.n_features is not None else (
            np.shape(self.emissionprob_)[-1] if "e" not in self.init_params and hasattr(self, "emissionprob_")
            else int(lay["X"].max()) + 1)
        if int(lay["X"].max()) >= M:
            raise ValueError(f"Symbol {int(lay['X'].max())} is out of range: n_features = {M}.")
        self._n_features_fitted = M
        lay["counts"] = np.bincount(lay["X"], minlength=M).astype(np.float64)

    def _setup_emission_priors(self, lay):
        self._emission_prior = _check_dirichlet(self.emissionprob_prior, (self.n_components, self._symbols()),
                                                "emissionprob_prior")

    def _initialize(self, lay, rng):
        K, M = self.n_components, self._n_features_fitted
        if "s" in self.init_params:
            self.startprob_ = np.full(K, 1.0 / K)
        if "t" in self.init_params:
            # random rows leaning towards staying, the usual regime of an HMM
            T = rng.dirichlet(np.ones(K), size=K) + np.eye(K) * K
            self.transmat_ = T / T.sum(1, keepdims=True)
        if "e" in self.init_params:
            # rows scattered around the symbol frequencies (every observed symbol has mass)
            freq = (lay["counts"] + 1.0) / (lay["counts"].sum() + M)
            E = freq * rng.gamma(1.0, size=(K, M))
            self.emissionprob_ = E / E.sum(1, keepdims=True)

    def _prepare_parameters(self):
        K = self.n_components
        self.startprob_, self.transmat_ = self._checked_transitions(K)
        M = self._symbols()
        E = np.asarray(self.emissionprob_)
        if M is None or E.ndim != 2:
            raise ValueError(f"emissionprob_ must have shape ({K}, n_features).")
        self.emissionprob_ = _check_prob_array(E, (K, M), "emissionprob_")

    def _derive(self):
        """Quantities derived from the parameters (none for categorical emissions)."""

    def _emission_rows(self, lay, log):
        E = self.emissionprob_
        if log:
            with np.errstate(divide="ignore"):
                return np.ascontiguousarray(np.log(E).T), lay["X"]
        # column m scaled by its largest entry: b~ has max 1, log m_t = log colmax[x_t]
        colmax = E.max(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rows = np.where(colmax > 0, E / colmax, 0.0).T
            shift = np.where(colmax > 0, np.log(colmax), 0.0)
        return np.ascontiguousarray(rows), shift, lay["X"]

    def _emission_stats(self, lay, post):
        M, K, n = self._symbols(), self.n_components, lay["n"]
        # chunks of ROW_CHUNK rows, but at most _STATS_BUDGET partial sums in all
        n_chunks = max(1, min(lay["n_row_chunks"], _STATS_BUDGET // (K * M)))
        rows_per_chunk = -(-n // n_chunks)
        p_obs = _buffer(lay, "p_obs", (n_chunks, K, M))
        with _threads_for(n if n_chunks > 1 else 0):
            _cat_stats_kernel(lay["X"], post, M, rows_per_chunk, p_obs)
        return {"obs": _ordered_sum(p_obs)}

    def _m_step_emissions(self, stats):
        if "e" in self.params:
            self.emissionprob_ = _normalise_rows(stats["obs"] + self._emission_prior - 1.0, self.emissionprob_)

    def _log_prior_emissions(self):
        return _xlogy(self._emission_prior - 1.0, self.emissionprob_)

    def _emission_parameter_counts(self):
        return {"e": self.n_components * (self._symbols() - 1)}

    def _sample_emissions(self, states, rng):
        cum = np.cumsum(self.emissionprob_, axis=1)
        u = rng.random(len(states))
        sym = (u[:, None] >= cum[states]).sum(axis=1)
        return np.minimum(sym, cum.shape[1] - 1).astype(np.int64)[:, None]

    @property
    def n_fit_scalars(self):
        return self._n_parameters()


# ----------------------------------------------------------------------------
# Gaussian emissions
# ----------------------------------------------------------------------------

_COV_TYPES = ("spherical", "diag", "full", "tied")


def _fill_covars(cov, covariance_type, K, D):
    """The (K, D, D) matrices of any stored covariance form."""
    cov = np.asarray(cov, dtype=np.float64)
    if covariance_type == "full":
        return cov.copy()
    if covariance_type == "tied":
        return np.tile(cov, (K, 1, 1))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(D)


def _floor_eigen(S, floor):
    """The symmetric matrix S with eigenvalues below floor raised to it (eigenvectors kept).

    Rebuilt as floor I + U diag(lam - floor)_+ U^T, whose round-off is about
    eps lam_max; the caller's floor is at least 16 D eps times a bound on
    lam_max (GaussianHMM._setup_fit), so the result is positive definite.
    """
    S = 0.5 * (S + S.T)
    D = len(S)
    if _precision_cholesky_kernel((S - floor * np.eye(D))[None], np.empty((1, D, D)), np.empty(1)) < 0:
        return S            # S - floor I is positive definite: nothing to raise (and no LAPACK call)
    vals, vecs = np.linalg.eigh(S)
    out = (vecs * np.maximum(vals - floor, 0.0)) @ vecs.T
    out = 0.5 * (out + out.T)
    out[np.diag_indices(D)] += floor
    raised = 16 * D * np.finfo(np.float64).eps * float(np.abs(vals).max())
    if raised > floor and _precision_cholesky_kernel(out[None], np.empty((1, D, D)), np.empty(1)) >= 0:
        # a prior far larger than the data (not covered by the caller's bound): floor at its round-off
        out = (vecs * np.maximum(vals - raised, 0.0)) @ vecs.T
        out = 0.5 * (out + out.T)
        out[np.diag_indices(D)] += raised
    return out


class GaussianHMM(_BaseHMM):
    """HMM with Gaussian emissions (hmmlearn.hmm.GaussianHMM).

    Parameters
    ----------
    n_components : int
    covariance_type : 'spherical', 'diag' (default), 'full' or 'tied'
    min_covar : float
        Floor of every covariance eigenvalue, kept at every M-step (module
        docstring); also added to the data covariance at initialisation.
    startprob_prior, transmat_prior : float or array, >= 1
        Dirichlet priors (1 = flat).
    means_prior, means_weight : array / float
        Normal prior of the means: mean m0, weight w (w = 0: flat).
    covars_prior, covars_weight : float or array
        Inverse-gamma / inverse-Wishart prior of the covariances: scale p (a
        number, or for 'full'/'tied' a (D, D) matrix) and weight nu.
    algorithm, random_state, n_iter, tol, verbose, implementation, n_init,
    init_iter : as CategoricalHMM.
    params, init_params : str
        Letters 's', 't', 'm' (means), 'c' (covariances).

    Attributes
    ----------
    startprob_ (K,), transmat_ (K, K), means_ (K, D), covars_ (K, D, D) for
    every covariance type, n_features_, history_, n_iter_, converged_.
    """

    _letters = "stmc"
    _random_letters = "m"            # k-means++ seeding; 't' follows from the means
    _emission_attrs = ("means_", "_covars_")
    _letter_of = {"startprob_": "s", "transmat_": "t", "means_": "m", "_covars_": "c"}

    def __init__(self, n_components=1, covariance_type="diag", min_covar=1e-3,
                 startprob_prior=1.0, transmat_prior=1.0, means_prior=0, means_weight=0,
                 covars_prior=1e-2, covars_weight=1, algorithm="viterbi", random_state=None,
                 n_iter=100, tol=1e-2, verbose=False, params="stmc", init_params="stmc",
                 implementation="scaling", n_init=10, init_iter=10):
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm=algorithm,
                         random_state=random_state, n_iter=n_iter, tol=tol, verbose=verbose,
                         params=params, init_params=init_params, implementation=implementation,
                         n_init=n_init, init_iter=init_iter)
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    # covars_ reads as (K, D, D) for every covariance type, as in hmmlearn;
    # it accepts the stored form of the covariance type.
    @property
    def covars_(self):
        if not hasattr(self, "_covars_"):
            raise AttributeError("covars_")
        K = self.n_components
        D = np.shape(self.means_)[1] if hasattr(self, "means_") else np.shape(self._covars_)[-1]
        return _fill_covars(self._covars_, self.covariance_type, K, D)

    @covars_.setter
    def covars_(self, value):
        self._covars_ = np.array(value, dtype=np.float64, copy=True)

    def _check_hyperparameters(self):
        K = super()._check_hyperparameters()
        if self.covariance_type not in _COV_TYPES:
            raise ValueError(f"covariance_type must be one of {', '.join(_COV_TYPES)}; got "
                             f"{self.covariance_type!r}.")
        if not _is_number(self.min_covar) or not self.min_covar > 0:
            raise ValueError(f"min_covar must be a finite number > 0 (it keeps collapsing states positive "
                             f"definite); got {self.min_covar!r}.")
        if not _is_number(self.means_weight) or self.means_weight < 0:
            raise ValueError(f"means_weight must be a finite number >= 0; got {self.means_weight!r}.")
        if not _is_number(self.covars_weight):
            raise ValueError(f"covars_weight must be a finite number; got {self.covars_weight!r}.")
        for name in ("means_prior", "covars_prior"):
            v = np.asarray(getattr(self, name))
            if v.dtype.kind not in "biuf":
                raise ValueError(f"{name} must be a number or a numeric array; got {getattr(self, name)!r}.")
        return K

    def _validate_X(self, X, fitting=False):
        arr = np.asarray(X)
        _reject_strings(arr, "X")
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got {arr.ndim}-D.")
        if arr.shape[1] == 0:
            raise ValueError("X has no features.")
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("X contains NaN or infinity.")
        if np.abs(arr).max(initial=0.0) > 1e150:
            raise ValueError("X has values beyond 1e150 in magnitude, whose squares overflow.")
        D = getattr(self, "_n_features_fitted", None)
        if D is None and hasattr(self, "means_") and not (fitting and "m" in self.init_params):
            D = np.shape(self.means_)[1]
        if D is not None and arr.shape[1] != D:
            raise ValueError(f"X has {arr.shape[1]} features, but the model has {D}.")
        return arr

    def _setup_fit(self, lay):
        self._n_features_fitted = None
        X = lay["X"]
        D = X.shape[1]
        if "m" not in self.init_params and hasattr(self, "means_") and np.shape(self.means_)[-1] != D:
            raise ValueError(f"X has {D} features, but means_ has {np.shape(self.means_)[-1]}.")
        self._n_features_fitted = D
        lay["mean"] = X.mean(axis=0)
        Xc = X - lay["mean"]
        lay["cov"] = np.einsum("ni,nj->ij", Xc, Xc) / len(X)      # einsum: no threaded BLAS call
        # The covariance floor of this fit: min_covar, unless that is below the
        # round-off of a covariance of these data (eps times the largest
        # eigenvalue, bounded by sum_d range_d^2): then 16 D eps sum_d range_d^2.
        # It is fixed for the whole fit, so each M-step maximises over the same set.
        spread = float(((X.max(axis=0) - X.min(axis=0)) ** 2).sum())
        self._floor = max(float(self.min_covar), 16 * D * np.finfo(np.float64).eps * spread)

    def _setup_emission_priors(self, lay):
        K = self.n_components
        D = lay["X"].shape[1]
        try:
            self._mprior = np.broadcast_to(np.asarray(self.means_prior, dtype=np.float64), (K, D))
        except (ValueError, TypeError):
            raise ValueError(f"means_prior must be a number or broadcast to shape ({K}, {D}).") from None
        if not np.isfinite(self._mprior).all():
            raise ValueError("means_prior must be finite.")
        cp = np.asarray(self.covars_prior, dtype=np.float64)
        ct = self.covariance_type
        if ct in ("full", "tied"):
            if cp.ndim == 0:
                P = float(cp) * np.eye(D)
            elif cp.shape == (D, D):
                P = cp
            else:
                raise ValueError(f"covars_prior must be a number or a ({D}, {D}) matrix for "
                                 f"covariance_type={ct!r}.")
            if not np.isfinite(P).all() or not np.allclose(P, P.T) or np.linalg.eigvalsh(P).min() < 0:
                raise ValueError("covars_prior must be a symmetric positive semi-definite matrix.")
            self._P = 0.5 * (P + P.T)
        else:
            try:
                P = np.broadcast_to(cp, (K, D)).copy()
            except ValueError:
                raise ValueError(f"covars_prior must be a number or broadcast to ({K}, {D}).") from None
            if not np.isfinite(P).all() or (P < 0).any():
                raise ValueError("covars_prior must be finite and >= 0.")
            self._P = P

    def _roundoff(self):
        """'full'/'tied': D kappa eps, since the relative round-off of (x - mu)^T Sigma^-1 (x - mu)
        through a Cholesky factor grows with the condition number kappa of Sigma (about 1e-3 on collinear data
        whose covariance floor is 1e-12 of its variance); at least 1e-10."""
        if self.covariance_type in ("diag", "spherical"):
            return 1e-10            # computed one dimension at a time: no loss with the condition number
        D = self.means_.shape[1]
        lam = np.linalg.eigvalsh(self.covars_)
        eps = np.finfo(np.float64).eps
        with np.errstate(divide="ignore"):
            kappa = float(np.nan_to_num((lam.max(axis=1) / lam.min(axis=1)).max(), posinf=1 / eps))
        return max(1e-10, D * min(kappa, 1 / eps) * eps)

    def _cov_dof(self):
        D = np.shape(self.means_)[1]
        return max(self.covars_weight - (1 if self.covariance_type in ("diag", "spherical") else D), 0)

    def _initialize(self, lay, rng):
        K = self.n_components
        X = lay["X"]
        n, D = X.shape
        labels = None
        if "m" in self.init_params:
            means, labels = _kmeans(X, K, rng)
            self.means_ = means
        if "c" in self.init_params:
            # hmmlearn's start, data covariance + min_covar I, floored like every M-step
            # (on collinear data of large scale, + min_covar I alone is not positive definite)
            cv = _floor_eigen(lay["cov"] + self.min_covar * np.eye(D), self._floor)
            ct = self.covariance_type
            self._covars_ = {"full": np.tile(cv, (K, 1, 1)), "tied": cv.copy(),
                             "diag": np.tile(np.diag(cv), (K, 1)),
                             "spherical": np.full(K, np.diag(cv).mean())}[ct]
        if labels is None and ("s" in self.init_params or "t" in self.init_params):
            labels = _nearest(X, np.asarray(self.means_, dtype=np.float64)) if hasattr(self, "means_") else None
        if "s" in self.init_params:
            self.startprob_ = np.full(K, 1.0 / K)
        if "t" in self.init_params:
            # transitions of the k-means label sequence (within sequences), plus one per cell
            T = np.ones((K, K))
            if labels is not None:
                keep = np.ones(n - 1, dtype=bool)
                keep[lay["seq_start"][1:-1] - 1] = False
                np.add.at(T, (labels[:-1][keep], labels[1:][keep]), 1.0)
            self.transmat_ = T / T.sum(1, keepdims=True)

    def _prepare_parameters(self):
        K = self.n_components
        self.startprob_, self.transmat_ = self._checked_transitions(K)
        means = np.asarray(self.means_)
        if means.dtype.kind not in "biuf" or means.ndim != 2 or means.shape[0] != K:
            raise ValueError(f"means_ must have shape ({K}, n_features).")
        means = means.astype(np.float64)
        if not np.isfinite(means).all():
            raise ValueError("means_ must be finite.")
        D = means.shape[1]
        self.means_ = means
        ct = self.covariance_type
        shape = {"spherical": (K,), "diag": (K, D), "full": (K, D, D), "tied": (D, D)}[ct]
        cov = np.asarray(self._covars_)
        if cov.dtype.kind not in "biuf" or cov.shape != shape:
            raise ValueError(f"covars_ for covariance_type={ct!r} must have shape {shape}; got {cov.shape}.")
        cov = cov.astype(np.float64)
        if not np.isfinite(cov).all():
            raise ValueError("covars_ must be finite.")
        full = _fill_covars(cov, ct, K, D)
        asym = np.abs(full - np.swapaxes(full, 1, 2)).max(axis=(1, 2))
        if (asym > 1e-12 * np.abs(full).max(axis=(1, 2))).any():
            raise ValueError("covars_ must be symmetric positive definite.")
        self._covars_ = cov
        self._derive(full)

    def _derive(self, full=None):
        """Precision factors of the covariances (full/tied: P_k with Sigma_k^-1 = P_k P_k^T), log-determinants."""
        K, D = self.means_.shape
        ct = self.covariance_type
        if full is None:
            full = _fill_covars(self._covars_, ct, K, D)
            if not (np.isfinite(full).all() and np.isfinite(self.means_).all()):
                raise ValueError("EM produced non-finite means or covariances; check the data and the priors "
                                 "for extreme values.")
        prec, logdet = np.empty((K, D, D)), np.empty(K)
        if _precision_cholesky_kernel(full, prec, logdet) >= 0:
            raise ValueError("covars_ must be symmetric positive definite.")
        self._prec, self._logdet = prec, logdet
        self._prec_diag = np.ascontiguousarray(1.0 / np.sqrt(np.diagonal(full, axis1=1, axis2=2)))
        self._is_diag = ct in ("diag", "spherical")

    def _log_emissions(self, X):
        """(n, K) log densities log N(x_t | mu_k, Sigma_k)."""
        Xt = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)
        out = np.empty((Xt.shape[1], self.n_components))
        with _threads_for(Xt.shape[1]):
            _gauss_emission_kernel(Xt, self.means_, self._prec, self._prec_diag, self._logdet, self._is_diag,
                                   False, out, np.empty(0))
        return out

    def _emission_rows(self, lay, log):
        n, K = lay["n"], self.n_components
        if "Xt" not in lay:
            lay["Xt"] = np.ascontiguousarray(lay["X"].T)
            lay["arange"] = np.arange(n, dtype=np.int64)
        out = _buffer(lay, "emission", (n, K))
        shift = _buffer(lay, "shift", (n,))
        with _threads_for(n):
            _gauss_emission_kernel(lay["Xt"], self.means_, self._prec, self._prec_diag, self._logdet,
                                   self._is_diag, not log, out, shift)
        return (out, lay["arange"]) if log else (out, shift, lay["arange"])

    def _emission_stats(self, lay, post):
        K, D = self.n_components, lay["X"].shape[1]
        full = self.covariance_type in ("full", "tied")
        nrc = lay["n_row_chunks"]
        p_n, p_s1 = np.empty((nrc, K)), np.empty((nrc, K, D))
        p_s2 = np.empty((nrc, K, D * (D + 1) // 2 if full else D))
        with _threads_for(lay["n"]):
            _gauss_stats_kernel(lay["Xt"], post, self.means_, full, p_n, p_s1, p_s2)
        S2 = _ordered_sum(p_s2)
        if full:
            iu = np.triu_indices(D)
            upper = S2
            S2 = np.empty((K, D, D))
            S2[:, iu[0], iu[1]] = upper
            S2[:, iu[1], iu[0]] = upper
        return {"post": _ordered_sum(p_n), "s1": _ordered_sum(p_s1), "s2": S2, "centres": self.means_.copy()}

    def _m_step_emissions(self, stats):
        K, D = self.means_.shape
        N, S1, S2, c = stats["post"], stats["s1"], stats["s2"], stats["centres"]
        w, m0 = float(self.means_weight), self._mprior
        # a state with (numerically) no posterior mass keeps its parameters:
        # N_k below 1e-200 expected visits cannot move the objective, and
        # dividing by it could overflow
        alive = N > 1e-200
        # new means: mu_k = (w m0 + sum gamma x) / (w + N_k) = c_k + (w (m0 - c_k) + S1_k) / (w + N_k)
        if "m" in self.params:
            with np.errstate(invalid="ignore", divide="ignore"):
                mu = c + (w * (m0 - c) + S1) / (w + N)[:, None]
            mu = np.where((alive | (w > 0))[:, None], mu, self.means_)
        else:
            mu = self.means_
        if "c" in self.params:
            d = mu - c                                # shift of the centre
            dm = mu - m0
            n0 = self._cov_dof()
            ct = self.covariance_type
            floor = self._floor
            if ct in ("diag", "spherical"):
                # C_kd = sum gamma (x - mu)^2 + w (mu - m0)^2 = S2 - 2 d S1 + N d^2 + w dm^2
                C = S2 - 2 * d * S1 + N[:, None] * d * d + w * dm * dm
                C = np.maximum(C, 0.0)
                ok = alive | (n0 > 0)
                if ct == "diag":
                    den = n0 + N[:, None]
                    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                        cov = (self._P + C) / den
                    cov = np.where(ok[:, None], np.maximum(cov, floor), self._covars_)
                else:
                    den = D * (n0 + N)
                    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                        cov = (self._P.sum(1) + C.sum(1)) / den
                    cov = np.where(ok, np.maximum(cov, floor), self._covars_)
            else:
                C = (S2 - np.einsum("ki,kj->kij", d, S1) - np.einsum("ki,kj->kij", S1, d)
                     + N[:, None, None] * np.einsum("ki,kj->kij", d, d) + w * np.einsum("ki,kj->kij", dm, dm))
                if ct == "full":
                    cov = self._covars_.copy()
                    for k in range(K):
                        if alive[k] or n0 > 0:
                            cov[k] = _floor_eigen((self._P + C[k]) / (n0 + N[k]), floor)
                else:
                    den = n0 + N.sum()
                    cov = _floor_eigen((self._P + C.sum(0)) / den, floor) if den > 1e-200 else self._covars_
            self._covars_ = cov
        self.means_ = mu

    def _log_prior_emissions(self):
        K, D = self.means_.shape
        ct = self.covariance_type
        w, m0 = float(self.means_weight), self._mprior
        dm = self.means_ - m0
        n0 = self._cov_dof()
        cov = self._covars_
        if ct == "diag":
            return float(-0.5 * (n0 * np.log(cov) + (self._P + w * dm * dm) / cov).sum())
        if ct == "spherical":
            return float(-0.5 * (D * n0 * np.log(cov) + (self._P.sum(1) + w * (dm * dm).sum(1)) / cov).sum())
        # -1/2 [n0 log|Sigma_k| + tr(Sigma_k^-1 M_k)], Sigma_k^-1 = P_k P_k^T, log|Sigma_k| = -2 logdet_k
        prec_inv = np.einsum("kij,klj->kil", self._prec, self._prec)
        if ct == "tied":
            M = self._P + w * np.einsum("ki,kj->ij", dm, dm)
            return float(-0.5 * (n0 * -2.0 * self._logdet[0] + np.sum(prec_inv[0] * M)))
        M = self._P + w * np.einsum("ki,kj->kij", dm, dm)
        return float(-0.5 * (n0 * -2.0 * self._logdet + np.einsum("kij,kij->k", prec_inv, M)).sum())

    def _emission_parameter_counts(self):
        K, D = self.n_components, self._features()
        return {"m": K * D, "c": {"spherical": K, "diag": K * D, "full": K * D * (D + 1) // 2,
                                  "tied": D * (D + 1) // 2}[self.covariance_type]}

    def _features(self):
        return np.shape(self.means_)[1]

    def _sample_emissions(self, states, rng):
        K, D = self.means_.shape
        L = np.linalg.cholesky(_fill_covars(self._covars_, self.covariance_type, K, D))
        eps = rng.standard_normal((len(states), D))
        return self.means_[states] + np.einsum("nij,nj->ni", L[states], eps)


def _nearest(X, centres):
    """Index of the nearest centre of each row (in slices of rows, to bound the (rows, K, D) temporary)."""
    out = np.empty(len(X), dtype=np.int64)
    step = max(1, 4_000_000 // (len(centres) * X.shape[1]))
    for i in range(0, len(X), step):
        out[i:i + step] = ((X[i:i + step, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    return out


def _kmeans(X, K, rng, n_lloyd=10):
    """k-means++ seeding (Arthur & Vassilvitskii 2007) plus a few Lloyd steps; (centres, labels)."""
    n, D = X.shape
    sub = X if n <= 20_000 else X[rng.choice(n, 20_000, replace=False)]
    centres = np.empty((K, D))
    centres[0] = sub[rng.integers(len(sub))]
    d2 = ((sub - centres[0]) ** 2).sum(1)
    for k in range(1, K):
        total = d2.sum()
        i = int(rng.choice(len(sub), p=d2 / total)) if total > 0 else int(rng.integers(len(sub)))
        centres[k] = sub[i]
        d2 = np.minimum(d2, ((sub - centres[k]) ** 2).sum(1))
    for _ in range(n_lloyd):
        lab = _nearest(sub, centres)
        for k in range(K):
            members = sub[lab == k]
            if len(members):
                centres[k] = members.mean(0)
    return centres, _nearest(X, centres)


# ----------------------------------------------------------------------------
# Harness contract (duck-typed: see "Writing a model" in emref's README).
# The estimators above do not use anything below; a copy of this file used
# on its own may delete this section.
# ----------------------------------------------------------------------------

EMREF_VARIANTS = ("categorical", "diag", "full", "spherical", "tied")
EMREF_N = 2000            # time steps, in sequences of _SEQ_LEN
_SEQ_LEN = 100
# Recovery tolerance: the RMS error over all aligned entries of startprob,
# transmat and the emission parameters must be at most C / sqrt(n) (sampling
# error, O(1/sqrt(n)) with the sequence length fixed). Measured over seeds
# 0-11 at n=2000, the largest sqrt(n) * RMS was 5.2 for 'categorical' (median
# 2.7) and 3.2-3.4 for the Gaussian variants (medians 1.8-2.0), so C = 8
# leaves a margin of about 1.5 over the worst seed.
EMREF_RECOVERY_C = 8.0
EMREF_PLOT_PANELS = 3


def emref_truth(variant, rng, n_components=3, n_symbols=6, n_features=2):
    """A random, well-posed HMM: sticky transitions, distinct emissions.

    transmat_: diagonal in [0.75, 0.9], the rest of each row spread by a
    Dirichlet(2); startprob_ from Dirichlet(5). Categorical: each state
    prefers its own block of symbols (4x the weight of the others).
    Gaussian: means at least 4 apart in a [-3, 3]^D box (grown if needed),
    covariances with variances in [0.5, 1.5].
    """
    K = n_components
    startprob = rng.dirichlet(np.full(K, 5.0))
    stay = rng.uniform(0.75, 0.9, size=K)
    transmat = np.zeros((K, K))
    for j in range(K):
        if K == 1:
            transmat[j, j] = 1.0
            continue
        rest = rng.dirichlet(np.full(K - 1, 2.0)) * (1.0 - stay[j])
        transmat[j, np.arange(K) != j] = rest
        transmat[j, j] = stay[j]
    truth = {"startprob": startprob, "transmat": transmat}
    if variant == "categorical":
        M = n_symbols
        owner = rng.permutation(np.arange(M) % K)
        E = rng.uniform(0.5, 1.5, size=(K, M)) * np.where(owner[None, :] == np.arange(K)[:, None], 4.0, 1.0)
        truth["emissionprob"] = E / E.sum(1, keepdims=True)
        return truth
    D = n_features
    half = 3.0
    for attempt in range(10_000):
        means = rng.uniform(-half, half, size=(K, D))
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1) + 1e9 * np.eye(K)
        if gaps.min() >= 4.0:
            break
        if attempt % 100 == 99:
            half *= 1.2

    def rotated():
        Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
        return (Q * rng.uniform(0.5, 1.5, size=D)) @ Q.T
    stored = {"full": lambda: np.stack([rotated() for _ in range(K)]), "tied": rotated,
              "diag": lambda: rng.uniform(0.5, 1.5, size=(K, D)),
              "spherical": lambda: rng.uniform(0.5, 1.5, size=K)}[variant]()
    truth["means"] = means
    truth["covars"] = _fill_covars(stored, variant, K, D)
    return truth


def _truth_estimator(variant, truth, like=None):
    """An estimator holding the given parameters (dict with emref_params' keys).

    With ``like`` (an estimator), one of its class with its settings, so that
    a subclass (e.g. a deliberately broken model) is checked as itself.
    """
    K = len(truth["startprob"])
    if like is not None:
        est = type(like)(**like.get_params())
    elif variant == "categorical":
        est = CategoricalHMM(K, n_features=truth["emissionprob"].shape[1])
    else:
        est = GaussianHMM(K, covariance_type=variant)
    if variant == "categorical":
        est.emissionprob_ = np.asarray(truth["emissionprob"], dtype=np.float64)
    else:
        est.means_ = np.asarray(truth["means"], dtype=np.float64)
        cov = np.asarray(truth["covars"], dtype=np.float64)
        est.covars_ = {"full": cov, "tied": cov[0], "diag": np.diagonal(cov, axis1=1, axis2=2).copy(),
                       "spherical": np.diagonal(cov, axis1=1, axis2=2).mean(1)}[variant]
    est.startprob_ = np.asarray(truth["startprob"], dtype=np.float64)
    est.transmat_ = np.asarray(truth["transmat"], dtype=np.float64)
    return est


def emref_sample(variant, truth, n, rng):
    """((X, lengths), z): sequences of _SEQ_LEN steps (the last one shorter), z the states."""
    est = _truth_estimator(variant, truth)
    lengths = [_SEQ_LEN] * (n // _SEQ_LEN) + ([n % _SEQ_LEN] if n % _SEQ_LEN else [])
    parts = [est.sample(L, random_state=rng) for L in lengths]
    X = np.concatenate([p[0] for p in parts])
    z = np.concatenate([p[1] for p in parts])
    return (X, np.asarray(lengths, dtype=np.int64)), z


def emref_fit(est, X):
    return est.fit(*X)


def emref_estimator(variant, truth, seed):
    """Defaults (priors included) but a tight tol and room to converge."""
    K = len(truth["startprob"])
    if variant == "categorical":
        return CategoricalHMM(K, n_features=truth["emissionprob"].shape[1], tol=1e-7, n_iter=3000,
                              random_state=seed)
    return GaussianHMM(K, covariance_type=variant, tol=1e-7, n_iter=3000, random_state=seed)


def emref_steps(est, n_iter):
    return type(est)(**{**est.get_params(), "n_iter": n_iter, "tol": 0.0})


def emref_params(est):
    out = {"startprob": est.startprob_, "transmat": est.transmat_}
    if isinstance(est, CategoricalHMM):
        out["emissionprob"] = est.emissionprob_
    else:
        out["means"], out["covars"] = est.means_, est.covars_
    return out


def emref_objective(variant, params, X):
    """Total log-posterior (history_'s units) under emref_estimator's (default) priors."""
    return _truth_estimator(variant, params).log_posterior(*X)


def emref_label_axes(variant):
    axes = {"startprob": (0,), "transmat": (0, 1)}
    if variant == "categorical":
        axes["emissionprob"] = (0,)
    else:
        axes.update(means=(0,), covars=(0,))
    return axes


def emref_align_cost(variant, truth, params):
    """Distance between emission parameters (transmat rows are not comparable before alignment)."""
    if variant == "categorical":
        t, e = truth["emissionprob"], params["emissionprob"]
        return ((np.sqrt(t)[:, None, :] - np.sqrt(e)[None]) ** 2).sum(-1)
    K = len(truth["means"])
    t = np.concatenate([truth["means"], np.reshape(truth["covars"], (K, -1))], axis=1)
    e = np.concatenate([params["means"], np.reshape(params["covars"], (K, -1))], axis=1)
    return ((t[:, None, :] - e[None]) ** 2).sum(-1)


# -- oracles ------------------------------------------------------------------

def _brute_force(est, X, lengths):
    """Exact quantities by enumerating all K^T state paths of each (short) sequence.

    Returns the total log-likelihood, gamma (n, K), the start and transition
    posteriors summed over sequences, the best path and its log probability.
    """
    import itertools
    from scipy.special import logsumexp
    K = est.n_components
    if isinstance(est, CategoricalHMM):
        with np.errstate(divide="ignore"):
            logb = np.log(est.emissionprob_)[:, np.asarray(X).reshape(-1)].T
    else:
        from scipy.stats import multivariate_normal
        covs = est.covars_
        logb = np.column_stack([multivariate_normal(est.means_[k], covs[k]).logpdf(X) for k in range(K)])
        logb = logb.reshape(len(X), K)
    with np.errstate(divide="ignore"):
        logpi, logA = np.log(est.startprob_), np.log(est.transmat_)
    total, gamma = 0.0, np.zeros((len(X), K))
    start, trans = np.zeros(K), np.zeros((K, K))
    path, best_total = np.zeros(len(X)), 0.0
    a = 0
    for L in lengths:
        paths = np.array(list(itertools.product(range(K), repeat=L)))
        lp = logpi[paths[:, 0]] + logb[a + np.arange(L), paths].sum(1)
        if L > 1:
            lp = lp + logA[paths[:, :-1], paths[:, 1:]].sum(1)
        ll = logsumexp(lp)
        w = np.exp(lp - ll)
        total += ll
        for t in range(L):
            gamma[a + t] = np.bincount(paths[:, t], weights=w, minlength=K)
            if t + 1 < L:
                np.add.at(trans, (paths[:, t], paths[:, t + 1]), w)
        start += gamma[a]
        i = int(np.argmax(lp))
        path[a:a + L] = paths[i]
        best_total += lp[i]
        a += L
    return total, gamma, start, trans, path, best_total


def _numpy_m_step(est, X, gamma, start, trans):
    """One M-step in plain numpy from exact posteriors (the module docstring's formulas)."""
    K = est.n_components
    out = {"startprob": start / start.sum(), "transmat": trans / trans.sum(1, keepdims=True)}
    if isinstance(est, CategoricalHMM):
        x = np.asarray(X).reshape(-1)
        obs = np.stack([np.bincount(x, weights=gamma[:, k], minlength=est.emissionprob_.shape[1])
                        for k in range(K)])
        out["emissionprob"] = obs / obs.sum(1, keepdims=True)
        return out
    D = X.shape[1]
    N = gamma.sum(0)
    mu = gamma.T @ X / N[:, None]
    C = np.stack([(gamma[:, k, None] * (X - mu[k])).T @ (X - mu[k]) for k in range(K)])
    ct, p, floor = est.covariance_type, float(est.covars_prior), est.min_covar
    n0 = max(est.covars_weight - (1 if ct in ("diag", "spherical") else D), 0)

    def clip(S):
        vals, vecs = np.linalg.eigh(S)
        return (vecs * np.maximum(vals, floor)) @ vecs.T
    if ct == "full":
        cov = np.stack([clip((p * np.eye(D) + C[k]) / (n0 + N[k])) for k in range(K)])
    elif ct == "tied":
        cov = np.tile(clip((p * np.eye(D) + C.sum(0)) / (n0 + N.sum())), (K, 1, 1))
    elif ct == "diag":
        v = np.maximum((p + np.diagonal(C, axis1=1, axis2=2)) / (n0 + N[:, None]), floor)
        cov = np.stack([np.diag(r) for r in v])
    else:
        v = np.maximum((D * p + np.trace(C, axis1=1, axis2=2)) / (D * (n0 + N)), floor)
        cov = v[:, None, None] * np.eye(D)
    out["means"], out["covars"] = mu, cov
    return out


def emref_oracle(est, X):
    """Kernels against brute-force enumeration (K^T paths) on short sequences, and scaled vs log space."""
    Xfull, lengths = X
    tiny_lengths = [6, 5, 3, 1]
    Xt = Xfull[:sum(tiny_lengths)]
    total, gamma, start, trans, path, best = _brute_force(est, Xt, tiny_lengths)
    variant = "categorical" if isinstance(est, CategoricalHMM) else est.covariance_type
    log_est = _truth_estimator(variant, emref_params(est), like=est)
    log_est.implementation = "log"
    stats = est._sufficient_statistics(Xt, tiny_lengths)
    stats_log = log_est._sufficient_statistics(Xt, tiny_lengths)
    lp, vpath = est.decode(Xt, tiny_lengths)
    out = [
        ("log-likelihood (scaled)", est.score(Xt, tiny_lengths), total),
        ("log-likelihood (log space)", log_est.score(Xt, tiny_lengths), total),
        ("state posteriors (scaled)", est.predict_proba(Xt, tiny_lengths), gamma),
        ("state posteriors (log space)", log_est.predict_proba(Xt, tiny_lengths), gamma),
        ("start posteriors", stats["start"], start),
        ("pairwise posteriors sum_t xi_t (scaled)", stats["trans"], trans),
        ("pairwise posteriors sum_t xi_t (log space)", stats_log["trans"], trans),
        ("Viterbi path", vpath, path),
        ("Viterbi log-probability", lp, best),
        ("scaled vs log-space log-likelihood, all data", est.score(Xfull, lengths), log_est.score(Xfull, lengths)),
        ("scaled vs log-space posteriors, all data", est.predict_proba(Xfull, lengths),
         log_est.predict_proba(Xfull, lengths)),
    ]
    if isinstance(est, CategoricalHMM):
        x = np.asarray(Xt).reshape(-1)
        ref = np.stack([np.bincount(x, weights=gamma[:, k], minlength=est.emissionprob_.shape[1])
                        for k in range(est.n_components)])
        out.append(("emission statistics", stats["obs"], ref))
    else:
        from scipy.stats import multivariate_normal
        covs = est.covars_
        c = stats["centres"]
        out += [
            ("Gaussian log-density", est._log_emissions(np.ascontiguousarray(Xfull)),
             np.column_stack([multivariate_normal(est.means_[k], covs[k]).logpdf(Xfull)
                              for k in range(est.n_components)])),
            ("occupancy N_k", stats["post"], gamma.sum(0)),
            ("centred first moments", stats["s1"],
             np.stack([gamma[:, k] @ (Xt - c[k]) for k in range(est.n_components)])),
        ]
    # one EM step on the short sequences, from the fitted parameters
    step = _truth_estimator(variant, emref_params(est), like=est)
    step.set_params(n_iter=1, tol=0.0, init_params="", n_init=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step.fit(Xt, tiny_lengths)
    ref = _numpy_m_step(est, Xt, gamma, start, trans)
    for name, value in emref_params(step).items():
        out.append((f"one EM step: {name}", value, ref[name]))
    return out


def emref_hostile(variant, X):
    """(name, call, arrays the call receives) for inputs that must be refused."""
    Xd, lengths = X
    K = 3
    if variant == "categorical":
        H = lambda **kw: CategoricalHMM(K, random_state=0, n_iter=5, **kw)   # noqa: E731
    else:
        H = lambda **kw: GaussianHMM(K, covariance_type=variant, random_state=0, n_iter=5, **kw)  # noqa: E731
    fitted = H().fit(Xd, lengths)
    bad_len = lengths.copy(); bad_len[0] += 1
    zero_len = np.r_[lengths[:-1], 0, lengths[-1]].astype(np.int64)
    not_stochastic = np.array([[0.5, 0.5, 0.5], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])

    def given(**attrs):
        est = H(init_params="")
        base = _truth_estimator(variant, emref_params(fitted))
        for a in est._param_attrs():
            setattr(est, a, getattr(base, a))
        for a, v in attrs.items():
            setattr(est, a, v)
        return est
    cases = [
        ("lengths summing to more than len(X)", lambda: H().fit(Xd, bad_len), [Xd, bad_len]),
        ("lengths containing 0", lambda: H().fit(Xd, zero_len), [Xd, zero_len]),
        ("negative lengths", lambda: H().fit(Xd, -lengths), [Xd, lengths]),
        ("n_components = 0", lambda: (CategoricalHMM(0) if variant == "categorical"
                                      else GaussianHMM(0, covariance_type=variant)).fit(Xd, lengths), [Xd]),
        ("startprob_ not summing to 1", lambda: given(startprob_=np.array([0.5, 0.5, 0.5])).fit(Xd, lengths), [Xd]),
        ("transmat_ rows not summing to 1", lambda: given(transmat_=not_stochastic).fit(Xd, lengths),
         [Xd, not_stochastic]),
        ("negative startprob_", lambda: given(startprob_=np.array([1.5, -0.5, 0.0])).fit(Xd, lengths), [Xd]),
        ("predict before fit", lambda: H().predict(Xd, lengths), [Xd]),
        ("score before fit", lambda: H().score(Xd, lengths), [Xd]),
        ("sample before fit", lambda: H().sample(10), []),
        ("n_iter negative", lambda: H().set_params(n_iter=-1).fit(Xd, lengths), [Xd]),
        ("unknown params letter", lambda: H(params="stx").fit(Xd, lengths), [Xd]),
        ("unknown implementation", lambda: H(implementation="fast").fit(Xd, lengths), [Xd]),
        ("unknown algorithm", lambda: fitted.decode(Xd, lengths, algorithm="best"), [Xd]),
        ("Dirichlet prior below 1", lambda: H(transmat_prior=0.5).fit(Xd, lengths), [Xd]),
        ("init_params leaves transmat_ unset", lambda: H(init_params="se").fit(Xd, lengths)
         if variant == "categorical" else H(init_params="smc").fit(Xd, lengths), [Xd]),
        ("non-numeric X", lambda: H().fit(np.array([["a"], ["b"], ["c"], ["d"]])), []),
    ]
    if variant == "categorical":
        neg = Xd.copy(); neg[3, 0] = -1
        frac = Xd.astype(float); frac[2, 0] = 1.5
        nan = Xd.astype(float); nan[1, 0] = np.nan
        big = Xd.copy(); big[0, 0] = fitted.n_features_
        E_bad = np.full((K, fitted.n_features_), 0.5)
        cases += [
            ("negative symbol", lambda: H().fit(neg, lengths), [neg]),
            ("non-integer symbol", lambda: H().fit(frac, lengths), [frac]),
            ("NaN symbol", lambda: H().fit(nan, lengths), [nan]),
            ("symbol >= n_features at fit", lambda: H(n_features=2).fit(Xd, lengths), [Xd]),
            ("symbol >= n_features at predict", lambda: fitted.predict(big, lengths), [big]),
            ("emissionprob_ rows not summing to 1", lambda: given(emissionprob_=E_bad).fit(Xd, lengths),
             [Xd, E_bad]),
            ("X of shape (n, 2)", lambda: H().fit(np.hstack([Xd, Xd])), [Xd]),
        ]
    else:
        nan = Xd.copy(); nan[0, 0] = np.nan
        inf = Xd.copy(); inf[1, -1] = np.inf
        cases += [
            ("X with NaN", lambda: H().fit(nan, lengths), [nan]),
            ("X with inf", lambda: H().fit(inf, lengths), [inf]),
            ("X 1-D", lambda: H().fit(Xd[:, 0].copy()), []),
            ("X 3-D", lambda: H().fit(Xd[None]), [Xd]),
            ("predict with other n_features", lambda: fitted.predict(np.hstack([Xd, Xd]), lengths), [Xd]),
            ("negative min_covar", lambda: H(min_covar=-1.0).fit(Xd, lengths), [Xd]),
            ("unknown covariance_type", lambda: GaussianHMM(K, covariance_type="banana").fit(Xd, lengths), [Xd]),
            ("covars_ not positive definite", lambda: given(_covars_=-np.asarray(fitted._covars_)).fit(Xd, lengths),
             [Xd]),
        ]
    return cases


def emref_edge(variant):
    """(name, call returning a fitted estimator) for inputs that must work."""
    rng = np.random.default_rng(0)
    truth = emref_truth(variant, rng)
    (X, lengths), _ = emref_sample(variant, truth, 600, rng)
    if variant == "categorical":
        H = lambda K=3, **kw: CategoricalHMM(K, random_state=0, **kw)   # noqa: E731
        x1 = X[:, 0].copy()
        cases = [
            ("1-D int symbols", lambda: H().fit(x1, lengths)),
            ("whole-number float symbols", lambda: H().fit(X.astype(float), lengths)),
            ("list input", lambda: H().fit(X.tolist(), list(lengths))),
            ("unseen symbols (n_features larger than max + 1)", lambda: H(n_features=10).fit(X, lengths)),
            ("unseen symbols with a smoothing prior", lambda: H(n_features=10, emissionprob_prior=2.0).fit(X, lengths)),
            ("one symbol only", lambda: H().fit(np.zeros((50, 1), dtype=int))),
        ]
    else:
        H = lambda K=3, **kw: GaussianHMM(K, covariance_type=variant, random_state=0, **kw)  # noqa: E731
        cases = [
            ("float32 X", lambda: H().fit(X.astype(np.float32), lengths)),
            ("integer X", lambda: H().fit(np.rint(X).astype(np.int64), lengths)),
            ("list input", lambda: H().fit(X.tolist(), list(lengths))),
            ("one feature", lambda: H().fit(X[:, :1], lengths)),
            ("all-identical points (covariance floor)", lambda: H().fit(np.full((60, 2), 3.0))),
            ("a state collapsing onto one point, no prior",
             lambda: H(covars_prior=0.0).fit(np.r_[X, np.full((30, 2), 7.0)], np.r_[lengths, 30])),
            ("means prior on", lambda: H(means_weight=2.0, means_prior=1.0).fit(X, lengths)),
        ]
    cases += [
        ("one state", lambda: H(1).fit(X, lengths)),
        ("sequences of length 1", lambda: H().fit(X[:40], np.ones(40, dtype=int))),
        ("log-space implementation", lambda: H(implementation="log").fit(X, lengths)),
        ("single start", lambda: H(n_init=1).fit(X, lengths)),
        ("Dirichlet priors on", lambda: H(startprob_prior=2.0, transmat_prior=3.0).fit(X, lengths)),
        ("n_iter = 0", lambda: H(n_iter=0).fit(X, lengths)),
    ]
    return cases


def emref_plot(axes, variant, truth, params, X, z):
    """Three panels: true vs decoded states, transition matrices, emission parameters (true | fitted)."""
    Xd, lengths = X
    est = _truth_estimator(variant, params)
    L = int(min(lengths[0], 200))
    decoded = est.predict(Xd[:L])
    ax = axes[0]
    ax.imshow(np.vstack([z[:L], decoded]), aspect="auto", cmap="tab10", interpolation="nearest",
              vmin=0, vmax=9)
    ax.set_yticks([0, 1], ["true", "decoded"])
    ax.set_xlabel("time step")
    ax.set_title(f"states of sequence 0 (agree {np.mean(z[:L] == decoded):.0%})")
    K = len(truth["startprob"])
    gap = np.full((K, 1), np.nan)
    ax = axes[1]
    im = ax.imshow(np.hstack([truth["transmat"], gap, params["transmat"]]), cmap="viridis", vmin=0, vmax=1)
    ax.set_title("transmat: true | fitted")
    ax.set_xticks([])
    ax.set_yticks(range(K))
    ax.figure.colorbar(im, ax=ax, shrink=0.7)
    ax = axes[2]
    if variant == "categorical":
        M = truth["emissionprob"].shape[1]
        im = ax.imshow(np.vstack([truth["emissionprob"], np.full((1, M), np.nan), params["emissionprob"]]),
                       cmap="viridis", vmin=0, vmax=1)
        ax.set_title("emissionprob: true (top) | fitted")
        ax.set_xlabel("symbol")
        ax.set_yticks([])
        ax.figure.colorbar(im, ax=ax, shrink=0.7)
    else:
        ax.scatter(Xd[:, 0], Xd[:, 1] if Xd.shape[1] > 1 else np.zeros(len(Xd)), c=z, s=3, cmap="tab10",
                   vmin=0, vmax=9, alpha=0.4, linewidths=0)
        t = np.linspace(0, 2 * np.pi, 100)
        circle = np.stack([np.cos(t), np.sin(t)])
        for p, style in ((truth, "--"), (params, "-")):
            for k in range(K):
                c = np.asarray(p["covars"][k])[:2, :2]
                m = np.asarray(p["means"][k])[:2]
                if len(m) < 2:
                    continue
                vals, vecs = np.linalg.eigh(c)
                pts = m[:, None] + 2 * vecs @ (np.sqrt(np.maximum(vals, 0))[:, None] * circle)
                ax.plot(pts[0], pts[1], style, color="k", lw=1)
        ax.set_title("emissions: true (--) and fitted (-) 2σ ellipses")


# -- seed scenario: the tutorial's HMM ----------------------------------------

_TUTORIAL = {
    "startprob": np.array([0.3, 0.3, 0.4]),
    "transmat": np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]),
    "emissionprob": np.array([[0.8, 0.1, 0.05, 0.05], [0.05, 0.8, 0.1, 0.05], [0.05, 0.05, 0.1, 0.8]]),
}


def _tutorial(seed, T=1000):
    """The tutorial's 3-state, 4-symbol HMM, one sequence of T=1000 steps.

    The tutorial's own code decoded it at 0.279, with NaN posteriors. Passes
    when the fitted log-likelihood reaches that of the true parameters, the
    issue's per-seed criterion. The Viterbi accuracy after alignment is
    reported; 'tutorial10' checks its 10-seed average.
    """
    truth = {k: v.copy() for k, v in _TUTORIAL.items()}
    true_est = _truth_estimator("categorical", truth)
    X, z = true_est.sample(T, random_state=np.random.default_rng(seed))
    t0 = time.perf_counter()
    est = CategoricalHMM(3, n_features=4, n_iter=1000, tol=1e-6, random_state=seed).fit(X)
    seconds = time.perf_counter() - t0
    acc_true = float(np.mean(true_est.predict(X) == z))
    params = emref_params(est)
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(emref_align_cost("categorical", truth, params))
    to_true = np.empty(3, dtype=int)
    to_true[cols] = rows                              # fitted state -> true state
    acc_fit = float(np.mean(to_true[est.predict(X)] == z))
    ll_fit, ll_true = est.score(X), true_est.score(X)
    reached = bool(ll_fit >= ll_true - 1e-10 * abs(ll_true))
    return {
        "variant": "categorical", "truth": truth, "X": (X, np.array([T])), "z": z, "estimator": est,
        "metrics": {"accuracy": acc_fit, "accuracy_true_params": acc_true, "loglik": ll_fit,
                    "loglik_true_params": ll_true, "fit_seconds": seconds},
        "passed": reached,
        "detail": (f"log-likelihood {ll_fit:.3f} vs true parameters {ll_true:.3f}"
                   f"{'' if reached else ' (below)'}; Viterbi accuracy {acc_fit:.3f} (true parameters "
                   f"{acc_true:.3f}; tutorial 0.279); fit {1e3 * seconds:.0f} ms"),
    }


def _tutorial10(seed):
    """The issue's acceptance test: seeds 10 seed .. 10 seed + 9 of 'tutorial'.

    Passes when every fit reaches the true log-likelihood and the mean
    Viterbi accuracy is within 2 points of the mean under the true
    parameters. (Single seeds vary more: over seeds 0-99 the largest
    per-seed gap was 5 points, the mean gap 1.0.)
    """
    runs = [_tutorial(s) for s in range(10 * seed, 10 * seed + 10)]
    acc = float(np.mean([r["metrics"]["accuracy"] for r in runs]))
    acc_true = float(np.mean([r["metrics"]["accuracy_true_params"] for r in runs]))
    reached = sum(r["passed"] for r in runs)
    out = dict(runs[-1])
    out["metrics"] = {"mean_accuracy": acc, "mean_accuracy_true_params": acc_true, "seeds_reaching_truth": reached}
    out["passed"] = bool(reached == len(runs) and acc >= acc_true - 0.02)
    out["detail"] = (f"seeds {10 * seed}-{10 * seed + 9}: mean Viterbi accuracy {acc:.3f} vs {acc_true:.3f} "
                     f"with the true parameters (need within 0.02); {reached}/10 reach the true log-likelihood")
    return out


def emref_scenarios():
    return {"tutorial": _tutorial, "tutorial10": _tutorial10}
