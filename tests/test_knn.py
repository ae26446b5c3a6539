from __future__ import annotations

import numpy as np
import pytest

from toprec import Dataset, models
from toprec.models.knn import weight_matrix


def _data(seed=0, n_users=30, n_items=12):
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    X[0] = 1.0
    u, i = np.nonzero(X)
    return Dataset.from_events(u, i, np.arange(len(u)))


def _dense_sim(W, similarity, shrink, alpha):
    G = W.T @ W
    sq = (W * W).sum(0)
    cnt = (W > 0).sum(0)
    if similarity == "cosine":
        S = G / (np.sqrt(sq)[:, None] * np.sqrt(sq)[None, :] + shrink + 1e-12)
    elif similarity == "asymmetric":  # S[i, j] = sim(i -> j) = G / (sq_i^a sq_j^(1-a))
        S = G / (sq[:, None] ** alpha * sq[None, :] ** (1 - alpha) + shrink + 1e-12)
    else:
        S = G / (cnt[:, None] + cnt[None, :] - G + shrink + 1e-12)
    np.fill_diagonal(S, 0.0)
    return S


@pytest.mark.parametrize("similarity", ["cosine", "asymmetric", "jaccard"])
@pytest.mark.parametrize("weighting", ["none", "tfidf", "bm25"])
def test_itemknn_matches_dense_reference(similarity, weighting):
    ds = _data()
    if similarity == "jaccard" and weighting != "none":
        pytest.skip("jaccard is for binary data")
    m = models.get("itemknn", k=100, shrink=2.0, similarity=similarity, alpha=0.3, weighting=weighting, block=5)
    m.fit(ds)
    W = weight_matrix(ds.matrix, weighting).toarray().astype(np.float64)
    ref = _dense_sim(W, similarity, 2.0, 0.3)
    np.testing.assert_allclose(m.similarity.toarray(), ref, rtol=1e-4, atol=1e-6)


def test_itemknn_keeps_top_k_per_target():
    ds = _data(n_items=20)
    m = models.get("itemknn", k=3, shrink=0.0, block=7).fit(ds)
    S = m.similarity.toarray()
    assert ((S > 0).sum(axis=0) <= 3).all()
    full = models.get("itemknn", k=100, shrink=0.0).fit(ds).similarity.toarray()
    for j in range(20):
        kept = np.flatnonzero(S[:, j])
        assert np.all(full[kept, j] >= np.sort(full[:, j])[-3] - 1e-6)


def test_bm25_weighting_formula():
    ds = _data()
    X = ds.matrix.toarray().astype(np.float64)
    n_u = X.sum(1)
    idf = np.log(X.shape[1] / (1 + n_u)).clip(min=0)
    length = X.sum(0)
    k1, b = 1.2, 0.75
    ref = X * (k1 + 1) / (X + k1 * (1 - b + b * length / length.mean())).clip(min=1e-12) * idf[:, None]
    ref = np.where(X > 0, ref, 0)
    np.testing.assert_allclose(weight_matrix(ds.matrix, "bm25").toarray(), ref, rtol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_rp3beta_matches_dense_reference(normalize):
    ds = _data()
    a, b = 0.7, 0.4
    m = models.get("rp3beta", alpha=a, beta=b, k=100, normalize=normalize, block=4).fit(ds)
    X = ds.matrix.toarray().astype(np.float64)
    Pui = (X / X.sum(1, keepdims=True)) ** a
    Piu = (X.T / X.sum(0)[:, None]) ** a
    W = Piu @ Pui / X.sum(0)[None, :] ** b
    np.fill_diagonal(W, 0.0)
    if normalize:
        W = W / W.sum(1, keepdims=True)
    np.testing.assert_allclose(m.similarity.toarray(), W, rtol=1e-4, atol=1e-7)


def test_rows_topk_keeps_the_k_largest_positive_values_of_each_row_with_ties_and_zeros():
    from toprec.models.knn import rows_topk

    rng = np.random.default_rng(0)
    # sparse rows of tied values (a co-occurrence's 0s and equal cosines), negatives never kept
    R = rng.choice([0.0, 0.0, 0.0, 0.25, 0.5, 0.5, -0.5], size=(40, 40)).astype(np.float32)
    S = rows_topk(lambda s, e: R[s:e].copy(), 40, 5, block=6).toarray()
    for row, kept in zip(R, S):
        want = np.sort(row[row > 0])[::-1][:5]
        assert np.array_equal(np.sort(kept[kept > 0])[::-1], want)
        assert np.all(row[kept > 0] == kept[kept > 0])  # each kept value is the row's own at that column
