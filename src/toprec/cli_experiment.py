"""``toprec run``, ``toprec tune`` and ``toprec runs``: runs as files, Optuna tuning, the tracking store.

Registered on the main app by ``cli_experiment.register(app)`` (called from
``toprec.cli``). The config format is :mod:`toprec.experiment.config`;
tracking :mod:`toprec.experiment.tracking`; tuning :mod:`toprec.experiment.tune`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import progress
from .errors import ToprecError
from .cli_options import Quiet, DataDir, Format, UserCol, ItemCol, TimeCol, RatingCol, MinRating, NoCache, Device
from .experiment.session import tracked

Param = Annotated[
    Optional[list[str]], typer.Option("--param", "-p", help="Model parameter key=value, held fixed (repeatable).")
]
SaveConfig = Annotated[
    Optional[Path], typer.Option("--save-config", help="Write this run as a YAML config (`toprec run` repeats it).")
]
TrackingUri = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else ./mlruns SQLite)."),
]
NoTrack = Annotated[bool, typer.Option("--no-track", help="Do not log this run to MLflow.")]


def run(
    config: Annotated[Path, typer.Argument(help="Run file (YAML): see configs/ for examples.")],
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a key: --set split.seed=1 (repeatable).")
    ] = None,
    tracking_uri: TrackingUri = None,
    no_track: NoTrack = False,
    worker: Annotated[Optional[int], typer.Option("--worker", hidden=True, help="Tuning worker index.")] = None,
    quiet: Quiet = False,
) -> None:
    """Run a YAML config: evaluate, submit, ensemble or tune, exactly as the command line would."""
    from . import cli, cli_ensemble
    from .experiment import config as config_mod
    from .experiment import session

    progress.set_quiet(quiet)
    cfg = config_mod.load(config, set_)
    if tracking_uri is not None:
        cfg.tracking.uri = tracking_uri
    if no_track:
        cfg.tracking.enabled = False
    kwargs = config_mod.to_cli(cfg)
    kwargs.update(quiet=quiet, save_config=None)
    functions = {"evaluate": cli.evaluate, "submit": cli.submit, "ensemble": cli_ensemble.ensemble, "tune": tune}
    if cfg.command == "tune":
        kwargs["worker"] = worker
    elif worker is not None:
        raise ToprecError("--worker is for tune configs")
    with session.run_config(cfg):
        functions[cfg.command](**kwargs)


@tracked("tune")
def tune(
    data: DataDir,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `toprec models`).")] = "ease",
    param: Param = None,
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Trials in the study, all workers together.")] = 20,
    timeout: Annotated[
        Optional[float], typer.Option(min=1, help="Stop starting trials after this many seconds (per worker).")
    ] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(help="Optuna RDB URL shared by workers: sqlite:///study.db, postgresql://user:pw@host/db. "
                     "Default: OUT/study.db."),
    ] = None,  # fmt: skip
    study: Annotated[Optional[str], typer.Option(help="Study name (default MODEL-DATAFOLDER); same name = resume.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes on this machine sharing the study.")] = 1,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Do not prune epoch-trained models' trials.")] = False,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Folder for best.yaml and trials.csv (default tune/STUDY).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Validation split seed (and sampler seed).")] = 0,
    last: Annotated[int, typer.Option(min=0, help="Latest events per user in the validation holdout.")] = 1,
    random: Annotated[int, typer.Option(min=0, help="Random earlier events per user in the validation holdout.")] = 9,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="recall@k is the objective.")] = 10,
    heartbeat: Annotated[
        int, typer.Option(min=1, help="Seconds between heartbeats; a trial silent for 3 is retried elsewhere.")
    ] = 10,
    fmt: Format = "auto",
    user_col: UserCol = None,
    item_col: ItemCol = None,
    time_col: TimeCol = None,
    rating_col: RatingCol = None,
    min_rating: MinRating = None,
    no_cache: NoCache = False,
    device: Device = None,
    worker: Annotated[Optional[int], typer.Option("--worker", hidden=True, help="Worker index (spawned).")] = None,
    save_config: SaveConfig = None,
    tracking_uri: TrackingUri = None,
    no_track: NoTrack = False,
    quiet: Quiet = False,
) -> None:
    """Optuna TPE over the model's search space; validation recall@k on a holdout cut from --data.

    Several processes (here with --workers, or on other machines) given the
    same --storage and --study share one study of --trials trials in total.
    Writes OUT/best.yaml (ready for `toprec run`) and OUT/trials.csv.
    """
    args = dict(locals())
    from rich.table import Table

    from .cli import _load, out as console
    from .experiment import session
    from .experiment import tune as tune_mod

    progress.set_quiet(quiet)
    cfg = session.config_for("tune", args)
    d = cfg.data
    ds = _load(Path(d.path), d.format, d.user_col, d.item_col, d.time_col, d.rating_col, d.min_rating, d.cache)
    summary = tune_mod.tune(cfg, ds, worker=worker, quiet=quiet)
    s = summary["states"]
    if summary["best"] is None:
        raise ToprecError(f"study '{summary['study']}': no trial completed ({s})")
    if worker is not None:  # a spawned worker: the parent reports
        return
    key = f"recall@{cfg.metrics.k}"
    table = Table(title=f"study {summary['study']}: {s['COMPLETE']} complete, {s['PRUNED']} pruned, "
                        f"{s['FAIL']} failed, {s['RUNNING']} running ({summary['seconds']:.1f}s)")  # fmt: skip
    for col in ("trial", "state", key, "epochs", "seconds", "params"):
        table.add_column(col, justify="left" if col in ("state", "params") else "right")
    rows = sorted((r for r in summary["trials"] if r["value"] is not None and r["state"] in ("COMPLETE", "PRUNED")),
                  key=lambda r: -r["value"])[:10]  # fmt: skip
    for r in rows:
        table.add_row(str(r["number"]), r["state"], f"{r['value']:.4f}", str(r["epochs"]),
                      "" if r["seconds"] is None else f"{r['seconds']:.1f}", _short_params(r["params"]))  # fmt: skip
    console.print(table)
    b = summary["best"]
    console.print(f"best: trial {b['number']}, {key} = {b['value']:.4f}, {_short_params(b['params'])}; "
                  f"wrote {summary['best_config']}")  # fmt: skip
    if summary["worker_failures"]:
        progress.console.print(f"toprec: warning: worker exit codes {summary['worker_failures']}", markup=False)


def _short_params(params: dict[str, Any]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def runs(
    tracking_uri: TrackingUri = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "toprec",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most recent runs to show.")] = 20,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Only runs of this model.")] = None,
    command: Annotated[Optional[str], typer.Option(help="Only runs of this command (evaluate, submit, tune...).")] = None,
    trials: Annotated[bool, typer.Option("--trials", help="Include tuning trials and per-model child runs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent runs in the tracking store: model, parameters, recall@10, time."""
    from rich.console import Console
    from rich.table import Table

    from .cli import out as console
    from .experiment.tracking import _connect, _quiet_loggers, resolve_uri

    uri = resolve_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise ToprecError(f"no tracking store at {uri[len('sqlite:///'):]} (run a command first, or --tracking-uri)")
    _quiet_loggers()
    client, exp_id = _connect(uri, experiment)
    filters = []
    if model:
        filters.append(f"tags.`toprec.model` = '{model.strip().lower()}'")
    if command:
        filters.append(f"tags.`toprec.command` = '{command.strip().lower()}'")
    try:
        found = client.search_runs([exp_id], filter_string=" and ".join(filters), max_results=limit if trials else
                                   max(limit * 5, 100), order_by=["attributes.start_time DESC"])  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        raise ToprecError(f"tracking store {uri}: {' '.join(str(exc).split())[:200]}") from None
    rows = []
    for r in found:
        tags = r.data.tags
        if not trials and "mlflow.parentRunId" in tags:
            continue
        m = r.data.metrics
        recall = m.get("recall_at_10", m.get("best_recall_at_10"))
        params = {k[len("model.params.") :]: v for k, v in r.data.params.items() if k.startswith("model.params.")}
        best = {k[len("best.") :]: v for k, v in r.data.params.items() if k.startswith("best.")}
        end = r.info.end_time or int(time.time() * 1000)
        rows.append({
            "run_id": r.info.run_id, "start": r.info.start_time, "name": tags.get("mlflow.runName", ""),
            "command": tags.get("toprec.command", ""), "model": tags.get("toprec.model", ""),
            "params": best or params, "recall@10": recall, "seconds": (end - r.info.start_time) / 1000.0,
            "status": r.info.status,
        })  # fmt: skip
        if len(rows) >= limit:
            break
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title=f"runs in {uri} (experiment {experiment})")
    for col in ("started UTC", "run", "command", "model", "params (non-default)", "recall@10", "time", "status"):
        table.add_column(col, justify="right" if col in ("recall@10", "time") else "left", overflow="fold")
    for row in rows:
        started = time.strftime("%m-%d %H:%M:%S", time.gmtime(row["start"] / 1000))
        table.add_row(started, row["run_id"][:8], row["command"], row["model"],
                      _display_params(row["model"], row["params"]),
                      "" if row["recall@10"] is None else f"{row['recall@10']:.4f}", f"{row['seconds']:.1f}s",
                      row["status"].lower())  # fmt: skip
    wide = Console(width=max(console.width, 140), highlight=False)
    wide.print(table)


def _display_params(model: str, params: dict[str, str]) -> str:
    """Parameters that differ from the model's defaults, numbers to 4 significant digits."""
    from . import models

    defaults: dict[str, Any] = {}
    try:
        defaults = models.get_class(model).Params().model_dump(mode="json") if "," not in model and model else {}
    except Exception:  # noqa: BLE001 - a model not installed here: show everything
        pass
    shown = []
    for k, v in params.items():
        if k in defaults and str(defaults[k]) == v:
            continue
        try:
            num = float(v)
            v = f"{num:.4g}" if v not in ("True", "False") else v
        except ValueError:
            pass
        shown.append(f"{k}={v}")
    return ", ".join(shown)[:100]


def register(app: typer.Typer) -> None:
    """Add ``run``, ``tune`` and ``runs`` to the main app (idempotent)."""
    have = {c.name or getattr(c.callback, "__name__", None) for c in app.registered_commands}
    for name, fn in (("run", run), ("tune", tune), ("runs", runs)):
        if name not in have:
            app.command(name)(fn)
