#!/usr/bin/env python
"""Four more ways past the best ML-1M fusion, on the validation cut: gating, popularity, time, activity.

    python benchmarks/bench_fusion_signals.py [--seed 0] [--out benchmarks/results/fusion_signals.md]

ML-1M ratings >= 4, the competition protocol (each user's last event + 9 random earlier ones). The test holdout
is cut (seed) and never scored; everything is on the validation cut of the training part (seed + 100), as
``bench_parts.py``. The starting point is ``bench_parts.py --members``'s best fusion, z(edlae) + b z(ials) +
c z(seqrules) with (b, c) picked on this same cut. Every row below picks its own extra weight or threshold on
this cut too, so each is an in-sample upper bound of what the idea could add:

- **gate**: the fusion's 10th item is replaced by seqrules' first guess (when not already in the list) for the
  users where seqrules is most confident: its top score, its top-1 minus top-2 margin, or their ratio; the
  share of users gated is picked on the cut. This is the "per-part" use of a sequential member at its most
  selective: one slot, only where it looks sure.
- **popularity**: + w z(log(1 + item count)), for w in -0.6 .. 0.6.
- **time**: + w z(log p), p = the item's share of the events in the time slices where the user has events
  (20 slices of equal event mass), weighted by the user's events in each: what was being rated when this user
  was rating.
- **activity**: (b, c) picked separately for the users' history-length terciles, against the one pick for all
  users from the same (wider) grid.

Recall@10 overall and by part. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHARES = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def held_out(cut, items: np.ndarray) -> np.ndarray:
    """Per user of ``cut``, whether ``items`` (one a user) is one of the user's held-out events."""
    truth = cut.val.matrix[cut.users].tocsr()
    return np.asarray(truth[np.arange(len(cut.users)), items]).ravel() != 0


def gate_gain(cut, fused_top: np.ndarray, seq_top: np.ndarray) -> np.ndarray:
    """Per user, the hits gained by putting ``seq_top`` (one item a user) in place of the list's 10th item:
    +1, 0 or -1 (0 where that item is already in the list)."""
    inside = (fused_top == seq_top[:, None]).any(1)
    return np.where(inside, 0, held_out(cut, seq_top).astype(int) - held_out(cut, fused_top[:, -1]).astype(int))


def time_share(tr, users: np.ndarray, slices: int = 20) -> np.ndarray:
    """log of each item's share of the events in the time slices (equal event mass) where each user has events,
    weighted by the user's events in each slice: users x items."""
    t = np.asarray(tr.time, dtype=np.int64)
    cut_at = np.quantile(t, np.linspace(0, 1, slices + 1)[1:-1])
    s = np.searchsorted(cut_at, t)
    items = sp.csr_matrix((np.ones(len(t)), (s, tr.item)), shape=(slices, tr.n_items)).toarray()
    items /= np.maximum(items.sum(1, keepdims=True), 1.0)
    per_user = sp.csr_matrix((np.ones(len(t)), (tr.user, s)), shape=(tr.n_users, slices)).toarray()[users]
    per_user /= np.maximum(per_user.sum(1, keepdims=True), 1.0)
    return np.log(per_user @ items + 1e-6)


