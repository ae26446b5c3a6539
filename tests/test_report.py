"""toprec eda / toprec report: numbers against hand computations, JSON == plotted data, sections, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toprec import Dataset, metrics, models, split
from toprec.data.synth import synthesize, write_synth
from toprec.report import eda, write_eda, write_report
from toprec.report.eda_page import SECTIONS
from toprec.report.evaluation import item_buckets, truth_hits, user_buckets


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth(synthesize(n_users=1500, n_items=600, mean_per_user=45, min_per_user=12, seed=3), out)
    return out


@pytest.fixture(scope="module")
def synth(synth_dir) -> Dataset:
    return Dataset.load(synth_dir, cache=False)


def assert_plotted_equals_json(page, payload):
    """Every figure's JSON series is exactly what the matplotlib artists hold."""
    figs = page.figures()
    assert figs
    for sid, sec in payload["sections"].items():
        for fid, fj in sec["figures"].items():
            plotted = figs[fid].plotted
            assert set(fj["series"]) == set(plotted), (fid, set(fj["series"]), set(plotted))
            for label, values in fj["series"].items():
                a = np.asarray(values, dtype=np.float64)
                np.testing.assert_allclose(plotted[label], a, rtol=1e-12, atol=0, err_msg=f"{fid}/{label}")


# ------------------------------------------------------------------ small exact pieces
def test_gini_and_log_bins():
    assert eda.gini(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    assert eda.gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    edges, counts = eda._log_bins(np.array([1, 1, 2, 5, 9, 100]))
    assert counts.sum() == 6 and edges[0] == 1 and edges[-1] > 100


def _titled(titles: dict[int, str], events: list[tuple[str, int, int]]) -> Dataset:
    frame = pd.DataFrame(events, columns=["user", "item", "time"])
    t = pd.DataFrame({"item": list(titles), "title": list(titles.values())})
    return Dataset.from_events(frame["user"].to_numpy(), frame["item"].to_numpy(), frame["time"].to_numpy(), titles=t)


TITLES = {
    1: "Alpha (1990)", 2: "Alpha 2 (1992)", 3: "Alpha III (1994)", 4: "Beta, The (1990)",
    5: "Beta: The Return, The (1995)", 6: "Gamma (2000)", 7: "Hamlet (1948)", 8: "Hamlet (1996)", 9: "Apollo 13 (1995)",
}  # fmt: skip


def test_title_franchises_finds_numbered_roman_and_subtitled_parts():
    events = [("u", i, i) for i in TITLES]
    ds = _titled(TITLES, events)
    pairs = {(int(ds.item_ids[a]), int(ds.item_ids[b])) for a, b in eda.title_franchises(ds)}
    assert pairs == {(1, 2), (2, 3), (4, 5)}  # remakes (Hamlet) and a lone number (Apollo 13) are not series


def test_franchise_behaviour_hand_computed():
    # u1: 1 then 2 then 3 (in order, adjacent); u2: 2 before 1 (reversed); u3: only 1; u4: 6 only
    events = [("u1", 1, 10), ("u1", 2, 20), ("u1", 3, 30), ("u2", 2, 10), ("u2", 9, 15), ("u2", 1, 20),
              ("u3", 1, 10), ("u3", 6, 11), ("u4", 6, 10), ("u4", 7, 12)]  # fmt: skip
    ds = _titled(TITLES, events)
    f = eda.franchises(ds)
    n = f["numbers"]
    assert n["pairs"] == 2 and n["pairs_from_titles"] == 2  # items 4, 5 have no events: not in the data set
    # pairs 1->2 (users of 1: u1,u2,u3; both: u1,u2), 2->3 (users of 2: u1,u2; both: u1)
    assert n["users_watched_part_n"] == 5
    assert n["users_watched_both"] == 3
    assert n["p_next_part_given_part"] == pytest.approx(3 / 5)
    # in order: u1 1->2, u1 2->3; reversed: u2 (2 at 10, 1 at 20)
    assert n["in_order_share"] == pytest.approx(2 / 3)
    assert n["order_signal"] == pytest.approx(1 / 3)
    # baseline: sum over pairs of users_of_n * P(n+1) / users_of_n; P(2)=2/4, P(3)=1/4
    assert n["p_next_part_baseline"] == pytest.approx((3 * 0.5 + 2 * 0.25) / 5)
    # within the next 5 events (gap 1..5 after part n): u1 (gap 1) twice; u2 gap -2 -> no
    assert n["within_next_5_share"] == pytest.approx(2 / 3)
    by = dict(zip(f["by_part"]["labels"], f["by_part"]["rows"]))
    assert by["1→2"]["users_watched_both"] == 2 and by["2→3"]["users_watched_both"] == 1


def test_sequential_matches_brute_force():
    from conftest import clustered_events

    ev = clustered_events(n_users=60, n_items=50, per_user=30)
    dataset = Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["time"].to_numpy())
    res = eda.sequential(dataset, n_neighbors=5, sim_users=10_000, seed=0)
    X = dataset.matrix.toarray().astype(np.float32)
    G = X.T @ X
    inv = (1.0 / np.sqrt(X.sum(0))).astype(np.float32)
    S = G * inv[:, None] * inv[None, :]
    np.fill_diagonal(S, -np.inf)
    nbrs = {}
    for a in range(dataset.n_items):  # test-side brute force: best 5 by cosine, ties to the lower index
        top = sorted(range(dataset.n_items), key=lambda b: (-S[a, b], b))[:5]
        nbrs[a] = {int(b) for b in top if S[a, b] > 0}
    hits, total = 0, 0
    lag = {d_: [0, 0] for d_ in eda.LAGS}
    for u in range(dataset.n_users):
        seq = dataset.item[dataset.user_ptr[u] : dataset.user_ptr[u + 1]]
        for t in range(2, len(seq)):
            total += 1
            hits += int(seq[t]) in nbrs[int(seq[t - 1])]
        for t in range(max(eda.LAGS), len(seq)):
            for d_ in eda.LAGS:
                lag[d_][0] += int(seq[t]) in nbrs[int(seq[t - d_])]
                lag[d_][1] += 1
    assert res["numbers"]["events_measured"] == total and lag[1][1] > 0
    assert res["numbers"]["next_in_neighbours_of_previous"] == pytest.approx(hits / total)
    np.testing.assert_allclose(res["lag_rate"], [lag[d_][0] / lag[d_][1] for d_ in eda.LAGS])


