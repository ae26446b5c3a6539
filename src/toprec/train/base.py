"""``TorchRecommender``: the shared epoch loop every torch model subclasses.

See the package docstring (``toprec/train/__init__.py``) for the hooks a
subclass implements. What the loop does, in order, for ``fit(train)``:

1. Validation: the ``valid`` holdout given to ``fit`` (the model then trains
   on ``train`` as given), or else a holdout cut from ``train`` with the
   competition protocol (each user's last ``valid_last`` + ``valid_random``
   random earlier events, seeded) and training on the rest. ``valid_last =
   valid_random = 0`` turns validation off (``epochs`` epochs, last weights).
2. Epochs: ``_train_epoch`` (shuffling and sampling from a seeded
   ``torch.Generator``), then every ``valid_every`` epochs full-ranking
   recall@10 over the validation users with their training items masked,
   through the shared ``toprec.recommend.topk`` (ties to the lower item, same
   numbers for any batch size). logs = {"loss", "recall@10", "seconds"} go to
   ``self.history`` and ``self.callback(epoch, logs)`` (its exceptions
   propagate), a checkpoint is written, the progress bar shows loss and recall.
3. Early stopping after ``patience`` epochs without a better recall; the best
   epoch's weights are restored.
4. ``refit=True`` (only when the validation holdout was cut from ``train``):
   a fresh module trained on all of ``train`` for the best epoch count
   (those epochs are appended to ``history`` with ``"refit": 1.0`` and a NaN
   recall; the callback is not called for them).

Scores are computed in ``score_dtype``: ``auto`` = float64 on the CPU and on
data-centre GPUs with fast float64 (P100, V100, A100, H100/H200, B200; the
H100 runs it at about its float32 rate), float32 on other GPUs. float32 BLAS
kernels, cuBLAS's too, round differently for different batch shapes, so in
float32 a user's scores (and rarely a near-tie's order) can depend on how
many users share the batch; in float64 such differences vanish when the
scores are rounded to float32 for ranking (verified on the H100 by the
contract's batch-size test).

Resume: with ``checkpoint_dir`` set, every epoch writes module, optimizer and
RNG states (safetensors) and the loop state (JSON); ``resume=True`` continues
from there and ends with exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import math
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .. import metrics, parallel, progress
from ..errors import ToprecError
from ..models.base import Params, Recommender
from ..device import cpu_threads, dense_rows, fast_fp64, require_torch, resolve_device  # noqa: F401 (re-exported)
from ..recommend import topk

# parameters that do not change what a run computes (a checkpoint stays valid across them)
_RUN_ONLY = {"epochs", "resume", "checkpoint_dir", "checkpoint_every", "device", "threads", "patience", "refit"}


_single_process = parallel.single_process  # forking after torch has started its threads (or CUDA) is unsafe


#: a dense copy of the training matrix is kept on a CUDA device when it takes at most this many bytes
DENSE_ROWS_MAX_BYTES = 4 << 30


class RowMatrix:
    """A users x items CSR matrix kept on the device; row batches densify there, vectorised.

    On CUDA, when the dense matrix fits (``DENSE_ROWS_MAX_BYTES`` and a quarter
    of the free memory), a dense copy is kept too: a batch is then one row
    gather with no host synchronisation (the CSR gather must read the batch's
    nonzero count back to the host), and :meth:`bag` returns the dense rows,
    which every consumer (``prepare``, ``SparseIn``) accepts.
    """

    def __init__(self, X: sp.csr_matrix, device, dense: bool | None = None):
        torch = require_torch()
        X = sp.csr_matrix(X)
        self.shape = X.shape
        self.device = device
        self.indptr = torch.from_numpy(np.array(X.indptr, dtype=np.int64)).to(device)
        self.indices = torch.from_numpy(np.array(X.indices, dtype=np.int32)).to(device).long()
        self.values = torch.from_numpy(np.array(X.data, dtype=np.float32)).to(device)
        self.counts = self.indptr[1:] - self.indptr[:-1]
        nbytes = 4 * X.shape[0] * X.shape[1]
        if dense is None:
            dense = str(device).startswith("cuda") and nbytes <= DENSE_ROWS_MAX_BYTES
            if dense:
                free, _ = torch.cuda.mem_get_info(torch.device(device))
                dense = nbytes <= free // 4
        self.full = None
        if dense:
            self.full = torch.zeros(X.shape, dtype=torch.float32, device=device)
            rows = torch.repeat_interleave(torch.arange(X.shape[0], device=device), self.counts)
            self.full[rows, self.indices] = self.values

    def _gather(self, rows):
        """(row of each entry, position of each entry in the CSR arrays, counts) for ``rows``."""
        torch = require_torch()
        counts = self.counts[rows]
        starts = self.indptr[rows]
        total = int(counts.sum())
        r = torch.repeat_interleave(torch.arange(rows.shape[0], device=self.device), counts, output_size=total)
        first = torch.cumsum(counts, 0) - counts  # offset of each row's first entry in the gather
        pos = torch.arange(total, device=self.device) - first[r] + starts[r]
        return r, pos, counts, first

    def dense(self, rows, out=None):
        """Dense float32 (len(rows), n_items) of the given rows (``out`` is reused when given)."""
        torch = require_torch()
        b = rows.shape[0]
        if self.full is not None:
            if out is None:
                return self.full.index_select(0, rows)
            return torch.index_select(self.full, 0, rows, out=out[:b])
        if out is None:
            out = torch.zeros((b, self.shape[1]), dtype=torch.float32, device=self.device)
        else:
            out = out[:b]
            out.zero_()
        r, pos, _, _ = self._gather(rows)
        if len(pos):
            out[r, self.indices[pos]] = self.values[pos]
        return out

    def bag(self, rows):
        """The given rows as ``(indices, offsets, values, row_of_entry)`` (``torch.nn.functional.embedding_bag`` input).

        With a dense copy on the device: the dense rows instead (see the class docstring).
        """
        if self.full is not None:
            return self.full.index_select(0, rows)
        r, pos, _, first = self._gather(rows)
        return self.indices[pos], first, self.values[pos], r


class TorchParams(Params):
    """Parameters every torch model shares."""

    epochs: int = Field(100, ge=1, description="maximum training epochs")
    batch_size: int = Field(500, ge=1, description="training batch size")
    lr: float = Field(1e-3, gt=0, description="learning rate (Adam)")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay (Adam)")
    patience: int = Field(10, ge=0, description="stop after this many epochs without a better validation recall (0 = never)")
    valid_every: int = Field(1, ge=1, description="validate every this many epochs")
    valid_last: int = Field(1, ge=0, description="validation holdout cut from train: each user's last events")
    valid_random: int = Field(9, ge=0, description="validation holdout: random earlier events per user")
    valid_users: int = Field(0, ge=0, description="validate on a seeded sample of this many users (0 = all)")
    seed: int = Field(0, description="random seed (initialisation, shuffling, sampling, validation split)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available")
    amp: Literal["off", "bf16", "fp16"] = Field("off", description="mixed precision autocast (CUDA only)")
    score_dtype: Literal["auto", "float64", "float32"] = Field(
        "auto", description="scoring precision; auto: float64 on the CPU and on GPUs with fast float64 (scores do not depend on the batch size), else float32"
    )
    refit: bool = Field(False, description="after early stopping, retrain on all the data for the best epoch count")
    checkpoint_dir: str | None = Field(None, description="write a checkpoint here every checkpoint_every epochs")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    resume: bool = Field(False, description="continue from the checkpoint in checkpoint_dir")
    threads: int = Field(0, ge=0, description="torch CPU threads (0 = all usable cores, 1 for tiny problems)")


class TorchRecommender(Recommender):
    """Base of every torch model: epochs, early stopping, checkpoints, resume, device, scoring."""

    Params: ClassVar[type[Params]] = TorchParams
    #: keep a dense copy of the training rows on a CUDA device (when it fits): for models whose batches read
    #: ``self.rows`` (the autoencoders); the others would only hold the memory
    dense_rows_on_gpu: ClassVar[bool] = False

    def __init__(self, **params: Any):
        require_torch()
        super().__init__(**params)
        self.module = None
        self._score_module = None
        self.device_ = "cpu"
        self.best_epoch = 0
        self.best_metric = float("nan")
        self._scaler = None
        self._row_buffer = None

    # ================================================================ hooks
    def _prepare(self, X: sp.csr_matrix, train) -> None:
        """Data-dependent set-up before the module is built (once per training phase)."""

    @abc.abstractmethod
    def _build_module(self):
        """The torch.nn.Module (on the CPU; the trainer moves it to the device)."""

    def _loss(self, module, batch, epoch: int):  # pragma: no cover - abstract unless _train_epoch is overridden
        """Scalar loss tensor for one batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement _loss or override _train_epoch")

    def _forward_scores(self, module, users, history):  # pragma: no cover - abstract unless _score is overridden
        """(b, n_items) score tensor from user ids (b,) and dense history rows (b, n_items)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _forward_scores or override _score")

    def _extra_state(self) -> dict[str, np.ndarray]:
        """Arrays besides the module's tensors needed to rebuild and score after ``load``."""
        return {}

    def _set_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def _make_optimizers(self, module) -> dict:
        return {"main": self._adam(module.parameters(), self.params.lr, self.params.weight_decay)}

    def _adam(self, params, lr: float, weight_decay: float):
        """Adam; on CUDA the fused kernel (one launch per step instead of several per parameter)."""
        torch = require_torch()
        cuda = str(getattr(self, "device_", "cpu")).startswith("cuda")
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True if cuda else None)

    def _user_batches(self, generator) -> Iterator:
        """Shuffled users with at least one event, ``batch_size`` at a time (index tensors on the device)."""
        torch = require_torch()
        users = self._train_users
        perm = users[torch.randperm(len(users), generator=generator).to(users.device)]
        bs = self.params.batch_size
        for start in range(0, len(perm), bs):
            yield perm[start : start + bs]

    def _dense_batch(self, users):
        """The users' training rows, dense, in a buffer reused across batches."""
        torch = require_torch()
        if self._row_buffer is None:
            self._row_buffer = torch.zeros((min(self.params.batch_size, len(self._train_users)), self.n_items),
                                           device=self.device_)  # fmt: skip
        return self.rows.dense(users, self._row_buffer)

    def _batches(self, module, generator) -> Iterator:
        """Shuffled users with at least one event, ``batch_size`` at a time: (users, dense rows)."""
        for u in self._user_batches(generator):
            yield u, self._dense_batch(u)

    def _optimise(self, loss_fn, users, optimizers: list):
        """One step: zero the gradients, ``loss = loss_fn(users)``, backward, step; returns the detached loss."""
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss = loss_fn(users)
        self._step(loss, optimizers)
        return loss.detach()

    def _train_epoch(self, module, optimizers: dict, epoch: int, generator) -> float:
        """One pass over ``_batches``; returns the mean loss (weighted by batch length)."""
        torch = require_torch()
        total = torch.zeros((), dtype=torch.float64, device=self.device_)
        count = 0
        for batch in self._batches(module, generator):
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self._loss(module, batch, epoch)
            self._step(loss, optimizers.values())
            n = len(batch[0]) if isinstance(batch, (tuple, list)) else 1
            total += loss.detach().double() * n
            count += n
        return float(total) / max(1, count)

    # ============================================================ utilities
    def _autocast(self):
        torch = require_torch()
        if self.device_ == "cuda" and self.params.amp != "off":
            dtype = torch.bfloat16 if self.params.amp == "bf16" else torch.float16
            return torch.autocast(device_type="cuda", dtype=dtype)
        return contextlib.nullcontext()

    def _step(self, loss, optimizers) -> None:
        """Backward and step (through a GradScaler for fp16 autocast)."""
        optimizers = list(optimizers)
        if self._scaler is not None:
            self._scaler.scale(loss).backward()
            for opt in optimizers:
                self._scaler.step(opt)
            self._scaler.update()
        else:
            loss.backward()
            for opt in optimizers:
                opt.step()

    def _score_dtype(self):
        torch = require_torch()
        kind = self.params.score_dtype
        if kind == "auto":
            kind = "float64" if self.device_ == "cpu" or fast_fp64(torch, self.device_) else "float32"
        return torch.float64 if kind == "float64" else torch.float32

    def _as_scoring(self, module):
        """``module`` in eval mode in the scoring dtype (a copy when the dtype differs)."""
        torch = require_torch()
        dtype = self._score_dtype()
        if dtype != torch.float32:
            module = copy.deepcopy(module).to(dtype)
        return module.eval()

    def _scoring_module(self):
        if self._score_module is None:
            self._score_module = self._as_scoring(self.module)
        return self._score_module

    def _score_tensor(self, module, users: np.ndarray, history: sp.csr_matrix):
        """Scores as a tensor on the device (call under ``torch.inference_mode``)."""
        torch = require_torch()
        H = dense_rows(sp.csr_matrix(history), self.device_, self._score_dtype())
        u = torch.from_numpy(np.asarray(users, dtype=np.int64)).to(self.device_)
        return self._forward_scores(module, u, H)

    def _score_with(self, module, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        torch = require_torch()
        with torch.inference_mode():
            return self._score_tensor(module, users, history).to(torch.float32).cpu().numpy()

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return self._score_with(self._scoring_module(), users, history)

    @contextlib.contextmanager
    def _threads(self, n_rows: int) -> Iterator[None]:
        """torch CPU threads for work on ``n_rows`` users (``threads``, or 1 for tiny problems)."""
        torch = require_torch()
        old = torch.get_num_threads()
        torch.set_num_threads(cpu_threads(self.params.threads, self.n_items * max(1, n_rows)))
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def _recommend_on_device(self, users, hist, k):
        """On CUDA the shared top-k runs on the device (same lists)."""
        return self._topk_on_device(self._scoring_module(), users, hist, k) if self._on_device() else None

    @contextlib.contextmanager
    def _host_scoring(self, n_rows: int) -> Iterator[None]:
        with _single_process(), self._threads(n_rows):
            yield

    def score(self, users, history=None):
        self._check_fitted()
        with self._threads(len(np.atleast_1d(users))):
            return super().score(users, history)

    # =========================================================== validation
    def _validation(self, X: sp.csr_matrix, train):
        """(training matrix, training Dataset, holdout or None, cut_from_train)."""
        from .. import split
        from ..split import Holdout

        p = self.params
        if self.valid is not None:
            return X, train, self.valid, False
        if p.valid_last + p.valid_random == 0:
            return X, train, None, False
        fit_data, holdout = split.competition(train, last=p.valid_last, random=p.valid_random, seed=p.seed)
        if len(holdout.users) == 0:
            return X, train, None, False
        if p.valid_users and len(holdout.users) > p.valid_users:
            keep = np.random.default_rng(p.seed).choice(holdout.users, p.valid_users, replace=False)
            mask = np.zeros(holdout.matrix.shape[0], dtype=np.float32)
            mask[keep] = 1.0
            D = sp.diags(mask)
            sub = lambda m: sp.csr_matrix(D @ m)  # noqa: E731
            holdout = Holdout(sub(holdout.matrix), {k: sub(v) for k, v in holdout.parts.items()}, None, holdout.protocol)
        return fit_data.matrix, fit_data, holdout, True

    def _validate(self, module, holdout, X: sp.csr_matrix) -> float:
        users = holdout.users
        recs = self._rank(self._as_scoring(module), users, sp.csr_matrix(X[users]), 10, f"{self.name}: validate")
        module.train()
        return float(metrics.evaluate(recs, holdout, ["recall@10"])["recall@10"])

    def _on_device(self) -> bool:
        """Whether the top-k runs on the device: on CUDA, unless a subclass scores its own way."""
        return self.device_ == "cuda" and type(self)._score_with is TorchRecommender._score_with

    def _rank(self, module, users: np.ndarray, hist: sp.csr_matrix, k: int, description: str):
        """The shared top-k of ``module``'s scores (seen items masked, cold users get popularity)."""
        if self._on_device():
            return self._topk_on_device(module, users, hist, k)
        with _single_process():
            return topk(lambda u, h: self._score_with(module, u, h), users, self.n_items, k, hist, hist,
                        description=description, popularity=self.item_popularity)  # fmt: skip

    def _topk_on_device(self, module, users: np.ndarray, hist: sp.csr_matrix, k: int, budget: int = 1 << 30):
        """The shared top-k (seen items masked, cold users get popularity) computed on the device."""
        return topk(
            lambda u, h: self._score_tensor(module, u, h), users, self.n_items, k, hist, hist, memory_budget=budget,
            popularity=self.item_popularity, device=self.device_,
        )  # fmt: skip

    # ================================================================= fit
    def _fit(self, X: sp.csr_matrix, train) -> None:
        torch = require_torch()
        p = self.params
        self.device_ = resolve_device(p.device, self.name)
        self._score_module = None
        old_threads = torch.get_num_threads()
        if self.device_ == "cpu":
            torch.set_num_threads(cpu_threads(p.threads, X.shape[1] * min(p.batch_size, max(1, X.shape[0]))))
        devices = [torch.cuda.current_device()] if self.device_ == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                self._fit_phases(X, train)
        finally:
            torch.set_num_threads(old_threads)
            self._row_buffer = None
            self._train_users = None
            self.rows = None

    def _fit_phases(self, X: sp.csr_matrix, train) -> None:
        p = self.params
        Xfit, fit_data, holdout, cut = self._validation(X, train)
        ckpt = None
        if p.resume:
            if not p.checkpoint_dir:
                raise ToprecError(f"model '{self.name}': resume=True needs checkpoint_dir")
            from . import checkpoints

            ckpt = checkpoints.load(p.checkpoint_dir)
        if ckpt is not None and ckpt[1].get("phase") == "refit":
            self.history = list(ckpt[1]["history"])
            self.best_epoch, self.best_metric = int(ckpt[1]["best_epoch"]), float(ckpt[1]["best_metric"])
        else:
            self._run_phase("search", Xfit, fit_data, holdout, p.epochs, ckpt)
            ckpt = None
        if p.refit and cut and self.best_epoch > 0:
            self._run_phase("refit", X, train, None, self.best_epoch, ckpt)

    def _fingerprint(self, phase: str, X: sp.csr_matrix) -> dict:
        params = {k: v for k, v in self.params.model_dump(mode="json").items() if k not in _RUN_ONLY}
        return {"model": self.name, "phase": phase, "params": params, "shape": list(X.shape), "nnz": int(X.nnz)}

    def _run_phase(self, phase: str, X: sp.csr_matrix, train, holdout, max_epochs: int, ckpt) -> None:
        torch = require_torch()
        p = self.params
        torch.manual_seed(p.seed)
        generator = torch.Generator().manual_seed(p.seed)
        self.rows = self._row_buffer = self.module = self._score_module = None  # the previous phase's go first
        self._prepare(X, train)
        self.rows = RowMatrix(X, self.device_, dense=None if self.dense_rows_on_gpu else False)
        self._train_users = torch.from_numpy(np.flatnonzero(np.diff(X.indptr) > 0).astype(np.int64)).to(self.device_)
        self._row_buffer = None
        self._scaler = torch.amp.GradScaler("cuda") if self.device_ == "cuda" and p.amp == "fp16" else None
        module = self._build_module().to(self.device_)
        self.module = module
        optimizers = self._make_optimizers(module)
        fingerprint = self._fingerprint(phase, X)
        start, best_state = 0, None
        best_epoch, best_metric = 0, -math.inf
        if phase == "refit":  # carries the search phase's best epoch and metric (saved in its checkpoints)
            best_epoch, best_metric = self.best_epoch, self.best_metric
        done = False
        if phase == "search":
            self.history = []
        if ckpt is not None:
            tensors, meta = ckpt
            if meta.get("fingerprint") != fingerprint:
                raise ToprecError(
                    f"{Path(p.checkpoint_dir) / 'last'}: checkpoint is of a different run "
                    f"(model, parameters or data differ); remove it or set resume=False"
                )
            start, best_epoch = int(meta["epoch"]), int(meta["best_epoch"])
            best_metric = float(meta["best_metric"])
            done = bool(meta.get("done"))
            self.history = list(meta["history"])
            self._restore(module, optimizers, generator, tensors, meta)
            best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
            best_state = {k: v.to(self.device_) for k, v in best.items()} or None
        validate = holdout is not None
        epoch = start
        with progress.task(f"{self.name}: {phase}", total=max_epochs) as bar:
            bar.update(completed=start)
            while not done and epoch < max_epochs:
                epoch += 1
                t0 = time.perf_counter()
                module.train()
                loss = self._train_epoch(module, optimizers, epoch, generator)
                rec = float("nan")
                diverged = not math.isfinite(float(loss))
                if diverged and best_state is None:
                    if phase == "refit":
                        why = (f"the refit on all the data diverged at epoch {epoch} (loss {float(loss)}; the search "
                               f"phase's best epoch was {self.best_epoch}): use refit=false or a lower lr (now {p.lr:g})")
                    elif validate:
                        why = (f"training diverged at epoch {epoch} (loss {float(loss)}) before any validated epoch; "
                               f"lower lr (now {p.lr:g})")
                    else:
                        why = (f"training diverged at epoch {epoch} (loss {float(loss)}; no validation holdout, so no "
                               f"earlier epoch was kept); lower lr (now {p.lr:g})")
                    raise ToprecError(f"model '{self.name}': {why}")  # fmt: skip
                if diverged:  # keep the best validated epoch, as early stopping would
                    warnings.warn(
                        f"model '{self.name}': training diverged at epoch {epoch} (loss {float(loss)}); stopped, "
                        f"keeping epoch {best_epoch} (validation recall@10 {best_metric:.4f})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                elif validate and (epoch % p.valid_every == 0 or epoch == max_epochs):
                    rec = self._validate(module, holdout, X)
                    if rec > best_metric:
                        best_metric, best_epoch = rec, epoch
                        best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                logs = {"loss": float(loss), "recall@10": rec, "seconds": time.perf_counter() - t0}
                if phase == "refit":
                    logs["refit"] = 1.0
                self.history.append(logs)
                stalled = validate and p.patience > 0 and epoch - best_epoch >= p.patience
                done = diverged or stalled or epoch >= max_epochs
                if p.checkpoint_dir and (epoch % p.checkpoint_every == 0 or done):
                    self._checkpoint(phase, fingerprint, module, optimizers, generator, epoch, best_epoch,
                                     best_metric, best_state, done)  # fmt: skip
                bar.update(
                    completed=epoch,
                    description=f"{self.name}: {phase} epoch {epoch} loss {loss:.4g}"
                    + ("" if math.isnan(rec) else f" recall@10 {rec:.4f} (best {best_metric:.4f} @ {best_epoch})"),
                )
                if phase == "search" and self.callback is not None:
                    self.callback(epoch, logs)
        if validate and best_state is not None:
            module.load_state_dict(best_state)
            self.best_epoch, self.best_metric = best_epoch, best_metric
        elif phase == "search":  # no validation: the last epoch's weights
            self.best_epoch, self.best_metric = epoch, float("nan")
        self.module = module.eval()
        self._score_module = None

    # ========================================================== checkpoints
    def _checkpoint(self, phase, fingerprint, module, optimizers, generator, epoch, best_epoch, best_metric,
                    best_state, done) -> None:  # fmt: skip
        torch = require_torch()
        from . import checkpoints

        tensors = {f"module.{k}": v for k, v in module.state_dict().items()}
        if best_state is not None:
            tensors.update({f"best.{k}": v for k, v in best_state.items()})
        opt_meta = {}
        for name, opt in optimizers.items():
            t, m = checkpoints.optimizer_state(opt, f"opt.{name}")
            tensors.update(t)
            opt_meta[name] = m
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.generator"] = generator.get_state()
        if self.device_ == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        if self._scaler is not None:
            opt_meta["__scaler__"] = {k: (float(v) if hasattr(v, "item") else v) for k, v in self._scaler.state_dict().items()}
        meta = {
            "fingerprint": fingerprint,
            "phase": phase,
            "epoch": epoch,
            "done": done,
            "best_epoch": best_epoch,
            "best_metric": best_metric,
            "history": self.history,
            "optimizers": opt_meta,
            "saved_at": time.time(),
        }
        checkpoints.save(self.params.checkpoint_dir, tensors, meta)

    def _restore(self, module, optimizers, generator, tensors, meta) -> None:
        torch = require_torch()
        from . import checkpoints

        module.load_state_dict({k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")})
        for name, opt in optimizers.items():
            checkpoints.load_optimizer_state(opt, f"opt.{name}", tensors, meta["optimizers"][name])
        torch.set_rng_state(tensors["rng.torch"])
        generator.set_state(tensors["rng.generator"])
        if self.device_ == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        if self._scaler is not None and "__scaler__" in meta["optimizers"]:
            self._scaler.load_state_dict(meta["optimizers"]["__scaler__"])

    # ============================================================= persist
    def _state(self) -> dict[str, np.ndarray]:
        out = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        out.update(self._extra_state())
        return out

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        torch = require_torch()
        self._set_extra_state({k: v for k, v in arrays.items() if not k.startswith("module.")})
        self.device_ = resolve_device(self.params.device, self.name)
        module = self._build_module()
        module.load_state_dict({k[len("module.") :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("module.")})
        self.module = module.to(self.device_).eval()
        self._score_module = None
