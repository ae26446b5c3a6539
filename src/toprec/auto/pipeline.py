"""The auto pipeline's stages under one wall-clock budget; resumable after a kill.

1. Profile the data and plan the candidates (:mod:`.plan`).
2. Cut the folds once (``scheme="users"``): D = T + H, H's users halved into
   fold A (searched) and fold B (never searched).
3. Starting points: each candidate's data-adaptive first trials, cheapest
   first, while they fit in the budget (with a reserve for the final refit).
4. Tuning rounds: one TPE trial per member per round, two for the leader,
   until a member's trial cap or the budget. A cheap member (all its trials
   within ``CHEAP_SHARE`` of the budget) is tuned to its cap right after its
   starting points instead.
5. Ensemble: the tuned members' fold-A lists (no refit) fused with every
   method and searched on fold A, confirmed on fold B: the best fold-A member
   alone when the ensemble is below it there (``Ensemble.apply_fallback(...,
   against="alternative")``: one binary choice on the unseen fold, not the
   maximum over noisy members that ``toprec ensemble`` holds it to).
6. Re-ranker (with lightgbm installed, time permitting): a LightGBM ranker
   over the tuned members' fold-A lists, trained on fold A, replaces the
   choice of step 5 only when its fold-B recall beats it by more than one
   paired standard error (``OUT/rerank.json``).
7. Refit the kept members on all of D and fuse (or re-rank): the submission.

``OUT/state.json`` keeps the time spent so far, so a resumed run continues
with what is left of the budget; the studies and the best lists are on disk
(:mod:`.tuning`), and the ensemble's choice once made (``OUT/ensemble.json``).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import progress
from ..errors import ToprecError
from ..io import atomic_path, json_default
from .crossfit import RERANK_FITS, CrossFit, beats, crossfits, paired
from .plan import candidates, check_space
from .profile import profile

#: seconds always kept back for the ensemble search and writing
FIXED_RESERVE_S = 10.0
#: how many tuned members (best on fold A first) the ensemble search considers
MAX_MEMBERS = 5
#: the re-ranker's a-priori seconds: fixed + per candidate row of fold A (LightGBM, features; 2-core CPU)
RERANK_BASE_S, RERANK_ROW_S = 20.0, 4e-5
#: the re-ranker stage may run this share of the budget past the time kept for it (the final refit keeps its
#: own): with the box at exactly the kept time, ML-1M's boosting stopped at 160-205 trees (63-88 s) in two of
#: two runs; its early stopping usually ends it within 50-180 s
RERANK_SLACK = 0.05
#: the re-ranker stage is planned (time kept for it while tuning) only when its a-priori estimate is at most this
#: share of the budget: ML-100K's four rankers (~120 s) kept more than a 2-minute budget, so not even EASE's
#: 0.3 s trial started ("no member finished a trial"); a stage that is not planned still runs when tuning
#: leaves it the time (:func:`rerank_box`)
RERANK_MAX_SHARE = 0.5
#: small data with extra validation cuts: the re-ranker trains on the rows of as many cuts as this share of its
#: stage's box holds, by the time its first ranker (fold A of auto's cut) took
OVER_CUTS_USE = 0.7
#: ... each cut costing this many of those first rankers (two rankers on half the users of the cuts, one on all,
#: each row scored: 4 by the rows; measured in session 19's logs: ML-latest-small 2.5, ML-100K 3.4)
OVER_CUT_UNITS = 3.0
#: small data: the share of the time left (after what the later stages keep) the extra validation cuts may take.
#: At 0.5 the small-data runs ended at minute 10-25 of 30 while Multi-VAE, which carried ML-latest-small seed 0's
#: fusion gain offline, did not fit on the cuts; the later stages' reserves are kept in full either way
CUTS_SHARE = 0.9
#: the final refit on all the data, in units of a member's trial time (more users than the search data)
REFIT = 1.3
#: the machine's pace (measured / a-priori seconds) is taken within this range
PACE_RANGE = (0.5, 10.0)
#: an epoch-trained trial stops after the epoch that ends past this many times its (estimated or measured) cost
BOX_FACTOR = 3.0
#: an epoch-trained member whose whole estimated cost does not fit may still run its first trial time-boxed, when
#: at least this share of that cost fits (SASRec on ML-1M: 5 of ~40 epochs already find the held-out last event
#: ~2.4x as often as EASE; without it a 30-minute CPU budget never tried SASRec and ended tuning at minute 9)
MIN_BOX = 0.25
#: a member whose remaining trials together take at most this share of the budget is tuned to its cap first
CHEAP_SHARE = 0.02
#: seconds a trial takes beyond its fit and scoring (the study store, the lists written): ~0.4 s on this CPU
TRIAL_OVERHEAD_S = 0.5
#: model families: the ensemble search gets the best member of each (its lists differ from the others')
FAMILIES = {"item-item": ("ease", "edlae", "easer", "cease", "admm-slim", "sansa", "multi-ease"),
            "graph": ("rp3beta", "itemknn"), "factor": ("ials", "lmf"), "pairwise": ("bpr",),
            "autoencoder": ("multivae", "recvae", "multidae", "vasp"), "sequential": ("seqrules", "sasrec")}  # fmt: skip
#: members kept for the ensemble search whatever their overall rank (they serve the holdout's last event)
SEQUENTIAL = ("seqrules", "sasrec")


class Clock:
    """Budget seconds and the time spent, across resumed runs (``state.json``)."""

    def __init__(self, path: Path, budget_s: float):
        self.path, self.budget = path, float(budget_s)
        self.before = 0.0
        if path.exists():
            self.before = float(json.loads(path.read_text()).get("elapsed_s", 0.0))
        self.t0 = time.monotonic()

    @property
    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.t0

    @property
    def left(self) -> float:
        return self.budget - self.elapsed

    def save(self, **extra: Any) -> None:
        state = {"budget_s": self.budget, "elapsed_s": round(self.elapsed, 3), **extra}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(state, indent=2) + "\n")

    def stamp(self) -> str:
        e, b = self.elapsed, self.budget
        return f"[{int(e) // 60}:{int(e) % 60:02d} / {int(b) // 60}:{int(b) % 60:02d}]"


@dataclass
class AutoRun:
    """What ``toprec auto`` did and chose."""

    profile: dict[str, Any]
    plan: list[dict[str, Any]]
    members: list[dict[str, Any]]
    chosen: str
    method: str
    weights: dict[str, float]
    validation: dict[str, Any] | None
    recs: Any
    member_specs: dict[str, dict[str, Any]]
    elapsed_s: float
    budget_s: float
    warnings: list[str] = field(default_factory=list)
    #: the re-ranker (method ``rerank``) used the recency features
    recency: bool = False

    @property
    def used(self) -> dict[str, float]:
        return {lab: w for lab, w in self.weights.items() if w > 0}


def spec(name: str, params: dict[str, Any], defaults: dict[str, Any]) -> str:
    """``ease:l2=123.5``: the member with the parameters that differ from its defaults (exact floats)."""
    parts = [name]
    for key, value in params.items():
        if key in defaults and defaults[key] == value:
            continue
        text = repr(float(value)) if isinstance(value, float) else str(value)
        if any(ch in text for ch in ":,= "):
            raise ToprecError(f"auto: parameter {name}.{key}={text!r} cannot be written as a member spec")
        parts.append(f"{key}={text}")
    return ":".join(parts)


def member_entry(report: dict[str, Any], label: str) -> dict[str, Any]:
    """The validation report's entry of the member ``label``."""
    return next(m for m in report["members"] if m["label"] == label)


