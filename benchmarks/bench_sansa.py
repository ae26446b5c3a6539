"""SANSA vs EASE: recall on real data where dense EASE fits, and time / peak RSS at a large synthetic point.

    python benchmarks/bench_sansa.py --quality --out benchmarks/results/sansa.md --json benchmarks/results/sansa.json
    python benchmarks/bench_sansa.py --large clustered:1000000:200000:20 \\
        --large-params density=0.001,factor_size=32 --recommend-users 0 --merge benchmarks/results/sansa.json \\
        --out benchmarks/results/sansa.md --json benchmarks/results/sansa.json

Quality: ML-1M ratings >= 4 with the competition protocol (each user's last
event + 9 random earlier ones held out, seed 0) and the real competition-user
sample (``prepare_competition_sample.py``: 1,645 users, no timestamps, so 10
random events held out). EASE at each l2 of ``--l2``, SANSA at EASE's best l2,
with its defaults and the sparser ``--sparse-params``. Recall@10 on the whole
holdout, fit seconds, stored weights.

Large: a fresh process under ``/usr/bin/time -v`` loads the folder, fits SANSA
(``--large-params``), recommends k=10 for every user and reports fit and
recommend seconds; peak RSS is the kernel's (``Maximum resident set size``). Each ``--large`` run is
appended (with its commit) to the runs of the ``--merge`` file and listed in one table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"  # as the other benchmarks (a worktree: pass --shared)


def parse_params(text: str) -> dict:
    out = {}
    for kv in filter(None, text.split(",")):
        k, v = kv.split("=")
        out[k] = int(v) if re.fullmatch(r"-?\d+", v) else float(v)
    return out


def datasets(names: list[str], shared: Path):
    from toprec import Dataset, split

    ML1M = shared / "ml-1m" / "derived" / "ml1m_ratings_ge4_with_time.csv.gz"
    COMP = shared / "boostcamp-movierec-2022" / "partial_sample_pro_sg"

    for name in names:
        if name == "ml-1m":
            data = Dataset.load(ML1M, format="table", user_col="user", item_col="item", time_col="timestamp")
            yield name, "ML-1M ratings>=4, last 1 + 9 random held out", *split.competition(data, last=1, random=9, seed=0)
        else:
            csv = Path("/tmp/toprec_bench/compsample.csv")
            if not csv.exists():
                csv.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([sys.executable, str(HERE / "prepare_competition_sample.py"), "--src", str(COMP),
                                "--out", str(csv)], check=True)  # fmt: skip
            data = Dataset.load(csv, format="table", user_col="user", item_col="item")
            yield name, "competition sample (1,645 users), 10 random held out", *split.competition(
                data, last=0, random=10, seed=0)


def run_quality(a) -> list[dict]:
    from toprec import metrics, models

    rows = []
    for name, desc, train, test in datasets(a.datasets.split(","), Path(a.shared)):
        print(f"{name}: {train.n_users:,} users x {train.n_items:,} items, {train.matrix.nnz:,} events", flush=True)

        def one(model: str, params: dict) -> dict:
            t0 = time.perf_counter()
            m = models.get(model, **params).fit(train)
            fit_s = time.perf_counter() - t0
            recall = float(metrics.evaluate(m.recommend(k=10), test, ["recall@10"])["recall@10"])
            S = getattr(m, "similarity", None)
            weights = int(S.nnz) if hasattr(S, "nnz") else (int(S.size) if S is not None else None)
            r = {"data": name, "desc": desc, "model": model, "params": params, "recall@10": recall,
                 "fit_s": fit_s, "weights": weights, "items": train.n_items}  # fmt: skip
            print(f"  {model} {params}: recall@10 {recall:.4f}, fit {fit_s:.1f} s, weights {weights}", flush=True)
            return r

        ease = [one("ease", {"l2": l2, "form": "items", "device": "cpu"}) for l2 in a.l2]
        best = max(ease, key=lambda r: r["recall@10"])
        rows += ease
        for extra in ({}, parse_params(a.sparse_params)):
            r = one("sansa", {"l2": best["params"]["l2"], **extra})
            r["vs_ease"] = r["recall@10"] / best["recall@10"] - 1.0
            rows.append(r)
    return rows


def clustered_events(n_users: int, n_items: int, mean: float, seed: int = 0):
    """Fast synthetic events (seconds for 20M): Zipf item popularity, items in 1,000 taste clusters, each user
    with two favourite clusters; half of a user's events from the whole catalogue, half from the favourites
    (both by popularity); per-user counts 16 + geometric (mean ``mean``). Repeated pairs are dropped.

    ``toprec data synth`` draws each user's items by Gumbel-top-k over the whole catalogue (users x items
    logits): at 1M users x 200k items that is 2e11 draws, which did not finish in 45 min on this machine.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    w = 1.0 / (rng.permutation(n_items) + 10.0) ** 0.9  # Zipf weights, popular items spread over the ids
    n_clusters = 1000
    cluster = rng.integers(0, n_clusters, n_items)
    by_cluster = np.argsort(cluster, kind="stable")
    cum = np.cumsum(w[by_cluster])
    bounds = np.searchsorted(cluster[by_cluster], np.arange(n_clusters + 1))
    lo = np.r_[0.0, cum][bounds[:-1]]
    hi = np.r_[0.0, cum][bounds[1:]]
    counts = 16 + rng.geometric(1.0 / max(1.0, mean - 15.0), n_users) - 1
    users = np.repeat(np.arange(n_users), counts)
    fav = rng.integers(0, n_clusters, (n_users, 2))
    n = len(users)
    from_fav = rng.random(n) < 0.5
    c = fav[users, rng.integers(0, 2, n)]
    u = np.where(from_fav, lo[c] + rng.random(n) * (hi[c] - lo[c]), rng.random(n) * cum[-1])
    items = by_cluster[np.minimum(np.searchsorted(cum, u), n_items - 1)]
    key = np.unique(users.astype(np.int64) * n_items + items)
    return key // n_items, key % n_items


CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from toprec import Dataset, models
folder, params, n_rec = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[4])
t0 = time.perf_counter()
if folder.startswith("clustered:"):
    import numpy as np
    from bench_sansa import clustered_events
    nu, ni, mean = folder.split(":")[1:]
    u, i = clustered_events(int(nu), int(ni), float(mean))
    data = Dataset.from_events(u, i, np.zeros(len(u), dtype=np.int64))
    del u, i
else:
    data = Dataset.load(folder)
load_s = time.perf_counter() - t0
m = models.get("sansa", **params)
est = m.memory_estimate(data.n_users, data.n_items, data.matrix.nnz)
t0 = time.perf_counter(); m.fit(data); fit_s = time.perf_counter() - t0
import numpy as np
users = np.arange(data.n_users) if n_rec <= 0 else np.random.default_rng(0).choice(data.n_users, min(n_rec, data.n_users), replace=False)
t0 = time.perf_counter(); recs = m.recommend(users, k=10); rec_s = time.perf_counter() - t0
from toprec import parallel
from toprec.models import sparse_kernels
print(json.dumps({"users": data.n_users, "items": data.n_items, "events": int(data.matrix.nnz), "load_s": load_s,
                  "fit_s": fit_s, "recommend_s": rec_s, "recommended_users": len(users), "weights": int(m.similarity.nnz),
                  "estimate": est.bytes if est else None, "filled": int((recs.items >= 0).sum()),
                  "ranking": "compiled" if sparse_kernels.available() else "scipy", "workers": parallel.workers()}))
