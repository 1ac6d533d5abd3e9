"""The classic parallel-reduction bug: a ``prange`` reduction splits the rows by
thread, so the log-likelihood's rounding depends on the thread count."""

from numba import njit, prange

import models.gmm as _gmm
from models.gmm import *  # noqa: F401,F403  (the real file's hooks)

EMREF_VARIANTS = ("full",)


@njit(parallel=True, cache=True)
def _reduce(logp, sw):
    s = 0.0
    for i in prange(logp.shape[0]):
        s += logp[i] * sw[i]
    return s


class GaussianMixture(_gmm.GaussianMixture):
    def _e_step(self, lay, sw, want_stats=True, resp_out=None):
        ll, stats = super()._e_step(lay, sw, want_stats, resp_out)
        return _reduce(lay["logp"], sw) / sw.sum(), stats


def emref_estimator(variant, truth, seed):
    return GaussianMixture(len(truth["weights"]), covariance_type=variant, tol=1e-10, max_iter=2000,
                           random_state=seed)
