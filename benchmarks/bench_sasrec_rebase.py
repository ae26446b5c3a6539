#!/usr/bin/env python
"""Can auto skip SASRec's final refit? Its tuned trial's model, pointed at all the data, against a refit.

    python benchmarks/bench_sasrec_rebase.py --seed 0 [--epochs 15]

ML-1M ratings >= 4 (../shared/data), bench_auto's split (each user's last event + 9 random earlier ones held
out as the test, seed S) and auto's folds on the training part D (seed S + 100). Two SASRec fits with the
same parameters and the same number of epochs (``patience=0``; its own validation cut as in auto):

* ``trial model``: fitted on auto's search data (D less the fold users' holdout, what a tuning trial sees),
  then scored over D without training: the same weights, D's histories in time order (the training matrix,
  the popularity and the time order swapped for D's, what a ``rebase`` would do);
* ``refit``: fitted on D, what auto's final stage does.

Prints one JSON line: test recall@10 overall and by part for both, their paired difference and its se.
Session 18 measured it for a change that let auto skip the refit (f7ced97, reverted in 4f5fc09): seed 0
+0.0000 (se 0.0008), seed 1 -0.0031 (0.0008), so the refit stays.
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


def main() -> None:
    from bench_auto import LOADERS

    from toprec import metrics, models, split
    from toprec.ensemble import make_folds
    from toprec.models.sequential import csr_order_rank, rank_matrix

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=15)
    a = ap.parse_args()
    data, last, rnd = LOADERS["ml-1m"](a.seed)
    train, test = split.competition(data, last=last, random=rnd, seed=a.seed)
    search = make_folds(train, "users", a.seed + 100, last, rnd, True).search_train

    def score(m) -> dict[str, np.ndarray]:
        recs = m.recommend(test.users, k=10)
        out = {"all": metrics.per_user("recall@10", recs.items, test.matrix[test.users])}
        for name, M in test.parts.items():
            out[name] = metrics.per_user("recall@10", recs.items, M[test.users])
        return out

    def over(m, d):
        """``m``'s weights over ``d``'s users and histories (nothing trained)."""
        m.n_users, m.train_matrix = d.matrix.shape[0], d.matrix
        m.item_popularity = np.asarray(d.item_counts, dtype=np.float32)
        m.order_rank = csr_order_rank(d)
        m._order = rank_matrix(d.matrix, m.order_rank)
        return m

    params = dict(epochs=a.epochs, patience=0, seed=0)
    res: dict = {"seed": a.seed, "epochs": a.epochs, "events": {"search": search.n_events, "all": train.n_events}}
    t0 = time.perf_counter()
    trial = score(over(models.get("sasrec", **params).fit(search), train))
    t1 = time.perf_counter()
    refit = score(models.get("sasrec", **params).fit(train))
    res["fit_s"] = {"trial model": round(t1 - t0, 1), "refit": round(time.perf_counter() - t1, 1)}
    for part in trial:
        d = trial[part] - refit[part]
        res[part] = {"trial model": float(trial[part].mean()), "refit": float(refit[part].mean()),
                     "diff": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d)))}  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
