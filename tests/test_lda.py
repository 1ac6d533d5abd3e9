"""LDA-specific tests for models/lda.py (LatentDirichletAllocation).

The generic checks (monotone history, recovery, the module's own oracles,
thread-count determinism, the emref_hostile / emref_edge lists) are run by
the harness; these tests cover what is particular to smoothed LDA by
variational EM with scikit-learn's API:

1. the bound: ours equals scikit-learn's ``_approx_bound`` at the same
   (lambda, alpha, eta, gamma), and ``score`` equals scikit-learn's when both
   converge every document's gamma tightly;
2. monotonicity in detail: the bound never falls across an M-step (new
   lambda and priors, old gammas) nor across an E-step, in total and per
   document, with and without learn_priors;
3. the history_ / tol contract (tol=0 runs exactly max_iter iterations and
   history_[-1] is the bound at the returned state);
4. the learn_priors updates maximise their documented objectives
   (against scipy.optimize.minimize);
5. input forms (CSR, CSC, COO, dense int / float, token-id lists) give
   bit-identical fits, inputs are never mutated, empty documents get gamma =
   alpha exactly;
6. hostile input is refused with a one-sentence ValueError;
7. the public API (transform, fit_transform, perplexity, top_words,
   topic_word_, get/set_params, reproducibility, n_init);
8. the tutorial scenario of issue 4 on seeds 0-9;
9. held-out perplexity against scikit-learn's batch LDA;
10. a bounded fuzz: the bound at the fitted state equals every ELBO term
    evaluated in plain numpy with explicit phi.

Tolerances are of two kinds only, as in tests/test_gmm.py and test_hmm.py:

* round-off: the same quantity computed in a different order of operations
  (numba kernels with shifted exponentials vs numpy/scipy with explicit phi or
  logsumexp). One evaluation of the bound is a sum of ~N terms of size
  |log p| ~ 10, so it agrees to ~1e-14 relative; we use 1e-10 relative (1e-12
  where the very same kernels compute both sides). Where terms of opposite
  sign cancel (tiny fuzz corpora), "relative" is relative to the sum of the
  absolute values of the terms, the scale of the round-off. The bugs these
  tests target (a missing prior term, a wrong digamma argument, a
  one-iteration-late history, a lost document) are O(1e-3) or larger. The
  prior updates are compared with a generic optimiser to 1e-6 relative in
  alpha / eta (the optimiser's own stopping accuracy), and their objective
  values to round-off;
* optimisation, not sampling: the held-out comparison (9) uses fixed seeds
  on which the two fits reach clearly different local optima (a separation
  of 3-5 %, measured), and no slack is granted; the tutorial (8) is the
  issue's acceptance criterion (all 3 topics on every seed).

Everything runs on one numba thread (bit-identity across thread counts is the
harness's business) and on small corpora.
"""

import warnings

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import gammaln, logsumexp, polygamma, psi
from sklearn.base import clone
from sklearn.decomposition import LatentDirichletAllocation as SkLDA
from sklearn.decomposition._lda import _dirichlet_expectation_2d

from harness.checks import assert_monotone, assert_one_sentence
import models.lda as lda
from models.lda import ConvergenceWarning, LatentDirichletAllocation, NotFittedError


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_numba_thread():
    """Run this module on one numba thread (most corpora here are one chunk of
    64 documents, which runs on one thread anyway), then restore the count."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def corpus(seed, D=60, K=3, V=40, lengths=None):
    """(CSR counts, true topics): D documents of the generative process
    (theta ~ Dir(0.3), topics from emref_truth); lengths (lo, hi) draws each
    N_d uniformly, otherwise emref_sample's 20 + Poisson(40)."""
    rng = np.random.default_rng(seed)
    beta = lda.emref_truth("batch", rng, n_components=K, n_words=V)["topic_word"]
    if lengths is None:
        return lda.emref_sample("batch", {"topic_word": beta}, D, rng)[0], beta
    theta = rng.dirichlet(np.full(K, 0.3), size=D)
    rows = [rng.multinomial(n, theta[d] @ beta) for d, n in enumerate(rng.integers(*lengths, size=D))]
    return sp.csr_matrix(np.asarray(rows, dtype=np.float64)), beta


def fit(est, X):
    """Fit, ignoring ConvergenceWarning only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X)


def at_state(lam, alpha, eta):
    """An estimator holding the given lambda (K, V), alpha (K,) and eta, as after fit."""
    lam = np.array(lam, dtype=np.float64)
    est = LatentDirichletAllocation(lam.shape[0])
    est.components_ = lam
    est.doc_topic_prior_ = np.array(alpha, dtype=np.float64).reshape(lam.shape[0])
    est.topic_word_prior_ = float(eta)
    est.n_features_in_ = lam.shape[1]
    return est


def sk_at_state(est, **kw):
    """scikit-learn's LDA holding our fitted lambda and (symmetric) priors."""
    K, V = est.components_.shape
    alpha = np.asarray(est.doc_topic_prior_)
    assert np.all(alpha == alpha[0]), "scikit-learn has a symmetric doc_topic_prior only"
    sk = SkLDA(n_components=K, learning_method="batch", **kw)
    sk.components_ = est.components_.copy()
    sk.exp_dirichlet_component_ = np.exp(_dirichlet_expectation_2d(sk.components_))
    sk.doc_topic_prior_ = float(alpha[0])
    sk.topic_word_prior_ = float(est.topic_word_prior_)
    sk.n_features_in_ = V
    sk.random_state_ = np.random.RandomState(0)
    sk.n_batch_iter_ = 1
    sk.n_iter_ = 1
    return sk


def elbo_terms(X, lam, alpha, eta, gamma, phi=None):
    """The module docstring's ELBO in plain numpy/scipy with explicit phi
    (phi*(gamma, lambda) unless a phi (D, V, K) is given).

    Returns (per-document parts (D,), the topic part, the sum of the absolute
    values of all the terms: the scale of round-off). A document's part is
    sum_w n_dw sum_k phi (E log theta + E log beta - log phi) + its theta
    terms; for a document of length zero at gamma_d = alpha this is 0.
    """
    Xd = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    lam, gamma = np.asarray(lam, dtype=np.float64), np.asarray(gamma, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    K, V = lam.shape
    elogb = psi(lam) - psi(lam.sum(1))[:, None]                     # (K, V)
    elogt = psi(gamma) - psi(gamma.sum(1))[:, None]                 # (D, K)
    logits = elogt[:, None, :] + elogb.T[None, :, :]                 # (D, V, K)
    if phi is None:
        logphi = logits - logsumexp(logits, axis=-1, keepdims=True)
        phi = np.exp(logphi)
    else:
        logphi = np.log(phi)
    words = Xd[:, :, None] * phi * (logits - logphi)                 # n phi (E log theta + E log beta - log phi)
    theta = np.stack([np.full(len(gamma), gammaln(alpha.sum())), -np.full(len(gamma), gammaln(alpha).sum()),
                      ((alpha - gamma) * elogt).sum(1), gammaln(gamma).sum(1), -gammaln(gamma.sum(1))], 1)
    docs = words.sum((1, 2)) + theta.sum(1)
    topic = np.array([K * gammaln(V * eta), -K * V * gammaln(eta), ((eta - lam) * elogb).sum(),
                      gammaln(lam).sum(), -gammaln(lam.sum(1)).sum()])
    scale = np.abs(words).sum() + np.abs(theta).sum() + np.abs(topic).sum()
    return docs, float(topic.sum()), float(scale)


def assert_rel(got, want, rtol, what, scale=None):
    scale = abs(want) if scale is None else scale
    err = abs(got - want)
    assert err <= rtol * scale, f"{what}: got {got!r}, want {want!r} (|diff| {err:.3e} > {rtol:.0e} x {scale:.3e})"


def tokens_of(dense):
    """The token-id-list form of a dense count matrix (ids in word order)."""
    return [list(np.repeat(np.arange(dense.shape[1]), dense[d].astype(np.int64))) for d in range(len(dense))]


# ----------------------------------------------------------------------------
# 1. the bound against scikit-learn
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [True, False])
def test_bound_at_equals_sklearn_approx_bound(sparse):
    X, _ = corpus(0, D=60)
    est = fit(LatentDirichletAllocation(3, doc_topic_prior=0.3, topic_word_prior=0.2, max_iter=20,
                                        random_state=0), X)
    sk = sk_at_state(est)
    Xin = X if sparse else X.toarray()
    rng = np.random.default_rng(1)
    for name, gamma in (("training gamma", est._train_gamma),
                        ("random gamma", rng.gamma(2.0, 5.0, size=est._train_gamma.shape) + 0.05)):
        ours = est._bound_at(Xin, gamma)
        ref = sk._approx_bound(Xin, gamma, sub_sampling=False)
        assert_rel(ours, ref, 1e-10, f"bound at the {name}")
    assert_rel(est.history_[-1], sk._approx_bound(Xin, est._train_gamma, sub_sampling=False), 1e-10,
               "history_[-1] against scikit-learn at the training gamma")


