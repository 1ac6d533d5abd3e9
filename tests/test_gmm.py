"""GaussianMixture-specific tests for models/gmm.py.

The generic checks (monotone objective, recovery, oracle agreement of
score_samples and the sufficient statistics, thread-count determinism, the
emref_hostile / emref_edge lists) are run by the harness; these tests cover
what is particular to a Gaussian mixture with sklearn's API: agreement with
sklearn iteration by iteration, sample_weight semantics, the history_ /
convergence contract, the collapse policy, the covariance types' closed forms,
initialisation, n_init, warm_start, sample/bic/aic and input handling.

Tolerances are of two kinds only:

* round-off: two computations of the same quantity in a different order of
  floating-point operations. One EM iteration is a few hundred flops per
  entry, so it perturbs a parameter by ~1e-15 relative; over T iterations of
  a well-conditioned EM map (a contraction) the perturbations add up to at
  most ~T * condition * 1e-15. We use 1e-12 for a single evaluation and 1e-9
  or 1e-10 after 20-30 iterations, i.e. >= 1e3 below the effect of any of the
  bugs these tests target (a missing reg_covar is 1e-6, a wrong normaliser or
  a wrong triangle is O(1));
* sampling error: only in test_sample_*, as a multiple of the standard error.

The last section holds the regression tests of the bugs found in review
(formerly strict xfails) and of their fixes: far-from-origin accuracy, the
fitted state after set_params, warm_start checks, the reg_covar fall bound
and round-off rule, input validation, one thread per chunk, bit-identity over
several chunks, and weighted 'random_from_data'.
"""

import warnings

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import models.gmm as gmm
from models.gmm import ConvergenceWarning, GaussianMixture

COV_TYPES = ("full", "tied", "diag", "spherical")
PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_numba_thread():
    """Run this module's fits on one numba thread, then restore the count.

    Almost every data set here has fewer rows than one chunk (4096), for which
    the model itself runs its kernels on one thread (see
    test_one_chunk_runs_on_one_numba_thread_and_restores_the_count); this also
    keeps k-means and the tests' own code off a loaded pool. Thread-count
    determinism: test_bit_identical_across_thread_counts_with_several_chunks
    (subprocesses) and the harness.
    """
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def overlapping_data(seed=0, n=2000):
    """3 strongly overlapping anisotropic components in 3-D, so EM is slow:
    it is still clearly moving after 20 iterations from the starts below."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.5, 2.0, 1.0]])
    z = rng.integers(0, 3, n)
    return centres[z] + rng.standard_normal((n, 3)) * np.array([1.0, 0.7, 1.3])


def start(ct, K=3, D=3, seed=1):
    """A fully specified, deliberately imprecise start (weights, means, precisions)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 1.5, K)
    weights /= weights.sum()
    means = rng.normal(0.7, 1.0, (K, D))
    if ct == "full":
        A = 0.3 * rng.standard_normal((K, D, D))
        prec = np.eye(D) + A @ A.transpose(0, 2, 1)
    elif ct == "tied":
        A = 0.3 * rng.standard_normal((D, D))
        prec = np.eye(D) + A @ A.T
    elif ct == "diag":
        prec = rng.uniform(0.5, 2.0, (K, D))
    else:
        prec = rng.uniform(0.5, 2.0, K)
    return dict(weights_init=weights, means_init=means, precisions_init=prec)


def full_covs(ct, cov, K, D):
    """(K, D, D) covariance matrices of any covariance type."""
    cov = np.asarray(cov, dtype=np.float64)
    if ct == "full":
        return cov
    if ct == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if ct == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(D)


def precisions_to_covs(ct, prec, K, D):
    prec = np.asarray(prec, dtype=np.float64)
    if ct in ("full", "tied"):
        return full_covs(ct, np.linalg.inv(prec), K, D)
    return full_covs(ct, 1.0 / prec, K, D)


def mean_loglik(X, weights, means, covs, sample_weight=None):
    """Independent (scipy) sample-weighted mean log-likelihood."""
    log_joint = np.column_stack([
        np.log(weights[k]) + multivariate_normal(means[k], covs[k]).logpdf(X)
        for k in range(len(weights))])
    return np.average(logsumexp(log_joint, axis=1), weights=sample_weight)


def fit(est, X, sample_weight=None):
    """Fit, ignoring ConvergenceWarning; returns (est, other warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, sample_weight=sample_weight)
    return est, [w for w in caught if not issubclass(w.category, ConvergenceWarning)]


def assert_close(actual, desired, rtol, what=""):
    """Norm-wise relative agreement: |a - d| <= rtol * max|d| entry by entry."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    scale = max(np.max(np.abs(desired)), np.finfo(float).tiny)
    err = np.max(np.abs(actual - desired)) / scale
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


def assert_same_fit(a, b, rtol, params=PARAMS):
    for name in params:
        assert_close(getattr(a, name), getattr(b, name), rtol, name)


# ----------------------------------------------------------------------------
# agreement with sklearn
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COV_TYPES)
def test_matches_sklearn_after_20_iterations(ct):
    X = overlapping_data()
    kw = dict(covariance_type=ct, tol=0.0, max_iter=20, **start(ct))
    ours, _ = fit(GaussianMixture(3, **kw), X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkGaussianMixture(3, **kw).fit(X)
        one = GaussianMixture(3, **{**kw, "max_iter": 1}).fit(X)

    # meaningful: EM is still moving at iteration 20, and moved a lot since 1
    assert ours.history_[20] - ours.history_[19] > 1e-5
    for name in PARAMS:
        a, b = getattr(one, name), getattr(ours, name)
        assert np.max(np.abs(a - b)) > 1e-2 * np.max(np.abs(b)), name

    # 20 iterations of round-off (~1e-15 each) stay far below 1e-9
    assert ours.n_iter_ == ref.n_iter_ == 20
    assert_same_fit(ours, ref, 1e-9)
    if ct in ("full", "tied"):   # sklearn's upper-triangular convention
        pc = ours.precisions_cholesky_
        assert np.all(np.tril(pc, -1) == 0.0)
    # sklearn's lower_bounds_[t] is the objective at the parameters after t
    # iterations, t = 0..19: our history_[t] for the same t
    if hasattr(ref, "lower_bounds_"):
        assert_close(ours.history_[:-1], ref.lower_bounds_, 1e-10, "history_")


@pytest.mark.parametrize("ct", COV_TYPES)
def test_bic_aic_match_sklearn(ct):
    X = overlapping_data(n=500)
    ours, _ = fit(GaussianMixture(3, covariance_type=ct, random_state=0, max_iter=10), X)
    ref = SkGaussianMixture(3, covariance_type=ct)
    for name in PARAMS:
        setattr(ref, name, getattr(ours, name))
    ref.n_features_in_ = X.shape[1]
    ref.converged_, ref.n_iter_, ref.lower_bound_ = True, 1, 0.0
    assert_close(ours.score_samples(X), ref.score_samples(X), 1e-12, "score_samples")
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-12)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-12)
    # the parameter count (sklearn's formula) is what separates bic from aic
    k = (ours.aic(X) + 2 * ours.score(X) * len(X)) / 2
    assert k == pytest.approx(ref._n_parameters(), abs=1e-6)


