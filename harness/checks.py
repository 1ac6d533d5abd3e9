"""The generic checks: plain functions used by pytest (tests/) and the CLI.

Each check returns a ``CheckResult``; none raises on failure, so the CLI can
tabulate every outcome and pytest can assert ``result.passed`` and show
``result.detail``. Tolerances have one of two reasons only:

* round-off: ``RTOL_ROUNDOFF = 1e-10`` relative to the magnitude compared;
* sampling error: the recovery error must be below ``C / sqrt(n)``, with the
  model's own constant ``EMREF_RECOVERY_C``, and must shrink with ``n``.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import linear_sum_assignment

from .discover import ROOT, Model, models_from_file

RTOL_ROUNDOFF = 1e-10
# With 16x the data the error should fall to about 1/4 (sqrt(16)); "clearly
# smaller" is taken as below 1/2, twice the theory, to leave room for the
# sampling spread of the error ratio (averaged over 4 replicate data sets).
CONSISTENCY_FACTOR = 16
CONSISTENCY_MAX_RATIO = 0.5
CONSISTENCY_REPLICATES = 4


@dataclass
class CheckResult:
    check: str
    model: str
    passed: bool
    detail: str
    value: float = float("nan")
    applicable: bool = True          # False: the model declared why this check does not apply to it


def _not_applicable(model, check):
    reason = model.not_applicable(check)
    if reason:
        return CheckResult(check, model.id, True, f"not applicable: {reason}", applicable=False)
    return None


def _compared(model, params):
    """The parameters compared with the truth (all of them unless the model lists EMREF_COMPARED)."""
    names = model.compared
    return {k: v for k, v in params.items() if not names or k in names}


@dataclass
class Fit:
    """One fit of a model on data drawn from a random ground truth."""

    model: Model
    seed: int
    n: int
    truth: dict
    X: object
    z: np.ndarray
    est: object
    params: dict
    seconds: float
    mutated: bool                                # fit changed the caller's data


# ----------------------------------------------------------------------------
# Drawing and fitting
# ----------------------------------------------------------------------------


def draw(model, seed, n=None, replicate=0):
    """(truth, X, z): the truth depends on ``seed`` only; the data also on ``replicate``."""
    n = model.n if n is None else int(n)
    truth_seq, data_seq = np.random.SeedSequence(seed).spawn(2)
    truth = model.truth(np.random.default_rng(truth_seq))
    X, z = model.sample(truth, n, np.random.default_rng(data_seq.spawn(replicate + 1)[replicate]))
    return truth, X, z


def fit_on(model, truth, X, seed):
    """Fit a fresh estimator on X (warnings silenced: the checks judge the result); returns (est, seconds)."""
    est = model.estimator(truth, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(est, X)
        seconds = time.perf_counter() - t0
    return est, seconds


def fit_case(model, seed, n=None, replicate=0):
    """Draw the ground truth for (model, seed, n, replicate) and fit it (cached per process)."""
    return _fit_case(model, int(seed), model.n if n is None else int(n), int(replicate))


@lru_cache(maxsize=64)
def _fit_case(model, seed, n, replicate):
    truth, X, z = draw(model, seed, n, replicate)
    X_before = _copy(X)
    est, seconds = fit_on(model, truth, X, seed)
    mutated = not _same(X, X_before)
    return Fit(model, seed, n, truth, X_before, z, est, model.params(est), seconds, mutated)


def _copy(obj):
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_copy(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if hasattr(obj, "copy"):
        return obj.copy()
    return obj


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if hasattr(a, "toarray"):
        return _same(a.toarray(), b.toarray())
    return a == b


# ----------------------------------------------------------------------------
# Label alignment
# ----------------------------------------------------------------------------


def alignment(model, truth, params):
    """Permutation ``perm`` such that estimated label ``perm[j]`` is true label j.

    A model whose ``emref_label_axes`` gives ``()`` for every parameter has no
    latent labels; the permutation is then empty and nothing is permuted.

    The cost of matching true label j with estimated label k is, unless the
    model supplies ``emref_align_cost``, the squared distance between their
    slices along the first label axis of every label-indexed parameter.
    Hungarian matching (scipy's linear_sum_assignment) minimises the total.
    """
    if not any(model.label_axes().values()):
        return np.zeros(0, dtype=int)       # no latent labels (e.g. EM imputation): nothing to permute
    if model.has("emref_align_cost"):
        cost = np.asarray(model.module.emref_align_cost(model.variant, truth, params), dtype=float)
    else:
        cost = None
        for name, axes in model.label_axes().items():
            if not axes or name not in truth or (model.compared and name not in model.compared):
                continue
            t = np.moveaxis(np.asarray(truth[name], dtype=float), axes[0], 0)
            e = np.moveaxis(np.asarray(params[name], dtype=float), axes[0], 0)
            t, e = t.reshape(len(t), -1), e.reshape(len(e), -1)
            c = ((t[:, None, :] - e[None, :, :]) ** 2).sum(-1)
            cost = c if cost is None else cost + c
        if cost is None:
            raise TypeError(f"{model.id}: emref_label_axes names no label-indexed parameter.")
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=int)
    perm[rows] = cols
    return perm


def aligned(model, truth, params):
    """The estimated parameters with labels permuted to match the truth."""
    perm = alignment(model, truth, params)
    out = {}
    for name, value in params.items():
        value = np.asarray(value, dtype=float)
        for ax in model.label_axes().get(name, ()):
            value = np.take(value, perm, axis=ax)
        out[name] = value
    return out


def recovery_error(model, truth, params):
    """RMS over every entry of every compared parameter, after alignment."""
    est = _compared(model, aligned(model, truth, params))
    sq, count = 0.0, 0
    for name in est:
        d = est[name] - np.asarray(truth[name], dtype=float)
        sq += float((d ** 2).sum())
        count += d.size
    return float(np.sqrt(sq / count))


# ----------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------


def check_clean_fit(fit):
    """The fit left the caller's data unchanged and returned finite parameters."""
    bad = [k for k, v in fit.params.items() if not np.isfinite(v).all()]
    problems = []
    compared = _compared(fit.model, fit.params)
    if compared.keys() != fit.truth.keys():
        problems.append(f"emref_params gives {sorted(compared)} to compare, the truth has {sorted(fit.truth)}")
    else:
        problems += [f"{k} has shape {np.shape(v)}, the truth {np.shape(fit.truth[k])}"
                     for k, v in compared.items() if np.shape(v) != np.shape(fit.truth[k])]
    if fit.mutated:
        problems.append("fit modified the caller's data")
    if bad:
        problems.append(f"non-finite fitted {', '.join(bad)}")
    return CheckResult("clean fit", fit.model.id, not problems,
                       "; ".join(problems) + "." if problems else "data unchanged, parameters finite.")


def check_monotone(model_id, history, rtol=RTOL_ROUNDOFF):
    """Every step of history is non-decreasing to within rtol * |objective|."""
    h = np.asarray(history, dtype=float)
    if h.ndim != 1 or len(h) < 2:
        return CheckResult("monotone", model_id, False, f"history_ has {h.size} entries; need at least 2.")
    if not np.isfinite(h).all():
        return CheckResult("monotone", model_id, False, "history_ contains NaN or infinity.")
    step = np.diff(h)
    slack = rtol * np.maximum(np.abs(h[1:]), np.abs(h[:-1]))
    bad = np.flatnonzero(step < -slack)
    worst = float((-step / np.maximum(np.abs(h[1:]), 1e-300)).max())
    if bad.size:
        i = int(bad[0])
        return CheckResult("monotone", model_id, False,
                           f"objective fell by {-step[i]:.3e} at iteration {i + 1} "
                           f"({bad.size} decrease(s) beyond {rtol:g} relative).", worst)
    return CheckResult("monotone", model_id, True,
                       f"{len(step)} steps, largest relative fall {max(worst, 0.0):.1e}.", worst)


def check_objective_exact(fit, rtol=RTOL_ROUNDOFF):
    """history_[-1] is the objective at the fitted parameters, not one iteration late.

    At convergence the last step is below tol, so a history one iteration late
    would still agree; with the optional hook ``emref_steps`` the check also
    runs exactly 2 iterations, where the last step is large, and compares again.
    """
    m = fit.model
    pairs = [("converged fit", fit.est)]
    if m.has("emref_steps"):
        short = m.module.emref_steps(fit.est, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(short, _copy(fit.X))
        pairs.append(("2-iteration fit", short))
    lines, ok, worst = [], True, 0.0
    for label, est in pairs:
        at_fit = m.objective(m.params(est), fit.X)
        last = float(np.asarray(est.history_)[-1])
        err = abs(last - at_fit)
        good = bool(np.isfinite(at_fit) and err <= rtol * max(abs(at_fit), abs(last)))
        ok &= good
        worst = max(worst, err)
        lines.append(f"{label}: history_[-1] {last:.12g} vs objective at its parameters {at_fit:.12g}"
                     + ("" if good else " (differ)"))
    return CheckResult("objective exact", m.id, ok, "; ".join(lines) + ".", worst)


def check_mle(fit, rtol=RTOL_ROUNDOFF):
    """At convergence the fitted objective is at least the objective at the truth."""
    m = fit.model
    na = _not_applicable(m, "mle >= truth")
    if na:
        return na
    at_fit = m.objective(fit.params, fit.X)
    at_truth = m.objective(fit.truth, fit.X)
    converged = bool(getattr(fit.est, "converged_", True))
    gap = at_fit - at_truth
    ok = converged and gap >= -rtol * max(abs(at_fit), abs(at_truth))
    detail = f"fitted {at_fit:.10g} vs truth {at_truth:.10g} (gap {gap:+.3e})"
    if not converged:
        detail += "; the fit did not converge"
    return CheckResult("mle >= truth", m.id, bool(ok), detail + ".", gap)


def check_recovery(fit):
    """Aligned parameter error within C / sqrt(n)."""
    m = fit.model
    err = recovery_error(m, fit.truth, fit.params)
    bound = m.recovery_c / np.sqrt(fit.n)
    return CheckResult("recovery", m.id, bool(err <= bound),
                       f"RMS error {err:.4g} vs bound C/sqrt(n) = {bound:.4g} at n={fit.n}.", err)


def check_consistency(model, seed, n=None, replicates=CONSISTENCY_REPLICATES):
    """With 16x the data the aligned error falls clearly (theory: about 1/4).

    The error at each size is the root mean square over ``replicates``
    independent data sets from the same truth, so that the ratio is not at the
    mercy of one lucky or unlucky draw.
    """
    n = model.n if n is None else int(n)

    def rms(size):
        errs = []
        for r in range(replicates):
            f = fit_case(model, seed, size, r)
            errs.append(recovery_error(model, f.truth, f.params))
        return float(np.sqrt(np.mean(np.square(errs))))

    e1, e2 = rms(n), rms(n * CONSISTENCY_FACTOR)
    ratio = e2 / e1 if e1 > 0 else np.inf
    return CheckResult("consistency", model.id, bool(ratio <= CONSISTENCY_MAX_RATIO),
                       f"error {e1:.4g} at n={n}, {e2:.4g} at n={n * CONSISTENCY_FACTOR} "
                       f"({replicates} replicates each): ratio {ratio:.3f} "
                       f"(theory {1 / np.sqrt(CONSISTENCY_FACTOR):.2f}, limit {CONSISTENCY_MAX_RATIO}).", ratio)


def check_oracle(fit, rtol=RTOL_ROUNDOFF):
    """Kernels agree with the model's naive numpy/scipy computations (normwise relative)."""
    m = fit.model
    if not m.has("emref_oracle"):
        return CheckResult("oracle", m.id, False, "the model defines no emref_oracle hook.")
    worst, lines = 0.0, []
    triples = list(m.module.emref_oracle(fit.est, fit.X))
    if not triples:
        return CheckResult("oracle", m.id, False, "emref_oracle returned no quantities to compare.")
    for name, got, ref in triples:
        got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
        if got.shape != ref.shape:
            lines.append(f"{name}: shape {got.shape} vs {ref.shape}")
            worst = np.inf
            continue
        scale = max(float(np.abs(ref).max(initial=0.0)), np.finfo(float).tiny)
        err = float(np.abs(got - ref).max(initial=0.0)) / scale
        if not np.isfinite(err):
            err = np.inf
        worst = max(worst, err)
        if err > rtol:
            lines.append(f"{name}: relative error {err:.2e}")
    ok = not lines
    detail = "; ".join(lines) if lines else f"all quantities agree; worst relative error {worst:.1e}."
    return CheckResult("oracle", m.id, ok, detail, worst)


def _param_digest(model, seed, n):
    """sha256 of the fitted parameters and history_ (bytes, so bit-identity)."""
    truth, X, _ = draw(model, seed, n)
    est, _ = fit_on(model, truth, X, seed)
    h = hashlib.sha256()
    params = model.params(est)
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name], dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(est.history_, dtype=np.float64).tobytes())
    return h.hexdigest()


