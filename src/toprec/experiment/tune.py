"""Optuna tuning over the search space each model declares, shared by many workers.

The objective is recall@k on a validation holdout cut from the given data with
the competition protocol (``split.last`` latest + ``split.random`` random
earlier events per user, ``split.seed``); the model is fitted on the rest.
There is no test split here: the data folder is the training data.

Scaling out: every ``toprec tune`` process pointed at the same ``--storage``
(an SQLite file on one machine, a PostgreSQL URL across machines) and
``--study`` joins one study. The study total is ``--trials``, not each
worker's: before starting a trial a worker counts the study's finished,
running and queued trials, and a trial that turns out to be past the total
(two workers asked at the same moment) is closed at once, before any work, as
FAIL with the user attribute ``toprec_surplus`` (visible, never counted).
Running trials send a heartbeat; a worker that dies (SIGKILL, a lost machine)
leaves a RUNNING trial whose heartbeat stops, which the next worker to look
marks FAIL and re-queues with the same parameters (Optuna's
``RetryHeartbeatStaleTrialCallback``), so no trial is lost and the study
resumes. Re-running the same command resumes the study where it stopped.

Epoch-trained models report validation recall after every epoch
(``Recommender.fit(callback=...)``); with pruning on, Optuna's median pruner
stops trials that fall behind. Each trial is an MLflow child run (params,
per-epoch curves, final metrics).
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

from .. import metrics, progress
from ..errors import ToprecError
from ..paths import tune_dir
from .tracking import epoch_metrics

FINISHED_STATES = ("COMPLETE", "PRUNED")
SURPLUS_ATTR = "toprec_surplus"


class _Surplus(Exception):
    """A trial asked for after the study already had its total: closed before any work."""


class _TrialError(Exception):
    """A trial whose fit raised: recorded as FAIL with the message."""


def suggest(trial, space: dict[str, tuple]) -> dict[str, Any]:
    """Parameters for ``trial`` from a model's ``search_space``."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "categorical":
            out[name] = trial.suggest_categorical(name, list(spec[1]))
        elif kind in ("float", "log_float"):
            out[name] = trial.suggest_float(name, float(spec[1]), float(spec[2]), log=kind == "log_float")
        elif kind in ("int", "log_int"):
            out[name] = trial.suggest_int(name, int(spec[1]), int(spec[2]), log=kind == "log_int")
        else:
            raise ToprecError(f"search space of '{name}': unknown kind '{kind}'")
    return out


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        return Path(url[len("sqlite:///") :])
    return None


def storage_url(url: str) -> str:
    """``postgresql://`` uses whichever PostgreSQL driver is installed (psycopg 3, else psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            try:
                import psycopg2  # noqa: F401

                return f"postgresql+psycopg2://{rest}"
            except ImportError:
                pass
        return f"postgresql://{rest}"
    return url


def safe_url(url: str) -> str:
    """The URL with any password hidden (for messages and tags)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a database URL
        return url.split("@")[-1]


def open_storage(url: str, heartbeat: int):
    """An RDB storage with heartbeats and stale-trial retry; SQLite gets WAL and a long lock timeout."""
    import optuna
    from optuna.storages import RDBStorage

    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
        retry_kw = "heartbeat_stale_trial_callback"
    except ImportError:  # optuna < 4.9
        from optuna.storages import RetryFailedTrialCallback as Retry
        retry_kw = "failed_trial_callback"
    engine_kwargs: dict[str, Any] = {}
    shown = safe_url(url)
    url = storage_url(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # switching to WAL takes an exclusive lock and does not wait on the busy timeout: two workers opening
        # the study at once made one fail ("database is locked"; CI, two-worker test). Retry for up to ~60 s.
        for attempt in range(120):
            con = sqlite3.connect(str(path), timeout=60)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 119:
                    raise
            finally:
                con.close()
            time.sleep(0.5)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith("sqlite"):
        raise ToprecError(f"--storage {shown}: use a file, sqlite:///path/study.db (several processes share it)")
    last: Exception | None = None
    for attempt in range(5):  # two workers creating the tables at once: one retries
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                    **{retry_kw: Retry(max_retry=3)},
                )  # fmt: skip
        except ImportError as exc:
            raise ToprecError(f"--storage {shown}: {exc} (PostgreSQL needs: pip install 'toprec[postgres]')") from None
        except Exception as exc:  # noqa: BLE001
            last = exc
            time.sleep(0.3 * (attempt + 1))
    raise ToprecError(f"--storage {shown}: cannot open ({' '.join(str(last).split())[:300]})")


