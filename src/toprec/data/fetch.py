"""Fetch real datasets and write them in the competition layout.

``ml-100k``: MovieLens 100K. Ratings and titles come from GroupLens when the
site answers; otherwise (or with ``source="recbole"``) from the copy shipped
inside the ``recbole`` wheel on PyPI (``pip download --no-deps recbole==1.2.1``).
Directors, writers and sequel links come from that wheel's knowledge-graph
file (Freebase ids), whenever the wheel can be had.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import progress
from ..errors import ToprecError
from ..io import atomic_path
from .loaders import ML100K_GENRES, TITLE_YEAR

GROUPLENS_ML100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_SPEC = "recbole==1.2.1"
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"
DATASETS = ("ml-100k",)


def _download_grouplens(timeout: float) -> dict[str, bytes] | None:
    try:
        with urllib.request.urlopen(GROUPLENS_ML100K, timeout=timeout) as resp:  # noqa: S310 - fixed https URL
            blob = resp.read()
        zf = zipfile.ZipFile(io.BytesIO(blob))
        return {Path(n).name: zf.read(n) for n in zf.namelist() if Path(n).name in ("u.data", "u.item", "u.genre")}
    except Exception:  # noqa: BLE001 - any network failure means: use the fallback
        return None


def _recbole_wheel(wheel: Path | None) -> dict[str, bytes] | None:
    """The ml-100k files inside the recbole wheel (downloaded with pip unless given)."""
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", RECBOLE_SPEC, "-d", tmp]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            except (subprocess.SubprocessError, OSError):
                return None
            found = sorted(Path(tmp).glob("recbole-*.whl"))
            if not found:
                return None
            wheel = found[0]
        try:
            zf = zipfile.ZipFile(wheel)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ToprecError(f"{wheel}: not a wheel/zip file ({exc})") from None
        out = {}
        for name in zf.namelist():
            if name.startswith(RECBOLE_PREFIX):
                out[name[len(RECBOLE_PREFIX) :]] = zf.read(name)
        return out or None


def _from_grouplens(files: dict[str, bytes]):
    ratings = pd.read_csv(io.BytesIO(files["u.data"]), sep="\t", names=["user", "item", "rating", "time"])
    cols = ["item", "title", "release", "video", "url"] + ML100K_GENRES
    items = pd.read_csv(io.BytesIO(files["u.item"]), sep="|", names=cols, encoding="latin-1")
    titles = items[["item", "title"]]
    years = titles.assign(year=titles["title"].str.extract(TITLE_YEAR, expand=False))[["item", "year"]].dropna()
    flags = items[ML100K_GENRES].to_numpy().astype(bool)
    r, c = np.nonzero(flags)
    genres = pd.DataFrame({"item": items["item"].to_numpy()[r], "genre": np.asarray(ML100K_GENRES)[c]})
    return ratings, titles, years, genres


def _from_recbole(files: dict[str, bytes]):
    inter = pd.read_csv(io.BytesIO(files["ml-100k.inter"]), sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    ratings = inter.rename(columns={"user_id": "user", "item_id": "item", "timestamp": "time"})
    ratings["time"] = ratings["time"].astype(np.int64)
    item = pd.read_csv(io.BytesIO(files["ml-100k.item"]), sep="\t", dtype=str)
    item.columns = [c.split(":")[0] for c in item.columns]
    item["item"] = item["item_id"].astype(np.int64)
    year = item["release_year"].fillna("")
    titles = pd.DataFrame(
        {"item": item["item"], "title": item["movie_title"].fillna("") + np.where(year != "", " (" + year + ")", "")}
    )
    years = pd.DataFrame({"item": item["item"], "year": item["release_year"]}).dropna()
    genres = pd.DataFrame({"item": item["item"], "genre": item["class"].fillna("").str.split(" ")}).explode("genre")
    genres = genres[genres["genre"].str.len() > 0]
    return ratings[["user", "item", "time"]], titles, years, genres


def _knowledge_graph(files: dict[str, bytes]) -> dict[str, pd.DataFrame]:
    """Directors, writers and sequels from the Freebase knowledge graph in the wheel."""
    if "ml-100k.kg" not in files or "ml-100k.link" not in files:
        return {}
    link = pd.read_csv(io.BytesIO(files["ml-100k.link"]), sep="\t")
    link.columns = ["item", "entity"]
    kg = pd.read_csv(io.BytesIO(files["ml-100k.kg"]), sep="\t")
    kg.columns = ["head", "relation", "tail"]
    # the link file names films by their MovieLens-1M ids, not ML-100K's (its item 50 is
    # "The Usual Suspects", ML-1M's 50): map them through the shipped title-matched table
    # (scripts/make_ml100k_kg_items.py); films without an ML-100K match are dropped
    table = pd.read_csv(Path(__file__).with_name("ml100k_kg_items.tsv"), sep="\t")
    link = link.merge(table, left_on="item", right_on="ml1m")
    ent2item: dict[str, list[int]] = link.groupby("entity")["ml100k"].agg(list).to_dict()
    out = {}
    for name, relation, col in (
        ("directors", "film.film.directed_by", "director"),
        ("writers", "film.film.written_by", "writer"),
    ):
        rel = kg[kg["relation"] == relation]
        frame = pd.DataFrame({"item": rel["head"].map(ent2item), col: rel["tail"]}).dropna().explode("item")
        frame["item"] = frame["item"].astype(np.int64)
        out[name] = frame.drop_duplicates().sort_values(["item", col])
    seq = kg[kg["relation"] == "film.film.sequel"]
    frame = pd.DataFrame({"item": seq["head"].map(ent2item), "sequel": seq["tail"].map(ent2item)}).dropna()
    frame = frame.explode("item").explode("sequel")
    out["sequels"] = frame.astype(np.int64).drop_duplicates().sort_values(["item", "sequel"])
    return out


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def fetch(name: str, out: str | Path, source: str = "auto", wheel: str | Path | None = None, timeout: float = 15.0) -> dict:
    """Fetch dataset ``name`` into folder ``out`` (competition layout); returns a summary.

    ``source``: ``auto`` (GroupLens, then the recbole wheel), ``grouplens``,
    ``recbole``, or a local folder holding ``u.data``/``u.item``. ``wheel``:
    a recbole wheel file already on disk (skips the pip download).
    """
    if name not in DATASETS:
        raise ToprecError(f"unknown dataset '{name}' (available: {', '.join(DATASETS)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ToprecError(f"{out}: exists and is not a folder")
    origin = ""
    wheel_files = None
    with progress.task(f"fetch {name}") as bar:
        parsed = None
        if source not in ("auto", "grouplens", "recbole"):
            local = Path(source)
            if not (local / "u.data").exists() or not (local / "u.item").exists():
                raise ToprecError(f"{local}: expected u.data and u.item there")
            files = {n: (local / n).read_bytes() for n in ("u.data", "u.item")}
            parsed, origin = _from_grouplens(files), f"local copy {local}"
        elif source in ("auto", "grouplens"):
            bar.update(description=f"fetch {name}: GroupLens")
            files = _download_grouplens(timeout)
            if files:
                parsed, origin = _from_grouplens(files), GROUPLENS_ML100K
            elif source == "grouplens":
                raise ToprecError(f"cannot download {GROUPLENS_ML100K}")
        bar.update(description=f"fetch {name}: recbole wheel ({RECBOLE_SPEC})")
        wheel_files = _recbole_wheel(Path(wheel) if wheel else None)
        if parsed is None:
            if not wheel_files or "ml-100k.inter" not in wheel_files:
                raise ToprecError(
                    f"cannot fetch {name}: GroupLens unreachable and 'pip download --no-deps {RECBOLE_SPEC}' failed"
                )
            parsed, origin = _from_recbole(wheel_files), f"PyPI wheel {RECBOLE_SPEC} ({RECBOLE_PREFIX})"
        ratings, titles, years, genres = parsed
        extra = _knowledge_graph(wheel_files or {})
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "train_ratings.csv") as tmp:
            ratings[["user", "item", "time"]].to_csv(tmp, index=False)
        _write_tsv(titles, out / "titles.tsv")
        _write_tsv(years, out / "years.tsv")
        _write_tsv(genres, out / "genres.tsv")
        for fname, frame in extra.items():
            _write_tsv(frame, out / f"{fname}.tsv")
        note = (
            f"MovieLens 100K (GroupLens, F. M. Harper and J. A. Konstan, TiiS 2015), fetched by toprec.\n"
            f"Ratings/titles/genres from: {origin}\n"
            + (f"Directors/writers/sequels: Freebase knowledge graph in {RECBOLE_SPEC}\n" if extra else "")
            + "All ratings are kept as implicit events (user,item,time). Research use only; see the GroupLens README.\n"
        )
        with atomic_path(out / "SOURCE.txt") as tmp:
            tmp.write_text(note)
    return {
        "dataset": name,
        "out": str(out),
        "source": origin,
        "events": int(len(ratings)),
        "users": int(ratings["user"].nunique()),
        "items": int(ratings["item"].nunique()),
        "side_files": ["titles", "years", "genres", *extra.keys()],
    }