# ----------------------------------------------------------------------------
# sample_weight
# ----------------------------------------------------------------------------


def weighted_and_duplicated(seed=3, n=900):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(c, 1.0, (n // 3, 2)) for c in (-1.0, 0.0, 1.5)])
    w = rng.integers(0, 4, len(X))          # 0, 1, 2, 3: zero weight = row absent
    return X, w, np.repeat(X, w, axis=0)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_integer_weights_equal_duplicated_rows(ct):
    # With the start fixed by *_init, both fits run the same EM map on the same
    # weighted empirical distribution; only the order of the sums differs.
    X, w, Xd = weighted_and_duplicated()
    kw = dict(covariance_type=ct, tol=0.0, max_iter=30, **start(ct, K=3, D=2))
    a, _ = fit(GaussianMixture(3, **kw), X, sample_weight=w)
    b, _ = fit(GaussianMixture(3, **kw), Xd)
    assert_same_fit(a, b, 1e-10)
    assert_close(a.history_, b.history_, 1e-10, "history_")


@pytest.mark.parametrize("init", ["kmeans", "k-means++"])
def test_weighted_seeding_equals_seeding_on_duplicated_rows(init):
    # k-means++ draws a row with probability v_i / sum v by inverting the CDF
    # of a uniform draw (numpy's Generator.choice); the CDF over weighted rows
    # and over duplicated rows has the same jumps, so one seed picks the same
    # points, and the whole fit (init included) must coincide. A seeding that
    # ignores sample_weight, or picks zero-weight rows, breaks this.
    # max_iter=0: the fitted parameters are the initialisation itself.
    X, w, Xd = weighted_and_duplicated()
    for max_iter in (0, 10):
        kw = dict(covariance_type="full", init_params=init, random_state=7, tol=0.0, max_iter=max_iter)
        a, _ = fit(GaussianMixture(3, **kw), X, sample_weight=w)
        b, _ = fit(GaussianMixture(3, **kw), Xd)
        assert_same_fit(a, b, 1e-10)


def test_sample_weight_scale_invariance_and_zero_weight_rows():
    X, w, _ = weighted_and_duplicated()
    kw = dict(covariance_type="full", random_state=0, tol=0.0, max_iter=15)
    a, _ = fit(GaussianMixture(3, **kw), X, sample_weight=w)
    b, _ = fit(GaussianMixture(3, **kw), X, sample_weight=w * 3.7)
    assert_same_fit(a, b, 1e-10)
    assert_close(a.history_, b.history_, 1e-12, "history_")
    # far-away rows of weight zero must not pull a component (init included)
    Xo = np.vstack([X, np.full((20, 2), 1e3)])
    wo = np.r_[w, np.zeros(20)]
    c, _ = fit(GaussianMixture(3, **kw), Xo, sample_weight=wo)
    assert_same_fit(a, c, 1e-10, ("weights_", "covariances_"))
    assert np.all(np.abs(c.means_) < 10)


# ----------------------------------------------------------------------------
# history_, tol, convergence
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COV_TYPES)
def test_tol_zero_runs_max_iter_and_history_is_exact(ct):
    X = overlapping_data(n=1000)
    sw = np.random.default_rng(5).uniform(0.2, 2.0, len(X))
    s = start(ct)
    kw = dict(covariance_type=ct, tol=0.0, max_iter=12, **s)
    with pytest.warns(ConvergenceWarning):
        est = GaussianMixture(3, **kw).fit(X, sample_weight=sw)
    assert est.n_iter_ == 12 and not est.converged_
    assert len(est.history_) == est.n_iter_ + 1
    assert est.lower_bound_ == est.history_[-1]
    # the final objective is that of the fitted parameters, not one step late
    assert est.lower_bound_ == pytest.approx(np.average(est.score_samples(X), weights=sw), rel=1e-12)
    covs = full_covs(ct, est.covariances_, 3, 3)
    assert est.lower_bound_ == pytest.approx(mean_loglik(X, est.weights_, est.means_, covs, sw), rel=1e-12)
    # history_[0] is the objective at the starting parameters
    covs0 = precisions_to_covs(ct, s["precisions_init"], 3, 3)
    assert est.history_[0] == pytest.approx(
        mean_loglik(X, s["weights_init"], s["means_init"], covs0, sw), rel=1e-12)
    # history_[t] is the objective at the parameters after exactly t iterations
    for t in (1, 5):
        short, _ = fit(GaussianMixture(3, **{**kw, "max_iter": t}), X, sample_weight=sw)
        assert short.lower_bound_ == pytest.approx(est.history_[t], rel=1e-12)
        assert np.average(short.score_samples(X), weights=sw) == pytest.approx(est.history_[t], rel=1e-12)
    # unweighted: lower_bound_ == score(X)
    est, _ = fit(GaussianMixture(3, **kw), X)
    assert est.score(X) == pytest.approx(est.lower_bound_, rel=1e-12)


def test_max_iter_zero_keeps_the_start():
    X = overlapping_data(n=500)
    s = start("full")
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # sklearn: no ConvergenceWarning for 0 iterations
        est = GaussianMixture(3, max_iter=0, **s).fit(X)
    assert est.n_iter_ == 0 and len(est.history_) == 1 and not est.converged_
    np.testing.assert_array_equal(est.weights_, s["weights_init"])
    np.testing.assert_array_equal(est.means_, s["means_init"])
    assert_close(est.precisions_, s["precisions_init"], 1e-12, "precisions_")
    assert_close(est.covariances_, np.linalg.inv(s["precisions_init"]), 1e-12, "covariances_")


def test_positive_tol_stops_at_first_small_change():
    X = overlapping_data(n=1000)
    tol = 1e-4
    est, other = fit(GaussianMixture(3, tol=tol, max_iter=500, **start("full")), X)
    assert est.converged_ and not other
    assert est.n_iter_ < 500 and len(est.history_) == est.n_iter_ + 1
    change = np.diff(est.history_)
    assert 0 <= change[-1] < tol
    assert np.all(change[:-1] >= tol)


class PerturbedMStep(GaussianMixture):
    """Moves the means away after M-step number ``perturb_at``: the objective
    then decreases at that iteration (a broken M-step, as EM never does)."""

    perturb_at = 3

    def _m_step(self, *args, **kwargs):
        super()._m_step(*args, **kwargs)
        self._calls = getattr(self, "_calls", 0) + 1
        if self._calls == self.perturb_at:
            self.means_ = self.means_ + 2.0


@pytest.mark.parametrize("tol,at", [(0.0, 3), (1e-3, 3), (1e6, 1)])
def test_decrease_warns_and_is_never_convergence(tol, at):
    # A decrease is a change below tol; only the decrease rule stops it from
    # being called convergence. With tol = 1e6 every change is "small": the
    # decrease at iteration 1 is not convergence, the recovery at 2 is.
    X = overlapping_data(n=1000)
    est = PerturbedMStep(3, tol=tol, max_iter=8, **start("full"))
    est.perturb_at = at
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    decreases = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(decreases) == 1 and f"iteration {at}" in str(decreases[0].message)
    assert est.history_[at] < est.history_[at - 1] - 0.1
    if tol == 0.0:
        assert est.n_iter_ == 8 and not est.converged_
    elif tol == 1e6:
        assert est.n_iter_ == 2 and est.converged_
    else:
        assert est.n_iter_ > at


# ----------------------------------------------------------------------------
# predictions, sample
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COV_TYPES)
def test_prediction_consistency(ct):
    X = overlapping_data(n=800)
    est = GaussianMixture(3, covariance_type=ct, random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = est.fit_predict(X)
    Xn = overlapping_data(seed=9, n=300) * 1.5
    P = est.predict_proba(Xn)
    assert P.shape == (300, 3) and np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(est.predict(Xn), P.argmax(axis=1))
    np.testing.assert_array_equal(labels, est.predict(X))
    ss = est.score_samples(Xn)
    assert ss.shape == (300,)
    assert est.score(Xn) == pytest.approx(ss.mean(), rel=1e-14)
    # posterior = joint / marginal, with the same densities as score_samples
    covs = full_covs(ct, est.covariances_, 3, 3)
    log_joint = np.column_stack([np.log(est.weights_[k]) + multivariate_normal(est.means_[k], covs[k]).logpdf(Xn)
                                 for k in range(3)])
    np.testing.assert_allclose(np.log(P) + ss[:, None], log_joint, rtol=1e-11)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_sample_shapes_reproducibility_and_moments(ct):
    X = overlapping_data(n=600)
    est, _ = fit(GaussianMixture(3, covariance_type=ct, random_state=4, max_iter=5), X)
    n = 30_000
    Xs, labels = est.sample(n)
    assert Xs.shape == (n, 3) and labels.shape == (n,)
    assert np.issubdtype(labels.dtype, np.integer) and set(np.unique(labels)) <= {0, 1, 2}
    X2, l2 = est.sample(n)                   # an int random_state: same draw (sklearn)
    np.testing.assert_array_equal(Xs, X2)
    np.testing.assert_array_equal(labels, l2)
    est.random_state = 5
    assert not np.array_equal(est.sample(n)[0], Xs)
    assert est.sample(1)[0].shape == (1, 3)
    # each label's rows have the component's mean and covariance (within
    # 5 standard errors); a transposed Cholesky factor fails this for 'full'
    covs = full_covs(ct, est.covariances_, 3, 3)
    counts = np.bincount(labels, minlength=3)
    assert np.all(np.abs(counts / n - est.weights_) <= 5 * np.sqrt(est.weights_ / n))
    for k in range(3):
        Y = Xs[labels == k]
        m = len(Y)
        sd = np.sqrt(np.diag(covs[k]))
        assert np.all(np.abs(Y.mean(0) - est.means_[k]) <= 5 * sd / np.sqrt(m))
        C = np.cov(Y.T)
        se = np.sqrt((covs[k] ** 2 + np.outer(np.diag(covs[k]), np.diag(covs[k]))) / m)
        assert np.all(np.abs(C - covs[k]) <= 5 * se)


# ----------------------------------------------------------------------------
# closed forms and the collapse policy
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COV_TYPES)
def test_one_component_is_the_weighted_gaussian_fit(ct):
    rng = np.random.default_rng(11)
    A = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.1, -0.5, 2.0]])
    X = 50.0 + rng.standard_normal((700, 3)) @ A.T
    sw = rng.uniform(0.0, 3.0, len(X))
    reg = 1e-3
    est, other = fit(GaussianMixture(1, covariance_type=ct, reg_covar=reg, random_state=0), X, sw)
    assert not other and est.converged_
    mu = np.average(X, axis=0, weights=sw)
    C = np.cov(X.T, aweights=sw, bias=True)
    cov = {"full": C[None] + reg * np.eye(3), "tied": C + reg * np.eye(3),
           "diag": np.diag(C)[None] + reg, "spherical": np.array([np.trace(C) / 3 + reg])}[ct]
    np.testing.assert_array_equal(est.weights_, [1.0])
    assert_close(est.means_, mu[None], 1e-12, "means_")
    assert_close(est.covariances_, cov, 1e-10, "covariances_")


