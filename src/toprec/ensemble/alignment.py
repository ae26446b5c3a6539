"""``align``: does a validation fold rank single models like the leaderboard's stand-in does?

Each model's fold-A vs fold-B recall, the gap's standard error, and across
models the Spearman correlation and the gap's noise level (folds as in
:mod:`toprec.ensemble.folds`; default scheme ``events``). Named ``alignment``
so that the module does not share its name with the :func:`align` function
that ``toprec.ensemble`` exports.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from .. import progress
from ..errors import ToprecError
from .folds import Folds, fold_metrics, gap_se, make_folds, per_user_recall
from .members import parse_members


def align(
    data,
    members,
    k: int = 10,
    scheme: str = "events",
    seed: int = 0,
    last: int = 1,
    random: int = 9,
    stratify: bool = True,
    folds: Folds | None = None,
) -> dict[str, Any]:
    """For each model: fold-A (validation) vs fold-B (leaderboard stand-in) recall@k.

    The default scheme is ``events``: fold A is a validation cut from the
    training data exactly like fold B, the stand-in for the hidden test, was
    cut from all of it, and both are scored on the same users — the
    competition's question "does my validation rank models like the
    leaderboard?". ``users`` instead compares two halves of the users (public
    vs private leaderboard), ``nested`` adds the refit with the validation
    events (its gaps then carry the gain from the extra training data).

    Returns per-model rows (``fold_a``, ``fold_b``, ``gap = fold_b - fold_a``,
    ``gap_se``: the gap's standard error from the per-user recalls) and, across
    models, the mean and max absolute gap, the Spearman rank correlation of the
    two columns (does validation order models like the leaderboard does?), and
    two readings of the gap: ``noise_abs_gap`` = sqrt(2/pi) * mean ``gap_se``,
    the mean |gap| that sampling alone produces when the folds truly agree
    (E|N(0, se)|), and ``mean_abs_gap_centred``, the mean |gap - mean gap|: how
    much models disagree once the offset they all share (easier users in one
    fold, less training data for the other) is taken out. Its own noise level
    is ``noise_abs_gap_centred`` (the same formula on per-user recalls centred
    across models: the models share the users, so most of the sampling noise
    is shared too and cancels). The standard errors treat the users scheme's
    halves as a random split; its activity-matched pairs make them slightly
    conservative.
    """
    from scipy.stats import spearmanr

    members = parse_members(members)
    for m in members:
        if not m.refittable:
            raise ToprecError(f"align: member '{m.label}' is a file; align needs models it can fit on each fold")
    folds = folds or make_folds(data, scheme, seed, last, random, stratify)
    progress.log(f"validation: {folds.description}")
    same_fit = folds.same_fit
    r = f"recall@{k}"
    rows = []
    per_a: list[np.ndarray] = []
    per_b: list[np.ndarray] = []
    for m in members:
        t0 = time.perf_counter()
        la = m.lists(folds.search_train, folds.fold_a.users, k, "search")
        if not same_fit:
            m.release()
        lb = la if folds.same_lists else m.lists(folds.confirm_train, folds.fold_b.users, k, "search")
        m.release()
        a, b = fold_metrics(la, folds.fold_a, k), fold_metrics(lb, folds.fold_b, k)
        per_a.append(per_user_recall(la, folds.fold_a, k))
        per_b.append(per_user_recall(lb, folds.fold_b, k))
        se = gap_se(per_a[-1], folds.fold_a.users, per_b[-1], folds.fold_b.users)
        seconds = round(time.perf_counter() - t0, 2)
        rows.append({"label": m.label, "fold_a": a, "fold_b": b, "gap": b[r] - a[r], "gap_se": se, "seconds": seconds})
    va = np.array([x["fold_a"][r] for x in rows])
    vb = np.array([x["fold_b"][r] for x in rows])
    gaps = vb - va
    ses = np.array([x["gap_se"] for x in rows])
    # the centred gaps (gap - mean gap) are the gaps of per-user recalls centred across models
    ca, cb = np.array(per_a), np.array(per_b)
    ca, cb = ca - ca.mean(0), cb - cb.mean(0)
    ses_c = np.array([gap_se(ca[j], folds.fold_a.users, cb[j], folds.fold_b.users) for j in range(len(rows))])
    rho = float(spearmanr(va, vb).statistic) if len(rows) >= 3 and va.std() > 0 and vb.std() > 0 else float("nan")
    return {
        "scheme": folds.scheme,
        "protocol": folds.description,
        "k": k,
        "seed": seed,
        "fold_a": folds.fold_a.counts,
        "fold_b": folds.fold_b.counts,
        "models": rows,
        "mean_abs_gap": float(np.abs(gaps).mean()),
        "max_abs_gap": float(np.abs(gaps).max()),
        "mean_gap": float(gaps.mean()),
        "mean_abs_gap_centred": float(np.abs(gaps - gaps.mean()).mean()),
        "noise_abs_gap": float(np.sqrt(2.0 / np.pi) * ses.mean()),
        "noise_abs_gap_centred": float(np.sqrt(2.0 / np.pi) * ses_c.mean()) if len(rows) > 1 else 0.0,
        "spearman": rho,
        "best_fold_a": rows[int(np.argmax(va))]["label"],
        "best_fold_b": rows[int(np.argmax(vb))]["label"],
    }



def align_seeds(data, members, seeds: Sequence[int], **kwargs) -> dict[str, Any]:
    """:func:`align` once per split seed; the per-seed reports and their averages.

    One split is one draw: with a few thousand users, which users land in
    which fold moves every model's gap together by about ``noise_abs_gap``.
    Several seeds show the spread, and the averages are the expected values.
    With the ``users`` scheme a seed redraws the held-out events and the
    halves; with ``events`` and ``nested`` it redraws the random held-out
    events, and with them fold A's "last" (the latest event left after fold B);
    fold B's last events and the evaluated users stay the same.
    """
    seeds = list(seeds)
    if not seeds:
        raise ToprecError("align: no seeds")
    runs = []
    for s in seeds:
        runs.append(align(data, members, seed=s, **kwargs))
    keys = ("mean_abs_gap", "max_abs_gap", "mean_gap", "mean_abs_gap_centred", "noise_abs_gap",
            "noise_abs_gap_centred", "spearman")  # fmt: skip

    def _nan(values, fn) -> float:
        v = np.asarray(values, dtype=np.float64)
        return float(fn(v[~np.isnan(v)])) if (~np.isnan(v)).any() else float("nan")

    return {
        "seeds": seeds,
        "runs": runs,
        "mean": {key: _nan([r_[key] for r_ in runs], np.mean) for key in keys},
        "min_spearman": _nan([r_["spearman"] for r_ in runs], np.min),
        "max_mean_abs_gap": float(max(r_["mean_abs_gap"] for r_ in runs)),
    }

