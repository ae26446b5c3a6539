"""Ensembles: exact fusion on hand-made lists, the search/confirm protocol, members, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr

from toprec import Dataset, ToprecError, metrics, models
from toprec.ensemble import (
    Ensemble,
    align,
    align_seeds,
    build_pool,
    evaluate_folds,
    fuse,
    make_folds,
    parse_members,
    read_member_file,
    summarize_folds,
)
from toprec.ensemble import ensemble as ensemble_mod
from toprec.ensemble import folds as folds_mod
from toprec.ensemble.folds import halves
from toprec.ensemble.fusion import METHODS, contributions, topk_columns
from toprec.ensemble.search import Objective, run_search
from toprec.recommend import Recommendations, topk_rows



def rec(items, scores=None):
    items = np.asarray(items, dtype=np.int32)
    if scores is None:
        scores = -np.arange(items.shape[1], dtype=np.float32)[None, :].repeat(items.shape[0], 0)
    return Recommendations(np.arange(items.shape[0]), items, np.asarray(scores, dtype=np.float32))


# ----------------------------------------------------------- exact fusion
def test_rank_fusion_soft_vote_exact():
    a, b = rec([[1, 2, 3]]), rec([[2, 4, 1]])
    out = fuse([a, b], method="rank", k=4)
    expect = {1: 1 + 1 / np.log2(4), 2: 1 / np.log2(3) + 1, 3: 1 / np.log2(4), 4: 1 / np.log2(3)}
    assert out.items.tolist() == [[2, 1, 4, 3]]
    np.testing.assert_allclose(out.scores[0], [expect[i] for i in (2, 1, 4, 3)], rtol=1e-6)


def test_weighted_rank_fusion_exact():
    a, b = rec([[1, 2, 3]]), rec([[2, 4, 1]])
    out = fuse([a, b], weights=[3.0, 1.0], method="rank", k=4)
    expect = {1: 3 + 1 / np.log2(4), 2: 3 / np.log2(3) + 1, 3: 3 / np.log2(4), 4: 1 / np.log2(3)}
    order = sorted(expect, key=lambda i: -expect[i])
    assert out.items[0].tolist() == order
    np.testing.assert_allclose(out.scores[0], [expect[i] for i in order], rtol=1e-6)


def test_rrf_uses_constant_60():
    a, b = rec([[1, 2, 3]]), rec([[2, 4, 1]])
    out = fuse([a, b], method="rrf", k=4)
    expect = {1: 1 / 61 + 1 / 63, 2: 1 / 62 + 1 / 61, 3: 1 / 63, 4: 1 / 62}
    order = sorted(expect, key=lambda i: -expect[i])
    assert out.items[0].tolist() == order
    np.testing.assert_allclose(out.scores[0], [expect[i] for i in order], rtol=1e-6)


def test_borda_points_scaled_by_list_length():
    a, b = rec([[1, 2, 3]]), rec([[2, 4, 1]])
    out = fuse([a, b], method="borda", k=4)
    expect = {1: 1 + 1 / 3, 2: 2 / 3 + 1, 3: 1 / 3, 4: 2 / 3}
    assert out.items[0].tolist() == [2, 1, 4, 3]
    np.testing.assert_allclose(out.scores[0], [expect[i] for i in (2, 1, 4, 3)], rtol=1e-6)


def test_score_fusion_standardises_per_user_and_floors_missing_items():
    a = rec([[1, 2, 3]], [[3.0, 2.0, 1.0]])  # z = +1.2247, 0, -1.2247
    b = rec([[2, 4, 1]], [[10.0, 10.0, 4.0]])  # mean 8, std sqrt(8): z = .7071, .7071, -1.4142
    out = fuse([a, b], method="score", k=4)
    za = {1: np.sqrt(1.5), 2: 0.0, 3: -np.sqrt(1.5)}
    zb = {2: 2 / np.sqrt(8), 4: 2 / np.sqrt(8), 1: -4 / np.sqrt(8)}
    fa, fb = min(za.values()), min(zb.values())
    expect = {i: za.get(i, fa) + zb.get(i, fb) for i in (1, 2, 3, 4)}
    order = sorted(expect, key=lambda i: (-round(expect[i], 6), i))
    assert out.items[0].tolist() == order
    np.testing.assert_allclose(out.scores[0], [expect[i] for i in order], rtol=1e-5, atol=1e-6)


def test_product_is_weighted_product_of_sigmoids():
    a = rec([[1, 2, 3]], [[3.0, 2.0, 1.0]])
    b = rec([[2, 4, 1]], [[10.0, 10.0, 4.0]])
    out = fuse([a, b], weights=[1.0, 2.0], method="product", k=4)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    za = {1: np.sqrt(1.5), 2: 0.0, 3: -np.sqrt(1.5)}
    zb = {2: 2 / np.sqrt(8), 4: 2 / np.sqrt(8), 1: -4 / np.sqrt(8)}
    fa, fb = min(za.values()), min(zb.values())
    expect = {i: sig(za.get(i, fa)) * sig(zb.get(i, fb)) ** 2 for i in (1, 2, 3, 4)}
    order = sorted(expect, key=lambda i: -expect[i])
    assert out.items[0].tolist() == order
    np.testing.assert_allclose(out.scores[0], [expect[i] for i in order], rtol=1e-5)


def test_contributions_of_ranks_only_member():
    v, floor = contributions("rank", np.array([[5, 7, -1]]), None)
    np.testing.assert_allclose(v, [[1.0, 1 / np.log2(3), 0.0]])
    assert floor.tolist() == [0.0]


def test_zero_weight_drops_member_and_its_candidates():
    a, b, c = rec([[1, 2]]), rec([[2, 3]]), rec([[9, 8]])
    out = fuse([a, b, c], weights=[1, 1, 0], method="rank", k=5)
    assert set(out.items[0][out.items[0] >= 0].tolist()) == {1, 2, 3}
    assert out.items[0].tolist()[3:] == [-1, -1]
    same = fuse([a, b], method="rank", k=5)
    assert np.array_equal(out.items, same.items) and np.allclose(out.scores, same.scores)
    pool = build_pool([a, b, c], "score")
    cols, _ = pool.top_columns(np.array([1.0, 1.0, 0.0]), 5)
    assert 9 not in pool.items[0][cols[0][cols[0] >= 0]]
    with pytest.raises(ToprecError, match="every weight is 0"):
        fuse([a, b], weights=[0, 0])


def test_union_of_candidates_per_user():
    a = rec([[5, 1, 3], [0, 1, 2]])
    b = rec([[3, 7, -1], [2, 1, 0]])
    pool = build_pool([a, b], "rank")
    assert pool.items[0][pool.items[0] >= 0].tolist() == [1, 3, 5, 7]
    assert pool.items[1][pool.items[1] >= 0].tolist() == [0, 1, 2]
    assert pool.present.sum() == 6 + 5
    out = fuse([a, b], k=6)
    assert (out.items[1][3:] == -1).all()


def test_ties_go_to_lower_item_and_match_topk_rows():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(50, 40)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    cols, top = topk_columns(scores, 7)
    items = np.empty((50, 7), np.int32)
    vals = np.empty((50, 7), np.float32)
    topk_rows(scores, 7, items, vals)
    assert np.array_equal(cols, items)
    a, b = rec([[4, 2]]), rec([[2, 4]])  # 2 and 4 tie exactly
    assert fuse([a, b], k=2).items.tolist() == [[2, 4]]


def test_exclude_removes_seen_items():
    a, b = rec([[1, 2, 3, 4]]), rec([[2, 5, 6, 1]])
    seen = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 1, 0]], dtype=np.float32))
    out = fuse([a, b], k=4, exclude=seen)
    assert 2 not in out.items[0] and 5 not in out.items[0]


def test_fuse_is_deterministic_and_equals_the_pool():
    rng = np.random.default_rng(0)
    lists = []
    for _ in range(3):
        items = np.stack([rng.choice(200, 30, replace=False) for _ in range(40)]).astype(np.int32)
        lists.append(rec(items, rng.normal(size=(40, 30)).astype(np.float32)))
    w = np.array([0.5, 0.3, 0.2])
    for method in ("rank", "rrf", "borda", "score", "product"):
        one = fuse(lists, w, method, k=10)
        two = fuse(lists, w, method, k=10)
        assert np.array_equal(one.items, two.items)
        pooled = build_pool(lists, method).recommend(w, 10)
        assert np.array_equal(one.items, pooled.items), method
        np.testing.assert_allclose(one.scores, pooled.scores, rtol=1e-5)


def test_bad_fusion_inputs():
    with pytest.raises(ToprecError, match="unknown fusion method"):
        fuse([rec([[1]])], method="nope")
    with pytest.raises(ToprecError, match="weights"):
        fuse([rec([[1]])], weights=[1, 2])
    with pytest.raises(ToprecError, match="weights must be"):
        fuse([rec([[1]])], weights=[-1])


# ------------------------------------------------------------ the search
def test_objective_equals_metrics_evaluate():
    rng = np.random.default_rng(1)
    lists = [rec(np.stack([rng.choice(50, 20, replace=False) for _ in range(30)])) for _ in range(2)]
    truth = sp.csr_matrix((rng.random((30, 50)) < 0.1).astype(np.float32))
    pool = build_pool(lists, "rank")
    f = Objective(pool, truth, 10)
    w = np.array([0.7, 0.3])
    recs = pool.recommend(w, 10)
    holdout = type("H", (), {"matrix": truth, "parts": {}})()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    assert f.per_user(w)[users].mean() == pytest.approx(metrics.evaluate(recs, holdout, ["recall@10"])["recall@10"])


def test_search_finds_the_useful_member_and_is_deterministic():
    n, items = 60, 100  # truth among items 0..99; the noise members list items 100..199 only
    rng = np.random.default_rng(0)
    truth_items = np.stack([rng.choice(items, 5, replace=False) for _ in range(n)])
    rows = np.repeat(np.arange(n), 5)
    truth = sp.csr_matrix((np.ones(n * 5, np.float32), (rows, truth_items.ravel())), shape=(n, 2 * items))
    good = np.concatenate([truth_items[:, :3], np.stack([rng.choice(items, 17) for _ in range(n)])], axis=1)
    good = np.stack([pd.unique(r)[:15] for r in good])
    noise1 = np.stack([items + rng.choice(items, 15, replace=False) for _ in range(n)])
    noise2 = np.stack([items + rng.choice(items, 15, replace=False) for _ in range(n)])
    pool = build_pool([rec(noise1), rec(good), rec(noise2)], "rank")
    for search in ("weights", "subset", "both"):
        r1 = run_search(pool, truth, 10, search)
        r2 = run_search(pool, truth, 10, search)
        assert np.array_equal(r1.weights, r2.weights)
        assert r1.weights.argmax() == 1
    assert run_search(pool, truth, 10, "subset").weights.tolist() == [0.0, 1.0, 0.0]


@pytest.fixture
def members3():
    return ["popularity", "itemknn", "ease:l2=20"]


def test_halves_are_disjoint_balanced_and_seeded():
    users = np.arange(101)
    activity = np.arange(101) % 7
    a, b = halves(users, activity, seed=0)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 101 and abs(len(a) - len(b)) <= 1
    a2, _ = halves(users, activity, seed=0)
    assert np.array_equal(a, a2)
    a3, _ = halves(users, activity, seed=1)
    assert not np.array_equal(a, a3)
    assert abs(activity[a].mean() - activity[np.setdiff1d(users, a)].mean()) < 0.2


def test_folds_never_leak(dataset):
    f = make_folds(dataset, "users", seed=0, random=4)
    assert f.search_train is f.confirm_train
    assert len(np.intersect1d(f.fold_a.users, f.fold_b.users)) == 0
    for fold in (f.fold_a, f.fold_b):
        assert f.search_train.matrix.multiply(fold.truth).nnz == 0
    n = make_folds(dataset, "nested", seed=0, random=4)
    assert n.search_train.matrix.multiply(n.fold_a.truth).nnz == 0
    assert n.search_train.matrix.multiply(n.fold_b.truth).nnz == 0
    assert n.confirm_train.matrix.multiply(n.fold_b.truth).nnz == 0
    assert n.fold_a.truth.multiply(n.fold_b.truth).nnz == 0
    e = make_folds(dataset, "events", seed=0, random=4)
    assert e.search_train is e.confirm_train  # one fit serves both folds
    assert np.array_equal(e.fold_a.users, e.fold_b.users) and len(e.fold_a.users) > 0
    for fold in (e.fold_a, e.fold_b):
        assert e.search_train.matrix.multiply(fold.truth).nnz == 0
        assert np.array_equal(np.flatnonzero(np.diff(fold.truth.indptr)), fold.users)  # every user has truth
    assert e.fold_a.truth.multiply(e.fold_b.truth).nnz == 0
    # the events scheme is the nested cut scored with the validation fit: same holdouts, same training data
    assert (e.search_train.matrix != n.search_train.matrix).nnz == 0
    keep = np.zeros(e.fold_a.truth.shape[0], dtype=bool)
    keep[e.fold_a.users] = True
    for mine, nested in ((e.fold_a, n.fold_a), (e.fold_b, n.fold_b)):  # the nested holdouts, on the users with both
        assert (mine.truth != folds_mod._rows(nested.truth, keep)).nnz == 0
    assert set(e.fold_a.users) == set(n.fold_a.users) & set(n.fold_b.users)
    with pytest.raises(ToprecError, match="unknown validation scheme"):
        make_folds(dataset, "nope")


def test_events_scheme_keeps_users_with_both_holdouts_and_b_has_the_real_last_events():
    rng = np.random.default_rng(4)
    sizes = np.where(np.arange(40) % 2 == 0, 8, 16)  # last 1 + random 4: 6 events for B, 11 for both
    users = np.repeat(np.arange(40), sizes)
    items = np.concatenate([rng.choice(30, n, replace=False) for n in sizes])
    times = rng.permutation(len(users)).astype(np.int64)
    data = Dataset.from_events(users, items, times)
    e = make_folds(data, "events", seed=3, last=1, random=4)
    n = make_folds(data, "nested", seed=3, last=1, random=4)
    assert len(n.fold_b.users) == 40 and len(e.fold_a.users) == 20
    assert np.array_equal(e.fold_a.users, e.fold_b.users)
    assert (np.asarray(data.user_counts)[e.fold_b.users] == 16).all()
    for fold in (e.fold_a, e.fold_b):
        assert (np.diff(fold.truth.indptr)[fold.users] == 5).all() and fold.truth.nnz == 5 * 20
    # fold B holds each user's real latest event (the hidden test's "last"), fold A does not
    last_item = {}
    for u, i, t in sorted(zip(users, items, times), key=lambda x: x[2]):
        last_item[u] = i
    for u in e.fold_b.users:
        uid = data.user_ids[u]
        col = int(np.flatnonzero(data.item_ids == last_item[uid])[0])
        assert e.fold_b.truth[u, col] > 0 and e.fold_a.truth[u, col] == 0


def test_events_scheme_needs_users_with_two_holdouts():
    users = np.repeat(np.arange(6), 15)  # 15 events each: one holdout of 1 + 9 fits, a second does not
    items = np.tile(np.arange(15), 6)
    data = Dataset.from_events(users, items, np.tile(np.arange(15), 6))
    assert len(make_folds(data, "users", last=1, random=9).fold_a.users) == 3
    with pytest.raises(ToprecError, match="two competition holdouts"):
        make_folds(data, "events", last=1, random=9)


@pytest.mark.parametrize("scheme", ["users", "events", "nested"])
def test_search_never_sees_fold_b(dataset, members3, monkeypatch, scheme):
    folds = make_folds(dataset, scheme, seed=0, random=4)
    seen = []
    real = ensemble_mod.run_search

    def spy(pool, truth, *args, **kwargs):
        seen.append((pool.users.copy(), truth.copy()))
        return real(pool, truth, *args, **kwargs)

    monkeypatch.setattr(ensemble_mod, "run_search", spy)
    ens = Ensemble(members3, candidates=30)
    report = ens.validate(dataset, search="both", folds=folds)
    assert len(seen) == len(METHODS)  # method auto: one search per fusion method, every one on fold A
    for users, truth in seen:
        assert np.array_equal(users, folds.fold_a.users)
        if scheme == "users":  # other users
            assert len(np.intersect1d(users, folds.fold_b.users)) == 0
        else:  # events, nested: the same users, other events
            np.testing.assert_array_equal(users, folds.fold_b.users)
        assert (truth != folds.fold_a.truth[folds.fold_a.users]).nnz == 0
    # and changing fold B's truth cannot change what the search chose
    monkeypatch.setattr(ensemble_mod, "run_search", real)
    rng = np.random.default_rng(5)
    fake = sp.csr_matrix((rng.random(folds.fold_b.truth.shape) < 0.2).astype(np.float32))
    fake = sp.csr_matrix(sp.diags((np.diff(folds.fold_b.truth.indptr) > 0).astype(np.float32)) @ fake)
    other = replace(folds, fold_b=replace(folds.fold_b, truth=fake, parts={}))
    ens2 = Ensemble(members3, candidates=30)
    report2 = ens2.validate(dataset, search="both", folds=other)
    assert report2["weights"] == report["weights"]
    assert report2["ensemble"]["fold_a"] == report["ensemble"]["fold_a"]


def test_validate_report_and_final_recommendations(dataset, members3):
    ens = Ensemble(members3, method="rank", candidates=30)
    rep = ens.validate(dataset, search="weights", random=4)
    for key in ("fold_a", "fold_b", "members", "ensemble", "weights", "gain_fold_b", "holds", "warning"):
        assert key in rep
    assert rep["fold_a"]["users"] + rep["fold_b"]["users"] == 120
    assert abs(sum(rep["weights"].values()) - 1) < 1e-9
    best_b = max(m["fold_b"]["recall@10"] for m in rep["members"])
    assert rep["gain_fold_b"] == pytest.approx(rep["ensemble"]["fold_b"]["recall@10"] - best_b)
    n_used = sum(w > 0 for w in rep["weights"].values())
    assert rep["holds"] is bool(rep["gain_fold_b"] > 0 and n_used > 1)
    # seeded: the weight search keeps itemknn alone on fold A, so there is no ensemble gain to confirm
    assert rep["weights"] == {"popularity": 0.0, "itemknn": 1.0, "ease:l2=20": 0.0}
    assert rep["holds"] is False and "kept a single member (itemknn)" in rep["warning"]
    recs = ens.fit(dataset).recommend(k=10)
    assert recs.items.shape == (120, 10) and (recs.items >= 0).all()
    assert dataset.matrix[np.repeat(np.arange(120), 10), recs.items.ravel()].sum() == 0


def test_method_auto_keeps_the_best_fold_a_method(dataset, members3):
    ens = Ensemble(members3, candidates=30)  # method auto by default
    unvalidated = Ensemble(members3, candidates=30).fit(dataset).recommend(k=10)  # nothing chosen yet: rank
    as_rank = Ensemble(members3, method="rank", candidates=30).fit(dataset).recommend(k=10)
    np.testing.assert_array_equal(unvalidated.items, as_rank.items)
    rep = ens.validate(dataset, search="weights", random=4)
    tried = rep["methods_fold_a"]
    assert rep["method_requested"] == "auto" and list(tried) == list(METHODS)
    assert rep["method"] == max(tried, key=tried.get) and ens.method == rep["method"]
    assert rep["ensemble"]["fold_a"]["recall@10"] == pytest.approx(tried[rep["method"]])
    # exactly what naming that method gives
    named = Ensemble(members3, method=rep["method"], candidates=30).validate(dataset, search="weights", random=4)
    assert named["weights"] == rep["weights"] and named["ensemble"] == rep["ensemble"]
    assert "methods_fold_a" not in named
    recs = ens.fit(dataset).recommend(k=10)
    assert recs.items.shape == (120, 10)


def test_failed_gain_warns(dataset):
    """popularity twice-over: nothing to gain, so the fold-B check must not claim one."""
    ens = Ensemble(["popularity", "popularity:"], candidates=20)  # same model, two labels
    rep = ens.validate(dataset, search="none", random=4)
    assert rep["holds"] is False and "does not hold" in rep["warning"]


def test_apply_fallback_writes_the_best_fold_a_member_alone(dataset, members3):
    """The policy ``toprec ensemble`` follows: a gain that does not hold on fold B means the best fold-A member."""
    failed = {"holds": False, "best_member_fold_a": "itemknn"}
    ens = Ensemble(members3, method="rank", candidates=20)
    assert ens.apply_fallback(failed) == (
        "member:itemknn",
        "writing the best fold-A member 'itemknn' alone (use --force to write the ensemble anyway)",
    )
    assert ens.weights.tolist() == [0.0, 1.0, 0.0] and ens.method == "rank"
    # force, or a gain that holds: the weights stay
    for report, force in ((failed, True), ({**failed, "holds": True}, False)):
        ens = Ensemble(members3, method="rank", candidates=20)
        assert ens.apply_fallback(report, force=force) == ("ensemble", None)
        np.testing.assert_array_equal(ens.weights, np.full(3, 1 / 3))
    # the search kept one member: it is the one written, whatever fold B said
    ens = Ensemble(members3, method="rank", weights=[0, 0, 2], candidates=20)
    assert ens.apply_fallback(failed) == ("member:ease:l2=20", None)
    assert ens.weights.tolist() == [0.0, 0.0, 1.0]
    # an alternative chosen elsewhere (auto on small data: the best over both folds) is written instead, also
    # when the search kept another single member; a verdict for the fusion keeps the weights
    ens = Ensemble(members3, method="rank", weights=[0, 0, 2], candidates=20)
    chosen, warning = ens.apply_fallback(failed, against="alternative", holds=False, alternative="popularity")
    assert chosen == "member:popularity" and ens.weights.tolist() == [1, 0, 0]
    assert warning == "writing the member 'popularity' alone: the ensemble did not beat it by one standard error"
    ens = Ensemble(members3, method="rank", candidates=20)
    assert ens.apply_fallback(failed, against="alternative", holds=True, alternative="popularity") == ("ensemble", None)
    with pytest.raises(ToprecError, match="alternative 'nope' is not a member"):
        ens.apply_fallback(failed, holds=False, alternative="nope")
    # after a real validation without gain, the final lists are the best fold-A member's own
    ens = Ensemble(["popularity", "itemknn"], method="rank", candidates=20)
    rep = ens.validate(dataset, search="none", random=4)
    assert rep["holds"] is False and rep["weights"] == {"popularity": 0.5, "itemknn": 0.5}
    chosen, warning = ens.apply_fallback(rep)
    best = rep["best_member_fold_a"]
    assert chosen == f"member:{best}" and f"'{best}' alone" in warning
    assert rep["weights"] == {"popularity": 0.5, "itemknn": 0.5}  # the report stays the validation's record
    alone = Ensemble([best], method="rank", candidates=20).prepare_final(dataset).recommend(k=10)
    np.testing.assert_array_equal(ens.prepare_final(dataset).recommend(k=10).items, alone.items)


def test_apply_fallback_against_the_alternative(members3):
    """auto's rule: the ensemble stays unless it is below, on fold B, the member that would be written instead."""
    def report(ens_b, itemknn_b, ease_b):
        members = [{"label": lab, "fold_b": {"recall@10": v}} for lab, v in
                   (("popularity", 0.1), ("itemknn", itemknn_b), ("ease:l2=20", ease_b))]
        return {"holds": False, "best_member_fold_a": "itemknn", "k": 10, "members": members,
                "ensemble": {"fold_b": {"recall@10": ens_b}}}

    # below the best member on B in hindsight (ease), above the fold-A choice (itemknn): kept
    ens = Ensemble(members3, method="rank", candidates=20)
    assert ens.apply_fallback(report(0.30, 0.28, 0.31), against="alternative") == ("ensemble", None)
    np.testing.assert_array_equal(ens.weights, np.full(3, 1 / 3))
    # ...which toprec ensemble's stricter rule would not keep
    assert Ensemble(members3, method="rank", candidates=20).apply_fallback(report(0.30, 0.28, 0.31))[0] == \
        "member:itemknn"  # fmt: skip
    # below the fold-A choice on B: that member alone
    ens = Ensemble(members3, method="rank", candidates=20)
    assert ens.apply_fallback(report(0.27, 0.28, 0.31), against="alternative")[0] == "member:itemknn"
    assert ens.weights.tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ToprecError, match="against='median'"):
        ens.apply_fallback(report(0.3, 0.3, 0.3), against="median")


