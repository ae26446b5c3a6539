"""``toprec batch``: throughput of the local engine vs the Ray engine, per core, and the same bytes from both.

    python benchmarks/bench_batch.py                                   # 100k users x 10k items, EASE
    python benchmarks/bench_batch.py --users 1000000 --items 20000     # the issue's size (needs ~16 GB, long)
    python benchmarks/bench_batch.py --ml1m /work/shared/data/ml-1m    # + the byte-for-byte check on ML-1M
    python benchmarks/bench_batch.py --out benchmarks/results/batch.md

Synthetic data (``toprec data synth``), ``toprec submit --save-model``, then
``toprec batch`` over every user: the local engine on one core
(``TOPREC_WORKERS=1``) and on every core, and the Ray engine on a two-node
cluster of one CPU each on loopback (``tests/ray_local.py``: its own network
namespace; needs root). The seconds are the command's own (model load,
scoring, Parquet write; for Ray also connecting, putting the model in the
object store and starting the actors -- not starting the cluster).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ray_local import LocalRay, unavailable  # noqa: E402

LINE = re.compile(r"\((?P<users>[\d,]+) users x (?P<k>\d+).*\); (?P<engine>\w+) (?P<s>[\d.]+)s")


def toprec(args: list[str], env: dict | None = None, runner=None) -> str:
    cmd = [sys.executable, "-m", "toprec", *map(str, args)]
    r = (runner or subprocess.run)(cmd, capture_output=True, text=True, env={**os.environ, "TOPREC_NO_TRACK": "1",
                                                                               **(env or {})})  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r.stdout


def seconds(out: str) -> float:
    m = LINE.search(out.replace("\n", " "))
    if not m:
        raise SystemExit(f"cannot parse: {out!r}")
    return float(m.group("s"))


def prepare(folder: Path, users: int, items: int, mean: float, model: str, data: str | None = None,
            data_args: tuple = ()) -> tuple[Path, float]:
    data_dir = Path(data) if data else folder / "data"
    if not data and not (data_dir / "train_ratings.csv").exists():
        toprec(["data", "synth", "--out", data_dir, "--users", users, "--items", items, "--mean-per-user", mean, "-q"])
    model_dir = folder / f"model-{model}"
    t0 = time.perf_counter()
    if not (model_dir / "model.json").exists():
        toprec(["submit", "--data", data_dir, *data_args, "--model", model, "--output", folder / "sub.csv",
                "--save-model", model_dir, "-q"])  # fmt: skip
    return model_dir, time.perf_counter() - t0


def measure(name: str, model_dir: Path, folder: Path, block: int, rows: list[str]) -> None:
    out_local1, out_local, out_ray = folder / "local1.parquet", folder / "local.parquet", folder / "ray.parquet"
    common = ["--model-dir", model_dir, "-k", "10", "--block", block, "-q"]
    s1 = seconds(toprec(["batch", *common, "--output", out_local1], env={"TOPREC_WORKERS": "1"}))
    cores = len(os.sched_getaffinity(0))
    s2 = seconds(o := toprec(["batch", *common, "--output", out_local]))
    n = int(LINE.search(o.replace("\n", " ")).group("users").replace(",", ""))
    rows.append(f"| {name} | local, 1 core | 1 | {n:,} | {s1:.1f} | {n / s1:,.0f} | {n / s1:,.0f} | - |")
    rows.append(f"| {name} | local, forked workers | {cores} | {n:,} | {s2:.1f} | {n / s2:,.0f} | "
                f"{n / s2 / cores:,.0f} | {'yes' if out_local.read_bytes() == out_local1.read_bytes() else 'NO'} |")
    why = unavailable()
    if why:
        rows.append(f"| {name} | ray | - | - | - | - | - | skipped: {why} |")
        return
    t0 = time.perf_counter()
    with LocalRay(nodes=2, cpus=1) as cluster:
        start = time.perf_counter() - t0
        s3 = seconds(toprec(["batch", *common, "--output", out_ray, "--engine", "ray", "--address", cluster.address],
                            runner=lambda cmd, **kw: cluster.run(cmd, **{k: v for k, v in kw.items() if k != "env"},
                                                                 env={**cluster.env, **kw["env"]})))  # fmt: skip
    same = out_ray.read_bytes() == out_local.read_bytes()
    rows.append(f"| {name} | ray, 2 nodes x 1 CPU (cluster start {start:.0f} s) | 2 | {n:,} | {s3:.1f} | "
                f"{n / s3:,.0f} | {n / s3 / 2:,.0f} | {'yes' if same else 'NO'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--mean-per-user", type=float, default=40.0)
    ap.add_argument("--model", default="ease")
    ap.add_argument("--block", type=int, default=65_536)
    ap.add_argument("--ml1m", default="", help="also check ML-1M (folder) byte for byte")
    ap.add_argument("--cache", default="/tmp/toprec_bench/batch")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rows: list[str] = []
    head = ["| data | engine | cores | users | seconds | users/s | users/s per core | same bytes as local |",
            "|---|---|---|---|---|---|---|---|"]
    fits = []
    if a.ml1m:
        folder = Path(a.cache) / "ml-1m"
        folder.mkdir(parents=True, exist_ok=True)
        ratings = Path(a.ml1m) / "ratings.parquet"  # the shared copy: userID, movieID columns
        extra = ("--format", "table", "--user-col", "userID", "--item-col", "movieID") if ratings.exists() else ()
        model_dir, fit = prepare(folder, 0, 0, 0, a.model, data=str(ratings) if extra else a.ml1m, data_args=extra)
        fits.append(f"ML-1M: submit --save-model {fit:.0f} s")
        measure(f"ML-1M ({a.model})", model_dir, folder, a.block, rows)
        print("\n".join(head + rows), flush=True)
    name = f"synth {a.users:,} x {a.items:,} ({a.model})"
    folder = Path(a.cache) / f"{a.users}x{a.items}x{a.mean_per_user:g}"
    folder.mkdir(parents=True, exist_ok=True)
    model_dir, fit = prepare(folder, a.users, a.items, a.mean_per_user, a.model)
    fits.append(f"{name}: data + submit --save-model {fit:.0f} s")
    measure(name, model_dir, folder, a.block, rows)
    table = "\n".join(head + rows)
    print(table)
    if a.out:
        cmd = "python benchmarks/bench_batch.py " + " ".join(sys.argv[1:])
        Path(a.out).write_text(
            f"# toprec batch: local vs Ray engine\n\n`{cmd}`, {os.cpu_count()} cores "
            f"(load average at the end: {os.getloadavg()[0]:.1f}; the machine is shared, so seconds are noisy).\n"
            f"{'; '.join(fits)}.\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