"""


def run_large(a) -> dict:
    params = parse_params(a.large_params)
    env = {**os.environ, "TOPREC_NO_TRACK": "1"}
    p = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", CHILD, a.large, json.dumps(params), str(HERE), str(a.recommend_users)],
                       capture_output=True, text=True, env=env)  # fmt: skip
    if p.returncode != 0:
        raise SystemExit(f"large run failed: {p.stderr.strip().splitlines()[-5:]}")
    d = json.loads(p.stdout.strip().splitlines()[-1])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", p.stderr).group(1)
    d.update({"folder": a.large, "params": params, "peak_rss": rss_kb * 1024, "wall": wall,
              "load": " ".join(f"{x:.2f}" for x in os.getloadavg())})  # fmt: skip
    print(json.dumps(d), flush=True)
    return d


def write(a, result: dict) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()  # fmt: skip
    lines = ["# SANSA (sparse approximate-inverse EASE) vs EASE\n",
             f"Commit {commit}; 2 cores shared with other jobs (timings noisy). Commands: see the top of "
             "`benchmarks/bench_sansa.py`; each part's own command is listed with it.\n"]  # fmt: skip
    q = result.get("quality")
    if q:
        lines += ["## Recall@10 where dense EASE fits\n", f"`{q['cmd']}`\n",
                  "| data | model | params | recall@10 | vs best EASE | fit s | stored weights |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in q["rows"]:
            vs = f"{100 * r['vs_ease']:+.1f}%" if "vs_ease" in r else ""
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k not in ("form", "device")) or "-"
            lines.append(f"| {r['data']} ({r['items']:,} items) | {r['model']} | {params} | {r['recall@10']:.4f} | "
                         f"{vs} | {r['fit_s']:.1f} | {r['weights']:,} |")
        lines.append("")
    runs = result.get("large_runs")
    if runs:
        gb = 2**30
        lines += ["## Fit and recommend for every user (issue #20: <= 15 min and <= 16 GB together)\n",
                  "Each run: a fresh process under `/usr/bin/time -v` generates the data (not timed), fits, then "
                  "recommends k=10 for the users listed (all: the 1M-user batch scoring); peak RSS is the "
                  "kernel's VmHWM for the whole process. Ranking: `compiled` = `models/sparse_kernels.py` "
                  "(numba), `scipy` = the shared `rank_sparse_block` path. Workers: the library's default "
                  "(`TOPREC_WORKERS` unset = usable CPUs).\n",
                  "| commit | command | ranking | workers | users x items | events | fit s | recommend s (users) | "
                  "all users s (scaled) | fit + all users s | peak RSS GB | met | load avg at end |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for g in runs:
            allu = g["recommend_s"] * g["users"] / g["recommended_users"]
            total = g["fit_s"] + allu
            met = "yes" if total <= 900 and g["peak_rss"] <= 16 * gb else "no"
            lines.append(f"| {g['commit']} | `{g['cmd']}` | {g.get('ranking', '?')} | {g.get('workers', '?')} | "
                         f"{g['users']:,} x {g['items']:,} | {g['events']:,} | {g['fit_s']:.0f} | "
                         f"{g['recommend_s']:.0f} ({g['recommended_users']:,}) | {allu:.0f} | {total:.0f} | "
                         f"{g['peak_rss'] / gb:.1f} | {met} | {g['load']} |")  # fmt: skip
        lines += ["", "Where recommend's time goes (the scipy path stage by stage, the compiled kernel, same users): "
                  "`benchmarks/results/sansa_profile.md` (`benchmarks/profile_sansa_recommend.py`).", ""]
    g = result.get("large")
    if g:
        allu = g["recommend_s"] * g["users"] / g["recommended_users"]
        gb = 2**30
        lines += ["## Large synthetic point (before the compiled ranking: 5,000 users, scaled)\n", f"`{g['cmd']}`\n",
                  "| users | items | events | params | fit s | recommend s (k=10; users) | all users s (scaled) | "
                  "fit + all users s | "
                  "peak RSS GB | estimate GB (beyond data) | stored weights | load avg at end |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {g['users']:,} | {g['items']:,} | {g['events']:,} | "
                  + ", ".join(f"{k}={v}" for k, v in g["params"].items())
                  + f" | {g['fit_s']:.0f} | {g['recommend_s']:.0f} ({g['recommended_users']:,}) | {allu:.0f} | "
                  f"{g['fit_s'] + allu:.0f} | "
                  f"{g['peak_rss'] / gb:.1f} | {(g['estimate'] or 0) / gb:.1f} | {g['weights']:,} | {g['load']} |", ""]
    from toprec import models

    params = parse_params(a.large_params)
    est = models.get("sansa", **params).memory_estimate(1_000_000, 200_000, 20_000_000)
    lines += ["## The issue's point: 1,000,000 users x 200,000 items x 20M events\n",
              f"`memory_estimate` with {a.large_params}: {est.bytes / 2**30:.1f} GB beyond the data "
              f"(+ ~{40 * 20e6 / 2**30:.1f} GB for the loaded data at ~40 bytes an event).", ""]
    Path(a.out).write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", action="store_true", help="run the recall comparison")
    ap.add_argument("--datasets", default="ml-1m,competition")
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder")
    ap.add_argument("--l2", type=lambda s: [float(x) for x in s.split(",")], default=[200.0, 500.0, 1000.0])
    ap.add_argument("--sparse-params", default="density=0.02,factor_size=48")
    ap.add_argument("--large", default="",
                    help="a data folder, or clustered:USERS:ITEMS:MEAN (clustered_events, generated in the child): "
                         "run the large point")  # fmt: skip
    ap.add_argument("--large-params", default="density=0.001,factor_size=32")
    ap.add_argument("--recommend-users", type=int, default=0,
                    help="large point: recommend for this many users drawn at random (0 = all); the all-users "
                         "figure is then scaled by users / this (per-user cost does not depend on the others)")  # fmt: skip
    ap.add_argument("--merge", default="", help="an earlier --json: its parts not rerun here are kept")
    ap.add_argument("--out", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    result = json.loads(Path(a.merge).read_text()) if a.merge and Path(a.merge).exists() else {}
    cmd = "python benchmarks/bench_sansa.py " + " ".join(sys.argv[1:])
    if a.quality:
        result["quality"] = {"cmd": cmd, "rows": run_quality(a)}
    if a.large:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE).stdout.strip()  # fmt: skip
        result.setdefault("large_runs", []).append({"cmd": cmd, "commit": commit, **run_large(a)})
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    if a.out:
        write(a, result)


if __name__ == "__main__":
    main()
