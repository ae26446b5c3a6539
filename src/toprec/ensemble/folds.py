"""The folds of honest validation for ensembles: search on one fold, confirm on another.

Why: in the competition the last points came from ensembles whose weights and
members were searched on a validation holdout, and top teams lost 0.01-0.02
between the public and the private leaderboard — their searches fitted the
noise of the users they searched on. So a search here is judged on users it
never saw (or, with ``scheme="events"``, on events it never saw).

The protocol (``scheme="users"``, the default)
----------------------------------------------
1. Cut the hidden-test structure once from the full data D with
   :func:`toprec.split.competition` (each user's ``last`` latest events plus
   ``random`` random earlier ones; seed ``s``): ``D = T + H``.
2. Split the users that have a holdout into two halves, A and B, at random —
   stratified by activity (users sorted by their number of training events,
   each consecutive pair split between A and B by a coin flip), so the halves
   are equally hard and the A/B difference is mostly the search's own noise.
   This mirrors the competition itself, whose hidden test was split 50:50
   into public and private parts.
3. Every member is fitted once on T (no holdout event of anyone).
4. The search (weights, subset) sees only fold A: the members' lists for A's
   users and A's truth (:mod:`toprec.ensemble.search` never receives
   anything else).
5. The chosen weights are then applied, unchanged, to fold B's users, and
   members and ensemble are reported on both folds. If the ensemble does not
   beat the best single member *on fold B* (the best in hindsight, the
   strictest comparison), the gain did not hold: a warning is printed and
   recorded, and ``Ensemble.apply_fallback`` (what ``toprec ensemble``
   runs) falls back to the best fold-A member unless told ``force``.
6. Only then are the members refitted on all of D and fused with the chosen
   weights for the submission.

Both folds share one split, so "the last event" is each user's real last
event in both — the two folds are independent because their *users* are
disjoint, not their events.

``scheme="events"`` asks the competition's own question — does a validation
cut from the training data rank models like the hidden test of the *same*
users? Fold B = ``competition(D, seed=s)`` stands in for the hidden test and
fold A = ``competition(D - B, seed=s+1)`` is the validation cut from what is
left exactly like B was cut from D; both are scored on the users that have
both holdouts, with one fit per model on ``D - B - A`` (the submission a team
makes with its validation models). The folds share their users and differ in
their events, so a user's difficulty cancels out of the gap, and every user
counts on both sides. With ``last > 0`` fold A's "last" is the latest event
left after B (usually the second-to-last). Users need ``2 * (last + random) +
1`` events to be in both folds; lighter users are left out (on ML-1M 5,084 of
5,923 stay). For an ensemble search this is the weaker check (fold B's users
are the searched ones, only their events are new), so ``users`` stays the
default there.

``scheme="nested"`` is the local-validation-versus-leaderboard view with a refit:
fold B = ``competition(D, seed=s)`` stands in for the hidden test (members
fitted on ``T1 = D - B``), and fold A = ``competition(T1, seed=s+1)`` is the
validation cut from the training data exactly like the hidden test was cut
from D (members fitted on ``T2 = T1 - A``). The search sees only A (fits on
T2); B's numbers come from refits on T1 — like a team validating locally and
then submitting. Its gaps include the systematic shift between a user's
second-to-last and last events, not only sampling noise.

The cuts live here (:func:`make_folds`, :func:`halves`) with the metrics every
report computes on a fold; :class:`~toprec.ensemble.ensemble.Ensemble` runs
the search and the confirmation, :func:`~toprec.ensemble.alignment.align`
compares single models across the two folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import metrics, split
from ..errors import ToprecError
from ..recommend import Recommendations

SCHEMES = ("users", "events", "nested")


@dataclass
class Fold:
    """Evaluated users and their held-out truth (CSR over all users x items; other rows empty)."""

    users: np.ndarray
    truth: sp.csr_matrix
    parts: dict[str, sp.csr_matrix] = field(default_factory=dict)

    @property
    def holdout(self) -> split.Holdout:
        return split.Holdout(self.truth, self.parts)

    @property
    def n_events(self) -> int:
        return int(self.truth.nnz)

    @property
    def counts(self) -> dict[str, int]:
        """``{"users", "events"}``: the fold's size as the reports give it."""
        return {"users": int(len(self.users)), "events": self.n_events}


