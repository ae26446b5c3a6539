"""Multi-VAE / RecVAE on small data with and without ``min_batches`` (issue 22 item 12).

    python benchmarks/bench_min_batches.py DATA [--models multivae,recvae] [--min-batches 0,10]

Competition split (last 1 + 9 random, seed 0), default parameters except
``min_batches``; prints one JSON line per (model, min_batches): epochs run,
best epoch, fit seconds, test recall@10 and ndcg@10.
"""

from __future__ import annotations

import argparse
import json
import time

from toprec import Dataset, metrics, models, split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--models", default="multivae,recvae")
    ap.add_argument("--min-batches", default="0,10")
    a = ap.parse_args()
    data = Dataset.load(a.data)
    train, test = split.competition(data, last=1, random=9, seed=0)
    for mb in (int(x) for x in a.min_batches.split(",")):
        for name in a.models.split(","):
            t0 = time.perf_counter()
            m = models.get(name, min_batches=mb).fit(train)
            fit_s = time.perf_counter() - t0
            res = metrics.evaluate(m.recommend(test.users, k=10), test, ["recall@10", "ndcg@10"])
            print(json.dumps({"model": name, "min_batches": mb, "users": data.n_users, "items": data.n_items,
                              "epochs_run": len(m.history), "best_epoch": m.best_epoch, "fit_s": round(fit_s, 1),
                              **{k: round(v, 4) for k, v in res.items()}}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
