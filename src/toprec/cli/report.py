"""``toprec eda`` and ``toprec report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import progress
from ..experiment.config import MetricsConfig, OutputConfig
from . import render
from .base import app, config, execute, out
from .options import (DATA, QUIET, TRACKING, Device, K, PageFolder, Param, model_section, split_bundle,
                      with_options)  # fmt: skip

Seed = "Random seed (baselines, user samples, split, t-SNE)."
MapItems = Annotated[int, typer.Option(min=0, help="Most popular items on the embedding maps (0: no maps).")]
Neighbours = Annotated[int, typer.Option(min=1, help="Sequential signal: top-N co-occurrence neighbours.")]
SimUsers = Annotated[int, typer.Option(min=10, help="Users sampled for the item co-occurrence.")]
Models = Annotated[str, typer.Option("--models", "-m", help="Comma-separated model names (see `toprec models`).")]
Clusters = Annotated[Optional[str], typer.Option(
    help="Also cluster the users by a factor model's user vectors (ials, lmf, bpr; parameters as ials:factors=64): "
    "a t-SNE map coloured by cluster and recall per cluster (fits one more model).")]
ModelParam = Annotated[Optional[list[str]], typer.Option("--param", "-p", help="model.key=value (repeatable).")]


@app.command()
@with_options(DATA, TRACKING, QUIET)
def eda(output: PageFolder, seed: Annotated[int, typer.Option(help=Seed)] = 0, neighbours: Neighbours = 20,
        sim_users: SimUsers = 8000, *, data, tracking) -> None:  # fmt: skip
    """Explore a data set: activity, popularity, time, genres, franchises, order; writes eda.html + eda.json."""
    cfg = config("eda", tracking, data=data, split={"seed": seed}, output=OutputConfig(report_dir=str(output)),
                 report={"neighbours": neighbours, "sim_users": sim_users})  # fmt: skip
    show(cfg, execute(cfg, tracking))


@app.command()
@with_options(DATA, split_bundle(seed_help=Seed), TRACKING, QUIET)
def report(models: Models, output: PageFolder, param: ModelParam = None, k: K = 10, map_items: MapItems = 1000,
           device: Device = None, clusters: Clusters = None, *, data, split, tracking) -> None:  # fmt: skip
    """Evaluate models on one holdout and explain the results; writes report.html + report.json."""
    cfg = config("report", tracking, data=data, split=split, metrics=MetricsConfig(k=k),
                 output=OutputConfig(report_dir=str(output)), report={"map_items": map_items, "clusters": clusters},
                 **model_section(models, param, device))  # fmt: skip
    show(cfg, execute(cfg, tracking))


def show(cfg, r) -> None:
    if progress.is_quiet():
        return
    if cfg.command == "report":
        n = r.numbers
        render.results(f"{Path(cfg.data.path).name}: {n['users_evaluated']:,} users, {n['test_events']:,} held-out "
                       "events", {m: x["metrics"] for m, x in n["models"].items()}, n["protocol"])  # fmt: skip
        out.print(f"wrote {r.html} and {r.json} ({r.figures} figures)")
    else:
        out.print(f"wrote {r.html} and {r.json} ({r.sections} sections, {r.figures} figures)")
