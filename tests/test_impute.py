"""Tests for models/impute.py (EMImputer: EM for the multivariate normal with missing values).

The generic checks (monotone history, recovery, consistency, the module's own
oracles, thread-count determinism, the emref_hostile / emref_edge lists, the
tutorial scenario on seeds 0-2) are run by the harness; these tests cover
what is particular to the imputer:

1. agreement with a plain per-row numpy EM over several iterations (MCAR and
   MAR, with and without the ridge), and history_ equal to the numpy
   objective at every step;
2. the EM fixed point is the maximiser of the observed-data log-likelihood:
   scipy.optimize (BFGS, analytic gradient) over the mean and a Cholesky
   factor with log diagonal reaches the same point;
3. the route choice: both routes and scipy against exact rational
   arithmetic on ill-conditioned covariances; the route and the fall
   detector independent of the units of the columns;
4. the tutorial's naive plug-in (fill with conditional means, take the
   covariance of the filled data) shrinks the variances of missing-heavy
   columns while EM does not (with a comparison plot);
5. missing at random: EM's means are unbiased where the observed column means
   are not;
6. transform, sample (multiple imputation: the draws' mean and covariance
   against the conditional distribution, on both routes), score, objective;
7. hostile input (each refusal for its own reason), validation order, no
   mutation, failed refits, fully missing rows, rank-deficient data with the
   ridge, ridge = 0 on collinear data, the round-off rule on large collinear
   data, tol=0, max_iter, warnings, determinism, equivariance, extreme and
   mixed column scales, the work memory per chunk;
8. hypothesis fuzzing of the log-likelihood and conditional-mean kernels
   against scipy / numpy;
9. the tutorial scenario on seeds 0-9, and its failure with the plug-in model.

Tolerances are of two kinds only:

* round-off: the same quantity computed in a different order (numba kernels
  against numpy/scipy), 1e-10 relative to the magnitude compared (the
  observed agreement is 1e-15 to 1e-13 on well-conditioned covariances);
  against exact rational arithmetic, a stated multiple of eps cond(Sigma);
  against scipy.optimize, the optimiser's own stopping accuracy
  (||gradient|| / smallest Hessian eigenvalue, computed in the test);
* sampling error: k standard errors of the quantity (k = 5 unless stated),
  the standard error computed from the model itself.
"""

import importlib.util
import math
import os
import shutil
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

import models.impute as impute
from harness.checks import assert_monotone, assert_one_sentence
from models.impute import ConvergenceWarning, EMImputer, NotFittedError

TUTORIAL_COV = np.array([[1.0, 0.5, 0.3], [0.5, 1.0, 0.2], [0.3, 0.2, 1.0]])
EPS = np.finfo(float).eps


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_numba_thread():
    """Run this module on one numba thread (bit-identity across thread counts
    is the harness's business), then restore the count."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def data(seed, n=300, D=4, rate=0.25, mar=False, cov=None, mean=None):
    """(X with NaN, complete Z, mean, cov): rows of N(mean, cov), cells MCAR with
    probability rate, or (mar=True) emref_sample's MAR mechanism."""
    rng = np.random.default_rng(seed)
    if cov is None:
        truth = impute.emref_truth("mcar", rng, n_features=D)
        mean, cov = truth["mean"], truth["covariance"]
    D = len(cov)
    mean = np.zeros(D) if mean is None else mean
    if mar:
        X, Z = impute.emref_sample("mar", {"mean": mean, "covariance": cov}, n, rng)
    else:
        Z = mean + rng.standard_normal((n, D)) @ np.linalg.cholesky(cov).T
        X = Z.copy()
        X[rng.random(Z.shape) < rate] = np.nan
    return X, Z, mean, cov


def fit(est, X):
    """Fit, ignoring ConvergenceWarning only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X)


def at(mean, cov, **kw):
    """An estimator holding the given parameters, as after fit."""
    est = EMImputer(**kw)
    est.mean_ = np.asarray(mean, dtype=np.float64)
    est.covariance_ = np.asarray(cov, dtype=np.float64)
    est.n_features_in_ = len(est.mean_)
    return est


def prior_scale(X):
    """s^2 of the module docstring (observed variance, else (fewer than two distinct
    observed values) their value squared, else 1)."""
    var, msq = np.nanvar(X, axis=0), np.nanmean(X * X, axis=0)
    distinct = np.nanmax(X, axis=0) > np.nanmin(X, axis=0)
    return np.where(distinct, var, np.where(msq > 0, msq, 1.0))


def numpy_e_step(X, mean, cov):
    """Plain per-row E-step: (per-row log-likelihoods, filled rows, conditional covariances)."""
    n, D = X.shape
    ll, fill, C = np.zeros(n), X.copy(), np.zeros((n, D, D))
    for i in range(n):
        m = np.isnan(X[i])
        o = ~m
        if not o.any():
            fill[i], C[i] = mean, cov
            continue
        Soo, Smo = cov[np.ix_(o, o)], cov[np.ix_(m, o)]
        r = X[i, o] - mean[o]
        ll[i] = multivariate_normal(mean[o], Soo).logpdf(X[i, o])
        fill[i, m] = mean[m] + Smo @ np.linalg.solve(Soo, r)
        C[i][np.ix_(m, m)] = cov[np.ix_(m, m)] - Smo @ np.linalg.solve(Soo, Smo.T)
    return ll, fill, C


def numpy_em(X, mean, cov, n_iter, ridge):
    """Plain per-row EM from (mean, cov): (mean, cov, history of the mean log-posterior)."""
    n = len(X)
    lam = ridge * prior_scale(X)
    seen = ~np.isnan(X).all(axis=1)
    history = []
    for it in range(n_iter + 1):
        ll, fill, C = numpy_e_step(X, mean, cov)
        history.append((ll.sum() - 0.5 * np.sum(lam * np.diag(np.linalg.inv(cov)))) / n)
        if it == n_iter:
            break
        k = seen.sum()
        mean = fill[seen].sum(axis=0) / k
        R = fill[seen] - mean
        cov = (R.T @ R + C[seen].sum(axis=0) + np.diag(lam)) / k
    return mean, cov, np.array(history)


def plug_in_model():
    """The broken model tests/broken_models/impute_plugin.py (an M-step without the C_i)."""
    spec = importlib.util.spec_from_file_location(
        "impute_plugin_test", Path(__file__).parent / "broken_models" / "impute_plugin.py")
    broken = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broken)
    return broken


def cond_corr_1(cov):
    """1-norm condition number of the correlation matrix of cov, in plain numpy."""
    sd = np.sqrt(np.diag(cov))
    R = cov / np.outer(sd, sd)
    return np.linalg.norm(R, 1) * np.linalg.norm(np.linalg.inv(R), 1)


def rel(a, b):
    """Normwise relative difference max |a - b| / max |b|."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), np.finfo(float).tiny))


def conditional_means(X, mean, cov):
    """Plain numpy conditional means, pattern by pattern (np.linalg.solve)."""
    M = np.isnan(X)
    fill = X.copy()
    patterns, inv = np.unique(M, axis=0, return_inverse=True)
    for p, m in enumerate(patterns):
        rows = np.flatnonzero(inv.ravel() == p)
        o = ~m
        if not m.any():
            continue
        if not o.any():
            fill[rows] = mean
            continue
        B = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)])
        fill[np.ix_(rows, m)] = mean[m] + (X[np.ix_(rows, o)] - mean[o]) @ B
    return fill


