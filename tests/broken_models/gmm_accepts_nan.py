"""Validation that forgets to reject NaN and infinity."""

import numpy as np

import models.gmm as _gmm
from models.gmm import *  # noqa: F401,F403  (the real file's hooks)

EMREF_VARIANTS = ("full",)


class GaussianMixture(_gmm.GaussianMixture):
    def _fit(self, X, sample_weight):
        with np.errstate(all="ignore"):
            X = np.nan_to_num(np.asarray(X, dtype=float))   # silently "repairs" the input
        return super()._fit(X, sample_weight)


def emref_estimator(variant, truth, seed):
    return GaussianMixture(len(truth["weights"]), covariance_type=variant, random_state=seed)


def emref_hostile(variant, X):
    bad = X.copy()
    bad[0, 0] = np.nan
    return [("X with NaN", lambda: GaussianMixture(3, covariance_type=variant).fit(bad), [bad])]
