"""Loaders: every supported layout is read into the same :class:`RawEvents`.

:meth:`toprec.Dataset.load` turns them into a :class:`~toprec.data.dataset.Dataset`
(``Dataset.from_events``), through the binary cache when asked; this module
only parses files and never builds a dataset itself.

Layouts (detected from what a folder holds, or forced with ``format=``):

``competition``  ``train_ratings.csv`` (user,item,time) + optional ``titles.tsv``,
                 ``years.tsv``, ``genres.tsv``, ``directors.tsv``, ``writers.tsv``
``ml-100k``      ``u.data`` + ``u.item`` (+ ``u.genre``)
``ml-1m``        ``ratings.dat`` + ``movies.dat`` (``::`` separated)
``ml-csv``       ``ratings.csv`` + ``movies.csv`` (MovieLens 20M / 25M / latest)
``recbole``      ``NAME.inter`` (+ ``NAME.item``) atomic files
``hetrec-lastfm`` ``user_artists.dat`` (HetRec 2011 Last.fm: userID, artistID, weight)
                 + optional ``user_taggedartists.dat`` / ``tags.dat`` (the ``tags``
                 side feature) and ``artists.dat`` (titles)
``table``        any CSV / TSV / Parquet file with named columns
                 (``user_col``, ``item_col``, optional ``time_col``, ``rating_col``)

Bad input raises :class:`ToprecError` with the file, row and problem.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import ToprecError

COMPETITION_SIDE = ("titles", "years", "genres", "directors", "writers")
FORMATS = ("auto", "competition", "ml-100k", "ml-1m", "ml-csv", "hetrec-lastfm", "recbole", "table")
#: hetrec-lastfm: a tag is an artist's side value once this many users applied it to the artist. Tags are
#: user-generated: a tag only one user applied mostly records that user's own listening (a holdout artist
#: they tagged would be linked to their history through it); 2 keeps the shared vocabulary and 10x fewer rows.
HETREC_TAG_MIN_USERS = 2

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


@dataclass
class RawEvents:
    """What a loader reads, before :meth:`Dataset.from_events <toprec.data.dataset.Dataset.from_events>`.

    External ids as read; ``features`` maps a name (``genres``...) to an
    ``item, value`` frame and ``titles`` is an ``item, title`` frame.
    """

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray | None
    features: dict[str, pd.DataFrame] = field(default_factory=dict)
    titles: pd.DataFrame | None = None
    name: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- reading
def _check_file(path: Path) -> None:
    if not path.exists():
        raise ToprecError(f"{path}: file not found")
    if path.is_dir():
        raise ToprecError(f"{path}: is a folder, expected a file")
    if path.stat().st_size == 0:
        raise ToprecError(f"{path}: file is empty")


def _first_null(arr: pa.ChunkedArray | pa.Array) -> int | None:
    mask = np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _read_csv_table(
    path: Path,
    sep: str = ",",
    names: list[str] | None = None,
    encoding: str = "utf8",
    as_string: bool = False,
    text_columns: Sequence[str] = (),
) -> pa.Table:
    """Read a delimited file with pyarrow (fast); multi-character separators supported. ``text_columns`` are read
    as text (id columns: their digits are kept as written, ``000123`` is not the number 123)."""
    read_opts = pacsv.ReadOptions(column_names=names, encoding=encoding, block_size=1 << 24)
    wanted = set(text_columns)
    raw = [c for c in _header(path, sep, names, encoding) if c.strip().strip('"').strip() in wanted] if wanted else []
    text = pa.dictionary(pa.int32(), pa.string())  # dictionary-encoded as parsed: ~1.6x faster than plain text
    convert = pacsv.ConvertOptions(column_types={c: text for c in {*wanted, *raw}}, strings_can_be_null=True,
                                   quoted_strings_can_be_null=True)  # fmt: skip
    if as_string:
        # read every column as text; used to find the exact bad row after a failure
        header = names
        if header is None:
            with open(path, encoding=encoding, errors="replace") as fh:
                line = fh.readline().rstrip("\r\n").split(sep)
                header = [c.strip('"') for c in line] + [c.strip().strip('"') for c in line]
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}, strings_can_be_null=True, quoted_strings_can_be_null=True
        )
    if len(sep) == 1:
        source: Any = str(path)
        parse = pacsv.ParseOptions(delimiter=sep, quote_char='"' if sep == "," else False)
    else:
        raw = path.read_bytes().replace(sep.encode(), b"\x1f")
        source = io.BytesIO(raw)
        parse = pacsv.ParseOptions(delimiter="\x1f", quote_char=False)
    try:
        return _stripped(pacsv.read_csv(source, read_options=read_opts, parse_options=parse, convert_options=convert))
    except pa.ArrowInvalid as exc:
        if not as_string:
            raise
        msg = str(exc).split("\n")[0]
        m = re.search(r"[Rr]ow #(\d+)", str(exc))
        where = f", row {m.group(1)}" if m else ""
        raise ToprecError(f"{path}{where}: cannot parse: {msg}") from None


def _header(path: Path, sep: str, names: list[str] | None, encoding: str) -> list[str]:
    """The column names as the file writes them (spaces kept), from its first line (compressed or not)."""
    if names is not None:
        return list(names)
    try:
        with pa.input_stream(str(path), compression="detect") as fh:
            head = fh.read(1 << 16)
    except (OSError, pa.ArrowException):
        return []
    line = head.split(b"\n", 1)[0].decode(encoding, errors="replace").rstrip("\r").lstrip("\ufeff")
    return [c.strip('"') for c in line.split(sep)]


def _stripped(table: pa.Table) -> pa.Table:
    """Column names without surrounding spaces (``user, item, time``), unless that makes two equal."""
    names = [c.strip() for c in table.column_names]
    if names != table.column_names and len(set(names)) == len(names):
        return table.rename_columns(names)
    return table


def _check_text(table: pa.Table, path: Path, encoding: str) -> pa.Table:
    """A column pyarrow could not decode as text is binary: a one-line error naming the file and row."""
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            row = next((r for r, v in enumerate(col.to_pylist()) if v is not None and not _decodes(v, encoding)), 0)
            raise ToprecError(f"{path}, row {row + 2}: column '{name}' is not valid {encoding} text "
                              "(save the file as UTF-8)")  # fmt: skip
    return table


def _decodes(v: bytes, encoding: str) -> bool:
    try:
        v.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def _read_table(path: Path, sep: str = ",", names: list[str] | None = None, encoding: str = "utf8",
                text_columns: Sequence[str] = ()) -> pa.Table:  # fmt: skip
    return _check_text(_read_any_table(path, sep, names, encoding, text_columns), path, encoding)


def _read_any_table(path: Path, sep: str = ",", names: list[str] | None = None, encoding: str = "utf8",
                    text_columns: Sequence[str] = ()) -> pa.Table:  # fmt: skip
    _check_file(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return _stripped(pq.read_table(path))
        except Exception as exc:  # noqa: BLE001 - any parquet failure is a bad file
            raise ToprecError(f"{path}: cannot read parquet: {str(exc).splitlines()[0]}") from None
    try:
        return _read_csv_table(path, sep, names, encoding, text_columns=text_columns)
    except pa.ArrowInvalid:
        if text_columns:
            try:  # bytes that are not text in an id column: read as bytes, the check names the row
                return _read_csv_table(path, sep, names, encoding)
            except pa.ArrowInvalid:
                pass
        # a column changed type part-way (e.g. a text time): read as text, validate per column below
        return _read_csv_table(path, sep, names, encoding, as_string=True)
    except UnicodeDecodeError as exc:
        raise ToprecError(f"{path}: not valid {encoding} text ({exc.reason})") from None


def _column(table: pa.Table, path: Path, name: str, role: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        found = ", ".join(c if c.strip() == c and c.isprintable() and c else repr(c) for c in table.column_names)
        raise ToprecError(f"{path}: missing {role} column '{name}' (found: {found})")
    col = table.column(name)
    bad = _first_null(col)
    if bad is not None:
        raise ToprecError(f"{path}, row {bad + 2}: empty {role} value in column '{name}'")
    return col


#: the longest id accepted (characters); longer is a bad file, not an id
MAX_ID_CHARS = 256
_INTEGER = re.compile(r"\s*[-+]?\d+\s*")
#: ids read as text that are numbers as written: canonical integers (no sign but '-', no leading zero, at most
#: 18 digits, so within int64), integers written otherwise (``000123``, ``+5``, beyond int64: kept as text), and
#: numbers with a point or an exponent (``4.0`` is the id 4; ``4.5`` is an error among numeric ids)
CANONICAL_INT = r"(0|-?[1-9][0-9]{0,17})"
_CANONICAL, _DIGITS = f"^{CANONICAL_INT}$", r"^[-+]?[0-9]+$"
_NUMBER = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


def written_ints(values) -> bool:
    """Whether every id (text as given: a users file, a member file) is an integer as written, so it may be
    compared with a dataset's integer ids as a number (``01`` is not the id 1; the loaders read ids so)."""
    return bool(pd.Series(np.asarray(values), dtype=object).astype(str).str.fullmatch(CANONICAL_INT).all())


