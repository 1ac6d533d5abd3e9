"""Find the model files and wrap each (file, variant) pair as a ``Model``.

A model file is any ``models/<family>.py`` not starting with ``_`` that
defines the hooks listed in the README section "Writing a model". Discovery is
sorted by family name, then by the file's own ``EMREF_VARIANTS`` order, so
every pytest-xdist worker collects the same tests in the same order.
"""

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"

REQUIRED = (
    "EMREF_VARIANTS", "EMREF_N", "EMREF_RECOVERY_C",
    "emref_truth", "emref_sample", "emref_estimator", "emref_params",
    "emref_objective", "emref_label_axes",
)


# Checks a model may declare not applicable (EMREF_NOT_APPLICABLE), with a reason:
# only the comparison with the objective at the truth, which a variational
# model cannot evaluate (its bound needs variational parameters the truth lacks).
WAIVABLE = frozenset({"mle >= truth"})


@dataclass(frozen=True)
class Model:
    """One variant of one model family; ``module`` is anything with the hooks."""

    family: str
    variant: str
    module: object
    path: str

    @property
    def id(self):
        return f"{self.family}-{self.variant}"

    def has(self, hook):
        return getattr(self.module, hook, None) is not None

    # thin, variant-bound wrappers around the hooks ---------------------------
    def truth(self, rng, **dims):
        return self.module.emref_truth(self.variant, rng, **dims)

    def sample(self, truth, n, rng):
        return self.module.emref_sample(self.variant, truth, n, rng)

    def estimator(self, truth, seed):
        return self.module.emref_estimator(self.variant, truth, seed)

    def fit(self, est, X):
        if self.has("emref_fit"):
            return self.module.emref_fit(est, X)
        return est.fit(X)

    def params(self, est):
        return {k: np.asarray(v, dtype=float) for k, v in self.module.emref_params(est).items()}

    def objective(self, params, X):
        return float(self.module.emref_objective(self.variant, params, X))

    def label_axes(self):
        return self.module.emref_label_axes(self.variant)

    @property
    def compared(self):
        """Names of the parameters compared with the truth (EMREF_COMPARED; default: all of them)."""
        return tuple(getattr(self.module, "EMREF_COMPARED", ()) or ())

    def not_applicable(self, check):
        """The model's reason why ``check`` does not apply to it (EMREF_NOT_APPLICABLE), or None."""
        return (getattr(self.module, "EMREF_NOT_APPLICABLE", None) or {}).get(check)

    @property
    def n(self):
        return int(self.module.EMREF_N)

    @property
    def recovery_c(self):
        return float(self.module.EMREF_RECOVERY_C)


def load_module(path):
    """Import a model file; files of the project's models/ as ``models.<stem>``."""
    path = Path(path).resolve()
    if path.parent == MODELS_DIR:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        return importlib.import_module(f"models.{path.stem}")
    # The name must not depend on where the folder lives: numba's cache records
    # it, and a renamed module could no longer load its cached kernels.
    name = f"emref_ext_{path.parent.name}_{path.stem}"
    if name in sys.modules and Path(sys.modules[name].__file__).resolve() != path:
        name += "_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]   # a namesake elsewhere
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def models_from_file(path):
    """The Models of one file; raises TypeError naming any missing hook."""
    path = Path(path).resolve()
    module = load_module(path)
    missing = [h for h in REQUIRED if not hasattr(module, h)]
    if missing:
        raise TypeError(f"model file {path.name} lacks the hooks {', '.join(missing)}.")
    variants = module.EMREF_VARIANTS
    if not (isinstance(variants, tuple) and variants and all(isinstance(v, str) for v in variants)
            and len(set(variants)) == len(variants)):
        raise TypeError(f"model file {path.name}: EMREF_VARIANTS must be a non-empty tuple of distinct strings.")
    na = getattr(module, "EMREF_NOT_APPLICABLE", None) or {}
    if not (isinstance(na, dict) and set(na) <= WAIVABLE and all(isinstance(r, str) and r.strip()
                                                                 for r in na.values())):
        raise TypeError(f"model file {path.name}: EMREF_NOT_APPLICABLE may only map "
                        f"{', '.join(sorted(WAIVABLE))} to a reason.")
    return [Model(path.stem, v, module, str(path)) for v in variants]


def discover(models_dir=None, select=None):
    """Sorted list of Models; ``select`` filters by family or id (e.g. 'gmm', 'gmm-full')."""
    models_dir = Path(models_dir) if models_dir else MODELS_DIR
    found = []
    for path in sorted(models_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        found += models_from_file(path)
    if select:
        wanted = set(select)
        unknown = wanted - {m.family for m in found} - {m.id for m in found}
        if unknown:
            raise ValueError(f"unknown model(s): {', '.join(sorted(unknown))}.")
        found = [m for m in found if m.family in wanted or m.id in wanted]
    return found
