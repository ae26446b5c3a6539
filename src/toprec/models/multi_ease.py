"""Multi-EASE and VASP: full-rank item-item (zero-diagonal) models trained on the shared torch trainer.

- ``multi-ease``: EASE's item-item matrix B (zero diagonal), initialised from
  EASE's closed form (:func:`.ease_solve.ease_item_space`) and trained with the
  multinomial log-likelihood of Multi-VAE (softmax over items of ``s * x_u B``),
  optionally plus EASE's squared loss, with L2 on B. The objective, summed over
  users, is

      sum_u [ -x_u . log softmax(s x_u B) + squared_weight ||x_u - x_u B||^2 ] + reg ||B||^2

  (a batch's mean over users plus ``reg / n_train_users ||B||^2``). ``s`` is a
  learned positive scalar (the softmax temperature; it does not change the
  ranking) started at the value that minimises the closed form's multinomial
  loss on the training rows, so training starts from EASE's lists and its
  best scale. The diagonal is masked in the forward pass (it gets no gradient)
  and re-zeroed after every step. Scores are ``x B``: before any update they
  are EASE's exactly.
- ``vasp`` (Vančura & Kordík 2021, "Deep Variational Autoencoder with Shallow
  Parallel Path for Top-N Recommendation"): a Multi-VAE path and a shallow
  EASE-like path (``x W + b``, W items x items, zero diagonal) trained together;
  the prediction is the Hadamard product ``p = sigmoid(vae logits) *
  sigmoid(shallow logits)``, and the loss is the binary cross-entropy of ``p``
  against the (full) row (``loss=bce``), or its focal loss (Lin et al. 2017;
  ``loss=focal``, the paper's choice and the default), summed over items, mean over users, plus
  the VAE's annealed KL term. The input is the user's row with dropout
  (denoising), as Multi-VAE's. Simplifications against the paper: the VAE path
  is Multi-VAE's (no extra residual layers); the shallow path's logits are
  ``s x W + b`` with a learned scalar ``s`` and per-item bias ``b``, W starting
  at zero (the paper's from-scratch training) or at EASE's closed form
  (``shallow_init=ease``: ``s`` and a common start of ``b`` fitted by logistic
  regression of the rows on ``x B``, so the product starts ranking about as
  EASE; use a small ``shallow_lr`` with it, e.g. 1e-6); and the paper's
  data augmentation (repeated random splits of each user's items into input
  and target) is replaced by input dropout. Scores are ``p`` itself.

  The cheap variant, no joint training: fit EASE and Multi-VAE separately and
  fuse their lists with the ensemble's ``product`` method (``sigmoid(z)``
  of each member's per-user z-scored scores, multiplied)::

      toprec ensemble --data ... --members ease,multivae --method product

Both score from the history alone (``fold_in = "history"``): a new user with a
known user's items gets exactly that user's list.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ..memory import MemoryEstimate
from ..train import TorchParams, TorchRecommender
from .registry import register

F32 = 4


@functools.cache
def _nets():
    """The torch modules (defined on first use so that importing toprec does not import torch)."""
    import torch
    from torch import nn

    from .autoencoders import _nets as ae_nets

    class ZeroDiagLinear(nn.Module):
        """``x B`` with B (n_items x n_items) whose diagonal is never used: ``x B - x * diag(B)``."""

        def __init__(self, B: np.ndarray):
            super().__init__()
            self.weight = nn.Parameter(torch.from_numpy(np.array(B, dtype=np.float32)))

        def forward(self, x):
            return x @ self.weight - x * torch.diagonal(self.weight)[None, :]

        @torch.no_grad()
        def zero_diagonal(self) -> None:
            self.weight.diagonal().zero_()

    class MultiEASENet(nn.Module):
        def __init__(self, B: np.ndarray, log_scale: float):
            super().__init__()
            self.B = ZeroDiagLinear(B)
            self.log_scale = nn.Parameter(torch.tensor(float(log_scale)))

        def forward(self, x):
            return self.B(x)

    class VASPNet(nn.Module):
        """A Multi-VAE path and a shallow zero-diagonal item-item path; ``forward`` returns both paths' logits."""

        def __init__(self, n_items: int, hidden: list[int], latent: int, W: np.ndarray,
                     log_scale: float = 0.0, bias: float = 0.0):  # fmt: skip
            super().__init__()
            self.vae = ae_nets()["mult"](n_items, hidden, latent, True)
            self.shallow = ZeroDiagLinear(W)
            self.shallow_scale = nn.Parameter(torch.tensor(float(log_scale)))  # log of the shallow logits' scale
            self.shallow_bias = nn.Parameter(torch.full((n_items,), float(bias)))

        def forward(self, x, dropout: float = 0.0):
            logits, mu, logvar = self.vae(x, dropout)
            xin = nn.functional.dropout(x, p=dropout, training=self.training) if dropout else x
            shallow = self.shallow(xin) * self.shallow_scale.exp() + self.shallow_bias
            return logits, shallow, mu, logvar

        def scores(self, x):
            a, b, _, _ = self.forward(x)
            return torch.sigmoid(a) * torch.sigmoid(b)

    return {"multi-ease": MultiEASENet, "vasp": VASPNet}


