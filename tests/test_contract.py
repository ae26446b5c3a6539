"""The shared contract every registered model passes (new models join automatically)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from contract_params import CONTRACT_PARAMS, contract_params

from toprec import ToprecError, metrics, models, split
from toprec.models import Recommender

ALL = sorted(models.list())
# small, fast parameters per model for the contract (tests/contract_params.py)
FAST_PARAMS: dict[str, dict] = {n: contract_params(n) for n in ALL}


def test_contract_params_name_registered_models_and_valid_parameters():
    for name, params in CONTRACT_PARAMS.items():
        assert name in ALL, f"contract_params.py lists '{name}', which is not a registered model"
        models.get(name, **params)  # a wrong parameter name or value is a ToprecError


@pytest.fixture(params=ALL)
def name(request) -> str:
    return request.param


@pytest.fixture
def fitted(name, dataset):
    train, holdout = split.competition(dataset, last=1, random=4, seed=0)
    model = models.get(name, **FAST_PARAMS.get(name, {})).fit(train)
    return model, train, holdout


def test_fit_and_score_shapes(fitted):
    model, train, _ = fitted
    assert model.fitted and isinstance(model, Recommender)
    s = model.score(np.arange(5))
    assert s.shape == (5, train.n_items) and s.dtype == np.float32 and np.isfinite(s).all()


def test_recommend_masks_seen_items(fitted):
    model, train, _ = fitted
    k = 10
    recs = model.recommend(k=k)
    assert recs.items.shape == (train.n_users, k)
    seen = train.matrix
    hits = metrics.hit_matrix(recs.items, seen)
    assert not hits.any(), "a training item was recommended"
    assert np.all(np.diff(recs.scores, axis=1) <= 0), "not best first"
    srt = np.sort(recs.items, axis=1)
    assert not np.any(srt[:, 1:] == srt[:, :-1]), "duplicate items in a list"
    unmasked = model.recommend(np.arange(10), k=k, exclude_seen=False)
    assert unmasked.scores[:, 0].min() >= recs.scores[:10, 0].min() - 1e-6


def test_exclude_seen_false_ranks_every_item_by_its_score(fitted):
    """``exclude_seen=False``: the top k of the model's own scores, training items included (issue 22 item 17)."""
    model, train, _ = fitted
    k = 10
    users = np.flatnonzero(np.diff(train.matrix.indptr) > 0)[:40]  # users with a history (cold ones get popularity)
    raw = model.score(users).astype(np.float64)
    unmasked = model.recommend(users, k=k, exclude_seen=False)
    masked = model.recommend(users, k=k)
    top = -np.sort(-raw, axis=1)[:, :k]
    # the lists' scores are the k best unmasked scores, and each is its item's score
    np.testing.assert_allclose(unmasked.scores, top, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(raw, unmasked.items.astype(np.int64), axis=1), unmasked.scores,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    # training items do appear wherever they score in the top k, and the masked lists differ exactly there
    seen = metrics.hit_matrix(unmasked.items, train.matrix[users])
    seen_in_top = np.asarray([np.isin(np.flatnonzero(raw[i] >= top[i, -1]), train.matrix[u].indices).any()
                              for i, u in enumerate(users)])  # fmt: skip
    assert np.array_equal(seen.any(axis=1), seen_in_top)
    assert seen.any(), f"{model.name}: no training item among any user's top {k} unmasked scores"
    assert not np.array_equal(masked.items[seen.any(axis=1)], unmasked.items[seen.any(axis=1)])


@pytest.mark.parametrize("batch_size", [1, 7, 50])
def test_batch_size_invariance(fitted, batch_size):
    model, train, _ = fitted
    ref = model.recommend(k=10, batch_size=10_000)
    got = model.recommend(k=10, batch_size=batch_size)
    assert np.array_equal(ref.items, got.items)
    assert np.array_equal(ref.scores, got.scores)


def test_save_load_roundtrip(fitted, tmp_path):
    model, train, _ = fitted
    path = model.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "model.json"]
    meta = json.loads((path / "model.json").read_text())
    assert meta["model"] == model.name and meta["n_items"] == train.n_items
    from safetensors import safe_open

    with safe_open(str(path / "arrays.safetensors"), framework="numpy") as fh:  # a real safetensors file
        assert len(list(fh.keys())) > 0
    assert b"pickle" not in (path / "model.json").read_bytes()
    loaded = Recommender.load(path)
    assert type(loaded) is type(model) and loaded.params == model.params
    a, b = model.recommend(k=10), loaded.recommend(k=10)
    assert np.array_equal(a.items, b.items) and np.allclose(a.scores, b.scores)


def test_unknown_and_empty_history_users_get_popular_items(fitted):
    model, train, _ = fitted
    k = 5
    top_pop = np.argsort(-train.item_counts, kind="stable")[:k]
    recs = model.recommend(np.array([-1, train.n_users + 3]), k=k)
    assert recs.items.shape == (2, k) and (recs.items >= 0).all()
    assert set(recs.items[0]) == set(top_pop)
    empty = sp.csr_matrix((1, train.n_items), dtype=np.float32)
    r2 = model.recommend(np.array([0]), k=k, history=empty)
    assert set(r2.items[0]) == set(top_pop)


