"""Item-based k-nearest neighbours with shrunk cosine similarity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .base import ItemItemRecommender, Params
from .registry import register


class ItemKNNParams(Params):
    k: int = Field(200, ge=1, description="neighbours kept per item")
    shrink: float = Field(10.0, ge=0, description="shrinkage added to the cosine denominator")
    block: int = Field(2048, ge=1, description="items per similarity block (memory bound)")


def cosine_topk(X: sp.csr_matrix, k: int, shrink: float, block: int = 2048) -> sp.csr_matrix:
    """Item-item cosine ``x_i.x_j / (|x_i||x_j| + shrink)``, top ``k`` per target item.

    Computed in blocks of target items so memory is items x block, never
    items x items unless the catalogue is small. Column j of the result holds
    the k most similar items to j (zero diagonal); scores = history @ S.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    n = X.shape[1]
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel()).astype(np.float32)
    Xt = X.T.tocsr()
    Xc = X.tocsc()
    kk = min(k, max(n - 1, 1))
    rows_out, cols_out, vals_out = [], [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        G = (Xt @ Xc[:, s:e]).toarray()  # (n, e-s)
        G /= norms[:, None] * norms[None, s:e] + shrink + 1e-12
        G[np.arange(s, e), np.arange(e - s)] = 0.0
        if kk < n:
            top = np.argpartition(-G, kk - 1, axis=0)[:kk]  # (kk, e-s) source items
        else:
            top = np.broadcast_to(np.arange(n)[:, None], (n, e - s))
        vals = np.take_along_axis(G, top, axis=0)
        cols = np.broadcast_to(np.arange(s, e)[None, :], top.shape)
        keep = vals > 0
        rows_out.append(top[keep])
        cols_out.append(cols[keep])
        vals_out.append(vals[keep])
    S = sp.csr_matrix(
        (np.concatenate(vals_out).astype(np.float32), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n, n),
    )
    S.sort_indices()
    return S


@register
class ItemKNN(ItemItemRecommender):
    """Item k-NN: shrunk cosine similarity, top-k neighbours per item."""

    name = "itemknn"
    Params = ItemKNNParams
    contract_params = {"k": 20}
    search_space = {"k": ("log_int", 10, 1000), "shrink": ("float", 0.0, 200.0)}

    def _fit(self, X, train) -> None:
        p = self.params
        self.similarity = cosine_topk(X, p.k, p.shrink, p.block)