def _train_matrix_estimate(n_items: int, extra: float, what: str) -> MemoryEstimate:
    from .memory import batches, gram_bytes

    n2 = float(n_items) ** 2
    # the closed form (Gram + inverse) then B, its gradient and Adam's two moments, + a scoring copy (float64)
    fit = gram_bytes(1, n_items, 0) + 4 * F32 * n2 + 2 * F32 * n2 + extra
    return MemoryEstimate(int(fit + batches(1, n_items, 2) + 200 * 2**20), what,
                          "use ease (closed form) or a sparse model such as rp3beta")  # fmt: skip


def fit_log_scale(logits: np.ndarray, X) -> float:
    """log s minimising the mean multinomial NLL of ``s * logits`` for rows ``X`` (golden-section search)."""
    import torch

    L = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    T = torch.from_numpy(np.asarray(X.toarray(), dtype=np.float64))

    def nll(t: float) -> float:
        return float(-(torch.log_softmax(L * math.exp(t), dim=1) * T).sum(1).mean())

    lo, hi = -4.0, 8.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return (lo + hi) / 2


def fit_logistic(logits: np.ndarray, X) -> tuple[float, float]:
    """(log s, b) minimising the binary cross-entropy of ``sigmoid(s * logits + b)`` against rows ``X`` (L-BFGS)."""
    import torch

    L = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    T = torch.from_numpy(np.asarray(X.toarray(), dtype=np.float64))
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(L * theta[0].exp() + theta[1], T)
        loss.backward()
        return loss

    opt.step(closure)
    return float(theta[0].detach()), float(theta[1].detach())


# =================================================================== Multi-EASE
class MultiEASEParams(TorchParams):
    l2: float = Field(500.0, gt=0, description="L2 of the EASE closed form B starts from")
    reg: float | None = Field(
        None, ge=0, description="L2 on B while training, in the objective summed over users (None = l2)"
    )
    squared_weight: float = Field(0.0, ge=0, description="weight of EASE's squared loss ||x - xB||^2 added to the multinomial")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the input rows (denoising)")
    lr: float = Field(1e-5, gt=0, description="learning rate (Adam; it moves every entry of B by about this much "
                                             "a step, so small: 1e-4 already pulled ML-100K validation recall below EASE's)")
    epochs: int = Field(30, ge=1, description="maximum training epochs")
    patience: int = Field(5, ge=0, description="early-stopping patience in epochs (0 = never)")
    min_batches: int = Field(10, ge=0, description="small data: shrink the batch so an epoch has at least this many "
                                                   "updates (not below 32 users; 0 = batch_size as given)")
    scale_users: int = Field(2000, ge=1, description="training users the softmax scale's start is fitted on (a seeded sample)")


