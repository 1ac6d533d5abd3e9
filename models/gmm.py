"""Gaussian mixture model fitted by expectation-maximization.

One self-contained file: it imports only the standard library, numpy, scipy
and numba, and works when copied alone into another project. The estimator
``GaussianMixture`` follows ``sklearn.mixture.GaussianMixture`` (names,
defaults, shapes), so switching is a change of import.

Model
-----
    z_i ~ Categorical(w),          w_k >= 0, sum_k w_k = 1
    x_i | z_i = k ~ N(mu_k, Sigma_k),   x_i in R^D,  i = 1..N,  k = 1..K

Covariance types: 'full' (one Sigma_k each), 'tied' (one Sigma shared),
'diag' (Sigma_k = diag(s_k)), 'spherical' (Sigma_k = s_k I).

Objective
---------
The (sample-weighted) mean log-likelihood, with weights v_i (default 1):

    L(theta) = sum_i v_i log sum_k w_k N(x_i | mu_k, Sigma_k) / sum_i v_i

``history_[t]`` is L at the parameters after t iterations (``history_[0]`` at
the starting parameters), computed exactly at those parameters, never one
iteration late. EM never decreases L (Dempster, Laird & Rubin 1977); a
decrease larger than round-off raises a ``RuntimeWarning`` and is never
called convergence.

E-step (log space, so nothing underflows)
------------------------------------------
    log p_ik = log w_k - D/2 log 2 pi + sum_d log U_k[d, d] - 1/2 ||(x_i - mu_k)^T U_k||^2
    log p_i  = logsumexp_k log p_ik                  (per-sample log-likelihood)
    r_ik     = exp(log p_ik - log p_i)               (responsibilities)

where U_k is the upper-triangular Cholesky factor of the precision,
Sigma_k^{-1} = U_k U_k^T (sklearn's ``precisions_cholesky_``). The E-step
returns additive sufficient statistics, accumulated over fixed chunks of rows
in parallel and reduced in chunk order (bit-identical for any thread count):

    N_k  = sum_i v_i r_ik
    S1_k = sum_i v_i r_ik x_i
    S2_k = sum_i v_i r_ik x_i x_i^T      (full: matrix; diag/spherical: its diagonal;
                                          tied: sum_i v_i x_i x_i^T, fixed, computed once)

Rows are shifted by the weighted data mean before any statistic is formed,
so the second moments do not lose digits to cancellation.

M-step (statistics -> parameters, sklearn's formulas)
------------------------------------------------------
    n_k = N_k + 10 eps                        (keeps an empty component finite)
    w_k = n_k / sum_j n_j
    mu_k = S1_k / n_k
    full:      Sigma_k = S2_k / n_k - (2 - N_k / n_k) mu_k mu_k^T + reg_covar I
    tied:      Sigma   = (S2 - sum_k n_k mu_k mu_k^T) / sum_k n_k + reg_covar I
    diag:      s_k = diag(S2_k) / n_k - mu_k^2 + reg_covar
    spherical: s_k = mean_d of the diag value

Collapse policy (documented, never NaN): ``reg_covar`` is added to every
variance, so a component that shrinks onto one point, or all-identical data,
keeps a covariance of at least ``reg_covar``. A component that loses all its
mass keeps finite parameters: weight ~ 1e-15 / N, mean at the data mean,
covariance ``reg_covar`` (sklearn's behaviour). If a covariance is still not
positive definite (only possible with ``reg_covar=0``), fit raises ValueError.
``reg_covar`` makes each M-step a slightly shrunk maximizer, so on data of
unit scale any effect on monotonicity is far below round-off; with
``reg_covar=0`` EM is exactly monotone.

Initialisation
--------------
'kmeans' (default): labels from weighted k-means (k-means++ seeding, Lloyd
iterations); 'k-means++': k-means++ seeds, each row given to its nearest
seed; 'random_from_data': K distinct rows as seeds, nearest-seed labels;
'random': uniform random soft responsibilities (sklearn). ``weights_init``,
``means_init`` and ``precisions_init`` override the corresponding parts; with
all three given, the start is fully determined and 20 iterations match
sklearn's parameters to about 1e-9 relative.

Array shapes
------------
    X                    (n_samples, n_features)
    weights_             (K,)
    means_               (K, D)
    covariances_         full (K, D, D) | tied (D, D) | diag (K, D) | spherical (K,)
    precisions_,
    precisions_cholesky_ same shapes as covariances_
    predict_proba(X)     (n_samples, K)

References
----------
Dempster, Laird & Rubin (1977), Maximum likelihood from incomplete data via
the EM algorithm, JRSS-B 39(1). Bishop (2006), Pattern Recognition and Machine
Learning, sec. 9.2. McLachlan & Peel (2000), Finite Mixture Models.
Arthur & Vassilvitskii (2007), k-means++. scikit-learn's GaussianMixture.
"""

import math
import numbers
import time
import warnings

import numpy as np
from numba import njit, prange
from scipy.linalg import solve_triangular
from scipy.special import logsumexp

# Rows per chunk: fixed, so chunk boundaries (and so every floating-point sum)
# do not depend on the number of threads. Rows per block inside a chunk: the
# unit of the vectorised inner loops.
CHUNK = 4096
BLOCK = 128
# Fast-math without 'nnan'/'ninf' (they would break logsumexp over -inf):
# reassociation lets LLVM vectorise the sums inside a block.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_LOG_2PI = math.log(2.0 * math.pi)
_COV_KIND = {"full": 0, "tied": 1, "diag": 2, "spherical": 3}
# How a covariance type stores its second moments: 2 full matrix, 1 diagonal,
# 0 none per component (tied uses the fixed total scatter instead).
_S2_MODE = {"full": 2, "tied": 0, "diag": 1, "spherical": 1}


# ----------------------------------------------------------------------------
# Kernels. All take preallocated float64 arrays; the data are stored
# transposed, Xt[d, i], so the inner loops run over rows and vectorise.
# ----------------------------------------------------------------------------


