"""Property tests (Hypothesis): the loaders and ``Recommender.load`` either give a correct result or a
one-line ToprecError, for any input — never another exception, never a crash, never merged ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import clustered_events  # noqa: E402
from toprec import Dataset, models  # noqa: E402
from toprec.errors import ToprecError  # noqa: E402

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)  # fmt: skip


def _load_or_error(path: Path, **options):
    try:
        return Dataset.load(path, **options)
    except ToprecError as exc:
        assert "\n" not in str(exc) and str(exc)
        return None


@FAST
@given(raw=st.binary(max_size=600))
def test_random_bytes_load_or_one_line_error(tmp_path, raw):
    f = tmp_path / "x.csv"
    f.write_bytes(raw)
    _load_or_error(f, user_col="user", item_col="item")
    d = tmp_path / "folder"
    d.mkdir(exist_ok=True)
    (d / "train_ratings.csv").write_bytes(b"user,item,time\n" + raw)
    _load_or_error(d)


_cell = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=',"\r\n'), max_size=8),
    st.just(""),
)


@FAST
@given(header=st.lists(st.sampled_from(["user", "item", "time", " user", "item ", "rating", "x"]), min_size=1,
                       max_size=5),
       rows=st.lists(st.lists(_cell, min_size=0, max_size=6), min_size=0, max_size=12))  # fmt: skip
def test_random_csv_shapes_load_or_one_line_error(tmp_path, header, rows):
    f = tmp_path / "t.csv"
    f.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    ds = _load_or_error(f, user_col="user", item_col="item")
    if ds is not None:
        assert ds.n_events <= len(rows) and ds.matrix.shape == (ds.n_users, ds.n_items)


_id = st.one_of(st.integers(0, 2**63 - 1), st.integers(2**63, 2**80), st.text(alphabet="abcxyz_-", min_size=1,
                                                                            max_size=6))  # fmt: skip


@FAST
@given(pairs=st.lists(st.tuples(_id, _id), min_size=1, max_size=15))
def test_random_id_types_are_never_merged(tmp_path, pairs):
    """Distinct ids stay distinct (ids beyond int64 included) and come back as written."""
    f = tmp_path / "ids.csv"
    f.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in pairs))
    ds = _load_or_error(f, user_col="user", item_col="item")
    if ds is None:
        return
    assert ds.n_users == len({str(u) for u, _ in pairs})
    assert ds.n_items == len({str(i) for _, i in pairs})
    assert {str(u) for u in ds.user_ids} == {str(u) for u, _ in pairs}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ev = clustered_events(n_users=25, n_items=18, per_user=6)
    ds = Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["time"].to_numpy())
    root = tmp_path_factory.mktemp("saved")
    return {name: models.get(name).fit(ds).save(root / name) for name in ("ease", "itemknn", "popularity")}


_json_value = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=False),
                        st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                                  st.integers(),
                                                                                                  max_size=2))  # fmt: skip


@FAST
@given(name=st.sampled_from(["ease", "itemknn", "popularity"]), data=st.data())
def test_mutated_model_folders_load_or_one_line_error(tmp_path, saved, name, data):
    """Any edit of model.json, any byte flipped or cut in the arrays: a working model or one line."""
    folder = tmp_path / "m"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(saved[name], folder)
    kind = data.draw(st.sampled_from(["meta", "flip", "cut", "array"]))
    if kind == "meta":
        meta = json.loads((folder / "model.json").read_text())
        key = data.draw(st.sampled_from(sorted(meta) + ["params.l2", "params.k"]))
        value = data.draw(_json_value)
        if key.startswith("params."):
            meta["params"][key.split(".")[1]] = value
        else:
            meta[key] = value
        (folder / "model.json").write_text(json.dumps(meta))
    else:
        f = folder / "arrays.safetensors"
        raw = bytearray(f.read_bytes())
        if kind == "flip":
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        else:
            from safetensors.numpy import load_file, save_file

            arrays = load_file(str(f))
            key = data.draw(st.sampled_from(sorted(arrays)))
            a = arrays[key].copy()
            if a.size:
                a.flat[data.draw(st.integers(0, a.size - 1))] = data.draw(
                    st.sampled_from([-1, 10**6, np.nan, np.inf]) if a.dtype.kind == "f"
                    else st.sampled_from([-1, 10**6, 2**31 - 1]))  # fmt: skip
            arrays[key] = a
            save_file(arrays, str(f))
            raw = bytearray(f.read_bytes())
        f.write_bytes(bytes(raw))
    for mmap in (False, True):
        try:
            model = models.Recommender.load(folder, mmap=mmap)
        except ToprecError as exc:
            assert "\n" not in str(exc)
            continue
        recs = model.recommend(k=5)
        assert recs.items.shape == (model.n_users, 5)
        assert ((recs.items >= -1) & (recs.items < model.n_items)).all()
