"""Printing results: the tables and summary lines of every command (no decisions, only presentation)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from rich import table as _rich_table
from rich.console import Console
from rich.text import Text

from ..io import json_default
from .base import out


class Table(_rich_table.Table):
    """rich's Table whose title and caption are never wrapped to the table's width (a log keeps each on a line)."""

    def __init__(self, *args: Any, title: Any = None, caption: Any = None, **kwargs: Any):
        def one_line(text: Any, style: str) -> Any:
            return Text(text, style=style, no_wrap=True, overflow="ignore") if isinstance(text, str) else text

        super().__init__(*args, title=one_line(title, "table.title"), caption=one_line(caption, "table.caption"),
                         **kwargs)  # fmt: skip


def print_json(payload: Any) -> None:
    out.print_json(json.dumps(payload, default=json_default))


def short_params(params: dict[str, Any]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def results(title: str, res: dict[str, dict[str, Any]], caption: str) -> None:
    """One column per model, one row per metric."""
    table = Table(title=title, caption=caption)
    table.add_column("metric")
    for name in res:
        table.add_column(name, justify="right")
    for key in next(iter(res.values())):
        cells = []
        for r in res.values():
            v = r.get(key)
            cells.append(f"{v:.4f}" if isinstance(v, float) and not key.endswith("_s") else f"{v}")
        table.add_row(key, *cells)
    out.print(table)


def evaluate(res, data_name: str, seed: int) -> None:
    if res.folds > 1:
        results(f"{data_name}: {res.folds} folds (seeds {seed}..{seed + res.folds - 1}): mean and _std", res.metrics,
                f"{res.protocol} x {res.folds}")  # fmt: skip
    else:
        results(f"{data_name}: {res.users_evaluated:,} users, {res.test_events:,} held-out events", res.metrics,
                res.protocol)  # fmt: skip


def stats(stats: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in ("users", "items", "events", "events_read", "duplicates_dropped", "filtered_by_rating"):
        if key in stats:
            table.add_row(key, f"{stats[key]:,}")
    if "order" in stats:
        table.add_row("order", str(stats["order"]))
    table.add_row("density", f"{stats['density']:.5f}")
    table.add_row("mean per user", f"{stats['mean_per_user']:.1f}")
    table.add_row("mean per item", f"{stats['mean_per_item']:.1f}")
    for side in ("per_user", "per_item"):
        qs = stats[side]
        table.add_row(f"{side.replace('_', ' ')} quantiles", "  ".join(f"{k}={v:g}" for k, v in qs.items()))
    for key, value in stats.items():
        if key.endswith("_coverage"):
            table.add_row(key.replace("_", " "), f"{value:.1%}")
    out.print(table)


def models(listing: dict[str, Any]) -> None:
    table = Table(title="toprec models")
    table.add_column("model")
    table.add_column("parameters (default)")
    table.add_column("description")
    for name, info in listing.items():
        params = ", ".join(f"{p}={v['default']!r} ({v['type']})" for p, v in info["params"].items()) or "-"
        table.add_row(name, params, info["doc"])
    out.print(table)


# ------------------------------------------------------------------ ensemble
def fused(r, tail: str) -> None:
    """An ensemble's (or auto's) fold A/B table, its warnings (stderr), and what was written."""
    from .base import warn

    if r.validation:
        ensemble_report(r.validation)
    for message in r.warnings:
        warn(message)
    out.print(f"wrote {r.output}: {r.rows:,} rows ({r.users:,} users x {r.k}); {r.chosen}, method {r.method}, "
              f"weights {r.used}; {tail}")


def ensemble_report(report: dict[str, Any]) -> None:
    k = report["k"]
    r, nd = f"recall@{k}", f"ndcg@{k}"
    fa, fb = report["fold_a"], report["fold_b"]
    table = Table(
        title=f"ensemble ({report['method']}, search {report['search']}): fold A {fa['users']:,} users (searched), "
        + ("fold B: other held-out events of the same users (never searched)" if report.get("scheme") == "events"
           else f"fold B {fb['users']:,} users (never searched)"),
        caption=report["protocol"],
    )  # fmt: skip
    for col in ("member", "weight", f"A {r}", f"B {r}", f"A {nd}", f"B {nd}"):
        table.add_column(col, justify="left" if col == "member" else "right")
    for m in report["members"]:
        table.add_row(m["label"], f"{m['weight']:.3f}", f"{m['fold_a'][r]:.4f}", f"{m['fold_b'][r]:.4f}",
                      f"{m['fold_a'][nd]:.4f}", f"{m['fold_b'][nd]:.4f}")  # fmt: skip
    e = report["ensemble"]
    table.add_row("ensemble", "", f"{e['fold_a'][r]:.4f}", f"{e['fold_b'][r]:.4f}", f"{e['fold_a'][nd]:.4f}",
                  f"{e['fold_b'][nd]:.4f}", style="bold")  # fmt: skip
    out.print(table)
    if report.get("rerank"):
        rr = report["rerank"]
        out.print(f"re-ranker: {rr.get('ranker', 'lightgbm')}, {rr['trees']} trees on {len(rr['features'])} features; "
                  "fold A is its training fold (its fold-A recall is in-sample), fold B the test")  # fmt: skip
        if rr.get("importance"):
            top = list(rr["importance"].items())[:8]
            out.print(f"feature importance ({rr.get('importance_type', '')}, share): "
                      + ", ".join(f"{name} {v:.3f}" for name, v in top))  # fmt: skip
        if rr.get("clusters"):
            c, by = rr["clusters"], rr.get("recall_by_cluster_fold_b", {})
            line = f"user clusters ({c['source']}): k={c['k']} by silhouette, sizes {c['sizes']}"
            if "ensemble" in by:
                line += "; fold-B " + r + " by cluster: " + ", ".join(
                    f"{cl} {v:.4f}" for cl, v, n in zip(by["clusters"], by["ensemble"], by["users"]) if n)
            out.print(line)
    if report.get("method_requested") == "auto":
        tried = ", ".join(f"{m} {v:.4f}" for m, v in report["methods_fold_a"].items())
        out.print(f"method auto: fold-A {r} after each method's search: {tried}; kept {report['method']}")
    out.print(
        f"gain over the best member: fold A {report['gain_fold_a']:+.4f} ({report['relative_gain_fold_a']:+.1%}, "
        f"vs {report['best_member_fold_a']}), fold B {report['gain_fold_b']:+.4f} "
        f"({report['relative_gain_fold_b']:+.1%}, vs {report['best_member_fold_b']}): "
        + ("holds" if report["holds"] else "DOES NOT HOLD")
        + _z_note(report)
        + f"; {report['search_trials']} search trials"
    )
    cf = report.get("crossfit")
    if cf:  # auto: the fold A/B line above is where the search started; the choice was made over the cuts
        out.print(decided(cf))


def decided(cf: dict[str, Any]) -> str:
    """auto's choice, made over its validation cuts (or both folds), in one line."""
    where = (f"{cf['cuts']} validation cuts" if cf.get("cuts", 1) > 1 else "both folds") + f" ({cf['users']:,} users)"
    if "against" in cf:  # the re-ranker, trained on the other users of each cut
        what = f"re-ranker {cf['gain']:+.4f} vs {cf['against']} without it, each user scored out of fold"
    else:
        what = (f"ensemble {cf['gain']:+.4f} vs {cf['alternative']}, "
                + ("each cut judged with the weights the other cuts pick" if cf.get("pooled") else "out of fold"))
    return (f"decided over {where}: {what}, se {cf['se']:.4f}: " + ("kept" if cf["kept"] else "not kept")
            + "; this decides, not fold B alone, and what is written is this search's")  # fmt: skip


