#!/usr/bin/env python
"""How much can the last-event part add? EASE + a sequential member on a validation cut, by part.

    python benchmarks/bench_parts.py [--l2 1200] [--seed 0] [--members] [--more]

ML-1M ratings >= 4 (../shared/data), the competition protocol (each user's
last event + 9 random earlier ones). The test holdout is cut (seed) and set
aside, never scored; everything here is on a validation holdout cut the same
way from the training part (seed + 100), as `toprec auto` would see it.
Recall@10 overall and by part for: EASE; seqrules (the closed-form sequential
member); their score fusion z(EASE) + b z(seqrules) for several b; and lists
that reserve the first s slots for seqrules' top s and fill the rest with
EASE's. The "additive" row is the issue's estimate: seqrules' last-event hit
rate and EASE's random-part recall together, which no single 10-item list
has to reach. ``--members``: also the tuned EDLAE and iALS of auto's ML-1M runs and the best of 15 score fusions
of them with seqrules, picked on the cut itself (an in-sample upper bound for such a fusion). ``--more`` (with
``--members``): two more candidates for that fusion, each added to the best of it at weights picked on the cut:
a user-user EASE (EASE on the transposed matrix, a users x users solve), a second iALS (512 factors) and
ADMM-SLIM (sparse, non-negative item weights).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def mask_seen(S, seen) -> np.ndarray:
    """Scores as float64 with the training items ``seen`` (CSR, rows aligned) at -inf."""
    S = np.array(S, dtype=np.float64)
    S[seen.nonzero()] = -np.inf
    return S


def z(S: np.ndarray) -> np.ndarray:
    """Each row's z-scores over its finite entries (-inf stays -inf): the score fusion's scale."""
    S = np.where(np.isfinite(S), S, np.nan)
    m, s = np.nanmean(S, 1, keepdims=True), np.nanstd(S, 1, keepdims=True)
    out = (S - m) / np.where(s > 0, s, 1.0)
    return np.where(np.isnan(out), -np.inf, out)


class ValidationCut:
    """ML-1M's test holdout cut with ``seed`` and set aside (never scored), then a validation holdout cut the same
    way from the training part (``seed + 100``), as `toprec auto` would see it: ``tr`` / ``val``, the users."""

    def __init__(self, seed: int):
        from bench_side import ml1m

        from toprec import split

        data, self.last, self.random = ml1m()
        train, _test = split.competition(data, last=self.last, random=self.random, seed=seed)  # never used here
        self.tr, self.val = split.competition(train, last=self.last, random=self.random, seed=seed + 100)
        self.users = self.val.users
        self.seen = self.tr.matrix[self.users]

    def masked(self, S) -> np.ndarray:
        return mask_seen(S, self.seen)

    def parts(self, top: np.ndarray) -> dict[str, float]:
        """recall@10 of the lists ``top`` overall ("all") and by part ("last", "random")."""
        from toprec import metrics

        out = {"all": metrics.per_user("recall@10", top, self.val.matrix[self.users]).mean()}
        for name, M in self.val.parts.items():
            out[name] = metrics.per_user("recall@10", top, M[self.users]).mean()
        return out


def strongest_members(cut: ValidationCut) -> tuple[np.ndarray, np.ndarray]:
    """The masked scores of EDLAE and iALS at the settings auto tuned on ML-1M (session 17), for ``cut``'s users."""
    from toprec import models

    SD = cut.masked(models.get("edlae", l2=243.43).fit(cut.tr).score(cut.users))
    SI = cut.masked(models.get("ials", factors=256, regularization=100.0, alpha=10.0).fit(cut.tr).score(cut.users))
    return SD, SI


def best_fusion(cut: ValidationCut, zD, zI, zR) -> tuple[tuple[float, float], int, dict, np.ndarray]:
    """The best of 15 fusions z(edlae) + b z(ials) + c z(seqrules), picked on ``cut`` itself (in-sample: an upper
    bound): ``(b, c)``, the grid's size, that fusion's recall by part and its scores."""
    from toprec.recommend import topk_rows

    grid = [(b, c) for b in (0.5, 1.0, 2.0, 3.0, 5.0) for c in (0.0, 0.1, 0.3)]
    fused = {(b, c): cut.parts(topk_rows(zD + b * zI + (c * zR if c else 0.0), 10)[0]) for b, c in grid}
    (b, c), best = max(fused.items(), key=lambda kv: kv[1]["all"])
    return (b, c), len(grid), best, zD + b * zI + (c * zR if c else 0.0)


