"""Serving a re-ranked pipeline: the same lists as the offline ``Ensemble.recommend`` that wrote the submission,
histories folded in through the same features, both backends, the HTTP server, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from toprec import Dataset, ToprecError
from toprec.app import serving
from toprec.ensemble import Ensemble

pytest.importorskip("lightgbm")


def _ordered(ds, users):
    ptr, item = np.asarray(ds.user_ptr), np.asarray(ds.item)
    return [item[ptr[u] : ptr[u + 1]] for u in users]


@pytest.fixture(scope="module")
def data() -> Dataset:
    """Clustered users with times, a multi-hot side file (genres) and years: every kind of feature."""
    from conftest import clustered_events

    e = clustered_events()
    items = np.unique(e["item"].to_numpy())
    genres = pd.DataFrame({"item": np.repeat(items, 2), "value": [f"g{(i * j) % 5}" for i in items for j in (1, 3)]})
    years = pd.DataFrame({"item": items, "value": [str(1990 + i % 20) for i in items]})
    return Dataset.from_events(e["user"].to_numpy(), e["item"].to_numpy(), e["time"].to_numpy(),
                               features={"genres": genres, "years": years})  # fmt: skip


def _fitted(data, members, **kw) -> Ensemble:
    ens = Ensemble(members, method="rerank", candidates=30, **kw)
    ens.validate(data, random=4)
    return ens.prepare_final(data)


@pytest.mark.parametrize("kw", [dict(recency=True), dict(recency=True, clusters="ials:factors=8")])
def test_served_rerank_lists_are_the_submission_lists(data, tmp_path, kw):
    ens = _fitted(data, ["itemknn", "ease:l2=20", "popularity"], **kw)
    offline = ens.recommend(data.users, k=10)
    path = serving.save_pipeline(ens, data, tmp_path / "pipe")
    meta = json.loads((path / "pipeline.json").read_text())
    assert meta["method"] == "rerank" and (path / meta["rerank"] / "ranker.txt").exists()
    s = serving.load(path)
    got = s.answer([serving.Query(user=str(u)) for u in data.user_ids], k=10)
    assert [a.items for a in got] == [data.item_ids[r].tolist() for r in offline.items]
    np.testing.assert_array_equal(np.array([a.scores for a in got], dtype=np.float32), offline.scores)
    # one user at a time: the same as the whole batch (features are per user)
    for u in (0, 57, 119):
        assert s.answer_for_user(str(data.user_ids[u]), k=10).items == data.item_ids[offline.items[u]].tolist()
    info = s.info()
    assert info["rerank"]["ranker"] == "lightgbm" and "sim_last" in info["rerank"]["features"]
    assert ("cluster" in info["rerank"]["features"]) == ("clusters" in kw)


def test_a_history_gets_the_known_users_features(data, tmp_path):
    """Without time-dependent features, a history equal to a user's training events is that user's list."""
    ens = _fitted(data, ["itemknn", "ease:l2=20"], recency=False)
    s = serving.load(serving.save_pipeline(ens, data, tmp_path / "pipe"))
    for u in (3, 40):
        hist = data.item_ids[_ordered(data, [u])[0]].tolist()
        known = s.answer_for_user(str(data.user_ids[u]), k=10)
        new = s.answer_for_history(hist, k=10)
        assert new.items == known.items and not new.cold_start
        assert not set(new.items) & set(hist)
    assert s.answer_for_history([], k=10).cold_start


def test_a_history_uses_its_own_latest_items(data, tmp_path):
    ens = _fitted(data, ["itemknn", "ease:l2=20"], recency=True)
    s = serving.load(serving.save_pipeline(ens, data, tmp_path / "pipe"))
    hist = _ordered(data, [5])[0]
    rec = s.tables.recency
    # the recent items of a history row are its last ones, most recent first: the same similarities as the user's
    from toprec.app.serving import _recent

    recent = _recent(1, np.array([0]), [hist])
    cand = np.array([[0, 1, 2]])
    got, names = rec.features(np.array([-1]), cand, recent)
    want, _ = rec.features(np.array([5]), cand)
    for name, a, b in zip(names, got, want):
        if name.startswith("sim_"):
            np.testing.assert_array_equal(a, b)
    answer = s.answer_for_history(data.item_ids[hist].tolist(), k=10)
    assert len(answer.items) == 10 and not set(answer.items) & set(data.item_ids[hist].tolist())


def test_catboost_backend_serves_the_same_lists(data, tmp_path):
    pytest.importorskip("catboost")
    ens = _fitted(data, ["itemknn", "ease:l2=20"], ranker="catboost", recency=True)
    offline = ens.recommend(data.users, k=10)
    s = serving.load(serving.save_pipeline(ens, data, tmp_path / "pipe"))
    got = s.answer([serving.Query(user=str(u)) for u in data.user_ids], k=10)
    # CatBoost's JSON model: the same trees, probabilities within float64 rounding
    np.testing.assert_allclose(np.array([a.scores for a in got]), offline.scores, rtol=1e-6)
    same = np.mean([a.items == data.item_ids[r].tolist() for a, r in zip(got, offline.items)])
    assert same >= 0.95


def test_fallen_back_rerank_saves_its_one_member(data, tmp_path):
    ens = _fitted(data, ["itemknn", "ease:l2=20"], recency=False)
    ens.weights = np.array([0.0, 1.0])
    offline = ens.recommend(data.users, k=5)
    path = serving.save_pipeline(ens, data, tmp_path / "pipe")
    meta = json.loads((path / "pipeline.json").read_text())
    assert meta["method"] == "rank" and "rerank" not in meta
    got = serving.load(path).answer([serving.Query(user=str(u)) for u in data.user_ids], k=5)
    assert [a.items for a in got] == [data.item_ids[r].tolist() for r in offline.items]


def test_unvalidated_rerank_and_damaged_files_are_one_line_errors(data, tmp_path):
    ens = Ensemble(["itemknn", "ease:l2=20"], method="rerank", candidates=20).prepare_final(data)
    with pytest.raises(ToprecError, match="no trained re-ranker"):
        serving.save_pipeline(ens, data, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    path = serving.save_pipeline(_fitted(data, ["itemknn", "ease:l2=20"]), data, tmp_path / "pipe")
    (path / "rerank" / "ranker.txt").write_text("not a model\n")
    with pytest.raises(ToprecError, match="cannot read the re-ranker") as err:
        serving.load(path)
    assert "\n" not in str(err.value)
    (path / "rerank" / "tables.npz").write_bytes(b"broken")
    (path / "rerank" / "rerank.json").unlink()
    with pytest.raises(ToprecError, match="cannot read the re-ranker"):
        serving.load(path)


def test_http_server_answers_a_rerank_pipeline(data, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from toprec.serve import ServeConfig, create_app

    ens = _fitted(data, ["itemknn", "ease:l2=20"], recency=True)
    offline = ens.recommend(data.users, k=5)
    path = serving.save_pipeline(ens, data, tmp_path / "pipe")
    H = {"X-API-Key": "k"}
    with TestClient(create_app(ServeConfig(model_dir=str(path), api_key="k", watch_s=0, max_history=50))) as c:
        u = str(data.user_ids[7])
        r = c.get(f"/v1/users/{u}/recommendations", params={"k": 5}, headers=H)
        assert r.status_code == 200 and r.json()["items"] == data.item_ids[offline.items[7]].tolist()
        hist = [int(x) for x in data.item_ids[_ordered(data, [7])[0]]]
        r = c.post("/v1/recommendations/batch", json={"requests": [{"user": u}, {"history": hist[-5:]}], "k": 5},
                   headers=H)  # fmt: skip
        assert r.status_code == 200 and [len(x["items"]) for x in r.json()["results"]] == [5, 5]
        assert c.get("/v1/model", headers=H).json()["rerank"]["ranker"] == "lightgbm"