def test_apply_fallback_against_the_alternative_needs_one_paired_se(members3):
    """With the paired standard errors in the report, the ensemble must beat the fold-A choice by more than one."""
    def report(ens_b, itemknn_b, se):
        members = [{"label": lab, "fold_b": {"recall@10": v}, "fold_b_gap_se": e} for lab, v, e in
                   (("popularity", 0.1, 0.01), ("itemknn", itemknn_b, se), ("ease:l2=20", 0.2, 0.01))]
        return {"holds": True, "best_member_fold_a": "itemknn", "k": 10, "members": members,
                "ensemble": {"fold_b": {"recall@10": ens_b}}}

    assert Ensemble(members3, method="rank", candidates=20).apply_fallback(
        report(0.300, 0.296, 0.003), against="alternative") == ("ensemble", None)  # +0.004 > 0.003
    ens = Ensemble(members3, method="rank", candidates=20)
    chosen, warning = ens.apply_fallback(report(0.300, 0.298, 0.003), against="alternative")  # +0.002: within noise
    assert chosen == "member:itemknn" and warning and ens.weights.tolist() == [0.0, 1.0, 0.0]
    # a fold B too small for an se (NaN): the plain comparison
    assert Ensemble(members3, method="rank", candidates=20).apply_fallback(
        report(0.300, 0.298, float("nan")), against="alternative") == ("ensemble", None)