def plug_in(X, n_iter=500):
    """The tutorial's naive algorithm: fill the missing cells with their conditional
    means under the current parameters, then take the mean and covariance (ddof 0)
    of the filled-in data, forgetting the conditional covariances; repeat."""
    M = np.isnan(X)
    mean = np.nanmean(X, axis=0)
    cov = np.diag(np.nanvar(X, axis=0))
    for _ in range(n_iter):
        fill = conditional_means(X, mean, cov)
        new_mean = fill.mean(axis=0)
        R = fill - new_mean
        new_cov = R.T @ R / len(X)
        done = np.abs(new_cov - cov).max() < 1e-12 and np.abs(new_mean - mean).max() < 1e-12
        mean, cov = new_mean, new_cov
        if done:
            break
    return mean, cov, M


# ----------------------------------------------------------------------------
# 1. agreement with a plain numpy EM
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mar", [False, True], ids=["mcar", "mar"])
@pytest.mark.parametrize("ridge", [0.0, 1e-6, 0.5])
def test_agrees_with_plain_numpy_em_over_several_iterations(mar, ridge):
    X, _, _, _ = data(1, n=250, D=5, mar=mar)
    X[7] = np.nan                                   # a row with nothing observed
    est = EMImputer(max_iter=6, tol=0.0, ridge=ridge).fit(X)
    mean0, cov0 = np.nanmean(X, axis=0), np.diag(prior_scale(X))
    mean, cov, history = numpy_em(X, mean0, cov0, 6, ridge)
    assert est.n_iter_ == 6 and len(est.history_) == 7
    assert rel(est.mean_, mean) < 1e-10
    assert rel(est.covariance_, cov) < 1e-10
    assert rel(est.history_, history) < 1e-10
    assert_monotone(est.history_)


def test_kernel_outputs_agree_with_plain_numpy_at_the_fitted_parameters():
    X, _, _, _ = data(2, n=200, D=5, rate=0.4)
    X[3] = np.nan
    est = fit(EMImputer(max_iter=20), X)
    ll, fill, C = numpy_e_step(X, est.mean_, est.covariance_)
    assert rel(est.score_samples(X), ll) < 1e-10
    assert rel(est.transform(X), fill) < 1e-10
    assert rel(est._conditional_covariances(X), C) < 1e-10
    n_obs, S1, S2, total = est._sufficient_statistics(X)
    seen = ~np.isnan(X).all(axis=1)
    assert n_obs == seen.sum()
    assert rel(S1, fill[seen].sum(axis=0)) < 1e-10
    assert rel(S2, fill[seen].T @ fill[seen] + C[seen].sum(axis=0)) < 1e-10
    assert abs(total - ll.sum()) < 1e-10 * np.abs(ll).sum()
    assert np.allclose(est.precision_ @ est.covariance_, np.eye(5), rtol=0, atol=1e-12)


def test_history_is_the_objective_at_the_returned_parameters_bit_for_bit():
    X, _, _, _ = data(3, n=3000, D=4)                   # 3 chunks
    est = fit(EMImputer(), X)
    assert est.history_[-1] == est.objective(X)
    lam = est.ridge * prior_scale(X)
    by_rows = (est.score_samples(X).sum() - 0.5 * np.sum(lam * np.diag(np.linalg.inv(est.covariance_)))) / len(X)
    assert abs(est.history_[-1] - by_rows) < 1e-12 * abs(by_rows)
    assert est.score(X) == pytest.approx(est.score_samples(X).mean(), rel=1e-15)
    # two iterations, where one iteration late would differ
    short = EMImputer(max_iter=2, tol=0.0).fit(X)
    assert short.history_[-1] == short.objective(X)


# ----------------------------------------------------------------------------
# 2. the fixed point is the maximum of the observed-data likelihood
# ----------------------------------------------------------------------------


def _negloglik(theta, X, groups):
    """-(1/n) l(mu, Sigma) and its analytic gradient, theta = (mu, the lower
    triangle of a Cholesky factor of Sigma with its diagonal as logarithms)."""
    n, D = X.shape
    mu = theta[:D]
    il = np.tril_indices(D)
    L = np.zeros((D, D))
    L[il] = theta[D:]
    dg = np.arange(D)
    L[dg, dg] = np.exp(L[dg, dg])
    S = L @ L.T
    f, gmu, GS = 0.0, np.zeros(D), np.zeros((D, D))
    for o, rows in groups:
        Soo = S[np.ix_(o, o)]
        R = X[np.ix_(rows, o)] - mu[o]
        Si = np.linalg.inv(Soo)
        A = R @ Si
        k = len(rows)
        f += 0.5 * (k * (o.sum() * math.log(2 * math.pi) + np.linalg.slogdet(Soo)[1]) + np.sum(A * R))
        gmu[o] -= A.sum(axis=0)
        GS[np.ix_(o, o)] += 0.5 * (k * Si - A.T @ A)         # d f / d Sigma_oo
    gL = (2 * GS @ L)[il]                                     # d f / d L (GS symmetric)
    diag = (il[0] == il[1])
    gL[diag] *= L[dg, dg]                                     # d / d log L_jj
    return f / n, np.r_[gmu, gL] / n


def _theta(mean, cov):
    L = np.linalg.cholesky(cov)
    L[np.diag_indices_from(L)] = np.log(np.diag(L))
    return np.r_[mean, L[np.tril_indices(len(mean))]]


def test_em_fixed_point_is_the_maximum_found_by_scipy_optimize():
    X, _, _, _ = data(3, n=300, D=3, rate=0.25)
    M = np.isnan(X)
    pats, inv = np.unique(M, axis=0, return_inverse=True)
    groups = [(~m, np.flatnonzero(inv.ravel() == p)) for p, m in enumerate(pats) if (~m).any()]
    em = EMImputer(ridge=0.0, tol=0.0, max_iter=3000).fit(X)
    theta_em = _theta(em.mean_, em.covariance_)
    # EM's fixed point is stationary to round-off (the mean log-likelihood is ~4 in size)
    assert np.abs(_negloglik(theta_em, X, groups)[1]).max() < 1e-12
    res = minimize(_negloglik, np.zeros(len(theta_em)), args=(X, groups), jac=True, method="BFGS",
                   options={"gtol": 1e-11, "maxiter": 10_000})
    # The optimiser stops at gradient g; near the maximum theta_opt - theta* ~ H^{-1} g,
    # so |theta_opt - theta*| <= ||g|| / lambda_min(H) (x2 for the quadratic model),
    # with H by central differences of the analytic gradient.
    h, k = 1e-5, len(res.x)
    H = np.column_stack([(_negloglik(res.x + h * e, X, groups)[1] - _negloglik(res.x - h * e, X, groups)[1]) / (2 * h)
                         for e in np.eye(k)])
    lam_min = np.linalg.eigvalsh(0.5 * (H + H.T)).min()
    assert lam_min > 0
    bound = 2 * np.linalg.norm(res.jac) / lam_min
    assert bound < 1e-6                  # the optimiser did converge (measured: ~2e-8)
    assert np.abs(theta_em - res.x).max() <= bound
    assert -res.fun == pytest.approx(em.history_[-1], abs=1e-12)


