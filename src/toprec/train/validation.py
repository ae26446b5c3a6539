"""The trainer's validation: the holdout it scores (given, or cut from the training data) and the score.

Every validation list comes from the shared top-k (:func:`toprec.recommend.topk`):
the user's training items masked, users without history served by
popularity, ties to the lower item, the same lists for any batch size, on
the host or on the device.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import metrics, parallel, split
from ..recommend import Recommendations, topk

#: bytes of one batch's scores and sort buffers when the top-k runs on the device
DEVICE_BUDGET = 1 << 30
#: the validation metric (early stopping, best epoch)
METRIC = "recall@10"


def holdout(X: sp.csr_matrix, train, valid, params):
    """(training matrix, training Dataset, holdout or None, cut_from_train).

    ``valid`` given: it is the holdout and the model trains on ``train`` as
    given. Else each user's last ``valid_last`` + ``valid_random`` random
    earlier events (the competition protocol, seeded) are cut from ``train``;
    ``valid_users`` keeps a seeded sample of the holdout's users. No holdout
    when both counts are 0 or no user has enough events.
    """
    p = params
    if valid is not None:
        return X, train, valid, False
    if p.valid_last + p.valid_random == 0:
        return X, train, None, False
    fit_data, cut = split.competition(train, last=p.valid_last, random=p.valid_random, seed=p.seed)
    if len(cut.users) == 0:
        return X, train, None, False
    if p.valid_users and len(cut.users) > p.valid_users:
        keep = np.random.default_rng(p.seed).choice(cut.users, p.valid_users, replace=False)
        mask = np.zeros(cut.matrix.shape[0], dtype=np.float32)
        mask[keep] = 1.0
        D = sp.diags(mask)
        sub = lambda m: sp.csr_matrix(D @ m)  # noqa: E731
        cut = split.Holdout(sub(cut.matrix), {k: sub(v) for k, v in cut.parts.items()}, None, cut.protocol)
    return fit_data.matrix, fit_data, cut, True


def rank(model, module, users: np.ndarray, hist: sp.csr_matrix, k: int, on_device: bool,
         budget: int = DEVICE_BUDGET, description: str = "recommend", check_scores: bool = True) -> Recommendations:
    """The shared top-k of ``module``'s scores for ``users`` with histories ``hist`` (seen items masked,
    cold users get popularity): scored and ranked on the model's device (``on_device``), else on the host.
    ``check_scores``: non-finite scores are an error (off for the per-epoch validation)."""
    if on_device:
        return topk(lambda u, h: model._score_tensor(module, u, h), users, model.n_items, k, hist, hist,
                    memory_budget=budget, description=description, popularity=model.item_popularity,
                    device=model.device_, check_scores=check_scores)  # fmt: skip
    with parallel.single_process():  # forking after torch has started its threads (or CUDA) is unsafe
        return topk(lambda u, h: model._score_with(module, u, h), users, model.n_items, k, hist, hist,
                    description=description, popularity=model.item_popularity, check_scores=check_scores)  # fmt: skip


def score(model, module, cut, X: sp.csr_matrix) -> float:
    """:data:`METRIC` of ``module`` (in training mode, scored in the model's scoring dtype) on holdout ``cut``."""
    users = cut.users
    recs = rank(model, model._as_scoring(module), users, sp.csr_matrix(X[users]), 10, model._on_device(),
                description=f"{model.name}: validate", check_scores=False)  # fmt: skip
    module.train()
    return float(metrics.evaluate(recs, cut, [METRIC])[METRIC])
