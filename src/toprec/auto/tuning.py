"""One resumable Optuna study per member: fit on the search training data, score fold A, keep the best lists.

Every trial fits the member on ``folds.search_train`` (no holdout event of
anyone), ranks the top-``n`` candidates for fold A's and fold B's users and
is scored by recall@k on fold A only. The best trial's lists are written to
``OUT/lists/MEMBER.npz`` so that the ensemble search reuses them (no second
fit) and a resumed run does not refit it. Trials are asked one at a time
with a TPE sampler seeded by the number of finished trials, so a run killed
and resumed asks the same parameters as one that was not. The study lives in
``OUT/studies.db`` (SQLite): a trial that was running when the process died
is marked failed and its parameters are asked again.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from ..io import atomic_path
from ..recommend import Recommendations


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_studies(path: Path):
    """The SQLite study store of one auto run (one process owns it: no heartbeats)."""
    optuna = _optuna()
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}", engine_kwargs={"connect_args": {"timeout": 60}})


def starts(c) -> list[dict[str, Any]]:
    """The candidate's starting points, every searched parameter given (the model's default where unsaid)."""
    from .. import models

    fields = models.get_class(c.name).Params.model_fields
    defaults = {k: fields[k].default for k in c.space}
    return [{**defaults, **s} for s in c.starts]


class MemberStudy:
    """The study of one candidate member on the folds."""

    def __init__(self, candidate, folds, storage, out: Path, k: int, n: int, seed: int):
        optuna = _optuna()
        self.c, self.folds, self.out, self.k, self.n, self.seed = candidate, folds, out, k, n, seed
        self.study = optuna.create_study(study_name=candidate.name, storage=storage, direction="maximize",
                                         load_if_exists=True)  # fmt: skip
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        if not trials:
            for start in starts(candidate):
                self.study.enqueue_trial(start, skip_if_exists=True)
        for t in trials:  # a trial running when the process was killed: failed, asked again
            if t.state == TrialState.RUNNING:
                self.study.tell(t.number, state=TrialState.FAIL)
                self.study.enqueue_trial(dict(t.params), skip_if_exists=False)
        self.users_ab = np.concatenate([folds.fold_a.users, folds.fold_b.users]).astype(np.int64)

    # ------------------------------------------------------------------ state
    def complete(self) -> list:
        from optuna.trial import TrialState

        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    @property
    def n_complete(self) -> int:
        return len(self.complete())

    @property
    def best(self) -> dict[str, Any] | None:
        done = self.complete()
        if not done:
            return None
        t = max(done, key=lambda t: (t.value, -t.number))
        return {"trial": t.number, "value": float(t.value), "params": self.params_of(t.params),
                "fit_s": float(t.user_attrs.get("fit_s", math.nan))}

    def fit_seconds(self) -> float:
        """Median measured seconds of one trial (nan before the first)."""
        done = [t.user_attrs.get("seconds") for t in self.complete() if t.user_attrs.get("seconds") is not None]
        return float(np.median(done)) if done else math.nan

    def params_of(self, searched: dict[str, Any]) -> dict[str, Any]:
        return {**self.c.fixed, **searched}

    def curve(self) -> list[dict[str, Any]]:
        return [{"trial": t.number, "value": float(t.value), "params": dict(t.params),
                 "seconds": t.user_attrs.get("seconds")} for t in self.complete()]  # fmt: skip

    # ------------------------------------------------------------------ one trial
    def trial(self) -> dict[str, Any]:
        """Ask, fit, score on fold A, tell; keep the lists when it is the best so far."""
        optuna = _optuna()
        from ..experiment.tune import suggest

        self.study.sampler = optuna.samplers.TPESampler(seed=self.seed * 1009 + self.n_complete,
                                                        n_startup_trials=max(3, len(self.c.starts)))  # fmt: skip
        t = self.study.ask()
        params = self.params_of(suggest(t, self.c.space))
        t0 = time.perf_counter()
        try:
            from .. import models

            model = models.get(self.c.name, **params)
            model.fit(self.folds.search_train)
            fit_s = time.perf_counter() - t0
            recs = model.recommend(self.users_ab, k=self.n)
        except Exception as exc:  # noqa: BLE001 - one failed trial does not stop the run
            self.study.tell(t, state=optuna.trial.TrialState.FAIL)
            return {"trial": t.number, "error": " ".join(str(exc).split())[:300], "params": params}
        na = len(self.folds.fold_a.users)
        rec_a = Recommendations(recs.users[:na], recs.items[:na, : self.k], recs.scores[:na, : self.k])
        value = float(metrics.evaluate(rec_a, self.folds.fold_a.holdout, [f"recall@{self.k}"])[f"recall@{self.k}"])
        seconds = time.perf_counter() - t0
        t.set_user_attr("fit_s", round(fit_s, 3))
        t.set_user_attr("seconds", round(seconds, 3))
        before = self.best
        if before is None or value > before["value"]:
            self.save_lists(recs, t.number)
        self.study.tell(t, value)
        return {"trial": t.number, "value": value, "params": params, "seconds": seconds}

    # ------------------------------------------------------------------ lists
    def lists_path(self) -> Path:
        return self.out / "lists" / f"{self.c.name}.npz"

    def save_lists(self, recs: Recommendations, trial: int) -> None:
        path = self.lists_path()
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, users=recs.users, items=recs.items, scores=recs.scores, trial=np.int64(trial))

    def best_lists(self) -> Recommendations | None:
        """The best trial's lists (fold A and B users), if they are on disk and belong to the best trial."""
        b, path = self.best, self.lists_path()
        if b is None or not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            if int(z["trial"]) != b["trial"]:
                return None
            return Recommendations(z["users"], z["items"], z["scores"])
