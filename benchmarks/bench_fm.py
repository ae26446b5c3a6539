#!/usr/bin/env python
"""FM-family models (fm / logistic-fm, deepfm, cfm) with side features: quality per loss, and speed.

    python benchmarks/bench_fm.py quality --dataset comp-sample   # writes results/fm_quality_comp-sample.json
    python benchmarks/bench_fm.py quality --dataset ml-1m --max-epochs 12
    python benchmarks/bench_fm.py speed --data /tmp/synth          # `toprec data synth --out /tmp/synth` first
    python benchmarks/bench_fm.py table                            # results/fm.md from every fm_*.json
    # focal vs BPR with the same tuning budget (4 validation-chosen candidates each; issue 21's target)
    python benchmarks/bench_fm.py quality --dataset ml-1m --max-epochs 15 --threads 1 \
        --rows "fm bpr (tuned),fm focal (tuned),fm softmax-focal (tuned),fm softmax (tuned)" \
        --out benchmarks/results/fm_focal_vs_bpr_ml-1m.json

quality: the test holdout is cut first (competition protocol: each user's last
event + 9 random earlier ones, seed 0; the competition sample has no
timestamps: 10 random). A validation holdout is cut the same way from the
training part only (seed 100). Each row's candidates (below) train on the
validation cut's training part with early stopping on validation recall@10
(at most ``--max-epochs`` epochs: the machine is shared, so epochs are capped);
the best candidate is refit on the whole training part for its best epoch
count and scored on the test once. EASE's l2 is chosen from a grid on the same
validation cut. Reports recall@10, its last-event and random parts, the
difference to the same model with BPR (paired per-user standard error), epochs
and the final fit's seconds.

speed: one FM-family epoch at competition scale (the ``toprec data synth``
defaults: 31,360 users, 6,807 items, 5.15M events, with genres/directors/
writers/years) and the time to recommend 10 items to every user, on this CPU.
CFM's ranking is timed on a sample of users and extrapolated (it runs its CNN
on every (user, item) pair).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from toprec import Dataset, metrics, models, split

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EASE_L2 = (50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0)
#: row -> (model, candidate settings); each candidate on top of the model's defaults
ROWS: dict[str, tuple[str, list[dict]]] = {
    "fm bpr": ("fm", [{"loss": "bpr"}]),
    "logistic-fm (bce)": ("logistic-fm", [{"loss": "bce"}]),
    "fm focal": ("fm", [{"loss": "focal", "gamma": 1.0}, {"loss": "focal", "gamma": 2.0}]),
    "deepfm bpr": ("deepfm", [{"loss": "bpr"}]),
    "deepfm focal": ("deepfm", [{"loss": "focal", "gamma": 2.0}]),
    "cfm bpr": ("cfm", [{"loss": "bpr"}]),
    "cfm focal": ("cfm", [{"loss": "focal", "gamma": 2.0}]),
    "multivae": ("multivae", [{}]),
    # focal vs BPR, each with the same budget (4 candidates, the same epoch cap), chosen on validation only
    "fm bpr (tuned)": ("fm", [{"loss": "bpr", "lr": lr, "weight_decay": wd, "n_negatives": n}
                              for lr, wd, n in ((3e-3, 0.0, 16), (3e-3, 0.0, 64), (3e-3, 1e-6, 16), (1e-2, 0.0, 64))]),
    "fm focal (tuned)": ("fm", [{"loss": "focal", "gamma": g, "alpha": al, "n_negatives": n}
                                for g, al, n in ((1.0, 0.0, 16), (2.0, 0.75, 16), (1.0, 0.5, 8), (0.5, 0.0, 8))]),
    # the multi-class focal loss over the positive and its negatives, and its gamma=0 case (sampled softmax)
    "fm softmax-focal (tuned)": ("fm", [{"loss": "softmax-focal", "gamma": g, "n_negatives": n}
                                        for g, n in ((1.0, 64), (0.5, 64), (2.0, 64), (1.0, 16))]),
    "fm softmax (tuned)": ("fm", [{"loss": "softmax", "lr": lr, "n_negatives": n}
                                  for lr, n in ((3e-3, 16), (3e-3, 64), (1e-2, 64), (3e-3, 128))]),
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def shared() -> Path:
    """The shared data folder: $TOPREC_SHARED_DATA, else ../shared/data next to the checkout (or /work/shared/data)."""
    env = os.environ.get("TOPREC_SHARED_DATA")
    if env:
        return Path(env)
    near = HERE.parents[1] / "shared" / "data"
    return near if near.exists() else Path("/work/shared/data")


def load(name: str) -> tuple[Dataset, int, int]:
    """(data, last, random): the holdout's counts (the competition sample has no timestamps: 0 + 10).
    The same data as bench_side.py's ``comp-sample`` and ``ml-1m`` (ratings >= 4, genres and years)."""
    import tempfile

    import pandas as pd

    sys.path.insert(0, str(HERE))
    from toprec.data.loaders import _explode, _years_from_titles

    root = shared()
    if name == "comp-sample":
        import prepare_competition_sample as prep

        comp = root / "boostcamp-movierec-2022"
        with tempfile.TemporaryDirectory() as tmp:
            prep.write_folder(prep.read_sample(comp / "partial_sample_pro_sg"), comp, Path(tmp) / "sample")
            return Dataset.load(Path(tmp) / "sample", cache=False), 0, 10
    if name == "ml-1m":
        ev = pd.read_csv(root / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz")
        movies = pd.read_csv(root / "ml-1m" / "movies.dat", sep="::", engine="python", header=None,
                             names=["item", "title", "genres"], encoding="latin-1")  # fmt: skip
        items = movies["item"].to_numpy()
        feats = {"genres": _explode(items, movies["genres"], "|"), "years": _years_from_titles(items, movies["title"])}
        return Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["timestamp"].to_numpy(),
                                   features=feats, name="ml-1m"), 1, 9  # fmt: skip
    return Dataset.load(name), 1, 9