def test_score_equals_sklearn_score_with_tightly_converged_gammas():
    # Long documents (150-250 words) of well separated topics, where each
    # document's bound has a single maximum: both E-steps reach it from their
    # different starts (sklearn: gamma = 1; ours: alpha + N_d / K) when iterated
    # to a mean change of 1e-13 (measured: scores agree to 5e-13 relative).
    X, _ = corpus(3, D=40, lengths=(150, 250))
    est = fit(LatentDirichletAllocation(3, doc_topic_prior=0.3, topic_word_prior=0.2, max_iter=30,
                                        random_state=0), X)
    est.set_params(mean_change_tol=1e-13, max_doc_update_iter=100_000)
    sk = sk_at_state(est, mean_change_tol=1e-13, max_doc_update_iter=100_000)
    assert_rel(est.score(X), sk.score(X), 1e-10, "score against scikit-learn's score")
    # and the bound at OUR gammas, through scikit-learn's formula
    _, gamma, _ = est._infer(X)
    assert_rel(est.score(X), sk._approx_bound(X, gamma, sub_sampling=False), 1e-10,
               "score against scikit-learn's _approx_bound at our gamma")
    np.testing.assert_allclose(est.transform(X), sk.transform(X), rtol=0, atol=1e-7,
                               err_msg="normalised gammas of the same unique optimum")


# ----------------------------------------------------------------------------
# 2. monotonicity across E-steps and M-steps separately
# ----------------------------------------------------------------------------


def traced_fit(monkeypatch, est, X):
    """Fit, recording every E-step: (gamma array of the run, the bound at the
    E-step's lambda and priors with the PREVIOUS gammas (None at a start),
    the previous gammas, the bound after the E-step, the new gammas, lambda,
    alpha, eta)."""
    records = []
    original = LatentDirichletAllocation._bound

    def spy(self, corpus_, lam, gamma, alpha, eta, eb_pack, warm, rng):
        old = gamma.copy() if warm else None
        before = at_state(lam, alpha, eta)._bound_at(X, old) if warm else None
        out = original(self, corpus_, lam, gamma, alpha, eta, eb_pack, warm, rng)
        records.append(dict(run=gamma, before=before, old=old, after=out[0], new=gamma.copy(),
                            lam=np.array(lam), alpha=np.array(alpha), eta=float(eta)))
        return out

    monkeypatch.setattr(LatentDirichletAllocation, "_bound", spy)
    fit(est, X)
    monkeypatch.undo()
    runs = []
    for r in records:
        for run in runs:
            if run[0]["run"] is r["run"]:
                run.append(r)
                break
        else:
            runs.append([r])
    return runs


@pytest.mark.parametrize("learn_priors", [False, True])
@pytest.mark.parametrize("n_init", [1, 3])
def test_bound_rises_across_every_m_step_and_every_e_step(monkeypatch, learn_priors, n_init):
    # plain EM (overrelax=False): every E-step follows a plain M-step
    X, _ = corpus(5, D=40)
    Xd = X.toarray()
    est = LatentDirichletAllocation(3, learn_priors=learn_priors, max_iter=25, tol=0.0, n_init=n_init,
                                    init_iter=5, random_state=2, overrelax=False)
    runs = traced_fit(monkeypatch, est, X)
    assert len(runs) == n_init, f"{len(runs)} runs traced, expected {n_init}"
    chains = [[r["after"] for r in run] for run in runs]
    assert any(np.array_equal(c, est.history_) for c in chains), "history_ is none of the traced runs"
    for i, run in enumerate(runs):
        assert run[0]["before"] is None and all(r["before"] is not None for r in run[1:]), \
            f"run {i}: only its first E-step may start cold"
        for t in range(1, len(run)):
            prev, m_step, e_step = run[t - 1]["after"], run[t]["before"], run[t]["after"]
            assert m_step >= prev - 1e-10 * abs(prev), \
                f"run {i}, M-step {t}: the bound fell from {prev!r} to {m_step!r} (old gammas)"
            assert e_step >= m_step - 1e-10 * abs(m_step), \
                f"run {i}, E-step {t}: the bound fell from {m_step!r} to {e_step!r}"
            if t % 6 == 1:
                # per document (the docstring: no document's bound ever decreases), in plain numpy
                r = run[t]
                d_old, _, _ = elbo_terms(Xd, r["lam"], r["alpha"], r["eta"], r["old"])
                d_new, _, _ = elbo_terms(Xd, r["lam"], r["alpha"], r["eta"], r["new"])
                worst = int(np.argmin(d_new - d_old + 1e-10 * np.abs(d_old)))
                assert d_new[worst] >= d_old[worst] - 1e-10 * abs(d_old[worst]), \
                    f"run {i}, E-step {t}: document {worst}'s bound fell from {d_old[worst]!r} to {d_new[worst]!r}"
    assert_monotone(est.history_)


def traced_overrelaxed_fit(monkeypatch, est, X):
    """Fit, recording each iteration's M-step and E-steps: the statistics of
    the M-step (from a spy on _topic_stats), every E-step run through _bound
    ("fresh": lambda, priors, gammas before and after, the bound) and every
    E-step that _em runs directly ("fallback": the plain step after a
    rejected over-relaxed one, with its lambda, gammas and starts)."""
    steps = []
    inside = []
    stats_orig = LatentDirichletAllocation._topic_stats
    bound_orig = LatentDirichletAllocation._bound
    e_orig = LatentDirichletAllocation._e_step

    def stats_spy(self, *a):
        out = stats_orig(self, *a)
        steps.append(dict(stats=out.copy(), e_steps=[]))
        return out

    def bound_spy(self, corpus_, lam, gamma, alpha, eta, eb_pack, warm, rng):
        old = gamma.copy()
        inside.append(True)
        try:
            out = bound_orig(self, corpus_, lam, gamma, alpha, eta, eb_pack, warm, rng)
        finally:
            inside.pop()
        if steps:
            steps[-1]["e_steps"].append(dict(kind="fresh", lam=np.array(lam), alpha=np.array(alpha),
                                             eta=float(eta), old=old, new=gamma.copy(), after=out[0]))
        return out

    def e_spy(self, corpus_, lam, gamma, alpha, eb_pack, max_doc_iter=None, warm=False, start=None):
        old = gamma.copy()
        out = e_orig(self, corpus_, lam, gamma, alpha, eb_pack, max_doc_iter, warm, start)
        if steps and not inside:            # called by _em itself, not through _bound
            steps[-1]["e_steps"].append(dict(kind="fallback", lam=np.array(lam), alpha=np.array(alpha),
                                             old=old, new=gamma.copy(), start=np.array(start), warm=warm))
        return out

    with monkeypatch.context() as m:
        m.setattr(LatentDirichletAllocation, "_topic_stats", stats_spy)
        m.setattr(LatentDirichletAllocation, "_bound", bound_spy)
        m.setattr(LatentDirichletAllocation, "_e_step", e_spy)
        fit(est, X)
    return steps


