#!/usr/bin/env python
"""Does item side information help? ``cease`` (collective EASE) against ``ease``, both tuned honestly.

    python benchmarks/bench_side.py --json benchmarks/results/side.json
    python benchmarks/bench_side.py --datasets comp-sample --seeds 0,1,2

For each dataset and seed ``s``: the test holdout is cut first (seed ``s``);
each model's grid (below) is searched on a validation holdout cut the same way
from the training part only (seed ``s + 100``); the chosen configuration is
fit on all training data and scored on the test holdout once. Both models also
run at their defaults (no search). The relative gain is cease / ease - 1 on
the test holdout, per seed; its z is the paired per-user difference over its
standard error.

Data (the benchmark's own inputs; nothing a user needs depends on them):

* ``comp-sample``: the real competition users of
  ``../shared/data/boostcamp-movierec-2022`` (1,645 users, 6,590 items) with
  the competition's genres, directors, writers and years; no timestamps, so
  the holdout is 10 random events per user.
* ``ml-100k``: ``toprec data fetch ml-100k`` output (``--ml100k``, default
  ``data/ml-100k``, which the quick start writes): genres, years, and the
  directors and writers of RecBole's knowledge graph. Last event + 9 random.
* ``ml-1m``: ratings >= 4, with genres and years from ``movies.dat``. Last
  event + 9 random.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toprec import Dataset, metrics, models, progress, split
from toprec.data.loaders import _explode, _years_from_titles

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
GRIDS = {
    "ease": {"l2": [100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0]},
    "cease": {"l2": [100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0], "side_weight": [0.01, 0.03, 0.1, 0.3]},
}


def comp_sample() -> tuple[Dataset, int, int]:
    sys.path.insert(0, str(HERE))
    import prepare_competition_sample as prep

    with tempfile.TemporaryDirectory() as tmp:
        prep.write_folder(prep.read_sample(), prep.DEFAULT.parent, Path(tmp) / "sample")
        return Dataset.load(Path(tmp) / "sample", cache=False), 0, 10


def ml1m(events=None, name: str = "ml-1m") -> tuple[Dataset, int, int]:
    """ML-1M ratings >= 4 with genres and years; ``events``: a function of the events frame (user, item,
    timestamp) whose result is loaded instead."""
    ev = pd.read_csv(SHARED / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz")
    ev = events(ev) if events is not None else ev
    movies = pd.read_csv(SHARED / "ml-1m" / "movies.dat", sep="::", engine="python", header=None,
                         names=["item", "title", "genres"], encoding="latin-1")  # fmt: skip
    items = movies["item"].to_numpy()  # genres and years parsed as the ml-1m folder loader does
    feats = {"genres": _explode(items, movies["genres"], "|"), "years": _years_from_titles(items, movies["title"])}
    return Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["timestamp"].to_numpy(),
                               features=feats, name=name), 1, 9  # fmt: skip


def grid(spec: dict[str, list]) -> list[dict]:
    keys = list(spec)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(spec[k] for k in keys))]


def per_user_recall(model, holdout) -> np.ndarray:
    recs = model.recommend(holdout.users, k=10)
    return metrics.per_user("recall@10", recs.items, holdout.matrix[holdout.users])


def run(data: Dataset, last: int, random: int, seed: int) -> dict:
    train, test = split.competition(data, last=last, random=random, seed=seed)
    tr2, val = split.competition(train, last=last, random=random, seed=seed + 100)
    out = {"seed": seed}
    per_user = {}
    for name, spec in GRIDS.items():
        t0 = time.perf_counter()
        scored = [(per_user_recall(models.get(name, **p).fit(tr2), val).mean(), p) for p in grid(spec)]
        best_val, best = max(scored, key=lambda t: t[0])
        search_s = time.perf_counter() - t0
        per_user[name] = per_user_recall(models.get(name, **best).fit(train), test)
        default = per_user_recall(models.get(name).fit(train), test)
        out[name] = {"params": best, "val": round(float(best_val), 4), "test": round(float(per_user[name].mean()), 4),
                     "default_test": round(float(default.mean()), 4), "search_s": round(search_s, 1)}  # fmt: skip
        per_user[name + "_default"] = default
    for tag in ("", "_default"):
        d = per_user["cease" + tag] - per_user["ease" + tag]
        out["gain" + tag] = round(float(d.mean() / per_user["ease" + tag].mean()), 4)
        out["z" + tag] = round(float(d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="comp-sample,ml-100k,ml-1m")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--ml100k", type=Path, default=HERE.parent / "data" / "ml-100k",
                    help="a 'toprec data fetch ml-100k' folder (with directors.tsv and writers.tsv)")  # fmt: skip
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    progress.set_quiet(True)
    loaders = {"comp-sample": comp_sample, "ml-1m": ml1m,
               "ml-100k": lambda: (Dataset.load(args.ml100k, cache=False), 1, 9)}  # fmt: skip
    results = []
    print("| dataset | seed | ease test (l2) | cease test (l2, side_weight) | gain (z) | defaults: ease | cease | gain (z) |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for ds_name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        data, last, random = loaders[ds_name]()
        for seed in [int(s) for s in args.seeds.split(",")]:
            r = run(data, last, random, seed) | {"dataset": ds_name, "features": sorted(data.features)}
            results.append(r)
            e, c = r["ease"], r["cease"]
            print(f"| {ds_name} | {seed} | {e['test']:.4f} ({e['params']['l2']:g}) | {c['test']:.4f} "
                  f"({c['params']['l2']:g}, {c['params']['side_weight']:g}) | {r['gain']:+.1%} ({r['z']:.1f}) | "
                  f"{e['default_test']:.4f} | {c['default_test']:.4f} | {r['gain_default']:+.1%} ({r['z_default']:.1f}) |",
                  flush=True)  # fmt: skip
        gains = [r["gain"] for r in results if r["dataset"] == ds_name]
        print(f"| {ds_name} | mean | | | {np.mean(gains):+.1%} | | | "
              f"{np.mean([r['gain_default'] for r in results if r['dataset'] == ds_name]):+.1%} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "grids": GRIDS, "results": results}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
