"""Neighbourhood item-item models: ItemKNN (cosine / asymmetric / Jaccard, with
TF-IDF or BM25 weighting) and RP3beta (random walks with popularity penalty).

Similarities are built in blocks of items (memory items x block, never a full
dense items x items unless the catalogue is small) and pruned to the top-k
neighbours, so the result is a sparse matrix and scores = history @ S.
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .. import progress
from .base import ItemItemRecommender, Params
from .registry import register


def rows_topk(block_fn: Callable[[int, int], np.ndarray], n: int, k: int, block: int = 2048) -> sp.csr_matrix:
    """Assemble an n x n sparse matrix keeping the ``k`` largest positive entries of each row.

    ``block_fn(s, e)`` returns the dense rows ``s:e`` (shape (e - s, n)); it may
    be modified in place.
    """
    kk = min(k, n)
    rows_out, cols_out, vals_out = [], [], []
    with progress.task("similarity", total=n) as bar:
        for s in range(0, n, block):
            e = min(n, s + block)
            R = block_fn(s, e)
            if kk < n:
                # the k smallest of -R: on rows full of tied zeros (sparse co-occurrence) numpy's introselect at
                # kth = n - k took 2.6-11.6x as long as at kth = k - 1 (benchmarks/results/similarity.md)
                np.negative(R, out=R)
                top = np.argpartition(R, kk - 1, axis=1)[:, :kk]
                vals = -np.take_along_axis(R, top, axis=1)
            else:
                top = np.broadcast_to(np.arange(n), R.shape)
                vals = np.take_along_axis(R, top, axis=1)
            keep = vals > 0
            rows_out.append(np.broadcast_to(np.arange(s, e)[:, None], top.shape)[keep])
            cols_out.append(top[keep])
            vals_out.append(vals[keep])
            bar.advance(e - s)
    S = sp.csr_matrix(
        (np.concatenate(vals_out).astype(np.float32), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n, n),
    )
    S.sort_indices()
    return S


def weight_matrix(X: sp.csr_matrix, weighting: str, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Reweight user x item entries, users playing the role of terms, items of documents.

    ``tfidf``: x_ui * log(n_items / (1 + n_u)); ``bm25``: Okapi BM25 with item
    length n_i (k1, b); ``none``: unchanged.
    """
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    if weighting == "none":
        return X
    n_items = X.shape[1]
    n_u = np.diff(X.indptr).astype(np.float64)
    idf = np.log(n_items / (1.0 + n_u)).clip(min=0.0)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    if weighting == "tfidf":
        X.data = (X.data * idf[rows]).astype(np.float32)
        return X
    item_len = np.bincount(X.indices, minlength=n_items).astype(np.float64)
    avg = item_len.mean() if n_items else 1.0
    tf = X.data.astype(np.float64)
    denom = tf + k1 * (1.0 - b + b * item_len[X.indices] / avg)
    X.data = (tf * (k1 + 1.0) / denom * idf[rows]).astype(np.float32)
    return X


class ItemKNNParams(Params):
    k: int = Field(200, ge=1, description="neighbours kept per item")
    shrink: float = Field(10.0, ge=0, description="shrinkage added to the similarity denominator")
    similarity: Literal["cosine", "asymmetric", "jaccard"] = Field("cosine", description="similarity function")
    alpha: float = Field(0.5, ge=0, le=1, description="asymmetric cosine exponent (0.5 = cosine)")
    weighting: Literal["none", "tfidf", "bm25"] = Field("none", description="feature weighting of the user x item matrix")
    bm25_k1: float = Field(1.2, gt=0, description="BM25 k1")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 b")
    block: int = Field(2048, ge=1, description="items per similarity block (memory bound)")