def classify(steps, history):
    """Per iteration: ("plain" | "kept" | "rejected", s, record) with s the over-relaxation
    step of a tried lambda (log lambda_try - log lambda = s (log lambda_em - log lambda))."""
    out = []
    lam_prev = None
    for t, step in enumerate(steps):
        tries = [e for e in step["e_steps"] if e["kind"] == "fresh"]
        falls = [e for e in step["e_steps"] if e["kind"] == "fallback"]
        assert len(tries) == 1 and len(falls) <= 1, f"iteration {t + 1}: {len(tries)} tries, {len(falls)} fallbacks"
        lam_em = tries[0]["eta"] + step["stats"]
        if np.array_equal(tries[0]["lam"], lam_em):
            assert not falls
            out.append(("plain", 1.0, tries[0]))
        else:
            moved = np.abs(np.log(lam_em / lam_prev)) > 1e-6
            ratio = np.log(tries[0]["lam"][moved] / lam_prev[moved]) / np.log(lam_em / lam_prev)[moved]
            s = float(np.median(ratio))
            np.testing.assert_allclose(ratio, s, rtol=1e-6,
                                       err_msg=f"iteration {t + 1}: lambda_try is not lambda (lambda_em / lambda)^s")
            out.append(("rejected" if falls else "kept", s, falls[0] if falls else tries[0]))
            if falls:
                np.testing.assert_array_equal(falls[0]["lam"], lam_em, err_msg="the fallback is the plain step")
        lam_prev = out[-1][2]["lam"]
    return out


@pytest.mark.parametrize("learn_priors", [False, True])
@pytest.mark.parametrize("growth", [lda.OVERRELAX_GROWTH, 40.0])
def test_overrelaxed_steps_are_kept_only_when_the_bound_does_not_fall(monkeypatch, learn_priors, growth):
    # overrelax=True: an iteration either keeps lambda_try = lambda (lambda_em / lambda)^s with a
    # bound >= the previous one, or rejects it and takes lambda_em, whose E-step keeps each
    # document at a bound >= its bound at its previous gamma. growth=40 forces rejections.
    monkeypatch.setattr(lda, "OVERRELAX_GROWTH", growth)
    X, _ = corpus(5, D=40)
    Xd = X.toarray()
    est = LatentDirichletAllocation(3, learn_priors=learn_priors, max_iter=25, tol=0.0, n_init=1,
                                    random_state=2)
    steps = traced_overrelaxed_fit(monkeypatch, est, X)
    assert_monotone(est.history_)
    kinds = classify(steps, est.history_)
    assert len(kinds) == 25
    h = est.history_
    for t, (kind, s, rec) in enumerate(kinds):
        # the step schedule: plain first, s = growth after a plain step, s *= growth after a kept
        # step whose bound rose (at most OVERRELAX_MAX_STEP), a plain step after a rejection
        prev = kinds[t - 1] if t else None
        if prev is None or prev[0] == "rejected":
            assert kind == "plain", f"iteration {t + 1}: {kind} after {prev and prev[0]}"
        elif prev[0] == "plain":
            # (plain again only when lambda_try would leave the range a plain step can reach, x1000)
            assert kind == "plain" or s == pytest.approx(growth, rel=1e-6)
        elif prev[0] == "kept" and h[t] > h[t - 1]:
            assert kind == "plain" or s == pytest.approx(min(prev[1] * growth, lda.OVERRELAX_MAX_STEP), rel=1e-6)
        if kind == "kept":
            assert rec["after"] >= h[t], f"iteration {t + 1}: an over-relaxed step was kept although the bound fell"
            assert h[t + 1] == rec["after"], "history_ is the kept step's bound"
        if kind == "rejected":
            tried = [e for e in steps[t]["e_steps"] if e["kind"] == "fresh"][0]
            assert tried["after"] < h[t] and rec["warm"]
            np.testing.assert_array_equal(rec["old"], tried["old"],
                                          err_msg="the fallback E-step must compare with the previous gammas")
            np.testing.assert_array_equal(rec["start"], tried["new"],
                                          err_msg="the fallback E-step starts from the rejected step's gammas")
            d_old, _, _ = elbo_terms(Xd, rec["lam"], rec["alpha"], tried["eta"], rec["old"])
            d_new, _, _ = elbo_terms(Xd, rec["lam"], rec["alpha"], tried["eta"], rec["new"])
            assert (d_new >= d_old - 1e-10 * np.abs(d_old)).all(), \
                f"iteration {t + 1}: a document's bound fell in the fallback E-step"
            st = at_state(rec["lam"], rec["alpha"], tried["eta"])
            assert_rel(h[t + 1], st._bound_at(X, rec["new"]), 1e-12, "history_ after a rejected step")
    counts = {k: sum(1 for c in kinds if c[0] == k) for k in ("plain", "kept", "rejected")}
    if growth > 10:
        assert counts["rejected"] > 0, f"no over-relaxed step of 40x was rejected: {counts}"
    else:
        assert counts["kept"] > 0, f"no over-relaxed step was ever kept: {counts}"


def test_overrelaxation_off_is_plain_em_and_on_reaches_a_higher_bound(monkeypatch):
    # overrelax=False: every iteration is one plain step (lambda_em, one E-step); overrelax=True
    # takes a different path and, on this corpus, a higher bound after 15 iterations
    X, _ = corpus(7, D=120, K=4, V=60)
    plain = LatentDirichletAllocation(4, max_iter=15, tol=0.0, n_init=1, random_state=3, overrelax=False)
    kinds = classify(traced_overrelaxed_fit(monkeypatch, plain, X), plain.history_)
    assert [k for k, _, _ in kinds] == ["plain"] * 15
    over = fit(LatentDirichletAllocation(4, max_iter=15, tol=0.0, n_init=1, random_state=3), X)
    assert plain.history_[1] == over.history_[1], "the first step is a plain step either way"
    assert over.history_[-1] > plain.history_[-1]


def test_only_a_plain_step_can_converge(monkeypatch):
    # with a tol so loose that any gain passes, fit must still stop on a plain step: a kept
    # over-relaxed step's small gain says nothing about convergence
    X, _ = corpus(5, D=40)
    for seed in range(4):
        est = LatentDirichletAllocation(3, max_iter=60, tol=0.5, n_init=1, random_state=seed)
        kinds = classify(traced_overrelaxed_fit(monkeypatch, est, X), est.history_)
        assert est.converged_ and kinds[-1][0] in ("plain", "rejected"), [k for k, _, _ in kinds]


@pytest.mark.parametrize("learn_priors", [False, True])
def test_em_continues_from_a_saved_state_bit_for_bit(learn_priors):
    # the run state (including the over-relaxation step) carries across _em calls, as in the
    # n_init screening: 4 + 7 iterations equal 11
    X, _ = corpus(5, D=40)
    est = LatentDirichletAllocation(3, learn_priors=learn_priors, tol=0.0, n_init=1, random_state=4)
    est._check_hyperparameters()
    c = est._corpus(X, fitting=True)
    lam0 = np.random.default_rng(1).gamma(100.0, 0.01, size=(3, c.V))

    def start():
        return est._start(c, lam0.copy(), np.full(3, 1 / 3), 1 / 3, np.random.default_rng(2))
    whole = est._em(c, start(), 11)
    part = est._em(c, est._em(c, start(), 4), 7)
    np.testing.assert_array_equal(whole["history"], part["history"])
    np.testing.assert_array_equal(whole["lam"], part["lam"])
    assert whole["step"] == part["step"]


