#!/usr/bin/env python
"""Which tuned members should auto's ensemble search get? The top five on fold A, or one per model family?

    python benchmarks/bench_auto_members.py --dataset ml-1m --seeds 0

The folds are ``toprec auto``'s, cut from the training part of ``split.competition(data, seed)`` (the test part
is never read). Each member is fitted once on the search data with the parameters auto chose on ML-1M; its
top-100 lists for fold A and B users serve every subset. For each subset: ``Ensemble(method="auto")`` searched on
fold A, scored on fold B; the paired difference against the top-five subset over fold B's users.
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
from bench_rerank_recency import MEMBERS  # noqa: E402
from toprec import split  # noqa: E402
from toprec.ensemble import Ensemble, ListedMember, ModelMember, make_folds  # noqa: E402
from toprec.metrics import per_user  # noqa: E402
from toprec.recommend import Recommendations  # noqa: E402

K, N = 10, 100
EXTRA = [("ease", {"l2": 730.3}), ("multivae", {})]


def one(dataset: str, seed: int, subsets: dict[str, list[str]]) -> dict:
    data, last, random = LOADERS[dataset]()
    train, _test = split.competition(data, last=last, random=random, seed=seed)
    folds = make_folds(train, "users", seed + 100, last, random, True)
    fa, fb = folds.fold_a, folds.fold_b
    users = np.concatenate([fa.users, fb.users]).astype(np.int64)
    listed, fold_a = {}, {}
    for name, params in MEMBERS + EXTRA:
        if name == "cease" and not train.features:
            continue
        recs = ModelMember(name, name, params).lists(folds.search_train, users, N, "search")
        listed[name] = ListedMember(name, name, params, recs, folds.search_train.matrix)
        fold_a[name] = float(per_user(f"recall@{K}", recs.items[: len(fa.users), :K], fa.truth[fa.users]).mean())
        print(f"{name}: fold A {fold_a[name]:.4f}", flush=True)
    out = {"dataset": dataset, "seed": seed, "fold_a": fold_a, "subsets": {}}
    for label, names in subsets.items():
        names = [n for n in names if n in listed]
        ens = Ensemble([listed[n] for n in names], method="auto")
        rep = ens.validate(train, search="both", k=K, scheme="users", seed=seed + 100, last=last, random=random,
                           folds=folds)  # fmt: skip
        b = float(rep["ensemble"]["fold_b"][f"recall@{K}"])
        best_b = max(m["fold_b"][f"recall@{K}"] for m in rep["members"])
        out["subsets"][label] = {"members": names, "method": rep["method"], "weights": rep["weights"], "fold_b": b,
                                 "best_member_fold_b": best_b}  # fmt: skip
        print(f"{label}: {names} -> {rep['method']} fold B {b:.4f} (best member {best_b:.4f})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m", choices=sorted(LOADERS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    subsets = {
        "top five on fold A + seqrules": ["easer", "cease", "edlae", "ease", "ials", "seqrules"],
        "one per family + seqrules": ["easer", "ials", "multivae", "rp3beta", "seqrules"],
        "top five + multivae + seqrules": ["easer", "cease", "edlae", "ease", "ials", "multivae", "seqrules"],
    }
    res = [one(args.dataset, int(s), subsets) for s in args.seeds.split(",")]
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