def _ordered_histories(train, users) -> list[np.ndarray]:
    """Each user's training items, oldest first (the Dataset keeps events by user, time, item)."""
    ptr, item = np.asarray(train.user_ptr), np.asarray(train.item)
    return [item[ptr[u] : ptr[u + 1]] for u in users]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of row i of ``b`` found in row i of ``a``."""
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, b)]))


def test_fold_in_history_for_new_users(fitted):
    """Every model folds a user known only by a history in, as its ``fold_in`` declares (serving relies on it)."""
    model, train, _ = fitted
    assert model.fold_in in ("history", "sequence", "estimate", "none")
    assert model.fold_in != "none", "every registered model folds new users in; declare it if one cannot"
    users = np.flatnonzero(np.asarray(train.user_counts) >= 3)[:8]
    hist = model.histories(_ordered_histories(train, users))
    new_users = np.full(len(users), -1)
    new = model.recommend(new_users, k=10, history=hist)
    assert (new.items >= 0).all() and not metrics.hit_matrix(new.items, hist).any(), "a history item came back"
    for i in range(len(users)):  # a user alone gets what it gets in a batch (a server answers one at a time)
        one = model.recommend(np.array([-1]), k=10, history=hist[i])
        assert np.array_equal(one.items[0], new.items[i])
    known = model.recommend(users, k=10)
    if model.fold_in in ("history", "sequence"):
        # the item set (or, for sequences, the ordered items) is all the model needs: the known user's list
        assert np.array_equal(new.items, known.items)
        assert np.allclose(new.scores, known.scores, rtol=1e-5, atol=1e-6)
        return
    # "estimate": a user vector from the history; the history must decide the list, and the estimate must
    # be near the learned user: the folded list shares more with the known user's list than popularity does
    s = model.score(new_users, hist)
    assert np.isfinite(s).all()
    assert len({tuple(r) for r in new.items}) > 1, "every folded-in user got the same list"
    pop = model.recommend(np.array([-1] * len(users)), k=10, history=sp.csr_matrix(hist.shape, dtype=np.float32))
    pop_masked = np.array([[i for i in pop.items[0] if i not in set(h.indices)][:5] for h in hist])
    assert _overlap(new.items, known.items[:, :5]) > _overlap(pop_masked, known.items[:, :5])


def test_sequence_models_read_the_order(fitted):
    """For ``fold_in == "sequence"`` the order of the history matters: reversed histories give other lists."""
    model, train, _ = fitted
    if model.fold_in != "sequence":
        pytest.skip("the item set decides")
    users = np.flatnonzero(np.asarray(train.user_counts) >= 3)[:8]
    fwd = _ordered_histories(train, users)
    a = model.recommend(np.full(len(users), -1), k=10, history=model.histories(fwd))
    b = model.recommend(np.full(len(users), -1), k=10, history=model.histories([h[::-1] for h in fwd]))
    assert not np.array_equal(a.items, b.items)


def test_model_that_cannot_fold_in_says_so(dataset):
    from toprec.models.popular import Popularity

    class NoFoldIn(Popularity):
        fold_in = "none"

    assert not NoFoldIn.history_based
    model = NoFoldIn().fit(dataset)
    hist = model.histories([[0, 1]])
    with pytest.raises(ToprecError, match="cannot fold in new users"):
        model.recommend(np.array([-1]), k=3, history=hist)
    model.recommend(np.array([0]), k=3)  # known users are fine
    with pytest.raises(TypeError, match="fold_in must be one of"):
        type("Bad", (Popularity,), {"fold_in": "maybe"})


def test_histories_keep_order_and_last_position(dataset):
    seq = models.get("seqrules").fit(dataset)
    h = seq.histories([[5, 3, 5, 7], []])
    assert h.shape == (2, dataset.n_items)
    assert dict(zip(h[0].indices, h[0].data)) == {3: 2.0, 5: 3.0, 7: 4.0} and h[1].nnz == 0
    ease = models.get("ease", l2=50.0).fit(dataset)
    h = ease.histories([[5, 3, 5]])
    assert sorted(h[0].indices) == [3, 5] and set(h[0].data) == {1.0}
    with pytest.raises(ToprecError, match="out of range"):
        ease.histories([[dataset.n_items]])


def test_deterministic_refit(name, dataset):
    a = models.get(name, **FAST_PARAMS.get(name, {})).fit(dataset).recommend(k=10)
    b = models.get(name, **FAST_PARAMS.get(name, {})).fit(dataset).recommend(k=10)
    assert np.array_equal(a.items, b.items)


def test_unknown_parameter_is_one_line_error(name):
    with pytest.raises(ToprecError, match=f"model '{name}': unknown parameter 'no_such'"):
        models.get(name, no_such=1)


def test_not_fitted_error(name):
    with pytest.raises(ToprecError, match="not fitted"):
        models.get(name).recommend(k=3)


def test_collaborative_models_beat_popularity(dataset):
    train, holdout = split.competition(dataset, last=1, random=4, seed=0)
    scores = {}
    for n in ("popularity", "itemknn", "ease"):
        recs = models.get(n, **FAST_PARAMS.get(n, {})).fit(train).recommend(holdout.users, k=10)
        scores[n] = metrics.evaluate(recs, holdout, ["recall@10"])["recall@10"]
    assert scores["ease"] > scores["popularity"] + 0.05
    assert scores["itemknn"] > scores["popularity"] + 0.03


def test_ill_typed_parameter():
    with pytest.raises(ToprecError, match="parameter 'l2'='abc'"):
        models.get("ease", l2="abc")
    with pytest.raises(ToprecError, match="parameter 'l2'"):
        models.get("ease", l2=-1)
    with pytest.raises(ToprecError, match="unknown model 'nope'"):
        models.get("nope")


def test_search_space_names_real_parameters(name):
    cls = models.get_class(name)
    for pname, spec in cls.search_space.items():
        assert pname in cls.Params.model_fields, f"{name}: search space names unknown parameter {pname}"
        assert spec[0] in ("float", "log_float", "int", "log_int", "categorical")
