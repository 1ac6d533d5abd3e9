"""Multivariate normal data with missing values, fitted by expectation-maximization.

One self-contained file: it imports only the standard library, numpy, scipy
and numba, and works when copied alone into another project. The estimator
``EMImputer`` has scikit-learn's imputer API (``fit``, ``transform``,
``fit_transform``; missing cells are NaN) and is the algorithm of R's
``norm::em.norm`` (Schafer 1997): it estimates the mean and covariance by
maximum likelihood from the observed values alone, and fills each missing
cell with its conditional mean given the observed cells of its row.

Model
-----
    x_i ~ N(mu, Sigma),  x_i in R^D,  i = 1..n  (independent rows)

Row i splits into its observed cells o = o_i and its missing cells m = m_i.
The values are missing at random (Rubin 1976: whether a cell is missing may
depend on the observed cells of its row, not on the missing value itself), so
the observed-data log-likelihood is the one to maximise:

    l(theta) = sum_i log N(x_io | mu_o, Sigma_oo)
             = -1/2 sum_i [ |o_i| log 2 pi + log det Sigma_oo + r_io^T Sigma_oo^{-1} r_io ],
    r_io = x_io - mu_o.

A row with no observed cell has |o_i| = 0 and contributes 0.

Prior (the ridge)
-----------------
    log p(Sigma) = -1/2 tr(Lambda Sigma^{-1}),   Lambda = ridge * diag(s_1^2, .., s_D^2)

with s_d^2 the variance of the observed values of column d (if that is 0,
i.e. fewer than two distinct values, their mean square, and if that is 0
too, 1). It is the inverse-Wishart density with scale matrix Lambda in the
(improper) limit of -(D + 1) degrees of freedom, i.e. Lambda added to the
scatter with the normaliser n of the maximum-likelihood M-step, not n plus a
prior count; no additive constant is included (an improper prior has none,
and a constant moves neither the maximiser nor the monotonicity). It is
``ridge * I`` in standardised units, in the spirit of the ridge prior of
Schafer (1997, ch. 5), which norm applies to standardised data; so the
estimator is equivariant under rescaling a column (an absolute
``ridge * I`` would swamp a column of variance 1e-8 and vanish next to one of
variance 1e10). The posterior is bounded above whenever ridge > 0, however
few the rows (tr(Lambda Sigma^{-1}) -> inf as Sigma becomes singular, faster
than log det Sigma -> -inf), so the MAP estimate exists and is positive
definite: Sigma >= Lambda / n_obs (n_obs: the rows with an observed cell).

Default ridge = 1e-6. It changes a well-posed fit by Lambda / n_obs, a
relative 1e-6 / n_obs of each variance: invisible next to the sampling
error, of relative size 1 / sqrt(n_obs). It keeps rank-deficient data (fewer
rows than columns, a constant column, collinear columns) positive definite,
with a condition number (in standardised units) of at most about
D n_obs / ridge, far inside float64; such data take the accurate direct
route below. ``ridge=0`` gives the plain MLE, and fit raises ValueError when
the covariance is then singular.

Objective
---------
``history_[t]`` is the mean log-posterior per row of X,

    F(theta) = ( l(theta) + log p(Sigma) ) / n_samples

(rows with no observed cell count in n_samples) at the parameters after t iterations (``history_[0]`` at the start), computed
exactly at those parameters by the E-step that runs there, never one
iteration late. With ridge = 0 it is the mean observed-data log-likelihood,
which ``score`` returns for any X (``score`` never includes the prior).

E-step (conditional distribution of the missing cells)
------------------------------------------------------
At the current (mu, Sigma), for each row

    xhat_im = mu_m + Sigma_mo Sigma_oo^{-1} (x_io - mu_o)          (conditional mean)
    C_i     = Sigma_mm - Sigma_mo Sigma_oo^{-1} Sigma_om           (conditional covariance)

(xhat_io = x_io, and C_i is zero outside the (m, m) block). The E-step
returns additive statistics, centred on the current mean c = mu (centred
sums lose no digits when |mu| >> the standard deviations; Chan, Golub &
LeVeque 1983), over the n_obs rows with at least one observed cell:

    S1 = sum_i (xhat_i - c),   S2 = sum_i (xhat_i - c)(xhat_i - c)^T,   CS = sum_i C_i,

and l(theta). Rows are sorted by missingness pattern once per fit, so a
pattern's factorisation is computed once per chunk and iteration and shared
by its rows (the rows of a pattern that straddles a chunk boundary pay once
per chunk).

Two routes to the same conditional distribution. With the precision matrix
Q = Sigma^{-1} (from one Cholesky factorisation Sigma = L L^T per iteration)
and the Schur-complement identities

    C_i = (Q_mm)^{-1},    xhat_im - mu_m = -(Q_mm)^{-1} Q_mo r_io,
    log det Sigma_oo = log det Sigma + log det Q_mm,

a pattern needs only the m x m Cholesky factorisation of Q_mm (the
"precision route"); the "direct route" factorises the o x o block,
Sigma_oo = L_o L_o^T, V = L_o^{-1} Sigma_om, C_i = Sigma_mm - V^T V,
xhat_im - mu_m = V^T L_o^{-1} r_io. Per pattern the precision route costs
about m^3 / 2 operations and the direct one o^3 / 6 + o^2 m / 2 + o m^2 / 2;
per row D m + m^2 and o^2 / 2 + o m. The choice, per pattern:

* cond_1(Sigma) = ||Sigma||_1 ||Q||_1 <= 1e6 (computed once per iteration):
  the smaller block, i.e. the precision route when m <= o (the common case:
  20% missing leaves m ~ D / 5), the direct route otherwise;
* cond_1(Sigma) > 1e6: the direct route for every pattern.

Why: measured against exact rational arithmetic (tests/test_impute.py, D = 6,
cond(Sigma) up to 1e8), the direct route's conditional means and covariances
stay within a few eps sqrt(cond(Sigma)) relative (4e-14 at cond 1e8), while
the precision route's lose about 1e-2 eps cond(Sigma) (1e-12 at cond 1e6,
1e-10 at 1e8), because Q itself carries an error of eps cond(Sigma). Below
the switch the precision route's error is at most ~2e-12; above it the
direct route is slower (on D = 20, 20% missing, about 10 times per pattern)
but as accurate as the data allow.

The log-likelihood. The filled residual yhat_i = xhat_i - mu minimises the
quadratic form y^T Q y over the missing cells with the observed ones fixed,
and the minimum is the Mahalanobis term:

    r_io^T Sigma_oo^{-1} r_io = yhat_i^T Q yhat_i = ||L^{-1} yhat_i||^2,

so every row's term comes from the one D x D factor L, whatever its pattern,
in a loop over the rows of a block that vectorises (D (D + 1) / 2 operations
per row). (Summing first, r^T Sigma_oo^{-1} r summed over rows = tr(Q S2),
would cost nothing per row, but loses about eps cond(Sigma) relative, 100
times more than the rows' sum, measured; so history_ is not computed that way.)

The statistics are accumulated within fixed chunks of CHUNK sorted rows
(``prange`` over chunks); within a chunk, S2 and the Mahalanobis terms are
computed over blocks of BLOCK rows held transposed, so the inner loops run
over rows and vectorise. The chunk partials are added in chunk order, so the
results are bit-identical for any number of numba threads. With a single
chunk (n <= CHUNK) the kernels run on one numba thread (the results are the
same). No LAPACK (so no threaded BLAS) is called in the EM loop: the D x D
factorisation and the pattern factorisations are small serial loops.

M-step (maximum a posteriori; statistics -> parameters)
--------------------------------------------------------
    delta = S1 / n_obs,    mu' = c + delta
    Sigma' = ( S2 + CS - n_obs delta delta^T + Lambda ) / n_obs

the exact maximiser of Q(theta) + log p(Sigma), where the expected
complete-data log-likelihood Q(theta) includes the conditional covariances
C_i (forgetting them is the classic bug of "impute the conditional means,
then take the covariance of the filled-in data": its covariance is biased
towards zero; tests/test_impute.py shows it). So EM never decreases F
(Dempster, Laird & Rubin 1977; the same argument holds for a posterior mode,
McLachlan & Krishnan 2008, ch. 1). Rows with no observed cell are left out
of the statistics and of n_obs: they carry no information, and including
them (xhat = mu, C = Sigma) would only slow EM down.

Convergence
-----------
After each iteration, with change = F_new - F_old:

* change < -rho s, where s is the scale of the sum (the mean over rows of
  1/2 (|o_i| log 2 pi + |log det Sigma_oo| + r^T Sigma_oo^{-1} r), plus
  1/2 tr(Lambda Sigma^{-1}) / n_samples) and rho = max(1e-10, D kappa eps)
  with kappa = cond_1(Sigma) (a log-density through a factorisation loses
  about that much): a fall EM cannot make. It is never convergence; fit
  counts such falls and warns once.
* otherwise, converged when tol > 0 and |change| < tol u, with
  u = 1/2 (1 + log 2 pi) (number of observed cells) / n_samples, the
  objective's magnitude for independent standardised columns. The rule is
  relative to a unit-free size of F: rescaling a column (metres to km)
  shifts F by a constant and leaves every change unchanged, so the same
  iterations run in any units (|F| itself depends on the units and may be 0).
  tol = 0 runs exactly max_iter iterations.

Default tol = 1e-8. Measured on n = 1e5 rows, D = 20, 20% missing at random:
13 iterations, and the parameters are then within 3e-5 (in units of the
standard deviations) of the fully converged ones, 100 times below the
sampling error 1 / sqrt(n). (EM's rate slows as the fraction of missing
information grows; lower tol for heavily missing data or larger n.)

Start: the observed column means and the diagonal covariance
diag(s_1^2, .., s_D^2) (as ``norm``: observed means and variances, no
correlation). ``mean_init`` / ``covariance_init`` override it.

Inputs and fitted state
-----------------------
X must be numeric (strings are refused), with NaN (or None) for a missing
cell; infinity is refused, as is |x| > 1e150 (squares would overflow). fit
needs at least one observed value in every column (a column with none has
no information about its mean); a row with no observed value is allowed and
is filled with mu. The caller's array is never written; transform returns a
new float64 array with the observed cells copied bit for bit. Multiple
imputation: ``sample(X, n_draws)`` draws the missing cells from their
conditional distribution N(xhat_im, C_i) at the fitted parameters (random
numbers from numpy's default_rng; the parameters are not redrawn, so this is
"improper" multiple imputation in Rubin's sense, whose between-imputation
variance misses the O(1/n) parameter uncertainty).

Array shapes
------------
    X                   (n_samples, n_features)     NaN = missing
    mean_               (D,)
    covariance_         (D, D)
    precision_          (D, D)    covariance_^{-1}
    transform(X)        (n_samples, D)
    sample(X, k)        (k, n_samples, D)
    score_samples(X)    (n_samples,)

References
----------
A. P. Dempster, N. M. Laird, D. B. Rubin (1977), Maximum likelihood from
incomplete data via the EM algorithm, JRSS B 39(1), 1-38.
R. J. A. Little, D. B. Rubin (2019), Statistical Analysis with Missing Data,
3rd ed., ch. 11 (EM for an incomplete multivariate normal sample).
J. L. Schafer (1997), Analysis of Incomplete Multivariate Data, ch. 5, and
its R package norm (em.norm; its ridge prior).
D. B. Rubin (1976), Inference and missing data, Biometrika 63(3), 581-592.
G. J. McLachlan, T. Krishnan (2008), The EM Algorithm and Extensions, 2nd ed.
T. F. Chan, G. H. Golub, R. J. LeVeque (1983), Algorithms for computing the
sample variance (centred sums).
"""

