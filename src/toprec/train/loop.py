"""The trainer's epoch loop: phases (search, refit), epochs, validation, early stopping, divergence.

``fit(model, X, train)`` runs the search phase on the training part of the
validation cut (or on everything without validation), then, with
``refit=True`` and a holdout cut from ``train``, a refit phase on all of
``train`` for the best epoch count. A phase resumes from a checkpoint of the
same run (:mod:`.checkpoints`) and ends with the best validated epoch's
weights (the last epoch's without validation).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import scipy.sparse as sp

from .. import progress
from ..device import require_torch
from ..errors import ToprecError
from . import checkpoints, validation


#: monotonic time after which every epoch-trained fit ends (see :func:`deadline`); None: no deadline
_DEADLINE: float | None = None


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Every epoch-trained fit inside the block stops after the epoch that ends past ``seconds`` from now,
    keeping its best validated epoch (without validation: that epoch), with a warning. ``toprec auto`` wraps
    its final refit in it: a machine that slows down after the trials were timed cannot push it past the budget.
    """
    global _DEADLINE
    before = _DEADLINE
    _DEADLINE = None if seconds is None else time.monotonic() + max(0.0, float(seconds))
    try:
        yield
    finally:
        _DEADLINE = before


def past_deadline() -> bool:
    """Whether a :func:`deadline` is set and has passed (the re-ranker's boosting stops on it too)."""
    return _DEADLINE is not None and time.monotonic() > _DEADLINE


class StopTraining(Exception):
    """Raised by a search-phase ``callback`` to end the phase after this epoch, keeping the best validated
    epoch as early stopping would (e.g. a tuning trial out of time)."""


@dataclass
class Loop:
    """Where a phase stands: the last finished epoch, the best validated one and its weights."""

    epoch: int = 0
    best_epoch: int = 0
    best_metric: float = -math.inf
    best_state: dict | None = None
    done: bool = False

    def improve(self, metric: float, module) -> None:
        """Keep ``module``'s weights when ``metric`` beats the best so far."""
        if metric > self.best_metric:
            self.best_metric, self.best_epoch = metric, self.epoch
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit(model, X: sp.csr_matrix, train) -> None:
    """Every phase of ``model.fit``: search (on the validation cut's training part), then refit if asked."""
    p = model.params
    Xfit, fit_data, holdout, cut = validation.holdout(X, train, model.valid, p)
    ckpt = None
    if p.resume:
        if not p.checkpoint_dir:
            raise ToprecError(f"model '{model.name}': resume=True needs checkpoint_dir")
        ckpt = checkpoints.load(p.checkpoint_dir)
    if ckpt is not None and ckpt[1].get("phase") == "refit":
        model.history = list(ckpt[1]["history"])
        model.best_epoch, model.best_metric = int(ckpt[1]["best_epoch"]), float(ckpt[1]["best_metric"])
    else:
        run_phase(model, "search", Xfit, fit_data, holdout, p.epochs, ckpt)
        ckpt = None
    if p.refit and cut and model.best_epoch > 0:
        run_phase(model, "refit", X, train, None, model.best_epoch, ckpt)


def _resume(model, ckpt, fingerprint: dict, module, optimizers: dict, generator) -> Loop:
    tensors, meta = ckpt
    if meta.get("fingerprint") != fingerprint:
        raise ToprecError(
            f"{Path(model.params.checkpoint_dir) / 'last'}: checkpoint is of a different run "
            f"(model, parameters or data differ); remove it or set resume=False"
        )
    model.history = list(meta["history"])
    best_state = checkpoints.restore(model, module, optimizers, generator, tensors, meta)
    return Loop(int(meta["epoch"]), int(meta["best_epoch"]), float(meta["best_metric"]), best_state,
                bool(meta.get("done")))  # fmt: skip


def _diverged(model, phase: str, epoch: int, loss: float, validate: bool) -> ToprecError:
    """The error for a loss that is not finite before any epoch could be kept."""
    p = model.params
    if phase == "refit":
        why = (f"the refit on all the data diverged at epoch {epoch} (loss {loss}; the search phase's best epoch "
               f"was {model.best_epoch}): use refit=false or a lower lr (now {p.lr:g})")
    elif validate:
        why = f"training diverged at epoch {epoch} (loss {loss}) before any validated epoch; lower lr (now {p.lr:g})"
    else:
        why = (f"training diverged at epoch {epoch} (loss {loss}; no validation holdout, so no earlier epoch was "
               f"kept); lower lr (now {p.lr:g})")
    return ToprecError(f"model '{model.name}': {why}")  # fmt: skip


