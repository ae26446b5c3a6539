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


def test_unwritable_folder_uses_user_cache(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    shutil.copytree(FIXTURES / "competition", folder)
    (folder / ".toprec-cache").write_text("a file where the cache folder would go")  # cannot mkdir there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    Dataset.load(folder, cache=True)
    assert Dataset.load(folder, cache=True).summary["cache"] == "hit"
    assert any((tmp_path / "xdg" / "toprec").rglob("*.npz"))


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(FIXTURES / "competition", folder)
    Dataset.load(folder, cache=True)
    for f in (folder / ".toprec-cache").glob("*.npz"):
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
    (entry,) = (folder / ".toprec-cache").glob("*.npz")
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