import contextlib
import math
import numbers
import time
import warnings

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads

# Sorted rows per chunk: fixed, so the chunk boundaries (and so every
# floating-point sum) do not depend on the number of threads. Rows per block:
# the unit of the vectorised loops over rows inside a chunk.
CHUNK = 1024
BLOCK = 64
# Fast-math without 'nnan'/'ninf': reassociation lets LLVM vectorise the sums
# over the rows of a block.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_LOG_2PI = math.log(2.0 * math.pi)
# Largest accepted |x|: squares reach 1e300, leaving room for the sums.
_MAX_ABS = 1e150
_EPS = np.finfo(np.float64).eps
# The precision route serves a pattern only while cond_1(Sigma) <= this: its
# conditional means and covariances lose about 1e-2 eps cond(Sigma) relative
# (measured against exact rational arithmetic in tests/test_impute.py), i.e.
# at most ~2e-12 here; beyond, every pattern takes the direct route, whose
# error stays near eps sqrt(cond) (4e-14 at cond 1e8).
_PRECISION_MAX_COND = 1e6


# ----------------------------------------------------------------------------
# Kernels. All take preallocated float64 / int64 arrays and plain numbers.
# Matrices are small (D x D); factorisations are written out (no LAPACK, so no
# threaded BLAS in the EM loop: its spinning worker threads take the cores the
# prange chunks need).
# ----------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _cholesky_lower(A, k, dinv):
    """In place: A[:k, :k] (lower triangle read) -> L with A = L L^T (lower triangle
    written, strict upper triangle zeroed) and dinv[j] = 1 / L[j, j].

    Returns log det A = 2 sum_j log L[j, j], or NaN if A is not positive definite.
    The logarithm is taken of running products (rescaled before they leave
    [1e-100, 1e100]), not of every pivot.
    """
    ld = 0.0
    prod = 1.0
    for j in range(k):
        # L[j, j] = sqrt(A[j, j] - sum_{t<j} L[j, t]^2)
        s = A[j, j]
        for t in range(j):
            s -= A[j, t] * A[j, t]
        if not s > 0.0:
            return np.nan
        ljj = math.sqrt(s)
        A[j, j] = ljj
        r = 1.0 / ljj
        dinv[j] = r
        # log det: prod_j L[j, j]^2 = prod_j s_j
        prod *= s
        if prod > 1e100 or prod < 1e-100:
            ld += math.log(prod)
            prod = 1.0
        # L[i, j] = (A[i, j] - sum_{t<j} L[i, t] L[j, t]) / L[j, j],  i > j
        for i in range(j + 1, k):
            s = A[i, j]
            for t in range(j):
                s -= A[i, t] * A[j, t]
            A[i, j] = s * r
        for i in range(j):
            A[i, j] = 0.0
    return ld + math.log(prod)


@njit(cache=True, inline="always")
def _lower_inverse(L, k, dinv, W):
    """W[:k, :k] = L^{-1} for lower-triangular L with dinv[i] = 1 / L[i, i] (forward substitution)."""
    for c in range(k):
        # W[c, c] = 1 / L[c, c];  W[i, c] = -(sum_{c<=t<i} L[i, t] W[t, c]) / L[i, i],  i > c
        for i in range(c):
            W[i, c] = 0.0
        W[c, c] = dinv[c]
        for i in range(c + 1, k):
            s = 0.0
            for t in range(c, i):
                s -= L[i, t] * W[t, c]
            W[i, c] = s * dinv[i]


@njit(cache=True)
def _sigma_factor_kernel(Sigma, L, W, Q):
    """Sigma = L L^T, W = L^{-1}, Q = W^T W = Sigma^{-1}; returns log det Sigma (NaN if not PD)."""
    D = Sigma.shape[0]
    for i in range(D):
        for j in range(D):
            L[i, j] = Sigma[i, j]
    dinv = np.empty(D)
    ld = _cholesky_lower(L, D, dinv)
    if not math.isfinite(ld):
        return np.nan
    _lower_inverse(L, D, dinv, W)
    # Q[d, e] = sum_{t >= max(d, e)} W[t, d] W[t, e]  (symmetric by construction)
    for d in range(D):
        for e in range(d, D):
            s = 0.0
            for t in range(e, D):
                s += W[t, d] * W[t, e]
            Q[d, e] = s
            Q[e, d] = s
    return ld


