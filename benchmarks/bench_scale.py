"""The cost curve (issue 20): fit / recommend seconds and peak memory as events and items grow.

    python benchmarks/bench_scale.py                          # the sizes that fit this machine, table on stdout
    python benchmarks/bench_scale.py --events 0.25M,1M,5M --items 7k,20k --max-seconds 300 \\
        --out benchmarks/results/scale.md --plot benchmarks/results/scale.png

Data: ``toprec.data.synth`` with ``--mean-per-user`` events per user (users
grow with events: users = events / mean), cached under ``--cache`` (one
folder per size, reused between runs). Each (size, model) runs in a fresh
process through ``bench_memory.py --child`` (the same measurement: fit, then
``recommend`` for every user, k=10, while a thread samples the PSS of the
process and its forked workers every 20 ms, floored by the kernel's peak RSS).
"peak MB" is the total peak (data loaded + fit + recommend), "above data" is
the peak minus the memory in use before the fit.

A point is skipped, with the reason printed, when the model's own memory
estimate (``Recommender.memory_estimate``) plus the data exceeds
``--memory-gb`` (default 24), or when its fit + recommend time, extrapolated
from the smaller sizes already run (the model's log-log exponent vs events),
exceeds ``--max-seconds``; a run that still passes ``--max-seconds`` is killed
and reported as such. The estimate grid for the issue's full sizes (1M-50M
events x 7k-200k items) is arithmetic only (no run) and says where each model
stops fitting in ``--memory-gb``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = [  # label, registry name, params
    ("EASE (items)", "ease", {"device": "cpu", "form": "items"}),
    ("EASE (users)", "ease", {"device": "cpu", "form": "users"}),
    ("EDLAE", "edlae", {"form": "items"}),
    ("iALS", "ials", {}),
    ("ItemKNN", "itemknn", {}),
    ("RP3beta", "rp3beta", {}),
    ("Multi-VAE (1 epoch)", "multivae", {"epochs": 1, "patience": 0, "device": "cpu"}),
    ("SANSA", "sansa", {}),
]
FULL_EVENTS = [1_000_000, 5_000_000, 20_000_000, 50_000_000]
FULL_ITEMS = [7_000, 20_000, 50_000, 200_000]
DATA_BYTES_PER_EVENT = 40  # the loaded Dataset (events frame + CSR), measured "base" is ~this per event


def parse_count(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(round(float(t.rstrip("km")) * mult))


def fmt_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:g}M"
    return f"{n / 1e3:g}k" if n >= 1_000 else str(n)


def n_users_for(events: int, mean: float) -> int:
    return max(2, int(round(events / mean)))


def data_folder(cache: Path, events: int, items: int, mean: float) -> Path:
    folder = cache / f"e{fmt_count(events)}_i{fmt_count(items)}_m{mean:g}"
    if not (folder / "train_ratings.csv").exists():
        # in a subprocess: this process stays small, see run_child
        t0 = time.perf_counter()
        toprec = Path(sys.executable).with_name("toprec")
        subprocess.run([str(toprec), "data", "synth", "--out", str(folder), "--users", str(n_users_for(events, mean)),
                        "--items", str(items), "--mean-per-user", f"{mean:g}", "--seed", "0", "--quiet"],
                       check=True)  # fmt: skip
        print(f"  (generated {folder} in {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return folder


def estimate_bytes(name: str, params: dict, users: int, items: int, events: int) -> tuple[int | None, str]:
    from toprec import models

    est = models.get(name, **params).memory_estimate(users, items, events)
    return (est.bytes, est.what) if est else (None, "")


def slope(xs, ys) -> float | None:
    """Least-squares slope of log y vs log x (None: fewer than 2 distinct x)."""
    pts = [(x, y) for x, y in zip(xs, ys) if x and y and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    lx, ly = np.log([x for x, _ in pts]), np.log([y for _, y in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def run_child(folder: Path, name: str, params: dict, max_seconds: float) -> tuple[dict | None, str]:
    """bench_memory's child in its own session; killed (with its workers) past ``max_seconds``."""
    env = {**os.environ, "TOPREC_NO_TRACK": "1"}  # the memory guard stays on: a refusal is reported, not an OOM
    # Through a shell that forks (not execs) the child: Linux keeps a process's peak RSS (ru_maxrss) across exec,
    # so a child exec'd straight from this process would start with this process's high-water mark as its
    # "kernel peak" floor; a freshly forked process starts from the (small) shell's.
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh",
           sys.executable, str(HERE / "bench_memory.py"), "--child", str(folder), name, json.dumps(params)]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)  # fmt: skip
    try:
        out, err = p.communicate(timeout=max_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the child's own process group: it and its forked workers
        p.communicate()
        return None, f"killed after --max-seconds {max_seconds:g}"
    if p.returncode != 0:
        lines = err.strip().splitlines() or [f"exit {p.returncode}"]
        return None, "failed: " + lines[-1][:120]
    return json.loads(out.strip().splitlines()[-1]), ""


def row_line(label: str, d: dict, load: str) -> str:
    """One table row of a measured point."""
    peak = (d["base"] + d["measured"]) / 2**20
    estmb = d["estimate"] / 2**20 if d["estimate"] else float("nan")
    above = d["measured"] / 2**20
    return (f"| {label} | {d['nnz']:,} | {d['users']:,} | {d['items']:,} | {d['fit_s']:.1f} | "
            f"{d['recommend_s']:.1f} | {peak:,.0f} | {above:,.0f} | {estmb:,.0f} | {load} |")  # fmt: skip


def merge_points(points: list[dict], path: str) -> list[dict]:
    """``points`` plus those of an earlier ``--json`` that were not run now, in the table's order."""
    ran = {(p["model"], p["events"], p["items"]) for p in points}
    old = [p for p in json.loads(Path(path).read_text()) if (p["model"], p["events"], p["items"]) not in ran]
    rank = {m[0]: i for i, m in enumerate(MODELS)}
    return sorted(old + points, key=lambda p: (p["items"], rank.get(p["model"], len(rank)), p["events"]))


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="0.25M,1M,5M", help="event counts (k/M suffixes)")
    ap.add_argument("--items", default="7k,20k", help="item counts (k/M suffixes)")
    ap.add_argument("--mean-per-user", type=float, default=160.0, help="events per user (users = events / this)")
    ap.add_argument("--models", default="", help="comma-separated labels' registry names (default: all)")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="cap on one run's fit + recommend")
    ap.add_argument("--memory-gb", type=float, default=24.0, help="memory to plan against")
    ap.add_argument("--cache", default="/tmp/toprec_bench/scale")
    ap.add_argument("--out", default="")
    ap.add_argument("--plot", default="")
    ap.add_argument("--json", default="", help="also write the raw points here")
    ap.add_argument("--reuse", default="", help="a --json file of an earlier run: its points are taken, not rerun")
    ap.add_argument("--merge", default="",
                    help="a --json file of an earlier run: the rows of the models not run now (--models) are kept "
                         "in the table, the exponents, the grid and the plot")  # fmt: skip
    a = ap.parse_args()
    events_list = sorted(parse_count(x) for x in a.events.split(","))
    items_list = sorted(parse_count(x) for x in a.items.split(","))
    wanted = set(a.models.split(",")) if a.models else None
    chosen = [m for m in MODELS if not wanted or m[1] in wanted or m[0] in wanted]
    limit = a.memory_gb * 2**30
    cache = Path(a.cache)
    load_start = load_avg()

    head = ("| model | events | users | items | fit s | recommend s (all users) | peak MB | above data MB | "
            "estimate MB | load avg |")  # fmt: skip
    sep = "|" + "---|" * 10
    print(head)
    print(sep, flush=True)
    rows, points, skipped = [], [], []
    reuse = {(p["model"], p["events"], p["items"]): p for p in json.loads(Path(a.reuse).read_text())} if a.reuse else {}
    growth: dict[str, float] = {}  # model: exponent of fit + recommend s vs events at the last item count run
    for items in items_list:
        for label, name, params in chosen:
            done: list[tuple[int, float]] = []  # (events, fit + recommend s) run so far for this model and items
            for events in events_list:
                users = n_users_for(events, a.mean_per_user)
                est, _ = estimate_bytes(name, params, users, items, events)
                need = (est or 0) + DATA_BYTES_PER_EVENT * events
                reason = ""
                if est is not None and need > limit:
                    reason = f"estimate {need / 2**30:.1f} GB (with data) > {a.memory_gb:g} GB"
                elif len(done) >= 1 and (label, events, items) not in reuse:
                    # exponent vs events: this item count's points, else the last item count's, else linear
                    b, src = 1.0, "assumed"
                    if len(done) >= 2:
                        b, src = slope([e for e, _ in done], [t for _, t in done]), "fitted"
                    elif label in growth:
                        b, src = growth[label], "fitted at fewer items"
                    b = max(b, 0.0)
                    e0, t0 = done[-1]
                    pred = t0 * (events / e0) ** b
                    if pred > a.max_seconds:
                        reason = (f"predicted {pred:.0f} s (from {t0:.0f} s at {fmt_count(e0)} events, "
                                  f"exponent {b:.2f} {src}) > --max-seconds {a.max_seconds:g}")  # fmt: skip
                if reason:
                    skipped.append((label, events, users, items, reason))
                    print(f"  skip {label} {fmt_count(events)} events x {fmt_count(items)} items: {reason}",
                          file=sys.stderr, flush=True)  # fmt: skip
                    continue
                if (label, events, items) in reuse:
                    old = reuse[(label, events, items)]
                    d, err, load = {k: old[k] for k in ("users", "items", "nnz", "estimate", "what", "measured",
                                                          "base", "fit_s", "recommend_s")}, "", old["load"]  # fmt: skip
                else:
                    folder = data_folder(cache, events, items, a.mean_per_user)
                    load = load_avg()
                    d, err = run_child(folder, name, params, a.max_seconds)
                if d is None:
                    skipped.append((label, events, users, items, err))
                    print(f"  {label} {fmt_count(events)} x {fmt_count(items)}: {err}", file=sys.stderr, flush=True)
                    # larger sizes of the same model will not do better
                    done.append((events, a.max_seconds * 1.01))
                    continue
                line = row_line(label, d, load)
                print(line, flush=True)
                rows.append(line)
                points.append({"model": label, "name": name, "params": params, "events": events, "items": items,
                               "load": load, **d, "peak": d["base"] + d["measured"]})  # fmt: skip
                done.append((events, d["fit_s"] + d["recommend_s"]))
            if len(done) >= 2:
                growth[label] = slope([e for e, _ in done], [t for _, t in done])

    if a.merge:  # the other models' rows of an earlier run, as they were
        points = merge_points(points, a.merge)
        rows = [row_line(p["model"], p, p["load"]) for p in points]
        labels = {p["model"] for p in points}
        chosen = [m for m in MODELS if m[0] in labels or m in chosen]
        items_list = sorted({p["items"] for p in points} | set(items_list))
        events_list = sorted({p["events"] for p in points} | set(events_list))

    # ---- growth exponents
    exp_head = "| model | quantity | vs events (items fixed) | vs items (events fixed) |"
    exp_rows = []
    for label, _, _ in chosen:
        pts = [p for p in points if p["model"] == label]
        for key, what in (("fit_s", "fit s"), ("recommend_s", "recommend s"), ("peak", "peak memory")):
            ve = []
            for items in items_list:
                sub = sorted((p for p in pts if p["items"] == items), key=lambda p: p["nnz"])
                s = slope([p["nnz"] for p in sub], [p[key] for p in sub])
                if s is not None:
                    span = f"{fmt_count(sub[0]['events'])}-{fmt_count(sub[-1]['events'])}"
                    ve.append(f"{s:.2f} ({fmt_count(items)} items, {span})")
            vi = []
            for events in events_list:
                sub = sorted((p for p in pts if p["events"] == events), key=lambda p: p["items"])
                s = slope([p["items"] for p in sub], [p[key] for p in sub])
                if s is not None:
                    vi.append(f"{s:.2f} ({fmt_count(events)} events)")
            exp_rows.append(f"| {label} | {what} | {'; '.join(ve) or '-'} | {'; '.join(vi) or '-'} |")
    print()
    print(exp_head)
    print("|---|---|---|---|")
    print("\n".join(exp_rows))

    # ---- where each model stops fitting, from its estimate, on the full grid
    grid_head = "| events | users | items | " + " | ".join(m[0] for m in chosen) + " |"
    grid_rows = []
    first_over: dict[str, list[str]] = {m[0]: [] for m in chosen}
    for events in FULL_EVENTS:
        users = n_users_for(events, a.mean_per_user)
        for items in FULL_ITEMS:
            cells = []
            for label, name, params in chosen:
                est, _ = estimate_bytes(name, params, users, items, events)
                if est is None:
                    cells.append("?")
                    continue
                need = est + DATA_BYTES_PER_EVENT * events
                over = need > limit
                cells.append(f"{'**' if over else ''}{need / 2**30:,.1f}{'**' if over else ''}")
                if over:
                    first_over[label].append(f"{fmt_count(events)}x{fmt_count(items)}")
            grid_rows.append(f"| {fmt_count(events)} | {users:,} | {fmt_count(items)} | " + " | ".join(cells) + " |")
    print()
    print(grid_head)
    print("|" + "---|" * (3 + len(chosen)))
    print("\n".join(grid_rows))
    stops = []
    for label, _, _ in chosen:
        over = first_over[label]
        stops.append(f"- {label}: " + (f"over {a.memory_gb:g} GB at {len(over)}/16 sizes: {', '.join(over)}"
                                        if over else f"fits in {a.memory_gb:g} GB at every size of the grid"))
    print("\n".join(stops))

    skip_lines = [f"- {label}, {fmt_count(e)} events ({u:,} users) x {fmt_count(i)} items: {r}"
                  for label, e, u, i, r in skipped]  # fmt: skip
    if skip_lines:
        print("\nskipped:\n" + "\n".join(skip_lines))

    if a.json:
        Path(a.json).write_text(json.dumps(points, indent=1))
    if a.plot and points:
        plot(points, chosen, items_list, a.plot)
    if a.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE).stdout.strip()  # fmt: skip
        cmd = "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:])
        Path(a.out).write_text(
            "# The cost curve (issue 20): fit, recommend and peak memory vs events and items\n\n"
            f"`{cmd}` at commit {commit}, on {os.cpu_count()} cores shared with other jobs (load average "
            f"{load_start} at the start, {load_avg()} at the end; each row's 1/5/15-minute load at its start): "
            "times are noisy." + (f" Rows of the models not run by this command are merged from an earlier run "
            f"(`--merge {a.merge}`), as they were." if a.merge else "") + (f" Rows of earlier runs (same script, `--reuse {a.reuse}`) are taken as they "
            "were; their load column is their own." if a.reuse else "") + " Data: `toprec data synth`, "
            f"{a.mean_per_user:g} events per user (users grow with events), seed 0. Each row is a fresh process "
            "(`bench_memory.py --child`): fit, then `recommend` for **every** user (k=10). peak MB = peak PSS of the "
            "process and its forked workers (sampled every 20 ms, floored by the kernel's peak RSS), data included; "
            "above data = peak minus the memory in use before the fit; estimate = `memory_estimate` (beyond the "
            "data). Models at default parameters except: EASE form fixed (items / users), EDLAE form=items, "
            "Multi-VAE epochs=1 patience=0 device=cpu; SANSA at its defaults (weights: ceil(0.1 x items) per item, at most 400; "
            "factor rows of 96).\n\n"
            + "\n".join([head, sep, *rows]) + "\n\n"
            "## Growth exponents\n\nLeast-squares slope of log(quantity) vs log(events) at a fixed item count, and vs "
            "log(items) at a fixed event count (2-3 points each, noisy timings: read as rough orders).\n\n"
            + "\n".join([exp_head, "|---|---|---|---|", *exp_rows]) + "\n\n"
            + (f"![cost curve]({Path(a.plot).name})\n\n" if a.plot else "")
            + f"## Where each model stops fitting in {a.memory_gb:g} GB (from its memory estimate, no run)\n\n"
            f"GB = `memory_estimate(users, items, events)` + the loaded data (~{DATA_BYTES_PER_EVENT} bytes per "
            f"event); **bold** = over {a.memory_gb:g} GB. Users = events / {a.mean_per_user:g}.\n\n"
            + "\n".join([grid_head, "|" + "---|" * (3 + len(chosen)), *grid_rows]) + "\n\n"
            + "\n".join(stops) + "\n\n"
            + ("## Skipped at the sizes asked for here\n\n" + "\n".join(skip_lines) + "\n" if skip_lines else "")
        )


def plot(points, chosen, items_list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    styles = ["-o", "--s", ":^", "-.v"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, title in zip(axes, ("fit_s", "recommend_s", "peak"), ("fit (s)", "recommend, all users (s)",
                                                                         "peak memory (MB)")):  # fmt: skip
        for ci, (label, _, _) in enumerate(chosen):
            for si, items in enumerate(items_list):
                sub = sorted((p for p in points if p["model"] == label and p["items"] == items), key=lambda p: p["nnz"])
                if not sub:
                    continue
                ys = [p[key] / (2**20 if key == "peak" else 1) for p in sub]
                ax.plot([p["nnz"] for p in sub], ys, styles[si % len(styles)], color=colors[ci % len(colors)],
                        label=f"{label}, {items // 1000}k items")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("events")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle("toprec cost curve (synthetic data, 2 shared CPU cores)")
    fig.tight_layout(rect=(0, 0.05 + 0.035 * ((len(labels) + 3) // 4), 1, 1))
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
