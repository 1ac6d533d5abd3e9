"""``python -m harness``: fit every model on synthetic truth and its seed scenarios.

    python -m harness [run] [--models gmm ...] [--seeds 0-2] [--n N] [--out report]
    python -m harness bench [...]     peer benchmarks (see harness/bench.py)
    python -m harness warm            compile and cache every model's kernels

``run`` prints one table row per (model, data) as it goes, writes a PNG per
row and ``index.html`` into the output folder, and exits 1 if any check fails.
"""

import argparse
import html
import sys
import time
from pathlib import Path

import numpy as np

from . import checks
from .discover import Model, discover
from .plots import plot_fit

COLUMNS = ("model", "data", "iters", "objective", "monotone", "recovery err", "result", "seconds")
WIDTHS = (16, 18, 6, 14, 9, 13, 7, 8)


def parse_seeds(text):
    """'0-2,7' -> [0, 1, 2, 7]."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            seeds += range(int(a), int(b) + 1)
        elif part:
            seeds.append(int(part))
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be non-negative integers like '0-2,7'; got {text!r}.")
    return seeds


def _row(cells):
    return "  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, WIDTHS))


def run_synthetic(model, seed, n, out_dir, determinism=True, per_model=True):
    """All checks of one (model, seed); returns (row, results, plot file name)."""
    fit = checks.fit_case(model, seed, n)
    results = [checks.check_clean_fit(fit), checks.check_monotone(model.id, fit.est.history_),
               checks.check_objective_exact(fit), checks.check_mle(fit), checks.check_recovery(fit),
               checks.check_consistency(model, seed, fit.n), checks.check_oracle(fit)]
    if per_model:
        results += [checks.check_hostile(model, fit.X), checks.check_edge(model)]
        if determinism:
            results.append(checks.check_determinism(model, seed, fit.n))
    png = f"{model.id}-seed{seed}.png"
    plot_fit(model, fit.truth, fit.est, fit.X, fit.z, out_dir / png, f"{model.id}, seed {seed}, n={fit.n}")
    ok = all(r.passed for r in results)
    h = np.asarray(fit.est.history_)
    row = (model.id, f"synthetic s{seed}", len(h) - 1, f"{h[-1]:.8g}", "yes" if results[1].passed else "NO",
           f"{results[4].value:.3g}", "pass" if ok else "FAIL", f"{fit.seconds:.3f}")
    return row, results, png


def run_scenario(models, name, seed, out_dir):
    """One seed scenario of a family; the scenario names its own variant."""
    result, out = checks.check_scenario(models[0], name, seed)
    first = models[0]
    model = Model(first.family, out.get("variant", first.variant), first.module, first.path)
    result.model = model.id
    est = out["estimator"]
    png = f"{model.family}-{name}-seed{seed}.png"
    plot_fit(model, out["truth"], est, out["X"], out["z"], out_dir / png,
             f"{model.id}, scenario {name}, seed {seed}: {out['detail']}")
    h = np.asarray(est.history_)
    err = checks.recovery_error(model, out["truth"], model.params(est))
    row = (model.id, f"{name} s{seed}", len(h) - 1, f"{h[-1]:.8g}",
           "yes" if checks.check_monotone(model.id, h).passed else "NO", f"{err:.3g}",
           "pass" if result.passed else "FAIL", f"{out['seconds']:.3f}")
    return row, [result], png


def write_index(out_dir, rows, command):
    """index.html: the table, each check's outcome, and every figure."""
    parts = ["<!doctype html><meta charset='utf-8'><title>emref report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.FAIL{background:#fdd}"
             ".pass{background:#dfd}img{max-width:100%;border:1px solid #eee}</style>",
             f"<h1>emref report</h1><p>Reproduce: <code>{html.escape(command)}</code></p>",
             "<table><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "<th>details</th></tr>"]
    for i, (row, _, _) in enumerate(rows):
        cells = "".join(f"<td class='{c}'>{html.escape(str(c))}</td>" if c in ("pass", "FAIL")
                        else f"<td>{html.escape(str(c))}</td>" for c in row)
        parts.append(f"<tr>{cells}<td><a href='#row{i}'>checks and plot</a></td></tr>")
    parts.append("</table>")
    if (out_dir / "bench.png").exists():
        parts.append("<h2>Benchmark</h2><img src='bench.png'>")
    for i, (row, results, png) in enumerate(rows):
        parts.append(f"<h2 id='row{i}'>{html.escape(row[0])}, {html.escape(row[1])}</h2><ul>")
        for r in results:
            mark = ("pass" if r.passed else "FAIL") if r.applicable else "n/a"
            parts.append(f"<li class='{mark}'><b>{html.escape(r.check)}</b>: {mark}: {html.escape(r.detail)}</li>")
        parts.append(f"</ul><img src='{png}'>" if png else "</ul>")
    (out_dir / "index.html").write_text("\n".join(parts) + "\n")


def cmd_run(args):
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = discover(args.models_dir, select=args.models)
    command = "python -m harness run " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["run"] else sys.argv[1:])
    print(f"emref: {len(models)} model variant(s), seeds {args.seeds}; report in {out_dir}/", flush=True)
    print(f"compiling or loading the numba kernels ... {_warm(models):.1f} s (not counted below)", flush=True)
    print(_row(COLUMNS), flush=True)
    rows, t0 = [], time.perf_counter()
    failures = []

    def emit(row, results, png):
        rows.append((row, results, png))
        print(_row(row), flush=True)
        for r in results:
            if not r.passed:
                failures.append(r)
                print(f"    FAIL {r.check}: {r.detail}", flush=True)

    def guarded(label_model, label_data, run, *a, **kw):
        """Run one row; an exception becomes a failed row, not a crash of the whole report."""
        try:
            return run(*a, **kw)
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            r = checks.CheckResult("ran", label_model, False, f"raised {type(exc).__name__}: {exc}")
            return (label_model, label_data, "-", "-", "-", "-", "FAIL", "-"), [r], ""

    for model in models:
        for i, seed in enumerate(args.seeds):
            emit(*guarded(model.id, f"synthetic s{seed}", run_synthetic, model, seed, args.n, out_dir,
                          determinism=not args.no_determinism, per_model=(i == 0)))
    families = {}
    for m in models:
        families.setdefault(m.family, []).append(m)
    if not args.no_scenarios:
        for fam_models in families.values():
            if not fam_models[0].has("emref_scenarios"):
                continue
            for name in fam_models[0].module.emref_scenarios():
                for seed in args.seeds:
                    emit(*guarded(fam_models[0].family, f"{name} s{seed}", run_scenario,
                                  fam_models, name, seed, out_dir))
    write_index(out_dir, rows, command)
    n_checks = sum(len(r) for _, r, _ in rows)
    n_na = sum(not c.applicable for _, r, _ in rows for c in r)
    print(f"{n_checks - len(failures) - n_na} passed, {len(failures)} failed"
          f"{f', {n_na} not applicable' if n_na else ''} "
          f"({len(rows)} rows, {time.perf_counter() - t0:.1f} s); open {out_dir / 'index.html'}", flush=True)
    return 1 if failures else 0