# ----------------------------------------------------------------------------
# 3. the route choice against exact rational arithmetic
# ----------------------------------------------------------------------------


def _exact_row(x, mean, cov):
    """(conditional mean, conditional covariance, log-likelihood) of one row in
    exact rational arithmetic (the float inputs taken exactly), rounded at the end."""
    D = len(x)
    o = [d for d in range(D) if not math.isnan(x[d])]
    m = [d for d in range(D) if math.isnan(x[d])]
    F = lambda v: Fraction(float(v))   # noqa: E731
    A = [[F(cov[a, b]) for b in o] + [F(x[a]) - F(mean[a])] + [F(cov[a, b]) for b in m] for a in o]
    det = Fraction(1)
    for c in range(len(o)):                                  # Gauss-Jordan, no pivoting needed (SPD)
        det *= A[c][c]
        A[c] = [v / A[c][c] for v in A[c]]
        for r in range(len(o)):
            if r != c and A[r][c] != 0:
                f = A[r][c]
                A[r] = [a - f * b for a, b in zip(A[r], A[c])]
    alpha = [row[len(o)] for row in A]                       # Sigma_oo^{-1} r
    G = [row[len(o) + 1:] for row in A]                      # Sigma_oo^{-1} Sigma_om
    maha = sum((F(x[a]) - F(mean[a])) * alpha[k] for k, a in enumerate(o))
    fill = np.array(x, dtype=float)
    C = np.zeros((D, D))
    for j, b in enumerate(m):
        fill[b] = float(F(mean[b]) + sum(F(cov[a, b]) * alpha[k] for k, a in enumerate(o)))
        for l, c in enumerate(m):
            C[b, c] = float(F(cov[b, c]) - sum(F(cov[a, b]) * G[k][l] for k, a in enumerate(o)))
    logdet = math.log(det.numerator) - math.log(det.denominator)
    return fill, C, -0.5 * (len(o) * math.log(2 * math.pi) + logdet + float(maha))


def _ill_conditioned(seed, log_cond, D=6, n=40):
    rng = np.random.default_rng(seed)
    Qm, _ = np.linalg.qr(rng.standard_normal((D, D)))
    cov = (Qm * 10.0 ** np.linspace(0, -log_cond, D)) @ Qm.T
    cov = 0.5 * (cov + cov.T)
    mean = rng.normal(size=D)
    X = mean + rng.standard_normal((n, D)) @ np.linalg.cholesky(cov).T
    for i, k in enumerate(rng.integers(1, D, size=n)):       # 1 .. D-1 missing cells
        X[i, rng.choice(D, k, replace=False)] = np.nan
    return X, mean, cov


@pytest.mark.parametrize("log_cond", [4, 8])
def test_routes_against_exact_rational_arithmetic(log_cond):
    """The documented route choice: the direct route stays near eps sqrt(cond); the
    precision route loses ~1e-2 eps cond and is used only while cond_1 <= 1e6."""
    X, mean, cov = _ill_conditioned(log_cond, log_cond)
    exact = [_exact_row(x, mean, cov) for x in X]
    fill = np.array([e[0] for e in exact])
    C = np.array([e[1] for e in exact])
    ll = np.array([e[2] for e in exact])
    M = np.isnan(X)
    eps, cond = np.finfo(float).eps, 10.0 ** log_cond
    errors = {}
    for name, route in (("auto", 0), ("precision", 1), ("direct", 2)):
        est = at(mean, cov)
        est._route = route
        errors[name] = (np.abs(est.transform(X) - fill)[M].max() / np.abs(fill[M]).max(),
                        rel(est._conditional_covariances(X), C), rel(est.score_samples(X), ll))
    # bounds: measured errors (in parentheses) times about 10
    assert max(errors["direct"][:2]) < 100 * eps * math.sqrt(cond)          # (4e-14 at 1e8)
    assert max(errors["precision"][:2]) < 0.1 * eps * cond                  # (1e-10 at 1e8, 8e-14 at 1e4)
    assert max(errors["auto"][:2]) < 1e-12                                  # the switch keeps it small
    for name in errors:                                                     # (3e-11 at 1e8, like scipy)
        assert errors[name][2] < 0.1 * eps * cond
    if log_cond == 8:
        # above the switch, 'auto' is the direct route
        assert errors["auto"] == errors["direct"]


# ----------------------------------------------------------------------------
# 4. the tutorial's plug-in covariance is biased; EM's is not
# ----------------------------------------------------------------------------


def test_plug_in_covariance_is_biased_low_while_em_is_not(tmp_path):
    """Column 2 is missing in half the rows. The plug-in variance of column 2 is
    about (1 - 0.5) Var + 0.5 (Var - E C_22) = 1 - 0.5 * 0.9 ~ 0.55 here; EM's
    estimate is unbiased with standard error ~ sqrt(2 / n_obs) (1,000 observed
    values: 0.045). Each seed: EM within 5 standard errors of the truth, the
    plug-in more than 5 below."""
    n, seeds = 2000, range(6)
    em_var, naive_var = [], []
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        Z = rng.standard_normal((n, 3)) @ np.linalg.cholesky(TUTORIAL_COV).T
        X = Z.copy()
        X[rng.random(n) < 0.5, 2] = np.nan
        X[:, :2][rng.random((n, 2)) < 0.1] = np.nan
        em = EMImputer(ridge=0.0).fit(X)
        _, naive_cov, _ = plug_in(X)
        se = math.sqrt(2.0 / (~np.isnan(X[:, 2])).sum())
        assert abs(em.covariance_[2, 2] - 1.0) < 5 * se
        assert naive_cov[2, 2] < 1.0 - 5 * se
        em_var.append(np.diag(em.covariance_))
        naive_var.append(np.diag(naive_cov))
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for k, (vals, label) in enumerate(((np.array(em_var), "EM"), (np.array(naive_var), "plug-in"))):
        for d in range(3):
            ax.scatter(np.full(len(vals), d + 0.15 * (2 * k - 1)), vals[:, d], color=f"C{k}", s=14,
                       label=label if d == 0 else None)
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="true variance")
    ax.set_xticks(range(3), ["col 0 (10% missing)", "col 1 (10%)", "col 2 (50%)"])
    ax.set_ylabel("estimated variance")
    ax.legend(fontsize=8)
    path = tmp_path / "plug_in_vs_em.png"
    fig.savefig(path, dpi=80)
    assert path.stat().st_size > 5_000


def test_the_broken_plug_in_model_warns_about_falls():
    broken = plug_in_model()
    X, _, _, _ = data(4, n=500)
    with pytest.warns(RuntimeWarning, match="fell by more than round-off"):
        est = broken.EMImputer(max_iter=30, tol=1e-8).fit(X)
    # its steps fall until they are within round-off of its own fixed point;
    # no fall beyond round-off is taken as convergence
    if est.converged_:
        assert est.history_[-1] - est.history_[-2] > -1e-10 * abs(est.history_[-1])