@njit(cache=True, fastmath=_FASTMATH)
def _accumulate_block(Xt, b0, nb, r, s2_mode, N, S1, S2):
    """Add one block's statistics, r[k, b] = v_i r_ik for rows b0..b0+nb."""
    K = r.shape[0]
    D = Xt.shape[0]
    # N_k += sum_b r_kb
    for k in range(K):
        s = 0.0
        for b in range(nb):
            s += r[k, b]
        N[k] += s
    # S1_k[d] += sum_b r_kb x_bd
    for k in range(K):
        for d in range(D):
            s = 0.0
            for b in range(nb):
                s += r[k, b] * Xt[d, b0 + b]
            S1[k, d] += s
    if s2_mode == 1:
        # S2_k[d] += sum_b r_kb x_bd^2
        for k in range(K):
            for d in range(D):
                s = 0.0
                for b in range(nb):
                    x = Xt[d, b0 + b]
                    s += r[k, b] * x * x
                S2[k, d, 0] += s
    elif s2_mode == 2:
        # S2_k[d, e] += sum_b r_kb x_bd x_be   (upper triangle, e >= d)
        for k in range(K):
            for d in range(D):
                for e in range(d, D):
                    s = 0.0
                    for b in range(nb):
                        s += r[k, b] * Xt[d, b0 + b] * Xt[e, b0 + b]
                    S2[k, d, e] += s


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _e_step_kernel(Xt, sw, cov_kind, s2_mode, log_w, means, prec_chol, prec_sd,
                   log_det, want_stats, want_resp, work,
                   pN, pS1, pS2, pLL, logp_out, resp_out):
    """E-step over fixed chunks: log-likelihoods, responsibilities, statistics.

    Writes per-chunk partials pN[c], pS1[c], pS2[c], pLL[c] (reduced by the
    caller in chunk order), the per-row log-likelihood logp_out[i], and, when
    want_resp, resp_out[i, k].
    """
    D, n = Xt.shape
    K = means.shape[0]
    n_chunks = pLL.shape[0]
    for c in prange(n_chunks):
        lp = work[c, 0:K]            # log w_k N(x | k), then r_kb
        dif = work[c, K:K + D]       # x_b - mu_k
        y = work[c, K + D]           # one coordinate of (x - mu_k)^T U_k
        acc = work[c, K + D + 1]     # squared Mahalanobis distance
        mx = work[c, K + D + 2]      # max_k log p_kb, then log p_b
        pLL[c] = 0.0
        if want_stats:
            pN[c, :] = 0.0
            pS1[c, :, :] = 0.0
            pS2[c, :, :, :] = 0.0
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        for b0 in range(lo, hi, BLOCK):
            nb = min(hi, b0 + BLOCK) - b0
            for k in range(K):
                for b in range(nb):
                    acc[b] = 0.0
                if cov_kind <= 1:
                    # maha_b = sum_e ( sum_{d<=e} (x_bd - mu_kd) U_k[d, e] )^2
                    for d in range(D):
                        m = means[k, d]
                        for b in range(nb):
                            dif[d, b] = Xt[d, b0 + b] - m
                    for e in range(D):
                        for b in range(nb):
                            y[b] = 0.0
                        for d in range(e + 1):
                            u = prec_chol[k, d, e]
                            for b in range(nb):
                                y[b] += dif[d, b] * u
                        for b in range(nb):
                            acc[b] += y[b] * y[b]
                else:
                    # maha_b = sum_d ((x_bd - mu_kd) / s_kd)^2
                    for d in range(D):
                        m = means[k, d]
                        p = prec_sd[k, d]
                        for b in range(nb):
                            t = (Xt[d, b0 + b] - m) * p
                            acc[b] += t * t
                # log p_kb = log w_k + log|U_k| - (D log 2pi + maha_b) / 2
                base = log_w[k] + log_det[k] - 0.5 * D * _LOG_2PI
                for b in range(nb):
                    lp[k, b] = base - 0.5 * acc[b]
            # log p_b = logsumexp_k log p_kb ; r_kb = exp(log p_kb - log p_b)
            for b in range(nb):
                mx[b] = lp[0, b]
            for k in range(1, K):
                for b in range(nb):
                    if lp[k, b] > mx[b]:
                        mx[b] = lp[k, b]
            for b in range(nb):
                acc[b] = 0.0
            for k in range(K):
                for b in range(nb):
                    t = math.exp(lp[k, b] - mx[b]) if mx[b] > -np.inf else 0.0
                    lp[k, b] = t
                    acc[b] += t
            for b in range(nb):
                if acc[b] > 0.0:
                    inv = 1.0 / acc[b]
                    mx[b] = mx[b] + math.log(acc[b])
                else:
                    inv = 0.0
                    mx[b] = -np.inf
                for k in range(K):
                    lp[k, b] *= inv
            s = 0.0
            for b in range(nb):
                logp_out[b0 + b] = mx[b]
                if sw[b0 + b] != 0.0:   # a zero weight must not turn -inf into NaN
                    s += sw[b0 + b] * mx[b]
            pLL[c] += s
            if want_resp:
                for b in range(nb):
                    for k in range(K):
                        resp_out[b0 + b, k] = lp[k, b]
            if want_stats:
                for k in range(K):
                    for b in range(nb):
                        lp[k, b] *= sw[b0 + b]
                _accumulate_block(Xt, b0, nb, lp, s2_mode, pN[c], pS1[c], pS2[c])


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _resp_stats_kernel(Xt, sw, resp, s2_mode, work, pN, pS1, pS2):
    """Statistics of given responsibilities resp[i, k] (used to initialise)."""
    D, n = Xt.shape
    K = resp.shape[1]
    n_chunks = pN.shape[0]
    for c in prange(n_chunks):
        r = work[c, 0:K]
        pN[c, :] = 0.0
        pS1[c, :, :] = 0.0
        pS2[c, :, :, :] = 0.0
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        for b0 in range(lo, hi, BLOCK):
            nb = min(hi, b0 + BLOCK) - b0
            for b in range(nb):
                for k in range(K):
                    r[k, b] = resp[b0 + b, k] * sw[b0 + b]
            _accumulate_block(Xt, b0, nb, r, s2_mode, pN[c], pS1[c], pS2[c])


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _nearest_kernel(Xt, sw, centers, labels, pN, pS1, pInertia):
    """Nearest-centre labels and per-chunk centroid sums (one Lloyd step).

    labels[i] = argmin_k ||x_i - c_k||^2 (first k on ties);
    pN[c, k] = sum v_i, pS1[c, k] = sum v_i x_i over rows labelled k;
    pInertia[c] = sum v_i min_k ||x_i - c_k||^2.
    """
    D, n = Xt.shape
    K = centers.shape[0]
    n_chunks = pN.shape[0]
    for c in prange(n_chunks):
        pN[c, :] = 0.0
        pS1[c, :, :] = 0.0
        inertia = 0.0
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        for i in range(lo, hi):
            best = np.inf
            kbest = 0
            for k in range(K):
                dist = 0.0
                for d in range(D):
                    t = Xt[d, i] - centers[k, d]
                    dist += t * t
                if dist < best:
                    best = dist
                    kbest = k
            labels[i] = kbest
            v = sw[i]
            pN[c, kbest] += v
            for d in range(D):
                pS1[c, kbest, d] += v * Xt[d, i]
            inertia += v * best
        pInertia[c] = inertia


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _sq_dist_kernel(Xt, center, out):
    """out[i] = ||x_i - center||^2."""
    D, n = Xt.shape
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        for i in range(lo, hi):
            out[i] = 0.0
        for d in range(D):
            m = center[d]
            for i in range(lo, hi):
                t = Xt[d, i] - m
                out[i] += t * t