def test_validate_reports_each_members_paired_se_on_fold_b(dataset, members3):
    ens = Ensemble(members3, method="rank", candidates=20)
    rep = ens.validate(dataset, search="weights", k=10, seed=0)
    for m in rep["members"]:
        assert m["fold_b_gap_se"] > 0
    best_b = next(m for m in rep["members"] if m["label"] == rep["best_member_fold_b"])
    assert best_b["fold_b_gap_se"] == pytest.approx(rep["gain_fold_b_se"])
    # fold B by user activity: every fold-B user in one bucket, each list's buckets averaging back to its recall
    act = rep["recall_by_activity_fold_b"]
    n = np.asarray(act["users"])
    assert n.sum() == rep["fold_b"]["users"] and len(act["labels"]) == len(n)
    assert set(act) == {"labels", "users", "ensemble", *(m["label"] for m in rep["members"])}
    for name, recall in [("ensemble", rep["ensemble"]["fold_b"]["recall@10"])] + [
            (m["label"], m["fold_b"]["recall@10"]) for m in rep["members"]]:  # fmt: skip
        assert (n * np.asarray(act[name])).sum() / n.sum() == pytest.approx(recall)


def test_recall_by_activity_by_hand():
    # users 0..5 with 1, 2, 2, 5, 8, 9 training events; the fold holds users 5, 1, 3 (9, 2, 5 events), in that order
    train = Dataset.from_events(np.repeat(np.arange(6), [1, 2, 2, 5, 8, 9]), np.arange(27) % 10)
    fold = folds_mod.Fold(np.array([5, 1, 3]), sp.csr_matrix((6, 10)))
    act = folds_mod.recall_by_activity(fold, train, {"a": np.array([0.4, 0.5, 0.2])})
    # quantile edges 2, 3, 4, 6, 7, 10: the buckets 3-3 and 6-6 hold nobody and are dropped
    assert act == {"labels": ["2–2", "4–5", "7–9"], "users": [1, 1, 1], "a": [0.5, 0.2, 0.4]}
    # one activity level: one bucket, labelled with it
    assert metrics.user_buckets(np.array([3.0, 3.0, 3.0]))[1] == ["3–3"]


