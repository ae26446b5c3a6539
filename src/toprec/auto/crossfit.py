"""Cross-fitted decisions for small data: both folds decide, both folds train what is written.

Auto's ensemble stage searches on fold A and confirms on fold B. With a few
hundred users per fold that is weak twice over: the confirmation has half the
validation users (ML-100K: ~455; a fusion ahead of the best member on fold B
by less than one standard error falls back), and the re-ranker learns from
half of them. Measured (``benchmarks/bench_auto_whatif.py users``, fold B
halved, scored on the half not trained on): a re-ranker trained on 1.5x the
users gained +0.0162 (se 0.0053) and +0.0035 (0.0048) recall@10 on ML-100K;
on ML-1M (2,542 users in fold A) -0.0010 and +0.0015 (0.0015): no gain.

So when fold A is small (``CROSSFIT_USERS``), each choice is made on
out-of-fold lists of *every* validation user: what is searched or trained on
fold A is scored on fold B (as before), and the mirror -- searched or trained
on fold B -- is scored on fold A. A choice is kept when its paired gain over
the alternative, over both folds' users, exceeds one standard error. What is
written is then searched (fusion weights, :meth:`Ensemble.widen`) or trained
(the re-ranker) on both folds together.

The alternative -- the member written alone when the fusion does not hold --
is the best member over both folds' users (:meth:`CrossFit.best_member`), not
the best on fold A: among ~8 members on a few hundred fold-A users that
choice is noise (ML-latest-small, 335 fold-A users: iALS, best on fold A, was
written and scored 2.2 se below cease on the test). Each member keeps its
fold-A recall there (its trial was chosen on fold A, so that half is
in-sample: a bias for the members, against fusing).

One validation cut still leaves that pick noisy. The contenders (members
within ``CONTENDER_SE`` paired standard errors of the best there) are also
fitted on ``EXTRA_CUTS`` more cuts of the same protocol, and the member
written alone is the best by its mean over all the cuts
(:meth:`CrossFit.more_cuts`). Measured (``benchmarks/bench_auto_cuts.py``,
4 cuts, graded on the test): the pick changed in 2 of 6 small-data seeds,
both times to a better member (ML-100K seed 2: 3.8 se below the best member on the test ->
0.9; ML-latest-small seed 1: 1.1 se below -> the best), and never to a worse one.
The other members join the contenders on the extra cuts, cheapest first,
while all the cuts of them fit in the box (:meth:`CrossFit.cut_members`), and
their top-N lists are kept: the fusion of those members is then searched and
judged over all the cuts (:mod:`.pooled`), not on auto's cut alone. Without
an extra cut, the fusion's verdict is made on auto's own cut, out of fold.

The re-ranker then learns from those lists too (:meth:`CrossFit.reranker_over_cuts`):
it is of the cut members, trained on the rows of as many cuts as its stage's
time holds, each row scored by a ranker trained on the other half of the
users, and judged row by row against what would be written, left out. On
ML-100K (``benchmarks/bench_auto_rerank_cuts.py``) one cut's ~911 users left
it below the best member out of fold on 2 of 3 seeds; 8 cuts' rows put it
above on all 3, and +2.1% over default EASE on the test (median of 3 seeds).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .. import progress
from ..ensemble.folds import per_user_recall
from ..ensemble.fusion import build_pool, fuse
from ..ensemble.search import run_search
from .margin import beats, paired  # noqa: F401 - re-exported: auto's margin
from .pooled import METHOD, Cut, per_user_mean, search

#: fold-A users below which auto's ensemble and re-ranker choices are cross-fitted (ML-100K 455, the competition
#: sample 822, Last.fm 946; ML-1M 2,542, where more training users did not help the re-ranker)
CROSSFIT_USERS = 2000
#: small data: validation cuts, besides auto's own, over which the member written alone is chosen; the members
#: on them are those of which this many cuts fit in the box (:meth:`CrossFit.cut_members`)
EXTRA_CUTS = 3
#: ... and, when the box holds more cuts of those members, up to this many (ML-100K, offline, the fusion searched
#: and graded on the test over 8 cuts instead of 4: +0.0009 / +0.0013 / +0.0017 recall@10 on seeds 0-2;
#: ``benchmarks/bench_auto_pooled.py --cuts 8``)
MAX_EXTRA_CUTS = 7
#: members within this many paired standard errors of the best on auto's own cut are fitted on the extra cuts
CONTENDER_SE = 2.0
#: the re-ranker stage's cost when cross-fitted, in single trainings: fold A, fold B, and both folds (twice the rows)
RERANK_FITS = 4.0
#: the fusion over the cuts (:func:`toprec.auto.pooled.decide`): one weight search over c cuts' rows takes
#: ~c ** POOL_EXP searches over one cut's (``benchmarks/bench_fusion_cuts.py`` on a 30-minute ML-100K run's 7 cuts,
#: 9 members, a loaded CPU: one cut 0.99 s, three cuts 4.60 s against 4.37 s so estimated, the whole fusion 71 s
#: against 92 s); with a 2-minute budget it took 31 s that the cuts' box had not kept, and the run ended 9% late
POOL_EXP = 1.35


def cut_rows(cut, idx: list[int]):
    """A :class:`.pooled.Cut` with only the members ``idx`` (in that order)."""
    return Cut(cut.users, [cut.lists[i] for i in idx], cut.truth)


@dataclass
class RerankOverCuts:
    """:meth:`CrossFit.reranker_over_cuts`: the per-user gain over what is written, its se, the verdict, the
    users and cuts it was judged on, the ranker trained on every row, and whether a deadline stopped a booster."""

    gain: float
    se: float
    kept: bool
    users: int
    cuts: int
    final: object
    out_of_time: bool
    #: the ranker's and the written's recall, each user's mean over the cuts, averaged over users
    mean: float
    written_mean: float


def crossfits(folds) -> bool:
    """Whether auto cross-fits its choices on these folds: fold A is small, and one fit scores both folds'
    (disjoint) users."""
    a, b = folds.fold_a.users, folds.fold_b.users
    return bool(folds.same_fit and len(a) < CROSSFIT_USERS and len(np.intersect1d(a, b)) == 0)


def _box_fn(box: float | Callable[[list[str]], float]) -> Callable[[list[str]], float]:
    """A cuts' box as a function of the members fitted on them (a number: the same box for any members)."""
    return box if callable(box) else (lambda labels, b=float(box): b)