def written_fold_b(report: dict[str, Any], chosen: str) -> float:
    """Fold-B recall@k of what ``chosen`` writes: the fused lists, or one member's."""
    r = f"recall@{report['k']}"
    if chosen.startswith("member:"):
        return float(member_entry(report, chosen[len("member:"):])["fold_b"][r])
    return float(report["ensemble"]["fold_b"][r])


def family(name: str) -> str:
    """The model family a member belongs to (members of one family make near-identical lists)."""
    return next((fam for fam, names in FAMILIES.items() if name in names), name)


def ensemble_members(ranked: list) -> list:
    """The tuned studies the ensemble search gets, from ``ranked`` (best fold-A recall first): the best
    MAX_MEMBERS, then the best member of every family not among them, then every sequential member (it is
    there for the last event). On ML-1M the top five are all of the EASE family or iALS; with Multi-VAE added
    (its fold-A recall 0.145 against their 0.153-0.155) the fused fold-B recall rose from 0.1608 to 0.1631
    (``benchmarks/bench_auto_members.py``)."""
    out = list(ranked[:MAX_MEMBERS])
    have = {family(s.c.name) for s in out}
    for s in ranked[MAX_MEMBERS:]:
        if family(s.c.name) not in have or s.c.name in SEQUENTIAL:
            out.append(s)
            have.add(family(s.c.name))
    return out


def pace(pairs: list[tuple[float, float]]) -> float:
    """How much slower this machine runs the members measured so far than their a-priori costs say: the median
    of measured / estimated seconds over ``(measured, estimated)`` pairs (nan: not measured yet), within
    PACE_RANGE; 1 before any is measured. A loaded machine made every trial 3-6x its estimate (ML-1M, load 8);
    scaling the members not yet tried keeps one of them from taking the budget the others needed."""
    ratios = [m / e for m, e in pairs if not math.isnan(m) and e > 0]
    if not ratios:
        return 1.0
    return float(min(max(statistics.median(ratios), PACE_RANGE[0]), PACE_RANGE[1]))


