"""A run as a file: one pydantic ``RunConfig`` for ``evaluate``, ``submit``, ``ensemble`` and ``tune``.

Every command-line option of those commands maps to one field here and back
(:func:`from_cli` / :func:`to_cli`), so ``--save-config run.yaml`` writes a file
that ``toprec run run.yaml`` turns into exactly the same call. Unknown keys and
wrong types are one-line errors naming the key path (``split.seed: ...``).

Paths in a config are taken as written, relative to the working directory
(as on the command line). Model parameters are saved in full (defaults
included), so a saved run does not change when a default does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ToprecError

COMMANDS = ("evaluate", "submit", "ensemble", "tune")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    path: str = Field(description="dataset folder (or file for format: table)")
    format: str = "auto"
    user_col: Optional[str] = None
    item_col: Optional[str] = None
    time_col: Optional[str] = None
    rating_col: Optional[str] = None
    min_rating: Optional[float] = None
    cache: bool = True


class SplitConfig(_Strict):
    protocol: str = "competition"
    last: int = Field(1, ge=0)
    random: int = Field(9, ge=0)
    seed: int = 0
    cutoff: float = 0.9
    folds: int = Field(1, ge=1)


class ModelConfig(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class MetricsConfig(_Strict):
    k: int = Field(10, ge=1)


class OutputConfig(_Strict):
    submission: Optional[str] = None
    model_dir: Optional[str] = None
    json_path: Optional[str] = Field(None, alias="json")
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class EnsembleConfig(_Strict):
    members: list[str]
    method: str = "auto"
    search: str = "both"
    candidates: int = Field(100, ge=1)
    weights: Optional[list[float]] = None
    scheme: str = "users"
    min_gain: float = Field(1e-4, ge=0)
    restarts: int = Field(0, ge=0)
    stratify: bool = True
    validate_folds: bool = Field(True, alias="validate")
    force: bool = False
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class TuneConfig(_Strict):
    trials: int = Field(20, ge=1)
    timeout: Optional[float] = Field(None, gt=0)
    storage: Optional[str] = None
    study: Optional[str] = None
    workers: int = Field(1, ge=1)
    pruning: bool = True
    out: Optional[str] = None
    heartbeat: int = Field(10, ge=1, description="seconds between a running trial's heartbeats (stale after 3)")
    fixed: list[str] = Field(default_factory=list, description="searchable parameters held at the given value")


class TrackingConfig(_Strict):
    enabled: bool = True
    uri: Optional[str] = None
    experiment: str = "toprec"


class RunConfig(_Strict):
    """One run: what to load, how to split, which model, what to write, where to log."""

    command: Literal["evaluate", "submit", "ensemble", "tune"] = "evaluate"
    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: Optional[ModelConfig] = None
    models: Optional[list[ModelConfig]] = None
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    ensemble: Optional[EnsembleConfig] = None
    tune: Optional[TuneConfig] = None
    output: OutputConfig = Field(default_factory=OutputConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    toprec_version: Optional[str] = None

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        c = self.command
        if self.model is not None and self.models is not None:
            raise ValueError("give 'model' or 'models', not both")
        if c in ("evaluate", "submit", "tune") and not self.model_list():
            raise ValueError(f"command '{c}' needs 'model'")
        if c in ("submit", "tune") and len(self.model_list()) != 1:
            raise ValueError(f"command '{c}' takes exactly one model")
        if c in ("submit", "ensemble") and not self.output.submission:
            raise ValueError(f"command '{c}' needs 'output.submission'")
        if c == "ensemble" and self.ensemble is None:
            raise ValueError("command 'ensemble' needs an 'ensemble' section")
        if c == "tune" and self.tune is None:
            self.tune = TuneConfig()
        return self

    def model_list(self) -> list[ModelConfig]:
        if self.models is not None:
            return list(self.models)
        return [self.model] if self.model is not None else []

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)

    def to_yaml(self) -> str:
        import yaml

        d = self.to_dict()
        # leave out the sections the command does not use (keeps files short and readable)
        for key in ("model", "models", "ensemble", "tune"):
            if d.get(key) is None:
                d.pop(key, None)
        return yaml.safe_dump(d, sort_keys=False, default_flow_style=False)

    def save(self, path: str | os.PathLike) -> Path:
        from .. import __version__
        from ..io import atomic_path

        cfg = self.model_copy(update={"toprec_version": __version__})
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(cfg.to_yaml())
        return path


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    where = f"{source}: " if source else ""
    if err["type"] == "extra_forbidden":
        return f"{where}unknown key '{loc}'"
    if err["type"] == "missing":
        return f"{where}missing key '{loc}'"
    if not loc:  # a model_validator message
        return f"{where}{err['msg'].removeprefix('Value error, ')}"
    value = err.get("input")
    shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
    return f"{where}key '{loc}' = {shown}: {err['msg']}"


def validate(raw: Any, source: str = "") -> RunConfig:
    """A :class:`RunConfig` from a dict, or a one-line :class:`ToprecError` naming the key path."""
    if not isinstance(raw, dict):
        raise ToprecError(f"{source}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ToprecError(_format_error(source, exc)) from None
    check_models(cfg, source)
    return cfg


def check_models(cfg: RunConfig, source: str = "") -> None:
    """Model names and parameters are checked against the model's ``Params`` (one-line errors)."""
    from .. import models

    where = f"{source}: " if source else ""
    for i, m in enumerate(cfg.model_list()):
        key = "model" if cfg.models is None else f"models.{i}"
        try:
            models.get_class(m.name)(**m.params)
        except ToprecError as exc:
            raise ToprecError(f"{where}{key}: {exc}") from None


