#!/usr/bin/env python
"""Would fusion weights searched over several validation cuts hold on small data?

    python benchmarks/bench_auto_pooled.py --dataset ml-100k --seeds 0 1 2 --cuts 4 --from auto_30m_session12_ml-100k.json

On small data auto searches the fusion's weights on one validation cut
(ML-100K: ~910 holdout users, both folds) and keeps the fusion only when it
beats the member written alone out of fold by one se; it fell back on 2 of 3
ML-100K seeds and 3 of 3 ML-latest-small seeds. Here every member of the auto
run (the report's cross-fitted member list, less SASRec) is fitted on
``--cuts`` validation cuts of bench_auto's training part (cut 0 is auto's own,
seed + 100; the others ``split.competition(train, last, random, seed=1000 + r)``)
and on the whole training part (its lists scored on the test, read only to
grade). For each fusion method the weights are searched (greedy subset with a
line search, then coordinate ascent; ``run_search(..., "both")``) on cut 0
alone and on all cuts pooled (every cut's holdout users stacked as rows), and
graded on the test, against the member the cuts' mean picks and the test's
best member. The out-of-sample verdict a pipeline could make: leave one cut
out (weights and the single member picked on the other cuts, both scored on
the cut left out), paired over its users, summed over the cuts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402
from bench_auto_cuts import labels_from  # noqa: E402
from toprec import metrics, progress, split  # noqa: E402
from toprec.ensemble import parse_members  # noqa: E402
from toprec.ensemble.fusion import build_pool, fuse  # noqa: E402
from toprec.ensemble.search import run_search  # noqa: E402
from toprec.recommend import Recommendations  # noqa: E402

SKIP = ("sasrec",)  # slow on the CPU and 60% below EASE on these protocols; never in a small-data fusion's weights
METHODS = ("score", "rank", "product")
N, K = 100, 10


def member_lists(labels, train, hold) -> list[Recommendations]:
    out = []
    for lab in labels:
        out.append(parse_members([lab])[0].new_model().fit(train).recommend(hold.users, k=N))
    return out


def recall(recs: Recommendations, truth: sp.csr_matrix) -> np.ndarray:
    return metrics.per_user(f"recall@{K}", recs.items[:, :K], truth)


def stack(cuts: list[tuple[list[Recommendations], sp.csr_matrix]]):
    """Every cut's rows one after another (pseudo users 0..n-1): one list per member, and the truth rows."""
    m = len(cuts[0][0])
    lists, off = [], 0
    for j in range(m):
        items = np.concatenate([c[0][j].items for c in cuts])
        scores = np.concatenate([c[0][j].scores for c in cuts])
        lists.append(Recommendations(np.arange(len(items)), items, scores))
    truth = sp.vstack([c[1] for c in cuts]).tocsr()
    return lists, truth


def search(lists, truth, method: str, seed: int) -> tuple[np.ndarray, float]:
    users = lists[0].users
    res = run_search(build_pool(lists, method, users), truth, K, "both", seed=seed)
    return res.weights, res.score


def fused(lists, weights, method) -> Recommendations:
    keep = np.flatnonzero(np.asarray(weights) > 0)
    return fuse([lists[i] for i in keep], np.asarray(weights)[keep], method, K, users=lists[0].users)