def test_validate_selects_the_reports_method_and_weights(dataset, members3):
    ens = Ensemble(members3, candidates=30)  # auto
    rep = ens.validate(dataset, search="weights", random=4)
    assert ens.report is rep and ens.method == rep["method"] != "auto"
    assert dict(zip(ens.labels, ens.weights.tolist())) == rep["weights"]
    # the same choice applied to a fresh ensemble gives the same final lists
    other = Ensemble(members3, candidates=30)
    assert other.select(rep) is rep and other.method == ens.method
    np.testing.assert_array_equal(other.weights, ens.weights)
    mine = ens.prepare_final(dataset).recommend(k=10)
    np.testing.assert_array_equal(other.fit(dataset).recommend(k=10).items, mine.items)  # fit: prepare_final's alias
    with pytest.raises(ToprecError, match="report's members"):
        Ensemble(["popularity", "itemknn"], candidates=30).select(rep)


# ------------------------------------------------------- align, folds
def test_align_reports_gap_and_spearman(dataset):
    rep = align(dataset, ["popularity", "itemknn", "ease:l2=20", "rp3beta"], random=4)
    assert len(rep["models"]) == 4 and rep["scheme"] == "events"  # the default: the competition's question
    for row in rep["models"]:
        assert row["gap"] == pytest.approx(row["fold_b"]["recall@10"] - row["fold_a"]["recall@10"])
    va = [row["fold_a"]["recall@10"] for row in rep["models"]]
    vb = [row["fold_b"]["recall@10"] for row in rep["models"]]
    assert rep["spearman"] == pytest.approx(spearmanr(va, vb).statistic)
    assert rep["spearman"] == pytest.approx(0.8)  # seeded: one swap among the four models' ranks
    assert rep["mean_abs_gap"] == pytest.approx(np.mean(np.abs(np.subtract(vb, va))))
    assert rep["mean_abs_gap"] == pytest.approx(0.034583, abs=1e-6)


