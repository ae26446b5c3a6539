"""``toprec evaluate``."""

from __future__ import annotations

from pathlib import Path

from ..experiment.config import MetricsConfig, OutputConfig
from . import render
from .base import app, config, execute
from .options import (DATA, QUIET, TRACKING, Device, JsonOut, K, Model, Param, model_section, opt_str, split_bundle,
                      with_options)


@app.command()
@with_options(DATA, split_bundle(folds=True), TRACKING, QUIET)
def evaluate(model: Model = "ease", param: Param = None, k: K = 10, json_out: JsonOut = None, device: Device = None,
             *, data, split, tracking) -> None:  # fmt: skip
    """Cut a holdout like the hidden test, fit on the rest, print the metrics.

    ``--model`` takes one name or several separated by commas (all evaluated on
    the same split); with several, parameters are written ``model.key=value``.
    """
    cfg = config("evaluate", tracking, data=data, split=split, metrics=MetricsConfig(k=k),
                 output=OutputConfig(json_path=opt_str(json_out)), **model_section(model, param, device))
    show(cfg, execute(cfg, tracking))


def show(cfg, result) -> None:
    render.evaluate(result, Path(cfg.data.path).name, cfg.split.seed)
