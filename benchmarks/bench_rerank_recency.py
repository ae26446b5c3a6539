#!/usr/bin/env python
"""Does the re-ranker gain from recency features? Same members, same folds, with and without them.

    python benchmarks/bench_rerank_recency.py --dataset ml-1m --seeds 0,1,2 \
        --json benchmarks/results/rerank_recency_ml1m.json

The folds are ``toprec auto``'s (``make_folds(train, "users", seed + 100, ...)``
on the training part of ``split.competition(data, seed)``; the test part is
never read). Every member is fitted once on the search data with the
parameters ``toprec auto`` chose on ML-1M (``auto_15m_seed0_session3_ml1m.json``);
each re-ranker is trained on fold A's truth and scored once on fold B.
Rows: recall@10 on fold B, its last-event and random parts, the paired
difference (with recency - without) and its standard error over fold B's users,
the trees and the recency features' share of the importance.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402
from toprec import split  # noqa: E402
from toprec.ensemble import ModelMember, make_folds  # noqa: E402
from toprec.ensemble.rerank import Reranker  # noqa: E402
from toprec.metrics import per_user  # noqa: E402
from toprec.recommend import Recommendations  # noqa: E402

K, N = 10, 100
MEMBERS = [
    ("easer", {"l2": 730.3, "l2_pairs": 30000.0}),
    ("cease", {"l2": 730.3, "side_weight": 0.03}),
    ("edlae", {"l2": 730.3, "dropout": 0.25}),
    ("ials", {"factors": 128, "regularization": 52.06, "alpha": 3.0}),
    ("rp3beta", {"alpha": 0.6, "beta": 0.6, "k": 500}),
    ("seqrules", {"window": 7, "last_n": 20, "recency_decay": 0.98, "normalize": 0.29, "shrink": 19.1, "k": 207}),
]
RECENCY = ("sim_last", "sim_recent_max", "sim_recent_mean", "user_idle", "item_age", "item_pop_near",
           "item_pop_recent")  # fmt: skip


def parts(items: np.ndarray, fold) -> dict[str, np.ndarray]:
    u = fold.users
    out = {"all": per_user(f"recall@{K}", items[:, :K], fold.truth[u])}
    for name, m in fold.parts.items():
        out[name] = per_user(f"recall@{K}", items[:, :K], m[u])
    return out


def one(dataset: str, seed: int, members, grow: bool = False) -> dict:
    data, last, random = LOADERS[dataset]()
    train, _test = split.competition(data, last=last, random=random, seed=seed)
    folds = make_folds(train, "users", seed + 100, last, random, True)
    fa, fb = folds.fold_a, folds.fold_b
    labels, lists_a, lists_b = [], [], []
    t0 = time.perf_counter()
    for name, params in members:
        if name == "cease" and not train.features:
            continue
        m = ModelMember(name, name, params)
        lists_a.append(m.lists(folds.search_train, fa.users, N, "search"))
        lists_b.append(m.lists(folds.confirm_train, fb.users, N, "search"))
        m.release()
        labels.append(name)
    res = {"dataset": dataset, "seed": seed, "members": labels, "users_a": len(fa.users), "users_b": len(fb.users),
           "members_s": round(time.perf_counter() - t0, 1), "rows": {}}  # fmt: skip
    per = {}
    for recency in (False, True):
        t0 = time.perf_counter()
        rr = Reranker(labels, seed=seed, recency=recency)
        rr.fit(train, folds.search_train, fa.users, lists_a, fa.truth[fa.users])
        recs = rr.recommend(train, folds.confirm_train, fb.users, lists_b, K)
        p = parts(recs.items, fb)
        per[recency] = p
        imp = sum(v for f, v in rr.importance.items() if f in RECENCY)
        res["rows"]["with" if recency else "without"] = {
            **{key: float(v.mean()) for key, v in p.items()}, "trees": rr.trees,
            "recency_importance": round(imp, 4), "seconds": round(time.perf_counter() - t0, 1),
            "importance": dict(sorted(rr.importance.items(), key=lambda kv: -kv[1])[:12])}  # fmt: skip
    for key in per[True]:
        d = per[True][key] - per[False][key]
        res["rows"][f"diff_{key}"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
    if grow:
        # more users to learn from: fold A alone vs fold A + half of fold B, both scored on the other half of B
        half = np.random.default_rng(seed).permutation(len(fb.users))
        b1, b2 = np.sort(half[: len(half) // 2]), np.sort(half[len(half) // 2 :])
        users_b2 = fb.users[b2]
        got = {}
        for name, extra in (("fold_a", None), ("fold_a_plus_b1", b1)):
            users, lists = fa.users, lists_a
            truth = fa.truth[fa.users]
            if extra is not None:
                users = np.concatenate([fa.users, fb.users[extra]])
                lists = [Recommendations(np.concatenate([a.users, b.users[extra]]), np.concatenate([a.items, b.items[extra]]),
                                         np.concatenate([a.scores, b.scores[extra]])) for a, b in zip(lists_a, lists_b)]
                truth = sp.vstack([truth, fb.truth[fb.users[extra]]]).tocsr()
            rr = Reranker(labels, seed=seed, recency=True).fit(train, folds.search_train, users, lists, truth)
            recs = rr.recommend(train, folds.confirm_train, users_b2, [Recommendations(b.users[b2], b.items[b2], b.scores[b2])
                                                                       for b in lists_b], K)  # fmt: skip
            got[name] = per_user(f"recall@{K}", recs.items[:, :K], fb.truth[users_b2])
            res["rows"][f"grow_{name}"] = {"recall": float(got[name].mean()), "trees": rr.trees, "users": len(users)}
        d = got["fold_a_plus_b1"] - got["fold_a"]
        res["rows"]["grow_diff"] = [float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))]
        print(f"  grow: fold A {got['fold_a'].mean():.4f} vs fold A + B1 {got['fold_a_plus_b1'].mean():.4f} on B2 "
              f"(diff {d.mean():+.4f} se {res['rows']['grow_diff'][1]:.4f})", flush=True)  # fmt: skip
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m", choices=sorted(LOADERS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--grow", action="store_true", help="also: the ranker trained on fold A + half of B, on the other half")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        r = one(args.dataset, seed, MEMBERS, args.grow)
        results.append(r)
        w, wo = r["rows"]["with"], r["rows"]["without"]
        d, se = r["rows"]["diff_all"]
        print(f"{args.dataset} seed {seed}: fold B recall@{K} without {wo['all']:.4f} (last {wo.get('last', float('nan')):.4f}) "
              f"with {w['all']:.4f} (last {w.get('last', float('nan')):.4f}); diff {d:+.4f} se {se:.4f}; "
              f"recency importance {w['recency_importance']:.3f}", flush=True)  # fmt: skip
    print(f"\n| dataset | seed | without | with | diff (se) | last without | last with | random without | random with |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        w, wo = r["rows"]["with"], r["rows"]["without"]
        d, se = r["rows"]["diff_all"]
        print(f"| {r['dataset']} | {r['seed']} | {wo['all']:.4f} | {w['all']:.4f} | {d:+.4f} ({se:.4f}) | "
              f"{wo.get('last', float('nan')):.4f} | {w.get('last', float('nan')):.4f} | "
              f"{wo.get('random', float('nan')):.4f} | {w.get('random', float('nan')):.4f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"results": results, "python": platform.python_version()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
