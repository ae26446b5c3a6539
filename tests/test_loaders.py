from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES
from toprec import Dataset, ToprecError
from toprec.data.loaders import detect_format


def _pairs(ds: Dataset) -> set[tuple[str, str]]:
    return {(str(ds.user_ids[u]), str(ds.item_ids[i])) for u, i in zip(ds.user, ds.item)}


def test_competition_layout_with_side_info():
    ds = Dataset.load(FIXTURES / "competition")
    assert detect_format(FIXTURES / "competition") == "competition"
    # 8 rows, one repeated (11,170): kept once at its earliest time
    assert ds.n_events == 7
    assert ds.summary["duplicates_dropped"] == 1
    assert ds.summary["events_read"] == 8
    assert (ds.n_users, ds.n_items) == (3, 4)
    u11 = ds.user_index([11])[0]
    events = ds.item_ids[ds.item[ds.user_ptr[u11] : ds.user_ptr[u11 + 1]]]
    assert list(events) == [4643, 170, 531]  # time order; 170 at its first time
    t = ds.time[ds.user_ptr[u11] : ds.user_ptr[u11 + 1]]
    assert list(t) == [1230782529, 1230782534, 1230782539]
    assert set(ds.features) == {"years", "genres", "directors", "writers"}
    g = ds.features["genres"]
    assert sorted(g.of(int(ds.item_index([2571])[0]))) == ["Action", "Sci-Fi", "Thriller"]
    assert g.matrix.shape == (4, 5) and g.matrix.dtype == np.float32
    # side rows for items without events are ignored and counted
    assert ds.titles[ds.item_index([2571])[0]] == "Matrix, The (1999)"
    m = ds.matrix
    assert m.shape == (3, 4) and m.dtype == np.float32 and m.nnz == 7 and m.has_sorted_indices


def test_ml100k():
    ds = Dataset.load(FIXTURES / "ml-100k")
    assert detect_format(FIXTURES / "ml-100k") == "ml-100k"
    assert (ds.n_users, ds.n_items, ds.n_events) == (3, 3, 6)
    toy = int(ds.item_index([10])[0])
    assert sorted(ds.features["genres"].of(toy)) == ["Animation", "Children's", "Comedy"]
    assert ds.features["years"].of(toy) == ["1995"]
    assert ds.titles[toy] == "Toy Story (1995)"


def test_ml100k_min_rating():
    ds = Dataset.load(FIXTURES / "ml-100k", min_rating=4)
    assert ds.n_events == 3
    assert ds.summary["filtered_by_rating"] == 3
    assert _pairs(ds) == {("1", "10"), ("2", "10"), ("3", "10")}


def test_ml1m_latin1_and_double_colon():
    ds = Dataset.load(FIXTURES / "ml-1m")
    assert (ds.n_users, ds.n_items, ds.n_events) == (3, 3, 5)
    peach = int(ds.item_index([661])[0])
    assert sorted(ds.features["genres"].of(peach)) == ["Animation", "Children's", "Musical"]
    assert ds.titles[int(ds.item_index([1193])[0])] == "One Flew Over the Cuckoo's Nest (1975)"


def test_ml_csv():
    ds = Dataset.load(FIXTURES / "ml-csv", min_rating=4.0)
    assert _pairs(ds) == {("2", "31"), ("2", "10"), ("3", "1029")}
    assert ds.features["years"].of(int(ds.item_index([1029])[0])) == ["1941"]


def test_recbole_atomic_files():
    ds = Dataset.load(FIXTURES / "recbole")
    assert detect_format(FIXTURES / "recbole") == "recbole"
    assert (ds.n_users, ds.n_items, ds.n_events) == (3, 3, 4)
    lac = int(ds.item_index([302])[0])
    assert sorted(ds.features["genres"].of(lac)) == ["Crime", "Film-Noir", "Mystery", "Thriller"]
    assert ds.features["years"].of(lac) == ["1997"]
    # the same file loads directly too
    assert Dataset.load(FIXTURES / "recbole" / "tiny.inter").n_events == 4


def test_table_csv_named_columns():
    ds = Dataset.load(FIXTURES / "table.csv", user_col="uid", item_col="sid", time_col="when")
    assert ds.n_events == 4 and ds.summary["duplicates_dropped"] == 1
    u1 = int(ds.user_index(["u1"])[0])
    assert list(ds.item_ids[ds.item[ds.user_ptr[u1] : ds.user_ptr[u1 + 1]]]) == ["b", "a"]  # by time
    ds4 = Dataset.load(FIXTURES / "table.csv", user_col="uid", item_col="sid", time_col="when",
                       rating_col="stars", min_rating=4)  # fmt: skip
    assert _pairs(ds4) == {("u1", "a"), ("u2", "a"), ("u2", "c")}


