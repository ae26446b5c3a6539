"""``toprec runs``: recent tracked runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import render
from .base import app
from .options import AsJson, TrackingUri

Limit = Annotated[int, typer.Option("--limit", "-n", min=1, help="Most recent runs to show.")]
Command = Annotated[Optional[str], typer.Option(help="Only runs of this command (evaluate, submit, tune...).")]
Trials = Annotated[bool, typer.Option("--trials", help="Include tuning trials and per-model child runs.")]


@app.command()
def runs(tracking_uri: TrackingUri = None,
         experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "toprec", limit: Limit = 20,
         model: Annotated[Optional[str], typer.Option("--model", "-m", help="Only runs of this model.")] = None,
         command: Command = None, trials: Trials = False, as_json: AsJson = False) -> None:  # fmt: skip
    """Recent runs in the tracking store: model, parameters, recall@10, time."""
    from .. import app as application

    uri, rows = application.runs(tracking_uri, experiment, limit, model, command, trials)
    render.print_json(rows) if as_json else render.runs(uri, experiment, rows)
