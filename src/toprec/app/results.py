"""What each application call returns: plain, typed records a CLI prints and Python code reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class EvaluateResult:
    """Metrics per model (recall@k, ndcg@k..., recall per holdout part, fit/recommend seconds)."""

    data: str
    protocol: str
    #: {model: {metric: value}}; with folds > 1 the fold means and ``*_std``
    metrics: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]
    folds: int = 1
    users_evaluated: int = 0
    test_events: int = 0
    dataset: dict[str, int] = field(default_factory=dict)
    #: folds > 1: {model: evaluate_folds(...) output, every fold's numbers}
    per_fold: Optional[dict[str, Any]] = None
    files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from ..version import __version__

        if self.folds > 1:
            return {"data": self.data, "protocol": self.protocol, "folds": self.folds,
                    "results": [{"model": m, "params": self.params[m], "folds": self.per_fold[m]}
                                for m in self.metrics],
                    "toprec_version": __version__}  # fmt: skip
        return {"data": self.data, "protocol": self.protocol, "dataset": self.dataset,
                "users_evaluated": self.users_evaluated, "test_events": self.test_events,
                "results": [{"model": m, "params": self.params[m], "metrics": self.metrics[m]} for m in self.metrics],
                "toprec_version": __version__}  # fmt: skip


@dataclass
class SubmitResult:
    output: Path
    users: int
    k: int
    fit_s: float
    recommend_s: float
    write_s: float
    model_dir: Optional[Path] = None

    @property
    def rows(self) -> int:
        return self.users * self.k


@dataclass
class BatchResult:
    """``batch``: the Parquet file written, how many users and rows, how long, on which engine."""

    output: Path
    users: int
    rows: int
    k: int
    engine: str
    unknown_users: int
    seconds: float
    model: str

    @property
    def users_per_s(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class FusedResult:
    """A submission written from fused member lists: what was chosen (``ensemble`` or ``member:LABEL``) and why."""

    output: Path
    users: int
    k: int
    chosen: str
    method: str
    #: every member's final weight (zero for members left out)
    weights: dict[str, float]
    #: the ``Ensemble.validate`` report (fold A/B recall per member and of the ensemble, gains, z), or None
    validation: Optional[dict[str, Any]]

    @property
    def used(self) -> dict[str, float]:
        return {lab: round(float(w), 4) for lab, w in self.weights.items() if w > 0}

    @property
    def rows(self) -> int:
        return self.users * self.k


@dataclass
class EnsembleResult(FusedResult):
    """``ensemble``: the fold A/B validation and the written submission."""

    final_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    data: str = ""
    dataset: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        from ..version import __version__

        return {"data": self.data, "dataset": self.dataset, "output": str(self.output), "chosen": self.chosen,
                "final_weights": {lab: float(w) for lab, w in self.weights.items()},
                "validation": self.validation or None, "final_s": round(self.final_s, 3),
                "toprec_version": __version__}  # fmt: skip


@dataclass
class AlignResult:
    """One split's alignment report (``report``), or several seeds' (``seeds``: runs + mean)."""

    data: str
    report: Optional[dict[str, Any]] = None
    seeds: Optional[dict[str, Any]] = None

    def to_json(self) -> dict[str, Any]:
        from ..version import __version__

        return {"data": self.data, **(self.seeds if self.seeds is not None else self.report),
                "toprec_version": __version__}


@dataclass
class TuneResult:
    """The study's summary: states, best trial and its config file, every trial."""

    summary: dict[str, Any]
    worker: Optional[int] = None

    @property
    def best(self) -> Optional[dict[str, Any]]:
        return self.summary.get("best")


@dataclass
class PageResult:
    """``report`` / ``eda``: the HTML page, its JSON and (report) the numbers."""

    html: Path
    json: Path
    figures: int
    sections: int = 0
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class AutoResult(FusedResult):
    """``auto``: the submission, what was tried and chosen, and the files written in ``out``."""

    #: per member: trials, best fold-A recall and parameters, the tuning curve, seconds per trial
    members: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    budget_s: float = 0.0
    out: Path = Path("auto")
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
