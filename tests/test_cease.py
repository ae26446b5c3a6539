"""Collective EASE (``cease``): EASE with the items' side information stacked under the interactions."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from toprec import Dataset, ToprecError, models
from toprec.models import Recommender


def _with_side(seed=0, n_users=60, n_items=30, density=0.15):
    """Random interactions + a director for every item (3 items each) and 1-2 genres."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < density).astype(np.float32)
    u, i = np.nonzero(X)
    directors = pd.DataFrame({"item": np.arange(n_items), "value": [f"d{j // 3}" for j in range(n_items)]})
    genres = pd.DataFrame({"item": np.r_[np.arange(n_items), np.arange(0, n_items, 2)],
                           "value": np.r_[np.arange(n_items) % 4, np.full(n_items // 2, 9)].astype(str)})  # fmt: skip
    return Dataset.from_events(u, i, np.arange(len(u)), features={"directors": directors, "genres": genres})


def _reference(ds, l2, weight, names, idf=False):
    """B from the closed form, float64: P = (X^T X + weight * l2 * F F^T + l2 I)^-1."""
    X = ds.matrix.toarray().astype(np.float64)
    G = X.T @ X
    for n in names:
        F = ds.features[n].matrix.toarray().astype(np.float64)
        if idf:
            F = F / np.sqrt(np.maximum(F.sum(0), 1))[None, :]
        G += weight * l2 * F @ F.T
    P = np.linalg.inv(G + l2 * np.eye(X.shape[1]))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


@pytest.mark.parametrize("norm", ["none", "idf"])
def test_matches_the_closed_form(norm):
    ds = _with_side()
    m = models.get("cease", l2=6.0, side_weight=0.5, side_norm=norm).fit(ds)
    assert m.form_ == "items" and m.side_features_ == ["directors", "genres"]
    np.testing.assert_allclose(m.similarity, _reference(ds, 6.0, 0.5, ["directors", "genres"], norm == "idf"),
                               rtol=2e-3, atol=2e-5)  # fmt: skip


def test_feature_subset_and_zero_weight():
    ds = _with_side()
    m = models.get("cease", l2=6.0, side_weight=0.5, features="directors").fit(ds)
    np.testing.assert_allclose(m.similarity, _reference(ds, 6.0, 0.5, ["directors"]), rtol=2e-3, atol=2e-5)
    zero = models.get("cease", l2=6.0, side_weight=0.0).fit(ds)
    ease = models.get("ease", l2=6.0).fit(ds)
    np.testing.assert_array_equal(zero.similarity, ease.similarity)


def test_shared_director_links_items_no_user_saw_together():
    """Items 0 and 1 share a director and no user links them: EASE cannot relate them, cease does."""
    users = np.array([0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 2, 1, 3, 0, 2, 0])  # {0, 2} and {1, 3} never meet
    side = {"directors": pd.DataFrame({"item": [0, 1, 2, 3], "value": ["a", "a", "b", "c"]})}
    ds = Dataset.from_events(users, items, np.arange(len(users)), features=side)
    ease = models.get("ease", l2=1.0).fit(ds)
    cease = models.get("cease", l2=1.0, side_weight=1.0).fit(ds)
    assert ease.similarity[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert cease.similarity[0, 1] > 0.05
    # user 3 has only item 0: EASE cannot tell items 1 and 3 apart, cease puts item 1 (same director) ahead
    e, c = ease.score(np.array([3]))[0], cease.score(np.array([3]))[0]
    assert e[1] == pytest.approx(e[3], abs=1e-6)
    assert c[1] > c[3] + 0.05
    assert list(cease.recommend(np.array([3]), k=2).items[0]) == [2, 1]


def test_user_space_form_fold_in_and_roundtrip(tmp_path):
    ds = _with_side(n_users=20, n_items=60, density=0.2)
    a = models.get("cease", l2=4.0, side_weight=0.3, form="items").fit(ds)
    b = models.get("cease", l2=4.0, side_weight=0.3).fit(ds)
    assert b.form_ == "users"  # 20 users + side rows < 60 items
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(a.score(users), b.score(users), rtol=1e-3, atol=1e-4)
    loaded = Recommender.load(b.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.score(users), b.score(users))
    history = ds.matrix[:3]  # fold-in: the same histories given explicitly, as for new users
    np.testing.assert_allclose(loaded.score(np.array([-1, -1, -1]), history), b.score(users[:3]), rtol=1e-5)


def test_unknown_feature_is_a_clear_error():
    with pytest.raises(ToprecError, match="no side feature 'writers' \\(it has: directors, genres\\)"):
        models.get("cease", features="directors,writers").fit(_with_side())


def test_without_side_information_it_is_ease_with_a_warning():
    rng = np.random.default_rng(1)
    u, i = np.nonzero(rng.random((50, 20)) < 0.2)
    ds = Dataset.from_events(u, i, np.arange(len(u)))
    with pytest.warns(UserWarning, match="no item side information"):
        m = models.get("cease", l2=3.0).fit(ds)
    np.testing.assert_array_equal(m.similarity, models.get("ease", l2=3.0).fit(ds).similarity)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models.get("cease", l2=3.0).fit(_with_side())  # with side information: no warning


def test_cli_uses_the_folder_side_files(cli, tmp_path):
    """Sparse histories, items directed by their taste cluster's directors: cease beats ease through the CLI."""
    from conftest import clustered_events, write_competition

    events = clustered_events(n_users=300, n_items=240, per_user=8, n_clusters=8, seed=2)
    folder = write_competition(tmp_path / "comp", events)
    items = np.unique(events["item"])
    pd.DataFrame({"item": items, "director": [f"d{(i - 1000) % 8}-{(i - 1000) // 80}" for i in items]}).to_csv(
        folder / "directors.tsv", sep="\t", index=False
    )
    out = tmp_path / "r.json"
    cli("evaluate", "--data", folder, "--model", "ease,cease", "--param", "ease.l2=20", "--param", "cease.l2=20", "--param", "cease.side_weight=0.5", "--random", "3", "--json", out, "-q")
    import json

    res = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert res["cease"]["metrics"]["recall@10"] > res["ease"]["metrics"]["recall@10"] + 0.02, res