def run_phase(model, phase: str, X: sp.csr_matrix, train, holdout, max_epochs: int, ckpt) -> None:
    """Train a fresh module on ``X`` for up to ``max_epochs`` epochs (``holdout``: validate and stop early)."""
    torch = require_torch()
    p = model.params
    torch.manual_seed(p.seed)
    generator = torch.Generator().manual_seed(p.seed)
    module, optimizers = model._start_phase(X, train)
    fingerprint = checkpoints.fingerprint(model, phase, X)
    loop = Loop()
    if phase == "refit":  # carries the search phase's best epoch and metric (saved in its checkpoints)
        loop.best_epoch, loop.best_metric = model.best_epoch, model.best_metric
    if phase == "search":
        model.history = []
    if ckpt is not None:
        loop = _resume(model, ckpt, fingerprint, module, optimizers, generator)
    validate = holdout is not None
    with progress.task(f"{model.name}: {phase}", total=max_epochs) as bar:
        bar.update(completed=loop.epoch)
        while not loop.done and loop.epoch < max_epochs:
            loop.epoch += 1
            epoch = loop.epoch
            t0 = time.perf_counter()
            module.train()
            loss = model._train_epoch(module, optimizers, epoch, generator)
            trained_s = time.perf_counter() - t0
            rec = float("nan")
            diverged = not math.isfinite(float(loss))
            if diverged and loop.best_state is None:
                raise _diverged(model, phase, epoch, float(loss), validate)
            if diverged:  # keep the best validated epoch, as early stopping would
                warnings.warn(
                    f"model '{model.name}': training diverged at epoch {epoch} (loss {float(loss)}); stopped, "
                    f"keeping epoch {loop.best_epoch} (validation recall@10 {loop.best_metric:.4f})",
                    RuntimeWarning,
                    stacklevel=2,
                )
            elif validate and (epoch % p.valid_every == 0 or epoch == max_epochs):
                rec = model._validate(module, holdout, X)
                loop.improve(rec, module)
            logs = {"loss": float(loss), "recall@10": rec, "seconds": time.perf_counter() - t0, "train_s": trained_s}
            if phase == "refit":
                logs["refit"] = 1.0
            model.history.append(logs)
            stalled = validate and p.patience > 0 and epoch - loop.best_epoch >= p.patience
            loop.done = diverged or stalled or epoch >= max_epochs
            if p.checkpoint_dir and (epoch % p.checkpoint_every == 0 or loop.done):
                checkpoints.write(model, phase, fingerprint, module, optimizers, generator, loop.epoch, loop.best_epoch,
                                  loop.best_metric, loop.best_state, loop.done)  # fmt: skip
            best = f" (best {loop.best_metric:.4f} @ {loop.best_epoch})"
            bar.update(
                completed=epoch,
                description=f"{model.name}: {phase} epoch {epoch} loss {loss:.4g}"
                + ("" if math.isnan(rec) else f" recall@10 {rec:.4f}{best}"),
            )
            if phase == "search" and model.callback is not None:
                try:
                    model.callback(epoch, logs)
                except StopTraining:
                    loop.done = True
                    model.history[-1]["stopped"] = 1.0  # the callback ended the phase here
            if _DEADLINE is not None and not loop.done and time.monotonic() > _DEADLINE:
                loop.done = True
                model.history[-1]["stopped"] = 1.0
                kept = f"epoch {loop.best_epoch}, the best validated" if validate and loop.best_state else "this epoch"
                warnings.warn(f"model '{model.name}': out of time after epoch {epoch} of {max_epochs} (the run's "
                              f"deadline); keeping {kept}", RuntimeWarning, stacklevel=2)  # fmt: skip
    if validate and loop.best_state is not None:
        module.load_state_dict(loop.best_state)
        model.best_epoch, model.best_metric = loop.best_epoch, loop.best_metric
    elif phase == "search":  # no validation: the last epoch's weights
        model.best_epoch, model.best_metric = loop.epoch, float("nan")
    model.module = module.eval()
    model._score_module = None
