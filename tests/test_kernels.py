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


# ------------------------------------------------------------------ the tiled kernel and the fused top-k
def _model(S, X, cls=None):
    """An item-item model with the given similarity over training matrix X (no fit)."""
    m = (cls or models.get_class("ease"))(l2=1.0, device="cpu")
    m.n_users, m.n_items = X.shape
    m.train_matrix = sp.csr_matrix(X, dtype=np.float32)
    m.item_popularity = np.asarray(X.sum(axis=0)).ravel().astype(np.float32)
    m.similarity = np.ascontiguousarray(S, dtype=np.float32)
    m.form_, m._B_dev, m.fitted, m.device_ = "items", None, True, "cpu"
    return m


def _reference(scores: np.ndarray, k: int):
    """Top k by a full stable sort (score desc, item asc), -inf -> -1: what the shared top-k promises."""
    order = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    items = np.where(np.isneginf(top), -1, order).astype(np.int32)
    if k > scores.shape[1]:
        pad = k - scores.shape[1]
        items = np.hstack([items, np.full((len(items), pad), -1, np.int32)])
        top = np.hstack([top, np.full((len(top), pad), -np.inf, np.float32)])
    return items, top


def _recommend(m, monkeypatch, mode, **kw):
    monkeypatch.setenv("TOPREC_KERNELS", mode)
    return m.recommend(**kw)


@pytest.mark.parametrize("item_block", [64, 1024])
@pytest.mark.parametrize("binary", [True, False])
def test_tiled_kernel_is_scipy_bit_for_bit(monkeypatch, item_block, binary):
    monkeypatch.setattr(kernels, "ITEM_BLOCK", item_block)
    X = _data(n_items=700, binary=binary)  # 700 columns: 5 tiles of 128 and a rest of 60
    B = np.random.default_rng(2).standard_normal((700, 700)).astype(np.float32)
    ref = np.asarray(X @ B, dtype=np.float32)
    assert np.array_equal(kernels.sparse_dense(X, B), ref)
    Y = X[::-1][:, ::-1].tocsr()  # columns reversed: indices stored in decreasing order (unsorted)
    Y.has_sorted_indices = False
    Y.indices, Y.data = Y.indices.copy(), Y.data.copy()
    assert not Y.has_sorted_indices
    assert np.array_equal(kernels.sparse_dense(Y, B), np.asarray(Y @ B, dtype=np.float32))  # stored order kept
    monkeypatch.setenv("TOPREC_KERNELS", "unfused")  # the previous kernel: the same numbers
    assert np.array_equal(kernels.sparse_dense(X, B), ref)


def test_fused_recommend_matches_the_shared_topk(monkeypatch):
    X = _data(300, 500, seed=4, binary=True)
    S = np.random.default_rng(5).standard_normal((500, 500)).astype(np.float32)
    m = _model(S, X)
    assert m._recommend_fused(np.arange(300), m.train_matrix, 10, True, None, 2**29) is not None  # it is taken
    users = np.r_[np.arange(300), -1, 10_000]  # two unknown users: popularity
    for kw in ({"k": 10}, {"k": 10, "exclude_seen": False}, {"k": 600}, {"k": 1}):
        fast = _recommend(m, monkeypatch, "", users=users, **kw)
        for mode in ("numpy", "unfused"):
            slow = _recommend(m, monkeypatch, mode, users=users, **kw)
            assert np.array_equal(fast.items, slow.items), (kw, mode)
            assert np.array_equal(fast.scores.view(np.int32), slow.scores.view(np.int32)), (kw, mode)  # bits
    # weighted, unsorted histories given explicitly, an empty one among them
    H = _data(40, 500, seed=6)[:, ::-1].tocsr()
    H = sp.vstack([H, sp.csr_matrix((1, 500), dtype=np.float32)], format="csr")
    H.has_sorted_indices = False
    fast = _recommend(m, monkeypatch, "", users=np.full(41, -1), history=H, k=10)
    slow = _recommend(m, monkeypatch, "numpy", users=np.full(41, -1), history=H, k=10)
    assert np.array_equal(fast.items, slow.items) and np.array_equal(fast.scores, slow.scores)
    assert np.array_equal(fast.items[-1], np.argsort(-m.item_popularity, kind="stable")[:10])


