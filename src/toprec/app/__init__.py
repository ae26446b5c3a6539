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

import importlib

# every name is imported on first use (PEP 562): a process that needs one command (a serving worker
# imports app.serving) does not load the others' dependencies (pandas, pyarrow, mlflow...)
_LAZY = {
    **{name: ("align", name) for name in ("align",)},
    "auto": ("auto", "auto"), "batch": ("batch", "batch"), "load_data": ("data", "load_data"),
    "stats": ("data", "stats"), "ensemble": ("ensemble", "ensemble"), "evaluate": ("evaluate", "evaluate"),
    "eda": ("report", "eda"), "report": ("report", "report"), "runs": ("runs", "runs"),
    "submit": ("submit", "submit"), "tune": ("tune", "tune"),
    **{name: ("results", name) for name in ("AlignResult", "AutoResult", "BatchResult", "EnsembleResult",
                                            "EvaluateResult", "PageResult", "SubmitResult", "TuneResult")},
}  # fmt: skip
_COMMANDS = ("evaluate", "submit", "ensemble", "tune", "align", "report", "eda", "auto", "batch")


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'toprec.app' has no attribute '{name}'") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def run(cfg, **options: Any):
    """Execute ``cfg`` with the function of its ``command`` (``toprec run`` uses this)."""
    if cfg.command not in _COMMANDS:
        raise KeyError(cfg.command)
    return __getattr__(cfg.command)(cfg, **options)


__all__ = [
    "AlignResult", "AutoResult", "BatchResult", "EnsembleResult", "EvaluateResult", "PageResult", "SubmitResult", "TuneResult",
    "align", "auto", "batch", "eda", "ensemble", "evaluate", "load_data", "report", "run", "runs", "stats", "submit", "tune",
]  # fmt: skip
