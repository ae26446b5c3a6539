#!/usr/bin/env python
"""Would auto's re-ranker learn more from the rows of all its validation cuts than from its own cut's?

    python benchmarks/bench_auto_rerank_cuts.py --dataset ml-100k --from auto_30m_session14_ml-100k.json

On small data auto makes up to 8 validation cuts (its own and ``MAX_EXTRA_CUTS`` more) and keeps every cut
member's top-N lists on each, but its re-ranker trains on its own cut's users only (ML-100K: ~911 users, ~10
positives each). For each seed of a ``bench_auto.py`` result: the test holdout is cut as bench_auto cuts it;
on the rest, ``--cuts`` + 1 validation cuts (``split.competition`` seeds ``seed + 100 + 1000 r``), the run's
cut members (its tuned specs; ``--skip`` drops the slow epoch-trained ones) fitted on each and their top-100
lists kept. A LightGBM re-ranker (auto's: the same features, recency when the protocol has a last event) is
trained on the rows of the first 1, 4 and 8 cuts:

- ``oof``: cut 0's users halved at random; trained on one half's rows of those cuts, scored on the other half
  of cut 0, and the mirror: out-of-fold recall@10 over all of cut 0's users (no test involved);
- ``test``: trained on every user's rows of those cuts, applied to the members refitted on the training part,
  scored once on the test holdout (read only to grade).

Beside them: the best member on cut 0 (out of fold, the same users) and on the test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402
from toprec import metrics, progress, split  # noqa: E402
from toprec.ensemble import parse_members  # noqa: E402
from toprec.ensemble.recency import has_time  # noqa: E402
from toprec.ensemble.rerank import Reranker, select_rows  # noqa: E402

N, K = 100, 10


def recall(recs, truth) -> np.ndarray:
    return metrics.per_user(f"recall@{K}", recs.items[:, :K], truth)


def rows_of(cut, keep):
    train, users, lists, truth = cut
    sel = np.flatnonzero(np.isin(users, keep))
    return train, users[sel], select_rows(lists, sel), truth[sel]


def member_cuts(train, members, last: int, random: int, seed: int, n: int) -> list[tuple]:
    """``n`` validation cuts of ``train`` (``split.competition`` seeds ``seed + 100 + 1000 r``), each
    ``(its train, its users, every member's top-N lists, its truth)``."""
    cuts = []
    for r in range(n):
        vt, hold = split.competition(train, last=last, random=random, seed=seed + 100 + 1000 * r)
        users = hold.users
        cuts.append((vt, users, [m.new_model().fit(vt).recommend(users, k=N) for m in members],
                     hold.matrix[users].tocsr()))  # fmt: skip
    return cuts


def labels_of(run: dict, skip: tuple[str, ...]) -> list[str]:
    cf = run.get("decision", {}).get("crossfit") or {}
    cf = cf.get("fusion", cf)
    labels = list(cf.get("members_over_cuts") or run["weights"])
    return [lab for lab in labels if not lab.startswith(skip)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    ap.add_argument("--from", dest="source", required=True, help="a bench_auto JSON under benchmarks/results")
    ap.add_argument("--seeds", default="", help="comma-separated; default: every seed in the JSON")
    ap.add_argument("--cuts", default="0,3,7", help="extra cuts the ranker trains on, besides cut 0")
    ap.add_argument("--skip", default="multivae,recvae,sasrec", help="member prefixes left out (slow to refit)")
    ap.add_argument("--json", default="", help="write the rows here (under benchmarks/results)")
    a = ap.parse_args()
    progress.set_quiet(True)
    ns = sorted(int(x) for x in a.cuts.split(","))
    seeds = {int(x) for x in a.seeds.split(",") if x}
    skip = tuple(x for x in a.skip.split(",") if x)
    out = []
    print("| seed | cuts trained on | user rows | trees | oof recall@10 | best member oof | test recall@10 | "
          "best member test | s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in json.loads((HERE / "results" / a.source).read_text()):
        seed = run["seed"]
        if seeds and seed not in seeds:
            continue
        data, last, random = LOADERS[a.dataset](seed)
        train, test = split.competition(data, last=last, random=random, seed=seed)
        labels = labels_of(run, skip)
        members = parse_members(labels)
        cuts = member_cuts(train, members, last, random, seed, ns[-1] + 1)
        u0 = cuts[0][1]
        perm = np.random.default_rng(seed).permutation(len(u0))
        halves = (np.sort(u0[perm[: len(u0) // 2]]), np.sort(u0[perm[len(u0) // 2:]]))
        member_oof = {lab: float(recall(cuts[0][2][j], cuts[0][3]).mean()) for j, lab in enumerate(labels)}
        test_truth = test.matrix[test.users].tocsr()
        test_lists = [m.new_model().fit(train).recommend(test.users, k=N) for m in members]
        member_test = {lab: float(recall(x, test_truth).mean()) for lab, x in zip(labels, test_lists)}
        best = max(member_oof, key=member_oof.get)
        recency = last > 0 and has_time(train)
        for n in ns:
            t0 = time.perf_counter()
            got, trees = [], []
            for fit_users, eval_users in (halves[::-1], halves):
                rr = Reranker(labels, seed=seed, recency=recency).fit_cuts(
                    train, [rows_of(c, fit_users) for c in cuts[: n + 1]])
                ev = rows_of(cuts[0], eval_users)
                got.append(recall(rr.recommend(train, ev[0], ev[1], ev[2], K), ev[3]))
                trees.append(rr.trees)
            oof = float(np.concatenate(got).mean())
            rr = Reranker(labels, seed=seed, recency=recency).fit_cuts(train, cuts[: n + 1])
            on_test = float(recall(rr.recommend(train, train, test.users, test_lists, K), test_truth).mean())
            rows = sum(len(c[1]) for c in cuts[: n + 1])
            s = time.perf_counter() - t0
            print(f"| {seed} | {n + 1} | {rows:,} | {trees[0]}/{trees[1]}/{rr.trees} | {oof:.4f} | "
                  f"{member_oof[best]:.4f} ({best.split(':')[0]}) | {on_test:.4f} | "
                  f"{member_test[best]:.4f} (max {max(member_test.values()):.4f}) | {s:.0f} |", flush=True)
            out.append({"seed": seed, "cuts": n + 1, "oof": oof, "test": on_test, "trees": [*trees, rr.trees],
                        "members": labels, "member_oof": member_oof, "member_test": member_test, "seconds": s})
    if a.json:
        (HERE / "results" / a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
