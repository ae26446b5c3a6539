"""Autoencoder models: they learn, beat popularity on planted clusters, save/load exactly, import without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from contract_params import contract_params  # noqa: E402

from toprec import metrics, models, split  # noqa: E402

AE = ["multidae", "multivae", "recvae", "cdae", "autorec"]
# enough capacity and epochs to learn the 4 planted taste clusters of the conftest fixture; the
# validation holdout the trainer cuts is kept small (last 1 + random 2) because these users have
# only 15 training events each
LEARN = {
    "multidae": {"latent": 32, "lr": 1e-2, "epochs": 40, "patience": 8, "valid_random": 2},
    "multivae": {"latent": 16, "hidden": 64, "lr": 1e-2, "epochs": 40, "patience": 8, "anneal_steps": 200, "valid_random": 2},
    "recvae": {"hidden": 64, "latent": 16, "lr": 5e-3, "epochs": 20, "patience": 5, "valid_random": 2},
    "cdae": {"hidden": 32, "lr": 1e-2, "epochs": 40, "patience": 8, "valid_random": 2},
    "autorec": {"hidden": 32, "lr": 1e-2, "epochs": 40, "patience": 8, "weight_decay": 1e-2, "valid_random": 2},
}


@pytest.fixture(scope="module")
def data():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from conftest import clustered_events

    from toprec import Dataset

    ev = clustered_events(n_users=200, n_items=80, per_user=20)
    ds = Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["time"].to_numpy())
    return split.competition(ds, last=1, random=4, seed=0)


@pytest.mark.parametrize("name", AE)
def test_loss_decreases(name, data):
    train, _ = data
    p = {**LEARN[name], "epochs": 8, "valid_last": 0, "valid_random": 0, "batch_size": 50}
    m = models.get(name, **p).fit(train)
    losses = [h["loss"] for h in m.history]
    assert len(losses) == 8 and np.isfinite(losses).all()
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", AE)
def test_beats_popularity_on_planted_clusters(name, data):
    train, holdout = data
    pop = models.get("popularity").fit(train).recommend(holdout.users, k=10)
    base = metrics.evaluate(pop, holdout, ["recall@10"])["recall@10"]
    m = models.get(name, batch_size=50, **LEARN[name]).fit(train)
    got = metrics.evaluate(m.recommend(holdout.users, k=10), holdout, ["recall@10"])["recall@10"]
    assert got > base + 0.1, f"{name}: recall@10 {got:.3f} vs popularity {base:.3f}"


@pytest.mark.parametrize("name", AE)
def test_save_load_scores_identical(name, data, tmp_path):
    train, _ = data
    m = models.get(name, **contract_params(name)).fit(train)
    loaded = models.Recommender.load(m.save(tmp_path / name))
    users = np.array([0, 5, 17, -1])
    assert np.array_equal(m.score(users), loaded.score(users))
    hist = train.matrix[[3, 4]]
    assert np.array_equal(m.score(np.array([-1, -1]), hist), loaded.score(np.array([-1, -1]), hist))


def test_cdae_unknown_user_uses_zero_user_vector(data):
    train, _ = data
    m = models.get("cdae", **contract_params("cdae"), device="cpu").fit(train)  # module poked on the host
    hist = train.matrix[[2]]
    net = m.module.double().eval()
    with torch.no_grad():
        x = torch.from_numpy(hist.toarray()).double()
        want = net.out(torch.sigmoid(net.item_in(x))).float().numpy()
        known = net(torch.tensor([2]), x, 0.0).float().numpy()
    m.module.float()
    got = m.score(np.array([-1]), hist)
    assert np.allclose(got, want, atol=1e-6)
    assert not np.allclose(m.score(np.array([2])), got)  # a known user keeps its learned vector
    assert np.allclose(m.score(np.array([2])), known, atol=1e-6)


def test_recvae_alternates_and_keeps_prior_in_state(data):
    train, _ = data
    m = models.get("recvae", **contract_params("recvae")).fit(train)
    keys = m.module.state_dict().keys()
    assert any(k.startswith("prior_encoder.") for k in keys)
    # the prior encoder is never trained by an optimizer: it only copies the encoder
    opts = m._make_optimizers(m.module)
    trained = {id(p) for o in opts.values() for g in o.param_groups for p in g["params"]}
    assert not any(id(p) in trained for p in m.module.prior_encoder.parameters())
    assert {id(p) for p in m.module.encoder.parameters()} <= trained


def test_multivae_kl_annealing_reaches_cap(data):
    train, _ = data
    m = models.get("multivae", **{**contract_params("multivae"), "anneal_steps": 3, "anneal_cap": 0.3})
    m.fit(train)
    assert m._updates > 3  # beta = min(cap, updates / steps) was at the cap for the later batches


def test_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from toprec import models, ToprecError\n"
        "names = models.list()\n"
        "assert {'multidae', 'multivae', 'recvae', 'cdae', 'autorec'} <= set(names)\n"
        "try:\n"
        "    models.get('recvae')\n"
        "except ToprecError as e:\n"
        "    assert 'pip install torch' in str(e), e\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_fold_in_matches_training_user_for_history_models(data):
    train, _ = data
    m = models.get("recvae", **contract_params("recvae")).fit(train)
    hist = train.matrix[:4]
    assert np.array_equal(m.score(np.full(4, -1), hist), m.score(np.arange(4)))
    empty = sp.csr_matrix((1, train.n_items), dtype=np.float32)
    assert np.array_equal(m.score(np.array([0]), empty)[0], train.item_counts.astype(np.float32))
