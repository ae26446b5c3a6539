#!/usr/bin/env python
"""`toprec auto` against `submit --model ease` (defaults) on held-out sets cut like the hidden test.

    python benchmarks/bench_auto.py --datasets ml-100k,lastfm,comp-sample,ml-1m --seeds 0,1,2 --budget 30m
    python benchmarks/bench_auto.py --datasets lastfm --seeds 0 --budget 5m --json benchmarks/results/auto.json

For each dataset and seed: the test holdout is cut once from all the data
(`split.competition(D, last, random, seed)`: ML-100K and ML-1M each user's
last event + 9 random earlier ones; Last.fm and the competition sample 10
random events, they have no usable order) and never shown to anything; `auto`
runs on the rest with its own validation cut (seed + 100) inside the budget,
exactly as `toprec auto --data TRAIN --budget B` (the library call the command
makes, in-process); its lists are scored once on the test. Also scored: EASE
with its defaults (what `toprec submit --model ease` writes) and every member
at the parameters auto tuned, refitted on the training part (the "best tuned
single" column is the best of them on the test, an upper bound no one could
pick without the test). Prints a markdown table; --json keeps everything.

Data: ../shared/data (ML-100K through `toprec data fetch ml-100k` into
benchmarks/data/ml-100k, with its side files; ML-1M ratings >= 4 with genres
and years; Last.fm-2K as `toprec` reads its folder, with the artists' tags,
less the tag rows on the seed's test pairs (``lastfm-plain``: user_artists.dat
alone, as in the tables before session 5); the competition sample with its
side files, as benchmarks/bench_side.py reads them); MovieLens latest-small (2016) with its genres, all
ratings, last 1 + random 9: a dataset auto was never tuned on).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toprec import Dataset, metrics, models, progress, split
from toprec.auto import run_auto
from toprec.experiment.config import parse_budget

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED = HERE.parents[1] / "shared" / "data"


def ml100k(seed: int = 0) -> tuple[Dataset, int, int]:
    folder = HERE / "data" / "ml-100k"
    if not (folder / "train_ratings.csv").exists():
        subprocess.run([sys.executable, "-m", "toprec", "data", "fetch", "ml-100k", "--out", str(folder), "--source",
                        str(SHARED / "ml-100k"), "-q"], check=True)  # fmt: skip
    return Dataset.load(folder, cache=False), 1, 9


LASTFM = SHARED / "hetrec2011-lastfm-2k"


def lastfm_plain(seed: int = 0) -> tuple[Dataset, int, int]:
    """Last.fm-2K's listening pairs only (user_artists.dat): the dataset of the tables before session 5."""
    ev = pd.read_csv(LASTFM / "user_artists.dat", sep="\t")
    return Dataset.from_events(ev["userID"].to_numpy(), ev["artistID"].to_numpy(), name="lastfm-2k"), 0, 10


def lastfm(seed: int = 0) -> tuple[Dataset, int, int]:
    """Last.fm-2K as `toprec` reads the folder (format hetrec-lastfm: the artists' tags as a side feature),
    with every tag row on a (user, artist) pair of this seed's test holdout removed first: a user's own tag
    on an artist held out from them would otherwise reach the model through the side feature."""
    plain, last, random = lastfm_plain()
    _, test = split.competition(plain, last=last, random=random, seed=seed)
    u, i = test.matrix.nonzero()
    held = pd.MultiIndex.from_arrays([plain.user_ids[u].astype(np.int64), plain.item_ids[i].astype(np.int64)])
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("user_artists.dat", "tags.dat", "artists.dat"):
            (Path(tmp) / f).symlink_to(LASTFM / f)
        tagged = pd.read_csv(LASTFM / "user_taggedartists.dat", sep="\t")
        on_test = pd.MultiIndex.from_frame(tagged[["userID", "artistID"]].astype(np.int64)).isin(held)
        tagged[~on_test].to_csv(Path(tmp) / "user_taggedartists.dat", sep="\t", index=False)
        data = Dataset.load(tmp, cache=False)
    data.summary["tag_rows_on_test_pairs_removed"] = int(on_test.sum())
    same = split.competition(data, last=last, random=random, seed=seed)[1]
    assert (same.matrix != test.matrix).nnz == 0, "the tagged dataset must cut the same test holdout"
    return data, last, random


