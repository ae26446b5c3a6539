"""NCF (NeuMF): vectorised all-item scoring equals the pairwise forward, fold-in rule, learning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from toprec import metrics, models, split  # noqa: E402


@pytest.fixture
def fitted(dataset):
    return models.get("ncf", factors=8, mlp_factors=8, mlp_layers=2, epochs=3, lr=0.01, batch_size=512,
                      valid_last=0, valid_random=0, device="cpu").fit(dataset)  # fmt: skip (module poked on the host)


def test_all_item_scoring_equals_pairwise_forward(fitted, dataset):
    users = np.array([0, 5, 17])
    got = fitted.score(users)
    module = fitted.module.double().eval()
    n_items = dataset.n_items
    u = torch.from_numpy(np.repeat(users, n_items))
    i = torch.from_numpy(np.tile(np.arange(n_items), len(users)))
    with torch.no_grad():
        ref = module(u, i).numpy().reshape(len(users), n_items)
    assert np.allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_fold_in_is_overlap_weighted_mean_of_user_embeddings(fitted, dataset):
    X = dataset.matrix
    hist = sp.csr_matrix(X[[2, 40]])
    W = (hist @ X.T).toarray()
    W /= W.sum(1, keepdims=True)
    m = fitted.module.double().eval()
    ug = W @ m.p_gmf.weight.detach().numpy()
    um = W @ m.p_mlp.weight.detach().numpy()
    with torch.no_grad():
        f = ug.shape[1]
        w = m.out.weight[0].numpy()
        gmf = (ug * w[:f]) @ m.q_gmf.weight.numpy().T
        z = m.first_u(torch.from_numpy(um))[:, None, :] + m.first_i(m.q_mlp.weight)[None]
        mlp = m.mlp_from_first(z).numpy() @ w[f:]
        expected = gmf + mlp + m.out.bias.numpy()
    got = fitted.score(np.array([-1, -1]), history=hist)
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-6)
    # a known user keeps its learned embedding whatever history is passed
    assert np.allclose(fitted.score(np.array([2]), history=hist[1]), fitted.score(np.array([2])))


def test_negatives_are_balanced_and_seeded(fitted):
    g = torch.Generator().manual_seed(0)
    batches = list(fitted._batches(fitted.module, g))
    y = torch.cat([b[2] for b in batches])
    k = fitted.params.n_negatives
    assert float(y.mean()) == pytest.approx(1 / (1 + k))
    again = list(fitted._batches(fitted.module, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))


def test_ncf_learns_clusters():
    from conftest import clustered_events

    from toprec import Dataset

    ev = clustered_events(n_users=300, n_items=60, per_user=15)
    data = Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["time"].to_numpy())
    train, test = split.competition(data, last=1, random=4, seed=0)
    # small embeddings: NeuMF memorises a toy training set otherwise (training recall 1.0)
    model = models.get("ncf", factors=4, mlp_factors=4, mlp_layers=1, epochs=40, lr=0.003, batch_size=256,
                       valid_last=0, valid_random=0).fit(train)  # fmt: skip
    losses = [h["loss"] for h in model.history]
    assert losses[-1] < 0.7 * losses[0]
    got = metrics.evaluate(model.recommend(test.users, k=10), test, ["recall@10"])["recall@10"]
    pop = metrics.evaluate(models.get("popularity").fit(train).recommend(test.users, k=10), test, ["recall@10"])
    assert got > pop["recall@10"] + 0.05, (got, pop)
