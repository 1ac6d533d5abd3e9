"""M-step that forgets the mixing weights: w_k = 1/K instead of N_k / N."""

import numpy as np

import models.gmm as _gmm
from models.gmm import *  # noqa: F401,F403  (the real file's hooks)

EMREF_VARIANTS = ("full",)


class GaussianMixture(_gmm.GaussianMixture):
    def _m_step(self, stats, scatter, shift):
        super()._m_step(stats, scatter, shift)
        K = len(self.weights_)
        self._set_parameters(np.full(K, 1.0 / K), self.means_, self.covariances_, self.precisions_cholesky_)


def emref_estimator(variant, truth, seed):
    return GaussianMixture(len(truth["weights"]), covariance_type=variant, tol=1e-10, max_iter=2000,
                           random_state=seed)
