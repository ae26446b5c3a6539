#!/usr/bin/env python
"""Does `toprec tune` find what a fine grid finds? Does pruning save time?

    python benchmarks/bench_tune.py ease                      # EASE l2: fine grid vs 20 TPE trials, 5 sampler seeds
    python benchmarks/bench_tune.py recvae --trials 20 -p epochs=10   # 20 trials with and without pruning

Protocol (MovieLens-100K from ../shared/data, as benchmarks/bench_quality.py):
the test holdout is cut first (each user's last event + 9 random earlier ones,
seed 0) and never used for choosing anything. Tuning and the grid both see
only the training part; their objective is validation recall@10 on a holdout
cut from it the same way (seed 1) — exactly what `toprec tune --seed 1` does
on a folder holding the training part. The chosen l2 is then fitted on all of
the training part and scored once on the test holdout.

ease: a grid of 61 l2 values, 20 per decade from 10 to 10^4 (12% apart), plus
the search-space ends; then the tuner (TPE, 20 trials over l2 in [1, 10^5]
log-uniform, as EASE declares) with sampler seeds 0..4. Reported: each run's
best l2 and validation recall, the gap to the grid's best (relative), and the
median over the seeds.

recvae (or any epoch-trained model): 20 trials with the median pruner and 20
without, same sampler seed, wall time and best validation recall of each.

Results are written to benchmarks/results/tune_<model>_ml100k.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ["TOPREC_NO_TRACK"] = "1"  # the benchmark measures tuning, not MLflow

from toprec import Dataset, metrics, models, split  # noqa: E402
from toprec.experiment.config import DataConfig, ModelConfig, RunConfig, SplitConfig, TuneConfig  # noqa: E402
from toprec.experiment.tune import tune  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def val_recall(model, train, holdout, k=10) -> float:
    recs = model.recommend(holdout.users, k=k)
    return metrics.evaluate(recs, holdout, [f"recall@{k}"])[f"recall@{k}"]


def run_tune(train, name: str, trials: int, seed: int, pruning: bool, fixed: dict, workdir: Path) -> dict:
    cls = models.get_class(name)
    params = cls(**fixed).params.model_dump(mode="json")
    cfg = RunConfig(
        command="tune",
        data=DataConfig(path="ml-100k-train"),
        split=SplitConfig(seed=seed),
        model=ModelConfig(name=name, params=params),
        tune=TuneConfig(trials=trials, study=f"{name}-{seed}-{pruning}", pruning=pruning, fixed=sorted(fixed),
                        out=str(workdir / f"{name}-{seed}-{int(pruning)}")),  # fmt: skip
    )
    t0 = time.perf_counter()
    summary = tune(cfg, train, quiet=True)
    wall = time.perf_counter() - t0
    s = summary["states"]
    return {"seed": seed, "pruning": pruning, "best_value": summary["best"]["value"],
            "best_params": summary["best"]["params"], "complete": s["COMPLETE"], "pruned": s["PRUNED"],
            "epochs": sum(r["epochs"] for r in summary["trials"]), "wall_s": wall}  # fmt: skip


def bench_ease(args, data) -> dict:
    train, test = split.competition(data, last=1, random=9, seed=0)
    # the tuner cuts its validation holdout from `train` with split seed 1: the grid uses the same one
    tr2, val = split.competition(train, last=1, random=9, seed=1)
    grid = sorted({1.0, 1e5, *np.round(np.logspace(1, 4, 61), 6).tolist()})
    t0 = time.perf_counter()
    values = []
    for l2 in grid:
        v = val_recall(models.get("ease", l2=l2).fit(tr2), tr2, val)
        values.append(v)
        print(f"  grid l2={l2:10.2f}  val recall@10 {v:.5f}", file=sys.stderr)
    grid_s = time.perf_counter() - t0
    i = int(np.argmax(values))
    grid_best = {"l2": grid[i], "val_recall@10": values[i]}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(args.seeds):
            # sampler seed s, validation split seed 1 (the tuner's seed sets both: offset the sampler only)
            r = run_tune_seeded(train, args.trials, sampler_seed=s, workdir=Path(tmp))
            r["gap_rel"] = (grid_best["val_recall@10"] - r["best_value"]) / grid_best["val_recall@10"]
            r["l2_rel"] = abs(r["best_params"]["l2"] - grid_best["l2"]) / grid_best["l2"]
            runs.append(r)
            print(f"  tune seed {s}: l2={r['best_params']['l2']:.2f} val {r['best_value']:.5f} "
                  f"gap {r['gap_rel']:+.2%} ({r['wall_s']:.1f}s)", file=sys.stderr)  # fmt: skip
    test_grid = val_recall(models.get("ease", l2=grid_best["l2"]).fit(train), train, test)
    med = statistics.median(r["gap_rel"] for r in runs)
    med_run = sorted(runs, key=lambda r: r["gap_rel"])[len(runs) // 2]
    test_tune = val_recall(models.get("ease", l2=med_run["best_params"]["l2"]).fit(train), train, test)
    return {"model": "ease", "grid": {"l2": grid, "val_recall@10": values, "seconds": grid_s, "best": grid_best,
                                      "test_recall@10": test_grid},
            "tune": runs, "median_gap_rel": med, "max_gap_rel": max(r["gap_rel"] for r in runs),
            "median_tune_wall_s": statistics.median(r["wall_s"] for r in runs),
            "median_run_test_recall@10": test_tune, "trials": args.trials}  # fmt: skip


def run_tune_seeded(train, trials: int, sampler_seed: int, workdir: Path) -> dict:
    """The tuner with validation split seed 1 and sampler seed ``sampler_seed`` (worker index offsets it)."""
    from toprec.experiment import tune as tune_mod

    cls = models.get_class("ease")
    cfg = RunConfig(
        command="tune",
        data=DataConfig(path="ml-100k-train"),
        split=SplitConfig(seed=1),
        model=ModelConfig(name="ease", params=cls().params.model_dump(mode="json")),
        tune=TuneConfig(trials=trials, study=f"ease-s{sampler_seed}", out=str(workdir / f"ease-s{sampler_seed}")),
    )
    t0 = time.perf_counter()
    summary = tune_mod.tune(cfg, train, worker=sampler_seed, quiet=True)
    wall = time.perf_counter() - t0
    return {"sampler_worker_index": sampler_seed, "best_value": summary["best"]["value"],
            "best_params": summary["best"]["params"], "complete": summary["states"]["COMPLETE"], "wall_s": wall}


def bench_pruning(args, data, name: str) -> dict:
    train, _test = split.competition(data, last=1, random=9, seed=0)
    fixed = dict(p.split("=", 1) for p in args.param)
    out = {"model": name, "trials": args.trials, "fixed": fixed, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for pruning in (True, False):
            r = run_tune(train, name, args.trials, seed=1, pruning=pruning, fixed=fixed, workdir=Path(tmp))
            out["runs"].append(r)
            print(f"  {name} pruning={pruning}: best {r['best_value']:.5f}, {r['pruned']} pruned, "
                  f"{r['epochs']} epochs, {r['wall_s']:.1f}s", file=sys.stderr)  # fmt: skip
    on, off = out["runs"]
    out["speedup"] = off["wall_s"] / on["wall_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="ease")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=5, help="ease: sampler seeds")
    ap.add_argument("-p", "--param", action="append", default=[], help="fixed model parameter key=value")
    args = ap.parse_args()
    data = Dataset.load(SHARED / "ml-100k")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.model == "ease":
        res = bench_ease(args, data)
        g = res["grid"]["best"]
        lines = [
            f"# EASE l2 on MovieLens-100K: fine grid vs `toprec tune` ({args.trials} TPE trials)",
            "",
            "Validation holdout cut from the training part (competition protocol, seed 1); test never used to choose.",
            "",
            f"Grid: {len(res['grid']['l2'])} values; best l2 = {g['l2']:.2f}, val recall@10 = {g['val_recall@10']:.5f} "
            f"({res['grid']['seconds']:.1f}s); test recall@10 = {res['grid']['test_recall@10']:.5f}.",
            "",
            "| sampler | best l2 | val recall@10 | gap to grid (relative) | l2 vs grid's l2 | wall s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in res["tune"]:
            lines.append(f"| {r['sampler_worker_index']} | {r['best_params']['l2']:.2f} | {r['best_value']:.5f} | "
                         f"{r['gap_rel']:+.2%} | {r['l2_rel']:.1%} | {r['wall_s']:.1f} |")  # fmt: skip
        lines += ["", f"Median gap {res['median_gap_rel']:+.2%}, worst {res['max_gap_rel']:+.2%}; median tuning wall "
                      f"time {res['median_tune_wall_s']:.1f}s; the median run's l2 on the test holdout: "
                      f"recall@10 {res['median_run_test_recall@10']:.5f}."]  # fmt: skip
    else:
        res = bench_pruning(args, data, args.model)
        on, off = res["runs"]
        lines = [
            f"# {args.model} on MovieLens-100K: {args.trials} trials with and without pruning ({res['fixed']})",
            "",
            "| pruning | best val recall@10 | complete | pruned | epochs | wall s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| median | {on['best_value']:.5f} | {on['complete']} | {on['pruned']} | {on['epochs']} | {on['wall_s']:.1f} |",
            f"| none | {off['best_value']:.5f} | {off['complete']} | {off['pruned']} | {off['epochs']} | {off['wall_s']:.1f} |",
            "",
            f"Pruning: {res['speedup']:.2f}x faster.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    stem = RESULTS / f"tune_{args.model}_ml100k"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