def comp_sample(seed: int = 0) -> tuple[Dataset, int, int]:
    from bench_side import comp_sample as load

    return load()


def ml_latest_small(seed: int = 0) -> tuple[Dataset, int, int]:
    """MovieLens latest-small (2016: 671 users x 9,066 movies, all 100,004 ratings, genres): never used to tune
    auto, a check that its defaults carry to data it was not developed on; wide (users < items)."""
    return Dataset.load(SHARED / "ml-latest-small", cache=False), 1, 9


def ml1m(seed: int = 0) -> tuple[Dataset, int, int]:
    from bench_side import ml1m as load

    return load()


#: copies of each ML-1M user in ``ml-1m-x6`` and the share of their events each copy keeps
COPIES, KEEP = 6, 0.95


def ml1m_x6(seed: int = 0) -> tuple[Dataset, int, int]:
    """A scale check near the competition's shape (31,360 users x 6,807 movies, 5.15M events): ML-1M ratings >= 4
    with every user copied 6 times, each copy keeping a seeded 95% of the user's events (36,226 users x 3,533
    items, 3.28M events; copies are not new people, so its accuracy says little: its time and memory do)."""
    from bench_side import ml1m as load

    def copies(ev: pd.DataFrame) -> pd.DataFrame:
        rng = np.random.default_rng(12345)
        parts = []
        for c in range(COPIES):
            part = ev[rng.random(len(ev)) < KEEP]
            parts.append(part.assign(user=part["user"].astype(np.int64) * COPIES + c))
        return pd.concat(parts, ignore_index=True)

    return load(copies, name="ml-1m-x6")


#: name -> loader(test seed): lastfm's side feature depends on the seed's test holdout
LOADERS = {"ml-100k": ml100k, "lastfm": lastfm, "lastfm-plain": lastfm_plain, "comp-sample": comp_sample,
           "ml-1m": ml1m, "ml-latest-small": ml_latest_small, "ml-1m-x6": ml1m_x6}  # fmt: skip


def per_user(recs_or_model, test, k: int = 10) -> np.ndarray:
    """recall@k of every test user (rows: ``test.users``)."""
    if hasattr(recs_or_model, "recommend"):
        recs = recs_or_model.recommend(test.users, k=k)
    else:
        recs = recs_or_model
    return metrics.per_user(f"recall@{k}", recs.items[:, :k], test.matrix[test.users])


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b and its standard error (paired over users)."""
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def decision(report: dict | None) -> dict | None:
    """Fold B of the ensemble's choice: the fused lists vs the best fold-A member, with their paired se."""
    if not report:
        return None
    r = f"recall@{report['k']}"
    alt = next(m for m in report["members"] if m["label"] == report["best_member_fold_a"])
    return {"method": report["method"], "ensemble_fold_b": report["ensemble"]["fold_b"][r],
            "alternative": alt["label"], "alternative_fold_b": alt["fold_b"][r], "se": alt.get("fold_b_gap_se"),
            "fold_b_users": report["fold_b"]["users"], "crossfit": report.get("crossfit")}  # fmt: skip


