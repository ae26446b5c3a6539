#!/usr/bin/env python
"""Where auto's seqrules member starts: fold-A recall@10 of its starting points, on validation only.

    python benchmarks/bench_seqrules_start.py [--datasets ml-100k,ml-1m,ml-latest-small] [--seeds 0,1]

Each dataset is cut as ``bench_auto.py`` cuts it (``split.competition``, the test part never read), then as
``toprec auto`` cuts the folds (``make_folds(train, "users", seed + 100, ...)``): seqrules is fitted on the
search data and scored on fold A's whole holdout (the last event and the random earlier ones), exactly as an
auto trial is. Rows: the model's defaults (chosen on the last event alone), auto's first start
(``toprec.auto.plan.SEQRULES_START``: every history item votes, decayed 0.99 a step back) and neighbours of it.
Prints a markdown table (fold-A recall@10, seconds of a fit + scoring).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402

from toprec import metrics, models, split  # noqa: E402
from toprec.auto.plan import SEQRULES_START  # noqa: E402
from toprec.ensemble import make_folds  # noqa: E402

VARIANTS = {
    "model defaults": {},
    "auto start (last_n 200, decay 0.99)": SEQRULES_START,
    "last_n 50, decay 0.99": {**SEQRULES_START, "last_n": 50},
    "last_n 20, decay 0.95 (old space's edge)": {**SEQRULES_START, "last_n": 20, "recency_decay": 0.95},
    "last_n 200, decay 0.9": {**SEQRULES_START, "recency_decay": 0.9},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="ml-100k,ml-1m,ml-latest-small")
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args()
    print("| dataset | seed | seqrules variant | fold-A recall@10 | seconds |")
    print("| --- | ---: | --- | ---: | ---: |")
    for name in args.datasets.split(","):
        for seed in map(int, args.seeds.split(",")):
            data, last, random = LOADERS[name](seed)
            train, _ = split.competition(data, last=last, random=random, seed=seed)
            folds = make_folds(train, "users", seed + 100, last, random, True)
            users = folds.fold_a.users
            truth = folds.fold_a.holdout.matrix[users]
            for label, params in VARIANTS.items():
                t0 = time.perf_counter()
                recs = models.get("seqrules", **params).fit(folds.search_train).recommend(users, k=10)
                value = float(metrics.per_user("recall@10", recs.items, truth).mean())
                print(f"| {name} | {seed} | {label} | {value:.4f} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
