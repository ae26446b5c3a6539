#!/usr/bin/env python
"""Two toprec processes on one machine: how much the idle OpenMP threads' spinning costs.

    python benchmarks/bench_threads.py --dataset comp-sample --epochs 10 --repeats 3

One job: Multi-VAE (toprec's defaults, ``--epochs`` epochs) fitted on the training part of the dataset's
competition split, timed inside a fresh process (the data load not counted). Each job runs alone, then two at a
time (both started together), ``--repeats`` times, under two settings of GNU libgomp's GOMP_SPINCOUNT (how long an
idle OpenMP thread of torch's CPU pool busy-waits before it sleeps): libgomp's own default (300,000, what every
toprec process had before) and toprec's default (:data:`toprec.GOMP_SPINCOUNT`, set when toprec is imported
before torch). Prints a table: the median seconds alone and side by side, and their ratio (2.0 = the two jobs
share the cores with nothing lost; more = the spinning took cores from the other process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(dataset: str, epochs: int) -> None:
    import toprec  # noqa: F401 - first, as in every toprec process: its GOMP_SPINCOUNT default before torch loads
    from bench_auto import LOADERS
    from toprec import progress, split
    from toprec.ensemble import parse_members

    progress.set_quiet(True)
    data, last, random = LOADERS[dataset](0)
    train, _ = split.competition(data, last=last, random=random, seed=0)
    model = parse_members([f"multivae:epochs={epochs}:seed=0"])[0].new_model()
    t = time.perf_counter()
    model.fit(train)
    print(f"{time.perf_counter() - t:.3f}")


def run(n: int, env: dict, args: list[str]) -> list[float]:
    """``n`` jobs started together; each one's seconds."""
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    out = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("bench_threads: a job failed")
    return [float(o.split()[-1]) for o in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="comp-sample")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.dataset, a.epochs)
    from toprec import GOMP_SPINCOUNT

    args = [sys.executable, __file__, "--child", "--dataset", a.dataset, "--epochs", str(a.epochs)]
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    settings = {"libgomp's default (300000)": dict(base, GOMP_SPINCOUNT="300000"),
                f"toprec's default ({GOMP_SPINCOUNT})": base}  # fmt: skip
    times: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in settings}
    for _ in range(a.repeats):  # interleaved, so a slow minute on a shared machine hits both settings
        for name, env in settings.items():
            times[name][0].extend(run(1, env, args))
            times[name][1].extend(run(2, env, args))
    print(f"Multi-VAE, {a.epochs} epochs on {a.dataset}, {os.cpu_count()} CPUs, {a.repeats} repeats (medians)\n")
    print("| GOMP_SPINCOUNT | alone (s) | two side by side (s) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, (alone, pair) in times.items():
        m1, m2 = statistics.median(alone), statistics.median(pair)
        print(f"| {name} | {m1:.2f} | {m2:.2f} | {m2 / m1:.2f} |")


if __name__ == "__main__":
    main()
