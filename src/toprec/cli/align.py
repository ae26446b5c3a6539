"""``toprec align``."""

from __future__ import annotations

from typing import Annotated

import typer

from ..experiment.config import MetricsConfig, OutputConfig
from . import render
from .base import app, config, execute
from .options import DATA, QUIET, TRACKING, JsonOut, K, NoStratify, Scheme, opt_str, split_bundle, with_options

Models = Annotated[str, typer.Option(
    "--models", "-m", help="Comma-separated models, e.g. ease:l2=100,ease:l2=500,itemknn,rp3beta.")]
Repeats = Annotated[int, typer.Option(
    "--repeats", min=1, help="Repeat with split seeds seed..seed+R-1 and average: one split is one draw.")]


@app.command()
@with_options(DATA, split_bundle(protocol=False, seed_help="Split seed (fold B / user halves derive from it)."),
              TRACKING, QUIET)  # fmt: skip
def align(models: Models, k: K = 10, scheme: Scheme = "events", no_stratify: NoStratify = False, repeats: Repeats = 1,
          json_out: JsonOut = None, *, data, split, tracking) -> None:  # fmt: skip
    """Does validation agree with the leaderboard? Per model: fold-A vs fold-B recall@k, the gap
    (with its standard error), and the Spearman rank correlation across models."""
    section = dict(models=models.split(","), scheme=scheme, stratify=not no_stratify, repeats=repeats)
    cfg = config("align", tracking, data=data, split=split, metrics=MetricsConfig(k=k), align=section,
                 output=OutputConfig(json_path=opt_str(json_out)))  # fmt: skip
    show(cfg, execute(cfg, tracking))


def show(cfg, r) -> None:
    render.align_seeds(r.seeds) if r.seeds is not None else render.align(r.report)