def test_route_and_fall_detection_do_not_depend_on_the_units():
    """kappa (route switch, fall threshold) is the condition number of the correlation
    matrix: columns rescaled by (1e-6, 1, 1e4, 3) keep it (15.5 here, while cond(Sigma)
    becomes ~1e20), so every pattern with m <= o still takes the precision route, and the
    plug-in model's falls are still reported."""
    X, _, mean, cov = data(4, n=500)
    a = np.array([1e-6, 1.0, 1e4, 3.0])
    k_unit, k_scaled = impute._factor(cov)[4], impute._factor(cov * np.outer(a, a))[4]
    assert k_unit == pytest.approx(cond_corr_1(cov), rel=1e-10)
    assert k_scaled == pytest.approx(k_unit, rel=1e-10) and k_unit < 1e6
    # rows with one missing cell (m = 1 <= o = 3): the documented choice is the precision route
    rows = X[np.isnan(X).sum(axis=1) <= 1]
    for scale in (np.ones(4), a):
        out = {}
        for route in (0, 1, 2):
            est = at(mean * scale, cov * np.outer(scale, scale))
            est._route = route
            out[route] = est.transform(rows * scale)
        assert np.array_equal(out[0], out[1])                     # auto = precision, bit for bit
        assert not np.array_equal(out[0], out[2])
    broken = plug_in_model()
    for scale in (np.ones(4), a):
        with pytest.warns(RuntimeWarning, match="fell by more than round-off"):
            broken.EMImputer(max_iter=30, tol=1e-8).fit(X * scale)


# ----------------------------------------------------------------------------
# 5. missing at random
# ----------------------------------------------------------------------------


def test_mar_means_are_unbiased_where_observed_means_are_not():
    """emref_sample's MAR mechanism: column j >= 1 goes missing with a probability
    depending on column 0. With n = 20,000 the standard error of a mean is about
    sd / sqrt(n_obs) < 0.02 sd; EM must be within 5 of them, and for some column
    the observed-values mean is off by more than 10."""
    cov = np.array([[1.0, 0.8, -0.6, 0.5], [0.8, 1.0, -0.4, 0.3], [-0.6, -0.4, 1.0, -0.2], [0.5, 0.3, -0.2, 1.0]])
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    X, _, _, _ = data(5, n=20_000, mar=True, cov=cov, mean=mean)
    assert not np.isnan(X[:, 0]).any()
    est = EMImputer().fit(X)
    se = np.sqrt(np.diag(cov) / (~np.isnan(X)).sum(axis=0))
    assert np.all(np.abs(est.mean_ - mean) < 5 * se)
    assert np.max(np.abs(np.nanmean(X, axis=0) - mean) / se) > 10
    # and the covariance: entries within 5 standard errors sqrt((s_ii s_jj + s_ij^2) / n_obs)
    n_obs = np.minimum.outer((~np.isnan(X)).sum(0), (~np.isnan(X)).sum(0))
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n_obs)
    assert np.all(np.abs(est.covariance_ - cov) < 5 * se_cov)
    assert_monotone(est.history_)


# ----------------------------------------------------------------------------
# 6. transform, sample, score
# ----------------------------------------------------------------------------


def test_transform_fills_only_missing_cells_and_fit_transform_matches():
    X, _, _, _ = data(6, n=400, rate=0.3)
    X[[5, 9]] = np.nan
    est = EMImputer()
    T1 = est.fit_transform(X)
    T2 = est.transform(X)
    M = np.isnan(X)
    assert np.array_equal(T1, T2) and T1.dtype == np.float64 and not np.isnan(T1).any()
    assert np.array_equal(T1[~M], X[~M])                         # observed cells bit for bit
    assert np.array_equal(T1[5], est.mean_) and np.array_equal(T1[9], est.mean_)
    assert rel(T1, numpy_e_step(X, est.mean_, est.covariance_)[1]) < 1e-10
    # a new X with a column entirely missing is fine for transform (conditional means)
    Y = X[:50].copy()
    Y[:, 1] = np.nan
    assert rel(est.transform(Y), numpy_e_step(Y, est.mean_, est.covariance_)[1]) < 1e-10


@pytest.mark.parametrize("ill", [False, True], ids=["precision-and-direct", "direct-only"])
def test_draws_follow_the_conditional_distribution(ill):
    """Each row repeated 4,000 times: the draws' mean per missing cell within 5
    standard errors sqrt(C_jj / k) of the conditional mean, their covariance
    entries within 5 sqrt((C_jj C_ll + C_jl^2) / k) of C. Rows with m = 1 and
    m = 2 <= o (precision route; with m = 2, F^{-T} z and the wrong F^{-1} z
    differ: by about 30 standard errors for this covariance), m > o (direct
    route) and nothing observed; 'ill' makes kappa > 1e6 so every pattern takes
    the direct route."""
    rng = np.random.default_rng(1)
    D = 5
    Qm, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = 10.0 ** np.array([0, -2, -4, -7, -9]) if ill else np.array([4.0, 1.0, 0.5, 0.2, 0.1])
    cov = (Qm * lam) @ Qm.T
    cov = 0.5 * (cov + cov.T)
    assert (impute._factor(cov)[4] > 1e6) == ill
    mean = rng.normal(size=D)
    est = at(mean, cov, random_state=11)
    rows = np.array([[0.3, np.nan, -1.0, 0.2, 0.1], [0.3, np.nan, -1.0, np.nan, 0.1],
                     [np.nan, np.nan, np.nan, 0.5, np.nan], [np.nan] * D])
    k = 4000
    X = np.repeat(rows, k, axis=0)
    before = X.copy()
    draws = est.sample(X, n_draws=1)[0]
    assert np.array_equal(X, before, equal_nan=True)
    fill = est.transform(rows)
    C = est._conditional_covariances(rows)
    for r in range(len(rows)):
        m = np.isnan(rows[r])
        block = draws[r * k:(r + 1) * k]
        assert np.array_equal(block[:, ~m], np.broadcast_to(rows[r, ~m], (k, (~m).sum())))
        d = block[:, m]
        Cm = C[r][np.ix_(m, m)]
        sd = np.sqrt(np.diag(Cm))
        assert np.all(np.abs(d.mean(axis=0) - fill[r, m]) < 5 * sd / math.sqrt(k))
        emp = np.cov(d, rowvar=False, bias=True).reshape(Cm.shape)
        se = np.sqrt((np.outer(np.diag(Cm), np.diag(Cm)) + Cm ** 2) / k)
        assert np.all(np.abs(emp - Cm) < 5 * se)


def test_sample_is_reproducible_and_never_uses_the_global_seed():
    X, _, _, _ = data(8, n=200)
    est = EMImputer(random_state=3).fit(X)
    np.random.seed(0)
    a = est.sample(X, n_draws=3)
    np.random.seed(1)
    b = est.sample(X, n_draws=3)
    assert np.array_equal(a, b) and a.shape == (3,) + X.shape
    assert np.array_equal(est.sample(X, 2, random_state=5), est.sample(X, 2, random_state=5))
    assert not np.array_equal(est.sample(X, 2, random_state=5), est.sample(X, 2, random_state=6))
    assert np.array_equal(est.sample(X, 1, random_state=np.random.default_rng(9)),
                          est.sample(X, 1, random_state=9))
    M = np.isnan(X)
    assert np.array_equal(a[:, ~M], np.broadcast_to(X[~M], (3, (~M).sum())))
    assert not np.isnan(a).any()


