"""``toprec batch``: throughput of the local engine vs the Ray engine, per core, and the same bytes from both.

    python benchmarks/bench_batch.py                                   # 100k users x 10k items, EASE
    python benchmarks/bench_batch.py --users 1000000 --items 20000 --fit-only --engines local   # the issue's size
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


PEAK: dict[str, float] = {}  # the last command's peak RSS (GB, its largest process), by its first word


def _run_measured(cmd: list[str], capture_output: bool = True, text: bool = True, env: dict | None = None):
    """subprocess.run, plus the command's peak RSS from ``os.wait4`` (its largest process, forked workers included).

    Through a shell that forks (not execs) the command: Linux carries a
    process's peak RSS over an exec, so a command exec'd straight from this
    process would count this process's peak as its own; the shell's is ~2 MB.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd], stdout=out, stderr=err, env=env, text=text)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        PEAK["last"] = usage.ru_maxrss / 1024**2
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, p.returncode, out.read(), err.read())


def toprec(args: list[str], env: dict | None = None, runner=None) -> str:
    cmd = [sys.executable, "-m", "toprec", *map(str, args)]
    r = (runner or _run_measured)(cmd, capture_output=True, text=True, env={**os.environ, "TOPREC_NO_TRACK": "1",
                                                                              **(env or {})})  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return r.stdout


FIT_SAVE = """
import sys, time
from toprec import Dataset, models
from toprec.app.serving import save_model
t0 = time.perf_counter(); ds = Dataset.load(sys.argv[1]); t1 = time.perf_counter()
rec = models.get(sys.argv[2], device="cpu").fit(ds); t2 = time.perf_counter()
save_model(rec, ds, sys.argv[3]); t3 = time.perf_counter()
print(f"load {t1 - t0:.1f} s, fit {t2 - t1:.1f} s, save {t3 - t2:.1f} s ({ds.n_users:,} users x {ds.n_items:,} items, "
      f"{ds.n_events:,} events)")
"""


def seconds(out: str) -> float:
    m = LINE.search(out.replace("\n", " "))
    if not m:
        raise SystemExit(f"cannot parse: {out!r}")
    return float(m.group("s"))


def prepare(folder: Path, users: int, items: int, mean: float, model: str, data: str | None = None,
            data_args: tuple = (), fit_only: bool = False) -> tuple[Path, float]:
    data_dir = Path(data) if data else folder / "data"
    if not data and not (data_dir / "train_ratings.csv").exists():
        toprec(["data", "synth", "--out", data_dir, "--users", users, "--items", items, "--mean-per-user", mean, "-q"])
    model_dir = folder / f"model-{model}"
    t0 = time.perf_counter()
    if not (model_dir / "model.json").exists():
        if fit_only:  # fit and save, no submission (at 1M users that would be a second scoring pass)
            r = _run_measured([sys.executable, "-c", FIT_SAVE, str(data_dir), model, str(model_dir)],
                              env={**os.environ, "TOPREC_NO_TRACK": "1"})  # fmt: skip
            if r.returncode != 0:
                raise SystemExit(f"fit failed:\n{r.stderr[-3000:]}")
            print(f"fit + save: {r.stdout.strip()}, peak RSS {PEAK['last']:.2f} GB", flush=True)
            FITS.append(f"{r.stdout.strip()}, peak RSS {PEAK['last']:.2f} GB")
        else:
            toprec(["submit", "--data", data_dir, *data_args, "--model", model, "--output", folder / "sub.csv",
                    "--save-model", model_dir, "-q"])  # fmt: skip
    return model_dir, time.perf_counter() - t0


FITS: list[str] = []


