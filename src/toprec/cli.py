"""The ``toprec`` command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from . import __version__, progress
from .errors import ToprecError
from .cli_options import Quiet, DataDir, Format, UserCol, ItemCol, TimeCol, RatingCol, MinRating, NoCache, Device
from .io import atomic_path

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="toprec: implicit feedback to the best top-N recommendations, fast.",
)
data_app = typer.Typer(no_args_is_help=True, help="Fetch, synthesise and describe datasets.")
app.add_typer(data_app, name="data")
out = Console(highlight=False)

Model = Annotated[str, typer.Option("--model", "-m", help="Model name (see `toprec models`); evaluate takes a,b,c.")]
Param = Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Model parameter key=value (repeatable).")]
from .cli_experiment import NoTrack, SaveConfig, TrackingUri, tracked  # noqa: E402 - tracking and --save-config


def _load(data: Path, fmt: str, user_col, item_col, time_col, rating_col, min_rating, cache: bool = True):
    from .data.dataset import Dataset

    with progress.task(f"load {data}"):
        ds = Dataset.load(
            data,
            format=fmt,
            user_col=user_col,
            item_col=item_col,
            time_col=time_col,
            rating_col=rating_col,
            min_rating=min_rating,
            cache=cache,
        )
    s = ds.summary
    progress.log(
        f"loaded {ds.n_events:,} events, {ds.n_users:,} users, {ds.n_items:,} items"
        f" ({s.get('duplicates_dropped', 0):,} repeated user-item events dropped"
        + (f", {s['filtered_by_rating']:,} below --min-rating" if "filtered_by_rating" in s else "")
        + ")"
        + (" [from cache]" if s.get("cache") == "hit" else "")
    )
    if ds.n_events == 0:
        raise ToprecError(f"{data}: no events")
    return ds


def _write_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


@app.command()
def version() -> None:
    """Print the toprec version."""
    out.print(__version__)


@app.command("models")
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List models with their parameters and defaults."""
    from . import models

    listing = models.list()
    if as_json:
        out.print_json(json.dumps(listing, default=_json_default))
        return
    table = Table(title="toprec models")
    table.add_column("model")
    table.add_column("parameters (default)")
    table.add_column("description")
    for name, info in listing.items():
        params = ", ".join(f"{p}={v['default']!r} ({v['type']})" for p, v in info["params"].items()) or "-"
        table.add_row(name, params, info["doc"])
    out.print(table)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name: ml-100k.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (competition layout).")],
    source: Annotated[str, typer.Option(help="auto | grouplens | recbole | a local folder with u.data/u.item")] = "auto",
    wheel: Annotated[Optional[Path], typer.Option(help="A recbole wheel on disk (skips the pip download).")] = None,
    quiet: Quiet = False,
) -> None:
    """Fetch a real dataset and write it in the competition layout."""
    from .data.fetch import fetch

    progress.set_quiet(quiet)
    info = fetch(name, out_dir, source=source, wheel=wheel)
    out.print(
        f"wrote {info['out']}: {info['events']:,} events, {info['users']:,} users, {info['items']:,} items; "
        f"side files: {', '.join(info['side_files'])}; source: {info['source']}"
    )


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (competition layout).")],
    users: Annotated[int, typer.Option(min=2, help="Number of users.")] = 31360,
    items: Annotated[int, typer.Option(min=20, help="Number of items.")] = 6807,
    mean_per_user: Annotated[float, typer.Option(min=1.0, help="Mean events per user.")] = 164.4,
    min_per_user: Annotated[int, typer.Option(min=1, help="Minimum events per user.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Write realistic synthetic data (defaults: the competition's statistics)."""
    from .data.synth import synthesize, write_synth

    progress.set_quiet(quiet)
    if min_per_user > items // 2:
        raise ToprecError(f"--min-per-user {min_per_user} is too large for {items} items")
    with progress.task("synthesise", total=1.0) as bar:
        data = synthesize(
            n_users=users,
            n_items=items,
            mean_per_user=mean_per_user,
            min_per_user=min_per_user,
            seed=seed,
            progress=lambda frac, msg: bar.update(completed=frac, description=f"synthesise: {msg}"),
        )
        bar.update(description="write")
        stats = write_synth(data, out_dir)
    out.print(f"wrote {out_dir}: {stats['events']:,} events, {stats['users']:,} users, {stats['items']:,} items")


@data_app.command("stats")
def data_stats(
    data: Annotated[Path, typer.Argument(help="Dataset folder or file.")],
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    no_cache: NoCache = False,
    quiet: Quiet = False,
) -> None:
    """Users, items, events, density and per-user / per-item quantiles."""
    progress.set_quiet(quiet)
    ds = _load(data, fmt, user_col, item_col, time_col, rating_col, min_rating, not no_cache)
    stats = ds.stats()
    if as_json:
        out.print_json(json.dumps(stats, default=_json_default))
        return
    table = Table(title=f"{data}")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in ("users", "items", "events", "events_read", "duplicates_dropped", "filtered_by_rating"):
        if key in stats:
            table.add_row(key, f"{stats[key]:,}")
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


@app.command()
@tracked("evaluate")
def evaluate(
    data: DataDir,
    model: Model = "ease",
    param: Param = None,
    protocol: Annotated[str, typer.Option(help="competition | leave_last | random_k | temporal | strong")] = "competition",
    last: Annotated[int, typer.Option(min=0, help="Latest events per user held out.")] = 1,
    random: Annotated[int, typer.Option(min=0, help="Random earlier events per user held out.")] = 9,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    cutoff: Annotated[float, typer.Option(help="temporal: time quantile in (0,1) or unix time.")] = 0.9,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="List length for the metrics.")] = 10,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    no_cache: NoCache = False,
    device: Device = None,
    folds: Annotated[int, typer.Option("--folds", min=1, help="K holdouts with seeds seed..seed+K-1: mean and std.")] = 1,
    save_config: SaveConfig = None,
    tracking_uri: TrackingUri = None,
    no_track: NoTrack = False,
    quiet: Quiet = False,
) -> None:
    """Cut a holdout like the hidden test, fit on the rest, print the metrics.

    ``--model`` takes one name or several separated by commas (all evaluated on
    the same split); with several, parameters are written ``model.key=value``.
    """
    from . import metrics, split
    from .experiment import session

    progress.set_quiet(quiet)
    recs_models = _models(model, param, device)  # parameter errors before any work
    ds = _load(data, fmt, user_col, item_col, time_col, rating_col, min_rating, not no_cache)
    if folds > 1:
        from .ensemble import evaluate_folds, summarize_folds

        fold_results, per_model = {}, {}
        for rec in recs_models:
            res = evaluate_folds(
                ds, lambda rec=rec: type(rec)(**rec.params.model_dump()), k=k, folds=folds, seed=seed, last=last,
                random=random, protocol=protocol,
                metric_names=[f"map@{k}", f"precision@{k}", f"hit@{k}", f"mrr@{k}", f"coverage@{k}"],
            )  # fmt: skip
            fold_results[rec.name], per_model[rec.name] = summarize_folds(res), res
        session.log_results(fold_results, recs_models)
        _print_results(f"{data.name}: {folds} folds (seeds {seed}..{seed + folds - 1}): mean and _std",
                       fold_results, f"{protocol} x {folds}")  # fmt: skip
        if json_out is not None:
            _write_json(json_out, {
                "data": str(data), "protocol": protocol, "folds": folds,
                "results": [{"model": r.name, "params": r.params.model_dump(mode="json"), "folds": per_model[r.name]}
                            for r in recs_models],
                "toprec_version": __version__,
            })  # fmt: skip
            session.log_artifacts(json_out)
        return
    with progress.task(f"split: {protocol}"):
        train, holdout = split.by_name(ds, protocol, last=last, random=random, seed=seed, cutoff=cutoff)
    users = holdout.users
    if len(users) == 0:
        raise ToprecError(f"{data}: no user has enough events for the {protocol} protocol")
    names = [f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"precision@{k}", f"hit@{k}", f"mrr@{k}", f"coverage@{k}"]
    results: dict[str, dict[str, Any]] = {}
    for rec in recs_models:
        results[rec.name] = metrics.fit_and_evaluate(rec, train, holdout, k, names)
    session.log_results(results, recs_models)
    _print_results(f"{data.name}: {len(users):,} users, {holdout.n_events:,} held-out events", results, holdout.protocol)
    if json_out is not None:
        _write_json(
            json_out,
            {
                "data": str(data),
                "protocol": holdout.protocol,
                "dataset": {"users": ds.n_users, "items": ds.n_items, "events": ds.n_events},
                "users_evaluated": int(len(users)),
                "test_events": holdout.n_events,
                "results": [
                    {"model": r.name, "params": r.params.model_dump(mode="json"), "metrics": results[r.name]}
                    for r in recs_models
                ],
                "toprec_version": __version__,
            },
        )
        session.log_artifacts(json_out)


