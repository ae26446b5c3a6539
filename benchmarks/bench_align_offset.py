"""Where does validation's offset from a refitted leaderboard come from? (`toprec align`, nested vs events)

For each model and split seed, with the two holdouts of ``--scheme nested`` / ``events``
(B = competition holdout of all the data, the hidden test; A = competition holdout of
what is left, the validation a team cuts from its training data), on the users with both:

  A           validation recall: fit on D - B - A, B's items compete unmasked (nobody knows them)
  B same fit  the same fit scored on B, A's items unmasked too (``--scheme events``)
  B A masked  the same fit scored on B with A's items removed from the lists, as any
              submission does with events it has seen (no refit)
  B refit     refitted on D - B (A's events now training data, so also in the users' histories
              when scoring, and masked): ``--scheme nested``

So ``B A masked - B same fit`` is what masking the validation events is worth, and
``B refit - B A masked`` what the extra training data is worth.

    python benchmarks/bench_align_offset.py --data ml1m            # ML-1M ratings >= 4 (../shared)
    python benchmarks/bench_align_offset.py --data competition     # the 1,645-user competition sample
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from toprec import Dataset, metrics, models, progress
from toprec.ensemble import make_folds

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = "popularity,itemknn,rp3beta,ease,edlae,easer,ials,bpr"


def load(name: str, sample: Path) -> tuple[Dataset, int, int]:
    if name == "ml1m":
        path = SHARED / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz"
        ds = Dataset.load(path, format="table", user_col="user", item_col="item", time_col="timestamp")
        return ds, 1, 9
    if not sample.exists():
        raise SystemExit(f"{sample}: run python benchmarks/prepare_competition_sample.py --out {sample} first")
    return Dataset.load(sample, format="table", user_col="user", item_col="item"), 0, 10  # no timestamps


def masked_lists(items: np.ndarray, seen, k: int) -> np.ndarray:
    """Each row's first k items that are not in ``seen`` (CSR rows aligned with ``items``)."""
    n, width = items.shape
    if (items < 0).any():
        raise SystemExit("a list is shorter than the over-fetch (padding -1): fewer candidate items than needed")
    hit = np.asarray(seen[np.repeat(np.arange(n), width), items.ravel()]).reshape(n, width) > 0
    rank = np.where(hit, width, np.arange(width)[None, :])  # seen items sort after every unseen one
    order = np.argsort(rank, axis=1, kind="stable")[:, :k]
    if (np.take_along_axis(hit, order, 1)).any():
        raise SystemExit("a list ran out of unseen items: raise the over-fetch")
    return np.take_along_axis(items, order, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["ml1m", "competition"], default="ml1m")
    ap.add_argument("--sample", type=Path, default=Path("/tmp/compsample.csv"))
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    progress.set_quiet(True)
    data, last, random = load(args.data, args.sample)
    k, r = args.k, f"recall@{args.k}"
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = []
    for seed in range(args.seeds):
        nested = make_folds(data, "nested", seed=seed, last=last, random=random)
        events = make_folds(data, "events", seed=seed, last=last, random=random)
        users = events.fold_a.users
        truth_a, truth_b = events.fold_a.truth[users], events.fold_b.truth[users]
        for name in names:
            fit = models.get(name).fit(events.search_train)
            wide = fit.recommend(users, k=k + last + random + k).items  # room for A's items to be dropped
            refit = models.get(name).fit(nested.confirm_train).recommend(users, k=k).items
            row = {
                "seed": seed,
                "model": name,
                "A": metrics.per_user(r, wide[:, :k], truth_a).mean(),
                "B same fit": metrics.per_user(r, wide[:, :k], truth_b).mean(),
                "B A masked": metrics.per_user(r, masked_lists(wide, truth_a, k), truth_b).mean(),
                "B refit": metrics.per_user(r, refit, truth_b).mean(),
            }
            rows.append({key: float(v) if isinstance(v, np.floating) else v for key, v in row.items()})
            print(" ".join(f"{key} {v:.4f}" if isinstance(v, float) else f"{key} {v}" for key, v in rows[-1].items()),
                  flush=True)  # fmt: skip
    cols = ("A", "B same fit", "B A masked", "B refit")
    print(f"\n{args.data}: {len(users):,} users, last={last} random={random}, {args.seeds} seeds; recall@{k}, mean over seeds")
    print(f"| model | {' | '.join(cols)} | masking | refit |")
    print("| --- |" + " ---: |" * (len(cols) + 2))
    for name in names + ["mean"]:
        sel = [x for x in rows if x["model"] == name or name == "mean"]
        v = {c: float(np.mean([x[c] for x in sel])) for c in cols}
        print(f"| {name} | " + " | ".join(f"{v[c]:.4f}" for c in cols)
              + f" | {v['B A masked'] - v['B same fit']:+.4f} | {v['B refit'] - v['B A masked']:+.4f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "machine": platform.platform(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
