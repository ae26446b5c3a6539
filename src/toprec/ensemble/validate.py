"""Honest validation for ensembles: search on one fold, confirm on another.

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
   recorded, and ``toprec ensemble`` falls back to the best fold-A member
   unless told ``--force``.
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

:func:`evaluate_folds` (``toprec evaluate --folds K``) is the plain
repeated-holdout estimate: K competition cuts with seeds ``seed..seed+K-1``,
one fit each, mean and standard deviation. The ``last`` part is the same
events in every cut (only the random part and hence the training data
change), so its spread understates the true uncertainty of recall_last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from .. import metrics, progress, split
from ..errors import ToprecError
from ..recommend import Recommendations
from .fusion import METHODS, build_pool, check_method, fuse
from .members import Member, parse_members
from .search import SEARCHES, SearchResult, run_search

SCHEMES = ("users", "events", "nested")
#: Ensemble(method=AUTO): validate() searches every fusion method on fold A and keeps the best
#: (without validate(), recommend() uses rank, the competition's 1/log2(rank+1) vote)
AUTO = "auto"
#: Ensemble(method=RERANK): a LightGBM re-ranker trained on fold A (:mod:`toprec.ensemble.rerank`); never chosen by auto
RERANK = "rerank"


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


def _metrics(recs: Recommendations, fold: Fold, k: int) -> dict[str, float]:
    top = Recommendations(recs.users, recs.items[:, :k], recs.scores[:, :k])
    names = [f"recall@{k}", f"ndcg@{k}"]
    out = metrics.evaluate(top, fold.holdout, names)
    for part in fold.parts:
        out[f"recall_{part}@{k}"] = metrics.evaluate(top, fold.holdout, [f"recall@{k}"], part=part)[f"recall@{k}"]
    return out


def _per_user_recall(recs: Recommendations, fold: Fold, k: int) -> np.ndarray:
    """recall@k of each of the fold's users (rows of ``recs`` are the fold's users, in order)."""
    assert np.array_equal(recs.users, fold.users)
    return metrics.per_user(f"recall@{k}", recs.items[:, :k], fold.truth[fold.users])


def _bind(members: Sequence[Member], data, k: int, n: int) -> None:
    for m in members:
        m.bind(data, k, n)


# ------------------------------------------------------------- the ensemble
class Ensemble:
    """Members + fusion method + weights; validated honestly, then fitted on all data.

    >>> ens = Ensemble("ease,rp3beta,ials", method="rank")
    >>> report = ens.validate(data, search="both")      # search on fold A, confirm on fold B
    >>> recs = ens.fit(data).recommend(data.users, k=10)
    """

    def __init__(self, members, method: str = AUTO, weights: Sequence[float] | None = None, candidates: int = 100):
        self.members: list[Member] = parse_members(members)
        name = method.strip().lower()
        self.method = name if name in (AUTO, RERANK) else check_method(method)
        self.reranker = None
        if candidates < 1:
            raise ToprecError(f"candidates must be >= 1, got {candidates}")
        self.candidates = int(candidates)
        if weights is not None:
            w = np.asarray(list(weights), dtype=np.float64)
            if w.shape != (len(self.members),):
                raise ToprecError(f"--weights: {len(w)} weights for {len(self.members)} members")
            if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ToprecError("--weights: weights must be >= 0 and not all 0")
            self.weights = w / w.sum()
        else:
            self.weights = np.full(len(self.members), 1.0 / len(self.members))
        self.report: dict[str, Any] | None = None
        self.data = None

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.members]

    # ------------------------------------------------------------- validate
    def validate(
        self,
        data,
        search: str = "both",
        k: int = 10,
        scheme: str = "users",
        seed: int = 0,
        last: int = 1,
        random: int = 9,
        min_gain: float = 1e-4,
        restarts: int = 0,
        stratify: bool = True,
        folds: Folds | None = None,
    ) -> dict[str, Any]:
        """Search on fold A, confirm on fold B; sets ``self.weights`` to the chosen ones.

        Returns a report dict (members' and ensemble's metrics on both folds,
        weights, gains, ``holds`` and ``warning``).
        """
        if search not in SEARCHES:
            raise ToprecError(f"unknown search '{search}' (choose from {', '.join(SEARCHES)})")
        if k > self.candidates:
            raise ToprecError(f"k={k} is larger than the {self.candidates} candidates per member")
        t_start = time.perf_counter()
        _bind(self.members, data, k, self.candidates)
        folds = folds or make_folds(data, scheme, seed, last, random, stratify)
        progress.log(f"validation: {folds.description}")
        same_fit = folds.same_fit
        timings: dict[str, float] = {}
        # ---- fold A lists (and, when the fit is shared, fold B lists sealed away for later)
        lists_a, sealed_b = [], []
        t0 = time.perf_counter()
        for m in self.members:
            lists_a.append(m.lists(folds.search_train, folds.fold_a.users, self.candidates, "search"))
            if folds.same_lists:
                sealed_b.append(lists_a[-1])
            elif same_fit:
                sealed_b.append(m.lists(folds.confirm_train, folds.fold_b.users, self.candidates, "search"))
            m.release()
        timings["members_fold_a_s"] = time.perf_counter() - t0
        # ---- the search: fold A only (method auto: every method searched, the best fold-A recall kept)
        t0 = time.perf_counter()
        requested = self.method
        methods = METHODS if requested == AUTO else (requested,)
        tried: dict[str, float] = {}
        best = None
        if requested == RERANK:
            return self._validate_rerank(data, folds, lists_a, sealed_b, k, min_gain, seed, timings, t0, t_start)
        with progress.task(f"search ({search}) on fold A: {len(folds.fold_a.users):,} users"):
            truth_a = folds.fold_a.truth[folds.fold_a.users]
            for method in methods:
                pool = build_pool(lists_a, method, folds.fold_a.users)
                res = run_search(
                    pool, truth_a, k, search, start=self.weights, min_gain=min_gain, restarts=restarts, seed=seed
                )
                tried[method] = res.score
                if best is None or res.score > best[1].score:  # ties: the earlier method in METHODS
                    best = (method, res, pool.recommend(res.weights, k))
                del pool
        self.method, result, ens_a = best
        timings["search_s"] = time.perf_counter() - t0
        weights = result.weights
        # ---- confirmation: fold B, weights frozen
        t0 = time.perf_counter()
        if same_fit:
            lists_b = sealed_b
        else:
            lists_b = []
            for m in self.members:
                lists_b.append(m.lists(folds.confirm_train, folds.fold_b.users, self.candidates, "search"))
                m.release()
        keep = np.flatnonzero(weights > 0)
        ens_b = fuse([lists_b[i] for i in keep], weights[keep], self.method, k, users=folds.fold_b.users)
        timings["confirm_s"] = time.perf_counter() - t0
        report = self._report(folds, lists_a, lists_b, ens_a, ens_b, weights, result, search, k, min_gain, seed)
        if requested == AUTO:
            report["method_requested"] = AUTO
            report["methods_fold_a"] = tried
        timings["total_s"] = time.perf_counter() - t_start
        report["timings"] = {key: round(v, 3) for key, v in timings.items()}
        self.weights = weights
        self.report = report
        return report

    def _validate_rerank(self, data, folds, lists_a, sealed_b, k, min_gain, seed, timings, t0, t_start):
        """Train the re-ranker on fold A's truth (every member is a feature), score it once on fold B."""
        from .rerank import Reranker

        fa, fb = folds.fold_a, folds.fold_b
        with progress.task(f"re-ranker trained on fold A: {len(fa.users):,} users"):
            ranker = Reranker(self.labels, seed=seed)
            ranker.fit(data, folds.search_train, fa.users, lists_a, fa.truth[fa.users], k=k)
            ens_a = ranker.fit_recs
        timings["search_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        lists_b = sealed_b
        if not folds.same_fit:
            lists_b = []
            for m in self.members:
                lists_b.append(m.lists(folds.confirm_train, fb.users, self.candidates, "search"))
                m.release()
        ens_b = ranker.recommend(data, folds.confirm_train, fb.users, lists_b, k)
        timings["confirm_s"] = time.perf_counter() - t0
        weights = np.full(len(self.members), 1.0 / len(self.members))  # every member feeds the ranker
        score_a = float(_per_user_recall(ens_a, fa, k).mean())
        result = SearchResult(weights, score_a, 1, [{"rerank_trees": ranker.trees}])
        report = self._report(folds, lists_a, lists_b, ens_a, ens_b, weights, result, "rerank", k, min_gain, seed)
        report["rerank"] = {"trees": ranker.trees, "features": ranker.feature_names,
                            "note": "fold A is the ranker's training fold (80% fit, 20% early stopping): its fold-A "
                                    "recall is in-sample; fold B is the test"}  # fmt: skip
        timings["total_s"] = time.perf_counter() - t_start
        report["timings"] = {key: round(v, 3) for key, v in timings.items()}
        self.weights = weights
        self.reranker = ranker
        self.report = report
        return report

    def _report(self, folds, lists_a, lists_b, ens_a, ens_b, weights, result, search, k, min_gain, seed):
        r = f"recall@{k}"
        members = []
        for m, la, lb, w in zip(self.members, lists_a, lists_b, weights):
            members.append(
                {
                    "label": m.label,
                    "weight": float(w),
                    "fold_a": _metrics(la, folds.fold_a, k),
                    "fold_b": _metrics(lb, folds.fold_b, k),
                    "member": m.describe(),
                }
            )
        ea, eb = _metrics(ens_a, folds.fold_a, k), _metrics(ens_b, folds.fold_b, k)
        best_a = max(members, key=lambda x: x["fold_a"][r])
        best_b = max(members, key=lambda x: x["fold_b"][r])
        gain_a = ea[r] - best_a["fold_a"][r]
        gain_b = eb[r] - best_b["fold_b"][r]
        # paired standard error of the fold-B gain (same users, ensemble vs that member)
        ib = [mm["label"] for mm in members].index(best_b["label"])
        users_b = folds.fold_b.users  # the same users on both sides: _gap_se pairs them
        member_b, fused_b = _per_user_recall(lists_b[ib], folds.fold_b, k), _per_user_recall(ens_b, folds.fold_b, k)
        se_b = _gap_se(member_b, users_b, fused_b, users_b)
        n_used = int((weights > 0).sum())
        holds = bool(gain_b > 0 and n_used > 1)
        warnings = []
        if not holds:
            if n_used == 1:
                single = self.members[int(np.argmax(weights))].label
                warnings.append(f"the search kept a single member ({single}): no ensemble gain on fold A")
            else:
                warnings.append(
                    f"the ensemble's gain over the best single member does not hold on fold B: "
                    f"{eb[r]:.4f} vs {best_b['label']} {best_b['fold_b'][r]:.4f} ({gain_b:+.4f}); "
                    + (
                        f"on fold A it was {gain_a:+.4f}: the search overfitted fold A"
                        if gain_a > 0
                        else f"it had no gain on fold A either ({gain_a:+.4f})"
                    )
                )
        for mem in members:
            if mem["member"].get("kind") == "file" and mem["fold_a"][r] == 0 and best_a["fold_a"][r] > 0:
                warnings.append(
                    f"member '{mem['label']}' has recall 0 on fold A: its file looks fitted on data that includes the "
                    "holdout (held-out items are seen there); give VALID.csv:FINAL.csv"
                )
        return {
            "scheme": folds.scheme,
            "protocol": folds.description,
            "method": self.method,
            "search": search,
            "k": k,
            "candidates": self.candidates,
            "seed": seed,
            "min_gain": min_gain,
            "fold_a": {"users": int(len(folds.fold_a.users)), "events": folds.fold_a.n_events},
            "fold_b": {"users": int(len(folds.fold_b.users)), "events": folds.fold_b.n_events},
            "members": members,
            "weights": {m.label: float(w) for m, w in zip(self.members, weights)},
            "ensemble": {"fold_a": ea, "fold_b": eb},
            "best_member_fold_a": best_a["label"],
            "best_member_fold_b": best_b["label"],
            "gain_fold_a": gain_a,
            "gain_fold_b": gain_b,
            "gain_fold_b_se": se_b,
            "gain_fold_b_z": gain_b / se_b if se_b > 0 else float("nan"),
            "relative_gain_fold_a": gain_a / best_a["fold_a"][r] if best_a["fold_a"][r] > 0 else float("nan"),
            "relative_gain_fold_b": gain_b / best_b["fold_b"][r] if best_b["fold_b"][r] > 0 else float("nan"),
            "holds": holds,
            "warning": "; ".join(warnings) or None,
            "search_trials": result.trials,
            "search_steps": [
                {**s, "member": self.members[s["member"]].label} if "member" in s else s for s in result.steps
            ],
        }

    # ------------------------------------------------------------- final
    def fit(self, data, k: int = 1) -> "Ensemble":
        """Use ``data`` (all of it) as the members' training data for :meth:`recommend`.

        Models are fitted lazily, one at a time, by :meth:`recommend` (memory);
        file members are read here (each user needs at least ``k`` rows).
        """
        _bind(self.members, data, k, self.candidates)
        self.data = data
        return self

    def recommend(self, users=None, k: int = 10, stage: str = "final") -> Recommendations:
        """Fuse the weighted members' top-N for ``users`` (default all); seen items never appear."""
        if self.data is None:
            raise ToprecError("ensemble: call fit(data) before recommend")
        if k > self.candidates:
            raise ToprecError(f"k={k} is larger than the {self.candidates} candidates per member")
        data = self.data
        _bind(self.members, data, k, self.candidates)
        users = data.users if users is None else np.atleast_1d(np.asarray(users, dtype=np.int64))
        keep = np.flatnonzero(self.weights > 0)
        if self.method == RERANK and len(keep) > 1 and (self.reranker is None or len(keep) != len(self.members)):
            raise ToprecError("method 'rerank': the re-ranker is trained on fold A: run validate() first")
        lists = [self.members[i].lists(data, users, self.candidates, stage) for i in keep]
        known = (users >= 0) & (users < data.n_users)
        seen = data.matrix[np.where(known, users, 0)]
        if not known.all():
            seen = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ seen)
        if self.method == RERANK and len(keep) > 1:
            return self.reranker.recommend(data, data, users, lists, k, exclude=seen)
        # auto, never validated: the competition's vote; rerank fallen back to one member: its own list
        method = "rank" if self.method in (AUTO, RERANK) else self.method
        return fuse(lists, self.weights[keep], method, k, users=users, exclude=seen)

    def release(self) -> None:
        """Drop the members' fitted models (memory)."""
        for m in self.members:
            m.release()


