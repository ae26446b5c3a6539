"""The compiled top-k of sparse scores (models.sparse_kernels): the dense rule's lists (seen masked, cold users
on popularity, ties to the lower item), bit-identical scores to the scipy path, any batch size or thread count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import Dataset, ToprecError, models
from toprec.models import sparse_kernels
from toprec.recommend import seen_and_cold, topk_rows

pytestmark = pytest.mark.skipif(not sparse_kernels.available(), reason="numba (the fast extra) not installed")


def _sparse(rng, shape, density, ints=False):
    M = sp.random(*shape, density=density, format="csr", random_state=rng, dtype=np.float32)
    if ints:  # small integers: many exactly tied scores, some negative
        M.data = rng.integers(-2, 4, M.nnz).astype(np.float32)
    else:
        M.data = (M.data - 0.3).astype(np.float32)
    return M


def _reference(H, B, k, exclude, popularity):
    dense = np.asarray((H @ B).toarray(), dtype=np.float32)
    seen_and_cold(dense, H, popularity, exclude)
    return topk_rows(dense, k)


@pytest.mark.parametrize("ints", [False, True])
@pytest.mark.parametrize("k", [1, 4, 25, 60])
def test_kernel_gives_the_dense_rule_lists(ints, k):
    rng = np.random.default_rng(k + 10 * ints)
    n_users, n_items = 70, 40
    H = _sparse(rng, (n_users, n_items), 0.08)
    H.data[:] = 1.0
    H = sp.csr_matrix(sp.diags((np.arange(n_users) >= 4).astype(np.float32)) @ H)  # 4 cold users
    H.eliminate_zeros()
    B = _sparse(rng, (n_items, n_items), 0.15, ints)
    pop = rng.integers(0, 5, n_items).astype(np.float32)  # tied popularity too
    for exclude, popularity in ((H, pop), (None, pop), (H, None), (None, None)):
        want_i, want_s = _reference(H, B, k, exclude, popularity)
        got_i, got_s, peak = sparse_kernels.rank_sparse_product(H, B, k, exclude, popularity)
        assert np.array_equal(got_i, want_i)
        assert np.array_equal(got_s, want_s)  # bit for bit: the same float32 sums in the same order
        assert got_i.dtype == np.int32 and got_s.dtype == np.float32
        assert peak == pytest.approx(float((H @ B).max()))
    # k past the catalogue: -1 / -inf once every unmasked item is listed
    got_i, got_s, _ = sparse_kernels.rank_sparse_product(H, B, n_items + 3, H, pop)
    assert (got_i[:, -3:] == -1).all() and np.isneginf(got_s[:, -3:]).all()


def test_any_chunk_size_or_thread_count_gives_the_same_lists():
    rng = np.random.default_rng(5)
    H = _sparse(rng, (300, 50), 0.1)
    B = _sparse(rng, (50, 50), 0.2, ints=True)
    ref = sparse_kernels.rank_sparse_product(H, B, 7, H, np.arange(50, dtype=np.float32))
    seen_rows = []
    for chunk, threads in ((1, 1), (7, 3), (64, 2), (1000, 4)):
        got = sparse_kernels.rank_sparse_product(H, B, 7, H, np.arange(50, dtype=np.float32), chunk=chunk,
                                                 threads=threads, on_chunk=seen_rows.append)  # fmt: skip
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
    assert sum(seen_rows) == 4 * 300


def test_seen_items_are_never_listed_and_nan_is_reported():
    rng = np.random.default_rng(2)
    H = _sparse(rng, (50, 30), 0.2)
    B = _sparse(rng, (30, 30), 0.5)
    items, _, _ = sparse_kernels.rank_sparse_product(H, B, 30, H, None)
    rows = np.repeat(np.arange(50), 30)
    listed = items.ravel() >= 0
    assert not H.toarray().astype(bool)[rows[listed], items.ravel()[listed]].any()
    assert ((items >= 0).sum(axis=1) == 30 - np.diff(H.indptr)).all()  # every unseen item, nothing else
    B.data[0] = np.nan
    B2 = sp.csr_matrix(B)
    H2 = sp.csr_matrix(np.ones((1, 30), dtype=np.float32))
    assert np.isnan(sparse_kernels.rank_sparse_product(H2, B2, 3)[2])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    pop = rng.random(40) ** 2
    X = rng.random((150, 40)) < 0.03 + 0.4 * pop
    X[:3] = False  # users with no events: popularity
    X[3, :] = False
    X[3, 0] = True  # one event
    u, i = np.nonzero(X)
    return Dataset.from_events(u, i, np.arange(len(u)))


@pytest.mark.parametrize("params", [{"density": 0.1, "factor_size": 4}, {"density": 0.6, "factor_size": 12}])
def test_sansa_recommend_compiled_equals_scipy_path(monkeypatch, params):
    ds = _data()
    m = models.get("sansa", l2=10.0, **params).fit(ds)
    users = np.r_[np.arange(ds.n_users), -1, 10**6]  # + unknown users
    hist = m.histories([[0, 5], [], [39, 1, 2]])
    for kwargs in ({"k": 10}, {"k": 3, "exclude_seen": False}, {"k": 50}, {"k": 10, "batch_size": 1}):
        got = m.recommend(users, **kwargs)
        got_h = m.recommend(np.array([-1, -1, 4]), history=hist, k=kwargs["k"])
        monkeypatch.setenv("TOPREC_KERNELS", "numpy")
        assert not sparse_kernels.available()
        want = m.recommend(users, **kwargs)
        want_h = m.recommend(np.array([-1, -1, 4]), history=hist, k=kwargs["k"])
        monkeypatch.delenv("TOPREC_KERNELS")
        assert np.array_equal(got.items, want.items) and np.array_equal(got.scores, want.scores)
        assert np.array_equal(got_h.items, want_h.items) and np.array_equal(got_h.scores, want_h.scores)
        assert np.array_equal(got.users, want.users)


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_sansa_recommend_refuses_non_finite_scores(monkeypatch, kernels):
    monkeypatch.setenv("TOPREC_KERNELS", kernels)  # the compiled path and the shared top-k's sparse path
    m = models.get("sansa", l2=10.0, density=0.5, factor_size=8).fit(_data(1))
    m.similarity = m.similarity.copy()
    m.similarity.data[:] = np.inf
    with pytest.raises(ToprecError, match="not finite"):
        m.recommend(k=5)
    with pytest.raises(ToprecError, match="k must be"):
        m.recommend(k=0)