def evaluate(model, users, test) -> dict:
    recs = model.recommend(users, k=10)
    res = metrics.evaluate(recs, test, ["recall@10", "ndcg@10"])
    for part in ("last", "random"):
        try:
            res[f"recall_{part}@10"] = metrics.evaluate(recs, test, ["recall@10"], part=part)["recall@10"]
        except Exception:  # a holdout without that part (no timestamps: random only)
            res[f"recall_{part}@10"] = float("nan")
    res["per_user"] = metrics.per_user("recall@10", recs.items, test.matrix[users])
    return res


def quality(a) -> None:
    data, last, rand = load(a.dataset)
    train, test = split.competition(data, last=last, random=rand, seed=0)
    fit_part, valid = split.competition(train, last=last, random=rand, seed=100)
    users = test.users
    log(f"{a.dataset}: {data}; features {sorted(data.features)}; test users {len(users)}")
    rows, per_user = [], {}
    # EASE: l2 on validation
    best = max(EASE_L2, key=lambda l2: evaluate(models.get("ease", l2=l2).fit(fit_part), valid.users, valid)["recall@10"])
    t = time.perf_counter()
    ease = models.get("ease", l2=best).fit(train)
    sec = time.perf_counter() - t
    res = evaluate(ease, users, test)
    per_user["ease"] = res.pop("per_user")
    rows.append({"row": "ease", "params": {"l2": best}, "epochs": 0, "fit_s": sec, **res})
    log(f"ease l2={best}: {res}")
    for row in a.rows.split(","):
        name, cands = ROWS[row]
        base = {"epochs": a.max_epochs, "seed": 0, "threads": a.threads, "valid_last": last, "valid_random": rand}
        if name == "multivae":
            base.update(patience=5)
        best_c, best_v, best_ep, val_s = None, -1.0, 0, 0.0
        for c in cands:
            t = time.perf_counter()
            m = models.get(name, **base, **c).fit(fit_part, valid=valid)
            val_s += time.perf_counter() - t
            log(f"{row} {c}: valid recall@10 {m.best_metric:.4f} at epoch {m.best_epoch} ({time.perf_counter() - t:.0f}s)")
            if m.best_metric > best_v:
                best_c, best_v, best_ep = c, m.best_metric, m.best_epoch
        t = time.perf_counter()
        final = models.get(name, **{**base, **best_c, "epochs": max(1, best_ep), "valid_last": 0,
                                         "valid_random": 0}).fit(train)
        sec = time.perf_counter() - t
        res = evaluate(final, users, test)
        per_user[row] = res.pop("per_user")
        rows.append({"row": row, "params": best_c, "valid_recall@10": best_v, "epochs": best_ep, "fit_s": sec,
                     "search_s": val_s, **res})  # fmt: skip
        log(f"{row}: {rows[-1]}")
    for r in rows:  # paired differences: focal / bce against the same model with BPR, everything against EASE
        fam = r["row"].split()[0]
        ref = "fm bpr" if fam in ("fm", "logistic-fm") else f"{fam} bpr"
        if r["row"].endswith("(tuned)"):
            ref = "fm bpr (tuned)"
        pairs = [("vs_bpr", ref), ("vs_ease", "ease")]
        if r["row"] == "fm softmax-focal (tuned)":  # does the focusing term add anything over plain softmax?
            pairs.append(("vs_softmax", "fm softmax (tuned)"))
        for key, other in pairs:
            if other in per_user and other != r["row"]:
                d = per_user[r["row"]] - per_user[other]
                r[key] = float(d.mean())
                r[key + "_se"] = float(d.std(ddof=1) / np.sqrt(len(d)))
    out = {"mode": "quality", "dataset": a.dataset, "n_users": data.n_users, "n_items": data.n_items,
           "n_events": data.n_events, "features": sorted(data.features), "max_epochs": a.max_epochs,
           "machine": machine(), "rows": rows}  # fmt: skip
    out["command"] = "python benchmarks/bench_fm.py " + " ".join(f"'{x}'" if " " in x else x for x in sys.argv[1:])
    write(out, Path(a.out) if a.out else RESULTS / f"fm_quality_{a.dataset}.json")