@pytest.mark.parametrize("threads", ["1", "3"])
def test_fused_recommend_does_not_depend_on_the_batch(monkeypatch, threads):
    monkeypatch.setenv("TOPREC_WORKERS", threads)
    X = _data(300, 500, seed=7, binary=True)
    m = _model(np.random.default_rng(8).standard_normal((500, 500)), X)
    base = m.recommend(k=10, batch_size=1000)
    for bs in (9, 64, 299):
        r = m.recommend(k=10, batch_size=bs)
        assert np.array_equal(r.items, base.items) and np.array_equal(r.scores, base.scores), bs
    part = m.recommend(np.arange(100, 200), k=10)  # any subset: the same rows
    assert np.array_equal(part.items, base.items[100:200]) and np.array_equal(part.scores, base.scores[100:200])


def test_fused_ties_go_to_the_lower_item(monkeypatch):
    X = _data(200, 300, seed=9, binary=True)
    S = np.random.default_rng(10).integers(0, 3, (300, 300)).astype(np.float32)  # small integers: ties everywhere
    m = _model(S, X)
    r = _recommend(m, monkeypatch, "", k=12)
    scores = (X.toarray().astype(np.float64) @ S).astype(np.float32)
    scores[X.toarray() > 0] = -np.inf
    items, top = _reference(scores, 12)
    assert (top[:, :-1] == top[:, 1:]).any()  # the test has ties to break
    assert np.array_equal(r.items, items) and np.array_equal(r.scores, top)


def test_fused_masks_seen_items_and_pads(monkeypatch):
    rng = np.random.default_rng(11)
    D = (rng.random((60, 40)) < 0.5).astype(np.float32)
    D[0] = 1.0  # a user who saw every item: nothing to recommend
    D[1] = 0.0  # no history: popularity
    X = sp.csr_matrix(D)
    m = _model(rng.standard_normal((40, 40)), X)
    r = _recommend(m, monkeypatch, "", k=30)
    seen = X.toarray() > 0
    for u in range(60):
        got = r.items[u][r.items[u] >= 0]
        assert not seen[u, got].any()  # never a seen item
        assert len(got) == min(30, (~seen[u]).sum())  # every unseen one up to k, then -1
    assert (r.items[0] == -1).all() and np.isneginf(r.scores[0]).all()
    slow = _recommend(m, monkeypatch, "numpy", k=30)
    assert np.array_equal(r.items, slow.items) and np.array_equal(r.scores, slow.scores)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fused_refuses_non_finite_scores(monkeypatch, bad):
    from toprec.errors import ToprecError

    X = _data(50, 40, seed=12, binary=True)
    S = np.random.default_rng(13).standard_normal((40, 40)).astype(np.float32)
    S[3, 7] = bad  # reaches every user who saw item 3 (even where 7 is seen too: checked before masking)
    m = _model(S, X)
    for mode in ("", "numpy"):
        with pytest.raises(ToprecError, match="not finite"):
            _recommend(m, monkeypatch, mode, k=5)


def test_fused_only_where_scores_are_the_product():
    class Shifted(models.get_class("ease")):  # a model whose scores are not history @ S
        def _score(self, users, history):
            return super()._score(users, history) + 1.0

    X = _data(50, 40, seed=14, binary=True)
    S = np.random.default_rng(15).standard_normal((40, 40))
    assert _model(S, X)._product_similarity() is not None
    assert _model(S, X, Shifted)._product_similarity() is None
    m = _model(S, X)
    m.similarity = np.asfortranarray(m.similarity)  # not C-ordered: the shared path
    assert m._product_similarity() is None
