"""Issue 21's item-item / autoencoder rows: EASE, Multi-EASE, VASP, CDAE and Multi-CDAE on one split.

    python benchmarks/bench_side_models.py [DATA] [--models ease,multi-ease,vasp,cdae,multi-cdae] [--json OUT]
    python benchmarks/bench_side_models.py ml-1m --models ease,multi-ease,vasp,multi-cdae,multivae --cands vasp=2,3,4 --json OUT
    python benchmarks/bench_side_models.py comp-sample --models ease,multi-ease,vasp,multi-cdae,multivae --json OUT

DATA: a folder ``Dataset.load`` reads (default ``/work/shared/data/ml-100k``), or ``ml-1m`` (ratings >= 4,
genres and years) / ``comp-sample`` (the competition's 1,645 users with their side files), loaded exactly as
``bench_fm.py`` and ``bench_side.py`` load them, so the test holdout is the same as theirs.
Protocol: test = each user's last event + 9 random earlier ones (seed 0); on ``comp-sample`` (no
timestamps) 10 random events per user (seed 0), as in the other benchmarks;
validation = the same protocol cut again from the training part (seed 0).
Every choice is made on validation only: EASE's l2 from a grid; for each
epoch-trained model a few candidate settings (below), each trained on the
validation cut's training part with early stopping on validation recall@10;
the best candidate is then retrained on the whole training part for its best
epoch count (no validation, so exactly that many epochs) and scored on the
test once. Multi-EASE starts from EASE's closed form at the l2 chosen for
EASE; VASP's shallow path starts at zero (its default) or, one candidate, at
EASE's closed form. Prints one markdown table: validation and test recall@10, the test's
last-event and random parts, ndcg@10, the difference to EASE with its paired
standard error over the test users, the epochs and the final fit's seconds.
With ``multivae`` among the rows, a last row is VASP's cheap variant: the
fitted EASE's and Multi-VAE's top-100 lists fused by the ensemble's
``product`` method with equal weights (nothing chosen, so no validation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from toprec import Dataset, metrics, models, split

#: list width of each member in the cheap VASP variant (fixed, not tuned)
CHEAP_N = 100
EASE_L2 = (50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0)
#: candidate settings per row (on top of the model's defaults); "{l2}" = EASE's chosen l2
CANDIDATES: dict[str, tuple[str, list[dict]]] = {
    "multi-ease": ("multi-ease", [
        {"l2": "{l2}", "lr": 1e-5},
        {"l2": "{l2}", "lr": 1e-5, "reg": 5000.0},
        {"l2": "{l2}", "lr": 1e-5, "dropout": 0.5},
        {"l2": "{l2}", "lr": 3e-5, "squared_weight": 1.0},
    ]),
    "vasp": ("vasp", [
        {"loss": "bce"},
        {"loss": "focal"},
        {"loss": "focal", "dropout": 0.25},
        {"shallow_init": "ease", "l2": "{l2}", "shallow_lr": 1e-6},
        {"shallow_init": "ease", "l2": "{l2}", "shallow_lr": 1e-6, "dropout": 0.25},  # added for ML-1M (issue 21)
    ]),
    "cdae": ("cdae", [{"min_batches": 10}]),
    "multi-cdae": ("cdae", [{"loss": "multinomial", "min_batches": 10}]),
    "multivae": ("multivae", [{}]),
}


def evaluate(model, users, test) -> dict:
    recs = model.recommend(users, k=10)
    res = metrics.evaluate(recs, test, ["recall@10", "ndcg@10"])
    parts(res, recs, test)
    res["per_user"] = metrics.per_user("recall@10", recs.items, test.matrix[users])  # rows align with users
    return res


def parts(res: dict, recs, test) -> None:
    for part in ("last", "random"):
        try:
            res[f"recall_{part}@10"] = metrics.evaluate(recs, test, ["recall@10"], part=part)["recall@10"]
        except Exception:  # a holdout without that part (comp-sample has no timestamps: random only)
            res[f"recall_{part}@10"] = float("nan")


def load(name: str) -> tuple[Dataset, int, int]:
    """(data, last, random): ``ml-1m`` / ``comp-sample`` through bench_fm.load (the FM rows' data), else a folder."""
    if name in ("ml-1m", "comp-sample"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_fm

        return bench_fm.load(name)
    return Dataset.load(name), 1, 9


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default="/work/shared/data/ml-100k")
    ap.add_argument("--models", default="ease,multi-ease,vasp,cdae,multi-cdae")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--cands", action="append", default=[], metavar="ROW=I,J",
                    help="only these candidates (0-based indices into CANDIDATES[ROW]) for that row; repeatable")
    a = ap.parse_args()
    data, last, rand = load(a.data)
    train, test = split.competition(data, last=last, random=rand, seed=0)
    fit_part, valid = split.competition(train, last=last, random=rand, seed=0)
    rows = []

    # EASE: l2 on validation, then the whole training part
    t0 = time.perf_counter()
    val = {}
    for l2 in EASE_L2:
        m = models.get("ease", l2=l2).fit(fit_part)
        val[l2] = metrics.evaluate(m.recommend(valid.users, k=10), valid, ["recall@10"])["recall@10"]
    l2 = max(val, key=val.get)
    t1 = time.perf_counter()
    ease = models.get("ease", l2=l2).fit(train)
    fit_s = time.perf_counter() - t1
    log(f"ease: validation recall@10 by l2 {val} -> l2={l2} ({t1 - t0:.1f}s)")
    rows.append({"model": "ease", "params": {"l2": l2}, "val": val[l2], "epochs": "", "fit_s": fit_s,
                 **evaluate(ease, test.users, test)})  # fmt: skip
    fitted = {"ease": ease}

    for row in a.models.split(","):
        if row == "ease":
            continue
        name, cands = CANDIDATES[row]
        pick = dict(c.split("=", 1) for c in a.cands)
        if row in pick:
            cands = [cands[int(i)] for i in pick[row].split(",")]
        extra = {"valid_last": last, "valid_random": rand}  # the validation cut's shape (the trainer's own holdout)
        best = None
        for cand in cands:
            p = {k: (l2 if v == "{l2}" else v) for k, v in cand.items()}
            t0 = time.perf_counter()
            m = models.get(name, **{**p, **extra}).fit(fit_part, valid=valid)
            log(f"{row} {p}: validation recall@10 {m.best_metric:.4f} at epoch {m.best_epoch}/{len(m.history)} "
                f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip
            if best is None or m.best_metric > best[1]:
                best = (p, m.best_metric, m.best_epoch)
        p, v, epochs = best
        t0 = time.perf_counter()
        m = models.get(name, **{**p, "epochs": max(1, epochs), "valid_last": 0, "valid_random": 0}).fit(train)
        fit_s = time.perf_counter() - t0
        rows.append({"model": row, "params": p, "val": v, "epochs": epochs, "fit_s": fit_s,
                     **evaluate(m, test.users, test)})  # fmt: skip
        log(f"{row}: test recall@10 {rows[-1]['recall@10']:.4f}")
        fitted[row] = m

    if "multivae" in fitted:  # VASP's cheap variant: the fitted EASE and Multi-VAE, product fusion, weights 1:1
        from toprec.ensemble.fusion import fuse

        lists = [fitted[n].recommend(test.users, k=CHEAP_N) for n in ("ease", "multivae")]
        recs = fuse(lists, method="product", k=10, users=test.users)
        res = metrics.evaluate(recs, test, ["recall@10", "ndcg@10"])
        parts(res, recs, test)
        res["per_user"] = metrics.per_user("recall@10", recs.items, test.matrix[test.users])
        rows.append({"model": "ease x multivae (product fusion)", "params": {"weights": "1:1", "lists": CHEAP_N},
                     "val": float("nan"), "epochs": "", "fit_s": float("nan"), **res})  # fmt: skip

    ease_test, ease_users = rows[0]["recall@10"], rows[0]["per_user"]
    for r in rows:  # paired standard error of the difference to EASE over the test users
        d = r.pop("per_user") - ease_users
        r["se_vs_ease"] = float(d.std(ddof=1) / np.sqrt(len(d)))
    print(f"\n{a.data}: {data.n_users} users x {data.n_items} items; test last {last} + random {rand} (seed 0), "
          "validation cut the same way from the training part")  # fmt: skip
    print("| model | chosen on validation | val recall@10 | epochs | test recall@10 | vs EASE (paired se) | last | random | ndcg@10 | final fit s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
        print(f"| {r['model']} | {params} | {r['val']:.4f} | {r['epochs']} | {r['recall@10']:.4f} | "
              f"{100 * (r['recall@10'] / ease_test - 1):+.1f}% ({r['recall@10'] - ease_test:+.4f} ± {r['se_vs_ease']:.4f}) | {r['recall_last@10']:.4f} | "
              f"{r['recall_random@10']:.4f} | {r['ndcg@10']:.4f} | {r['fit_s']:.1f} |")  # fmt: skip
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"data": a.data, "n_users": data.n_users, "n_items": data.n_items, "n_events": data.n_events,
                       "test": {"last": last, "random": rand, "seed": 0}, "valid_seed": 0,
                       "command": "python benchmarks/bench_side_models.py " + " ".join(sys.argv[1:]),
                       "rows": rows}, fh, indent=1, default=str)  # fmt: skip


if __name__ == "__main__":
    main()
