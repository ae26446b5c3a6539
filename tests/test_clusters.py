"""User clusters (toprec.features.clusters): planted clusters recovered, k by silhouette, seeds, features, report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score, silhouette_score

from toprec import Dataset, ToprecError, metrics, models, split
from toprec.features import cluster_item_share, cluster_vectors, parse_spec, user_clusters, user_vectors

from conftest import clustered_events


def planted(n_clusters: int, seed: int = 1) -> tuple[Dataset, np.ndarray]:
    """200 users in ``n_clusters`` taste groups (user u in group u % n_clusters) and the planted group per user."""
    ev = clustered_events(n_users=200, n_items=100, per_user=20, n_clusters=n_clusters, seed=seed)
    ds = Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["time"].to_numpy())
    return ds, np.array([int(u[1:]) % n_clusters for u in ds.user_ids])


@pytest.fixture(scope="module")
def four():
    return planted(4)


@pytest.mark.parametrize("spec, min_ari", [("ials:factors=16", 0.95), ("lmf:factors=16", 0.8)])
def test_planted_clusters_are_recovered(four, spec, min_ari):
    ds, truth = four
    cl = user_clusters(ds, spec, seed=0, k_range=(2, 7))
    assert cl.k == 4  # the silhouette finds the planted number
    assert adjusted_rand_score(truth, cl.labels) >= min_ari
    assert cl.labels.shape == (ds.n_users,) and (cl.labels >= 0).all()
    assert sorted(cl.sizes().tolist(), reverse=True) == cl.sizes().tolist()  # ids ordered by size
    assert cl.source == spec and cl.describe()["k"] == 4


@pytest.mark.parametrize("n_clusters", [3, 5])
def test_k_is_the_best_silhouette(n_clusters):
    ds, truth = planted(n_clusters, seed=2)
    cl = user_clusters(ds, "ials:factors=16", seed=0, k_range=(2, 7), keep_vectors=True)
    assert set(cl.silhouette) == set(range(2, 8))
    assert cl.k == max(cl.silhouette, key=cl.silhouette.get) == n_clusters
    # the reported score is the silhouette of the returned labels on the vectors K-means saw (all 200 users:
    # the silhouette sample is every user here)
    assert cl.silhouette[cl.k] == pytest.approx(silhouette_score(cl.vectors, cl.labels), rel=1e-9)
    assert adjusted_rand_score(truth, cl.labels) > 0.9
    # a fixed k skips the choice
    fixed = user_clusters(ds, "ials:factors=16", seed=0, k=2)
    assert fixed.k == 2 and set(fixed.silhouette) == {2}


def test_same_seed_same_clusters_and_the_seed_reaches_the_model(four):
    ds, _ = four
    a = user_clusters(ds, "lmf:factors=8", seed=3, k_range=(2, 5))
    b = user_clusters(ds, "lmf:factors=8", seed=3, k_range=(2, 5))
    assert np.array_equal(a.labels, b.labels) and a.silhouette == b.silhouette
    np.testing.assert_array_equal(a.centers, b.centers)
    c = user_clusters(ds, "lmf:factors=8", seed=4, k_range=(2, 5))
    assert c.silhouette != a.silhouette  # another seed: another LMF fit (random_state) and other K-means starts


def test_vectors_drop_bias_columns_and_users_without_events():
    ds, _ = planted(3)
    m = models.get("lmf", factors=8, iterations=3).fit(ds)
    V, ok = user_vectors(m)
    assert V.shape == (ds.n_users, 8) and m.user_factors.shape[1] == 10 and ok.all()  # LMF's 2 bias columns out
    with pytest.raises(ToprecError, match="has no user factors"):
        user_vectors(models.get("itemknn").fit(ds))
    # rows without a vector get -1 and the extra category k
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.05, (20, 2)) + [1, 0], rng.normal(0, 0.05, (20, 2)) + [0, 1], np.zeros((3, 2))]
    valid = np.r_[np.ones(40, bool), np.zeros(3, bool)]
    cl = cluster_vectors(X, valid, k_range=(2, 4), seed=0)
    assert cl.k == 2 and (cl.labels[40:] == -1).all() and set(cl.labels[:40]) == {0, 1}
    assert len(set(cl.labels[:20])) == 1 and len(set(cl.labels[20:40])) == 1
    codes, n = cl.categories()
    assert n == 3 and (codes[40:] == 2).all() and codes[:40].tolist() == cl.labels[:40].tolist()
    codes, _ = cl.categories(np.array([0, 41, 999, -5]))  # new users (outside the index) are "no cluster"
    assert codes.tolist() == [cl.labels[0], 2, 2, 2]
    oh = cl.one_hot()
    assert oh.shape == (43, 3) and (np.asarray(oh.sum(1)).ravel() == 1).all() and oh[41, 2] == 1


def test_cluster_item_share_by_hand():
    # users 0,1 in cluster 0, user 2 in cluster 1, user 3 unclustered; items 0..2
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]], dtype=np.float32))
    cl = cluster_vectors(np.array([[1.0, 0], [1, 0.01], [0, 1], [0, 0]]), np.array([1, 1, 1, 0], bool), k=2)
    assert cl.labels.tolist() == [0, 0, 1, -1]
    np.testing.assert_allclose(cluster_item_share(cl, X), [[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])


def test_bad_specs_are_one_line_errors():
    with pytest.raises(ToprecError, match="has no user factors"):
        parse_spec("ease")
    with pytest.raises(ToprecError, match="unknown model 'nosuch'"):
        parse_spec("nosuch")
    with pytest.raises(ToprecError, match="factors"):
        parse_spec("ials:factors=-1")
    assert parse_spec("ials:factors=8") == ("ials", {"factors": "8"})
    with pytest.raises(ToprecError, match="k_range"):
        cluster_vectors(np.eye(5), k_range=(1, 3))


def test_report_user_cluster_section(competition_dir, tmp_path):
    from test_report import assert_plotted_equals_json

    from toprec.report import write_report

    ds = Dataset.load(competition_dir, cache=False)
    ms = [models.get("popularity"), models.get("itemknn")]
    html_path, json_path, page, rep = write_report(ds, ms, tmp_path / "rep", competition_dir, random=4, map_items=0,
                                                   clusters="ials:factors=16")  # fmt: skip
    payload = json.loads(json_path.read_text())
    assert '<section id="user_clusters">' in html_path.read_text()
    sec = payload["sections"]["user_clusters"]
    assert set(sec["figures"]) == {"user_cluster_map", "recall_by_user_cluster"}
    assert_plotted_equals_json(page, payload)
    uc = rep["user_clusters"]
    assert uc["k"] == 4  # the fixture's four planted taste groups
    assert uc["map_xy"].shape == (len(uc["map_users"]), 2)
    # recall by cluster is an exact decomposition of the model's recall (every evaluated user is clustered)
    train, holdout = split.competition(ds, last=1, random=4, seed=0)
    n = np.asarray(uc["users_evaluated_per_cluster"], dtype=float)
    assert n.sum() == len(holdout.users)
    for m in ("popularity", "itemknn"):
        by = np.asarray(rep["models"][m]["recall_by_user_cluster"])
        assert (by * n).sum() / n.sum() == pytest.approx(rep["models"][m]["metrics"]["recall@10"], rel=1e-12)
    # the same clusters as user_clusters on the report's training part
    ref = user_clusters(train, "ials:factors=16", seed=0)
    assert np.array_equal(ref.labels[uc["map_users"]], uc["map_cluster"])
    ref_recall = metrics.per_user("recall@10", models.get("itemknn").fit(train).recommend(holdout.users, k=10).items,
                                  holdout.matrix[holdout.users])  # fmt: skip
    lab = ref.labels[holdout.users]
    assert rep["models"]["itemknn"]["recall_by_user_cluster"][1] == pytest.approx(ref_recall[lab == 1].mean())


def test_report_cli_rejects_a_model_without_user_factors(competition_dir, tmp_path):
    p = subprocess.run([sys.executable, "-m", "toprec", "report", "--data", str(competition_dir), "--models",
                        "popularity", "--clusters", "ease", "--output", str(tmp_path / "r"), "-q"],
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2 and "--clusters 'ease'" in p.stderr and "no user factors" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
