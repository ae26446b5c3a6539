"""The application layer: one function per command, a validated ``RunConfig`` in, a typed result out.

Every entry point (the ``toprec`` CLI, ``toprec run file.yaml``, Python code,
later ``serve`` / ``batch`` / ``auto``) calls these; every decision that is
the library's (the ensemble's best-member fallback, ``force``, method ``auto``,
the rerank rules, what is written where) lives here, so a Python user gets
exactly what the command line does::

    from toprec import app
    from toprec.experiment.config import RunConfig
    cfg = RunConfig.make(command="evaluate", data={"path": "data/ml-100k"}, model={"name": "ease"})
    result = app.run(cfg)          # or app.evaluate(cfg)
    result.metrics["ease"]["recall@10"]

Each call is one MLflow run when ``cfg.tracking.enabled`` (the default).
"""

from __future__ import annotations

from typing import Any

from .align import align
from .auto import auto
from .batch import batch
from .data import load_data, stats
from .ensemble import ensemble
from .evaluate import evaluate
from .report import eda, report
from .results import (
    AlignResult,
    AutoResult,
    BatchResult,
    EnsembleResult,
    EvaluateResult,
    PageResult,
    SubmitResult,
    TuneResult,
)
from .runs import runs
from .submit import submit
from .tune import tune

_COMMANDS = {"evaluate": evaluate, "submit": submit, "ensemble": ensemble, "tune": tune, "align": align,
             "report": report, "eda": eda, "auto": auto, "batch": batch}  # fmt: skip


def run(cfg, **options: Any):
    """Execute ``cfg`` with the function of its ``command`` (``toprec run`` uses this)."""
    return _COMMANDS[cfg.command](cfg, **options)


__all__ = [
    "AlignResult", "AutoResult", "BatchResult", "EnsembleResult", "EvaluateResult", "PageResult", "SubmitResult", "TuneResult",
    "align", "auto", "batch", "eda", "ensemble", "evaluate", "load_data", "report", "run", "runs", "stats", "submit", "tune",
]  # fmt: skip
