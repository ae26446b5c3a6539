#!/usr/bin/env python
"""Item-item top-k similarity on real catalogues: where the re-ranker's recency features spent their time.

    python benchmarks/bench_similarity.py --datasets ml-latest-small,ml-1m,lastfm --repeats 3

For each dataset (its bench_auto test cut's training part, seed 1): the seconds of

- ``select, kth = n - k`` / ``select, kth = k - 1``: the neighbour selection alone, on every block of the
  similarity the re-ranker's recency features use (cosine, 100 neighbours, shrink 10), the k largest of each row
  found as numpy's ``argpartition`` at kth = n - k (before) and as the k smallest of the negated rows at kth = k - 1
  (``toprec.models.knn.rows_topk`` now); both keep the same values (checked: the same number of positive entries and
  the same sum; tied neighbours may differ);
- ``similarity``: ``knn_similarity`` whole (the sparse products, the cosine, the selection);
- ``rp3beta fit``: RP3beta's fit with auto's first start (alpha 0.6, beta 0.6, k 500).

Medians of ``--repeats`` runs; on a shared machine quote the ratio of the two selection columns, measured in the same
run. Prints a markdown table (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402
from toprec import models, progress, split  # noqa: E402
from toprec.ensemble.recency import NEIGHBOURS  # noqa: E402
from toprec.models.knn import ItemKNNParams, knn_similarity, similarity_rows  # noqa: E402


def blocks(X: sp.csr_matrix, p: ItemKNNParams) -> list[np.ndarray]:
    """The similarity's dense row blocks, as ``knn_similarity`` makes them (``similarity_rows``)."""
    rows, n = similarity_rows(X, p), X.shape[1]
    return [rows(s, min(n, s + p.block)) for s in range(0, n, p.block)]


def select_high(R: np.ndarray, k: int) -> np.ndarray:
    n = R.shape[1]
    return np.take_along_axis(R, np.argpartition(R, n - k, axis=1)[:, n - k :], axis=1)


def select_low(R: np.ndarray, k: int) -> np.ndarray:
    return -np.take_along_axis(-R, np.argpartition(-R, k - 1, axis=1)[:, :k], axis=1)


def timed(fn, repeats: int) -> tuple[float, object]:
    out, ts = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml-latest-small,ml-1m,lastfm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="", help="also write the table to this file")
    a = ap.parse_args()
    progress.set_quiet(True)
    lines = ["| data | users x items | select, kth = n - k (s) | select, kth = k - 1 (s) | ratio | "
             "similarity (s) | rp3beta fit (s) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    for name in a.datasets.split(","):
        data, last, random = LOADERS[name](1)
        train, _ = split.competition(data, last=last, random=random, seed=1)
        X = sp.csr_matrix(train.matrix, dtype=np.float32)
        p = ItemKNNParams(k=NEIGHBOURS, shrink=10.0)
        B = blocks(X, p)
        k = min(NEIGHBOURS, X.shape[1])
        hi_s, hi = timed(lambda: [select_high(R.copy(), k) for R in B], a.repeats)
        lo_s, lo = timed(lambda: [select_low(R.copy(), k) for R in B], a.repeats)
        for h, low in zip(hi, lo):  # the same kept values: count and sum of the positive ones
            assert (h > 0).sum() == (low > 0).sum() and np.isclose(h[h > 0].sum(), low[low > 0].sum(), rtol=1e-6)
        sim_s, _ = timed(lambda: knn_similarity(X, p), a.repeats)
        rp_s, _ = timed(lambda: models.get("rp3beta", alpha=0.6, beta=0.6).fit(train), a.repeats)
        row = (f"| {name} | {X.shape[0]:,} x {X.shape[1]:,} | {hi_s:.2f} | {lo_s:.2f} | {hi_s / lo_s:.1f}x | "
               f"{sim_s:.2f} | {rp_s:.2f} |")
        lines.append(row)
        print(row, flush=True)
    if a.out:
        head = ["# Item-item top-k similarity (benchmarks/bench_similarity.py)", "",
                f"python benchmarks/bench_similarity.py --datasets {a.datasets} --repeats {a.repeats}", "",
                "Seconds, medians; this CPU. See the script's docstring for the columns.", ""]
        Path(a.out).write_text("\n".join(head + lines) + "\n")


if __name__ == "__main__":
    main()
