#!/usr/bin/env python
"""Does an ensemble beat its best member on users the search never saw? (ML-1M, competition protocol)

    python benchmarks/bench_ensemble_quality.py --models-dir /tmp/ens-members \
        --json benchmarks/results/ensemble_quality_ml1m.json

The protocol is exactly ``toprec ensemble``'s (``Ensemble.validate``, scheme
``users``): one competition holdout (each user's last event + 9 random earlier
ones, seed 0) cut from MovieLens-1M ratings >= 4; the held-out users split in
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
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=Path("/tmp/ens-members"))
    ap.add_argument("--members", default=",".join(MEMBERS))
    ap.add_argument("--methods", default="rank,rrf,score,product")
    ap.add_argument("--search", default="both")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = Dataset.load(
        SHARED / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz",
        format="table", user_col="user", item_col="item", time_col="timestamp",
    )  # fmt: skip
    folds = make_folds(data, "users", seed=0, last=1, random=9)
    print(folds.description)
    names = [n.strip() for n in args.members.split(",") if n.strip()]
    paths, fit_s = [], {}
    for name in names:
        path = args.models_dir / name
        if not (path / "model.json").exists():
            t0 = time.perf_counter()
            model = models.get(name, **MEMBERS.get(name, {})).fit(folds.search_train)
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
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "folds": folds.description,
                                         "fit_s": fit_s, "results": rows}, indent=2, default=str) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
