"""``toprec tune``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import progress
from ..experiment.config import MetricsConfig, param_keys
from . import render
from .base import app, config, execute
from .options import DATA, QUIET, TRACKING, Device, K, Param, model_section, opt_str, split_bundle, with_options

Trials = Annotated[int, typer.Option("--trials", "-n", min=1, help="Trials in the study, all workers together.")]
Timeout = Annotated[Optional[float], typer.Option(min=1, help="Stop starting trials after this many seconds "
                                                              "(per worker).")]  # fmt: skip
Storage = Annotated[Optional[str], typer.Option(
    help="Optuna RDB URL shared by workers: sqlite:///study.db, postgresql://user:pw@host/db. Default: OUT/study.db.")]
Study = Annotated[Optional[str], typer.Option(help="Study name (default MODEL-DATAFOLDER); same name = resume.")]
Workers = Annotated[int, typer.Option(min=1, help="Worker processes on this machine sharing the study.")]
NoPrune = Annotated[bool, typer.Option("--no-prune", help="Do not prune epoch-trained models' trials.")]
Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for best.yaml and trials.csv "
                                                                 "(default $TOPREC_HOME/tune/STUDY, ~/.local/share/toprec/tune/STUDY).")]  # fmt: skip
Heartbeat = Annotated[int, typer.Option(min=1, help="Seconds between heartbeats; a trial silent for 3 is retried "
                                                    "elsewhere.")]  # fmt: skip
TuneModel = Annotated[str, typer.Option("--model", "-m", help="Model name (see `toprec models`).")]
Fixed = Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Model parameter key=value, held fixed "
                                                                          "(repeatable).")]  # fmt: skip


@app.command()
@with_options(DATA, split_bundle(protocol=False, seed_help="Validation split seed (and sampler seed)."), TRACKING,
              QUIET)  # fmt: skip
def tune(model: TuneModel = "ease", param: Fixed = None, trials: Trials = 20, timeout: Timeout = None,
         storage: Storage = None, study: Study = None, workers: Workers = 1, no_prune: NoPrune = False,
         out: Out = None, k: K = 10, heartbeat: Heartbeat = 10, device: Device = None,
         *, data, split, tracking) -> None:  # fmt: skip
    """Optuna TPE over the model's search space; validation recall@k on a holdout cut from --data.

    Several processes (here with --workers, or on other machines) given the
    same --storage and --study share one study of --trials trials in total.
    Writes OUT/best.yaml (ready for `toprec run`) and OUT/trials.csv.
    """
    section = dict(trials=trials, timeout=timeout, storage=storage, study=study, workers=workers,
                   pruning=not no_prune, out=opt_str(out), heartbeat=heartbeat, fixed=param_keys(param))
    cfg = config("tune", tracking, data=data, split=split, metrics=MetricsConfig(k=k), tune=section,
                 **model_section(model, param, device))  # fmt: skip
    show(cfg, execute(cfg, tracking))


def show(cfg, result) -> None:
    if result.worker is not None:  # a spawned worker: the parent reports
        return
    render.tune(result.summary, cfg.metrics.k)
    if result.summary["worker_failures"]:
        progress.console.print(f"toprec: warning: worker exit codes {result.summary['worker_failures']}",
                               markup=False)  # fmt: skip
