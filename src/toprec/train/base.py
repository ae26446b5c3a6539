"""``TorchRecommender``: the base every torch model subclasses; it composes the trainer's parts.

See the package docstring (``toprec/train/__init__.py``) for the hooks a
subclass implements. The parts, one responsibility each:

- :mod:`.loop`: ``fit(train)``'s phases and epochs: validation every
  ``valid_every`` epochs, the callback, early stopping with the best epoch's
  weights restored, divergence, ``refit`` on all the data;
- :mod:`.validation`: the holdout (given, or cut from ``train`` with the
  competition protocol) and its recall@10 through the shared top-k;
- :mod:`.checkpoints`: the run's state written every epoch and resumed
  bit-identically;
- :mod:`.rows`: the training rows on the device, batches densified there;
- :mod:`toprec.device`: the device, CPU threads and float64 speed.

This module holds what a model is: its parameters, the hooks, batching,
the optimiser step with autocast/GradScaler, scoring and save/load.

Scores are computed in ``score_dtype``: ``auto`` = float64 on the CPU and on
data-centre GPUs with fast float64 (P100, V100, A100, H100/H200, B200; the
H100 runs it at about its float32 rate), float32 on other GPUs. float32 BLAS
kernels, cuBLAS's too, round differently for different batch shapes, so in
float32 a user's scores (and rarely a near-tie's order) can depend on how
many users share the batch; in float64 such differences vanish when the
scores are rounded to float32 for ranking (verified on the H100 by the
contract's batch-size test).
"""

from __future__ import annotations

import abc
import contextlib
import copy
from typing import Any, ClassVar, Iterator, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .. import parallel
from ..device import cpu_threads, dense_rows, fast_fp64, require_torch, resolve_device  # noqa: F401 (re-exported)
from ..models.base import Params, Recommender
from . import loop, validation
from .rows import RowMatrix  # noqa: F401 (re-exported)

_single_process = parallel.single_process  # forking after torch has started its threads (or CUDA) is unsafe


class TorchParams(Params):
    """Parameters every torch model shares."""

    epochs: int = Field(100, ge=1, description="maximum training epochs")
    batch_size: int = Field(500, ge=1, description="training batch size")
    min_batches: int = Field(
        0, ge=0, description="small data: shrink the batch so an epoch has at least this many (not below 32 users; 0 = off)"
    )
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
        bs = self._batch_size()
        for start in range(0, len(perm), bs):
            yield perm[start : start + bs]

    def _batch_size(self) -> int:
        """Users per training batch: ``batch_size``, smaller on small data when ``min_batches`` asks for more
        updates per epoch (671 users at 500 a batch are 2 updates an epoch: hundreds of epochs to converge)."""
        p = self.params
        n = len(self._train_users) if getattr(self, "_train_users", None) is not None else 0
        if not p.min_batches or not n:
            return p.batch_size
        return min(p.batch_size, max(32, -(-n // p.min_batches)))

    def _dense_batch(self, users):
        """The users' training rows, dense, in a buffer reused across batches."""
        torch = require_torch()
        if self._row_buffer is None:
            self._row_buffer = torch.zeros((min(self._batch_size(), len(self._train_users)), self.n_items),
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
    def _validate(self, module, holdout, X: sp.csr_matrix) -> float:
        """Validation recall@10 of ``module`` (see :mod:`.validation`)."""
        return validation.score(self, module, holdout, X)

    def _on_device(self) -> bool:
        """Whether the top-k runs on the device: on CUDA, unless a subclass scores its own way."""
        return self.device_ == "cuda" and type(self)._score_with is TorchRecommender._score_with

    def _topk_on_device(self, module, users: np.ndarray, hist: sp.csr_matrix, k: int,
                        budget: int = validation.DEVICE_BUDGET):  # fmt: skip
        """The shared top-k (seen items masked, cold users get popularity) computed on the device."""
        return validation.rank(self, module, users, hist, k, on_device=True, budget=budget)

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
                loop.fit(self, X, train)
        finally:
            torch.set_num_threads(old_threads)
            self._row_buffer = None
            self._train_users = None
            self.rows = None

    def _start_phase(self, X: sp.csr_matrix, train):
        """A training phase's set-up on ``X``: rows on the device, the fresh module and its optimizers."""
        torch = require_torch()
        p = self.params
        self.rows = self._row_buffer = self.module = self._score_module = None  # the previous phase's go first
        self._prepare(X, train)
        self.rows = RowMatrix(X, self.device_, dense=None if self.dense_rows_on_gpu else False)
        self._train_users = torch.from_numpy(np.flatnonzero(np.diff(X.indptr) > 0).astype(np.int64)).to(self.device_)
        self._row_buffer = None
        self._scaler = torch.amp.GradScaler("cuda") if self.device_ == "cuda" and p.amp == "fp16" else None
        module = self._build_module().to(self.device_)
        self.module = module
        return module, self._make_optimizers(module)

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
