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

with s_d^2 the variance of the observed values of column d (if they have
fewer than two distinct values, their value squared, and if that is 0, 1).
It is the inverse-Wishart density with scale matrix Lambda in the
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
with kappa (the condition number of the correlation matrix, below) of at
most about D n_obs / ridge. Such data take the direct route below, but
floating point still limits them: the objective and the conditional moments
carry a relative round-off of up to about D eps kappa (measured far less:
on n = 20,000 rows, D = 6, with exactly collinear columns and 30% missing,
kappa = 4.8e10, history_ fell by up to 7e-8 relative near convergence,
against D eps kappa = 6e-5), so history_ may fall by that much, and with a
tight tol the iteration at which EM stops is then decided by round-off; such
falls are below the fall detector's threshold (Convergence) and are not
reported. Raise ridge for a better-conditioned fit. ``ridge=0`` gives the
plain MLE, which fit refuses with a ValueError as soon as an iterate has
kappa > 1 / (1e3 D eps) (about 1e12 / D, where the round-off D eps kappa
reaches 1e-3): collinear or constant columns, or too few rows, make the MLE
singular, and EM's iterates then approach it (their log-likelihood grows
without bound), so they cross that line instead of converging.
``ridge`` must be at most 1e300 (beyond, the prior's terms overflow).

Units
-----
fit standardises the columns internally: column d is divided by 2^k_d, the
power of two within a factor sqrt(2) of s_d, an exact operation (no
rounding); EM runs on the standardised data, and the estimates are scaled
back (again exactly). The columns are not centred: the E-step's statistics
are centred on the current mean anyway. transform, score and sample divide by
the powers of two nearest the fitted standard deviations, objective by those
of fit (so that it reproduces history_ bit for bit). Standardising keeps every
square and product in range at any scale of X and makes the route choice and
the fall detector below independent of the units. The objective is reported
in the units of X: with x = 2^k z per column,

    l_x(theta) = l_z(theta_z) - sum_i sum_{d in o_i} k_d log 2,

a constant added exactly once (history_, objective, score_samples). A column
whose spread s_d (standard deviation, or the value of a constant column) is
below 1e-150 is refused, the mirror of the 1e150 limit on |x|: its variance
would not fit in float64. fit also refuses an estimate whose covariance or
precision does not fit in float64 in the units of X (which only a constant
column near that limit can cause).

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

and l(theta) (S2 and CS are accumulated together, as S2 + CS: the M-step
needs only their sum). Rows are sorted by missingness pattern once per fit,
so a pattern's factorisation is computed once per chunk and iteration and
shared by its rows (the rows of a pattern that straddles a chunk boundary pay
once per chunk), and C_p is added to CS once per pattern and chunk, weighted
by the pattern's row count in the chunk.

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

* kappa <= 1e6: the smaller block, i.e. the precision route when m <= o
  (the common case: 20% missing leaves m ~ D / 5), the direct route otherwise;
* kappa > 1e6: the direct route for every pattern;

with kappa = ||R||_1 ||R^{-1}||_1 the 1-norm condition number of the
correlation matrix R = S^{-1/2} Sigma S^{-1/2}, S = diag(Sigma) (R^{-1} =
S^{1/2} Q S^{1/2}; computed once per iteration). It does not depend on the
units of the columns, and in the standardised units the kernels work in
(Units), whose Sigma has a diagonal within a factor of about 2 of 1,
cond(Sigma) is within a small factor of it.

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
results are bit-identical for any number of numba threads (and, with no
fast-math flags, in the process that compiled the kernels as in those that
load them from numba's cache). Memory: the
partials take about D^2 / 2 numbers per chunk (CHUNK rows), i.e. 1 / (2 CHUNK)
of X's size per column of X; each running chunk allocates its own O(D^2)
scratch, freed when it ends. With a single
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
After each iteration, with change = F_new - F_old computed in the
standardised units (Units; history_ differs from those F by one constant,
so its steps are these changes up to the round-off of adding it, eps
|history_|):

* change < -rho s, where s is the scale of the sum (the mean over rows of
  1/2 (|o_i| log 2 pi + |log det Sigma_oo| + r^T Sigma_oo^{-1} r), plus
  1/2 tr(Lambda Sigma^{-1}) / n_samples, in standardised units) and
  rho = max(1e-10, D kappa eps) with kappa the scaled condition number
  above (a log-density through a factorisation loses about that much): a
  fall EM cannot make. It is never convergence; fit counts such falls and
  warns once. Smaller falls are round-off and pass silently.
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
X must be numeric (strings, dates and time spans are refused), with NaN (or
None) for a missing cell; infinity is refused, as is |x| > 1e150 (squares
would overflow), and fit and objective refuse a column whose spread is
below 1e-150 (Units). fit needs at least one observed value in every column
(a column with none has no information about its mean); a row with no
observed value is allowed and is filled with mu. A fit that raises leaves
the estimator's fitted state as it was (the previous fit's, or none). The
caller's array is never written; transform returns a new float64 array with
the observed cells copied bit for bit. Multiple
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
# No fast-math flags anywhere in this file: with them on the E-step kernel, the
# process that compiled the kernels computed different bits from the processes
# that later loaded them from numba's cache (measured; about 15% of the E-step's
# speed is the price of identical results in every process).
_LOG_2PI = math.log(2.0 * math.pi)
_LN2 = math.log(2.0)
# Largest accepted |x|: squares reach 1e300, leaving room for the sums.
_MAX_ABS = 1e150
# Smallest accepted spread of a column (module docstring, "Units"): the
# covariance, down to 1e-300, must fit in float64 (the mirror of _MAX_ABS).
_MIN_SPREAD = 1e-150
# Largest accepted ridge: in standardised units the prior adds at most
# 2 ridge to a variance and 1/2 ridge D to the objective's scale at the start.
_MAX_RIDGE = 1e300
_EPS = np.finfo(np.float64).eps
# The precision route serves a pattern only while kappa <= this (kappa: the
# 1-norm condition number of the correlation matrix, _factor): its conditional
# means and covariances lose about 1e-2 eps kappa relative (measured against
# exact rational arithmetic in tests/test_impute.py), i.e. at most ~2e-12
# here; beyond, every pattern takes the direct route, whose error stays near
# eps sqrt(kappa) (4e-14 at 1e8).
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
    The logarithm is taken of running products of the pivots, not of every
    pivot; a pivot outside [1e-100, 1e100] is logged on its own, and the
    product is logged and reset once it leaves [1e-100, 1e100], so it is only
    ever multiplied by a pivot in that range and stays within [1e-200, 1e200]
    (no overflow or underflow, whatever the pivots).
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
        # log det = sum_j log s_j  (s_j = L[j, j]^2)
        if s > 1e100 or s < 1e-100:
            ld += math.log(s)
        else:
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


@njit(cache=True, inline="always")
def _gather_lower(A, idx, i0, k, F):
    """F[a, b] = A[idx[i0 + a], idx[i0 + b]] for b <= a < k: the lower triangle of a submatrix."""
    for a in range(k):
        ja = idx[i0 + a]
        for b in range(a + 1):
            F[a, b] = A[ja, idx[i0 + b]]


@njit(cache=True, inline="always")
def _lower_gram(W, k, out):
    """out[:k, :k] = W^T W for a lower-triangular W (k x k)."""
    # out[a, b] = sum_{t >= max(a, b)} W[t, a] W[t, b]  (symmetric by construction)
    for a in range(k):
        for b in range(a, k):
            s = 0.0
            for t in range(b, k):
                s += W[t, a] * W[t, b]
            out[a, b] = s
            out[b, a] = s


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
    _lower_gram(W, D, Q)                   # Q = W^T W = Sigma^{-1}
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
        _gather_lower(Q, m_idx, m0, m, F)
        ld = _cholesky_lower(F, m, dinv)
        if not math.isfinite(ld):
            return -1, 0.0
        ld += logdet_sigma
        _lower_inverse(F, m, dinv, V)
        _lower_gram(V, m, C)                # C = V^T V = (Q_mm)^{-1}
        return 0, ld
    # F = Sigma_oo (lower triangle), then its Cholesky factor
    _gather_lower(Sigma, o_idx, o0, o, F)
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


@njit(cache=True, parallel=True)
def _e_step_kernel(Xs, pat, m_ptr, m_idx, o_ptr, o_idx, centre, Sigma, Q, W, logdet_sigma, rule,
                   want_stats, want_ll, want_fill, want_cov, z, z_off, orig, scale, log_scale,
                   pS1, pS2, pConst, pAbs, status, ll_out, fill_out, cov_out, draws_out):
    """One pass over the sorted, standardised rows Xs (n_rows, D; missing cells hold anything finite).

    Row i has pattern pat[i] (missing columns m_idx[m_ptr[p]:m_ptr[p+1]], observed
    o_idx[o_ptr[p]:o_ptr[p+1]], both ascending; every pattern has o >= 1) and
    original index orig[i]; rule picks the route (_factor_pattern). centre,
    Sigma, Q, W and the statistics are in standardised units (x_d / scale[d]);
    the per-row outputs are in the units of X. Per chunk c of CHUNK rows:

      want_stats: pS1[c] = sum (xhat - centre); pS2[c] = the row-major upper
        triangle of sum (xhat - centre)(xhat - centre)^T + sum C_i (the
        conditional covariances, count_p C_p added once per pattern and chunk);
        pConst[c] = sum_i (|o_i| log 2 pi + log det Sigma_oo + maha_i) = -2 sum_i log p_i;
        pAbs[c] = sum_i (|o_i| log 2 pi + |log det Sigma_oo| + maha_i);
      want_ll: ll_out[orig[i]] = log p_i - sum_{d in o_i} log_scale[d]
        = log N(x_io | mu_o, Sigma_oo) in the units of X;
        both with centre = mu and the Mahalanobis term maha_i = ||W yhat_i||^2,
        W = L^{-1}, yhat_i the filled residual (module docstring);
      want_fill: fill_out[orig[i], j] = scale[j] xhat_ij for the missing j only.
      want_cov: cov_out[orig[i], j, k] = scale[j] scale[k] C_i[j, k] for missing j, k.
      z.shape[0] > 0 (draws): draws_out[r, orig[i], j] = scale[j] (xhat_ij + (G z_r)_a) for
        missing j = m_a, with z_r = z[r, z_off[orig[i]] + a] and G G^T = C_i.

    status[c] = 1 if a pattern of chunk c could not be factorised. Each chunk
    allocates its own scratch (numba hoists the allocations to once per thread):
    work holds the block (D rows of BLOCK values: yhat transposed) and scratch
    rows, mats the pattern's F, V, C and chol(C). So the memory that grows with
    the number of chunks is only pS1, pS2, pConst and pAbs.
    """
    n, D = Xs.shape
    n_chunks = status.shape[0]
    n_draws = z.shape[0]
    for c in prange(n_chunks):
        work = np.empty((D + 8, max(BLOCK, D)))
        mats = np.empty((4, D, D))
        Y = work[0:D]                     # Y[d, b] = yhat_bd of the block's rows
        acc = work[D]                     # Mahalanobis term of each row of the block
        t = work[D + 1]
        cst = work[D + 2]                 # |o| log 2 pi + log det Sigma_oo of each row
        y = work[D + 3]                   # one row: residual, then filled residual
        bv = work[D + 4]
        wv = work[D + 5]
        cab = work[D + 6]                 # |o| log 2 pi + |log det Sigma_oo| of each row
        lsv = work[D + 7]                 # sum_{d in o} log_scale[d] of each row
        F = mats[0]
        V = mats[1]
        C = mats[2]
        LC = mats[3]
        rows = np.empty(BLOCK, dtype=np.int64)
        dinv = np.empty(2 * D)            # reciprocal pivots of the pattern's factors
        status[c] = 0
        if want_stats:
            pS1[c, :] = 0.0
            pS2[c, :] = 0.0
            pConst[c] = 0.0
            pAbs[c] = 0.0
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        cur = -1
        route = 0
        ld_oo = 0.0
        lso = 0.0
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
                    # S2[m_a, m_b] += count C_p[a, b] (a <= b, so m_a <= m_b: the upper
                    # triangle, row-major index m_a D - m_a (m_a + 1) / 2 + m_b)
                    for a in range(m):
                        ja = m_idx[m0 + a]
                        base = ja * D - ja * (ja + 1) // 2
                        for b in range(a, m):
                            pS2[c, base + m_idx[m0 + b]] += count * C[a, b]
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
                # lso = sum_{k < o} log_scale[o_k]
                lso = 0.0
                for k in range(o):
                    lso += log_scale[o_idx[o0 + k]]
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
                # fill = scale_j (yhat_j + c_j)
                for a in range(m):
                    j = m_idx[m0 + a]
                    fill_out[oi, j] = (y[j] + centre[j]) * scale[j]
            if want_cov:
                # cov = scale_j scale_k C[a, b]
                for a in range(m):
                    ja = m_idx[m0 + a]
                    for b in range(m):
                        jb = m_idx[m0 + b]
                        cov_out[oi, ja, jb] = C[a, b] * scale[ja] * scale[jb]
            for r in range(n_draws):
                # draw = scale (xhat_m + G z): route 0, G = F^{-T} (G G^T = Q_mm^{-1});
                # route 1, G = chol(C)
                zo = z_off[oi]
                if route == 0:
                    # F^T w = z (back substitution):  w_a = (z_a - sum_{k>a} F[k, a] w_k) / F[a, a]
                    for a in range(m - 1, -1, -1):
                        s = z[r, zo + a]
                        for k in range(a + 1, m):
                            s -= F[k, a] * wv[k]
                        wv[a] = s * dinv[a]
                else:
                    # w_a = sum_{k<=a} LC[a, k] z_k
                    for a in range(m):
                        s = 0.0
                        for k in range(a + 1):
                            s += LC[a, k] * z[r, zo + k]
                        wv[a] = s
                for a in range(m):
                    j = m_idx[m0 + a]
                    draws_out[r, oi, j] = (y[j] + centre[j] + wv[a]) * scale[j]
            # the row joins the block
            for d in range(D):
                Y[d, nb] = y[d]
            cst[nb] = o * _LOG_2PI + ld_oo
            cab[nb] = o * _LOG_2PI + abs(ld_oo)
            lsv[nb] = lso
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
                        # log p_b in the units of X: standardised log p_b - sum_{d in o} log scale_d
                        for b in range(nb):
                            ll_out[rows[b]] = -0.5 * (cst[b] + acc[b]) - lsv[b]
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
            # the chunk's last pattern: S2[m_a, m_b] += count C_p[a, b] as above
            for a in range(m):
                ja = m_idx[m0 + a]
                base = ja * D - ja * (ja + 1) // 2
                for b in range(a, m):
                    pS2[c, base + m_idx[m0 + b]] += count * C[a, b]


@njit(cache=True, parallel=True)
def _scan_kernel(X, n_miss, keys, pCount, pSum, pMin, pMax):
    """One pass over X (n, D) in fixed chunks of CHUNK rows, NaN = missing.

    n_miss[i] = the number of NaN cells of row i; keys[i] = sum_{d < 64, x_id NaN} 2^d
    (the row's pattern when D <= 64); per chunk c: pCount[c, d] = the number of
    observed cells of column d, pSum[c, d] = their sum, pMin[c, d] / pMax[c, d]
    their smallest / largest value (+inf / -inf if none).
    """
    n, D = X.shape
    n_chunks = pCount.shape[0]
    for c in prange(n_chunks):
        cnt = pCount[c]
        sm = pSum[c]
        mn = pMin[c]
        mx = pMax[c]
        for d in range(D):
            cnt[d] = 0.0
            sm[d] = 0.0
            mn[d] = np.inf
            mx[d] = -np.inf
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            k = np.uint64(0)
            nm = 0
            for d in range(D):
                v = X[i, d]
                # k = sum of 2^d over the NaN cells of the row (d < 64);
                # cnt_d += 1, sm_d += v, mn_d = min(mn_d, v), mx_d = max(mx_d, v) over the others
                if v != v:
                    nm += 1
                    if d < 64:
                        k |= np.uint64(1) << np.uint64(d)
                else:
                    cnt[d] += 1.0
                    sm[d] += v
                    if v < mn[d]:
                        mn[d] = v
                    if v > mx[d]:
                        mx[d] = v
            n_miss[i] = nm
            keys[i] = k


@njit(cache=True, parallel=True)
def _column_moments_kernel(X, inv_p, mean_p, pSS):
    """Per chunk c of CHUNK rows: pSS[c, d] = sum (x_id inv_p[d] - mean_p[d])^2 over the observed
    cells of column d (inv_p a power of two: x inv_p is exact and at most 1 in magnitude, so
    the squares neither overflow nor underflow)."""
    n, D = X.shape
    n_chunks = pSS.shape[0]
    for c in prange(n_chunks):
        ss = pSS[c]
        for d in range(D):
            ss[d] = 0.0
        # ss_d = sum_{i in chunk, x_id observed} (x_id inv_p_d - mean_p_d)^2
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            for d in range(D):
                v = X[i, d]
                if v == v:
                    r = v * inv_p[d] - mean_p[d]
                    ss[d] += r * r


@njit(cache=True, parallel=True)
def _gather_kernel(X, orig, inv_scale, Xs):
    """Xs[i] = X[orig[i]] * inv_scale (powers of two: exact) with NaN cells set to 0, over fixed
    chunks of rows."""
    n, D = Xs.shape
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        # Xs[i, d] = x_{orig[i], d} / scale_d if observed, else 0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            j = orig[i]
            for d in range(D):
                v = X[j, d]
                Xs[i, d] = v * inv_scale[d] if v == v else 0.0


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


def _plural(k, word):
    return f"{k} {word}{'' if k == 1 else 's'}"


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
    if kind in "mM":
        raise ValueError(f"{name} holds dates or time spans (dtype {arr.dtype}); convert them to numbers first.")
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
    """(n_miss, keys, and each column's observed count, sum, minimum and maximum) of X, by _scan_kernel."""
    n, D = X.shape
    n_chunks = -(-n // CHUNK)
    n_miss = np.empty(n, dtype=np.int64)
    keys = np.empty(n, dtype=np.uint64)
    pCount, pSum, pMin, pMax = (np.empty((n_chunks, D)) for _ in range(4))
    with _threads_for(n):
        _scan_kernel(X, n_miss, keys, pCount, pSum, pMin, pMax)
    if D > 64:
        # the kernel's keys cover 64 columns: pack the whole pattern and number the distinct ones
        packed = np.packbits(np.isnan(X), axis=1, bitorder="little")
        keys = np.unique(packed, axis=0, return_inverse=True)[1].ravel().astype(np.uint64)
    # reduce the chunk partials in chunk order (minimum and maximum are exact in any order)
    return n_miss, keys, pCount.sum(axis=0), pSum.sum(axis=0), pMin.min(axis=0), pMax.max(axis=0)


def _format_pow2(log2_value):
    """A positive number given by its base-2 logarithm, as text such as 3.2e-171 (no underflow)."""
    e10 = log2_value * math.log10(2.0)
    k = math.floor(e10)
    return f"{10.0 ** (e10 - k):.2g}e{k:+d}"


def _column_scales(X, count, total, lo, hi):
    """(k, s2, mean0, log2 s) per column, from the observed values (module docstring, "Units").

    s_d^2 is the prior's scale: the variance of the observed values of column d,
    else (fewer than two distinct values) their common value squared, else
    (that is 0, or nothing observed) 1. 2^k_d is the standardising scale, a power
    of two with s_d^2 / 4^k_d in [0.5, 2); s2 = s_d^2 / 4^k_d and mean0 = the
    observed mean / 2^k_d are returned in those standardised units. Everything is
    computed on x / 2^e_d with 2^e_d just above the column's largest |x|
    (exact), so no square underflows or overflows at any scale of X.
    """
    X = np.ascontiguousarray(X)
    n, D = X.shape
    seen = count > 0
    distinct = seen & (lo != hi)
    with np.errstate(invalid="ignore"):
        amax = np.where(seen, np.maximum(np.abs(lo), np.abs(hi)), 0.0)
    # |x| / 2^e < 1; below 2^-1000 the column is refused anyway (its spread is under 1e-150)
    e = np.maximum(np.frexp(amax)[1], -1000).astype(np.int64)
    inv_p = np.ldexp(1.0, -e)
    cnt = np.maximum(count, 1.0)
    mean_p = total * inv_p / cnt
    n_chunks = -(-n // CHUNK)
    pSS = np.empty((n_chunks, D))
    with _threads_for(n):
        _column_moments_kernel(X, inv_p, mean_p, pSS)
    var_p = pSS.sum(axis=0) / cnt
    v_p = np.where(seen, lo, 0.0) * inv_p                     # the common value of a constant column
    # (v_p = 0 only where the column's largest |x| is 0, so e = 0 and s^2 = 1 in both units)
    s2_p = np.where(distinct, var_p, np.where(v_p != 0.0, v_p * v_p, 1.0))
    # s2_p = f 2^j with f in [0.5, 1): h = floor(j / 2) leaves s2_p / 4^h = f 2^(j - 2h) in [0.5, 2)
    h = np.frexp(s2_p)[1] // 2
    log2_spread = e + 0.5 * np.log2(s2_p)
    return (e + h).astype(np.int64), np.ldexp(s2_p, -2 * h), np.ldexp(mean_p, -h), log2_spread


def _param_exponents(cov):
    """k with 2^k within a factor sqrt(2) of sqrt(cov_dd) (0 where cov_dd is not positive and finite)."""
    d = np.diagonal(np.asarray(cov, dtype=np.float64))
    ok = np.isfinite(d) & (d > 0)
    return np.where(ok, np.frexp(np.where(ok, d, 1.0))[1] // 2, 0).astype(np.int64)


def _layout(X, cov=None, data_scales=True):
    """The rows sorted by missingness pattern, standardised, and the pattern lists the
    E-step kernel takes.

    Rows with no observed cell are left out (they carry no information). The
    sort is stable, so rows of one pattern keep their order; patterns are
    numbered 0..P-1 in sorted order. Column d is divided by 2^k_d (exact): with
    data_scales, k from the observed values (_column_scales; fit and objective),
    a column with no observed value taking k from cov's diagonal if cov is
    given; otherwise k from cov's diagonal (the fitted covariance: transform,
    score, sample). shift = -sum_d count_d k_d log 2 / n is what the
    log-likelihood per row gains back in the units of X.
    """
    X = np.ascontiguousarray(X)       # one compiled layout for the scanning kernels
    n, D = X.shape
    n_miss, keys, count, total, lo, hi = _scan(X)
    k_cov = _param_exponents(cov) if cov is not None else np.zeros(D, dtype=np.int64)
    s2 = mean0 = None
    if data_scales:
        k, s2, mean0, log2_spread = _column_scales(X, count, total, lo, hi)
        small = np.flatnonzero(log2_spread < math.log2(_MIN_SPREAD))
        if len(small):
            j = int(small[0])
            raise ValueError(f"Column {j} of X has a spread of only {_format_pow2(float(log2_spread[j]))} (the "
                             f"standard deviation of its observed values, or their size if all equal), below "
                             f"the {_MIN_SPREAD:g} whose squares still fit in float64; rescale X.")
        unseen = count == 0
        k = np.where(unseen, k_cov, k)
        s2 = np.where(unseen, np.ldexp(1.0, -2 * k_cov), s2)      # s^2 = 1 in the units of X
    else:
        k = k_cov
    keep = np.flatnonzero(n_miss < D)
    orig = keep[np.argsort(keys[keep], kind="stable")].astype(np.int64)
    kk = keys[orig]
    first = np.flatnonzero(np.r_[True, kk[1:] != kk[:-1]]) if len(orig) else np.zeros(0, dtype=np.int64)
    pat = (np.cumsum(np.r_[False, kk[1:] != kk[:-1]]) if len(orig) else np.zeros(0)).astype(np.int64)
    pmask = np.isnan(X[orig[first]])
    m_cnt = pmask.sum(axis=1)
    m_ptr = np.r_[0, np.cumsum(m_cnt)].astype(np.int64)
    o_ptr = np.r_[0, np.cumsum(D - m_cnt)].astype(np.int64)
    m_idx = np.nonzero(pmask)[1].astype(np.int64)
    o_idx = np.nonzero(~pmask)[1].astype(np.int64)
    n_rows = len(orig)
    inv_scale = np.ldexp(1.0, -k)
    log_scale = k * _LN2
    Xs = np.empty((n_rows, D))
    with _threads_for(n_rows):
        _gather_kernel(X, orig, inv_scale, Xs)
    return dict(
        n=n, D=D, n_miss=n_miss, count=count, n_rows=n_rows, n_chunks=-(-n_rows // CHUNK),
        Xs=Xs, pat=pat, orig=orig, m_ptr=m_ptr, m_idx=m_idx, o_ptr=o_ptr, o_idx=o_idx,
        k=k, scale=np.ldexp(1.0, k), inv_scale=inv_scale, log_scale=log_scale,
        shift=-float((count * log_scale).sum()) / n, s2=s2, mean0=mean0,
    )


def _upper_to_full(flat, D):
    """Symmetric (D, D) matrix from its row-major upper triangle."""
    d, e = np.triu_indices(D)
    out = np.empty((D, D))
    out[d, e] = flat
    out[e, d] = flat
    return out


def _factor(Sigma):
    """(L, W, Q, log det Sigma, kappa) with Sigma = L L^T, W = L^{-1}, Q = Sigma^{-1} and

        kappa = ||R||_1 ||R^{-1}||_1,   R = S^{-1/2} Sigma S^{-1/2},   R^{-1} = S^{1/2} Q S^{1/2},

    S = diag(Sigma): the 1-norm condition number of the correlation matrix, the
    same in any units of the columns. log det = NaN and kappa = inf if Sigma is
    not positive definite.
    """
    D = Sigma.shape[0]
    Sigma = np.ascontiguousarray(Sigma, dtype=np.float64)
    L, W, Q = np.zeros((D, D)), np.zeros((D, D)), np.zeros((D, D))
    logdet = _sigma_factor_kernel(Sigma, L, W, Q)
    if not math.isfinite(logdet):
        return L, W, Q, logdet, math.inf
    sd = np.sqrt(np.diagonal(Sigma))
    r1 = (np.abs(Sigma) / sd / sd[:, None]).sum(axis=0).max()
    q1 = (np.abs(Q) * sd * sd[:, None]).sum(axis=0).max()
    return L, W, Q, logdet, float(r1 * q1)


def _mle_max_cond(D):
    """With ridge = 0, the largest kappa (_factor) of an accepted covariance estimate."""
    return 1.0 / (1e3 * D * _EPS)


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
        The prior Lambda = ridge * diag(s_1^2, .., s_D^2), s_d^2 the observed
        variance of column d (module docstring); 0 for the plain maximum-likelihood
        estimate, which fit refuses when it is singular or nearly so.
    mean_init : array-like (n_features,), optional
    covariance_init : array-like (n_features, n_features), optional
        Starting parameters (default: observed means, diagonal observed variances).
    random_state : int, numpy Generator or None
        Used by ``sample`` (fit itself draws no random numbers).
    verbose : int, default=0

    Attributes
    ----------
    mean_ (D,), covariance_ (D, D), precision_ (D, D), history_ (objective after
    0, 1, ..., n_iter_ iterations), n_iter_, converged_, n_features_in_. A fit
    that raises leaves them as they were (the previous fit's, or unset).
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
    # choice (the smaller block while kappa <= _PRECISION_MAX_COND, else
    # direct); 1 / 2 force the precision / direct route (tests/test_impute.py
    # compares their accuracy).
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
        self._check_ridge()
        if not isinstance(self.verbose, (numbers.Integral, np.bool_)) or self.verbose < 0:
            raise ValueError(f"verbose must be an integer >= 0; got {self.verbose!r}.")
        if isinstance(self.random_state, (bool, np.bool_)):
            raise ValueError(f"random_state must be a non-negative integer, a numpy Generator or None; "
                             f"got {self.random_state!r}.")

    def _check_ridge(self):
        if not _is_real(self.ridge) or self.ridge < 0:
            raise ValueError(f"ridge must be a non-negative number; got {self.ridge!r}.")
        if self.ridge > _MAX_RIDGE:
            raise ValueError(f"ridge must be at most {_MAX_RIDGE:g} (beyond, the prior's terms overflow "
                             f"float64); got {self.ridge!r}.")

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

    def _start(self, lay):
        """Starting (mu, Sigma) in lay's standardised units: mean_init / covariance_init (in the
        units of X), else the observed means and diag(s^2)."""
        D, inv = lay["D"], lay["inv_scale"]
        if self.mean_init is None:
            mu = lay["mean0"].copy()
        else:
            mu = self._numeric(self.mean_init, "mean_init", (D,)) * inv
        if self.covariance_init is None:
            return mu, np.diag(lay["s2"])
        S = self._numeric(self.covariance_init, "covariance_init", (D, D))
        # symmetric up to the round-off of a product such as Q diag(l) Q^T (1e-10 relative)
        if np.abs(S - S.T).max() > 1e-10 * np.abs(S).max():
            raise ValueError("covariance_init must be symmetric.")
        S = 0.5 * (S + S.T) * np.outer(inv, inv)
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
            raise ValueError(f"X has {_plural(X.shape[1], 'feature')}, but EMImputer was fitted with "
                             f"{_plural(D, 'feature')}.")
        return X

    def _fitted_in(self, lay):
        """(mean, covariance, its factorisation) of the fitted parameters in lay's standardised
        units (exact: the scales are powers of two)."""
        inv = lay["inv_scale"]
        mu, Sigma = self.mean_ * inv, self.covariance_ * np.outer(inv, inv)
        fac = _factor(Sigma)
        if not np.isfinite(fac[3]):
            raise ValueError("covariance_ is not positive definite.")
        return mu, Sigma, fac

    # kernels ------------------------------------------------------------------
    def _pass(self, lay, mu, Sigma, fac, want_stats=False, want_ll=False, fill=None, cov=None, z=None, z_off=None,
              draws=None):
        """Run the E-step kernel over lay's rows at (mu, Sigma), both in lay's standardised units.

        Returns the reduced statistics (standardised units; S2 includes the sum of
        the conditional covariances), or with want_ll the per-row log-likelihoods
        (units of X), else None; fill, cov and draws receive values in the units of X.
        """
        L, W, Q, logdet, kappa = fac
        rule = self._route or (0 if kappa <= _PRECISION_MAX_COND else 2)
        ll = np.zeros(lay["n"]) if want_ll else _NO_ROWS
        n_chunks, D = lay["n_chunks"], lay["D"]
        if want_stats:
            if "partials" not in lay:      # allocated once per layout (reused by every iteration)
                lay["partials"] = (np.empty((n_chunks, D)), np.empty((n_chunks, D * (D + 1) // 2)),
                                   np.empty(n_chunks), np.empty(n_chunks))
            pS1, pS2, pConst, pAbs = lay["partials"]
        else:
            pS1, pS2, pConst, pAbs = _NO_FILL, _NO_FILL, _NO_ROWS, _NO_ROWS
        status = np.zeros(n_chunks, dtype=np.int64)
        with _threads_for(lay["n_rows"]):
            _e_step_kernel(lay["Xs"], lay["pat"], lay["m_ptr"], lay["m_idx"], lay["o_ptr"], lay["o_idx"],
                           np.ascontiguousarray(mu, dtype=np.float64), np.ascontiguousarray(Sigma), Q, W,
                           float(logdet), rule, bool(want_stats), bool(want_ll), fill is not None, cov is not None,
                           _NO_FILL if z is None else z, _NO_OFF if z_off is None else z_off, lay["orig"],
                           lay["scale"], lay["log_scale"], pS1, pS2, pConst, pAbs, status, ll,
                           _NO_FILL if fill is None else fill, _NO_CUBE if cov is None else cov,
                           _NO_CUBE if draws is None else draws)
        if status.any():
            raise ValueError("The covariance is numerically singular on the observed cells of some rows; "
                             "increase ridge.")
        if not want_stats:
            return ll if want_ll else None
        # reduce the chunk partials in chunk order
        return {"S1": pS1.sum(axis=0), "S2": _upper_to_full(pS2.sum(axis=0), D),
                "terms": float(pConst.sum()), "abs": float(pAbs.sum()), "n_obs": lay["n_rows"]}

    @staticmethod
    def _objective(stats, fac, lam, n):
        """(F, s) in standardised units: the mean log-posterior per row and the scale of its terms
        (module docstring)."""
        Q = fac[2]
        prior = 0.5 * float((lam * np.diagonal(Q)).sum())  # 1/2 tr(Lambda Sigma^{-1}) (no BLAS call)
        F = (-0.5 * stats["terms"] - prior) / n
        s = (0.5 * stats["abs"] + prior) / n
        return F, s

    def _m_step(self, stats, centre, lam):
        """The MAP M-step: mu = c + S1 / n_obs, Sigma = (S2 + CS - n_obs delta delta^T + Lambda) / n_obs
        (stats["S2"] already includes CS, the sum of the conditional covariances)."""
        n_obs = stats["n_obs"]
        delta = stats["S1"] / n_obs
        A = stats["S2"] - n_obs * np.outer(delta, delta)
        A[np.diag_indices_from(A)] += lam
        return centre + delta, A / n_obs

    def _check_estimate(self, fac, D):
        """After an M-step: refuse a covariance that is not positive definite or, with ridge = 0,
        one with kappa above _mle_max_cond(D) (module docstring)."""
        if self.ridge == 0:
            limit = _mle_max_cond(D)
            if not fac[4] <= limit:
                what = ("not positive definite" if not np.isfinite(fac[3]) else
                        f"condition number {fac[4]:.3g} after standardising the columns, above {limit:.3g}")
                raise ValueError(f"With ridge=0 the covariance estimate is singular or nearly so ({what}): X has "
                                 f"collinear or constant columns or too few rows; use ridge > 0.")
        elif not np.isfinite(fac[3]):
            raise ValueError("The covariance estimate is not positive definite (too few observations "
                             "for the number of columns); increase ridge.")

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
        # everything below runs in standardised units (x_d / 2^k_d); history_ adds lay["shift"]
        lam = self.ridge * lay["s2"]
        mu, Sigma = self._start(lay)
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
            self._check_estimate(fac, D)
            stats = self._pass(lay, mu, Sigma, fac, want_stats=True)
            F, scale = self._objective(stats, fac, lam, n)
            if not (math.isfinite(F) and np.isfinite(mu).all() and np.isfinite(Sigma).all()):
                raise ValueError("The log-likelihood became non-finite; rescale X or increase ridge.")
            history.append(F)
            change = F - history[-2]
            if self.verbose:
                print(f"  iteration {it}: objective {F + lay['shift']:.12g}, change {change:.3e}")
            # a fall beyond the round-off of the sum (kappa from _factor: scaled, so unit-free)
            if change < -max(1e-10, D * fac[4] * _EPS) * scale:
                falls.append((it, -change))
                continue
            if self.tol > 0 and abs(change) < self.tol * unit:
                converged = True
                break
        # back to the units of X (exact unless a value leaves float64's range)
        sc, inv = lay["scale"], lay["inv_scale"]
        with np.errstate(over="ignore", under="ignore"):
            mean, cov, prec = mu * sc, Sigma * np.outer(sc, sc), fac[2] * np.outer(inv, inv)
        if not (np.isfinite(mean).all() and np.isfinite(cov).all() and np.isfinite(prec).all()
                and np.diagonal(cov).min() >= np.finfo(np.float64).tiny):
            raise ValueError("The fitted covariance or its inverse does not fit in float64 in the units of X; "
                             "rescale X.")
        self.mean_ = mean
        self.covariance_ = cov
        self.precision_ = prec
        self.history_ = np.asarray(history) + lay["shift"]
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
    def _fill(self, lay, X):
        out = X.copy()
        mu, Sigma, fac = self._fitted_in(lay)
        self._pass(lay, mu, Sigma, fac, fill=out)
        out[lay["n_miss"] == lay["D"]] = self.mean_
        return out

    def transform(self, X):
        """X with each missing cell replaced by its conditional mean given the row's observed cells."""
        X = self._check_X(X)
        return self._fill(_layout(X, self.covariance_, data_scales=False), X)

    def score_samples(self, X):
        """Observed-data log-likelihood of each row, log N(x_io | mu_o, Sigma_oo) (0 for a row with none)."""
        X = self._check_X(X)
        lay = _layout(X, self.covariance_, data_scales=False)
        mu, Sigma, fac = self._fitted_in(lay)
        return self._pass(lay, mu, Sigma, fac, want_ll=True)

    def score(self, X, y=None):
        """Mean observed-data log-likelihood per row of X (no prior)."""
        return float(self.score_samples(X).mean())

    def objective(self, X):
        """The EM objective on X in history_'s units: (log-likelihood + log prior) / n_samples.

        The prior's scale and the standardising scales come from X's observed
        columns, as in fit, so on the training data this is history_[-1] (bit
        for bit).
        """
        self._check_fitted()
        self._check_ridge()
        X = self._check_X(X)
        lay = _layout(X, self.covariance_)
        mu, Sigma, fac = self._fitted_in(lay)
        stats = self._pass(lay, mu, Sigma, fac, want_stats=True)
        return self._objective(stats, fac, self.ridge * lay["s2"], lay["n"])[0] + lay["shift"]

    def sample(self, X, n_draws=1, random_state=None):
        """Multiple imputations: (n_draws, n_samples, n_features) copies of X, missing cells drawn
        from N(xhat_im, C_i) at the fitted parameters (random_state, else the estimator's).

        n_draws and the random state are validated before X is read.
        """
        self._check_fitted()
        if not _is_int(n_draws) or n_draws < 1:
            raise ValueError(f"n_draws must be an integer >= 1; got {n_draws!r}.")
        rng = _as_rng(self.random_state if random_state is None else random_state)
        X = self._check_X(X)
        lay = _layout(X, self.covariance_, data_scales=False)
        mu, Sigma, fac = self._fitted_in(lay)
        n, D = X.shape
        z_off = np.r_[0, np.cumsum(lay["n_miss"])[:-1]].astype(np.int64)
        z = rng.standard_normal((n_draws, int(lay["n_miss"].sum())))
        draws = np.repeat(X[None], n_draws, axis=0)
        self._pass(lay, mu, Sigma, fac, z=z, z_off=z_off, draws=draws)
        empty = np.flatnonzero(lay["n_miss"] == D)
        if len(empty):
            # rows with nothing observed: mu + scale * (L z), Sigma = L L^T in standardised units
            L = fac[0]
            for r in range(n_draws):
                zz = z[r, z_off[empty][:, None] + np.arange(D)]
                draws[r, empty] = self.mean_ + lay["scale"] * np.einsum("de,ie->id", np.tril(L), zz)
        return draws

    def _sufficient_statistics(self, X):
        """(n_obs, S1, S2, loglik) of X at the fitted parameters, raw (uncentred), in the units of X:
        S1 = sum_i xhat_i, S2 = sum_i (xhat_i xhat_i^T + C_i), loglik = l(theta)."""
        X = self._check_X(X)
        lay = _layout(X, self.covariance_, data_scales=False)
        c, Sigma, fac = self._fitted_in(lay)
        st = self._pass(lay, c, Sigma, fac, want_stats=True)
        n_obs, S1c = st["n_obs"], st["S1"]
        S1 = S1c + n_obs * c
        S2 = st["S2"] + np.outer(S1c, c) + np.outer(c, S1c) + n_obs * np.outer(c, c)
        sc = lay["scale"]
        loglik = -0.5 * st["terms"] - float((lay["count"] * lay["log_scale"]).sum())
        return n_obs, S1 * sc, S2 * np.outer(sc, sc), loglik

    def _conditional_covariances(self, X):
        """(n_samples, D, D): C_i on each row's missing block, zero elsewhere (Sigma for an empty row)."""
        X = self._check_X(X)
        lay = _layout(X, self.covariance_, data_scales=False)
        mu, Sigma, fac = self._fitted_in(lay)
        n, D = X.shape
        cov = np.zeros((n, D, D))
        self._pass(lay, mu, Sigma, fac, cov=cov)
        cov[lay["n_miss"] == D] = self.covariance_
        return cov


# ----------------------------------------------------------------------------
# Harness contract (duck-typed: see "Writing a model" in emref's README).
# The estimator above does not use anything below; a copy of this file used
# on its own may delete this section.
# ----------------------------------------------------------------------------

EMREF_VARIANTS = ("mcar", "mar", "ill-conditioned")
EMREF_N = 2000
# Recovery tolerance: the RMS error over the entries of mean and covariance
# must be at most C / sqrt(n) (sampling error). Measured over seeds 0-99 at
# n=2000 (D=4, 20-25% missing; the harness's draws), the largest sqrt(n) * RMS
# was 6.5 for 'mcar' (median 2.4), 7.6 for 'mar' (median 2.6) and 0.87 for
# 'ill-conditioned' (median 0.39); it varies with the scale of the random
# covariance. C = 12 leaves a margin of 1.6 over the worst of the 300 fits.
# For 'ill-conditioned' the margin is 14: its entries are small, the RMS is not
# scale-free, and the harness takes one C per file. Scaling its covariance up
# would tighten it (x8 gives a largest sqrt(n) * RMS of 6.5, like 'mcar') but,
# measured over seeds 0-19, it pushes the consistency check's error ratio
# (limit 0.5) for seeds 0 and 4 from 0.41 / 0.42 to 0.50 / 0.49 (x4: 0.48 /
# 0.47): with one eigenvalue dominating, the covariance errors then dominate
# the RMS and move together, leaving the 4-replicate ratio few degrees of
# freedom. So the variant keeps eigenvalues 1..1e-4; its accuracy is tested
# against exact rational arithmetic and the oracles instead
# (tests/test_impute.py), and a per-variant C would need a harness change.
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
    """s^2 of the module docstring, in plain numpy: the observed variance, else (fewer than two
    distinct observed values) their value squared, else 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var, msq = np.nanvar(X, axis=0), np.nanmean(X * X, axis=0)
        distinct = np.nanmax(X, axis=0) > np.nanmin(X, axis=0)
    return np.where(distinct, var, np.where(msq > 0, msq, 1.0))


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
    few = X[:2].copy()
    dates = np.full((5, 2), np.datetime64("2020-01-01"))
    tiny = X.copy(); tiny[:, 0] *= 1e-160
    collinear = np.column_stack([X, X[:, 0] + X[:, 1]])
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
        ("datetime X", lambda: E().fit(dates), [dates]),
        ("a column of spread below 1e-150", lambda: E().fit(tiny), [tiny]),
        ("no observed value at all", lambda: E().fit(all_nan), [all_nan]),
        ("a column with no observed value", lambda: E().fit(empty_col), [empty_col]),
        ("ridge = 0 with fewer rows than columns", lambda: E(ridge=0.0).fit(few), [few]),
        ("ridge = 0 with an exactly collinear column", lambda: E(ridge=0.0).fit(collinear), [collinear]),
        ("negative ridge", lambda: E(ridge=-1.0).fit(X), [X]),
        ("infinite ridge", lambda: E(ridge=np.inf).fit(X), [X]),
        ("ridge above 1e300", lambda: E(ridge=1e308).fit(X), [X]),
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
    # columns whose scales span 1e-120 .. 1e120 (a float64 covariance still holds them all)
    mixed_big = X * np.resize([4e49, 1e120, 1.0, 1e110], D)
    mixed_small = X * np.resize([2.5e-50, 1e-120, 1.0, 1e-140], D)
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
        ("mixed extreme column scales (4e49, 1e120, 1, 1e110)", lambda: E().fit(mixed_big)),
        ("mixed extreme column scales (2.5e-50, 1e-120, 1, 1e-140)", lambda: E().fit(mixed_small)),
        ("ridge = 0 on mixed extreme column scales", lambda: E(ridge=0.0).fit(mixed_small)),
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
# Pass rule, two parts:
# 1. F(fit) >= F(truth) on the scenario's data, exactly (no tolerance): EM
#    maximises F, so the fitted parameters can only score higher than the true
#    ones. Measured over seeds 0-299: F(fit) - F(truth) between 7e-4 and 1.2e-2
#    for EM (so far above round-off), and between -4.5e-2 and -2.2e-2 for the
#    tutorial's plug-in (tests/broken_models/impute_plugin.py), which this part
#    catches on every seed.
# 2. MSE_em <= MSE_oracle (1 + C / sqrt(n_missing)), the oracle imputing with
#    the true parameters. The excess MSE_em / MSE_oracle - 1 is the
#    parameters' estimation error carried into the imputations: its mean is
#    O(p / n) (p = 9 parameters; measured 0.0037 at n = 1000) and its spread is
#    of the same order (sd 0.0059), with a cross term of order 1 / sqrt(n k).
#    The allowance C / sqrt(k) does not follow that rate; it is a fixed
#    allowance at this n, set from measurements: over seeds 0-299 the excess
#    was at most 0.025 (sqrt(k) times it at most 0.61, median 0.07), so C = 1
#    (about 0.04 at k ~ 600) leaves a margin of 1.6. It is a sanity bound
#    (imputing column means costs 14-30% here, measured on seeds 0-49), not
#    the test of EM: the plug-in's excess (up to 0.047) passes it on most
#    seeds, and part 1 is what fails it.
_TUTORIAL_C = 1.0


def _tutorial(seed, n=1000):
    """The tutorial's demo: 1,000 rows of N(0, [[1,.5,.3],[.5,1,.2],[.3,.2,1]]), 20% MCAR.

    The tutorial's plug-in algorithm (fill with conditional means, take the
    covariance of the filled data) shrinks the variances of the imputed
    columns; EM does not (tests/test_impute.py). Passes when EM converged, its
    objective on the data is at least the objective at the true parameters,
    and the imputation MSE over the missing cells is within the allowance of
    the oracle's (conditional means under the true parameters).
    """
    return _tutorial_run(seed, EMImputer, n)


def _tutorial_run(seed, estimator_class, n=1000):
    """_tutorial with any estimator class of EMImputer's API (the tests pass a broken one)."""
    rng = np.random.default_rng(seed)
    truth = {"mean": np.zeros(3), "covariance": _TUTORIAL_COV.copy()}
    Z = rng.standard_normal((n, 3)) @ np.linalg.cholesky(_TUTORIAL_COV).T
    X = Z.copy()
    M = rng.random(Z.shape) < _MISSING_RATE
    X[M] = np.nan
    t0 = time.perf_counter()
    est = estimator_class(random_state=seed)
    filled = est.fit_transform(X)
    seconds = time.perf_counter() - t0
    f_fit = est.objective(X)
    f_truth = _at_params(truth, like=est).objective(X)
    oracle = _at_params(truth).transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_fill = np.where(M, np.nanmean(X, axis=0), X)
    k = int(M.sum())
    mse = float(np.mean((filled[M] - Z[M]) ** 2))
    mse0 = float(np.mean((oracle[M] - Z[M]) ** 2))
    mse_mean = float(np.mean((mean_fill[M] - Z[M]) ** 2))
    bound = mse0 * (1.0 + _TUTORIAL_C / math.sqrt(k))
    passed = bool(mse <= bound and est.converged_ and f_fit >= f_truth)
    return {
        "variant": "mcar", "truth": truth, "X": X, "z": Z, "estimator": est,
        "metrics": {"mse": mse, "mse_oracle": mse0, "mse_mean_imputation": mse_mean, "n_missing": k,
                    "objective": f_fit, "objective_truth": f_truth,
                    "iterations": est.n_iter_, "fit_seconds": seconds},
        "passed": passed,
        "detail": (f"objective {f_fit:.6f} vs {f_truth:.6f} at the true parameters (must not be below); "
                   f"imputation MSE {mse:.4f} vs {mse0:.4f} with the true parameters (allowed up to {bound:.4f}; "
                   f"column means {mse_mean:.4f}) on {k} missing cells; {est.n_iter_} iterations"
                   f"{'' if est.converged_ else ', not converged'}, {1e3 * seconds:.0f} ms"),
    }


def emref_scenarios():
    return {"tutorial": _tutorial}