def test_table_parquet(tmp_path):
    frame = pd.read_csv(FIXTURES / "table.csv")
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    ds = Dataset.load(path, user_col="uid", item_col="sid", time_col="when")
    assert ds.n_events == 4
    # without a time column the file order is the time order
    ds2 = Dataset.load(path, user_col="uid", item_col="sid")
    u1 = int(ds2.user_index(["u1"])[0])
    assert list(ds2.item_ids[ds2.item[ds2.user_ptr[u1] : ds2.user_ptr[u1 + 1]]]) == ["a", "b"]


def test_ids_are_opaque_strings(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train_ratings.csv").write_text("user,item,time\nalice,tt01,5\nbob,tt01,3\nalice,x-9,7\n")
    ds = Dataset.load(folder)
    assert set(ds.user_ids) == {"alice", "bob"} and set(ds.item_ids) == {"tt01", "x-9"}


@pytest.mark.parametrize("fmt", ["folder", "table"])
def test_numeric_looking_ids_come_back_as_written(tmp_path, cli, fmt):
    """Zero-padded ids (SKUs, codes) are text: read as numbers they lost their zeros, and no written user id
    matched an input one. Ids that are numbers as written stay numbers (10.0 is the id 10); a side file's
    item ids are read the same way, so they still match the events'."""
    rows = "user,item,time\n000123,007,1\n000123,010,2\n000124,007,3\n000124,011,4\n000125,010,5\n"
    if fmt == "folder":
        data = tmp_path / "d"
        data.mkdir()
        (data / "train_ratings.csv").write_text(rows)
        (data / "genres.tsv").write_text("item\tgenre\n007\tDrama\n010\tComedy\n")
    else:
        data = tmp_path / "t.csv"
        data.write_text(rows)
    ds = Dataset.load(data, cache=False)
    assert sorted(ds.user_ids) == ["000123", "000124", "000125"] and sorted(ds.item_ids) == ["007", "010", "011"]
    if fmt == "folder":
        genres = ds.features["genres"]  # the side file's ids matched the events'
        assert [genres.of(list(ds.item_ids).index(i)) for i in ("007", "010", "011")] == [["Drama"], ["Comedy"], []]
    sub = tmp_path / "s.csv"
    cli("submit", "--data", str(data), "--model", "popularity", "-k", "1", "--output", str(sub), "-q")
    written = pd.read_csv(sub, dtype=str)
    assert sorted(written["user"]) == ["000123", "000124", "000125"], written
    assert set(written["item"]) <= {"007", "010", "011"}, written
    numbers = tmp_path / "n.csv"
    numbers.write_text("user,item,time\n1,10.0,1\n-2,11,2\n")
    ds = Dataset.load(numbers, cache=False)
    assert ds.user_ids.dtype == ds.item_ids.dtype == np.int64 and sorted(ds.item_ids) == [10, 11]  # 10.0 is 10
    assert sorted(ds.user_ids) == [-2, 1]
    numbers.write_text("user,item,time\n1,99999999999999999999,1\n2,11,2\n")  # beyond int64: text
    assert sorted(Dataset.load(numbers, cache=False).item_ids) == ["11", "99999999999999999999"]


def test_ids_read_as_text_keep_the_old_reading_where_it_was_right(tmp_path):
    """Edge spaces are not part of a numeric id (as when pyarrow parsed numbers); a header written with spaces
    still reads its id columns as text; parquet string ids stay text; a .item file's ids match the .inter's;
    a side-file row without an item is skipped; -0 is not 0."""
    def load(text: str, name: str = "t.csv"):
        f = tmp_path / name
        f.write_text(text)
        return Dataset.load(f, cache=False)

    ds = load("user,item,time\n1, 2, 3\n1 ,3,4\n")
    assert list(ds.user_ids) == [1] and list(ds.item_ids) == [2, 3]
    ds = load("user, item, time\n001, 007, 3\n002, 010, 4\n")
    assert list(ds.user_ids) == ["001", "002"] and list(ds.item_ids) == ["007", "010"]
    assert list(load("user,item,time\n0,2,3\n-0,3,4\n").user_ids) == ["-0", "0"]
    pq = tmp_path / "s.parquet"
    pd.DataFrame({"user": ["1", "2"], "item": ["1.0", "2.5"]}).to_parquet(pq)
    ds = Dataset.load(pq, cache=False)
    assert list(ds.user_ids) == ["1", "2"] and list(ds.item_ids) == ["1.0", "2.5"]
    rb = tmp_path / "rb"
    rb.mkdir()
    (rb / "rb.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t007\t1\n2\t010\t2\n")
    (rb / "rb.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n007\tBond\tAction\n"
                                "010\tTen\tDrama\n")  # fmt: skip
    ds = Dataset.load(rb, cache=False)
    assert list(ds.titles) == ["Bond", "Ten"] and ds.features["genres"].of(0) == ["Action"]
    side = tmp_path / "side"
    side.mkdir()
    (side / "train_ratings.csv").write_text("user,item,time\n1,007,1\n1,010,2\n")
    (side / "genres.tsv").write_text("item\tgenre\n007\tDrama\n\tComedy\n010\tHorror\n")
    ds = Dataset.load(side, cache=False)
    assert ds.features["genres"].of(0) == ["Drama"] and ds.features["genres"].of(1) == ["Horror"]


def test_a_side_file_matching_no_item_is_warned_about(tmp_path, capsys):
    """Events with padded ids, a side file without the zeros: they no longer match (ids as written), and the
    load says so instead of dropping the side feature silently."""
    from toprec.cli import main

    data = tmp_path / "d"
    data.mkdir()
    (data / "train_ratings.csv").write_text("user,item,time\n1,007,1\n1,010,2\n2,007,3\n2,011,4\n")
    (data / "genres.tsv").write_text("item\tgenre\n7\tDrama\n10\tComedy\n")
    main(["data", "stats", str(data), "--no-cache"])
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("toprec: warning:")]
    assert len(warnings) == 1 and "side file 'genres': none of its 2 rows names an item" in warnings[0], warnings
    (data / "genres.tsv").write_text("item\tgenre\n007\tDrama\n10\tComedy\n")  # one matches: used, no warning
    main(["data", "stats", str(data), "--no-cache"])
    assert "warning" not in capsys.readouterr().err


