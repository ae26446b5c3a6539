"""SANSA (sparse approximate-inverse EASE): exact at full density, close to EASE when dense enough,
sparse weights (saved as CSR arrays), memory estimate, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import Dataset, ToprecError, models
from toprec.models.sparse_inverse import blocks_by_work, lower_gram, sansa_weights


def _data(n_users=120, n_items=30, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    pop = rng.random(n_items) ** 2  # uneven popularity
    X = rng.random((n_users, n_items)) < 0.05 + 0.5 * pop[None, :]
    X[np.arange(n_users), np.arange(n_users) % n_items] = True
    u, i = np.nonzero(X)
    return Dataset.from_events(u, i, np.arange(len(u)))


def _ease_ref(X: np.ndarray, l2: float) -> np.ndarray:
    P = np.linalg.inv(X.T @ X + l2 * np.eye(X.shape[1]))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def test_lower_gram_is_exact_in_small_blocks(monkeypatch):
    import toprec.models.sparse_inverse as si

    X = sp.csr_matrix(_data().matrix)
    monkeypatch.setattr(si, "GRAM_BLOCK_WORK", 50)  # many blocks
    Gl = lower_gram(X)
    G = (X.T @ X).toarray()
    assert np.array_equal(Gl.toarray(), np.tril(G))
    assert Gl.has_sorted_indices
    assert blocks_by_work(np.array([5, 5, 5, 20, 1]), 10) == [(0, 2), (2, 3), (3, 4), (4, 5)]


def test_full_density_is_exactly_ease():
    ds = _data()
    X = ds.matrix.toarray().astype(np.float64)
    n = X.shape[1]
    B = sansa_weights(ds.matrix, 20.0, n, n).toarray()
    np.testing.assert_allclose(B, _ease_ref(X, 20.0), atol=1e-5)
    # the model at density 1 scores like EASE (same lists)
    s = models.get("sansa", l2=20.0, density=1.0, factor_size=n).fit(ds)
    e = models.get("ease", l2=20.0, form="items", device="cpu").fit(ds)
    np.testing.assert_allclose(s.score(np.arange(10)), e.score(np.arange(10)), atol=1e-4)
    assert np.array_equal(s.recommend(k=5).items, e.recommend(k=5).items)


def test_sparser_is_sparse_and_approaches_ease_as_density_grows():
    ds = _data(n_users=300, n_items=40, seed=1)
    X = ds.matrix.toarray().astype(np.float64)
    ref = _ease_ref(X, 20.0)
    errs = []
    for k in (4, 12, 40):
        B = sansa_weights(ds.matrix, 20.0, k, k)
        assert B.getnnz(axis=0).max() <= k  # at most k weights per target item
        assert np.all(B.diagonal() == 0)
        errs.append(np.abs(B.toarray() - ref).sum())
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3
    # rankings of a half-dense model agree with EASE's for most users
    s = models.get("sansa", l2=20.0, density=0.5, factor_size=20).fit(ds).recommend(k=5).items
    e = models.get("ease", l2=20.0, device="cpu").fit(ds).recommend(k=5).items
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(s, e)])
    assert overlap > 0.8


def test_weights_are_sparse_saved_and_loaded(tmp_path):
    ds = _data()
    m = models.get("sansa", l2=30.0, density=0.2, factor_size=6).fit(ds)
    assert sp.issparse(m.similarity) and m.similarity.getnnz(axis=0).max() <= 6  # ceil(0.2 x 30)
    m.save(tmp_path / "m")
    back = models.load(tmp_path / "m")
    assert sp.issparse(back.similarity) and back.similarity.nnz == m.similarity.nnz
    a, b = m.recommend(k=7), back.recommend(k=7)
    assert np.array_equal(a.items, b.items) and np.allclose(a.scores, b.scores)
    # the lists do not depend on the batch size
    c = m.recommend(k=7, batch_size=7)
    assert np.array_equal(a.items, c.items)


def test_memory_estimate_grows_and_has_no_square_term():
    m = models.get("sansa", density=0.001, max_per_item=200, factor_size=32)
    small = m.memory_estimate(10_000, 20_000, 1_000_000)
    big = m.memory_estimate(1_000_000, 200_000, 20_000_000)
    assert small.bytes < big.bytes < 16 * 2**30  # the large point is planned under 16 GB
    assert "200,000 items" in big.what
    # EASE's dense form at the same size needs the items^2 matrices
    assert models.get("ease", form="items", device="cpu").memory_estimate(1_000_000, 200_000, 20_000_000).bytes > 4 * big.bytes
    # more weights per item, more memory
    assert models.get("sansa", density=0.01, max_per_item=2000).memory_estimate(1_000_000, 200_000, 20_000_000).bytes > big.bytes


@pytest.mark.parametrize("params", [{"density": 0}, {"density": 1.5}, {"factor_size": 1}, {"l2": -1}, {"steps": 2}])
def test_bad_parameters_are_one_line_errors(params):
    with pytest.raises(ToprecError) as exc:
        models.get("sansa", **params)
    assert "\n" not in str(exc.value) and "sansa" in str(exc.value)


@pytest.mark.parametrize("params", [{"density": 0.05, "factor_size": 3}, {"density": 0.5, "factor_size": 10}])
def test_sparse_ranking_gives_the_dense_lists(params):
    """recommend ranks the sparse scores (rows with >= k positive scores) or densifies (the others, cold users):
    the lists are those of the dense scores ranked by the shared top-k, whatever the batch size."""
    from toprec.recommend import seen_and_cold, topk_rows

    ds = _data(n_users=90, n_items=30, seed=3)
    m = models.get("sansa", l2=10.0, **params).fit(ds)
    users = np.r_[np.arange(ds.n_users), -1]  # + an unknown user (popularity)
    for k in (3, 12):
        hist = m._history(users, None)
        dense = seen_and_cold(m.score(users), hist, m.item_popularity, hist)
        want_items, want_scores = topk_rows(dense, k)
        for bs in (None, 7):
            got = m.recommend(users, k=k, batch_size=bs)
            assert np.array_equal(got.items, want_items)
            np.testing.assert_allclose(got.scores, want_scores, rtol=1e-6)
    # without masking, the same rule
    got = m.recommend(users, k=5, exclude_seen=False)
    dense = seen_and_cold(m.score(users), m._history(users, None), m.item_popularity)
    assert np.array_equal(got.items, topk_rows(dense, 5)[0])


def test_fit_refuses_before_any_allocation(monkeypatch):
    from toprec.memory import ENV

    monkeypatch.setenv(ENV, "64K")
    m = models.get("sansa")

    def boom(*a, **k):  # pragma: no cover - must not run
        raise AssertionError("_fit ran")

    monkeypatch.setattr(m, "_fit", boom)
    with pytest.raises(ToprecError, match=r"needs ~.*sparse Gram.* 64.0 KB available"):
        m.fit(_data())
    assert not m.fitted
