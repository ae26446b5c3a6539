"""Sequential rules (seqrules): exact rule weights and scores on hand-built sequences, order, fold-in, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import Dataset, models, split
from toprec.models.seqrules import keep_top_per_row, transition_counts

A, B, C, D = 0, 1, 2, 3  # external ids "A".."D" map to 0..3 (sorted)


def _data(rows):
    users, items, times = zip(*rows)
    return Dataset.from_events(np.array(users), np.array(items), np.array(times))


@pytest.fixture
def tiny() -> Dataset:
    # u1: A B C    u2: A C    u3: B A D   (time order)
    return _data([
        ("u1", "A", 1), ("u1", "B", 2), ("u1", "C", 3),
        ("u2", "C", 9), ("u2", "A", 5),
        ("u3", "B", 1), ("u3", "A", 2), ("u3", "D", 3),
    ])  # fmt: skip


def _dense(S) -> np.ndarray:
    return np.asarray(sp.csr_matrix(S).toarray())


def test_rule_weights_by_hand(tiny):
    assert list(tiny.item_ids) == ["A", "B", "C", "D"]
    T = _dense(transition_counts(tiny, tiny.n_items, window=2))
    want = np.zeros((4, 4), dtype=np.float32)
    # gap 1 (weight 1): A->B (u1), B->C (u1), A->C (u2), B->A (u3), A->D (u3); gap 2 (weight 1/2): A->C (u1), B->D (u3)
    want[A, B], want[A, C], want[A, D] = 1.0, 1.5, 1.0
    want[B, C], want[B, A], want[B, D] = 1.0, 1.0, 0.5
    assert np.array_equal(T, want)
    # window 1: only neighbours
    T1 = _dense(transition_counts(tiny, tiny.n_items, window=1))
    want1 = want.copy()
    want1[A, C], want1[B, D] = 1.0, 0.0
    assert np.array_equal(T1, want1)


def test_normalisation_and_fitted_rules(tiny):
    m = models.get("seqrules", window=2, normalize=1.0, shrink=1.0, k=10).fit(tiny)
    T = _dense(m.rules)
    assert T[A, C] == pytest.approx(1.5 / (3.5 + 1.0))  # row A's total weight 3.5
    assert T[B, D] == pytest.approx(0.5 / (2.5 + 1.0))
    assert not T[C].any() and not T[D].any()  # C and D are never followed
    # normalize=1, shrink=0: each non-empty row is the distribution P(j | i)
    P = _dense(models.get("seqrules", window=2, normalize=1.0, k=10).fit(tiny).rules)
    assert np.allclose(P.sum(1), [1.0, 1.0, 0.0, 0.0])


def test_scores_by_hand(tiny):
    m = models.get("seqrules", window=2, normalize=0.0, last_n=2, recency_decay=0.5, k=10).fit(tiny)
    s = m.score(np.array([0]))[0]  # u1: A B C -> votes C (1.0), B (0.5); T[C] is empty
    # 0.5 * T[B] = A 0.5, C 0.5, D 0.25; B no rule reaches: popularity fill 2 / (3 + 1) - 1
    assert np.allclose(s, [0.5, -0.5, 0.5, 0.25])
    s3 = m.score(np.array([2]))[0]  # u3: B A D -> votes D (1.0), A (0.5): 0.5 * T[A]
    assert np.allclose(s3, [-0.25, 0.5, 0.75, 0.5])
    recs = m.recommend(np.array([1]), k=2)  # u2: A C -> votes C, A; seen A, C masked
    assert recs.items[0].tolist() == [B, D] and np.allclose(recs.scores[0], [0.5, 0.5])


def test_order_matters_with_the_same_item_set():
    # u1 and u4 hold the same items in reverse orders: an item-set model would score them alike
    order = [("u1", "A", 1), ("u1", "B", 2), ("u1", "C", 3), ("u4", "C", 1), ("u4", "B", 2), ("u4", "A", 3)]
    rest = [("u2", "C", 1), ("u2", "D", 2), ("u3", "A", 1), ("u3", "E", 2)]
    data = _data(order + rest)
    m = models.get("seqrules", window=1, normalize=0.0, last_n=1, k=10).fit(data)
    want = np.zeros((5, 5))
    want[A, B] = want[B, C] = want[C, B] = want[B, A] = want[C, D] = want[A, 4] = 1.0
    assert np.array_equal(_dense(m.rules), want)
    u1, u4 = data.user_index(["u1", "u4"])
    s = m.score(np.array([u1, u4]))
    # fill (no rule): popularity / (3 + 1) - 1 with counts A 3, B 2, C 3, D 1, E 1
    assert np.allclose(s[0], [-0.25, 1.0, -0.25, 1.0, -0.75])  # u1 ends with C: C->B, C->D
    assert np.allclose(s[1], [-0.25, 1.0, -0.25, -0.75, 1.0])  # u4 ends with A: A->B, A->E
    # reversing u1's training sequence changes its rules and its scores
    rev = _data([(u, i, 4 - t if u == "u1" else t) for u, i, t in order] + rest)
    m2 = models.get("seqrules", window=1, normalize=0.0, last_n=1, k=10).fit(rev)
    assert not np.allclose(m2.score(np.array([u1])), s[0])
    # rules now C->B 2, B->A 2, C->D, A->E; u1 ends with A: only A->E
    assert np.allclose(m2.score(np.array([u1]))[0], [-0.25, -0.5, -0.25, -0.75, 1.0])


def test_fold_in_new_user(tiny):
    m = models.get("seqrules", window=2, normalize=0.0, last_n=2, recency_decay=0.5, k=10).fit(tiny)
    # an unknown user with u1's items: history items order by index (A B C) = u1's order
    hist = tiny.matrix[[0]]
    assert np.array_equal(m.score(np.array([-1]), history=hist), m.score(np.array([0])))
    new = m.recommend(np.array([-1]), k=3, history=hist)
    old = m.recommend(np.array([0]), k=3)
    assert np.array_equal(new.items, old.items) and np.array_equal(new.scores, old.scores)
    # an unknown user who saw only B: T[B] = A 1, C 1, D 0.5
    h = sp.csr_matrix(([1.0], ([0], [B])), shape=(1, 4))
    assert np.allclose(m.score(np.array([-1]), history=h)[0], [1.0, -0.5, 1.0, 0.5])
    # a known user with a new event: it comes last (most recent). u2: A C + B -> votes B (1), C (0.5)
    h2 = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [A, B, C])), shape=(1, 4))
    assert np.allclose(m.score(np.array([1]), history=h2)[0], [1.0, -0.5, 1.0, 0.5])


def test_top_k_per_row_keeps_largest_and_lower_index_on_ties():
    T = sp.csr_matrix(np.array([[0.0, 3.0, 1.0, 1.0, 2.0], [0.0, 0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0]]))
    got = _dense(keep_top_per_row(T, 2))
    assert np.array_equal(got, [[0, 3, 0, 0, 2], [0, 0, 1, 0, 0], [1, 1, 0, 0, 0]])
    assert keep_top_per_row(T, 2).has_sorted_indices


def test_transition_counts_match_a_naive_loop():
    rng = np.random.default_rng(5)
    n = 600
    data = Dataset.from_events(rng.integers(0, 25, n), rng.integers(0, 40, n), rng.integers(0, 50, n))
    window = 4
    want = np.zeros((data.n_items, data.n_items))
    for u in range(data.n_users):  # reference: a plain loop over each user's time-ordered events
        seq = data.item[data.user_ptr[u] : data.user_ptr[u + 1]]
        for t in range(len(seq)):
            for g in range(1, window + 1):
                if t + g < len(seq):
                    want[seq[t], seq[t + g]] += 1.0 / g
    assert np.allclose(_dense(transition_counts(data, data.n_items, window)), want, atol=1e-5)


def test_batch_size_invariance_and_save_load(dataset, tmp_path):
    train, _ = split.competition(dataset, last=1, random=4, seed=0)
    m = models.get("seqrules", window=3, last_n=4, k=15).fit(train)
    a = m.recommend(k=10, batch_size=7)
    b = m.recommend(k=10, batch_size=10_000)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.scores, b.scores)
    loaded = models.Recommender.load(m.save(tmp_path / "sr"))
    assert loaded.params == m.params
    assert (_dense(loaded.rules) == _dense(m.rules)).all()
    assert np.array_equal(loaded.order_rank, m.order_rank)
    c = loaded.recommend(k=10)
    assert np.array_equal(a.items, c.items) and np.array_equal(a.scores, c.scores)
    # the stored time order survives: a known user's history with a new item scores the same after loading
    h = train.matrix[[3]].tolil()
    h[0, int(np.flatnonzero(train.matrix[3].toarray()[0] == 0)[0])] = 1.0
    h = sp.csr_matrix(h)
    assert np.array_equal(m.score(np.array([3]), history=h), loaded.score(np.array([3]), history=h))


def test_search_space_and_bounds():
    cls = models.get_class("seqrules")
    assert set(cls.search_space) == {"window", "last_n", "recency_decay", "normalize", "shrink", "k"}
    assert not cls.history_based
    with pytest.raises(Exception, match="window"):
        models.get("seqrules", window=0)
