"""The candidate members: data-adaptive starting points, search spaces, a-priori cost, and the budget.

Starting points are enqueued as each study's first trials, so a member is
already good after one or two fits, and the search then refines around them
(TPE with 20 trials in a 4-D log space missed the winning iALS region on
Last.fm; starting there fixes that). Costs are rough seconds on a 2-core CPU
from the data's shape; the pipeline replaces them by the measured fit time
after a member's first trial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ToprecError
from ..experiment.config import parse_budget  # noqa: F401 - re-exported

@dataclass
class Candidate:
    """One member the planner may use."""

    name: str
    #: parameters fixed for every trial (not searched)
    fixed: dict[str, Any]
    #: enqueued as the study's first trials (data-adaptive defaults first)
    starts: list[dict[str, Any]]
    #: the search space (kind, low, high) or ("categorical", [...]); a subset of the model's own
    space: dict[str, tuple]
    #: a-priori seconds of one fit + scoring the validation users
    cost: float
    #: most trials worth running (a 1-D space saturates fast)
    max_trials: int
    #: lower runs first; the planner skips what cannot fit in the budget
    priority: int = 0
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


#: how much faster the epoch-trained members run on a GPU than on this 2-core CPU (measured at competition
#: scale: SASRec's epoch 3,400 s on this CPU, 7.3 s on an H100; kept conservative for the VAEs)
GPU_SPEEDUP = 100.0


#: seqrules' first start in auto: every history item votes, decayed 0.99 a step back (see :func:`candidates`)
SEQRULES_START = {"window": 9, "last_n": 200, "recency_decay": 0.99, "normalize": 0.3, "shrink": 25.0, "k": 200}


def _gpu(device: str) -> bool:
    """The torch members run on a GPU: ``cuda`` asked, or ``auto`` with one there."""
    if device == "cuda":
        return True
    if device != "auto":
        return False
    from ..device import cuda_available

    return cuda_available(quick=True)


#: BPR is planned up to this many users: the data whose choices are cross-fitted, with a re-ranker over every
#: validation cut (:mod:`.crossfit`, fold A up to ``CROSSFIT_USERS`` = 2,000 users, about half the users). Its
#: gain was measured there; on ML-1M (not cross-fitted, the budget already full) it would only take time
BPR_MAX_USERS = 4000


def _gflops(x: float) -> float:
    """Seconds for x floating-point operations at a sustained ~20 GFLOP/s (BLAS on 2 cores, float32)."""
    return x / 2e10


def candidates(p: dict[str, Any], device: str = "auto", only: list[str] | None = None) -> list[Candidate]:
    """The portfolio for a data profile ``p`` (see :func:`~toprec.auto.profile.profile`), cheapest first."""
    U, I, E = p["users"], p["items"], p["events"]
    n = min(U, I)
    dense = _gflops(n**3 + 2.0 * U * I * n) + E / 2e6  # Gram/Woodbury solve + scoring every user + data
    # EASE's best l2 grows with the Gram diagonal (item popularity): ~5x the mean item count, within reason
    l2 = float(min(1e4, max(10.0, round(5.0 * p["mean_item_count"], 1))))
    ease_starts = [{"l2": l2}, {"l2": round(l2 / 5, 2)}, {"l2": round(l2 * 5, 2)}]
    dev = {"device": device} if device != "auto" else {}
    out: list[Candidate] = [
        Candidate("ease", dict(dev), ease_starts, {"l2": ("log_float", 1.0, 1e5)}, dense, 10, 0,
                  f"closed form; l2 starts at 5x the mean item count ({l2:g})"),
        Candidate("rp3beta", {}, [{"alpha": 0.6, "beta": 0.6}, {"alpha": 1.0, "beta": 0.3}],
                  {"alpha": ("float", 0.2, 2.0), "beta": ("float", 0.0, 1.0), "k": ("log_int", 50, 1000)},
                  E / 1e6 * 2.0 + _gflops(2.0 * U * I * 50) + 1.0, 16, 1, "random walk, cheap"),
        Candidate("ials", {}, [{"factors": 128, "regularization": round(1.6 * max(U, 1) ** 0.4, 2), "alpha": 3.0,
                                "weighting": "none"},
                               {"factors": 128, "regularization": 50.0, "alpha": 10.0, "weighting": "none"},
                               {"factors": 128, "regularization": 50.0, "alpha": 10.0, "weighting": "bm25"},
                               {"factors": 256, "regularization": 100.0, "alpha": 10.0, "weighting": "none"}],
                  {"factors": ("log_int", 32, 512), "regularization": ("log_float", 1.0, 1000.0),
                   "alpha": ("log_float", 0.5, 50.0), "weighting": ("categorical", ("none", "bm25"))},
                  15 * (E * 128 * 4 + (U + I) * 128**2 * 4) / 2e9 + _gflops(2.0 * U * I * 128) + 1.0, 24, 2,
                  "factors 128 / reg 50 / alpha 10 won on Last.fm, BM25 confidences there; reg grows with users"),
        Candidate("edlae", {}, [{"l2": l2, "dropout": 0.25}, {"l2": round(l2 / 3, 2), "dropout": 0.5}],
                  {"l2": ("log_float", 1.0, 1e4), "dropout": ("float", 0.0, 0.75)},
                  _gflops(2 * n**3 + 2.0 * U * I * n) + E / 2e6, 8, 3,
                  "full-rank dropout autoencoder" + (" (user-space Woodbury form: users < items)" if U < I else "")),
    ]
    if U <= BPR_MAX_USERS:
        # BPR: pair-wise matrix factorisation, weaker alone than the list-wise members but another view of the data,
        # as one more re-ranker member on ML-100K's 8 cuts: out of fold +0.0013 / +0.0010 / +0.0005 (se ~0.0008;
        # benchmarks/bench_rerank_params.py --add bpr, auto_whatif.md session 16). ~7e-9 s per event, factor and
        # epoch on this CPU, one thread (implicit's SGD is reproducible only on one)
        out.append(Candidate("bpr", {}, [{}], {"factors": ("log_int", 32, 256),
                                               "learning_rate": ("log_float", 3e-3, 0.1),
                                               "regularization": ("log_float", 1e-4, 0.1)},
                             60 * E * 64 * 7e-9 + _gflops(2.0 * U * I * 64) + 1.0, 6, 2,
                             "pair-wise matrix factorisation: another view for the re-ranker over the cuts"))
    if p["side_files"]:
        # EASE's l2 grid too (Last.fm with tags: l2 105 = 5x the start scored 0.163 on validation against 0.150;
        # TPE over (l2, side_weight) did not find it in five trials)
        cease_starts = [{"l2": l2, "side_weight": 0.03}, {"l2": l2, "side_weight": 0.1},
                        {"l2": round(l2 * 5, 2), "side_weight": 0.03}, {"l2": round(l2 / 5, 2), "side_weight": 0.03}]
        out.append(Candidate("cease", dict(dev), cease_starts,
                             {"l2": ("log_float", 1.0, 1e5), "side_weight": ("log_float", 1e-3, 1.0)},
                             dense * 1.5, 10, 1, f"side files: {', '.join(p['side_files'])}"))
    if p["ordered"] and p["last_share"] > 0:
        from .. import models

        if "seqrules" in models.list():
            # auto scores the whole holdout (last event + random earlier ones), not the last event alone that the
            # model's defaults were chosen on: the whole history voting, slowly decayed, scored 0.110 / 0.111 on
            # ML-1M's fold A (two seeds) against the defaults' 0.065 / 0.063 and TPE's best of 5-8 trials in the
            # model's space (last_n <= 20) 0.083; ML-100K 0.163 / 0.157 against 0.095 / 0.097
            # (benchmarks/bench_seqrules_start.py)
            space = {**models.get_class("seqrules").search_space, "last_n": ("log_int", 1, 200)}
            out.append(Candidate("seqrules", {}, [SEQRULES_START, {}], space,
                                 E / 1e6 * 3.0 + _gflops(2.0 * U * I * 50) + 1.0, 12, 1,
                                 "the test holds each user's last event: a sequential member"))
    # EASER: an (items + pairs)^2 solve in item space; on wide data (users < items) the Woodbury form, users^2
    if U < I:
        out.append(Candidate("easer", {}, [{"l2": l2}], {"l2": ("log_float", 10.0, 1e4),
                                                         "l2_pairs": ("log_float", 100.0, 1e6)},
                             1.5 * _gflops(2 * U**3 + 2.0 * U * U * I) + 4 * E / 1e6, 4, 4,
                             "higher-order EASE (user-space Woodbury form: users < items)"))
    elif I <= 12_000:  # item space on a wide catalogue with many users: too slow
        out.append(Candidate("easer", {}, [{"l2": l2}], {"l2": ("log_float", 10.0, 1e4),
                                                         "l2_pairs": ("log_float", 100.0, 1e6)},
                             6 * _gflops(2 * I**3 + 2.0 * U * I * I) + 4 * E / 1e6, 4, 4, "higher-order EASE"))
    gpu = _gpu(device)
    speedup = GPU_SPEEDUP if gpu else 1.0
    out.append(Candidate("multivae", {}, [{}], {"dropout": ("float", 0.2, 0.7), "lr": ("log_float", 3e-4, 3e-3)},
                         60 * _gflops(6.0 * U * I * 600) / speedup + 10, 3, 5,
                         "epoch-trained; only with budget to spare"))
    # RecVAE: ~40 epochs of 3 encoder + 1 decoder passes over U x I (ML-1M: 407 s, ML-100K: 48 s on this CPU)
    out.append(Candidate("recvae", {}, [{}], {"gamma": ("log_float", 2e-3, 0.05), "lr": ("log_float", 3e-4, 3e-3),
                                              "dropout": ("float", 0.2, 0.7)},
                         40 * U * I * 6e-7 / speedup + 15, 3, 6, "epoch-trained, list-wise; with budget to spare"))
    if p["ordered"] and p["last_share"] > 0:
        # SASRec: full softmax over the items for every event, ~20 epochs (ML-1M on this CPU: 15 s an epoch in
        # batches of similar lengths, 28 s in random ones, ~2.5x that beside other jobs; minutes on a GPU): it
        # finds the held-out last event ~3x as often as EASE
        out.append(Candidate("sasrec", {"epochs": 30, "patience": 3}, [{}],
                             {"lr": ("log_float", 3e-4, 3e-3), "dropout": ("float", 0.1, 0.5)},
                             20 * E * I * 2e-8 / speedup + 20, 2, 7,
                             "the test holds each user's last event: a sequential transformer"
                             + ("" if gpu else " (CPU: only with a long budget)")))
    if only is not None:
        wanted = [n.strip().lower() for n in only if n.strip()]
        known = {c.name for c in out}
        if not wanted:
            raise ToprecError(f"--members: no member named (choose from {', '.join(sorted(known))})")
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ToprecError(f"--members: '{unknown[0]}' is not an auto member here (choose from "
                              f"{', '.join(sorted(known))})")  # fmt: skip
        out = [c for c in out if c.name in wanted]
    return sorted(out, key=lambda c: (c.priority, c.cost))


def check_space(c: Candidate, lookup: Callable[[str], type]) -> None:
    """Every searched and fixed parameter exists on the model (a wrong plan is a bug, said in one line)."""
    fields = lookup(c.name).Params.model_fields
    for key in [*c.space, *c.fixed, *(k for s in c.starts for k in s)]:
        if key not in fields:
            raise ToprecError(f"auto plan: model '{c.name}' has no parameter '{key}'")
    for s in c.starts:
        if set(s) - set(c.space):
            raise ToprecError(f"auto plan: a start of '{c.name}' sets {sorted(set(s) - set(c.space))}, not searched")