def check_determinism(model, seed, n=None, threads=(1, 2)):
    """Same seed, same bits: twice in this process, and under each NUMBA_NUM_THREADS."""
    n = model.n if n is None else int(n)
    digests = {"this process, run 1": _param_digest(model, seed, n),
               "this process, run 2": _param_digest(model, seed, n)}
    for t in threads:
        env = dict(os.environ, NUMBA_NUM_THREADS=str(t))
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        out = subprocess.run(
            [sys.executable, "-m", "harness.checks", model.path, model.variant, str(seed), str(n)],
            env=env, cwd=str(ROOT), capture_output=True, text=True)
        if out.returncode != 0:
            return CheckResult("determinism", model.id, False,
                               f"the NUMBA_NUM_THREADS={t} run failed: "
                               f"{(out.stderr.strip().splitlines() or ['no message'])[-1]}")
        try:
            digests[f"NUMBA_NUM_THREADS={t}"] = json.loads(out.stdout.strip().splitlines()[-1])["digest"]
        except (IndexError, ValueError, KeyError):
            return CheckResult("determinism", model.id, False,
                               f"the NUMBA_NUM_THREADS={t} run printed no digest.")
    distinct = set(digests.values())
    if len(distinct) == 1:
        return CheckResult("determinism", model.id, True,
                           f"bit-identical across {', '.join(digests)}.", 0.0)
    groups = {}
    for k, v in digests.items():
        groups.setdefault(v[:12], []).append(k)
    return CheckResult("determinism", model.id, False,
                       "parameters differ: " + "; ".join(f"{d}: {', '.join(ks)}" for d, ks in groups.items()) + ".",
                       float(len(distinct)))