def test_align_events_scheme_scores_one_fit_on_both_holdouts(dataset):
    folds = make_folds(dataset, "events", seed=2, random=4)
    rep = align(dataset, ["popularity", "itemknn", "ease:l2=20"], folds=folds)
    assert rep["scheme"] == "events" and rep["fold_a"]["users"] == rep["fold_b"]["users"] == len(folds.fold_a.users)
    model = models.get("ease", l2=20).fit(folds.search_train)
    recs = model.recommend(folds.fold_a.users, k=10)
    for side, fold in (("fold_a", folds.fold_a), ("fold_b", folds.fold_b)):
        by_hand = metrics.per_user("recall@10", recs.items, fold.truth[fold.users]).mean()
        assert rep["models"][2][side]["recall@10"] == pytest.approx(by_hand)
    # the same users on both sides: the gap's standard error is the paired one
    ra = metrics.per_user("recall@10", recs.items, folds.fold_a.truth[folds.fold_a.users])
    rb = metrics.per_user("recall@10", recs.items, folds.fold_b.truth[folds.fold_b.users])
    assert rep["models"][2]["gap_se"] == pytest.approx((rb - ra).std(ddof=1) / np.sqrt(len(ra)))


def test_gap_standard_error_by_hand():
    rng = np.random.default_rng(3)
    ra, rb = rng.random(50), rng.random(70)
    # disjoint users: independent means
    se = folds_mod.gap_se(ra, np.arange(50), rb, np.arange(100, 170))
    assert se == pytest.approx(np.sqrt(ra.var(ddof=1) / 50 + rb.var(ddof=1) / 70))
    # 30 shared users: the covariance of their two recalls enters, as a brute-force variance of the difference shows
    ua, ub = np.arange(50), np.arange(20, 90)
    rb[:30] = ra[20:50] * 0.8 + 0.1  # shared users' recalls strongly correlated
    se_paired = folds_mod.gap_se(ra, ua, rb, ub)
    w = np.zeros((50 + 70,))  # mean_b - mean_a as a linear map of the stacked vector
    w[:50], w[50:] = -1 / 50, 1 / 70
    idx_a = {u: i for i, u in enumerate(ua)}
    # covariance matrix: per-user variances on the diagonal, shared users' covariance off it
    C = np.diag(np.concatenate([np.full(50, ra.var(ddof=1)), np.full(70, rb.var(ddof=1))]))
    cov = np.cov(ra[20:50], rb[:30], ddof=1)[0, 1]
    for j, u in enumerate(ub[:30]):
        C[idx_a[u], 50 + j] = C[50 + j, idx_a[u]] = cov
    assert se_paired == pytest.approx(np.sqrt(w @ C @ w))
    assert se_paired < np.sqrt(ra.var(ddof=1) / 50 + rb.var(ddof=1) / 70)


