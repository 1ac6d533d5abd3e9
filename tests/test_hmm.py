"""HMM-specific tests for models/hmm.py (CategoricalHMM and GaussianHMM).

The generic checks (monotone objective, recovery, the module's own oracles,
thread-count determinism, the emref_hostile / emref_edge lists) are run by
the harness; these tests cover what is particular to an HMM with hmmlearn's
API: agreement with hmmlearn (scaling implementation) from identical given
parameters and after 20 EM iterations, no underflow on very long sequences,
the history_ / tol contract, the MAP priors and their log density, the
restart scenario of the issue (the tutorial's HMM), the unseen-symbol policy,
the covariance floor, hostile input, the public API (sample, currstate,
additivity over sequences, covars_, bic/aic, decode, n_features, get/set
params, reproducibility), and a bounded fuzz against brute-force enumeration.

Tolerances are of two kinds only, as in tests/test_gmm.py:

* round-off: the same quantity computed in a different order of operations.
  One evaluation agrees to ~1e-15 relative (we use 1e-12, or 1e-10 where the
  quantity is a sum over 10^4 or more steps, or a difference against an
  enumeration of up to 4^6 paths); 20 EM iterations of a well-conditioned map
  stay far below 1e-9. The bugs these tests target (a missing prior term, a
  transposed transition matrix, a one-iteration-late history, an underflow)
  are O(1e-3) or larger;
* statistical: only in the tutorial scenario (Viterbi accuracy within 0.02,
  the issue's acceptance criterion).

Where a behaviour differs from hmmlearn by design (see the module docstring,
"Differences from hmmlearn"), the comparison is set up so that both compute
the same thing: hmmlearn gets covars_prior=p*I for 'full'/'tied', and its
history is compared only where the priors are flat.
"""

import itertools
import warnings

import hmmlearn.hmm as hh
import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from harness.checks import assert_monotone, assert_one_sentence
import models.hmm as hmm
from models.hmm import CategoricalHMM, ConvergenceWarning, GaussianHMM