@dataclass
class Folds:
    scheme: str
    search_train: Any  # Dataset the members are fitted on for the search (fold A)
    confirm_train: Any  # Dataset the members are fitted on for the confirmation (fold B)
    fold_a: Fold
    fold_b: Fold
    description: str

    @property
    def same_fit(self) -> bool:
        """One fit serves both folds (users and events schemes)."""
        return self.search_train is self.confirm_train

    @property
    def same_lists(self) -> bool:
        """One fit and the same users (events scheme): fold A's lists are fold B's, only the truth differs."""
        return self.same_fit and np.array_equal(self.fold_a.users, self.fold_b.users)


def _rows(m: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix(sp.diags(mask.astype(np.float32)) @ m)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _fold(holdout: split.Holdout, users: np.ndarray) -> Fold:
    mask = np.zeros(holdout.matrix.shape[0], dtype=bool)
    mask[users] = True
    parts = {k: _rows(v, mask) for k, v in holdout.parts.items()}
    return Fold(np.sort(users).astype(np.int64), _rows(holdout.matrix, mask), parts)


def halves(users: np.ndarray, activity: np.ndarray, seed: int, stratify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Split ``users`` into two random halves, balanced on ``activity`` when ``stratify``."""
    rng = np.random.default_rng([seed, 0xA11C])
    n = len(users)
    if stratify:
        order = np.lexsort((rng.random(n), activity))
    else:
        order = rng.permutation(n)
    n_pairs = (n + 1) // 2
    coin = rng.integers(0, 2, size=n_pairs)
    pos = 2 * np.arange(n_pairs) + coin
    in_a = np.zeros(n, dtype=bool)
    in_a[order[pos[pos < n]]] = True
    return np.sort(users[in_a]), np.sort(users[~in_a])


def make_folds(
    data, scheme: str = "users", seed: int = 0, last: int = 1, random: int = 9, stratify: bool = True
) -> Folds:
    """Cut the search fold A and the confirmation fold B (see the module docstring)."""
    if scheme not in SCHEMES:
        raise ToprecError(f"unknown validation scheme '{scheme}' (choose from {', '.join(SCHEMES)})")
    if scheme == "users":
        train, hold = split.competition(data, last=last, random=random, seed=seed)
        users = hold.users
        if len(users) < 2:
            raise ToprecError("validation: fewer than 2 users have enough events for the competition holdout")
        a, b = halves(users, np.asarray(train.user_counts)[users], seed, stratify)
        desc = (
            f"users: competition(last={last}, random={random}, seed={seed}); users split in halves "
            f"({'stratified by activity' if stratify else 'at random'}): A {len(a):,} search, B {len(b):,} confirm"
        )
        return Folds(scheme, train, train, _fold(hold, a), _fold(hold, b), desc)
    t1, hold_b = split.competition(data, last=last, random=random, seed=seed)
    t2, hold_a = split.competition(t1, last=last, random=random, seed=seed + 1)
    if len(hold_a.users) == 0 or len(hold_b.users) == 0:
        raise ToprecError(
            f"validation ({scheme} scheme): no user has enough events for two competition holdouts "
            f"(last={last} + random={random} each, and one left to train on)"
        )
    if scheme == "events":
        both = np.intersect1d(hold_a.users, hold_b.users)
        # the two holdouts are disjoint events of the same users, and neither is in the training data
        assert t2.matrix.multiply(hold_a.matrix).nnz == 0 and t2.matrix.multiply(hold_b.matrix).nnz == 0
        assert hold_a.matrix.multiply(hold_b.matrix).nnz == 0
        desc = (
            f"events: B = competition(D, seed={seed}), A = competition(D - B, seed={seed + 1}); "
            f"last={last}, random={random}; both scored on the same {len(both):,} users, fits on D - B - A"
        )
        return Folds(scheme, t2, t2, _fold(hold_a, both), _fold(hold_b, both), desc)
    desc = (
        f"nested: B = competition(D, seed={seed}) (fits on D - B), A = competition(D - B, seed={seed + 1})"
        f" (fits on D - B - A); last={last}, random={random}"
    )
    return Folds(scheme, t2, t1, _fold(hold_a, hold_a.users), _fold(hold_b, hold_b.users), desc)


def fold_metrics(recs: Recommendations, fold: Fold, k: int) -> dict[str, float]:
    """recall@k and ndcg@k of ``recs`` on the fold, and recall@k of each holdout part (``recall_last@k``...)."""
    top = Recommendations(recs.users, recs.items[:, :k], recs.scores[:, :k])
    names = [f"recall@{k}", f"ndcg@{k}"]
    out = metrics.evaluate(top, fold.holdout, names)
    for part in fold.parts:
        out[f"recall_{part}@{k}"] = metrics.evaluate(top, fold.holdout, [f"recall@{k}"], part=part)[f"recall@{k}"]
    return out


def per_user_recall(recs: Recommendations, fold: Fold, k: int) -> np.ndarray:
    """recall@k of each of the fold's users (rows of ``recs`` are the fold's users, in order)."""
    assert np.array_equal(recs.users, fold.users)
    return metrics.per_user(f"recall@{k}", recs.items[:, :k], fold.truth[fold.users])


def group_means(group: np.ndarray, n_groups: int, values: dict[str, np.ndarray]) -> dict[str, list]:
    """``{"users": entries per group, name: mean of values[name] per group}`` (``group``: each entry's group in
    0..n_groups-1; a mean is 0 where the group is empty)."""
    n = np.bincount(group, minlength=n_groups)
    return {"users": n.tolist(), **{name: (np.bincount(group, weights=v, minlength=n_groups) / np.maximum(n, 1)).tolist()
                                    for name, v in values.items()}}  # fmt: skip


def recall_by_activity(fold: Fold, train, recalls: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean recall of the fold's users in quantile buckets of their events in ``train`` (what the lists were fitted
    on): ``{"labels", "users", name: [mean per bucket]}`` for each ``recalls`` entry (per user, in fold order)."""
    bucket, labels = metrics.user_buckets(np.asarray(train.user_counts[fold.users], dtype=np.float64))
    return {"labels": labels, **group_means(bucket, len(labels), recalls)}


def gap_se(ra: np.ndarray, users_a: np.ndarray, rb: np.ndarray, users_b: np.ndarray) -> float:
    """Standard error of mean(rb) - mean(ra), per-user recalls of two folds.

    Users in both folds (the nested scheme) are paired: their difference's
    variance replaces the two variances; the rest count as independent.
    """
    common, ia, ib = np.intersect1d(users_a, users_b, assume_unique=True, return_indices=True)
    na, nb = len(ra), len(rb)
    if na < 2 or nb < 2:
        return float("nan")
    if len(common) == 0:
        return float(np.sqrt(ra.var(ddof=1) / na + rb.var(ddof=1) / nb))
    # var(mean_b - mean_a) with shared users: var_a/na + var_b/nb - 2 cov(shared) * m / (na nb)
    m = len(common)
    cov = float(np.cov(ra[ia], rb[ib], ddof=1)[0, 1]) if m >= 2 else 0.0
    var = ra.var(ddof=1) / na + rb.var(ddof=1) / nb - 2.0 * cov * m / (na * nb)
    return float(np.sqrt(max(var, 0.0)))

