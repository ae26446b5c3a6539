#!/usr/bin/env python
"""How long the fusion over auto's validation cuts takes, against the estimate that the cuts' box keeps for it.

    python benchmarks/bench_fusion_cuts.py --data TRAIN --auto-out OUT [--seed 100] [--repeat 3]

``OUT`` is the ``--out`` folder of a finished ``toprec auto --data TRAIN --seed SEED`` run on small data (one that
made extra validation cuts: ``OUT/cuts/cutR.npz``). Each stored cut is rebuilt with its truth
(``split.competition(TRAIN, 1, 9, SEED + 1000 R)``, as :meth:`CrossFit.more_cuts` cut it). Timed, medians of
``--repeat``: one weight search (``pooled.search``, the score fusion) over 1 cut's rows and over 3 cuts', and
:func:`toprec.auto.pooled.decide` over every stored cut; the estimate is
``CrossFit.fusion_seconds``' formula on the one-cut time (``POOL_EXP``). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from toprec import Dataset, split
    from toprec.auto.crossfit import POOL_EXP
    from toprec.auto.pooled import METHOD, Cut, decide, search
    from toprec.recommend import Recommendations

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--auto-out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--last", type=int, default=1)
    ap.add_argument("--random", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    ds = Dataset.load(a.data)
    cuts = []
    for path in sorted((a.auto_out / "cuts").glob("cut*.npz"), key=lambda p: int(p.stem[3:])):
        r = int(path.stem[3:])
        with np.load(path) as z:
            users, items, scores = z["users"], z["items"], z["scores"]
        hold = split.competition(ds, last=a.last, random=a.random, seed=a.seed + 1000 * r)[1]
        lists = [Recommendations(users, items[j], scores[j]) for j in range(len(items))]
        cuts.append(Cut(users, lists, hold.matrix[users].tocsr()))
    if len(cuts) < 3:
        raise SystemExit(f"{a.auto_out}: {len(cuts)} stored cuts; this needs at least 3")

    def timed(fn) -> float:
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    one = timed(lambda: search(cuts[:1], METHOD, 10, a.seed))
    three = timed(lambda: search(cuts[:3], METHOD, 10, a.seed))
    whole = timed(lambda: decide(cuts, 10, a.seed))
    c = len(cuts)
    est = one * (c * (c - 1) ** POOL_EXP + c**POOL_EXP)  # decide: c searches leaving one cut out, one over all
    print(f"{c} stored cuts of {len(cuts[0].users):,} users, {len(cuts[0].lists)} members; medians of {a.repeat}")
    print()
    print("| timed | seconds | estimate (POOL_EXP = %g) |" % POOL_EXP)
    print("| --- | ---: | ---: |")
    print(f"| one search, 1 cut | {one:.2f} | |")
    print(f"| one search, 3 cuts | {three:.2f} | {one * 3 ** POOL_EXP:.2f} |")
    print(f"| the fusion over {c} cuts (`decide`) | {whole:.1f} | {est:.1f} |")


if __name__ == "__main__":
    main()