def measure(name: str, model_dir: Path, folder: Path, block: int, rows: list[str],
            engines: tuple = ("local1", "local", "ray")) -> None:  # fmt: skip
    out_local1, out_local, out_ray = folder / "local1.parquet", folder / "local.parquet", folder / "ray.parquet"
    common = ["--model-dir", model_dir, "-k", "10", "--block", block, "-q"]
    cores = len(os.sched_getaffinity(0))
    if "local1" in engines:
        s1 = seconds(o := toprec(["batch", *common, "--output", out_local1], env={"TOPREC_WORKERS": "1"}))
        n = int(LINE.search(o.replace("\n", " ")).group("users").replace(",", ""))
        rows.append(f"| {name} | local, 1 core | 1 | {n:,} | {s1:.1f} | {n / s1:,.0f} | {n / s1:,.0f} | "
                    f"{PEAK['last']:.2f} | - |")  # fmt: skip
    s2 = seconds(o := toprec(["batch", *common, "--output", out_local]))
    n = int(LINE.search(o.replace("\n", " ")).group("users").replace(",", ""))
    same = "-" if not out_local1.exists() else "yes" if out_local.read_bytes() == out_local1.read_bytes() else "NO"
    rows.append(f"| {name} | local, forked workers | {cores} | {n:,} | {s2:.1f} | {n / s2:,.0f} | "
                f"{n / s2 / cores:,.0f} | {PEAK['last']:.2f} | {same} |")  # fmt: skip
    if "ray" not in engines:
        return
    why = unavailable()
    if why:
        rows.append(f"| {name} | ray | - | - | - | - | - | - | skipped: {why} |")
        return
    t0 = time.perf_counter()
    with LocalRay(nodes=2, cpus=1) as cluster:
        start = time.perf_counter() - t0
        s3 = seconds(toprec(["batch", *common, "--output", out_ray, "--engine", "ray", "--address", cluster.address],
                            runner=lambda cmd, **kw: cluster.run(cmd, **{k: v for k, v in kw.items() if k != "env"},
                                                                 env={**cluster.env, **kw["env"]})))  # fmt: skip
    same = out_ray.read_bytes() == out_local.read_bytes()
    rows.append(f"| {name} | ray, 2 nodes x 1 CPU (cluster start {start:.0f} s) | 2 | {n:,} | {s3:.1f} | "
                f"{n / s3:,.0f} | {n / s3 / 2:,.0f} | - | {'yes' if same else 'NO'} |")


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
    ap.add_argument("--engines", default="local1,local,ray", help="which runs: local1 (one core), local, ray")
    ap.add_argument("--append", action="store_true", help="add the table to --out as a section of its own")
    ap.add_argument("--fit-only", action="store_true", help="fit + save the model without writing a submission")
    a = ap.parse_args()
    rows: list[str] = []
    head = ["| data | engine | cores | users | seconds | users/s | users/s per core | peak RSS GB | same bytes as local |",
            "|---|---|---|---|---|---|---|---|---|"]
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
    model_dir, fit = prepare(folder, a.users, a.items, a.mean_per_user, a.model, fit_only=a.fit_only)
    fits.append(f"{name}: data + {'fit + save' if a.fit_only else 'submit --save-model'} {fit:.0f} s"
                + (f" ({FITS[-1]})" if FITS else ""))
    measure(name, model_dir, folder, a.block, rows, tuple(a.engines.split(",")))
    table = "\n".join(head + rows)
    print(table)
    if a.out:
        cmd = "python benchmarks/bench_batch.py " + " ".join(sys.argv[1:])
        text = (f"`{cmd}`, {os.cpu_count()} cores (load average at the end: {os.getloadavg()[0]:.1f}; the machine is "
                f"shared, so seconds are noisy).\n{'; '.join(fits)}.\n\n{table}\n")  # fmt: skip
        if a.append and Path(a.out).exists():
            Path(a.out).write_text(Path(a.out).read_text().rstrip("\n") + f"\n\n## {name}\n\n{text}")
        else:
            Path(a.out).write_text(f"# toprec batch: local vs Ray engine\n\n{text}")


if __name__ == "__main__":
    main()
