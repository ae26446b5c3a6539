"""``toprec ensemble``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ToprecError
from ..experiment.config import MetricsConfig, OutputConfig
from . import render
from .base import app, config, execute
from .options import (DATA, QUIET, TRACKING, JsonOut, K, NoStratify, Scheme, Submission, opt_str, split_bundle,
                      with_options)  # fmt: skip

Members = Annotated[str, typer.Option(
    "--members", help="Comma-separated members: model names with optional parameters (ease:l2=300), saved model "
    "folders, or user,item[,score] CSV files (VALID.csv:FINAL.csv for separate search/final lists).")]
Method = Annotated[str, typer.Option(
    help="auto (every method searched on fold A, the best kept; rank with --no-validate) | rank (1/log2(rank+1)) | "
    "rrf | borda | score | product | rerank (a LightGBM or CatBoost re-ranker, --ranker, trained on fold A over the "
    "members' candidates)")]
Weights = Annotated[Optional[str], typer.Option(
    help="Starting (or, with --search none, fixed) weights, one per member: 1,0.5,...")]
NoValidate = Annotated[bool, typer.Option(
    "--no-validate", help="Skip the folds: fuse with --weights on all the data (needs --search none).")]
Force = Annotated[bool, typer.Option("--force", help="Write the ensemble even if its gain does not hold on fold B.")]
MinGain = Annotated[float, typer.Option(min=0, help="Least fold-A recall gain for a search move.")]
Restarts = Annotated[int, typer.Option(min=0, help="--search weights: extra random starting points.")]
Candidates = Annotated[int, typer.Option("--candidates", "-n", min=1, help="Top-N candidates per member.")]
Ranker = Annotated[str, typer.Option(
    help="--method rerank: the booster, lightgbm | catboost (each an optional extra: pip install 'toprec[rerank]').")]
Clusters = Annotated[Optional[str], typer.Option(
    help="--method rerank: a factor model (ials, lmf, bpr; parameters as ials:factors=64) fitted on fold A's "
    "training data; its users' K-means clusters (k by silhouette) become re-ranker features.")]
Recency = Annotated[bool, typer.Option(
    "--recency", help="--method rerank: add recency features (similarity of each candidate to the user's latest "
    "items; with a time column, its popularity around the user's last event, its age, the user's idle time).")]
SaveModel = Annotated[Optional[Path], typer.Option(
    help="Also save the fused pipeline (members fitted on all data, method, weights) to this folder, for `toprec serve`.")]


def parse_weights(text: Optional[str]) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ToprecError(f"--weights '{text}': not a comma-separated list of numbers") from None


@app.command()
@with_options(DATA, split_bundle(protocol=False, seed_help="Split seed (fold B / user halves derive from it)."),
              TRACKING, QUIET)  # fmt: skip
def ensemble(members: Members, output: Submission, method: Method = "auto",
             search: Annotated[str, typer.Option(help="none | weights | subset | both")] = "both", k: K = 10,
             candidates: Candidates = 100, weights: Weights = None, scheme: Scheme = "users",
             min_gain: MinGain = 1e-4, restarts: Restarts = 0, no_stratify: NoStratify = False,
             no_validate: NoValidate = False, force: Force = False, json_out: JsonOut = None,
             save_model: SaveModel = None, ranker: Ranker = "lightgbm", clusters: Clusters = None,
             recency: Recency = False, *, data, split, tracking) -> None:  # fmt: skip
    """Search ensemble weights/members on one fold, confirm on another, refit on all data, write the submission.

    Each member's top-N lists are fused (rank: sum of w / log2(rank + 1)).
    The search sees only fold A; the chosen weights are reported on fold B,
    which it never saw (other users; with --scheme events, other events of the
    same users). If the gain over the best single member does not hold
    on fold B, the best fold-A member is written instead (unless --force).
    """
    section = dict(members=members.split(","), method=method, search=search, candidates=candidates,
                   weights=parse_weights(weights), scheme=scheme, min_gain=min_gain, restarts=restarts,
                   stratify=not no_stratify, validate=not no_validate, force=force, ranker=ranker,
                   clusters=clusters, recency=recency)  # fmt: skip
    cfg = config("ensemble", tracking, data=data, split=split, metrics=MetricsConfig(k=k), ensemble=section,
                 output=OutputConfig(submission=str(output), json_path=opt_str(json_out),
                                     model_dir=opt_str(save_model)))  # fmt: skip
    show(cfg, execute(cfg, tracking))


def show(cfg, r) -> None:
    render.fused(r, f"final refit + fusion {r.final_s:.1f}s")
