"""``toprec ensemble`` and ``toprec align``: honest ensembles from the command line.

Registered on the main app by ``cli_ensemble.register(app)`` (called from
``toprec.cli``). The protocol is documented in :mod:`toprec.ensemble.validate`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from . import __version__, progress
from .errors import ToprecError
from .cli_options import Quiet, DataDir, Format, UserCol, ItemCol, TimeCol, RatingCol, MinRating, NoCache
from .cli_experiment import NoTrack, SaveConfig, TrackingUri, tracked

Scheme = Annotated[
    str,
    typer.Option(
        help="users: search on half the users' holdout, confirm on the other half (like public/private); "
        "events: validation cut from the training data vs the hidden-test holdout of the same users, one fit; "
        "nested: like events, but the leaderboard side is refitted with the validation events (local vs leaderboard)."
    ),
]
Last = Annotated[int, typer.Option(min=0, help="Latest events per user held out.")]
Random = Annotated[int, typer.Option(min=0, help="Random earlier events per user held out.")]
Seed = Annotated[int, typer.Option(help="Split seed (fold B / user halves derive from it).")]
K = Annotated[int, typer.Option("-k", "--k", min=1, help="List length (recall@k is the search objective).")]
NoStratify = Annotated[
    bool, typer.Option("--no-stratify", help="users scheme: plain random halves, not activity-balanced.")
]


def _warn(message: str) -> None:
    """Warnings go to stderr even with --quiet."""
    progress.console.print(f"toprec: warning: {message}", markup=False, highlight=False, soft_wrap=True)


def _check_choice(value: str, choices, what: str) -> str:
    v = value.strip().lower()
    if v not in choices:
        raise ToprecError(f"unknown {what} '{value}' (choose from {', '.join(choices)})")
    return v


def _parse_weights(text: Optional[str], n: int):
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ToprecError(f"--weights '{text}': not a comma-separated list of numbers") from None
    if len(values) != n:
        raise ToprecError(f"--weights: {len(values)} weights for {n} members")
    return values


@tracked("ensemble")
def ensemble(
    data: DataDir,
    members: Annotated[
        str,
        typer.Option(
            "--members",
            help="Comma-separated members: model names with optional parameters (ease:l2=300), saved model "
            "folders, or user,item[,score] CSV files (VALID.csv:FINAL.csv for separate search/final lists).",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission CSV to write (user,item).")],
    method: Annotated[
        str,
        typer.Option(help="auto (every method searched on fold A, the best kept; rank with --no-validate) | "
                     "rank (1/log2(rank+1)) | rrf | borda | score | product | rerank (a LightGBM re-ranker trained "
                     "on fold A over the members' candidates; needs lightgbm)"),
    ] = "auto",
    search: Annotated[str, typer.Option(help="none | weights | subset | both")] = "both",
    k: K = 10,
    candidates: Annotated[int, typer.Option("--candidates", "-n", min=1, help="Top-N candidates per member.")] = 100,
    weights: Annotated[
        Optional[str], typer.Option(help="Starting (or, with --search none, fixed) weights, one per member: 1,0.5,...")
    ] = None,
    scheme: Scheme = "users",
    seed: Seed = 0,
    last: Last = 1,
    random: Random = 9,
    min_gain: Annotated[float, typer.Option(min=0, help="Least fold-A recall gain for a search move.")] = 1e-4,
    restarts: Annotated[int, typer.Option(min=0, help="--search weights: extra random starting points.")] = 0,
    no_stratify: NoStratify = False,
    no_validate: Annotated[
        bool,
        typer.Option("--no-validate", help="Skip the folds: fuse with --weights on all the data (needs --search none)."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Write the ensemble even if its gain does not hold on fold B.")
    ] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON.")] = None,
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    no_cache: NoCache = False,
    save_config: SaveConfig = None,
    tracking_uri: TrackingUri = None,
    no_track: NoTrack = False,
    quiet: Quiet = False,
) -> None:
    """Search ensemble weights/members on one fold, confirm on another, refit on all data, write the submission.

    Each member's top-N lists are fused (rank: sum of w / log2(rank + 1)).
    The search sees only fold A; the chosen weights are reported on fold B,
    which it never saw (other users; with --scheme events, other events of the
    same users). If the gain over the best single member does not hold
    on fold B, the best fold-A member is written instead (unless --force).
    """
    from .cli import _load, _write_json, out
    from .ensemble import Ensemble
    from .ensemble.fusion import METHODS
    from .ensemble.search import SEARCHES
    from .ensemble.validate import AUTO, RERANK, SCHEMES

    progress.set_quiet(quiet)
    method = _check_choice(method, (AUTO, *METHODS, RERANK), "fusion method")
    if method == AUTO and no_validate:
        method = "rank"  # nothing to choose on: the competition's soft vote
    if method == RERANK:
        if no_validate:
            raise ToprecError("--method rerank trains its ranker on fold A: it cannot run with --no-validate")
        from .ensemble.rerank import lightgbm

        lightgbm()  # missing lightgbm: a one-line error before any fitting
    search = _check_choice(search, SEARCHES, "search")
    scheme = _check_choice(scheme, SCHEMES, "validation scheme")
    if k > candidates:
        raise ToprecError(f"-k {k} is larger than --candidates {candidates}")
    if no_validate and search != "none":
        raise ToprecError("--no-validate skips the search: add --search none (and --weights)")
    if output.exists() and output.is_dir():
        raise ToprecError(f"{output}: is a folder, expected a file path")
    from .ensemble import parse_members

    parsed = parse_members(members)  # unknown models / bad parameters: before any work
    w = _parse_weights(weights, len(parsed))
    ens = Ensemble(parsed, method=method, weights=w, candidates=candidates)
    ds = _load(data, fmt, user_col, item_col, time_col, rating_col, min_rating, not no_cache)
    for m in ens.members:
        m.bind(ds, k, candidates)  # member files: one-line errors before any fitting
    report: dict[str, Any] = {}
    chosen = "ensemble"
    if not no_validate:
        report = ens.validate(ds, search=search, k=k, scheme=scheme, seed=seed, last=last, random=random,
                              min_gain=min_gain, restarts=restarts, stratify=not no_stratify)  # fmt: skip
        _print_report(out, report)
        if report["warning"]:
            _warn(report["warning"])
        if not report["holds"] and not force and int((ens.weights > 0).sum()) > 1:
            best = report["best_member_fold_a"]
            ens.weights = np.array([1.0 if lab == best else 0.0 for lab in ens.labels])
            chosen = f"member:{best}"
            _warn(f"writing the best fold-A member '{best}' alone (use --force to write the ensemble anyway)")
        elif int((ens.weights > 0).sum()) == 1:
            chosen = f"member:{ens.labels[int(np.argmax(ens.weights))]}"
    t0 = time.perf_counter()
    ens.fit(ds, k=k)
    recs = ens.recommend(ds.users, k=k)
    ens.release()
    final_s = time.perf_counter() - t0
    short = np.flatnonzero((recs.items < 0).any(axis=1))
    if len(short):
        raise ToprecError(
            f"user {ds.user_ids[short[0]]!s} has fewer than {k} candidate items after fusion; "
            f"cannot write exactly {k} rows per user (raise --candidates)"
        )
    with progress.task(f"write {output}"):
        recs.write_csv(output, ds)
    used = {lab: round(float(x), 4) for lab, x in zip(ens.labels, ens.weights) if x > 0}
    _track_ensemble(report, chosen, used, final_s, output)
    out.print(
        f"wrote {output}: {len(recs) * k:,} rows ({len(recs):,} users x {k}); {chosen}, method {ens.method}, "
        f"weights {used}; final refit + fusion {final_s:.1f}s"
    )
    if json_out is not None:
        _write_json(
            json_out,
            {
                "data": str(data),
                "dataset": {"users": ds.n_users, "items": ds.n_items, "events": ds.n_events},
                "output": str(output),
                "chosen": chosen,
                "final_weights": {lab: float(x) for lab, x in zip(ens.labels, ens.weights)},
                "validation": report or None,
                "final_s": round(final_s, 3),
                "toprec_version": __version__,
            },
        )


def _track_ensemble(report: dict[str, Any], chosen: str, used: dict[str, float], final_s: float, output) -> None:
    """Fold A/B recall of the ensemble and members, the chosen weights and the submission, to the MLflow run."""
    from .experiment import session

    tracker = session.current()
    if not tracker.enabled:
        return
    values: dict[str, Any] = {"final_s": final_s}
    if report:
        for fold in ("fold_a", "fold_b"):
            for name, v in report["ensemble"][fold].items():
                values[f"{fold}.{name}"] = v
        values.update(gain_fold_a=report["gain_fold_a"], gain_fold_b=report["gain_fold_b"])
    tracker.log_metrics(values)
    tracker.log_params({"chosen": chosen, **{f"weight.{lab}": w for lab, w in used.items()}})
    session.log_artifacts(output)


def _print_report(out, report: dict[str, Any]) -> None:
    from rich.table import Table

    k = report["k"]
    r, nd = f"recall@{k}", f"ndcg@{k}"
    fa, fb = report["fold_a"], report["fold_b"]
    table = Table(
        title=f"ensemble ({report['method']}, search {report['search']}): fold A {fa['users']:,} users (searched), "
        + ("fold B: other held-out events of the same users (never searched)" if report.get("scheme") == "events"
           else f"fold B {fb['users']:,} users (never searched)"),
        caption=report["protocol"],
    )
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
        out.print(f"re-ranker: {report['rerank']['trees']} trees on {len(report['rerank']['features'])} features; "
                  "fold A is its training fold (its fold-A recall is in-sample), fold B the test")  # fmt: skip
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


def _z_note(report: dict[str, Any]) -> str:
    z = report["gain_fold_b_z"]
    if z != z:  # nan: a single member, nothing to compare
        return ""
    tail = "; within noise)" if report["holds"] and z < 2 else ")"
    return f" (fold-B gain = {z:+.1f} paired standard errors{tail}"


def align(
    data: DataDir,
    models: Annotated[
        str,
        typer.Option("--models", "-m", help="Comma-separated models, e.g. ease:l2=100,ease:l2=500,itemknn,rp3beta."),
    ],
    k: K = 10,
    scheme: Scheme = "events",
    seed: Seed = 0,
    last: Last = 1,
    random: Random = 9,
    no_stratify: NoStratify = False,
    repeats: Annotated[
        int,
        typer.Option("--repeats", min=1, help="Repeat with split seeds seed..seed+R-1 and average: one split is one draw."),
    ] = 1,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON.")] = None,
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
) -> None:
    """Does validation agree with the leaderboard? Per model: fold-A vs fold-B recall@k, the gap
    (with its standard error), and the Spearman rank correlation across models."""
    from rich.table import Table

    from .cli import _load, _write_json, out
    from .ensemble import align as run_align
    from .ensemble import parse_members
    from .ensemble.validate import SCHEMES

    progress.set_quiet(quiet)
    scheme = _check_choice(scheme, SCHEMES, "validation scheme")
    parsed = parse_members(models)
    for m in parsed:
        if not m.refittable:
            raise ToprecError(f"--models: '{m.label}' is a file; align needs models it can fit on each fold")
    ds = _load(data, fmt, user_col, item_col, time_col, rating_col, min_rating, not no_cache)
    kw = dict(k=k, scheme=scheme, last=last, random=random, stratify=not no_stratify)
    if repeats > 1:
        from .ensemble import align_seeds

        res = align_seeds(ds, parsed, range(seed, seed + repeats), **kw)
        _print_align_seeds(res)
        if json_out is not None:
            _write_json(json_out, {"data": str(data), **res, "toprec_version": __version__})
        return
    rep = run_align(ds, parsed, seed=seed, **kw)
    r = f"recall@{k}"
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
        cells = (f"{va[i]:.4f}", f"{vb[i]:.4f}", f"{row['gap']:+.4f}", f"{row['gap_se']:.4f}", str(rank_a[i]),
                 str(rank_b[i]))  # fmt: skip
        table.add_row(row["label"], *cells)
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
    if json_out is not None:
        _write_json(json_out, {"data": str(data), **rep, "toprec_version": __version__})


def _print_align_seeds(res: dict) -> None:
    from rich.table import Table

    from .cli import out

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
    cols = ("seed", "|gap|", "noise", "gap", "|gap-mean|", "noise", "rho", "best A", "best B")
    for col in cols:
        if col.startswith("best"):
            table.add_column(col, no_wrap=True, min_width=max(len(str(r_[key])) for r_ in res["runs"]
                                                              for key in ("best_fold_a", "best_fold_b")))
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for s, rep in zip(res["seeds"], res["runs"]):
        table.add_row(str(s), f"{rep['mean_abs_gap']:.4f}", f"{rep['noise_abs_gap']:.4f}", f"{rep['mean_gap']:+.4f}",
                      f"{rep['mean_abs_gap_centred']:.4f}", f"{rep['noise_abs_gap_centred']:.4f}",
                      f"{rep['spearman']:.3f}", rep["best_fold_a"], rep["best_fold_b"])  # fmt: skip
    m = res["mean"]
    table.add_row("mean", f"{m['mean_abs_gap']:.4f}", f"{m['noise_abs_gap']:.4f}", f"{m['mean_gap']:+.4f}",
                  f"{m['mean_abs_gap_centred']:.4f}", f"{m['noise_abs_gap_centred']:.4f}", f"{m['spearman']:.3f}",
                  "", "")  # fmt: skip
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``ensemble`` and ``align`` to the main app (idempotent)."""
    have = {c.name or getattr(c.callback, "__name__", None) for c in app.registered_commands}
    if "ensemble" not in have:
        app.command("ensemble")(ensemble)
    if "align" not in have:
        app.command("align")(align)
