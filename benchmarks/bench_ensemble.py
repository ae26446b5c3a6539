#!/usr/bin/env python
"""Fusion speed at competition scale: 5 members x 31,360 users x top-100 candidates.

    python benchmarks/bench_ensemble.py                    # all methods, 5 runs, medians
    python benchmarks/bench_ensemble.py --users 5000 --repeats 3 --methods rank,score

Synthetic member lists (seeded): each user has a private preference over the
6,807 items; member m ranks the items by that preference plus its own noise,
so members overlap as real models do (union about 2-3x N per user). The
``independent`` case draws each member's list at random (the worst case:
the union is close to M x N). Timed per method:

* ``fuse``   — the whole one-shot fusion (``toprec.ensemble.fuse``): union,
  contributions, seen-item mask, top-10;
* ``pool``   — building the reusable candidate pool (what a search does once);
* ``trial``  — one search trial on half the users (fold A): fused scores for
  a weight vector, top-10, recall against a synthetic truth.

Prints a table of medians (seconds) and the acceptance line (fuse <= 5 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy.sparse as sp


def member_lists(n_users: int, n_items: int, n_members: int, n: int, seed: int, independent: bool):
    rng = np.random.default_rng(seed)
    pool = min(n_items, 4 * n)
    # a per-user candidate set drawn by a Zipf-like popularity, then a preference over it
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    cand = np.empty((n_users, pool), dtype=np.int32)
    for lo in range(0, n_users, 4096):  # chunks: memory, not users
        hi = min(n_users, lo + 4096)
        g = rng.gumbel(size=(hi - lo, n_items)) + np.log(pop)[None, :]
        cand[lo:hi] = np.argpartition(-g, pool, axis=1)[:, :pool]
    pref = rng.random((n_users, pool)).astype(np.float32)
    out = []
    for _ in range(n_members):
        noise = rng.random((n_users, pool)).astype(np.float32)
        s = noise if independent else pref + 0.6 * noise
        top = np.argsort(-s, axis=1)[:, :n]
        items = np.take_along_axis(cand, top, axis=1)
        scores = np.take_along_axis(s, top, axis=1).astype(np.float32) * 10.0
        out.append((items, scores))
    truth_rows = np.repeat(np.arange(n_users), 10)
    truth_cols = cand[:, :10].ravel()  # 10 "held-out" items per user, from the candidate set
    truth = sp.csr_matrix((np.ones(len(truth_rows), np.float32), (truth_rows, truth_cols)), shape=(n_users, n_items))
    seen_cols = cand[:, -20:].ravel()  # 20 "seen" items per user to mask
    seen = sp.csr_matrix((np.ones(len(truth_rows) * 2, np.float32), (np.repeat(np.arange(n_users), 20), seen_cols)),
                         shape=(n_users, n_items))  # fmt: skip
    return out, truth, seen


def timeit(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=31360)
    ap.add_argument("--items", type=int, default=6807)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default="rank,rrf,borda,score,product")
    ap.add_argument("--cases", default="overlapping,independent")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from toprec.ensemble import build_pool, fuse
    from toprec.ensemble.search import Objective

    print(
        f"fusion benchmark: {args.members} members x {args.users:,} users x top-{args.candidates} "
        f"over {args.items:,} items, k={args.k}; median of {args.repeats} runs"
    )
    print(f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, numpy {np.__version__}")
    header = f"{'case':<12} {'method':<8} {'union/user':>10} {'fuse s':>8} {'pool s':>8} {'trial s':>8}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    weights = np.linspace(1.0, 2.0, args.members)
    half = np.arange(0, args.users, 2)
    for case in args.cases.split(","):
        lists, truth, seen = member_lists(
            args.users, args.items, args.members, args.candidates, args.seed, case == "independent"
        )
        half_lists = [(it[half], sc[half]) for it, sc in lists]
        for method in args.methods.split(","):
            t_fuse = timeit(lambda: fuse(lists, weights, method, args.k, exclude=seen), args.repeats)
            worst = max(worst, t_fuse)
            t_pool = timeit(lambda: build_pool(half_lists, method), args.repeats)
            pool = build_pool(half_lists, method)
            union = float((pool.items >= 0).sum(1).mean())
            obj = Objective(pool, truth[half], args.k)
            t_trial = timeit(lambda: obj.per_user(weights).mean(), args.repeats)
            print(f"{case:<12} {method:<8} {union:>10.1f} {t_fuse:>8.3f} {t_pool:>8.3f} {t_trial:>8.3f}")
            del pool, obj
    print(f"slowest one-shot fusion: {worst:.2f} s -> {'PASS' if worst <= 5.0 else 'FAIL'} (target <= 5 s)")


if __name__ == "__main__":
    main()
