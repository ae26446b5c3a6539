#!/usr/bin/env python
"""Does an ensemble beat its best member on users the search never saw? (competition protocol)

    python benchmarks/bench_ensemble_quality.py --models-dir /tmp/ens-members \
        --json benchmarks/results/ensemble_quality_ml1m.json

    # the competition sample in its file order (benchmarks/prepare_competition_sample.py --ordered)
    python benchmarks/bench_ensemble_quality.py --data /tmp/compsample_ordered.csv --default-params \
        --seed S --members ease,easer,ials,rp3beta,recvae,multivae,multidae,edlae,sasrec \
        --models-dir /tmp/ens-ordered-S --json benchmarks/results/ensemble_quality_competition_ordered_seedS.json

    # ``--scheme events`` (search on a validation cut from the training data, confirm on the same users);
    # the exact commands of every sample run are in benchmarks/results/ensemble_quality_competition_sample.md

The protocol is exactly ``toprec ensemble``'s (``Ensemble.validate``; by default
scheme ``users``): one competition holdout (each user's last event + 9 random
earlier ones, seed 0) cut from MovieLens-1M ratings >= 4; the held-out users split in
two activity-balanced halves; weights and member subset searched on fold A
only; the chosen ensemble scored on fold B, which no search saw. Members are
fitted once on the holdout's training part and saved (``--models-dir``: a
rerun reuses them), so every fusion method is compared on the same fits —
``toprec ensemble`` would refit every member for each method and once more
on all data for the submission, which this benchmark does not need.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toprec import Dataset, models
from toprec.ensemble import Ensemble, make_folds

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# validation-chosen parameters (benchmarks/results/quality.md, neural.md, sequential.md)
MEMBERS = {
    "ease": {"l2": 1200.0},
    "easer": {},
    "ials": {},
    "rp3beta": {},
    "sasrec": {"epochs": 60, "patience": 5},  # stops itself (best epoch 23 on this fold)
    "recvae": {},
    "multivae": {"valid_every": 2, "threads": 1},
    "multidae": {"valid_every": 2, "threads": 1},
}


def sample_users(path: Path, n: int, draw: int) -> Path:
    """The table restricted to ``n`` users drawn without replacement (``default_rng(draw)``), as a temp CSV."""
    events = pd.read_csv(path)
    users = np.sort(events["user"].unique())
    if n > len(users):
        raise SystemExit(f"--sample-users {n}: {path} has only {len(users):,} users")
    keep = np.random.default_rng(draw).choice(users, size=n, replace=False)
    out = Path(tempfile.mkdtemp(prefix="toprec-users-")) / f"{path.name.split('.')[0]}_{n}users_draw{draw}.csv"
    events[events["user"].isin(keep)].to_csv(out, index=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=Path("/tmp/ens-members"))
    ap.add_argument("--members", default=",".join(MEMBERS))
    ap.add_argument("--methods", default="rank,rrf,score,product")
    ap.add_argument("--search", default="both")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--data", type=Path, default=SHARED / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz",
                    help="user,item,<time> table (default: ML-1M ratings >= 4)")  # fmt: skip
    ap.add_argument("--time-col", default=None, help="default: timestamp, or time if the table has that")
    ap.add_argument("--seed", type=int, default=0, help="split seed (holdout and user halves)")
    ap.add_argument("--scheme", default="users", help="users | events (toprec ensemble --scheme)")
    ap.add_argument("--last", type=int, default=1, help="latest events per user held out")
    ap.add_argument("--random", type=int, default=9, help="random earlier events per user held out")
    ap.add_argument("--sample-users", type=int, default=0,
                    help="keep this many users of the table, drawn at random (0 = all): the user-count curve")  # fmt: skip
    ap.add_argument("--sample-draw", type=int, default=0, help="seed of that draw (numpy default_rng)")
    ap.add_argument("--default-params", action="store_true",
                    help="every member at its library defaults, not MEMBERS (which were chosen on ML-1M)")  # fmt: skip
    args = ap.parse_args()
    if args.data.is_dir():  # a folder in the competition layout (with item side files)
        data = Dataset.load(args.data)
    else:
        header = pd.read_csv(args.data, nrows=0).columns
        time_col = args.time_col or next((c for c in ("timestamp", "time") if c in header), None)
        path = args.data
        if args.sample_users:
            path = sample_users(args.data, args.sample_users, args.sample_draw)
        data = Dataset.load(path, format="table", user_col="user", item_col="item", time_col=time_col)
    folds = make_folds(data, args.scheme, seed=args.seed, last=args.last, random=args.random)
    print(folds.description)
    names = [n.strip() for n in args.members.split(",") if n.strip()]
    paths, fit_s = [], {}
    for name in names:
        path = args.models_dir / name
        if not (path / "model.json").exists():
            t0 = time.perf_counter()
            params = {} if args.default_params else MEMBERS.get(name, {})
            model = models.get(name, **params).fit(folds.search_train)
            fit_s[name] = round(time.perf_counter() - t0, 1)
            model.save(path)
            print(f"fitted {name} in {fit_s[name]} s -> {path}", flush=True)
        paths.append(str(path))
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        ens = Ensemble(paths, method=method, candidates=100)
        rep = ens.validate(data, search=args.search, folds=folds)
        rows.append({"method": method, "report": rep})
        r = "recall@10"
        line = {
            "method": method,
            "weights": {k: round(v, 3) for k, v in rep["weights"].items()},
            "members_b": {m["label"]: round(m["fold_b"][r], 4) for m in rep["members"]},
            "ensemble_a": round(rep["ensemble"]["fold_a"][r], 4),
            "ensemble_b": round(rep["ensemble"]["fold_b"][r], 4),
            "best_b": rep["best_member_fold_b"],
            "gain_b": round(rep["gain_fold_b"], 4),
            "relative_gain_b": round(rep["gain_fold_b"] / max(m["fold_b"][r] for m in rep["members"]), 4),
            "z_b": round(rep["gain_fold_b_z"], 2),
        }
        print(json.dumps(line), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "data": str(args.data),
                                         "seed": args.seed, "default_params": args.default_params, "scheme": args.scheme,
                                         "sample_users": args.sample_users, "sample_draw": args.sample_draw,
                                         "folds": folds.description,
                                         "fit_s": fit_s, "results": rows}, indent=2, default=str) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