def main() -> None:
    from bench_parts import ValidationCut, best_fusion, strongest_members, z

    from toprec import metrics, models
    from toprec.recommend import topk_rows

    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    cut = ValidationCut(a.seed)
    tr, users = cut.tr, cut.users

    def parts(top: np.ndarray) -> list[float]:
        p = cut.parts(top)
        return [p["all"], *(p[name] for name in cut.val.parts)]

    SE = cut.masked(models.get("ease", l2=1200.0).fit(tr).score(users))
    SR = cut.masked(models.get("seqrules").fit(tr).score(users))
    SD, SI = strongest_members(cut)
    zD, zI, zR = z(SD), z(SI), z(SR)
    (b, c), n, _, F = best_fusion(cut, zD, zI, zR)
    top = topk_rows(F, 10)[0]
    rows = [("ease l2=1200", parts(topk_rows(SE, 10)[0])),
            (f"best of {n} fusions z(edlae) + b z(ials) + c z(seqrules), picked on this cut (b={b:g}, c={c:g})",
             parts(top))]  # fmt: skip

    # gate: seqrules' first guess into the 10th slot for the users where it is most confident
    seq_items, seq_scores = topk_rows(SR, 2)
    gain = gate_gain(cut, top, seq_items[:, 0])
    s1, s2 = seq_scores[:, 0], seq_scores[:, 1]
    inside = (top == seq_items[:, :1]).any(1)  # its first guess already in the fused list: nothing to swap
    notes = []
    for name, conf in (("top score", s1), ("top-1 minus top-2", s1 - s2), ("top-1 / top-2", s1 / np.maximum(s2, 1e-12))):
        order = np.argsort(-conf, kind="stable")
        total = np.cumsum(gain[order])
        for share in SHARES:
            chosen = order[: max(1, int(round(share * len(users))))]
            chosen = chosen[~inside[chosen]]
            gated = top.copy()
            gated[chosen, -1] = seq_items[chosen, 0]
            rows.append((f"gate by seqrules' {name}: its first guess as the 10th item for the {share:.0%} most "
                         f"confident users", parts(gated)))  # fmt: skip
        k = int(total.argmax()) + 1
        notes.append(f"seqrules' {name}: the best share picked on the cut gates {k:,} users for "
                     f"{total[k - 1] / len(users) / 10:+.5f} recall@10")  # fmt: skip

    # popularity
    pop = np.log1p(np.asarray(tr.matrix.astype(bool).sum(0)).ravel().astype(np.float64))
    zP = (pop - pop.mean()) / pop.std()
    for w in (-0.6, -0.3, -0.1, 0.1, 0.3, 0.6):
        rows.append((f"fusion + {w:g} z(log item count)", parts(topk_rows(F + w * zP[None, :], 10)[0])))

    # what was being rated when the user was rating
    zT = z(cut.masked(time_share(tr, users)))
    rows.append(("time-slice popularity alone", parts(topk_rows(zT, 10)[0])))
    for w in (0.1, 0.3, 0.6, 1.0):
        rows.append((f"fusion + {w:g} z(time-slice popularity)", parts(topk_rows(F + w * zT, 10)[0])))

    # (b, c) per activity tercile
    length = np.diff(tr.matrix.indptr)[users]
    tercile = np.digitize(length, np.quantile(length, [1 / 3, 2 / 3]))
    grid = [(bb, cc) for bb in (0.5, 1.0, 2.0, 3.0, 5.0, 8.0) for cc in (0.0, 0.1, 0.3)]
    tops = {g: topk_rows(zD + g[0] * zI + (g[1] * zR if g[1] else 0.0), 10)[0] for g in grid}  # 0 * -inf is nan
    picked = np.empty_like(top)
    for t in np.unique(tercile):  # tied quantiles can leave a tercile empty
        m = tercile == t
        g = max(grid, key=lambda g: metrics.per_user("recall@10", tops[g][m], cut.val.matrix[users[m]]).mean())
        picked[m] = tops[g][m]
        notes.append(f"tercile {t + 1} (history <= {int(length[m].max())} events, {int(m.sum()):,} users): "
                     f"(b, c) = {g}")  # fmt: skip
    glob = max(grid, key=lambda g: metrics.per_user("recall@10", tops[g], cut.val.matrix[users]).mean())
    rows.append((f"(b, c) picked for all users from the same {len(grid)} (b={glob[0]:g}, c={glob[1]:g})",
                 parts(tops[glob])))  # fmt: skip
    rows.append((f"(b, c) picked per history-length tercile from {len(grid)}", parts(picked)))

    base = rows[0][1][0]
    lines = [f"ML-1M ratings >= 4, validation cut (seed {a.seed + 100}) of the training part (test seed {a.seed}); "
             f"{len(users):,} users, recall@10", "",
             "| lists | recall@10 | vs ease | vs the fusion | last | random |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    fused = rows[1][1][0]
    lines += [f"| {name} | {r[0]:.4f} | {100 * (r[0] / base - 1):+.1f}% | {r[0] - fused:+.4f} | "
              + " | ".join(f"{v:.4f}" for v in r[1:]) + " |" for name, r in rows]
    hit10, hit_seq = held_out(cut, top[:, -1]).mean(), held_out(cut, seq_items[:, 0]).mean()
    lines += ["", f"- The fusion's 10th item is a held-out event for {hit10:.1%} of the users; seqrules' first "
                  f"guess for {hit_seq:.1%}."] + [f"- {x}" for x in notes]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(f"# More signals for ML-1M's best fusion (benchmarks/bench_fusion_signals.py)\n\n```\n"
                         f"python benchmarks/bench_fusion_signals.py --out {a.out}\n```\n\n{text}\n")


if __name__ == "__main__":
    main()