def test_bound_of_documents_with_tiny_word_norms():
    # _doc_bound takes the logs of words seen once from a running product, rescaled when it
    # leaves [1e-200, 1e200], and words with a norm <= 1e-100 take their own log: documents
    # of 999 singletons whose norms are ~1e-8 (many rescales) and ~1e-110 (own logs), against
    # the ELBO in plain numpy
    V = 1002
    lam = np.full((2, V), 0.01)
    lam[0, :1000] = 50.0
    lam[1, 1000:] = 50.0
    X = sp.csr_matrix(np.vstack([np.r_[np.ones(999), 0.0, 3.0, 0.0], np.r_[np.ones(999), 0.0, 1.0, 2.0]]))
    for alpha, g0 in ((0.1, 0.1), (0.004, 0.004)):
        a = np.full(2, alpha)
        gamma = np.array([[g0, 1000.0], [g0, 1500.0]])
        est = at_state(lam, a, 0.05)
        docs, topic, scale = elbo_terms(X, lam, a, 0.05, gamma)
        assert_rel(est._bound_at(X, gamma), docs.sum() + topic, 1e-10, f"bound with alpha {alpha}", scale)


def test_m_step_lambda_maximises_the_bound_at_fixed_phi():
    # lambda = eta + sum_d n_dw phi_dwk, with phi the previous E-step's, is the
    # exact maximiser over lambda of the bound at that phi (and those gammas).
    X, _ = corpus(6, D=30)
    Xd = X.toarray()
    est = fit(LatentDirichletAllocation(3, max_iter=3, tol=0.0, n_init=1, random_state=0), X)
    c = est._corpus(X)
    alpha, eta = est.doc_topic_prior_, est.topic_word_prior_
    run = est._start(c, est.components_.copy(), alpha.copy(), eta, np.random.default_rng(0))
    gamma = run["gamma"].copy()
    elogb = psi(est.components_) - psi(est.components_.sum(1))[:, None]
    elogt = psi(gamma) - psi(gamma.sum(1))[:, None]
    logits = elogt[:, None, :] + elogb.T[None]
    phi = np.exp(logits - logsumexp(logits, -1, keepdims=True))
    stats = est._topic_stats(c, run["ratio"], run["eth"], run["eb"])
    np.testing.assert_allclose(stats, np.einsum("dw,dwk->kw", Xd, phi), rtol=1e-11, atol=1e-12,
                               err_msg="topic statistics against explicit phi")
    nxt = est._em(c, run, 1)
    np.testing.assert_array_equal(nxt["lam"], eta + stats, err_msg="the M-step is not lambda = eta + statistics")

    def fixed(lam):
        docs, topic, _ = elbo_terms(Xd, lam, alpha, eta, gamma, phi)
        return docs.sum() + topic

    top = fixed(eta + stats)
    assert top >= run["history"][0] - 1e-10 * abs(top), "the M-step lowered the bound at fixed phi"
    rng = np.random.default_rng(0)
    for scale in (1e-1, 1e-2, 1e-3):
        lam = (eta + stats) * np.exp(scale * rng.standard_normal(stats.shape))
        assert fixed(lam) <= top + 1e-12 * abs(top), f"a perturbation of {scale} beats the M-step's lambda"
    assert at_state(eta + stats, alpha, eta)._bound_at(X, gamma) >= top - 1e-10 * abs(top), \
        "re-optimising phi at the new lambda lowered the bound"


# ----------------------------------------------------------------------------
# 3. the history_ / tol contract
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_iter", [0, 1, 4, 17])
@pytest.mark.parametrize("n_init, learn_priors", [(1, False), (4, False), (4, True)])
def test_tol_zero_runs_exactly_max_iter_and_history_is_exact(max_iter, n_init, learn_priors):
    X, _ = corpus(7, D=40)
    est = fit(LatentDirichletAllocation(3, max_iter=max_iter, tol=0.0, n_init=n_init, init_iter=10,
                                        learn_priors=learn_priors, random_state=1), X)
    assert len(est.history_) == max_iter + 1, f"len(history_) = {len(est.history_)}, expected {max_iter + 1}"
    assert est.n_iter_ == max_iter and not est.converged_
    assert est.bound_ == est.history_[-1]
    assert_rel(est.history_[-1], est._bound_at(X, est._train_gamma), 1e-12, "history_[-1] vs _bound_at")
    docs, topic, scale = elbo_terms(X, est.components_, est.doc_topic_prior_, est.topic_word_prior_,
                                    est._train_gamma)
    assert_rel(est.history_[-1], docs.sum() + topic, 1e-10, "history_[-1] vs numpy ELBO", scale)
    assert_monotone(est.history_)


def test_history_t_is_the_bound_after_t_iterations():
    # history_[t] of a long run equals history_[-1] of a run of t iterations (one start)
    X, _ = corpus(8, D=30)
    long = fit(LatentDirichletAllocation(3, max_iter=12, tol=0.0, n_init=1, random_state=4), X)
    for t in (0, 1, 5, 12):
        short = fit(LatentDirichletAllocation(3, max_iter=t, tol=0.0, n_init=1, random_state=4), X)
        assert short.history_[-1] == long.history_[t], f"history_[{t}] differs from a {t}-iteration fit"


# ----------------------------------------------------------------------------
# 4. learn_priors: the alpha and eta updates
# ----------------------------------------------------------------------------


def alpha_objective(D, S):
    def f(a):
        return D * (gammaln(a.sum()) - gammaln(a).sum()) + ((a - 1) * S).sum()
    return f


def scipy_alpha(D, S, a0):
    """argmax f over alpha > 0, by scipy's trust-region Newton in u = log alpha."""
    f = alpha_objective(D, S)

    def neg(u):
        a = np.exp(u)
        g = D * (psi(a.sum()) - psi(a)) + S
        return -f(a), -g * a

    def hess(u):
        a = np.exp(u)
        g = D * (psi(a.sum()) - psi(a)) + S
        H = D * (polygamma(1, a.sum()) - np.diag(polygamma(1, a)))
        return -(a[:, None] * H * a[None, :] + np.diag(g * a))

    res = minimize(neg, np.log(a0), jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-12})
    return np.exp(res.x)


@pytest.mark.parametrize("K, D, start", [(2, 7, 0.5), (3, 50, 1 / 3), (3, 50, 20.0), (5, 200, 0.01),
                                         (8, 30, 1.0)])
def test_alpha_update_maximises_its_objective(K, D, start):
    rng = np.random.default_rng(K * 1000 + D)
    true = rng.gamma(1.0, 0.5, K) + 0.05
    gamma = rng.dirichlet(true, size=D) * rng.uniform(5, 50, (D, 1)) + true
    S = (psi(gamma) - psi(gamma.sum(1))[:, None]).sum(0)
    a0 = np.full(K, start)
    ours = LatentDirichletAllocation._update_alpha(a0.copy(), S, D)
    ref = scipy_alpha(D, S, a0)
    f = alpha_objective(D, S)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, err_msg="alpha against scipy.optimize.minimize")
    assert f(ours) >= f(ref) - 1e-12 * abs(f(ref)), f"f(ours) = {f(ours)!r} < f(scipy) = {f(ref)!r}"
    assert f(ours) >= f(a0), "the update lowered the objective"


def eta_objective(K, V, T):
    return lambda e: K * (gammaln(V * e) - V * gammaln(e)) + e * T


@pytest.mark.parametrize("K, V, start", [(1, 2, 1.0), (3, 40, 1 / 3), (3, 40, 50.0), (5, 7, 0.001),
                                         (2, 500, 0.2)])
