"""A run as data: one pydantic ``RunConfig`` for every command, the single source of truth.

The command line builds a ``RunConfig`` from its options; ``toprec run
file.yaml`` loads one from a file; Python code builds one directly. All three
hand it to the same application function (:mod:`toprec.app`), so a run is
described once and never turned into strings and back. ``--save-config``
writes the config that was executed. Unknown keys and wrong types are
one-line errors naming the key path (``split.seed: ...``).

Paths in a config are taken as written, relative to the working directory
(as on the command line). Model parameters are validated against the model's
own ``Params`` when the config is built and stored in full (defaults
included), so a saved run does not change when a default does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ToprecError

COMMANDS = ("evaluate", "submit", "ensemble", "tune", "align", "report", "eda", "auto", "batch")
PROTOCOLS = ("competition", "leave_last", "random_k", "temporal", "strong")
#: ensemble fusion: "auto" searches every fusion method on fold A; "rerank" trains a LightGBM ranker there
FUSION_METHODS = ("auto", "rank", "rrf", "borda", "score", "product", "rerank")
SEARCHES = ("none", "weights", "subset", "both")
SCHEMES = ("users", "events", "nested")
#: method rerank: the booster (the first is the default)
RANKERS = ("lightgbm", "catboost")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _one_of(choices: tuple[str, ...], what: str) -> AfterValidator:
    """A string field that must be one of ``choices`` (case-insensitive), as a one-line error naming them."""

    def check(value: str) -> str:
        v = str(value).strip().lower()
        if v not in choices:
            raise ValueError(f"unknown {what} '{value}' (choose from {', '.join(choices)})")
        return v

    return AfterValidator(check)


def _named(what: str) -> AfterValidator:
    """A list of names (blank entries dropped) that must not be empty."""

    def check(names: list[str]) -> list[str]:
        names = [str(n).strip() for n in names if str(n).strip()]
        if not names:
            raise ValueError(f"{what}: no member named" if what == "--members" else f"{what}: no model named")
        return names

    return AfterValidator(check)


Protocol = Annotated[str, _one_of(PROTOCOLS, "protocol")]
Scheme = Annotated[str, _one_of(SCHEMES, "validation scheme")]


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
    protocol: Protocol = "competition"
    last: int = Field(1, ge=0)
    random: int = Field(9, ge=0)
    seed: int = 0
    cutoff: float = 0.9
    folds: int = Field(1, ge=1)


class ModelConfig(_Strict):
    """A model by name with its parameters, checked against the model's ``Params`` and stored in full."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _full_params(self) -> "ModelConfig":
        from .. import models
        from ..models.base import _format_validation

        try:
            cls = models.get_class(self.name)
            full = cls.Params(**self.params).model_dump(mode="json")
        except ToprecError as exc:
            raise ValueError(str(exc)) from None
        except ValidationError as exc:  # the model's own one-line message
            raise ValueError(_format_validation(cls.name, exc)) from None
        # assignment re-validates: bypass it (the values are the validated ones)
        object.__setattr__(self, "name", cls.name)
        object.__setattr__(self, "params", full)
        return self

    def build(self):
        """The model, unfitted (built once per run from the validated parameters)."""
        from .. import models

        return models.get_class(self.name)(**self.params)


class MetricsConfig(_Strict):
    k: int = Field(10, ge=1)


class OutputConfig(_Strict):
    submission: Optional[str] = None
    model_dir: Optional[str] = None
    json_path: Optional[str] = Field(None, alias="json")
    report_dir: Optional[str] = Field(None, description="folder for report/eda pages (HTML + JSON)")
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class EnsembleConfig(_Strict):
    members: Annotated[list[str], _named("--members")]
    method: Annotated[str, _one_of(FUSION_METHODS, "fusion method")] = "auto"
    search: Annotated[str, _one_of(SEARCHES, "search")] = "both"
    candidates: int = Field(100, ge=1)
    weights: Optional[list[float]] = None
    scheme: Scheme = "users"
    min_gain: float = Field(1e-4, ge=0)
    restarts: int = Field(0, ge=0)
    stratify: bool = True
    validate_folds: bool = Field(True, alias="validate")
    force: bool = False
    ranker: Annotated[str, _one_of(RANKERS, "ranker")] = Field(
        "lightgbm", description="method rerank: the booster (lightgbm | catboost)")
    clusters: Optional[str] = Field(
        None, description="method rerank: a factor model (ials, lmf:factors=32, ...) whose user clusters "
        "(K-means, k by silhouette) are re-ranker features")
    recency: bool = Field(
        False, description="method rerank: recency features (similarity to the user's latest items, the "
        "candidate's popularity around the user's last event, ...)")
    ranker_model: Optional[str] = Field(
        None, description="method rerank: a trained ranker's folder (a saved pipeline's rerank/, as `toprec auto` "
        "writes in OUT/model), used as it is: no fold-A training")
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> "EnsembleConfig":
        if self.method != "rerank" and (self.ranker != RANKERS[0] or self.clusters or self.recency
                                        or self.ranker_model):  # fmt: skip
            raise ValueError(f"--ranker, --clusters, --recency and ranker_model set up the re-ranker: they need "
                             f"--method rerank, not '{self.method}'")  # fmt: skip
        if self.weights is not None and len(self.weights) != len(self.members):
            raise ValueError(f"--weights: {len(self.weights)} weights for {len(self.members)} members")
        if not self.validate_folds:
            if self.method == "rerank" and not self.ranker_model:
                raise ValueError("--method rerank trains its ranker on fold A: it cannot run with --no-validate")
            if self.search != "none":
                raise ValueError("--no-validate skips the search: add --search none (and --weights)")
        return self


