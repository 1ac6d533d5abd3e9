"""M-step that forgets the conditional covariances: Sigma = (S2 - n delta delta^T + Lambda) / n, the
covariance of the filled-in data (the tutorial's plug-in), biased towards zero.

The real E-step adds sum_i C_i into its S2 statistic; this model computes that sum
again (pattern by pattern, in plain numpy, in the standardised units the E-step
runs in) and its M-step takes it back out. The statistics themselves are right."""

import numpy as np

import models.impute as _impute
from models.impute import *  # noqa: F401,F403  (the real file's hooks)

EMREF_VARIANTS = ("mcar",)


def _sum_of_conditional_covariances(lay, Sigma):
    """sum_i C_i = sum_p count_p (Sigma_mm - Sigma_mo Sigma_oo^{-1} Sigma_om) over lay's patterns."""
    CS = np.zeros_like(Sigma)
    for p, count in enumerate(np.bincount(lay["pat"])):
        m = lay["m_idx"][lay["m_ptr"][p]:lay["m_ptr"][p + 1]]
        o = lay["o_idx"][lay["o_ptr"][p]:lay["o_ptr"][p + 1]]
        if len(m):
            B = np.linalg.solve(Sigma[np.ix_(o, o)], Sigma[np.ix_(o, m)])
            CS[np.ix_(m, m)] += count * (Sigma[np.ix_(m, m)] - Sigma[np.ix_(m, o)] @ B)
    return CS


class EMImputer(_impute.EMImputer):
    def _pass(self, lay, mu, Sigma, fac, want_stats=False, **kw):
        out = super()._pass(lay, mu, Sigma, fac, want_stats=want_stats, **kw)
        if want_stats:
            out = {**out, "CS": _sum_of_conditional_covariances(lay, Sigma)}
        return out

    def _m_step(self, stats, centre, lam):
        return super()._m_step({**stats, "S2": stats["S2"] - stats["CS"]}, centre, lam)


def emref_estimator(variant, truth, seed):
    return EMImputer(max_iter=5000, tol=1e-13, random_state=seed)