class CrossFit:
    """Out-of-fold per-user recall@k over fold A then fold B's users, for the choices auto makes."""

    def __init__(self, ens, data, folds, k: int, seed: int):
        self.ens, self.data, self.folds, self.k, self.seed = ens, data, folds, k, seed
        self.a, self.b = folds.fold_a, folds.fold_b
        n = ens.candidates
        self.lists_a = [m.lists(folds.search_train, self.a.users, n, "search") for m in ens.members]
        self.lists_b = [m.lists(folds.search_train, self.b.users, n, "search") for m in ens.members]
        self._fusion: np.ndarray | None = None
        self._members: dict[str, np.ndarray] = {}
        #: :meth:`more_cuts`: each member's (or contender's) recall on each extra cut (all holdout users)
        self.cuts: dict[str, list[float]] = {}
        #: :meth:`more_cuts` with every member: each extra cut's users, lists and truth (see :meth:`pooled`)
        self.cut_lists: list = []
        self._pooled = None
        #: :meth:`more_cuts`'s protocol (last, random): the extra cuts' training sets are cut again from it
        self.protocol: tuple[int, int] | None = None
        #: :meth:`more_cuts`: the estimated seconds of the fusion over the cuts it planned (:meth:`fusion_seconds`)
        self.fusion_estimate = 0.0

    def _recall(self, recs, fold) -> np.ndarray:
        return per_user_recall(recs, fold, self.k)

    def member(self, label: str) -> np.ndarray:
        """A member's per-user recall over fold A then fold B (its own lists on each; computed once)."""
        if label not in self._members:
            i = self.ens.labels.index(label)
            self._members[label] = np.concatenate([self._recall(self.lists_a[i], self.a),
                                                   self._recall(self.lists_b[i], self.b)])  # fmt: skip
        return self._members[label]

    def member_means(self) -> dict[str, float]:
        """Every member's recall over both folds' users, in the ensemble's member order."""
        return {lab: float(self.member(lab).mean()) for lab in self.ens.labels}

    def best_member(self) -> str:
        """The member with the highest recall over both folds' users (ties: the earlier, better on fold A); after
        :meth:`more_cuts`, the contender with the highest mean over auto's cut and the extra ones."""
        means = self.cut_means() or self.member_means()
        return max(means, key=means.get)

    def contenders(self) -> list[str]:
        """The members within ``CONTENDER_SE`` paired standard errors of the best over both folds' users."""
        means = self.member_means()
        best = max(means, key=means.get)
        out = []
        for lab in self.ens.labels:
            gap, se = paired(self.member(best) - self.member(lab))
            if lab == best or (se == se and gap <= CONTENDER_SE * se):
                out.append(lab)
        return out

    def cut_means(self) -> dict[str, float]:
        """Each contender's recall averaged over auto's cut (both folds) and the extra cuts ({} before any)."""
        if not self.cuts:
            return {}
        means = self.member_means()
        return {lab: float(np.mean([means[lab], *v])) for lab, v in self.cuts.items()}

    def more_cuts(self, last: int, random: int, seconds: Callable[[str], float],
                  box: float | Callable[[list[str]], float], saved: Path | None = None, cuts: int = EXTRA_CUTS,
                  most: int = MAX_EXTRA_CUTS) -> int:  # fmt: skip
        """Fit members on more validation cuts of the data (``split.competition`` with seeds
        ``seed + 1000 r``) and score each on its holdout; as many cuts as fit in ``box`` seconds, by
        ``seconds(label)`` (a member's fit and scoring), together with the fusion searched over them afterwards
        (:meth:`fusion_seconds`), at most ``most``. The members (:meth:`cut_members`):
        the contenders, then the others, cheapest first, while ``cuts`` cuts of them all fit. Their top-N lists are kept
        (:attr:`cut_lists`): the fusion of those members is then searched and judged over all the cuts
        (:meth:`pooled`). ``saved``: a JSON of the plan and the results, beside it a folder of the lists, written
        after every cut (a resumed run reads them and makes only the planned cuts not on disk yet). Returns the
        number of cuts made (0 when one member, or no time). ``box`` may depend on the members fitted (a
        function of their labels): what the later stages keep is the final refit of those members alone."""
        from .. import split

        self.protocol = (last, random)
        got = self._read(saved, last, random) if saved is not None and saved.exists() else None
        box_of = _box_fn(box)
        if got is not None:  # a resumed run: the stored cuts, then the rest of the stored plan
            labels, n = got
            box = box_of(labels)
            start = len(next(iter(self.cuts.values()), [])) + 1
            if start <= n and box <= 0:  # no time left for the rest of the plan: the cuts made are what there is
                n = start - 1
                if n == 0:
                    self.cuts = {}
                return n
            fusion = self.fusion_seconds(labels) if start <= n else None
            self.fusion_estimate = fusion(n) if fusion is not None else 0.0
        else:
            labels = self.cut_members(seconds, box_of, cuts)
            if len(labels) < 2:
                return 0
            box = box_of(labels)
            need = sum(max(0.0, float(seconds(lab))) for lab in labels)
            top = max(cuts, most)
            n = int(min(top, box // need)) if need > 0 else top
            fusion = self.fusion_seconds(labels) if n > 0 else None
            while n > 0 and n * need + fusion(n) > box:  # the fusion over the cuts comes out of the same box
                n -= 1
            self.fusion_estimate = fusion(n) if fusion is not None else 0.0
            self.cuts = {lab: [] for lab in labels} if n > 0 else {}
            self.cut_lists = []
            start = 1
            if saved is not None and n > 0:
                self._write(saved, labels, n)  # the plan first: a run killed between cuts goes on where it stopped
        members = {m.label: m for m in self.ens.members}
        N = self.ens.candidates
        t0 = time.perf_counter()
        for r in range(start, n + 1):
            train, hold = split.competition(self.data, last=last, random=random, seed=self.seed + 1000 * r)
            truth = hold.matrix[hold.users].tocsr()
            lists = []
            for lab in labels:  # not ``Member.lists``: its cache would drop the member's search-stage model
                with progress.task(f"{lab}: validation cut {r + 1} of {n + 1}, fit on {train.n_events:,} events"):
                    recs = members[lab].new_model().fit(train).recommend(hold.users, k=N)
                lists.append(recs)
                self.cuts[lab].append(float(self._recall_rows(recs, truth).mean()))
            self.cut_lists.append(self._cut(hold.users, lists, truth))
            made = r - start + 1
            # the estimate was low (a busy machine): no cut past the box
            stop = r < n and (time.perf_counter() - t0) * (made + 1) / made + fusion(r + 1) > box
            if saved is not None:
                self._write(saved, labels, r if stop else n, cut=r)
            if stop:
                return r
        return n

    def cut_members(self, seconds: Callable[[str], float], box: float | Callable[[list[str]], float],
                    cuts: int = EXTRA_CUTS) -> list[str]:
        """The members fitted on the extra cuts, in the ensemble's order: the contenders (the member written
        alone is one of them), then every other member, cheapest first, while ``cuts`` cuts of them all fit in
        ``box``. On ML-latest-small Multi-VAE's time-boxed fit (~120 s) alone took more than the box left for
        one cut of every member; without it the others fit three times. With ``box`` a function of the chosen
        labels, a member joins when the cuts with it fit in the box with it: after the cuts the submission is
        made of their members only (the fusion over the cuts, the re-ranker of the cut members, or the member
        written alone, a contender), so the time kept for the final refit is theirs (Last.fm, session 17: the
        refit of a Multi-VAE that no cut had kept 380 s of a 30-minute run, which ended at minute 20 with 3 cuts)."""
        box_of = _box_fn(box)
        cost = {lab: max(0.0, float(seconds(lab))) for lab in self.ens.labels}
        chosen = set(self.contenders())
        need = sum(cost[lab] for lab in chosen)
        for lab in sorted((lab for lab in self.ens.labels if lab not in chosen), key=cost.get):
            if (need + cost[lab]) * cuts <= box_of([x for x in self.ens.labels if x in chosen or x == lab]):
                chosen.add(lab)
                need += cost[lab]
        return [lab for lab in self.ens.labels if lab in chosen]

    # ------------------------------------------------------------------ the cuts on disk (resume)
    def _recall_rows(self, recs, truth) -> np.ndarray:
        from ..metrics import per_user

        return per_user(f"recall@{self.k}", recs.items[:, : self.k], truth)

    @staticmethod
    def _cut(users, lists, truth):
        return Cut(np.asarray(users), lists, truth)

    def _write(self, saved: Path, labels: list[str], planned: int, cut: int | None = None) -> None:
        """The JSON of the cuts made (their members' recall) and ``planned``; with ``cut``, that cut's lists
        first (``cutR.npz`` beside it): the JSON never names lists that are not on disk."""
        from ..io import atomic_path

        if cut is not None:
            folder = saved.with_suffix("")
            folder.mkdir(parents=True, exist_ok=True)
            c = self.cut_lists[cut - 1]
            with atomic_path(folder / f"cut{cut}.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, users=c.users, items=np.stack([x.items for x in c.lists]),
                                        scores=np.stack([x.scores for x in c.lists]))  # fmt: skip
        with atomic_path(saved) as tmp:
            tmp.write_text(json.dumps({"labels": labels, "cuts": self.cuts, "lists": len(self.cut_lists),
                                       "planned": planned}) + "\n")  # fmt: skip

    def _read(self, saved: Path, last: int, random: int) -> tuple[list[str], int] | None:
        """The stored cuts and the number planned, when they are of this run's members (all, or the
        contenders); None otherwise."""
        from .. import split
        from ..recommend import Recommendations

        stored = json.loads(saved.read_text())
        labels = stored.get("labels") or []
        if not set(self.contenders()) <= set(labels) <= set(self.ens.labels):
            return None
        self.cuts = {lab: list(v) for lab, v in stored["cuts"].items()}
        self.cut_lists = []
        for r in range(1, int(stored.get("lists", 0)) + 1):
            with np.load(saved.with_suffix("") / f"cut{r}.npz") as z:
                users, items, scores = z["users"], z["items"], z["scores"]
            hold = split.competition(self.data, last=last, random=random, seed=self.seed + 1000 * r)[1]
            lists = [Recommendations(users, items[j], scores[j]) for j in range(len(labels))]
            self.cut_lists.append(self._cut(users, lists, hold.matrix[users].tocsr()))
        done = len(next(iter(self.cuts.values()), []))
        return labels, int(stored.get("planned", done))

    # ------------------------------------------------------------------ the fusion over every cut
    def pooled(self):
        """The fusion searched and judged over auto's cut (both folds) and the extra cuts
        (:func:`toprec.auto.pooled.decide`), of the members fitted on the extra cuts (the others weigh 0); None
        before any extra cut. Afterwards :meth:`written` of the ensemble is the fusion on auto's cut weighted
        on the other cuts."""
        if not self.cut_lists:
            return None
        if self._pooled is None:
            from .pooled import decide

            cuts = self._pooled_cuts()
            with progress.task(f"fusion over {len(cuts)} validation cuts, each left out in turn"):
                self._pooled = decide(cuts, self.k, self.seed)
            w = np.zeros(len(self.ens.labels))
            w[[self.ens.labels.index(lab) for lab in self.cuts]] = self._pooled.weights
            self._pooled.weights = w  # every member's weight, 0 for those not fitted on the cuts
            self._fusion = self._pooled.first_cut
        return self._pooled

    def fusion_seconds(self, labels: list[str]) -> Callable[[int], float]:
        """Seconds of :meth:`pooled` after ``n`` extra cuts of the members ``labels``, as a function of ``n``: one
        weight search over auto's cut, timed now, times ``POOL_EXP`` scaling (:func:`.pooled.decide` searches
        once over every cut and once leaving each cut out)."""
        t0 = time.perf_counter()
        search([self._first_cut(labels)], METHOD, self.k, self.seed)
        one = time.perf_counter() - t0
        return lambda n: one * ((n + 1) * n**POOL_EXP + (n + 1) ** POOL_EXP) if n > 0 else 0.0

    def _pooled_cuts(self) -> list:
        """Auto's cut (fold A's users then fold B's, the cut members' search lists) and the extra cuts."""
        return [self._first_cut(list(self.cuts)), *self.cut_lists]

    def _first_cut(self, labels: list[str]) -> Cut:
        """Auto's cut: fold A's users then fold B's, with the search lists of the members ``labels``."""
        users = np.concatenate([self.a.users, self.b.users])
        idx = [self.ens.labels.index(lab) for lab in labels]
        lists = [type(la)(users, np.concatenate([la.items, lb.items]), np.concatenate([la.scores, lb.scores]))
                 for la, lb in ((self.lists_a[i], self.lists_b[i]) for i in idx)]  # fmt: skip
        truth = sp.vstack([self.a.truth[self.a.users], self.b.truth[self.b.users]]).tocsr()
        return self._cut(users, lists, truth)

    def fusion(self) -> np.ndarray:
        """The ensemble's method: fold B scored with its (fold-A) weights; fold A with weights searched on fold B
        from the same start."""
        if self._fusion is not None:
            return self._fusion
        ens, k = self.ens, self.k
        res = run_search(build_pool(self.lists_b, ens.method, self.b.users), self.b.truth[self.b.users], k, "both",
                         start=ens.weights, seed=self.seed)  # fmt: skip
        fused_a = self._fuse(self.lists_a, res.weights, self.a.users)
        fused_b = self._fuse(self.lists_b, ens.weights, self.b.users)
        self._fusion = np.concatenate([self._recall(fused_a, self.a), self._recall(fused_b, self.b)])
        return self._fusion

    def _fuse(self, lists, weights, users):
        keep = np.flatnonzero(np.asarray(weights) > 0)
        return fuse([lists[i] for i in keep], np.asarray(weights)[keep], self.ens.method, self.k, users=users)

    def written(self, chosen: str) -> np.ndarray:
        """Out-of-fold recall of what would be written now: one member's lists, or the fusion."""
        return self.member(chosen[len("member:"):]) if chosen.startswith("member:") else self.fusion()

    def cut_labels(self) -> list[str]:
        """The members with lists on every extra cut, in the ensemble's order ([] before :meth:`more_cuts`)."""
        return [lab for lab in self.ens.labels if lab in self.cuts] if self.cut_lists else []

    def reranker_over_cuts(self, rr, most: int | None = None):
        """The re-ranker ``rr`` (of the :meth:`cut_labels` members) trained on the rows of auto's cut and the extra
        cuts (``most``: the first that many cuts), cross-fitted by user: a ranker trained on fold B's users' rows
        of every cut scores fold A's users on every cut, and the mirror. Judged as :mod:`.pooled` judges the
        fusion: each row against what is written, left out (the fusion weighted on the other cuts when it was
        kept, else the member picked on them); the per-row differences averaged per user. Returns the
        :class:`RerankOverCuts`: the verdict and a ranker trained on every row (the one written).

        Measured (``benchmarks/bench_auto_rerank_cuts.py``, ML-100K, the run's tuned cut members, graded on
        the test): trained on auto's cut alone, the re-ranker scored 0.2557 / 0.2494 / 0.2555 recall@10 on seeds
        0-2; on 8 cuts 0.2573 / 0.2572 / 0.2611 (default EASE 0.2521 / 0.2559 / 0.2536); out of fold on auto's
        cut 0.2056 -> 0.2099, 0.2022 -> 0.2052, 0.2011 -> 0.2050."""
        from .. import split
        from ..ensemble.rerank import Reranker, select_rows

        pooled = self.pooled()
        idx = [list(self.cuts).index(lab) for lab in rr.labels]  # the cuts' lists are of the cut members
        cuts = self._pooled_cuts()
        trains = [self.folds.search_train]
        last, random = self.protocol
        for r in range(1, len(cuts)):
            trains.append(split.competition(self.data, last=last, random=random, seed=self.seed + 1000 * r)[0])
        n = len(cuts) if most is None else max(1, min(len(cuts), int(most)))
        cuts, trains = cuts[:n], trains[:n]
        pick = [cut_rows(c, idx) for c in cuts]  # the ranker's members' lists, in its order

        def ranker(users):
            groups = []
            for t, c in zip(trains, pick):
                sel = np.flatnonzero(np.isin(c.users, users))
                groups.append((t, c.users[sel], select_rows(c.lists, sel), c.truth[sel]))
            return Reranker(rr.labels, seed=self.seed, ranker=rr.ranker, recency=rr.recency).fit_cuts(self.data, groups)

        on_b, on_a = ranker(self.a.users), ranker(self.b.users)  # trained on fold A's users, fold B's
        rows, written, users = [], pooled.written_rows()[:n], []
        keep = []
        for t, c in zip(trains, pick):
            got = np.full(len(c.users), np.nan)
            for fitted, fold in ((on_a, self.a.users), (on_b, self.b.users)):
                sel = np.flatnonzero(np.isin(c.users, fold))
                lists = select_rows(c.lists, sel)
                got[sel] = Cut(c.users[sel], lists, c.truth[sel]).recall(
                    fitted.recommend(self.data, t, c.users[sel], lists, self.k), self.k)
            keep.append(~np.isnan(got))
            rows.append(got)
            users.append(c.users)
        mask = np.concatenate(keep)
        u, got, base = np.concatenate(users)[mask], np.concatenate(rows)[mask], np.concatenate(written)[mask]
        d = per_user_mean(u, got - base)
        final = Reranker(rr.labels, seed=self.seed, ranker=rr.ranker, recency=rr.recency).fit_cuts(
            self.data, [(t, c.users, c.lists, c.truth) for t, c in zip(trains, pick)])
        gain, se = paired(d)
        return RerankOverCuts(gain, se, beats(d), len(d), n, final,
                              bool(on_a.out_of_time or on_b.out_of_time or final.out_of_time),
                              float(per_user_mean(u, got).mean()), float(per_user_mean(u, base).mean()))  # fmt: skip

    def reranker(self, rr) -> tuple[np.ndarray, object, bool]:
        """The re-ranker ``rr`` (trained on fold A by ``rr.validate``) scored on fold B; a twin trained on fold B
        scored on fold A. Returns the out-of-fold recall, a ranker trained on both folds (for the final lists),
        and whether either of the two new rankers was stopped by the stage's deadline."""
        from ..ensemble.rerank import Reranker

        a, b, train = self.a, self.b, self.folds.search_train
        idx = [self.ens.labels.index(lab) for lab in rr.labels]  # rr may have fewer members (the cut members)
        lists_a, lists_b = [self.lists_a[i] for i in idx], [self.lists_b[i] for i in idx]

        def ranker(users, lists, truth):
            return Reranker(rr.labels, seed=self.seed, ranker=rr.ranker, clusters=rr.clusters,
                            recency=rr.recency).fit(self.data, train, users, lists, truth)  # fmt: skip

        twin = ranker(b.users, lists_b, b.truth[b.users])
        on_a = twin.recommend(self.data, train, a.users, lists_a, self.k)
        on_b = rr.reranker.recommend(self.data, train, b.users, lists_b, self.k)
        oof = np.concatenate([self._recall(on_a, a), self._recall(on_b, b)])
        users = np.concatenate([a.users, b.users])
        both = [type(la)(users, np.concatenate([la.items, lb.items]), np.concatenate([la.scores, lb.scores]))
                for la, lb in zip(lists_a, lists_b)]  # fmt: skip
        final = ranker(users, both, (a.truth + b.truth)[users])
        return oof, final, bool(twin.out_of_time or final.out_of_time)
