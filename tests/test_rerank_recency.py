"""The re-ranker's recency features (toprec.ensemble.recency), checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from toprec import Dataset
from toprec.ensemble.recency import RECENT, WINDOWS, Recency, has_time
from toprec.ensemble.rerank import Reranker, candidate_features
from toprec.recommend import Recommendations

DAY = 86_400


def _timed(seed: int = 0, users: int = 40, items: int = 30, events: int = 600) -> Dataset:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, events)
    i = (u % 5) * 6 + rng.integers(0, 8, events)  # clustered, so similarities are not all zero
    i %= items
    t = 1_000_000 + rng.integers(0, 400, events) * DAY
    return Dataset.from_events(u.astype(str), i, times=t)


def _cosine(X):
    X = X.toarray().astype(np.float64)
    g = X.T @ X
    n = np.sqrt(np.diag(g))
    s = g / (n[:, None] * n[None, :] + 10.0 + 1e-12)  # the similarity's shrink (10)
    np.fill_diagonal(s, 0.0)
    return s


def test_recency_features_by_brute_force():
    data = _timed()
    rc = Recency(data)
    users = np.array([0, 3, 7, -1, 10_000], dtype=np.int64)  # -1 / out of range: unknown users
    rng = np.random.default_rng(1)
    items = rng.integers(0, data.n_items, (len(users), 12)).astype(np.int64)
    items[0, -2:] = -1  # padding
    cols, names = rc.features(users, items)
    f = dict(zip(names, cols))
    assert names == ["sim_last", "sim_recent_max", "sim_recent_mean", "user_idle", "item_age", "item_pop_near",
                     "item_pop_recent"]  # fmt: skip
    S = _cosine(data.matrix)  # 30 items: the 100 nearest are all of them
    ptr, it, t = data.user_ptr, np.asarray(data.item), np.asarray(data.time)
    span = float(t.max() - t.min())
    for r, u in enumerate(users):
        for c in range(items.shape[1]):
            cand = max(items[r, c], 0)
            if not 0 <= u < data.n_users:
                assert f["sim_last"][r, c] == 0 and f["sim_recent_max"][r, c] == 0
                continue
            hist = it[ptr[u]:ptr[u + 1]][::-1][:RECENT]  # most recent first (ties: the Dataset's order)
            sims = S[cand, hist]
            np.testing.assert_allclose(f["sim_last"][r, c], sims[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(f["sim_recent_max"][r, c], sims.max(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(f["sim_recent_mean"][r, c], sims.mean(), rtol=1e-5, atol=1e-6)
            last = t[ptr[u + 1] - 1]
            np.testing.assert_allclose(f["user_idle"][r, c], (t.max() - last) / span)
            first = t[it == cand].min()
            np.testing.assert_allclose(f["item_age"][r, c], (last - first) / span)
            for w, name in zip(WINDOWS, ("item_pop_near", "item_pop_recent")):
                lo = last - int(w * span)
                n = np.sum((it == cand) & (t <= last) & (t > lo))
                np.testing.assert_allclose(f[name][r, c], np.log1p(n), err_msg=f"{name} user {u} item {cand}")
    # the windows differ somewhere (else the test says nothing about them)
    assert not np.array_equal(f["item_pop_near"], f["item_pop_recent"])
    assert (f["item_age"] < 0).any() or (f["item_age"] > 0).all()


def test_item_first_seen_after_the_user_stopped_has_negative_age():
    # u0 stops at day 1; item 2 appears first on day 10 (watched by u1)
    data = Dataset.from_events(np.array(["u0", "u0", "u1", "u1"]), np.array([0, 1, 0, 2]),
                               times=np.array([0, DAY, 5 * DAY, 10 * DAY]))  # fmt: skip
    cols, names = Recency(data).features(data.user_index(["u0"]), np.array([[2, 0]]))
    age = cols[names.index("item_age")]
    assert age[0, 0] == pytest.approx((DAY - 10 * DAY) / (10 * DAY)) and age[0, 1] == pytest.approx(0.1)


def test_without_a_time_column_only_the_similarities():
    # one time for every event (a file without a time column gets its row order: that is an order)
    data = Dataset.from_events(np.array(["a", "a", "b", "b"]), np.array([0, 1, 1, 2]), times=np.zeros(4, int))
    assert not has_time(data)
    cols, names = Recency(data).features(np.array([0, 1]), np.array([[2, 1], [0, -1]]))
    assert names == ["sim_last", "sim_recent_max", "sim_recent_mean"]
    assert all(c.shape == (2, 2) for c in cols)


def test_candidate_features_append_recency_and_reranker_switch():
    data = _timed(2)
    users = np.arange(6, dtype=np.int64)
    m = Recommendations(users, np.tile(np.arange(5, dtype=np.int32), (6, 1)), np.ones((6, 5), np.float32))
    _, base, names0 = candidate_features(data, data, users, [m], ["m"])
    _, feats, names = candidate_features(data, data, users, [m], ["m"], recency=Recency(data))
    assert names[: len(names0)] == names0 and names[len(names0):][0] == "sim_last"
    np.testing.assert_array_equal(feats[..., : len(names0)], base)
    assert Reranker(["m"])._recency(data) is not None and Reranker(["m"], recency=False)._recency(data) is None


def test_recency_tables_are_built_once_per_training_set():
    """Auto's three rankers over the same cuts share each cut's tables; another training set gets its own."""
    data, other = _timed(), _timed(seed=1)
    first = Recency.of(data)
    assert Recency.of(data) is first and Recency.of(other) is not first
    np.testing.assert_array_equal(first.S.toarray(), Recency(data).S.toarray())
    rr = Reranker(["m"], recency=True)
    assert rr._recency(data) is first
