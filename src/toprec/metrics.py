"""Full-ranking top-k metrics with per-user arrays.

Every metric takes the ranked item lists of the evaluated users (``items``,
shape (n, k), -1 for empty slots) and the held-out truth (a CSR matrix whose
rows align with those users) and returns one value per user; ``evaluate``
averages over users with at least one held-out item.

Definitions (``hits[r]`` = the item at rank r+1 is held out, ``T`` = |truth|):

- ``recall@k``    = sum(hits[:k]) / min(k, T)        (the competition's form)
- ``precision@k`` = sum(hits[:k]) / k
- ``hit@k``       = 1 if any hit in the top k
- ``ndcg@k``      = sum(hits[r] / log2(r + 2)) / sum_{r < min(k, T)} 1 / log2(r + 2)
- ``map@k``       = sum_r precision@(r+1) * hits[r] / min(k, T)
- ``mrr@k``       = 1 / rank of the first hit within the top k (0 if none)
- ``coverage@k``  = share of the catalogue appearing in anyone's top k (not per user)
"""

from __future__ import annotations

import re
import time
from typing import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from . import progress
from .errors import ToprecError
from .keys import hit_matrix  # noqa: F401 (part of the metrics API)

PER_USER = ("recall", "precision", "hit", "ndcg", "map", "mrr")
METRICS = PER_USER + ("coverage",)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def recall(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(1) / np.maximum(1, np.minimum(k, n_truth))


def precision(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(1) / k


def hit(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(1).astype(np.float64)


def ndcg(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    disc = _discounts(k)
    h = hits[:, :k]
    dcg = (h * disc[: h.shape[1]]).sum(1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(k, n_truth)]
    return dcg / np.maximum(ideal, 1e-12)


def map_(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    prec = np.cumsum(h, 1) / np.arange(1, h.shape[1] + 1)
    return (prec * h).sum(1) / np.maximum(1, np.minimum(k, n_truth))


def mrr(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = np.argmax(h, axis=1)
    return np.where(h.any(1), 1.0 / (first + 1), 0.0)


_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "recall": recall,
    "precision": precision,
    "hit": hit,
    "ndcg": ndcg,
    "map": map_,
    "mrr": mrr,
}

_NAME = re.compile(r"^([a-z]+)(?:@(\d+))?$")


def parse(name: str, default_k: int = 10) -> tuple[str, int]:
    """``"ndcg@10"`` -> ("ndcg", 10). Unknown names raise ToprecError."""
    m = _NAME.match(name.strip().lower())
    if not m or m.group(1) not in METRICS:
        raise ToprecError(f"unknown metric '{name}' (choose from {', '.join(m + '@k' for m in METRICS)})")
    k = int(m.group(2)) if m.group(2) else default_k
    if k < 1:
        raise ToprecError(f"metric '{name}': k must be >= 1")
    return m.group(1), k


def per_user(name: str, items: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """One metric's value for every row of ``items`` (rows align with ``truth``)."""
    metric, k = parse(name, items.shape[1])
    if metric == "coverage":
        raise ToprecError("coverage is a catalogue metric, not per user")
    if k > items.shape[1]:
        raise ToprecError(f"metric '{name}' needs {k} recommendations per user, got {items.shape[1]}")
    hits = hit_matrix(items[:, :k], truth)
    n_truth = np.diff(truth.indptr)
    return _FUNCS[metric](hits, n_truth, k)


def user_buckets(counts: np.ndarray, n_buckets: int = 5) -> tuple[np.ndarray, list[str]]:
    """Quantile buckets of training activity (``counts``: each user's training events): bucket index per user and
    labels ("lo–hi" events). Fewer buckets where quantiles coincide; none empty."""
    edges = np.unique(np.quantile(counts, np.linspace(0, 1, n_buckets + 1)).round())
    if len(edges) < 2:
        edges = np.array([counts.min(), counts.max()], dtype=np.float64)
    edges[-1] = max(edges[-1], counts.max()) + 1  # the last bucket includes the maximum
    b = np.clip(np.searchsorted(edges, counts, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{int(lo)}–{int(hi) - 1}" for lo, hi in zip(edges[:-1], edges[1:])]
    used = np.flatnonzero(np.bincount(b, minlength=len(labels)))  # rounded edges can leave a bucket empty: drop it
    if len(used) < len(labels):
        b = np.searchsorted(used, b)
        labels = [labels[j] for j in used]
    return b, labels


def coverage(items: np.ndarray, n_items: int, k: int | None = None) -> float:
    it = items if k is None else items[:, :k]
    it = it[it >= 0]
    return float(len(np.unique(it)) / max(1, n_items))


def evaluate(recs, holdout, metrics: Iterable[str] = ("recall@10", "ndcg@10"), part: str | None = None) -> dict[str, float]:
    """Mean of each metric over users with held-out items (``part`` picks e.g. ``last``).

    ``recs`` is a :class:`~toprec.recommend.Recommendations` for any set of
    users; users without truth are ignored, users with truth but no
    recommendations count as zero.
    """
    truth_all = holdout.matrix if part is None else holdout.parts[part]
    users = np.flatnonzero(np.diff(truth_all.indptr) > 0)
    out: dict[str, float] = {}
    if len(users) == 0:
        return {name: float("nan") for name in metrics}
    # align recommendation rows with evaluated users (missing users -> empty lists)
    pos = np.full(truth_all.shape[0], -1, dtype=np.int64)
    valid = (recs.users >= 0) & (recs.users < truth_all.shape[0])
    pos[recs.users[valid]] = np.flatnonzero(valid)
    row = pos[users]
    items = np.full((len(users), recs.k), -1, dtype=np.int64)
    have = row >= 0
    items[have] = recs.items[row[have]]
    truth = truth_all[users]
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    n_truth = np.diff(truth.indptr)
    for name in metrics:
        metric, k = parse(name, recs.k)
        if metric == "coverage":
            out[name] = coverage(recs.items, truth_all.shape[1], k)
            continue
        if k > recs.k:
            raise ToprecError(f"metric '{name}' needs {k} recommendations per user, got {recs.k}")
        if k not in cache:
            cache[k] = hit_matrix(items[:, :k], truth)
        out[name] = float(_FUNCS[metric](cache[k], n_truth, k).mean())
    return out


def fit_and_evaluate(model, train, holdout, k: int = 10, names: Iterable[str] | None = None,
                     label: str = "") -> dict[str, float]:  # fmt: skip
    """Fit ``model`` on ``train``, recommend ``k`` items to the holdout's users, score them.

    Returns the metrics in ``names`` (default recall@k, ndcg@k), recall on each
    part of the holdout when it has several (``recall_last@k``...), and the
    fit and recommend seconds. Strong-generalization holdouts pass their
    fold-in history to ``recommend``.
    """
    names = list(names or [f"recall@{k}", f"ndcg@{k}"])
    users = holdout.users
    t0 = time.perf_counter()
    with progress.task(f"{model.name}: fit{label}"):
        model.fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    history = None if holdout.history is None else holdout.history[users]
    recs = model.recommend(users, k=k, history=history)
    rec_s = time.perf_counter() - t0
    out: dict[str, float] = dict(evaluate(recs, holdout, names))
    if len(holdout.parts) > 1:
        for part in holdout.parts:
            out[f"recall_{part}@{k}"] = evaluate(recs, holdout, [f"recall@{k}"], part=part)[f"recall@{k}"]
    out["fit_s"] = round(fit_s, 3)
    out["recommend_s"] = round(rec_s, 3)
    return out