# ------------------------------------------------------------------ align
def align(
    data,
    members,
    k: int = 10,
    scheme: str = "events",
    seed: int = 0,
    last: int = 1,
    random: int = 9,
    stratify: bool = True,
    folds: Folds | None = None,
) -> dict[str, Any]:
    """For each model: fold-A (validation) vs fold-B (leaderboard stand-in) recall@k.

    The default scheme is ``events``: fold A is a validation cut from the
    training data exactly like fold B, the stand-in for the hidden test, was
    cut from all of it, and both are scored on the same users — the
    competition's question "does my validation rank models like the
    leaderboard?". ``users`` instead compares two halves of the users (public
    vs private leaderboard), ``nested`` adds the refit with the validation
    events (its gaps then carry the gain from the extra training data).

    Returns per-model rows (``fold_a``, ``fold_b``, ``gap = fold_b - fold_a``,
    ``gap_se``: the gap's standard error from the per-user recalls) and, across
    models, the mean and max absolute gap, the Spearman rank correlation of the
    two columns (does validation order models like the leaderboard does?), and
    two readings of the gap: ``noise_abs_gap`` = sqrt(2/pi) * mean ``gap_se``,
    the mean |gap| that sampling alone produces when the folds truly agree
    (E|N(0, se)|), and ``mean_abs_gap_centred``, the mean |gap - mean gap|: how
    much models disagree once the offset they all share (easier users in one
    fold, less training data for the other) is taken out. Its own noise level
    is ``noise_abs_gap_centred`` (the same formula on per-user recalls centred
    across models: the models share the users, so most of the sampling noise
    is shared too and cancels). The standard errors treat the users scheme's
    halves as a random split; its activity-matched pairs make them slightly
    conservative.
    """
    from scipy.stats import spearmanr

    members = parse_members(members)
    for m in members:
        if not m.refittable:
            raise ToprecError(f"align: member '{m.label}' is a file; align needs models it can fit on each fold")
    folds = folds or make_folds(data, scheme, seed, last, random, stratify)
    progress.log(f"validation: {folds.description}")
    same_fit = folds.same_fit
    r = f"recall@{k}"
    rows = []
    per_a: list[np.ndarray] = []
    per_b: list[np.ndarray] = []
    for m in members:
        t0 = time.perf_counter()
        la = m.lists(folds.search_train, folds.fold_a.users, k, "search")
        if not same_fit:
            m.release()
        lb = la if folds.same_lists else m.lists(folds.confirm_train, folds.fold_b.users, k, "search")
        m.release()
        a, b = _metrics(la, folds.fold_a, k), _metrics(lb, folds.fold_b, k)
        per_a.append(_per_user_recall(la, folds.fold_a, k))
        per_b.append(_per_user_recall(lb, folds.fold_b, k))
        se = _gap_se(per_a[-1], folds.fold_a.users, per_b[-1], folds.fold_b.users)
        seconds = round(time.perf_counter() - t0, 2)
        rows.append({"label": m.label, "fold_a": a, "fold_b": b, "gap": b[r] - a[r], "gap_se": se, "seconds": seconds})
    va = np.array([x["fold_a"][r] for x in rows])
    vb = np.array([x["fold_b"][r] for x in rows])
    gaps = vb - va
    ses = np.array([x["gap_se"] for x in rows])
    # the centred gaps (gap - mean gap) are the gaps of per-user recalls centred across models
    ca, cb = np.array(per_a), np.array(per_b)
    ca, cb = ca - ca.mean(0), cb - cb.mean(0)
    ses_c = np.array([_gap_se(ca[j], folds.fold_a.users, cb[j], folds.fold_b.users) for j in range(len(rows))])
    rho = float(spearmanr(va, vb).statistic) if len(rows) >= 3 and va.std() > 0 and vb.std() > 0 else float("nan")
    return {
        "scheme": folds.scheme,
        "protocol": folds.description,
        "k": k,
        "seed": seed,
        "fold_a": {"users": int(len(folds.fold_a.users)), "events": folds.fold_a.n_events},
        "fold_b": {"users": int(len(folds.fold_b.users)), "events": folds.fold_b.n_events},
        "models": rows,
        "mean_abs_gap": float(np.abs(gaps).mean()),
        "max_abs_gap": float(np.abs(gaps).max()),
        "mean_gap": float(gaps.mean()),
        "mean_abs_gap_centred": float(np.abs(gaps - gaps.mean()).mean()),
        "noise_abs_gap": float(np.sqrt(2.0 / np.pi) * ses.mean()),
        "noise_abs_gap_centred": float(np.sqrt(2.0 / np.pi) * ses_c.mean()) if len(rows) > 1 else 0.0,
        "spearman": rho,
        "best_fold_a": rows[int(np.argmax(va))]["label"],
        "best_fold_b": rows[int(np.argmax(vb))]["label"],
    }