def one(data: Dataset, last: int, random: int, seed: int, budget: float, out: Path, log=None, device: str = "auto",
        early=None, singles: bool = True) -> dict:
    """One dataset and seed; ``early(res)`` gets auto vs default EASE before the tuned members are refitted
    (``singles``: refit each tuned member on the training part and score it on the test, for the best single)."""
    train, test = split.competition(data, last=last, random=random, seed=seed)
    t0 = time.perf_counter()
    run = run_auto(train, out, budget, k=10, last=last, random=random, seed=seed + 100, device=device,
                   log=log or (lambda m: None))  # fmt: skip
    wall = time.perf_counter() - t0
    rows = np.asarray(test.users)
    from toprec.recommend import Recommendations

    auto_u = per_user(Recommendations(rows, run.recs.items[rows], run.recs.scores[rows]), test)
    ease_u = per_user(models.get("ease", device=device).fit(train), test)
    res = {"seed": seed, "auto": float(auto_u.mean()), "auto_wall_s": wall, "chosen": run.chosen,
           "method": run.method, "weights": run.used, "ease_default": float(ease_u.mean()), "members": {},
           "users": len(rows), "decision": decision(run.validation),
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # fmt: skip
    rr = out / "rerank.json"
    if rr.exists():
        res["rerank"] = json.loads(rr.read_text())
    res["vs_ease"] = paired(auto_u, ease_u)
    if early:
        early(res)
    if not singles:
        res["best_single"], res["vs_best_single"] = None, None
        return res
    tested = {}
    for m in run.members:
        if m["best"]:
            tested[m["name"]] = per_user(models.get(m["name"], **m["best"]["params"]).fit(train), test)
            res["members"][m["name"]] = {"fold_a": m["best"]["value"], "test": float(tested[m["name"]].mean()),
                                         "trials": m["trials"], "params": m["best"]["params"]}  # fmt: skip
    best = max(res["members"].items(), key=lambda kv: kv[1]["test"])
    res["best_single"] = best
    res["vs_best_single"] = paired(auto_u, tested[best[0]])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml-100k,lastfm,comp-sample,ml-1m")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", default="30m")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--log", action="store_true", help="auto's progress lines on stderr")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="auto's --device (and default EASE's); the refitted members use their own device=auto")
    ap.add_argument("--no-singles", action="store_true",
                    help="skip refitting each tuned member for the best single on the test (minutes a seed)")
    ap.add_argument("--tag", default="", help="a note kept in every JSON row (e.g. the machine)")
    args = ap.parse_args()
    progress.set_quiet(True)
    budget = parse_budget(args.budget)
    results = []
    print(f"budget {args.budget} per run; recall@10 on the held-out test (never seen by auto)\n")
    print("| dataset | seed | ease defaults | auto | gain (z) | best tuned single on test | auto - best single (se) | "
          "written | each member tuned (test) | auto wall s |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | ---: |")
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            data, last, random = LOADERS[name](seed)
            with tempfile.TemporaryDirectory() as tmp:
                log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.log else None
                def early(res: dict, name=name) -> None:
                    (de, se) = res["vs_ease"]
                    print(f"early: {name} seed {res['seed']}: auto {res['auto']:.4f} vs ease defaults "
                          f"{res['ease_default']:.4f} ({res['auto'] / res['ease_default'] - 1:+.1%}, z {de / se:.1f}), "
                          f"wall {res['auto_wall_s']:.0f} s, written {res['chosen'][:60]}", file=sys.stderr, flush=True)
                    if args.json:
                        partial = results + [res | {"dataset": name, "budget_s": budget, "partial": True}]
                        args.json.write_text(json.dumps(partial, indent=2, default=str) + "\n")

                r = one(data, last, random, seed, budget, Path(tmp), log, args.device, early, not args.no_singles)
                r |= {"dataset": name, "budget_s": budget, "device": args.device, "tag": args.tag}
            results.append(r)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
            bs, (de, se_e) = r["best_single"], r["vs_ease"]
            members = ", ".join(f"{n} {v['test']:.4f}" for n, v in sorted(r["members"].items(),
                                                                            key=lambda kv: -kv[1]["test"])) or "–"
            single = "– | –"
            if bs is not None:
                db, se_b = r["vs_best_single"]
                single = f"{bs[0]} {bs[1]['test']:.4f} | {db:+.4f} ({se_b:.4f})"
            print(f"| {name} | {seed} | {r['ease_default']:.4f} | {r['auto']:.4f} | "
                  f"{r['auto'] / r['ease_default'] - 1:+.1%} ({de / se_e:.1f}) | {single} | "
                  f"{r['chosen'][:40]} | {members} | {r['auto_wall_s']:.0f} |", flush=True)  # fmt: skip
    by = {}
    for r in results:
        by.setdefault(r["dataset"], []).append(r)
    print("\n| dataset | seeds | median gain of auto over ease defaults | median auto wall s |")
    print("| --- | ---: | ---: | ---: |")
    for name, rs in by.items():
        gains = [r["auto"] / r["ease_default"] - 1 for r in rs]
        print(f"| {name} | {len(rs)} | {statistics.median(gains):+.1%} | "
              f"{statistics.median(r['auto_wall_s'] for r in rs):.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