def test_shuffle_order_keeps_sets_and_times(synth):
    sh = eda.shuffle_order(synth, seed=1)
    assert (sh.matrix != synth.matrix).nnz == 0
    np.testing.assert_array_equal(sh.time, synth.time)
    assert (sh.item != synth.item).mean() > 0.5


# ------------------------------------------------------------------ eda end to end
def test_eda_page_sections_numbers_and_structure(synth_dir, synth, tmp_path):
    # 3 neighbours: 0.5% of this 600-item catalogue (20 of the competition's 6,807 is 0.3%)
    html_path, json_path, page = write_eda(synth, tmp_path / "report", synth_dir, seed=0, n_neighbors=3)
    payload = json.loads(json_path.read_text())
    html = html_path.read_text()
    assert list(payload["sections"]) == list(SECTIONS)
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html and f'href="#{sid}"' in html
    assert "http://" not in html and "https://" not in html and "<link" not in html  # self-contained
    assert html.count('src="data:image/png;base64,') == len(page.figures()) >= 10
    assert_plotted_equals_json(page, payload)
    # activity numbers agree with independent computations
    act = payload["sections"]["activity"]["numbers"]
    ic = np.sort(np.asarray(synth.item_counts))[::-1]
    assert act["top10pct_items_event_share"] == pytest.approx(ic[: int(np.ceil(0.1 * len(ic)))].sum() / ic.sum())
    assert act["density"] == pytest.approx(synth.density)
    fig = payload["sections"]["activity"]["figures"]["user_activity"]
    assert sum(fig["series"]["users"]) == synth.n_users
    # genres: real users are more concentrated than the no-taste baseline
    g = payload["sections"]["genres"]["numbers"]
    assert g["mean_top_genre_share"] > g["mean_top_genre_share_baseline"] + 0.02
    # franchises planted in order are found and show order
    f = payload["sections"]["franchises"]["numbers"]
    assert f["title_detection_recall"] > 0.9 and f["title_detection_precision"] > 0.8
    assert f["lift_next_part"] > 2
    assert f["order_signal"] > 0.8
    assert f["within_next_5_lift"] > 2
    s = payload["sections"]["sequential"]["numbers"]
    assert s["lift"] > 1.08 and s["window_lift"] > 1.05
    cov = payload["sections"]["coverage"]["tables"][0]
    shares = {r[0]: r[1] for r in cov["rows"]}
    assert shares["genres"] == 1.0 and 0.7 < shares["directors"] < 1.0