def _models(spec: str, params: list[str] | None, device: str | None = None) -> list:
    from . import models

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ToprecError("--model: no model named")
    classes = [models.get_class(n) for n in names]
    if len({c.name for c in classes}) != len(classes):
        raise ToprecError(f"--model: a model is named twice in '{spec}'")
    per: dict[str, list[str]] = {c.name: [] for c in classes}
    for pair in params or []:
        key = pair.split("=", 1)[0]
        if "." in key:
            prefix, rest = pair.split(".", 1)
            if prefix not in per:
                raise ToprecError(f"--param '{pair}': model '{prefix}' is not among --model {spec}")
            per[prefix].append(rest)
        elif len(classes) == 1:
            per[classes[0].name].append(pair)
        else:
            raise ToprecError(f"--param '{pair}': with several models write model.key=value")
    if device is not None:
        if device not in ("auto", "cpu", "cuda"):
            raise ToprecError(f"--device '{device}': choose auto, cpu or cuda")
        takers = [c for c in classes if "device" in c.Params.model_fields]
        if not takers:
            raise ToprecError(f"--device: none of {spec} runs on a GPU")
        for c in takers:
            if not any(p.split("=", 1)[0].strip() == "device" for p in per[c.name]):
                per[c.name].append(f"device={device}")
    return [c(**models.parse_params(c.name, per[c.name])) for c in classes]


