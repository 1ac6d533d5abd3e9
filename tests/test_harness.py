"""The harness itself: each generic check catches a deliberately broken model,
discovery is deterministic, the CLI reports failures, model files stand alone.

The broken models live in tests/broken_models/ (one bug each, see its README).
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness import checks
from harness.discover import MODELS_DIR, ROOT, discover, models_from_file

BROKEN = Path(__file__).parent / "broken_models"


def broken(name):
    (model,) = models_from_file(BROKEN / f"{name}.py")
    return model


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- every check can fail ------------------------------------------------------

def test_monotone_catches_cov_over_n():
    model = broken("gmm_cov_over_n")
    result = checks.check_monotone(model.id, checks.fit_case(model, 0).est.history_)
    assert not result.passed and "fell" in result.detail


@pytest.mark.parametrize("name", ["gmm_forgets_weights", "gmm_cov_over_n"])
def test_mle_catches_bad_m_step(name):
    model = broken(name)
    assert not checks.check_mle(checks.fit_case(model, 0)).passed


def test_objective_exact_catches_history_one_iteration_late():
    result = checks.check_objective_exact(checks.fit_case(broken("gmm_late_history"), 0))
    assert not result.passed and "2-iteration fit" in result.detail and "differ" in result.detail


def test_objective_exact_catches_e_step_without_log_weights():
    model = broken("gmm_no_log_weights")
    assert not checks.check_objective_exact(checks.fit_case(model, 0)).passed


@pytest.mark.parametrize("name", ["gmm_forgets_weights", "gmm_no_log_weights", "gmm_cov_over_n"])
def test_recovery_catches_biased_estimates(name):
    model = broken(name)
    # seed 1 has the most unequal weights, so both weight bugs bias the fit
    assert not checks.check_recovery(checks.fit_case(model, 1)).passed


@pytest.mark.parametrize("name", ["gmm_forgets_weights", "gmm_no_log_weights"])
def test_consistency_catches_inconsistent_estimator(name):
    # a biased estimator's error stops shrinking like 1/sqrt(n)
    assert not checks.check_consistency(broken(name), 1).passed


@pytest.mark.parametrize("name, quantity", [("gmm_forgets_weights", "em_step_weights"),
                                            ("gmm_no_log_weights", "score_samples")])
def test_oracle_catches_broken_kernels(name, quantity):
    result = checks.check_oracle(checks.fit_case(broken(name), 0))
    assert not result.passed and quantity in result.detail


def test_determinism_catches_thread_dependent_reduction():
    result = checks.check_determinism(broken("gmm_thread_chunks"), 0)
    assert not result.passed and "NUMBA_NUM_THREADS" in result.detail


def test_determinism_catches_ignored_seed():
    result = checks.check_determinism(broken("gmm_unseeded"), 0, threads=())
    assert not result.passed and "run 1" in result.detail


def test_hostile_catches_accepted_nan():
    model = broken("gmm_accepts_nan")
    result = checks.check_hostile(model, checks.draw(model, 0, 200)[1])
    assert not result.passed and "accepted" in result.detail


def test_hostile_and_clean_fit_catch_mutated_input():
    model = broken("gmm_mutates_input")
    assert not checks.check_clean_fit(checks.fit_case(model, 0)).passed
    result = checks.check_hostile(model, checks.draw(model, 0, 200)[1])
    assert not result.passed and "modified" in result.detail


def test_hostile_rejects_wrong_exception_and_long_messages():
    class Model:
        id = "toy"
        variant = "x"

        class module:
            @staticmethod
            def emref_hostile(variant, X):
                def boom():
                    raise RuntimeError("no")

                def chatty():
                    raise ValueError("line one\nline two")
                return [("wrong type", boom, []), ("two lines", chatty, [])]

        def has(self, hook):
            return True

    result = checks.check_hostile(Model(), None)
    assert not result.passed
    assert "RuntimeError" in result.detail and "one plain sentence" in result.detail


def test_edge_catches_nan_parameters():
    class Est:
        history_ = np.array([1.0, np.nan])

    class Model:
        id = "toy"
        variant = "x"

        class module:
            @staticmethod
            def emref_edge(variant):
                return [("nan", Est)]

        def has(self, hook):
            return True

        def params(self, est):
            return {"w": np.array([np.nan])}

    result = checks.check_edge(Model())
    assert not result.passed and "non-finite" in result.detail


# -- the checks' arithmetic ----------------------------------------------------

def test_monotone_tolerance_is_relative_round_off():
    base = -1234.5
    assert checks.check_monotone("t", [base, base + 1, base + 1 - 1e-11 * abs(base)]).passed
    assert not checks.check_monotone("t", [base, base + 1, base + 1 - 1e-8 * abs(base)]).passed
    # no absolute fudge: near zero, a fall of 1e-12 is far above 1e-10 relative
    assert not checks.check_monotone("t", [1e-3, 0.0, -1e-12 - 1e-13]).passed
    assert not checks.check_monotone("t", [0.0, np.nan]).passed
    assert not checks.check_monotone("t", [0.0]).passed


def test_alignment_undoes_a_label_permutation():
    (model, *_) = discover(select=["gmm-full"])
    truth, _, _ = checks.draw(model, 3, 10)
    perm = np.array([2, 0, 1])
    shuffled = {"weights": truth["weights"][perm], "means": truth["means"][perm],
                "covariances": truth["covariances"][perm]}
    assert checks.recovery_error(model, truth, shuffled) == 0.0
    assert checks.recovery_error(model, truth, {**shuffled, "weights": shuffled["weights"] + 0.1}) > 0.0


def test_clean_fit_catches_lengths_mutated_in_place():
    # X may be a tuple such as (X, lengths): every array in it must come back unchanged
    result = checks.check_clean_fit(checks.fit_case(broken("hmm_mutates_lengths"), 0))
    assert not result.passed and "modified the caller's data" in result.detail


def test_oracle_catches_transposed_pairwise_posteriors():
    # with sticky transitions the transposed M-step still fits well (MLE and
    # recovery pass); the one-EM-step oracle against brute force catches it
    result = checks.check_oracle(checks.fit_case(broken("hmm_transposed_xi"), 0))
    assert not result.passed and "one EM step: transmat" in result.detail


def test_oracle_catches_an_lda_m_step_adding_the_prior_twice():
    result = checks.check_oracle(checks.fit_case(broken("lda_double_prior"), 0))
    assert not result.passed and "one EM step: lambda" in result.detail


def test_mle_may_only_be_declared_not_applicable(tmp_path):
    (model, *_) = discover(select=["lda-batch"])
    result = checks.check_mle(checks.fit_case(model, 0))
    assert result.passed and not result.applicable and result.detail.startswith("not applicable: ")
    text = (MODELS_DIR / "lda.py").read_text().replace(
        'EMREF_NOT_APPLICABLE = {\n    "mle >= truth"', 'EMREF_NOT_APPLICABLE = {\n    "recovery"')
    assert '"recovery"' in text
    (tmp_path / "lda2.py").write_text(text)
    with pytest.raises(TypeError, match="EMREF_NOT_APPLICABLE may only map"):
        discover(tmp_path)


def test_alignment_permutes_both_axes_of_transmat():
    (model, *_) = discover(select=["hmm-categorical"])
    truth, _, _ = checks.draw(model, 2, 10)
    perm = np.array([1, 2, 0])
    shuffled = {"startprob": truth["startprob"][perm], "transmat": truth["transmat"][np.ix_(perm, perm)],
                "emissionprob": truth["emissionprob"][perm]}
    assert checks.recovery_error(model, truth, shuffled) == 0.0
    # permuting only the rows of transmat is an error the alignment must not hide
    rows_only = {**shuffled, "transmat": truth["transmat"][perm]}
    assert checks.recovery_error(model, truth, rows_only) > 0.0


def test_plot_passes_a_list_of_axes_when_a_model_asks_for_panels(tmp_path, monkeypatch):
    from harness.plots import plot_fit

    (model, *_) = discover(select=["hmm-categorical"])
    assert model.module.EMREF_PLOT_PANELS == 3
    fit = checks.fit_case(model, 0)
    seen = []
    real = model.module.emref_plot
    monkeypatch.setattr(model.module, "emref_plot", lambda axes, *a: (seen.append(len(axes)), real(axes, *a)))
    path = plot_fit(model, fit.truth, fit.est, fit.X, fit.z, tmp_path / "hmm.png")
    assert seen == [3] and path.stat().st_size > 10_000


# -- discovery and the single-file rule -----------------------------------------

def test_discovery_is_sorted_and_stable():
    first = [m.id for m in discover()]
    assert first == [m.id for m in discover()]
    families = [i.split("-")[0] for i in first]
    assert families == sorted(families)


def test_a_new_model_file_is_discovered_without_edits(tmp_path):
    shutil.copy(MODELS_DIR / "gmm.py", tmp_path / "toy.py")
    (tmp_path / "_helper.py").write_text("x = 1\n")   # underscore files are not models
    ids = [m.id for m in discover(tmp_path)]
    assert ids == ["toy-full", "toy-tied", "toy-diag", "toy-spherical"]


def test_a_file_missing_hooks_is_reported(tmp_path):
    (tmp_path / "half.py").write_text("EMREF_VARIANTS = ('a',)\n")
    with pytest.raises(TypeError, match="lacks the hooks"):
        discover(tmp_path)


def test_unknown_model_selection_is_an_error():
    with pytest.raises(ValueError, match="unknown model"):
        discover(select=["nope"])


def _model_files():
    return sorted(p for p in MODELS_DIR.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", _model_files(), ids=lambda p: p.stem)
def test_model_file_imports_only_stdlib_numpy_scipy_numba(path):
    allowed = {"numpy", "scipy", "numba", "__future__"} | set(sys.stdlib_module_names)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        for name in names:
            assert not name.startswith(".") and name.split(".")[0] in allowed, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _model_files(), ids=lambda p: p.stem)
def test_model_file_works_copied_alone(path, tmp_path):
    shutil.copy(path, tmp_path / path.name)
    # -I: isolated mode, so neither the environment nor the working directory adds
    # anything to sys.path; the only folder we add is the one holding the copy.
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            f"import {path.stem} as m, numpy as np\n"
            "variant = m.EMREF_VARIANTS[0]\n"
            "rng = np.random.default_rng(0)\n"
            "truth = m.emref_truth(variant, rng)\n"
            "X, z = m.emref_sample(variant, truth, 300, rng)\n"
            "est = m.emref_estimator(variant, truth, 0)\n"
            "(m.emref_fit(est, X) if hasattr(m, 'emref_fit') else est.fit(X))\n"
            "assert not {'harness', 'models'} & {k.split('.')[0] for k in sys.modules}\n"
            "print(float(np.asarray(est.history_)[-1]))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.isfinite(float(out.stdout.strip().splitlines()[-1]))


# -- the CLI ---------------------------------------------------------------------

def _cli(*args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "harness", *args, "--out", str(tmp_path / "report")],
                          cwd=ROOT, env=env, capture_output=True, text=True)


def test_cli_passes_and_writes_report(tmp_path):
    out = _cli("--models", "gmm-diag", "--seeds", "0", "--no-determinism", tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gmm-diag" in out.stdout and "0 failed" in out.stdout
    index = (tmp_path / "report" / "index.html").read_text()
    assert "gmm-diag-seed0.png" in index and (tmp_path / "report" / "gmm-diag-seed0.png").exists()
    assert (tmp_path / "report" / "gmm-blobs3-seed0.png").exists()


def test_cli_exits_nonzero_when_a_check_fails(tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copy(BROKEN / "gmm_forgets_weights.py", models_dir / "gmm_forgets_weights.py")
    out = _cli("--models-dir", str(models_dir), "--seeds", "1", "--no-determinism", "--no-scenarios",
               tmp_path=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL" in out.stdout


def test_cli_rejects_bad_seeds(tmp_path):
    out = _cli("--seeds", "x", tmp_path=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr


# -- the pytest integration ----------------------------------------------------

def test_xdist_workers_are_capped_and_plot_with_agg():
    import matplotlib
    import numba

    assert matplotlib.get_backend().lower() == "agg"
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        pytest.skip("not running under pytest-xdist")
    assert numba.get_num_threads() == max(1, (os.cpu_count() or 1) // int(workers))


def test_cli_reports_a_model_that_raises_as_a_failed_row(tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "boom.py").write_text(
        "from models.gmm import *  # noqa: F401,F403\n"
        "EMREF_VARIANTS = ('full',)\n"
        "def emref_estimator(variant, truth, seed):\n"
        "    raise RuntimeError('no estimator today')\n")
    out = _cli("--models-dir", str(models_dir), "--seeds", "0", "--no-determinism", "--no-scenarios",
               tmp_path=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "raised RuntimeError: no estimator today" in out.stdout
    assert (tmp_path / "report" / "index.html").exists()


# -- the imputer (models/impute.py): an M-step without the conditional covariances --

def test_oracle_catches_an_imputer_m_step_without_conditional_covariances():
    # the plug-in covariance of the filled-in data: the one-EM-step oracle sees
    # the missing sum of C_i directly
    result = checks.check_oracle(checks.fit_case(broken("impute_plugin"), 0))
    assert not result.passed and "em_step_covariance" in result.detail


def test_mle_and_monotone_catch_the_imputer_plug_in_covariance():
    # its fixed point is not the MLE (below the truth's objective), and the
    # steps are not EM steps (the objective falls)
    fit = checks.fit_case(broken("impute_plugin"), 0)
    assert not checks.check_mle(fit).passed
    result = checks.check_monotone(fit.model.id, fit.est.history_)
    assert not result.passed and "fell" in result.detail


def test_a_model_without_latent_labels_is_not_permuted():
    # the imputer's parameters have no label axes: alignment is empty and aligned() is the identity
    model = next(m for m in discover() if m.id == "impute-mcar")
    truth = model.module.emref_truth(model.variant, np.random.default_rng(0))
    params = {k: np.asarray(v) + 0.01 for k, v in truth.items()}
    assert checks.alignment(model, truth, params).size == 0
    out = checks.aligned(model, truth, params)
    for name, value in params.items():
        np.testing.assert_array_equal(out[name], value)
    assert checks.recovery_error(model, truth, params) > 0