def _states(study) -> dict[str, int]:
    out = {"COMPLETE": 0, "PRUNED": 0, "RUNNING": 0, "WAITING": 0, "FAIL": 0, "SURPLUS": 0}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(SURPLUS_ATTR):
            out["SURPLUS"] += 1
        else:
            out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def worker_seed(seed: int, worker: int, existing: int) -> int:
    """Sampler seed: reproducible for one worker on a fresh study; distinct per worker and on resume."""
    return (seed * 1_000_003 + worker * 7919 + existing) % (2**32)


def default_worker_index(shared_storage: bool) -> int:
    """0 for a local study; for a shared storage, different on every host and process (independent samplers)."""
    if not shared_storage:
        return 0
    return zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_000 + 1


class Objective:
    """Fit on the training part, return validation recall@k; epoch models report (and may be pruned)."""

    def __init__(self, model_cls, fixed: dict[str, Any], train, valid, k: int, n_trials: int, pruning: bool,
                 tracker, study_name: str, worker: int):  # fmt: skip
        self.cls, self.fixed, self.train, self.valid, self.k = model_cls, fixed, train, valid, k
        self.n_trials, self.pruning, self.tracker = n_trials, pruning, tracker
        self.study_name, self.worker = study_name, worker
        self.space = {k_: v for k_, v in model_cls.search_space.items() if k_ not in fixed}

    def _check_budget(self, trial) -> None:
        from optuna.trial import TrialState

        live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        ahead = sum(
            1
            for t in trial.study.get_trials(deepcopy=False, states=live)
            if t.number < trial.number and not t.user_attrs.get(SURPLUS_ATTR)
        )
        if ahead >= self.n_trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise _Surplus(f"trial {trial.number}: the study already has its {self.n_trials} trials")

    def __call__(self, trial) -> float:
        import optuna

        self._check_budget(trial)
        params = {**self.fixed, **suggest(trial, self.space)}
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("worker_index", self.worker)
        child = self.tracker.child(
            f"trial {trial.number}",
            tags={"toprec.command": "tune-trial", "toprec.study": self.study_name, "toprec.trial": str(trial.number),
                  "toprec.model": self.cls.name},
        )  # fmt: skip
        child.log_params({"model.name": self.cls.name, **{f"model.params.{k}": v for k, v in params.items()}})
        key = f"recall@{self.k}"

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            child.log_metrics(epoch_metrics(logs), step=epoch)  # val_recall@10...: not the trial's result
            value = logs.get(key, logs.get("recall@10"))
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), epoch)
            if self.pruning and trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {key} {float(value):.4f}")

        t0 = time.perf_counter()
        try:
            model = self.cls(**params)
            model.fit(self.train, valid=self.valid, callback=on_epoch)
            fit_s = time.perf_counter() - t0
            recs = model.recommend(self.valid.users, k=self.k)
            res = metrics.evaluate(recs, self.valid, [key, f"ndcg@{self.k}"])
        except optuna.TrialPruned:
            child.set_tags({"toprec.trial_state": "PRUNED"})
            child.end("KILLED")
            raise
        except Exception as exc:  # noqa: BLE001 - a trial's failure is recorded, the study goes on
            msg = " ".join(str(exc).split())[:500] or type(exc).__name__
            trial.set_user_attr("error", msg)
            child.set_tags({"toprec.trial_state": "FAIL", "toprec.error": msg})
            child.end("FAILED")
            raise _TrialError(msg) from exc
        res["fit_s"] = fit_s
        res["recommend_s"] = time.perf_counter() - t0 - fit_s
        res["epochs"] = len(getattr(model, "history", []) or [])
        for name in ("fit_s", "recommend_s"):
            trial.set_user_attr(name, round(res[name], 3))
        child.log_metrics(res)
        child.set_tags({"toprec.trial_state": "COMPLETE"})
        child.end("FINISHED")
        return float(res[key])


