"""The synthetic generator: deterministic, well-formed, and realistic enough."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from toprec.data.synth import FILES, GENRES, SynthData, synth_stats, synthesize, write_synth
from toprec.errors import ToprecError

SMALL = dict(n_users=300, n_items=200, mean_per_user=30)
HEADERS = {
    "train_ratings.csv": "user,item,time",
    "titles.tsv": "item\ttitle",
    "years.tsv": "item\tyear",
    "genres.tsv": "item\tgenre",
    "directors.tsv": "item\tdirector",
    "writers.tsv": "item\twriter",
    "franchises.tsv": "item\tfranchise\tpart",
}


@pytest.fixture(scope="module")
def small() -> SynthData:
    return synthesize(**SMALL, seed=7)


def _frames(d: SynthData) -> list[pd.DataFrame]:
    return [d.events, d.titles, d.years, d.genres, d.directors, d.writers, d.franchises]


def test_same_seed_same_data_and_bytes(tmp_path, small):
    again = synthesize(**SMALL, seed=7)
    for a, b in zip(_frames(small), _frames(again)):
        pd.testing.assert_frame_equal(a, b)
    write_synth(small, tmp_path / "a")
    write_synth(again, tmp_path / "b")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_other_seed_differs(small):
    other = synthesize(**SMALL, seed=8)
    assert not small.events.equals(other.events)
    assert not small.titles.equals(other.titles)


def test_events_well_formed(small):
    ev = small.events
    assert list(ev.columns) == ["user", "item", "time"]
    assert all(ev[c].dtype == np.int64 for c in ev.columns)
    per_user = ev.groupby("user").size()
    assert len(per_user) == SMALL["n_users"]
    assert per_user.min() >= 16
    assert abs(per_user.mean() - SMALL["mean_per_user"]) < 0.1 * SMALL["mean_per_user"]
    assert not ev.duplicated(["user", "item"]).any()
    assert set(ev["item"]) <= set(small.titles["item"])
    # sorted by user, then strictly increasing time within a user
    users, times = ev["user"].to_numpy(), ev["time"].to_numpy()
    assert (np.diff(users) >= 0).all()
    same = np.diff(users) == 0
    assert (np.diff(times)[same] > 0).all()
    assert times.min() >= 1104537600 and times.max() <= 1427846399  # 2005-01-01 .. 2015-03-31
    # nobody watches a film before its release year
    year = ev["item"].map(small.years.set_index("item")["year"])
    seen = pd.to_datetime(ev["time"], unit="s").dt.year
    assert not (seen < year).any()


def test_every_item_gets_a_few_events(small):
    counts = small.events["item"].value_counts()
    assert len(counts) == SMALL["n_items"]
    assert counts.min() >= 5


def test_long_tail_popularity():
    d = synthesize(n_users=400, n_items=600, mean_per_user=25, seed=1)
    stats = synth_stats(d)
    assert stats["top10pct_share"] > 0.30
    assert stats["top1pct_share"] > 0.03


def test_side_tables(small):
    items = small.titles["item"]
    assert items.is_unique and len(items) == SMALL["n_items"]
    per_item = small.genres.groupby("item").size()
    assert per_item.index.equals(pd.Index(sorted(items), name="item")) or set(per_item.index) == set(items)
    assert per_item.between(1, 3).all()
    assert set(small.genres["genre"]) <= set(GENRES)
    assert not small.genres.duplicated().any()
    assert small.directors["director"].str.fullmatch(r"nm\d{7}").all()
    assert small.directors["item"].is_unique
    assert 0.6 < len(small.directors) / len(items) <= 1.0
    w = small.writers.groupby("item").size()
    assert w.between(1, 2).all() and 0.6 < len(w) / len(items) <= 1.0
    assert small.writers["writer"].str.fullmatch(r"nm\d{7}").all()
    assert len(small.years) >= 0.99 * len(items)
    years = small.titles.merge(small.years, on="item")
    assert all(t.endswith(f" ({y})") for t, y in zip(years["title"], years["year"]))
    assert not small.titles["title"].str.contains('[\t"\n]').any()


def test_franchises_share_a_stem_and_are_watched_in_order(small):
    fr = small.franchises
    assert list(fr.columns) == ["item", "franchise", "part"]
    assert fr["item"].is_unique and fr.groupby("franchise").size().between(2, 6).all()
    titles = small.titles.set_index("item")["title"].str.replace(r" \(\d{4}\)$", "", regex=True)
    years = small.years.set_index("item")["year"]
    for _, parts in fr.groupby("franchise"):
        parts = parts.sort_values("part")
        assert parts["part"].tolist() == list(range(1, len(parts) + 1))
        stem = titles[parts["item"].iloc[0]]
        assert all(titles[i].startswith(stem) for i in parts["item"])
        assert years.reindex(parts["item"]).dropna().is_monotonic_increasing
    m = small.events.merge(fr, on="item")  # keeps the (user, time) order
    groups = m.groupby(["user", "franchise"])["part"]
    in_order = groups.apply(lambda p: bool((np.diff(p.to_numpy()) > 0).all()))
    multi = groups.size() >= 2
    assert multi.sum() >= 20
    assert in_order[multi].mean() > 0.8


def test_write_synth(tmp_path, small):
    stats = write_synth(small, tmp_path)
    for name, header in HEADERS.items():
        with open(tmp_path / name, encoding="utf8") as f:
            assert f.readline().rstrip("\n") == header, name
    assert not [p.name for p in tmp_path.iterdir() if p.name not in FILES]  # no temp files left
    back = pd.read_csv(tmp_path / "train_ratings.csv")
    pd.testing.assert_frame_equal(back, small.events)
    for name, frame in [("titles", small.titles), ("genres", small.genres), ("writers", small.writers)]:
        back = pd.read_csv(tmp_path / f"{name}.tsv", sep="\t", keep_default_na=False)
        pd.testing.assert_frame_equal(back.astype(str), frame.reset_index(drop=True).astype(str))
    assert stats["users"] == SMALL["n_users"] and stats["items"] == SMALL["n_items"]
    assert stats["events"] == len(small.events)
    assert stats["min_per_user"] >= 16
    # writing again replaces the files in place
    write_synth(small, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_progress_is_reported():
    seen = []
    synthesize(n_users=50, n_items=100, mean_per_user=20, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert all(isinstance(m, str) for _, m in seen)


def test_tiny_and_invalid_sizes():
    d = synthesize(n_users=5, n_items=40, mean_per_user=18, seed=0)
    assert d.events.groupby("user").size().min() >= 16
    assert not d.events.duplicated(["user", "item"]).any()
    with pytest.raises(ToprecError):
        synthesize(n_users=0)
    with pytest.raises(ToprecError):
        synthesize(n_users=10, n_items=10, min_per_user=16)
    with pytest.raises(ToprecError):
        synthesize(n_users=10, n_items=100, mean_per_user=0)
    with pytest.raises(ToprecError):
        synthesize(n_users=10, n_items=100, seed=-1)


def test_ids_look_like_movielens(small):
    users = small.events["user"].unique()
    assert users.min() >= 1 and len(users) == SMALL["n_users"]
    assert small.titles["item"].min() >= 1
    assert not re.search(r"\s{2}", " ".join(small.titles["title"]))
