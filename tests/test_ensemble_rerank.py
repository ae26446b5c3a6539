"""The learned re-ranker (Ensemble(method="rerank")): features by hand, the fold-A/B protocol, errors, CLI;
both backends (LightGBM, CatBoost) and the user-cluster features."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from toprec import Dataset, ToprecError, metrics
from toprec.ensemble import Ensemble, make_folds, parse_members
from toprec.ensemble.rerank import Reranker, candidate_features
from toprec.recommend import Recommendations

pytest.importorskip("lightgbm")

from test_ensemble import assert_one_line_error, run  # noqa: E402


def test_candidate_features_by_hand():
    # u0 watched items 0 (genre A) and 1 (A, B); u1 watched 2 (B), 3 (A), 4 (C)
    data = Dataset.from_events(
        np.array(["u0", "u0", "u1", "u1", "u1"]),
        np.array([0, 1, 2, 3, 4]),
        features={"genres": pd.DataFrame({"item": [0, 1, 1, 2, 3, 4], "value": list("AABBAC")})},
    )
    u0 = data.user_index(["u0"])
    m1 = Recommendations(u0, np.array([[2, 3]], dtype=np.int32), np.array([[3.0, 1.0]], dtype=np.float32))
    m2 = Recommendations(u0, np.array([[3, 4]], dtype=np.int32), np.array([[5.0, 1.0]], dtype=np.float32))
    items, feats, names = candidate_features(data, data, u0, [m1, m2], ["m1", "m2"])
    assert items.tolist() == [[2, 3, 4]]  # the union, item-sorted
    f = {name: feats[0, :, j].tolist() for j, name in enumerate(names)}
    # z over each member's own list (mean 2 / 3, std 1 / 2) minus the list's floor; 0 where not listed
    np.testing.assert_allclose(f["m1_z"], [2.0, 0.0, 0.0])
    np.testing.assert_allclose(f["m2_z"], [0.0, 2.0, 0.0])
    np.testing.assert_allclose(f["m1_rank"], [1.0, 1 / np.log2(3), 0.0], rtol=1e-6)
    np.testing.assert_allclose(f["m2_rank"], [0.0, 1.0, 1 / np.log2(3)], rtol=1e-6)
    assert f["n_listed"] == [1, 2, 1]
    np.testing.assert_allclose(f["log_popularity"], np.log1p([1, 1, 1]), rtol=1e-6)
    np.testing.assert_allclose(f["log_activity"], np.log1p([2, 2, 2]), rtol=1e-6)
    # u0's history: A in 2 of 2 items, B in 1 of 2; item 2 is B, item 3 is A, item 4 is C
    np.testing.assert_allclose(f["genres_affinity"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(f["genres_affinity_max"], [0.5, 1.0, 0.0])


def _shuffled_union_recall(ens, dataset, report, k):
    """fold-B recall of the members' candidate union in a random order: what a broken ranker would score."""
    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    fb = folds.fold_b
    lists = [m.lists(folds.confirm_train, fb.users, ens.candidates, "search") for m in ens.members]
    items, _, _ = candidate_features(dataset, folds.confirm_train, fb.users, lists, ens.labels)
    rng = np.random.default_rng(0)
    noise = np.where(items >= 0, rng.random(items.shape), -1)
    top = np.take_along_axis(items, np.argsort(-noise, axis=1)[:, :k], 1)
    return metrics.per_user(f"recall@{k}", top, fb.truth[fb.users]).mean()


def test_rerank_validate_then_recommend(dataset):
    members = ["popularity", "itemknn", "ease:l2=20"]
    ens = Ensemble(members, method="rerank", candidates=30)
    rep = ens.validate(dataset, random=4)
    assert rep["method"] == "rerank" and rep["search"] == "rerank"
    assert rep["fold_a"]["users"] + rep["fold_b"]["users"] == 120
    assert rep["rerank"]["trees"] >= 1 and "ease:l2=20_z" in rep["rerank"]["features"]
    recall_b = rep["ensemble"]["fold_b"]["recall@10"]
    # trained on fold A only, it must rank fold B's candidates far better than chance...
    assert recall_b > 1.5 * _shuffled_union_recall(ens, dataset, rep, 10)
    # ...and be in the league of its members (popularity is the weak one on clustered data)
    by_label = {m["label"]: m["fold_b"]["recall@10"] for m in rep["members"]}
    assert recall_b > by_label["popularity"]
    recs = ens.fit(dataset).recommend(k=10)
    assert recs.items.shape == (120, 10) and (recs.items >= 0).all()
    assert dataset.matrix[np.repeat(np.arange(120), 10), recs.items.ravel()].sum() == 0  # seen items masked
    assert all(len(set(row)) == 10 for row in recs.items.tolist())
    # same seed, same ranker, same recommendations
    again = Ensemble(members, method="rerank", candidates=30)
    again.validate(dataset, random=4)
    assert np.array_equal(again.fit(dataset).recommend(k=10).items, recs.items)