def run_worker(study, objective: Objective, n_trials: int, timeout: float | None, heartbeat: int,
               bar=None) -> dict[str, int]:  # fmt: skip
    """Run trials until the study has ``n_trials`` finished ones (or ``timeout`` seconds pass)."""
    import optuna
    from optuna.storages import fail_stale_trials

    start = time.monotonic()
    consecutive_errors, last_error = 0, ""
    while True:
        if timeout is not None and time.monotonic() - start >= timeout:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        s = _states(study)
        finished = s["COMPLETE"] + s["PRUNED"]
        if bar is not None:
            bar.update(completed=min(finished, n_trials))
        if finished >= n_trials:
            break
        if finished + s["RUNNING"] >= n_trials and s["WAITING"] == 0:
            time.sleep(min(1.0, heartbeat / 4))  # the rest are running elsewhere; a dead one is re-queued
            continue
        done: list = []
        study.optimize(objective, n_trials=1, catch=(_Surplus, _TrialError),
                       callbacks=[lambda _s, frozen: done.append(frozen)])  # fmt: skip
        t = done[-1] if done else None
        if t is not None and t.state.name == "FAIL" and t.user_attrs.get("error"):
            consecutive_errors += 1
            last_error = t.user_attrs["error"]
            progress.log(f"trial {t.number} failed: {last_error}")
            if consecutive_errors >= 3:
                raise ToprecError(f"tune: 3 trials in a row failed; last: {last_error}")
        else:
            consecutive_errors = 0
    return _states(study)


def _spawn_workers(cfg_path: Path, n: int, quiet: bool) -> list[subprocess.Popen]:
    procs = []
    for i in range(1, n):
        cmd = [sys.executable, "-m", "toprec", "run", str(cfg_path), "--worker", str(i)]
        if quiet:
            cmd.append("--quiet")
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
    return procs


def trials_table(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number,
            "state": "SURPLUS" if t.user_attrs.get(SURPLUS_ATTR) else t.state.name,
            "value": t.value if t.value is not None else (
                t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None),
            "params": dict(t.params),
            "epochs": len(t.intermediate_values),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start else None,
            "worker": t.user_attrs.get("worker"),
            "retry_of": t.system_attrs.get("failed_trial"),
        })  # fmt: skip
    return rows


def write_trials_csv(rows: list[dict[str, Any]], path: Path) -> None:
    import csv
    import json

    from ..io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", "value", "epochs", "seconds", "worker", "retry_of", "params"])
        for r in rows:
            w.writerow([r["number"], r["state"], r["value"], r["epochs"], r["seconds"], r["worker"], r["retry_of"],
                        json.dumps(r["params"], sort_keys=True)])  # fmt: skip


def best_config(cfg, best_params: dict[str, Any]):
    """The run config that re-evaluates the best trial (``toprec run`` it; set command: submit to submit)."""
    from .. import models
    from .config import ModelConfig, OutputConfig

    m = cfg.model_list()[0]
    cls = models.get_class(m.name)
    params = cls(**{**m.params, **best_params}).params.model_dump(mode="json")
    return cfg.model_copy(
        update={"command": "evaluate", "tune": None, "model": ModelConfig(name=cls.name, params=params),
                "output": OutputConfig()},
    )  # fmt: skip


