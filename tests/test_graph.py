"""LightGCN / NGCF: adjacency, sparse propagation, negative sampling, fold-in, learning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from toprec import metrics, models, split  # noqa: E402
from toprec.models.graph import normalized_adjacency, sample_negatives, to_torch_sparse  # noqa: E402


def test_adjacency_matches_dense_hand_computation():
    # users 0,1,2 ; items 0,1,2,3 ; user 2 has no events, item 3 has none; a duplicate entry counts once
    X = sp.csr_matrix(([1, 1, 1, 1, 1], ([0, 0, 1, 1, 1], [0, 1, 1, 2, 2])), shape=(3, 4), dtype=np.float32)
    A = np.zeros((7, 7))
    R = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=float)
    A[:3, 3:] = R
    A[3:, :3] = R.T
    deg = A.sum(1)
    d = np.where(deg > 0, deg, 1) ** -0.5
    expected = d[:, None] * A * d[None, :]
    got = normalized_adjacency(X)
    assert sp.issparse(got) and got.shape == (7, 7) and got.dtype == np.float32
    assert np.allclose(got.toarray(), expected, atol=1e-7)
    assert np.allclose(got.toarray(), got.toarray().T)
    assert got[0, 3 + 1] == pytest.approx(1 / np.sqrt(2 * 2))  # user 0 (deg 2) - item 1 (deg 2)


def test_torch_sparse_product_equals_scipy():
    rng = np.random.default_rng(0)
    X = sp.random(20, 15, density=0.2, random_state=1, format="csr", dtype=np.float32)
    A = normalized_adjacency(X)
    E = rng.standard_normal((35, 4)).astype(np.float32)
    got = torch.sparse.mm(to_torch_sparse(A), torch.from_numpy(E)).numpy()
    assert np.allclose(got, A @ E, atol=1e-5)


def test_negative_sampling_avoids_training_items():
    X = sp.random(50, 30, density=0.3, random_state=2, format="csr", dtype=np.float32)
    X.data[:] = 1
    users = np.repeat(np.arange(50), 200)
    rng = np.random.default_rng(0)
    dense = X.toarray() > 0
    once = sample_negatives(users, 30, X, rng, rounds=0)
    many = sample_negatives(users, 30, X, np.random.default_rng(0), rounds=10)
    assert 0.2 < dense[users, once].mean() < 0.4  # no re-draw: about the density
    assert dense[users, many].mean() < 0.001
    assert (many >= 0).all() and (many < 30).all()


def test_lightgcn_propagation_is_layer_mean(dataset):
    model = models.get("lightgcn", factors=8, layers=2, epochs=1, valid_last=0, valid_random=0, device="cpu").fit(dataset)
    E0 = model.module.emb.weight.detach().double().numpy()
    A = normalized_adjacency(dataset.matrix).toarray().astype(np.float64)
    expected = (E0 + A @ E0 + A @ (A @ E0)) / 3
    U, V = model._propagated(model._scoring_module())
    assert np.allclose(np.vstack([U, V]), expected, atol=1e-6)
    s = model.score(np.arange(4))
    assert np.allclose(s, (U[:4] @ V.T).astype(np.float32), atol=1e-6)


@pytest.mark.parametrize("name", ["lightgcn", "ngcf"])
def test_graph_models_learn_clusters(name, dataset):
    train, test = split.competition(dataset, last=1, random=4, seed=0)
    model = models.get(name, factors=32, layers=2, epochs=30, lr=0.01, batch_size=256, patience=5).fit(train)
    losses = [h["loss"] for h in model.history]
    assert losses[-1] < 0.9 * losses[0]
    got = metrics.evaluate(model.recommend(test.users, k=10), test, ["recall@10"])["recall@10"]
    pop = metrics.evaluate(models.get("popularity").fit(train).recommend(test.users, k=10), test, ["recall@10"])
    assert got > pop["recall@10"] + 0.03, (got, pop)


def test_fold_in_rule_for_new_users(dataset):
    model = models.get("lightgcn", factors=16, layers=2, epochs=5, lr=0.01, batch_size=256,
                       valid_last=0, valid_random=0).fit(dataset)  # fmt: skip
    U, V = model._propagated(model._scoring_module())
    hist = sp.csr_matrix(dataset.matrix[[3, 10]])
    deg = np.asarray(dataset.matrix.sum(0)).ravel()
    expected = (hist.toarray() * deg**-0.5) @ V @ V.T
    got = model.score(np.array([-1, -1]), history=hist)
    assert np.allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-6)
    # known users keep their learned embedding even with another history
    assert np.allclose(model.score(np.array([3]), history=hist[1]), model.score(np.array([3])))
    # a folded-in user with a training user's history recommends like that user, mostly
    new = model.recommend(np.array([-1]), k=10, history=hist[:1]).items[0]
    old = model.recommend(np.array([3]), k=10).items[0]
    assert len(set(new) & set(old)) >= 5