def test_rerank_batches_users_without_changing_results(dataset, monkeypatch):
    from toprec.ensemble import rerank

    ens = Ensemble(["itemknn", "ease:l2=20"], method="rerank", candidates=20)
    ens.validate(dataset, random=4)
    whole = ens.fit(dataset).recommend(k=5)
    monkeypatch.setattr(rerank, "BATCH_USERS", 7)
    assert np.array_equal(ens.recommend(k=5).items, whole.items)
    # the CLI's fallback when the gain does not hold on fold B: one member alone, its own list
    ens.weights = np.array([0.0, 1.0])
    alone = ens.recommend(k=5)
    from toprec import models

    own = models.get("ease", l2=20).fit(dataset).recommend(dataset.users, k=5)
    assert np.array_equal(alone.items, own.items)


def test_rerank_needs_validation_and_lightgbm(dataset, monkeypatch):
    ens = Ensemble(["itemknn", "ease:l2=20"], method="rerank", candidates=20)
    with pytest.raises(ToprecError, match="run validate"):
        ens.fit(dataset).recommend(k=5)
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(ToprecError, match="needs lightgbm"):
        Reranker(["a"]).fit(dataset, dataset, np.arange(3), [], None)


def test_auto_never_picks_rerank(dataset):
    rep = Ensemble(["itemknn", "ease:l2=20"], method="auto", candidates=20).validate(dataset, random=4)
    assert "rerank" not in rep["methods_fold_a"] and rep["method"] != "rerank"


def test_cli_ensemble_rerank(competition_dir, tmp_path, events):
    sub = tmp_path / "sub.csv"
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,ease:l2=20", "--method", "rerank",
               "--random", "4", "-n", "30", "-k", "5", "--output", sub, "--force", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "re-ranker:" in proc.stdout
    frame = pd.read_csv(sub)
    assert len(frame) == 120 * 5 and frame.groupby("user").size().eq(5).all()
    seen = set(zip(events["user"], events["item"]))
    assert not any((u, i) in seen for u, i in zip(frame["user"], frame["item"]))
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,ease:l2=20", "--method", "rerank",
               "--no-validate", "--search", "none", "--output", sub, "-q")  # fmt: skip
    assert_one_line_error(proc, "rerank", "--no-validate")
    # --recency: the re-ranker's importances name the recency features; without rerank it is a one-line error
    js = tmp_path / "rerank.json"
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,ease:l2=20", "--method", "rerank",
               "--recency", "--random", "4", "-n", "30", "-k", "5", "--output", sub, "--force", "--json", js, "-q")
    assert proc.returncode == 0, proc.stderr
    features = json.loads(js.read_text())["validation"]["rerank"]["features"]
    assert {"sim_last", "item_pop_near", "item_age"} <= set(features)
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,ease:l2=20", "--method", "rank",
               "--recency", "--output", sub, "-q")  # fmt: skip
    assert_one_line_error(proc, "--recency", "need --method rerank")


# ------------------------------------------------------------------ CatBoost backend, clusters, importances
def test_cluster_features_by_hand(dataset):
    from toprec.features import cluster_vectors

    users = np.arange(4)
    # users 0, 2 in one cluster, 1 in the other, 3 without a vector
    cl = cluster_vectors(np.array([[1.0, 0], [0, 1], [1, 0.01], [0, 0]] + [[1, 0]] * (dataset.n_users - 4)),
                         np.r_[[True, True, True, False], np.ones(dataset.n_users - 4, bool)], k=2)  # fmt: skip
    lab = cl.labels[:4]
    assert lab[0] == lab[2] != lab[1] and lab[3] == -1
    m1 = Recommendations(users, np.array([[0, 1]] * 4, dtype=np.int32), np.ones((4, 2), dtype=np.float32))
    items, feats, names = candidate_features(dataset, dataset, users, [m1], ["m1"], cl)
    assert names[-2:] == ["cluster", "cluster_share"]
    np.testing.assert_array_equal(feats[:, 0, -2], lab)
    X = (dataset.matrix > 0).toarray()
    members = cl.labels == lab[0]
    for col in range(items.shape[1]):
        want = X[members, items[0, col]].mean()
        assert feats[0, col, -1] == pytest.approx(want) and feats[2, col, -1] == pytest.approx(want)
    assert (feats[3, :, -1] == 0).all()  # no cluster, no share


