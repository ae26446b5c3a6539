"""Matrix factorisation wrappers (implicit's iALS, BPR, LMF): the parts beyond the shared contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import ToprecError, metrics, models, split
from toprec.models import Recommender
from toprec.models.mf import MatrixFactorization

MF = ("ials", "bpr", "lmf")
#: implicit's extra (bias) columns per model
EXTRA_COLUMNS = {"ials": 0, "bpr": 1, "lmf": 2}
#: small settings that still learn the fixture's clusters (a fraction of a second each)
QUICK = {
    "ials": {"factors": 8, "iterations": 10, "regularization": 10.0, "alpha": 3.0, "num_threads": 1},
    "bpr": {"factors": 8, "iterations": 30, "learning_rate": 0.05, "regularization": 0.05},
    "lmf": {"factors": 16, "iterations": 30},
}


def _fit(name, data, **extra):
    return models.get(name, **{**QUICK[name], **extra}).fit(data)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


@pytest.mark.parametrize("name", MF)
def test_registered_not_history_based(name):
    cls = models.get_class(name)
    assert issubclass(cls, MatrixFactorization) and cls.history_based is False


@pytest.mark.parametrize("name", MF)
def test_factors_are_float32_and_shaped(name, dataset):
    m = _fit(name, dataset, factors=12)
    d = 12 + EXTRA_COLUMNS[name]
    assert m.user_factors.shape == (dataset.n_users, d) and m.user_factors.dtype == np.float32
    assert m.item_factors.shape == (dataset.n_items, d) and m.item_factors.dtype == np.float32
    assert np.isfinite(m.user_factors).all() and np.isfinite(m.item_factors).all()
    s = m.score(np.arange(4))
    assert s.dtype == np.float32
    with np.errstate(all="ignore"):
        expected = m.user_factors[:4].astype(np.float64) @ m.item_factors.T.astype(np.float64)
    assert np.allclose(s, expected, rtol=1e-5, atol=1e-6)


def test_sgd_models_default_to_one_thread_for_reproducibility():
    assert models.get("bpr").params.num_threads == 1
    assert models.get("lmf").params.num_threads == 1
    assert "Hogwild" in models.get_class("bpr").Params.model_fields["num_threads"].description


@pytest.mark.parametrize("name", MF)
def test_beats_popularity(name, dataset):
    train, holdout = split.competition(dataset, last=1, random=4, seed=0)
    pop = models.get("popularity").fit(train).recommend(holdout.users, k=10)
    recs = _fit(name, train).recommend(holdout.users, k=10)
    base = metrics.evaluate(pop, holdout, ["recall@10"])["recall@10"]
    got = metrics.evaluate(recs, holdout, ["recall@10"])["recall@10"]
    assert got > base + 0.03, (name, got, base)


def test_ials_fold_in_matches_the_known_user(dataset):
    m = _fit("ials", dataset)
    users = np.arange(20)
    known = m.recommend(users, k=10)
    new = m.recommend(np.full(len(users), -1), k=10, history=dataset.matrix[users])
    assert _overlap(known.items, new.items) >= 0.8
    # the fold-in is a least-squares solve: same history, same vector (up to the training's last CG step)
    from toprec.models.mf import _binary

    folded = m._fold_in(_binary(dataset.matrix[users]))
    cos = np.sum(folded * m.user_factors[users], 1) / (
        np.linalg.norm(folded, axis=1) * np.linalg.norm(m.user_factors[users], axis=1)
    )
    assert cos.min() > 0.9


def test_ials_fold_in_is_the_exact_least_squares_solve(dataset):
    m = _fit("ials", dataset)
    hist = dataset.matrix[[3, 7]]
    Y = m.item_factors.astype(np.float64)
    p = m.params
    out = m._fold_in(sp.csr_matrix(hist))
    for row, x in zip(hist, out):
        c = np.ones(m.n_items)
        c[row.indices] = p.alpha  # implicit 0.7: confidence alpha on observed pairs, 1 elsewhere
        pu = np.zeros(m.n_items)
        pu[row.indices] = 1.0
        A = Y.T @ (c[:, None] * Y) + m.regularization * np.eye(Y.shape[1])
        want = np.linalg.solve(A, Y.T @ (c * pu))
        assert np.allclose(x, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", MF)
def test_fold_in_of_users_without_training_events(name, dataset):
    """Strong generalization: held-out users keep their index but have no training events."""
    train, holdout = split.strong_generalization(dataset, n_users=20, frac=0.2, seed=0)
    m = _fit(name, train)
    users = holdout.users
    assert (train.user_counts[users] == 0).all()
    hist = holdout.history[users]
    as_known = m.recommend(users, k=10, history=hist)
    as_unknown = m.recommend(np.full(len(users), -1), k=10, history=hist)
    assert np.array_equal(as_known.items, as_unknown.items)
    assert np.array_equal(as_known.scores, as_unknown.scores)
    assert not metrics.hit_matrix(as_known.items, hist).any(), "a fold-in item was recommended"
    # folding in beats popularity for them
    pop = models.get("popularity").fit(train).recommend(users, k=10, history=hist)
    got = metrics.evaluate(as_known, holdout, ["recall@10"])["recall@10"]
    base = metrics.evaluate(pop, holdout, ["recall@10"])["recall@10"]
    assert got > base, (name, got, base)
    # no history at all: popularity, not their meaningless (untrained) factors
    top_pop = np.argsort(-train.item_counts, kind="stable")[:5]
    cold = m.recommend(users[:3], k=5)
    assert all(set(r) == set(top_pop) for r in cold.items)


@pytest.mark.parametrize("name", MF)
def test_fold_in_scores_do_not_depend_on_the_batch(name, dataset):
    m = _fit(name, dataset)
    hist = dataset.matrix[:30]
    users = np.full(30, -1)
    ref = m.recommend(users, k=10, history=hist, batch_size=1000)
    for bs in (1, 4):
        got = m.recommend(users, k=10, history=hist, batch_size=bs)
        assert np.array_equal(ref.items, got.items) and np.array_equal(ref.scores, got.scores)


@pytest.mark.parametrize("name", MF)
def test_loaded_model_folds_in_without_implicit_state(name, dataset, tmp_path):
    m = _fit(name, dataset)
    hist = dataset.matrix[:10]
    before = m.recommend(np.full(10, -1), k=10, history=hist)
    loaded = Recommender.load(m.save(tmp_path / name))
    assert loaded.user_factors.dtype == np.float32 and loaded.item_factors.dtype == np.float32
    after = loaded.recommend(np.full(10, -1), k=10, history=hist)
    assert np.array_equal(before.items, after.items) and np.allclose(before.scores, after.scores)


def test_ials_default_regularization_grows_with_the_trained_users(dataset, tmp_path):
    train, holdout = split.strong_generalization(dataset, n_users=20, frac=0.2, seed=0)
    m = _fit("ials", train, regularization=None)
    n_trained = int((train.user_counts > 0).sum())
    assert n_trained == dataset.n_users - 20
    assert m.regularization == pytest.approx(1.6 * n_trained**0.4)
    assert _fit("ials", train, regularization=7.0).regularization == 7.0
    loaded = Recommender.load(m.save(tmp_path / "m"))
    assert loaded.params.regularization is None and loaded.regularization == m.regularization
    hist = holdout.history[holdout.users]
    a = m.recommend(holdout.users, k=10, history=hist)
    b = loaded.recommend(holdout.users, k=10, history=hist)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.scores, b.scores)


def test_ials_does_not_depend_on_the_thread_count(dataset):
    one = _fit("ials", dataset, iterations=3)
    two = _fit("ials", dataset, iterations=3, num_threads=2)
    assert np.array_equal(one.user_factors, two.user_factors)
    assert np.array_equal(one.item_factors, two.item_factors)


def test_seed_changes_the_model_and_fixes_it(dataset):
    a = _fit("bpr", dataset, random_state=1).user_factors
    b = _fit("bpr", dataset, random_state=1).user_factors
    c = _fit("bpr", dataset, random_state=2).user_factors
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_parameter_bounds():
    with pytest.raises(ToprecError, match="parameter 'factors'"):
        models.get("ials", factors=0)
    with pytest.raises(ToprecError, match="parameter 'alpha'"):
        models.get("ials", alpha=0)
    with pytest.raises(ToprecError, match="unknown parameter 'alpha'"):
        models.get("bpr", alpha=1.0)
    with pytest.raises(ToprecError, match="parameter 'neg_prop'"):
        models.get("lmf", neg_prop=0)
    with pytest.raises(ToprecError, match="parameter 'learning_rate'"):
        models.get("bpr", learning_rate=-0.1)


def test_ials_bm25_confidences_are_implicits_bm25_weight_scaled_to_mean_one(dataset):
    from implicit.nearest_neighbours import bm25_weight
    from toprec.models.mf import _binary

    m = _fit("ials", dataset, weighting="bm25")
    X = _binary(dataset.matrix)
    want = bm25_weight(X.tocoo(), K1=m.BM25_K1, B=m.BM25_B).tocsr()
    want.sort_indices()
    got = m._weighted(X)
    assert np.array_equal(got.indices, want.indices)
    assert np.allclose(got.data * m._bm25[-1], want.data, rtol=1e-5)
    assert got.data.mean() == pytest.approx(1.0, rel=1e-5)


def test_ials_bm25_changes_the_model_folds_in_weighted_and_survives_save(dataset, tmp_path):
    plain, bm = _fit("ials", dataset), _fit("ials", dataset, weighting="bm25")
    assert not np.allclose(plain.item_factors, bm.item_factors)
    # a training user's own history, folded in with the training's weights, gives (nearly) their learned vector
    users = np.arange(20)
    from toprec.models.mf import _binary

    folded = bm._fold_in(_binary(dataset.matrix[users]))
    cos = np.sum(folded * bm.user_factors[users], 1) / (
        np.linalg.norm(folded, axis=1) * np.linalg.norm(bm.user_factors[users], axis=1))
    assert cos.min() > 0.9
    saved, bm._bm25 = bm._bm25, None  # the same solve without the weights: another vector
    unweighted = bm._fold_in(_binary(dataset.matrix[users]))
    bm._bm25 = saved
    assert not np.allclose(unweighted, folded, atol=1e-3)
    hist = dataset.matrix[:10]
    before = bm.recommend(np.full(10, -1), k=10, history=hist)
    loaded = Recommender.load(bm.save(tmp_path / "bm25"))
    assert loaded.params.weighting == "bm25" and np.array_equal(loaded._bm25, bm._bm25)
    after = loaded.recommend(np.full(10, -1), k=10, history=hist)
    assert np.array_equal(before.items, after.items) and np.allclose(before.scores, after.scores)