def test_franchise_and_sequential_near_zero_when_order_is_shuffled(synth_dir, synth):
    sh = eda.shuffle_order(synth, seed=5)
    f = eda.franchises(sh, eda.read_extras(synth_dir, sh))["numbers"]
    s = eda.sequential(sh, n_neighbors=3, seed=0)["numbers"]
    assert abs(f["order_signal"]) < 0.08
    assert 0.75 < f["within_next_5_lift"] < 1.25
    assert abs(s["lift"] - 1.0) < 0.03 and abs(s["window_lift"] - 1.0) < 0.03
    # co-occurrence is order-free: P(n+1 | n) is the same on shuffled data
    f0 = eda.franchises(synth, eda.read_extras(synth_dir, synth))["numbers"]
    assert f["p_next_part_given_part"] == pytest.approx(f0["p_next_part_given_part"])


def test_eda_without_side_information(dataset, tmp_path):
    html_path, json_path, page = write_eda(dataset, tmp_path / "r")
    payload = json.loads(json_path.read_text())
    assert payload["sections"]["franchises"]["numbers"]["pairs"] == 0
    assert payload["sections"]["genres"]["figures"] == {}
    assert_plotted_equals_json(page, payload)


# ------------------------------------------------------------------ report
def test_buckets():
    b, labels = user_buckets(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], dtype=float), 5)
    assert len(labels) == len(np.unique(b)) and b[0] == 0 and b[-1] == len(labels) - 1
    ib, il = item_buckets(np.arange(200, dtype=float))
    assert il[0] == "top 1%" and (ib == 0).sum() == 2 and (ib == 4).sum() == 100
    import scipy.sparse as sp

    truth = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=np.float32))
    np.testing.assert_array_equal(truth_hits(np.array([[2, 3], [0, -1]]), truth), [False, True, False])


def test_report_matches_evaluate_and_plots(competition_dir, tmp_path):
    ds = Dataset.load(competition_dir, cache=False)
    ms = [models.get("popularity"), models.get("itemknn"), models.get("ials", factors=16, iterations=5)]
    html_path, json_path, page, rep = write_report(ds, ms, tmp_path / "rep", competition_dir, random=4, map_items=60)
    payload = json.loads(json_path.read_text())
    html = html_path.read_text()
    for sid in ("overview", "metrics", "by_user_activity", "by_item_popularity", "parts", "bias", "embeddings"):
        assert f'<section id="{sid}">' in html
    assert_plotted_equals_json(page, payload)
    train, holdout = split.competition(ds, last=1, random=4, seed=0)
    for m in ("popularity", "itemknn", "ials"):
        fresh = models.get(m) if m != "ials" else models.get("ials", factors=16, iterations=5)
        ref = metrics.fit_and_evaluate(fresh, train, holdout, 10, ["recall@10", "ndcg@10", "precision@10"])
        r = rep["models"][m]
        assert r["metrics"]["recall@10"] == ref["recall@10"]
        assert r["metrics"]["recall_last@10"] == ref["recall_last@10"]
        per_user = np.asarray(payload["sections"]["metrics"]["data"][m]["per_user_recall@10"])
        assert len(per_user) == len(holdout.users)
        assert float(per_user.mean()) == pytest.approx(ref["recall@10"], rel=1e-12, abs=0)
        # buckets are exact decompositions of the totals
        w = np.asarray(rep["users_per_bucket"], dtype=float)
        assert (np.asarray(r["recall_by_user_bucket"]) * w).sum() / w.sum() == pytest.approx(ref["recall@10"])
        ev = np.asarray(rep["test_events_per_item_bucket"], dtype=float)
        hits_total = (np.asarray(r["hit_rate_by_item_bucket"]) * ev).sum()
        assert hits_total == pytest.approx(ref["precision@10"] * 10 * len(holdout.users))
    bias = {m: rep["models"][m]["bias"] for m in rep["models"]}
    assert bias["popularity"]["mean_popularity_of_recommended"] == max(
        b["mean_popularity_of_recommended"] for b in bias.values())  # fmt: skip
    assert bias["popularity"]["coverage@10"] == min(b["coverage@10"] for b in bias.values())
    assert "map" not in rep["models"]["popularity"]
    assert rep["models"]["itemknn"]["map"]["xy"].shape == (60, 2)
    assert rep["models"]["ials"]["map"]["xy"].shape == (60, 2)
    assert set(payload["sections"]["embeddings"]["figures"]) == {"map_itemknn", "map_ials"}