def _ids(col: pa.ChunkedArray, path: Path | None = None, name: str = "", role: str = "id",
         text=None, offset: int = 2, written: bool = False) -> np.ndarray:  # fmt: skip
    """External ids: int64 when every id is an integer that fits, else the text as read (never merged).

    ``text()`` returns the column as read (strings), for columns pyarrow read as floating point
    (an id beyond int64, or a decimal among integers): their digits are not trusted to a double.
    ``written``: the column was read as text from a delimited file (``text_columns``): it becomes int64
    only where every id is an integer as written (``000123`` stays text; edge spaces are not part of a
    number), and numbers with a point or an exponent take the floating-point rule. Other text (a parquet
    string column) stays text.
    """
    where = f"{path}, row" if path is not None else "row"
    if pa.types.is_integer(col.type):
        return col.to_numpy().astype(np.int64, copy=False)
    if pa.types.is_floating(col.type):
        vals = col.to_numpy()
        raw = None if text is None else np.asarray(text().to_numpy(zero_copy_only=False), dtype=object)
        if raw is not None and all(_INTEGER.fullmatch(v) for v in raw):  # integers beyond int64: keep the text
            col = pa.chunked_array([pa.array([v.strip() for v in raw], type=pa.string())])
        else:
            ok = np.isfinite(vals) & (vals == np.floor(vals)) & (np.abs(vals) < 2.0**53)
            if ok.all():
                return vals.astype(np.int64)
            r = int(np.flatnonzero(~ok)[0])
            shown = raw[r] if raw is not None else vals[r]
            raise ToprecError(f"{where} {r + offset}: {role} id {str(shown).strip()!r} in column '{name}' is not an "
                              "integer while other ids are numbers; ids must be integers or text")  # fmt: skip
    if not len(col) or col.null_count:  # (a null is an error of the caller's, as an empty id)
        return np.asarray(col.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    if pa.types.is_dictionary(col.type):  # read as text_columns: already encoded
        enc = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    else:  # one hash pass: the checks below run on the distinct ids
        enc = col.cast(pa.string()).combine_chunks().dictionary_encode()
    words, codes = enc.dictionary.cast(pa.string()), enc.indices.to_numpy(zero_copy_only=False)
    lengths = pc.utf8_length(words)
    if pc.max(lengths).as_py() > MAX_ID_CHARS:
        r = int(np.flatnonzero(lengths.to_numpy(zero_copy_only=False)[codes] > MAX_ID_CHARS)[0])
        raise ToprecError(f"{where} {r + offset}: {role} id in column '{name}' is "
                          f"{lengths[int(codes[r])].as_py():,} characters long (at most {MAX_ID_CHARS})")  # fmt: skip
    if written:
        trimmed = pc.utf8_trim_whitespace(words)

        def every(pattern: str) -> bool:
            return bool(pc.all(pc.match_substring_regex(trimmed, pattern)).as_py())

        if every(_CANONICAL):
            return pc.cast(trimmed, pa.int64()).to_numpy()[codes]
        if every(_DIGITS):  # zero-padded, '+5', beyond int64: the digits as written
            return np.asarray(trimmed.to_numpy(zero_copy_only=False), dtype=object)[codes]
        if every(_NUMBER):  # a point or an exponent among numbers: 4.0 is the id 4, 4.5 an error
            full = pa.chunked_array([trimmed.take(enc.indices)])
            return _ids(pc.cast(full, pa.float64()), path, name, role, lambda: full, offset)
    return np.asarray(words.to_numpy(zero_copy_only=False), dtype=object)[codes]


def _numeric(col: pa.ChunkedArray, path: Path, name: str, role: str) -> np.ndarray:
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return col.to_numpy()
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return col.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    text = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
    vals = pd.to_numeric(text, errors="coerce")
    bad = np.flatnonzero(vals.isna().to_numpy())
    if len(bad):
        r = int(bad[0])
        raise ToprecError(f"{path}, row {r + 2}: {role} {text.iloc[r]!r} in column '{name}' is not a number")
    return vals.to_numpy()


def read_events(
    path: Path,
    user_col: str,
    item_col: str,
    time_col: str | None,
    rating_col: str | None = None,
    min_rating: float | None = None,
    sep: str = ",",
    names: list[str] | None = None,
    encoding: str = "utf8",
    row_offset: int = 2,
    detect_time: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """Read (user, item, time) columns from one file, validated; optional rating filter.

    ``detect_time``: without ``time_col``, a column that looks like a time (its name, or a
    date/timestamp type) orders the events; ``summary["order"]`` says which order is used.
    """
    table = _read_table(path, sep, names, encoding, text_columns=(user_col, item_col))
    if table.num_rows == 0:
        raise ToprecError(f"{path}: no events (the file has a header but no rows)")

    def text(name: str):
        if path.suffix.lower() in (".parquet", ".pq"):
            return None
        return lambda: _read_csv_table(path, sep, names, encoding, as_string=True).column(name)

    written = path.suffix.lower() not in (".parquet", ".pq")
    users = _ids(_column(table, path, user_col, "user"), path, user_col, "user", text(user_col), row_offset, written)
    items = _ids(_column(table, path, item_col, "item"), path, item_col, "item", text(item_col), row_offset, written)
    order = "file order"
    if time_col is None and detect_time:
        time_col = _time_column(table, exclude=(user_col, item_col, rating_col))
        if time_col is not None:
            order = f"time column '{time_col}' (found by its name; --time-col to choose)"
    elif time_col is not None:
        order = f"time column '{time_col}'"
    times = None
    if time_col is not None:
        times = _numeric(_column(table, path, time_col, "time"), path, time_col, "time")
        if not np.all(np.isfinite(times)):
            r = int(np.flatnonzero(~np.isfinite(times))[0])
            raise ToprecError(f"{path}, row {r + row_offset}: time in column '{time_col}' is not a finite number")
    summary: dict[str, Any] = {"source": str(path), "order": order}
    if min_rating is not None:
        if rating_col is None or rating_col not in table.column_names:
            found = ", ".join(table.column_names)
            raise ToprecError(f"{path}: --min-rating needs a rating column '{rating_col}' (found: {found})")
        ratings = _numeric(_column(table, path, rating_col, "rating"), path, rating_col, "rating")
        keep = ratings >= min_rating
        summary["filtered_by_rating"] = int((~keep).sum())
        users, items = users[keep], items[keep]
        times = None if times is None else times[keep]
        if len(users) == 0:
            raise ToprecError(f"{path}: no events left with {rating_col} >= {min_rating}")
    return users, items, times, summary


#: column names taken for the events' time when no --time-col is given (compared lowercased)
TIME_NAMES = ("timestamp", "time", "datetime", "date", "ts", "event_time", "time_stamp", "unix_time", "created_at")


def _time_column(table: pa.Table, exclude=()) -> str | None:
    """The column that looks like the events' time: a date/timestamp type, else a numeric one named so."""
    cols = [c for c in table.column_names if c not in exclude]
    for c in cols:
        t = table.column(c).type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return c
    by_name = {c.lower(): c for c in cols}
    for name in TIME_NAMES:
        c = by_name.get(name)
        if c is not None and (pa.types.is_integer(table.column(c).type) or pa.types.is_floating(table.column(c).type)):
            return c
    return None


def _side_file(path: Path) -> pd.DataFrame | None:
    """A competition side file: header ``item<TAB>value``; one row per (item, value)."""
    if not path.exists():
        return None
    table = _read_table(path, sep="\t", text_columns=("item",))
    if "item" not in table.column_names:
        raise ToprecError(f"{path}: missing column 'item' (found: {', '.join(table.column_names)})")
    if table.num_columns < 2:
        raise ToprecError(f"{path}: expected two columns 'item' and a value")
    value_col = [c for c in table.column_names if c != "item"][0]
    table = table.filter(pc.is_valid(table.column("item")))  # a row without an item names nothing
    frame = pd.DataFrame({"item": _ids(table.column("item"), path, "item", "item", written=True),
                          "value": table.column(value_col).to_pandas()})  # fmt: skip
    return frame.dropna()


#: the release year at the end of a title, "Heat (1995)": the one pattern (loaders, fetch, EDA)
TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _years_from_titles(items: np.ndarray, titles: pd.Series) -> pd.DataFrame:
    years = titles.astype(str).str.extract(TITLE_YEAR, expand=False)
    frame = pd.DataFrame({"item": items, "value": years})
    return frame.dropna()


def _explode(items: np.ndarray, values: pd.Series, sep: str) -> pd.DataFrame:
    frame = pd.DataFrame({"item": items, "value": values.fillna("").astype(str).str.split(sep)})
    frame = frame.explode("value")
    frame = frame[frame["value"].str.len() > 0]
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------- layouts
def read_competition(folder: Path, min_rating: float | None = None) -> RawEvents:
    path = folder / "train_ratings.csv"
    users, items, times, summary = read_events(path, "user", "item", "time", "rating", min_rating)
    features = {}
    titles = None
    for name in COMPETITION_SIDE:
        frame = _side_file(folder / f"{name}.tsv")
        if frame is None:
            continue
        if name == "titles":
            titles = frame.rename(columns={"value": "title"})
        else:
            features[name] = frame
    return RawEvents(users, items, times, features, titles, folder.name, summary | {"format": "competition"})


def read_ml100k(folder: Path, min_rating: float | None = None) -> RawEvents:
    names = ["user", "item", "rating", "time"]
    users, items, times, summary = read_events(
        folder / "u.data", "user", "item", "time", "rating", min_rating, sep="\t", names=names, row_offset=1
    )
    features, titles = {}, None
    item_path = folder / "u.item"
    if item_path.exists():
        genres = ML100K_GENRES
        genre_path = folder / "u.genre"
        if genre_path.exists():
            lines = [ln.split("|")[0] for ln in genre_path.read_text(encoding="latin-1").splitlines() if "|" in ln]
            if len(lines) == 19:
                genres = lines
        cols = ["item", "title", "release", "video", "url"] + [f"g{j}" for j in range(19)]
        table = _read_table(item_path, sep="|", names=cols, encoding="latin1", text_columns=("item",))
        frame = table.to_pandas()
        item_ids = _ids(table.column("item"), written=True)
        titles = pd.DataFrame({"item": item_ids, "title": frame["title"]})
        flags = frame[[f"g{j}" for j in range(19)]].fillna(0).to_numpy().astype(bool)
        r, c = np.nonzero(flags)
        features["genres"] = pd.DataFrame({"item": item_ids[r], "value": np.asarray(genres, dtype=object)[c]})
        features["years"] = _years_from_titles(item_ids, frame["title"])
    return RawEvents(users, items, times, features, titles, folder.name, summary | {"format": "ml-100k"})


def read_ml1m(folder: Path, min_rating: float | None = None) -> RawEvents:
    names = ["user", "item", "rating", "time"]
    users, items, times, summary = read_events(
        folder / "ratings.dat", "user", "item", "time", "rating", min_rating, sep="::", names=names, row_offset=1
    )
    features, titles = {}, None
    movies = folder / "movies.dat"
    if movies.exists():
        table = _read_table(movies, sep="::", names=["item", "title", "genres"], encoding="latin1",
                            text_columns=("item",))  # fmt: skip
        frame = table.to_pandas()
        item_ids = _ids(table.column("item"), written=True)
        titles = pd.DataFrame({"item": item_ids, "title": frame["title"]})
        features["genres"] = _explode(item_ids, frame["genres"], "|")
        features["years"] = _years_from_titles(item_ids, frame["title"])
    return RawEvents(users, items, times, features, titles, folder.name, summary | {"format": "ml-1m"})


def read_ml_csv(folder: Path, min_rating: float | None = None) -> RawEvents:
    users, items, times, summary = read_events(
        folder / "ratings.csv", "userId", "movieId", "timestamp", "rating", min_rating
    )
    features, titles = {}, None
    movies = folder / "movies.csv"
    if movies.exists():
        table = _read_table(movies, text_columns=("movieId",))
        frame = table.to_pandas()
        if "movieId" in frame and "title" in frame:
            item_ids = _ids(table.column("movieId"), written=True)
            titles = pd.DataFrame({"item": item_ids, "title": frame["title"]})
            if "genres" in frame:
                g = _explode(item_ids, frame["genres"], "|")
                features["genres"] = g[g["value"] != "(no genres listed)"]
            features["years"] = _years_from_titles(item_ids, frame["title"])
    return RawEvents(users, items, times, features, titles, folder.name, summary | {"format": "ml-csv"})


def read_hetrec_lastfm(folder: Path, min_rating: float | None = None) -> RawEvents:
    """HetRec 2011 Last.fm-2K: listening pairs (``--min-rating`` filters on the play count ``weight``), the
    artists' tags (applied by at least HETREC_TAG_MIN_USERS users) and the artists' names. No timestamps."""
    users, items, _, summary = read_events(folder / "user_artists.dat", "userID", "artistID", None, "weight",
                                           min_rating, sep="\t")  # fmt: skip
    features, titles = {}, None
    tagged = folder / "user_taggedartists.dat"
    if tagged.exists():
        table = _read_table(tagged, sep="\t", text_columns=("userID", "artistID", "tagID"))
        for col, role in (("userID", "user"), ("artistID", "item"), ("tagID", "tag")):
            _column(table, tagged, col, role)
        frame = pd.DataFrame({"user": _ids(table.column("userID"), tagged, "userID", "user", written=True),
                              "item": _ids(table.column("artistID"), tagged, "artistID", "item", written=True),
                              "value": _ids(table.column("tagID"), tagged, "tagID", "tag", written=True)})  # fmt: skip
        counts = frame.drop_duplicates().groupby(["item", "value"]).size()
        shared = counts[counts >= HETREC_TAG_MIN_USERS].reset_index()[["item", "value"]]
        names_path = folder / "tags.dat"
        if names_path.exists():
            names = _read_table(names_path, sep="\t", encoding="latin1").to_pandas()
            if {"tagID", "tagValue"} <= set(names.columns):
                label = dict(zip(names["tagID"].astype(str), names["tagValue"].astype(str)))
                shared["value"] = [label.get(v, v) for v in shared["value"].astype(str)]
        features["tags"] = shared
        summary["tags_min_users"] = HETREC_TAG_MIN_USERS
    artists = folder / "artists.dat"
    if artists.exists():
        table = _read_table(artists, sep="\t", text_columns=("id",))
        if {"id", "name"} <= set(table.column_names):
            titles = pd.DataFrame({"item": _ids(table.column("id"), artists, "id", "item", written=True),
                                   "title": table.column("name").to_pandas()})  # fmt: skip
    return RawEvents(users, items, None, features, titles, folder.name, summary | {"format": "hetrec-lastfm"})


def _recbole_fields(path: Path) -> dict[str, str]:
    """Map bare field names (``user_id``) to the header's ``name:type`` columns (read from the header line only)."""
    return {c.split(":")[0]: c for c in (name.strip() for name in _header(path, "\t", None, "utf8")) if c}


def read_recbole(path: Path, min_rating: float | None = None) -> RawEvents:
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if not inters:
            raise ToprecError(f"{path}: no .inter file found")
        inter = inters[0]
    else:
        inter = path
    _check_file(inter)
    fields = _recbole_fields(inter)
    for need in ("user_id", "item_id"):
        if need not in fields:
            raise ToprecError(f"{inter}: missing column '{need}:token' (found: {', '.join(fields.values())})")
    users, items, times, summary = read_events(
        inter,
        fields["user_id"],
        fields["item_id"],
        fields.get("timestamp"),
        fields.get("rating", "rating"),
        min_rating,
        sep="\t",
    )
    features, titles = {}, None
    item_file = inter.with_suffix(".item")
    if item_file.exists():
        ifields = _recbole_fields(item_file)
        if "item_id" not in ifields:
            raise ToprecError(f"{item_file}: missing column 'item_id:token'")
        itable = _read_table(item_file, sep="\t", text_columns=(ifields["item_id"],))  # ids as the .inter's
        item_ids = _ids(itable.column(ifields["item_id"]), written=True)
        rename = {"class": "genres", "genre": "genres", "release_year": "years", "year": "years"}
        for bare, full in ifields.items():
            if bare == "item_id":
                continue
            kind = full.split(":")[1] if ":" in full else "token"
            values = itable.column(full).to_pandas()
            if bare in ("movie_title", "title"):
                titles = pd.DataFrame({"item": item_ids, "title": values})
            elif kind == "token_seq":
                features[rename.get(bare, bare)] = _explode(item_ids, values, " ")
            elif kind == "token":
                frame = pd.DataFrame({"item": item_ids, "value": values}).dropna()
                features[rename.get(bare, bare)] = frame
    return RawEvents(users, items, times, features, titles, inter.stem, summary | {"format": "recbole"})


def _sniff_sep(path: Path) -> str:
    """Tab, semicolon or comma, from the header line (plain or gzip text)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return ","
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf8", errors="replace") as fh:
            line = fh.readline()
    except OSError:
        return ","
    if "\t" in line:
        return "\t"
    if ";" in line and "," not in line:
        return ";"
    return ","


def read_plain_table(
    path: Path,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str | None = "time",
    rating_col: str | None = "rating",
    min_rating: float | None = None,
    sep: str | None = None,
) -> RawEvents:
    _check_file(path)
    if sep is None:
        sep = _sniff_sep(path)
    users, items, times, summary = read_events(path, user_col, item_col, time_col, rating_col, min_rating, sep=sep,
                                               detect_time=True)  # fmt: skip
    return RawEvents(users, items, times, name=path.stem.split(".")[0], summary=summary | {"format": "table"})


def detect_format(path: Path) -> str:
    if path.is_file():
        return "recbole" if path.suffix == ".inter" else "table"
    if not path.exists():
        raise ToprecError(f"{path}: no such file or folder")
    if (path / "train_ratings.csv").exists():
        return "competition"
    if (path / "u.data").exists():
        return "ml-100k"
    if (path / "ratings.dat").exists():
        return "ml-1m"
    if (path / "ratings.csv").exists():
        return "ml-csv"
    if (path / "user_artists.dat").exists():
        return "hetrec-lastfm"
    if any(path.glob("*.inter")):
        return "recbole"
    raise ToprecError(
        f"{path}: no known dataset layout (looked for train_ratings.csv, u.data, ratings.dat, ratings.csv, user_artists.dat, *.inter)"
    )


def read(
    path: str | os.PathLike,
    format: str = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    min_rating: float | None = None,
    sep: str | None = None,
) -> RawEvents:
    """Read a dataset folder or file; ``format='auto'`` detects the layout.

    Naming ``user_col``/``item_col`` means a plain table file (CSV/TSV/Parquet).
    """
    path = Path(path)
    if format not in FORMATS:
        raise ToprecError(f"unknown data format '{format}' (choose from {', '.join(FORMATS)})")
    if format == "auto":
        format = "table" if (user_col or item_col) and path.is_file() else detect_format(path)
    if format == "table":
        if path.is_dir():
            raise ToprecError(f"{path}: a table format needs a file, not a folder")
        return read_plain_table(
            path,
            user_col or "user",
            item_col or "item",
            time_col,
            rating_col or "rating",
            min_rating,
            sep,
        )
    if not path.exists():
        raise ToprecError(f"{path}: no such file or folder")
    readers = {
        "competition": read_competition,
        "ml-100k": read_ml100k,
        "ml-1m": read_ml1m,
        "ml-csv": read_ml_csv,
        "hetrec-lastfm": read_hetrec_lastfm,
        "recbole": read_recbole,
    }
    return readers[format](path, min_rating=min_rating)
