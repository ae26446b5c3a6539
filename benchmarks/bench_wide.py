#!/usr/bin/env python
"""Closed forms on wide data (users << items): item space against the Woodbury user space.

    python benchmarks/bench_wide.py [--repeats 3] [--models ease,edlae,easer]

Last.fm-2K (1,892 users x 17,632 artists, ../shared/data): each configuration
runs in its own process (peak RSS is that process's); fit seconds are the
median of ``--repeats`` fits; recall@10 on 10 random held-out events per user
(seed 0). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"


def one(name: str, form: str, params: dict, repeats: int) -> dict:
    import numpy as np
    import pandas as pd

    from toprec import Dataset, metrics, models, split

    ev = pd.read_csv(SHARED / "hetrec2011-lastfm-2k" / "user_artists.dat", sep="\t")
    ds = Dataset.from_events(ev["userID"].to_numpy(), ev["artistID"].to_numpy(), name="lastfm-2k")
    train, test = split.random_k(ds, n=10, seed=0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = models.get(name, form=form, **params).fit(train)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    recs = m.recommend(test.users, k=10)
    rec_s = time.perf_counter() - t0
    recall = float(metrics.per_user("recall@10", recs.items, test.matrix[test.users]).mean())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"model": name, "form": form, "params": params, "fit_s": statistics.median(times), "recommend_s": rec_s,
            "peak_gb": peak, "recall": recall, "shape": [train.n_users, train.n_items]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="ease,edlae,easer")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        spec = json.loads(a.one)
        print(json.dumps(one(spec["name"], spec["form"], spec["params"], a.repeats)))
        return
    configs = {"ease": {"l2": 500.0}, "edlae": {"l2": 500.0, "dropout": 0.25}, "easer": {"l2": 300.0}}
    rows = []
    for name in a.models.split(","):
        for form in ("users", "items"):
            spec = json.dumps({"name": name, "form": form, "params": configs[name]})
            out = subprocess.run([sys.executable, __file__, "--one", spec, "--repeats", str(a.repeats)],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {name} {form}: {rows[-1]['fit_s']:.1f}s", file=sys.stderr, flush=True)
    u, i = rows[0]["shape"]
    print(f"Last.fm-2K training part: {u:,} users x {i:,} items; fit s = median of {a.repeats}\n")
    print("| model | params | form | fit s | recommend s (all test users) | peak RSS GB | recall@10 |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        p = ", ".join(f"{k}={v:g}" for k, v in r["params"].items())
        print(f"| {r['model']} | {p} | {r['form']} | {r['fit_s']:.2f} | {r['recommend_s']:.2f} | {r['peak_gb']:.2f} | "
              f"{r['recall']:.4f} |")
    for name in a.models.split(","):
        f = {r["form"]: r for r in rows if r["model"] == name}
        print(f"\n{name}: user space {f['items']['fit_s'] / f['users']['fit_s']:.1f}x faster to fit, "
              f"{f['items']['peak_gb'] / f['users']['peak_gb']:.1f}x less peak memory, same recall "
              f"({f['users']['recall']:.4f} vs {f['items']['recall']:.4f})")


if __name__ == "__main__":
    main()
