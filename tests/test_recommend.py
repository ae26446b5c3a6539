from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec.recommend import batch_size_for, mask_rows, seen_and_cold, topk, topk_rows


def test_topk_rows_ties_go_to_lower_index():
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    items = np.empty((2, 2), np.int32)
    vals = np.empty((2, 2), np.float32)
    topk_rows(scores, 2, items, vals)
    assert items.tolist() == [[1, 2], [0, 1]]
    assert vals.tolist() == [[3.0, 3.0], [5.0, 5.0]]


def test_topk_rows_pads_when_not_enough_items():
    scores = np.array([[0.5, -np.inf, 0.1]], dtype=np.float32)
    items = np.empty((1, 4), np.int32)
    vals = np.empty((1, 4), np.float32)
    topk_rows(scores, 4, items, vals)
    assert items.tolist() == [[0, 2, -1, -1]]


def test_mask_rows():
    s = np.zeros((2, 4), np.float32)
    ex = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=np.float32))
    mask_rows(s, ex)
    assert np.isneginf(s).tolist() == [[True, False, False, True], [False, True, False, False]]


def test_seen_and_cold_fills_cold_rows_then_masks_seen_items():
    hist = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32))  # row 1: cold
    s = np.ones((2, 4), np.float32)
    seen_and_cold(s, hist, popularity=np.array([4, 3, 2, 1], np.float32), exclude=hist)
    assert s.tolist() == [[-np.inf, 1, 1, -np.inf], [4, 3, 2, 1]]
    # candidate layout: columns hold items; seen candidates and padding (-1) are masked
    items = np.array([[3, 1, -1], [0, 2, 1]])
    s = np.ones((2, 3), np.float32)
    seen_and_cold(s, exclude=sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32)), items=items)
    assert s.tolist() == [[1, -np.inf, -np.inf], [1, 1, 1]]


def test_topk_with_popularity_serves_cold_users():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    hist = sp.csr_matrix(np.array([[0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    pop = np.array([9, 8, 7, 6], np.float32)
    got = topk(lambda u, h: base[u].copy(), np.arange(3), 4, 2, hist, hist, popularity=pop)
    assert got.items.tolist() == [[2, 1], [0, 1], [3, 2]]


def test_topk_batch_invariance_with_random_scores_and_masks():
    rng = np.random.default_rng(0)
    n, m, k = 103, 57, 7
    base = rng.integers(0, 5, size=(n, m)).astype(np.float32)  # many ties on purpose
    hist = sp.random(n, m, density=0.3, random_state=1, format="csr", dtype=np.float32)

    def score(users, h):
        return base[users].copy()

    ref = topk(score, np.arange(n), m, k, hist, hist, batch_size=n)
    for bs in (1, 2, 10, 64):
        got = topk(score, np.arange(n), m, k, hist, hist, batch_size=bs)
        assert np.array_equal(ref.items, got.items) and np.array_equal(ref.scores, got.scores)
    # brute force: stable sort by (-score, index) after masking
    masked = base.copy()
    mask_rows(masked, hist)
    expect = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    assert np.array_equal(ref.items, expect)


def test_batch_size_for_budget():
    assert batch_size_for(1000, memory_budget=8_000_000, factor=2) == 1000
    assert batch_size_for(10**9, memory_budget=10) == 1


@pytest.mark.parametrize("m, k", [(300, 10), (1000, 10), (1001, 3), (5000, 50), (257, 1)])
def test_topk_rows_grouped_path_matches_full_sort(m, k):
    rng = np.random.default_rng(m + k)
    n = 64
    scores = rng.standard_normal((n, m)).astype(np.float32)
    scores[:8] = np.round(scores[:8])  # heavy ties in some rows
    scores[8:12, : m - 2] = -np.inf  # rows with only 2 available items
    items = np.empty((n, k), np.int32)
    vals = np.empty((n, k), np.float32)
    topk_rows(scores, k, items, vals)
    expect = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    exp_vals = np.take_along_axis(scores, expect, axis=1)
    expect = np.where(np.isneginf(exp_vals), -1, expect)
    assert np.array_equal(items, expect)


def test_forked_workers_give_identical_results(monkeypatch):
    rng = np.random.default_rng(3)
    n, m, k = 5000, 300, 10
    base = rng.standard_normal((n, m)).astype(np.float32)
    hist = sp.random(n, m, density=0.05, random_state=4, format="csr", dtype=np.float32)

    def score(users, h):
        return base[users].copy()

    monkeypatch.setenv("TOPREC_WORKERS", "1")
    one = topk(score, np.arange(n), m, k, hist, hist, batch_size=700)
    monkeypatch.setenv("TOPREC_WORKERS", "3")
    three = topk(score, np.arange(n), m, k, hist, hist, batch_size=700)
    assert np.array_equal(one.items, three.items) and np.array_equal(one.scores, three.scores)


def test_split_rows_cover_everything():
    from toprec.parallel import split_rows

    for n, parts in [(10, 3), (5000, 2), (1, 4), (7, 7)]:
        r = split_rows(n, parts)
        assert r[0][0] == 0 and r[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(r, r[1:]))