def one_sentence_problem(msg):
    """Why ``msg`` is not one plain sentence (None if it is): one line, ends with . ? or !, no second
    sentence, under 300 characters, no numba internals."""
    text = msg.strip()
    if not text or "\n" in text or not text.endswith((".", "?", "!")):
        return f"message is not one plain sentence: {msg[:120]!r}"
    if len(msg) > 300:
        return f"message is longer than 300 characters: {msg[:120]!r}"
    if re.search(r"[.!?]\s+[A-Z]", text):
        return f"message has more than one sentence: {msg[:120]!r}"
    if "numba" in text.lower() or "nopython" in text.lower():
        return f"message shows numba internals: {msg[:120]!r}"
    return None


def assert_monotone(history, what="history_"):
    """pytest helper: history never falls by more than round-off (check_monotone's rule); < 2 entries pass."""
    if len(history) < 2:
        return
    result = check_monotone(what, history)
    assert result.passed, result.detail


def assert_one_sentence(msg):
    """pytest helper: msg is one plain sentence (one_sentence_problem's rule)."""
    problem = one_sentence_problem(msg)
    assert problem is None, problem


def check_hostile(model, X):
    """Every hostile input gets a one-sentence ValueError/TypeError and leaves the arrays unchanged."""
    if not model.has("emref_hostile"):
        return CheckResult("hostile input", model.id, False, "the model defines no emref_hostile hook.")
    with warnings.catch_warnings():      # the hook may fit a model to refuse inputs against
        warnings.simplefilter("ignore")
        cases = list(model.module.emref_hostile(model.variant, X))
    problems = []
    if not cases:
        return CheckResult("hostile input", model.id, False, "emref_hostile returned no cases.")
    for name, call, arrays in cases:
        before = [_copy(a) for a in arrays]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
        except (ValueError, TypeError) as exc:
            mod = type(exc).__module__ or ""
            if mod.startswith("numba"):
                problems.append(f"{name}: a numba {type(exc).__name__}")
            elif one_sentence_problem(str(exc)):
                problems.append(f"{name}: {one_sentence_problem(str(exc))}")
        except Exception as exc:  # noqa: BLE001 - any other type is the failure being checked
            problems.append(f"{name}: raised {type(exc).__name__}, not ValueError/TypeError")
        else:
            problems.append(f"{name}: accepted")
        if not all(_same(a, b) for a, b in zip(arrays, before)):
            problems.append(f"{name}: the caller's array was modified")
    ok = not problems
    return CheckResult("hostile input", model.id, ok,
                       "; ".join(problems) if problems else f"all {len(cases)} cases refused cleanly.",
                       float(len(problems)))