def test_filter_keeps_index_space(dataset):
    half = dataset.filter(dataset.time % 2 == 0)
    assert half.n_users == dataset.n_users and half.n_items == dataset.n_items
    assert half.n_events < dataset.n_events
    assert half.matrix.shape == dataset.matrix.shape


def test_stats(dataset):
    s = dataset.stats()
    assert s["users"] == 120 and s["events"] == 120 * 20
    assert s["per_user"]["q50"] == 20.0
    assert abs(s["density"] - 2400 / (120 * s["items"])) < 1e-12


def test_dataset_is_immutable(dataset):
    with pytest.raises(ValueError):
        dataset.user[0] = 5
    with pytest.raises(ValueError):
        dataset.matrix.data[0] = 3


# ----------------------------------------------------------- bad input
def _comp(tmp_path, text: str):
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    (folder / "train_ratings.csv").write_text(text)
    return folder


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "file is empty"),
        ("user,item,time\n", "no events"),
        ("user,item,timestamp\n1,2,3\n", "missing time column 'time' (found: user, item, timestamp)"),
        ("usr,item,time\n1,2,3\n", "missing user column 'user'"),
        ("user,item,time\n1,2,3\n1,3,yesterday\n", "row 3: time 'yesterday' in column 'time' is not a number"),
        ("user,item,time\n1,2,3\n,3,4\n", "row 3: empty user value"),
        ("user,item,time\n1,2,3\n2,,4\n", "row 3: empty item value"),
    ],
)
def test_bad_competition_files(tmp_path, text, expected):
    folder = _comp(tmp_path, text)
    with pytest.raises(ToprecError) as exc:
        Dataset.load(folder)
    msg = str(exc.value)
    assert expected in msg and "train_ratings.csv" in msg and "\n" not in msg


def test_bad_time_late_in_a_big_file(tmp_path):
    rows = "".join(f"{u},{u % 7},{u}\n" for u in range(200_000))
    folder = _comp(tmp_path, "user,item,time\n" + rows + "5,5,soon\n")
    with pytest.raises(ToprecError, match=r"row 200002: time 'soon'"):
        Dataset.load(folder)


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(ToprecError, match="no such file or folder"):
        Dataset.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToprecError, match="no known dataset layout"):
        Dataset.load(tmp_path / "empty")


def test_min_rating_needs_rating_column(tmp_path):
    folder = _comp(tmp_path, "user,item,time\n1,2,3\n")
    with pytest.raises(ToprecError, match="needs a rating column"):
        Dataset.load(folder, min_rating=4)


