"""A binary cache of parsed datasets, so repeated runs skip CSV parsing.

This module stores and loads named arrays plus a JSON-able dict; what they
mean is the caller's business (:meth:`toprec.Dataset.load` passes its
``encode``/``decode``), so the cache never imports the dataset.

The key is the load options plus, for every source file, its name, size,
modification time and an XXH3-128 hash of its content (about 10 GB/s: a
116 MB CSV costs ~10 ms, where BLAKE2 took 175 ms of a 0.4 s cached load). Entries are uncompressed
``.npz`` files (numeric and fixed-width string arrays only, loaded with
``allow_pickle=False``) plus a JSON sidecar; both written atomically. They live
in the user's cache, never beside the data: ``$TOPREC_CACHE_DIR``, else
``$XDG_CACHE_HOME/toprec``, else ``~/.cache/toprec`` when the home folder
exists, else a ``toprec-cache-<uid>`` folder in the system's temporary
folder; one sub-folder per dataset path, created only when an entry is
written (a rejected layout leaves nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from ..errors import ToprecError
from ..io import atomic_path

T = TypeVar("T")
#: what an entry holds: named arrays and a JSON-able dict
Arrays = dict[str, np.ndarray]

#: 2: XXH3 content hashes; the sorted CSR column indices stored; 3: how the path is read; 4: ids as written
CACHE_VERSION = 4
_CHUNK = 1 << 22


#: files any loader may read from a dataset folder (others, e.g. a submission, don't matter)
SOURCE_NAMES = {
    "train_ratings.csv", "titles.tsv", "years.tsv", "genres.tsv", "directors.tsv", "writers.tsv",
    "u.data", "u.item", "u.genre", "ratings.dat", "movies.dat", "ratings.csv", "movies.csv",
    "user_artists.dat", "user_taggedartists.dat", "tags.dat", "artists.dat",
}  # fmt: skip


def _source_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p for p in path.iterdir() if p.is_file() and (p.name in SOURCE_NAMES or p.suffix in (".inter", ".item"))
    )


def _file_hash(path: Path) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path, options: dict[str, Any]) -> str:
    """A key for (source files, options): sizes, mtimes and content hashes."""
    # a folder and the one file in it are read differently (a layout vs a table): never the same key
    kind = "folder" if path.is_dir() else "file"
    parts: list[Any] = [CACHE_VERSION, kind, path.name, sorted((k, str(v)) for k, v in options.items())]
    for f in _source_files(path):
        st = f.stat()
        parts.append((f.name, st.st_size, st.st_mtime_ns, _file_hash(f)))
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()


def cache_root() -> Path:
    """Where entries live (see the module docstring); nothing is created here."""
    env = os.environ.get("TOPREC_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "toprec"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        home = None
    if home is not None and home.is_dir():
        return home / ".cache" / "toprec"
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"toprec-cache-{uid}"


def cache_dir_for(path: Path) -> Path:
    """The folder of ``path``'s entries (not created)."""
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest()
    return cache_root() / f"{path.resolve().name or 'data'}-{digest}"


def _strings(a: np.ndarray) -> np.ndarray:
    """Object arrays of strings -> fixed-width unicode (storable without pickle)."""
    if a.dtype == object:
        return np.asarray([("" if v is None else str(v)) for v in a], dtype=str)
    return a


def save(file: Path, arrays: Arrays, meta: dict[str, Any]) -> None:
    """Write one entry: ``arrays`` (object arrays of strings stored as fixed-width unicode) and ``meta``."""
    meta = {"version": CACHE_VERSION, **meta}
    with atomic_path(file, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{name: _strings(a) for name, a in arrays.items()})
    with atomic_path(file.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, default=str))


def load(file: Path, decode: Callable[[dict[str, Any], Arrays], T]) -> T | None:
    """``decode(meta, arrays)`` of the entry, or None when there is none or it cannot be read (it is then rebuilt)."""
    meta_file = file.with_suffix(".json")
    if not file.exists() or not meta_file.exists():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("version") != CACHE_VERSION:
            return None
        with np.load(file, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        return decode(meta, a)
    except Exception:  # noqa: BLE001 - only a cache: any damage (bad CRC or header, truncation, missing member)
        return None  # means the entry is ignored and rewritten


def cached(
    path: Path,
    options: dict[str, Any],
    build: Callable[[], T],
    encode: Callable[[T], tuple[Arrays, dict[str, Any]]],
    decode: Callable[[dict[str, Any], Arrays], T],
) -> tuple[T, bool]:
    """``(value, hit)``: the cached value for (path, options), or ``build()``'s, stored on a miss."""
    key = fingerprint(path, options)
    file = cache_dir_for(path) / f"dataset-{key}.npz"
    value = load(file, decode)
    if value is not None:
        return value, True
    value = build()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        save(file, *encode(value))
    except (OSError, ToprecError):  # caching is an optimisation; a read-only disk must not fail the load
        pass
    return value, False