def _finite_tree(obj):
    try:
        return bool(np.isfinite(np.asarray(obj, dtype=float)).all())
    except (TypeError, ValueError):
        return False


def check_edge(model):
    """Inputs that must work: each fit ends with finite parameters and a finite history_."""
    if not model.has("emref_edge"):
        return CheckResult("edge cases", model.id, False, "the model defines no emref_edge hook.")
    problems, cases = [], list(model.module.emref_edge(model.variant))
    if not cases:
        return CheckResult("edge cases", model.id, False, "emref_edge returned no cases.")
    for name, call in cases:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = call()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(f"{name}: raised {type(exc).__name__}: {exc}")
            continue
        try:
            params = model.params(est)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name}: emref_params raised {type(exc).__name__}: {exc}")
            continue
        bad = [k for k, v in params.items() if not _finite_tree(v)]
        if bad or not _finite_tree(est.history_):
            problems.append(f"{name}: non-finite {', '.join(bad) or 'history_'}")
        elif not check_monotone(model.id, est.history_).passed and len(est.history_) > 1:
            problems.append(f"{name}: history_ is not monotone")
    ok = not problems
    return CheckResult("edge cases", model.id, ok,
                       "; ".join(problems) if problems else f"all {len(cases)} cases fit with finite results.",
                       float(len(problems)))


def check_scenario(model, name, seed):
    """Run a model's seed scenario; passes when the scenario says so and EM was monotone."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.module.emref_scenarios()[name](seed)
    out["seconds"] = time.perf_counter() - t0
    mono = check_monotone(model.id, out["estimator"].history_)
    ok = bool(out["passed"]) and mono.passed
    detail = out["detail"] + ("" if mono.passed else f"; {mono.detail}")
    return CheckResult(f"scenario {name}", model.id, ok, detail), out


def _main(argv):
    """Subprocess entry of check_determinism: print the digest of one fit."""
    path, variant, seed, n = argv
    model = next(m for m in models_from_file(path) if m.variant == variant)
    print(json.dumps({"digest": _param_digest(model, int(seed), int(n))}))


if __name__ == "__main__":
    _main(sys.argv[1:])
