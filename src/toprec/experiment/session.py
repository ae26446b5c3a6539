"""One MLflow run per execution of a :class:`~toprec.experiment.config.RunConfig`.

The application layer wraps every command in :func:`tracked_run`: it opens an
MLflow run with the config as parameters (unless ``cfg.tracking.enabled`` is
off or ``TOPREC_NO_TRACK`` is set), makes it :func:`current` for the code
that logs metrics and artifacts, and ends it FINISHED, or FAILED when the
command raises. Without tracking, :func:`current` is a do-nothing stand-in,
and mlflow is never imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Any, Iterator

from .tracking import BufferedTracker, Tracker, flatten, run_tags, tracking_disabled_by_env

_current: contextvars.ContextVar[Tracker] = contextvars.ContextVar("toprec_tracker", default=Tracker.off())

#: long commands open the MLflow run at once (trials appear as they finish); short ones buffer it
_LIVE = ("tune",)


def current() -> Tracker:
    """The MLflow run of the command being executed (``Tracker.off()`` when none)."""
    return _current.get()


def config_params(cfg) -> dict[str, str]:
    """The config as MLflow parameters: ``data.path``, ``split.seed``, ``model.name``, ``model.params.l2``..."""
    d = cfg.to_dict()
    for key in ("tracking", "toprec_version", "output"):
        d.pop(key, None)
    ms = d.pop("models", None)
    if ms:
        d["models"] = ",".join(m["name"] for m in ms)
    d = {k: v for k, v in d.items() if v is not None}
    return flatten(d)


def _run_name(cfg) -> str:
    if cfg.command == "ensemble" and cfg.ensemble is not None:
        return f"ensemble {','.join(cfg.ensemble.members)}"[:200]
    if cfg.command == "align" and cfg.align is not None:
        return f"align {','.join(cfg.align.models)}"[:200]
    return f"{cfg.command} {','.join(m.name for m in cfg.model_list())}"


def enabled(cfg) -> bool:
    return cfg.tracking.enabled and not tracking_disabled_by_env()


@contextlib.contextmanager
def tracked_run(cfg) -> Iterator[Tracker]:
    """The MLflow run of one execution of ``cfg`` (a no-op tracker when tracking is off)."""
    if not enabled(cfg):
        token = _current.set(Tracker.off())
        try:
            yield _current.get()
        finally:
            _current.reset(token)
        return
    command = cfg.command
    model_tag = {"toprec.model": ",".join(m.name for m in cfg.model_list())}
    if command in _LIVE:
        tracker = Tracker.start(cfg.tracking.uri, cfg.tracking.experiment, run_name=_run_name(cfg),
                                tags={**run_tags(command, cfg.data.path), **model_tag})  # fmt: skip
    else:  # mlflow loads in the background while the command works; the run is written at its end
        tracker = BufferedTracker(cfg.tracking.uri, cfg.tracking.experiment, run_name=_run_name(cfg),
                                  tags=model_tag, tags_fn=lambda: run_tags(command, cfg.data.path))  # fmt: skip
    tracker.log_params(config_params(cfg))
    tracker.log_text(cfg.to_yaml(), "config.yaml")
    t0 = time.perf_counter()
    token = _current.set(tracker)
    try:
        with tracker.active():
            yield tracker
            tracker.log_metrics({"total_s": time.perf_counter() - t0})
    finally:
        _current.reset(token)


# ------------------------------------------------------------------ helpers used by the app layer
def log_results(results: dict[str, dict[str, Any]], models: list | None = None) -> None:
    """Metrics of one model on the open run; of several, one child run each (with its parameters)."""
    tracker = current()
    if not tracker.enabled:
        return
    models = list(models or [])
    by_name = {m.name: m for m in models}
    if len(results) == 1:
        name, res = next(iter(results.items()))
        tracker.log_metrics(res)
        tracker.log_history(getattr(by_name.get(name), "history", None))
        return
    best = best_of(results)
    if best is not None:  # the parent's own line in `toprec runs`: the best model's value
        name, key = best
        tracker.log_metrics({f"best_{key}": results[name][key]})
        tracker.set_tags({"toprec.best_model": name})
    for name, res in results.items():
        child = tracker.child(f"{name}", tags={"toprec.command": "evaluate", "toprec.model": name})
        m = by_name.get(name)
        if m is not None:
            child.log_params({"model.name": name, **{f"model.params.{k}": v for k, v in
                                                     m.params.model_dump(mode="json").items()}})  # fmt: skip
        child.log_metrics(res)
        child.log_history(getattr(m, "history", None))
        child.end("FINISHED")


def best_of(results: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """(model, metric) of the best of several models by their first ``recall@k`` (None without one)."""
    first = next(iter(results.values()), {})
    key = next((k for k in first if k.startswith("recall@")), None)
    scored = {n: r.get(key) for n, r in results.items() if isinstance(r.get(key), (int, float)) and r.get(key) == r.get(key)}
    if key is None or not scored:
        return None
    return max(scored, key=lambda n: scored[n]), key


def log_metrics(values: dict[str, Any], step: int | None = None) -> None:
    current().log_metrics(values, step=step)


def log_artifacts(*paths) -> None:
    tracker = current()
    for p in paths:
        if p is not None:
            tracker.log_artifact(p)
