#!/usr/bin/env python
"""The compiled kernels (numba) against the scipy paths they replace, in one process, runs alternating.

    python benchmarks/bench_kernels.py --out benchmarks/results/kernels.md

On the competition-scale synth (``benchmarks/data/synth``, see bench_ease.py):
the Gram ``X^T X`` (``linalg.gram``: compiled pairs kernel on every core vs
scipy's sparse product in forked workers) and the scores of ``--users`` users
(``ItemItemRecommender._score``: compiled kernel vs scipy's CSR x dense in
column blocks), each with ``TOPREC_KERNELS`` unset and ``numpy``. Wall
seconds, medians; the ratio of medians is the figure to quote on a shared
machine. Both give the same numbers (checked).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
#: the line after which ``--out`` keeps the file's text
MARKER = "<!-- kept by bench_kernels.py -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "synth")
    ap.add_argument("--users", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_ease import ensure_data

    from toprec import Dataset
    from toprec.models import kernels, linalg
    from toprec.models.ease import EASE

    ds = Dataset.load(ensure_data(a.data))
    X = sp.csr_matrix(ds.matrix, dtype=np.float32)
    kernels.warm()
    t = {k: [] for k in ("gram kernel", "gram scipy", "score kernel", "score unfused", "score scipy")}
    G = {}
    for _ in range(a.runs):
        for mode in ("kernel", "scipy"):
            os.environ["TOPREC_KERNELS"] = "" if mode == "kernel" else "numpy"
            s = time.perf_counter()
            G[mode] = linalg.gram(X)
            t[f"gram {mode}"].append(time.perf_counter() - s)
    os.environ["TOPREC_KERNELS"] = ""
    assert np.array_equal(G["kernel"], G["scipy"]), "the two Gram matrices differ"
    m = EASE(l2=500.0, device="cpu")
    Gk = G.pop("kernel")
    Gk[np.diag_indices_from(Gk)] += 500.0
    P = linalg.spd_inverse(Gk)
    P /= -np.diag(P).copy()[None, :]
    P[np.diag_indices_from(P)] = 0.0
    m.similarity = P
    m.form_ = "items"
    H = X[: a.users]
    S = {}
    for _ in range(a.runs):
        for mode in ("kernel", "unfused", "scipy"):  # unfused: the previous scoring kernel
            os.environ["TOPREC_KERNELS"] = {"kernel": "", "unfused": "unfused", "scipy": "numpy"}[mode]
            s = time.perf_counter()
            S[mode] = m._score(None, H)
            t[f"score {mode}"].append(time.perf_counter() - s)
    os.environ["TOPREC_KERNELS"] = ""
    same = np.array_equal(S["kernel"], S["scipy"]) and np.array_equal(S["unfused"], S["scipy"])
    med = {k: statistics.median(v) for k, v in t.items()}
    rows = ["| product | compiled kernel s | scipy s | kernel / scipy | same numbers |", "|---|---|---|---|---|",
            f"| Gram X^T X ({X.shape[0]:,} x {X.shape[1]:,}, {X.nnz:,} nnz) | {med['gram kernel']:.2f} | "
            f"{med['gram scipy']:.2f} | {med['gram kernel'] / med['gram scipy']:.2f} | yes |",
            f"| scores of {a.users:,} users (H @ B, B {X.shape[1]:,}^2) | {med['score kernel']:.2f} | "
            f"{med['score scipy']:.2f} | {med['score kernel'] / med['score scipy']:.2f} | {'yes' if same else 'NO'} |",
            f"| the same scores, previous kernel (`TOPREC_KERNELS=unfused`: 256-column stripes, no item blocks) | "
            f"{med['score unfused']:.2f} | {med['score scipy']:.2f} | {med['score unfused'] / med['score scipy']:.2f} | "
            f"{'yes' if same else 'NO'} |"]  # fmt: skip
    head = (f"`python benchmarks/bench_kernels.py {' '.join(sys.argv[1:])}`: medians of {a.runs} alternating runs, "
            f"wall seconds, {os.cpu_count()} cores (load average at the end: "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; the machine is shared: quote the ratio).")  # fmt: skip
    print(head + "\n\n" + "\n".join(rows))
    if a.out:  # sections below the marker (written by hand from other scripts' runs) are kept
        old = Path(a.out).read_text() if Path(a.out).exists() else ""
        kept = old[old.index(MARKER):] if MARKER in old else ""
        Path(a.out).write_text("# Compiled kernels vs scipy, same process\n\n" + head + "\n\n" + "\n".join(rows) + "\n"
                               + ("\n" + kept if kept else ""))


if __name__ == "__main__":
    main()
