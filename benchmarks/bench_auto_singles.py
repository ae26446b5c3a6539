#!/usr/bin/env python
"""The best tuned single member on the test, for a ``bench_auto.py --no-singles`` result.

    python benchmarks/bench_auto_singles.py --dataset comp-sample --from auto_30m_session15_comp-sample.json

For each seed of the result: the test holdout is cut as bench_auto cuts it; every member the run used (its
tuned spec, the keys of the run's weights) is fitted on the training part and scored once on the test. Prints
each member's recall@10 (with its standard error over users), the best of them (an upper bound: picked on the
test) and auto's recall from the JSON minus that best, in units of the best member's standard error (unpaired:
``--no-singles`` keeps no per-user recall of auto).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_auto import LOADERS  # noqa: E402
from toprec import metrics, progress, split  # noqa: E402
from toprec.ensemble import parse_members  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    ap.add_argument("--from", dest="source", required=True, help="a bench_auto JSON under benchmarks/results")
    ap.add_argument("--json", default="", help="write the rows here (under benchmarks/results)")
    a = ap.parse_args()
    progress.set_quiet(True)
    out = []
    print("| seed | auto | best tuned single (picked on the test) | auto - best (its se) | every member used |")
    print("| ---: | ---: | --- | ---: | --- |")
    for run in json.loads((HERE / "results" / a.source).read_text()):
        seed = run["seed"]
        data, last, random = LOADERS[a.dataset](seed)
        train, test = split.competition(data, last=last, random=random, seed=seed)
        truth = test.matrix[test.users].tocsr()
        scores = {}
        for lab in run["weights"]:
            recs = parse_members([lab])[0].new_model().fit(train).recommend(test.users, k=10)
            u = metrics.per_user("recall@10", recs.items, truth)
            scores[lab] = (float(u.mean()), float(u.std(ddof=1) / np.sqrt(len(u))))
        best = max(scores, key=lambda lab: scores[lab][0])
        (b, se), auto = scores[best], run["auto"]
        print(f"| {seed} | {auto:.4f} | {best} {b:.4f} | {auto - b:+.4f} ({(auto - b) / se:+.1f} se) | "
              + ", ".join(f"{lab.split(':')[0]} {v[0]:.4f}" for lab, v in sorted(scores.items(), key=lambda kv: -kv[1][0]))
              + " |", flush=True)  # fmt: skip
        out.append({"seed": seed, "auto": auto, "best": best, "members": scores})
    if a.json:
        (HERE / "results" / a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