COV_TYPES = ("spherical", "diag", "full", "tied")
VARIANTS = ("categorical",) + COV_TYPES
K, M, D = 3, 4, 2
LENGTHS = np.array([150, 200, 97, 53])


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_numba_thread():
    """Run this module on one numba thread (most data here is one chunk, which
    the model runs on one thread anyway), then restore the count."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


TRUE_START = np.array([0.6, 0.3, 0.1])
TRUE_TRANS = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
TRUE_EMISSION = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.4, 0.4, 0.1], [0.2, 0.1, 0.2, 0.5]])
TRUE_MEANS = np.array([[0.0, 0.0], [1.5, 0.5], [0.5, 2.0]])
TRUE_FULL = np.array([[[1.0, 0.3], [0.3, 0.7]], [[0.6, -0.2], [-0.2, 1.2]], [[0.9, 0.0], [0.0, 0.5]]])


def stored_covars(ct, full):
    """The stored form of (K, D, D) matrices for covariance type ct."""
    full = np.asarray(full)
    if ct == "full":
        return full.copy()
    if ct == "tied":
        return full.mean(0)
    diag = np.diagonal(full, axis1=1, axis2=2).copy()
    return diag if ct == "diag" else diag.mean(1)


def full_covars(ct, stored, n_components=K, n_features=D):
    """(K, D, D) matrices of any stored form (independent of the model's helper)."""
    stored = np.asarray(stored, dtype=float)
    if ct == "full":
        return stored
    if ct == "tied":
        return np.broadcast_to(stored, (n_components, n_features, n_features)).copy()
    if ct == "diag":
        return np.stack([np.diag(c) for c in stored])
    return stored[:, None, None] * np.eye(n_features)


def true_params(variant):
    p = {"startprob_": TRUE_START.copy(), "transmat_": TRUE_TRANS.copy()}
    if variant == "categorical":
        p["emissionprob_"] = TRUE_EMISSION.copy()
    else:
        p["means_"] = TRUE_MEANS.copy()
        p["covars_"] = stored_covars(variant, TRUE_FULL)
    return p


def start_params(variant, seed=1):
    """A fully specified, deliberately imprecise start (EM is still moving after 20 iterations)."""
    r = np.random.default_rng(seed)
    p = {"startprob_": np.array([0.2, 0.3, 0.5]),
         "transmat_": np.array([[0.5, 0.3, 0.2], [0.3, 0.4, 0.3], [0.25, 0.25, 0.5]])}
    if variant == "categorical":
        p["emissionprob_"] = np.array([[0.3, 0.3, 0.2, 0.2], [0.2, 0.3, 0.3, 0.2], [0.25, 0.2, 0.25, 0.3]])
        return p
    p["means_"] = r.normal(0.7, 1.0, (K, D))
    if variant == "full":
        A = 0.3 * r.standard_normal((K, D, D))
        p["covars_"] = np.eye(D) + A @ A.transpose(0, 2, 1)
    elif variant == "tied":
        A = 0.3 * r.standard_normal((D, D))
        p["covars_"] = np.eye(D) + A @ A.T
    elif variant == "diag":
        p["covars_"] = r.uniform(0.5, 2.0, (K, D))
    else:
        p["covars_"] = r.uniform(0.5, 2.0, K)
    return p


def make(variant, params=None, **kw):
    """Our estimator of the variant, holding params (if given)."""
    if variant == "categorical":
        est = CategoricalHMM(K, **{"n_features": M, **kw})
    else:
        est = GaussianHMM(K, covariance_type=variant, **kw)
    for name, value in (params or {}).items():
        setattr(est, name, np.array(value, copy=True))
    return est


def make_ref(variant, params, **kw):
    """hmmlearn's estimator (scaling implementation) holding the same params."""
    kw = {"implementation": "scaling", **kw}
    if variant == "categorical":
        ref = hh.CategoricalHMM(K, n_features=M, **kw)
    else:
        cp = kw.pop("covars_prior", 1e-2)
        if variant in ("full", "tied"):        # our scalar p means p * I; hmmlearn adds p to every entry
            cp = cp * np.eye(D)
        ref = hh.GaussianHMM(K, covariance_type=variant, covars_prior=cp, **kw)
        ref.n_features = D
    for name, value in params.items():
        setattr(ref, name, np.array(value, copy=True))
    return ref


def ref_covars(ref, ct):
    """hmmlearn's covariances as (K, D, D). (Its spherical M-step stores a (K, D)
    tiled array, which its covars_ getter expands to (K * D, D, D).)"""
    if ct == "spherical":
        return np.reshape(ref._covars_, (K, -1))[:, 0][:, None, None] * np.eye(D)
    return ref.covars_


def sample(variant, lengths, seed=0, params=None):
    """(X, lengths) drawn from the true model, one call of sample per sequence."""
    gen = make(variant, params or true_params(variant))
    rng = np.random.default_rng(seed)
    X = np.concatenate([gen.sample(int(L), random_state=rng)[0] for L in lengths])
    return X, np.asarray(lengths, dtype=np.int64)


def fit(est, X, lengths=None):
    """Fit, ignoring ConvergenceWarning; returns (est, other warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, lengths)
    return est, [w for w in caught if not issubclass(w.category, ConvergenceWarning)]


def assert_close(actual, desired, rtol, what=""):
    """Norm-wise relative agreement: |a - d| <= rtol * max|d| entry by entry."""
    actual, desired = np.asarray(actual, dtype=float), np.asarray(desired, dtype=float)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    scale = max(np.max(np.abs(desired)), np.finfo(float).tiny)
    err = np.max(np.abs(actual - desired)) / scale
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


def fitted_params(est, variant):
    out = {"startprob_": est.startprob_, "transmat_": est.transmat_}
    if variant == "categorical":
        out["emissionprob_"] = est.emissionprob_
    else:
        out["means_"], out["covars_"] = est.means_, est.covars_
    return out


def log_prior(est, variant, **prior):
    """The module docstring's log p(theta) (without its constant), computed here
    from the parameters and the prior hyperparameters alone."""
    a = np.broadcast_to(prior.get("startprob_prior", 1.0), (K,))
    A0 = np.broadcast_to(prior.get("transmat_prior", 1.0), (K, K))
    lp = np.sum((a - 1) * np.log(est.startprob_)) + np.sum((A0 - 1) * np.log(est.transmat_))
    if variant == "categorical":
        e = np.broadcast_to(prior.get("emissionprob_prior", 1.0), est.emissionprob_.shape)
        return lp + np.sum((e - 1) * np.log(est.emissionprob_))
    w = prior.get("means_weight", 0.0)
    m0 = np.broadcast_to(prior.get("means_prior", 0.0), (K, D))
    p = prior.get("covars_prior", 1e-2)
    nu = prior.get("covars_weight", 1.0)
    dm = est.means_ - m0
    covs = est.covars_
    if variant in ("diag", "spherical"):
        n0 = max(nu - 1, 0)
        s = np.diagonal(covs, axis1=1, axis2=2)               # (K, D)
        return lp - 0.5 * np.sum(n0 * np.log(s) + (p + w * dm ** 2) / s)
    n0 = max(nu - D, 0)
    P = p * np.eye(D)
    if variant == "tied":
        S = covs[0]
        Mt = P + w * dm.T @ dm
        return lp - 0.5 * (n0 * np.linalg.slogdet(S)[1] + np.trace(np.linalg.solve(S, Mt)))
    return lp - 0.5 * sum(n0 * np.linalg.slogdet(covs[k])[1]
                          + np.trace(np.linalg.solve(covs[k], P + w * np.outer(dm[k], dm[k]))) for k in range(K))


# ----------------------------------------------------------------------------
# 1. agreement with hmmlearn from identical given parameters
# ----------------------------------------------------------------------------

PRIORS = {
    "categorical": dict(startprob_prior=2.0, transmat_prior=np.array([[3.0, 1.0, 1.5], [1.0, 2.0, 1.0], [1.2, 1.0, 4.0]]),
                        emissionprob_prior=1.5),
    "gaussian": dict(startprob_prior=2.0, transmat_prior=1.5, means_prior=0.2, means_weight=0.5,
                     covars_prior=0.05, covars_weight=3.0),
}


def priors_for(variant):
    return PRIORS["categorical" if variant == "categorical" else "gaussian"]


@pytest.mark.parametrize("with_priors", [False, True], ids=["flat", "priors"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_hmmlearn_from_given_parameters_and_after_20_iterations(variant, with_priors):
    X, lengths = sample(variant, LENGTHS, seed=0)
    s = start_params(variant)
    prior = priors_for(variant) if with_priors else {}
    ours = make(variant, s, init_params="", tol=0.0, n_iter=20, **prior)
    ref = make_ref(variant, s, init_params="", tol=-np.inf, n_iter=20, **prior)

    # (a)-(c) at the given parameters
    assert ours.score(X, lengths) == pytest.approx(ref.score(X, lengths), rel=1e-12)
    assert_close(ours.predict_proba(X, lengths), ref.predict_proba(X, lengths), 1e-12, "predict_proba")
    lp, path = ours.decode(X, lengths)
    lp_ref, path_ref = ref.decode(X, lengths)
    assert lp == pytest.approx(lp_ref, rel=1e-12)
    if variant != "categorical":         # continuous emissions: no ties, the paths are unique
        np.testing.assert_array_equal(path, path_ref)

    # (d) 20 EM iterations
    one, _ = fit(make(variant, s, init_params="", tol=0.0, n_iter=1, **prior), X, lengths)
    fit(ours, X, lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, lengths)
    assert ours.n_iter_ == 20 and len(ref.monitor_.history) == 20
    # meaningful: EM is still moving at iteration 20, and moved a lot since iteration 1
    assert ours.history_[20] - ours.history_[19] > 1e-4, np.diff(ours.history_)[-3:]
    for name, value in fitted_params(ours, variant).items():
        first = getattr(one, name)
        assert np.max(np.abs(first - value)) > 1e-3 * np.max(np.abs(value)), name
    for name, value in fitted_params(ours, variant).items():
        desired = ref_covars(ref, variant) if name == "covars_" else getattr(ref, name)
        assert_close(value, desired, 1e-9, name)
    if not with_priors and variant == "categorical":
        # hmmlearn's history[t] is the log-likelihood after t iterations, t = 0..19
        assert_close(ours.history_[:-1], list(ref.monitor_.history), 1e-12, "history_")


# ----------------------------------------------------------------------------
# 2. no underflow on long sequences; scaling vs log space
# ----------------------------------------------------------------------------


def test_categorical_sequence_of_a_million_steps_is_finite():
    est = make("categorical", true_params("categorical"))
    X, _ = est.sample(10 ** 6, random_state=3)
    ll = est.score(X)
    assert np.isfinite(ll) and ll < 0, ll
    # about -1.2 nats per step for this model: nowhere near log(tiny) ~ -708 in total
    assert -2.0 < ll / len(X) < -0.5, ll / len(X)
    P = est.predict_proba(X)
    assert P.shape == (10 ** 6, K) and np.isfinite(P).all() and (P >= 0).all()
    # gamma_t = alpha^_t beta^_t is not renormalised: its row sums carry the
    # backward pass's round-off, which grows with T (~3e-12 at 10^6 steps)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=0, atol=1e-10)
    est.implementation = "log"
    assert est.score(X) == pytest.approx(ll, rel=1e-10)


def test_gaussian_sequence_of_1e5_steps_is_finite():
    est = make("full", true_params("full"))
    X, _ = est.sample(10 ** 5, random_state=4)
    assert X.shape == (10 ** 5, D)
    ll = est.score(X)
    assert np.isfinite(ll) and ll < -1e4, ll
    P = est.predict_proba(X)
    assert P.shape == (10 ** 5, K) and np.isfinite(P).all() and (P >= 0).all()
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_log_and_scaling_implementations_agree_on_1e4_steps(variant):
    X, lengths = sample(variant, [10 ** 4], seed=5)
    scaled = make(variant, start_params(variant))
    logspace = make(variant, start_params(variant), implementation="log")
    assert logspace.score(X, lengths) == pytest.approx(scaled.score(X, lengths), rel=1e-10)
    P_log, P_scaled = logspace.predict_proba(X, lengths), scaled.predict_proba(X, lengths)
    err = np.abs(P_log - P_scaled).max()
    row_err = np.abs(P_log.sum(1) - 1).max()
    # (hmmlearn's log implementation agrees with scaling to ~3e-12 here: it
    # normalises each row of log alpha + log beta, not by the total log p(x))
    assert err <= 1e-10, (f"log-space posteriors differ from the scaled ones by {err:.2e}; "
                          f"their rows sum to 1 only within {row_err:.2e}")
    np.testing.assert_allclose(P_scaled.sum(1), 1.0, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------
# 3. tol = 0 and the history_ contract
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_tol_zero_runs_exactly_n_iter_and_history_is_exact(variant):
    X, lengths = sample(variant, LENGTHS, seed=6)
    # random starts (n_init=3: screening of init_iter=4, then the best continued)
    est, other = fit(make(variant, n_iter=15, tol=0.0, n_init=3, init_iter=4, random_state=0), X, lengths)
    assert not other, [str(w.message) for w in other]
    assert est.n_iter_ == 15 and len(est.history_) == 16, (est.n_iter_, len(est.history_))
    assert not est.converged_
    assert est.history_[-1] == pytest.approx(est.log_posterior(X, lengths), rel=1e-10)
    if variant == "categorical":
        # default priors are all flat: the log-posterior is the log-likelihood
        assert est.history_[-1] == pytest.approx(est.score(X, lengths), rel=1e-10)
    else:
        # default covars_prior = 1e-2 is not flat; with covars_prior = 0 it is
        flat, _ = fit(make(variant, n_iter=15, tol=0.0, n_init=2, init_iter=4, random_state=0, covars_prior=0.0),
                      X, lengths)
        assert len(flat.history_) == 16
        assert flat.history_[-1] == pytest.approx(flat.score(X, lengths), rel=1e-10)


@pytest.mark.parametrize("variant", ["categorical", "full"])
def test_history_t_is_the_objective_after_t_iterations(variant):
    X, lengths = sample(variant, LENGTHS, seed=7)
    s = start_params(variant)
    est, _ = fit(make(variant, s, init_params="", n_iter=12, tol=0.0), X, lengths)
    assert est.history_[0] == pytest.approx(make(variant, s).log_posterior(X, lengths), rel=1e-12)
    for t in (1, 5):
        short, _ = fit(make(variant, s, init_params="", n_iter=t, tol=0.0), X, lengths)
        assert_close(short.history_, est.history_[:t + 1], 1e-12, f"history_ after {t}")
        assert short.log_posterior(X, lengths) == pytest.approx(est.history_[t], rel=1e-12)


def test_n_iter_zero_keeps_the_given_parameters():
    X, lengths = sample("categorical", LENGTHS, seed=8)
    s = start_params("categorical")
    est, _ = fit(make("categorical", s, init_params="", n_iter=0), X, lengths)
    assert est.n_iter_ == 0 and len(est.history_) == 1
    for name, value in s.items():
        np.testing.assert_array_equal(getattr(est, name), value)


# ----------------------------------------------------------------------------
# 4. priors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_priors_history_is_monotone_and_is_the_log_posterior(variant):
    X, lengths = sample(variant, LENGTHS, seed=9)
    prior = priors_for(variant)
    est, other = fit(make(variant, start_params(variant), init_params="", n_iter=25, tol=0.0, **prior), X, lengths)
    assert not other, [str(w.message) for w in other]
    assert_monotone(est.history_)
    lpost = est.log_posterior(X, lengths)
    assert est.history_[-1] == pytest.approx(lpost, rel=1e-10)
    # log_posterior - score is the docstring's log prior at the fitted parameters
    score = est.score(X, lengths)
    expected = log_prior(est, variant, **prior)
    assert abs(expected) > 1e-2, expected                    # the prior term is not negligible
    assert lpost - score == pytest.approx(expected, rel=1e-9, abs=1e-9 * abs(score))
    # and so does it at the start, history_[0]
    at_start = make(variant, start_params(variant), **prior)
    assert est.history_[0] == pytest.approx(at_start.score(X, lengths) + log_prior(at_start, variant, **prior),
                                            rel=1e-10)


@pytest.mark.parametrize("variant,name,value", [
    ("categorical", "startprob_prior", 0.5),
    ("categorical", "transmat_prior", 0.99),
    ("categorical", "emissionprob_prior", 0.5),
    ("categorical", "transmat_prior", np.array([[1.0, 1.0, 0.5]] * K)),
    ("diag", "startprob_prior", 0.0),
    ("full", "transmat_prior", 0.5),
])
def test_dirichlet_prior_below_one_is_refused(variant, name, value):
    X, lengths = sample(variant, [60, 40], seed=10)
    with pytest.raises(ValueError) as info:
        make(variant, n_iter=3, random_state=0, **{name: value}).fit(X, lengths)
    assert_one_sentence(str(info.value))
    assert name in str(info.value)


# ----------------------------------------------------------------------------
# 5. restarts: the tutorial scenario (the acceptance test)
# ----------------------------------------------------------------------------


def test_tutorial_scenario_every_seed_reaches_the_true_loglik():
    acc, acc_true = [], []
    for seed in range(10):
        m = hmm._tutorial(seed)["metrics"]
        ll, ll_true = m["loglik"], m["loglik_true_params"]
        assert np.isfinite(ll) and ll >= ll_true - 1e-10 * abs(ll_true), \
            f"seed {seed}: fitted log-likelihood {ll:.6f} below the true parameters' {ll_true:.6f}"
        acc.append(m["accuracy"])
        acc_true.append(m["accuracy_true_params"])
    assert abs(np.mean(acc) - np.mean(acc_true)) <= 0.02, \
        f"mean Viterbi accuracy {np.mean(acc):.4f} vs {np.mean(acc_true):.4f} under the true parameters"


# ----------------------------------------------------------------------------
# 6. unseen symbols
# ----------------------------------------------------------------------------


def test_unseen_symbol_policy():
    X, lengths = sample("categorical", LENGTHS, seed=11)        # symbols 0..3
    assert X.max() == 3
    est, _ = fit(CategoricalHMM(K, n_features=6, n_iter=10, random_state=0), X, lengths)
    assert est.n_features_ == 6 and est.emissionprob_.shape == (K, 6)
    np.testing.assert_array_equal(est.emissionprob_[:, 4:], 0.0)   # the maximum-likelihood estimate
    Xu = X.copy()
    Xu[160, 0] = 5                                                   # inside the second sequence
    assert est.score(Xu, lengths) == -np.inf
    est.implementation = "log"
    assert est.score(Xu, lengths) == -np.inf
    est.implementation = "scaling"
    assert np.isfinite(est.score(X, lengths))
    for call in (est.predict, est.predict_proba, est.score_samples, est.decode,
                 lambda *a: est.decode(*a, algorithm="map")):
        with pytest.raises(ValueError) as info:
            call(Xu, lengths)
        assert_one_sentence(str(info.value))
    # a smoothing prior gives unseen symbols positive probability
    smooth, _ = fit(CategoricalHMM(K, n_features=6, emissionprob_prior=2.0, n_iter=10, random_state=0), X, lengths)
    assert (smooth.emissionprob_[:, 4:] > 0).all()
    assert np.isfinite(smooth.score(Xu, lengths))
    P = smooth.predict_proba(Xu, lengths)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=0, atol=1e-12)
    # a symbol >= n_features is refused, at fit and after
    Xbig = X.copy()
    Xbig[3, 0] = 6
    for call in (lambda: est.score(Xbig, lengths), lambda: est.predict(Xbig, lengths),
                 lambda: CategoricalHMM(K, n_features=6, n_iter=2, random_state=0).fit(Xbig, lengths),
                 lambda: CategoricalHMM(K, n_features=3, n_iter=2, random_state=0).fit(X, lengths)):
        with pytest.raises(ValueError) as info:
            call()
        assert_one_sentence(str(info.value))
    # n_features=None: the fitted alphabet is max + 1, a larger symbol is out of range
    auto, _ = fit(CategoricalHMM(K, n_iter=2, random_state=0), X, lengths)
    assert auto.n_features_ == 4
    with pytest.raises(ValueError):
        auto.score(Xu, lengths)


# ----------------------------------------------------------------------------
# 7. the covariance floor
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ct", COV_TYPES)
def test_state_collapsing_onto_one_point_keeps_a_floored_covariance(ct):
    rng = np.random.default_rng(12)
    noise = [rng.normal(0.0, 1.0, (40, D)) for _ in range(4)]
    point = np.full((30, D), 7.0)                           # one state sees only this point
    X = np.concatenate([noise[0], point, noise[1], noise[2], point, noise[3]])
    lengths = [70, 80, 70]
    floor = 1e-3
    est, other = fit(GaussianHMM(2, covariance_type=ct, covars_prior=0.0, min_covar=floor, n_iter=30, tol=0.0,
                                 random_state=0), X, lengths)
    assert not other, [str(w.message) for w in other]
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        assert np.isfinite(getattr(est, name)).all(), name
    eig = np.linalg.eigvalsh(est.covars_)
    assert eig.min() >= floor * (1 - 1e-9), eig
    if ct != "tied":
        # the collapsed state sits exactly on the floor (its covariance would be 0)
        k = int(np.argmin(np.linalg.norm(est.means_ - 7.0, axis=1)))
        assert_close(est.means_[k], [7.0, 7.0], 1e-9, "collapsed mean")
        assert_close(eig[k], [floor, floor], 1e-6, "collapsed covariance eigenvalues")
    assert_monotone(est.history_)
    assert np.isfinite(est.history_).all()
    assert est.history_[-1] == pytest.approx(est.log_posterior(X, lengths), rel=1e-10)
    assert np.isfinite(est.score(X, lengths))


# ----------------------------------------------------------------------------
# 8. hostile input
# ----------------------------------------------------------------------------


def _hostile_cases():
    """name -> call; built inside the test so that nothing is fitted at collection."""
    Xc, lengths = sample("categorical", [30, 20, 10], seed=13)
    Xg, _ = sample("diag", [30, 20, 10], seed=13)
    cat = CategoricalHMM(K, n_iter=3, tol=0.0, random_state=0).fit(Xc, lengths)
    gau = GaussianHMM(K, n_iter=3, tol=0.0, random_state=0).fit(Xg, lengths)
    neg, frac, nan = Xc.copy(), Xc.astype(float), Xc.astype(float)
    neg[4, 0], frac[5, 0], nan[6, 0] = -1, 1.5, np.nan
    gnan, ginf = Xg.copy(), Xg.copy()
    gnan[3, 1], ginf[7, 0] = np.nan, -np.inf
    over, short, zero = np.array([30, 20, 11]), np.array([30, 20]), np.array([30, 0, 20, 10])
    bad_rows = np.array([[0.5, 0.5, 0.5], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])

    def given(variant, **bad):
        return make(variant, {**start_params(variant), **bad}, init_params="", n_iter=3)

    return dict([
        ("fit: lengths sum to more than len(X)", lambda: CategoricalHMM(K, n_iter=2).fit(Xc, over)),
        ("fit: lengths sum to less than len(X)", lambda: GaussianHMM(K, n_iter=2).fit(Xg, short)),
        ("score: lengths not summing to len(X)", lambda: cat.score(Xc, over)),
        ("predict: lengths not summing to len(X)", lambda: gau.predict(Xg, short)),
        ("fit: lengths containing 0", lambda: CategoricalHMM(K, n_iter=2).fit(Xc, zero)),
        ("score: lengths containing 0", lambda: gau.score(Xg, zero)),
        ("fit: negative lengths", lambda: CategoricalHMM(K, n_iter=2).fit(Xc, -lengths)),
        ("fit: negative symbol", lambda: CategoricalHMM(K, n_iter=2).fit(neg, lengths)),
        ("fit: non-integer symbol", lambda: CategoricalHMM(K, n_iter=2).fit(frac, lengths)),
        ("fit: NaN symbol", lambda: CategoricalHMM(K, n_iter=2).fit(nan, lengths)),
        ("score: negative symbol", lambda: cat.score(neg, lengths)),
        ("predict: NaN symbol", lambda: cat.predict(nan, lengths)),
        ("fit: NaN in Gaussian X", lambda: GaussianHMM(K, n_iter=2).fit(gnan, lengths)),
        ("fit: inf in Gaussian X", lambda: GaussianHMM(K, n_iter=2).fit(ginf, lengths)),
        ("score: NaN in Gaussian X", lambda: gau.score(gnan, lengths)),
        ("predict_proba: inf in Gaussian X", lambda: gau.predict_proba(ginf, lengths)),
        ("categorical n_components = 0", lambda: CategoricalHMM(0).fit(Xc, lengths)),
        ("Gaussian n_components = -1", lambda: GaussianHMM(-1).fit(Xg, lengths)),
        ("categorical startprob_ not summing to 1",
         lambda: given("categorical", startprob_=np.array([0.5, 0.5, 0.5])).fit(Xc, lengths)),
        ("Gaussian startprob_ not summing to 1",
         lambda: given("full", startprob_=np.array([0.2, 0.2, 0.2])).fit(Xg, lengths)),
        ("categorical transmat_ rows not summing to 1", lambda: given("categorical", transmat_=bad_rows).fit(Xc, lengths)),
        ("Gaussian transmat_ rows not summing to 1", lambda: given("diag", transmat_=bad_rows).fit(Xg, lengths)),
        ("emissionprob_ rows not summing to 1",
         lambda: given("categorical", emissionprob_=np.full((K, M), 0.3)).fit(Xc, lengths)),
        ("categorical predict before fit", lambda: CategoricalHMM(K).predict(Xc, lengths)),
        ("categorical score before fit", lambda: CategoricalHMM(K).score(Xc, lengths)),
        ("Gaussian predict before fit", lambda: GaussianHMM(K).predict(Xg, lengths)),
        ("Gaussian score before fit", lambda: GaussianHMM(K).score(Xg, lengths)),
        ("predict_proba before fit", lambda: GaussianHMM(K, covariance_type="full").predict_proba(Xg)),
    ])


HOSTILE = (
    "fit: lengths sum to more than len(X)", "fit: lengths sum to less than len(X)",
    "score: lengths not summing to len(X)", "predict: lengths not summing to len(X)",
    "fit: lengths containing 0", "score: lengths containing 0", "fit: negative lengths",
    "fit: negative symbol", "fit: non-integer symbol", "fit: NaN symbol", "score: negative symbol",
    "predict: NaN symbol", "fit: NaN in Gaussian X", "fit: inf in Gaussian X", "score: NaN in Gaussian X",
    "predict_proba: inf in Gaussian X", "categorical n_components = 0", "Gaussian n_components = -1",
    "categorical startprob_ not summing to 1", "Gaussian startprob_ not summing to 1",
    "categorical transmat_ rows not summing to 1", "Gaussian transmat_ rows not summing to 1",
    "emissionprob_ rows not summing to 1", "categorical predict before fit", "categorical score before fit",
    "Gaussian predict before fit", "Gaussian score before fit", "predict_proba before fit",
)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_is_refused_in_one_sentence(name):
    cases = _hostile_cases()
    assert set(cases) == set(HOSTILE)
    call = cases[name]
    with pytest.raises(ValueError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            call()
    assert_one_sentence(str(info.value))


@pytest.mark.parametrize("variant", ["categorical", "categorical-float", "full", "spherical"])
def test_inputs_are_never_mutated(variant):
    base = variant.split("-")[0]
    X, lengths = sample(base, LENGTHS, seed=14)
    if variant == "categorical-float":
        X = X.astype(float)
    s = start_params(base)
    saved = [a.copy() for a in (X, lengths, *s.values())]
    est, _ = fit(make(base, s, init_params="", n_iter=5, tol=0.0), X, lengths)
    fit(make(base, n_iter=3, random_state=0), X, lengths)
    est.score(X, lengths), est.predict(X, lengths), est.predict_proba(X, lengths), est.decode(X, lengths)
    est.decode(X, lengths, algorithm="map"), est.score_samples(X, lengths), est.log_posterior(X, lengths)
    est.bic(X, lengths), est.aic(X, lengths)
    est.implementation = "log"
    est.score(X, lengths), est.predict_proba(X, lengths)
    for before, after in zip(saved, (X, lengths, *s.values())):
        np.testing.assert_array_equal(before, after)
        assert before.dtype == after.dtype


# ----------------------------------------------------------------------------
# 9. API
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_sample_shapes_dtypes_and_reproducibility(variant):
    est = make(variant, true_params(variant), random_state=3)
    X, z = est.sample(500)
    if variant == "categorical":
        assert X.shape == (500, 1) and np.issubdtype(X.dtype, np.integer)
        assert X.min() >= 0 and X.max() < M
    else:
        assert X.shape == (500, D) and X.dtype == np.float64 and np.isfinite(X).all()
    assert z.shape == (500,) and np.issubdtype(z.dtype, np.integer) and set(np.unique(z)) <= set(range(K))
    X2, z2 = est.sample(500)                     # the estimator's int random_state: the same draw
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(z, z2)
    X3, z3 = est.sample(500, random_state=8)
    X4, z4 = est.sample(500, random_state=8)
    np.testing.assert_array_equal(X3, X4)
    np.testing.assert_array_equal(z3, z4)
    assert not np.array_equal(z, z3)
    assert est.sample(1)[0].shape == ((1, 1) if variant == "categorical" else (1, D))
    # the sample is scored by the model that drew it
    assert np.isfinite(est.score(X))


def test_sample_honours_currstate():
    est = make("categorical", {**true_params("categorical"), "startprob_": np.array([1.0, 0.0, 0.0])})
    for k in range(K):
        for seed in range(3):
            _, z = est.sample(5, random_state=seed, currstate=k)
            assert z[0] == k, (k, seed, z)
    # without currstate the start follows startprob_ (all mass on state 0)
    assert all(est.sample(3, random_state=s)[1][0] == 0 for s in range(5))
    # transitions after the current state follow transmat_: a state with no way out stays
    sticky = make("categorical", {**true_params("categorical"), "transmat_": np.eye(K)})
    _, z = sticky.sample(50, random_state=0, currstate=2)
    np.testing.assert_array_equal(z, 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_score_is_additive_over_sequences(variant):
    X, lengths = sample(variant, LENGTHS, seed=15)
    est = make(variant, start_params(variant))
    pieces = np.split(X, np.cumsum(lengths)[:-1])
    total = est.score(X, lengths)
    assert total == pytest.approx(sum(est.score(p) for p in pieces), rel=1e-12)
    # and the posteriors of each piece are those of the whole
    assert_close(est.predict_proba(X, lengths), np.concatenate([est.predict_proba(p) for p in pieces]),
                 1e-12, "predict_proba by piece")
    lp = est.decode(X, lengths)[0]
    assert lp == pytest.approx(sum(est.decode(p)[0] for p in pieces), rel=1e-12)
    # lengths=None is one sequence
    assert est.score(X) == pytest.approx(est.score(X, [len(X)]), rel=1e-14)
    assert est.score(X) != pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_covars_reads_as_K_D_D(ct):
    stored = stored_covars(ct, TRUE_FULL)
    est = make(ct, {**true_params(ct), "covars_": stored})
    assert est.covars_.shape == (K, D, D)
    np.testing.assert_array_equal(est.covars_, full_covars(ct, stored))
    X, lengths = sample(ct, LENGTHS, seed=16)
    fitted, _ = fit(make(ct, n_iter=5, random_state=0), X, lengths)
    C = fitted.covars_
    assert C.shape == (K, D, D)
    np.testing.assert_allclose(C, np.swapaxes(C, 1, 2), rtol=0, atol=1e-15)
    assert np.linalg.eigvalsh(C).min() > 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_bic_aic_match_hmmlearn(variant):
    X, lengths = sample(variant, LENGTHS, seed=17)
    est, _ = fit(make(variant, n_iter=5, random_state=0), X, lengths)
    params = fitted_params(est, variant)
    if variant != "categorical":
        params["covars_"] = stored_covars(variant, params["covars_"])
    ref = make_ref(variant, params)
    assert est.score(X, lengths) == pytest.approx(ref.score(X, lengths), rel=1e-12)
    assert est.bic(X, lengths) == pytest.approx(ref.bic(X, lengths), rel=1e-12)
    assert est.aic(X, lengths) == pytest.approx(ref.aic(X, lengths), rel=1e-12)
    n_params = (est.aic(X, lengths) + 2 * est.score(X, lengths)) / 2
    assert n_params == pytest.approx(sum(ref._get_n_fit_scalars_per_param().values()), abs=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_decode_map_is_the_argmax_of_predict_proba(variant):
    X, lengths = sample(variant, LENGTHS, seed=18)
    est = make(variant, start_params(variant))
    P = est.predict_proba(X, lengths)
    lp, path = est.decode(X, lengths, algorithm="map")
    np.testing.assert_array_equal(path, P.argmax(axis=1))
    assert lp == pytest.approx(np.log(P.max(axis=1)).sum(), rel=1e-12)      # documented (differs from hmmlearn)
    est.algorithm = "map"
    np.testing.assert_array_equal(est.predict(X, lengths), path)
    est.algorithm = "viterbi"
    vlp, vpath = est.decode(X, lengths)
    assert vpath.shape == path.shape and vlp <= est.score(X, lengths)


def test_n_features_of_the_constructor_is_not_changed_by_fit():
    X, lengths = sample("categorical", LENGTHS, seed=19)
    auto, _ = fit(CategoricalHMM(K, n_iter=3, random_state=0), X, lengths)
    assert auto.n_features is None and auto.get_params()["n_features"] is None
    assert auto.n_features_ == int(X.max()) + 1 == 4
    wide, _ = fit(CategoricalHMM(K, n_features=7, n_iter=3, random_state=0), X, lengths)
    assert wide.n_features == 7 and wide.n_features_ == 7 and wide.emissionprob_.shape == (K, 7)
    Xg, lg = sample("diag", LENGTHS, seed=19)
    g, _ = fit(GaussianHMM(K, n_iter=3, random_state=0), Xg, lg)
    assert g.n_features_ == D


def test_refit_with_n_features_none_takes_the_new_alphabet():
    # n_features=None means "max(X) + 1 of the data at fit" (the class
    # docstring), and the constructor's value is never changed: a second fit
    # on data with a larger symbol must not be held to the first fit's alphabet
    X, lengths = sample("categorical", LENGTHS, seed=19)
    auto, _ = fit(CategoricalHMM(K, n_iter=3, random_state=0), X, lengths)
    assert auto.n_features_ == 4
    X6 = X.copy()
    X6[::7, 0] = 5
    auto, _ = fit(auto, X6, lengths)
    assert auto.n_features is None and auto.n_features_ == 6 and auto.emissionprob_.shape == (K, 6)
    fresh, _ = fit(CategoricalHMM(K, n_iter=3, random_state=0), X6, lengths)
    np.testing.assert_array_equal(auto.emissionprob_, fresh.emissionprob_)


@pytest.mark.parametrize("variant", VARIANTS)
def test_get_params_set_params_round_trip(variant):
    est = make(variant, random_state=4, n_iter=7, tol=0.0, n_init=2, startprob_prior=2.0)
    p = est.get_params()
    assert p["random_state"] == 4 and p["n_iter"] == 7 and p["n_init"] == 2 and p["startprob_prior"] == 2.0
    clone = type(est)(**p)
    assert clone.get_params().keys() == p.keys()
    for key, value in clone.get_params().items():
        assert np.array_equal(value, p[key]) if isinstance(value, np.ndarray) else value == p[key], key
    assert est.set_params(n_iter=3, tol=0.5) is est
    assert est.get_params()["n_iter"] == 3 and est.get_params()["tol"] == 0.5
    est.set_params(**p)
    assert est.get_params() == p
    with pytest.raises(ValueError) as info:
        est.set_params(no_such_parameter=1)
    assert_one_sentence(str(info.value))
    # a clone fits exactly as the original
    X, lengths = sample(variant, LENGTHS, seed=20)
    a, _ = fit(est, X, lengths)
    b, _ = fit(clone, X, lengths)
    for name, value in fitted_params(a, variant).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_random_state_gives_bit_identical_fits(variant):
    X, lengths = sample(variant, LENGTHS, seed=21)
    a, _ = fit(make(variant, n_iter=10, random_state=5), X, lengths)
    b, _ = fit(make(variant, n_iter=10, random_state=5), X, lengths)
    np.testing.assert_array_equal(a.history_, b.history_)
    for name, value in fitted_params(a, variant).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)
    # refitting the same estimator gives the same fit again
    c, _ = fit(a, X, lengths)
    np.testing.assert_array_equal(c.history_, b.history_)
    c2, _ = fit(make(variant, n_iter=10, random_state=6), X, lengths)
    assert not np.array_equal(c2.history_, b.history_)


# ----------------------------------------------------------------------------
# 10. fuzzing: score against brute-force enumeration (bounded)
# ----------------------------------------------------------------------------


def brute_force_loglik(logpi, logA, logB, x):
    """log p(x) by enumerating all K^T state paths."""
    n_states, T = len(logpi), len(x)
    paths = np.array(list(itertools.product(range(n_states), repeat=T)))
    lp = logpi[paths[:, 0]] + logB[paths, x[None, :]].sum(1)
    if T > 1:
        lp = lp + logA[paths[:, :-1], paths[:, 1:]].sum(1)
    return logsumexp(lp), paths, lp


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), n_states=st.integers(1, 4), n_symbols=st.integers(1, 5),
       lengths=st.lists(st.integers(1, 30), min_size=1, max_size=4))
def test_fuzz_score_equals_brute_force_or_hmmlearn(seed, n_states, n_symbols, lengths):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(n_states))
    A = rng.dirichlet(np.ones(n_states), size=n_states)
    B = rng.dirichlet(np.ones(n_symbols), size=n_states)
    X = rng.integers(0, n_symbols, (sum(lengths), 1))
    est = CategoricalHMM(n_states, n_features=n_symbols)
    est.startprob_, est.transmat_, est.emissionprob_ = pi, A, B
    ref = hh.CategoricalHMM(n_states, n_features=n_symbols, implementation="log")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = pi, A, B
    expected, gamma_ref = 0.0, []
    for x in np.split(X, np.cumsum(lengths)[:-1]):
        if len(x) <= 6:
            ll, paths, lp = brute_force_loglik(np.log(pi), np.log(A), np.log(B), x[:, 0])
            w = np.exp(lp - ll)
            gamma_ref.append(np.stack([np.bincount(paths[:, t], weights=w, minlength=n_states)
                                       for t in range(len(x))]))
        else:
            ll = ref.score(x)
            gamma_ref.append(ref.predict_proba(x))
        expected += ll
    got = est.score(X, lengths)
    assert got == pytest.approx(expected, rel=1e-10), (got, expected)
    P = est.predict_proba(X, lengths)
    np.testing.assert_allclose(P, np.concatenate(gamma_ref), rtol=0, atol=1e-10)
    est.implementation = "log"
    assert est.score(X, lengths) == pytest.approx(expected, rel=1e-10)


# ----------------------------------------------------------------------------
# regressions from the independent review of the kernels
# ----------------------------------------------------------------------------


def test_scaled_recursion_underflow_falls_back_to_log_space():
    # left-to-right model; an outlier at x=60 inside the state-0 segment makes
    # every reachable state's scaled emission underflow (c_t = 0) although the
    # sequence has positive probability: the scaled path must agree with log space
    r = np.random.default_rng(0)
    X = np.r_[r.normal(0, 1, 50), 60.0, r.normal(0, 1, 49), r.normal(60, 1, 100)][:, None]
    fits = {}
    for impl in ("scaling", "log"):
        m = GaussianHMM(2, init_params="", params="m", n_iter=20, tol=0, implementation=impl)
        m.startprob_ = np.array([1.0, 0.0])
        m.transmat_ = np.array([[0.99, 0.01], [0.0, 1.0]])
        m.means_, m.covars_ = np.array([[1.0], [59.0]]), np.array([[1.0], [1.0]])
        fits[impl] = m.fit(X)
    s, l = fits["scaling"], fits["log"]
    assert np.isfinite(s.score(X))
    np.testing.assert_allclose(s.history_, l.history_, rtol=1e-10)
    np.testing.assert_allclose(s.means_, l.means_, rtol=1e-10)
    np.testing.assert_allclose(s.predict_proba(X), l.predict_proba(X), rtol=0, atol=1e-10)


def test_subnormal_start_probability_gives_finite_posteriors():
    m = CategoricalHMM(2, n_features=2)
    m.startprob_ = np.array([1.0, 1e-310])
    m.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    m.emissionprob_ = np.array([[1.0, 0.0], [0.0, 1.0]])
    X = np.array([[1]])
    proba = m.predict_proba(X)
    assert np.isfinite(m.score(X)) and np.array_equal(proba, [[0.0, 1.0]])


@pytest.mark.parametrize("ct", ["full", "tied"])
@pytest.mark.parametrize("scale", [1e3, 1e6, 1e8])
def test_covariance_floor_holds_on_collinear_data_of_any_scale(ct, scale):
    r = np.random.default_rng(0)
    t = r.normal(size=400)
    X = np.c_[t, t * np.sqrt(2)] * scale          # exactly collinear: the floor is active
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)          # a reported fall fails the test
        m = GaussianHMM(2, covariance_type=ct, n_iter=20, random_state=0, n_init=2, covars_prior=0.0).fit(X)
    eig = np.linalg.eigvalsh(m.covars_)
    # the floor: min_covar, or 16 D eps sum_d range_d^2 when that is larger (module docstring)
    spread = ((X.max(0) - X.min(0)) ** 2).sum()
    floor = max(m.min_covar, 16 * 2 * np.finfo(float).eps * spread)
    # monotone up to the round-off of a log-density with condition number kappa (D kappa eps)
    rtol = max(1e-10, 2 * (eig.max(axis=1) / eig.min(axis=1)).max() * np.finfo(float).eps)
    assert np.isfinite(m.history_).all() and np.diff(m.history_).min() >= -rtol * np.abs(m.history_).max()
    # eigvalsh itself is accurate to ~eps * lam_max
    assert eig.min() >= floor - 4 * np.finfo(float).eps * eig.max()


def test_state_with_no_posterior_mass_keeps_its_parameters():
    # state 1 sits 38 sd away from all data: its occupancy underflows to ~0
    X = np.random.default_rng(0).normal(0, 0.1, (50, 1))
    m = GaussianHMM(2, covariance_type="diag", init_params="", params="mc", n_iter=1, tol=0)
    m.startprob_, m.transmat_ = np.array([0.5, 0.5]), np.array([[0.5, 0.5], [0.5, 0.5]])
    m.means_, m.covars_ = np.array([[0.0], [38.4]]), np.array([[1.0], [1.0]])
    m.fit(X)
    assert np.isfinite(m.covars_).all() and m.means_[1, 0] == 38.4 and m._covars_[1, 0] == 1.0


def test_refit_takes_sizes_from_the_new_data():
    est = CategoricalHMM(2, n_iter=2, random_state=0).fit([[0], [1], [2], [3], [0], [1]])
    est.set_params(n_features=8).fit([[0], [1], [2], [3], [4], [5]])
    assert est.n_features_ == 8
    g = GaussianHMM(2, n_iter=2, random_state=0).fit(np.random.default_rng(0).normal(size=(40, 2)))
    g.fit(np.random.default_rng(1).normal(size=(40, 3)))
    assert g.means_.shape == (2, 3)


@pytest.mark.parametrize("make, fit_X", [
    (lambda: GaussianHMM(2, min_covar=0.0), "gauss"),
    (lambda: GaussianHMM(2, means_weight="a"), "gauss"),
    (lambda: GaussianHMM(2, covars_prior="a"), "gauss"),
    (lambda: CategoricalHMM(2, n_features=2.0), "cat"),
    (lambda: CategoricalHMM(2), "huge_symbol"),
    (lambda: CategoricalHMM(2), "float_1e30"),
    (lambda: CategoricalHMM(2), "uint64_max"),
])
def test_more_hostile_settings_are_refused_in_one_sentence(make, fit_X):
    X = {"gauss": np.random.default_rng(0).normal(size=(30, 2)),
         "cat": np.array([[0], [1], [1], [0]]),
         "huge_symbol": np.array([[0], [10 ** 12]]),
         "float_1e30": np.array([[0.0], [1e30]]),
         "uint64_max": np.array([[0], [2 ** 64 - 1]], dtype=np.uint64)}[fit_X]
    with pytest.raises(ValueError) as info:
        make().fit(X)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and len(msg) < 300


def test_restarts_run_only_when_a_start_can_differ(capsys):
    X = np.random.default_rng(0).normal(size=(200, 2))
    g = GaussianHMM(2, init_params="stc", n_iter=3, n_init=5, verbose=True)
    g.means_ = np.array([[-1.0, 0.0], [1.0, 0.0]])
    g.fit(X)
    assert capsys.readouterr().out.count("start ") == 1      # means given: every start is the same
    GaussianHMM(2, n_iter=3, n_init=5, verbose=True, random_state=0).fit(X)
    assert capsys.readouterr().out.count("start ") == 5


def test_monitor_has_hmmlearns_fields():
    X = np.random.default_rng(0).integers(0, 3, (300, 1))
    m = CategoricalHMM(2, n_iter=50, tol=1e-4, random_state=0).fit(X)
    assert m.monitor_.converged == m.converged_ and m.monitor_.iter == m.n_iter_
    assert list(m.monitor_.history) == list(m.history_[-2:])


def _left_to_right():
    est = GaussianHMM(2, covariance_type="diag", init_params="", n_iter=20, tol=0, n_init=1)
    est.startprob_, est.transmat_ = np.array([1.0, 0.0]), np.array([[0.5, 0.5], [0.0, 1.0]])
    est.means_, est.covars_ = np.array([[0.0], [100.0]]), np.array([[1.0], [1.0]])
    return est


def test_a_flushed_state_that_dominates_later_is_recovered_in_log_space():
    # t=1 favours state 1 by 750 nats (state 0's scaled emission is flushed to 0),
    # t=2..4 favour state 0 by 400 nats each: the true path stays in state 0
    X = np.array([[0.0], [57.5], [46.0], [46.0], [46.0]])
    scaled, logs = _left_to_right(), _left_to_right().set_params(implementation="log")
    np.testing.assert_allclose(scaled.score(X), logs.score(X), rtol=1e-12)
    np.testing.assert_allclose(scaled.predict_proba(X), logs.predict_proba(X), rtol=0, atol=1e-12)
    Xr = np.tile(X, (20, 1))
    lengths = np.full(20, 5)
    np.testing.assert_allclose(scaled.fit(Xr, lengths).history_, logs.fit(Xr, lengths).history_, rtol=1e-10)


class _OneBadStep(GaussianHMM):
    """An M-step that moves the means by 0.02 standard deviations at iteration 15 (a defect to report)."""

    def _m_step(self, stats):
        super()._m_step(stats)
        self._steps = getattr(self, "_steps", 0) + 1
        if self._steps == 15:
            self.means_ = self.means_ + 0.02 * np.sqrt(self._covars_)


@pytest.mark.parametrize("scales", [(1.0, 1.0), (1e-3, 1e4)])
def test_a_real_fall_is_reported_whatever_the_feature_scales(scales):
    # diag log-densities are computed one dimension at a time: their round-off
    # does not grow with the ratio of the variances, so neither may the fall rule
    rng = np.random.default_rng(0)
    z = (np.arange(6000) // 50) % 2
    X = (np.array([[0.0, 0.0], [3.0, 3.0]])[z] + rng.standard_normal((6000, 2))) * np.array(scales)
    est = _OneBadStep(2, covariance_type="diag", n_iter=20, tol=0, n_init=1, random_state=0,
                      min_covar=1e-12, covars_prior=0.0)
    with pytest.warns(RuntimeWarning, match="fell by more than round-off"):
        est.fit(X, np.full(60, 100))


def test_categorical_statistics_do_not_depend_on_the_chunking(monkeypatch):
    X = np.random.default_rng(0).integers(0, 7, (20_000, 1))
    est = CategoricalHMM(3, n_iter=2, tol=0, random_state=0).fit(X)
    many = est._sufficient_statistics(X)["obs"]
    monkeypatch.setattr(hmm, "_STATS_BUDGET", 1)          # one chunk of all rows
    one = est._sufficient_statistics(X)["obs"]
    gamma = est.predict_proba(X)
    ref = np.stack([np.bincount(X[:, 0], weights=gamma[:, k], minlength=7) for k in range(3)])
    np.testing.assert_allclose(many, ref, rtol=1e-12)
    np.testing.assert_allclose(one, ref, rtol=1e-12)