@njit(cache=True, _nrt=False)
def _factor_pattern(p, m_ptr, m_idx, o_ptr, o_idx, Sigma, Q, logdet_sigma, want_chol_c, rule, F, V, C, LC, dinv):
    """Factorise missingness pattern p; returns (route, log det Sigma_oo), route -1 on failure.

    rule 0 takes route 0 when m <= o and route 1 otherwise; rule 1 always
    route 0, rule 2 always route 1 (for the accuracy tests).
    Route 0 (precision): F[:m, :m] = chol(Q_mm), C = Q_mm^{-1} = F^{-T} F^{-1}
    (V holds F^{-1}); log det Sigma_oo = log det Sigma + 2 sum log F_aa.
    Route 1 (direct): F[:o, :o] = chol(Sigma_oo), V[:o, :m] = F^{-1} Sigma_om,
    C = Sigma_mm - V^T V; log det Sigma_oo = 2 sum log F_kk.
    With want_chol_c, LC[:m, :m] = the lower Cholesky factor of C (route 1 only;
    route 0 samples with F^{-T}). dinv (2 D) receives the reciprocal pivots:
    dinv[:k] those of F, dinv[o:o + m] those of chol(C).

    Compiled without numba's reference counting (_nrt=False; it allocates
    nothing) and called once per pattern: every call of a function that
    counts references updates the counters of all its array arguments
    atomically, and those counters are shared by the threads. The helpers
    it calls are inlined into it, so they count nothing either.
    """
    m0 = m_ptr[p]
    m = m_ptr[p + 1] - m0
    o0 = o_ptr[p]
    o = o_ptr[p + 1] - o0
    if rule == 1 or (rule == 0 and m <= o):
        # F = Q_mm (lower triangle), then its Cholesky factor
        for a in range(m):
            ja = m_idx[m0 + a]
            for b in range(a + 1):
                F[a, b] = Q[ja, m_idx[m0 + b]]
        ld = _cholesky_lower(F, m, dinv)
        if not math.isfinite(ld):
            return -1, 0.0
        ld += logdet_sigma
        _lower_inverse(F, m, dinv, V)
        # C[a, b] = sum_{t >= max(a, b)} V[t, a] V[t, b]
        for a in range(m):
            for b in range(a, m):
                s = 0.0
                for t in range(b, m):
                    s += V[t, a] * V[t, b]
                C[a, b] = s
                C[b, a] = s
        return 0, ld
    # F = Sigma_oo, then its Cholesky factor
    for a in range(o):
        ka = o_idx[o0 + a]
        for b in range(a + 1):
            F[a, b] = Sigma[ka, o_idx[o0 + b]]
    ld = _cholesky_lower(F, o, dinv)
    if not math.isfinite(ld):
        return -1, 0.0
    # V[k, a] = (Sigma[o_k, m_a] - sum_{t<k} F[k, t] V[t, a]) / F[k, k]   (forward substitution)
    for a in range(m):
        ja = m_idx[m0 + a]
        for k in range(o):
            s = Sigma[o_idx[o0 + k], ja]
            for t in range(k):
                s -= F[k, t] * V[t, a]
            V[k, a] = s * dinv[k]
    # C[a, b] = Sigma[m_a, m_b] - sum_k V[k, a] V[k, b]
    for a in range(m):
        ja = m_idx[m0 + a]
        for b in range(a, m):
            s = Sigma[ja, m_idx[m0 + b]]
            for k in range(o):
                s -= V[k, a] * V[k, b]
            C[a, b] = s
            C[b, a] = s
    if want_chol_c:
        for a in range(m):
            for b in range(a + 1):
                LC[a, b] = C[a, b]
        if not math.isfinite(_cholesky_lower(LC, m, dinv[o:])):
            return -1, 0.0
    return 1, ld


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _e_step_kernel(Xs, pat, m_ptr, m_idx, o_ptr, o_idx, centre, Sigma, Q, W, logdet_sigma, rule,
                   want_stats, want_ll, want_fill, want_cov, z, z_off, orig, work, mats,
                   pS1, pS2, pC, pConst, pAbs, status, ll_out, fill_out, cov_out, draws_out):
    """One pass over the sorted rows Xs (n_rows, D; missing cells hold anything finite).

    Row i has pattern pat[i] (missing columns m_idx[m_ptr[p]:m_ptr[p+1]], observed
    o_idx[o_ptr[p]:o_ptr[p+1]], both ascending; every pattern has o >= 1) and
    original index orig[i]; rule picks the route (_factor_pattern). Per chunk c
    of CHUNK rows:

      want_stats: pS1[c] = sum (xhat - centre); pS2[c] = the row-major upper
        triangle of sum (xhat - centre)(xhat - centre)^T; pC[c] = sum C_i (D, D);
        pConst[c] = sum_i (|o_i| log 2 pi + log det Sigma_oo + maha_i) = -2 sum_i log p_i;
        pAbs[c] = sum_i (|o_i| log 2 pi + |log det Sigma_oo| + maha_i);
      want_ll: ll_out[orig[i]] = log p_i = log N(x_io | mu_o, Sigma_oo);
        both with centre = mu and the Mahalanobis term maha_i = ||W yhat_i||^2,
        W = L^{-1}, yhat_i the filled residual (module docstring);
      want_fill: fill_out[orig[i], j] = xhat_ij for the missing j only.
      want_cov: cov_out[orig[i], j, k] = C_i[j, k] for missing j, k.
      z.shape[0] > 0 (draws): draws_out[r, orig[i], j] = xhat_ij + (G z_r)_a for
        missing j = m_a, with z_r = z[r, z_off[orig[i]] + a] and G G^T = C_i.

    status[c] = 1 if a pattern of chunk c could not be factorised. work[c] holds
    the block (D rows of BLOCK values: yhat transposed) and scratch rows; mats[c]
    the pattern's F, V, C and chol(C).
    """
    n, D = Xs.shape
    n_chunks = status.shape[0]
    n_draws = z.shape[0]
    for c in prange(n_chunks):
        Y = work[c, 0:D]                  # Y[d, b] = yhat_bd of the block's rows
        acc = work[c, D]                  # Mahalanobis term of each row of the block
        t = work[c, D + 1]
        cst = work[c, D + 2]              # |o| log 2 pi + log det Sigma_oo of each row
        y = work[c, D + 3]                # one row: residual, then filled residual
        bv = work[c, D + 4]
        wv = work[c, D + 5]
        cab = work[c, D + 6]              # |o| log 2 pi + |log det Sigma_oo| of each row
        F = mats[c, 0]
        V = mats[c, 1]
        C = mats[c, 2]
        LC = mats[c, 3]
        rows = np.empty(BLOCK, dtype=np.int64)
        dinv = np.empty(2 * D)            # reciprocal pivots of the pattern's factors
        status[c] = 0
        if want_stats:
            pS1[c, :] = 0.0
            pS2[c, :] = 0.0
            pC[c, :, :] = 0.0
            pConst[c] = 0.0
            pAbs[c] = 0.0
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        cur = -1
        route = 0
        ld_oo = 0.0
        m0 = 0
        m = 0
        o0 = 0
        o = 0
        count = 0
        nb = 0
        for i in range(lo, hi):
            p = pat[i]
            if p != cur:
                if want_stats and cur >= 0 and count > 0:
                    # CS += count * C_p on the (m, m) block of the pattern just finished
                    for a in range(m):
                        ja = m_idx[m0 + a]
                        for b in range(m):
                            pC[c, ja, m_idx[m0 + b]] += count * C[a, b]
                route, ld_oo = _factor_pattern(p, m_ptr, m_idx, o_ptr, o_idx, Sigma, Q, logdet_sigma,
                                               n_draws > 0, rule, F, V, C, LC, dinv)
                if route < 0:
                    status[c] = 1
                    break
                cur = p
                count = 0
                m0 = m_ptr[p]
                m = m_ptr[p + 1] - m0
                o0 = o_ptr[p]
                o = o_ptr[p + 1] - o0
            count += 1
            # y_d = x_d - c_d on the observed cells, 0 on the missing ones (plain
            # 2-D indexing here: a view per row, such as Xs[i], costs an atomic
            # reference-count update, and the threads share those counters)
            for d in range(D):
                y[d] = Xs[i, d] - centre[d]
            for a in range(m):
                y[m_idx[m0 + a]] = 0.0
            if route == 0:
                # b = Q_mo r_o:  b_a = sum_d Q[m_a, d] y_d  (y_m = 0)
                for a in range(m):
                    ja = m_idx[m0 + a]
                    s = 0.0
                    for d in range(D):
                        s += Q[ja, d] * y[d]
                    bv[a] = s
                # F w = b (forward), F^T v = w (back): yhat_m = -v = -Q_mm^{-1} b
                for a in range(m):
                    s = bv[a]
                    for k in range(a):
                        s -= F[a, k] * wv[k]
                    wv[a] = s * dinv[a]
                for a in range(m - 1, -1, -1):
                    s = wv[a]
                    for k in range(a + 1, m):
                        s -= F[k, a] * bv[k]
                    bv[a] = s * dinv[a]
                for a in range(m):
                    y[m_idx[m0 + a]] = -bv[a]
            else:
                # F w = r_o (forward);  yhat_m = V^T w:  yhat_a = sum_k V[k, a] w_k
                for k in range(o):
                    s = y[o_idx[o0 + k]]
                    for t2 in range(k):
                        s -= F[k, t2] * wv[t2]
                    wv[k] = s * dinv[k]
                for a in range(m):
                    s = 0.0
                    for k in range(o):
                        s += V[k, a] * wv[k]
                    y[m_idx[m0 + a]] = s
            oi = orig[i]
            if want_fill:
                for a in range(m):
                    j = m_idx[m0 + a]
                    fill_out[oi, j] = y[j] + centre[j]
            if want_cov:
                for a in range(m):
                    ja = m_idx[m0 + a]
                    for b in range(m):
                        cov_out[oi, ja, m_idx[m0 + b]] = C[a, b]
            for r in range(n_draws):
                # draw = xhat_m + G z: route 0, G = F^{-T} (G G^T = Q_mm^{-1});
                # route 1, G = chol(C)
                zo = z_off[oi]
                if route == 0:
                    for a in range(m - 1, -1, -1):
                        s = z[r, zo + a]
                        for k in range(a + 1, m):
                            s -= F[k, a] * wv[k]
                        wv[a] = s * dinv[a]
                else:
                    for a in range(m):
                        s = 0.0
                        for k in range(a + 1):
                            s += LC[a, k] * z[r, zo + k]
                        wv[a] = s
                for a in range(m):
                    j = m_idx[m0 + a]
                    draws_out[r, oi, j] = y[j] + centre[j] + wv[a]
            # the row joins the block
            for d in range(D):
                Y[d, nb] = y[d]
            cst[nb] = o * _LOG_2PI + ld_oo
            cab[nb] = o * _LOG_2PI + abs(ld_oo)
            rows[nb] = oi
            nb += 1
            if nb == BLOCK or i == hi - 1:
                if want_ll or want_stats:
                    # maha_b = sum_e t_be^2,  t_be = sum_{d<=e} W[e, d] yhat_bd
                    for b in range(nb):
                        acc[b] = 0.0
                    for e in range(D):
                        w0 = W[e, 0]
                        for b in range(nb):
                            t[b] = w0 * Y[0, b]
                        for d in range(1, e + 1):
                            wd = W[e, d]
                            for b in range(nb):
                                t[b] += wd * Y[d, b]
                        for b in range(nb):
                            acc[b] += t[b] * t[b]
                    if want_ll:
                        for b in range(nb):
                            ll_out[rows[b]] = -0.5 * (cst[b] + acc[b])
                if want_stats:
                    # sum_b (|o| log 2 pi + log det Sigma_oo + maha_b) = -2 sum_b log p_b,
                    # sum_b (|o| log 2 pi + |log det Sigma_oo| + maha_b)
                    s0 = 0.0
                    for b in range(nb):
                        s0 += cst[b] + acc[b]
                    pConst[c] += s0
                    s0 = 0.0
                    for b in range(nb):
                        s0 += cab[b] + acc[b]
                    pAbs[c] += s0
                    # S1[d] += sum_b Y[d, b];  S2[d, e] += sum_b Y[d, b] Y[e, b]  (e >= d)
                    f = 0
                    for d in range(D):
                        s = 0.0
                        for b in range(nb):
                            s += Y[d, b]
                        pS1[c, d] += s
                        for e in range(d, D):
                            s = 0.0
                            for b in range(nb):
                                s += Y[d, b] * Y[e, b]
                            pS2[c, f] += s
                            f += 1
                nb = 0
        if want_stats and cur >= 0 and count > 0 and status[c] == 0:
            for a in range(m):
                ja = m_idx[m0 + a]
                for b in range(m):
                    pC[c, ja, m_idx[m0 + b]] += count * C[a, b]


