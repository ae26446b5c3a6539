#!/usr/bin/env python
"""`toprec submit --model ease` end to end, this checkout against another toprec source tree, paired runs.

    git worktree add /tmp/toprec-before 40ff3ff
    python benchmarks/bench_submit_vs.py --vs /tmp/toprec-before/src          # 5 pairs, competition-scale synth
    python benchmarks/bench_submit_vs.py --vs /tmp/toprec-before/src --data DIR --runs 7

Each run is a fresh process (`python -m toprec submit ... --no-track -q`, cache off: parse, fit, top-10 for
every user, write the CSV); the two trees run in turn (A B A B ...) so drift of a shared machine hits both, and the
ratio is taken pair by pair. Prints a table of median wall seconds and the median paired ratio (this / other),
and checks that both wrote the same submission. Data: `toprec data synth` with the competition's statistics
(31,360 users x 6,807 items, ~5.15M events) in benchmarks/data/synth unless --data is given.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def one_run(src: Path, data: Path, out: Path, l2: float) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "TOPREC_NO_TRACK": "1"}
    cmd = [sys.executable, "-m", "toprec", "submit", "--data", str(data), "--model", "ease", "-p", f"l2={l2}",
           "--output", str(out), "--no-cache", "-q"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return wall, hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vs", type=Path, required=True, help="the other toprec tree's src/ folder")
    ap.add_argument("--data", type=Path, default=HERE / "data" / "synth")
    ap.add_argument("--runs", type=int, default=5, help="pairs of runs")
    ap.add_argument("--l2", type=float, default=500.0)
    args = ap.parse_args()
    if not (args.vs / "toprec" / "__init__.py").exists():
        sys.exit(f"--vs {args.vs}: no toprec package there")
    if not args.data.exists():
        subprocess.run([sys.executable, "-m", "toprec", "data", "synth", "--out", str(args.data), "-q"], check=True,
                       env={**os.environ, "PYTHONPATH": str(SRC)})  # fmt: skip
    this, other, ratios, digests = [], [], [], set()
    with tempfile.TemporaryDirectory() as tmp:
        one_run(SRC, args.data, Path(tmp) / "warm.csv", args.l2)  # warm the page cache
        for i in range(args.runs):
            a, da = one_run(SRC, args.data, Path(tmp) / "a.csv", args.l2)
            b, db = one_run(args.vs, args.data, Path(tmp) / "b.csv", args.l2)
            this.append(a)
            other.append(b)
            ratios.append(a / b)
            digests |= {da, db}
            print(f"pair {i + 1}: this {a:.2f}s, other {b:.2f}s, ratio {a / b:.3f}", flush=True)
    print(f"\n`toprec submit --model ease` on {args.data}, {args.runs} pairs, wall seconds (whole process)\n")
    print("| tree | min | median | max |\n| --- | ---: | ---: | ---: |")
    for name, xs in (("this checkout", this), (f"{args.vs}", other)):
        print(f"| {name} | {min(xs):.2f} | {statistics.median(xs):.2f} | {max(xs):.2f} |")
    print(f"\nmedian paired ratio this / other: {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); same submission: {len(digests) == 1}")  # fmt: skip


if __name__ == "__main__":
    main()
