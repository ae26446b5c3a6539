"""``toprec eda`` timings and the franchise / sequential figures on real vs order-shuffled data.

    python benchmarks/bench_eda.py --data /tmp/ml --data /tmp/synth --runs 3 --out benchmarks/results/eda
    python benchmarks/bench_eda.py --prepare-ml1m /tmp/ml1m --data /tmp/ml1m ...   # real ML-1M, ratings >= 4

For each data folder: the wall time of ``toprec eda --data DIR --output TMP -q``
in a fresh process (load from the binary cache, every section, figures, both
files written), median and spread of ``--runs`` runs; then the franchise and
sequential headline numbers on the data as is and with each user's order
shuffled (:func:`toprec.report.eda.shuffle_order`): order-dependent figures
should drop to ~0 (order signal) or ~1 (lifts) on shuffled data.
Results: ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

KEYS_FR = ("pairs", "p_next_part_given_part", "lift_next_part", "in_order_share", "order_signal",
           "within_next_5_share", "within_next_5_lift")  # fmt: skip
KEYS_SEQ = ("next_in_neighbours_of_previous", "random_earlier_in_neighbours", "lift", "window_lift", "last_event_lift")


def prepare_ml1m(out: Path, shared: Path = Path("/work/shared/data/ml-1m")) -> None:
    """ML-1M in the competition layout: ratings >= 4 with timestamps, titles and genres from movies.dat."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    r = pd.read_csv(shared / "derived" / "ml1m_ratings_ge4_with_time.csv.gz")
    r.rename(columns={"timestamp": "time"})[["user", "item", "time"]].to_csv(out / "train_ratings.csv", index=False)
    m = pd.read_csv(shared / "movies.dat", sep="::", engine="python", names=["item", "title", "genres"],
                    encoding="latin-1")  # fmt: skip
    m[["item", "title"]].to_csv(out / "titles.tsv", sep="\t", index=False)
    g = m.assign(genre=m["genres"].str.split("|")).explode("genre")
    g[["item", "genre"]].to_csv(out / "genres.tsv", sep="\t", index=False)


def time_cli(data: Path, runs: int) -> list[float]:
    out = []
    exe = [sys.executable, "-m", "toprec", "eda", "--data", str(data), "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(exe + ["--output", f"{tmp}/warm"], check=True, capture_output=True)  # builds the cache
        for r in range(runs):
            t0 = time.perf_counter()
            subprocess.run(exe + ["--output", f"{tmp}/r{r}"], check=True, capture_output=True)
            out.append(time.perf_counter() - t0)
    return out


def order_figures(data: Path, seed: int) -> dict:
    from toprec import Dataset
    from toprec.report import eda

    ds = Dataset.load(data)
    res = {}
    for name, d in (("as is", ds), ("order shuffled", eda.shuffle_order(ds, seed))):
        fr = eda.franchises(d, eda.read_extras(data, d))["numbers"]
        sq = eda.sequential(d, seed=seed)["numbers"]
        res[name] = {**{f"franchise.{k}": fr.get(k) for k in KEYS_FR}, **{f"sequential.{k}": sq[k] for k in KEYS_SEQ}}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eda")
    ap.add_argument("--prepare-ml1m", type=Path, help="first write real ML-1M (ratings >= 4) here")
    args = ap.parse_args()
    if args.prepare_ml1m:
        prepare_ml1m(args.prepare_ml1m)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
               "runs": args.runs, "data": {}}  # fmt: skip
    for data in args.data:
        times = time_cli(data, args.runs)
        results["data"][str(data)] = {
            "eda_seconds": times, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "figures": order_figures(data, args.seed),
        }  # fmt: skip
        print(f"{data}: median {statistics.median(times):.1f} s over {args.runs} runs", flush=True)
    lines = ["# toprec eda: timings and order figures", "",
             f"`python benchmarks/bench_eda.py {'--prepare-ml1m ' + str(args.prepare_ml1m) + ' ' if args.prepare_ml1m else ''}"
             f"{' '.join('--data ' + str(d) for d in args.data)} --runs {args.runs}`",
             f"({results['machine']['cpus']} CPUs, shared with other work)", "",
             "| data | median s | min s | max s |", "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for d, r in results["data"].items():
        lines.append(f"| {d} | {r['median_s']:.1f} | {r['min_s']:.1f} | {r['max_s']:.1f} |")
    lines += ["", "| data | order | " + " | ".join(KEYS_FR + KEYS_SEQ) + " |",
              "| --- | --- |" + " ---: |" * (len(KEYS_FR) + len(KEYS_SEQ))]  # fmt: skip
    for d, r in results["data"].items():
        for name, fig in r["figures"].items():
            cells = []
            for k in [f"franchise.{k}" for k in KEYS_FR] + [f"sequential.{k}" for k in KEYS_SEQ]:
                v = fig.get(k)
                cells.append("–" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4f}"))
            lines.append(f"| {d} | {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
