from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import FIXTURES
from toprec import Dataset


def _same(a: Dataset, b: Dataset) -> None:
    assert list(a.user_ids) == list(b.user_ids) and list(a.item_ids) == list(b.item_ids)
    assert a.user_ids.dtype == b.user_ids.dtype and a.item_ids.dtype == b.item_ids.dtype
    for f in ("user", "item", "time"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert set(a.features) == set(b.features)
    for name in a.features:
        assert (a.features[name].matrix != b.features[name].matrix).nnz == 0
        assert list(a.features[name].values) == list(b.features[name].values)
    assert (a.titles is None) == (b.titles is None)
    if a.titles is not None:
        assert list(a.titles) == list(b.titles)
    ma, mb = a.matrix, b.matrix  # the cache stores the sorted CSR
    assert ma.has_sorted_indices and mb.has_sorted_indices and ma.dtype == mb.dtype == np.float32
    assert np.array_equal(ma.indptr, mb.indptr) and np.array_equal(ma.indices, mb.indices)
    assert not mb.indices.flags.writeable and not mb.data.flags.writeable


@pytest.mark.parametrize("layout", ["competition", "ml-100k", "recbole"])
def test_cache_hit_gives_the_same_dataset(tmp_path, layout):
    folder = tmp_path / layout
    shutil.copytree(FIXTURES / layout, folder)
    first = Dataset.load(folder, cache=True)
    assert first.summary["cache"] == "miss"
    second = Dataset.load(folder, cache=True)
    assert second.summary["cache"] == "hit"
    _same(Dataset.load(folder), second)
    assert second.summary["duplicates_dropped"] == first.summary["duplicates_dropped"]


def test_cache_invalidated_by_content_and_options(tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(FIXTURES / "competition", folder)
    Dataset.load(folder, cache=True)
    with open(folder / "train_ratings.csv", "a") as fh:
        fh.write("99,4643,1\n")
    ds = Dataset.load(folder, cache=True)
    assert ds.summary["cache"] == "miss" and 99 in set(ds.user_ids)
    assert Dataset.load(folder, cache=True).summary["cache"] == "hit"
    # other files in the folder (a submission, say) do not matter
    (folder / "submission.csv").write_text("user,item\n")
    assert Dataset.load(folder, cache=True).summary["cache"] == "hit"


def _entries(folder):
    from toprec.data.cache import cache_dir_for

    return sorted(cache_dir_for(folder).glob("*.npz"))


def test_cache_lives_in_the_user_cache_never_beside_the_data(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    shutil.copytree(FIXTURES / "competition", folder)
    monkeypatch.delenv("TOPREC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    Dataset.load(folder, cache=True)
    assert Dataset.load(folder, cache=True).summary["cache"] == "hit"
    assert any((tmp_path / "xdg" / "toprec").rglob("*.npz"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (FIXTURES / "competition").iterdir())


def test_cache_without_home_uses_a_temporary_folder(tmp_path, monkeypatch):
    """HOME unset (or pointing nowhere): no $HOME/.cache created under a missing home."""
    import tempfile

    folder = tmp_path / "c"
    shutil.copytree(FIXTURES / "competition", folder)
    for var in ("TOPREC_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    missing = tmp_path / "no-such-home"
    monkeypatch.setenv("HOME", str(missing))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    Dataset.load(folder, cache=True)
    assert not missing.exists()
    assert any((tmp_path / "tmp").rglob("*.npz"))
    assert Dataset.load(folder, cache=True).summary["cache"] == "hit"


def test_rejected_layout_leaves_no_cache_folder(tmp_path):
    from toprec.errors import ToprecError

    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a dataset")
    with pytest.raises(ToprecError):
        Dataset.load(folder, cache=True)
    assert not cache_dir_exists(folder) and [p.name for p in folder.iterdir()] == ["notes.txt"]


def cache_dir_exists(folder) -> bool:
    from toprec.data.cache import cache_dir_for

    return cache_dir_for(folder).exists()


def test_folder_and_its_only_file_get_different_entries(tmp_path):
    """--data folder (competition layout, time order) vs --data folder/train_ratings.csv (a table)."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train_ratings.csv").write_text("user,item,time\n1,10,5\n1,11,3\n2,10,1\n2,12,9\n")
    as_folder = Dataset.load(folder, cache=True)
    as_file = Dataset.load(folder / "train_ratings.csv", cache=True, user_col="user", item_col="item")
    assert as_file.summary["cache"] == "miss" and as_folder.summary["format"] == "competition"
    assert as_file.summary["format"] == "table"
    again = Dataset.load(folder, cache=True)
    assert again.summary["cache"] == "hit" and again.summary["format"] == "competition"


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(FIXTURES / "competition", folder)
    Dataset.load(folder, cache=True)
    for f in _entries(folder):
        f.write_bytes(b"garbage")
    ds = Dataset.load(folder, cache=True)
    assert ds.summary["cache"] == "miss" and ds.n_events == 7
    assert Dataset.load(folder, cache=True).summary["cache"] == "hit"


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop-member"])
def test_cache_entry_with_bad_crc_truncated_or_missing_member_is_rebuilt(tmp_path, damage):
    import zipfile

    folder = tmp_path / "c"
    shutil.copytree(FIXTURES / "competition", folder)
    Dataset.load(folder, cache=True)
    (entry,) = _entries(folder)
    raw = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "flip":
        with zipfile.ZipFile(entry) as z:
            info = z.getinfo("matrix_indices.npy")
        raw[info.header_offset + 30 + len(info.filename) + info.file_size - 1] ^= 0xFF  # last data byte
        entry.write_bytes(bytes(raw))
    else:
        with zipfile.ZipFile(entry) as z:
            members = {n: z.read(n) for n in z.namelist() if n != "matrix_indices.npy"}
        with zipfile.ZipFile(entry, "w") as z:
            for n, data in members.items():
                z.writestr(n, data)
    ds = Dataset.load(folder, cache=True)
    assert ds.summary["cache"] == "miss" and ds.n_events == 7
    assert Dataset.load(folder, cache=True).summary["cache"] == "hit"