def _gap_se(ra: np.ndarray, users_a: np.ndarray, rb: np.ndarray, users_b: np.ndarray) -> float:
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


def align_seeds(data, members, seeds: Sequence[int], **kwargs) -> dict[str, Any]:
    """:func:`align` once per split seed; the per-seed reports and their averages.

    One split is one draw: with a few thousand users, which users land in
    which fold moves every model's gap together by about ``noise_abs_gap``.
    Several seeds show the spread, and the averages are the expected values.
    With the ``users`` scheme a seed redraws the held-out events and the
    halves; with ``events`` and ``nested`` it redraws the random held-out
    events, and with them fold A's "last" (the latest event left after fold B);
    fold B's last events and the evaluated users stay the same.
    """
    seeds = list(seeds)
    if not seeds:
        raise ToprecError("align: no seeds")
    runs = []
    for s in seeds:
        runs.append(align(data, members, seed=s, **kwargs))
    keys = ("mean_abs_gap", "max_abs_gap", "mean_gap", "mean_abs_gap_centred", "noise_abs_gap",
            "noise_abs_gap_centred", "spearman")  # fmt: skip

    def _nan(values, fn) -> float:
        v = np.asarray(values, dtype=np.float64)
        return float(fn(v[~np.isnan(v)])) if (~np.isnan(v)).any() else float("nan")

    return {
        "seeds": seeds,
        "runs": runs,
        "mean": {key: _nan([r_[key] for r_ in runs], np.mean) for key in keys},
        "min_spearman": _nan([r_["spearman"] for r_ in runs], np.min),
        "max_mean_abs_gap": float(max(r_["mean_abs_gap"] for r_ in runs)),
    }


# ------------------------------------------------------- evaluate --folds K
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
