"""``toprec auto``'s page: the data's profile, each member's tuning, the ensemble's fold A/B (recall by part and
by user activity), the choice."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .html import Page
from .plots import bars, lines


def build_auto_page(title: str, meta: list[str], run, k: int) -> Page:
    """A :class:`Page` for an :class:`~toprec.auto.AutoRun` (``report.html`` + ``report.json``)."""
    page = Page(title, meta)
    s = page.section("choice", "What was written")
    s.text.append(f"{run.chosen}, fusion method {run.method}" + "".join(f". Warning: {w}" for w in run.warnings))
    s.table("weights", ["member", "weight"], [[lab, w] for lab, w in run.weights.items()])
    s.numbers = {"minutes used": run.elapsed_s / 60, "minutes of budget": run.budget_s / 60, **run.profile}

    s = page.section("members", f"Members tuned on validation fold A (recall@{k})")
    s.text.append("Each member starts at its data-adaptive starting points, then TPE; it keeps its first start unless "
                  "a trial beats it by more than one paired standard error over fold A's users.")  # fmt: skip
    s.table("members", ["member", "trials", "chosen recall", "top recall", "z over the start", "parameters",
                        "s per trial", "why"],
            [[m["name"], m["trials"], *(_best(m["best"])), m["fit_seconds"], m["why"]] for m in run.members])
    curves = {m["name"]: np.maximum.accumulate([c["value"] for c in m["curve"]]) for m in run.members if m["curve"]}
    if curves:
        n = max(len(c) for c in curves.values())
        padded = {name: np.concatenate([c, np.full(n - len(c), np.nan)]) for name, c in curves.items()}
        s.figures.append(lines("tuning", "best fold-A recall so far", np.arange(1, n + 1), padded, "trial",
                               f"recall@{k}", caption="each member's best fold-A recall after each finished trial"))

    v = run.validation
    if v:
        r = f"recall@{k}"
        s = page.section("ensemble", f"Ensemble ({v['method']}): searched on fold A, fold B never")
        rows = [[m["label"], m["weight"], m["fold_a"][r], m["fold_b"][r], m["fold_b"].get(f"recall_last@{k}"),
                 m["fold_b"].get(f"recall_random@{k}")] for m in v["members"]]
        e = v["ensemble"]
        rows.append(["ensemble", 1.0, e["fold_a"][r], e["fold_b"][r], e["fold_b"].get(f"recall_last@{k}"),
                     e["fold_b"].get(f"recall_random@{k}")])
        s.table("folds", ["member", "weight", f"A {r}", f"B {r}", "B last", "B random"], rows)
        s.numbers = {"gain over the best member on fold B": v["gain_fold_b"],
                     "relative": v["relative_gain_fold_b"], "holds": v["holds"]}  # fmt: skip
        act = v.get("recall_by_activity_fold_b")
        if act:  # fold B's users in quantile buckets of their training events (a run stored before has none)
            names = ["ensemble"] + [m["label"] for m in v["members"]]
            s.table(f"fold B {r} by user activity", ["training events", "users"] + names,
                    [[lab, n] + [act[name][b] for name in names] for b, (lab, n) in
                     enumerate(zip(act["labels"], act["users"]))])  # fmt: skip
            top = sorted(v["members"], key=lambda m: -m["fold_b"][r])[:3]  # the figure: the ensemble and 3 best
            s.figures.append(bars("activity", f"fold B {r} by user activity", act["labels"],
                                  {"ensemble": np.asarray(act["ensemble"]),
                                   **{m["label"].split(":")[0]: np.asarray(act[m["label"]]) for m in top}}, r,
                                  caption="fold B's users in quantile buckets of their training events: the ensemble "
                                          "and the three best members on fold B (every member in the table)",
                                  x_label="training events of the user"))  # fmt: skip
        cf = v.get("crossfit")
        if cf and v["method"] == "rerank" and cf.get("cuts"):  # ... trained on the rows of several cuts
            s.text.append(f"Small data: the re-ranker learnt from the rows of {cf['cuts']} validation cuts. Each user "
                          f"was scored by a ranker trained on the other half of the users' rows ({cf['users']:,} "
                          f"users, every cut): {cf['gain']:+.4f} recall over "
                          f"{cf.get('against', 'what would be written otherwise')} left out, se {cf['se']:.4f}: kept. "
                          f"The ranker written was trained on every row ({cf['final_trees']} trees).")  # fmt: skip
            cf = cf.get("fusion")
        elif cf and v["method"] == "rerank":  # small data, the re-ranker kept: its verdict, then the fusion's
            s.text.append(f"Small data: the re-ranker was scored over both folds' {cf['users']:,} users, out of fold "
                          f"(each fold by a ranker trained on the other): {cf['gain']:+.4f} recall over "
                          f"{cf.get('against', 'what would be written otherwise')}, se {cf['se']:.4f}: kept. The "
                          f"ranker written was trained on both folds ({cf['final_trees']} trees).")  # fmt: skip
            cf = cf.get("fusion")
        pool = (cf or {}).get("pooled")
        if pool:  # small data, every member on every cut: the fusion searched and judged over the cuts
            s.text.append(f"Small data: every member was also fitted on {pool['cuts'] - 1} more validation cuts, and the "
                          f"fusion searched over all {pool['cuts']}. Each cut left out in turn was scored with the "
                          f"weights searched on the others, against the member the others pick ({pool['users']:,} "
                          f"users): {pool['gain']:+.4f} recall, se {pool['se']:.4f}: "
                          + (f"kept ({pool['method']}, weights searched on every cut)." if pool["kept"]
                             else f"not kept, {cf['alternative']} is written.")  # fmt: skip
                          + " Gain by method: " + ", ".join(f"{m} {g:+.4f}" for m, g in pool["gains_by_method"].items()))
            s.table("fusion weights over the validation cuts", ["member", "weight"],
                    [[lab, w] for lab, w in pool["weights"].items()])
        elif cf:  # small data: the fusion against the best member over both folds, out of fold
            s.text.append(f"Small data: decided over both folds' {cf['users']:,} users, out of fold. The fusion against "
                          f"the best member there ({cf['alternative']}; best on fold A: "
                          f"{cf.get('best_member_fold_a', cf['alternative'])}): {cf['gain']:+.4f} recall, se "
                          f"{cf['se']:.4f}: " + ("kept." if cf["kept"] else "not kept, that member is written."))  # fmt: skip
            if cf.get("members"):
                s.table("members over both folds", ["member", f"A + B {r}"], sorted(
                    ([lab, value] for lab, value in cf["members"].items()), key=lambda row: -row[1]))  # fmt: skip
        if cf and cf.get("members_over_cuts"):  # the contenders (or every member), fitted on more validation cuts
            s.table(f"{'members' if pool else 'contenders'} over {cf['cuts']} validation cuts", ["member", f"mean {r}"],
                    sorted(([lab, value] for lab, value in cf["members_over_cuts"].items()), key=lambda row: -row[1]))
        wide = v.get("widened")
        if wide:  # the fold-B decision kept the fusion; its weights were then searched on both folds
            s.text.append(f"Fold B confirmed the fusion with the weights above (searched on fold A); the weights written "
                          f"were then searched again on folds A and B together ({wide['users']:,} users): recall "
                          f"{wide['recall_fold_ab_before']:.4f} -> {wide['recall_fold_ab']:.4f} there.")  # fmt: skip
            s.table("weights written", ["member", "fold A weight", "written weight"],
                    [[lab, wide["weights_fold_a"].get(lab), w] for lab, w in wide["weights"].items()])
    return page


def _best(b: dict[str, Any] | None) -> list[Any]:
    if not b:
        return [None, None, None, ""]
    return [b["value"], b.get("top_value"), b.get("z_over_first"), json.dumps(b["params"])]