def test_eta_update_maximises_its_objective(K, V, start):
    rng = np.random.default_rng(K * 1000 + V)
    lam = rng.gamma(0.3, 1.0, (K, V)) * 3 + 0.2
    T = float((psi(lam) - psi(lam.sum(1))[:, None]).sum())
    f = eta_objective(K, V, T)
    ours = LatentDirichletAllocation._update_eta(start, T, K, V)

    def neg(u):
        e = np.exp(u[0])
        return -f(e), np.array([-(K * V * (psi(V * e) - psi(e)) + T) * e])

    ref = float(np.exp(minimize(neg, [np.log(start)], jac=True, method="BFGS", options={"gtol": 1e-12}).x[0]))
    assert ours == pytest.approx(ref, rel=1e-6), f"eta {ours!r} against scipy.optimize.minimize {ref!r}"
    assert f(ours) >= f(ref) - 1e-12 * abs(f(ref)), f"f(ours) = {f(ours)!r} < f(scipy) = {f(ref)!r}"
    assert f(ours) >= f(start)


@pytest.mark.parametrize("factor", [1e-3, 1e-2, 0.1, 10.0, 100.0])
def test_prior_updates_reach_a_known_maximiser_from_far_starts(factor):
    # S_k = D (psi(a*_k) - psi(sum a*)) makes a* the exact maximiser of the alpha
    # objective, and T = K V (psi(e*) - psi(V e*)) makes e* that of the eta
    # objective; a start `factor` times off must still end at the maximiser.
    D, astar = 20, np.array([0.3, 0.1, 0.6])
    S = D * (psi(astar) - psi(astar.sum()))
    got = LatentDirichletAllocation._update_alpha(astar * factor, S, D)
    f = alpha_objective(D, S)
    np.testing.assert_allclose(got, astar, rtol=1e-6,
                               err_msg=f"alpha from {factor} x the maximiser (f = {f(got):.6g}, max {f(astar):.6g})")
    K, V, estar = 3, 40, 0.01
    T = K * V * (psi(estar) - psi(V * estar))
    got = LatentDirichletAllocation._update_eta(estar * factor, T, K, V)
    assert got == pytest.approx(estar, rel=1e-6), f"eta from {factor} x the maximiser: {got!r}"


def test_learned_priors_in_fit_are_the_maximisers_at_the_final_m_step(monkeypatch):
    # the alpha of fit is _update_alpha's optimum for the gammas it was given
    X, _ = corpus(9, D=50)
    calls = []
    original = LatentDirichletAllocation._update_alpha

    def spy(alpha, elogth_sum, D):
        out = original(alpha, elogth_sum, D)
        calls.append((elogth_sum.copy(), D, out.copy()))
        return out

    monkeypatch.setattr(LatentDirichletAllocation, "_update_alpha", staticmethod(spy))
    est = fit(LatentDirichletAllocation(3, learn_priors=True, max_iter=15, tol=0.0, n_init=1, random_state=0), X)
    S, D, got = calls[-1]
    assert D == X.shape[0]
    np.testing.assert_array_equal(got, est.doc_topic_prior_)
    np.testing.assert_allclose(got, scipy_alpha(D, S, np.full(3, 1 / 3)), rtol=1e-6)
    assert not np.all(got == got[0]), "learn_priors should give an asymmetric alpha here"


def test_one_topic_with_learn_priors_keeps_alpha_and_warns_nothing():
    # With K = 1 the bound does not depend on alpha (E log theta = 0), so the
    # update should leave alpha alone, without a 0/0 in its Newton step.
    X, _ = corpus(10, D=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LatentDirichletAllocation(1, learn_priors=True, max_iter=3, tol=0.0, n_init=1,
                                        random_state=0).fit(X)
    msgs = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert not msgs, f"fitting one topic with learn_priors warned: {msgs[:3]}"
    np.testing.assert_array_equal(est.doc_topic_prior_, [1.0])
    assert_monotone(est.history_)


# ----------------------------------------------------------------------------
# 5. input forms, mutation, documents of length zero
# ----------------------------------------------------------------------------


def input_forms(dense):
    """The same corpus in every accepted form."""
    csr = sp.csr_matrix(dense)
    return {
        "csr float": csr,
        "csr int": sp.csr_matrix(dense.astype(np.int32)),
        "csc": sp.csc_matrix(dense),
        "coo": sp.coo_matrix(dense),
        "csr_array": sp.csr_array(dense),
        "dense float64": dense.copy(),
        "dense float32": dense.astype(np.float32),
        "dense int64": dense.astype(np.int64),
        "dense uint8": dense.astype(np.uint8),
        "token lists": tokens_of(dense),
        "token tuples of arrays": tuple(np.asarray(t, dtype=np.int64) for t in tokens_of(dense)),
    }


def snapshot(X):
    """Copies of every array the caller holds in X."""
    if sp.issparse(X):
        return [X.toarray(), X.data.copy()] + [getattr(X, a).copy() for a in ("indices", "indptr", "row", "col")
                                               if hasattr(X, a)]
    if isinstance(X, (list, tuple)):
        return [np.array(t, copy=True) for t in X]
    return [X.copy()]


def with_empty_documents(seed=11):
    X, _ = corpus(seed, D=30)
    dense = X.toarray()
    dense[[0, 7, 29]] = 0.0                      # empty documents, also the first and the last
    dense[3, -1] += 2.0                          # the last word occurs (token lists take V = max id + 1)
    return dense


@pytest.mark.parametrize("learn_priors", [False, True])
def test_every_input_form_gives_a_bit_identical_fit(learn_priors):
    dense = with_empty_documents()
    kw = dict(n_components=3, max_iter=8, tol=0.0, n_init=2, init_iter=3, learn_priors=learn_priors, random_state=5)
    ref = fit(LatentDirichletAllocation(**kw), sp.csr_matrix(dense))
    ref_t = ref.transform(dense)
    for name, X in input_forms(dense).items():
        est = fit(LatentDirichletAllocation(**kw), X)
        for attr in ("components_", "history_", "doc_topic_prior_", "_train_gamma"):
            np.testing.assert_array_equal(getattr(est, attr), getattr(ref, attr), err_msg=f"{name}: {attr}")
        assert est.topic_word_prior_ == ref.topic_word_prior_, name
        np.testing.assert_array_equal(ref.transform(X), ref_t, err_msg=f"{name}: transform")
        assert ref.score(X) == ref.score(dense), f"{name}: score"
        assert ref.perplexity(X) == ref.perplexity(dense), f"{name}: perplexity"


def test_unsorted_duplicate_and_explicit_zero_sparse_entries():
    dense = with_empty_documents()
    coo = sp.coo_matrix(dense)
    rng = np.random.default_rng(0)
    # split every count c into duplicates 1 + (c - 1) (explicit zeros where c = 1),
    # add two more explicit zeros, and shuffle the entries
    rows = np.concatenate([coo.row, coo.row, [1, 2]])
    cols = np.concatenate([coo.col, coo.col, [0, 5]])
    vals = np.concatenate([np.ones(coo.nnz), coo.data - 1, [0.0, 0.0]])
    perm = rng.permutation(len(vals))
    rows, cols, vals = rows[perm], cols[perm], vals[perm]
    messy_coo = sp.coo_matrix((vals, (rows, cols)), shape=dense.shape)
    # a CSR with unsorted indices and duplicates, built directly
    by_row = np.argsort(rows, kind="stable")
    messy_csr = sp.csr_matrix((vals[by_row], cols[by_row],
                               np.r_[0, np.cumsum(np.bincount(rows, minlength=len(dense)))]), shape=dense.shape)
    assert not messy_csr.has_canonical_format
    kw = dict(n_components=3, max_iter=6, tol=0.0, n_init=1, random_state=2)
    ref = fit(LatentDirichletAllocation(**kw), dense)
    for name, X in (("coo", messy_coo), ("csr", messy_csr)):
        saved = snapshot(X)
        est = fit(LatentDirichletAllocation(**kw), X)
        np.testing.assert_array_equal(est.components_, ref.components_, err_msg=name)
        np.testing.assert_array_equal(est.history_, ref.history_, err_msg=name)
        for b, a in zip(saved, snapshot(X)):
            np.testing.assert_array_equal(a, b, err_msg=f"the caller's {name} matrix was changed")
    assert not messy_csr.has_canonical_format, "the caller's CSR was canonicalised in place"


def test_whole_number_floats_are_accepted_and_fractions_refused():
    dense = with_empty_documents()
    for X in (dense.astype(np.float64), dense.astype(np.float32), sp.csr_matrix(dense.astype(np.float32))):
        est = fit(LatentDirichletAllocation(3, max_iter=2, random_state=0), X)
        assert np.isfinite(est.components_).all()
    with pytest.raises(ValueError):
        LatentDirichletAllocation(3).fit(dense + 1e-9 * (dense > 0))


def test_inputs_are_never_mutated():
    dense = with_empty_documents()
    forms = input_forms(dense)
    est = fit(LatentDirichletAllocation(3, max_iter=3, random_state=0), dense)

    for name, X in forms.items():
        before = snapshot(X)
        fit(LatentDirichletAllocation(3, max_iter=2, learn_priors=True, random_state=1), X)
        est.transform(X), est.score(X), est.perplexity(X), est._bound_at(X, est._train_gamma)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            LatentDirichletAllocation(3, max_iter=2, random_state=1).fit_transform(X)
        after = snapshot(X)
        assert len(before) == len(after)
        for b, a in zip(before, after):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} was changed")
            assert a.dtype == b.dtype, name
    alpha = est.doc_topic_prior_.copy()
    gamma = est._train_gamma.copy()
    est._bound_at(dense, gamma)
    np.testing.assert_array_equal(gamma, est._train_gamma)
    np.testing.assert_array_equal(alpha, est.doc_topic_prior_)


