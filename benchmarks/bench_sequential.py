#!/usr/bin/env python
"""Sequential, graph and NCF models: accuracy on ML-1M (competition protocol) and speed.

    python benchmarks/bench_sequential.py quality --models sasrec -p sasrec.epochs=20
    python benchmarks/bench_sequential.py quality --models seqrules --json benchmarks/results/seqrules_quality_ml-1m.json
    python benchmarks/bench_sequential.py speed --models sasrec,bert4rec,lightgcn,ngcf,ncf --batches 5
    python benchmarks/bench_sequential.py speed --models sasrec,lightgcn --device cuda --batches 0

quality: MovieLens-1M ratings >= 4. The test holdout is cut once (each user's
last event + 9 random earlier ones, seed 0). Each model early-stops on its own
validation holdout, cut the same way from the training part only (the trainer
does this, seeded); the test part is scored once, by the early-stopped model.
EASE (l2=1200, the value chosen on validation in benchmarks/results/quality.md)
is fit on the same training part and scored on the same test, so recall on the
last event (``recall_last@10``, the sequential half of the hidden test) is
compared on one split.

speed: competition-scale synthetic data (``toprec data synth --out /tmp/synth``
when missing). ``data ready``: from the loaded Dataset to the first batch: the
trainer's validation cut, the model's ``_prepare`` (sequences + time ranks,
normalised adjacency, sampling keys) and the module on the device — the
median of 3 runs.
``s/epoch``: median seconds of ``--batches`` training batches (after 2 warm-up
batches) times the number of batches in one epoch (an extrapolation, marked
as such), or of whole epochs with ``--batches 0``.

Data: ../shared/data (the benchmark's own inputs; nothing a user needs depends on them).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from toprec import Dataset, metrics, models, split

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parents[1] / "shared" / "data"
ML1M = SHARED / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz"


def parse_params(pairs: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        model, key = key.split(".", 1)
        out.setdefault(model, {})[key] = value
    return out


def scores(model, train, test) -> dict:
    t0 = time.perf_counter()
    recs = model.recommend(test.users, k=10)
    out = metrics.evaluate(recs, test, ["recall@10", "ndcg@10"])
    for part in ("last", "random"):
        out[f"recall_{part}@10"] = metrics.evaluate(recs, test, ["recall@10"], part=part)["recall@10"]
    out["recommend_s"] = time.perf_counter() - t0
    return out


def quality(args) -> list[dict]:
    data = Dataset.load(ML1M, format="table", user_col="user", item_col="item", time_col="timestamp")
    train, test = split.competition(data, last=1, random=9, seed=0)
    rows = []
    t0 = time.perf_counter()
    ease = models.get("ease", l2=1200.0).fit(train)
    rows.append({"model": "ease", "params": {"l2": 1200.0}, "fit_s": time.perf_counter() - t0,
                 "best_epoch": 0, "epochs_run": 0, "val_recall@10": float("nan"), "s_per_epoch": float("nan"),
                 **scores(ease, train, test)})  # fmt: skip
    params = parse_params(args.param)
    for spec in args.saved:  # a model already fitted on this very training part (e.g. the ensemble benchmark's)
        path = Path(spec)
        model = models.Recommender.load(path)
        if model.train_matrix.shape != train.matrix.shape or (model.train_matrix != train.matrix).nnz:
            raise SystemExit(f"{path}: not fitted on this split's training part")
        meta = json.loads((path / "model.json").read_text())
        rows.append({"model": model.name, "params": {"saved": str(path), **{k: meta["params"][k] for k in ("epochs", "patience")
                     if k in meta["params"]}}, "fit_s": float("nan"), "best_epoch": "-", "epochs_run": "-",
                     "val_recall@10": float("nan"), "s_per_epoch": float("nan"), **scores(model, train, test)})  # fmt: skip
    for name in [n for n in args.models.split(",") if n]:
        p = dict(params.get(name, {}))
        if args.device:
            p["device"] = args.device
        model = models.get(name, **p)
        t0 = time.perf_counter()

        def show(epoch, logs, name=name):
            print(f"{name} epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()), file=sys.stderr, flush=True)

        model.fit(train, callback=show)
        fit_s = time.perf_counter() - t0
        hist = model.history
        # closed forms (seqrules) have no epochs, validation curve or device
        row = {"model": name, "params": p, "fit_s": fit_s, "best_epoch": getattr(model, "best_epoch", 0),
               "epochs_run": len(hist), "val_recall@10": getattr(model, "best_metric", float("nan")),
               "device": getattr(model, "device_", "cpu"),
               "s_per_epoch": statistics.median(h["seconds"] for h in hist) if hist else float("nan"),
               "val_curve": [round(h["recall@10"], 4) for h in hist], **scores(model, train, test)}  # fmt: skip
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr)
    print(f"\nML-1M ratings >= 4 ({data.n_users} users, {data.n_items} items, {data.n_events} events), "
          "competition protocol (test: last 1 + random 9, seed 0; validation cut from train)")  # fmt: skip
    print("| model | params | val recall@10 | best epoch / run | test recall@10 | recall last | recall random | ndcg@10 | fit s | s/epoch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ps = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
        print(f"| {r['model']} | {ps} | {r['val_recall@10']:.4f} | {r['best_epoch']} / {r['epochs_run']} | "
              f"{r['recall@10']:.4f} | {r['recall_last@10']:.4f} | {r['recall_random@10']:.4f} | {r['ndcg@10']:.4f} | "
              f"{r['fit_s']:.0f} | {r['s_per_epoch']:.1f} |")  # fmt: skip
    return rows


def _n_batches(model) -> int:
    bs = model.params.batch_size
    if hasattr(model, "_train_seq"):
        return math.ceil(len(model._train_seq) / bs)
    n = model._X.nnz * (1 + getattr(model.params, "n_negatives", 0) if model.name == "ncf" else 1)
    return math.ceil(n / bs)


def speed(args) -> list[dict]:
    import torch

    from toprec.train.base import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.synth)
    if not (folder / "train_ratings.csv").exists():
        subprocess.run([sys.executable, "-m", "toprec", "data", "synth", "--out", str(folder), "-q"], check=True)
    data = Dataset.load(folder)
    fit_data, _ = split.competition(data, last=1, random=9, seed=0)  # what the trainer trains on
    X = fit_data.matrix
    params = parse_params(args.param)
    rows = []
    for name in args.models.split(","):
        p = {**params.get(name, {}), "device": args.device or "auto"}
        model = models.get(name, **p)
        model.n_users, model.n_items = X.shape
        model.train_matrix = X
        model.item_popularity = np.asarray(fit_data.item_counts, dtype=np.float32)
        model.device_ = dev = resolve_device(model.params.device)
        torch.manual_seed(0)
        ready, prep = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            fit_data, _ = split.competition(data, last=1, random=9, seed=0)  # the trainer's validation cut
            X = fit_data.matrix
            t1 = time.perf_counter()
            model._prepare(X, fit_data)
            module = model._build_module().to(dev)
            if hasattr(model, "_adjacency"):
                model._adjacency(dev)
            if dev == "cuda":
                torch.cuda.synchronize()
            ready.append(time.perf_counter() - t0)
            prep.append(time.perf_counter() - t1)
        model.module = module
        opt = model._make_optimizers(module)
        gen = torch.Generator().manual_seed(0)
        n_batches = _n_batches(model)
        module.train()
        times = []
        t_epoch = time.perf_counter()
        for b, batch in enumerate(model._batches(module, gen)):
            if args.batches and b >= args.batches + 2:
                break
            t0 = time.perf_counter()
            for o in opt.values():
                o.zero_grad(set_to_none=True)
            with model._autocast():
                loss = model._loss(module, batch, 1)
            model._step(loss, opt.values())
            if dev == "cuda":
                torch.cuda.synchronize()
            if b >= 2:
                times.append(time.perf_counter() - t0)
        whole = time.perf_counter() - t_epoch
        per_epoch = statistics.median(times) * n_batches if args.batches else whole
        row = {"model": name, "device": dev, "users": data.n_users, "items": data.n_items, "events": data.n_events,
               "data_ready_s": statistics.median(ready), "prepare_s": statistics.median(prep), "s_per_epoch": per_epoch,
               "extrapolated_from_batches": len(times) if args.batches else 0, "batches_per_epoch": n_batches,
               "s_per_batch": statistics.median(times) if times else float("nan"), "threads": torch.get_num_threads(),
               "params": {k: str(v) for k, v in p.items()}}  # fmt: skip
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr)
    print(f"\ncompetition-scale synthetic data ({data.n_users} users x {data.n_items} items, {data.n_events} events)")
    print("| model | device | params | data ready s | of which model prepare s | s/epoch | how | batches/epoch |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        how = f"median of {r['extrapolated_from_batches']} batches x batches/epoch" if r["extrapolated_from_batches"] else "one whole epoch"
        ps = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "device") or "defaults"
        print(f"| {r['model']} | {r['device']} | {ps} | {r['data_ready_s']:.2f} | {r['prepare_s']:.2f} | {r['s_per_epoch']:.1f} | {how} | {r['batches_per_epoch']} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["quality", "speed"])
    ap.add_argument("--models", default="sasrec,bert4rec")
    ap.add_argument("-p", "--param", action="append", default=[], help="model.key=value (repeatable)")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda")
    ap.add_argument("--synth", default="/tmp/synth", help="speed: competition-scale data folder")
    ap.add_argument("--batches", type=int, default=5, help="speed: timed batches per model (0 = one whole epoch)")
    ap.add_argument("--threads", type=int, default=0, help="speed: torch CPU threads (0 = torch's default)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here (default under benchmarks/results/)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--saved", action="append", default=[],
                    help="quality: also score a saved model folder fitted on the same training part (repeatable)")
    args = ap.parse_args()
    if args.quiet:
        from toprec import progress

        progress.set_quiet(True)
    rows = quality(args) if args.mode == "quality" else speed(args)
    dev = args.device or "auto"
    out = args.json or ROOT / "results" / (
        "sequential_quality_ml-1m.json" if args.mode == "quality" else f"sequential_speed_{dev}.json"
    )
    from toprec.io import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2, default=str) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