def test_align_seeds_averages_independent_splits(dataset):
    res = align_seeds(dataset, ["popularity", "itemknn", "ease:l2=20"], [0, 1], random=4)
    assert res["seeds"] == [0, 1] and [r["seed"] for r in res["runs"]] == [0, 1]
    assert "seed=0" in res["runs"][0]["protocol"] and "seed=1" in res["runs"][1]["protocol"]
    for key in ("mean_abs_gap", "mean_gap", "noise_abs_gap", "mean_abs_gap_centred"):
        assert res["mean"][key] == pytest.approx(np.mean([r[key] for r in res["runs"]]))
    for run_ in res["runs"]:
        gaps = np.array([m["gap"] for m in run_["models"]])
        assert run_["mean_abs_gap_centred"] == pytest.approx(np.abs(gaps - gaps.mean()).mean())
        assert all(m["gap_se"] > 0 for m in run_["models"])
        assert run_["noise_abs_gap"] == pytest.approx(np.sqrt(2 / np.pi) * np.mean([m["gap_se"] for m in run_["models"]]))
        assert 0 < run_["noise_abs_gap_centred"] < run_["noise_abs_gap"]  # shared users: most noise is shared
    with pytest.raises(ToprecError, match="no seeds"):
        align_seeds(dataset, ["popularity"], [])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fewer than 3 models: Spearman is nan, quietly
        two = align_seeds(dataset, ["popularity", "itemknn"], [0, 1], random=4)
    assert np.isnan(two["mean"]["spearman"]) and np.isnan(two["min_spearman"])


