"""M-step that adds the prior twice: lambda = 2 eta + sum_d n_dw phi_dwk (the caller and the M-step both add eta)."""

import models.lda as _lda
from models.lda import *  # noqa: F401,F403  (the real file's hooks)

EMREF_VARIANTS = ("batch",)


class LatentDirichletAllocation(_lda.LatentDirichletAllocation):
    def _em(self, corpus, run, n_steps):
        self._eta_now = run["eta"]
        return super()._em(corpus, run, n_steps)

    def _topic_stats(self, corpus, ratio, eth, eb):
        return super()._topic_stats(corpus, ratio, eth, eb) + self._eta_now


def emref_estimator(variant, truth, seed):
    return LatentDirichletAllocation(len(truth["topic_word"]), doc_topic_prior=_lda._ALPHA,
                                     topic_word_prior=_lda._ETA, max_iter=3000, tol=1e-8, random_state=seed)
