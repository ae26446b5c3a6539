#!/usr/bin/env python
"""`toprec auto` killed with SIGKILL at minute M and run again, against the same command left alone.

    python benchmarks/bench_auto_resume.py --dataset ml-100k --seed 0 --budget 30m --kill-at 10m \\
        --json benchmarks/results/auto_resume_ml-100k_seed0.json

The issue's acceptance point: "kill -9 at minute 10 and rerun: finishes within the remaining budget with the
same result as an uninterrupted run of the same seed". Both runs are the real command line (``python -m toprec
auto``), in their own processes, started together (this 2-core CPU: one core each). The test holdout is cut as
in ``bench_auto.py`` (``split.competition(D, 1, 9, seed)``); the training part is written as a competition
folder (``train_ratings.csv`` with the side files the dataset ships), and ``auto --seed seed + 100`` cuts its
validation from it, as ``bench_auto.py`` does. Reported: each run's wall time (the killed one: before the kill,
after it, in all), whether the two submissions are the same bytes, what each wrote (auto.json's choice), which
members' tuned parameters and trial counts differ, and each submission's recall@10 on the test.

ML-100K (``benchmarks/data/ml-100k``, made from ../shared/data by ``toprec data fetch``, with its side files):
its tuning ends when every member reaches its trial cap, so the two runs make the same choices. ML-1M ratings >= 4
(``bench_side.ml1m``; the events only, no genre or year files, so no CEASE): its tuning ends when the time does,
so how many trials each member gets depends on the machine's timing, in the run left alone as in the other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toprec import metrics, split
from toprec.experiment.config import parse_budget

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def write_training_folder(data, train, source: Path | None, folder: Path) -> None:
    """``train`` as a competition folder: its events by their raw ids, and ``source``'s side files (if any)."""
    folder.mkdir(parents=True, exist_ok=True)
    ev = pd.DataFrame({"user": np.asarray(data.user_ids)[np.asarray(train.user)],
                       "item": np.asarray(data.item_ids)[np.asarray(train.item)],
                       "time": np.asarray(train.time)})  # fmt: skip
    ev.to_csv(folder / "train_ratings.csv", index=False)
    for side in source.glob("*.tsv") if source is not None else []:
        shutil.copy(side, folder / side.name)


def auto_cmd(data: Path, out: Path, sub: Path, budget: str, seed: int) -> list[str]:
    return [sys.executable, "-m", "toprec", "auto", "--data", str(data), "--output", str(sub), "--out", str(out),
            "--budget", budget, "--seed", str(seed), "--no-track"]  # fmt: skip


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TOPREC_NO_TRACK": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("a"), env=env,
                            start_new_session=True)  # fmt: skip


def recall_on_test(sub: Path, data, test) -> float:
    """recall@10 of the submission ``sub`` (user,item by raw ids) on ``test``'s users."""
    df = pd.read_csv(sub)
    users = data.user_index(df["user"].to_numpy())
    items = data.item_index(df["item"].to_numpy())
    rows = np.asarray(test.users)
    top = np.full((data.n_users, 10), -1, dtype=np.int64)
    order = np.lexsort((np.arange(len(users)), users))  # the file's order within each user
    users, items = users[order], items[order]
    start_of = np.searchsorted(users, users, "left")
    rank = np.arange(len(users)) - start_of
    keep = rank < 10
    top[users[keep], rank[keep]] = items[keep]
    return float(metrics.per_user("recall@10", top[rows], test.matrix[rows]).mean())


def choices(out: Path) -> dict:
    a = json.loads((out / "auto.json").read_text())
    members = {m["name"]: {"params": m["best"]["params"], "value": round(m["best"]["value"], 6),
                           "trials": m["trials"]} for m in a.get("members", [])}  # fmt: skip
    return {"written": a.get("chosen"), "method": a.get("method"), "members": members,
            "elapsed_s": a.get("elapsed_s")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", default="30m")
    ap.add_argument("--kill-at", default="10m", help="when the second run gets SIGKILL (its whole process group)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/toprec-resume"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from bench_auto import ml100k
    from bench_side import ml1m

    data, last, rnd = ml100k(a.seed) if a.dataset == "ml-100k" else ml1m()
    train, test = split.competition(data, last=last, random=rnd, seed=a.seed)
    work = a.work / f"{a.dataset}_seed{a.seed}"
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "train"
    write_training_folder(data, train, HERE / "data" / "ml-100k" if a.dataset == "ml-100k" else None, folder)
    kill_at = parse_budget(a.kill_at)
    cmd_a = auto_cmd(folder, work / "out-a", work / "a.csv", a.budget, a.seed + 100)
    cmd_b = auto_cmd(folder, work / "out-b", work / "b.csv", a.budget, a.seed + 100)
    t0 = time.monotonic()
    pa, pb = start(cmd_a, work / "a.log"), start(cmd_b, work / "b.log")
    while time.monotonic() - t0 < kill_at and pb.poll() is None:
        time.sleep(1)
    if pb.poll() is not None:
        sys.exit(f"the run to kill ended at {time.monotonic() - t0:.0f} s, before --kill-at {a.kill_at}")
    os.killpg(pb.pid, signal.SIGKILL)
    pb.wait()
    before = time.monotonic() - t0
    print(f"killed run b at {before:.0f} s; b.csv exists: {(work / 'b.csv').exists()}", flush=True)
    t1 = time.monotonic()
    pb = start(cmd_b, work / "b.log")
    rb = pb.wait()
    after = time.monotonic() - t1
    ra = pa.wait()
    if ra or rb:
        sys.exit(f"exit codes: uninterrupted {ra}, resumed {rb}; logs in {work}")
    ca, cb = choices(work / "out-a"), choices(work / "out-b")
    wall_a = ca["elapsed_s"]
    diff = {m: {"a": ca["members"].get(m), "b": cb["members"].get(m)}
            for m in sorted(set(ca["members"]) | set(cb["members"])) if ca["members"].get(m) != cb["members"].get(m)}
    res = {"dataset": a.dataset, "seed": a.seed, "budget_s": parse_budget(a.budget), "kill_at_s": before,
           "uninterrupted_elapsed_s": wall_a, "resumed_after_kill_s": after, "killed_total_s": before + after,
           "resumed_elapsed_s": cb["elapsed_s"],
           "same_bytes": (work / "a.csv").read_bytes() == (work / "b.csv").read_bytes(),
           "written": {"a": ca["written"], "b": cb["written"]}, "method": {"a": ca["method"], "b": cb["method"]},
           "members_differ": diff,
           "test_recall": {"a": recall_on_test(work / "a.csv", data, test),
                           "b": recall_on_test(work / "b.csv", data, test)}}  # fmt: skip
    print("| dataset, seed | budget s | killed at s | left alone s (its clock) | killed + rerun s (wall) | "
          "same bytes | written (a / b) | members differing | test recall a / b |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |")
    print(f"| {a.dataset}, {a.seed} | {res['budget_s']:.0f} | {before:.0f} | {wall_a:.0f} | {before + after:.0f} | "
          f"{res['same_bytes']} | {ca['method']} / {cb['method']} | {', '.join(diff) or 'none'} | "
          f"{res['test_recall']['a']:.4f} / {res['test_recall']['b']:.4f} |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
