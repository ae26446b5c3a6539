"""Option bundles, declared once: each is a group of command-line options that becomes one config section.

A command lists the bundles it takes (``@with_options(DATA, SPLIT, TRACKING,
QUIET)``); their options are added to its signature, and the command body
receives the built sections instead (``data: DataConfig``, ``split:
SplitConfig``, ``tracking: Tracking``). The single-use options of a command
stay in its own signature.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from .. import progress
from ..experiment.config import DataConfig, TrackingConfig

_KW = inspect.Parameter.KEYWORD_ONLY
_NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class Bundle:
    """Options (name -> (annotation, default)) and how they become the value the command receives as ``key``."""

    key: Optional[str]
    options: dict[str, tuple[Any, Any]]
    build: Callable[[dict[str, Any]], Any]

    def parameters(self) -> list[inspect.Parameter]:
        return [inspect.Parameter(n, _KW, default=d, annotation=a) for n, (a, d) in self.options.items()]


def with_options(*bundles: Bundle):
    """Add the bundles' options to a typer command; the command gets each bundle's built value by its key."""

    def deco(fn):
        hints = typing.get_type_hints(fn, include_extras=True)
        keys = {b.key for b in bundles}
        own = [p.replace(kind=_KW, annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(fn).parameters.values() if p.name not in keys]  # fmt: skip
        params = own + [p for b in bundles for p in b.parameters()]

        def command(**kwargs):
            for b in bundles:
                value = b.build({name: kwargs.pop(name) for name in b.options})
                if b.key is not None:
                    kwargs[b.key] = value
            return fn(**kwargs)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        command.__module__ = fn.__module__
        return command

    return deco


# ------------------------------------------------------------------ single options shared by several commands
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")]
Device = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda, for models that can use a GPU.")]
Model = Annotated[str, typer.Option("--model", "-m", help="Model name (see `toprec models`); evaluate takes a,b,c.")]
Param = Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Model parameter key=value (repeatable).")]
K = Annotated[int, typer.Option("-k", "--k", min=1, help="List length (recall@k is the metric and the objective).")]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Submission = Annotated[Path, typer.Option("--output", "-o", help="Submission CSV to write (user,item).")]
PageFolder = Annotated[Path, typer.Option("--output", "-o", help="Folder to write the HTML page and its JSON into.")]
Scheme = Annotated[
    str,
    typer.Option(
        help="users: search on half the users' holdout, confirm on the other half (like public/private); "
        "events: validation cut from the training data vs the hidden-test holdout of the same users, one fit; "
        "nested: like events, but the leaderboard side is refitted with the validation events (local vs leaderboard)."
    ),
]
NoStratify = Annotated[
    bool, typer.Option("--no-stratify", help="users scheme: plain random halves, not activity-balanced.")
]
TrackingUri = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else SQLite in "
                 "$TOPREC_HOME/mlruns, ~/.local/share/toprec/mlruns, or ./mlruns when a store is already there)."),
]
NoTrack = Annotated[bool, typer.Option("--no-track", help="Do not log this run to MLflow.")]


def opt_str(p: Any) -> Optional[str]:
    return None if p is None else str(p)


# ------------------------------------------------------------------ bundles
_DATA_OPTIONS: dict[str, tuple[Any, Any]] = {
    "fmt": (Annotated[str, typer.Option("--format", help="auto|competition|ml-100k|ml-1m|ml-csv|hetrec-lastfm|recbole|table")],
            "auto"),
    "user_col": (Annotated[Optional[str], typer.Option("--user-col", help="User column (table format).")], None),
    "item_col": (Annotated[Optional[str], typer.Option("--item-col", help="Item column (table format).")], None),
    "time_col": (Annotated[Optional[str], typer.Option("--time-col", help="Time column (table format); default: row "
                                                                         "order.")], None),
    "rating_col": (Annotated[Optional[str], typer.Option("--rating-col", help="Rating column for --min-rating.")],
                   None),
    "min_rating": (Annotated[Optional[float], typer.Option("--min-rating", help="Keep events with rating >= this.")],
                   None),
    "no_cache": (Annotated[bool, typer.Option("--no-cache", help="Parse the source files even if a cached copy "
                                                               "exists.")], False),
}  # fmt: skip


def _data(v: dict[str, Any]) -> DataConfig:
    return DataConfig(path=str(v["data"]), format=v["fmt"], user_col=v["user_col"], item_col=v["item_col"],
                      time_col=v["time_col"], rating_col=v["rating_col"], min_rating=v["min_rating"],
                      cache=not v["no_cache"])  # fmt: skip


#: --data DIR and the table-format options -> DataConfig
DATA = Bundle("data", {"data": (Annotated[Path, typer.Option("--data", "-d", help="Dataset folder (or file for "
                                                                                 "--format table).")], _NO_DEFAULT),
                       **_DATA_OPTIONS}, _data)  # fmt: skip
#: the same with the dataset as a positional argument (``toprec data stats DIR``)
DATA_ARGUMENT = Bundle("data", {"data": (Annotated[Path, typer.Argument(help="Dataset folder or file.")], _NO_DEFAULT),
                                **_DATA_OPTIONS}, _data)  # fmt: skip


def split_bundle(protocol: bool = True, folds: bool = False, seed_help: str = "Split seed.") -> Bundle:
    """--last/--random/--seed (+ --protocol/--cutoff, + --folds) -> SplitConfig."""
    options: dict[str, tuple[Any, Any]] = {}
    if protocol:
        options["protocol"] = (Annotated[str, typer.Option(help="competition | leave_last | random_k | temporal | "
                                                               "strong")], "competition")  # fmt: skip
    options["last"] = (Annotated[int, typer.Option(min=0, help="Latest events per user held out.")], 1)
    options["random"] = (Annotated[int, typer.Option(min=0, help="Random earlier events per user held out.")], 9)
    options["seed"] = (Annotated[int, typer.Option(help=seed_help)], 0)
    if protocol:
        options["cutoff"] = (Annotated[float, typer.Option(help="temporal: time quantile in (0,1) or unix time.")],
                             0.9)  # fmt: skip
    if folds:
        options["folds"] = (Annotated[int, typer.Option("--folds", min=1, help="K holdouts with seeds "
                                                        "seed..seed+K-1: mean and std.")], 1)  # fmt: skip
    return Bundle("split", options, dict)  # validated with the rest of the RunConfig (one-line errors)


@dataclass(frozen=True)
class Tracking:
    """The tracking section and where to write the executed config (``--save-config``)."""

    config: TrackingConfig
    save_config: Optional[Path]


SAVE_CONFIG = "--save-config"
#: --save-config, --tracking-uri, --no-track -> Tracking
TRACKING = Bundle(
    "tracking",
    {
        "save_config": (Annotated[Optional[Path], typer.Option(SAVE_CONFIG, help="Write this run as a YAML "
                                                               "config (`toprec run` repeats it).")], None),
        "tracking_uri": (TrackingUri, None),
        "no_track": (NoTrack, False),
    },
    lambda v: Tracking(TrackingConfig(enabled=not v["no_track"], uri=v["tracking_uri"]), v["save_config"]),
)  # fmt: skip


def _quiet(v: dict[str, Any]) -> None:
    progress.set_quiet(v["quiet"])


#: --quiet: progress bars off (applied before the command body runs)
QUIET = Bundle(None, {"quiet": (Quiet, False)}, _quiet)


def model_section(spec: str, pairs: Optional[list[str]], device: Optional[str] = None) -> dict[str, Any]:
    """``--model a[,b] --param ...`` as the config's ``model`` (one) or ``models`` (several) section."""
    from ..experiment.config import model_configs

    ms = model_configs(spec, pairs, device)
    return {"model": ms[0]} if len(ms) == 1 else {"models": ms}