# ----------------------------------------------------------------------------
# Validation helpers (Python; run before any kernel sees the data).
# ----------------------------------------------------------------------------


class NotFittedError(ValueError, AttributeError):
    """Raised when a method needs a fitted model (as sklearn's)."""


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the objective change fell below tol."""


def _as_2d_float(X, name="X"):
    """Validated float64 copy-free view of X; raises one-sentence errors."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array.")
    try:
        arr = np.asarray(X)
    except Exception:
        raise ValueError(f"{name} could not be converted to a numeric array.") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued; got complex numbers.")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must contain only numbers; got dtype {arr.dtype}.") from None
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {arr.ndim} dimension(s)."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty; got shape {arr.shape}.")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    return arr


def _check_sample_weight(sample_weight, n):
    if sample_weight is None:
        return np.ones(n)
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("sample_weight must contain only numbers.") from None
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must be a 1-D array of length {n}; got shape {w.shape}.")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity.")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative.")
    if not w.sum() > 0:
        raise ValueError("sample_weight must have a positive sum.")
    return w


def _as_rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise ValueError("random_state must be a non-negative integer, a Generator or None.")
        return np.random.default_rng(random_state)
    raise ValueError("random_state must be a non-negative integer, a Generator or None.")


def _cov_shape(covariance_type, K, D):
    return {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]


def _chol_precisions(cov, covariance_type):
    """Upper-triangular U with U U^T = Sigma^{-1} (sklearn's precisions_cholesky_)."""
    msg = ("Fitting the mixture model failed because a covariance is not positive definite; "
           "increase reg_covar or reduce n_components.")
    if covariance_type in ("full", "tied"):
        mats = cov[None] if covariance_type == "tied" else cov
        out = np.empty_like(mats)
        eye = np.eye(mats.shape[-1])
        for k, c in enumerate(mats):
            try:
                L = np.linalg.cholesky(c)
            except np.linalg.LinAlgError:
                raise ValueError(msg) from None
            if not np.all(np.diag(L) > 0):
                raise ValueError(msg)
            out[k] = solve_triangular(L, eye, lower=True).T
        return out[0] if covariance_type == "tied" else out
    if not np.all(cov > 0):
        raise ValueError(msg)
    return 1.0 / np.sqrt(cov)


def _chol_from_precisions(prec, covariance_type):
    """precisions_cholesky_ from precisions (sklearn's convention)."""
    if covariance_type in ("full", "tied"):
        mats = prec[None] if covariance_type == "tied" else prec
        out = np.empty_like(mats)
        for k, p in enumerate(mats):
            # U = J chol(J P J) J, with J the reversal permutation, is upper
            # triangular with U U^T = P (the E-step reads only U's upper part).
            out[k] = np.linalg.cholesky(p[::-1, ::-1])[::-1, ::-1]
        return out[0] if covariance_type == "tied" else out
    return np.sqrt(prec)


# ----------------------------------------------------------------------------
# The estimator.
# ----------------------------------------------------------------------------


