"""One resumable Optuna study per member: fit on the search training data, score fold A, keep the best lists.

Every trial fits the member on ``folds.search_train`` (no holdout event of
anyone), ranks the top-``n`` candidates for fold A's and fold B's users and
is scored by recall@k on fold A only. The lists of the member's first
and top trials are kept in ``OUT/lists/MEMBER.N.npz`` and every trial's
per-user fold-A recall in ``OUT/per_user/MEMBER.npz``: the chosen trial (the
top one when it beats the first, the data-adaptive start, by more than one
paired standard error; else the first) serves the ensemble search from its
lists (no second fit), and a resumed run does not refit it. Trials are asked
one at a time. A TPE trial's parameters are a pure function of the finished
trials in plan order and their count: a TPE sampler seeded by that count is
asked on an in-memory copy of them (numbered by their place in the plan, not
by their number in the store), and the store's trial takes those parameters.
So a run killed and resumed asks the same parameters in the same places as one
that was not, although the trial killed mid-fit is stored again under a later
number. The study lives in ``OUT/studies.db`` (SQLite): a trial that was
running when the process died is marked failed and its parameters are asked
again.
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


#: how a tuned epoch-trained member is fitted again (on the extra validation cuts and in the final refit): for
#: its trial's best validated epoch count, on all of its data, with no validation holdout cut from it (the trial
#: stopped early on such a holdout; the refit has no use for one). On a validation cut, against the trial's
#: settings fitted again (``benchmarks/bench_refit_epochs.py``, seed 0): ML-100K Multi-VAE, RecVAE and SASRec
#: +0.0037 each in 40-70% of the time; ML-latest-small Multi-VAE +0.0031, RecVAE +0.0005, SASRec -0.0058 (it
#: had stopped at epoch 4 of 7); ML-1M SASRec (16 epochs, auto's CPU box) -0.0005 in 80% of the time
NO_HOLDOUT = {"valid_last": 0, "valid_random": 0}


def epoch_trained(cls) -> bool:
    """Trained in epochs with early stopping on a validation holdout (the torch models)."""
    return "patience" in cls.Params.model_fields and "epochs" in cls.Params.model_fields


def _order(t) -> tuple[int, int]:
    """A trial's place in the plan: starting points by their index, then TPE trials by number (a starting
    point asked again after a kill keeps its place)."""
    if "start" in t.user_attrs:
        return (0, t.user_attrs["start"])
    return (1, t.user_attrs.get("plan", t.number))


def _first(done: list):
    """The member's first starting point (the data-adaptive default)."""
    return min(done, key=_order)


def _top(done: list):
    """The highest fold-A recall; ties go to the earlier trial in the plan."""
    return min(done, key=lambda t: (-t.value, _order(t)))