def speed(a) -> None:
    data = Dataset.load(a.data)
    log(f"speed: {data}; features {sorted(data.features)}")
    rows = []
    for name in a.models.split(","):
        params = {"epochs": 1, "valid_last": 0, "valid_random": 0, "seed": 0, "threads": a.threads}
        fit_data, scale = data, 1.0
        if name == "cfm":  # its CNN runs per (user, item) pair: an epoch on a user sample, extrapolated per event
            fit_data = data.filter(data.user < a.cfm_users * 10)
            scale = data.n_events / fit_data.n_events
        t, c = time.perf_counter(), time.process_time()
        m = models.get(name, **params).fit(fit_data)
        fit_s = (time.perf_counter() - t) * scale
        fit_cpu = (time.process_time() - c) * scale
        if name == "cfm":
            n = a.cfm_users
            t, c = time.perf_counter(), time.process_time()
            m.recommend(np.arange(n), k=10)
            rec_s = (time.perf_counter() - t) * data.n_users / n
            rec_cpu = (time.process_time() - c) * data.n_users / n
            note = (f"epoch extrapolated from {fit_data.n_events:,} events ({a.cfm_users * 10} users), "
                    f"ranking from {n} users")
        else:
            t, c = time.perf_counter(), time.process_time()
            m.recommend(k=10)
            rec_s = time.perf_counter() - t
            rec_cpu = time.process_time() - c
            note = "all users"
        rows.append({"model": name, "epoch_s": fit_s, "epoch_cpu_s": fit_cpu, "recommend_all_s": rec_s,
                     "recommend_all_cpu_s": rec_cpu, "note": note,
                     "params": m.params.model_dump(include={"factors", "batch_size", "n_negatives", "loss", "hidden",
                                                            "layers", "channels"})})  # fmt: skip
        log(rows[-1])
    path = RESULTS / "fm_speed_synth.json"
    if path.exists():  # keep the rows of models not run this time
        ran = {r["model"] for r in rows}
        rows = [r for r in json.loads(path.read_text())["rows"] if r["model"] not in ran] + rows
    out = {"mode": "speed", "data": a.data, "n_users": data.n_users, "n_items": data.n_items,
           "n_events": data.n_events, "features": sorted(data.features), "threads": a.threads,
           "command": " ".join(sys.argv),
           "machine": machine(), "rows": rows}  # fmt: skip
    write(out, RESULTS / "fm_speed_synth.json")


def machine() -> dict:
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load1_at_end": load1,
            "note": "shared machine, other jobs running"}  # fmt: skip


