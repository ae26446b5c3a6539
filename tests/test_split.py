from __future__ import annotations

import numpy as np
import pytest

from toprec import Dataset, ToprecError, split


def _uneven(seed=0):
    """Users with 3..40 events so the too-few-events rule is exercised."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 41, size=60)
    users = np.repeat(np.arange(60), counts)
    items = np.concatenate([rng.choice(200, size=c, replace=False) for c in counts])
    times = np.concatenate([np.sort(rng.choice(10_000, size=c, replace=False)) for c in counts])
    return Dataset.from_events(users, items, times), counts


def _check_partition(data, train, holdout):
    # every event lands exactly once in train or test
    assert train.n_events + holdout.n_events == data.n_events
    assert train.matrix.multiply(holdout.matrix).nnz == 0
    assert (train.matrix + holdout.matrix - data.matrix).count_nonzero() == 0


def test_competition_counts_and_last_event():
    data, counts = _uneven()
    train, ho = split.competition(data, last=1, random=9, seed=3)
    _check_partition(data, train, ho)
    n_test = np.diff(ho.matrix.indptr)
    eligible = counts >= 11
    assert np.all(n_test[eligible] == 10) and np.all(n_test[~eligible] == 0)
    assert np.all(np.diff(ho.parts["last"].indptr)[eligible] == 1)
    assert np.all(np.diff(ho.parts["random"].indptr)[eligible] == 9)
    # the "last" part is exactly each eligible user's latest event
    for u in np.flatnonzero(eligible)[:10]:
        lo, hi = data.user_ptr[u], data.user_ptr[u + 1]
        assert ho.parts["last"][u].indices.tolist() == [data.item[hi - 1]]
    # users with too few events stay whole in train
    assert np.all(train.user_counts[~eligible] == counts[~eligible])


def test_competition_random_part_is_earlier_and_seeded():
    data, _ = _uneven()
    tr1, h1 = split.competition(data, seed=1)
    tr2, h2 = split.competition(data, seed=1)
    tr3, h3 = split.competition(data, seed=2)
    assert (h1.matrix != h2.matrix).nnz == 0 and np.array_equal(tr1.item, tr2.item)
    assert (h1.matrix != h3.matrix).nnz > 0
    # random picks are never the last event
    assert h1.parts["random"].multiply(h1.parts["last"]).nnz == 0


def test_leave_last_and_random_k():
    data, counts = _uneven()
    train, ho = split.leave_last(data, n=2)
    _check_partition(data, train, ho)
    assert np.all(np.diff(ho.matrix.indptr) == np.where(counts >= 3, 2, 0))
    # held out events are the latest ones: no training event is later
    for u in range(5):
        if counts[u] >= 3:
            t_test = data.time[data.user_ptr[u + 1] - 2 : data.user_ptr[u + 1]]
            t_train = train.time[train.user_ptr[u] : train.user_ptr[u + 1]]
            assert t_train.max() <= t_test.min()
    train, ho = split.random_k(data, n=5, seed=0)
    _check_partition(data, train, ho)
    assert np.all(np.diff(ho.matrix.indptr) == np.where(counts >= 6, 5, 0))


def test_temporal():
    data, _ = _uneven()
    cutoff = float(np.quantile(data.time, 0.8))
    train, ho = split.temporal(data, 0.8)
    assert train.time.max() < cutoff
    rows, cols = ho.matrix.nonzero()
    assert train.matrix.multiply(ho.matrix).nnz == 0
    # every test user has training history
    assert np.all(train.user_counts[np.unique(rows)] > 0)


def test_strong_generalization():
    data, _ = _uneven()
    train, ho = split.strong_generalization(data, n_users=10, frac=0.25, seed=0)
    test_users = ho.users
    assert len(test_users) == 10
    assert np.all(train.user_counts[test_users] == 0)  # held-out users are not trained on
    assert ho.history is not None
    assert (ho.history + ho.matrix - data.matrix[...]).multiply(
        np.isin(np.arange(data.n_users), test_users)[:, None]
    ).count_nonzero() == 0


def test_leak_assertion_fires():
    data, _ = _uneven()
    train, ho = split.competition(data)
    bad = split.Holdout(data.matrix, {}, None, "bad")
    with pytest.raises(AssertionError, match="leaks"):
        split.assert_no_leak(train.filter(np.ones(train.n_events, bool)), bad)


def test_leak_into_the_fold_in_history_fires():
    """A strong-generalization holdout whose fold-in history holds one of its held-out events (issue 22 item 18)."""
    data, _ = _uneven()
    train, ho = split.strong_generalization(data, n_users=10, frac=0.25, seed=0)
    split.assert_no_leak(train, ho)  # the real split is clean
    u = ho.users[0]
    i = ho.matrix[u].indices[0]  # one held-out event of a held-out user ...
    history = ho.history.tolil()
    history[u, i] = 1.0  # ... also in the history the model is given
    leaky = split.Holdout(ho.matrix, ho.parts, history.tocsr(), ho.protocol)
    assert train.matrix.multiply(leaky.matrix).nnz == 0  # train itself does not leak: only the history does
    with pytest.raises(AssertionError, match="fold-in history"):
        split.assert_no_leak(train, leaky)


def test_bad_arguments():
    data, _ = _uneven()
    with pytest.raises(ToprecError):
        split.competition(data, last=0, random=0)
    with pytest.raises(ToprecError):
        split.by_name(data, "nope")
    with pytest.raises(ToprecError):
        split.strong_generalization(data, n_users=10_000)


@pytest.mark.parametrize("case", ["random", "ties", "near_ties", "big_users", "unsorted_users", "int_keys", "nan_keys"])
def test_user_key_order_is_exactly_lexsort(case):
    """The fast one-sort path must give lexsort's order in every case, falling back when rounding would bite."""
    from toprec.split import _user_key_order

    rng = np.random.default_rng(7)
    n = 20_000
    user = np.sort(rng.integers(0, 300, n)).astype(np.int32)
    key = rng.random(n)
    if case == "ties":
        key = np.where(rng.random(n) < 0.5, 2.0, np.round(key, 2))  # many exact ties, like the splits' 2.0
    elif case == "near_ties":
        key = 0.5 + rng.integers(0, 4, n) * 2.0**-52  # distinct keys that round together under u * span
    elif case == "big_users":
        user = np.sort(rng.integers(0, 2**31 - 1, n)).astype(np.int64)
    elif case == "unsorted_users":
        user = rng.permutation(user)
    elif case == "int_keys":  # nanosecond-like timestamps float64 cannot tell apart
        key = 1_700_000_000_000_000_000 + rng.integers(0, 3, n)
    elif case == "nan_keys":
        key[::7] = np.nan
    np.testing.assert_array_equal(_user_key_order(user, key), np.lexsort((key, user)))
    assert len(_user_key_order(user[:0], key[:0])) == 0
