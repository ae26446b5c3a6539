"""FM family (fm, logistic-fm, deepfm, cfm): the FM identity, side features, user features, losses, batches."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import Dataset, ToprecError, models
from toprec.data.dataset import ItemFeature
from toprec.models.fm import activity_bucket

FAST = {"factors": 8, "batch_size": 16, "lr": 0.02, "patience": 0, "valid_last": 0, "valid_random": 0, "threads": 1}


def planted(n_users: int = 96, n_items: int = 60, n_cold: int = 8, per_user: int = 12, seed: int = 0) -> Dataset:
    """4 taste clusters; item c's genre is its cluster; ``n_cold`` extra items (2 per cluster) have no events:
    only their genre can tell which users like them."""
    rng = np.random.default_rng(seed)
    cl_item = np.arange(n_items) % 4
    users, items = [], []
    for u in range(n_users):  # test-data builder, not library code
        mine = np.flatnonzero(cl_item == u % 4)
        chosen = rng.choice(mine, size=per_user, replace=False)
        users += [u] * per_user
        items += list(chosen)
    users, items = np.asarray(users), np.asarray(items)
    n_all = n_items + n_cold
    genre = np.r_[cl_item, np.arange(n_cold) % 4]
    G = sp.csr_matrix((np.ones(n_all, np.float32), (np.arange(n_all), genre)), shape=(n_all, 4))
    order = np.lexsort((items, users))
    return Dataset(np.arange(n_users), np.arange(n_all), users[order], items[order], np.arange(len(users))[order],
                   features={"genres": ItemFeature(G, np.array(["g0", "g1", "g2", "g3"]))}, _sorted=True)  # fmt: skip


@pytest.fixture(scope="module")
def data() -> Dataset:
    return planted()


def _cold_accuracy(model, data) -> float:
    """Share of users whose best-scored cold item is of their own cluster."""
    cold = np.arange(60, data.n_items)
    s = model.score(np.arange(data.n_users))[:, cold]
    return float(np.mean(cold[s.argmax(1)] % 4 == np.arange(data.n_users) % 4))


def test_planted_side_signal_is_learned_only_with_side_features(data):
    with_side = models.get("fm", epochs=15, **FAST).fit(data)
    without = models.get("fm", epochs=15, features="none", **FAST).fit(data)
    assert _cold_accuracy(with_side, data) >= 0.9
    assert _cold_accuracy(without, data) <= 0.6  # chance is 0.25: items without events carry no signal


@pytest.mark.parametrize("name", ["deepfm", "cfm"])
def test_planted_side_signal_other_models(name, data):
    params = dict(FAST, factors=8) if name == "cfm" else dict(FAST, hidden=8)
    model = models.get(name, epochs=15, **params).fit(data)
    assert _cold_accuracy(model, data) >= 0.75


def test_fm_identity_matches_the_explicit_pairwise_formula(data):
    """Scores from the matrix-product identity equal Rendle's sum over feature pairs, computed the slow way."""
    m = models.get("fm", epochs=2, **FAST).fit(data)
    W = {k: v.double().numpy() for k, v in m.module.state_dict().items()}
    X = m.train_matrix
    a = m.params.history_norm
    S = m.item_side_
    for u in (0, 5, 17):
        hist = X[u].indices
        bucket = activity_bucket(np.array([len(hist)]), m.params.activity_buckets)[0]
        for i in (0, 3, 61):
            feats = [(W["user_v.weight"][u], W["user_w.weight"][u, 0], 1.0),
                     (W["act_v.weight"][bucket], W["act_w.weight"][bucket, 0], 1.0),
                     (W["item_v.weight"][i], W["item_w.weight"][i, 0], 1.0)]  # fmt: skip
            feats += [(W["hist_v.weight"][j], W["hist_w.weight"][j, 0], len(hist) ** -a) for j in hist]
            row = S[i]
            feats += [(W["side_v.weight"][c], W["side_w.weight"][c, 0], x) for c, x in zip(row.indices, row.data)]
            want = float(W["bias"]) + sum(w * x for _, w, x in feats)
            for p in range(len(feats)):
                for q in range(p + 1, len(feats)):
                    want += feats[p][2] * feats[q][2] * float(feats[p][0] @ feats[q][0])
            got = m.score(np.array([u]))[0, i] if i not in set(hist) else None
            if got is not None:
                assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("loss", ["bpr", "bce", "focal", "softmax", "softmax-focal"])
def test_every_loss_trains_and_lowers_its_loss(loss, data):
    m = models.get("fm", epochs=6, loss=loss, **FAST).fit(data)
    losses = [h["loss"] for h in m.history]
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("name", ["deepfm", "cfm", "logistic-fm"])
def test_other_models_lower_their_loss(name, data):
    m = models.get(name, epochs=5, loss="focal", **FAST).fit(data)
    losses = [h["loss"] for h in m.history]
    assert losses[-1] < 0.9 * losses[0]


def test_side_features_change_scores(data):
    a = models.get("fm", epochs=2, **FAST).fit(data).score(np.arange(10))
    b = models.get("fm", epochs=2, features="none", **FAST).fit(data).score(np.arange(10))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", ["fm", "deepfm", "cfm"])
def test_recommend_does_not_depend_on_the_batch_size(name, data):
    m = models.get(name, epochs=2, **FAST).fit(data)
    full = m.recommend(k=10)
    for bs in (1, 7):
        r = m.recommend(k=10, batch_size=bs)
        assert np.array_equal(r.items, full.items)
        assert np.array_equal(r.scores, full.scores)


def test_user_features_are_a_field_and_survive_save_load(data, tmp_path):
    ds = planted()
    ds.user_features = {"cluster": np.array([f"c{u % 4}" for u in range(ds.n_users)])}
    m = models.get("fm", epochs=3, **FAST).fit(ds)
    assert m.user_codes_.shape == (ds.n_users, 1) and m.module.code_v.weight.shape[0] == 4
    plain = models.get("fm", epochs=3, **FAST).fit(planted())
    assert not np.allclose(m.score(np.arange(8)), plain.score(np.arange(8)))
    back = models.get_class("fm").load(m.save(tmp_path / "fm"))
    assert np.array_equal(back.score(np.arange(ds.n_users)), m.score(np.arange(ds.n_users)))
    assert back.feature_names_ == ["genres"]


def test_deepfm_and_cfm_save_load(data, tmp_path):
    for name in ("deepfm", "cfm"):
        m = models.get(name, epochs=1, **FAST).fit(data)
        back = models.Recommender.load(m.save(tmp_path / name))
        assert np.array_equal(back.recommend(k=5).items, m.recommend(k=5).items)


def test_bad_parameters_are_one_line_errors(data):
    with pytest.raises(ToprecError, match="parameter 'features'.*no side feature 'nope'"):
        models.get("fm", features="nope", **FAST).fit(data)
    with pytest.raises(ToprecError, match="parameter 'factors'=12: must be a power of two"):
        models.get("cfm", factors=12)
    with pytest.raises(ToprecError, match="parameter 'user_id'"):
        models.get("fm", user_id=False, history=False, activity_buckets=0, **FAST).fit(data)
    with pytest.raises(ToprecError, match="parameter 'loss'"):
        models.get("deepfm", loss="hinge")
