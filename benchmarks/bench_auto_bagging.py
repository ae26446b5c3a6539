#!/usr/bin/env python
"""Would averaging an epoch-trained member over seeds help auto's small-data fusion?

    python benchmarks/bench_auto_bagging.py --dataset ml-100k --from auto_pooled8_ml-100k.json

For each seed of a ``bench_auto_pooled.py`` result (its members and its score fusion's weights searched on the
pooled validation cuts), every member with a weight is fitted on bench_auto's training part, and each VAE
member (Multi-VAE, RecVAE) ``--bag`` times with seeds 0, 1, ...: its scores z-scored per user and averaged.
Printed after 1, 3 and 5 fits: the VAE alone and the fusion (the same weights) on the test, read only to grade.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402
from toprec import metrics, progress, split  # noqa: E402
from toprec.ensemble import parse_members  # noqa: E402
from toprec.ensemble.fusion import fuse  # noqa: E402
from toprec.recommend import Recommendations  # noqa: E402

VAES = ("multivae", "recvae")
N, K = 100, 10


def recall(items: np.ndarray, truth) -> float:
    return float(metrics.per_user(f"recall@{K}", items[:, :K], truth).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    ap.add_argument("--from", dest="source", required=True, help="a bench_auto_pooled JSON under benchmarks/results")
    ap.add_argument("--bag", type=int, default=5)
    a = ap.parse_args()
    progress.set_quiet(True)
    print("| seed | fits | VAE alone on the test | score fusion on the test |")
    print("| ---: | ---: | --- | ---: |")
    for run in json.loads((HERE / "results" / a.source).read_text()):
        seed, labels = run["seed"], run["labels"]
        w = np.array([run["methods"]["score"]["weights_pooled"][lab] for lab in labels])
        data, last, random = LOADERS[a.dataset](seed)
        train, test = split.competition(data, last=last, random=random, seed=seed)
        truth, seen = test.matrix[test.users].tocsr(), train.matrix[test.users].tocsr()
        used = [lab for lab, x in zip(labels, w) if x > 0]
        lists = {lab: parse_members([lab])[0].new_model().fit(train).recommend(test.users, k=N)
                 for lab in used if not lab.startswith(VAES)}  # fmt: skip
        bagged = {lab: None for lab in used if lab.startswith(VAES)}
        for b in range(a.bag):
            for lab in bagged:
                z = parse_members([f"{lab}:seed={b}"])[0].new_model().fit(train).score(test.users).astype(np.float64)
                z = (z - z.mean(1, keepdims=True)) / (z.std(1, keepdims=True) + 1e-12)
                bagged[lab] = z if bagged[lab] is None else bagged[lab] + z
                s = bagged[lab].copy()
                s[seen.nonzero()] = -np.inf
                top = np.argsort(-s, axis=1, kind="stable")[:, :N]
                lists[lab] = Recommendations(test.users, top.astype(np.int32),
                                             np.take_along_axis(s, top, 1).astype(np.float32))  # fmt: skip
            if b + 1 in (1, 3, 5):
                f = fuse([lists[lab] for lab in used], w[w > 0], "score", K, users=test.users)
                alone = ", ".join(f"{lab.split(':')[0]} {recall(lists[lab].items, truth):.4f}" for lab in bagged)
                print(f"| {seed} | {b + 1} | {alone or '–'} | {recall(f.items, truth):.4f} |", flush=True)


if __name__ == "__main__":
    main()
