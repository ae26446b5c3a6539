#!/usr/bin/env python
"""Does "rated near each other in time" add to EASE on ML-1M's random part? A validation-cut check.

    python benchmarks/bench_window_cooccurrence.py [--seed 0] [--out benchmarks/results/window_cooccurrence.md]

ML-1M ratings >= 4, the competition protocol (each user's last event + 9 random earlier ones). The test holdout
is cut (seed) and never scored; everything is on the validation cut of the training part (seed + 100), as
``bench_parts.py``. The idea: nine of the ten held-out events are random earlier ones, and their neighbours in
the user's timeline stay in training; MovieLens users rate in sessions, so items rated within a few events of
each other by other users might point at the held-out ones better than EASE's whole-history co-occurrence.
The member: seqrules' gap-weighted transition counts (``transition_counts``, window w) made symmetric
(``T + T^T``: before and after), rows normalised by their total ** 0.5, every history item voting equally. Rows:
EASE (l2 = 1200) and EDLAE (l2 = 243, auto's tuned value on ML-1M) alone; the window member alone; and
z(EASE or EDLAE) + b z(window member) for b in 0.1 .. 0.7. Recall@10 overall and by part. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    from bench_parts import ValidationCut, z

    from toprec import models
    from toprec.models.seqrules import transition_counts
    from toprec.recommend import topk_rows

    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", default="1,3,10,30")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    cut = ValidationCut(a.seed)
    tr, users, seen, masked = cut.tr, cut.users, cut.seen, cut.masked

    def parts(S: np.ndarray) -> list[float]:
        p = cut.parts(topk_rows(S, 10)[0])
        return [p["all"], *(p[name] for name in cut.val.parts)]

    rows: list[tuple[str, list[float]]] = []
    SE = masked(models.get("ease", l2=1200.0).fit(tr).score(users))
    SD = masked(models.get("edlae", l2=243.43).fit(tr).score(users))
    rows += [("ease l2=1200", parts(SE)), ("edlae l2=243", parts(SD))]
    zE, zD = z(SE), z(SD)
    H = sp.csr_matrix(seen, dtype=np.float32)
    for w in (int(x) for x in a.windows.split(",")):
        T = transition_counts(tr, tr.n_items, w)
        B = sp.csr_matrix(T + T.T)
        tot = np.asarray(B.sum(1)).ravel()
        scale = np.zeros_like(tot)
        np.power(tot, -0.5, out=scale, where=tot > 0)
        ST = masked((H @ (sp.diags(scale.astype(np.float32)) @ B)).toarray())
        rows.append((f"window w={w}, both directions", parts(ST)))
        zT = z(ST)
        for b in (0.1, 0.2, 0.4, 0.7):
            rows.append((f"z(ease) + {b:g} z(window w={w})", parts(zE + b * zT)))
            rows.append((f"z(edlae) + {b:g} z(window w={w})", parts(zD + b * zT)))
    base = rows[0][1][0]
    lines = [f"ML-1M ratings >= 4, validation cut (seed {a.seed + 100}) of the training part (test seed {a.seed}); "
             f"{len(users):,} users, recall@10", "",
             "| lists | recall@10 | vs ease | last | random |", "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    lines += [f"| {name} | {r[0]:.4f} | {100 * (r[0] / base - 1):+.1f}% | {r[1]:.4f} | {r[2]:.4f} |"
              for name, r in rows]
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(f"# Items rated near each other in time, fused with EASE / EDLAE "
                         f"(benchmarks/bench_window_cooccurrence.py)\n\n```\n"
                         f"python benchmarks/bench_window_cooccurrence.py --out {a.out}\n```\n\n{text}\n")  # fmt: skip


if __name__ == "__main__":
    main()