def _print_results(title: str, results: dict[str, dict[str, Any]], caption: str) -> None:
    table = Table(title=title, caption=caption)
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    keys = list(next(iter(results.values())))
    for key in keys:
        cells = []
        for res in results.values():
            v = res.get(key)
            cells.append(f"{v:.4f}" if isinstance(v, float) and not key.endswith("_s") else f"{v}")
        table.add_row(key, *cells)
    out.print(table)


@app.command()
@tracked("submit")
def submit(
    data: DataDir,
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission CSV to write (user,item).")],
    model: Model = "ease",
    param: Param = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Items per user.")] = 10,
    save_model: Annotated[Optional[Path], typer.Option(help="Also save the fitted model to this folder.")] = None,
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    no_cache: NoCache = False,
    device: Device = None,
    save_config: SaveConfig = None,
    tracking_uri: TrackingUri = None,
    no_track: NoTrack = False,
    quiet: Quiet = False,
) -> None:
    """Fit on everything and write k unseen items per user, best first (atomically)."""
    from .experiment import session

    progress.set_quiet(quiet)
    rec = _models(model, param, device)
    if len(rec) != 1:
        raise ToprecError("submit: name exactly one --model")
    rec = rec[0]
    ds = _load(data, fmt, user_col, item_col, time_col, rating_col, min_rating, not no_cache)
    if output.exists() and output.is_dir():
        raise ToprecError(f"{output}: is a folder, expected a file path")
    t0 = time.perf_counter()
    with progress.task(f"{rec.name}: fit on {ds.n_events:,} events"):
        rec.fit(ds)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs = rec.recommend(ds.users, k=k)
    rec_s = time.perf_counter() - t0
    short = np.flatnonzero((recs.items < 0).any(axis=1))
    if len(short):
        u = short[0]
        raise ToprecError(
            f"user {ds.user_ids[u]!s} has fewer than {k} unseen items; cannot write exactly {k} rows per user"
        )
    t0 = time.perf_counter()
    with progress.task(f"write {output}"):
        recs.write_csv(output, ds)
    write_s = time.perf_counter() - t0
    if save_model is not None:
        rec.save(save_model)
    session.log_metrics({"fit_s": fit_s, "recommend_s": rec_s, "write_s": write_s, "users": len(recs)})
    session.current().log_history(getattr(rec, "history", None))
    session.log_artifacts(output, save_model)
    out.print(
        f"wrote {output}: {len(recs) * k:,} rows ({len(recs):,} users x {k}); "
        f"fit {fit_s:.2f}s, recommend {rec_s:.2f}s, write {write_s:.2f}s"
    )


from . import cli_ensemble  # noqa: E402

cli_ensemble.register(app)  # adds `ensemble` and `align`
from . import cli_report  # noqa: E402

cli_report.register(app)  # adds `eda` and `report`
from . import cli_experiment  # noqa: E402

cli_experiment.register(app)  # adds `run`, `tune` and `runs`


def main() -> None:
    """Entry point: one-line errors, exit status 2, no traceback."""
    try:
        app()
    except ToprecError as exc:
        progress.console.print(f"toprec: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError) as exc:
        progress.console.print(f"toprec: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        progress.console.print("toprec: interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
