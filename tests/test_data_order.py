"""Which order the events are in is said, and found (issue 22 items 11 and 16): a time column named so
orders a table without --time-col; without one the load line, `data stats` and a warning say the
split relies on the file's row order; --min-rating says how many events it dropped."""

from __future__ import annotations

import numpy as np
import pytest

from toprec import Dataset
from toprec.cli import main

ROWS = [(1, 30, 5), (1, 10, 1), (1, 20, 3), (2, 10, 2), (2, 30, 9), (2, 20, 4), (3, 10, 7), (3, 20, 8)]


def _table(tmp_path, time_name: str | None):
    f = tmp_path / "events.csv"
    head = "user,item" + (f",{time_name}" if time_name else "")
    f.write_text(head + "\n" + "".join(f"{u},{i}" + (f",{t}" if time_name else "") + "\n" for u, i, t in ROWS))
    return f


@pytest.mark.parametrize("name", ["timestamp", "Time", "ts", "date"])
def test_a_time_column_is_found_by_its_name(tmp_path, name):
    ds = Dataset.load(_table(tmp_path, name), user_col="user", item_col="item")
    assert ds.summary["order"].startswith(f"time column '{name}'")
    first = ds.user_ptr[0]
    assert list(ds.item_ids[ds.item[first : first + 3]]) == [10, 20, 30]  # by time, not by row
    assert list(ds.time[:3]) == [1, 3, 5]


def test_an_explicit_time_column_is_named(tmp_path):
    ds = Dataset.load(_table(tmp_path, "when"), user_col="user", item_col="item", time_col="when")
    assert ds.summary["order"] == "time column 'when'"


def test_without_a_time_column_the_order_is_the_files(tmp_path, capsys):
    f = _table(tmp_path, None)
    ds = Dataset.load(f, user_col="user", item_col="item")
    assert ds.summary["order"] == "file order"
    first = ds.user_ptr[0]
    assert list(ds.item_ids[ds.item[first : first + 3]]) == [30, 10, 20]
    main(["data", "stats", str(f), "--no-cache"])
    cap = capsys.readouterr()
    assert "order: file order" in cap.err  # the load line
    assert "file order" in cap.out  # the stats table
    assert "warning" not in cap.err  # nothing relies on the order


def test_a_split_relying_on_the_file_order_is_warned_about_once(tmp_path, capsys):
    f = _table(tmp_path, None)
    main(["evaluate", "--data", str(f), "--model", "popularity", "--last", "1", "--random", "0", "-k", "2", "-q",
          "--no-cache"])  # fmt: skip
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("toprec: warning:")]
    assert len(warnings) == 1 and "row order" in warnings[0] and "--last 1" in warnings[0], err
    # a random holdout does not rely on it
    main(["evaluate", "--data", str(f), "--model", "popularity", "--protocol", "random_k", "--random", "1", "-k",
          "2", "-q", "--no-cache"])  # fmt: skip
    assert "warning" not in capsys.readouterr().err


def test_a_time_column_with_one_time_per_user_is_warned_about(tmp_path, capsys):
    """Every user's events at one time (a day stamp, an export time): "latest" is the file's row order again."""
    f = tmp_path / "day.csv"
    f.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{100 + u}\n" for u, i, _ in ROWS))
    main(["evaluate", "--data", str(f), "--model", "popularity", "--last", "1", "--random", "0", "-k", "2", "-q",
          "--no-cache"])  # fmt: skip
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("toprec: warning:")]
    assert len(warnings) == 1 and "no user has events at two different times" in warnings[0], warnings
    assert "row order" in warnings[0] and "--last 1" in warnings[0]
    main(["evaluate", "--data", str(_table(tmp_path, "timestamp")), "--model", "popularity", "--last", "1",
          "--random", "0", "-k", "2", "-q", "--no-cache"])  # fmt: skip
    assert "warning" not in capsys.readouterr().err  # times that differ within a user: no warning


def test_min_rating_says_how_many_events_it_dropped(tmp_path, capsys):
    f = tmp_path / "r.csv"
    f.write_text("user,item,rating\n1,1,5\n1,2,3\n2,1,1\n2,2,4\n")
    ds = Dataset.load(f, user_col="user", item_col="item", min_rating=4)
    assert ds.summary["filtered_by_rating"] == 2 and ds.summary["events_read"] == 4 and ds.n_events == 2
    main(["data", "stats", str(f), "--min-rating", "4", "--no-cache"])
    cap = capsys.readouterr()
    assert "loaded 2 events" in cap.err and "2 below --min-rating" in cap.err


def test_header_with_spaces_and_ids_beyond_int64(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("user, item, time\n99999999999999999999,1,1\n99999999999999999998,1,2\n5,2,3\n")
    ds = Dataset.load(f, user_col="user", item_col="item", time_col="time")
    assert sorted(ds.user_ids) == ["5", "99999999999999999998", "99999999999999999999"]
    assert ds.n_users == 3 and np.all(ds.user_counts == 1)