def similarity_rows(X: sp.csr_matrix, p: ItemKNNParams) -> Callable[[int, int], np.ndarray]:
    """``block(s, e)``: the dense similarity rows of targets ``s:e`` (before the top-k; zero diagonal)."""
    W = weight_matrix(X, p.weighting, p.bm25_k1, p.bm25_b)
    n = W.shape[1]
    sq = np.asarray(W.multiply(W).sum(axis=0)).ravel().astype(np.float32)  # squared norms
    cnt = np.bincount(W.indices, minlength=n).astype(np.float32)
    Wt = W.T.tocsr()

    def block(s: int, e: int) -> np.ndarray:
        # rows = targets j in s:e, columns = neighbours i: sim(i -> j)
        G = (Wt[s:e] @ W).toarray()
        if p.similarity == "cosine":
            G /= np.sqrt(sq[s:e, None]) * np.sqrt(sq[None, :]) + p.shrink + 1e-12
        elif p.similarity == "asymmetric":
            G /= sq[None, :] ** p.alpha * sq[s:e, None] ** (1.0 - p.alpha) + p.shrink + 1e-12
        else:  # jaccard on binary co-occurrence counts
            G /= cnt[s:e, None] + cnt[None, :] - G + p.shrink + 1e-12
        G[np.arange(e - s), np.arange(s, e)] = 0.0
        return G.astype(np.float32, copy=False)

    return block


def knn_similarity(X: sp.csr_matrix, p: ItemKNNParams) -> sp.csr_matrix:
    """Column j holds the k items most similar to j (zero diagonal)."""
    return sp.csr_matrix(rows_topk(similarity_rows(X, p), X.shape[1], p.k, p.block).T)


@register
class ItemKNN(ItemItemRecommender):
    """Item k-NN: cosine / asymmetric cosine / Jaccard, optional TF-IDF or BM25, top-k neighbours."""

    name = "itemknn"
    Params = ItemKNNParams
    search_space = {
        "k": ("log_int", 10, 1000),
        "shrink": ("float", 0.0, 200.0),
        "similarity": ("categorical", ["cosine", "asymmetric", "jaccard"]),
        "alpha": ("float", 0.0, 1.0),
        "weighting": ("categorical", ["none", "tfidf", "bm25"]),
    }

    def _fit(self, X, train) -> None:
        self.similarity = knn_similarity(X, self.params)


class RP3betaParams(Params):
    alpha: float = Field(0.6, ge=0, description="exponent on the random-walk transition probabilities")
    beta: float = Field(0.6, ge=0, description="popularity penalty: divide by popularity^beta")
    k: int = Field(500, ge=1, description="neighbours kept per item")
    normalize: bool = Field(False, description="L1-normalise each item's row of the final similarity")
    block: int = Field(2048, ge=1, description="items per block (memory bound)")


@register
class RP3beta(ItemItemRecommender):
    """RP3beta (Paudel et al. 2017): 3-step random walk item -> user -> item, popularity-penalised."""

    name = "rp3beta"
    Params = RP3betaParams
    search_space = {
        "alpha": ("float", 0.0, 2.0),
        "beta": ("float", 0.0, 1.0),
        "k": ("log_int", 10, 1000),
        "normalize": ("categorical", [False, True]),
    }

    def _fit(self, X, train) -> None:
        p = self.params
        X = sp.csr_matrix(X, dtype=np.float32)
        n = X.shape[1]
        deg_u = np.diff(X.indptr).astype(np.float64)
        deg_i = np.bincount(X.indices, minlength=n).astype(np.float64)
        with np.errstate(divide="ignore"):
            wu = np.where(deg_u > 0, deg_u ** (-p.alpha), 0.0)  # (x_ui / deg_u)^alpha for binary x
            wi = np.where(deg_i > 0, deg_i ** (-p.alpha), 0.0)
            pen = np.where(deg_i > 0, deg_i ** (-p.beta), 0.0)
        Xw = sp.csr_matrix(sp.diags(wu.astype(np.float32)) @ X)
        Xc = X.tocsc()

        def block(s: int, e: int) -> np.ndarray:
            # W[i, j] = deg_i^-a * sum_u x_ui x_uj deg_u^-a * deg_j^-beta, rows i in s:e
            R = (Xc[:, s:e].T @ Xw).toarray()
            R *= wi[s:e, None].astype(np.float32)
            R *= pen[None, :].astype(np.float32)
            R[np.arange(e - s), np.arange(s, e)] = 0.0
            return R

        S = rows_topk(block, n, p.k, p.block)
        if p.normalize:
            sums = np.asarray(S.sum(axis=1)).ravel()
            S = sp.csr_matrix(sp.diags(np.where(sums > 0, 1.0 / np.maximum(sums, 1e-30), 0.0).astype(np.float32)) @ S)
        self.similarity = S