@pytest.mark.parametrize("learn_priors", [False, True])
def test_documents_of_length_zero_get_gamma_equal_to_the_prior(learn_priors):
    dense = with_empty_documents()
    empty = np.flatnonzero(dense.sum(1) == 0)
    est = fit(LatentDirichletAllocation(3, max_iter=10, tol=0.0, learn_priors=learn_priors, random_state=0), dense)
    alpha = est.doc_topic_prior_
    for d in empty:
        np.testing.assert_array_equal(est._train_gamma[d], alpha, err_msg=f"training gamma of empty document {d}")
    T = est.transform(dense)
    assert np.isfinite(T).all() and np.isfinite(est.components_).all()
    for d in empty:
        np.testing.assert_array_equal(T[d], alpha / alpha.sum(), err_msg=f"transform row of empty document {d}")
    # a corpus of empty documents only: transform = the prior, score = the topic term, no NaN
    zeros = np.zeros((4, dense.shape[1]))
    np.testing.assert_array_equal(est.transform(zeros), np.tile(alpha / alpha.sum(), (4, 1)))
    _, topic, _ = elbo_terms(zeros, est.components_, alpha, est.topic_word_prior_, np.tile(alpha, (4, 1)))
    assert_rel(est.score(zeros), topic, 1e-12, "score of empty documents")
    assert est.score(dense) == pytest.approx(est.score(dense[dense.sum(1) > 0]), rel=1e-14, abs=0), \
        "empty documents must add nothing to the score"


def test_fit_on_a_corpus_of_only_empty_documents_is_finite():
    est = fit(LatentDirichletAllocation(2, max_iter=3, random_state=0), np.zeros((3, 4)))
    assert np.isfinite(est.components_).all() and np.isfinite(est.history_).all()
    np.testing.assert_array_equal(est.transform(np.zeros((2, 4))), np.full((2, 2), 0.5))


# ----------------------------------------------------------------------------
# 6. hostile input
# ----------------------------------------------------------------------------


def _hostile_cases():
    X, _ = corpus(12, D=20)
    dense = X.toarray()
    V = dense.shape[1]
    fitted = fit(LatentDirichletAllocation(3, max_iter=2, random_state=0), X)
    L = LatentDirichletAllocation

    def put(value, where=(1, 1), base=dense):
        out = base.copy()
        out[where] = value
        return out

    return {
        "negative count (dense)": lambda: L(3).fit(put(-1.0)),
        "negative count (sparse)": lambda: L(3).fit(sp.csr_matrix(put(-2.0))),
        "negative count at transform": lambda: fitted.transform(put(-1.0)),
        "fractional count (dense)": lambda: L(3).fit(put(0.5)),
        "fractional count (sparse)": lambda: L(3).fit(sp.csr_matrix(put(2.25))),
        "fractional count at score": lambda: fitted.score(put(1.5)),
        "NaN count": lambda: L(3).fit(put(np.nan)),
        "NaN count (sparse)": lambda: L(3).fit(sp.csr_matrix(put(np.nan))),
        "inf count": lambda: L(3).fit(put(np.inf)),
        "-inf count": lambda: L(3).fit(put(-np.inf)),
        "NaN count at perplexity": lambda: fitted.perplexity(put(np.nan)),
        "empty corpus (dense)": lambda: L(3).fit(np.zeros((0, V))),
        "empty corpus (sparse)": lambda: L(3).fit(sp.csr_matrix((0, V))),
        "empty corpus (token lists)": lambda: L(3).fit([]),
        "empty corpus at transform": lambda: fitted.transform(np.zeros((0, V))),
        "zero columns (dense)": lambda: L(3).fit(np.zeros((4, 0))),
        "zero columns (sparse)": lambda: L(3).fit(sp.csr_matrix((4, 0))),
        "token lists without tokens": lambda: L(3).fit([[], []]),
        "vocabulary mismatch at transform (fewer)": lambda: fitted.transform(dense[:, :-1]),
        "vocabulary mismatch at transform (more)": lambda: fitted.transform(np.hstack([dense, dense[:, :1]])),
        "vocabulary mismatch at score": lambda: fitted.score(sp.csr_matrix(dense[:, :-3])),
        "vocabulary mismatch at perplexity": lambda: fitted.perplexity(np.hstack([dense, dense])),
        "token id out of range at transform": lambda: fitted.transform([[0, 1], [V]]),
        "n_components = 0": lambda: L(0).fit(X),
        "n_components = -2": lambda: L(-2).fit(X),
        "n_components = 2.0": lambda: L(2.0).fit(X),
        "doc_topic_prior = 0": lambda: L(3, doc_topic_prior=0.0).fit(X),
        "doc_topic_prior < 0": lambda: L(3, doc_topic_prior=-0.5).fit(X),
        "doc_topic_prior NaN": lambda: L(3, doc_topic_prior=np.nan).fit(X),
        "topic_word_prior = 0": lambda: L(3, topic_word_prior=0.0).fit(X),
        "topic_word_prior < 0": lambda: L(3, topic_word_prior=-0.1).fit(X),
        "topic_word_prior inf": lambda: L(3, topic_word_prior=np.inf).fit(X),
        "negative token id": lambda: L(3).fit([[0, 1, -2], [1]]),
        "fractional token id": lambda: L(3).fit([[0, 1.5], [1]]),
        "transform before fit": lambda: L(3).transform(X),
        "score before fit": lambda: L(3).score(X),
        "perplexity before fit": lambda: L(3).perplexity(X),
        "top_words before fit": lambda: L(3).top_words([str(i) for i in range(V)]),
        "perplexity of documents without words": lambda: fitted.perplexity(np.zeros((2, V))),
        "top_words with a vocabulary of the wrong length": lambda: fitted.top_words(["a"] * (V - 1)),
        "unknown parameter": lambda: L(3).set_params(learning_rate=0.7),
        "overrelax not a bool": lambda: L(3, overrelax="yes").fit(X),
        "learn_priors not a bool": lambda: L(3, learn_priors=1).fit(X),
    }


