#!/usr/bin/env python
"""What-ifs on a finished ``toprec auto`` run: would more users, other boosting or more features help?

    python benchmarks/bench_auto_whatif.py --dataset comp-sample --seed 0 --budget 10m --out /tmp/auto_comp0 users
    python benchmarks/bench_auto_whatif.py --dataset ml-1m --seed 0 --budget 15m --out /tmp/auto_ml1m0 ranker
    python benchmarks/bench_auto_whatif.py --dataset ml-1m --seed 0 --out /tmp/auto_ml1m0 features

``--out`` is an auto run's folder on the training part of bench_auto's cut
(``split.competition(data, seed)``; the test part is never read): made here
with ``--budget`` when it is missing. The tuned members' stored fold-A/B lists
are read back as the run chose them (``ensemble_members`` of the studies), so
nothing is refitted, and every variant is trained on fold A's truth (or
more, for ``users``) and scored on fold B users it was not trained on:

* ``users``: fold B halved (B1, B2); the re-ranker and the fusion (every
  method searched, the best kept) trained on A, and on A + B1 (the fusion
  keeping A's method, from A's weights, as ``Ensemble.widen`` does), both
  scored on B2; then the mirror (A + B2, scored on B1). Does the final stage
  gain from 1.5x the users (refit the chosen stage on A + B, or cut repeated
  validation holdouts on small data)?
* ``ranker``: LightGBM on the same features, same 80/20 early-stopping users:
  the shipped parameters, wider / narrower trees, lambdarank, rank_xendcg.
* ``seqrules``: the sequential member's lists swapped for other seqrules
  parameters (the model's defaults, the old space's TPE best), and both
  the run's and the defaults as two members; fusion and re-ranker on fold B.
* ``features``: the shipped features, plus the candidate's popularity within
  the user's active window (log events between the user's first and last
  training event, that count's share of all the item's events, the window's
  width).

Prints a markdown table (fold-B recall@10, its parts, trees, seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402
from toprec import metrics, progress, split  # noqa: E402
from toprec.auto import run_auto  # noqa: E402
from toprec.auto.pipeline import ensemble_members, use_recency  # noqa: E402
from toprec.auto.plan import candidates  # noqa: E402
from toprec.auto.profile import profile  # noqa: E402
from toprec.auto.tuning import MemberStudy, open_studies  # noqa: E402
from toprec.ensemble import make_folds  # noqa: E402
from toprec.ensemble.fusion import METHODS, build_pool  # noqa: E402
from toprec.ensemble.recency import Recency  # noqa: E402
from toprec.ensemble.rerank import PARAMS, Reranker, candidate_features, select_rows, split_users, top_k  # noqa: E402
from toprec.ensemble.search import run_search  # noqa: E402
from toprec.experiment.config import parse_budget  # noqa: E402
from toprec.metrics import hit_matrix  # noqa: E402

K, N = 10, 100


class Run:
    """An auto run's folds and the tuned members' stored lists (rows: fold A's users, then fold B's)."""

    def __init__(self, dataset: str, seed: int, out: Path, budget: str | None):
        data, self.last, self.random = LOADERS[dataset](seed)
        self.train, _test = split.competition(data, last=self.last, random=self.random, seed=seed)
        if not (out / "studies.db").exists():
            if not budget:
                raise SystemExit(f"{out}: no auto run there; give --budget to make one")
            run_auto(self.train, out, parse_budget(budget), k=K, last=self.last, random=self.random, seed=seed + 100,
                     log=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
        self.seed = seed
        self.folds = make_folds(self.train, "users", seed + 100, self.last, self.random, True)
        storage = open_studies(out / "studies.db")
        studies = [MemberStudy(c, self.folds, storage, out, K, N, seed + 100)
                   for c in candidates(profile(self.train, self.last, self.random))]  # fmt: skip
        tuned = ensemble_members(sorted((s for s in studies if s.best), key=lambda s: -s.best["value"]))
        self.labels = [s.c.name for s in tuned]
        self.lists = [s.best_lists() for s in tuned]
        self.A, self.B = self.folds.fold_a.users, self.folds.fold_b.users
        self.row = {int(u): i for i, u in enumerate(np.concatenate([self.A, self.B]))}
        self.truth = self.folds.fold_a.holdout.matrix + self.folds.fold_b.holdout.matrix  # each user in one fold
        self.recency = use_recency(self.train, self.last)

    def lists_of(self, users: np.ndarray) -> list:
        return select_rows(self.lists, np.array([self.row[int(u)] for u in users]))

    def recall(self, recs, users: np.ndarray) -> dict[str, float]:
        """recall@K on ``users`` (fold B) overall and by holdout part."""
        hold = self.folds.fold_b.holdout
        top = type(recs)(recs.users, recs.items[:, :K], recs.scores[:, :K])
        per = metrics.per_user(f"recall@{K}", top.items, self.truth[users])
        out = {"all": float(per.mean()), "_per_user": per}
        for part in self.folds.fold_b.parts:
            truth = hold.parts[part][users]
            has = np.diff(truth.indptr) > 0
            if has.any():
                out[part] = float(metrics.per_user(f"recall@{K}", top.items, truth)[has].mean())
        return out


def fusion(run: Run, users: np.ndarray, scored: np.ndarray, method: str | None = None, start=None):
    """The fusion searched on ``users`` (every method, the best kept; or ``method`` from ``start``, as
    ``Ensemble.widen`` does), scored on ``scored``: (method, weights, lists)."""
    best = None
    for m in [method] if method else METHODS:
        res = run_search(build_pool(run.lists_of(users), m, users), run.truth[users], K, "both", start=start,
                         seed=run.seed)  # fmt: skip
        if best is None or res.score > best[1].score:
            best = (m, res)
    m, res = best
    return m, res.weights, build_pool(run.lists_of(scored), m, scored).recommend(res.weights, K)


def what_users(run: Run) -> list[dict]:
    perm = np.random.default_rng(run.seed).permutation(len(run.B))
    halves = [np.sort(run.B[perm[: len(run.B) // 2]]), np.sort(run.B[perm[len(run.B) // 2 :]])]
    rows = []
    for scored, extra in ((halves[1], halves[0]), (halves[0], halves[1])):
        chosen = None
        for tag, users in (("A", run.A), ("A + half of B", np.sort(np.concatenate([run.A, extra])))):
            t0 = time.perf_counter()
            rk = Reranker(run.labels, seed=run.seed, recency=run.recency)
            rk.fit(run.train, run.folds.search_train, users, run.lists_of(users), run.truth[users])
            r = run.recall(rk.recommend(run.train, run.folds.search_train, scored, run.lists_of(scored), K), scored)
            # the second row keeps fold A's method and starts from its weights (``Ensemble.widen``)
            method, weights, f = fusion(run, users, scored, *(chosen or (None, None)))
            chosen = chosen or (method, weights)
            rows.append({"scored": f"{len(scored)} of B", "trained on": f"{tag} ({len(users)})", "re-ranker": r,
                         "trees": rk.trees, f"fusion": run.recall(f, scored), "method": method,
                         "seconds": time.perf_counter() - t0})  # fmt: skip
    return rows


def _features(run: Run, window: bool, fused: tuple | None = None):
    rec = Recency(run.folds.search_train) if run.recency else None
    out = []
    for users in (run.A, run.B):
        items, feats, names = candidate_features(run.train, run.folds.search_train, users, run.lists_of(users),
                                                 run.labels, recency=rec)  # fmt: skip
        if window:
            feats, names = np.concatenate([feats, _window(run, users, items)], -1), names + WINDOW
        if fused is not None:
            feats = np.concatenate([feats, _fused(run, users, items, *fused)], -1)
        out.append((items, feats))
    return out


def _fused(run: Run, users: np.ndarray, items: np.ndarray, method: str, weights) -> np.ndarray:
    """The fold-A fusion's score (gap to the row's best) and rank, in ``candidate_features``' layout."""
    pool = build_pool(run.lists_of(users), method, users)
    assert np.array_equal(pool.items, items)
    f = pool.fused(weights).astype(np.float64)
    ok = np.isfinite(f)
    lo = np.where(ok, f, np.inf).min(1, keepdims=True)
    f = np.where(ok, f, np.where(np.isfinite(lo), lo, 0.0) - 1.0)
    gap = f - f.max(1, keepdims=True)
    order = np.argsort(-f, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(1, f.shape[1] + 1)[None, :].repeat(f.shape[0], 0), 1)
    return np.stack([gap, np.log(rank)], -1).astype(np.float32)


