"""``toprec run file.yaml``: load, validate, run through the application layer, print like the command would."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ToprecError
from ..experiment import config as config_mod
from . import align, auto, batch, ensemble, evaluate, report, submit, tune
from .base import app
from .options import QUIET, NoTrack, TrackingUri, with_options

Config = Annotated[Path, typer.Argument(help="Run file (YAML): see configs/ for examples.")]
Set = Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set split.seed=1 (repeatable).")]
Worker = Annotated[Optional[int], typer.Option("--worker", hidden=True, help="Tuning worker index.")]

#: what each command prints for its result
SHOW = {"evaluate": evaluate.show, "submit": submit.show, "ensemble": ensemble.show, "tune": tune.show,
        "align": align.show, "report": report.show, "eda": report.show, "auto": auto.show,
        "batch": batch.show}  # fmt: skip


@app.command()
@with_options(QUIET)
def run(config: Config, set_: Set = None, tracking_uri: TrackingUri = None, no_track: NoTrack = False,
        worker: Worker = None) -> None:  # fmt: skip
    """Run a YAML config (evaluate, submit, ensemble, tune, align, report, eda) exactly as the command line would."""
    from .. import app as application

    cfg = config_mod.load(config, set_)
    if tracking_uri is not None:
        cfg.tracking.uri = tracking_uri
    if no_track:
        cfg.tracking.enabled = False
    if worker is not None and cfg.command != "tune":
        raise ToprecError("--worker is for tune configs")
    SHOW[cfg.command](cfg, application.run(cfg, **({"worker": worker} if cfg.command == "tune" else {})))