def cheap(cost: float, trials_left: int, budget_s: float) -> bool:
    """A member whose remaining trials all fit in ``CHEAP_SHARE`` of the budget: tuned right after its starting
    points, before the costlier members' first trials. Otherwise the final refit's reserve for the epoch-trained
    members that came later (SASRec, RecVAE) used up what was left before a tuning round: on a 2-core CPU with
    30 minutes, ML-1M's seqrules got 1-2 trials of 0.6 s each in every run (fold A 0.063-0.065) while a GPU run
    with the time to spare tuned it to 0.083 in 5-8 trials. ``cost`` is a trial's fit and scoring;
    ``TRIAL_OVERHEAD_S`` adds the study's bookkeeping (its SQLite store, the lists written)."""
    return (cost + TRIAL_OVERHEAD_S) * trials_left <= CHEAP_SHARE * budget_s


def trial_box(cost: float, left: float, reserve: float, tried: bool, epochs: bool) -> tuple[bool, float | None]:
    """Whether a member's next trial runs, and its time box (seconds; None: not epoch-trained, no box).

    A member without a finished trial also needs its own final refit (``REFIT`` x its cost) within the budget.
    An epoch-trained trial may not eat the reserve (nor its own refit), nor more than ``BOX_FACTOR`` x its cost
    (a loaded machine made Multi-VAE's first trial 4-10x its estimate): it stops after the epoch that ends past
    either, keeping its best epoch. Its first trial runs even when its whole cost does not fit, if ``MIN_BOX``
    of it does.
    """
    share = 1.0 if tried else 1.0 + REFIT
    room = (left - reserve) / share
    if room < cost and not (epochs and not tried and room >= MIN_BOX * cost):
        return False, None
    return True, (min(0.9 * room, BOX_FACTOR * cost) if epochs else None)


def rerank_seconds(users_a: int, candidates_n: int, n_members: int) -> float:
    """A-priori seconds of the re-ranker stage; 0 when lightgbm is not installed (the stage is skipped)."""
    try:
        from ..ensemble.rerank import lightgbm

        lightgbm()
    except ToprecError:
        return 0.0
    return RERANK_BASE_S + users_a * candidates_n * n_members * RERANK_ROW_S


def use_recency(ds, last: int) -> bool:
    """The re-ranker gets recency features when the protocol holds a last event and the data has times.

    Measured (``benchmarks/bench_rerank_recency.py``, fold B, same members): ML-1M +0.0015 (se 0.0010) and
    +0.0000 (0.0010) recall@10 over two seeds, the last-event part +0.009 / +0.003; ML-100K -0.0055 (0.0032),
    its fold A too small for 7 more features (the fold-B gate refuses the re-ranker there either way).
    """
    from ..ensemble.recency import has_time

    return last > 0 and has_time(ds)


def rerank_box(need: float, left: float, refit_s: float, pace: float = 1.0, slack: float = 0.0,
               fill: bool = False) -> float:
    """Seconds the re-ranker stage may take (0: skip it). ``room``: ``left`` less the final refit (``refit_s``)
    and the writing -- what tuning kept back for the stage (see ``reserve`` in :func:`run_auto`) -- plus
    ``slack``, the part of the budget's tolerance the stage may run into (``RERANK_SLACK``). It runs when half
    its a-priori estimate ``need`` fits there (the estimate is rough: ML-1M 50-180 s against 112 s, the
    competition sample 2-5 s against 40 s), and may take up to ``BOX_FACTOR`` x the estimate on this machine
    (``pace``: a slow machine gets more), never more than that room. ``fill`` (small data with extra validation
    cuts, whose rows the ranker may learn from as many of as fit): the whole room -- the stage is the last before
    the refit, and on ML-latest-small (session 18) the run ended at minute 22 of 30 with a ranker of 3 cuts of 6,
    boxed at 3 x its estimate."""
    room = left - refit_s - FIXED_RESERVE_S + slack
    if room < 0.5 * need:
        return 0.0
    return room if fill else min(BOX_FACTOR * need * max(1.0, pace), room)