# ----------------------------------------------------------------------------
# 7. input, edge cases, contract
# ----------------------------------------------------------------------------


# each emref_hostile case and a phrase its message must contain, so that no case
# passes by raising for another reason (a new case needs an entry here)
HOSTILE_PHRASES = {
    "X with infinity": "contains infinity",
    "X beyond 1e150": "beyond the 1e+150",
    "X 1-D": "got 1 dimension(s)",
    "X 3-D": "got 3 dimension(s)",
    "X with no rows": "is empty; got shape (0, 4)",
    "X with no columns": "is empty; got shape (5, 0)",
    "non-numeric X": "not strings",
    "complex X": "real-valued",
    "datetime X": "dates or time spans",
    "a column of spread below 1e-150": "Column 0 of X has a spread of only",
    "no observed value at all": "no observed value at all",
    "a column with no observed value": "Column 1 of X has no observed value",
    "ridge = 0 with fewer rows than columns": "use ridge > 0",
    "ridge = 0 with an exactly collinear column": "collinear",
    "negative ridge": "ridge must be a non-negative number; got -1.0",
    "infinite ridge": "ridge must be a non-negative number; got inf",
    "ridge above 1e300": "ridge must be at most 1e+300",
    "ridge as a string": "ridge must be a non-negative number; got '1e-6'",
    "negative tol": "tol must be a non-negative number; got -1.0",
    "NaN tol": "tol must be a non-negative number; got nan",
    "negative max_iter": "max_iter must be an integer >= 0; got -1",
    "fractional max_iter": "max_iter must be an integer >= 0; got 2.5",
    "mean_init of the wrong length": "mean_init must have shape (4,)",
    "mean_init with NaN": "mean_init contains NaN",
    "covariance_init not symmetric": "covariance_init must be symmetric",
    "covariance_init not positive definite": "covariance_init must be positive definite",
    "transform before fit": "not fitted yet",
    "sample before fit": "not fitted yet",
    "transform with other n_features": "X has 8 features, but EMImputer was fitted with 4 features",
    "score_samples with other n_features": "X has 1 feature, but EMImputer was fitted with 4 features",
    "sample with other n_features": "X has 1 feature, but EMImputer was fitted with 4 features",
    "sample with n_draws = 0": "n_draws must be an integer >= 1",
    "negative random_state": "random_state must be a non-negative integer",
}


def test_hostile_inputs_raise_one_sentence_errors_and_leave_arrays_unchanged():
    X, _, _, _ = data(9, n=120)
    cases = impute.emref_hostile("mcar", X)
    assert sorted(name for name, _, _ in cases) == sorted(HOSTILE_PHRASES)
    for name, call, arrays in cases:
        before = [a.copy() for a in arrays]
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert_one_sentence(str(info.value))
        assert HOSTILE_PHRASES[name] in str(info.value), (name, str(info.value))
        assert not type(info.value).__module__.startswith("numba"), name
        for a, b in zip(arrays, before):
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), name


def test_more_hostile_inputs():
    X, _, _, _ = data(10, n=60)
    fitted = EMImputer().fit(X)
    import scipy.sparse as sp
    cases = [
        (lambda: EMImputer().fit(sp.csr_matrix(np.nan_to_num(X))), TypeError),
        (lambda: EMImputer().fit([[1.0, "2"], [3.0, 4.0]]), ValueError),
        (lambda: EMImputer().fit(np.array([[1.0, object()], [2.0, 3.0]], dtype=object)), ValueError),
        (lambda: EMImputer(max_iter=True).fit(X), ValueError),
        (lambda: EMImputer(verbose=-1).fit(X), ValueError),
        (lambda: EMImputer(random_state=True).fit(X), ValueError),
        (lambda: EMImputer(covariance_init=np.eye(3)).fit(X), ValueError),
        (lambda: EMImputer(mean_init=["a"] * 4).fit(X), ValueError),
        (lambda: fitted.sample(X, n_draws=1.5), ValueError),
        (lambda: fitted.sample(X, random_state="x"), ValueError),
        (lambda: EMImputer().score(X), NotFittedError),
        (lambda: EMImputer().set_params(banana=1), ValueError),
    ]
    for call, kind in cases:
        with pytest.raises(kind) as info:
            call()
        assert_one_sentence(str(info.value))


def test_validation_order_and_messages():
    """objective checks ridge, and sample checks n_draws and random_state, before reading X;
    feature counts are singular or plural as they should be; dates are refused."""
    X, _, _, _ = data(10, n=60)
    est = EMImputer().fit(X)
    not_an_array = [["a"]]
    with pytest.raises(ValueError, match="random_state must be"):
        est.sample(not_an_array, random_state=-1)
    with pytest.raises(ValueError, match="n_draws must be"):
        est.sample(not_an_array, n_draws=0)
    est.set_params(ridge=-1.0)
    with pytest.raises(ValueError, match="ridge must be a non-negative number"):
        est.objective(not_an_array)
    est.set_params(ridge=1e-6)
    with pytest.raises(ValueError, match=r"^X has 1 feature, but EMImputer was fitted with 4 features\.$"):
        est.transform(X[:, :1])
    one = EMImputer().fit(X[:, :1])
    with pytest.raises(ValueError, match=r"^X has 2 features, but EMImputer was fitted with 1 feature\.$"):
        one.transform(X[:, :2])
    for dates in (np.full((4, 2), np.datetime64("2021-03-04")), np.full((4, 2), np.timedelta64(3, "s"))):
        with pytest.raises(ValueError, match="dates or time spans") as info:
            EMImputer().fit(dates)
        assert_one_sentence(str(info.value))


def test_a_failed_refit_leaves_the_previous_fit_intact():
    """A fit that raises (here: ridge = 0 on collinear columns) changes no fitted attribute."""
    X, _, _, _ = data(11, n=300)
    est = EMImputer().fit(X)
    before = {k: np.copy(v) for k, v in vars(est).items() if k.endswith("_")}
    collinear = np.column_stack([X, X[:, 0] + X[:, 1]])
    with pytest.raises(ValueError, match="collinear"):
        est.set_params(ridge=0.0).fit(collinear)
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert after.keys() == before.keys()
    for k in before:
        assert np.array_equal(after[k], before[k]), k


def test_inputs_are_never_mutated():
    X, _, _, _ = data(11, n=150, rate=0.4)
    X[0] = np.nan
    before = X.copy()
    est = EMImputer(random_state=0)
    est.fit(X)
    est.transform(X)
    est.fit_transform(X)
    est.sample(X, 2)
    est.score_samples(X)
    est.objective(X)
    assert np.array_equal(X, before, equal_nan=True)
    # a float64 view is not written either
    Xf = np.asfortranarray(X)
    est.fit(Xf)
    assert np.array_equal(Xf, before, equal_nan=True)


