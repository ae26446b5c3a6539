#!/usr/bin/env python
"""EASE end to end at competition scale: load, fit, top-10 for every user, write CSV.

    python benchmarks/bench_ease.py                 # toprec, 3 runs, medians
    python benchmarks/bench_ease.py --baseline      # also the plain numpy/scipy version
    python benchmarks/bench_ease.py --runs 5 --baseline --baseline-runs 5   # the issue's figure: medians of 5
    python benchmarks/bench_ease.py --data DIR      # any competition-layout folder
    python benchmarks/bench_ease.py --runs 5 --old-kernel   # also toprec with the previous scoring kernel
                                                            # (TOPREC_KERNELS=unfused), runs alternating

Data: by default ``toprec data synth`` output with the competition's
statistics (31,360 users x 6,807 items, ~5.15M events), generated once into
``benchmarks/data/synth`` (seed 0). Every run is a fresh process, so the peak
RSS reported is that run's own. Prints a table of median stage times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / "data" / "synth"


def _peak_rss_gb() -> float:
    """This worker's own peak RSS: VmHWM (its image since the exec), not ru_maxrss, which Linux carries over
    the exec from the process that started it (here the small driver, elsewhere maybe not)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # kB -> GB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _peak_rss_children_gb() -> float:
    """Largest forked worker (its RSS counts pages shared copy-on-write with the parent)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2


def worker_toprec(data: Path, out: Path, l2: float, load_args: dict, device: str = "auto") -> dict:
    t = {}
    t0 = time.perf_counter()
    from toprec import Dataset, models
    from toprec.device import cuda_available

    t["import"] = time.perf_counter() - t0
    t["cuda_startup"] = t["torch_import"] = 0.0
    s = time.perf_counter()
    if device == "cuda" or (device == "auto" and cuda_available(quick=True)):  # imports torch on a GPU machine
        import numpy as np
        import torch

        t["torch_import"] = time.perf_counter() - s
        # CUDA start-up, reported apart from the timed stages: context, cuBLAS/cuSOLVER handles, and
        # loading the kernels EASE launches (CUDA loads each module lazily, on first use): one EASE
        # fit + top-10 on a 60 x 40 random toy. Nothing of the real data is touched.
        s = time.perf_counter()

        toy = Dataset.from_events(*np.nonzero(np.random.default_rng(0).random((60, 40)) < 0.2))
        models.get("ease", l2=1.0, device="cuda").fit(toy).recommend(toy.users, k=10)
        torch.cuda.synchronize()
        t["cuda_startup"] = time.perf_counter() - s
    s = time.perf_counter()
    ds = Dataset.load(data, **load_args)
    t["load"] = time.perf_counter() - s
    s = time.perf_counter()
    model = models.get("ease", l2=l2, device=device).fit(ds)
    t["fit"] = time.perf_counter() - s
    t["device"] = model.device_
    s = time.perf_counter()
    recs = model.recommend(ds.users, k=10)
    t["recommend"] = time.perf_counter() - s
    s = time.perf_counter()
    recs.write_csv(out, ds)
    t["write"] = time.perf_counter() - s
    t["total"] = t["load"] + t["fit"] + t["recommend"] + t["write"]
    t["peak_rss_gb"] = _peak_rss_gb()
    t["worker_rss_gb"] = _peak_rss_children_gb()
    t["events"] = ds.n_events
    return t


def worker_numpy(data: Path, out: Path, l2: float, load_args: dict, device: str = "cpu") -> dict:
    """The straightforward version: pandas CSV, float64 inverse, sparse x dense per batch."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    t = {"import": 0.0, "cuda_startup": 0.0, "torch_import": 0.0, "device": "cpu"}
    s = time.perf_counter()
    df = pd.read_csv(data / "train_ratings.csv")
    u, user_ids = pd.factorize(df["user"])
    i, item_ids = pd.factorize(df["item"])
    X = sp.csr_matrix((np.ones(len(df)), (u, i)), shape=(len(user_ids), len(item_ids)))
    t["load"] = time.perf_counter() - s
    s = time.perf_counter()
    G = (X.T @ X).toarray()
    G[np.diag_indices_from(G)] += l2
    P = np.linalg.inv(G)
    B = P / (-np.diag(P))
    B[np.diag_indices_from(B)] = 0.0
    t["fit"] = time.perf_counter() - s
    s = time.perf_counter()
    n = X.shape[0]
    top = np.empty((n, 10), dtype=np.int64)
    for start in range(0, n, 1000):
        xb = X[start : start + 1000]
        scores = np.asarray(xb @ B)
        scores[xb.nonzero()] = -np.inf
        part = np.argpartition(-scores, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        top[start : start + 1000] = np.take_along_axis(part, order, axis=1)
    t["recommend"] = time.perf_counter() - s
    s = time.perf_counter()
    pd.DataFrame({"user": np.repeat(user_ids, 10), "item": item_ids[top.ravel()]}).to_csv(out, index=False)
    t["write"] = time.perf_counter() - s
    t["total"] = t["load"] + t["fit"] + t["recommend"] + t["write"]
    t["peak_rss_gb"] = _peak_rss_gb()
    t["worker_rss_gb"] = 0.0
    t["events"] = int(X.nnz)
    return t


def run_once(kind: str, data: Path, l2: float, load_args: dict, device: str = "auto", env: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "submission.csv"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", kind, "--data", str(data), "--out", str(out), "--l2", str(l2),
             "--load-args", json.dumps(load_args), "--device", device],  # fmt: skip
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{kind} run failed:\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["process_wall"] = wall
        res["rows"] = sum(1 for _ in open(out)) - 1
        return res


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    gpu = ""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            gpu = ", GPU " + out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM{gpu}, Python {platform.python_version()}"


def ensure_data(path: Path) -> Path:
    if (path / "train_ratings.csv").exists():
        return path
    print(f"generating competition-scale synthetic data into {path} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "toprec", "data", "synth", "--out", str(path), "--seed", "0", "-q"], check=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--l2", type=float, default=500.0)
    ap.add_argument("--baseline", action="store_true", help="also time the plain numpy/scipy version")
    ap.add_argument("--baseline-runs", type=int, default=1, help="runs of the baseline (alternating with toprec's)")
    ap.add_argument("--json", type=Path, default=None, help="write all runs as JSON")
    ap.add_argument("--cache", action="store_true", help="also time toprec with the parsed dataset cached")
    ap.add_argument("--old-kernel", action="store_true",
                    help="also time toprec with the previous scoring kernel and unfused top-k (TOPREC_KERNELS=unfused)")
    ap.add_argument("--user-col", default=None, help="table data: user column")
    ap.add_argument("--item-col", default=None, help="table data: item column")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="EASE's device (auto: the GPU when there is one); CUDA start-up is timed apart")
    ap.add_argument("--load-args", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=["toprec", "numpy"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = worker_toprec if args.worker == "toprec" else worker_numpy
        print(json.dumps(fn(args.data, args.out, args.l2, json.loads(args.load_args), args.device)))
        return
    data = args.data or DEFAULT_DATA
    load_args = {}
    if args.user_col or args.item_col:
        load_args = {"user_col": args.user_col, "item_col": args.item_col}
    else:
        data = ensure_data(data)
    dev = args.device
    results = {"toprec": []}
    if args.baseline:
        if load_args:
            raise SystemExit("--baseline reads competition-layout folders only")
        results["numpy baseline"] = []
    if args.old_kernel:
        results["toprec, old kernel"] = []
    for r in range(args.runs):  # the versions in turn, run after run: a load that drifts hits both alike
        results["toprec"].append(run_once("toprec", data, args.l2, load_args, dev))
        if args.old_kernel:
            results["toprec, old kernel"].append(run_once("toprec", data, args.l2, load_args, dev,
                                                          {"TOPREC_KERNELS": "unfused"}))  # fmt: skip
        if args.baseline and r < args.baseline_runs:
            results["numpy baseline"].append(run_once("numpy", data, args.l2, {}))
    if args.cache:
        run_once("toprec", data, args.l2, {**load_args, "cache": True}, dev)  # warm the cache
        results["toprec, cached"] = [run_once("toprec", data, args.l2, {**load_args, "cache": True}, dev)
                                     for _ in range(args.runs)]  # fmt: skip
    keys = ["load", "fit", "recommend", "write", "total", "torch_import", "cuda_startup", "process_wall", "peak_rss_gb",
            "worker_rss_gb"]  # fmt: skip
    print(f"\nEASE end to end on {data} ({results['toprec'][0]['events']:,} events), l2={args.l2}, "
          f"toprec on {results['toprec'][0]['device']}")
    print(f"machine: {machine()}")
    header = f"{'version':<18} {'runs':>4} " + " ".join(f"{k:>12}" for k in keys)
    print(header)
    print("-" * len(header))
    med = {}
    for name, runs in results.items():
        med[name] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
        cells = " ".join(f"{med[name][k]:>12.2f}" for k in keys)
        print(f"{name:<18} {len(runs):>4} {cells}")
    print("(seconds, medians; total = load+fit+recommend+write in-process, excluding torch_import and cuda_startup (CUDA context, "
          "cuBLAS/cuSOLVER handles, EASE's kernels loaded by one fit on a 60x40 toy), both timed apart; process_wall adds Python start-up and imports; peak RSS in GB; "
          "worker_rss_gb: the largest forked worker, whose RSS includes pages shared copy-on-write with the parent)")
    if "numpy baseline" in med:
        ratio = med["numpy baseline"]["total"] / med["toprec"]["total"]
        print(f"toprec is {ratio:.1f}x faster than the plain numpy/scipy version end to end "
              f"(toprec/baseline = {1 / ratio:.2f}, medians of {len(results['toprec'])} and "
              f"{len(results['numpy baseline'])} runs; load average now {os.getloadavg()[0]:.1f})")
    if "toprec, old kernel" in med:
        old, new = med["toprec, old kernel"]["recommend"], med["toprec"]["recommend"]
        print(f"recommend: {new:.2f} s against {old:.2f} s with the previous kernel in the same run "
              f"(new/old = {new / old:.2f}, medians of {len(results['toprec'])}; load average now "
              f"{os.getloadavg()[0]:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "data": str(data), "command": " ".join(sys.argv),
                                         "load_average_end": os.getloadavg(), "runs": results}, indent=2))


if __name__ == "__main__":
    main()