def test_evaluate_folds(dataset):
    res = evaluate_folds(dataset, lambda: models.get("ease", l2=20), k=10, folds=3, seed=0, random=4)
    assert res["folds"] == 3 and res["seeds"] == [0, 1, 2] and len(res["per_fold"]) == 3
    for key in ("recall@10", "ndcg@10", "recall_last@10", "recall_random@10"):
        vals = [f[key] for f in res["per_fold"]]
        assert res["mean"][key] == pytest.approx(np.mean(vals))
        assert res["std"][key] == pytest.approx(np.std(vals, ddof=1))
    one = evaluate_folds(dataset, "popularity", folds=1, random=4)
    assert one["std"]["recall@10"] == 0.0
    row = summarize_folds(res)
    assert row["recall@10"] == res["mean"]["recall@10"] and row["recall@10_std"] == res["std"]["recall@10"]
    assert "fit_s" in row
    with pytest.raises(ToprecError, match="randomised protocol"):
        evaluate_folds(dataset, "popularity", folds=2, protocol="leave_last")
    again = evaluate_folds(dataset, lambda: models.get("ease", l2=20), k=10, folds=3, seed=0, random=4)
    assert again["mean"] == res["mean"]


# --------------------------------------------------------------- members
def test_parse_members_specs_and_errors(tmp_path):
    ms = parse_members("ease:l2=20,itemknn:k=5")
    assert [m.label for m in ms] == ["ease:l2=20", "itemknn:k=5"]
    assert ms[0].new_model().params.l2 == 20.0
    with pytest.raises(ToprecError, match="member 'nope'.*unknown model"):
        parse_members("ease,nope")
    with pytest.raises(ToprecError, match="unknown parameter"):
        parse_members("ease:zzz=1")
    with pytest.raises(ToprecError, match="named twice"):
        parse_members("ease,ease")
    with pytest.raises(ToprecError, match="no such file"):
        parse_members(str(tmp_path / "missing.csv"))


def _write_lists(path, dataset, recs, with_scores=True):
    frame = recs.to_frame(dataset)
    if with_scores:
        frame["score"] = recs.scores[recs.items >= 0]
    frame.to_csv(path, index=False)
    return path


def test_file_member_equals_the_model_it_came_from(dataset, tmp_path):
    folds = make_folds(dataset, "users", seed=0, random=4)
    model = models.get("ease", l2=20).fit(folds.search_train)
    recs = model.recommend(dataset.users, k=30)
    path = _write_lists(tmp_path / "ease.csv", dataset, recs)
    ens_file = Ensemble([str(path), "itemknn"], candidates=30, weights=[1, 1])
    ens_model = Ensemble(["ease:l2=20", "itemknn"], candidates=30, weights=[1, 1])
    r1 = ens_file.validate(dataset, search="none", folds=folds)
    r2 = ens_model.validate(dataset, search="none", folds=folds)
    assert r1["ensemble"] == r2["ensemble"]
    assert r1["members"][0]["fold_b"] == r2["members"][0]["fold_b"]


def test_file_member_masks_seen_items_at_the_final_fusion(dataset, tmp_path):
    model = models.get("itemknn").fit(make_folds(dataset, "users", random=4).search_train)
    path = _write_lists(tmp_path / "knn.csv", dataset, model.recommend(dataset.users, k=30), with_scores=False)
    ens = Ensemble([str(path)], candidates=30).fit(dataset, k=10)
    recs = ens.recommend(k=10)
    valid = recs.items >= 0
    assert valid.sum() > 0.9 * recs.items.size  # 30 candidates, about 8 of them seen: plenty left
    rows = np.repeat(np.arange(120), 10)[valid.ravel()]
    assert np.asarray(dataset.matrix[rows, recs.items[valid]]).sum() == 0


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "file is empty"),
        ("user,thing\nu0,1000\n", "missing column 'item'"),
        ("user,item\n", "no rows"),
        ("user,item\nu0,1000\nu0,99999\n", "row 3: item '99999' is not in the dataset"),
        ("user,item\nnobody,1000\n", "row 2: user 'nobody' is not in the dataset"),
        # ids as written: 01000 is not the item 1000 (it was read as it, silently)
        ("user,item\nu0,1001\nu0,01000\n", "row 3: item '01000' is not in the dataset"),
        ("user,item,score\nu0,1000,1\nu0,1001,x\n", "row 3: score 'x'"),
        ("user,item\nu0,1000\nu0,1001\nu0,1000\n", "row 4: user 'u0' lists item '1000' twice"),
        ("user,item\nu0,1000\n", "has 1 rows; every user needs at least k=2"),
    ],
)
def test_malformed_member_files(dataset, tmp_path, text, needle):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ToprecError) as exc:
        read_member_file(path, dataset, k=2, n=10)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_saved_model_reused_where_trained_on_the_same_data(dataset, tmp_path, monkeypatch):
    models.get("ease", l2=20).fit(dataset).save(tmp_path / "ease")
    (m,) = parse_members(str(tmp_path / "ease"))
    fits = []
    klass = models.get_class("ease")
    real_fit = klass.fit
    monkeypatch.setattr(klass, "fit", lambda self, *a, **kw: (fits.append(1), real_fit(self, *a, **kw))[1])
    ens = Ensemble([m], candidates=20)
    ens.fit(dataset).recommend(k=10)
    assert fits == []  # the saved model was trained on exactly this data
    folds = make_folds(dataset, "users", random=4)
    m.lists(folds.search_train, folds.fold_a.users, 20)
    assert fits == [1]  # a different training set: refitted with the saved parameters


