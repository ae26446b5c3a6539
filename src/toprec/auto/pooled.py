"""Small data: the fusion searched and judged over several validation cuts, not one.

On small data one validation cut holds too few held-out events to search
fusion weights and to judge them (ML-100K: ~910 users; the fusion was kept on
1 of 3 seeds, ML-latest-small on 0 of 3). When every member is fitted on the
extra cuts (:meth:`toprec.auto.crossfit.CrossFit.more_cuts`), each cut's
holdout users become rows of one pool (a user appears once per cut, with that
cut's held-out events as truth):

- the verdict leaves one cut out: the weights searched on the other cuts, and
  the member written alone picked by its mean over the other cuts, both scored
  on the cut left out; the per-row differences are averaged per user, and the
  fusion is kept when that gain exceeds one paired standard error over users;
- one method, ``score`` (:data:`METHOD`). Choosing among the five by their
  left-out gain added a maximum over noisy numbers and nothing on average:
  on 7 small-data seeds the method so chosen and ``score`` alone wrote the
  same recall@10 summed over the seeds (1.4853 against 1.4846), ``score`` was
  the best or within 0.0003 of it on 5 of them, and in the first end-to-end
  run (ML-100K seed 0) the rank fusion led the left-out gain (+0.0041 against
  score's) and scored 0.0021 below the score fusion on the test. The verdict
  on one method is also free of that selection. (Choosing by in-sample
  recall is worse: it picked the product fusion, the weakest on the test,
  on ML-latest-small seeds 0 and 1.)
- the weights written are searched on all the cuts together.

Measured (``benchmarks/bench_auto_pooled.py``, 4 cuts, the test read only to
grade; ``benchmarks/results/auto_whatif.md``, session 13): on ML-100K,
ML-latest-small (3 seeds each) and the competition sample (1 seed) the fusion
so chosen was kept on 6 of 7 and scored -0.0019 to +0.0039 recall@10 (5 of 6
above) against the member the cuts' mean picks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..ensemble.fusion import build_pool, fuse
from ..ensemble.search import run_search
from ..metrics import per_user
from ..recommend import Recommendations
from .margin import beats, paired

#: the fusion method searched over the cuts (see the module's docstring)
METHOD = "score"


@dataclass
class Cut:
    """One validation cut: its holdout users, every member's top-N lists for them (rows aligned), the truth."""

    users: np.ndarray
    lists: list[Recommendations]
    truth: sp.csr_matrix

    def recall(self, recs: Recommendations, k: int) -> np.ndarray:
        return per_user(f"recall@{k}", recs.items[:, :k], self.truth)


@dataclass
class Pooled:
    """The fusion over the cuts: the method and weights written, and the leave-one-cut-out verdict."""

    method: str
    weights: np.ndarray
    gain: float
    se: float
    kept: bool
    users: int
    cuts: int
    #: every method's leave-one-cut-out gain
    gains: dict[str, float] = field(default_factory=dict)
    #: per-row recall on the first cut (auto's own) of the fusion weighted on the other cuts
    first_cut: np.ndarray | None = None
    #: each cut's per-row recall of the fusion weighted on the other cuts, and of the member picked on them
    fused_rows: list[np.ndarray] = field(default_factory=list)
    single_rows: list[np.ndarray] = field(default_factory=list)

    def written_rows(self) -> list[np.ndarray]:
        """Each cut's per-row recall, left out, of what is written: the fusion when kept, else the member."""
        return self.fused_rows if self.kept else self.single_rows

    def report(self, labels: list[str]) -> dict[str, Any]:
        return {"method": self.method, "weights": dict(zip(labels, self.weights.tolist())), "gain": self.gain,
                "se": self.se, "kept": self.kept, "users": self.users, "cuts": self.cuts,
                "gains_by_method": self.gains}  # fmt: skip


def stack(cuts: list[Cut]) -> tuple[list[Recommendations], sp.csr_matrix]:
    """The cuts' rows one after another: one list per member (rows numbered 0..n-1), and their truth."""
    lists = []
    for j in range(len(cuts[0].lists)):
        items = np.concatenate([c.lists[j].items for c in cuts])
        scores = np.concatenate([c.lists[j].scores for c in cuts])
        lists.append(Recommendations(np.arange(len(items)), items, scores))
    return lists, sp.vstack([c.truth for c in cuts]).tocsr()


def search(cuts: list[Cut], method: str, k: int, seed: int) -> np.ndarray:
    """Fusion weights (greedy subset with a line search, then coordinate ascent) over the cuts' rows."""
    lists, truth = stack(cuts)
    return run_search(build_pool(lists, method, lists[0].users), truth, k, "both", seed=seed).weights


def fused(cut: Cut, weights: np.ndarray, method: str, k: int) -> Recommendations:
    keep = np.flatnonzero(np.asarray(weights) > 0)
    return fuse([cut.lists[i] for i in keep], np.asarray(weights)[keep], method, k, users=cut.users)


def best_single(cuts: list[Cut], k: int) -> int:
    """The member with the highest recall averaged over the cuts (each cut's mean over its users)."""
    means = [np.mean([c.recall(c.lists[j], k).mean() for c in cuts]) for j in range(len(cuts[0].lists))]
    return int(np.argmax(means))


def per_user_mean(users: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Each user's mean of the differences over the cuts the user is held out in."""
    _, inv = np.unique(users, return_inverse=True)
    return np.bincount(inv, weights=d) / np.bincount(inv)


def decide(cuts: list[Cut], k: int, seed: int, methods: tuple[str, ...] = (METHOD,)) -> Pooled:
    """Leave one cut out per method; the method with the highest gain (one by default); its weights searched
    on every cut."""
    users = np.concatenate([c.users for c in cuts])
    singles = [best_single([c for i, c in enumerate(cuts) if i != j], k) for j in range(len(cuts))]
    best: tuple | None = None
    gains: dict[str, float] = {}
    alone = [cut.recall(cut.lists[singles[j]], k) for j, cut in enumerate(cuts)]
    for method in methods:
        rows = []
        for j, cut in enumerate(cuts):
            w = search([c for i, c in enumerate(cuts) if i != j], method, k, seed)
            rows.append(cut.recall(fused(cut, w, method, k), k))
        d = per_user_mean(users, np.concatenate(rows) - np.concatenate(alone))
        gain, se = paired(d)
        gains[method] = gain
        if best is None or gain > best[1]:  # ties: the earlier method
            best = (method, gain, se, d, rows)
    method, gain, se, d, rows = best
    weights = search(cuts, method, k, seed)
    return Pooled(method, weights, gain, se, beats(d), len(d), len(cuts), gains, rows[0], rows, alone)