class AlignConfig(_Strict):
    models: Annotated[list[str], _named("--models")] = Field(
        description="model specs as for ensemble members: ease:l2=100, itemknn, ...")
    scheme: Scheme = "events"
    stratify: bool = True
    repeats: int = Field(1, ge=1)


class ReportConfig(_Strict):
    map_items: int = Field(1000, ge=0, description="most popular items on the embedding maps (0: no maps)")
    neighbours: int = Field(20, ge=1, description="eda: top-N co-occurrence neighbours (sequential signal)")
    sim_users: int = Field(8000, ge=10, description="eda: users sampled for the item co-occurrence")
    clusters: Optional[str] = Field(
        None, description="report: a factor model (ials, lmf, ...) whose user clusters (K-means, k by silhouette) "
        "get a t-SNE map and recall per cluster (off by default: it fits one more model)")


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


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "": 60.0}


def parse_budget(text: str | float) -> float:
    """``30m``, ``1h``, ``90s``, ``1.5h``; a bare number is minutes. Returns seconds (> 0)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text).lower())
    if not m:
        raise ToprecError(f"--budget '{text}': expected a duration such as 30m, 1h or 90s")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ToprecError(f"--budget '{text}': must be more than 0")
    return seconds


class AutoConfig(_Strict):
    budget: str = Field("30m", description="wall-clock budget: 30m, 1h, 90s (a bare number is minutes)")
    out: str = Field("auto", description="folder for the studies, lists, pipeline.yaml, report.html, auto.json")
    members: Optional[list[str]] = Field(None, description="only these candidate members (default: the planner's)")
    candidates: int = Field(100, ge=1, description="top-N candidates per member for the ensemble")
    device: Annotated[str, _one_of(("auto", "cpu", "cuda"), "device")] = "auto"

    @model_validator(mode="after")
    def _budget(self) -> "AutoConfig":
        try:
            parse_budget(self.budget)
        except ToprecError as exc:
            raise ValueError(str(exc)) from None
        return self


class BatchConfig(_Strict):
    """``toprec batch``: top-k lists for many users from a saved model folder, as Parquet."""

    model_dir: str = Field(description="folder written by toprec submit --save-model")
    output: str = Field(description="Parquet file to write (user, rank, item, score)")
    users: str = Field("all", description="'all' (the model's training users) or a file with a 'user' column")
    engine: Annotated[str, _one_of(("local", "ray"), "engine")] = "local"
    address: Optional[str] = Field(None, description="Ray cluster: auto, HOST:PORT or ray://...; none = a local one")
    block: int = Field(65_536, ge=1, description="users per Parquet row group (and most per scoring call)")
    workers: int = Field(0, ge=0, description="Ray scoring actors (0 = one per CPU of the cluster)")


class TrackingConfig(_Strict):
    enabled: bool = True
    uri: Optional[str] = None
    experiment: str = "toprec"


class RunConfig(_Strict):
    """One run: what to load, how to split, which model, what to write, where to log."""

    command: Literal["evaluate", "submit", "ensemble", "tune", "align", "report", "eda", "auto", "batch"] = "evaluate"
    data: Optional[DataConfig] = None  # every command but batch needs it
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: Optional[ModelConfig] = None
    models: Optional[list[ModelConfig]] = None
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    ensemble: Optional[EnsembleConfig] = None
    tune: Optional[TuneConfig] = None
    align: Optional[AlignConfig] = None
    report: Optional[ReportConfig] = None
    auto: Optional[AutoConfig] = None
    batch: Optional[BatchConfig] = None
    output: OutputConfig = Field(default_factory=OutputConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    toprec_version: Optional[str] = None

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        c = self.command
        if c != "batch" and self.data is None:
            raise ValueError(f"command '{c}' needs 'data'")
        if c == "batch" and self.batch is None:
            raise ValueError("command 'batch' needs a 'batch' section")
        if self.model is not None and self.models is not None:
            raise ValueError("give 'model' or 'models', not both")
        ms = self.model_list()
        if c in ("evaluate", "submit", "tune", "report") and not ms:
            raise ValueError(f"command '{c}' needs 'model'")
        if c in ("submit", "tune") and len(ms) != 1:
            raise ValueError(f"{c}: name exactly one model")
        if len({m.name for m in ms}) != len(ms):
            raise ValueError("a model is named twice")
        if c in ("submit", "ensemble", "auto") and not self.output.submission:
            raise ValueError(f"command '{c}' needs 'output.submission'")
        if c in ("report", "eda") and not self.output.report_dir:
            raise ValueError(f"command '{c}' needs 'output.report_dir'")
        for section in ("ensemble", "align"):
            if c == section and getattr(self, section) is None:
                raise ValueError(f"command '{c}' needs an '{section}' section")
        if c == "ensemble" and self.ensemble is not None and self.metrics.k > self.ensemble.candidates:
            raise ValueError(f"-k {self.metrics.k} is larger than --candidates {self.ensemble.candidates}")
        if c == "tune" and self.tune is None:
            self.tune = TuneConfig()
        if c in ("report", "eda") and self.report is None:
            self.report = ReportConfig()
        if c == "auto" and self.auto is None:
            self.auto = AutoConfig()
        if c == "auto" and self.auto is not None and self.metrics.k > self.auto.candidates:
            raise ValueError(f"-k {self.metrics.k} is larger than --candidates {self.auto.candidates}")
        return self

    @classmethod
    def make(cls, source: str = "", **sections: Any) -> "RunConfig":
        """Build and validate from sections (objects or dicts); errors are one-line ``ToprecError``\\ s."""
        raw = {k: (v.model_dump(by_alias=True) if isinstance(v, BaseModel) else v) for k, v in sections.items()}
        return validate(raw, source)

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
        for key in ("data", "model", "models", "ensemble", "tune", "align", "report", "auto", "batch"):
            if d.get(key) is None:
                d.pop(key, None)
        return yaml.safe_dump(d, sort_keys=False, default_flow_style=False)

    def save(self, path: str | os.PathLike) -> Path:
        from ..version import __version__
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
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:  # a model_validator message
        return f"{where}{msg}"
    if err["type"] == "value_error":  # our own message: it names the value already
        return f"{where}{loc}: {msg}"
    value = err.get("input")
    shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
    return f"{where}key '{loc}' = {shown}: {msg}"


def validate(raw: Any, source: str = "") -> RunConfig:
    """A :class:`RunConfig` from a dict, or a one-line :class:`ToprecError` naming the key path."""
    if not isinstance(raw, dict):
        raise ToprecError(f"{source}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ToprecError(_format_error(source, exc)) from None


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


def model_configs(spec: str, pairs: list[str] | None, device: str | None = None) -> list[ModelConfig]:
    """The models of ``--model a,b --param a.key=value [--device D]``: full, validated parameters.

    With one model a parameter is ``key=value``; with several ``model.key=value``.
    ``device`` goes to every model that has a ``device`` parameter not set explicitly.
    """
    from .. import models

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ToprecError("--model: no model named")
    classes = [models.get_class(n) for n in names]
    if len({c.name for c in classes}) != len(classes):
        raise ToprecError(f"--model: a model is named twice in '{spec}'")
    per: dict[str, list[str]] = {c.name: [] for c in classes}
    for pair in pairs or []:
        key = pair.split("=", 1)[0]
        if "." in key:
            prefix, rest = pair.split(".", 1)
            if prefix not in per:
                raise ToprecError(f"--param '{pair}': model '{prefix}' is not among --model {spec}")
            per[prefix].append(rest)
        elif len(classes) == 1:
            per[classes[0].name].append(pair)
        else:
            raise ToprecError(f"--param '{pair}': with several models write model.key=value")
    if device is not None:
        if device not in ("auto", "cpu", "cuda"):
            raise ToprecError(f"--device '{device}': choose auto, cpu or cuda")
        takers = [c for c in classes if "device" in c.Params.model_fields]
        if not takers:
            raise ToprecError(f"--device: none of {spec} runs on a GPU")
        for c in takers:
            if not any(p.split("=", 1)[0].strip() == "device" for p in per[c.name]):
                per[c.name].append(f"device={device}")
    out = []
    for c in classes:
        try:
            out.append(ModelConfig(name=c.name, params=models.parse_params(c.name, per[c.name])))
        except ValidationError as exc:
            raise ToprecError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return out


def param_keys(pairs: list[str] | None) -> list[str]:
    """The parameter names given as ``key=value`` / ``model.key=value`` (tune holds them fixed)."""
    return [p.split("=", 1)[0].strip().replace("-", "_").split(".")[-1] for p in pairs or [] if "=" in p]
