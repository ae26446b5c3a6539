#!/usr/bin/env python
"""Which LightGBM settings should auto's re-ranker over the validation cuts use? Judged out of fold only.

    python benchmarks/bench_rerank_params.py --dataset ml-100k --from auto_30m_session15_ml-100k.json

For each seed of a ``bench_auto.py`` result: the test holdout is cut as bench_auto cuts it; on the rest,
``--cuts`` validation cuts (``split.competition`` seeds ``seed + 100 + 1000 r``), the run's cut members (its
tuned specs; ``--skip`` drops the slow epoch-trained ones) fitted on each and their top-100 lists kept, once.
Then for every variant of ``toprec.ensemble.rerank.PARAMS`` (``--variants``; ``base`` is the shipped one), and
for every ``--add`` member (the run's members and that one, shipped settings):

- ``oof``: the users of all cuts halved at random; a ranker trained on one half's rows of every cut scores the
  other half's rows of every cut, and the mirror (as auto's verdict does); each user's recall@10 averaged over
  the cuts the user is held out in; ``vs base``: the paired mean difference and its se over those users;
- ``test``: a ranker trained on every row, applied to the members refitted on the training part, scored once on
  the test holdout (read only to grade, never to choose).
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
from bench_auto_rerank_cuts import labels_of, member_cuts, recall, rows_of  # noqa: E402
from toprec import progress, split  # noqa: E402
from toprec.auto.margin import paired  # noqa: E402
from toprec.auto.pooled import per_user_mean  # noqa: E402
from toprec.ensemble import parse_members  # noqa: E402
from toprec.ensemble import rerank  # noqa: E402
from toprec.ensemble.recency import has_time  # noqa: E402

N, K = 100, 10
VARIANTS = {
    "base": {},
    "leaves15": {"num_leaves": 15},
    "leaves63": {"num_leaves": 63, "min_child_samples": 50},
    "child300": {"min_child_samples": 300},
    "lr0.02": {"learning_rate": 0.02, "n_estimators": 3000},
    "col0.5": {"colsample_bytree": 0.5},
    "lambda10": {"reg_lambda": 10.0},
    "lambdarank": {"objective": "lambdarank"},
    "xendcg": {"objective": "rank_xendcg"},
    "bag3": {},  # three rankers (seeds seed, seed+1, seed+2: other stopping users, other bags) averaged
}
BAGS = {"bag3": 3}


class _Mean:
    """The mean of several boosters' probabilities."""

    def __init__(self, models):
        self.models = models

    def predict(self, x) -> np.ndarray:
        return np.mean([m.predict(x) for m in self.models], axis=0)


def ranker(name: str, labels, seed: int, recency: bool, data, cuts):
    """The variant's ranker trained on ``cuts``; a bag's members averaged behind one Reranker."""
    rrs = [rerank.Reranker(labels, seed=seed + b, recency=recency).fit_cuts(data, cuts)
           for b in range(BAGS.get(name, 1))]  # fmt: skip
    if len(rrs) > 1:
        rrs[0].model = _Mean([r.model for r in rrs])
        rrs[0].trees = sum(r.trees for r in rrs)
    return rrs[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    ap.add_argument("--from", dest="source", required=True, help="a bench_auto JSON under benchmarks/results")
    ap.add_argument("--seeds", default="", help="comma-separated; default: every seed in the JSON")
    ap.add_argument("--cuts", type=int, default=8, help="validation cuts the ranker trains on")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"from {', '.join(VARIANTS)}")
    ap.add_argument("--skip", default="multivae,recvae,sasrec", help="member prefixes left out (slow to refit)")
    ap.add_argument("--add", default="", help="member specs (comma-separated) each tried as one more ranker member, "
                    "with the shipped settings: variant '+spec'")
    ap.add_argument("--json", default="", help="write the rows here (under benchmarks/results)")
    a = ap.parse_args()
    progress.set_quiet(True)
    added = [x for x in a.add.split(",") if x]
    names = [v for v in a.variants.split(",") if v]
    for v in names:
        if v not in VARIANTS:
            ap.error(f"--variants: unknown '{v}' (choose from {', '.join(VARIANTS)})")
    seeds = {int(x) for x in a.seeds.split(",") if x}
    skip = tuple(x for x in a.skip.split(",") if x)
    shipped = dict(rerank.PARAMS)
    out = []
    print("| seed | variant | trees | oof recall@10 | vs base (se) | test recall@10 | s |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for run in json.loads((HERE / "results" / a.source).read_text()):
        seed = run["seed"]
        if seeds and seed not in seeds:
            continue
        data, last, random = LOADERS[a.dataset](seed)
        train, test = split.competition(data, last=last, random=random, seed=seed)
        labels = labels_of(run, skip)
        members = parse_members(labels + added)
        cuts = member_cuts(train, members, last, random, seed, a.cuts)
        everyone = np.unique(np.concatenate([c[1] for c in cuts]))
        perm = np.random.default_rng(seed).permutation(len(everyone))
        halves = (np.sort(everyone[perm[: len(everyone) // 2]]), np.sort(everyone[perm[len(everyone) // 2:]]))
        test_truth = test.matrix[test.users].tocsr()
        test_lists = [m.new_model().fit(train).recommend(test.users, k=N) for m in members]
        recency = last > 0 and has_time(train)
        base_rows = None
        for name in names + [f"+{x}" for x in added]:
            rerank.PARAMS.clear()
            rerank.PARAMS.update(shipped, **VARIANTS.get(name, {}))
            use = list(range(len(labels))) + ([len(labels) + added.index(name[1:])] if name.startswith("+") else [])
            labs = [(labels + added)[j] for j in use]
            vcuts = [(c[0], c[1], [c[2][j] for j in use], c[3]) for c in cuts]
            t0 = time.perf_counter()
            us, got, trees = [], [], []
            for fit_users, eval_users in (halves[::-1], halves):
                rr = ranker(name, labs, seed, recency, train, [rows_of(c, fit_users) for c in vcuts])
                trees.append(rr.trees)
                for c in vcuts:
                    ev = rows_of(c, eval_users)
                    got.append(recall(rr.recommend(train, ev[0], ev[1], ev[2], K), ev[3]))
                    us.append(ev[1])
            u, g = np.concatenate(us), np.concatenate(got)
            if base_rows is None:
                base_rows = (u, g)
            per = per_user_mean(u, g)
            d = per_user_mean(u, g - base_rows[1]) if np.array_equal(u, base_rows[0]) else per * np.nan
            gain, se = paired(d)
            rr = ranker(name, labs, seed, recency, train, vcuts)
            on_test = float(recall(rr.recommend(train, train, test.users, [test_lists[j] for j in use], K),
                                   test_truth).mean())  # fmt: skip
            s = time.perf_counter() - t0
            print(f"| {seed} | {name} | {trees[0]}/{trees[1]}/{rr.trees} | {per.mean():.4f} | {gain:+.4f} ({se:.4f}) "
                  f"| {on_test:.4f} | {s:.0f} |", flush=True)
            out.append({"seed": seed, "variant": name, "params": VARIANTS.get(name, {}), "oof": float(per.mean()),
                        "vs_base": gain, "se": se, "test": on_test, "trees": [*trees, rr.trees],
                        "members": labs, "cuts": a.cuts, "seconds": s})  # fmt: skip
        rerank.PARAMS.clear()
        rerank.PARAMS.update(shipped)
        if a.json:
            (HERE / "results" / a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