def test_fully_missing_rows():
    X, _, _, _ = data(12, n=200)
    Y = X.copy()
    Y[[0, 50, 199]] = np.nan
    est = EMImputer().fit(Y)
    ref = EMImputer().fit(np.delete(Y, [0, 50, 199], axis=0))
    # they carry no information: the same estimate as without them (the objective
    # is divided by all rows, so it scales by 197 / 200)
    assert rel(est.mean_, ref.mean_) < 1e-12 and rel(est.covariance_, ref.covariance_) < 1e-12
    assert est.history_[-1] == pytest.approx(ref.history_[-1] * 197 / 200, rel=1e-12)
    assert np.array_equal(est.score_samples(Y)[[0, 50, 199]], np.zeros(3))
    assert np.array_equal(est.transform(Y)[[0, 50, 199]], np.tile(est.mean_, (3, 1)))


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_rank_deficient_data_with_the_ridge_never_nan(n):
    """Fewer rows than columns, a constant column, a collinear column: the default
    ridge keeps Sigma positive definite and every output finite; ridge=0 refuses."""
    rng = np.random.default_rng(13)
    X = rng.normal(size=(n, 5))
    X[:, 3] = 2.0                                         # constant
    X[:, 4] = X[:, 0] - X[:, 1]                           # collinear
    if n > 1:
        X[0, 1] = np.nan
        X[n - 1, 2] = np.nan
    est = fit(EMImputer(), X)
    assert np.isfinite(est.history_).all() and np.isfinite(est.covariance_).all()
    assert np.linalg.eigvalsh(est.covariance_).min() > 0
    assert_monotone(est.history_)
    assert np.isfinite(est.transform(X)).all() and np.isfinite(est.score_samples(X)).all()
    assert np.isfinite(est.sample(X, 2, random_state=0)).all()
    with pytest.raises(ValueError, match="use ridge > 0"):
        EMImputer(ridge=0.0).fit(X)


