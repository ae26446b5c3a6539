#!/usr/bin/env python
"""Beyond one weight vector: activity-bucketed weights and a learned re-ranker, searched on fold A, scored on fold B.

    # members fitted and saved by bench_ensemble_quality.py (same --data/--seed/--scheme/--last/--random)
    python benchmarks/bench_ensemble_alternatives.py --data /tmp/compsample_side --scheme events --last 0 \
        --random 10 --seed 3 --models-dir /tmp/ens-side-3 \
        --members ease,easer,ials,rp3beta,recvae,multivae,multidae,edlae,cease \
        --json benchmarks/results/ensemble_alternatives_competition_side_seed3.json

Needs ``pip install lightgbm`` (the ``bench`` or ``rerank`` extra) for the re-ranker rows.

Same folds and the same saved member fits as ``bench_ensemble_quality.py``
(``toprec.ensemble.make_folds``); each member's top-100 for the folds' users.
Every alternative sees fold A's truth only; fold B is scored once. Rows:

* ``one weight vector``: what ``toprec ensemble`` does (``run_search`` on fold A,
  method ``rank`` and ``score``) — the reference.
* ``3 activity buckets``: users cut into terciles of their number of training
  events (edges from fold A's users); one weight search per bucket on fold A;
  fold B's users get their bucket's weights. Tests whether members' strengths
  differ by user activity enough to pay for three times the searched weights.
* ``re-ranker``: ``toprec``'s own (``Ensemble(method="rerank")``,
  :mod:`toprec.ensemble.rerank`: LightGBM, binary objective, features listed
  there) and a ``lambdarank`` variant on the same features and the same split:
  trained on fold A's labels (80% of the fold's users; the other 20% stop the
  boosting), applied once to fold B.

The gain is over the best member on fold B in hindsight, with the paired z of
that difference (same users), like ``Ensemble.validate``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench_ensemble_quality import sample_users  # noqa: E402  (benchmarks/ is the script's folder)
from toprec import Dataset, models, progress
from toprec.ensemble import make_folds
from toprec.ensemble.fusion import build_pool
from toprec.ensemble.rerank import EARLY_STOP, PARAMS, Reranker, candidate_features, select_rows, split_users, top_k
from toprec.ensemble.search import run_search
from toprec.metrics import hit_matrix, per_user

K, N = 10, 100


def _recall(items: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    return per_user(f"recall@{K}", items[:, :K], truth)


def _z(gain: np.ndarray) -> float:
    se = gain.std(ddof=1) / np.sqrt(len(gain))
    return float(gain.mean() / se) if se > 0 else float("nan")


def _search(lists, users, truth, method, seed):
    pool = build_pool(lists, method, users)
    res = run_search(pool, truth, K, "both", start=np.full(len(lists), 1 / len(lists)), min_gain=1e-4, seed=seed)
    return res.weights


def _fuse_items(lists, users, weights, method):
    return build_pool(lists, method, users).recommend(weights, K).items


def lambdarank(feats_a, items_a, truth_a, feats_b, items_b, users_b, seed):
    """LightGBM lambdarank on the same features and the same 80/20 split of fold A as ``toprec``'s re-ranker."""
    import lightgbm as lgb

    valid_a, valid_b = items_a >= 0, items_b >= 0
    y = hit_matrix(items_a, truth_a)
    fit_rows, stop_rows = split_users(len(items_a), seed)

    def part(rows):
        v = valid_a[rows]
        return feats_a[rows][v], y[rows][v].astype(np.float32), v.sum(1)

    (xf, yf, gf), (xs, ys, gs) = part(fit_rows), part(stop_rows)
    params = {**PARAMS, "objective": "lambdarank"}
    model = lgb.LGBMRanker(**params, lambdarank_truncation_level=20, random_state=seed)
    model.fit(xf, yf, group=gf, eval_X=(xs,), eval_y=(ys,), eval_group=[gs], eval_at=[K],
              callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)])  # fmt: skip
    scores = np.full(items_b.shape, -np.inf)
    scores[valid_b] = model.predict(feats_b[valid_b])
    return top_k(users_b, items_b, scores, K).items, int(model.best_iteration_ or model.n_estimators)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="competition-layout folder or user,item[,time] CSV")
    ap.add_argument("--models-dir", type=Path, required=True, help="members saved by bench_ensemble_quality.py")
    ap.add_argument("--members", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scheme", default="events")
    ap.add_argument("--last", type=int, default=1)
    ap.add_argument("--random", type=int, default=9)
    ap.add_argument("--sample-users", type=int, default=0, help="as bench_ensemble_quality.py (same draw)")
    ap.add_argument("--sample-draw", type=int, default=0)
    ap.add_argument("--buckets", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    progress.set_quiet(True)
    if args.data.is_dir():
        data = Dataset.load(args.data)
    else:
        header = pd.read_csv(args.data, nrows=0).columns
        time_col = next((c for c in ("timestamp", "time") if c in header), None)
        path = sample_users(args.data, args.sample_users, args.sample_draw) if args.sample_users else args.data
        data = Dataset.load(path, format="table", user_col="user", item_col="item", time_col=time_col)
    folds = make_folds(data, args.scheme, seed=args.seed, last=args.last, random=args.random)
    if not folds.same_fit:
        sys.exit("bench_ensemble_alternatives: the users or events scheme (one fit serves both folds)")
    names = [s.strip() for s in args.members.split(",") if s.strip()]
    ua, ub = folds.fold_a.users, folds.fold_b.users
    ta, tb = folds.fold_a.truth[ua], folds.fold_b.truth[ub]
    lists_a, lists_b = [], []
    for name in names:
        path = args.models_dir / name
        if not (path / "model.json").exists():
            sys.exit(f"bench_ensemble_alternatives: no saved member at {path} (run bench_ensemble_quality.py first)")
        model = models.Recommender.load(path)
        lists_a.append(model.recommend(ua, k=N))
        lists_b.append(lists_a[-1] if np.array_equal(ua, ub) else model.recommend(ub, k=N))
    member_b = {nm: _recall(lb.items, tb) for nm, lb in zip(names, lists_b)}
    best = max(member_b, key=lambda nm: member_b[nm].mean())
    rows = []

    def row(name, items_b, **extra):
        r = _recall(items_b, tb)
        rows.append({"alternative": name, "fold_b": float(r.mean()), "best_member": best,
                     "best_member_fold_b": float(member_b[best].mean()),
                     "relative_gain": float(r.mean() / member_b[best].mean() - 1), "z": _z(r - member_b[best]), **extra})  # fmt: skip
        print(f"{name:<34} fold B {r.mean():.4f}  vs {best} {member_b[best].mean():.4f}: "
              f"{rows[-1]['relative_gain']:+.1%} (z {rows[-1]['z']:.1f})", flush=True)  # fmt: skip

    act = np.asarray(folds.search_train.user_counts)
    edges = np.quantile(act[ua], np.linspace(0, 1, args.buckets + 1)[1:-1])
    bucket_a, bucket_b = np.searchsorted(edges, act[ua], side="right"), np.searchsorted(edges, act[ub], side="right")
    for method in ("rank", "score"):
        t0 = time.perf_counter()
        w = _search(lists_a, ua, ta, method, args.seed)
        row(f"one weight vector ({method})", _fuse_items(lists_b, ub, w, method),
            weights={nm: round(float(x), 3) for nm, x in zip(names, w) if x > 0}, seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
        t0 = time.perf_counter()
        out = np.full((len(ub), K), -1, dtype=np.int64)
        per_bucket = []
        for b in range(args.buckets):
            sa, sb = np.flatnonzero(bucket_a == b), np.flatnonzero(bucket_b == b)
            wb = _search(select_rows(lists_a, sa), ua[sa], ta[sa], method, args.seed)
            per_bucket.append({nm: round(float(x), 3) for nm, x in zip(names, wb) if x > 0})
            if len(sb):
                out[sb] = _fuse_items(select_rows(lists_b, sb), ub[sb], wb, method)
        row(f"{args.buckets} activity buckets ({method})", out, weights=per_bucket,
            seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        print("lightgbm is not installed (pip install lightgbm): re-ranker rows skipped")
    else:
        items_a, feats_a, fnames = candidate_features(data, folds.search_train, ua, lists_a, names)
        items_b, feats_b, _ = candidate_features(data, folds.search_train, ub, lists_b, names)
        t0 = time.perf_counter()
        top, iters = lambdarank(feats_a, items_a, ta, feats_b, items_b, ub, args.seed)
        row("re-ranker (lambdarank)", top, trees=iters, features=fnames, seconds=round(time.perf_counter() - t0, 1))
        t0 = time.perf_counter()
        ranker = Reranker(names, seed=args.seed).fit(data, folds.search_train, ua, lists_a, ta)
        top = ranker.recommend(data, folds.search_train, ub, lists_b, K).items
        row("re-ranker (toprec rerank: binary)", top, trees=ranker.trees, seconds=round(time.perf_counter() - t0, 1))
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "data": str(args.data),
                                         "seed": args.seed, "sample_users": args.sample_users, "sample_draw": args.sample_draw,
                                         "folds": folds.description, "members": names,
                                         "members_fold_b": {nm: round(float(v.mean()), 4) for nm, v in member_b.items()},
                                         "rows": rows}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
