#!/usr/bin/env python
"""What MLflow tracking adds to a small `toprec evaluate` (wall time of the whole command).

    python benchmarks/bench_tracking.py            # 5 rounds, MovieLens-100K, popularity

Each round runs, interleaved (so load drift hits all three alike):
  off    `toprec evaluate ... --no-track`
  warm   tracked into an existing local SQLite store (./mlruns/mlflow.db)
  fresh  tracked into a new store: the first run in a folder creates the
         database (MLflow's schema migrations)
Reported: the median of each and the overheads warm - off and fresh - off.
Results: benchmarks/results/tracking_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def timed(args, cwd, env) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "toprec", *args], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="popularity")
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("TOPREC_NO_TRACK", "MLFLOW_TRACKING_URI")}
    times: dict[str, list[float]] = {"off": [], "warm": [], "fresh": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "ml-100k"
        shutil.copytree(SHARED / "ml-100k", data)
        cmd = ["evaluate", "--data", str(data), "--model", a.model, "-q"]
        warm = tmp / "warm"
        warm.mkdir()
        timed(cmd, warm, env)  # creates the warm store and the dataset cache
        for r in range(a.rounds):
            times["off"].append(timed([*cmd, "--no-track"], warm, env))
            times["warm"].append(timed(cmd, warm, env))
            fresh = tmp / f"fresh{r}"
            fresh.mkdir()
            times["fresh"].append(timed(cmd, fresh, env))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"model": a.model, "rounds": a.rounds, "times": times, "median": med,
           "overhead_warm_s": med["warm"] - med["off"], "overhead_fresh_s": med["fresh"] - med["off"]}  # fmt: skip
    text = (
        f"# Tracking overhead: `toprec evaluate --data ml-100k --model {a.model}` (median of {a.rounds})\n\n"
        "| run | wall s |\n| --- | ---: |\n"
        f"| --no-track | {med['off']:.2f} |\n| tracked, existing store | {med['warm']:.2f} |\n"
        f"| tracked, first run (store created) | {med['fresh']:.2f} |\n\n"
        f"Overhead: {res['overhead_warm_s']:.2f}s per run; {res['overhead_fresh_s']:.2f}s for the first run in a "
        "folder (MLflow creates and migrates the SQLite database).\n"
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracking_overhead.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / "tracking_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
