"""history_ recorded one iteration late (the objective of the previous parameters)."""

import numpy as np

import models.gmm as _gmm
from models.gmm import *  # noqa: F401,F403  (the real file's hooks)

EMREF_VARIANTS = ("full",)


class GaussianMixture(_gmm.GaussianMixture):
    def fit(self, X, y=None, sample_weight=None):
        super().fit(X, y, sample_weight)
        self.history_ = np.r_[self.history_[:1], self.history_[:-1]]
        self.lower_bound_ = self.history_[-1]
        return self


def emref_estimator(variant, truth, seed):
    return GaussianMixture(len(truth["weights"]), covariance_type=variant, tol=1e-10, max_iter=2000,
                           random_state=seed)