# -------------------------------------------------------------------- CLI
def run(*args):
    return subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("toprec: error:")]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_ensemble_end_to_end(competition_dir, tmp_path, events):
    sub, rep = tmp_path / "sub.csv", tmp_path / "r.json"
    proc = run("ensemble", "--data", competition_dir, "--members", "popularity,itemknn,ease:l2=20,rp3beta",
               "--random", "4", "-n", "30", "-k", "7", "--output", sub, "--json", rep, "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "fold A" in proc.stdout and "ensemble" in proc.stdout and "wrote" in proc.stdout
    frame = pd.read_csv(sub)
    assert len(frame) == 120 * 7 and frame.groupby("user").size().eq(7).all()
    seen = set(zip(events["user"], events["item"]))
    assert not any((u, i) in seen for u, i in zip(frame["user"], frame["item"]))
    res = json.loads(rep.read_text())
    assert res["validation"]["fold_a"]["users"] + res["validation"]["fold_b"]["users"] == 120
    v = res["validation"]
    assert res["chosen"] == ("ensemble" if v["holds"] else f"member:{v['best_member_fold_a']}")
    # seeded: the search keeps rp3beta alone, nothing to confirm on fold B: rp3beta is written, with a warning
    assert v["holds"] is False and res["chosen"] == "member:rp3beta"
    assert "toprec: warning: the search kept a single member (rp3beta)" in proc.stderr
    assert "member:rp3beta" in proc.stdout


def test_cli_ensemble_fixed_weights_without_validation(competition_dir, tmp_path):
    sub = tmp_path / "sub.csv"
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,rp3beta", "--search", "none",
               "--weights", "2,1", "--no-validate", "--method", "rrf", "-n", "20", "--output", sub, "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(sub)) == 1200
    # method auto (the default) has nothing to choose on without validation: the competition's rank vote
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,rp3beta", "--search", "none",
               "--weights", "2,1", "--no-validate", "-n", "20", "--output", sub, "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "method rank" in proc.stdout


def test_cli_align_prints_gap_and_spearman(competition_dir, tmp_path):
    proc = run("align", "--data", competition_dir, "--models", "popularity,itemknn,ease:l2=20,rp3beta",
               "--random", "4", "--json", tmp_path / "a.json", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "gap" in proc.stdout and "Spearman" in proc.stdout
    rep = json.loads((tmp_path / "a.json").read_text())
    assert len(rep["models"]) == 4 and rep["scheme"] == "events" and rep["protocol"].startswith("events:")
    assert "sampling noise" in proc.stdout
    proc = run("align", "--data", competition_dir, "--models", "popularity,itemknn,rp3beta", "--random", "4",
               "--scheme", "users", "--json", tmp_path / "u.json", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "u.json").read_text())["scheme"] == "users"
    proc = run("align", "--data", competition_dir, "--models", "popularity,itemknn,rp3beta", "--random", "4",
               "--repeats", "2", "--seed", "5", "--json", tmp_path / "b.json", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["seeds"] == [5, 6] and len(res["runs"]) == 2
    assert "2 split seeds" in proc.stdout and "mean" in proc.stdout


def test_cli_bad_inputs(competition_dir, tmp_path):
    out = tmp_path / "x.csv"
    assert_one_line_error(run("ensemble", "--data", competition_dir, "--members", "ease,nope", "--output", out),
                          "member 'nope'", "unknown model")  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu0,1000\nu0,424242\n")
    assert_one_line_error(run("ensemble", "--data", competition_dir, "--members", f"ease,{bad}", "--output", out),
                          "bad.csv, row 3", "424242")  # fmt: skip
    assert_one_line_error(run("ensemble", "--data", competition_dir, "--members", "ease,itemknn", "--weights", "1",
                              "--output", out), "1 weights for 2 members")  # fmt: skip
    assert_one_line_error(run("ensemble", "--data", competition_dir, "--members", "ease", "--method", "median",
                              "--output", out), "unknown fusion method")  # fmt: skip
    assert_one_line_error(run("align", "--data", competition_dir, "--models", "ease,itemknn:k=-3"), "itemknn")
    assert not out.exists()


def test_widen_searches_the_confirmed_method_on_both_folds(dataset, members3):
    """After the fold-B decision, the fusion's weights are searched again on folds A and B together."""
    from toprec import metrics
    from toprec.ensemble import make_folds

    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    ens = Ensemble(members3, method="score", candidates=30)
    ens.validate(dataset, search="weights", random=4, folds=folds)
    ens.weights = np.array([0.2, 0.5, 0.3])  # a start the search on both folds can move from
    wide = ens.widen(dataset, folds, k=10)
    users = np.concatenate([folds.fold_a.users, folds.fold_b.users])
    assert wide["users"] == len(users) == 120
    assert list(wide["weights"].values()) == pytest.approx(list(ens.weights))
    assert wide["recall_fold_ab"] >= wide["recall_fold_ab_before"]
    # the reported recall is that of the written weights, recomputed here from the members' own lists
    truth = (folds.fold_a.truth + folds.fold_b.truth)[users]
    for weights, key in ((np.array([0.2, 0.5, 0.3]), "recall_fold_ab_before"), (ens.weights, "recall_fold_ab")):
        lists = [m.lists(folds.search_train, users, 30, "search") for m in ens.members]
        keep = np.flatnonzero(weights > 0)
        fused = fuse([lists[i] for i in keep], weights[keep], "score", 10, users=users)
        assert metrics.per_user("recall@10", fused.items, truth).mean() == pytest.approx(wide[key])
    with pytest.raises(ToprecError, match="widen"):
        Ensemble(members3, method="rerank", candidates=30).widen(dataset, folds)
    nested = make_folds(dataset, "nested", seed=0, last=1, random=4)
    with pytest.raises(ToprecError, match="one fit"):
        Ensemble(members3, method="rank", candidates=30).widen(dataset, nested)


def test_widen_never_takes_weights_that_lower_recall_on_both_folds(dataset, members3, monkeypatch):
    from toprec.ensemble import make_folds
    from toprec.ensemble.search import SearchResult

    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    ens = Ensemble(members3, method="score", candidates=30)
    ens.validate(dataset, search="weights", random=4, folds=folds)
    start = np.array([0.2, 0.5, 0.3])
    ens.weights = start.copy()
    # a search that ends below its start (a "both" search restarts its subset from nothing)
    monkeypatch.setattr(ensemble_mod, "run_search", lambda *a, **kw: SearchResult(np.array([1.0, 0.0, 0.0]), -1.0, 1, []))
    wide = ens.widen(dataset, folds, k=10, search="both")
    assert np.array_equal(ens.weights, start) and wide["recall_fold_ab"] == wide["recall_fold_ab_before"]