def test_one_feature_full_diag_spherical_coincide():
    rng = np.random.default_rng(2)
    X = np.r_[rng.normal(-1, 1, 400), rng.normal(1.5, 0.6, 300)][:, None]
    base = dict(weights_init=[0.5, 0.5], means_init=[[-0.5], [0.5]], tol=0.0, max_iter=25)
    fits = {}
    for ct, p in [("full", np.ones((2, 1, 1))), ("diag", np.ones((2, 1))), ("spherical", np.ones(2))]:
        fits[ct], other = fit(GaussianMixture(2, covariance_type=ct, precisions_init=p, **base), X)
        assert not other
        check_finite_fit(fits[ct], X)
        assert min_variance(fits[ct]) >= fits[ct].reg_covar
    assert fits["full"].covariances_.shape == (2, 1, 1)
    assert fits["diag"].covariances_.shape == (2, 1)
    assert fits["spherical"].covariances_.shape == (2,)
    for ct in ("diag", "spherical"):
        assert_close(fits[ct].means_, fits["full"].means_, 1e-11, ct)
        assert_close(fits[ct].covariances_.ravel(), fits["full"].covariances_.ravel(), 1e-11, ct)
        assert_close(fits[ct].history_, fits["full"].history_, 1e-12, ct)
    tied, _ = fit(GaussianMixture(2, covariance_type="tied", precisions_init=np.ones((1, 1)), **base), X)
    assert tied.covariances_.shape == (1, 1)


def check_finite_fit(est, X):
    for name in PARAMS:
        assert np.all(np.isfinite(getattr(est, name))), name
    assert est.weights_.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(np.isfinite(est.score_samples(X)))
    np.testing.assert_allclose(est.predict_proba(X).sum(axis=1), 1.0, atol=1e-12)


def min_variance(est):
    """Smallest eigenvalue of any component covariance."""
    c = est.covariances_
    if est.covariance_type in ("full", "tied"):
        return np.linalg.eigvalsh(c).min()
    return c.min()


@pytest.mark.parametrize("ct", COV_TYPES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_collapse_all_identical_points(ct, init):
    X = np.full((50, 2), 3.0)
    est, other = fit(GaussianMixture(3, covariance_type=ct, init_params=init, random_state=0), X)
    assert not other and est.converged_
    check_finite_fit(est, X)
    np.testing.assert_allclose(est.means_, 3.0, rtol=1e-14)
    assert_close(full_covs(ct, est.covariances_, 3, 2), np.broadcast_to(1e-6 * np.eye(2), (3, 2, 2)), 1e-12, ct)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_collapse_component_on_a_single_point(ct):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (200, 2)), [[8.0, -6.0]]])
    p = {"full": np.stack([np.eye(2)] * 2), "tied": np.eye(2), "diag": np.ones((2, 2)), "spherical": np.ones(2)}[ct]
    est, other = fit(GaussianMixture(2, covariance_type=ct, weights_init=[0.9, 0.1],
                                     means_init=[[0.0, 0.0], [7.0, -5.0]], precisions_init=p), X)
    assert not other
    check_finite_fit(est, X)
    assert min_variance(est) >= est.reg_covar * (1 - 1e-6)
    if ct != "tied":   # the outlier's own component shrinks onto it
        assert est.weights_[1] == pytest.approx(1 / 201, rel=1e-9)
        np.testing.assert_allclose(est.means_[1], [8.0, -6.0], rtol=1e-12)
        assert_close(full_covs(ct, est.covariances_, 2, 2)[1], 1e-6 * np.eye(2), 1e-6, "collapsed covariance")


