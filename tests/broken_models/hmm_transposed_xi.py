"""M-step that reads the pairwise posteriors the wrong way round: A_jk from sum_t xi_t(k, j)."""

import models.hmm as _hmm
from models.hmm import *  # noqa: F401,F403  (the real file's hooks)
from models.hmm import _normalise_rows

EMREF_VARIANTS = ("categorical",)


class CategoricalHMM(_hmm.CategoricalHMM):
    def _m_step(self, stats):
        super()._m_step(stats)
        self.transmat_ = _normalise_rows(stats["trans"].T + self._trans_prior - 1.0, self.transmat_)


def emref_estimator(variant, truth, seed):
    return CategoricalHMM(len(truth["startprob"]), n_features=truth["emissionprob"].shape[1], tol=1e-7,
                          n_iter=3000, random_state=seed)
