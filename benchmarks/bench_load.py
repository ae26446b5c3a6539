#!/usr/bin/env python
"""Parsing a table of events: seconds to load ML-1M as a CSV, numeric and zero-padded ids (no cache).

    python benchmarks/bench_load.py [--repeat 5] [--synth]

Writes ML-1M's 1,000,209 (user, movie) events (../shared/data/ml-1m, with a
time column) to a temporary CSV twice: ids as numbers, and the same ids
zero-padded to 6 digits (read as text since session 23: ``000123`` is not
123). Prints the median, min and max of ``Dataset.load(path, cache=False)``
and the ids' dtype. ``--synth``: also a competition-scale folder
(``toprec data synth``: 31,360 users x 6,807 items, ~5.15M events, integer
ids). To compare two commits, run it with ``PYTHONPATH`` set
to each one's ``src`` (``git archive COMMIT src | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m"


def main() -> None:
    from toprec import Dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--synth", action="store_true", help="also the competition-scale synthetic folder")
    a = ap.parse_args()
    ev = pd.read_parquet(SHARED / "ratings.parquet")
    ev.columns = ["user", "item"]
    ev = ev.astype({"user": np.int64, "item": np.int64})
    ev["time"] = np.arange(len(ev), dtype=np.int64) + 10**9
    print(f"ML-1M events as a CSV ({len(ev):,} rows), Dataset.load(cache=False), {a.repeat} runs\n")
    print("| ids | median s | min s | max s | user id dtype | first user id |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        padded = ev.assign(user=ev["user"].astype(str).str.zfill(6), item=ev["item"].astype(str).str.zfill(6))
        paths = []
        for name, frame in (("numbers", ev), ("zero-padded", padded)):
            paths.append((name, Path(tmp) / f"{name}.csv"))
            frame.to_csv(paths[-1][1], index=False)
        if a.synth:
            paths.append(("competition-scale synth folder", Path(tmp) / "synth"))
            subprocess.run([sys.executable, "-m", "toprec", "data", "synth", "--out", str(paths[-1][1]), "-q"],
                           check=True)  # fmt: skip
        for name, path in paths:
            times = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                ds = Dataset.load(path, cache=False)
                times.append(time.perf_counter() - t0)
            print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} | "
                  f"{ds.user_ids.dtype} | {ds.user_ids[0]!s} |")


if __name__ == "__main__":
    main()