@njit(cache=True, parallel=True)
def _scan_kernel(X, n_miss, keys, pCount, pSum):
    """One pass over X (n, D) in fixed chunks of CHUNK rows, NaN = missing.

    n_miss[i] = the number of NaN cells of row i; keys[i] = sum_{d < 64, x_id NaN} 2^d
    (the row's pattern when D <= 64); per chunk c: pCount[c, d] = the number of
    observed cells of column d and pSum[c, d] = their sum.
    """
    n, D = X.shape
    n_chunks = pCount.shape[0]
    for c in prange(n_chunks):
        cnt = pCount[c]
        sm = pSum[c]
        for d in range(D):
            cnt[d] = 0.0
            sm[d] = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            k = np.uint64(0)
            nm = 0
            for d in range(D):
                v = X[i, d]
                # k = sum of 2^d over the NaN cells of the row (d < 64)
                if v != v:
                    nm += 1
                    if d < 64:
                        k |= np.uint64(1) << np.uint64(d)
                else:
                    cnt[d] += 1.0
                    sm[d] += v
            n_miss[i] = nm
            keys[i] = k


@njit(cache=True, parallel=True)
def _column_moments_kernel(X, mean, pSS, pSQ):
    """Per chunk c of CHUNK rows: pSS[c, d] = sum (x_id - mean_d)^2 and pSQ[c, d] = sum x_id^2
    over the observed cells of column d."""
    n, D = X.shape
    n_chunks = pSS.shape[0]
    for c in prange(n_chunks):
        ss = pSS[c]
        sq = pSQ[c]
        for d in range(D):
            ss[d] = 0.0
            sq[d] = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for d in range(D):
                v = X[i, d]
                if v == v:
                    r = v - mean[d]
                    ss[d] += r * r
                    sq[d] += v * v


@njit(cache=True, parallel=True)
def _gather_kernel(X, orig, Xs):
    """Xs[i] = X[orig[i]] with NaN cells set to 0, over fixed chunks of rows."""
    n, D = Xs.shape
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            j = orig[i]
            for d in range(D):
                v = X[j, d]
                Xs[i, d] = v if v == v else 0.0


# ----------------------------------------------------------------------------
# Validation and data layout (Python; run before any kernel sees the data).
# ----------------------------------------------------------------------------


class NotFittedError(ValueError, AttributeError):
    """Raised when a method needs a fitted model (as sklearn's)."""


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the objective change fell below tol."""


@contextlib.contextmanager
def _threads_for(n_rows):
    """One numba thread while the rows fit in one chunk (a second thread would have no chunk)."""
    before = get_num_threads()
    if n_rows > CHUNK or before == 1:
        yield
        return
    set_num_threads(1)
    try:
        yield
    finally:
        set_num_threads(before)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _as_rng(random_state):
    msg = "random_state must be a non-negative integer, a numpy Generator or None."
    if isinstance(random_state, (bool, np.bool_)):
        raise ValueError(msg)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise ValueError(msg)
        return np.random.default_rng(random_state)
    raise ValueError(msg)


def _as_2d_float(X, name="X"):
    """A float64 array (a view when X already is one) with NaN for missing; one-sentence errors."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array with NaN for missing values.")
    try:
        arr = np.asarray(X)
    except Exception:
        raise ValueError(f"{name} could not be converted to a numeric array.") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued; got complex numbers.")
    kind = arr.dtype.kind
    if kind in "USV" or (kind == "O" and any(isinstance(v, (str, bytes)) for v in arr.flat)):
        raise ValueError(f"{name} must contain numbers (NaN for missing), not strings.")
    if kind not in "biuf":
        try:
            arr = arr.astype(np.float64)    # object arrays: None becomes NaN (missing)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must contain only numbers; got dtype {arr.dtype}.") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features); "
                         f"got {arr.ndim} dimension(s).")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty; got shape {arr.shape}.")
    arr = np.asarray(arr, dtype=np.float64)
    # fmax / fmin skip NaN (missing) and propagate infinity
    hi, lo = float(np.fmax.reduce(arr, axis=None)), float(np.fmin.reduce(arr, axis=None))
    if math.isinf(hi) or math.isinf(lo):
        raise ValueError(f"{name} contains infinity; mark missing values with NaN.")
    if not math.isnan(hi) and max(hi, -lo) > _MAX_ABS:
        raise ValueError(f"{name} has values of magnitude up to {max(hi, -lo):.3g}, beyond the {_MAX_ABS:g} "
                         f"whose squares still fit in float64; rescale {name}.")
    return arr