@pytest.mark.parametrize("ct", COV_TYPES)
def test_empty_component_policy(ct):
    # weight 0 at the start: the component receives no mass; the documented
    # policy is weight ~1e-15/N, mean at the (weighted) data mean, covariance
    # reg_covar, all finite, and the other components unaffected.
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(-5, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    sw = rng.uniform(0.5, 1.5, len(X))
    p = {"full": np.stack([np.eye(2)] * 3), "tied": np.eye(2), "diag": np.ones((3, 2)), "spherical": np.ones(3)}[ct]
    kw = dict(covariance_type=ct, means_init=[[-5.0, -5.0], [5.0, 5.0], [0.0, 0.0]], precisions_init=p)
    est, other = fit(GaussianMixture(3, weights_init=[0.5, 0.5, 0.0], **kw), X, sw)
    assert not other
    check_finite_fit(est, X)
    assert 0 < est.weights_[2] < 1e-14
    if ct != "tied":   # (tied: the shared covariance still gives it ~1e-17 of each row)
        np.testing.assert_allclose(est.means_[2], np.average(X, axis=0, weights=sw), rtol=1e-12, atol=1e-12)
        assert_close(full_covs(ct, est.covariances_, 3, 2)[2], 1e-6 * np.eye(2), 1e-9, "empty covariance")
    two = {"full": p[:2], "tied": p, "diag": p[:2], "spherical": p[:2]}[ct]
    ref, _ = fit(GaussianMixture(2, covariance_type=ct, weights_init=[0.5, 0.5], means_init=kw["means_init"][:2],
                                 precisions_init=two), X, sw)
    cov2 = est.covariances_ if ct == "tied" else est.covariances_[:2]
    assert_close(est.means_[:2], ref.means_, 1e-9, "means_")
    assert_close(cov2, ref.covariances_, 1e-9, "covariances_")


def test_translation_equivariance_large_offset():
    # Rows are shifted by the data mean before second moments are formed, so
    # an offset of 1e6 costs only the ~1e-10 representation error of X + 1e6;
    # raw moments would lose ~1e12 * 1e-16 = 1e-4 of every variance.
    X = overlapping_data(n=1000)
    s = start("full")
    kw = dict(tol=0.0, max_iter=15, weights_init=s["weights_init"], precisions_init=s["precisions_init"])
    a, _ = fit(GaussianMixture(3, means_init=s["means_init"], **kw), X)
    b, _ = fit(GaussianMixture(3, means_init=s["means_init"] + 1e6, **kw), X + 1e6)
    np.testing.assert_allclose(b.means_ - 1e6, a.means_, rtol=0, atol=1e-8)
    assert_close(b.covariances_, a.covariances_, 1e-8, "covariances_")
    assert_close(b.weights_, a.weights_, 1e-8, "weights_")


# ----------------------------------------------------------------------------
# inputs: no mutation, equivalent types
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["C", "F"])
def test_inputs_are_not_mutated_or_aliased(order):
    X = np.asarray(overlapping_data(n=600), order=order)
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    s = start("full")
    saved = [a.copy() for a in (X, sw, *s.values())]
    est, _ = fit(GaussianMixture(3, tol=0.0, max_iter=5, **s), X, sw)
    est.predict(X), est.predict_proba(X), est.score_samples(X), est.score(X), est.bic(X), est.aic(X)
    est.sample(10)
    GaussianMixture(3, random_state=0, max_iter=5).fit_predict(X, sample_weight=sw)
    for before, after in zip(saved, (X, sw, *s.values())):
        np.testing.assert_array_equal(before, after)
    assert X.flags.f_contiguous == (order == "F")
    # the fitted state does not alias the caller's *_init arrays
    est0, _ = fit(GaussianMixture(3, max_iter=0, **s), X)
    params0 = [p.copy() for p in (est0.weights_, est0.means_, est0.precisions_)]
    for a in s.values():
        a *= 2.0
    for before, after in zip(params0, (est0.weights_, est0.means_, est0.precisions_)):
        np.testing.assert_array_equal(before, after)
    # read-only inputs work (nothing tries to write into them)
    for a in (X, sw):
        a.setflags(write=False)
    fit(GaussianMixture(3, random_state=0, max_iter=5), X, sw)


def test_equivalent_input_types_give_the_same_fit():
    X = np.rint(overlapping_data(n=600) * 3)          # exact in every type below
    kw = dict(covariance_type="full", random_state=0, tol=0.0, max_iter=10)
    ref, _ = fit(GaussianMixture(3, **kw), X.astype(np.float64))
    ro = X.copy()
    ro.setflags(write=False)
    for variant in (X.astype(np.float32), X.astype(np.int64), X.astype(np.int32), X.tolist(),
                    np.asfortranarray(X), ro, np.repeat(X, 2, axis=1)[:, ::2]):
        est, _ = fit(GaussianMixture(3, **kw), variant)
        assert_same_fit(est, ref, 1e-12)
        assert_close(est.predict_proba(variant), ref.predict_proba(X), 1e-12, "predict_proba")


# ----------------------------------------------------------------------------
# n_init, warm_start
# ----------------------------------------------------------------------------


class RecordingStarts(GaussianMixture):
    """Records each start's final objective, history and parameters."""

    def _run_em(self, *args, **kwargs):
        history, converged = super()._run_em(*args, **kwargs)
        self.__dict__.setdefault("starts", []).append(
            (history[-1], converged, np.array(history), [p.copy() for p in self._get_parameters()]))
        return history, converged


def test_n_init_keeps_the_start_with_the_highest_objective():
    rng = np.random.default_rng(8)
    X = np.vstack([rng.normal(c, 0.8, (150, 2)) for c in ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2))])
    kw = dict(n_components=5, init_params="random", random_state=12, tol=1e-6, max_iter=200)
    est, _ = fit(RecordingStarts(n_init=6, **kw), X)
    finals = np.array([s[0] for s in est.starts])
    # meaningful: the starts differ, and the best is neither the first nor the last
    assert len(finals) == 6
    assert finals.max() - max(finals[0], finals[-1]) > 1e-3
    best = est.starts[int(np.argmax(finals))]
    assert est.lower_bound_ == finals.max() == best[0]
    assert est.converged_ == best[1]
    np.testing.assert_array_equal(est.history_, best[2])
    for name, value in zip(("weights_", "means_", "covariances_", "precisions_cholesky_"), best[3]):
        np.testing.assert_array_equal(getattr(est, name), value)
    assert est.score(X) == pytest.approx(finals.max(), rel=1e-12)
    # the first k starts do not depend on n_init, so the kept objective
    # is the running maximum over starts
    for k in (1, 2, 4):
        e, _ = fit(GaussianMixture(n_init=k, **kw), X)
        assert e.lower_bound_ == finals[:k].max()


