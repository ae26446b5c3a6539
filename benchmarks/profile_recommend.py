#!/usr/bin/env python
"""Where EASE's ``recommend`` for every user goes, stage by stage: the shared top-k with the previous
scoring kernel against the fused compiled pass.

    python benchmarks/profile_recommend.py --out benchmarks/results/profile_recommend.md

On the competition-scale synth (``benchmarks/data/synth``, see bench_ease.py): EASE (l2=500) is fitted
once, then

1. the real calls, ``model.recommend(all users, k=10)`` as bench_ease times it, with
   ``TOPREC_KERNELS=unfused`` (previous kernel, shared top-k in forked workers) and unset (fused pass
   on threads), alternating, wall seconds;
2. the same work by stages in one thread (CPU seconds of this thread, ``time.thread_time``, so a
   loaded machine inflates them less than wall time): for the shared top-k the batch's history slice,
   the scores (H @ B, previous kernel), the NaN/+inf check, popularity + seen masking, and the top-k's
   parts; for the fused pass the compiled scoring of a block and its compiled ranking.

Both give the same lists and scores (checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "synth")
    ap.add_argument("--runs", type=int, default=3, help="real recommend calls per mode (alternating)")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_ease import ensure_data, machine

    from toprec import Dataset, models
    from toprec import recommend as R
    from toprec.models import kernels

    ds = Dataset.load(ensure_data(a.data))
    model = models.get("ease", l2=500.0, device="cpu").fit(ds)
    users = ds.users
    kernels.warm()
    os.environ["TOPREC_KERNELS"] = "unfused"
    kernels.warm()
    loads = [os.getloadavg()[0]]

    # 1. the real calls
    wall = {"unfused": [], "fused": []}
    recs = {}
    for _ in range(a.runs):
        for mode in ("unfused", "fused"):
            os.environ["TOPREC_KERNELS"] = "unfused" if mode == "unfused" else ""
            s = time.perf_counter()
            recs[mode] = model.recommend(users, k=10)
            wall[mode].append(time.perf_counter() - s)
            loads.append(os.getloadavg()[0])
    same = np.array_equal(recs["fused"].items, recs["unfused"].items) and np.array_equal(
        recs["fused"].scores.view(np.int32), recs["unfused"].scores.view(np.int32))

    # 2. by stages, one thread
    cpu: dict[str, float] = {}

    def tick(name: str, t0: float) -> float:
        now = time.thread_time()
        cpu[name] = cpu.get(name, 0.0) + now - t0
        return now

    t = time.thread_time()
    hist = model._history(users, None)
    t = tick("history rows of all users (both)", t)
    S = model.similarity
    pop = model.item_popularity
    n, m = hist.shape
    os.environ["TOPREC_KERNELS"] = "unfused"
    bs = R.batch_size_for(m)
    for start in range(0, n, bs):
        t = time.thread_time()
        h = hist[start : start + bs]
        t = tick("old: batch slice", t)
        scores = model._score(users[start : start + bs], h)
        t = tick("old: scores H @ B (previous kernel)", t)
        R.check_finite(float(scores.max()), "x")
        t = tick("old: NaN/+inf check", t)
        R.seen_and_cold(scores, h, pop, h)
        t = tick("old: popularity + seen masking", t)
        R.topk_rows(scores, 10)
        t = tick("old: top-k (candidates, argpartition, sort, ties)", t)
        del scores
    os.environ["TOPREC_KERNELS"] = ""
    _, _, block_scores, rank_rows = kernels._compiled()
    t = time.thread_time()
    indptr, indices, data = kernels._csr_arrays(hist)
    unit = kernels._unit(data)
    ex_indptr, ex_indices = np.asarray(hist.indptr, np.int64), np.asarray(hist.indices, np.int64)
    t = tick("new: CSR arrays (int64 copies), 0/1 test", t)
    block = kernels.BLOCK_ROWS
    buf = np.empty((block, m), np.float32)
    items = np.empty((n, 10), np.int32)
    top = np.empty((n, 10), np.float32)
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        t = time.thread_time()
        block_scores(indptr, indices, data, unit, S, buf, r0, r1, kernels.ITEM_BLOCK)
        t = tick("new: scores H @ B (tiled kernel)", t)
        rank_rows(buf, r0, r1, indptr, pop, True, ex_indptr, ex_indices, True, 10, items, top)
        t = tick("new: check + popularity + masking + top-k (compiled)", t)
    same = same and np.array_equal(items, recs["fused"].items) and np.array_equal(top, recs["fused"].scores)
    loads.append(os.getloadavg()[0])

    lines = [
        "# EASE recommend for every user: where the time goes",
        "",
        f"`python benchmarks/profile_recommend.py{' --out ' + a.out if a.out else ''}` "
        f"(commit {_commit()}), {n:,} users x {m:,} items, {hist.nnz:,} events, k=10; {machine()}; "
        f"load average during the run {min(loads):.1f}-{max(loads):.1f} (shared machine). Same lists and scores "
        f"(bit for bit) from both: {'yes' if same else 'NO'}.",
        "",
        f"Real calls, `model.recommend(all users, k=10)`, wall seconds, {a.runs} alternating runs each:",
        "",
        "| path | median s | runs |",
        "|---|---|---|",
        f"| shared top-k, previous kernel, forked workers (`TOPREC_KERNELS=unfused`) | "
        f"{statistics.median(wall['unfused']):.2f} | {', '.join(f'{w:.2f}' for w in wall['unfused'])} |",
        f"| fused compiled pass, threads | {statistics.median(wall['fused']):.2f} | "
        f"{', '.join(f'{w:.2f}' for w in wall['fused'])} |",
        f"| fused / previous | {statistics.median(wall['fused']) / statistics.median(wall['unfused']):.2f} | |",
        "",
        "By stage, one thread, CPU seconds of that thread (the real calls split the users over 2 cores):",
        "",
        "| stage | CPU s | share of its path |",
        "|---|---|---|",
    ]
    for prefix in ("old:", "new:"):
        total = sum(v for k, v in cpu.items() if k.startswith(prefix))
        for k, v in cpu.items():
            if k.startswith(prefix):
                lines.append(f"| {k} | {v:.2f} | {100 * v / total:.0f}% |")
        lines.append(f"| **{prefix[:-1]} total** | **{total:.2f}** | |")
    lines.append(f"| history rows of all users (both paths) | {cpu['history rows of all users (both)']:.2f} | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE).stdout.strip() or "?"  # fmt: skip
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
