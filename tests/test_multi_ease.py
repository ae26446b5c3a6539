"""Multi-EASE, VASP and Multi-CDAE (issue 21): each model's defining property on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from toprec import metrics, models, split  # noqa: E402
from toprec.models.ease_solve import ease_item_space  # noqa: E402
from toprec.models.multi_ease import product_bce  # noqa: E402

FAST = {"batch_size": 32, "valid_random": 2}


@pytest.fixture(scope="module")
def data():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import clustered_events

    from toprec import Dataset

    ev = clustered_events(n_users=200, n_items=80, per_user=20)
    ds = Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["time"].to_numpy())
    return split.competition(ds, last=1, random=4, seed=0)


def test_multi_ease_starts_at_ease_closed_form(data):
    train, _ = data
    X = train.matrix
    m = models.get("multi-ease", l2=30.0)
    m.n_users, m.n_items = X.shape
    m._prepare(X, train)
    module = m._build_module()
    B = ease_item_space(X, 30.0)
    np.testing.assert_array_equal(module.B.weight.detach().numpy(), B)
    # epoch 0's scores are EASE's (the softmax scale does not enter the scores)
    ease = models.get("ease", l2=30.0, form="items").fit(train)
    users = np.arange(20)
    H = torch.from_numpy(X[users].toarray())
    with torch.no_grad():
        np.testing.assert_allclose(module(H).numpy(), ease.score(users), rtol=1e-5, atol=1e-5)
    # the scale's start minimises the closed form's multinomial loss: nudging it either way is worse
    L = torch.from_numpy(np.asarray(X @ B, dtype=np.float64))
    T = torch.from_numpy(X.toarray().astype(np.float64))
    nll = lambda t: float(-(torch.log_softmax(L * np.exp(t), 1) * T).sum(1).mean())  # noqa: E731
    t0 = float(module.log_scale.detach())
    assert nll(t0) <= min(nll(t0 - 0.1), nll(t0 + 0.1))


def test_multi_ease_diagonal_stays_zero_and_training_moves_b(data):
    train, holdout = data
    m = models.get("multi-ease", l2=30.0, lr=1e-3, epochs=5, patience=0, dropout=0.2, squared_weight=0.1, **FAST)
    m.fit(train)
    B = m.similarity
    assert np.all(np.diag(B) == 0)
    assert not np.allclose(B, ease_item_space(train.matrix, 30.0), atol=1e-4)  # it learned
    losses = [h["loss"] for h in m.history]
    assert losses[-1] < losses[0]
    users = np.arange(15)  # scores are history @ B (float64 scoring, so compare loosely)
    np.testing.assert_allclose(m.score(users), train.matrix[users] @ B, rtol=1e-4, atol=1e-5)
    assert m.fold_in == "history" and m.history_based
    pop = metrics.evaluate(models.get("popularity").fit(train).recommend(holdout.users, k=10), holdout, ["recall@10"])
    got = metrics.evaluate(m.recommend(holdout.users, k=10), holdout, ["recall@10"])
    assert got["recall@10"] > pop["recall@10"] + 0.1


def test_vasp_score_is_product_of_path_sigmoids(data):
    train, holdout = data
    m = models.get("vasp", latent=16, l2=30.0, lr=5e-3, epochs=6, patience=0, **FAST).fit(train)
    assert m.fold_in == "history"
    module = m.module.eval()
    assert torch.all(torch.diagonal(module.shallow.weight) == 0)
    users = np.arange(12)
    H = torch.from_numpy(train.matrix[users].toarray())
    with torch.no_grad():
        a, b, _, _ = module(H)
        want = (torch.sigmoid(a) * torch.sigmoid(b)).numpy()
    np.testing.assert_allclose(m.score(users), want, rtol=1e-5, atol=1e-7)
    # both paths matter: neither path's sigmoid alone ranks like the product for every user
    order = lambda s: np.argsort(-s, axis=1, kind="stable")[:, :10]  # noqa: E731
    assert not np.array_equal(order(want), order(torch.sigmoid(a).numpy()))
    assert not np.array_equal(order(want), order(torch.sigmoid(b).numpy()))
    pop = metrics.evaluate(models.get("popularity").fit(train).recommend(holdout.users, k=10), holdout, ["recall@10"])
    got = metrics.evaluate(m.recommend(holdout.users, k=10), holdout, ["recall@10"])
    assert got["recall@10"] > pop["recall@10"] + 0.1


def test_vasp_focal_loss_trains(data):
    train, _ = data
    m = models.get("vasp", latent=8, l2=30.0, lr=5e-3, epochs=4, patience=0, loss="focal", shallow_init="zero",
                   valid_last=0, valid_random=0, batch_size=32).fit(train)  # fmt: skip
    losses = [h["loss"] for h in m.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_product_bce_is_bce_of_the_product():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    y = (torch.rand(4, 7, generator=g) < 0.3).double()
    p = torch.sigmoid(a) * torch.sigmoid(b)
    want = torch.nn.functional.binary_cross_entropy(p, y, reduction="none").sum(1).mean()
    torch.testing.assert_close(product_bce(a, b, y), want)
    p_t = p * y + (1 - p) * (1 - y)
    focal = (torch.nn.functional.binary_cross_entropy(p, y, reduction="none") * (1 - p_t) ** 2).sum(1).mean()
    torch.testing.assert_close(product_bce(a, b, y, gamma=2.0), focal)


def test_multi_cdae_differs_from_cdae_and_trains(data):
    train, holdout = data
    p = {"hidden": 32, "lr": 1e-2, "epochs": 30, "patience": 8, **FAST}
    assert models.get("cdae").params.loss == "bce"  # the default is unchanged
    bce = models.get("cdae", **p).fit(train)
    multi = models.get("cdae", loss="multinomial", **p).fit(train)
    assert not np.allclose(bce.score(np.arange(10)), multi.score(np.arange(10)))
    losses = [h["loss"] for h in multi.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    pop = metrics.evaluate(models.get("popularity").fit(train).recommend(holdout.users, k=10), holdout, ["recall@10"])
    got = metrics.evaluate(multi.recommend(holdout.users, k=10), holdout, ["recall@10"])
    assert got["recall@10"] > pop["recall@10"] + 0.1


def test_save_load_keeps_scores(data, tmp_path):
    train, _ = data
    for name, p in [("multi-ease", {"l2": 30.0, "epochs": 2}), ("vasp", {"latent": 8, "l2": 30.0, "epochs": 2})]:
        m = models.get(name, **p, **FAST).fit(train)
        loaded = models.Recommender.load(m.save(tmp_path / name))
        np.testing.assert_array_equal(loaded.score(np.arange(10)), m.score(np.arange(10)))
        hist = sp.csr_matrix(train.matrix[:3])
        np.testing.assert_array_equal(loaded.score(np.full(3, -1), hist), m.score(np.arange(3)))


def test_fit_logistic_recovers_scale_and_bias():
    from toprec.models.multi_ease import fit_logistic

    rng = np.random.default_rng(0)
    L = rng.normal(size=(400, 50))
    y = (rng.random((400, 50)) < 1 / (1 + np.exp(-(2.0 * L - 1.0)))).astype(np.float32)
    log_s, b = fit_logistic(L, sp.csr_matrix(y))
    assert abs(np.exp(log_s) - 2.0) < 0.2 and abs(b + 1.0) < 0.15


def test_vasp_from_ease_starts_near_ease(data):
    train, _ = data
    X = train.matrix
    m = models.get("vasp", latent=8, l2=30.0, shallow_init="ease")
    m.n_users, m.n_items = X.shape
    m._prepare(X, train)
    module = m._build_module()
    np.testing.assert_array_equal(module.shallow.weight.detach().numpy(), ease_item_space(X, 30.0))
    assert float(module.shallow_scale.detach()) != 0.0  # calibrated, not the zero start