@pytest.mark.parametrize("ct", COV_TYPES)
def test_warm_start_continues_from_the_previous_parameters(ct):
    X = overlapping_data(n=800)
    s = start(ct)
    cold, _ = fit(GaussianMixture(3, covariance_type=ct, tol=0.0, max_iter=8, **s), X)
    warm = GaussianMixture(3, covariance_type=ct, tol=0.0, max_iter=4, warm_start=True, **s)
    fit(warm, X)
    first_history = warm.history_.copy()
    # a second warm fit ignores n_init, the *_init values and init_params
    warm.set_params(n_init=5, init_params="random", random_state=123, means_init=s["means_init"] + 5)
    fit(warm, X)
    assert warm.history_[0] == pytest.approx(first_history[-1], rel=1e-14)
    assert_close(np.r_[first_history, warm.history_[1:]], cold.history_, 1e-12, "history_")
    assert_same_fit(warm, cold, 1e-11)
    # warm_start=False refits from the start
    warm.set_params(warm_start=False, n_init=1, means_init=s["means_init"], max_iter=4)
    fit(warm, X)
    np.testing.assert_array_equal(warm.history_, first_history)


# ----------------------------------------------------------------------------
# GMM-specific validation (beyond emref_hostile)
# ----------------------------------------------------------------------------


def _bad_cases():
    K, D = 2, 2
    eye = np.stack([np.eye(D)] * K)
    return [
        ("precisions_init not symmetric", dict(precisions_init=np.array([[[1.0, 0.5], [0.0, 1.0]]] * K))),
        ("precisions_init not positive definite", dict(precisions_init=np.array([[[1.0, 2.0], [2.0, 1.0]]] * K))),
        ("diag precisions_init not positive", dict(covariance_type="diag", precisions_init=np.array([[1.0, 0.0]] * K))),
        ("spherical precisions_init not positive", dict(covariance_type="spherical", precisions_init=np.array([1.0, -1.0]))),
        ("tied precisions_init given per component", dict(covariance_type="tied", precisions_init=eye)),
        ("weights_init negative", dict(weights_init=np.array([1.5, -0.5]))),
        ("means_init NaN", dict(means_init=np.array([[np.nan, 0.0], [0.0, 0.0]]))),
        ("tol negative", dict(tol=-1.0)),
        ("max_iter not an integer", dict(max_iter=1.5)),
        ("n_init zero", dict(n_init=0)),
        ("random_state negative", dict(random_state=-1)),
        ("random_state not a seed", dict(random_state="seed")),
        ("random_state a bool", dict(random_state=True)),
        ("verbose_interval zero", dict(verbose=2, verbose_interval=0)),
        ("verbose_interval not an integer", dict(verbose_interval=2.5)),
        ("verbose negative", dict(verbose=-1)),
        ("verbose not a number", dict(verbose="loud")),
        ("warm_start not a bool", dict(warm_start="yes")),
        ("reg_covar zero on identical points", dict(reg_covar=0.0)),
    ]


@pytest.mark.parametrize("name,kw", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_gmm_specific_validation_messages(name, kw):
    rng = np.random.default_rng(0)
    X = np.ones((20, 2)) if name.startswith("reg_covar") else rng.normal(size=(20, 2))
    saved = {k: np.array(v, copy=True) for k, v in kw.items() if isinstance(v, np.ndarray)}
    with pytest.raises((ValueError, TypeError)) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            GaussianMixture(2, **kw).fit(X)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and len(msg) < 300, msg
    assert "numba" not in msg.lower() and "nopython" not in msg.lower(), msg
    for k, v in saved.items():
        np.testing.assert_array_equal(kw[k], v)


def test_sample_validation():
    est, _ = fit(GaussianMixture(2, random_state=0, max_iter=3), np.random.default_rng(0).normal(size=(30, 2)))
    for bad in (0, -1, 2.5, True, np.True_, "3"):
        with pytest.raises(ValueError, match="n_samples"):
            est.sample(bad)


# ----------------------------------------------------------------------------
# fuzzing (bounded)
# ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 3), D=st.integers(1, 3),
       extra=st.integers(0, 40), ct=st.sampled_from(COV_TYPES))
def test_fuzz_integer_weights_vs_duplicates_and_invariants(seed, K, D, extra, ct):
    rng = np.random.default_rng(seed)
    n = K + extra
    X = rng.integers(-2, 3, (n, 1)) * 3.0 + rng.normal(size=(n, D)) * rng.uniform(0.3, 2.0, D)
    w = rng.integers(0, 4, n)
    w[:K] = np.maximum(w[:K], 1)             # the rows used as initial means are present
    Xd = np.repeat(X, w, axis=0)
    p = {"full": np.stack([np.eye(D)] * K), "tied": np.eye(D), "diag": np.ones((K, D)), "spherical": np.ones(K)}[ct]
    # reg_covar 1e-3 and 5 iterations keep collapsed components well conditioned,
    # so round-off differences between the two orders of summation stay ~1e-12
    kw = dict(covariance_type=ct, reg_covar=1e-3, tol=0.0, max_iter=5,
              weights_init=np.full(K, 1.0 / K), means_init=X[:K] + 0.1, precisions_init=p)
    # (with reg_covar > 0 EM may lower the objective, by at most the floor's
    # bound: no RuntimeWarning either way, see test_small_scale_data_converges)
    a, other = fit(GaussianMixture(K, **kw), X, sample_weight=w)
    b, other_d = fit(GaussianMixture(K, **kw), Xd)
    assert not other and not other_d, [str(x.message) for x in other + other_d]
    assert_same_fit(a, b, 1e-8)
    assert_close(a.history_, b.history_, 1e-9, "history_")
    assert len(a.history_) == 6
    check_finite_fit(a, X)
    assert min_variance(a) >= 1e-3 * (1 - 1e-9)
    assert a.lower_bound_ == pytest.approx(np.average(a.score_samples(X), weights=w), rel=1e-10, abs=1e-12)


# ----------------------------------------------------------------------------
# Regressions: bugs found in review (formerly strict xfails) and their fixes
# ----------------------------------------------------------------------------


def far_apart_tight_clusters(seed=0):
    """Two clusters of s.d. 1e-3 at -1000 and +1000 (500 rows each)."""
    rng = np.random.default_rng(seed)
    A, B = rng.normal(0, 1e-3, (500, 2)), rng.normal(0, 1e-3, (500, 2))
    return A, B, np.vstack([A - 1e3, B + 1e3])


