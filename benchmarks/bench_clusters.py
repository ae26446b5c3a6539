#!/usr/bin/env python
"""Re-ranker backends (LightGBM vs CatBoost) and the user-cluster features, on fold B of the ensemble's folds.

    OMP_NUM_THREADS=1 python benchmarks/bench_clusters.py --seeds 0,1 [--shared-data ../shared/data] \
        --json benchmarks/results/clusters.json --md benchmarks/results/clusters.md

Data: ML-1M ratings >= 4 with genres and years (``bench_side.ml1m``), the
competition protocol (each user's last event + 9 random earlier ones held
out), the ensemble's ``users`` folds (``toprec.ensemble.make_folds``: one fit
on the rest, held-out users split in halves A and B). Members (``--members``)
are fitted once per seed on that training part; their top-100 for both folds'
users are the candidates. Each re-ranker (:class:`toprec.ensemble.rerank.Reranker`,
what ``toprec ensemble --method rerank --ranker R [--clusters ials]`` runs)
is trained on fold A's truth only (80% fit, 20% early stopping) and scored
once on fold B. The clusters are ``toprec.features.user_clusters`` (K-means
over iALS user vectors, k by silhouette) fitted once per seed on the same
training part and shared by both backends.

Printed and written: fold-B recall@10 of every member and re-ranker, the gain
over the best member (paired z, same users), the paired differences that
answer the questions (CatBoost - LightGBM; with clusters - without), the
rankers' fit times and top feature importances, and fold-B recall@10 per
user cluster. Needs ``lightgbm`` and ``catboost`` (the ``rerank`` extra).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import bench_side  # noqa: E402  (benchmarks/ is the script's folder)
from toprec import models, progress
from toprec.ensemble import make_folds
from toprec.ensemble.rerank import Reranker
from toprec.features import user_clusters
from toprec.metrics import per_user

K, N = 10, 100
MEMBERS = {"ease": {"l2": 1200.0}, "rp3beta": {}, "ials": {}}


def recall(items: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    return per_user(f"recall@{K}", items[:, :K], truth)


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """mean(a - b), its relative size against mean(b), and the paired z."""
    d = a - b
    se = d.std(ddof=1) / np.sqrt(len(d))
    return {"diff": round(float(d.mean()), 5), "relative": round(float(d.mean() / b.mean()), 4),
            "z": round(float(d.mean() / se), 2) if se > 0 else None}  # fmt: skip


def run_seed(data, seed: int, members: list[str], cluster_spec: str, threads: int) -> dict:
    folds = make_folds(data, "users", seed=seed, last=1, random=9)
    ua, ub = folds.fold_a.users, folds.fold_b.users
    ta, tb = folds.fold_a.truth[ua], folds.fold_b.truth[ub]
    lists_a, lists_b, out = [], [], {"seed": seed, "folds": folds.description, "members": {}}
    for name in members:
        t0 = time.perf_counter()
        model = models.get(name, **MEMBERS.get(name, {})).fit(folds.search_train)
        lists_a.append(model.recommend(ua, k=N))
        lists_b.append(model.recommend(ub, k=N))
        out["members"][name] = {"fold_b": float(recall(lists_b[-1].items, tb).mean()),
                                "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        print(f"seed {seed}: {name} fold B {out['members'][name]['fold_b']:.4f} "
              f"({out['members'][name]['seconds']} s)", flush=True)  # fmt: skip
    member_b = {nm: recall(lb.items, tb) for nm, lb in zip(members, lists_b)}
    best = max(member_b, key=lambda nm: member_b[nm].mean())
    t0 = time.perf_counter()
    cl = user_clusters(folds.search_train, cluster_spec, seed=seed)
    out["clusters"] = {**cl.describe(), "seconds": round(time.perf_counter() - t0, 1)}
    print(f"seed {seed}: clusters {cluster_spec}: k={cl.k}, silhouette "
          f"{ {k: round(v, 3) for k, v in cl.silhouette.items()} }, sizes {cl.sizes().tolist()} "
          f"({out['clusters']['seconds']} s)", flush=True)  # fmt: skip
    rows, per = [], {f"best member ({best})": member_b[best]}
    for ranker in ("lightgbm", "catboost"):
        for with_clusters in (False, True):
            t0 = time.perf_counter()
            rr = Reranker(members, seed=seed, threads=threads, ranker=ranker, clusters=cl if with_clusters else None)
            rr.fit(data, folds.search_train, ua, lists_a, ta)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            top = rr.recommend(data, folds.search_train, ub, lists_b, K).items
            r = recall(top, tb)
            label = f"{ranker}{' + clusters' if with_clusters else ''}"
            per[label] = r
            imp = dict(sorted(rr.importance.items(), key=lambda kv: -kv[1]))
            row = {"ranker": ranker, "clusters": with_clusters, "fold_b": float(r.mean()), "trees": rr.trees,
                   "fit_s": round(fit_s, 1), "recommend_s": round(time.perf_counter() - t0, 1),
                   "vs_best_member": paired(r, member_b[best]), "importance_top": dict(list(imp.items())[:6]),
                   "importance_cluster": {k: v for k, v in imp.items() if k.startswith("cluster")}}  # fmt: skip
            rows.append(row)
            print(f"seed {seed}: {label:<22} fold B {r.mean():.4f} vs {best} {member_b[best].mean():.4f} "
                  f"{row['vs_best_member']['relative']:+.1%} (z {row['vs_best_member']['z']}); {rr.trees} trees, "
                  f"fit {row['fit_s']} s; top features {list(imp)[:4]}", flush=True)  # fmt: skip
    out["best_member"] = best
    out["rerankers"] = rows
    out["catboost_minus_lightgbm"] = {
        "no clusters": paired(per["catboost"], per["lightgbm"]),
        "with clusters": paired(per["catboost + clusters"], per["lightgbm + clusters"]),
    }
    out["clusters_minus_none"] = {r: paired(per[f"{r} + clusters"], per[r]) for r in ("lightgbm", "catboost")}
    lab = cl.lookup(ub)
    n = np.bincount(lab[lab >= 0], minlength=cl.k)
    out["recall_by_cluster_fold_b"] = {"users": n.tolist(), **{
        name: (np.bincount(lab[lab >= 0], weights=v[lab >= 0], minlength=cl.k) / np.maximum(n, 1)).round(4).tolist()
        for name, v in per.items()}}  # fmt: skip
    return out


def markdown(results: list[dict], args) -> str:
    lines = ["# Re-ranker backends and user-cluster features (ML-1M ratings >= 4)", "",
             f"`OMP_NUM_THREADS=1 python benchmarks/bench_clusters.py --seeds {args.seeds} --threads {args.threads}`"
             f" on {platform.processor() or platform.machine()}, 2 cores shared with other jobs (times are loaded-"
             "machine times). Competition protocol (last + 9 random held out), the ensemble's `users` folds: "
             "rankers trained on fold A, scored once on fold B. Members: "
             + ", ".join(f"{m}{'' if not MEMBERS.get(m) else ' ' + str(MEMBERS[m])}" for m in args.members.split(","))
             + f"; clusters: `{args.clusters}` user vectors, K-means, k by silhouette over 2..12.", "",
             "| seed | re-ranker | fold B recall@10 | vs best member (z) | trees | fit s | top features |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for res in results:
        lines.append(f"| {res['seed']} | best member ({res['best_member']}) | "
                     f"{res['members'][res['best_member']]['fold_b']:.4f} | | | | |")  # fmt: skip
        for r in res["rerankers"]:
            v = r["vs_best_member"]
            top = ", ".join(f"{k} {x:.2f}" for k, x in list(r["importance_top"].items())[:3])
            lines.append(f"| {res['seed']} | {r['ranker']}{' + clusters' if r['clusters'] else ''} | {r['fold_b']:.4f} "
                         f"| {v['relative']:+.1%} ({v['z']}) | {r['trees']} | {r['fit_s']} | {top} |")  # fmt: skip
    lines += ["", "Paired differences on fold B (same users): mean recall@10 difference, relative, z.", "",
              "| seed | catboost - lightgbm | same, with clusters | lightgbm: clusters - none | "
              "catboost: clusters - none |", "| ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    fmt = lambda d: f"{d['diff']:+.4f} ({d['relative']:+.1%}, z {d['z']})"  # noqa: E731
    for res in results:
        c, g = res["catboost_minus_lightgbm"], res["clusters_minus_none"]
        lines.append(f"| {res['seed']} | {fmt(c['no clusters'])} | {fmt(c['with clusters'])} | {fmt(g['lightgbm'])} "
                     f"| {fmt(g['catboost'])} |")  # fmt: skip
    if len(results) > 1:
        def mean(get):
            d = [get(res) for res in results]
            return (f"{np.mean([x['diff'] for x in d]):+.4f} ({np.mean([x['relative'] for x in d]):+.1%}; "
                    f"{sum(x['diff'] > 0 for x in d)}/{len(d)} seeds > 0)")  # fmt: skip

        lines.append(f"| mean | {mean(lambda r: r['catboost_minus_lightgbm']['no clusters'])} | "
                     f"{mean(lambda r: r['catboost_minus_lightgbm']['with clusters'])} | "
                     f"{mean(lambda r: r['clusters_minus_none']['lightgbm'])} | "
                     f"{mean(lambda r: r['clusters_minus_none']['catboost'])} |")  # fmt: skip
        fits = {lab: np.median([r["fit_s"] for res in results for r in res["rerankers"]
                                if (r["ranker"], r["clusters"]) == key])
                for lab, key in (("lightgbm", ("lightgbm", False)), ("lightgbm + clusters", ("lightgbm", True)),
                                 ("catboost", ("catboost", False)), ("catboost + clusters", ("catboost", True)))}
        lines += ["", "Median fit time over seeds (s, one thread, loaded machine): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in fits.items()) + "."]  # fmt: skip
    lines += ["", "User clusters (fitted on each seed's training part) and fold-B recall@10 per cluster.", ""]
    for res in results:
        c = res["clusters"]
        sil = ", ".join(f"{k}: {v:.3f}" for k, v in c["silhouette"].items())
        lines.append(f"Seed {res['seed']}: k = {c['k']} (silhouette {sil}); training users per cluster "
                     f"{c['sizes']}; {c['seconds']} s.")  # fmt: skip
        lines.append("")
        by = res["recall_by_cluster_fold_b"]
        names = [k for k in by if k != "users"]
        lines.append("| cluster | fold-B users | " + " | ".join(names) + " |")
        lines.append("| ---: | ---: | " + " | ".join("---:" for _ in names) + " |")
        for j, n in enumerate(by["users"]):
            lines.append(f"| {j} | {n} | " + " | ".join(f"{by[nm][j]:.4f}" for nm in names) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--members", default=",".join(MEMBERS))
    ap.add_argument("--clusters", default="ials")
    ap.add_argument("--threads", type=int, default=1, help="ranker threads (both backends)")
    ap.add_argument("--shared-data", type=Path, default=bench_side.SHARED,
                    help="the folder holding ml-1m/ (default: ../shared/data beside the repository)")  # fmt: skip
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    progress.set_quiet(True)
    bench_side.SHARED = args.shared_data
    data, _, _ = bench_side.ml1m()
    members = [m.strip() for m in args.members.split(",") if m.strip()]
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        results.append(run_seed(data, seed, members, args.clusters, args.threads))
        if args.json:  # after every seed: a partial run keeps what it measured
            args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                             "data": "ml-1m ratings >= 4 (genres, years)", "members": members,
                                             "clusters": args.clusters, "threads": args.threads,
                                             "results": results}, indent=2) + "\n")  # fmt: skip
        if args.md:
            args.md.write_text(markdown(results, args))
    print(markdown(results, args))


if __name__ == "__main__":
    main()