def user_ease(tr, users: np.ndarray, l2: float) -> np.ndarray:
    """EASE on the transposed matrix: each user's row rebuilt from the other users' rows (zero self-weight),
    ``B = I - P / diag(P)`` with ``P = (X X^T + l2 I)^-1``; the scores of ``users`` are ``B[:, users]^T X``."""
    import scipy.sparse as sp

    X = sp.csr_matrix(tr.matrix, dtype=np.float64)
    P = np.linalg.inv((X @ X.T).toarray() + l2 * np.eye(X.shape[0]))
    W = -P[users] / np.diag(P)[users, None]
    W[np.arange(len(users)), users] = 0.0
    return np.asarray(X.T @ W.T).T


def main() -> None:
    from toprec import models
    from toprec.recommend import topk_rows

    ap = argparse.ArgumentParser()
    ap.add_argument("--l2", type=float, default=1200.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", action="store_true", help="also EDLAE, iALS and their fusion picked on the cut")
    ap.add_argument("--more", action="store_true", help="with --members: user-user EASE, iALS 512, ADMM-SLIM")
    a = ap.parse_args()
    cut = ValidationCut(a.seed)
    tr, users, masked, parts = cut.tr, cut.users, cut.masked, cut.parts
    last, rnd = cut.last, cut.random

    rows = []
    SE = masked(models.get("ease", l2=a.l2).fit(tr).score(users))
    SR = masked(models.get("seqrules").fit(tr).score(users))
    topE, _ = topk_rows(SE, 20)
    topR, _ = topk_rows(SR, 10)
    rows.append((f"ease l2={a.l2:g}", parts(topE[:, :10])))
    rows.append(("seqrules (defaults)", parts(topR)))
    zE, zR = z(SE), z(SR)
    for b in (0.1, 0.3, 0.5, 1.0):
        rows.append((f"score fusion z(ease) + {b:g} z(seqrules)", parts(topk_rows(zE + b * zR, 10)[0])))
    for s in (1, 2, 3):
        # the first s slots from seqrules, then EASE's list without those items (vectorised)
        head = topR[:, :s]
        dup = (topE[:, :, None] == head[:, None, :]).any(2)
        order = np.argsort(dup, axis=1, kind="stable")  # EASE's items not in head, in EASE's order
        rest = np.take_along_axis(topE, order, 1)[:, : 10 - s]
        rows.append((f"seqrules' top {s} first, then ease", parts(np.hstack([head, rest]))))
    if a.members:
        # the random part's ceiling: the strongest closed-form and factor members (auto's tuned settings on
        # ML-1M, session 17) fused, the weights picked on this same cut (in-sample: an upper bound for a fusion)
        SD, SI = strongest_members(cut)
        rows.append(("edlae l2=243", parts(topk_rows(SD, 10)[0])))
        rows.append(("ials factors=256 reg=100 alpha=10", parts(topk_rows(SI, 10)[0])))
        (b, c), n, best, top = best_fusion(cut, z(SD), z(SI), zR)
        rows.append((f"best of {n} fusions z(edlae) + b z(ials) + c z(seqrules), picked on this cut "
                     f"(b={b:g}, c={c:g})", best))  # fmt: skip
        if a.more:
            ials512 = models.get("ials", factors=512, regularization=100.0, alpha=10.0).fit(tr).score(users)
            slim = models.get("admm-slim", l1=1.0, l2=200.0).fit(tr).score(users)
            for name, short, S in (("user-user ease l2=1000", "user-user ease", user_ease(tr, users, 1000.0)),
                                   ("ials factors=512 reg=100 alpha=10", "ials 512", ials512),
                                   ("admm-slim l1=1 l2=200", "admm-slim", slim)):
                zS = z(masked(S))
                rows.append((name, parts(topk_rows(zS, 10)[0])))
                extra = {d: parts(topk_rows(top + d * zS, 10)[0]) for d in (0.5, 1.0, 2.0, 3.0)}
                d, got = max(extra.items(), key=lambda kv: kv[1]["all"])
                rows.append((f"that best fusion + d z({short}), d picked on this cut (d={d:g})", got))
    e, r = rows[0][1], rows[1][1]
    add = {"last": r["last"], "random": e["random"]}
    add["all"] = (last * add["last"] + rnd * add["random"]) / (last + rnd)
    rows.append(("additive estimate (not a list)", add))
    base = rows[0][1]["all"]
    print(f"ML-1M ratings >= 4, validation holdout cut from the training part (seed {a.seed + 100}); "
          f"{len(users):,} users, recall@10\n")  # fmt: skip
    print("| lists | recall@10 | vs ease | last | random |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, p in rows:
        print(f"| {name} | {p['all']:.4f} | {100 * (p['all'] / base - 1):+.1f}% | {p['last']:.4f} | {p['random']:.4f} |")


if __name__ == "__main__":
    main()
