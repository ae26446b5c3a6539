"""The compiled kernels (numba): the same numbers as the scipy paths they replace, for any batch and thread count."""

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import Dataset, models
from toprec.models import kernels, linalg

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed (the 'fast' extra)")


def _data(n_users=300, n_items=700, seed=0, binary=False):
    rng = np.random.default_rng(seed)
    X = sp.random(n_users, n_items, density=0.03, format="csr", random_state=seed, dtype=np.float32)
    X.data = np.ones_like(X.data) if binary else rng.random(X.nnz, dtype=np.float32) + 0.5
    heavy = sp.csr_matrix((rng.random((5, n_items)) < 0.5).astype(np.float32))  # a few heavy users (long rows)
    X = sp.vstack([heavy, X[5:]], format="csr")
    X.sort_indices()
    return X


def test_sparse_dense_is_scipy_bit_for_bit():
    X = _data()
    B = np.random.default_rng(1).standard_normal((700, 700)).astype(np.float32)  # 700: not a multiple of WIDTH
    ref = np.asarray(X @ B, dtype=np.float32)
    out = kernels.sparse_dense(X, B)
    assert np.array_equal(out, ref)  # same float32 sums in the same order (no FMA, no reassociation)
    # any split of the rows gives the same rows
    parts = np.concatenate([kernels.sparse_dense(X[s : s + 37], B) for s in range(0, X.shape[0], 37)])
    assert np.array_equal(parts, out)
    assert np.array_equal(kernels.sparse_dense(X[:0], B), np.empty((0, 700), np.float32))


@pytest.mark.parametrize("threads", [1, 3])
def test_gram_matches_scipy(threads):
    X = _data()
    G = linalg.mirror_upper(kernels.gram_upper(X, threads=threads, rows=64))
    ref = (X.T @ X).toarray()
    np.testing.assert_allclose(G, ref, rtol=1e-5, atol=1e-4)
    assert np.array_equal(G, G.T)
    Xb = _data(binary=True)  # 0/1 data: integer sums, exact whatever the order
    assert np.array_equal(linalg.mirror_upper(kernels.gram_upper(Xb, threads=threads)), (Xb.T @ Xb).toarray())


def test_gram_unsorted_indices():
    X = _data()
    Y = sp.csr_matrix((X.data[::-1].copy(), X.indices[::-1].copy(), (X.indptr[-1] - X.indptr[::-1]).copy()),
                      shape=X.shape)  # fmt: skip
    Y.has_sorted_indices = False
    assert not Y.has_sorted_indices
    np.testing.assert_allclose(linalg.mirror_upper(kernels.gram_upper(Y)), (Y.T @ Y).toarray(), rtol=1e-5, atol=1e-4)


def test_ease_lists_same_with_and_without_kernels(monkeypatch):
    X = _data(400, 300, seed=3, binary=True)
    u, i = X.nonzero()
    ds = Dataset.from_events(u, i)
    fast = models.get("ease", l2=5.0, device="cpu").fit(ds)
    r1 = fast.recommend(k=10, batch_size=64)
    r2 = fast.recommend(k=10, batch_size=1000)
    monkeypatch.setenv("TOPREC_KERNELS", "numpy")
    assert not kernels.available()
    slow = models.get("ease", l2=5.0, device="cpu").fit(ds)
    np.testing.assert_allclose(fast.similarity, slow.similarity, rtol=1e-4, atol=1e-5)
    r3 = slow.recommend(k=10, batch_size=64)
    assert np.array_equal(r1.items, r2.items) and np.array_equal(r1.scores, r2.scores)
    # same similarity -> bit-identical scores through either product
    fast_scores = fast.score(np.arange(50))
    slow.similarity = fast.similarity
    assert np.array_equal(slow.score(np.arange(50)), fast_scores)
    assert (r1.items == r3.items).mean() > 0.99  # the fits differ only in float rounding of the Gram order