@pytest.mark.parametrize("mask_seed", range(6))
def test_ridge_zero_refuses_exactly_collinear_columns(mask_seed):
    """300 rows with col3 = col0 + col1 and 20% MCAR: the MLE is singular, and EM's
    iterates approach it; with ridge = 0 fit refuses once kappa > 1 / (1e3 D eps), on
    every mask (no iterate is returned as an estimate), naming the cause and the remedy;
    the default ridge fits."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 4))
    Z = rng.normal(size=(300, 4)) @ np.linalg.cholesky(A @ A.T + np.eye(4)).T
    col = np.column_stack([Z[:, :3], Z[:, 0] + Z[:, 1]])
    X = col.copy()
    X[np.random.default_rng(mask_seed).random(col.shape) < 0.2] = np.nan
    with pytest.raises(ValueError, match="collinear or constant columns") as info:
        fit(EMImputer(ridge=0.0), X)
    assert_one_sentence(str(info.value))
    assert "use ridge > 0" in str(info.value)
    est = fit(EMImputer(), X)
    assert np.linalg.eigvalsh(est.covariance_).min() > 0
    assert_monotone(est.history_)


def test_collinear_data_at_large_n_follow_the_documented_round_off_rule():
    """n = 20,000, D = 6, two exact linear relations and a scaled copy of a column, 30%
    missing, default ridge: kappa ~ 3e10, so the direct route serves every pattern and the
    objective carries a round-off of up to D eps kappa relative. The documented rule: falls
    smaller than rho s, rho = D kappa eps, are not reported (and are all history_ shows);
    history_[-1] agrees with a plain numpy objective to within that round-off; and, the
    internal scales being powers of two, multiplying a column by 2^10 changes nothing but
    the units (same iterations, the same estimate scaled exactly)."""
    rng = np.random.default_rng(11)
    n = 20_000
    Z = rng.normal(size=(n, 3))
    Z = np.column_stack([Z, Z[:, 0] + Z[:, 1], 2 * Z[:, 2] - Z[:, 0], Z[:, 1]])
    X = Z.copy()
    X[rng.random(X.shape) < 0.3] = np.nan
    D = X.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)             # no fall is reported
        est = fit(EMImputer(), X)
    kappa = impute._factor(est.covariance_)[4]
    assert kappa == pytest.approx(cond_corr_1(est.covariance_), rel=1e-3)
    assert 1e9 < kappa < 1e12
    rho = D * kappa * EPS
    h = est.history_
    assert np.all(np.diff(h) >= -rho * np.abs(h).max())
    # an independent objective (numpy Cholesky per pattern; scipy's logpdf calls this
    # covariance singular) at the fitted parameters, and the scale s of its terms
    S, mu = est.covariance_, est.mean_
    M = np.isnan(X)
    pats, inv = np.unique(M, axis=0, return_inverse=True)
    total, s_terms = 0.0, 0.0
    for p, m in enumerate(pats):
        o = ~m
        if o.any():
            L = np.linalg.cholesky(S[np.ix_(o, o)])
            R = np.linalg.solve(L, (X[np.ix_(inv.ravel() == p, o)] - mu[o]).T)
            logdet = 2 * np.log(np.diag(L)).sum()
            const, maha = o.sum() * math.log(2 * math.pi), (R * R).sum()
            total += -0.5 * (R.shape[1] * (const + logdet) + maha)
            s_terms += 0.5 * (R.shape[1] * (const + abs(logdet)) + maha)
    prior = 0.5 * np.sum(est.ridge * prior_scale(X) * np.diag(np.linalg.inv(S)))
    ref = (total - prior) / n
    s_scale = (s_terms + prior) / n
    assert abs(h[-1] - ref) <= 2 * rho * s_scale
    a = np.array([1, 1, 1, 1, 1, 2.0 ** 10])
    est2 = fit(EMImputer(), X * a)
    assert est2.n_iter_ == est.n_iter_
    assert np.array_equal(est2.mean_, est.mean_ * a)
    assert np.array_equal(est2.covariance_, est.covariance_ * np.outer(a, a))
    shift = -10 * math.log(2) * (~np.isnan(X[:, 5])).sum() / n
    assert np.abs(est2.history_ - (h + shift)).max() <= 4 * EPS * np.abs(h).max()


def test_tol_zero_runs_exactly_max_iter_and_max_iter_zero_evaluates_the_start():
    X, _, _, _ = data(14, n=200)
    for k in (0, 1, 7):
        est = EMImputer(tol=0.0, max_iter=k).fit(X)
        assert est.n_iter_ == k and len(est.history_) == k + 1 and not est.converged_
    start = EMImputer(max_iter=0).fit(X)
    assert np.array_equal(start.mean_, np.nanmean(X, axis=0))
    assert np.allclose(start.covariance_, np.diag(prior_scale(X)), rtol=1e-14, atol=0)


def test_convergence_warning_and_converged_flag():
    X, _, _, _ = data(15, n=300, rate=0.4)
    with pytest.warns(ConvergenceWarning):
        est = EMImputer(max_iter=2, tol=1e-12).fit(X)
    assert not est.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = EMImputer(max_iter=500, tol=1e-10).fit(X)
    assert est.converged_ and est.n_iter_ < 500
    # at convergence the last change is below tol in the documented unit
    unit = 0.5 * (1 + math.log(2 * math.pi)) * (~np.isnan(X)).sum() / len(X)
    assert abs(est.history_[-1] - est.history_[-2]) < 1e-10 * unit


def test_same_seed_same_bits_and_refit_is_independent_of_previous_fit():
    X, _, _, _ = data(16, n=2500)                         # 3 chunks
    a = EMImputer(random_state=1).fit(X)
    b = EMImputer(random_state=1).fit(X)
    assert np.array_equal(a.history_, b.history_) and np.array_equal(a.covariance_, b.covariance_)
    Y, _, _, _ = data(17, n=300)
    a.fit(Y)
    a.fit(X)
    assert np.array_equal(a.history_, b.history_) and np.array_equal(a.mean_, b.mean_)


def test_equivariant_under_rescaling_and_shifting_columns():
    """The relative ridge, the start and the unit-free tol make the fit equivariant:
    x -> a x + b per column gives mean a mu + b, covariance diag(a) Sigma diag(a),
    the same number of iterations, and F shifted by -sum_i sum_{d in o_i} log a_d / n."""
    X, _, _, _ = data(18, n=500)
    a = np.array([1e-6, 1.0, 1e4, 3.0])
    b = np.array([1e-5, -5.0, 0.0, 20.0])             # a few standard deviations: no digits lost in x
    e1 = EMImputer().fit(X)
    e2 = EMImputer().fit(X * a + b)
    assert e1.n_iter_ == e2.n_iter_
    assert rel(e2.mean_, e1.mean_ * a + b) < 1e-10
    assert rel(e2.covariance_ / np.outer(a, a), e1.covariance_) < 1e-10
    shift = -(np.log(a) * (~np.isnan(X))).sum() / len(X)
    # round-off relative to the size of the terms summed (|log a| ~ 14 per cell here)
    scale = abs(e1.history_[-1]) + np.abs(np.log(a) * (~np.isnan(X))).sum() / len(X)
    assert abs(e2.history_[-1] - (e1.history_[-1] + shift)) < 1e-10 * scale


@pytest.mark.parametrize("diag", [[1.6e99, 1e240, 1.0], [1.6e-99, 1e-240, 1.0], [1e300, 1e-300, 1e300, 1e-300],
                                  [1e90, 1e90, 1e90, 1e90]])
def test_log_determinant_of_extreme_pivots(diag):
    """The Cholesky log-determinant never multiplies two pivots out of float64's range:
    D S D with S a correlation matrix and D = diag(sqrt(diag)) has log det =
    log det S + sum log diag, however large or small the entries."""
    d = np.sqrt(np.array(diag))
    k = len(d)
    S = 0.5 * np.eye(k) + 0.5                                 # correlations 0.5
    exact = math.fsum(np.log(diag))
    assert impute._factor(np.diag(diag))[3] == pytest.approx(exact, rel=1e-14, abs=1e-12)
    exact += np.linalg.slogdet(S)[1]
    assert impute._factor(S * np.outer(d, d))[3] == pytest.approx(exact, rel=1e-14, abs=1e-12)


@pytest.mark.parametrize("scales", [(4e49, 1e120, 1.0), (2.5e-50, 1e-120, 1.0), (1e50, 1e50, 1e110)])
@pytest.mark.parametrize("ridge", [1e-6, 0.0])
def test_mixed_extreme_column_scales_fit_as_unit_scales(scales, ridge):
    """Columns of wildly different scales (the covariance spans 1e-240 .. 1e240) give the
    unit-scale fit, rescaled: same iterations, estimates and imputations to round-off, the
    objective shifted by the exact constant -sum_(observed cells) log a_d / n, and
    history_[-1] = objective(X) bit for bit."""
    X, _, _, _ = data(21, n=300, D=3, rate=0.2)
    a = np.array(scales)
    e1 = EMImputer(ridge=ridge).fit(X)
    e2 = EMImputer(ridge=ridge).fit(X * a)
    assert e1.n_iter_ == e2.n_iter_
    assert rel(e2.mean_ / a, e1.mean_) < 1e-12
    assert rel(e2.covariance_ / a / a[:, None], e1.covariance_) < 1e-12
    assert rel(e2.precision_ * a * a[:, None], e1.precision_) < 1e-12
    assert rel(e2.transform(X * a) / a, e1.transform(X)) < 1e-12
    shift = -(np.log(a) * (~np.isnan(X))).sum() / len(X)
    size = abs(e1.history_[-1]) + abs(shift)
    assert abs(e2.history_[-1] - (e1.history_[-1] + shift)) < 1e-12 * size
    assert abs(e2.score(X * a) - (e1.score(X) + shift)) < 1e-12 * size
    assert e2.history_[-1] == e2.objective(X * a)
    if ridge == 1e-6:                        # emref_objective uses the default ridge
        assert impute.emref_objective("mcar", impute.emref_params(e2), X * a) == e2.history_[-1]
    draws = e2.sample(X * a, 2, random_state=0) / a
    assert np.isfinite(draws).all()


def test_tiny_and_huge_scales_are_fitted_exactly_or_refused():
    """No silent wrong answer at any scale: data scaled by 1e-149 .. 1e148 give the
    unit-scale fit rescaled; a column whose spread is below 1e-150 (its variance would not
    fit in float64) is refused with a one-sentence message; a power-of-two scale changes
    the fit's numbers by exactly that power."""
    X, _, _, _ = data(2, n=300, D=3, rate=0.2)
    ref = EMImputer().fit(X)
    cells = (~np.isnan(X)).sum()
    for sc in (1e-149, 1e-120, 1e-60, 1e-8, 1e8, 1e60, 1e120, 1e148):
        est = EMImputer().fit(X * sc)
        assert est.converged_ and est.n_iter_ == ref.n_iter_
        assert rel(est.mean_ / sc, ref.mean_) < 1e-12
        assert rel(est.covariance_ / sc / sc, ref.covariance_) < 1e-12
        assert rel(est.transform(X * sc) / sc, ref.transform(X)) < 1e-12
        shift = -math.log(sc) * cells / len(X)
        assert abs(est.history_[-1] - (ref.history_[-1] + shift)) < 1e-12 * (abs(shift) + 10)
        assert est.history_[-1] == est.objective(X * sc)
    for sc in (1e-152, 1e-160, 1e-170, 1e-200, 1e-300):
        with pytest.raises(ValueError, match="spread of only .* below the 1e-150 .* rescale X") as info:
            EMImputer().fit(X * sc)
        assert_one_sentence(str(info.value))
    tiny = X.copy()
    tiny[:, 1] *= 1e-170                      # one column only
    with pytest.raises(ValueError, match="Column 1 of X has a spread of only"):
        EMImputer().fit(tiny)
    # powers of two: exactly the same computation
    p = 2.0 ** -400
    est = EMImputer().fit(X * p)
    assert np.array_equal(est.mean_, ref.mean_ * p) and np.array_equal(est.covariance_, ref.covariance_ * p * p)
    assert np.array_equal(est.transform(X * p), ref.transform(X) * p)
    # a constant column at the edge: the ridge's variance ridge s^2 / n (~1e-309) is below
    # float64's normal range, so the fit is refused rather than returned with a subnormal
    const = X.copy()
    const[:, 2] = np.where(np.isnan(X[:, 2]), np.nan, 2e-150)
    const = np.repeat(const, 10, axis=0)
    with pytest.raises(ValueError, match="does not fit in float64 in the units of X; rescale X"):
        EMImputer().fit(const)


