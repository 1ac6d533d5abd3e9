"""The generic checks, run on every discovered model (ids like gmm-full-seed1).

The harness plugin parametrizes ``emref_case`` over models x seeds,
``emref_model`` over models and ``emref_scenario`` over seed scenarios.
tests/test_harness.py shows that each of these checks fails on a
deliberately broken model.
"""

from harness import checks
from harness.plots import plot_fit


import pytest


def _ok(result):
    if not result.applicable:
        pytest.skip(f"{result.model}: {result.check}: {result.detail}")
    assert result.passed, f"{result.model}: {result.check}: {result.detail}"


def test_clean_fit(emref_case):
    _ok(checks.check_clean_fit(checks.fit_case(*emref_case)))


def test_monotone(emref_case):
    model, seed = emref_case
    _ok(checks.check_monotone(model.id, checks.fit_case(model, seed).est.history_))


def test_objective_is_exact(emref_case):
    _ok(checks.check_objective_exact(checks.fit_case(*emref_case)))


def test_mle_at_least_truth(emref_case):
    _ok(checks.check_mle(checks.fit_case(*emref_case)))


def test_recovery(emref_case):
    _ok(checks.check_recovery(checks.fit_case(*emref_case)))


def test_consistency(emref_case):
    _ok(checks.check_consistency(*emref_case))


def test_oracle(emref_case):
    _ok(checks.check_oracle(checks.fit_case(*emref_case)))


def test_determinism(emref_model):
    _ok(checks.check_determinism(emref_model, seed=0))


def test_hostile_input(emref_model):
    _, X, _ = checks.draw(emref_model, 0, 300)
    _ok(checks.check_hostile(emref_model, X))


def test_edge_cases(emref_model):
    _ok(checks.check_edge(emref_model))


def test_scenario(emref_scenario):
    family_models, name, seed = emref_scenario
    result, _ = checks.check_scenario(family_models[0], name, seed)
    _ok(result)


def test_plot(emref_model, tmp_path):
    fit = checks.fit_case(emref_model, 0)
    path = plot_fit(emref_model, fit.truth, fit.est, fit.X, fit.z, tmp_path / f"{emref_model.id}.png")
    assert path.stat().st_size > 10_000   # three drawn panels, not an empty canvas
