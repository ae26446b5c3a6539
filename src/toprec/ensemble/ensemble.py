"""``Ensemble``: members + fusion method + weights, searched on fold A, confirmed on fold B, then refitted.

The protocol and its schemes are described in :mod:`toprec.ensemble.folds`.
What :meth:`Ensemble.validate` decides is explicit: the fusion method and the
weights are the report's ``method`` and ``weights``, applied to the ensemble by
:meth:`Ensemble.select`; :meth:`Ensemble.apply_fallback` is the policy for a
gain that does not hold on fold B (the best fold-A member alone, unless
``force``); :meth:`Ensemble.prepare_final` hands over the data the final
recommendations are fitted on.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from .. import progress
from ..errors import ToprecError
from ..recommend import Recommendations
from .folds import Folds, fold_metrics, gap_se, group_means, make_folds, per_user_recall, recall_by_activity
from .fusion import METHODS, build_pool, check_method, fuse
from .members import Member, parse_members
from .search import SEARCHES, Objective, SearchResult, run_search

#: Ensemble(method=AUTO): validate() searches every fusion method on fold A and keeps the best
#: (without validate(), recommend() uses rank, the competition's 1/log2(rank+1) vote)
AUTO = "auto"
#: Ensemble(method=RERANK): a LightGBM/CatBoost re-ranker trained on fold A (:mod:`toprec.ensemble.rerank`);
#: never chosen by auto
RERANK = "rerank"
#: what :meth:`Ensemble.apply_fallback` says when it writes the best fold-A member alone
FALLBACK_WARNING = "writing the best fold-A member '{best}' alone (use --force to write the ensemble anyway)"
#: ... and when the member written alone was chosen elsewhere (``apply_fallback(alternative=...)``)
ALTERNATIVE_WARNING = "writing the member '{best}' alone: the ensemble did not beat it by one standard error"


def _bind(members: Sequence[Member], data, k: int, n: int) -> None:
    for m in members:
        m.bind(data, k, n)


class Ensemble:
    """Members + fusion method + weights; validated honestly, then fitted on all data.

    >>> ens = Ensemble("ease,rp3beta,ials", method="rank")
    >>> report = ens.validate(data, search="both")      # search on fold A, confirm on fold B
    >>> chosen, warning = ens.apply_fallback(report)     # the best fold-A member alone if the gain did not hold
    >>> recs = ens.prepare_final(data).recommend(data.users, k=10)
    """

    def __init__(self, members, method: str = AUTO, weights: Sequence[float] | None = None, candidates: int = 100,
                 ranker: str = "lightgbm", clusters: str | None = None, recency: bool = False):  # fmt: skip
        self.members: list[Member] = parse_members(members)
        name = method.strip().lower()
        self.method = name if name in (AUTO, RERANK) else check_method(method)
        self.reranker = None
        from .rerank import RANKERS

        #: method rerank: the booster ("lightgbm" | "catboost") and the factor model whose user clusters are features
        self.ranker = str(ranker).strip().lower()
        if self.ranker not in RANKERS:
            raise ToprecError(f"unknown ranker '{ranker}' (choose from {', '.join(RANKERS)})")
        self.clusters = clusters or None
        #: method rerank: recency features (:mod:`.recency`)
        self.recency = bool(recency)
        if (self.ranker != RANKERS[0] or self.clusters or self.recency) and self.method != RERANK:
            raise ToprecError("--ranker, --clusters and --recency choose the re-ranker's backend and features: "
                              f"they need --method rerank, not '{self.method}'")  # fmt: skip
        if self.clusters:
            from ..features.clusters import parse_spec

            parse_spec(self.clusters)  # an unknown model or parameter: before any work
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
        """Search on fold A, confirm on fold B, and adopt the choice.

        Returns a report dict (members' and ensemble's metrics on both folds,
        weights, gains, ``holds`` and ``warning``). The choice is the report's
        ``method`` (for ``auto``: the best fusion method on fold A) and
        ``weights`` ({label: weight}); before returning, ``validate`` applies
        it with :meth:`select`, so ``self.method`` and ``self.weights`` are
        the report's afterwards (``rerank`` also keeps its trained ranker in
        ``self.reranker``) and the report is kept in ``self.report``. Whether
        to keep the ensemble when its gain does not hold on fold B is
        :meth:`apply_fallback`'s decision, not this one's.
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
        method, result, ens_a = best
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
        ens_b = fuse([lists_b[i] for i in keep], weights[keep], method, k, users=folds.fold_b.users)
        timings["confirm_s"] = time.perf_counter() - t0
        report = self._report(folds, lists_a, lists_b, ens_a, ens_b, method, weights, result, search, k, min_gain, seed)
        if requested == AUTO:
            report["method_requested"] = AUTO
            report["methods_fold_a"] = tried
        timings["total_s"] = time.perf_counter() - t_start
        report["timings"] = {key: round(v, 3) for key, v in timings.items()}
        return self.select(report)

    def _validate_rerank(self, data, folds, lists_a, sealed_b, k, min_gain, seed, timings, t0, t_start):
        """Train the re-ranker on fold A's truth (every member is a feature), score it once on fold B."""
        from .rerank import Reranker

        fa, fb = folds.fold_a, folds.fold_b
        with progress.task(f"re-ranker ({self.ranker}) trained on fold A: {len(fa.users):,} users"):
            ranker = Reranker(self.labels, seed=seed, ranker=self.ranker, clusters=self.clusters, recency=self.recency)
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
        score_a = float(per_user_recall(ens_a, fa, k).mean())
        result = SearchResult(weights, score_a, 1, [{"rerank_trees": ranker.trees}])
        report = self._report(
            folds, lists_a, lists_b, ens_a, ens_b, RERANK, weights, result, "rerank", k, min_gain, seed
        )
        report["rerank"] = {**ranker.describe(),
                            "note": "fold A is the ranker's training fold (80% fit, 20% early stopping): its fold-A "
                                    "recall is in-sample; fold B is the test"}  # fmt: skip
        if ranker.clusters is not None:  # fold-B recall of the ensemble and the best fold-B member, per cluster
            report["rerank"]["recall_by_cluster_fold_b"] = self._recall_by_cluster(
                ranker.clusters, fb, {"ensemble": ens_b, report["best_member_fold_b"]:
                                      lists_b[self.labels.index(report["best_member_fold_b"])]}, k)  # fmt: skip
        timings["total_s"] = time.perf_counter() - t_start
        report["timings"] = {key: round(v, 3) for key, v in timings.items()}
        self.reranker = ranker
        return self.select(report)

    @staticmethod
    def _recall_by_cluster(clusters, fold, lists: dict, k: int) -> dict:
        """{"users": per cluster, name: mean recall@k per cluster} (the last entry: users with no cluster)."""
        lab = clusters.lookup(fold.users)
        group = np.where(lab >= 0, lab, clusters.k)
        recalls = {name: per_user_recall(recs, fold, k) for name, recs in lists.items()}
        return {"clusters": [str(c) for c in range(clusters.k)] + ["none"], **group_means(group, clusters.k + 1, recalls)}

    def _report(self, folds, lists_a, lists_b, ens_a, ens_b, method, weights, result, search, k, min_gain, seed):
        r = f"recall@{k}"
        members = []
        for m, la, lb, w in zip(self.members, lists_a, lists_b, weights):
            members.append(
                {
                    "label": m.label,
                    "weight": float(w),
                    "fold_a": fold_metrics(la, folds.fold_a, k),
                    "fold_b": fold_metrics(lb, folds.fold_b, k),
                    "member": m.describe(),
                }
            )
        ea, eb = fold_metrics(ens_a, folds.fold_a, k), fold_metrics(ens_b, folds.fold_b, k)
        best_a = max(members, key=lambda x: x["fold_a"][r])
        best_b = max(members, key=lambda x: x["fold_b"][r])
        gain_a = ea[r] - best_a["fold_a"][r]
        gain_b = eb[r] - best_b["fold_b"][r]
        # paired standard error of the fold-B gain (same users, ensemble vs that member)
        ib = [mm["label"] for mm in members].index(best_b["label"])
        users_b = folds.fold_b.users  # the same users on both sides: gap_se pairs them
        fused_b = per_user_recall(ens_b, folds.fold_b, k)
        recalls_b = {"ensemble": fused_b}
        for mm, lb in zip(members, lists_b):  # each member's paired se against the ensemble on fold B
            recalls_b[mm["label"]] = per_user_recall(lb, folds.fold_b, k)
            mm["fold_b_gap_se"] = gap_se(recalls_b[mm["label"]], users_b, fused_b, users_b)
        se_b = members[ib]["fold_b_gap_se"]
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
            "method": method,
            "search": search,
            "k": k,
            "candidates": self.candidates,
            "seed": seed,
            "min_gain": min_gain,
            "fold_a": folds.fold_a.counts,
            "fold_b": folds.fold_b.counts,
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
            "recall_by_activity_fold_b": recall_by_activity(folds.fold_b, folds.confirm_train, recalls_b),
            "holds": holds,
            "warning": "; ".join(warnings) or None,
            "search_trials": result.trials,
            "search_steps": [
                {**s, "member": self.members[s["member"]].label} if "member" in s else s for s in result.steps
            ],
        }

    # ------------------------------------------------------------- choose
    def select(self, report: dict[str, Any]) -> dict[str, Any]:
        """Adopt a validation report's choice: ``self.method = report["method"]``, ``self.weights`` from
        ``report["weights"]`` ({label: weight}, one per member); keeps the report in ``self.report`` and returns it.

        :meth:`validate` ends with this; call it yourself to reuse a report. A
        ``rerank`` choice also needs the ranker that :meth:`validate` trained.
        """
        weights = report["weights"]
        if sorted(weights) != sorted(self.labels):
            raise ToprecError(f"ensemble: the report's members {sorted(weights)} are not {sorted(self.labels)}")
        self.method = report["method"]
        self.weights = np.asarray([weights[label] for label in self.labels], dtype=np.float64)
        self.report = report
        return report

    def apply_fallback(self, report: dict[str, Any], force: bool = False, against: str = "best",
                       holds: bool | None = None, alternative: str | None = None) -> tuple[str, str | None]:  # fmt: skip
        """The fallback policy after :meth:`validate`: what is written, and the warning to show (or None).

        ``against="best"`` (``toprec ensemble``): when the ensemble's gain over
        the best member *on fold B* (in hindsight, the strictest bar) does not
        hold (``report["holds"]`` false). ``against="alternative"`` (``toprec
        auto``): unless the ensemble beats, on fold B, the member that would be
        written instead (the best fold-A member) by more than one paired
        standard error (that member's ``fold_b_gap_se``; ``>=`` in a report
        without it) — one binary choice on the unseen fold, without the upward
        bias of a maximum over noisy members, and with the margin the
        re-ranker is held to: on ML-100K (fold B ~470 users) a rank vote whose
        fold-A weights gave Multi-VAE 0.3-0.4 tied the best member on fold B
        and lost 0.004-0.006 (1.6-2.9 se) to it on the test.
        ``holds`` (``toprec auto`` on small data): the verdict made elsewhere
        (cross-fitted over both folds, :mod:`toprec.auto.crossfit`), instead of
        the report's. ``alternative``: the member written when the verdict goes against the ensemble,
        instead of the best fold-A member (``toprec auto`` on small data: the best over both folds); it is
        then written alone also when the search kept another single member.
        Then, with ``force`` off and more than one member weighted, the best
        fold-A member is used alone (``self.weights`` becomes one-hot on it;
        ``self.method`` is unchanged — one list fuses to itself) and the result
        is ``("member:<label>", FALLBACK_WARNING)``. Otherwise the weights
        stay: ``("member:<label>", None)`` when exactly one member has a weight
        > 0 (the search kept one), else ``("ensemble", None)``.
        """
        best = alternative or report["best_member_fold_a"]
        if best not in self.labels:
            raise ToprecError(f"apply_fallback: alternative '{best}' is not a member ({', '.join(self.labels)})")
        if holds is not None:
            holds = bool(holds)
        elif against == "alternative":
            r = f"recall@{report['k']}"
            alt = next(m for m in report["members"] if m["label"] == best)
            gain, se = report["ensemble"]["fold_b"][r] - alt["fold_b"][r], alt.get("fold_b_gap_se")
            holds = gain > se if se is not None and se == se else gain >= 0  # se NaN: fold B under 2 users
        elif against == "best":
            holds = report["holds"]
        else:
            raise ToprecError(f"apply_fallback: against='{against}' (choose best or alternative)")
        other = alternative is not None and self.labels[int(np.argmax(self.weights))] != best
        if not holds and not force and (int((self.weights > 0).sum()) > 1 or other):
            self.weights = np.array([1.0 if lab == best else 0.0 for lab in self.labels])
            return f"member:{best}", (ALTERNATIVE_WARNING if alternative else FALLBACK_WARNING).format(best=best)
        if int((self.weights > 0).sum()) == 1:
            return f"member:{self.labels[int(np.argmax(self.weights))]}", None
        return "ensemble", None

    def widen(self, data, folds: Folds, k: int = 10, search: str = "weights", seed: int = 0) -> dict[str, Any]:
        """Search the chosen fusion method's weights again on folds A and B together, from the confirmed weights.

        After :meth:`validate` (and the fallback) have decided *whether* to fuse
        and with which method, on a fold the search never saw, the weights
        themselves are refined on every validation user: the usual refit after
        model selection. Measured (``benchmarks/bench_auto_whatif.py users``,
        fold B halved, scored on the half not trained on): fusion weights
        searched on 1.5x the users gained +0.0002 to +0.0019 recall@10 in four
        of four halves on the competition sample. Needs one fit for both folds
        (``folds.same_fit``); the members' search-stage lists serve (nothing is
        fitted again where they are stored). Sets ``self.weights``; returns
        ``{"weights", "users", "recall_fold_ab", "recall_fold_ab_before"}``. The search is coordinate ascent
        from the confirmed weights (``search="weights"``; a member may drop out, none joins); weights that do
        not raise the recall on both folds are not taken.
        """
        if self.method in (AUTO, RERANK):
            raise ToprecError(f"ensemble: widen() refines fusion weights, not method '{self.method}'")
        if not folds.same_fit:
            raise ToprecError("ensemble: widen() needs folds A and B scored by one fit (scheme users or events)")
        fa, fb = folds.fold_a, folds.fold_b
        users = np.concatenate([fa.users, fb.users])
        if len(np.unique(users)) != len(users):  # the events scheme: the same users in both folds
            raise ToprecError("ensemble: widen() needs disjoint users in folds A and B (scheme users)")
        _bind(self.members, data, k, self.candidates)
        lists = [m.lists(folds.search_train, users, self.candidates, "search") for m in self.members]
        truth = (fa.truth + fb.truth)[users]
        pool = build_pool(lists, self.method, users)
        before = float(Objective(pool, truth, k)(self.weights))
        res = run_search(pool, truth, k, search, start=self.weights, seed=seed)
        after = float(res.score)
        if after > before:  # coordinate ascent from the confirmed weights (``weights``) never ends lower; a
            self.weights = np.asarray(res.weights, dtype=np.float64)  # ``both`` search restarts its subset
        else:
            after = before
        return {"weights": {m.label: float(w) for m, w in zip(self.members, self.weights)}, "users": int(len(users)),
                "recall_fold_ab": after, "recall_fold_ab_before": before}  # fmt: skip

    # ------------------------------------------------------------- final
    def prepare_final(self, data, k: int = 1) -> "Ensemble":
        """Make ``data`` (all of it) the members' training data for :meth:`recommend`; nothing is fitted here.

        Models are fitted lazily, one at a time, by :meth:`recommend` (memory);
        file members are read here (each user needs at least ``k`` rows).
        """
        _bind(self.members, data, k, self.candidates)
        self.data = data
        return self

    def fit(self, data, k: int = 1) -> "Ensemble":
        """Alias of :meth:`prepare_final` (the usual ``fit(data).recommend(...)`` chain): fits nothing itself."""
        return self.prepare_final(data, k)

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
        if self.reranks and (self.reranker is None or len(keep) != len(self.members)):
            raise ToprecError("method 'rerank': the re-ranker is trained on fold A: run validate() first")
        lists = [self.members[i].lists(data, users, self.candidates, stage) for i in keep]
        known = (users >= 0) & (users < data.n_users)
        seen = data.matrix[np.where(known, users, 0)]
        if not known.all():
            seen = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ seen)
        if self.reranks:
            return self.reranker.recommend(data, data, users, lists, k, exclude=seen)
        # auto, never validated: the competition's vote; rerank fallen back to one member: its own list
        method = "rank" if self.method in (AUTO, RERANK) else self.method
        return fuse(lists, self.weights[keep], method, k, users=users, exclude=seen)

    @property
    def reranks(self) -> bool:
        """Whether :meth:`recommend` re-ranks (method rerank with more than one member kept; one kept: its list)."""
        return self.method == RERANK and int((self.weights > 0).sum()) > 1

    def release(self) -> None:
        """Drop the members' fitted models (memory)."""
        for m in self.members:
            m.release()