WINDOW = ["pop_in_user_window", "share_in_user_window", "user_window"]


def _window(run: Run, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    st = run.folds.search_train
    ptr, t, item = np.asarray(st.user_ptr), np.asarray(st.time, dtype=np.int64), np.asarray(st.item, dtype=np.int64)
    t0, span = int(t.min()), max(int(t.max() - t.min()), 1)
    stride = span + 2
    keys = np.sort(item * stride + (t - t0))
    count = np.bincount(item, minlength=st.n_items).astype(np.float64)
    first, last = t[ptr[:-1]] - t0, t[np.maximum(ptr[1:] - 1, 0)] - t0
    n, L = items.shape
    it = np.maximum(items, 0).astype(np.int64)
    lo = (it * stride + first[users][:, None] - 1).ravel()
    hi = (it * stride + last[users][:, None]).ravel()
    c = (np.searchsorted(keys, hi, "right") - np.searchsorted(keys, lo, "right")).reshape(n, L).astype(np.float64)
    width = np.broadcast_to(((last - first)[users] / span)[:, None], (n, L))
    return np.stack([np.log1p(c), c / np.maximum(count[it], 1), width], -1).astype(np.float32)


def _boost(run: Run, feats, params: dict) -> tuple[dict, int, float]:
    import lightgbm as lgb

    (ia, fa), (ib, fb) = feats
    y = hit_matrix(ia, run.truth[run.A])
    valid = ia >= 0
    fit_rows, stop_rows = split_users(len(run.A), run.seed)
    ranking = params["objective"] != "binary"

    def part(rows):
        m = valid[rows]
        return fa[rows][m], y[rows][m].astype(float), m.sum(1)

    (xf, yf, gf), (xs, ys, gs) = part(fit_rows), part(stop_rows)
    p = {key: v for key, v in params.items() if key != "n_estimators"}
    p.setdefault("metric", "binary_logloss")
    t0 = time.perf_counter()
    train = lgb.Dataset(xf, yf, group=gf if ranking else None)
    stop = lgb.Dataset(xs, ys, group=gs if ranking else None, reference=train)
    bst = lgb.train({**p, "seed": run.seed, "num_threads": 2}, train, 1000, valid_sets=[stop],
                    callbacks=[lgb.early_stopping(50, verbose=False)])  # fmt: skip
    vb = ib >= 0
    scores = np.full(ib.shape, -np.inf, dtype=np.float32)
    scores[vb] = bst.predict(fb[vb], num_iteration=bst.best_iteration)
    return run.recall(top_k(run.B, ib, scores, K), run.B), int(bst.best_iteration), time.perf_counter() - t0


RANKERS = {
    "binary (shipped)": {},
    "binary, 63 leaves, lr 0.03": {"num_leaves": 63, "learning_rate": 0.03},
    "binary, 15 leaves, min child 300": {"num_leaves": 15, "min_child_samples": 300},
    "lambdarank (truncation 20)": {"objective": "lambdarank", "lambdarank_truncation_level": 20, "eval_at": [K],
                                   "metric": "ndcg"},  # fmt: skip
    "rank_xendcg": {"objective": "rank_xendcg", "eval_at": [K], "metric": "ndcg"},
}


def what_ranker(run: Run) -> list[dict]:
    feats = _features(run, window=False)
    rows = []
    for name, extra in RANKERS.items():
        r, trees, s = _boost(run, feats, {**PARAMS, **extra})
        rows.append({"variant": name, "re-ranker": r, "trees": trees, "seconds": s})
    return rows


def what_features(run: Run) -> list[dict]:
    rows = []
    for name, window in (("shipped features", False), ("+ popularity in the user's active window", True)):
        r, trees, s = _boost(run, _features(run, window), dict(PARAMS))
        rows.append({"variant": name, "re-ranker": r, "trees": trees, "seconds": s})
    method, weights, f = fusion(run, run.A, run.B)
    rows.append({"variant": f"fusion alone ({method}, searched on A)", "re-ranker": run.recall(f, run.B), "trees": 0,
                 "seconds": 0.0})  # fmt: skip
    r, trees, s = _boost(run, _features(run, False, (method, weights)), dict(PARAMS))
    rows.append({"variant": "+ the fold-A fusion's score gap and rank", "re-ranker": r, "trees": trees, "seconds": s})
    return rows


SEQRULES = {
    "shipped start (whole history, decay 0.99)": None,  # the run's own tuned seqrules
    "model defaults (last 10, decay 0.5)": {},
    "old space's TPE best (last 17, decay 0.88)": {"window": 9, "last_n": 17, "recency_decay": 0.879,
                                                    "normalize": 0.079, "shrink": 42.6, "k": 869},
}


def what_seqrules(run: Run) -> list[dict]:
    """The sequential member's lists swapped for other seqrules parameters (fitted on the search data, as a
    trial is); the fusion searched on fold A (every method, the best kept) and the re-ranker trained on fold A,
    both scored on fold B. Plus both: the run's seqrules and the defaults as two members."""
    from toprec import models

    if "seqrules" not in run.labels:
        raise SystemExit("no seqrules member in this run")
    i = run.labels.index("seqrules")
    users = np.concatenate([run.A, run.B])
    variants = {}
    for name, params in SEQRULES.items():
        lists = run.lists[i] if params is None else models.get("seqrules", **params).fit(
            run.folds.search_train).recommend(users, k=N)  # fmt: skip
        variants[name] = (run.labels, [*run.lists[:i], lists, *run.lists[i + 1:]])
    default = variants["model defaults (last 10, decay 0.5)"][1][i]
    variants["shipped + model defaults (two members)"] = ([*run.labels, "seqrules-last"], [*run.lists, default])
    rows, keep = [], (run.labels, run.lists)
    for name, (labels, lists) in variants.items():
        run.labels, run.lists = labels, lists
        t0 = time.perf_counter()
        alone = run.recall(run.lists_of(run.B)[labels.index("seqrules")], run.B)
        rk = Reranker(labels, seed=run.seed, recency=run.recency)
        rk.fit(run.train, run.folds.search_train, run.A, run.lists_of(run.A), run.truth[run.A])
        r = run.recall(rk.recommend(run.train, run.folds.search_train, run.B, run.lists_of(run.B), K), run.B)
        method, _, f = fusion(run, run.A, run.B)
        rows.append({"variant": name, "alone": alone, "re-ranker": r, "trees": rk.trees, "fusion": run.recall(f, run.B),
                     "method": method, "seconds": time.perf_counter() - t0})  # fmt: skip
    run.labels, run.lists = keep
    return rows


def _cell(r: dict) -> str:
    parts = " / ".join(f"{r[p]:.4f}" for p in ("last", "random") if p in r)
    return f"{r['all']:.4f}" + (f" ({parts})" if parts else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["users", "ranker", "features", "seqrules"])
    ap.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="the auto run's folder (made with --budget if missing)")
    ap.add_argument("--budget", help="auto's budget when --out has no run yet (e.g. 10m)")
    a = ap.parse_args()
    progress.set_quiet(True)
    run = Run(a.dataset, a.seed, a.out, a.budget)
    print(f"{a.dataset}, seed {a.seed}: members {', '.join(run.labels)}; fold A {len(run.A):,} users, "
          f"fold B {len(run.B):,}; recall@{K} on fold B users not trained on (last / random parts)\n")  # fmt: skip
    if a.what == "users":
        rows = what_users(run)
        print("| scored | trained on | re-ranker | trees | fusion | method |\n| --- | --- | --- | ---: | --- | --- |")
        for r in rows:
            print(f"| {r['scored']} | {r['trained on']} | {_cell(r['re-ranker'])} | {r['trees']} | "
                  f"{_cell(r['fusion'])} | {r['method']} |")  # fmt: skip
        for i in (0, 2):
            for key in ("re-ranker", "fusion"):
                d = rows[i + 1][key]["_per_user"] - rows[i][key]["_per_user"]
                print(f"\n{key}, scored on {rows[i]['scored']}: 1.5x the users {d.mean():+.4f} "
                      f"(se {d.std(ddof=1) / np.sqrt(len(d)):.4f})", end="")  # fmt: skip
        print()
        return
    if a.what == "seqrules":
        rows = what_seqrules(run)
        print("| seqrules | alone, fold B | re-ranker, fold B | trees | fusion, fold B | method | seconds |\n"
              "| --- | --- | --- | ---: | --- | --- | ---: |")  # fmt: skip
        for r in rows:
            print(f"| {r['variant']} | {_cell(r['alone'])} | {_cell(r['re-ranker'])} | {r['trees']} | "
                  f"{_cell(r['fusion'])} | {r['method']} | {r['seconds']:.0f} |")  # fmt: skip
        for key in ("re-ranker", "fusion"):
            base = rows[0][key]["_per_user"]
            for r in rows[1:]:
                d = r[key]["_per_user"] - base
                print(f"{key}, {r['variant']}: {d.mean():+.4f} (se {d.std(ddof=1) / np.sqrt(len(d)):.4f}) vs shipped")
        return
    rows = what_ranker(run) if a.what == "ranker" else what_features(run)
    print("| variant | re-ranker, fold B | trees | seconds |\n| --- | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['variant']} | {_cell(r['re-ranker'])} | {r['trees']} | {r['seconds']:.0f} |")
    base = rows[0]["re-ranker"]["_per_user"]
    for r in rows[1:]:
        d = r["re-ranker"]["_per_user"] - base
        print(f"{r['variant']}: {d.mean():+.4f} (se {d.std(ddof=1) / np.sqrt(len(d)):.4f}) vs {rows[0]['variant']}")


if __name__ == "__main__":
    main()