def test_input_forms_give_the_same_fit():
    X, _, _, _ = data(19, n=200)
    ref = EMImputer().fit(X)
    as_list = [[None if np.isnan(v) else float(v) for v in row] for row in X]
    assert np.array_equal(EMImputer().fit(as_list).covariance_, ref.covariance_)
    assert np.array_equal(EMImputer().fit(np.asfortranarray(X)).covariance_, ref.covariance_)
    f32 = EMImputer().fit(X.astype(np.float32))
    assert f32.covariance_.dtype == np.float64 and np.isfinite(f32.covariance_).all()
    ints = EMImputer().fit(np.arange(40).reshape(10, 4) % 7)
    assert np.isfinite(ints.covariance_).all()


def test_sklearn_style_parameters_and_clone():
    from sklearn.base import clone

    est = EMImputer(max_iter=7, tol=1e-6, ridge=1e-3, random_state=4)
    assert est.get_params()["ridge"] == 1e-3
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    assert est.set_params(ridge=0.1) is est and est.ridge == 0.1


def test_work_memory_grows_with_the_chunks_only_by_the_statistics():
    """The arrays a fit keeps per chunk are the statistics' partials (D (D + 1) / 2 + D + 2
    numbers per chunk); the E-step's scratch (O(D^2) per chunk before) is allocated by each
    running chunk, and CS is folded into S2 (no D x D partial per chunk)."""
    rng = np.random.default_rng(23)
    n, D = 5 * impute.CHUNK + 7, 12
    X = rng.normal(size=(n, D))
    X[rng.random(X.shape) < 0.2] = np.nan
    lay, _ = EMImputer(max_iter=2, tol=0.0)._fit(X)
    n_chunks = -(-n // impute.CHUNK)
    per_chunk = [k for k, v in lay.items() if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n_chunks
                 and n_chunks != n]
    held = sum(a.size for a in lay.get("partials", ()))
    assert per_chunk == [] and held == n_chunks * (D * (D + 1) // 2 + D + 2)


def test_d_larger_than_64_columns():
    """Patterns are keyed by a 64-bit mask up to D = 64; beyond, by packed bytes."""
    rng = np.random.default_rng(20)
    D = 70
    Z = rng.normal(size=(300, D)) + rng.normal(size=(300, 1))      # correlated columns
    X = Z.copy()
    X[rng.random(Z.shape) < 0.05] = np.nan
    est = EMImputer(max_iter=3, tol=0.0).fit(X)
    ll, fill, _ = numpy_e_step(X, est.mean_, est.covariance_)
    assert rel(est.score_samples(X), ll) < 1e-10 and rel(est.transform(X), fill) < 1e-10


# ----------------------------------------------------------------------------
# 8. fuzzing the kernels
# ----------------------------------------------------------------------------


@st.composite
def problems(draw):
    D = draw(st.integers(1, 5))
    n = draw(st.integers(1, 8))
    vals = st.floats(-5, 5, allow_nan=False, width=64)
    X = np.array(draw(st.lists(st.lists(vals, min_size=D, max_size=D), min_size=n, max_size=n)))
    mask = np.array(draw(st.lists(st.lists(st.booleans(), min_size=D, max_size=D), min_size=n, max_size=n)))
    X[mask] = np.nan
    A = np.array(draw(st.lists(st.lists(st.floats(-2, 2, width=64), min_size=D, max_size=D),
                               min_size=D, max_size=D)))
    cov = A @ A.T + 0.1 * np.eye(D)
    mean = np.array(draw(st.lists(vals, min_size=D, max_size=D)))
    return X, mean, cov


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fuzz_loglik_and_conditional_means_against_scipy(problem):
    X, mean, cov = problem
    est = at(mean, cov)
    ll, fill, C = numpy_e_step(X, mean, cov)
    got = est.score_samples(X)
    M = np.isnan(X)
    # round-off scale of each row: 1/2 (|o| log 2 pi + |log det Sigma_oo| + maha), cond(cov) <= ~2e3
    for i in range(len(X)):
        o = ~M[i]
        if not o.any():
            assert got[i] == 0.0
            continue
        Soo = cov[np.ix_(o, o)]
        r = X[i, o] - mean[o]
        scale = 0.5 * (o.sum() * math.log(2 * math.pi) + abs(np.linalg.slogdet(Soo)[1])
                       + r @ np.linalg.solve(Soo, r))
        assert abs(got[i] - ll[i]) <= 1e-10 * scale
    T = est.transform(X)
    scale = max(np.abs(fill).max(), 1.0)
    assert np.abs(T - fill).max() <= 1e-10 * scale
    assert np.abs(est._conditional_covariances(X) - C).max() <= 1e-10 * np.abs(cov).max()


# ----------------------------------------------------------------------------
# 9. the seed scenario
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_tutorial_scenario(seed):
    out = impute.emref_scenarios()["tutorial"](seed)
    assert out["passed"], out["detail"]
    assert_monotone(out["estimator"].history_)
    m = out["metrics"]
    assert m["mse"] < m["mse_mean_imputation"]
    assert m["objective"] == out["estimator"].history_[-1] and m["objective"] >= m["objective_truth"]
    assert "at the true parameters" in out["detail"]


@pytest.mark.parametrize("seed", range(10))
def test_tutorial_scenario_fails_the_plug_in_model(seed):
    """The scenario's pass rule catches the tutorial's own bug: the plug-in covariance
    (tests/broken_models/impute_plugin.py) scores below the true parameters on the data."""
    broken = plug_in_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = impute._tutorial_run(seed, broken.EMImputer)
    m = out["metrics"]
    assert not out["passed"]
    assert m["objective"] < m["objective_truth"]


_COMPILE_VS_CACHE = """
import hashlib, sys, warnings
import numpy as np
sys.path.insert(0, sys.argv[1])
from impute import EMImputer
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
A = rng.standard_normal((6, 6))
X = rng.standard_normal((2000, 6)) @ A
X[rng.random(X.shape) < 0.3] = np.nan
est = EMImputer(max_iter=50, tol=0).fit(X)
h = hashlib.sha256()
for a in (est.mean_, est.covariance_, est.history_, est.transform(X)):
    h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
"""


def test_the_compiling_process_and_cache_loading_processes_compute_the_same_bits(tmp_path):
    # With fast-math flags on the parallel E-step kernel, the process that compiled the
    # kernels computed different bits (from the first iteration on) from processes that
    # later loaded them from numba's cache, on this 6-column fit (measured); the harness's
    # determinism check compares only cache-loading processes. The file is copied alone into
    # tmp_path, so the first process compiles into an empty cache.
    shutil.copy(impute.__file__, tmp_path / "impute.py")
    script = tmp_path / "fit.py"
    script.write_text(_COMPILE_VS_CACHE)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    runs = [subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                           text=True, timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    compiled, cached = (r.stdout.strip().splitlines()[-1] for r in runs)
    assert compiled == cached, "the compiling process and a cache-loading process differ"