class MemberStudy:
    """The study of one candidate member on the folds."""

    def __init__(self, candidate, folds, storage, out: Path, k: int, n: int, seed: int):
        optuna = _optuna()
        self.c, self.folds, self.out, self.k, self.n, self.seed = candidate, folds, out, k, n, seed
        # epoch-trained members report fold-A recall every epoch; a trial below the median of the finished
        # ones at the same epoch (after 2 epochs) stops there
        pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=2)
        self.study = optuna.create_study(study_name=candidate.name, storage=storage, direction="maximize",
                                         pruner=pruner, load_if_exists=True)  # fmt: skip
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # running when the process was killed: failed, and asked again. A TPE trial needs nothing for that:
            # the sampler, seeded by the number of finished trials, asks the same parameters again
            self.study.tell(t.number, state=TrialState.FAIL)
        # every starting point finished or queued (again, after a kill; also one killed before it was queued)
        have = {t.user_attrs.get("start") for t in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING))}  # fmt: skip
        for i, start in enumerate(starts(candidate)):
            if i not in have:
                self.study.enqueue_trial(start, user_attrs={"start": i})
        self._per_user: dict[int, np.ndarray] | None = None
        self.users_ab = np.concatenate([folds.fold_a.users, folds.fold_b.users]).astype(np.int64)

    # ------------------------------------------------------------------ state
    def complete(self) -> list:
        from optuna.trial import TrialState

        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    @property
    def n_complete(self) -> int:
        return len(self.complete())

    def finished(self) -> list:
        """Completed and pruned trials: the places of the plan already taken."""
        from optuna.trial import TrialState

        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))

    @property
    def n_finished(self) -> int:
        return len(self.finished())

    @property
    def best(self) -> dict[str, Any] | None:
        """The chosen trial: the top one on fold A if it beats the member's first trial (its data-adaptive
        start) by more than one paired standard error over fold A's users, else that first trial.

        Validation curves are flat near the optimum (EASE's l2 on ML-100K: fold-A recall within 0.001 from
        l2 300 to 1500 while the test falls 5%), so the top trial of a flat region is chosen by noise; the
        gate keeps the prior unless the data clearly say otherwise.
        """
        done = self.complete()
        if not done:
            return None
        first = _first(done)
        top = _top(done)
        chosen, z = top, math.inf
        if top.number != first.number:
            users = self.per_user()
            a, b = users.get(top.number), users.get(first.number)
            if a is not None and b is not None and len(a) > 1:
                d = a - b
                se = float(d.std(ddof=1) / np.sqrt(len(d)))
                z = float(d.mean() / se) if se > 0 else (math.inf if d.mean() > 0 else 0.0)
                chosen = top if z > 1.0 else first
        params = self.params_of(chosen.params)
        share = 1.0
        if "best_epoch" in chosen.user_attrs:  # epoch-trained: fitted again for its best epoch count, no holdout
            params.update(epochs=max(1, int(chosen.user_attrs["best_epoch"])), **NO_HOLDOUT)
            again = chosen.user_attrs.get("fit_again_s")
            seconds = chosen.user_attrs.get("seconds")
            share = min(1.0, float(again) / float(seconds)) if again is not None and seconds else 1.0
        elif "epochs_run" in chosen.user_attrs:  # time-boxed: the final refit runs no more epochs than it did
            params["epochs"] = int(chosen.user_attrs["epochs_run"])
        return {"trial": chosen.number, "value": float(chosen.value), "params": params,
                "fit_s": float(chosen.user_attrs.get("fit_s", math.nan)), "refit_share": share, "top_trial": top.number,
                "top_value": float(top.value), "z_over_first": None if math.isinf(z) else round(z, 2)}

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
    def trial(self, seconds: float | None = None) -> dict[str, Any]:
        """Ask, fit, score on fold A, tell; keep the lists when it is the best so far.

        ``seconds``: an epoch-trained member stops after the first epoch that ends past it, keeping its best
        validated epoch (a time box: its cost is estimated from the data's shape, and a loaded machine can
        make it several times that). Its best validated epoch is kept (``best_epoch``): the member is fitted
        again (validation cuts, final refit) for that many epochs with no holdout (:data:`NO_HOLDOUT`).
        """
        optuna = _optuna()
        from ..experiment.tune import suggest

        from optuna.trial import TrialState

        if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            t = self.study.ask()  # a starting point (queued)
        else:
            plan = self.n_finished
            fixed = self._tpe_params()
            self.study.sampler = optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler(seed=0))
            t = self.study.ask()
            t.set_user_attr("plan", plan)
        params = self.params_of(suggest(t, self.c.space))
        from .. import models

        cls = models.get_class(self.c.name)
        key = f"recall@{self.k}"

        boxed = []

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            value = logs.get(key, logs.get("recall@10"))
            if value is not None and math.isfinite(float(value)):
                t.report(float(value), epoch)
                if t.should_prune():
                    raise optuna.TrialPruned(f"epoch {epoch}: validation {key} {float(value):.4f}")
            if seconds is not None and time.perf_counter() - t0 > seconds:
                from ..train import StopTraining

                boxed.append(epoch)
                raise StopTraining(f"time box {seconds:.0f}s")

        t0 = time.perf_counter()
        try:
            model = cls(**params)
            if epoch_trained(cls):
                # early stopping on the model's own validation cut of the search data, reported every epoch so a
                # weak trial can be pruned. Not on fold A: the best of ~50 noisy epochs on fold A is biased
                # upwards (ML-100K: Multi-VAE led fold A at 0.2004 and was the weakest member on the test)
                model.fit(self.folds.search_train, callback=on_epoch)
            else:
                model.fit(self.folds.search_train)
            fit_s = time.perf_counter() - t0
            recs = model.recommend(self.users_ab, k=self.n)
        except optuna.TrialPruned as exc:
            self.study.tell(t, state=optuna.trial.TrialState.PRUNED)
            return {"trial": t.number, "pruned": str(exc), "params": params}
        except Exception as exc:  # noqa: BLE001 - one failed trial does not stop the run
            self.study.tell(t, state=optuna.trial.TrialState.FAIL)
            return {"trial": t.number, "error": " ".join(str(exc).split())[:300], "params": params}
        na = len(self.folds.fold_a.users)
        per_user = metrics.per_user(f"recall@{self.k}", recs.items[:na, : self.k],
                                    self.folds.fold_a.holdout.matrix[self.folds.fold_a.users])  # fmt: skip
        value = float(per_user.mean())
        elapsed = time.perf_counter() - t0
        t.set_user_attr("fit_s", round(fit_s, 3))
        t.set_user_attr("seconds", round(elapsed, 3))
        if boxed:
            t.set_user_attr("epochs_run", int(boxed[0]))
        if epoch_trained(cls) and getattr(model, "history", None):
            best_epoch = max(1, int(model.best_epoch))
            t.set_user_attr("best_epoch", best_epoch)
            t.set_user_attr("epochs_trained", len(model.history))
            # fitted again for best_epoch epochs with no holdout to validate on: those epochs' training time
            # and the scoring (a trial also cut its holdout, validated every epoch and ran its patience out)
            train_s = sum(float(h.get("train_s", h.get("seconds", 0.0))) for h in model.history[:best_epoch])
            t.set_user_attr("fit_again_s", round(train_s + (elapsed - fit_s), 3))
        done = self.complete()
        first = t.user_attrs.get("start") == 0 or not done
        if first or value > max(d.value for d in done):  # the first start, or a new top: keep its lists
            self.save_lists(recs, t.number)
        self.save_per_user(t.number, per_user)
        self.study.tell(t, value)
        self.prune_lists()
        out = {"trial": t.number, "value": value, "params": params, "seconds": elapsed}
        if boxed:
            out["time_boxed"] = boxed[0]
        return out

    def _tpe_params(self) -> dict[str, Any]:
        """The next TPE suggestion from the finished trials in plan order (the same after a kill and resume)."""
        optuna = _optuna()
        from ..experiment.tune import suggest

        from optuna.trial import TrialState

        done = sorted(self.finished(), key=_order)
        sampler = optuna.samplers.TPESampler(seed=self.seed * 1009 + len(done),
                                             n_startup_trials=max(3, len(self.c.starts)))  # fmt: skip
        mem = optuna.create_study(direction="maximize", sampler=sampler)
        mem.add_trials([optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, state=t.state,
            value=t.value if t.state == TrialState.COMPLETE else None,
            intermediate_values=dict(t.intermediate_values)) for t in done])  # fmt: skip
        return suggest(mem.ask(), self.c.space)

    # ------------------------------------------------------------------ lists and per-user recall
    def lists_path(self, trial: int) -> Path:
        return self.out / "lists" / f"{self.c.name}.{trial}.npz"

    def save_lists(self, recs: Recommendations, trial: int) -> None:
        with atomic_path(self.lists_path(trial), suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, users=recs.users, items=recs.items, scores=recs.scores)

    def prune_lists(self) -> None:
        """Keep the lists of the first and the top trial only (the two the choice can fall on)."""
        done = self.complete()
        if not done:
            return
        keep = {_first(done).number, _top(done).number}
        for path in self.lists_path(0).parent.glob(f"{self.c.name}.*.npz"):
            number = path.name[len(self.c.name) + 1 : -len(".npz")]
            if number.isdigit() and int(number) not in keep:
                path.unlink(missing_ok=True)

    def best_lists(self) -> Recommendations | None:
        """The chosen trial's lists (fold A and B users), if they are on disk."""
        b = self.best
        if b is None or not self.lists_path(b["trial"]).exists():
            return None
        with np.load(self.lists_path(b["trial"]), allow_pickle=False) as z:
            return Recommendations(z["users"], z["items"], z["scores"])

    def per_user_path(self) -> Path:
        return self.out / "per_user" / f"{self.c.name}.npz"

    def per_user(self) -> dict[int, np.ndarray]:
        """Fold-A recall of every user, per finished trial (read from disk once, then kept)."""
        if self._per_user is None:
            path = self.per_user_path()
            self._per_user = {}
            if path.exists():
                with np.load(path, allow_pickle=False) as z:
                    self._per_user = {int(key[1:]): z[key] for key in z.files}
        return self._per_user

    def save_per_user(self, trial: int, values: np.ndarray) -> None:
        self.per_user()[trial] = np.asarray(values, dtype=np.float32)
        with atomic_path(self.per_user_path(), suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f"t{n}": v for n, v in self._per_user.items()})