class RecordingTiedPath(GaussianMixture):
    """Records, for each M-step, whether 'tied' got the raw pooled scatter."""

    def _m_step(self, stats, scatter, shift):
        self.__dict__.setdefault("raw_steps", []).append(stats[2] is not None)
        super()._m_step(stats, scatter, shift)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_covariance_accuracy_of_far_apart_tight_components(ct):
    # The exact answer is each cluster's own sample covariance (responsibilities
    # are exactly 0/1 here). Raw moments about the data mean lost 12 of 16
    # digits (error ~1e-4); centred moments keep all but round-off (~1e-12).
    A, B, X = far_apart_tight_clusters()
    p = {"full": np.stack([np.eye(2) * 1e6] * 2), "tied": np.eye(2) * 1e6,
         "diag": np.full((2, 2), 1e6), "spherical": np.full(2, 1e6)}[ct]
    est, other = fit(RecordingTiedPath(2, covariance_type=ct, reg_covar=0.0, tol=0.0, max_iter=3,
                                       weights_init=[0.5, 0.5], means_init=[[-1e3] * 2, [1e3] * 2],
                                       precisions_init=p), X)
    assert not other
    CA, CB = np.cov(A.T, bias=True), np.cov(B.T, bias=True)
    exact = {"full": np.stack([CA, CB]), "tied": (CA + CB) / 2, "diag": np.stack([np.diag(CA), np.diag(CB)]),
             "spherical": np.array([np.trace(CA), np.trace(CB)]) / 2}[ct]
    assert_close(est.covariances_, exact, 1e-10, "covariances_")
    assert_close(est.means_, np.stack([A.mean(0) - 1e3, B.mean(0) + 1e3]), 1e-15, "means_")
    if ct == "tied":   # the raw pooled scatter would lose 12 digits: centred from the first E-step
        assert not any(est.raw_steps)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_outlier_far_away_gets_its_own_floored_component(ct):
    # An outlier 1e5 away with its own component: raw moments lost all the
    # digits of its covariance (~1e-6) and fit raised "not positive definite".
    rng = np.random.default_rng(0)
    A = rng.normal(0, 1, (300, 2))
    X = np.vstack([A, [[1e5, 1e5]]])
    p = {"full": np.stack([np.eye(2)] * 2), "tied": np.eye(2), "diag": np.ones((2, 2)), "spherical": np.ones(2)}[ct]
    est, other = fit(GaussianMixture(2, covariance_type=ct, weights_init=[0.99, 0.01],
                                     means_init=[[0.0, 0.0], [1e5, 1e5]], precisions_init=p, tol=0.0, max_iter=5), X)
    assert not other
    check_finite_fit(est, X)
    np.testing.assert_allclose(est.means_[1], [1e5, 1e5], rtol=1e-14)   # (n_k = N_k + 10 eps shrinks it)
    CA = np.cov(A.T, bias=True)
    exact = {"full": np.stack([CA, np.zeros((2, 2))]), "tied": CA * 300 / 301,
             "diag": np.stack([np.diag(CA), np.zeros(2)]), "spherical": np.array([np.trace(CA) / 2, 0.0])}[ct]
    exact = exact + {"full": 1e-6 * np.eye(2), "tied": 1e-6 * np.eye(2), "diag": 1e-6, "spherical": 1e-6}[ct]
    assert_close(est.covariances_, exact, 1e-10, "covariances_")
    if ct != "tied":   # relative to the floor itself
        assert_close(full_covs(ct, est.covariances_, 2, 2)[1], 1e-6 * np.eye(2), 1e-9, "outlier covariance")


def test_tied_raw_and_centred_pooled_scatter_agree(monkeypatch):
    # 'tied' takes its pooled scatter from raw moments only while they lose at
    # most 4 digits; forcing the centred form at every step gives the same fit
    # to round-off. (The first M-step, from the initialisation, is centred.)
    X = overlapping_data()
    kw = dict(covariance_type="tied", tol=0.0, max_iter=20, **start("tied"))
    raw, _ = fit(RecordingTiedPath(3, **kw), X)
    assert all(raw.raw_steps)
    monkeypatch.setattr(gmm, "_RAW_MAX_CANCELLATION", 0.0)
    centred, _ = fit(RecordingTiedPath(3, **kw), X)
    assert not any(centred.raw_steps)
    assert_same_fit(raw, centred, 1e-11)
    assert_close(raw.history_, centred.history_, 1e-13, "history_")
    # from a data-driven start too
    a, _ = fit(RecordingTiedPath(3, covariance_type="tied", random_state=0, tol=0.0, max_iter=20), X)
    monkeypatch.undo()
    b, _ = fit(RecordingTiedPath(3, covariance_type="tied", random_state=0, tol=0.0, max_iter=20), X)
    assert not any(a.raw_steps) and all(b.raw_steps[1:])
    assert_same_fit(a, b, 1e-11)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_sufficient_statistics_are_raw_moments(ct):
    # The E-step accumulates centred moments; _sufficient_statistics converts
    # them back to the documented raw ones (the harness oracle relies on it).
    X = overlapping_data(n=700) + np.array([300.0, -50.0, 7.0])
    v = np.random.default_rng(3).uniform(0.2, 2.0, len(X))
    est, _ = fit(GaussianMixture(3, covariance_type=ct, random_state=0, max_iter=10), X)
    N, S1, S2 = est._sufficient_statistics(X, v)
    rv = est.predict_proba(X) * v[:, None]
    ref = {"full": np.einsum("nk,ni,nj->kij", rv, X, X), "tied": (X * v[:, None]).T @ X,
           "diag": rv.T @ (X * X), "spherical": rv.T @ (X * X)}[ct]
    assert_close(N, rv.sum(0), 1e-12, "N")
    assert_close(S1, rv.T @ X, 1e-12, "S1")
    assert_close(S2, ref, 1e-12, "S2")


def test_fitted_model_ignores_later_changes_of_shape_hyperparameters():
    # sklearn predicts with the fitted parameters. predict once sized its
    # buffers from n_components and read K from means_: growing n_components
    # returned uninitialised memory, shrinking it corrupted the heap.
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 1, (100, 2)) for c in (-5, 0, 5)])
    est, _ = fit(GaussianMixture(3, covariance_type="diag", random_state=0), X)
    Xn = X[::7] + 0.3

    def outputs():
        return [est.predict_proba(Xn), est.predict(Xn), est.score_samples(Xn), est.score(Xn),
                est.bic(Xn), est.aic(Xn), *est.sample(50), *est._sufficient_statistics(Xn)]

    before = outputs()
    for change in (dict(n_components=1), dict(n_components=2), dict(n_components=7),
                   dict(covariance_type="full"), dict(covariance_type="tied"), dict(covariance_type="spherical"),
                   dict(n_components=1, covariance_type="full")):
        est.set_params(**change)
        for a, b in zip(outputs(), before):
            np.testing.assert_array_equal(a, b, err_msg=str(change))
        est.set_params(n_components=3, covariance_type="diag")


def test_inconsistent_fitted_arrays_raise_instead_of_reading_out_of_bounds():
    X = overlapping_data(n=300)
    est, _ = fit(GaussianMixture(3, random_state=0, max_iter=5), X)
    est.means_ = np.vstack([est.means_, est.means_])      # 6 means, 3 weights and precisions
    for call in (est.predict, est.score_samples, est.predict_proba):
        with pytest.raises(ValueError) as info:
            call(X)
        assert "\n" not in str(info.value) and str(info.value).endswith(".")


@pytest.mark.parametrize("change", [dict(n_components=4), dict(n_components=2), dict(covariance_type="full"),
                                    dict(covariance_type="tied")])