def _z_note(report: dict[str, Any]) -> str:
    z = report["gain_fold_b_z"]
    if z != z:  # nan: a single member, nothing to compare
        return ""
    tail = "; within noise)" if report["holds"] and z < 2 else ")"
    return f" (fold-B gain = {z:+.1f} paired standard errors{tail}"


# ------------------------------------------------------------------ align
def align(rep: dict[str, Any]) -> None:
    r = f"recall@{rep['k']}"
    table = Table(
        title=f"alignment: validation (fold A, {rep['fold_a']['users']:,} users) vs leaderboard stand-in "
        f"(fold B, {rep['fold_b']['users']:,} users)",
        caption=rep["protocol"],
    )
    for col in ("model", f"A {r}", f"B {r}", "gap B-A", "gap se", "rank A", "rank B"):
        table.add_column(col, justify="left" if col == "model" else "right")
    va = np.array([x["fold_a"][r] for x in rep["models"]])
    vb = np.array([x["fold_b"][r] for x in rep["models"]])
    rank_a = (-va).argsort().argsort() + 1
    rank_b = (-vb).argsort().argsort() + 1
    for i, row in enumerate(rep["models"]):
        table.add_row(row["label"], f"{va[i]:.4f}", f"{vb[i]:.4f}", f"{row['gap']:+.4f}", f"{row['gap_se']:.4f}",
                      str(rank_a[i]), str(rank_b[i]))  # fmt: skip
    out.print(table)
    rho = rep["spearman"]
    out.print(
        f"mean |gap| {rep['mean_abs_gap']:.4f}, max |gap| {rep['max_abs_gap']:.4f}, mean gap {rep['mean_gap']:+.4f}; "
        f"Spearman {'n/a (needs 3+ models)' if rho != rho else f'{rho:.3f}'} over {len(rep['models'])} models; "
        f"best on A: {rep['best_fold_a']}, best on B: {rep['best_fold_b']}"
    )
    out.print(
        f"sampling noise alone gives mean |gap| about {rep['noise_abs_gap']:.4f}; without the offset all models "
        f"share, they differ by {rep['mean_abs_gap_centred']:.4f} on average (noise alone: about "
        f"{rep['noise_abs_gap_centred']:.4f})"
    )


