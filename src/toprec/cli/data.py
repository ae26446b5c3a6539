"""``toprec data fetch | synth | stats``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import progress
from ..errors import ToprecError
from . import render
from .base import data_app, out
from .options import DATA_ARGUMENT, QUIET, AsJson, with_options

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Folder to write (competition layout).")]


@data_app.command("fetch")
@with_options(QUIET)
def fetch(name: Annotated[str, typer.Argument(help="Dataset name: ml-100k.")], out_dir: OutDir,
          source: Annotated[str, typer.Option(help="auto | grouplens | recbole | a local folder with u.data/u.item")]
          = "auto",
          wheel: Annotated[Optional[Path], typer.Option(help="A recbole wheel on disk (skips the pip download).")]
          = None) -> None:  # fmt: skip
    """Fetch a real dataset and write it in the competition layout."""
    from ..data.fetch import fetch as fetch_data

    info = fetch_data(name, out_dir, source=source, wheel=wheel)
    out.print(f"wrote {info['out']}: {info['events']:,} events, {info['users']:,} users, {info['items']:,} items; "
              f"side files: {', '.join(info['side_files'])}; source: {info['source']}")  # fmt: skip


@data_app.command("synth")
@with_options(QUIET)
def synth(out_dir: OutDir, users: Annotated[int, typer.Option(min=2, help="Number of users.")] = 31360,
          items: Annotated[int, typer.Option(min=20, help="Number of items.")] = 6807,
          mean_per_user: Annotated[float, typer.Option(min=1.0, help="Mean events per user.")] = 164.4,
          min_per_user: Annotated[int, typer.Option(min=1, help="Minimum events per user.")] = 16,
          seed: Annotated[int, typer.Option(help="Random seed.")] = 0) -> None:  # fmt: skip
    """Write realistic synthetic data (defaults: the competition's statistics)."""
    from ..data.synth import synthesize, write_synth

    if min_per_user > items // 2:
        raise ToprecError(f"--min-per-user {min_per_user} is too large for {items} items")
    with progress.task("synthesise", total=1.0) as bar:
        data = synthesize(n_users=users, n_items=items, mean_per_user=mean_per_user, min_per_user=min_per_user,
                          seed=seed, progress=lambda frac, msg: bar.update(completed=frac,
                                                                           description=f"synthesise: {msg}"))
        bar.update(description="write")
        stats = write_synth(data, out_dir)
    out.print(f"wrote {out_dir}: {stats['events']:,} events, {stats['users']:,} users, {stats['items']:,} items")


@data_app.command("stats")
@with_options(DATA_ARGUMENT, QUIET)
def stats(as_json: AsJson = False, *, data) -> None:
    """Users, items, events, density and per-user / per-item quantiles."""
    from .. import app as application

    numbers = application.stats(data)
    render.print_json(numbers) if as_json else render.stats(numbers, data.path)