def test_warm_start_with_changed_shape_hyperparameters_is_refused(change):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 1, (100, 2)) for c in (-5, 0, 5)])
    first = "diag" if change.get("covariance_type") == "tied" else "spherical"
    est, _ = fit(GaussianMixture(3, covariance_type=first, random_state=0, warm_start=True), X)
    params = [p.copy() for p in est._get_parameters()]
    est.set_params(**change)
    with pytest.raises(ValueError, match=list(change)[0]) as info:
        fit(est, X)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and len(msg) < 300, msg
    for a, b in zip(est._get_parameters(), params):     # the fitted model is untouched
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="features"):
        fit(est.set_params(n_components=3, covariance_type=first), np.hstack([X, X]))
    fit(est, X)                                          # unchanged shapes: continues


def test_verbose_interval_zero():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="verbose_interval"):
        fit(GaussianMixture(2, verbose=2, verbose_interval=0, max_iter=3), X)


def small_scale_data(seed=0):
    """Three components of s.d. 1e-3: the default floor reg_covar = 1e-6 is as
    large as their variances, so each M-step is far from the maximiser."""
    rng = np.random.default_rng(seed)
    return 1e-3 * np.vstack([rng.normal(c, 1, (300, 2)) for c in (-1.0, 0.0, 1.5)])


@pytest.mark.parametrize("ct", COV_TYPES)
def test_small_scale_data_converges(ct):
    # With reg_covar > 0 EM may lower L by up to B / sum v (module docstring);
    # on this data it does so at every iteration. Such falls are explained,
    # so no warning, and they count as convergence (as in sklearn).
    est = GaussianMixture(3, covariance_type=ct, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(small_scale_data())
    assert est.converged_
    assert not [w for w in caught if issubclass(w.category, (RuntimeWarning, ConvergenceWarning))]
    longer, _ = fit(GaussianMixture(3, covariance_type=ct, random_state=0, tol=0.0, max_iter=30), small_scale_data())
    assert (np.diff(longer.history_) < 0).sum() >= 5       # meaningful: L does fall


class RecordingBound(GaussianMixture):
    """Records B (the floor's allowance, sum-of-weights units) after each M-step."""

    def _m_step(self, *args, **kwargs):
        super()._m_step(*args, **kwargs)
        self.__dict__.setdefault("bounds", []).append(self._floor_bound())


def floor_loss_by_log_det(est):
    """B from its definition: sum_k (N_k / 2) [log det(S_k + rI) - log det S_k
    + tr((S_k + rI)^{-1} S_k) - D], S_k = Sigma_k - rI (Q at S_k minus Q at S_k + rI)."""
    r, ct, N = est.reg_covar, est.covariance_type, est._m_counts
    K, D = est.means_.shape
    covs = full_covs(ct, est.covariances_, K, D)
    if ct == "tied":
        covs, N = covs[:1], np.array([N.sum()])
    total = 0.0
    for Sr, n in zip(covs, N):
        S = Sr - r * np.eye(D)
        total += 0.5 * n * (np.linalg.slogdet(Sr)[1] - np.linalg.slogdet(S)[1]
                            + np.trace(np.linalg.solve(Sr, S)) - D)
    return total


@pytest.mark.parametrize("ct", COV_TYPES)
def test_floor_bound_is_its_definition_and_bounds_every_fall(ct):
    X = small_scale_data(1)
    sw = np.random.default_rng(2).uniform(0.5, 2.0, len(X))
    est, other = fit(RecordingBound(3, covariance_type=ct, random_state=0, tol=0.0, max_iter=40), X, sw)
    assert not other
    change = np.diff(est.history_)
    allowance = np.array(est.bounds[1:]) / sw.sum()      # bounds[0]: the initialisation's M-step
    assert (change < 0).sum() >= 5                       # meaningful: the floor makes L fall
    # EM theory: L_new - L_old >= -B / sum v (with margin: the falls reach a fraction of B)
    assert np.all(change >= -allowance), (change / allowance).min()
    # B as computed (eigenvalues and a series) equals its definition through Q
    assert est._floor_bound() == pytest.approx(floor_loss_by_log_det(est), rel=1e-10)
    # and it scales with the weights as sum v does (so B / sum v is scale-free)
    est3, _ = fit(RecordingBound(3, covariance_type=ct, random_state=0, tol=0.0, max_iter=40), X, 3.0 * sw)
    assert_close(np.array(est3.bounds) / 3.0, np.array(est.bounds), 1e-9, "bounds")


def test_floor_loss_function():
    # phi(lam) = log(1 + r / lam) - r / (lam + r), in 40-digit decimal arithmetic
    from decimal import Decimal, getcontext
    getcontext().prec = 40
    r = 1e-6
    lam = np.array([1e-12, 1e-9, 1e-6, 9e-6, 1e-5, 1e-3, 1.0, 1e6])
    ref = [float((1 + Decimal(r) / Decimal(x)).ln() - Decimal(r) / (Decimal(x) + Decimal(r))) for x in lam]
    np.testing.assert_allclose(gmm._floor_loss(lam, r), ref, rtol=1e-13)
    assert np.all(np.isinf(gmm._floor_loss(np.array([0.0, -1e-20]), r)))


class PerturbedTwice(PerturbedMStep):
    """Moves the means away after M-steps 3 and 6."""

    def _m_step(self, *args, **kwargs):
        GaussianMixture._m_step(self, *args, **kwargs)
        self._calls = getattr(self, "_calls", 0) + 1
        if self._calls in (3, 6):
            self.means_ = self.means_ + self.shift


@pytest.mark.parametrize("reg_covar,shift", [(1e-6, 2.0), (0.0, 0.3)])
def test_falls_beyond_the_bound_give_one_warning_with_their_count(reg_covar, shift):
    # One RuntimeWarning per fit, however many defects. With reg_covar = 0
    # the bound is 0: a fall of ~0.05 (means moved by 0.3 s.d.) warns.
    X = overlapping_data(n=1000)
    est = PerturbedTwice(3, reg_covar=reg_covar, tol=0.0, max_iter=8, **start("full"))
    est.shift = shift
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    falls = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(falls) == 1, [str(w.message) for w in falls]
    msg = str(falls[0].message)
    assert "2 iteration(s)" in msg and "iteration 3" in msg, msg
    assert est.history_[3] < est.history_[2] and est.history_[6] < est.history_[5]
    assert not est.converged_
    if reg_covar == 0.0:
        assert est._floor_bound() == 0.0


def test_round_off_threshold_is_unit_invariant_when_the_objective_is_near_zero():
    # Scaling X by c shifts L by -D log c, so with c = exp(L) the objective is
    # ~0 while each |log p_i| stays ~1: the round-off of L is that of a sum of
    # terms ~1, not 1e-10 |L| ~ 1e-26. With reg_covar = 0 EM is monotone; the
    # falls left are round-off and must not warn (the old threshold did).
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-1, 1, 600), rng.normal(1.5, 1, 400)])[:, None]
    g, _ = fit(GaussianMixture(2, tol=0.0, max_iter=1500, reg_covar=0.0, random_state=0), X)
    c = np.exp(g.lower_bound_)
    est = GaussianMixture(2, weights_init=g.weights_, means_init=g.means_ * c, precisions_init=g.precisions_ / c ** 2,
                          reg_covar=0.0, tol=0.0, max_iter=200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X * c)
    assert abs(est.lower_bound_) < 1e-12                 # meaningful: L ~ 0 ...
    assert (np.diff(est.history_) < 0).any()             # ... and it does fall by round-off
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("make", [lambda X: X.astype(str), lambda X: X.astype(bytes),
                                  lambda X: X.astype(str).astype(object), lambda X: X.astype(str).tolist()],
                         ids=["unicode", "bytes", "object", "list"])
