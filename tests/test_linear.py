"""EDLAE, higher-order EASE (EASE^R) and ADMM SLIM against exact float64 references on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import nnls

from toprec import Dataset, ToprecError, models
from toprec.models import Recommender
from toprec.models.linear import (
    easer_admm,
    easer_exact,
    gram_blocked,
    pair_features,
    select_pairs,
    select_pairs_sparse,
)


def _data(n_users=80, n_items=14, density=0.35, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.random((n_users, n_items)) < density
    X[:, 0] |= rng.random(n_users) < 0.5  # a popular item
    X[np.arange(n_users), np.arange(n_users) % n_items] = True  # every user and item has an event
    u, i = np.nonzero(X)
    return Dataset.from_events(u, i, np.arange(len(u)))


def _dense(ds: Dataset) -> np.ndarray:
    return ds.matrix.toarray().astype(np.float64)


def _ease_ref(X: np.ndarray, lam) -> np.ndarray:
    """EASE with a ridge vector: B = I - P dMat(1/diag P), P = (X^T X + dMat(lam))^-1."""
    n = X.shape[1]
    P = np.linalg.inv(X.T @ X + np.diag(np.broadcast_to(lam, (n,))))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def _easer_ref(X: np.ndarray, pairs: np.ndarray, l2: float, l2_pairs: float):
    """Column by column constrained ridge regression of x_k on [X Z] (float64, explicit loop)."""
    n, m = X.shape[1], len(pairs)
    Z = X[:, pairs[:, 0]] * X[:, pairs[:, 1]]
    A = np.hstack([X, Z])
    H = A.T @ A + np.diag(np.r_[np.full(n, l2), np.full(m, l2_pairs)])
    W = np.zeros((n + m, n))
    for k in range(n):
        fixed = {k} | {n + p for p in range(m) if k in pairs[p]}
        free = [t for t in range(n + m) if t not in fixed]
        W[free, k] = np.linalg.solve(H[np.ix_(free, free)], A[:, free].T @ X[:, k])
    return W[:n], W[n:]


# ----------------------------------------------------------------------- EDLAE


def test_edlae_without_dropout_is_ease():
    ds = _data()
    X = _dense(ds)
    m = models.get("edlae", l2=7.0, dropout=0.0).fit(ds)
    np.testing.assert_allclose(m.similarity, _ease_ref(X, 7.0), rtol=1e-3, atol=1e-5)
    ease = models.get("ease", l2=7.0).fit(ds)
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(m.score(users), ease.score(users), rtol=1e-3, atol=1e-4)


def test_edlae_closed_forms():
    ds = _data(seed=1)
    X = _dense(ds)
    G = X.T @ X
    p, l2 = 0.4, 3.0
    lam = l2 + p / (1 - p) * np.diag(G)
    emph = models.get("edlae", l2=l2, dropout=p).fit(ds)
    np.testing.assert_allclose(emph.similarity, _ease_ref(X, lam), rtol=1e-3, atol=1e-5)
    dlae = models.get("edlae", l2=l2, dropout=p, zero_diagonal=False).fit(ds)
    ref = np.linalg.solve(G + np.diag(lam), G)  # (G + Lambda)^-1 G
    np.testing.assert_allclose(dlae.similarity, ref, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("zero_diagonal", [True, False])
def test_edlae_user_space_equals_item_space(tmp_path, zero_diagonal):
    """Wide data (users < items): the Woodbury form scores exactly as the items x items solve, for any
    history (training users and a fold-in row), and survives save/load."""
    ds = _data(n_users=12, n_items=40, density=0.3, seed=3)
    assert ds.n_users < ds.n_items
    X = _dense(ds)
    p, l2 = 0.3, 2.0
    lam = l2 + p / (1 - p) * np.diag(X.T @ X)
    ref_B = _ease_ref(X, lam) if zero_diagonal else np.linalg.solve(X.T @ X + np.diag(lam), X.T @ X)
    auto = models.get("edlae", l2=l2, dropout=p, zero_diagonal=zero_diagonal).fit(ds)
    items = models.get("edlae", l2=l2, dropout=p, zero_diagonal=zero_diagonal, form="items").fit(ds)
    assert auto.form_ == "users" and auto.similarity is None and items.form_ == "items"
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(auto.score(users), X @ ref_B, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(auto.score(users), items.score(users), rtol=1e-3, atol=1e-4)
    h = sp.csr_matrix(np.eye(1, ds.n_items, 5, dtype=np.float32) + np.eye(1, ds.n_items, 17, dtype=np.float32))
    np.testing.assert_allclose(auto.score(np.array([-1]), history=h), h.toarray() @ ref_B, rtol=1e-3, atol=1e-4)
    back = Recommender.load(auto.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.recommend(users, k=5).items, auto.recommend(users, k=5).items)


def test_edlae_rejects_bad_dropout():
    with pytest.raises(ToprecError, match="parameter 'dropout'"):
        models.get("edlae", dropout=1.0)


# ---------------------------------------------------------------------- EASE^R


def test_select_pairs_top_counts_ties_and_support():
    G = np.array([[9, 5, 5, 1], [5, 9, 2, 5], [5, 2, 9, 7], [1, 5, 7, 9]], dtype=np.float32)
    assert select_pairs(G, 2, 1).tolist() == [[0, 1], [2, 3]]  # 7, then the first of the 5s
    assert select_pairs(G, 10, 5).tolist() == [[0, 1], [0, 2], [1, 3], [2, 3]]
    assert select_pairs(G, 10, 8).shape == (0, 2)
    assert select_pairs(G, 0, 1).shape == (0, 2)


def test_pair_features():
    H = sp.csr_matrix(np.array([[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 0, 0]], dtype=np.float32))
    Z = pair_features(H, np.array([[0, 1], [1, 3], [2, 3]]))
    assert Z.toarray().tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_easer_without_pairs_is_ease(tmp_path):
    ds = _data()
    m = models.get("easer", l2=7.0, n_pairs=0, dropout=0.0).fit(ds)
    assert m.pairs.shape == (0, 2) and m.pair_weights.shape == (0, ds.n_items)
    np.testing.assert_allclose(m.similarity, _ease_ref(_dense(ds), 7.0), rtol=1e-3, atol=1e-5)
    with_dropout = models.get("easer", l2=7.0, n_pairs=0, dropout=0.3).fit(ds)
    edlae = models.get("edlae", l2=7.0, dropout=0.3).fit(ds)
    np.testing.assert_allclose(with_dropout.similarity, edlae.similarity, rtol=1e-5, atol=1e-7)
    loaded = Recommender.load(m.save(tmp_path / "m"))
    assert np.array_equal(loaded.recommend(k=5).items, m.recommend(k=5).items)


def test_easer_sparse_pair_selection_matches_dense():
    ds = _data(n_users=60, n_items=30, density=0.3, seed=4)
    X = _dense(ds)
    for n_pairs, support in [(0, 1), (5, 2), (25, 3), (400, 1), (10, 10**6)]:
        dense = select_pairs((X.T @ X).astype(np.float32), n_pairs, support)
        np.testing.assert_array_equal(select_pairs_sparse(ds.matrix, n_pairs, support), dense)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_easer_user_space_equals_the_constrained_optimum(tmp_path, dropout):
    """Wide data: the Woodbury form scores exactly as B and C of the explicit constrained regression
    (training users and a fold-in row with pair features), and survives save/load."""
    ds = _data(n_users=14, n_items=30, density=0.35, seed=5)
    assert ds.n_users < ds.n_items
    X = _dense(ds)
    kw = dict(l2=4.0, l2_pairs=6.0, n_pairs=15, min_support=2, dropout=dropout)
    wide = models.get("easer", **kw).fit(ds)
    items = models.get("easer", form="items", **kw).fit(ds)
    assert wide.form_ == "users" and wide.similarity is None and len(wide.pairs) == 15
    np.testing.assert_array_equal(wide.pairs, items.pairs)
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(wide.score(users), items.score(users), rtol=1e-3, atol=2e-4)
    if dropout == 0.0:
        B_ref, C_ref = _easer_ref(X, wide.pairs, 4.0, 6.0)
        Z = X[:, wide.pairs[:, 0]] * X[:, wide.pairs[:, 1]]
        np.testing.assert_allclose(wide.score(users), X @ B_ref + Z @ C_ref, atol=2e-4)
    i, j = wide.pairs[0]
    h = np.zeros((1, ds.n_items), dtype=np.float32)
    h[0, [i, j, 7]] = 1.0
    np.testing.assert_allclose(wide.score(np.array([-1]), history=sp.csr_matrix(h)),
                               items.score(np.array([-1]), history=sp.csr_matrix(h)), rtol=1e-3, atol=2e-4)
    back = Recommender.load(wide.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.recommend(users, k=5).items, wide.recommend(users, k=5).items)


def test_easer_exact_solves_the_constrained_objective():
    ds = _data(seed=2)
    X = _dense(ds)
    n = X.shape[1]
    pairs = select_pairs((X.T @ X).astype(np.float32), 12, 2)
    assert len(pairs) == 12
    B_ref, C_ref = _easer_ref(X, pairs, 6.0, 9.0)
    Xs = sp.csr_matrix(X, dtype=np.float32)
    H = gram_blocked(sp.hstack([Xs, pair_features(Xs, pairs)], format="csr"))
    lam = np.r_[np.full(n, 6.0), np.full(len(pairs), 9.0)].astype(np.float32)
    B, C = easer_exact(H, n, pairs, lam)
    np.testing.assert_allclose(B, B_ref, atol=2e-5)
    np.testing.assert_allclose(C, C_ref, atol=2e-5)
    assert np.all(np.diag(B) == 0)
    assert np.all(C[np.arange(12), pairs[:, 0]] == 0) and np.all(C[np.arange(12), pairs[:, 1]] == 0)
    # the paper's ADMM converges to the same optimum
    Ba, Ca = easer_admm(Xs, pair_features(Xs, pairs), pairs, lam, rho=30.0, iterations=400)
    np.testing.assert_allclose(Ba, B_ref, atol=1e-4)
    np.testing.assert_allclose(Ca, C_ref, atol=1e-4)


def test_easer_scores_fold_in_and_roundtrip(tmp_path):
    ds = _data(seed=3)
    X = _dense(ds)
    m = models.get("easer", l2=5.0, l2_pairs=8.0, n_pairs=10, min_support=2, dropout=0.0).fit(ds)
    assert len(m.pairs) == 10
    B_ref, C_ref = _easer_ref(X, m.pairs, 5.0, 8.0)
    np.testing.assert_allclose(m.similarity, B_ref, atol=2e-5)
    np.testing.assert_allclose(m.pair_weights, C_ref, atol=2e-5)
    Z = X[:, m.pairs[:, 0]] * X[:, m.pairs[:, 1]]
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(m.score(users), X @ m.similarity + Z @ m.pair_weights, rtol=1e-4, atol=1e-5)
    new = m.recommend(np.full(6, -1), k=5, history=ds.matrix[:6])
    assert np.array_equal(new.items, m.recommend(np.arange(6), k=5).items)
    loaded = Recommender.load(m.save(tmp_path / "m"))
    assert np.array_equal(loaded.pairs, m.pairs)
    np.testing.assert_array_equal(loaded.score(users), m.score(users))
    admm = models.get(
        "easer", l2=5.0, l2_pairs=8.0, n_pairs=10, min_support=2, dropout=0.0, solver="admm", rho=20.0, iterations=300
    )
    np.testing.assert_allclose(admm.fit(ds).score(users), m.score(users), atol=1e-3)


# ------------------------------------------------------------------- ADMM SLIM


def test_admm_slim_without_l1_converges_to_ease():
    ds = _data(seed=4)
    m = models.get("admm-slim", l1=0.0, l2=6.0, rho=20.0, iterations=300, nonneg=False, max_density=0.0).fit(ds)
    np.testing.assert_allclose(m.similarity, _ease_ref(_dense(ds), 6.0), atol=1e-4)


def test_admm_slim_nonneg_matches_nnls_and_is_sparse():
    ds = _data(seed=5)
    X = _dense(ds)
    n, l2 = X.shape[1], 4.0
    m = models.get("admm-slim", l1=0.0, l2=l2, rho=20.0, iterations=600, max_density=1.0).fit(ds)
    S = m.similarity.toarray() if sp.issparse(m.similarity) else m.similarity
    assert (S >= 0).all() and np.all(np.diag(S) == 0)
    for k in range(n):  # min ||x_k - X_-k b||^2 + l2 ||b||^2, b >= 0
        rest = [j for j in range(n) if j != k]
        A = np.vstack([X[:, rest], np.sqrt(l2) * np.eye(n - 1)])
        b, _ = nnls(A, np.r_[X[:, k], np.zeros(n - 1)])
        np.testing.assert_allclose(S[rest, k], b, atol=2e-4)
    # L1 makes it sparser; top-k keeps at most k per column; sparse enough -> CSR
    sparse_m = models.get("admm-slim", l1=30.0, l2=l2, rho=50.0, iterations=50, topk=3).fit(ds)
    T = sparse_m.similarity
    assert sp.issparse(T) and (T.data >= 0).all() and np.all(T.diagonal() == 0)
    assert np.diff(sp.csc_matrix(T).indptr).max() <= 3
    assert T.nnz < np.count_nonzero(S)


def test_gram_blocked_with_heavy_users_is_exact():
    rng = np.random.default_rng(6)
    X = (rng.random((120, 50)) < 0.05).astype(np.float32)
    X[:7] = rng.random((7, 50)) < 0.6  # heavy users -> syrk
    G = gram_blocked(sp.csr_matrix(X), block=16)
    assert G.flags.c_contiguous and G.dtype == np.float32
    np.testing.assert_array_equal(G, X.T @ X)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_gram_with_pairs_equals_the_stacked_gram(monkeypatch, workers):
    """EASER's Gram from G = X^T X plus the A^T Z block column: exact, light and heavy rows, any worker count."""
    from toprec.models import linalg

    monkeypatch.setenv("TOPREC_WORKERS", workers)
    monkeypatch.setattr(linalg, "PARALLEL_MIN_NNZ", 0)  # fork even for this small problem
    rng = np.random.default_rng(7)
    X = (rng.random((150, 40)) < 0.1).astype(np.float32)
    X[:6] = rng.random((6, 40)) < 0.7  # heavy rows -> dense gemm
    Xs = sp.csr_matrix(X)
    pairs = select_pairs(Xs.T @ Xs.toarray(), 60, 1)
    Z = pair_features(Xs, pairs)
    A = np.hstack([X, Z.toarray()])
    H = linalg.gram_with_pairs(Xs, Z, linalg.gram(Xs))
    np.testing.assert_array_equal(H, A.T @ A)
    np.testing.assert_array_equal(linalg.cross_gram(sp.csr_matrix(A), Z, block=7), A.T @ Z.toarray())