def _maybe_rerank(ens, chosen, report, members, ds, folds, clock, out, k, seed, last, random, candidates_n, log,
                  pace: float = 1.0, refit_s: float = 0.0, cf: CrossFit | None = None):  # fmt: skip
    """A LightGBM re-ranker over the tuned members' fold-A lists (features: every member's score and rank,
    popularity, activity, side-file affinities; recency features with :func:`use_recency`), trained on fold A,
    kept only when its fold-B recall beats what would be written otherwise by more than one paired standard
    error; with ``cf`` (small data, :mod:`.crossfit`) over both folds' users, out of fold, and the ranker
    written is then trained on both folds. Skipped without lightgbm or time; time-boxed (:func:`rerank_box`:
    its boosting stops at the box, keeping the trees so far), so the refit after it always has its time:
    ``pace`` is this machine's pace against the a-priori costs, ``refit_s`` the final refit's estimate."""
    from ..ensemble import Ensemble
    from ..train import deadline

    need = rerank_seconds(len(folds.fold_a.users), candidates_n, len(members)) * (RERANK_FITS if cf else 1.0)
    if not need:
        return ens, chosen, report
    over = cf.cut_labels() if cf is not None else []
    box = rerank_box(need, clock.left - 0.03 * clock.budget, refit_s, pace, RERANK_SLACK * clock.budget,
                     fill=len(over) > 1)  # fmt: skip
    if box <= 0:
        log(f"{clock.stamp()} re-ranker skipped: ~{need:.0f}s, not within the budget left")
        return ens, chosen, report
    saved = out / "rerank.json"
    if len(over) > 1:  # small data with extra cuts: the ranker of the cut members, trained on every cut's rows
        members = [m for m in members if m.label in over]
    rr = Ensemble(members, method="rerank", candidates=candidates_n, recency=use_recency(ds, last))
    log(f"{clock.stamp()} re-ranker: trained on fold A, checked on fold B (~{need:.0f}s, at most {box:.0f}s"
        + (", with recency features)" if rr.recency else ")"))  # fmt: skip
    crossed = cuts = None
    timed = ""
    try:
        with deadline(box):
            t0 = time.perf_counter()
            rep = rr.validate(ds, search="both", k=k, scheme="users", seed=seed, last=last, random=random,
                              folds=folds)  # fmt: skip
            unit = time.perf_counter() - t0  # one ranker on fold A's rows, measured
            n = int((box - unit) / max(unit, 1e-3) * OVER_CUTS_USE / OVER_CUT_UNITS) if len(over) > 1 else 0
            if len(over) > 1:
                n = min(n, 1 + len(cf.cut_lists))  # the number of cuts, once: a resumed run trains the same ranker, whatever its pace
                n = _stored_cuts(out / "rerank_cuts.json", rr.labels, n)
            late = bool(rep.get("rerank", {}).get("out_of_time"))  # the box is spent: fold B alone decides
            if not late and n >= 2:  # rankers on half the users of n cuts (twice), then all (OVER_CUT_UNITS)
                cuts = cf.reranker_over_cuts(rr.reranker, most=n)
                cuts_s = time.perf_counter() - t0 - unit
            elif not late and cf is not None:
                crossed = cf.reranker(rr)
    except ToprecError as exc:  # e.g. a fold without a positive to learn from: the fused choice stands
        log(f"{clock.stamp()} re-ranker skipped: {exc}")
        return ens, chosen, report
    if rep.get("rerank", {}).get("out_of_time"):
        log(f"{clock.stamp()} re-ranker: boosting stopped at its time box after {rep['rerank']['trees']} trees")
    clock.save(stage="rerank")
    r = f"recall@{k}"
    verdict: dict = {"trees": rep.get("rerank", {}).get("trees")}
    if cuts is not None and not cuts.out_of_time:  # every cut's rows, out of fold by user, against the written
        got, base, se, keep = cuts.mean, cuts.written_mean, cuts.se, cuts.kept
        where = f"{cuts.cuts} validation cuts, out of fold by user ({cuts.users:,} users)"
        timed = f" (first ranker {unit:.0f}s, the cuts' {cuts_s:.0f}s)"
        verdict.update(scored_on=where, final_trees=cuts.final.trees, cuts=cuts.cuts, gain=cuts.gain)
        if keep:
            rr.reranker = cuts.final
            rep["crossfit"] = {"users": cuts.users, "gain": cuts.gain, "se": se, "kept": True, "against": chosen,
                               "cuts": cuts.cuts, "final_trees": cuts.final.trees,
                               "fusion": report.get("crossfit")}  # fmt: skip
    elif crossed is not None and not crossed[2]:  # out of fold over both folds' users; written: trained on both
        oof, final, _ = crossed
        written = cf.written(chosen)
        got, base = float(oof.mean()), float(written.mean())
        diff = oof - written
        keep, se = beats(diff), paired(diff)[1]
        verdict.update(scored_on=f"both folds, out of fold ({len(oof):,} users)", final_trees=final.trees)
        where = "both folds, out of fold"
        if keep:
            rr.reranker = final
            # the fusion's own verdict (members over both folds, its alternative) stays beside the ranker's
            rep["crossfit"] = {"users": len(oof), "gain": got - base, "se": se, "kept": True, "against": chosen,
                               "final_trees": final.trees, "fusion": report.get("crossfit")}  # fmt: skip
    else:
        if crossed is not None or cuts is not None:
            log(f"{clock.stamp()} re-ranker: cross-fitting stopped at the time box; fold B alone decides")
        base, got = written_fold_b(report, chosen), float(rep["ensemble"]["fold_b"][r])
        se = float(rep.get("gain_fold_b_se") or 0.0)
        if chosen.startswith("member:"):  # paired with the member that would be written, when the report has it
            se = float(member_entry(rep, chosen[len("member:"):]).get("fold_b_gap_se") or se)
        keep = got - base > se > 0
        where = "fold B"
    with atomic_path(saved) as tmp:
        tmp.write_text(json.dumps({"fold_b": got, "written_fold_b": base, "se": se, "kept": keep,
                                   **verdict}) + "\n")  # fmt: skip
    log(f"{clock.stamp()} re-ranker: {where} {got:.4f} vs {base:.4f} ({chosen}), se {se:.4f}: "
        + ("kept" if keep else "not kept") + timed)  # fmt: skip
    if not keep:
        return ens, chosen, report
    return rr, "rerank", rep