def test_bad_side_file(tmp_path):
    folder = tmp_path / "side"
    shutil.copytree(FIXTURES / "competition", folder)
    (folder / "genres.tsv").write_text("movie\tgenre\n1\tDrama\n")
    with pytest.raises(ToprecError, match=r"genres.tsv: missing column 'item'"):
        Dataset.load(folder)


def _hetrec(folder, tagged: str | None = None) -> None:
    folder.mkdir()
    (folder / "user_artists.dat").write_text(
        "userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n3\t51\t5\r\n3\t53\t700\r\n4\t52\t1\r\n"
    )
    if tagged is not None:
        (folder / "user_taggedartists.dat").write_text(tagged)
        (folder / "tags.dat").write_bytes("tagID\ttagValue\r\n1\tmetal\r\n2\tcaf\xe9 rock\r\n3\tmine\r\n".encode("latin-1"))
    (folder / "artists.dat").write_text("id\tname\turl\tpictureURL\n51\tMALICE MIZER\tu\tp\n52\tDiary of Dreams\tu\tp\n")


def test_hetrec_lastfm_tags_need_two_users(tmp_path):
    # artist 51: 'metal' from users 2 and 3 (kept); 'mine' only from user 2, twice (dropped: one user's tag);
    # artist 52: 'café rock' from users 2 and 4 (kept, its latin-1 name decoded); artist 53: no shared tag
    tagged = ("userID\tartistID\ttagID\tday\tmonth\tyear\n2\t51\t1\t1\t4\t2009\n3\t51\t1\t1\t5\t2009\n"
              "2\t51\t3\t1\t4\t2009\n2\t51\t3\t2\t4\t2009\n2\t52\t2\t1\t4\t2009\n4\t52\t2\t1\t4\t2009\n"
              "2\t53\t3\t1\t4\t2009\n")  # fmt: skip
    _hetrec(tmp_path / "lastfm", tagged)
    assert detect_format(tmp_path / "lastfm") == "hetrec-lastfm"
    ds = Dataset.load(tmp_path / "lastfm", cache=False)
    assert (ds.n_users, ds.n_items, ds.n_events) == (3, 3, 5)
    assert _pairs(ds) == {("2", "51"), ("2", "52"), ("3", "51"), ("3", "53"), ("4", "52")}
    tags = ds.features["tags"]
    assert sorted(tags.values) == ["café rock", "metal"]
    assert tags.of(int(ds.item_index([51])[0])) == ["metal"]
    assert tags.of(int(ds.item_index([52])[0])) == ["café rock"]
    assert tags.of(int(ds.item_index([53])[0])) == []
    assert ds.titles[ds.item_index([52])[0]] == "Diary of Dreams"
    # --min-rating filters on the play count
    few = Dataset.load(tmp_path / "lastfm", cache=False, min_rating=700)
    assert _pairs(few) == {("2", "51"), ("2", "52"), ("3", "53")}


def test_hetrec_lastfm_without_side_files_and_bad_rows(tmp_path):
    _hetrec(tmp_path / "plain")
    ds = Dataset.load(tmp_path / "plain", cache=False)
    assert ds.features == {} and ds.n_events == 5
    _hetrec(tmp_path / "bad", "userID\tartistID\ttagID\n2\t51\t1\n2\t\t1\n")
    with pytest.raises(ToprecError, match=r"user_taggedartists.dat, row 3: .*artistID"):
        Dataset.load(tmp_path / "bad", cache=False)
    _hetrec(tmp_path / "nocol", "userID\tartist\ttagID\n2\t51\t1\n")
    with pytest.raises(ToprecError, match=r"user_taggedartists.dat: missing item column 'artistID'"):
        Dataset.load(tmp_path / "nocol", cache=False)


def test_hetrec_lastfm_cache_follows_the_tag_files(tmp_path):
    tagged = "userID\tartistID\ttagID\n2\t51\t1\n3\t51\t1\n"
    _hetrec(tmp_path / "lastfm", tagged)
    first = Dataset.load(tmp_path / "lastfm", cache=True)
    assert first.summary["cache"] == "miss" and list(first.features["tags"].values) == ["metal"]
    assert Dataset.load(tmp_path / "lastfm", cache=True).summary["cache"] == "hit"
    # a tag file changed: the cached copy is not reused
    (tmp_path / "lastfm" / "user_taggedartists.dat").write_text(tagged + "2\t52\t2\n4\t52\t2\n")
    again = Dataset.load(tmp_path / "lastfm", cache=True)
    assert again.summary["cache"] == "miss" and sorted(again.features["tags"].values) == ["café rock", "metal"]
