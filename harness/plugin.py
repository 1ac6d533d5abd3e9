"""pytest plugin: parametrizes tests over discovered models x seeds.

Registered by the root conftest.py (``pytest_plugins = ["harness.plugin"]``).

* A test that takes the argument ``emref_model`` runs once per discovered
  model variant; one that takes ``emref_case`` runs once per (model, seed),
  with stable ids such as ``gmm-full-seed3``; ``emref_scenario`` runs once
  per (family, scenario, seed). Options: ``--emref-models gmm ...`` and
  ``--emref-seeds 0-2``.
* Under pytest-xdist, the controller compiles every model's kernels once
  before the workers start (``python -m harness warm`` in a subprocess), so
  the workers only read the numba cache; each worker is capped at
  ``cores // workers`` numba threads (set by the root conftest.py, before
  numba is imported) and matplotlib uses the Agg backend.
"""

import os
import subprocess
import sys

import pytest

from .cli import parse_seeds
from .discover import ROOT, discover

DEFAULT_SEEDS = "0-2"


def pytest_addoption(parser):
    group = parser.getgroup("emref")
    group.addoption("--emref-models", nargs="+", default=None, metavar="NAME",
                    help="model families or variant ids to test (default: all discovered)")
    group.addoption("--emref-models-dir", default=None, metavar="DIR",
                    help="folder of model files (default: this project's models/)")
    group.addoption("--emref-seeds", default=DEFAULT_SEEDS, metavar="SEEDS",
                    help=f"seeds for the model x seed tests, e.g. 0-4,9 (default {DEFAULT_SEEDS})")
    group.addoption("--emref-no-warm", action="store_true",
                    help="do not compile the numba kernels before the xdist workers start")


def _is_xdist_controller(config):
    return not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None) not in (None, 0)


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
    config.addinivalue_line("markers", "emref: a generic harness check run on every discovered model")
    if _is_xdist_controller(config) and not config.getoption("emref_no_warm"):
        # Compile once, here, so that the workers never race to write the cache.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        args = [sys.executable, "-m", "harness", "warm"]
        if config.getoption("emref_models"):
            args += ["--models", *config.getoption("emref_models")]
        if config.getoption("emref_models_dir"):
            args += ["--models-dir", config.getoption("emref_models_dir")]
        # a failure here is not fatal: the per-model tests report it in full
        subprocess.run(args, check=False, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL)


def pytest_generate_tests(metafunc):
    names = metafunc.fixturenames
    if not {"emref_model", "emref_case", "emref_scenario"} & set(names):
        return
    config = metafunc.config
    models = discover(config.getoption("emref_models_dir"), select=config.getoption("emref_models"))
    seeds = parse_seeds(config.getoption("emref_seeds"))
    if "emref_case" in names:
        cases = [(m, s) for m in models for s in seeds]
        metafunc.parametrize("emref_case", cases, ids=[f"{m.id}-seed{s}" for m, s in cases])
    elif "emref_model" in names:
        metafunc.parametrize("emref_model", models, ids=[m.id for m in models])
    elif "emref_scenario" in names:
        cases = []
        families = {}
        for m in models:
            families.setdefault(m.family, []).append(m)
        for fam in families.values():
            if fam[0].has("emref_scenarios"):
                cases += [(fam, name, s) for name in fam[0].module.emref_scenarios() for s in seeds]
        metafunc.parametrize("emref_scenario", cases,
                             ids=[f"{f[0].family}-{name}-seed{s}" for f, name, s in cases])