def _stored_cuts(path: Path, labels: list[str], n: int) -> int:
    """The number of validation cuts the re-ranker learns from: the one stored at ``path`` for these members,
    else ``n``, stored there."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("labels") == list(labels):
            return int(stored["cuts"])
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"labels": list(labels), "cuts": int(n)}) + "\n")
    return int(n)


def _widen(ens, report, ds, folds, clock, k, seed, log, refit_s: float) -> None:
    """The confirmed fusion's weights searched again on folds A and B together (:meth:`Ensemble.widen`), when
    the time it takes -- about the fold-A search of one method over twice the users -- fits before the final
    refit. The fold-B decision stands (it chose the method and whether to fuse); the weights are what the
    submission and ``pipeline.yaml`` use, and the report keeps both (``report["widened"]``)."""
    methods = max(1, len(report.get("methods_fold_a") or [report["method"]]))
    need = 2.0 * float(report.get("timings", {}).get("search_s", 0.0)) / methods
    if clock.left - refit_s - FIXED_RESERVE_S < need:
        log(f"{clock.stamp()} fusion weights kept from fold A: ~{need:.0f}s to search them on both folds, "
            "not within the budget left")  # fmt: skip
        return
    wide = ens.widen(ds, folds, k=k, seed=seed)
    wide["weights_fold_a"] = dict(report["weights"])
    report["widened"] = wide
    log(f"{clock.stamp()} fusion weights searched again on folds A and B ({wide['users']:,} users): recall@{k} "
        f"{wide['recall_fold_ab_before']:.4f} -> {wide['recall_fold_ab']:.4f}; "
        + ", ".join(f"{lab} {w:.2f}" for lab, w in wide["weights"].items() if w > 0))  # fmt: skip


def run_auto(ds, out: Path, budget_s: float, *, k: int = 10, last: int = 1, random: int = 9, seed: int = 0,
             candidates_n: int = 100, device: str = "auto", only: list[str] | None = None,
             log: Callable[[str], None] = progress.log, model_dir: Path | None = None) -> AutoRun:  # fmt: skip
    """Plan, tune, ensemble, confirm, refit; the submission's lists are ``AutoRun.recs``.

    ``model_dir``: the refitted pipeline is also saved there for ``toprec serve`` (the members already
    fitted on all the data; nothing is fitted again; a ``rerank`` choice saves its ranker and feature
    tables too); a pipeline that cannot be saved is a warning, not a failure.
    """
    from .. import models
    from ..ensemble import Ensemble, ListedMember, ModelMember, make_folds
    from .tuning import MemberStudy, epoch_trained, open_studies

    out.mkdir(parents=True, exist_ok=True)
    clock = Clock(out / "state.json", budget_s)
    prof = profile(ds, last, random)
    cands = candidates(prof, device, only)
    for c in cands:
        check_space(c, models.get_class)
    cheapest = min(cands, key=lambda c: c.cost)
    need = 2.5 * cheapest.cost + FIXED_RESERVE_S + 0.03 * clock.budget
    if need > clock.left:
        raise ToprecError(f"--budget {clock.budget:g}s is too small: the cheapest member ({cheapest.name}) needs about "
                          f"{need:.0f}s for one trial, the ensemble and the final fit on this data")  # fmt: skip
    log(f"{clock.stamp()} auto: {prof['users']:,} users x {prof['items']:,} items, {prof['events']:,} events; "
        f"candidates: {', '.join(f'{c.name} (~{c.cost:.0f}s)' for c in cands)}")  # fmt: skip
    folds = make_folds(ds, "users", seed, last, random, True)
    storage = open_studies(out / "studies.db")
    studies = {c.name: MemberStudy(c, folds, storage, out, k, candidates_n, seed) for c in cands}

    def cost(s) -> float:
        """Measured seconds of the member's trials; before its first, the a-priori cost times the machine's pace."""
        measured = s.fit_seconds()
        if not math.isnan(measured):
            return measured
        return s.c.cost * pace([(t.fit_seconds(), t.c.cost) for t in studies.values()])

    def fit_again(s) -> float:
        """Seconds of the member fitted again with its chosen settings (a validation cut, the final refit): an
        epoch-trained one trains its best epoch count and no validation (``refit_share`` of its trial's seconds)."""
        return cost(s) * float((s.best or {}).get("refit_share", 1.0))

    rerank_s = rerank_seconds(len(folds.fold_a.users), candidates_n, min(MAX_MEMBERS, len(studies)))
    rerank_fits = RERANK_FITS if crossfits(folds) else 1.0  # small data: the stage trains three rankers
    if rerank_s * rerank_fits > RERANK_MAX_SHARE * clock.budget:
        log(f"{clock.stamp()} re-ranker not planned: ~{rerank_s * rerank_fits:.0f}s is more than "
            f"{RERANK_MAX_SHARE:.0%} of the budget (it still runs if tuning leaves it the time)")  # fmt: skip
        rerank_fits = 0.0  # nothing kept for it below

    def reserve() -> float:
        """Time kept for the ensemble search, the re-ranker stage over every member the ensemble search would
        get now (:func:`ensemble_members`) and the final refit of those members (the re-ranker refits them
        all). The re-ranker's scoring after the refit, cheaper than its stage, comes out of what the stage
        did not use (the estimate is mostly high); the final refit never gives way to it (see below)."""
        ranked = sorted((s for s in studies.values() if s.best), key=lambda s: -s.best["value"])
        kept = ensemble_members(ranked)
        stage = rerank_seconds(len(folds.fold_a.users), candidates_n, len(kept)) if len(kept) > 1 else 0.0
        return (REFIT * sum(fit_again(s) for s in kept) + max(stage, rerank_s) * rerank_fits + FIXED_RESERVE_S
                + 0.03 * clock.budget)  # fmt: skip

    def refit_seconds(labels) -> float:
        """The final refit's estimate for the members ``labels``."""
        return REFIT * sum(fit_again(studies[member_specs[lab]["name"]]) for lab in labels)

    def run_trial(s) -> bool:
        go, box = trial_box(cost(s), clock.left, reserve(), bool(s.best), epoch_trained(models.get_class(s.c.name)))
        if not go:
            return False
        r = s.trial(seconds=box)
        clock.save(stage="tuning")
        best = s.best
        if "error" in r:
            log(f"{clock.stamp()} {s.c.name} trial {r['trial']} failed: {r['error']}")
        elif "pruned" in r:
            log(f"{clock.stamp()} {s.c.name} trial {r['trial']} pruned at {r['pruned']} (below the median)")
        else:
            boxed = f", time-boxed after epoch {r['time_boxed']}" if "time_boxed" in r else ""
            log(f"{clock.stamp()} {s.c.name} trial {r['trial']}: recall@{k} {r['value']:.4f} in {r['seconds']:.1f}s"
                f"{boxed} (member best {best['value']:.4f}; overall best {leader()})")  # fmt: skip
        return True

    def leader() -> str:
        done = [(s.best["value"], s.c.name) for s in studies.values() if s.best]
        return "-" if not done else "{1} {0:.4f}".format(*max(done))

    # ---- starting points, cheapest member first; a cheap member is tuned to its cap right after them
    for s in studies.values():
        for _ in range(max(0, len(s.c.starts) - s.n_finished)):
            if not run_trial(s):
                break
        while s.best and s.n_finished < s.c.max_trials and cheap(cost(s), s.c.max_trials - s.n_finished,
                                                                  clock.budget):  # fmt: skip
            if not run_trial(s):
                break
    # ---- tuning rounds: one trial each, two for the leader
    progressed = True
    while progressed:
        progressed = False
        ranked = sorted((s for s in studies.values() if s.best), key=lambda s: -s.best["value"])
        for i, s in enumerate(ranked):
            for _ in range(2 if i == 0 else 1):
                if s.n_finished < s.c.max_trials and run_trial(s):
                    progressed = True
    ranked = sorted((s for s in studies.values() if s.best), key=lambda s: -s.best["value"])
    tuned = ensemble_members(ranked)
    if not tuned:
        raise ToprecError(f"--budget {clock.budget:g}s is too small: no member finished a trial within it")
    log(f"{clock.stamp()} tuned: " + ", ".join(f"{s.c.name} {s.best['value']:.4f} ({s.n_complete} trials)"
                                               for s in tuned))  # fmt: skip

    # ---- ensemble on fold A (the tuning trials' lists), confirmed on fold B
    member_specs, members = {}, []
    for s in tuned:
        cls = models.get_class(s.c.name)
        params = s.best["params"]
        label = spec(cls.name, params, cls.Params().model_dump())
        member_specs[label] = {"name": cls.name, "params": params, "fold_a": s.best["value"]}
        lists = s.best_lists()
        members.append(ListedMember(label, cls.name, params, lists, folds.search_train.matrix) if lists is not None
                       else ModelMember(label, cls.name, params))  # fmt: skip
    ens = Ensemble(members, method="auto" if len(members) > 1 else "rank", candidates=candidates_n)
    saved = out / "ensemble.json"
    warnings: list[str] = []
    report = None
    if saved.exists() and json.loads(saved.read_text()).get("labels") == ens.labels:
        report = json.loads(saved.read_text())["report"]
        ens.select(report)
        log(f"{clock.stamp()} ensemble: resumed ({report['method']})")
    elif len(members) > 1:
        report = ens.validate(ds, search="both", k=k, scheme="users", seed=seed, last=last, random=random, folds=folds)
        with atomic_path(saved) as tmp:
            tmp.write_text(json.dumps({"labels": ens.labels, "report": report}, default=json_default) + "\n")
    chosen = f"member:{members[0].label}"
    cf, pooled = None, False
    if report is not None:
        holds = None
        if len(members) > 1 and crossfits(folds):  # small data: both folds decide (see .crossfit)
            cf = CrossFit(ens, ds, folds, k, seed)
            alt0 = cf.best_member()

            def member_seconds(label: str) -> float:
                return fit_again(studies[member_specs[label]["name"]])  # a cut's training part: the search data's size

            def later(labels: list[str]) -> float:
                """What the stages after the cuts keep when the cuts fit ``labels``: the submission is then made
                of those members alone (see :meth:`CrossFit.cut_members`)."""
                return refit_seconds(labels) + rerank_s * rerank_fits + FIXED_RESERVE_S + 0.03 * clock.budget

            t_left, cuts_t0 = clock.left, clock.elapsed

            def cuts_box(labels: list[str]) -> float:
                return CUTS_SHARE * max(0.0, t_left - later(labels))

            n_cuts = cf.more_cuts(last, random, member_seconds, cuts_box, out / "cuts.json")
            clock.save(stage="cuts")
            alt = cf.best_member()
            if n_cuts:
                fitted = cf.cut_labels()
                log(f"{clock.stamp()} {n_cuts} more validation cuts of {len(cf.cuts)} members in "
                    f"{clock.elapsed - cuts_t0:.0f}s (box {cuts_box(fitted):.0f}s; the later stages keep "
                    f"{later(fitted):.0f}s)")  # fmt: skip
                log(f"{clock.stamp()} the member written alone is chosen over {1 + n_cuts} validation cuts: "
                    + ", ".join(f"{lab} {v:.4f}" for lab, v in sorted(cf.cut_means().items(), key=lambda kv: -kv[1]))
                    + (f" (auto's cut alone: {alt0})" if alt0 != alt else ""))  # fmt: skip
            pool_t0 = time.perf_counter()
            pool = cf.pooled()  # every member on every cut: the fusion searched and judged over all of them
            pool_s = time.perf_counter() - pool_t0
            if pool is not None:
                n_rows, gain, se, holds = pool.users, pool.gain, pool.se, pool.kept
                if holds:
                    ens.method, ens.weights = pool.method, np.asarray(pool.weights, dtype=np.float64)
                pooled = True
            else:
                d = cf.written("ensemble") - cf.member(alt)
                n_rows, holds, (gain, se) = len(d), beats(d), paired(d)
            report["crossfit"] = {"users": n_rows, "gain": gain, "se": se, "kept": holds, "alternative": alt,
                                  "best_member_fold_a": report["best_member_fold_a"],
                                  "members": cf.member_means(), "cuts": 1 + n_cuts,
                                  "members_over_cuts": cf.cut_means(), "alternative_one_cut": alt0,
                                  "pooled": pool.report(ens.labels) if pool is not None else None}  # fmt: skip
            if pool is not None:
                est = f" (estimated {cf.fusion_estimate:.0f}s)" if cf.fusion_estimate else ""
                log(f"{clock.stamp()} ensemble ({pool.method}) searched over {pool.cuts} validation cuts in "
                    f"{pool_s:.0f}s{est}, each judged on the cut left out ({n_rows:,} users): {gain:+.4f} vs the member "
                    f"the other cuts pick, se {se:.4f}: " + ("kept, " + ", ".join(f"{lab} {w:.2f}" for lab, w in
                                                                   zip(ens.labels, pool.weights) if w > 0)
                                               if holds else f"not kept ({alt} alone)"))  # fmt: skip
            else:
                log(f"{clock.stamp()} ensemble ({report['method']}), cross-fitted over both folds ({n_rows:,} users): "
                    f"{gain:+.4f} vs {alt}, se {se:.4f}: " + ("kept" if holds else "not kept"))  # fmt: skip
        chosen, fallback = ens.apply_fallback(report, against="alternative", holds=holds,
                                              alternative=report["crossfit"]["alternative"] if cf else None)
        if len(members) > 1 and cf is None:
            r, alt = f"recall@{k}", report["best_member_fold_a"]
            m_alt = member_entry(report, alt)
            log(f"{clock.stamp()} ensemble ({report['method']}): fold B {report['ensemble']['fold_b'][r]:.4f} vs "
                f"{alt} {m_alt['fold_b'][r]:.4f}, se {m_alt.get('fold_b_gap_se', float('nan')):.4f}: "
                + ("kept" if chosen == "ensemble" else chosen))  # fmt: skip
        if fallback:
            warnings.append(fallback)
        speed = pace([(t.fit_seconds(), t.c.cost) for t in studies.values()])
        ens, chosen, report = _maybe_rerank(ens, chosen, report, members, ds, folds, clock, out, k, seed, last,
                                            random, candidates_n, log, speed,
                                            refit_seconds(cf.cut_labels() if cf is not None and cf.cut_labels()
                                                          else ens.labels), cf)  # fmt: skip
        if chosen == "ensemble" and ens.method != "rerank" and not pooled:  # pooled: searched on every cut
            _widen(ens, report, ds, folds, clock, k, seed, log,
                   refit_seconds([lab for lab, w in zip(ens.labels, ens.weights) if w > 0]))  # fmt: skip
    clock.save(stage="final")
    log(f"{clock.stamp()} final: {chosen}, method {ens.method}, refit on all {ds.n_events:,} events")
    # ---- refit on all the data and fuse; an epoch-trained refit stops at the budget's end less what follows
    # it (the re-ranker's features and scoring), whatever the machine's load did since its trial was timed --
    # but never before its own estimate: a member cut to one epoch would spoil the submission (seen on a GPU
    # machine whose re-ranker overran, before the stage was time-boxed: recall -8.5% against EASE), and running
    # a little past the budget is the lesser harm
    from ..train import deadline

    after = FIXED_RESERVE_S + (rerank_s if ens.method == "rerank" else 0.0)
    refit_need = refit_seconds([lab for lab, w in zip(ens.labels, ens.weights) if w > 0 or ens.method == "rerank"])
    if clock.left - after < refit_need:
        log(f"{clock.stamp()} final refit: ~{refit_need:.0f}s needed, {max(0.0, clock.left - after):.0f}s left "
            "in the budget: it may run past the budget rather than cut a member short")  # fmt: skip
    with deadline(max(clock.left - after, refit_need)):
        ens.prepare_final(ds, k=k)
        recs = ens.recommend(ds.users, k=k)
    if model_dir is not None:
        from ..app.serving import save_pipeline

        try:
            save_pipeline(ens, ds, model_dir)
            log(f"{clock.stamp()} servable pipeline saved: {model_dir} (toprec serve {model_dir})")
        except ToprecError as exc:
            warnings.append(f"no servable model saved: {exc}")
    ens.release()
    clock.save(stage="done")
    curves = [{"name": s.c.name, "why": s.c.why, "trials": s.n_complete, "best": s.best, "curve": s.curve(),
               "fit_seconds": s.fit_seconds()} for s in studies.values()]  # fmt: skip
    plan = [{"name": c.name, "cost_s": round(c.cost, 2), "starts": c.starts, "max_trials": c.max_trials,
             "why": c.why} for c in cands]  # fmt: skip
    return AutoRun(profile=prof, plan=plan, members=curves, chosen=chosen, method=ens.method,
                   weights={lab: float(w) for lab, w in zip(ens.labels, ens.weights)}, validation=report, recs=recs,
                   member_specs=member_specs, elapsed_s=clock.elapsed, budget_s=clock.budget, warnings=warnings,
                   recency=bool(getattr(ens, "recency", False)))  # fmt: skip
