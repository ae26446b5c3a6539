#!/usr/bin/env python
"""Would repeated validation cuts pick a better single member on small data?

    python benchmarks/bench_auto_cuts.py --dataset ml-100k --seeds 0 1 2 --cuts 4

On small data auto writes one member when the fusion does not hold, and picks it
by its recall over both folds' users of *one* validation cut (``crossfit.best_member``).
Among ~8 members within a few thousandths of each other that pick is noisy
(ML-100K seed 0: iALS written, 1.1 se below CEASE on the test). Here every
tuned member (the labels an auto run wrote into its report, read from
``benchmarks/results/<--from>``) is fitted on ``--cuts`` validation cuts of
bench_auto's training part (``split.competition(train, last, random, seed=1000 + r)``;
cut 0 is auto's own, seed + 100), scored on every cut's holdout, and fitted on
the whole training part and scored on the test part (read only to grade the
picks); and, to tell noise from a shift, fitted on the training part thinned
like a validation cut's (the same number of each user's events removed, the
latest and random ones: ``split.competition(train, ..., seed=2000)``'s
training part) and scored on the same test part. Prints, per seed, each member's recall on each cut, the mean, and the
test; then the member picked by cut 0 alone vs by the mean over the cuts, and
each pick's test gap to the best member on the test in paired standard errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS, per_user  # noqa: E402
from toprec import progress, split  # noqa: E402
from toprec.ensemble import parse_members  # noqa: E402

SKIP = ("seqrules", "sasrec")  # never the best single on these protocols (recall@10 40-60% below EASE)


def labels_from(results: Path, dataset: str, seed: int, skip: tuple[str, ...] = SKIP) -> list[str]:
    """The tuned members of the auto run (the report's cross-fitted member list), less those named in ``skip``."""
    for row in json.loads(results.read_text()):
        if row.get("dataset") == dataset and row["seed"] == seed:
            cross = (row.get("decision") or {}).get("crossfit") or {}
            members = cross.get("members") or (cross.get("fusion") or {}).get("members")
            if members:
                return [lab for lab in members if not lab.startswith(skip)]
    raise SystemExit(f"{results}: no cross-fitted member list for {dataset} seed {seed}")


def fit_score(label: str, train, test) -> np.ndarray:
    return per_user(parse_members([label])[0].new_model().fit(train), test)


def one(dataset: str, seed: int, cuts: int, labels: list[str], lighter: int | None = None) -> dict:
    data, last, random = LOADERS[dataset](seed)
    train, test = split.competition(data, last=last, random=random, seed=seed)
    cut_seeds = [seed + 100] + [1000 + r for r in range(1, cuts)]
    val = {lab: [] for lab in labels}
    t0 = time.perf_counter()
    for cs in cut_seeds:
        vtrain, vtest = split.competition(train, last=last, random=random, seed=cs)
        for lab in labels:
            val[lab].append(float(fit_score(lab, vtrain, vtest).mean()))
    tests = {lab: fit_score(lab, train, test) for lab in labels}
    thin = split.competition(train, last=last, random=random, seed=2000)[0]
    thinned = {lab: float(fit_score(lab, thin, test).mean()) for lab in labels}
    # auto's cut once more, its training part thinned again the same way: each member's recall on the same
    # holdout at two densities, extrapolated one step up (to the density the submission is fitted on)
    vtrain, vtest = split.competition(train, last=last, random=random, seed=seed + 100)
    vthin = split.competition(vtrain, last=last, random=random, seed=3000)[0]
    twice = {lab: float(fit_score(lab, vthin, vtest).mean()) for lab in labels}
    extrapolated = {lab: 2.0 * val[lab][0] - twice[lab] for lab in labels}
    pick_ex = max(labels, key=extrapolated.get)
    # a lighter cut: ``lighter`` random events held out instead of ``random`` (a training part nearer the full
    # density), the same seed and the last event as before
    light = {}
    if lighter is not None:
        ltrain, ltest = split.competition(train, last=last, random=lighter, seed=seed + 100)
        light = {lab: float(fit_score(lab, ltrain, ltest).mean()) for lab in labels}
    one_cut = max(labels, key=lambda lab: val[lab][0])
    pick_light = max(labels, key=light.get) if light else one_cut
    many = max(labels, key=lambda lab: np.mean(val[lab]))
    best = max(labels, key=lambda lab: tests[lab].mean())

    def gap(lab):
        d = tests[lab] - tests[best]
        return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if d.any() else 0.0

    return {"dataset": dataset, "seed": seed, "cut_seeds": cut_seeds, "validation": val,
            "test": {lab: float(t.mean()) for lab, t in tests.items()}, "test_thinned_train": thinned,
            "validation_thinned_twice": twice, "extrapolated": extrapolated, "pick_extrapolated": pick_ex,
            "gap_extrapolated": gap(pick_ex), "lighter_cut": light, "pick_lighter": pick_light,
            "gap_lighter": gap(pick_light), "pick_one_cut": one_cut,
            "pick_mean": many, "best_on_test": best, "gap_one_cut": gap(one_cut), "gap_mean": gap(many),
            "seconds": time.perf_counter() - t0}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cuts", type=int, default=4, help="validation cuts (1: only auto's own)")
    ap.add_argument("--from", dest="source", required=True, help="a bench_auto JSON under benchmarks/results")
    ap.add_argument("--lighter", type=int, help="also pick on a cut holding out this many random events")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    progress.set_quiet(True)
    rows = []
    for seed in a.seeds:
        labels = labels_from(HERE / "results" / a.source, a.dataset, seed)
        r = one(a.dataset, seed, a.cuts, labels, a.lighter)
        rows.append(r)
        print(f"\n{a.dataset} seed {seed} ({r['seconds']:.0f} s); recall@10 per validation cut, mean, test\n")
        print("| member | " + " | ".join(f"cut {s}" for s in r["cut_seeds"]) + " | mean | test | test, thinned train "
              "| cut 0, thinned twice | extrapolated |")  # fmt: skip
        print("| --- | " + " | ".join("---:" for _ in r["cut_seeds"]) + " | ---: | ---: | ---: | ---: | ---: |")
        for lab in labels:
            v = r["validation"][lab]
            print(f"| {lab} | " + " | ".join(f"{x:.4f}" for x in v) + f" | {np.mean(v):.4f} | {r['test'][lab]:.4f} | "
                  f"{r['test_thinned_train'][lab]:.4f} | {r['validation_thinned_twice'][lab]:.4f} | "
                  f"{r['extrapolated'][lab]:.4f} |")  # fmt: skip
        for key, name in (("one_cut", "cut 0 alone"), ("mean", f"mean of {a.cuts} cuts"),
                          ("extrapolated", "cut 0 extrapolated to the full density"),
                          ("lighter", f"a lighter cut (random {a.lighter})")):  # fmt: skip
            g, se = r[f"gap_{key}"]
            pick = r[f"pick_{key}"]
            print(f"\npicked by {name}: {pick} (test {r['test'][pick]:.4f}; {g:+.4f} vs {r['best_on_test']}, "
                  f"{g / se if se else 0.0:+.1f} se)", end="")  # fmt: skip
        print()
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
