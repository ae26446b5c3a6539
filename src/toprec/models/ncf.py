"""Neural collaborative filtering: NeuMF (He et al. 2017) = GMF + MLP, binary cross-entropy.

The model: a GMF branch ``p_u * q_i`` and an MLP branch over ``[p'_u, q'_i]``
(towers halving the width), concatenated into one logit. Training: every
training event is a positive, ``n_negatives`` items per positive are drawn
uniformly (re-drawn once where they hit a training item; vectorised), and
the loss is binary cross-entropy on the logits; one epoch visits every
positive once in a seeded random order.

Scoring all items for a batch of users never builds (user, item) pairs in
Python: the GMF branch is a matrix product, and the MLP's first layer is split
into a user part and an item part (computed once for every item) that are
broadcast-added, in user chunks bounded in memory. On the CPU scoring runs in
float64 (rounded to float32), so a user's scores do not depend on the batch.

Fold-in: training users keep their learned embeddings (an explicit
``history`` for them only changes the masking). A user without one (unknown,
or no training events) gets the average of the learned user embeddings (both
branches) of the training users who share items with the history, weighted
by the number of shared items — a user-kNN estimate of where the new user
would sit. Empty histories get popularity (shared contract).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ..train import TorchParams, TorchRecommender
from .graph import sample_negatives
from .registry import register


class NCFParams(TorchParams):
    factors: int = Field(32, ge=1, description="GMF embedding size")
    mlp_factors: int = Field(32, ge=2, description="MLP embedding size per side (the first layer sees twice this)")
    mlp_layers: int = Field(2, ge=1, le=6, description="MLP hidden layers (widths mlp_factors, /2, /4...)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout between MLP layers")
    n_negatives: int = Field(4, ge=1, description="uniform negatives per positive")
    batch_size: int = Field(4096, ge=1, description="(user, item) pairs per batch")
    patience: int = Field(5, ge=0, description="stop after this many epochs without a better validation recall (0 = never)")


@register
class NCF(TorchRecommender):
    """NeuMF: generalised MF and an MLP over user/item embeddings, BCE with sampled negatives."""

    name: ClassVar[str] = "ncf"
    Params: ClassVar[type] = NCFParams
    fold_in: ClassVar[str] = "estimate"
    search_space: ClassVar[dict[str, tuple]] = {
        "factors": ("categorical", [16, 32, 64, 128]),
        "mlp_factors": ("categorical", [16, 32, 64]),
        "mlp_layers": ("int", 1, 3),
        "lr": ("log_float", 1e-4, 1e-2),
        "n_negatives": ("int", 1, 8),
        "weight_decay": ("log_float", 1e-8, 1e-4),
    }

    # ----- data
    def _prepare(self, X: sp.csr_matrix, train) -> None:
        X = sp.csr_matrix(X)
        X.sort_indices()
        self._X = X

    def _batches(self, module, generator):
        import torch

        X = self._X
        k = self.params.n_negatives
        users = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        items = X.indices.astype(np.int64)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        neg_users = np.repeat(users, k)
        neg_items = sample_negatives(neg_users, self.n_items, X, rng)
        u = np.concatenate([users, neg_users])
        i = np.concatenate([items, neg_items])
        y = np.concatenate([np.ones(len(users), np.float32), np.zeros(len(neg_users), np.float32)])
        perm = torch.randperm(len(u), generator=generator).numpy()
        bs = self.params.batch_size
        dev = self.device_
        for s in range(0, len(u), bs):
            idx = perm[s : s + bs]
            yield (torch.from_numpy(u[idx]).to(dev), torch.from_numpy(i[idx]).to(dev), torch.from_numpy(y[idx]).to(dev))

    # ----- network
    def _build_module(self):
        import torch

        p = self.params
        nn = torch.nn
        widths = [max(1, p.mlp_factors // (2**k)) for k in range(p.mlp_layers)]
        n_users, n_items = self.n_users, self.n_items

        class NeuMF(nn.Module):
            def __init__(self):
                super().__init__()
                self.p_gmf = nn.Embedding(n_users, p.factors)
                self.q_gmf = nn.Embedding(n_items, p.factors)
                self.p_mlp = nn.Embedding(n_users, p.mlp_factors)
                self.q_mlp = nn.Embedding(n_items, p.mlp_factors)
                for e in (self.p_gmf, self.q_gmf, self.p_mlp, self.q_mlp):
                    nn.init.normal_(e.weight, std=0.01)
                self.first_u = nn.Linear(p.mlp_factors, widths[0])
                self.first_i = nn.Linear(p.mlp_factors, widths[0], bias=False)
                self.tower = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
                self.drop = nn.Dropout(p.dropout)
                self.out = nn.Linear(p.factors + widths[-1], 1)

            def mlp_from_first(self, z):
                z = self.drop(torch.relu(z))
                for layer in self.tower:
                    z = self.drop(torch.relu(layer(z)))
                return z

            def forward(self, u, i):
                g = self.p_gmf(u) * self.q_gmf(i)
                z = self.mlp_from_first(self.first_u(self.p_mlp(u)) + self.first_i(self.q_mlp(i)))
                return self.out(torch.cat([g, z], -1)).squeeze(-1)

        return NeuMF()

    def _loss(self, module, batch, epoch):
        import torch.nn.functional as F

        u, i, y = batch
        return F.binary_cross_entropy_with_logits(module(u, i), y)

    # ----- scoring
    def _fit(self, X: sp.csr_matrix, train) -> None:
        super()._fit(X, train)
        self._X = sp.csr_matrix(self.train_matrix)

    def _set_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._X = sp.csr_matrix(self.train_matrix)

    def _score_with(self, module, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        import torch

        users = np.asarray(users, dtype=np.int64)
        X = self._X
        trained = (users >= 0) & (users < self.n_users)
        trained[trained] = np.diff(X.indptr)[users[trained]] > 0
        dev = next(module.parameters()).device
        dtype = next(module.parameters()).dtype
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        with torch.inference_mode():
            Pg, Pm = module.p_gmf.weight, module.p_mlp.weight
            ug = torch.zeros((len(users), Pg.shape[1]), dtype=dtype, device=dev)
            um = torch.zeros((len(users), Pm.shape[1]), dtype=dtype, device=dev)
            idx = torch.from_numpy(np.flatnonzero(trained)).to(dev)
            ug[idx] = Pg[torch.from_numpy(users[trained]).to(dev)]
            um[idx] = Pm[torch.from_numpy(users[trained]).to(dev)]
            if not trained.all():
                H = sp.csr_matrix(history[~trained], dtype=np.float64)
                H.data[:] = 1.0
                W = sp.csr_matrix(H @ sp.csr_matrix(X, dtype=np.float64).T)
                W = sp.diags(1.0 / np.maximum(np.asarray(W.sum(1)).ravel(), 1e-12)) @ W
                rest = torch.from_numpy(np.flatnonzero(~trained)).to(dev)
                for target, P in ((ug, Pg), (um, Pm)):  # sparse weights x dense embeddings, in float64
                    folded = W @ P.double().cpu().numpy()
                    target[rest] = torch.from_numpy(folded).to(device=dev, dtype=dtype)
            w = module.out.weight[0]
            f = Pg.shape[1]
            gmf = (ug * w[:f]) @ module.q_gmf.weight.T  # (b, n_items)
            item_first = module.first_i(module.q_mlp.weight)  # (n_items, h1)
            user_first = module.first_u(um)  # (b, h1)
            chunk = max(1, (1 << 23) // max(1, self.n_items * item_first.shape[1]))
            for s in range(0, len(users), chunk):
                z = module.mlp_from_first(user_first[s : s + chunk, None, :] + item_first[None])
                s_mlp = z @ w[f:]
                out[s : s + chunk] = (gmf[s : s + chunk] + s_mlp + module.out.bias).to(torch.float32).cpu().numpy()
        return out