def _warm(models):
    """Fit each model once on a small sample, so its kernels are compiled (and cached)."""
    t0 = time.perf_counter()
    for model in models:
        try:
            truth, X, _ = checks.draw(model, 0, 200)
            checks.fit_on(model, truth, X, 0)
        except Exception as exc:  # noqa: BLE001 - the checks report it in full
            print(f"{model.id}: the warm-up fit raised {type(exc).__name__}: {exc}", flush=True)
    return time.perf_counter() - t0


def cmd_warm(args):
    """Compile every model's kernels once (fills the numba cache)."""
    seconds = _warm(discover(args.models_dir, select=args.models))
    print(f"warmed the numba cache in {seconds:.1f} s", flush=True)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="fit every model and run every check (the default)")
    for q in (p, run):
        q.add_argument("--models", nargs="+", metavar="NAME",
                       help="families or variant ids, e.g. gmm or gmm-full (default: all)")
        q.add_argument("--models-dir", default=None, metavar="DIR",
                       help="folder of model files to check (default: this project's models/)")
        q.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="e.g. 0-2,7 (default 0-2)")
        q.add_argument("--n", type=int, default=None, help="sample size (default: the model's EMREF_N)")
        q.add_argument("--out", default="report", help="output folder (default report/)")
        q.add_argument("--no-determinism", action="store_true",
                       help="skip the 1-vs-2-thread subprocess check (saves a few seconds)")
        q.add_argument("--no-scenarios", action="store_true", help="skip the seed scenarios")
    sub.add_parser("bench", help="benchmarks against peers; see `python -m harness bench -h`", add_help=False)
    warm = sub.add_parser("warm", help="compile and cache every model's kernels")
    warm.add_argument("--models", nargs="+", metavar="NAME")
    warm.add_argument("--models-dir", default=None, metavar="DIR")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from . import bench
        return bench.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "warm":
        return cmd_warm(args)
    if args.n is not None and args.n < 1:
        print("--n must be a positive integer.", file=sys.stderr)
        return 2
    try:
        return cmd_run(args)
    except (TypeError, ValueError) as exc:   # discovery: unknown --models, a file lacking hooks
        print(f"python -m harness: {exc}", file=sys.stderr)
        return 2