@pytest.mark.parametrize("ranker", ["lightgbm", "catboost"])
def test_rerank_backends_with_clusters(dataset, ranker):
    pytest.importorskip(ranker)
    members = ["popularity", "itemknn", "ease:l2=20"]
    ens = Ensemble(members, method="rerank", candidates=30, ranker=ranker, clusters="ials:factors=16")
    rep = ens.validate(dataset, random=4)
    rr = rep["rerank"]
    assert rr["ranker"] == ranker and rr["trees"] >= 1
    assert rr["features"][-2:] == ["cluster", "cluster_share"]
    assert set(rr["importance"]) == set(rr["features"])
    assert sum(rr["importance"].values()) == pytest.approx(1.0, abs=1e-4)
    assert rr["clusters"]["k"] == 4  # the fixture's planted taste groups, found on fold A's training data
    # on clustered data the cluster's item shares carry signal: the ranker uses them
    assert rr["importance"]["cluster_share"] > 0.05
    by = rr["recall_by_cluster_fold_b"]
    n = np.asarray(by["users"], dtype=float)
    assert n.sum() == rep["fold_b"]["users"]
    assert (np.asarray(by["ensemble"]) * n).sum() / n.sum() == pytest.approx(rep["ensemble"]["fold_b"]["recall@10"])
    recall_b = rep["ensemble"]["fold_b"]["recall@10"]
    assert recall_b > 1.5 * _shuffled_union_recall(ens, dataset, rep, 10)
    assert recall_b > {m["label"]: m["fold_b"]["recall@10"] for m in rep["members"]}["popularity"]
    recs = ens.fit(dataset).recommend(k=10)
    assert recs.items.shape == (120, 10) and (recs.items >= 0).all()
    assert dataset.matrix[np.repeat(np.arange(120), 10), recs.items.ravel()].sum() == 0
    again = Ensemble(members, method="rerank", candidates=30, ranker=ranker, clusters="ials:factors=16")
    rep2 = again.validate(dataset, random=4)
    assert rep2["rerank"]["importance"] == rr["importance"]
    assert np.array_equal(again.fit(dataset).recommend(k=10).items, recs.items)


def test_catboost_without_clusters_and_its_importances(dataset):
    pytest.importorskip("catboost")
    ens = Ensemble(["itemknn", "ease:l2=20"], method="rerank", candidates=20, ranker="catboost")
    rep = ens.validate(dataset, random=4)
    imp = rep["rerank"]["importance"]
    assert rep["rerank"]["importance_type"] == "PredictionValuesChange" and "cluster" not in imp
    assert list(imp.values()) == sorted(imp.values(), reverse=True)
    assert sum(imp.values()) == pytest.approx(1.0, abs=1e-4)
    # the importances are CatBoost's own, in our feature order
    raw = ens.reranker.model.model.get_feature_importance()
    np.testing.assert_allclose([imp[f] for f in rep["rerank"]["features"]], raw / raw.sum(), atol=1e-5)
    whole = ens.fit(dataset).recommend(k=5)
    from toprec.ensemble import rerank

    old = rerank.BATCH_USERS
    rerank.BATCH_USERS = 7
    try:
        assert np.array_equal(ens.recommend(k=5).items, whole.items)
    finally:
        rerank.BATCH_USERS = old


def test_ranker_errors(dataset, monkeypatch):
    from toprec.ensemble.rerank import check_ranker
    from toprec.experiment.config import EnsembleConfig

    with pytest.raises(ToprecError, match="unknown ranker 'xgboost'"):
        Ensemble(["itemknn", "ease"], method="rerank", ranker="xgboost")
    with pytest.raises(ToprecError, match="need --method rerank"):
        Ensemble(["itemknn", "ease"], method="rank", ranker="catboost")
    with pytest.raises(ToprecError, match="need --method rerank"):
        Ensemble(["itemknn", "ease"], method="auto", clusters="ials")
    with pytest.raises(ToprecError, match="no user factors"):
        Ensemble(["itemknn", "ease"], method="rerank", clusters="itemknn")
    with pytest.raises(ValueError, match="need --method rerank"):
        EnsembleConfig(members=["a"], method="score", ranker="catboost")
    from toprec.ensemble import rerank
    from toprec.experiment import config

    assert config.RANKERS == rerank.RANKERS  # the config's choices are the backends
    monkeypatch.setitem(sys.modules, "catboost", None)
    with pytest.raises(ToprecError, match="needs catboost: pip install 'toprec\\[rerank\\]'"):
        check_ranker("catboost")
    with pytest.raises(ToprecError, match="needs catboost"):
        Reranker(["a"], ranker="catboost").fit(dataset, dataset, np.arange(3), [], None)