def test_numeric_strings_are_refused(make):
    X = overlapping_data(n=100)
    fitted, _ = fit(GaussianMixture(2, random_state=0, max_iter=3), X)
    w = make(np.ones((len(X), 1)))                       # a column, then its one entry per row
    w = w[:, 0] if isinstance(w, np.ndarray) else [row[0] for row in w]
    for call in (lambda: GaussianMixture(2).fit(make(X)), lambda: fitted.predict(make(X)),
                 lambda: GaussianMixture(2).fit(X, sample_weight=w)):
        with pytest.raises(ValueError, match="strings") as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and msg.endswith(".") and len(msg) < 300, msg


def test_values_whose_squares_overflow_are_refused():
    X = overlapping_data(n=300)
    fitted, _ = fit(GaussianMixture(3, random_state=0, max_iter=3), X)
    for scale in (2e150, 1e200):
        Xs = X / np.abs(X).max() * scale
        for call in (lambda: GaussianMixture(3).fit(Xs), lambda: fitted.score_samples(Xs)):
            with pytest.raises(ValueError, match="1e\\+150") as info:
                call()
            assert "\n" not in str(info.value) and str(info.value).endswith(".")
    # just below the limit the fit works, and equals the unscaled fit scaled
    s = 0.999e150 / np.abs(X).max()
    kw = dict(random_state=0, tol=0.0, max_iter=10)
    a, other = fit(GaussianMixture(3, reg_covar=1e-6 * s * s, **kw), X * s)
    b, _ = fit(GaussianMixture(3, **kw), X)
    assert not other
    assert_close(a.means_ / s, b.means_, 1e-10, "means_")
    assert_close(a.covariances_ / (s * s), b.covariances_, 1e-10, "covariances_")
    np.testing.assert_array_equal(a.predict(X * s), b.predict(X))


def test_random_from_data_draws_rows_in_proportion_to_sample_weight():
    # 100 rows of weight 9 weigh as much as the other 900 together: half the
    # draws must come from them (uniform draws: 1 in 10). 400 draws, s.d. 10.
    sw = np.r_[np.ones(900), np.full(100, 9.0)]
    one = GaussianMixture(1)
    heavy = sum(int(one._random_rows(sw, np.random.default_rng(s))[0] >= 900) for s in range(400))
    assert abs(heavy - 200) < 50, heavy
    # without replacement, and never a row of weight zero
    sw0 = np.zeros(50)
    sw0[[3, 17, 41]] = [1.0, 2.0, 3.0]
    for s in range(20):
        rows = GaussianMixture(3)._random_rows(sw0, np.random.default_rng(s))
        np.testing.assert_array_equal(np.sort(rows), [3, 17, 41])
    # end to end: far-away rows of weight zero never seed a component (a
    # zero-weight seed would leave its component empty, weight ~1e-15)
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (300, 2)), np.full((100, 2), 1e3)])
    w = np.r_[np.ones(300), np.zeros(100)]
    for seed in range(20):
        est, _ = fit(GaussianMixture(3, init_params="random_from_data", random_state=seed, max_iter=0), X, w)
        assert est.weights_.min() >= 1 / 300 * (1 - 1e-12)
    with pytest.raises(ValueError, match="random_from_data"):
        GaussianMixture(3, init_params="random_from_data").fit(X, sample_weight=np.r_[1.0, 1.0, np.zeros(398)])


THREADS_SCRIPT = r"""
import json, sys, warnings
import numba, numpy as np
import models.gmm as gmm
warnings.simplefilter("ignore")
seen = []
kernel = gmm._e_step_kernel
def spy(*args):
    seen.append(numba.get_num_threads())
    if spy.fail:
        raise RuntimeError("stop")
    return kernel(*args)
spy.fail = False
gmm._e_step_kernel = spy
rng = np.random.default_rng(0)
out = {}
for n in (1000, 4096, 4097):
    seen.clear()
    gmm.GaussianMixture(3, random_state=0, max_iter=5).fit(rng.normal(size=(n, 2)))
    out[n] = [sorted(set(seen)), numba.get_num_threads()]
spy.fail = True
try:
    gmm.GaussianMixture(3, random_state=0).fit(rng.normal(size=(500, 2)))
except RuntimeError:
    pass
out["after an error"] = numba.get_num_threads()
print(json.dumps(out))
"""

DIGEST_SCRIPT = r"""
import hashlib, sys, warnings
import numpy as np
import models.gmm as gmm
warnings.simplefilter("ignore")
rng = np.random.default_rng(1)
n = 3 * gmm.CHUNK + 17
X = rng.normal(size=(n, 3)) + rng.integers(0, 3, (n, 1)) * 2.5
sw = rng.uniform(0.2, 2.0, n)
far = np.vstack([rng.normal(0, 1e-3, (n // 2, 2)) - 1e3, rng.normal(0, 1e-3, (n - n // 2, 2)) + 1e3])
h = hashlib.sha256()
for ct in ("full", "tied", "diag", "spherical"):
    for data, w in ((X, sw), (far, None)):
        est = gmm.GaussianMixture(3, covariance_type=ct, random_state=0, tol=0.0, max_iter=8).fit(data, sample_weight=w)
        for p in (*est._get_parameters(), est.history_, est.predict_proba(data)):
            h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes())
print(h.hexdigest())
"""


def run_script(script, threads):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_one_chunk_runs_on_one_numba_thread_and_restores_the_count():
    # A parallel region wakes the whole pool even when one chunk is all the
    # work; on a loaded machine that cost seconds per fit. Up to CHUNK rows
    # the kernels run on one thread; the count is restored, also on error.
    import json
    out = json.loads(run_script(THREADS_SCRIPT, 2))
    assert out["1000"] == [[1], 2] and out["4096"] == [[1], 2]
    assert out["4097"] == [[2], 2]
    assert out["after an error"] == 2


def test_bit_identical_across_thread_counts_with_several_chunks():
    # The harness checks determinism at n = 2000 (one chunk); here every
    # covariance type, weighted, and 'tied' on both of its paths, on 4 chunks.
    assert run_script(DIGEST_SCRIPT, 1) == run_script(DIGEST_SCRIPT, 2)


# ----------------------------------------------------------------------------
# The seed scenario: the tutorial's data, exactly.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 42])
def test_blobs_scenario_reproduces_sklearn_make_blobs(seed):
    from sklearn.datasets import make_blobs

    from models.gmm import _make_blobs

    X_ref, z_ref = make_blobs(n_samples=1000, centers=3, cluster_std=1.0, random_state=seed)
    X, z, _, _ = _make_blobs(seed)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(z, z_ref)


def test_blobs_scenario_reaches_ari_one_on_separable_seed():
    from models.gmm import _blobs3

    out = _blobs3(42)
    assert out["metrics"]["bayes_ari"] == 1.0
    assert out["metrics"]["ari"] == 1.0 and out["passed"]