@register
class MultiEASE(TorchRecommender):
    """Multi-EASE: EASE's zero-diagonal B trained with the multinomial likelihood (+ optional squared loss), from EASE's closed form."""

    name = "multi-ease"
    Params = MultiEASEParams
    dense_rows_on_gpu = True
    search_space: ClassVar[dict[str, tuple]] = {
        "l2": ("log_float", 1.0, 1e5),
        "reg": ("log_float", 1.0, 1e5),
        "squared_weight": ("log_float", 1e-3, 10.0),
        "dropout": ("float", 0.0, 0.5),
        "lr": ("log_float", 1e-6, 1e-4),
    }

    def memory_estimate(self, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
        return _train_matrix_estimate(n_items, 24.0 * nnz, f"Multi-EASE's {n_items:,} x {n_items:,} B trained with Adam")

    def _prepare(self, X, train) -> None:
        from .ease_solve import ease_item_space

        p = self.params
        B = ease_item_space(X, p.l2)
        active = np.flatnonzero(np.diff(X.indptr) > 0)
        if len(active) > p.scale_users:
            active = np.sort(np.random.default_rng(p.seed).choice(active, p.scale_users, replace=False))
        rows = X[active]
        self._init = (B, fit_log_scale(np.asarray(rows @ B), rows) if len(active) else 0.0)
        self._n_fit_users = max(1, int((np.diff(X.indptr) > 0).sum()))

    def _build_module(self):
        B, log_scale = self._init if getattr(self, "_init", None) is not None else (
            np.zeros((self.n_items, self.n_items), np.float32), 0.0)  # fmt: skip
        return _nets()["multi-ease"](B, log_scale)

    def _fit(self, X, train) -> None:
        try:
            super()._fit(X, train)
        finally:
            self._init = None  # B lives in the module; the start is not kept

    def _loss(self, module, batch, epoch):
        import torch

        from ..train import losses

        p = self.params
        users, x = batch
        xin = torch.nn.functional.dropout(x, p=p.dropout, training=True) if p.dropout else x
        xb = module(xin)
        loss = losses.multinomial_nll(xb * module.log_scale.exp(), x)
        if p.squared_weight:
            loss = loss + p.squared_weight * (x - xb).pow(2).sum(1).mean()
        reg = p.l2 if p.reg is None else p.reg
        if reg:
            loss = loss + (reg / self._n_fit_users) * module.B.weight.pow(2).sum()
        return loss

    def _step(self, loss, optimizers) -> None:
        super()._step(loss, optimizers)
        self.module.B.zero_diagonal()  # Adam's weight decay or round-off could move it; it is never used

    def _forward_scores(self, module, users, history):
        return module(history)

    @property
    def similarity(self) -> np.ndarray:
        """B (items x items, zero diagonal) as a numpy array."""
        return self.module.B.weight.detach().cpu().numpy().copy()


# ========================================================================= VASP
class VASPParams(TorchParams):
    latent: int = Field(200, ge=1, description="VAE latent dimension")
    hidden: int = Field(0, ge=0, description="VAE hidden layer width on each side (0 = none, Multi-VAE's default here)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the input rows of both paths")
    loss: Literal["bce", "focal"] = Field(
        "focal", description="focal: focal loss of the product (the paper's; higher ML-100K validation recall); bce: binary cross-entropy"
    )
    gamma: float = Field(2.0, ge=0, description="focal loss exponent (loss=focal)")
    anneal_cap: float = Field(0.2, ge=0, description="largest KL weight (beta)")
    anneal_steps: int = Field(20000, ge=1, description="beta = min(anneal_cap, updates / anneal_steps)")
    shallow_init: Literal["ease", "zero"] = Field("zero", description="start of the shallow path's W: EASE's closed form or zeros")
    l2: float = Field(500.0, gt=0, description="L2 of the EASE closed form (shallow_init=ease)")
    shallow_reg: float = Field(0.0, ge=0, description="L2 on W in the objective summed over users")
    lr: float = Field(1e-3, gt=0, description="learning rate (Adam)")
    shallow_lr: float | None = Field(None, gt=0, description="learning rate of the shallow path's W (None = lr); "
                                     "Adam moves every entry by about this much a step, so a W started from EASE "
                                     "wants a much smaller one")
    epochs: int = Field(50, ge=1, description="maximum training epochs")
    patience: int = Field(10, ge=0, description="early-stopping patience in epochs (0 = never)")
    min_batches: int = Field(10, ge=0, description="small data: shrink the batch so an epoch has at least this many "
                                                   "updates (not below 32 users; 0 = batch_size as given)")


def product_bce(a, b, y, gamma: float = 0.0):
    """Per-user sum over items of the (focal, ``gamma > 0``) binary cross-entropy of ``p = sigmoid(a) sigmoid(b)``
    against 0/1 ``y``, mean over users. log p and log(1 - p) are computed from ``logsigmoid`` (stable)."""
    import torch

    F = torch.nn.functional
    log_p = F.logsigmoid(a) + F.logsigmoid(b)
    p = log_p.exp()
    log_1mp = torch.log1p(-p.clamp(max=1 - 1e-7))
    ce = -(y * log_p + (1 - y) * log_1mp)
    if gamma:
        p_t = p * y + (1 - p) * (1 - y)
        ce = ce * (1 - p_t).pow(gamma)
    return ce.sum(1).mean()


@register
class VASP(TorchRecommender):
    """VASP (Vančura & Kordík 2021): Multi-VAE and a shallow zero-diagonal item-item path, sigmoid(VAE) x sigmoid(shallow)."""

    name = "vasp"
    Params = VASPParams
    dense_rows_on_gpu = True
    search_space: ClassVar[dict[str, tuple]] = {
        "latent": ("log_int", 32, 400),
        "dropout": ("float", 0.0, 0.8),
        "lr": ("log_float", 1e-4, 1e-2),
        "loss": ("categorical", ["bce", "focal"]),
        "l2": ("log_float", 1.0, 1e5),
        "anneal_cap": ("float", 0.0, 1.0),
    }

    def memory_estimate(self, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
        p = self.params
        vae = 4 * F32 * float(n_items) * (3 * p.latent + 2 * p.hidden)
        bs = float(min(p.batch_size, max(1, n_users)))
        return _train_matrix_estimate(n_items, vae + 12 * F32 * bs * n_items + 24.0 * nnz,
                                      f"VASP's {n_items:,} x {n_items:,} shallow path trained with Adam, + a Multi-VAE")  # fmt: skip

    def _prepare(self, X, train) -> None:
        from .ease_solve import ease_item_space

        p = self.params
        self._W0 = ease_item_space(X, p.l2) if p.shallow_init == "ease" else None
        self._calib = (0.0, 0.0)
        if self._W0 is not None:  # sigmoid(s x B + b) calibrated to the rows: the product starts ranking as EASE
            active = np.flatnonzero(np.diff(X.indptr) > 0)
            if len(active) > 2000:
                active = np.sort(np.random.default_rng(p.seed).choice(active, 2000, replace=False))
            rows = X[active]
            self._calib = fit_logistic(np.asarray(rows @ self._W0), rows)
        self._n_fit_users = max(1, int((np.diff(X.indptr) > 0).sum()))

    def _build_module(self):
        p = self.params
        W = getattr(self, "_W0", None)
        if W is None:
            W = np.zeros((self.n_items, self.n_items), np.float32)
        log_scale, bias = getattr(self, "_calib", None) or (0.0, 0.0)
        return _nets()["vasp"](self.n_items, [p.hidden] if p.hidden else [], p.latent, W, log_scale, bias)

    def _fit(self, X, train) -> None:
        try:
            super()._fit(X, train)
        finally:
            self._W0 = None

    def _make_optimizers(self, module):
        p = self.params
        w = module.shallow.weight
        rest = [q for q in module.parameters() if q is not w]
        opt = self._adam([{"params": rest}, {"params": [w], "lr": p.shallow_lr or p.lr}], p.lr, p.weight_decay)
        return {"main": opt}

    def _train_epoch(self, module, optimizers, epoch, generator):
        n_batches = -(-len(self._train_users) // self._batch_size())
        self._updates = (epoch - 1) * n_batches  # derived from the epoch: identical after a resume
        return super()._train_epoch(module, optimizers, epoch, generator)

    def _loss(self, module, batch, epoch):
        p = self.params
        users, x = batch
        self._updates += 1
        beta = min(p.anneal_cap, self._updates / p.anneal_steps)
        a, b, mu, logvar = module(x, p.dropout)
        kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1).sum(1).mean()
        loss = product_bce(a, b, x, p.gamma if p.loss == "focal" else 0.0) + beta * kl
        if p.shallow_reg:
            loss = loss + (p.shallow_reg / self._n_fit_users) * module.shallow.weight.pow(2).sum()
        return loss

    def _step(self, loss, optimizers) -> None:
        super()._step(loss, optimizers)
        self.module.shallow.zero_diagonal()

    def _forward_scores(self, module, users, history):
        return module.scores(history)