HOSTILE = (
    "negative count (dense)", "negative count (sparse)", "negative count at transform",
    "fractional count (dense)", "fractional count (sparse)", "fractional count at score", "NaN count",
    "NaN count (sparse)", "inf count", "-inf count", "NaN count at perplexity", "empty corpus (dense)",
    "empty corpus (sparse)", "empty corpus (token lists)", "empty corpus at transform", "zero columns (dense)",
    "zero columns (sparse)", "token lists without tokens", "vocabulary mismatch at transform (fewer)",
    "vocabulary mismatch at transform (more)", "vocabulary mismatch at score", "vocabulary mismatch at perplexity",
    "token id out of range at transform", "n_components = 0", "n_components = -2", "n_components = 2.0",
    "doc_topic_prior = 0", "doc_topic_prior < 0", "doc_topic_prior NaN", "topic_word_prior = 0",
    "topic_word_prior < 0", "topic_word_prior inf", "negative token id", "fractional token id",
    "transform before fit", "score before fit", "perplexity before fit", "top_words before fit",
    "perplexity of documents without words", "top_words with a vocabulary of the wrong length",
    "unknown parameter", "overrelax not a bool", "learn_priors not a bool",
)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_is_refused_in_one_sentence(name):
    cases = _hostile_cases()
    assert set(cases) == set(HOSTILE)
    with pytest.raises(ValueError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cases[name]()
    assert_one_sentence(str(info.value))
    if "before fit" in name:
        assert isinstance(info.value, NotFittedError)


# ----------------------------------------------------------------------------
# 7. API
# ----------------------------------------------------------------------------


def test_transform_fit_transform_perplexity_and_topic_word():
    X, _ = corpus(13, D=50)
    kw = dict(n_components=3, max_iter=15, random_state=3)
    est = fit(LatentDirichletAllocation(**kw), X)
    T = est.transform(X)
    assert T.shape == (50, 3) and np.all(T > 0)
    np.testing.assert_allclose(T.sum(1), 1.0, rtol=0, atol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        np.testing.assert_array_equal(LatentDirichletAllocation(**kw).fit_transform(X), T)
    assert est.perplexity(X) == pytest.approx(np.exp(-est.score(X) / X.sum()), rel=1e-12)
    half = X[:25]
    assert est.perplexity(half) == pytest.approx(np.exp(-est.score(half) / half.sum()), rel=1e-12)
    W = est.topic_word_
    assert W.shape == (3, 40)
    np.testing.assert_allclose(W.sum(1), 1.0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(W, est.components_ / est.components_.sum(1, keepdims=True), rtol=1e-15)
    assert est.components_.shape == (3, 40) and est.doc_topic_prior_.shape == (3,)
    assert est.n_features_in_ == 40 and isinstance(est.topic_word_prior_, float)


def clear_corpus(seed, D=60):
    """Three topics on disjoint 4-word supports of a 14-word vocabulary (2 words never used)."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(14)]
    beta = np.zeros((3, 14))
    for k in range(3):
        beta[k, 4 * k:4 * k + 4] = [0.4, 0.3, 0.2, 0.1]
    theta = rng.dirichlet(np.full(3, 0.2), size=D)
    rows = [rng.multinomial(n, theta[d] @ beta) for d, n in enumerate(rng.integers(20, 40, size=D))]
    return np.asarray(rows), vocab, beta


def test_top_words_are_the_true_topic_words():
    X, vocab, beta = clear_corpus(0)
    est = fit(LatentDirichletAllocation(3, max_iter=100, random_state=0), X)
    top = est.top_words(vocab, n=4)
    assert len(top) == 3 and all(len(t) == 4 for t in top)
    truth = [[vocab[i] for i in np.argsort(-b)[:4]] for b in beta]
    assert sorted(map(sorted, top)) == sorted(map(sorted, truth)), f"top words {top} vs true topics {truth}"
    for t in top:             # in the true order of probability, too
        assert t in truth, f"top words {t} not in the true order of any topic"
    assert est.top_words(tuple(vocab), n=1) == [[t[0]] for t in top]
    with pytest.raises(ValueError) as info:
        est.top_words(vocab[:-1])
    assert_one_sentence(str(info.value))
    with pytest.raises(ValueError):
        est.top_words(vocab + ["extra"])


def test_get_params_set_params_round_trip():
    est = LatentDirichletAllocation(4, doc_topic_prior=0.2, topic_word_prior=0.05, max_iter=7, tol=1e-6,
                                    max_doc_update_iter=50, mean_change_tol=1e-4, learn_priors=True,
                                    random_state=9, n_init=2, init_iter=3, verbose=0)
    params = est.get_params()
    assert params == dict(n_components=4, doc_topic_prior=0.2, topic_word_prior=0.05, max_iter=7, tol=1e-6,
                          max_doc_update_iter=50, mean_change_tol=1e-4, learn_priors=True, overrelax=True,
                          random_state=9, n_init=2, init_iter=3, verbose=0)
    copy = LatentDirichletAllocation().set_params(**params)
    assert copy.get_params() == params
    assert clone(est).get_params() == params
    ours, theirs = LatentDirichletAllocation().get_params(), SkLDA().get_params()
    for name in ("n_components", "doc_topic_prior", "topic_word_prior", "max_iter", "max_doc_update_iter",
                 "mean_change_tol", "random_state", "verbose"):
        assert ours[name] == theirs[name], f"default {name} = {ours[name]!r}, scikit-learn's {theirs[name]!r}"
    X, _ = corpus(14, D=20)
    a = fit(LatentDirichletAllocation(**params), X)
    b = fit(copy, X)
    np.testing.assert_array_equal(a.components_, b.components_)


def test_same_random_state_gives_bit_identical_fits():
    X, _ = corpus(15, D=40)
    kw = dict(n_components=3, max_iter=20, learn_priors=True)
    a = fit(LatentDirichletAllocation(random_state=7, **kw), X)
    b = fit(LatentDirichletAllocation(random_state=7, **kw), X)
    c = fit(LatentDirichletAllocation(random_state=np.random.default_rng(7), **kw), X)
    for attr in ("components_", "history_", "doc_topic_prior_", "_train_gamma"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
        np.testing.assert_array_equal(getattr(a, attr), getattr(c, attr), err_msg=f"Generator: {attr}")
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    d = fit(LatentDirichletAllocation(random_state=8, **kw), X)
    assert not np.array_equal(a.history_, d.history_), "another random_state gave the same history"


def test_one_start_and_several_starts_are_both_monotone():
    X, _ = corpus(16, D=60)
    for n_init in (1, 4):
        est = fit(LatentDirichletAllocation(3, max_iter=40, tol=0.0, n_init=n_init, random_state=0), X)
        assert len(est.history_) == 41
        assert_monotone(est.history_, f"history_ with n_init={n_init}")


def test_best_of_several_starts_is_at_least_its_first_start():
    # the screened starts are random_state's first n_init draws: the winner's
    # bound after init_iter iterations is at least that of the first start
    X, _ = corpus(17, D=60)
    one = fit(LatentDirichletAllocation(3, max_iter=10, tol=0.0, n_init=1, random_state=0), X)
    four = fit(LatentDirichletAllocation(3, max_iter=10, tol=0.0, n_init=4, init_iter=10, random_state=0), X)
    assert four.history_[-1] >= one.history_[-1]


# ----------------------------------------------------------------------------
# 8. the tutorial scenario (issue 4)
# ----------------------------------------------------------------------------

# For comparison only (measured, not asserted): scikit-learn 1.9's batch LDA
# (3 topics, default priors, max_iter=500, random_state=seed) recovers 28 of
# the 30 topics of seeds 0-9 on this corpus (seed 9: 1 of 3); online learning
# recovers 26. (The model's docstring says 25 of 30.)


@pytest.mark.parametrize("seed", range(10))
def test_tutorial_recovers_all_three_topics(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = lda._tutorial(seed)
    assert result["metrics"]["topics_recovered"] == 3, result["detail"]
    assert result["passed"]
    est = result["estimator"]
    assert_monotone(est.history_)


# ----------------------------------------------------------------------------
# 9. held-out perplexity against scikit-learn
# ----------------------------------------------------------------------------


def heldout_perplexity(lam, X, alpha, eta):
    """Perplexity of X under topics lam, by OUR E-step iterated tightly: the
    same inference for both fits, so only the topics are compared."""
    est = at_state(lam, np.full(len(lam), alpha), eta)
    est.set_params(mean_change_tol=1e-8, max_doc_update_iter=2000)
    return est.perplexity(X)


# 5 topics over 30 words, 150 training and 150 held-out documents, 30 EM
# iterations each (tol=0, so both run exactly max_iter), the same priors.
# Measured on seeds 0-9 (held-out perplexity, ours / scikit-learn's / truth):
# on seeds 0, 1, 7 scikit-learn's one start merges two topics and is 4-5 %
# worse (e.g. seed 0: 18.57 / 19.58 / 18.53); on the other seeds both reach
# the same optimum up to +-0.15 %. The test uses the clearly separated seeds
# 0 and 1, asserts "no worse" with no slack, and anchors ours to the
# perplexity at the true topics (within 1 %).
@pytest.mark.parametrize("seed", [0, 1])
def test_heldout_perplexity_no_worse_than_sklearn(seed):
    K, V, D, M, alpha, eta = 5, 30, 150, 30, 0.3, 0.2
    rng = np.random.default_rng(seed)
    truth = lda.emref_truth("batch", rng, n_components=K, n_words=V)
    X, _ = lda.emref_sample("batch", truth, D, rng)
    held, _ = lda.emref_sample("batch", truth, D, rng)
    ours = fit(LatentDirichletAllocation(K, doc_topic_prior=alpha, topic_word_prior=eta, max_iter=M, tol=0.0,
                                         random_state=seed), X)
    sk = SkLDA(K, doc_topic_prior=alpha, topic_word_prior=eta, max_iter=M, learning_method="batch",
               random_state=seed).fit(X)
    p_ours = heldout_perplexity(ours.components_, held, alpha, eta)
    p_sk = heldout_perplexity(sk.components_, held, alpha, eta)
    p_true = heldout_perplexity(truth["topic_word"] * D * 10 + eta, held, alpha, eta)
    assert p_ours <= p_sk, f"held-out perplexity: ours {p_ours:.4f} > scikit-learn's {p_sk:.4f}"
    assert p_ours <= 1.01 * p_true, f"held-out perplexity: ours {p_ours:.4f} vs the truth's {p_true:.4f}"
    assert ours.perplexity(held) == pytest.approx(p_ours, rel=1e-4), "perplexity vs the tight evaluation"


# ----------------------------------------------------------------------------
# 10. fuzz: the bound at the fitted state against plain numpy
# ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), D=st.integers(1, 5), V=st.integers(1, 6), K=st.integers(1, 3),
       learn_priors=st.booleans(), max_iter=st.integers(0, 4), n_init=st.integers(1, 2),
       seed=st.integers(0, 2 ** 16))
def test_fuzz_bound_at_fitted_state_equals_numpy_elbo(data, D, V, K, learn_priors, max_iter, n_init, seed):
    X = np.array(data.draw(st.lists(st.lists(st.integers(0, 4), min_size=V, max_size=V), min_size=D,
                                    max_size=D)), dtype=np.int64).reshape(D, V)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # K = 1 with learn_priors: see test_one_topic_with_learn_priors_keeps_alpha_and_warns_nothing
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        est = LatentDirichletAllocation(K, learn_priors=learn_priors, max_iter=max_iter, tol=0.0, n_init=n_init,
                                        init_iter=2, random_state=seed).fit(X)
    gamma = est._train_gamma
    assert gamma.shape == (D, K) and np.isfinite(gamma).all() and np.isfinite(est.history_).all()
    for d in np.flatnonzero(X.sum(1) == 0):
        np.testing.assert_array_equal(gamma[d], est.doc_topic_prior_, err_msg=f"gamma of empty document {d}")
    docs, topic, scale = elbo_terms(X, est.components_, est.doc_topic_prior_, est.topic_word_prior_, gamma)
    want = docs.sum() + topic
    assert_rel(est._bound_at(X, gamma), want, 1e-10, "bound at the fitted state", max(abs(want), scale))
    assert_rel(est.history_[-1], want, 1e-10, "history_[-1]", max(abs(want), scale))
    assert len(est.history_) == max_iter + 1
    assert_monotone(est.history_)
    T = est.transform(X)
    assert np.isfinite(T).all()
    np.testing.assert_allclose(T.sum(1), 1.0, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------
# regressions from the independent review
# ----------------------------------------------------------------------------


def test_a_list_of_equal_length_lists_is_refused_as_ambiguous():
    rows = [[1, 0, 2], [0, 0, 0], [3, 1, 0]]
    with pytest.raises(ValueError, match="ambiguous"):
        LatentDirichletAllocation(2).fit(rows)
    from models.lda import tokens_to_counts
    np.testing.assert_array_equal(tokens_to_counts(rows).toarray(), [[1, 1, 1, 0], [3, 0, 0, 0], [1, 1, 0, 1]])
    dense = LatentDirichletAllocation(2, random_state=0, max_iter=3).fit(np.asarray(rows))
    assert dense.components_.shape == (2, 3)


def test_bound_of_an_empty_document_counts_its_theta_terms():
    # K=2, V=3, lambda=1, alpha=(.5,.5), eta=1; the empty document's gamma is not alpha
    est = LatentDirichletAllocation(2)
    est.components_, est.doc_topic_prior_, est.topic_word_prior_ = np.ones((2, 3)), np.array([0.5, 0.5]), 1.0
    est.n_features_in_ = 3
    X = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    gamma = np.array([[2.0, 1.5], [3.0, 7.0]])
    from scipy.special import gammaln, psi as ps
    lam, alpha, eta = est.components_, est.doc_topic_prior_, 1.0
    elogb = ps(lam) - ps(lam.sum(1))[:, None]
    elogt = ps(gamma) - ps(gamma.sum(1))[:, None]
    words = sum(X[d, w] * np.log(np.exp(elogt[d] + elogb[:, w]).sum()) for d in range(2) for w in range(3))
    theta = (gammaln(alpha.sum()) - gammaln(alpha).sum() + ((alpha - gamma) * elogt).sum(1)
             + gammaln(gamma).sum(1) - gammaln(gamma.sum(1))).sum()
    topics = 2 * (gammaln(3 * eta) - 3 * gammaln(eta)) + ((eta - lam) * elogb).sum() + gammaln(lam).sum() \
        - gammaln(lam.sum(1)).sum()
    np.testing.assert_allclose(est._bound_at(X, gamma), words + theta + topics, rtol=1e-12)


def test_digamma_is_accurate_near_the_recurrence_switch():
    from models.lda import _digamma
    euler = 0.5772156649015329
    for n in (1, 2, 6, 7, 10, 11):
        exact = -euler + sum(1.0 / j for j in range(1, n))
        assert abs(_digamma(float(n)) - exact) <= 1e-14 * max(1.0, abs(exact)), n


@pytest.mark.parametrize("kw", [{"doc_topic_prior": 1e-310}, {"topic_word_prior": 1e300}])
def test_priors_outside_the_representable_range_are_refused(kw):
    with pytest.raises(ValueError, match=r"\[1e-100, 1e100\]"):
        LatentDirichletAllocation(2, **kw).fit(np.eye(3))