def test_report_cli_equals_evaluate_cli(competition_dir, tmp_path):
    ev_json = tmp_path / "ev.json"
    p1 = run("evaluate", "--data", competition_dir, "--model", "popularity,itemknn", "--random", "4", "--json",
             ev_json, "--quiet", "--no-track", cwd=tmp_path)  # fmt: skip
    assert p1.returncode == 0, p1.stderr
    p2 = run("report", "--data", competition_dir, "--models", "popularity,itemknn", "--random", "4", "--output",
             tmp_path / "rep", "--quiet", "--map-items", "0", cwd=tmp_path)  # fmt: skip
    assert p2.returncode == 0, p2.stderr
    ev = {r["model"]: r["metrics"] for r in json.loads(ev_json.read_text())["results"]}
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    rows = {r[0]: r[1:] for r in rep["sections"]["metrics"]["tables"][0]["rows"]}
    cols = rep["sections"]["metrics"]["tables"][0]["columns"][1:]
    for j, m in enumerate(cols):
        for key in ("recall@10", "ndcg@10", "map@10", "coverage@10", "recall_last@10", "recall_random@10"):
            assert rows[key][j] == ev[m][key], (m, key)
        per_user = rep["sections"]["metrics"]["data"][m]["per_user_recall@10"]
        assert float(np.mean(per_user)) == pytest.approx(ev[m]["recall@10"], rel=1e-12, abs=0)


def test_cli_errors(competition_dir, tmp_path):
    p = run("report", "--data", competition_dir, "--models", "nosuchmodel", "--output", tmp_path / "r")
    assert p.returncode == 2 and "unknown model 'nosuchmodel'" in p.stderr and "Traceback" not in p.stderr
    p = run("eda", "--data", tmp_path / "missing", "--output", tmp_path / "r")
    assert p.returncode == 2 and "missing" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "file").write_text("x")
    p = run("eda", "--data", competition_dir, "--output", tmp_path / "file", "-q")
    assert p.returncode == 2 and "not a folder" in p.stderr
    assert not (tmp_path / "r").exists()


def test_eda_cli_writes_both_files(competition_dir, tmp_path):
    p = run("eda", "--data", competition_dir, "--output", tmp_path / "out", "-q")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "eda.html").stat().st_size > 10_000
    payload = json.loads((tmp_path / "out" / "eda.json").read_text())
    assert payload["sections"]["overview"]["numbers"]["events"] == 2400
    assert not [f for f in (tmp_path / "out").iterdir() if f.name.startswith(".")]  # no temp files left


def test_bad_franchises_file(synth_dir, synth, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "franchises.tsv").write_text("item\tfranchise\tpart\n1\t1\tone\n")
    from toprec.errors import ToprecError

    with pytest.raises(ToprecError, match="franchises.tsv: row 2: part 'one'"):
        eda.read_extras(bad, synth)
