#!/usr/bin/env python
"""A closed-form next-item model (SLIT-like ridge regression) against seqrules, on ML-1M's last event.

    python benchmarks/bench_seq_closed_form.py

Why: on a 2-core CPU SASRec is time-boxed inside ``toprec auto`` (15-19 epochs), and ML-1M's +7% target
wants a sequential member that finds the held-out last event as often as SASRec (0.177 on this validation
cut, ``bench_sasrec_batches.py``) in seconds. The model here regresses the next item on the user's
previous ``n`` items, decayed ``d**p`` (p = 0 for the newest):
``B = (X'X + lam I)^-1 X'Y`` over every training event (rows of X: the decayed previous items; of Y: the
next item), and scores a user by his last ``n`` items, ``x @ B``. One items x items solve.

Data: ML-1M ratings >= 4 (../shared/data), bench_auto's split (seed 0; the test is never read) and a
validation holdout cut the same way from its training part (seed 100). Prints recall@10 on that holdout,
overall and by part, for seqrules (its defaults and auto's whole-history start) and a few (n, d, lam).
Session 18: the best setting finds the last event 0.158 of the time, seqrules' defaults 0.156; no route to
SASRec's 0.177.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SETTINGS = [(3, 0.5, 200.0), (5, 0.7, 100.0), (10, 0.8, 100.0), (10, 0.8, 500.0), (10, 0.8, 2000.0),
            (20, 0.9, 300.0)]  # fmt: skip


def decayed_previous(user: np.ndarray, item: np.ndarray, n_items: int, n: int, decay: float) -> sp.csr_matrix:
    """(events, items): row t holds ``decay**(p-1)`` at the item p steps before event t of the same user."""
    rows, cols, vals = [], [], []
    for p in range(1, n + 1):
        same = user[p:] == user[:-p]
        r = np.arange(p, len(item))[same]
        rows.append(r)
        cols.append(item[:-p][same])
        vals.append(np.full(len(r), decay ** (p - 1)))
    return sp.csr_matrix((np.concatenate(vals).astype(np.float64), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(item), n_items))  # fmt: skip


def main() -> None:
    from bench_auto import LOADERS

    from toprec import metrics, models, split
    from toprec.auto.plan import SEQRULES_START
    from toprec.recommend import topk_rows

    data, last, rnd = LOADERS["ml-1m"](0)
    train, _test = split.competition(data, last=last, random=rnd, seed=0)  # the test is never read
    tr, val = split.competition(train, last=last, random=rnd, seed=100)
    users = val.users
    seen = tr.matrix[users]

    def parts(S: np.ndarray) -> dict[str, float]:
        S = np.array(S, dtype=np.float64)
        S[seen.nonzero()] = -np.inf
        top, _ = topk_rows(S, 10)
        out = {"all": float(metrics.per_user("recall@10", top, val.matrix[users]).mean())}
        for name, M in val.parts.items():
            out[name] = float(metrics.per_user("recall@10", top, M[users]).mean())
        return out

    rows = []
    for name, params in (("seqrules, defaults", {}), ("seqrules, auto's whole-history start", SEQRULES_START)):
        t0 = time.perf_counter()
        m = models.get("seqrules", **params).fit(tr)
        rows.append((name, parts(m.score(users)), time.perf_counter() - t0))
    user, item, I = np.asarray(tr.user), np.asarray(tr.item), tr.n_items
    for n, decay, lam in SETTINGS:
        t0 = time.perf_counter()
        X = decayed_previous(user, item, I, n, decay)
        has = np.asarray(X.sum(1)).ravel() > 0
        X = X[has]
        Y = sp.csr_matrix((np.ones(int(has.sum())), (np.arange(int(has.sum())), item[has])), shape=(int(has.sum()), I))
        G = (X.T @ X).toarray()
        G[np.diag_indices(I)] += lam
        B = np.linalg.solve(G, (X.T @ Y).toarray())
        # the user's last n items, the newest weighted 1, then decay**p: seqrules' own vote matrix
        votes = models.get("seqrules", last_n=n, recency_decay=decay).fit(tr).vote_matrix(users, tr.matrix[users])
        S = votes @ B
        rows.append((f"ridge, n={n} d={decay:g} lam={lam:g}", parts(S), time.perf_counter() - t0))
    print(f"ML-1M ratings >= 4, validation holdout (seed 100) of bench_auto's training part; {len(users):,} users\n")
    print("| model | recall@10 | last event | random part | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, p, s in rows:
        print(f"| {name} | {p['all']:.4f} | {p['last']:.4f} | {p['random']:.4f} | {s:.1f} |")


if __name__ == "__main__":
    main()
