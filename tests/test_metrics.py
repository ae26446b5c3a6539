from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import ToprecError, metrics
from toprec.recommend import Recommendations
from toprec.split import Holdout


def _truth(rows, n_items=10):
    r = [i for i, items in enumerate(rows) for _ in items]
    c = [j for items in rows for j in items]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


def test_exact_values_by_hand():
    items = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    truth = _truth([[2, 4, 9], [0]])
    # user 0: hits at ranks 2 and 4; user 1: none
    h = metrics.hit_matrix(items, truth)
    assert h.tolist() == [[False, True, False, True], [False] * 4]
    assert metrics.per_user("recall@4", items, truth).tolist() == [2 / 3, 0.0]
    assert metrics.per_user("recall@2", items, truth).tolist() == [1 / 2, 0.0]  # min(k, |T|) = 2
    assert metrics.per_user("precision@4", items, truth).tolist() == [0.5, 0.0]
    assert metrics.per_user("hit@1", items, truth).tolist() == [0.0, 0.0]
    assert metrics.per_user("mrr@4", items, truth).tolist() == [0.5, 0.0]
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert metrics.per_user("ndcg@4", items, truth)[0] == pytest.approx(dcg / idcg)
    assert metrics.per_user("map@4", items, truth)[0] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_competition_recall_form():
    # 10 held-out items, 4 found in the top 10 -> 4 / min(10, 10)
    items = np.arange(10)[None, :]
    truth = _truth([[0, 2, 5, 7, 11, 12, 13, 14, 15, 16]], n_items=20)
    assert metrics.per_user("recall@10", items, truth)[0] == pytest.approx(0.4)
    # a user with 3 held-out items found at ranks 1..3 gets recall 1
    assert metrics.per_user("recall@10", items, _truth([[0, 1, 2]], 20))[0] == 1.0


def test_padding_never_hits():
    items = np.array([[3, -1, -1]])
    truth = _truth([[3]], 5)
    assert metrics.per_user("recall@3", items, truth)[0] == 1.0
    assert metrics.hit_matrix(items, truth).sum() == 1


def test_evaluate_means_over_users_with_truth():
    truth = _truth([[1], [], [2, 3]], 6)
    ho = Holdout(truth, {"a": truth})
    recs = Recommendations(np.array([0, 1, 2]), np.array([[1, 0], [4, 5], [0, 2]]), np.zeros((3, 2), np.float32))
    res = metrics.evaluate(recs, ho, ["recall@2", "coverage@2"])
    assert res["recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert res["coverage@2"] == pytest.approx(5 / 6)
    # users missing from recs count as zero; extra users are ignored
    recs2 = Recommendations(np.array([2]), np.array([[2, 3]]), np.zeros((1, 2), np.float32))
    assert metrics.evaluate(recs2, ho, ["recall@2"])["recall@2"] == pytest.approx(0.5)


def test_unknown_metric():
    with pytest.raises(ToprecError, match="unknown metric"):
        metrics.parse("auc@10")


def test_agrees_with_trec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    n_users, n_items, k = 200, 60, 10
    items = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    rows = [rng.choice(n_items, size=rng.integers(1, 8), replace=False).tolist() for _ in range(n_users)]
    truth = _truth(rows, n_items)
    qrel = {f"q{u}": {f"d{i}": 1 for i in rows[u]} for u in range(n_users)}
    run = {f"q{u}": {f"d{i}": float(k - r) for r, i in enumerate(items[u])} for u in range(n_users)}
    ev = pytrec_eval.RelevanceEvaluator(qrel, {"ndcg_cut.10", "P.10", "recip_rank", "map_cut.10", "recall.10"})
    res = ev.evaluate(run)
    ours = {m: metrics.per_user(m, items, truth) for m in ("ndcg@10", "precision@10", "mrr@10", "map@10", "recall@10")}
    for u in range(n_users):
        r = res[f"q{u}"]
        assert ours["ndcg@10"][u] == pytest.approx(r["ndcg_cut_10"], abs=1e-9)
        assert ours["precision@10"][u] == pytest.approx(r["P_10"], abs=1e-9)
        assert ours["mrr@10"][u] == pytest.approx(r["recip_rank"], abs=1e-9)
        # |truth| <= k here, so min(k, |T|) = |T| and trec_eval's map/recall coincide with ours
        assert ours["map@10"][u] == pytest.approx(r["map_cut_10"], abs=1e-9)
        assert ours["recall@10"][u] == pytest.approx(r["recall_10"], abs=1e-9)


def test_sorted_key_membership():
    from toprec.keys import csr_keys, find_sorted, isin_sorted

    m = sp.csr_matrix(np.array([[0, 1, 1], [1, 0, 0]], dtype=np.float32))
    keys = csr_keys(m)
    assert keys.tolist() == [1, 2, 3]
    pos, found = find_sorted(keys, np.array([[3, 0], [2, 9]]))
    assert found.tolist() == [[True, False], [True, False]] and pos[found].tolist() == [2, 1]
    assert isin_sorted(np.array([], dtype=np.int64), np.array([1, 2])).tolist() == [False, False]
