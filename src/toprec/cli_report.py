"""``toprec eda`` and ``toprec report``: one self-contained HTML page plus a JSON of every number.

Registered on the main app by ``cli_report.register(app)`` (called from
``toprec.cli``). The computations live in :mod:`toprec.report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import progress
from .errors import ToprecError
from .cli_options import Quiet, DataDir, Format, UserCol, ItemCol, TimeCol, RatingCol, MinRating, NoCache

Output = Annotated[Path, typer.Option("--output", "-o", help="Folder to write the HTML page and its JSON into.")]
Seed = Annotated[int, typer.Option(help="Random seed (baselines, user samples, split, t-SNE).")]


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ToprecError(f"--output {output}: exists and is not a folder")


def _check_data(data: Path) -> None:
    if not data.exists():
        raise ToprecError(f"--data {data}: no such file or folder")


def eda(
    data: DataDir,
    output: Output,
    seed: Seed = 0,
    neighbours: Annotated[int, typer.Option(min=1, help="Sequential signal: top-N co-occurrence neighbours.")] = 20,
    sim_users: Annotated[int, typer.Option(min=10, help="Users sampled for the item co-occurrence.")] = 8000,
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
) -> None:
    """Explore a data set: activity, popularity, time, genres, franchises, order; writes eda.html + eda.json."""
    from .cli import _load, out
    from .report import write_eda

    progress.set_quiet(quiet)
    _check_data(data)
    _check_output(output)
    ds = _load(data, fmt, user_col, item_col, time_col, rating_col, min_rating, not no_cache)
    html_path, json_path, page = write_eda(ds, output, data if data.is_dir() else None, seed=seed,
                                           n_neighbors=neighbours, sim_users=sim_users)  # fmt: skip
    if not quiet:
        out.print(f"wrote {html_path} and {json_path} ({len(page.sections)} sections, {len(page.figures())} figures)")


def report(
    data: DataDir,
    models: Annotated[str, typer.Option("--models", "-m", help="Comma-separated model names (see `toprec models`).")],
    output: Output,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="model.key=value (repeatable).")] = None,
    protocol: Annotated[str, typer.Option(help="competition | leave_last | random_k | temporal | strong")] = "competition",
    last: Annotated[int, typer.Option(min=0, help="Latest events per user held out.")] = 1,
    random: Annotated[int, typer.Option(min=0, help="Random earlier events per user held out.")] = 9,
    seed: Seed = 0,
    cutoff: Annotated[float, typer.Option(help="temporal: time quantile in (0,1) or unix time.")] = 0.9,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="List length for the metrics.")] = 10,
    map_items: Annotated[int, typer.Option(min=0, help="Most popular items on the embedding maps (0: no maps).")] = 1000,
    device: Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda, for GPU-capable models.")] = None,
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    no_cache: NoCache = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate models on one holdout and explain the results; writes report.html + report.json."""
    from .cli import _load, _models, _print_results, out
    from .report import write_report

    progress.set_quiet(quiet)
    recs_models = _models(models, param, device)  # parameter errors before any work
    _check_data(data)
    _check_output(output)
    ds = _load(data, fmt, user_col, item_col, time_col, rating_col, min_rating, not no_cache)
    html_path, json_path, page, rep = write_report(
        ds, recs_models, output, data, protocol=protocol, last=last, random=random, seed=seed, cutoff=cutoff, k=k,
        map_items=map_items,
    )  # fmt: skip
    if not quiet:
        _print_results(f"{data.name}: {rep['users_evaluated']:,} users, {rep['test_events']:,} held-out events",
                       {m: r["metrics"] for m, r in rep["models"].items()}, rep["protocol"])  # fmt: skip
        out.print(f"wrote {html_path} and {json_path} ({len(page.figures())} figures)")


def register(app: typer.Typer) -> None:
    """Add ``eda`` and ``report`` to the main app."""
    app.command("eda")(eda)
    app.command("report")(report)