def write(out: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    log(f"wrote {path}")
    table(None)


def fmt(x, spec=".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def table(_a) -> None:
    lines = ["# FM family (fm, logistic-fm, deepfm, cfm) with side features", "",
             "Written by `python benchmarks/bench_fm.py table` from the `fm_*.json` next to it (see the script's "
             "docstring for the protocol). The machine is shared (2 cores, other jobs running): seconds are "
             "indicative, epochs are capped.", ""]  # fmt: skip
    for f in sorted(RESULTS.glob("fm_quality_*.json")) + sorted(RESULTS.glob("fm_focal_vs_bpr_*.json")):
        d = json.loads(f.read_text())
        command = d.get("command") or f"python benchmarks/bench_fm.py quality --dataset {d['dataset']} --max-epochs {d['max_epochs']}"
        extra = any("vs_softmax" in r for r in d["rows"])
        lines += [f"## Quality: {d['dataset']} ({d['n_users']:,} users, {d['n_items']:,} items, "
                  f"{d['n_events']:,} events; side: {', '.join(d['features'])}; epochs capped at {d['max_epochs']})", "",
                  f"`{command}` ({f.name})", "",
                  "| row | chosen | valid R@10 | test R@10 | last | random | nDCG@10 | vs BPR (se) | vs EASE (se) | "
                  + ("vs softmax (se) | " if extra else "") + "epochs | fit s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if extra else "")]  # fmt: skip
        for r in d["rows"]:
            vs = lambda k: f"{r[k]:+.4f} ({r[k + '_se']:.4f})" if k in r else "-"  # noqa: E731
            lines.append(f"| {r['row']} | {json.dumps(r['params'])} | {fmt(r.get('valid_recall@10'))} | "
                         f"{fmt(r['recall@10'])} | {fmt(r['recall_last@10'])} | {fmt(r['recall_random@10'])} | "
                         f"{fmt(r['ndcg@10'])} | {vs('vs_bpr')} | {vs('vs_ease')} | "
                         + (f"{vs('vs_softmax')} | " if extra else "") + f"{r['epochs']} | {r['fit_s']:.0f} |")  # fmt: skip
        lines.append("")
    f = RESULTS / "fm_speed_synth.json"
    if f.exists():
        d = json.loads(f.read_text())
        lines += [f"## Speed at competition scale ({d['n_users']:,} users, {d['n_items']:,} items, {d['n_events']:,} "
                  f"events; side: {', '.join(d['features'])}; model parameter threads={d['threads']})", "",
                  f"`toprec data synth --out /tmp/synth && python benchmarks/bench_fm.py speed --data /tmp/synth "
                  f"--threads {d['threads']}`", "",
                  "Wall seconds on a shared machine (load average at the end: "
                  f"{d['machine']['load1_at_end']:.1f} on {d['machine']['cores']} cores) and the process's CPU "
                  "seconds (with 1 torch thread: about the wall time the same work takes on one idle core).", "",
                  "| model | one epoch: wall s | CPU s | recommend 10 to every user: wall s | CPU s | note | params |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in d["rows"]:
            lines.append(f"| {r['model']} | {r['epoch_s']:.1f} | {r['epoch_cpu_s']:.1f} | {r['recommend_all_s']:.1f} | "
                         f"{r['recommend_all_cpu_s']:.1f} | {r['note']} | {json.dumps(r['params'])} |")  # fmt: skip
        lines.append("")
    (RESULTS / "fm.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--dataset", default="comp-sample", help="comp-sample, ml-1m, or a folder Dataset.load reads")
    q.add_argument("--rows", default="fm bpr,logistic-fm (bce),fm focal,deepfm bpr,deepfm focal")
    q.add_argument("--max-epochs", type=int, default=15)
    q.add_argument("--threads", type=int, default=0)
    q.add_argument("--out", default=None, help="the JSON to write (default results/fm_quality_<dataset>.json)")
    s = sub.add_parser("speed")
    s.add_argument("--data", required=True)
    s.add_argument("--models", default="fm,deepfm,cfm")
    s.add_argument("--cfm-users", type=int, default=64)
    s.add_argument("--threads", type=int, default=0)
    sub.add_parser("table")
    a = ap.parse_args()
    {"quality": quality, "speed": speed, "table": table}[a.mode](a)


if __name__ == "__main__":
    main()