def align_seeds(res: dict) -> None:
    first = res["runs"][0]
    # no rules: the nine columns then fit 80 characters with model names uncut
    table = Table(
        box=None,
        title=f"alignment over {len(res['seeds'])} split seeds ({len(first['models'])} models)",
        caption="|gap|: mean over models of |fold B - fold A| recall; gap: their mean (the offset all share); "
        "|gap-mean|: mean |gap - offset|; noise: what sampling alone gives for the column before it; "
        "rho: Spearman across models. " + first["protocol"],
    )
    # short headers: the table must fit 80 columns (the caption explains them)
    for col in ("seed", "|gap|", "noise", "gap", "|gap-mean|", "noise", "rho", "best A", "best B"):
        if col.startswith("best"):
            table.add_column(col, no_wrap=True, min_width=max(len(str(r_[key])) for r_ in res["runs"]
                                                              for key in ("best_fold_a", "best_fold_b")))
        else:
            table.add_column(col, justify="right", no_wrap=True)
    rows = [(str(s), rep, rep["best_fold_a"], rep["best_fold_b"]) for s, rep in zip(res["seeds"], res["runs"])]
    for label, rep, best_a, best_b in rows + [("mean", res["mean"], "", "")]:
        table.add_row(label, f"{rep['mean_abs_gap']:.4f}", f"{rep['noise_abs_gap']:.4f}", f"{rep['mean_gap']:+.4f}",
                      f"{rep['mean_abs_gap_centred']:.4f}", f"{rep['noise_abs_gap_centred']:.4f}",
                      f"{rep['spearman']:.3f}", best_a, best_b)  # fmt: skip
    out.print(table)


# ------------------------------------------------------------------ tune and runs
def tune(summary: dict[str, Any], k: int) -> None:
    s = summary["states"]
    key = f"recall@{k}"
    table = Table(title=f"study {summary['study']}: {s['COMPLETE']} complete, {s['PRUNED']} pruned, "
                        f"{s['FAIL']} failed, {s['RUNNING']} running ({summary['seconds']:.1f}s)")  # fmt: skip
    rows = sorted((r for r in summary["trials"] if r["value"] is not None and r["state"] in ("COMPLETE", "PRUNED")),
                  key=lambda r: -r["value"])[:10]  # fmt: skip
    epochs = any(r.get("epochs") for r in summary["trials"])  # none for a closed-form model (EASE): no column
    for col in ("trial", "state", key, *(["epochs"] if epochs else []), "seconds", "params"):
        table.add_column(col, justify="left" if col in ("state", "params") else "right")
    for r in rows:
        table.add_row(str(r["number"]), r["state"], f"{r['value']:.4f}", *([str(r["epochs"])] if epochs else []),
                      "" if r["seconds"] is None else f"{r['seconds']:.1f}", short_params(r["params"]))  # fmt: skip
    out.print(table)
    b = summary["best"]
    out.print(f"best: trial {b['number']}, {key} = {b['value']:.4f}, {short_params(b['params'])}; "
              f"wrote {summary['best_config']}")  # fmt: skip


def runs(uri: str, experiment: str, rows: list[dict[str, Any]]) -> None:
    import time

    table = Table(title=f"runs in {uri} (experiment {experiment})")
    for col in ("started UTC", "run", "command", "data", "model", "params (non-default)", "recall@10", "time", "status"):
        table.add_column(col, justify="right" if col in ("recall@10", "time") else "left", overflow="fold")
    for row in rows:
        started = time.strftime("%m-%d %H:%M:%S", time.gmtime(row["start"] / 1000))
        recall = "" if row["recall@10"] is None else f"{row['recall@10']:.4f}"
        if recall and row.get("best_model"):
            recall += f" ({row['best_model']})"  # several models: the best one's
        table.add_row(started, row["run_id"][:8], row["command"], _short_data(row.get("data", "")), row["model"],
                      _display_params(row["model"], row["params"]), recall, f"{row['seconds']:.1f}s",
                      row["status"].lower())  # fmt: skip
    Console(width=max(out.width, 160), highlight=False).print(table)


def _short_data(path: str) -> str:
    """A run's dataset as its folder's name (``ml-100k``), or ``folder/file`` for a file."""
    from pathlib import PurePath

    if not path:
        return ""
    p = PurePath(path)
    return f"{p.parent.name}/{p.name}" if p.suffix and p.parent.name else p.name


def _display_params(model: str, params: dict[str, str]) -> str:
    """Parameters that differ from the model's defaults, numbers to 4 significant digits."""
    from .. import models

    defaults: dict[str, Any] = {}
    try:
        defaults = models.get_class(model).Params().model_dump(mode="json") if "," not in model and model else {}
    except Exception:  # noqa: BLE001 - a model not installed here: show everything
        pass
    shown = []
    for k, v in params.items():
        if k in defaults and str(defaults[k]) == v:
            continue
        try:
            num = float(v)
            v = f"{num:.4g}" if v not in ("True", "False") else v
        except ValueError:
            pass
        shown.append(f"{k}={v}")
    return ", ".join(shown)[:100]
