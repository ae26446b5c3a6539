"""Graph collaborative filtering: LightGCN and NGCF on the user-item bipartite graph.

Both propagate embeddings over the symmetric normalised adjacency
``A_hat = D^-1/2 A D^-1/2`` of the (users + items) graph, built once with
scipy from the training matrix and multiplied with ``torch.sparse.mm`` (a CSR
tensor on every device) — there is never a dense adjacency
(:func:`normalized_adjacency`).

* ``lightgcn`` (He et al. 2020): no weights, no non-linearity; the final
  embedding is the mean of the layer embeddings (layer 0 included).
* ``ngcf`` (Wang et al. 2019, as in the authors' code): per layer
  ``E' = LeakyReLU(A_hat E W1 + b1) + LeakyReLU((A_hat E * E) W2 + b2)``,
  message dropout; the final embedding concatenates layer 0 and the
  L2-normalised outputs of every layer.

Both train with BPR on (user, positive, negative) triples: each epoch visits
every training event once in a seeded random order, with one negative item per
event drawn uniformly and re-drawn once where it hit a training item (a
vectorised membership test on sorted (user, item) keys), plus L2 on the
batch's layer-0 embeddings.

Scoring: the propagated embeddings are computed once after training — over
the graph of *all* training events, including those the trainer held out for
early stopping — and kept (float64 on the CPU, products rounded to float32, so
a user's scores do not depend on the batch). Training users keep their learned embedding (an explicit ``history``
for them only changes the masking). Users without one — unknown users and
users with no training events — are folded in by one propagation step from
their history: ``e_u = sum_{i in h} d_i^-1/2 e_i`` with the propagated item
embeddings ``e_i`` and item degrees ``d_i`` (LightGCN's own user update,
without the constant ``d_u^-1/2`` that cannot change a ranking). Empty
histories get popularity (shared contract).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ..keys import csr_keys, isin_sorted
from ..train import TorchParams, TorchRecommender
from .registry import register


def normalized_adjacency(X: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, X], [X^T, 0]]``, CSR float32.

    Nodes are users ``0..n_users-1`` then items; isolated nodes get degree 1
    (their rows are empty anyway). Binarised: repeated or weighted entries count once.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    X = sp.csr_matrix((np.ones(X.nnz, dtype=np.float32), X.indices, X.indptr), shape=X.shape)
    X.sum_duplicates()
    X.data[:] = 1.0
    n_u, n_i = X.shape
    A = sp.bmat([[None, X], [X.T, None]], format="csr", dtype=np.float32)
    if A.shape != (n_u + n_i, n_u + n_i):  # bmat drops empty blocks' shape when X has no rows/cols
        A = sp.csr_matrix(A, shape=(n_u + n_i, n_u + n_i))
    deg = np.asarray(A.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0).astype(np.float32)
    A = sp.diags(inv) @ A @ sp.diags(inv)
    A = sp.csr_matrix(A, dtype=np.float32)
    A.sort_indices()
    return A


def to_torch_sparse(A: sp.csr_matrix, device="cpu"):
    """A scipy CSR as a torch sparse CSR tensor on ``device`` (cuSPARSE's CSR SpMM on CUDA, MKL's on the CPU)."""
    import torch

    A = sp.csr_matrix(A)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(A.indptr.astype(np.int64)).to(device),
            torch.from_numpy(A.indices.astype(np.int64)).to(device),
            torch.from_numpy(A.data.astype(np.float32)).to(device),
            size=A.shape,
            check_invariants=False,
        )


_SYM_SPMM = None


def sym_spmm(A, E):
    """``A @ E`` for a *symmetric* torch sparse ``A``, with the backward ``A @ grad``.

    torch's own backward of a sparse product transposes ``A`` on every call
    (5-6x the forward's cost on the CPU); for the symmetric graph adjacency the
    transpose is ``A`` itself.
    """
    global _SYM_SPMM
    import torch

    if _SYM_SPMM is None:

        class SymSpMM(torch.autograd.Function):
            @staticmethod
            def forward(ctx, A, E):
                ctx.A = A
                return torch.sparse.mm(A, E)

            @staticmethod
            def backward(ctx, grad):
                return None, torch.sparse.mm(ctx.A, grad)

        _SYM_SPMM = SymSpMM
    return _SYM_SPMM.apply(A, E)


def sample_negatives(users: np.ndarray, n_items: int, X: sp.csr_matrix, rng: np.random.Generator,
                     rounds: int = 1) -> np.ndarray:  # fmt: skip
    """One uniform negative item per user entry, re-drawn ``rounds`` times where it is a training item."""
    neg = rng.integers(0, n_items, len(users))
    keys = csr_keys(X, n_items)
    for _ in range(rounds):  # rounds=0: no re-draw
        bad = isin_sorted(keys, users.astype(np.int64) * n_items + neg)
        if not bad.any():
            break
        neg[bad] = rng.integers(0, n_items, int(bad.sum()))
    return neg


class GraphParams(TorchParams):
    factors: int = Field(64, ge=2, description="embedding size")
    batch_size: int = Field(8192, ge=1, description="(user, positive, negative) triples per batch; each batch propagates the whole graph")
    layers: int = Field(3, ge=1, le=8, description="propagation layers")
    reg: float = Field(1e-4, ge=0.0, description="L2 on the batch's layer-0 embeddings")


class _GraphBase(TorchRecommender):
    """Shared: adjacency, BPR batches over events, cached propagated embeddings, fold-in."""

    fold_in: ClassVar[str] = "estimate"

    def _fit(self, X: sp.csr_matrix, train) -> None:
        super()._fit(X, train)
        # score on the graph of all training events (a phase may have trained without the validation ones)
        self._prepare(self.train_matrix, None)

    def _prepare(self, X: sp.csr_matrix, train) -> None:
        X = sp.csr_matrix(X)
        X.sort_indices()
        self._X = X
        self._adj_np = normalized_adjacency(X)
        self._adj = None  # torch copy made on the module's device when first needed
        self._final = None

    def _adjacency(self, device):
        if self._adj is None or self._adj[0] != str(device):
            self._adj = (str(device), to_torch_sparse(self._adj_np, device))
        return self._adj[1]

    def _batches(self, module, generator):
        import torch

        X = self._X
        n = X.nnz
        users = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        items = X.indices.astype(np.int64)
        perm = torch.randperm(n, generator=generator).numpy()
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        neg = sample_negatives(users[perm], self.n_items, X, rng)
        device = next(module.parameters()).device
        bs = self.params.batch_size
        for s in range(0, n, bs):
            idx = perm[s : s + bs]
            yield (
                torch.from_numpy(users[idx]).to(device),
                torch.from_numpy(items[idx]).to(device),
                torch.from_numpy(neg[s : s + bs]).to(device),
            )

    def _loss(self, module, batch, epoch):
        import torch.nn.functional as F

        u, i, j = batch
        users, items = module.propagate(self._adjacency(u.device))
        eu, ei, ej = users[u], items[i], items[j]
        x = (eu * ei).sum(-1) - (eu * ej).sum(-1)
        loss = F.softplus(-x).mean()
        p = self.params
        if p.reg > 0:
            e0 = module.emb.weight
            nu = self.n_users
            l2 = e0[u].pow(2).sum() + e0[nu + i].pow(2).sum() + e0[nu + j].pow(2).sum()
            loss = loss + p.reg * l2 / (2 * len(u))
        return loss

    def _set_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._prepare(self.train_matrix, None)  # the adjacency is rebuilt from the saved training matrix

    # ----- scoring
    def _propagated(self, module) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) propagated embeddings of ``module`` (scoring dtype), cached per module."""
        import torch

        if self._final is None or self._final[0] is not module:
            dev = next(module.parameters()).device
            dtype = next(module.parameters()).dtype
            with torch.inference_mode():
                u, i = module.propagate(self._adjacency(dev).to(dtype))
            self._final = (module, u.double().cpu().numpy(), i.double().cpu().numpy())
        return self._final[1], self._final[2]

    def _score_with(self, module, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        U, V = self._propagated(module)
        users = np.asarray(users, dtype=np.int64)
        trained = (users >= 0) & (users < self.n_users)
        trained[trained] = np.diff(self._X.indptr)[users[trained]] > 0
        E = np.zeros((len(users), U.shape[1]), dtype=np.float64)
        E[trained] = U[users[trained]]
        if not trained.all():
            deg = np.asarray(self._X.sum(0)).ravel()
            w = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
            H = sp.csr_matrix(history[~trained], dtype=np.float64)
            H.data[:] = 1.0
            E[~trained] = (H @ sp.diags(w)) @ V
        return (E @ V.T).astype(np.float32)


@register
class LightGCN(_GraphBase):
    """LightGCN: linear propagation on the normalised graph, layer-mean embeddings, BPR."""

    name: ClassVar[str] = "lightgcn"
    Params: ClassVar[type] = GraphParams
    search_space: ClassVar[dict[str, tuple]] = {
        "factors": ("categorical", [32, 64, 128]),
        "layers": ("int", 1, 4),
        "lr": ("log_float", 1e-4, 1e-2),
        "reg": ("log_float", 1e-6, 1e-2),
    }

    def _build_module(self):
        import torch

        n_nodes = self.n_users + self.n_items
        dim, layers, n_users = self.params.factors, self.params.layers, self.n_users

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(n_nodes, dim)
                torch.nn.init.normal_(self.emb.weight, std=0.1)

            def propagate(self, adj):
                x = self.emb.weight
                total = x
                for _ in range(layers):
                    x = sym_spmm(adj, x)
                    total = total + x
                out = total / (layers + 1)
                return out[:n_users], out[n_users:]

        return Net()


class NGCFParams(GraphParams):
    message_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on each layer's output")


@register
class NGCF(_GraphBase):
    """NGCF: propagation with feature transforms and element-wise affinity messages, BPR."""

    name: ClassVar[str] = "ngcf"
    Params: ClassVar[type] = NGCFParams
    search_space: ClassVar[dict[str, tuple]] = {
        "factors": ("categorical", [32, 64, 128]),
        "layers": ("int", 1, 4),
        "lr": ("log_float", 1e-4, 1e-2),
        "reg": ("log_float", 1e-6, 1e-2),
        "message_dropout": ("float", 0.0, 0.5),
    }

    def _build_module(self):
        import torch

        n_nodes = self.n_users + self.n_items
        p = self.params
        dim, layers, n_users, drop = p.factors, p.layers, self.n_users, p.message_dropout
        F = torch.nn.functional

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(n_nodes, dim)
                torch.nn.init.xavier_uniform_(self.emb.weight)
                self.w1 = torch.nn.ModuleList([torch.nn.Linear(dim, dim) for _ in range(layers)])
                self.w2 = torch.nn.ModuleList([torch.nn.Linear(dim, dim) for _ in range(layers)])

            def propagate(self, adj):
                x = self.emb.weight
                outs = [x]
                for k in range(layers):
                    side = sym_spmm(adj, x)
                    x = F.leaky_relu(self.w1[k](side), 0.2) + F.leaky_relu(self.w2[k](side * x), 0.2)
                    x = F.dropout(x, drop, self.training)
                    outs.append(F.normalize(x, dim=1))
                out = torch.cat(outs, 1)
                return out[:n_users], out[n_users:]

        return Net()