def _set_path(raw: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = raw
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ToprecError(f"{source}: --set {dotted}: '{p}' is not a section")
        node = nxt
    node[parts[-1]] = value


def load(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Read and validate a YAML run file; ``overrides`` are ``key.path=value`` (value parsed as YAML)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ToprecError(f"{path}: no such config file")
    if path.is_dir():
        raise ToprecError(f"{path}: is a folder, expected a YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ToprecError(f"{path}: {line}invalid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ToprecError(f"{path}: not a text file") from None
    if raw is None:
        raise ToprecError(f"{path}: empty config")
    for item in overrides or []:
        if "=" not in item:
            raise ToprecError(f"--set '{item}': expected key.path=value")
        key, value = item.split("=", 1)
        if not isinstance(raw, dict):
            break
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        _set_path(raw, key.strip(), parsed, str(path))
    return validate(raw, str(path))


# ------------------------------------------------------------------ CLI <-> config
def _param_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _models_from_cli(spec: str, param: list[str] | None, device: str | None) -> list[ModelConfig]:
    """The models of ``--model a,b --param a.key=value`` with full parameters (same rules as the CLI)."""
    from ..cli import _models

    return [ModelConfig(name=m.name, params=m.params.model_dump(mode="json")) for m in _models(spec, param, device)]


def _data_from_cli(a: dict[str, Any]) -> DataConfig:
    return DataConfig(
        path=str(a["data"]),
        format=a.get("fmt", "auto"),
        user_col=a.get("user_col"),
        item_col=a.get("item_col"),
        time_col=a.get("time_col"),
        rating_col=a.get("rating_col"),
        min_rating=a.get("min_rating"),
        cache=not a.get("no_cache", False),
    )


def _param_keys(pairs: list[str] | None) -> list[str]:
    return [p.split("=", 1)[0].strip().replace("-", "_").split(".")[-1] for p in pairs or [] if "=" in p]


def _opt_str(p: Any) -> str | None:
    return None if p is None else str(p)


def from_cli(command: str, args: dict[str, Any]) -> RunConfig:
    """The config of one command-line call (``args`` = the command function's keyword arguments)."""
    a = dict(args)
    tracking = TrackingConfig(enabled=not a.get("no_track", False), uri=a.get("tracking_uri"))
    data = _data_from_cli(a)
    if command == "evaluate":
        ms = _models_from_cli(a["model"], a.get("param"), a.get("device"))
        return RunConfig(
            command="evaluate",
            data=data,
            split=SplitConfig(protocol=a["protocol"], last=a["last"], random=a["random"], seed=a["seed"],
                              cutoff=a["cutoff"], folds=a.get("folds", 1)),  # fmt: skip
            model=ms[0] if len(ms) == 1 else None,
            models=ms if len(ms) > 1 else None,
            metrics=MetricsConfig(k=a["k"]),
            output=OutputConfig(json_path=_opt_str(a.get("json_out"))),
            tracking=tracking,
        )
    if command == "submit":
        ms = _models_from_cli(a["model"], a.get("param"), a.get("device"))
        if len(ms) != 1:
            raise ToprecError("submit: name exactly one --model")
        return RunConfig(
            command="submit",
            data=data,
            model=ms[0],
            metrics=MetricsConfig(k=a["k"]),
            output=OutputConfig(submission=str(a["output"]), model_dir=_opt_str(a.get("save_model"))),
            tracking=tracking,
        )
    if command == "ensemble":
        weights = a.get("weights")
        if weights is not None:
            from ..cli_ensemble import _parse_weights

            members = [t.strip() for t in str(a["members"]).split(",") if t.strip()]
            weights = _parse_weights(weights, len(members))
        return RunConfig(
            command="ensemble",
            data=data,
            split=SplitConfig(last=a["last"], random=a["random"], seed=a["seed"]),
            metrics=MetricsConfig(k=a["k"]),
            ensemble=EnsembleConfig(
                members=[t.strip() for t in str(a["members"]).split(",") if t.strip()],
                method=a["method"], search=a["search"], candidates=a["candidates"], weights=weights,
                scheme=a["scheme"], min_gain=a["min_gain"], restarts=a["restarts"],
                stratify=not a.get("no_stratify", False), validate_folds=not a.get("no_validate", False),
                force=a.get("force", False),
            ),  # fmt: skip
            output=OutputConfig(submission=str(a["output"]), json_path=_opt_str(a.get("json_out"))),
            tracking=tracking,
        )
    if command == "tune":
        ms = _models_from_cli(a["model"], a.get("param"), a.get("device"))
        if len(ms) != 1:
            raise ToprecError("tune: name exactly one --model")
        return RunConfig(
            command="tune",
            data=data,
            split=SplitConfig(last=a["last"], random=a["random"], seed=a["seed"]),
            model=ms[0],
            metrics=MetricsConfig(k=a["k"]),
            tune=TuneConfig(trials=a["trials"], timeout=a.get("timeout"), storage=a.get("storage"),
                            study=a.get("study"), workers=a.get("workers", 1), pruning=not a.get("no_prune", False),
                            out=_opt_str(a.get("out")), heartbeat=a.get("heartbeat", 10),
                            fixed=_param_keys(a.get("param"))),  # fmt: skip
            tracking=tracking,
        )
    raise ToprecError(f"unknown command '{command}' (choose from {', '.join(COMMANDS)})")


def _cli_params(cfg: RunConfig) -> tuple[str, list[str]]:
    """``--model`` and ``--param`` values for the config's models: parameters that differ from the defaults."""
    from .. import models

    ms = cfg.model_list()
    several = len(ms) > 1
    pairs: list[str] = []
    for m in ms:
        cls = models.get_class(m.name)
        defaults = cls().params.model_dump(mode="json")
        fixed = set(cfg.tune.fixed) if cfg.command == "tune" and cfg.tune is not None else set()
        for key, value in m.params.items():
            if cfg.command == "tune" and key in cls.search_space and key not in fixed:
                continue  # searched: its value here does not matter
            if key not in fixed and key in defaults and defaults[key] == value:
                continue
            pairs.append(f"{m.name}.{key}={_param_string(value)}" if several else f"{key}={_param_string(value)}")
    return ",".join(m.name for m in ms), pairs


def to_cli(cfg: RunConfig) -> dict[str, Any]:
    """Keyword arguments for the command function that runs ``cfg`` (the inverse of :func:`from_cli`)."""
    d = cfg.data
    common: dict[str, Any] = {
        "data": Path(d.path), "fmt": d.format, "user_col": d.user_col, "item_col": d.item_col,
        "time_col": d.time_col, "rating_col": d.rating_col, "min_rating": d.min_rating, "no_cache": not d.cache,
        "tracking_uri": cfg.tracking.uri, "no_track": not cfg.tracking.enabled,
    }  # fmt: skip
    s, o = cfg.split, cfg.output
    path = (lambda p: None if p is None else Path(p))  # noqa: E731
    if cfg.command in ("evaluate", "submit", "tune"):
        model, param = _cli_params(cfg)
        common.update(model=model, param=param or None, device=None)
    if cfg.command == "evaluate":
        return {**common, "protocol": s.protocol, "last": s.last, "random": s.random, "seed": s.seed,
                "cutoff": s.cutoff, "k": cfg.metrics.k, "json_out": path(o.json_path), "folds": s.folds}  # fmt: skip
    if cfg.command == "submit":
        return {**common, "output": Path(o.submission), "k": cfg.metrics.k, "save_model": path(o.model_dir)}
    if cfg.command == "ensemble":
        e = cfg.ensemble
        assert e is not None
        return {**common, "members": ",".join(e.members), "output": Path(o.submission), "method": e.method,
                "search": e.search, "k": cfg.metrics.k, "candidates": e.candidates,
                "weights": None if e.weights is None else ",".join(repr(float(w)) for w in e.weights),
                "scheme": e.scheme, "seed": s.seed, "last": s.last, "random": s.random, "min_gain": e.min_gain,
                "restarts": e.restarts, "no_stratify": not e.stratify, "no_validate": not e.validate_folds,
                "force": e.force, "json_out": path(o.json_path)}  # fmt: skip
    t = cfg.tune
    assert t is not None
    return {**common, "trials": t.trials, "timeout": t.timeout, "storage": t.storage, "study": t.study,
            "workers": t.workers, "no_prune": not t.pruning, "out": path(t.out), "seed": s.seed, "last": s.last,
            "random": s.random, "k": cfg.metrics.k, "heartbeat": t.heartbeat}  # fmt: skip
