"""Weight and member-subset search on ONE validation fold (fold A).

The objective is recall@k (the competition's form) of the fused top k over
the fold's users, computed from a :class:`~toprec.ensemble.fusion.CandidatePool`
built once: each trial is one tensor contraction plus a partition, so a
search of a few hundred trials takes seconds. The functions here only ever
receive the fold-A pool and truth; the confirmation fold is handled by
:class:`toprec.ensemble.ensemble.Ensemble`, after the search has returned.

Everything is deterministic: fixed trial order, ties between trials kept by
the earlier one, random restarts drawn from ``seed``. A move is accepted only
if it improves fold-A recall by more than ``min_gain`` (a guard against
chasing noise: one hit more for one user is worth 1/(k * users)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import ToprecError
from ..metrics import hit_matrix
from .fusion import CandidatePool

SEARCHES = ("none", "weights", "subset", "both")
#: multiplicative moves tried on each weight by coordinate ascent (0 drops the member)
WEIGHT_FACTORS = (0.0, 0.25, 0.5, 0.75, 1.5, 2.0, 4.0)
#: weights tried for a member joining the subset, relative to the mean weight already in
JOIN_FACTORS = (0.25, 0.5, 1.0, 2.0)


class Objective:
    """Fold-A recall@k of the fused lists for a weight vector (memoised)."""

    def __init__(self, pool: CandidatePool, truth: sp.csr_matrix, k: int):
        if truth.shape[0] != len(pool.users):
            raise ValueError("truth rows must align with the pool's users")
        self.pool = pool
        self.k = k
        self.hits = hit_matrix(pool.items, truth.tocsr())  # (n, L): candidate is held out
        self.n_truth = np.diff(truth.tocsr().indptr)
        self.denom = np.maximum(1, np.minimum(k, self.n_truth))
        self.cache: dict[tuple, float] = {}
        self.calls = 0

    def per_user(self, weights: np.ndarray) -> np.ndarray:
        cols, _ = self.pool.top_columns(weights, self.k)
        h = np.take_along_axis(self.hits, np.maximum(cols, 0), axis=1) & (cols >= 0)
        return h.sum(1) / self.denom

    def __call__(self, weights: np.ndarray) -> float:
        w = np.asarray(weights, dtype=np.float64)
        s = w.sum()
        if s <= 0:
            return -np.inf
        key = tuple(np.round(w / s, 9))
        if key not in self.cache:
            self.calls += 1
            self.cache[key] = float(self.per_user(w / s).mean()) if len(self.n_truth) else 0.0
        return self.cache[key]


@dataclass
class SearchResult:
    weights: np.ndarray  # normalised to sum 1
    score: float  # fold-A recall@k of the chosen weights
    trials: int
    steps: list[dict] = field(default_factory=list)


def _norm(w: np.ndarray) -> np.ndarray:
    s = w.sum()
    return w / s if s > 0 else w


def coordinate_ascent(
    f: Callable[[np.ndarray], float],
    start: np.ndarray,
    allowed: np.ndarray | None = None,
    min_gain: float = 1e-4,
    max_rounds: int = 6,
    steps: list | None = None,
) -> tuple[np.ndarray, float]:
    """Multiply one weight at a time by each of WEIGHT_FACTORS (or give a zero weight one);
    keep the best move if it gains more than ``min_gain``; repeat until a round changes nothing."""
    w = _norm(np.asarray(start, dtype=np.float64).copy())
    best = f(w)
    m = len(w)
    allowed = np.ones(m, bool) if allowed is None else allowed
    for _ in range(max_rounds):
        moved = False
        for j in np.flatnonzero(allowed):
            base = w[w > 0].mean() if (w > 0).any() else 1.0
            values = [w[j] * fct for fct in WEIGHT_FACTORS] if w[j] > 0 else [base * fct for fct in JOIN_FACTORS]
            cand_best, cand_w = best, None
            for v in values:
                c = w.copy()
                c[j] = v
                if c.sum() <= 0:
                    continue
                c = _norm(c)
                val = f(c)
                if val > cand_best + (min_gain if cand_w is None else 0.0):
                    cand_best, cand_w = val, c
            if cand_w is not None:
                if steps is not None:
                    steps.append({"move": "weight", "member": int(j), "recall": cand_best, "gain": cand_best - best})
                w, best, moved = cand_w, cand_best, True
        if not moved:
            break
    return w, best


def greedy_subset(
    f: Callable[[np.ndarray], float],
    m: int,
    line_search: bool = False,
    min_gain: float = 1e-4,
    steps: list | None = None,
) -> tuple[np.ndarray, float]:
    """Forward selection: start from the best single member, add the member that most
    improves fold-A recall (at the mean weight, or the best of JOIN_FACTORS with
    ``line_search``), stop when no addition gains more than ``min_gain``."""
    singles = [f(np.eye(m)[j]) for j in range(m)]
    first = int(np.argmax(singles))
    w = np.eye(m)[first]
    best = singles[first]
    if steps is not None:
        steps.append({"move": "start", "member": first, "recall": best})
    while True:
        base = w[w > 0].mean()
        cand_best, cand_w, cand_j = best, None, -1
        for j in np.flatnonzero(w == 0):
            for fct in JOIN_FACTORS if line_search else (1.0,):
                c = w.copy()
                c[j] = base * fct
                c = _norm(c)
                val = f(c)
                if val > cand_best:
                    cand_best, cand_w, cand_j = val, c, int(j)
        if cand_w is None or cand_best <= best + min_gain:
            break
        if steps is not None:
            steps.append({"move": "add", "member": cand_j, "recall": cand_best, "gain": cand_best - best})
        w, best = cand_w, cand_best
    return w, best


def run_search(
    pool: CandidatePool,
    truth: sp.csr_matrix,
    k: int = 10,
    search: str = "both",
    start: np.ndarray | None = None,
    min_gain: float = 1e-4,
    restarts: int = 0,
    seed: int = 0,
) -> SearchResult:
    """Search the weights and/or the subset of members on the pool's (fold-A) users.

    ``search``: ``none`` (evaluate ``start``, default equal weights),
    ``weights`` (coordinate ascent from ``start`` plus ``restarts`` random
    Dirichlet starts), ``subset`` (greedy forward selection, equal weights),
    ``both`` (greedy selection with a line search on each newcomer's weight,
    then coordinate ascent over the chosen members).
    """
    if search not in SEARCHES:
        raise ToprecError(f"unknown search '{search}' (choose from {', '.join(SEARCHES)})")
    m = pool.n_members
    f = Objective(pool, truth, k)
    steps: list[dict] = []
    start = np.ones(m) if start is None else np.asarray(start, dtype=np.float64)
    if search == "none":
        w = _norm(start)
        best = f(w)
    elif search == "weights":
        w, best = coordinate_ascent(f, start, min_gain=min_gain, steps=steps)
        rng = np.random.default_rng(seed)
        for r in range(restarts):
            s = rng.dirichlet(np.ones(m))
            cw, cb = coordinate_ascent(f, s, min_gain=min_gain, steps=None)
            if cb > best + min_gain:
                steps.append({"move": "restart", "restart": r, "recall": cb, "gain": cb - best})
                w, best = cw, cb
    elif search == "subset":
        w, best = greedy_subset(f, m, line_search=False, min_gain=min_gain, steps=steps)
    else:
        w, best = greedy_subset(f, m, line_search=True, min_gain=min_gain, steps=steps)
        w, best = coordinate_ascent(f, w, allowed=w > 0, min_gain=min_gain, steps=steps)
    if search != "none":  # never return less than the best single member
        singles = [f(np.eye(m)[j]) for j in range(m)]
        j = int(np.argmax(singles))
        if singles[j] > best:
            steps.append({"move": "single", "member": j, "recall": singles[j], "gain": singles[j] - best})
            w, best = np.eye(m)[j], singles[j]
    return SearchResult(_norm(w), best, f.calls, steps)
