"""``evaluate_folds`` (``toprec evaluate --folds K``): the plain repeated-holdout estimate.

K competition cuts with seeds ``seed..seed+K-1``, one fit each, mean and
standard deviation. The ``last`` part is the same events in every cut (only
the random part and hence the training data change), so its spread
understates the true uncertainty of recall_last.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .. import metrics, split
from ..errors import ToprecError

RANDOMISED_PROTOCOLS = ("competition", "random_k", "strong")


def evaluate_folds(
    data,
    model_factory: Callable[[], Any] | str,
    k: int = 10,
    folds: int = 5,
    seed: int = 0,
    last: int = 1,
    random: int = 9,
    metric_names: Sequence[str] | None = None,
    protocol: str = "competition",
) -> dict[str, Any]:
    """K holdouts cut with seeds ``seed .. seed+K-1``, one fresh model fitted on each.

    ``model_factory()`` returns a new unfitted model (a model name also
    works). Returns ``{"folds", "seeds", "k", "protocol", "per_fold": [{metric:
    value, "fit_s", "recommend_s"}], "mean": {...}, "std": {...}}`` for
    recall@k, ndcg@k and, for the competition protocol, recall_last@k and
    recall_random@k (plus ``metric_names``); std is the sample standard
    deviation (ddof=1; 0 for one fold). The protocol must be randomised
    (competition, random_k, strong): the others cut the same holdout for
    every seed.
    """
    from .. import models

    if folds < 1:
        raise ToprecError(f"--folds must be >= 1, got {folds}")
    if protocol not in RANDOMISED_PROTOCOLS:
        raise ToprecError(
            f"--folds needs a randomised protocol ({', '.join(RANDOMISED_PROTOCOLS)}); '{protocol}' cuts the same "
            "holdout for every seed"
        )
    factory = (lambda: models.get(model_factory)) if isinstance(model_factory, str) else model_factory
    names = list(dict.fromkeys([f"recall@{k}", f"ndcg@{k}", *(metric_names or [])]))
    per_fold = []
    seeds = [seed + f for f in range(folds)]
    for s in seeds:
        train, hold = split.by_name(data, protocol, last=last, random=random, seed=s)
        users = hold.users
        if len(users) == 0:
            raise ToprecError(f"evaluate: no user has enough events for the {protocol} protocol")
        model = factory()
        per_fold.append(metrics.fit_and_evaluate(model, train, hold, k, names, label=f" (fold seed {s})"))
        del model
    keys = [key for key in per_fold[0] if not key.endswith("_s")]
    mean = {key: float(np.mean([f[key] for f in per_fold])) for key in keys}
    std = {key: float(np.std([f[key] for f in per_fold], ddof=1)) if folds > 1 else 0.0 for key in keys}
    return {"folds": folds, "seeds": seeds, "k": k, "protocol": protocol, "last": last, "random": random,
            "per_fold": per_fold, "mean": mean, "std": std}  # fmt: skip


def summarize_folds(result: dict[str, Any]) -> dict[str, float]:
    """One flat row for a results table: ``metric`` = mean, ``metric_std`` = std, plus mean fit/recommend seconds."""
    row: dict[str, float] = {}
    for key, value in result["mean"].items():
        row[key] = value
        row[f"{key}_std"] = result["std"][key]
    for t in ("fit_s", "recommend_s"):
        row[t] = round(float(np.mean([f[t] for f in result["per_fold"]])), 3)
    return row
