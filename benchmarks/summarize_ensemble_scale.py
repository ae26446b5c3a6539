#!/usr/bin/env python
"""The ensemble's fold-B gain against the number of users: one table from the saved benchmark JSONs.

    python benchmarks/summarize_ensemble_scale.py            # prints a markdown table

Reads ``benchmarks/results/ensemble_quality_ml1m*_events_seed*.json``
(``bench_ensemble_quality.py --scheme events [--sample-users N --sample-draw D]``)
and the matching ``ensemble_alternatives_ml1m*.json``
(``bench_ensemble_alternatives.py``). For each run the fusion method is the
one ``--method auto`` would keep (the best fold-A recall; ties: the earlier
method), so no fold-B number chooses anything. The last three columns are
the relative fold-B gains of the alternatives (same fits, same folds).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
R = "recall@10"
ORDER = ("rank", "rrf", "borda", "score", "product")


def auto_pick(results: list[dict]) -> dict:
    ranked = sorted(results, key=lambda r: (-r["report"]["ensemble"]["fold_a"][R], ORDER.index(r["method"])))
    return ranked[0]


def main() -> None:
    rows = []
    for path in sorted(RESULTS.glob("ensemble_quality_ml1m*_events_seed*.json")):
        d = json.loads(path.read_text())
        pick = auto_pick(d["results"])
        rep = pick["report"]
        members = {m["label"].rstrip("/").split("/")[-1]: m["fold_b"][R] for m in rep["members"]}
        best = max(members, key=members.get)
        alt_name = path.name.replace("ensemble_quality_", "ensemble_alternatives_").replace("_events", "")
        alt = RESULTS / alt_name
        alts = {}
        if alt.exists():
            for row in json.loads(alt.read_text())["rows"]:
                alts[row["alternative"]] = row["relative_gain"]
        rows.append(
            {
                "users": d.get("sample_users") or 6038,
                "draw": d.get("sample_draw", 0) if d.get("sample_users") else "-",
                "seed": d["seed"],
                "scored": int(rep["fold_b"]["users"]),
                "method": pick["method"],
                "ens_b": rep["ensemble"]["fold_b"][R],
                "best": best,
                "best_b": members[best],
                "gain": rep["relative_gain_fold_b"],
                "z": rep["gain_fold_b_z"],
                "recvae": members["recvae"] / members[best] - 1,
                "buckets": alts.get("3 activity buckets (score)"),
                "rerank": alts.get("re-ranker (toprec rerank: binary)"),
                "lambdarank": alts.get("re-ranker (lambdarank)"),
                "file": path.name,
            }
        )
    rows.sort(key=lambda r: (r["users"], str(r["draw"]), r["seed"]))
    print("| users | draw | split seed | scored | auto method | ensemble B | best member B | gain (z) "
          "| RecVAE vs best | 3 buckets (score) | rerank | rerank (lambdarank) |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        pct = lambda v: "" if v is None else f"{v:+.1%}"  # noqa: E731
        print(f"| {r['users']:,} | {r['draw']} | {r['seed']} | {r['scored']:,} | {r['method']} | {r['ens_b']:.4f} "
              f"| {r['best']} {r['best_b']:.4f} | {r['gain']:+.1%} ({r['z']:.1f}) | {r['recvae']:+.0%} "
              f"| {pct(r['buckets'])} | {pct(r['rerank'])} | {pct(r['lambdarank'])} |")  # fmt: skip


if __name__ == "__main__":
    main()