class GaussianMixture:
    """Gaussian mixture fitted by EM, with sklearn.mixture.GaussianMixture's API.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Stop when the mean log-likelihood rises by less than tol. tol=0 runs
        exactly max_iter iterations.
    reg_covar : float, default=1e-6
        Added to every variance (the covariance floor).
    max_iter : int, default=100
    n_init : int, default=1
        Independent starts; the one with the highest final objective is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}
    weights_init, means_init, precisions_init : array-like, optional
    random_state : int, numpy Generator or None
    warm_start : bool, default=False
        Start the next fit from the current parameters (n_init is then 1).
    verbose : int, default=0
    verbose_interval : int, default=10

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_,
    converged_, n_iter_, lower_bound_ (final mean log-likelihood),
    history_ (mean log-likelihood after 0, 1, ..., n_iter_ iterations),
    n_features_in_.
    """

    _COV_TYPES = ("full", "tied", "diag", "spherical")
    _INITS = ("kmeans", "k-means++", "random", "random_from_data")

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3,
                 reg_covar=1e-6, max_iter=100, n_init=1, init_params="kmeans",
                 weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, warm_start=False, verbose=0,
                 verbose_interval=10):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # sklearn-style parameter access -----------------------------------------
    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in (
            "n_components", "covariance_type", "tol", "reg_covar", "max_iter",
            "n_init", "init_params", "weights_init", "means_init",
            "precisions_init", "random_state", "warm_start", "verbose",
            "verbose_interval")}

    def set_params(self, **params):
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for GaussianMixture.")
            setattr(self, key, value)
        return self

    def __repr__(self):
        return f"GaussianMixture(n_components={self.n_components}, covariance_type={self.covariance_type!r})"

    # validation ---------------------------------------------------------------
    def _check_hyperparameters(self):
        def is_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def is_real(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        if not is_int(self.n_components) or self.n_components < 1:
            raise ValueError(f"n_components must be an integer >= 1; got {self.n_components!r}.")
        if self.covariance_type not in self._COV_TYPES:
            raise ValueError(f"covariance_type must be one of {self._COV_TYPES}; got {self.covariance_type!r}.")
        if self.init_params not in self._INITS:
            raise ValueError(f"init_params must be one of {self._INITS}; got {self.init_params!r}.")
        if not is_real(self.tol) or self.tol < 0:
            raise ValueError(f"tol must be a non-negative number; got {self.tol!r}.")
        if not is_real(self.reg_covar) or self.reg_covar < 0:
            raise ValueError(f"reg_covar must be a non-negative number; got {self.reg_covar!r}.")
        if not is_int(self.max_iter) or self.max_iter < 0:
            raise ValueError(f"max_iter must be an integer >= 0; got {self.max_iter!r}.")
        if not is_int(self.n_init) or self.n_init < 1:
            raise ValueError(f"n_init must be an integer >= 1; got {self.n_init!r}.")

    def _check_inits(self, D):
        K, ct = self.n_components, self.covariance_type
        w = m = p = None
        if self.weights_init is not None:
            w = self._numeric(self.weights_init, "weights_init")
            if w.shape != (K,):
                raise ValueError(f"weights_init must have shape ({K},); got {w.shape}.")
            if (w < 0).any() or (w > 1).any():
                raise ValueError("weights_init must lie in [0, 1].")
            if abs(w.sum() - 1.0) > 1e-8:
                raise ValueError(f"weights_init must sum to 1; got {w.sum():.6g}.")
        if self.means_init is not None:
            m = self._numeric(self.means_init, "means_init")
            if m.shape != (K, D):
                raise ValueError(f"means_init must have shape ({K}, {D}); got {m.shape}.")
        if self.precisions_init is not None:
            p = self._numeric(self.precisions_init, "precisions_init")
            shape = _cov_shape(ct, K, D)
            if p.shape != shape:
                raise ValueError(f"precisions_init must have shape {shape} for covariance_type={ct!r}; got {p.shape}.")
            if ct in ("full", "tied"):
                mats = p[None] if ct == "tied" else p
                if not np.allclose(mats, np.swapaxes(mats, -1, -2)):
                    raise ValueError("precisions_init must be symmetric.")
                if not all(np.linalg.eigvalsh(a).min() > 0 for a in mats):
                    raise ValueError("precisions_init must be positive definite.")
            elif not (p > 0).all():
                raise ValueError("precisions_init must be positive.")
        return w, m, p

    @staticmethod
    def _numeric(value, name):
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must contain only numbers.") from None
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity.")
        return arr

    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise NotFittedError("This GaussianMixture instance is not fitted yet; call fit first.")

    def _check_predict_X(self, X):
        self._check_fitted()
        X = _as_2d_float(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but GaussianMixture was fitted with {self.n_features_in_} features."
            )
        return X

    # data layout ---------------------------------------------------------------
    def _layout(self, X, shift, want_stats):
        """Transposed, shifted copy of X plus the workspaces the kernels need."""
        Xt = np.ascontiguousarray((X - shift).T)
        n = X.shape[0]
        K, D = self.n_components, X.shape[1]
        n_chunks = (n + CHUNK - 1) // CHUNK
        s2 = _S2_MODE[self.covariance_type] if want_stats else 0
        s2_shape = {0: (1, 1), 1: (K, D, 1), 2: (K, D, D)}[s2]
        return dict(
            Xt=Xt, shift=shift, n_chunks=n_chunks,
            work=np.empty((n_chunks, K + D + 3, BLOCK)),
            pN=np.empty((n_chunks, K)), pS1=np.empty((n_chunks, K, D)),
            pS2=np.empty((n_chunks,) + (s2_shape if s2 else (1, 1, 1))),
            pLL=np.empty(n_chunks), logp=np.empty(n),
        )

    def _kernel_params(self, shift):
        """Parameters in the form the E-step kernel takes (means shifted)."""
        K, D = self.means_.shape
        ct = self.covariance_type
        pc = self.precisions_cholesky_
        if ct == "full":
            chol, sd = pc, np.zeros((1, 1))
            log_det = np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1)
        elif ct == "tied":
            chol, sd = np.broadcast_to(pc, (K, D, D)).copy(), np.zeros((1, 1))
            log_det = np.full(K, np.log(np.diag(pc)).sum())
        elif ct == "diag":
            chol, sd = np.zeros((1, 1, 1)), pc
            log_det = np.log(pc).sum(axis=1)
        else:
            chol, sd = np.zeros((1, 1, 1)), np.repeat(pc[:, None], D, axis=1)
            log_det = D * np.log(pc)
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights_)
        return log_w, self.means_ - shift, chol, np.ascontiguousarray(sd), log_det

    def _e_step(self, lay, sw, want_stats=True, resp_out=None):
        """Run the E-step kernel; returns (mean log-lik, (N, S1, S2) or None)."""
        log_w, means, chol, sd, log_det = self._kernel_params(lay["shift"])
        want_resp = resp_out is not None
        s2_mode = _S2_MODE[self.covariance_type] if want_stats else 0
        _e_step_kernel(lay["Xt"], sw, _COV_KIND[self.covariance_type], s2_mode,
                       log_w, means, chol, sd, log_det, want_stats, want_resp,
                       lay["work"], lay["pN"], lay["pS1"], lay["pS2"], lay["pLL"],
                       lay["logp"], resp_out if want_resp else np.empty((1, 1)))
        # reduce the chunk partials in chunk order
        ll = lay["pLL"].sum() / sw.sum()
        if not want_stats:
            return ll, None
        return ll, (lay["pN"].sum(axis=0), lay["pS1"].sum(axis=0), lay["pS2"].sum(axis=0))

    def _m_step(self, stats, scatter, shift):
        """Map the sufficient statistics to parameters (sklearn's formulas)."""
        N, S1, S2 = stats
        ct = self.covariance_type
        nk = N + 10 * np.finfo(np.float64).eps
        mu = S1 / nk[:, None]
        if ct == "full":
            S2 = np.triu(S2) + np.triu(S2, 1).transpose(0, 2, 1)
            cov = S2 / nk[:, None, None] - (2.0 - N / nk)[:, None, None] * mu[:, :, None] * mu[:, None, :]
            cov[:, np.arange(mu.shape[1]), np.arange(mu.shape[1])] += self.reg_covar
        elif ct == "tied":
            cov = (scatter - np.einsum("k,kd,ke->de", nk, mu, mu)) / nk.sum()
            cov.flat[:: mu.shape[1] + 1] += self.reg_covar
        else:
            cov = S2[:, :, 0] / nk[:, None] - mu * mu + self.reg_covar
            if ct == "spherical":
                cov = cov.mean(axis=1)
        self._set_parameters(nk / nk.sum(), mu + shift, cov)

    def _set_parameters(self, weights, means, covariances, precisions_cholesky=None):
        ct = self.covariance_type
        if precisions_cholesky is None:
            precisions_cholesky = _chol_precisions(covariances, ct)
        self.weights_ = weights
        self.means_ = means
        self.covariances_ = covariances
        self.precisions_cholesky_ = precisions_cholesky
        if ct == "full":
            self.precisions_ = precisions_cholesky @ np.swapaxes(precisions_cholesky, 1, 2)
        elif ct == "tied":
            self.precisions_ = precisions_cholesky @ precisions_cholesky.T
        else:
            self.precisions_ = precisions_cholesky ** 2

    # initialisation -------------------------------------------------------------
    def _initialize(self, X, sw, lay, rng, inits):
        K, (n, D) = self.n_components, X.shape
        w_init, m_init, p_init = inits
        if not all(v is not None for v in inits):
            labels = None
            if self.init_params == "kmeans":
                labels = self._kmeans(lay["Xt"], sw, rng)
            elif self.init_params in ("k-means++", "random_from_data"):
                if self.init_params == "k-means++":
                    centers = self._kmeans_pp(lay["Xt"], sw, rng)
                else:
                    centers = lay["Xt"][:, rng.choice(n, size=K, replace=False)].T.copy()
                labels = np.empty(n, dtype=np.int64)
                _nearest_kernel(lay["Xt"], sw, centers, labels, lay["pN"], lay["pS1"], lay["pLL"])
            if labels is not None:
                resp = np.zeros((n, K))
                resp[np.arange(n), labels] = 1.0
            else:  # 'random': soft uniform responsibilities
                resp = rng.uniform(size=(n, K))
                resp /= resp.sum(axis=1, keepdims=True)
            s2_mode = _S2_MODE[self.covariance_type]
            _resp_stats_kernel(lay["Xt"], sw, resp, s2_mode, lay["work"], lay["pN"], lay["pS1"], lay["pS2"])
            stats = (lay["pN"].sum(axis=0), lay["pS1"].sum(axis=0), lay["pS2"].sum(axis=0))
            self._m_step(stats, lay.get("scatter"), lay["shift"])
        # explicit initial values override the data-driven ones
        weights = self.weights_ if w_init is None else w_init
        means = self.means_ if m_init is None else m_init
        if p_init is None:
            cov = self.covariances_
            pc = self.precisions_cholesky_
        else:
            pc = _chol_from_precisions(p_init, self.covariance_type)
            cov = self._cov_from_precisions(p_init)
        self._set_parameters(weights, means, cov, pc)

    def _cov_from_precisions(self, prec):
        if self.covariance_type == "full":
            return np.linalg.inv(prec)
        if self.covariance_type == "tied":
            return np.linalg.inv(prec)
        return 1.0 / prec

    def _kmeans_pp(self, Xt, sw, rng):
        """Weighted greedy k-means++ seeding (Arthur & Vassilvitskii 2007)."""
        D, n = Xt.shape
        K = self.n_components
        centers = np.empty((K, D))
        trials = 2 + int(np.log(K))
        first = rng.choice(n, p=sw / sw.sum())
        centers[0] = Xt[:, first]
        closest = np.empty(n)
        _sq_dist_kernel(Xt, centers[0], closest)
        cand_d = np.empty(n)
        for k in range(1, K):
            pot = sw * closest
            total = pot.sum()
            if total > 0:
                cands = rng.choice(n, size=trials, p=pot / total)
            else:  # all remaining rows coincide with a centre
                cands = rng.choice(n, size=trials, p=sw / sw.sum())
            best, best_pot, best_d = None, np.inf, None
            for i in cands:
                _sq_dist_kernel(Xt, Xt[:, i].copy(), cand_d)
                p = (sw * np.minimum(closest, cand_d)).sum()
                if p < best_pot:
                    best, best_pot, best_d = i, p, np.minimum(closest, cand_d)
            centers[k] = Xt[:, best]
            closest = best_d
        return centers

    def _kmeans(self, Xt, sw, rng, max_iter=100, tol=1e-4):
        """Weighted Lloyd iterations from k-means++ seeds; returns labels.

        Stops when no centre moves by more than tol times the mean variance
        (sklearn's criterion) or after max_iter steps. An empty cluster keeps
        its previous centre.
        """
        D, n = Xt.shape
        K = self.n_components
        centers = self._kmeans_pp(Xt, sw, rng)
        labels = np.empty(n, dtype=np.int64)
        n_chunks = (n + CHUNK - 1) // CHUNK
        pN, pS1, pI = np.empty((n_chunks, K)), np.empty((n_chunks, K, D)), np.empty(n_chunks)
        mean = (Xt * sw).sum(axis=1) / sw.sum()
        var = ((Xt - mean[:, None]) ** 2 * sw).sum(axis=1) / sw.sum()
        thresh = tol * var.mean()
        for _ in range(max_iter):
            _nearest_kernel(Xt, sw, centers, labels, pN, pS1, pI)
            N, S1 = pN.sum(axis=0), pS1.sum(axis=0)
            new = centers.copy()
            full = N > 0
            new[full] = S1[full] / N[full, None]
            shift = ((new - centers) ** 2).sum()
            centers = new
            if shift <= thresh:
                break
        _nearest_kernel(Xt, sw, centers, labels, pN, pS1, pI)
        return labels

    # fitting ------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM; returns self."""
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the labels of X under the fitted model."""
        return self._fit(X, sample_weight)

    def _fit(self, X, sample_weight):
        self._check_hyperparameters()
        X = _as_2d_float(X)
        n, D = X.shape
        K = self.n_components
        if n < K:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {K}, n_samples = {n}.")
        sw = _check_sample_weight(sample_weight, n)
        inits = self._check_inits(D)
        rng = _as_rng(self.random_state)

        warm = self.warm_start and hasattr(self, "converged_")
        if warm and self.n_features_in_ != D:
            raise ValueError(f"X has {D} features, but GaussianMixture was fitted with {self.n_features_in_} features.")
        shift = (sw @ X) / sw.sum()
        lay = self._layout(X, shift, want_stats=True)
        if self.covariance_type == "tied":
            lay["scatter"] = self._scatter(lay, sw)
        self.n_features_in_ = D

        best = None
        for init in range(1 if warm else self.n_init):
            t0 = time.perf_counter()
            if not warm:
                self._initialize(X, sw, lay, rng, inits)
            history, converged = self._run_em(lay, sw)
            if self.verbose:
                print(f"Initialization {init}: {len(history) - 1} iterations, "
                      f"objective {history[-1]:.6f}, converged={converged}, "
                      f"{time.perf_counter() - t0:.3f}s")
            if best is None or history[-1] > best[0]:
                best = (history[-1], converged, history, self._get_parameters())
        _, self.converged_, history, params = best
        self._set_parameters(*params)
        self.history_ = np.asarray(history)
        self.n_iter_ = len(history) - 1
        self.lower_bound_ = history[-1]
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge; increase max_iter or tol, "
                "or check for degenerate data.", ConvergenceWarning, stacklevel=3)
        resp = np.empty((n, K))
        self._e_step(lay, sw, want_stats=False, resp_out=resp)
        return resp.argmax(axis=1)

    def _scatter(self, lay, sw):
        """Total weighted scatter sum_i v_i x_i x_i^T (tied: fixed across iterations)."""
        n = lay["Xt"].shape[1]
        D = lay["Xt"].shape[0]
        pS2 = np.empty((lay["n_chunks"], 1, D, D))
        pN, pS1 = np.empty((lay["n_chunks"], 1)), np.empty((lay["n_chunks"], 1, D))
        _resp_stats_kernel(lay["Xt"], sw, np.ones((n, 1)), 2, lay["work"], pN, pS1, pS2)
        S = pS2.sum(axis=0)[0]
        return np.triu(S) + np.triu(S, 1).T

    def _run_em(self, lay, sw):
        """EM iterations from the current parameters; returns (history, converged).

        history[t] is the exact objective at the parameters after t
        iterations, from the E-step run at those parameters.
        """
        ll, stats = self._e_step(lay, sw)
        history = [ll]
        converged = False
        for it in range(1, self.max_iter + 1):
            self._m_step(stats, lay.get("scatter"), lay["shift"])
            ll, stats = self._e_step(lay, sw)
            if not np.isfinite(ll):
                raise ValueError("The log-likelihood became non-finite; check the data scale or increase reg_covar.")
            history.append(ll)
            change = ll - history[-2]
            if self.verbose >= 2 and it % self.verbose_interval == 0:
                print(f"  Iteration {it}: objective {ll:.8f}, change {change:.3e}")
            if change < -1e-10 * abs(ll):
                warnings.warn(
                    f"The log-likelihood decreased by {-change:.3e} at iteration {it}; "
                    "this is not convergence.", RuntimeWarning, stacklevel=4)
            elif self.tol > 0 and change < self.tol:
                converged = True
                break
        return history, converged

    def _sufficient_statistics(self, X, sample_weight=None):
        """E-step statistics (N_k, S1_k, S2_k) of X at the current parameters.

        Unshifted, in full form: S2 is (K, D, D) for 'full', the total scatter
        (D, D) for 'tied', the diagonals (K, D) for 'diag'/'spherical'.
        """
        X = self._check_predict_X(X)
        sw = _check_sample_weight(sample_weight, X.shape[0])
        lay = self._layout(X, np.zeros(X.shape[1]), want_stats=True)
        _, (N, S1, S2) = self._e_step(lay, sw)
        if self.covariance_type == "full":
            S2 = np.triu(S2) + np.triu(S2, 1).transpose(0, 2, 1)
        elif self.covariance_type == "tied":
            S2 = self._scatter(lay, sw)
        else:
            S2 = S2[:, :, 0]
        return N, S1, S2

    def _get_parameters(self):
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    # prediction ---------------------------------------------------------------
    def _predict_layout(self, X):
        X = self._check_predict_X(X)
        lay = self._layout(X, np.zeros(X.shape[1]), want_stats=False)
        return X, lay, np.ones(X.shape[0])

    def score_samples(self, X):
        """Per-sample log-likelihood log p(x_i), shape (n_samples,)."""
        _, lay, sw = self._predict_layout(X)
        self._e_step(lay, sw, want_stats=False)
        return lay["logp"].copy()

    def score(self, X, y=None):
        """Mean per-sample log-likelihood of X."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X):
        """Posterior component probabilities, shape (n_samples, n_components)."""
        X, lay, sw = self._predict_layout(X)
        resp = np.empty((X.shape[0], self.n_components))
        self._e_step(lay, sw, want_stats=False, resp_out=resp)
        return resp

    def predict(self, X):
        """Most probable component of each sample."""
        return self.predict_proba(X).argmax(axis=1)

    def sample(self, n_samples=1):
        """Draw (X, labels) from the fitted model; uses random_state."""
        self._check_fitted()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1; got {n_samples!r}.")
        rng = _as_rng(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        K, D = self.means_.shape
        ct = self.covariance_type
        parts = []
        for k, c in enumerate(counts):
            z = rng.standard_normal((c, D))
            if ct in ("full", "tied"):
                cov = self.covariances_[k] if ct == "full" else self.covariances_
                parts.append(self.means_[k] + z @ np.linalg.cholesky(cov).T)
            else:
                var = self.covariances_[k]
                parts.append(self.means_[k] + z * np.sqrt(var))
        X = np.vstack(parts)
        labels = np.repeat(np.arange(K), counts)
        return X, labels

    def _n_parameters(self):
        K, D = self.means_.shape
        cov = {"full": K * D * (D + 1) / 2, "tied": D * (D + 1) / 2, "diag": K * D, "spherical": K}
        return int(cov[self.covariance_type] + K * D + K - 1)

    def bic(self, X):
        """Bayesian information criterion (lower is better)."""
        X = self._check_predict_X(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion (lower is better)."""
        X = self._check_predict_X(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()


# ----------------------------------------------------------------------------
# Harness contract (duck-typed: see "Writing a model" in emref's README).
# The estimator above does not use anything below; a copy of this file used
# on its own may delete this section.
# ----------------------------------------------------------------------------

EMREF_VARIANTS = ("full", "tied", "diag", "spherical")
EMREF_N = 2000
# Recovery tolerance: the RMS error over all aligned parameter entries must be
# at most EMREF_RECOVERY_C / sqrt(n) (sampling error, O(1/sqrt(n))). Measured
# over 4 variants x 12 seeds at n=2000, sqrt(n) * RMS was 2.2-3.2 at most, so
# C = 6 leaves a margin of about 2 while still catching a biased M-step.
EMREF_RECOVERY_C = 6.0


def _full_covariances(variant, cov, K, D):
    """The (K, D, D) covariance matrices of any covariance type."""
    cov = np.asarray(cov, dtype=np.float64)
    if variant == "full":
        return cov
    if variant == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if variant == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(D)


def emref_truth(variant, rng, n_components=3, n_features=2):
    """A well-posed random GMM that still overlaps, so EM has work to do.

    Means at least 4 apart (about 3-5 standard deviations) in a box that
    starts at [-3, 3]^D and grows only if they do not fit; variances in
    [0.5, 1.5] along random axes; weights within a factor 3 of each other.
    """
    K, D = n_components, n_features
    weights = 0.5 + rng.uniform(size=K)
    weights /= weights.sum()
    half = 3.0
    for attempt in range(10_000):   # rejection sampling of well-separated means
        means = rng.uniform(-half, half, size=(K, D))
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1) + 1e9 * np.eye(K)
        if gaps.min() >= 4.0:
            break
        if attempt % 100 == 99:
            half *= 1.2
    def rotated():
        Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
        return (Q * rng.uniform(0.5, 1.5, size=D)) @ Q.T
    if variant == "full":
        cov = np.stack([rotated() for _ in range(K)])
    elif variant == "tied":
        cov = rotated()
    elif variant == "diag":
        cov = rng.uniform(0.5, 1.5, size=(K, D))
    else:
        cov = rng.uniform(0.5, 1.5, size=K)
    return {"weights": weights, "means": means, "covariances": cov}


def emref_sample(variant, truth, n, rng):
    """(X, z): n rows drawn from the truth, z the component of each row."""
    K, D = truth["means"].shape
    z = rng.choice(K, size=n, p=truth["weights"])
    covs = _full_covariances(variant, truth["covariances"], K, D)
    chol = np.linalg.cholesky(covs)
    eps = rng.standard_normal((n, D))
    X = truth["means"][z] + np.einsum("nij,nj->ni", chol[z], eps)
    return X, z


def emref_estimator(variant, truth, seed):
    """An unfitted estimator configured to run EM to convergence."""
    return GaussianMixture(len(truth["weights"]), covariance_type=variant,
                           tol=1e-10, max_iter=2000, random_state=seed)


def emref_params(est):
    return {"weights": est.weights_, "means": est.means_, "covariances": est.covariances_}


def _with_params(variant, params):
    K, D = params["means"].shape
    est = GaussianMixture(K, covariance_type=variant)
    cov = np.asarray(params["covariances"], dtype=np.float64)
    est.n_features_in_ = D
    est._set_parameters(np.asarray(params["weights"], dtype=np.float64),
                        np.asarray(params["means"], dtype=np.float64), cov)
    return est


def emref_objective(variant, params, X):
    """Mean log-likelihood of X at params (history_'s units)."""
    return _with_params(variant, params).score(X)


def emref_label_axes(variant):
    return {"weights": (0,), "means": (0,), "covariances": () if variant == "tied" else (0,)}


def emref_oracle(est, X):
    """(name, kernel result, independent numpy/scipy result) triples."""
    from scipy.stats import multivariate_normal

    ct = est.covariance_type
    K = est.n_components
    covs = _full_covariances(ct, est.covariances_, K, X.shape[1])
    log_joint = np.column_stack([
        np.log(est.weights_[k]) + multivariate_normal(est.means_[k], covs[k]).logpdf(X)
        for k in range(K)]).reshape(len(X), K)
    log_p = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_p[:, None])
    v = np.linspace(0.5, 2.0, len(X))   # non-uniform sample weights
    rv = resp * v[:, None]
    N, S1, S2 = est._sufficient_statistics(X, v)
    if ct == "full":
        S2_ref = np.einsum("nk,ni,nj->kij", rv, X, X)
    elif ct == "tied":
        S2_ref = (X * v[:, None]).T @ X
    else:
        S2_ref = rv.T @ (X * X)
    # one EM step from the current parameters, in plain numpy
    nk = rv.sum(0) + 10 * np.finfo(float).eps
    mu = rv.T @ X / nk[:, None]
    D = X.shape[1]
    if ct == "tied":
        cov = sum(((X - mu[k]) * rv[:, [k]]).T @ (X - mu[k]) for k in range(K)) / nk.sum() + est.reg_covar * np.eye(D)
    else:
        full = np.stack([((X - mu[k]) * rv[:, [k]]).T @ (X - mu[k]) / nk[k] for k in range(K)])
        full += est.reg_covar * np.eye(D)
        cov = {"full": full, "diag": np.diagonal(full, axis1=1, axis2=2),
               "spherical": np.diagonal(full, axis1=1, axis2=2).mean(1)}[ct]
    # type(est): a subclass (e.g. a deliberately broken model) is checked as itself
    step = type(est)(K, covariance_type=ct, reg_covar=est.reg_covar, max_iter=1, tol=0,
                     weights_init=est.weights_, means_init=est.means_,
                     precisions_init=est.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        step.fit(X, sample_weight=v)
    return [
        ("score_samples", est.score_samples(X), log_p),
        ("predict_proba", est.predict_proba(X), resp),
        ("N_k", N, rv.sum(0)),
        ("S1_k", S1, rv.T @ X),
        ("S2_k", S2, S2_ref),
        ("em_step_weights", step.weights_, nk / nk.sum()),
        ("em_step_means", step.means_, mu),
        ("em_step_covariances", step.covariances_, cov),
    ]


def emref_hostile(variant, X):
    """(name, call, arrays the call receives) for inputs that must be refused."""
    K = 3
    G = GaussianMixture
    fitted = G(K, covariance_type=variant, random_state=0).fit(X)
    n, D = X.shape
    bad_nan = X.copy(); bad_nan[0, 0] = np.nan
    bad_inf = X.copy(); bad_inf[1, -1] = np.inf
    text = np.array([["a", "b"]] * 5)
    w_neg = np.ones(n); w_neg[3] = -1.0
    w_zero = np.zeros(n)
    w_short = np.ones(n - 1)
    return [
        ("X with NaN", lambda: G(K, covariance_type=variant).fit(bad_nan), [bad_nan]),
        ("X with inf", lambda: G(K, covariance_type=variant).fit(bad_inf), [bad_inf]),
        ("X 1-D", lambda: G(K, covariance_type=variant).fit(X[:, 0].copy()), []),
        ("X 3-D", lambda: G(K, covariance_type=variant).fit(X[None]), [X]),
        ("X empty rows", lambda: G(1, covariance_type=variant).fit(np.empty((0, D))), []),
        ("X empty columns", lambda: G(1, covariance_type=variant).fit(np.empty((5, 0))), []),
        ("non-numeric X", lambda: G(1, covariance_type=variant).fit(text), [text]),
        ("fewer samples than components", lambda: G(K, covariance_type=variant).fit(X[:2]), [X]),
        ("n_components = 0", lambda: G(0, covariance_type=variant).fit(X), [X]),
        ("unknown covariance_type", lambda: G(K, covariance_type="banana").fit(X), [X]),
        ("unknown init_params", lambda: G(K, covariance_type=variant, init_params="banana").fit(X), [X]),
        ("negative reg_covar", lambda: G(K, covariance_type=variant, reg_covar=-1.0).fit(X), [X]),
        ("negative sample_weight", lambda: G(K, covariance_type=variant).fit(X, sample_weight=w_neg), [X, w_neg]),
        ("all-zero sample_weight", lambda: G(K, covariance_type=variant).fit(X, sample_weight=w_zero), [X, w_zero]),
        ("wrong-length sample_weight", lambda: G(K, covariance_type=variant).fit(X, sample_weight=w_short), [X, w_short]),
        ("weights_init wrong shape", lambda: G(K, covariance_type=variant, weights_init=np.ones(K + 1) / (K + 1)).fit(X), [X]),
        ("weights_init not summing to 1", lambda: G(K, covariance_type=variant, weights_init=np.full(K, 0.5)).fit(X), [X]),
        ("means_init wrong shape", lambda: G(K, covariance_type=variant, means_init=np.zeros((K, D + 1))).fit(X), [X]),
        ("precisions_init wrong shape", lambda: G(K, covariance_type=variant, precisions_init=np.ones((K + 1, D + 1, 2))).fit(X), [X]),
        ("predict before fit", lambda: G(K, covariance_type=variant).predict(X), [X]),
        ("score before fit", lambda: G(K, covariance_type=variant).score(X), [X]),
        ("predict with other n_features", lambda: fitted.predict(np.hstack([X, X])), [X]),
        ("score_samples with other n_features", lambda: fitted.score_samples(X[:, :1]), [X]),
    ]


def emref_edge(variant):
    """(name, call returning a fitted estimator) for inputs that must work."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 1.0, size=(40, 2)) for c in (-5.0, 0.0, 5.0)])
    G = GaussianMixture
    return [
        ("integer X", lambda: G(3, covariance_type=variant, random_state=0).fit(np.rint(X).astype(np.int64))),
        ("float32 X", lambda: G(3, covariance_type=variant, random_state=0).fit(X.astype(np.float32))),
        ("list X", lambda: G(3, covariance_type=variant, random_state=0).fit(X.tolist())),
        ("one feature", lambda: G(3, covariance_type=variant, random_state=0).fit(X[:, :1])),
        ("one component", lambda: G(1, covariance_type=variant, random_state=0).fit(X)),
        ("all-identical points", lambda: G(3, covariance_type=variant, random_state=0).fit(np.full((50, 2), 3.0))),
        ("zero weights on some rows", lambda: G(3, covariance_type=variant, random_state=0).fit(
            X, sample_weight=np.r_[np.zeros(10), np.ones(len(X) - 10)])),
    ]


def emref_plot(ax, variant, truth, params, X, z):
    """Data (first two features) with true (dashed) and fitted (solid) 2-sigma ellipses."""
    K = len(truth["weights"])
    Y = X[:, :2] if X.shape[1] > 1 else np.column_stack([X[:, 0], np.zeros(len(X))])
    ax.scatter(Y[:, 0], Y[:, 1], c=z, s=4, cmap="tab10", alpha=0.5, linewidths=0)
    t = np.linspace(0, 2 * np.pi, 100)
    circle = np.stack([np.cos(t), np.sin(t)])
    for p, style in ((truth, "--"), (params, "-")):
        covs = _full_covariances(variant, p["covariances"], K, X.shape[1])
        for k in range(K):
            c = covs[k][:2, :2] if covs.shape[-1] > 1 else np.diag([covs[k][0, 0], 1e-12])
            m = p["means"][k][:2] if len(p["means"][k]) > 1 else np.r_[p["means"][k], 0.0]
            vals, vecs = np.linalg.eigh(c)
            pts = m[:, None] + 2 * vecs @ (np.sqrt(np.maximum(vals, 0))[:, None] * circle)
            ax.plot(pts[0], pts[1], style, color="k", lw=1)
    ax.set_title("data, true (--) and fitted (-) 2σ ellipses")


def _ari(a, b):
    """Adjusted Rand index of two labelings (Hubert & Arabie 1985)."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    comb = lambda x: (x * (x - 1) / 2).sum()
    index, rows, cols = comb(table), comb(table.sum(1)), comb(table.sum(0))
    expected = rows * cols / comb(np.array([len(a)]))
    top = 0.5 * (rows + cols)
    return 1.0 if top == expected else (index - expected) / (top - expected)


def _blobs3(seed):
    """The tutorial's demo: 1,000 points in 3 isotropic 2-D blobs, cluster_std 1.0.

    Centres uniform in [-10, 10]^2 and near-equal counts, as sklearn's
    make_blobs draws them. Passes when the fitted ARI reaches that of the
    Bayes classifier under the true parameters, less 1/sqrt(n) (the fitted
    decision boundary differs from the true one by O(1/sqrt(n))).
    """
    rng = np.random.default_rng(seed)
    n, K = 1000, 3
    centers = rng.uniform(-10, 10, size=(K, 2))
    counts = np.full(K, n // K); counts[: n % K] += 1
    z = np.repeat(np.arange(K), counts)
    X = centers[z] + rng.standard_normal((n, 2))
    perm = rng.permutation(n)
    X, z = X[perm], z[perm]
    truth = {"weights": counts / n, "means": centers, "covariances": np.ones(K)}
    est = GaussianMixture(K, covariance_type="full", random_state=seed).fit(X)
    bayes = _with_params("spherical", truth).predict(X)
    ari, bayes_ari = _ari(z, est.predict(X)), _ari(z, bayes)
    full_truth = {**truth, "covariances": np.stack([np.eye(2)] * K)}
    return {
        "variant": "full", "truth": full_truth, "X": X, "z": z, "estimator": est,
        "metrics": {"ari": ari, "bayes_ari": bayes_ari},
        "passed": ari >= bayes_ari - 1 / np.sqrt(n),
        "detail": f"ARI {ari:.3f} (Bayes classifier {bayes_ari:.3f})",
    }


def emref_scenarios():
    return {"blobs3": _blobs3}
