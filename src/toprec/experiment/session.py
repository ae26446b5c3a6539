"""What ties a command to its config and its MLflow run.

``@tracked("evaluate")`` on a command function: builds the run's
:class:`~toprec.experiment.config.RunConfig` from the call's arguments (or
takes the one ``toprec run`` is executing), writes it for ``--save-config``,
opens an MLflow run with the config as parameters (unless tracking is off)
and ends it FINISHED, or FAILED when the command raises. Inside the command,
:func:`current` is the open run (a do-nothing stand-in when tracking is off).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from typing import Any

from .tracking import BufferedTracker, Tracker, flatten, run_tags, tracking_disabled_by_env

_current: contextvars.ContextVar[Tracker] = contextvars.ContextVar("toprec_tracker", default=Tracker.off())
_pending: contextvars.ContextVar[Any] = contextvars.ContextVar("toprec_pending_config", default=None)
_active: contextvars.ContextVar[Any] = contextvars.ContextVar("toprec_active_config", default=None)


def current() -> Tracker:
    """The MLflow run of the command being executed (``Tracker.off()`` when none)."""
    return _current.get()


def config_for(command: str, args: dict[str, Any]):
    """The config of the command being executed: the one ``toprec run`` passed, else built from ``args``."""
    cfg = _pending.get() or _active.get()
    if cfg is None:
        from . import config

        cfg = config.from_cli(command, args)
    return cfg


def run_config(cfg):
    """Context for ``toprec run``: the command called inside uses ``cfg`` as its config, exactly."""
    import contextlib

    @contextlib.contextmanager
    def _ctx():
        token = _pending.set(cfg)
        try:
            yield
        finally:
            _pending.reset(token)

    return _ctx()


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
    return f"{cfg.command} {','.join(m.name for m in cfg.model_list())}"


def tracked(command: str):
    """Decorator for the ``evaluate`` / ``submit`` / ``ensemble`` / ``tune`` command functions."""

    def deco(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            cfg = _pending.get()
            save = a.get("save_config")
            want_tracking = not a.get("no_track", False) and not tracking_disabled_by_env()
            if cfg is not None:
                want_tracking = want_tracking and cfg.tracking.enabled
            if cfg is None and (save is not None or want_tracking):
                from . import config

                cfg = config.from_cli(command, dict(a))  # one-line errors for bad options, before any work
            if save is not None:
                cfg.save(save)
            active_token = _active.set(cfg)
            try:
                return _call(fn, bound, cfg, want_tracking, a, command)
            finally:
                _active.reset(active_token)

        return wrapper

    return deco


def _call(fn, bound, cfg, want_tracking: bool, a: dict[str, Any], command: str):
    if not want_tracking:
        token = _current.set(Tracker.off())
        try:
            return fn(*bound.args, **bound.kwargs)
        finally:
            _current.reset(token)
    uri = cfg.tracking.uri if a.get("tracking_uri") is None else a["tracking_uri"]
    model_tag = {"toprec.model": ",".join(m.name for m in cfg.model_list())}
    if command == "tune":  # long: trials appear in MLflow as they finish
        tracker = Tracker.start(uri, cfg.tracking.experiment, run_name=_run_name(cfg),
                                tags={**run_tags(command, cfg.data.path), **model_tag})  # fmt: skip
    else:  # short: mlflow loads in the background while the command works; the run is written at its end
        tracker = BufferedTracker(uri, cfg.tracking.experiment, run_name=_run_name(cfg), tags=model_tag,
                                  tags_fn=lambda: run_tags(command, cfg.data.path))  # fmt: skip
    tracker.log_params(config_params(cfg))
    tracker.log_text(cfg.to_yaml(), "config.yaml")
    t0 = time.perf_counter()
    token = _current.set(tracker)
    try:
        with tracker.active():
            result = fn(*bound.args, **bound.kwargs)
            tracker.log_metrics({"total_s": time.perf_counter() - t0})
    finally:
        _current.reset(token)
    return result


# ------------------------------------------------------------------ helpers used by the commands
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
    for name, res in results.items():
        child = tracker.child(f"{name}", tags={"toprec.command": "evaluate", "toprec.model": name})
        m = by_name.get(name)
        if m is not None:
            child.log_params({"model.name": name, **{f"model.params.{k}": v for k, v in
                                                     m.params.model_dump(mode="json").items()}})  # fmt: skip
        child.log_metrics(res)
        child.log_history(getattr(m, "history", None))
        child.end("FINISHED")


def log_metrics(values: dict[str, Any], step: int | None = None) -> None:
    current().log_metrics(values, step=step)


def log_artifacts(*paths) -> None:
    tracker = current()
    for p in paths:
        if p is not None:
            tracker.log_artifact(p)
