#!/usr/bin/env python
"""Accuracy of every model, competition protocol, with honest tuning.

    python benchmarks/bench_quality.py                       # ml-100k and ml-1m (ratings >= 4)
    python benchmarks/bench_quality.py --datasets ml-100k --models ease,itemknn

For each dataset: the test holdout is cut first (each user's last event + 9
random earlier ones, seed 0). Hyperparameters are chosen on a validation
holdout cut the same way from the *training* part only (seed 1); the test part
is touched once, by the chosen configuration fit on all training data. The
grids are below, written out. Also reports each model with its defaults.

Data: MovieLens-100K and MovieLens-1M ratings >= 4 from ../shared/data (the
benchmark's own inputs; nothing a user needs depends on them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from toprec import Dataset, metrics, models, split
from toprec.errors import ToprecError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "ml-100k": lambda: Dataset.load(SHARED / "ml-100k"),
    "ml-1m": lambda: Dataset.load(
        SHARED / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz",
        format="table", user_col="user", item_col="item", time_col="timestamp",
    ),  # fmt: skip
}

# validation grids (explicit, small): model -> {param: values}
GRIDS: dict[str, dict[str, list]] = {
    "popularity": {},
    "itemknn": {"k": [50, 100, 200, 400], "shrink": [0.0, 10.0, 50.0], "weighting": ["none", "bm25"]},
    "rp3beta": {"alpha": [0.4, 0.6, 0.8, 1.0], "beta": [0.3, 0.5, 0.6, 0.7, 0.8], "k": [200, 1000]},
    "ease": {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0, 3000.0]},
    "edlae": {"l2": [100.0, 300.0, 600.0, 1000.0], "dropout": [0.1, 0.25, 0.4]},
    "easer": {"l2": [300.0, 1000.0]},
    "admm-slim": {"l1": [1.0, 10.0], "l2": [300.0, 1000.0]},
    "ials": {"factors": [64, 128, 256], "alpha": [1.0, 3.0, 10.0]},
    "bpr": {"factors": [64, 128], "learning_rate": [0.01, 0.05]},
    "lmf": {"factors": [32, 64], "learning_rate": [0.5, 1.0]},
}


def recall(model, train, holdout, k=10) -> dict:
    recs = model.recommend(holdout.users, k=k)
    out = metrics.evaluate(recs, holdout, [f"recall@{k}", f"ndcg@{k}"])
    for part in ("last", "random"):
        out[f"recall_{part}@{k}"] = metrics.evaluate(recs, holdout, [f"recall@{k}"], part=part)[f"recall@{k}"]
    return out


def grid(spec: dict[str, list]) -> list[dict]:
    if not spec:
        return [{}]
    keys = list(spec)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(spec[k] for k in keys))]


def run_dataset(name: str, model_names: list[str], quiet: bool) -> list[dict]:
    data = DATASETS[name]()
    train, test = split.competition(data, last=1, random=9, seed=0)
    tr2, val = split.competition(train, last=1, random=9, seed=1)
    rows = []
    for mname in model_names:
        try:
            cls = models.get_class(mname)
        except ToprecError:
            print(f"  {mname}: not available, skipped", file=sys.stderr)
            continue
        spec = {k: v for k, v in GRIDS.get(mname, {}).items() if k in cls.Params.model_fields}
        best, best_val = None, -1.0
        t0 = time.perf_counter()
        for params in grid(spec):
            m = cls(**params).fit(tr2)
            v = recall(m, tr2, val)["recall@10"]
            if not quiet:
                print(f"  {name} {mname} {params}: val recall@10 {v:.4f}", file=sys.stderr)
            if v > best_val:
                best, best_val = params, v
        search_s = time.perf_counter() - t0
        default_val = recall(cls().fit(tr2), tr2, val)["recall@10"]
        t0 = time.perf_counter()
        final = cls(**best).fit(train)
        fit_s = time.perf_counter() - t0
        res = recall(final, train, test)
        default_test = recall(cls().fit(train), train, test)["recall@10"]
        rows.append({
            "dataset": name, "model": mname, "params": best, "val_recall@10": best_val,
            "test_recall@10": res["recall@10"], "test_ndcg@10": res["ndcg@10"],
            "test_recall_last@10": res["recall_last@10"], "test_recall_random@10": res["recall_random@10"],
            "default_val_recall@10": default_val, "default_test_recall@10": default_test,
            "fit_s": fit_s, "search_s": search_s, "configs": len(grid(spec)),
        })  # fmt: skip
        r = rows[-1]
        print(
            f"{name:8} {mname:11} val {best_val:.4f}  test {r['test_recall@10']:.4f}  "
            f"(last {r['test_recall_last@10']:.4f})  default: val {default_val:.4f} test {default_test:.4f}  "
            f"fit {fit_s:.1f}s  {best}",
            file=sys.stderr,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="ml-100k,ml-1m")
    ap.add_argument("--models", default=",".join(GRIDS))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    rows = []
    for ds in args.datasets.split(","):
        rows += run_dataset(ds, args.models.split(","), quiet=not args.verbose)
    print("\n| dataset | model | chosen on validation | val recall@10 | test recall@10 | test ndcg@10 | recall last | recall random | defaults: test recall@10 | fit s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        print(
            f"| {r['dataset']} | {r['model']} | {params} | {r['val_recall@10']:.4f} | {r['test_recall@10']:.4f} | "
            f"{r['test_ndcg@10']:.4f} | {r['test_recall_last@10']:.4f} | {r['test_recall_random@10']:.4f} | "
            f"{r['default_test_recall@10']:.4f} | {r['fit_s']:.2f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