def tune(cfg, ds, worker: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Run (or join) the study of ``cfg`` on dataset ``ds``; returns a summary. Worker 0 spawns the others."""
    import optuna

    from .. import models, split
    from .session import current

    t = cfg.tune
    m = cfg.model_list()[0]
    cls = models.get_class(m.name)
    unknown = [k for k in t.fixed if k not in m.params]
    if unknown:
        raise ToprecError(f"tune.fixed: model '{cls.name}' has no parameter '{unknown[0]}'")
    # parameters outside the search space, and those set explicitly (--param), stay as given
    fixed = {k: v for k, v in m.params.items() if k not in cls.search_space or k in t.fixed}
    if not {k for k in cls.search_space if k not in fixed}:
        raise ToprecError(f"model '{cls.name}' declares no search space to tune")
    study_name = t.study or f"{cls.name}-{Path(cfg.data.path).name}"
    out_dir = Path(t.out) if t.out else tune_dir(study_name)  # never ./tune unless asked
    storage = t.storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    shared = t.storage is not None
    spawned = worker is not None
    worker = worker or 0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = open_storage(storage, t.heartbeat)
    existing = 0
    try:
        existing = len(optuna.load_study(study_name=study_name, storage=rdb).trials)
    except KeyError:
        pass
    n_startup = min(10, max(3, t.trials // 4))
    # one worker on its own study: reproducible; on a shared storage every process samples differently
    seed_index = default_worker_index(True) if shared else worker
    sampler = optuna.samplers.TPESampler(seed=worker_seed(cfg.split.seed, seed_index, existing),
                                         n_startup_trials=n_startup, constant_liar=True)  # fmt: skip
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=min(5, n_startup), n_warmup_steps=1)
        if t.pruning else optuna.pruners.NopPruner()
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.create_study(study_name=study_name, storage=rdb, direction="maximize",
                                        sampler=sampler, pruner=pruner, load_if_exists=True)  # fmt: skip
        except Exception:  # noqa: BLE001 - created by another worker at the same moment
            time.sleep(0.5)
            study = optuna.load_study(study_name=study_name, storage=rdb, sampler=sampler, pruner=pruner)
    if existing == 0:
        study.set_user_attr("model", cls.name)

    train, valid = split.competition(ds, last=cfg.split.last, random=cfg.split.random, seed=cfg.split.seed)
    if len(valid.users) == 0:
        raise ToprecError(f"{cfg.data.path}: no user has enough events for a validation holdout")
    tracker = current()
    tracker.set_tags({"toprec.study": study_name, "toprec.storage": safe_url(storage),
                      "toprec.worker": str(worker)})  # fmt: skip

    procs: list[subprocess.Popen] = []
    if t.workers > 1 and not spawned:
        from .config import TuneConfig

        wcfg = cfg.model_copy(update={"tune": TuneConfig(**{**t.model_dump(), "workers": 1, "storage": storage,
                                                            "study": study_name, "out": str(out_dir)})})  # fmt: skip
        cfg_path = out_dir / "worker.yaml"
        wcfg.save(cfg_path)
        procs = _spawn_workers(cfg_path, t.workers, quiet=True)

    objective = Objective(cls, fixed, train, valid, cfg.metrics.k, t.trials, t.pruning, tracker, study_name, worker)
    t0 = time.perf_counter()
    try:
        with progress.task(f"tune {cls.name} ({study_name}, worker {worker})", total=t.trials) as bar:
            run_worker(study, objective, t.trials, t.timeout, t.heartbeat, bar=bar)
    finally:
        for p in procs:
            try:
                p.wait(timeout=None if t.timeout is None else t.timeout + 120)
            except subprocess.TimeoutExpired:
                p.kill()
    seconds = time.perf_counter() - t0
    failed = [p.returncode for p in procs if p.returncode not in (0, None)]
    states = _states(study)
    rows = trials_table(study)
    summary: dict[str, Any] = {"study": study_name, "storage": safe_url(storage), "worker": worker, "states": states,
                               "seconds": seconds, "out": str(out_dir), "worker_failures": failed}  # fmt: skip
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    if not complete:
        summary["best"] = None
        return summary
    best = study.best_trial
    summary["best"] = {"number": best.number, "value": best.value, "params": dict(best.params)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_trials_csv(rows, out_dir / "trials.csv")
    bcfg = best_config(cfg, {**fixed, **best.params})
    best_path = out_dir / "best.yaml"
    from ..version import __version__
    from ..io import atomic_path

    text = (f"# toprec tune: best of {states['COMPLETE'] + states['PRUNED']} trials in study '{study_name}': "
            f"recall@{cfg.metrics.k} = {best.value:.6f} on the validation holdout (trial {best.number}).\n"
            "# `toprec run` this file to re-evaluate it; set command: submit and output.submission to submit.\n"
            + bcfg.model_copy(update={"toprec_version": __version__}).to_yaml())  # fmt: skip
    with atomic_path(best_path) as tmp:
        tmp.write_text(text)
    summary["best_config"] = str(best_path)
    summary["trials"] = rows
    tracker.log_metrics({f"best_recall@{cfg.metrics.k}": best.value, "trials_complete": states["COMPLETE"],
                         "trials_pruned": states["PRUNED"], "tune_s": seconds})  # fmt: skip
    tracker.log_params({f"best.{k}": v for k, v in best.params.items()})
    tracker.log_artifact(best_path)
    tracker.log_artifact(out_dir / "trials.csv")
    return summary
