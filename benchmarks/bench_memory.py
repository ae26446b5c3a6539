"""Memory planning, checked: each model's estimate against the measured peak of fit + recommend.

    python benchmarks/bench_memory.py                 # the default configs, table on stdout
    python benchmarks/bench_memory.py --out benchmarks/results/memory.md

Each (data, model) runs in a fresh process: it loads the synthetic data
(``toprec.data.synth``, cached under ``--cache``), measures the memory in use
(PSS of the process and its forked workers, from ``/proc/PID/smaps_rollup``,
so shared memory is counted once), then fits and recommends for every user
while a thread samples the same sum every 20 ms (the kernel's peak RSS of
this image, ``VmHWM``, or of its largest forked worker, is a floor: the
sampler can miss a peak while a C routine holds the GIL; ``ru_maxrss`` is
not used for the process itself, since Linux carries the parent's peak
over the exec that started it). "measured" is the peak minus
the memory in use before the fit: what the estimate is meant to cover.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

CONFIGS = {  # name: (users, items, mean events per user)
    "ml1m-like": (6_040, 3_706, 165.0),
    "comp": (31_360, 6_807, 164.4),
    "wide": (4_000, 20_000, 100.0),
    "20k": (60_000, 20_000, 50.0),
}
MODELS = [
    ("ease", {"device": "cpu"}),
    ("ease", {"device": "cpu", "form": "users"}),
    ("edlae", {}),
    ("easer", {}),
    ("rp3beta", {}),
    ("itemknn", {}),
    ("ials", {"iterations": 3}),
    ("multivae", {"epochs": 1, "patience": 0}),
]


def pss_tree(pid: int) -> int:
    """PSS bytes of ``pid`` and its descendants."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


def own_peak_rss() -> int:
    """This process's peak RSS in bytes since it exec'd: ``VmHWM``, the high-water mark of its current image.

    Not ``ru_maxrss`` of ``RUSAGE_SELF``: Linux carries a process's peak over
    an exec, so a child started by fork/vfork + exec begins with its parent's
    peak RSS as its own (a 300 MB parent: 300 MB for a child whose image
    never passes 9 MB), and ``os.wait4``'s rusage of the child carries the
    same number.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def data_folder(cache: Path, name: str) -> Path:
    users, items, mean = CONFIGS[name]
    folder = cache / name
    if not (folder / "train_ratings.csv").exists():
        from toprec.data.synth import synthesize, write_synth

        write_synth(synthesize(n_users=users, n_items=items, mean_per_user=mean, seed=0), folder)
    return folder


def child(folder: str, model: str, params: str) -> None:
    from toprec import Dataset, models

    ds = Dataset.load(folder)
    X = ds.matrix
    m = models.get(model, **json.loads(params))
    est = m.memory_estimate(*X.shape, X.nnz)
    import resource

    pid = os.getpid()
    base = pss_tree(pid)
    rss0 = int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], pss_tree(pid))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    m.fit(ds)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.recommend(ds.users, k=10)
    rec_s = time.perf_counter() - t0
    stop.set()
    th.join()
    # the kernel's own peak RSS (exact, no sampling): this image's (VmHWM, not the ru_maxrss inherited over the
    # exec from whatever started it) or its largest forked worker's (forked, never exec'd: their ru_maxrss starts
    # from this process's pages, so it is this measurement's own); the largest one, not their sum
    sampled = peak[0]
    kpeak = max(own_peak_rss(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    peak[0] = max(peak[0], base + kpeak - rss0)
    print(json.dumps({"users": X.shape[0], "items": X.shape[1], "nnz": X.nnz, "estimate": est.bytes if est else None,
                      "what": est.what if est else "", "measured": peak[0] - base, "base": base,
                      "fit_s": fit_s, "recommend_s": rec_s, "sampled": sampled - base,
                      "kernel_floor": kpeak - rss0}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="ml1m-like,comp,wide")
    ap.add_argument("--models", default="", help="comma-separated model names (default: all of MODELS)")
    ap.add_argument("--cache", default="/tmp/toprec_bench/memory")
    ap.add_argument("--out", default="")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(*a.child)
    wanted = set(a.models.split(",")) if a.models else None
    rows = []
    head = "| data | users | items | events | model | estimate MB | measured peak MB | measured / estimate | fit s |"
    print(head)
    print("|" + "---|" * 9)
    for cfg in a.configs.split(","):
        folder = data_folder(Path(a.cache), cfg)
        for model, params in MODELS:
            if wanted and model not in wanted:
                continue
            if params.get("form") == "users" and CONFIGS[cfg][0] > 10_000:
                continue  # a users x users solve: minutes here, and never the form auto picks for it
            env = {**os.environ, "TOPREC_MEMORY_LIMIT": "off", "TOPREC_NO_TRACK": "1"}
            r = subprocess.run([sys.executable, __file__, "--child", str(folder), model, json.dumps(params)],
                               capture_output=True, text=True, env=env)  # fmt: skip
            label = model + ("".join(f" {k}={v}" for k, v in params.items() if k != "device"))
            if r.returncode != 0:
                line = f"| {cfg} | | | | {label} | | failed: {r.stderr.strip().splitlines()[-1][:80]} | | |"
            else:
                d = json.loads(r.stdout.strip().splitlines()[-1])
                est = d["estimate"] / 2**20 if d["estimate"] else float("nan")
                meas = d["measured"] / 2**20
                line = (f"| {cfg} | {d['users']:,} | {d['items']:,} | {d['nnz']:,} | {label} | {est:,.0f} | "
                        f"{meas:,.0f} | {meas / est:.2f} | {d['fit_s']:.1f} |")  # fmt: skip
            print(line, flush=True)
            rows.append(line)
    if a.out:
        Path(a.out).write_text(
            "# Memory estimates vs measured peak (fit + recommend for every user)\n\n"
            f"`python benchmarks/bench_memory.py --configs {a.configs}` on {os.cpu_count()} cores; "
            "measured = peak PSS of the process and its forked workers (sampled every 20 ms; at least the kernel's "
            "peak RSS of the process's own image (VmHWM) or of its largest forked worker) minus the memory in use before the fit.\n\n"
            + "\n".join([head, "|" + "---|" * 9, *rows]) + "\n"
        )


if __name__ == "__main__":
    main()