def one(dataset: str, seed: int, ncuts: int, labels: list[str]) -> dict:
    data, last, random = LOADERS[dataset](seed)
    train, test = split.competition(data, last=last, random=random, seed=seed)
    cut_seeds = [seed + 100] + [1000 + r for r in range(1, ncuts)]
    t0 = time.perf_counter()
    cuts = []
    for cs in cut_seeds:
        vtrain, vtest = split.competition(train, last=last, random=random, seed=cs)
        cuts.append((member_lists(labels, vtrain, vtest), vtest.matrix[vtest.users].tocsr()))
    tlists = member_lists(labels, train, test)
    ttruth = test.matrix[test.users].tocsr()
    tmem = {lab: recall(tl, ttruth) for lab, tl in zip(labels, tlists)}
    best_test = max(labels, key=lambda lab: tmem[lab].mean())
    cut_mean = {lab: float(np.mean([recall(c[0][j], c[1]).mean() for c in cuts])) for j, lab in enumerate(labels)}
    single = max(labels, key=cut_mean.get)

    def gap(r: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
        d = r - ref
        return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))

    rows = {}
    for method in METHODS:
        w1, v1 = search(*stack(cuts[:1]), method, seed)
        wp, vp = search(*stack(cuts), method, seed)
        # leave one cut out: weights and the single member from the other cuts, scored on the cut left out
        diffs = []
        for c in range(len(cuts)):
            rest = [cuts[i] for i in range(len(cuts)) if i != c]
            w, _ = search(*stack(rest), method, seed)
            means = {lab: np.mean([recall(r[0][j], r[1]).mean() for r in rest]) for j, lab in enumerate(labels)}
            pick = labels.index(max(labels, key=means.get))
            lists_c, truth_c = cuts[c]
            users = lists_c[0].users
            f = recall(fused([Recommendations(users, x.items, x.scores) for x in lists_c], w, method), truth_c)
            diffs.append(f - recall(lists_c[pick], truth_c))
        d = np.concatenate(diffs)
        loo = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d) / len(cuts))))  # users repeat over cuts
        t1 = recall(fused(tlists, w1, method), ttruth)
        tp = recall(fused(tlists, wp, method), ttruth)
        rows[method] = {"weights_one_cut": dict(zip(labels, np.round(w1, 3).tolist())),
                        "weights_pooled": dict(zip(labels, np.round(wp, 3).tolist())),
                        "validation_one_cut": v1, "validation_pooled": vp, "leave_one_cut_out": loo,
                        "test_one_cut": float(t1.mean()), "test_pooled": float(tp.mean()),
                        "pooled_vs_single": gap(tp, tmem[single]), "pooled_vs_best": gap(tp, tmem[best_test]),
                        "one_cut_vs_single": gap(t1, tmem[single])}  # fmt: skip
    return {"dataset": dataset, "seed": seed, "labels": labels, "cut_mean": cut_mean, "single": single,
            "test": {lab: float(v.mean()) for lab, v in tmem.items()}, "best_on_test": best_test,
            "single_vs_best": gap(tmem[single], tmem[best_test]), "methods": rows,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cuts", type=int, default=4)
    ap.add_argument("--from", dest="source", required=True, help="a bench_auto JSON under benchmarks/results")
    ap.add_argument("--labels", nargs="+", help="the members (instead of the run's list; e.g. a run that kept its "
                    "re-ranker, whose report lists none)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    progress.set_quiet(True)
    out = []
    for seed in a.seeds:
        labels = a.labels or labels_from(HERE / "results" / a.source, a.dataset, seed, SKIP)
        r = one(a.dataset, seed, a.cuts, labels)
        out.append(r)
        g, se = r["single_vs_best"]
        print(f"\n{a.dataset} seed {seed} ({r['seconds']:.0f} s): single by {a.cuts}-cut mean {r['single']} "
              f"test {r['test'][r['single']]:.4f} ({g / se if se else 0:+.1f} se vs the test's best "
              f"{r['best_on_test']} {r['test'][r['best_on_test']]:.4f})\n")  # fmt: skip
        print("| method | val one cut | val pooled | leave-one-cut-out gain (se) | test one cut | test pooled "
              "| pooled - single (se) | pooled - test's best (se) |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m, x in r["methods"].items():
            lo, ps, pb = x["leave_one_cut_out"], x["pooled_vs_single"], x["pooled_vs_best"]
            print(f"| {m} | {x['validation_one_cut']:.4f} | {x['validation_pooled']:.4f} | {lo[0]:+.4f} ({lo[1]:.4f}) "
                  f"| {x['test_one_cut']:.4f} | {x['test_pooled']:.4f} | {ps[0]:+.4f} ({ps[1]:.4f}) "
                  f"| {pb[0]:+.4f} ({pb[1]:.4f}) |")  # fmt: skip
        sys.stdout.flush()
        if a.json:
            a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
