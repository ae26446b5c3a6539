#!/usr/bin/env python
"""Neural models on the shared trainer: accuracy (competition protocol) and speed.

    python benchmarks/bench_neural.py quality --data ml-1m --models recvae,multivae,multidae
    python benchmarks/bench_neural.py quality --data ml-100k --models recvae -p recvae.epochs=30
    python benchmarks/bench_neural.py speed --models multivae,recvae --device cpu --epochs 2

quality: the test holdout is cut once (each user's last event + 9 random
earlier ones, seed 0). Each model early-stops on its own validation holdout,
cut the same way from the training part only (the trainer does this, seeded by
the model's seed); the test part is scored once, by the early-stopped model.
Reports test recall@10, recall on the last / random parts, the best epoch and
the fit time, next to EASE's test recall@10 from benchmarks/results/quality.md
(ML-1M 0.1880, ML-100K 0.2521 with l2 chosen on validation).

speed: competition-scale synthetic data (``toprec data synth --out /tmp/synth``
when missing): data-ready time (validation cut + CSR on the device), median
seconds per training epoch (validation off) over ``--epochs`` epochs after
``--warmup`` untimed ones, and one full-ranking validation (recall@10 over every
validation user, seen items masked). ``--device cuda`` for a GPU.

Data: MovieLens-100K and MovieLens-1M ratings >= 4 from ../shared/data (the
benchmark's own inputs; nothing a user needs depends on them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


from toprec import Dataset, metrics, models, split

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parents[1] / "shared" / "data"
DATASETS = {
    "ml-100k": lambda: Dataset.load(SHARED / "ml-100k"),
    "ml-1m": lambda: Dataset.load(
        SHARED / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz",
        format="table", user_col="user", item_col="item", time_col="timestamp",
    ),  # fmt: skip
}
EASE = {"ml-100k": 0.2521, "ml-1m": 0.1880}  # benchmarks/results/quality.md, l2 chosen on validation


def parse_params(pairs: list[str], names: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {n: {} for n in names}
    for pair in pairs:
        key, value = pair.split("=", 1)
        model, key = key.split(".", 1)
        out.setdefault(model, {})[key] = value
    return out


def quality(args) -> list[dict]:
    data = DATASETS[args.data]()
    train, test = split.competition(data, last=1, random=9, seed=0)
    names = args.models.split(",")
    params = parse_params(args.param, names)
    rows = []
    for name in names:
        p = dict(params.get(name, {}))
        if args.device:
            p["device"] = args.device
        model = models.get(name, **p)
        t0 = time.perf_counter()
        model.fit(train, callback=lambda e, logs: print(f"  {name} epoch {e}: {logs}", file=sys.stderr, flush=True))
        fit_s = time.perf_counter() - t0
        recs = model.recommend(test.users, k=10)
        res = metrics.evaluate(recs, test, ["recall@10", "ndcg@10"])
        for part in ("last", "random"):
            res[f"recall_{part}@10"] = metrics.evaluate(recs, test, ["recall@10"], part=part)["recall@10"]
        hist = getattr(model, "history", [])
        row = {
            "dataset": args.data, "model": name, "params": p,
            "val_recall@10": getattr(model, "best_metric", float("nan")),
            "best_epoch": getattr(model, "best_epoch", 0), "epochs_run": len(hist),
            "test_recall@10": res["recall@10"], "test_ndcg@10": res["ndcg@10"],
            "test_recall_last@10": res["recall_last@10"], "test_recall_random@10": res["recall_random@10"],
            "fit_s": fit_s, "s_per_epoch": statistics.median(h["seconds"] for h in hist) if hist else float("nan"),
            "ease_test_recall@10": EASE.get(args.data),
        }  # fmt: skip
        rows.append(row)
        print(
            f"{args.data} {name:9} test recall@10 {row['test_recall@10']:.4f} (last {row['test_recall_last@10']:.4f}, "
            f"random {row['test_recall_random@10']:.4f})  val {row['val_recall@10']:.4f} @ epoch {row['best_epoch']}"
            f"/{row['epochs_run']}  fit {fit_s:.1f}s",
            file=sys.stderr,
        )
    print(f"\n{args.data}, competition protocol (test: last 1 + random 9, seed 0); EASE test recall@10 = {EASE.get(args.data)}")
    print("| model | params | val recall@10 | best epoch / run | test recall@10 | vs EASE | recall last | recall random | test ndcg@10 | fit s | s/epoch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ps = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
        vs = (r["test_recall@10"] / r["ease_test_recall@10"] - 1) * 100 if r["ease_test_recall@10"] else float("nan")
        print(
            f"| {r['model']} | {ps} | {r['val_recall@10']:.4f} | {r['best_epoch']} / {r['epochs_run']} | "
            f"{r['test_recall@10']:.4f} | {vs:+.1f}% | {r['test_recall_last@10']:.4f} | {r['test_recall_random@10']:.4f} | "
            f"{r['test_ndcg@10']:.4f} | {r['fit_s']:.1f} | {r['s_per_epoch']:.2f} |"
        )
    return rows


def speed(args) -> list[dict]:
    import torch

    folder = Path(args.synth)
    if not (folder / "train_ratings.csv").exists():
        subprocess.run([sys.executable, "-m", "toprec", "data", "synth", "--out", str(folder), "-q"], check=True)
    data = Dataset.load(folder)
    names = args.models.split(",")
    params = parse_params(args.param, names)
    rows = []
    for name in names:
        p = {**params.get(name, {}), "device": args.device or "auto", "valid_last": 0, "valid_random": 0,
             "epochs": args.epochs + args.warmup, "patience": 0}  # fmt: skip
        model = models.get(name, **p)
        t0 = time.perf_counter()
        model.fit(data)  # the first --warmup epochs are not timed
        fit_s = time.perf_counter() - t0
        per_epoch = [h["seconds"] for h in model.history[args.warmup :]]
        # data ready: validation cut + CSR to the device (what the trainer does before epoch 1)
        ready = []
        for _ in range(3):
            t0 = time.perf_counter()
            fit_data, holdout = split.competition(data, last=1, random=9, seed=0)
            from toprec.train.base import RowMatrix

            rm = RowMatrix(fit_data.matrix, model.device_)
            if model.device_ == "cuda":
                torch.cuda.synchronize()
            ready.append(time.perf_counter() - t0)
        del rm
        # one full-ranking validation over every validation user
        Xfit = fit_data.matrix
        valid_s = []
        for _ in range(args.valid_repeats):
            t0 = time.perf_counter()
            with model._threads(len(holdout.users)):
                rec = model._validate(model.module, holdout, Xfit)
            valid_s.append(time.perf_counter() - t0)
        row = {
            "model": name, "device": model.device_, "users": data.n_users, "items": data.n_items,
            "events": data.n_events, "data_ready_s": statistics.median(ready),
            "s_per_epoch": statistics.median(per_epoch), "epochs_timed": len(per_epoch), "fit_s": fit_s,
            "valid_s": statistics.median(valid_s), "valid_users": int(len(holdout.users)),
            "valid_recall@10": rec, "score_dtype": str(model._score_dtype()).replace("torch.", ""),
            "threads": torch.get_num_threads(), "params": params.get(name, {}),
        }  # fmt: skip
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr)
    print(f"\ncompetition-scale synthetic data ({data.n_users} users x {data.n_items} items, {data.n_events} events)")
    print("| model | device | data ready s | s/epoch (median) | epochs timed | full validation s (users) | scoring dtype |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['device']} | {r['data_ready_s']:.2f} | {r['s_per_epoch']:.2f} | {r['epochs_timed']} | "
            f"{r['valid_s']:.2f} ({r['valid_users']}) | {r['score_dtype']} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["quality", "speed"])
    ap.add_argument("--models", default="recvae,multivae,multidae")
    ap.add_argument("--data", default="ml-1m", choices=sorted(DATASETS))
    ap.add_argument("-p", "--param", action="append", default=[], help="model.key=value (repeatable)")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda")
    ap.add_argument("--synth", default="/tmp/synth", help="speed: competition-scale data folder")
    ap.add_argument("--epochs", type=int, default=3, help="speed: timed epochs")
    ap.add_argument("--warmup", type=int, default=1, help="speed: untimed epochs first")
    ap.add_argument("--valid-repeats", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write the rows here (default under benchmarks/results/)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.quiet:
        from toprec import progress

        progress.set_quiet(True)
    rows = quality(args) if args.mode == "quality" else speed(args)
    dev = args.device or "auto"
    out = args.json or ROOT / "results" / (
        f"neural_quality_{args.data}.json" if args.mode == "quality" else f"neural_speed_{dev}.json"
    )
    from toprec.io import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2, default=str) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
