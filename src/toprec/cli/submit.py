"""``toprec submit``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..experiment.config import MetricsConfig, OutputConfig
from .base import app, config, execute, out
from .options import DATA, QUIET, TRACKING, Device, Model, Param, Submission, model_section, opt_str, with_options

SaveModel = Annotated[Optional[Path], typer.Option(help="Also save the fitted model to this folder.")]


@app.command()
@with_options(DATA, TRACKING, QUIET)
def submit(output: Submission, model: Model = "ease", param: Param = None,
           k: Annotated[int, typer.Option("-k", "--k", min=1, help="Items per user.")] = 10,
           save_model: SaveModel = None, device: Device = None, *, data, tracking) -> None:  # fmt: skip
    """Fit on everything and write k unseen items per user, best first (atomically)."""
    cfg = config("submit", tracking, data=data, metrics=MetricsConfig(k=k), **model_section(model, param, device),
                 output=OutputConfig(submission=str(output), model_dir=opt_str(save_model)))  # fmt: skip
    show(cfg, execute(cfg, tracking))


def show(cfg, r) -> None:
    out.print(f"wrote {r.output}: {r.rows:,} rows ({r.users:,} users x {r.k}); "
              f"fit {r.fit_s:.2f}s, recommend {r.recommend_s:.2f}s, write {r.write_s:.2f}s")  # fmt: skip