def test_cli_ensemble_catboost_with_clusters(competition_dir, tmp_path):
    pytest.importorskip("catboost")
    sub, js = tmp_path / "sub.csv", tmp_path / "r.json"
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,ease:l2=20", "--method", "rerank",
               "--ranker", "catboost", "--clusters", "ials:factors=16", "--random", "4", "-n", "30", "-k", "5",
               "--output", sub, "--json", js, "--force")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "re-ranker: catboost" in proc.stdout and "feature importance" in proc.stdout
    assert "user clusters (ials:factors=16): k=4" in proc.stdout
    rr = json.loads(js.read_text())["validation"]["rerank"]
    assert rr["ranker"] == "catboost" and rr["clusters"]["k"] == 4
    assert len(pd.read_csv(sub)) == 120 * 5
    proc = run("ensemble", "--data", competition_dir, "--members", "itemknn,ease:l2=20", "--ranker", "catboost",
               "--output", sub, "-q")  # fmt: skip
    assert_one_line_error(proc, "--ranker", "--method rerank")


def test_catboost_importance_is_in_our_column_order():
    """CatBoost puts categorical columns after the numerical ones: the adapter maps them back."""
    pytest.importorskip("catboost")
    from toprec.ensemble.rerank import _CatBoost

    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=3000), rng.integers(0, 4, 3000), rng.normal(size=3000)].astype(np.float32)
    for signal in (1, 2):  # the categorical column (1), then a numerical one after it (2)
        y = ((x[:, 1] == 2) if signal == 1 else (x[:, 2] > 0)) ^ (rng.random(3000) < 0.1)
        backend = _CatBoost(seed=0, threads=1)
        backend.fit(x, y.astype(int), None, None, categorical=[1])
        imp = backend.importance()
        assert int(np.argmax(imp)) == signal and imp[signal] > 0.6 * imp.sum()


@pytest.mark.parametrize("objective", ["lambdarank", "rank_xendcg"])
def test_ranking_objectives_group_rows_by_user(dataset, monkeypatch, tmp_path, objective):
    """A ranking objective trains ``LGBMRanker`` with one group per user (the groups cover every row, fit and
    stop), ranks fold B far better than chance, and reads back from its text model with the same order."""
    import lightgbm as lgb

    from toprec.ensemble import rerank

    monkeypatch.setitem(rerank.PARAMS, "objective", objective)
    seen = []
    fit = lgb.LGBMRanker.fit

    def spy(self, x, y, **kw):
        seen.append((len(x), np.asarray(kw["group"]), len(kw["eval_X"][0]), np.asarray(kw["eval_group"][0])))
        return fit(self, x, y, **kw)

    monkeypatch.setattr(lgb.LGBMRanker, "fit", spy)
    ens = Ensemble(["popularity", "itemknn", "ease:l2=20"], method="rerank", candidates=30)
    rep = ens.validate(dataset, random=4)
    assert len(seen) == 1
    rows, group, stop_rows, stop_group = seen[0]
    assert group.sum() == rows and stop_group.sum() == stop_rows and (group > 0).all() and (stop_group > 0).all()
    assert len(group) + len(stop_group) <= rep["fold_a"]["users"]  # one group per user at most
    assert rep["ensemble"]["fold_b"]["recall@10"] > 1.5 * _shuffled_union_recall(ens, dataset, rep, 10)
    rr = ens.reranker
    folds = make_folds(dataset, random=4)
    train, users = folds.search_train, folds.fold_a.users[:20]
    lists = [m.new_model().fit(train).recommend(users, k=30) for m in parse_members(rr.labels)]
    before = rr.recommend(dataset, train, users, lists, 10)
    tables = rr.tables(dataset, train)
    rr.save(tmp_path, tables)
    back, tables = Reranker.load(tmp_path)
    assert np.array_equal(back.recommend_tables(tables, users, lists, 10).items, before.items)
