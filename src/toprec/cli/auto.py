"""``toprec auto``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..experiment.config import MetricsConfig, OutputConfig
from . import render
from .base import app, config, execute
from .options import DATA, QUIET, TRACKING, K, Submission, split_bundle, with_options

Budget = Annotated[str, typer.Option(help="Wall-clock budget: 30m, 1h, 90s (a bare number is minutes).")]
Out = Annotated[Path, typer.Option("--out", help="Folder for the studies, lists, pipeline.yaml, report.html "
                                                 "(a rerun resumes from it).")]  # fmt: skip
Members = Annotated[Optional[str], typer.Option(help="Only these candidate members (default: the planner's).")]
Candidates = Annotated[int, typer.Option("--candidates", "-n", min=1, help="Top-N candidates per member.")]
AutoDevice = Annotated[str, typer.Option("--device", help="auto | cpu | cuda, for members that can use a GPU.")]


@app.command()
@with_options(DATA, split_bundle(seed_help="Validation split seed (folds A and B derive from it)."), TRACKING, QUIET)
def auto(output: Submission, budget: Budget = "30m", out: Out = Path("auto"), members: Members = None, k: K = 10,
         candidates: Candidates = 100, device: AutoDevice = "auto", *, data, split, tracking) -> None:  # fmt: skip
    """Plan, tune, ensemble and confirm within a time budget; write the best validated submission.

    Members are tuned on validation fold A (cut from --data like the hidden
    test), ensembled on fold A, confirmed on fold B (never searched); the best
    member alone is written when the ensemble's gain does not hold there.
    Rerunning the same command after a kill continues from --out.
    """
    section = dict(budget=budget, out=str(out), candidates=candidates, device=device,
                   members=None if members is None else members.split(","))  # fmt: skip
    cfg = config("auto", tracking, data=data, split=split, metrics=MetricsConfig(k=k), auto=section,
                 output=OutputConfig(submission=str(output)))  # fmt: skip
    show(cfg, execute(cfg, tracking))


def show(cfg, r) -> None:
    render.fused(r, f"{r.elapsed_s / 60:.1f} of {r.budget_s / 60:.1f} min; {r.out}/pipeline.yaml rebuilds it "
                    "(toprec run)")