def _scan(X):
    """(n_miss, keys, observed count and sum of each column) of X, by _scan_kernel."""
    n, D = X.shape
    n_chunks = -(-n // CHUNK)
    n_miss = np.empty(n, dtype=np.int64)
    keys = np.empty(n, dtype=np.uint64)
    pCount, pSum = np.empty((n_chunks, D)), np.empty((n_chunks, D))
    with _threads_for(n):
        _scan_kernel(X, n_miss, keys, pCount, pSum)
    if D > 64:
        # the kernel's keys cover 64 columns: pack the whole pattern and number the distinct ones
        packed = np.packbits(np.isnan(X), axis=1, bitorder="little")
        keys = np.unique(packed, axis=0, return_inverse=True)[1].ravel().astype(np.uint64)
    # reduce the chunk partials in chunk order
    return n_miss, keys, pCount.sum(axis=0), pSum.sum(axis=0)


def _column_scales(X, count, total):
    """(observed column means, s^2): s_d^2 = the variance of the observed values of
    column d, else their mean square, else 1 (module docstring)."""
    X = np.ascontiguousarray(X)
    n, D = X.shape
    mean = total / np.maximum(count, 1.0)
    n_chunks = -(-n // CHUNK)
    pSS, pSQ = np.empty((n_chunks, D)), np.empty((n_chunks, D))
    with _threads_for(n):
        _column_moments_kernel(X, mean, pSS, pSQ)
    var = pSS.sum(axis=0) / np.maximum(count, 1.0)
    msq = pSQ.sum(axis=0) / np.maximum(count, 1.0)
    return mean, np.where(var > 0, var, np.where(msq > 0, msq, 1.0))


def _layout(X):
    """The rows sorted by missingness pattern and the pattern lists the E-step kernel
    takes, plus its work buffers.

    Rows with no observed cell are left out (they carry no information). The
    sort is stable, so rows of one pattern keep their order; patterns are
    numbered 0..P-1 in sorted order.
    """
    X = np.ascontiguousarray(X)       # one compiled layout for the scanning kernels
    n, D = X.shape
    n_miss, keys, count, total = _scan(X)
    keep = np.flatnonzero(n_miss < D)
    orig = keep[np.argsort(keys[keep], kind="stable")].astype(np.int64)
    k = keys[orig]
    first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(orig) else np.zeros(0, dtype=np.int64)
    pat = (np.cumsum(np.r_[False, k[1:] != k[:-1]]) if len(orig) else np.zeros(0)).astype(np.int64)
    pmask = np.isnan(X[orig[first]])
    m_cnt = pmask.sum(axis=1)
    m_ptr = np.r_[0, np.cumsum(m_cnt)].astype(np.int64)
    o_ptr = np.r_[0, np.cumsum(D - m_cnt)].astype(np.int64)
    m_idx = np.nonzero(pmask)[1].astype(np.int64)
    o_idx = np.nonzero(~pmask)[1].astype(np.int64)
    n_rows = len(orig)
    n_chunks = -(-n_rows // CHUNK)
    Xs = np.empty((n_rows, D))
    with _threads_for(n_rows):
        _gather_kernel(X, orig, Xs)
    return dict(
        n=n, D=D, n_miss=n_miss, count=count, total=total, n_rows=n_rows, n_chunks=n_chunks,
        Xs=Xs, pat=pat, orig=orig, m_ptr=m_ptr, m_idx=m_idx, o_ptr=o_ptr, o_idx=o_idx,
        work=np.empty((n_chunks, D + 7, max(BLOCK, D))), mats=np.empty((n_chunks, 4, D, D)),
        pS1=np.empty((n_chunks, D)), pS2=np.empty((n_chunks, D * (D + 1) // 2)),
        pC=np.empty((n_chunks, D, D)), pConst=np.empty(n_chunks), pAbs=np.empty(n_chunks),
        status=np.zeros(n_chunks, dtype=np.int64),
    )


def _upper_to_full(flat, D):
    """Symmetric (D, D) matrix from its row-major upper triangle."""
    d, e = np.triu_indices(D)
    out = np.empty((D, D))
    out[d, e] = flat
    out[e, d] = flat
    return out


_NO_ROWS = np.empty(0)
_NO_FILL = np.empty((0, 0))
_NO_CUBE = np.empty((0, 0, 0))
_NO_OFF = np.empty(0, dtype=np.int64)


# ----------------------------------------------------------------------------
# The estimator.
# ----------------------------------------------------------------------------


class EMImputer:
    """Multivariate normal imputation by EM, with scikit-learn's imputer API.

    Parameters
    ----------
    max_iter : int, default=100
    tol : float, default=1e-8
        Stop when |change of the objective| < tol u, u = 1/2 (1 + log 2 pi) nats
        per observed cell and row (module docstring: unit-free, so the same in
        any units); tol=0 runs exactly max_iter iterations.
    ridge : float, default=1e-6
        The prior Lambda = ridge * diag(observed column variances) (module
        docstring); 0 for the plain maximum-likelihood estimate.
    mean_init : array-like (n_features,), optional
    covariance_init : array-like (n_features, n_features), optional
        Starting parameters (default: observed means, diagonal observed variances).
    random_state : int, numpy Generator or None
        Used by ``sample`` (fit itself draws no random numbers).
    verbose : int, default=0

    Attributes
    ----------
    mean_ (D,), covariance_ (D, D), precision_ (D, D), history_ (objective after
    0, 1, ..., n_iter_ iterations), n_iter_, converged_, n_features_in_.
    """

    def __init__(self, max_iter=100, tol=1e-8, ridge=1e-6, *, mean_init=None, covariance_init=None,
                 random_state=None, verbose=0):
        self.max_iter = max_iter
        self.tol = tol
        self.ridge = ridge
        self.mean_init = mean_init
        self.covariance_init = covariance_init
        self.random_state = random_state
        self.verbose = verbose

    # The route of each pattern (_factor_pattern's rule): 0 the documented
    # choice (the smaller block while cond_1(Sigma) <= _PRECISION_MAX_COND,
    # else direct); 1 / 2 force the precision / direct route
    # (tests/test_impute.py compares their accuracy).
    _route = 0

    _PARAMS = ("max_iter", "tol", "ridge", "mean_init", "covariance_init", "random_state", "verbose")

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params):
        for key, value in params.items():
            if key not in self._PARAMS:
                raise ValueError(f"Invalid parameter {key!r} for EMImputer.")
            setattr(self, key, value)
        return self

    def __repr__(self):
        return f"EMImputer(max_iter={self.max_iter!r}, tol={self.tol!r}, ridge={self.ridge!r})"

    # validation ---------------------------------------------------------------
    def _check_hyperparameters(self):
        if not _is_int(self.max_iter) or self.max_iter < 0:
            raise ValueError(f"max_iter must be an integer >= 0; got {self.max_iter!r}.")
        if not _is_real(self.tol) or self.tol < 0:
            raise ValueError(f"tol must be a non-negative number; got {self.tol!r}.")
        if not _is_real(self.ridge) or self.ridge < 0:
            raise ValueError(f"ridge must be a non-negative number; got {self.ridge!r}.")
        if not isinstance(self.verbose, (numbers.Integral, np.bool_)) or self.verbose < 0:
            raise ValueError(f"verbose must be an integer >= 0; got {self.verbose!r}.")
        if isinstance(self.random_state, (bool, np.bool_)):
            raise ValueError(f"random_state must be a non-negative integer, a numpy Generator or None; "
                             f"got {self.random_state!r}.")

    @staticmethod
    def _numeric(value, name, shape):
        try:
            arr = np.array(value)
        except Exception:
            raise ValueError(f"{name} must contain only numbers.") from None
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must contain only numbers; got dtype {arr.dtype}.")
        arr = arr.astype(np.float64)
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}; got {arr.shape}.")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity.")
        return arr

    def _start(self, mean, s2):
        """Starting (mu, Sigma): mean_init / covariance_init, else observed means and diag(s^2)."""
        D = len(mean)
        mu = mean.copy() if self.mean_init is None else self._numeric(self.mean_init, "mean_init", (D,))
        if self.covariance_init is None:
            return mu, np.diag(s2)
        S = self._numeric(self.covariance_init, "covariance_init", (D, D))
        # symmetric up to the round-off of a product such as Q diag(l) Q^T (1e-10 relative)
        if np.abs(S - S.T).max() > 1e-10 * np.abs(S).max():
            raise ValueError("covariance_init must be symmetric.")
        S = 0.5 * (S + S.T)
        if not np.isfinite(_factor(S)[3]):
            raise ValueError("covariance_init must be positive definite.")
        return mu, S

    def _check_fitted(self):
        if not hasattr(self, "covariance_") or not hasattr(self, "mean_"):
            raise NotFittedError("This EMImputer instance is not fitted yet; call fit first.")

    def _check_X(self, X):
        """Validated X for the methods that use the fitted parameters."""
        self._check_fitted()
        X = _as_2d_float(X)
        D = len(self.mean_)
        if X.shape[1] != D:
            raise ValueError(f"X has {X.shape[1]} features, but EMImputer was fitted with {D} features.")
        return X

    # kernels ------------------------------------------------------------------
    def _pass(self, lay, mu, Sigma, fac, want_stats=False, want_ll=False, fill=None, cov=None, z=None, z_off=None,
              draws=None):
        """Run the E-step kernel over lay's rows at (mu, Sigma); returns the reduced statistics or None."""
        L, W, Q, logdet, kappa = fac
        rule = self._route or (0 if kappa <= _PRECISION_MAX_COND else 2)
        ll = np.zeros(lay["n"]) if want_ll else _NO_ROWS
        with _threads_for(lay["n_rows"]):
            _e_step_kernel(lay["Xs"], lay["pat"], lay["m_ptr"], lay["m_idx"], lay["o_ptr"], lay["o_idx"],
                           np.ascontiguousarray(mu, dtype=np.float64), np.ascontiguousarray(Sigma), Q, W,
                           float(logdet), rule, bool(want_stats), bool(want_ll), fill is not None, cov is not None,
                           _NO_FILL if z is None else z, _NO_OFF if z_off is None else z_off, lay["orig"],
                           lay["work"], lay["mats"], lay["pS1"], lay["pS2"], lay["pC"], lay["pConst"],
                           lay["pAbs"], lay["status"], ll, _NO_FILL if fill is None else fill,
                           _NO_CUBE if cov is None else cov, _NO_CUBE if draws is None else draws)
        if lay["status"].any():
            raise ValueError("The covariance is numerically singular on the observed cells of some rows; "
                             "increase ridge.")
        if not want_stats:
            return ll if want_ll else None
        D = lay["D"]
        # reduce the chunk partials in chunk order
        return {"S1": lay["pS1"].sum(axis=0), "S2": _upper_to_full(lay["pS2"].sum(axis=0), D),
                "CS": lay["pC"].sum(axis=0), "terms": float(lay["pConst"].sum()),
                "abs": float(lay["pAbs"].sum()), "n_obs": lay["n_rows"]}

    @staticmethod
    def _objective(stats, fac, lam, n):
        """(F, s): the mean log-posterior per row and the scale of its terms (module docstring)."""
        Q = fac[2]
        prior = 0.5 * float((lam * np.diagonal(Q)).sum())  # 1/2 tr(Lambda Sigma^{-1}) (no BLAS call)
        F = (-0.5 * stats["terms"] - prior) / n
        s = (0.5 * stats["abs"] + prior) / n
        return F, s

    def _m_step(self, stats, centre, lam):
        """The MAP M-step: mu = c + S1 / n_obs, Sigma = (S2 + CS - n_obs delta delta^T + Lambda) / n_obs."""
        n_obs = stats["n_obs"]
        delta = stats["S1"] / n_obs
        A = stats["S2"] + stats["CS"] - n_obs * np.outer(delta, delta)
        A[np.diag_indices_from(A)] += lam
        return centre + delta, A / n_obs

    # fitting ------------------------------------------------------------------
    def fit(self, X, y=None):
        """Estimate the mean and covariance by EM from the observed cells of X (NaN = missing); returns self."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit, then return X with its missing cells filled by their conditional means."""
        lay, X = self._fit(X)
        return self._fill(lay, X)

    def _fit(self, X):
        self._check_hyperparameters()
        X = _as_2d_float(X)
        n, D = X.shape
        lay = _layout(X)
        if lay["n_rows"] == 0:
            raise ValueError("X has no observed value at all; there is nothing to fit.")
        if (lay["count"] == 0).any():
            j = int(np.flatnonzero(lay["count"] == 0)[0])
            raise ValueError(f"Column {j} of X has no observed value, so its mean cannot be estimated; "
                             f"drop that column.")
        mean0, s2 = _column_scales(X, lay["count"], lay["total"])
        lam = self.ridge * s2
        mu, Sigma = self._start(mean0, s2)
        fac = _factor(Sigma)
        stats = self._pass(lay, mu, Sigma, fac, want_stats=True)
        F, scale = self._objective(stats, fac, lam, n)
        if not math.isfinite(F):
            raise ValueError("The log-likelihood at the starting parameters is not finite; rescale X.")
        # tol's unit: 1/2 (1 + log 2 pi) nats per observed cell (module docstring)
        unit = 0.5 * (1.0 + _LOG_2PI) * float(lay["count"].sum()) / n
        history, falls, converged = [F], [], False
        for it in range(1, self.max_iter + 1):
            mu, Sigma = self._m_step(stats, mu, lam)
            fac = _factor(Sigma)
            if not np.isfinite(fac[3]):
                raise ValueError("The covariance estimate is not positive definite (too few observations "
                                 "for the number of columns); increase ridge.")
            stats = self._pass(lay, mu, Sigma, fac, want_stats=True)
            F, scale = self._objective(stats, fac, lam, n)
            if not (math.isfinite(F) and np.isfinite(mu).all() and np.isfinite(Sigma).all()):
                raise ValueError("The log-likelihood became non-finite; rescale X or increase ridge.")
            history.append(F)
            change = F - history[-2]
            if self.verbose:
                print(f"  iteration {it}: objective {F:.12g}, change {change:.3e}")
            # a fall beyond the round-off of the sum (kappa = cond_1(Sigma), from _factor)
            if change < -max(1e-10, D * fac[4] * _EPS) * scale:
                falls.append((it, -change))
                continue
            if self.tol > 0 and abs(change) < self.tol * unit:
                converged = True
                break
        self.mean_ = mu
        self.covariance_ = Sigma
        self.precision_ = fac[2].copy()
        self.history_ = np.asarray(history)
        self.n_iter_ = len(history) - 1
        self.converged_ = converged
        self.n_features_in_ = D
        if falls:
            it, fall = falls[0]
            warnings.warn(f"The objective fell by more than round-off at {len(falls)} iteration(s), first at "
                          f"iteration {it} (by {fall:.3e}), which EM never does; no such iteration counts as "
                          f"convergence.", RuntimeWarning, stacklevel=3)
        if not converged and self.max_iter > 0 and self.tol > 0:
            warnings.warn("EM stopped at max_iter before the change of the objective fell below tol; "
                          "increase max_iter.", ConvergenceWarning, stacklevel=3)
        return lay, X

    # using the fitted parameters ------------------------------------------------
    def _fitted_factor(self):
        fac = _factor(self.covariance_)
        if not np.isfinite(fac[3]):
            raise ValueError("covariance_ is not positive definite.")
        return fac

    def _fill(self, lay, X):
        out = X.copy()
        self._pass(lay, self.mean_, self.covariance_, self._fitted_factor(), fill=out)
        out[lay["n_miss"] == lay["D"]] = self.mean_
        return out

    def transform(self, X):
        """X with each missing cell replaced by its conditional mean given the row's observed cells."""
        X = self._check_X(X)
        return self._fill(_layout(X), X)

    def score_samples(self, X):
        """Observed-data log-likelihood of each row, log N(x_io | mu_o, Sigma_oo) (0 for a row with none)."""
        X = self._check_X(X)
        return self._pass(_layout(X), self.mean_, self.covariance_, self._fitted_factor(), want_ll=True)

    def score(self, X, y=None):
        """Mean observed-data log-likelihood per row of X (no prior)."""
        return float(self.score_samples(X).mean())

    def objective(self, X):
        """The EM objective on X in history_'s units: (log-likelihood + log prior) / n_samples.

        The prior's scale comes from X's observed column variances, as in fit,
        so on the training data this is history_[-1] (bit for bit).
        """
        X = self._check_X(X)
        lay = _layout(X)
        _, s2 = _column_scales(X, lay["count"], lay["total"])
        if not _is_real(self.ridge) or self.ridge < 0:
            raise ValueError(f"ridge must be a non-negative number; got {self.ridge!r}.")
        fac = self._fitted_factor()
        stats = self._pass(lay, self.mean_, self.covariance_, fac, want_stats=True)
        return self._objective(stats, fac, self.ridge * s2, lay["n"])[0]

    def sample(self, X, n_draws=1, random_state=None):
        """Multiple imputations: (n_draws, n_samples, n_features) copies of X, missing cells drawn
        from N(xhat_im, C_i) at the fitted parameters (random_state, else the estimator's)."""
        X = self._check_X(X)
        if not _is_int(n_draws) or n_draws < 1:
            raise ValueError(f"n_draws must be an integer >= 1; got {n_draws!r}.")
        rng = _as_rng(self.random_state if random_state is None else random_state)
        lay = _layout(X)
        n, D = X.shape
        z_off = np.r_[0, np.cumsum(lay["n_miss"])[:-1]].astype(np.int64)
        z = rng.standard_normal((n_draws, int(lay["n_miss"].sum())))
        draws = np.repeat(X[None], n_draws, axis=0)
        fac = self._fitted_factor()
        self._pass(lay, self.mean_, self.covariance_, fac, z=z, z_off=z_off, draws=draws)
        empty = np.flatnonzero(lay["n_miss"] == D)
        if len(empty):
            # rows with nothing observed: mu + L z, Sigma = L L^T
            L = fac[0]
            for r in range(n_draws):
                zz = z[r, z_off[empty][:, None] + np.arange(D)]
                draws[r, empty] = self.mean_ + np.einsum("de,ie->id", np.tril(L), zz)
        return draws

    def _sufficient_statistics(self, X):
        """(n_obs, S1, S2, loglik) of X at the fitted parameters, raw (uncentred):
        S1 = sum_i xhat_i, S2 = sum_i (xhat_i xhat_i^T + C_i), loglik = l(theta)."""
        X = self._check_X(X)
        lay = _layout(X)
        fac = self._fitted_factor()
        c = self.mean_
        st = self._pass(lay, c, self.covariance_, fac, want_stats=True)
        n_obs, S1c = st["n_obs"], st["S1"]
        S1 = S1c + n_obs * c
        S2 = st["S2"] + st["CS"] + np.outer(S1c, c) + np.outer(c, S1c) + n_obs * np.outer(c, c)
        F, _ = self._objective(st, fac, np.zeros(len(c)), 1)
        return n_obs, S1, S2, F

    def _conditional_covariances(self, X):
        """(n_samples, D, D): C_i on each row's missing block, zero elsewhere (Sigma for an empty row)."""
        X = self._check_X(X)
        lay = _layout(X)
        n, D = X.shape
        cov = np.zeros((n, D, D))
        self._pass(lay, self.mean_, self.covariance_, self._fitted_factor(), cov=cov)
        cov[lay["n_miss"] == D] = self.covariance_
        return cov


def _factor(Sigma):
    """(L, W, Q, log det Sigma, kappa) with Sigma = L L^T, W = L^{-1}, Q = Sigma^{-1} and
    kappa = ||Sigma||_1 ||Q||_1 (the 1-norm condition number); log det = NaN if not PD."""
    D = Sigma.shape[0]
    L, W, Q = np.zeros((D, D)), np.zeros((D, D)), np.zeros((D, D))
    logdet = _sigma_factor_kernel(np.ascontiguousarray(Sigma, dtype=np.float64), L, W, Q)
    kappa = float(np.abs(Sigma).sum(axis=0).max() * np.abs(Q).sum(axis=0).max())
    return L, W, Q, logdet, kappa


# ----------------------------------------------------------------------------
# Harness contract (duck-typed: see "Writing a model" in emref's README).
# The estimator above does not use anything below; a copy of this file used
# on its own may delete this section.
# ----------------------------------------------------------------------------

EMREF_VARIANTS = ("mcar", "mar", "ill-conditioned")
EMREF_N = 2000
# Recovery tolerance: the RMS error over the entries of mean and covariance
# must be at most C / sqrt(n) (sampling error). Measured over seeds 0-99 at
# n=2000 (D=4, 20-25% missing), the largest sqrt(n) * RMS was 6.5 for 'mcar'
# (median 2.4), 7.6 for 'mar' (median 2.6) and 0.87 for 'ill-conditioned'
# (median 0.39: its entries are small); it varies with the scale of the random
# covariance. C = 12 leaves a margin of 1.6 over the worst of the 300 fits.
EMREF_RECOVERY_C = 12.0
EMREF_PLOT_PANELS = 2
_MISSING_RATE = 0.2          # MCAR: each cell missing with this probability


def emref_truth(variant, rng, n_features=4):
    """A random mean in [-3, 3]^D and a random covariance.

    'mcar', 'mar': eigenvalues in [0.5, 2] along random axes, then columns
    rescaled by factors in [0.5, 2] (unequal variances, correlations up to
    about 0.9). 'ill-conditioned': eigenvalues from 1 down to 1e-4 (log-spaced
    at random between the two ends, which are always present) along random
    axes, so cond(Sigma) = 1e4: near-collinear columns, correlations near 1.
    """
    D = n_features
    mean = rng.uniform(-3.0, 3.0, size=D)
    Qm, _ = np.linalg.qr(rng.standard_normal((D, D)))
    if variant == "ill-conditioned":
        lam = 10.0 ** np.r_[0.0, rng.uniform(-4.0, 0.0, size=max(D - 2, 0)), -4.0][:D]
        S = (Qm * lam) @ Qm.T
    else:
        s = rng.uniform(0.5, 2.0, size=D)
        S = ((Qm * rng.uniform(0.5, 2.0, size=D)) @ Qm.T) * np.outer(s, s)
    return {"mean": mean, "covariance": 0.5 * (S + S.T)}


def emref_sample(variant, truth, n, rng):
    """(X with NaN for missing, z): z is the complete data, the latent part being its missing cells.

    'mcar' and 'ill-conditioned': each cell missing with probability 0.2
    (missing completely at random). 'mar': column 0 is always observed and
    column j >= 1 is missing with probability sigmoid(logit(0.25) +- 1.5 u),
    u the standardised value of column 0 in that row (the sign alternates with
    j): missing at random, not completely at random, so the observed means
    and variances of the other columns are biased while EM's are not.
    """
    mean, S = truth["mean"], truth["covariance"]
    D = len(mean)
    Z = mean + rng.standard_normal((n, D)) @ np.linalg.cholesky(S).T
    X = Z.copy()
    if variant == "mar":
        u = (Z[:, 0] - mean[0]) / math.sqrt(S[0, 0])
        base = math.log(0.25 / 0.75)
        for j in range(1, D):
            p = 1.0 / (1.0 + np.exp(-(base + (1.5 if j % 2 else -1.5) * u)))
            X[rng.random(n) < p, j] = np.nan
    else:
        X[rng.random((n, D)) < _MISSING_RATE] = np.nan
    return X, Z


def emref_estimator(variant, truth, seed):
    """The defaults (ridge included), a tight tol and room to converge."""
    return EMImputer(max_iter=5000, tol=1e-13, random_state=seed)


def emref_steps(est, n_iter):
    """An unfitted copy of est that runs exactly n_iter iterations."""
    return type(est)(**{**est.get_params(), "max_iter": n_iter, "tol": 0.0})


def emref_params(est):
    return {"mean": est.mean_, "covariance": est.covariance_}


def _at_params(params, like=None):
    """An estimator holding the given mean and covariance (of like's class and settings, if given)."""
    est = EMImputer() if like is None else type(like)(**like.get_params())
    est.mean_ = np.asarray(params["mean"], dtype=np.float64)
    est.covariance_ = np.asarray(params["covariance"], dtype=np.float64)
    est.n_features_in_ = len(est.mean_)
    return est


def emref_objective(variant, params, X):
    """The mean log-posterior per row (history_'s units) with emref_estimator's (default) ridge."""
    return _at_params(params).objective(X)


def emref_label_axes(variant):
    """No latent labels: nothing to permute."""
    return {"mean": (), "covariance": ()}


# -- oracles ------------------------------------------------------------------

def _numpy_conditionals(X, mean, S):
    """Plain numpy/scipy, pattern by pattern: per-row log N(x_o | mu_o, S_oo)
    (scipy.stats.multivariate_normal.logpdf), conditional means (np.linalg.solve)
    and conditional covariances; a row with nothing observed gets (0, mean, S)."""
    from scipy.stats import multivariate_normal

    n, D = X.shape
    M = np.isnan(X)
    ll, fill, cov = np.zeros(n), X.copy(), np.zeros((n, D, D))
    patterns, inv = np.unique(M, axis=0, return_inverse=True)
    for p, m in enumerate(patterns):
        rows = np.flatnonzero(inv.ravel() == p)
        o = ~m
        if not o.any():
            fill[rows] = mean
            cov[rows] = S
            continue
        Soo, Som = S[np.ix_(o, o)], S[np.ix_(o, m)]
        xo = X[np.ix_(rows, o)]
        ll[rows] = np.atleast_1d(multivariate_normal(mean[o], Soo).logpdf(xo))
        if m.any():
            B = np.linalg.solve(Soo, Som)                      # Sigma_oo^{-1} Sigma_om
            fill[np.ix_(rows, m)] = mean[m] + (xo - mean[o]) @ B
            cov[np.ix_(rows, m, m)] = S[np.ix_(m, m)] - Som.T @ B
    return ll, fill, cov


def _numpy_prior_scale(X):
    """s^2 of the module docstring, in plain numpy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var, msq = np.nanvar(X, axis=0), np.nanmean(X * X, axis=0)
    return np.where(var > 0, var, np.where(msq > 0, msq, 1.0))


def _numpy_em_step(X, mean, S, ridge):
    """(objective at (mean, S), new mean, new covariance, statistics) of one EM step, in plain numpy."""
    n, D = X.shape
    ll, fill, cov = _numpy_conditionals(X, mean, S)
    seen = ~np.isnan(X).all(axis=1)
    n_obs = int(seen.sum())
    S1 = fill[seen].sum(axis=0)
    S2 = fill[seen].T @ fill[seen] + cov[seen].sum(axis=0)
    lam = ridge * _numpy_prior_scale(X)
    objective = (ll.sum() - 0.5 * np.sum(lam * np.diag(np.linalg.inv(S)))) / n
    mu1 = S1 / n_obs
    S_new = (S2 - n_obs * np.outer(mu1, mu1) + np.diag(lam)) / n_obs
    return objective, mu1, S_new, (n_obs, S1, S2, ll.sum())


def emref_oracle(est, X):
    """(name, kernel result, independent numpy/scipy result) triples."""
    X = np.asarray(X, dtype=np.float64)
    mean, S = est.mean_, est.covariance_
    ll, fill, cov = _numpy_conditionals(X, mean, S)
    n_obs, S1, S2, llsum = _numpy_em_step(X, mean, S, est.ridge)[3]
    k_obs, k_S1, k_S2, k_ll = est._sufficient_statistics(X)
    out = [
        ("score_samples (scipy logpdf on the observed block)", est.score_samples(X), ll),
        ("conditional means (transform)", est.transform(X), fill),
        ("conditional covariances", est._conditional_covariances(X), cov),
        ("statistics: rows with an observed cell", k_obs, n_obs),
        ("statistics: S1 = sum xhat", k_S1, S1),
        ("statistics: S2 = sum xhat xhat^T + C", k_S2, S2),
        ("statistics: log-likelihood", k_ll, llsum),
    ]
    # two EM steps from a start away from the fit (so that the mean moves),
    # through the class's own M-step (a subclass is checked as itself)
    sd = np.sqrt(np.diag(S))
    m0 = mean + 0.5 * sd * np.where(np.arange(len(mean)) % 2, 1.0, -1.0)
    S0 = 1.5 * S + 0.25 * np.diag(np.diag(S))
    step = type(est)(**{**est.get_params(), "mean_init": m0, "covariance_init": S0, "max_iter": 2, "tol": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step.fit(X)
    f0, m1, S1n, _ = _numpy_em_step(X, m0, S0, est.ridge)
    f1, m2, S2n, _ = _numpy_em_step(X, m1, S1n, est.ridge)
    f2 = _numpy_em_step(X, m2, S2n, est.ridge)[0]
    out += [
        ("em_step_history (objective at the start and after 1, 2 steps)", step.history_, [f0, f1, f2]),
        ("em_step_mean (after 2 steps)", step.mean_, m2),
        ("em_step_covariance (after 2 steps)", step.covariance_, S2n),
    ]
    return out


def emref_hostile(variant, X):
    """(name, call, arrays the call receives) for inputs that must be refused."""
    E = EMImputer
    X = np.asarray(X, dtype=np.float64)
    n, D = X.shape
    fitted = E(max_iter=5, tol=0.0).fit(X)
    with_inf = X.copy(); with_inf[1, -1] = np.inf
    huge = X.copy(); huge[2, 0] = 1e200
    all_nan = np.full((5, D), np.nan)
    empty_col = X.copy(); empty_col[:, 1] = np.nan
    text = np.array([["a", "b"], ["c", "d"]])
    cplx = X.astype(complex)
    few = X[:2].copy(); few[:] = X[:2]
    not_sym = np.eye(D); not_sym[0, 1] = 0.5
    not_pd = -np.eye(D)
    return [
        ("X with infinity", lambda: E().fit(with_inf), [with_inf]),
        ("X beyond 1e150", lambda: E().fit(huge), [huge]),
        ("X 1-D", lambda: E().fit(X[:, 0].copy()), []),
        ("X 3-D", lambda: E().fit(X[None]), [X]),
        ("X with no rows", lambda: E().fit(np.empty((0, D))), []),
        ("X with no columns", lambda: E().fit(np.empty((5, 0))), []),
        ("non-numeric X", lambda: E().fit(text), [text]),
        ("complex X", lambda: E().fit(cplx), [cplx]),
        ("no observed value at all", lambda: E().fit(all_nan), [all_nan]),
        ("a column with no observed value", lambda: E().fit(empty_col), [empty_col]),
        ("ridge = 0 with fewer rows than columns", lambda: E(ridge=0.0).fit(few), [few]),
        ("negative ridge", lambda: E(ridge=-1.0).fit(X), [X]),
        ("infinite ridge", lambda: E(ridge=np.inf).fit(X), [X]),
        ("ridge as a string", lambda: E(ridge="1e-6").fit(X), [X]),
        ("negative tol", lambda: E(tol=-1.0).fit(X), [X]),
        ("NaN tol", lambda: E(tol=np.nan).fit(X), [X]),
        ("negative max_iter", lambda: E(max_iter=-1).fit(X), [X]),
        ("fractional max_iter", lambda: E(max_iter=2.5).fit(X), [X]),
        ("mean_init of the wrong length", lambda: E(mean_init=np.zeros(D + 1)).fit(X), [X]),
        ("mean_init with NaN", lambda: E(mean_init=np.full(D, np.nan)).fit(X), [X]),
        ("covariance_init not symmetric", lambda: E(covariance_init=not_sym).fit(X), [X, not_sym]),
        ("covariance_init not positive definite", lambda: E(covariance_init=not_pd).fit(X), [X, not_pd]),
        ("transform before fit", lambda: E().transform(X), [X]),
        ("sample before fit", lambda: E().sample(X), [X]),
        ("transform with other n_features", lambda: fitted.transform(np.hstack([X, X])), [X]),
        ("score_samples with other n_features", lambda: fitted.score_samples(X[:, :1]), [X]),
        ("sample with other n_features", lambda: fitted.sample(X[:, :1]), [X]),
        ("sample with n_draws = 0", lambda: fitted.sample(X, n_draws=0), [X]),
        ("negative random_state", lambda: fitted.sample(X, random_state=-3), [X]),
    ]


def emref_edge(variant):
    """(name, call returning a fitted estimator) for inputs that must work."""
    rng = np.random.default_rng(0)
    truth = emref_truth(variant, rng)
    X, Z = emref_sample(variant, truth, 200, rng)
    D = X.shape[1]
    E = EMImputer
    ints = np.rint(Z).astype(np.int64)
    f32 = X.astype(np.float32)
    as_list = [[None if np.isnan(v) else float(v) for v in row] for row in X]
    empty_row = X.copy(); empty_row[[3, 7]] = np.nan
    few = Z[:3].copy(); few[0, 1] = np.nan; few[2, 0] = np.nan            # 3 rows, 4 columns
    two_rows = Z[:2].copy(); two_rows[0, -1] = np.nan
    constant = X.copy(); constant[:, 2] = np.where(np.isnan(X[:, 2]), np.nan, 1.5)
    collinear = np.column_stack([X, X[:, 0] + X[:, 1]])
    single_obs = X.copy(); single_obs[1:, 0] = np.nan
    return [
        ("integer X (no missing cell)", lambda: E().fit(ints)),
        ("float32 X", lambda: E().fit(f32)),
        ("list input with None for missing", lambda: E().fit(as_list)),
        ("one column", lambda: E().fit(X[:, :1])),
        ("rows with no observed value", lambda: E().fit(empty_row)),
        ("fewer rows than columns (the ridge keeps Sigma positive definite)", lambda: E().fit(few)),
        ("a single (complete) row", lambda: E().fit(Z[:1])),
        ("two rows, one cell missing", lambda: E().fit(two_rows)),
        ("no missing value at all", lambda: E().fit(Z)),
        ("a constant column", lambda: E().fit(constant)),
        ("an exactly collinear column", lambda: E().fit(collinear)),
        ("a column observed once", lambda: E().fit(single_obs)),
        ("max_iter = 0", lambda: E(max_iter=0).fit(X)),
        ("ridge = 0 on well-posed data", lambda: E(ridge=0.0).fit(X)),
        ("a large ridge", lambda: E(ridge=10.0).fit(X)),
        ("data of scale 1e-8", lambda: E().fit(X * 1e-8)),
        ("data of scale 1e8 far from the origin", lambda: E().fit(1e8 + X * 1e8)),
    ]


def emref_plot(axes, variant, truth, params, X, z):
    """Two panels: imputed vs true values of the missing cells; true | fitted covariance."""
    X = np.asarray(X, dtype=np.float64)
    M = np.isnan(X)
    ax = axes[0]
    if M.any():
        fitted = _at_params(params).transform(X)
        oracle = _at_params(truth).transform(X)
        true = z[M]
        rmse = math.sqrt(np.mean((fitted[M] - true) ** 2))
        rmse0 = math.sqrt(np.mean((oracle[M] - true) ** 2))
        ax.scatter(true, oracle[M], s=5, color="C1", alpha=0.5, linewidths=0,
                   label=f"true parameters (RMSE {rmse0:.3g})")
        ax.scatter(true, fitted[M], s=5, color="C0", alpha=0.5, linewidths=0,
                   label=f"EM fit (RMSE {rmse:.3g})")
        lo, hi = float(true.min()), float(true.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("true value of a missing cell")
    ax.set_ylabel("conditional mean (imputed)")
    ax.set_title(f"imputation of {int(M.sum())} missing cells")
    ax = axes[1]
    St, Se = np.asarray(truth["covariance"]), np.asarray(params["covariance"])
    D = len(St)
    v = float(np.abs(St).max())
    im = ax.imshow(np.hstack([St, np.full((D, 1), np.nan), Se]), cmap="RdBu_r", vmin=-v, vmax=v)
    ax.set_xticks([])
    ax.set_yticks(range(D))
    ax.set_title("covariance: true | fitted")
    ax.figure.colorbar(im, ax=ax, shrink=0.7)


# -- seed scenario: the tutorial's imputation ----------------------------------

_TUTORIAL_COV = np.array([[1.0, 0.5, 0.3], [0.5, 1.0, 0.2], [0.3, 0.2, 1.0]])
# Passing criterion: MSE_em <= MSE_oracle (1 + C / sqrt(n_missing)), the oracle
# imputing with the true parameters. MSE_em / MSE_oracle - 1 is O(1 / n) in
# expectation (the parameters' estimation error) with fluctuations from the
# same source. Measured over seeds 0-299, sqrt(n_missing) (MSE_em / MSE_oracle - 1)
# had median 0.07 and maximum 0.61, so C = 1 leaves a margin of 1.6 (about 4%
# of the oracle's MSE at n_missing = 600; imputing column means costs ~20%).
_TUTORIAL_C = 1.0


def _tutorial(seed, n=1000):
    """The tutorial's demo: 1,000 rows of N(0, [[1,.5,.3],[.5,1,.2],[.3,.2,1]]), 20% MCAR.

    The tutorial's plug-in algorithm (fill with conditional means, take the
    covariance of the filled data) shrinks the variances of the imputed
    columns; EM does not (tests/test_impute.py). Passes when the imputation
    MSE over the missing cells is within the sampling allowance of the
    oracle's (conditional means under the true parameters) and EM converged.
    """
    rng = np.random.default_rng(seed)
    truth = {"mean": np.zeros(3), "covariance": _TUTORIAL_COV.copy()}
    Z = rng.standard_normal((n, 3)) @ np.linalg.cholesky(_TUTORIAL_COV).T
    X = Z.copy()
    M = rng.random(Z.shape) < _MISSING_RATE
    X[M] = np.nan
    t0 = time.perf_counter()
    est = EMImputer(random_state=seed)
    filled = est.fit_transform(X)
    seconds = time.perf_counter() - t0
    oracle = _at_params(truth).transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_fill = np.where(M, np.nanmean(X, axis=0), X)
    k = int(M.sum())
    mse = float(np.mean((filled[M] - Z[M]) ** 2))
    mse0 = float(np.mean((oracle[M] - Z[M]) ** 2))
    mse_mean = float(np.mean((mean_fill[M] - Z[M]) ** 2))
    bound = mse0 * (1.0 + _TUTORIAL_C / math.sqrt(k))
    passed = bool(mse <= bound and est.converged_)
    return {
        "variant": "mcar", "truth": truth, "X": X, "z": Z, "estimator": est,
        "metrics": {"mse": mse, "mse_oracle": mse0, "mse_mean_imputation": mse_mean, "n_missing": k,
                    "iterations": est.n_iter_, "fit_seconds": seconds},
        "passed": passed,
        "detail": (f"imputation MSE {mse:.4f} vs {mse0:.4f} with the true parameters (allowed up to {bound:.4f}; "
                   f"column means {mse_mean:.4f}) on {k} missing cells; {est.n_iter_} iterations"
                   f"{'' if est.converged_ else ', not converged'}, {1e3 * seconds:.0f} ms"),
    }


def emref_scenarios():
    return {"tutorial": _tutorial}
