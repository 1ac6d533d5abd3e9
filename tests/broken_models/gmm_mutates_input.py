"""Fit that centres the caller's array in place (np.asarray does not copy float64)."""

import numpy as np

import models.gmm as _gmm
from models.gmm import *  # noqa: F401,F403  (the real file's hooks)

EMREF_VARIANTS = ("full",)


class GaussianMixture(_gmm.GaussianMixture):
    def _fit(self, X, sample_weight):
        X = np.asarray(X)
        if X.dtype == np.float64 and X.ndim == 2 and np.isfinite(X).all():
            X -= X.mean(axis=0)
        return super()._fit(X, sample_weight)


def emref_estimator(variant, truth, seed):
    return GaussianMixture(len(truth["weights"]), covariance_type=variant, tol=1e-10, max_iter=2000,
                           random_state=seed)


def emref_hostile(variant, X):
    w = -np.ones(len(X))
    return [("negative sample_weight", lambda: GaussianMixture(3, covariance_type=variant).fit(X, sample_weight=w),
             [X, w])]
