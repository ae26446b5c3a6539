"""The in-memory dataset every part of toprec works on.

A :class:`Dataset` holds implicit feedback events (user, item, time) with
opaque external ids mapped to contiguous internal ints, sorted by user and
then time, plus optional item side information as sparse multi-hot matrices.
It is immutable: filtering returns a new dataset over the same id maps, so a
train part and a test part of a split share one index space.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import scipy.sparse as sp

from ..errors import ToprecError

if TYPE_CHECKING:  # pandas is imported where it is used: a serving worker never loads it
    import pandas as pd


@dataclass(frozen=True)
class ItemFeature:
    """One kind of item side information (genre, director...) as multi-hot rows."""

    matrix: sp.csr_matrix  # (n_items, n_values) float32, 1 where the item has the value
    values: np.ndarray  # (n_values,) external value labels

    def of(self, item: int) -> list:
        row = self.matrix.indices[self.matrix.indptr[item] : self.matrix.indptr[item + 1]]
        return [self.values[j] for j in row]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to contiguous codes in sorted order of the values (deterministic)."""
    import pandas as pd  # on first use: a serving worker imports this module but never builds a Dataset

    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int32, copy=False), np.asarray(uniques)


def lookup(index_ids: np.ndarray, query: np.ndarray | list) -> np.ndarray:
    """Internal indices of ``query`` external ids in ``index_ids``; -1 where unknown.

    Ids compare as strings when the two sides have different dtypes (a CSV may
    parse ``"17"`` as an int on one side and a string on the other).
    """
    query = np.asarray(query)
    left, right = index_ids, query
    if left.dtype.kind != right.dtype.kind:
        left = left.astype(str)
        right = right.astype(str)
    import pandas as pd

    return pd.Index(left).get_indexer(right).astype(np.int64)


class Dataset:
    """Implicit feedback: events sorted by (user, time, item) over contiguous ids."""

    def __init__(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        user: np.ndarray,
        item: np.ndarray,
        time: np.ndarray,
        features: Mapping[str, ItemFeature] | None = None,
        titles: np.ndarray | None = None,
        name: str = "",
        summary: Mapping[str, Any] | None = None,
        _sorted: bool = False,
    ):
        user = np.asarray(user, dtype=np.int32)
        item = np.asarray(item, dtype=np.int32)
        time = np.asarray(time, dtype=np.int64)
        if not (len(user) == len(item) == len(time)):
            raise ValueError("user, item and time must have the same length")
        if not _sorted:
            order = np.lexsort((item, time, user))
            user, item, time = user[order], item[order], time[order]
        self.user_ids = _readonly(np.asarray(user_ids))
        self.item_ids = _readonly(np.asarray(item_ids))
        self.user = _readonly(user)
        self.item = _readonly(item)
        self.time = _readonly(time)
        self.features: dict[str, ItemFeature] = dict(features or {})
        self.titles = None if titles is None else _readonly(np.asarray(titles, dtype=object))
        self.name = name
        self.summary: dict[str, Any] = dict(summary or {})

    # ------------------------------------------------------------------ build
    @classmethod
    def from_events(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        times: np.ndarray | None = None,
        *,
        features: Mapping[str, pd.DataFrame] | None = None,
        titles: pd.DataFrame | None = None,
        name: str = "",
        summary: Mapping[str, Any] | None = None,
    ) -> "Dataset":
        """Build from external ids. Repeated (user, item) pairs keep their earliest time.

        ``features`` maps a name (``genres``...) to a frame with columns
        ``item, value``; ``titles`` is a frame with ``item, title``. Side rows
        for items without events are ignored (and counted in the summary).
        """
        users = np.asarray(users)
        items = np.asarray(items)
        n_raw = len(users)
        if times is None:
            times = np.arange(n_raw, dtype=np.int64)
        times = np.asarray(times)
        if times.dtype.kind == "f":
            times = np.floor(times).astype(np.int64)
        else:
            times = times.astype(np.int64, copy=False)
        u, user_ids = _factorize(users)
        i, item_ids = _factorize(items)
        order = _event_order(u, times, i)
        if order is not None:
            u, i, times = u[order], i[order], times[order]
        # keep the first (earliest) occurrence of each (user, item) pair
        key = u.astype(np.int64) * len(item_ids) + i
        n_dup = 0
        if len(key) > 1 and (np.diff(np.sort(key)) == 0).any():
            _, first = np.unique(key, return_index=True)  # stable: first = earliest
            n_dup = n_raw - len(first)
            keep = np.sort(first)
            u, i, times = u[keep], i[keep], times[keep]
        summary = dict(summary or {})
        # events_read: rows read from the file, those below --min-rating included
        summary.update({"events_read": int(n_raw + summary.get("filtered_by_rating", 0)),
                        "duplicates_dropped": int(n_dup)})  # fmt: skip
        feats: dict[str, ItemFeature] = {}
        for fname, frame in (features or {}).items():
            feat, n_unknown = _build_feature(item_ids, frame)
            if feat is not None:
                feats[fname] = feat
            if n_unknown:
                summary[f"{fname}_rows_unknown_item"] = int(n_unknown)
        title_arr = None
        if titles is not None and len(titles):
            idx = lookup(item_ids, titles["item"].to_numpy())
            ok = idx >= 0
            title_arr = np.full(len(item_ids), None, dtype=object)
            title_arr[idx[ok]] = titles["title"].to_numpy()[ok]
        ds = cls(user_ids, item_ids, u, i, times, feats, title_arr, name, summary, _sorted=True)
        ds.summary.update({"users": ds.n_users, "items": ds.n_items, "events": ds.n_events})
        return ds

    @classmethod
    def load(cls, path: str | os.PathLike, *, cache: bool = False, **options: Any) -> "Dataset":
        """Load a dataset folder or file; the layout is detected (``options``: see :func:`toprec.data.loaders.read`).

        ``cache=True`` keeps a binary copy of the parsed result (see
        :mod:`toprec.data.cache`) and reuses it while the source files are
        unchanged; ``summary["cache"]`` then says ``hit`` or ``miss``.
        """
        import inspect

        from . import loaders  # parsing needs pyarrow: imported on the first load, not with toprec

        path = Path(path)
        # every read option, defaults included: the cache key does not depend on which ones were spelled out
        bound = inspect.signature(loaders.read).bind(path, **options)
        bound.apply_defaults()
        options = {name: value for name, value in bound.arguments.items() if name != "path"}

        def build() -> Dataset:
            raw = loaders.read(path, **options)
            return cls.from_events(raw.users, raw.items, raw.times, features=raw.features, titles=raw.titles,
                                   name=raw.name, summary=raw.summary)  # fmt: skip

        if not cache:
            return build()
        from . import cache as _cache

        if not path.exists():
            raise ToprecError(f"{path}: no such file or folder")
        ds, hit = _cache.cached(path, options, build, _to_arrays, _from_arrays)
        ds.summary["cache"] = "hit" if hit else "miss"
        return ds

    # -------------------------------------------------------------- shapes
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_events(self) -> int:
        return len(self.user)

    @property
    def users(self) -> np.ndarray:
        """Internal indices of all users (``np.arange(n_users)``)."""
        return np.arange(self.n_users, dtype=np.int64)

    @property
    def density(self) -> float:
        return self.n_events / max(1, self.n_users * self.n_items)

    @cached_property
    def user_ptr(self) -> np.ndarray:
        """CSR-style pointer: user u's events (in time order) are ``[ptr[u], ptr[u+1])``."""
        counts = np.bincount(self.user, minlength=self.n_users)
        ptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return _readonly(ptr)

    @cached_property
    def user_counts(self) -> np.ndarray:
        return _readonly(np.diff(self.user_ptr))

    @cached_property
    def item_counts(self) -> np.ndarray:
        return _readonly(np.bincount(self.item, minlength=self.n_items))

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """Users x items CSR matrix of float32 ones, column indices sorted."""
        m = sp.csr_matrix(
            (np.ones(self.n_events, dtype=np.float32), self.item.astype(np.int32), self.user_ptr.astype(np.int64)),
            shape=(self.n_users, self.n_items),
        )
        m.sort_indices()
        m.indices.flags.writeable = False
        m.data.flags.writeable = False
        return m

    # ------------------------------------------------------------- derive
    def filter(self, mask: np.ndarray, name: str | None = None) -> "Dataset":
        """A new dataset with the events where ``mask`` is true, over the same id maps."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_events,):
            raise ValueError("mask must have one entry per event")
        return Dataset(
            self.user_ids,
            self.item_ids,
            self.user[mask],
            self.item[mask],
            self.time[mask],
            self.features,
            self.titles,
            self.name if name is None else name,
            {},
            _sorted=True,
        )

    def user_index(self, ids) -> np.ndarray:
        """Internal indices of external user ids (-1 for unknown users)."""
        return lookup(self.user_ids, ids)

    def item_index(self, ids) -> np.ndarray:
        """Internal indices of external item ids (-1 for unknown items)."""
        return lookup(self.item_ids, ids)

    def stats(self) -> dict[str, Any]:
        """Counts, density and per-user / per-item quantiles."""
        q = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
        uc = self.user_counts
        ic = self.item_counts
        out: dict[str, Any] = {
            "users": self.n_users,
            "items": self.n_items,
            "events": self.n_events,
            "density": self.density,
            "per_user": {f"q{int(p * 100)}": float(v) for p, v in zip(q, np.quantile(uc, q))} if len(uc) else {},
            "per_item": {f"q{int(p * 100)}": float(v) for p, v in zip(q, np.quantile(ic, q))} if len(ic) else {},
            "mean_per_user": float(uc.mean()) if len(uc) else 0.0,
            "mean_per_item": float(ic.mean()) if len(ic) else 0.0,
        }
        if self.n_events:
            out["time_min"] = int(self.time.min())
            out["time_max"] = int(self.time.max())
        for fname, feat in self.features.items():
            covered = int((np.diff(feat.matrix.indptr) > 0).sum())
            out[f"{fname}_coverage"] = covered / max(1, self.n_items)
        if self.titles is not None:
            out["titles_coverage"] = float(np.mean([t is not None for t in self.titles]))
        for key in ("events_read", "duplicates_dropped", "filtered_by_rating", "order"):
            if key in self.summary:
                out[key] = self.summary[key]
        return out

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, users={self.n_users:,}, items={self.n_items:,}, "
            f"events={self.n_events:,}, features={sorted(self.features)})"
        )


def _event_order(u: np.ndarray, t: np.ndarray, i: np.ndarray) -> np.ndarray | None:
    """Permutation sorting events by (user, time, item); None if already sorted.

    Files are usually written in that order already, so the O(n) check saves
    the sort; otherwise one argsort of a packed int64 key when the ranges fit,
    else a lexsort.
    """
    n = len(u)
    if n < 2:
        return None
    du = np.diff(u)
    if not (du < 0).any():
        same = du == 0
        dt = np.diff(t)
        if not (dt[same] < 0).any():
            tie = same & (dt == 0)
            if not (np.diff(i)[tie] < 0).any():
                return None
    t0 = t - t.min()
    n_t = int(t0.max()) + 1
    n_i = int(i.max()) + 1
    if (int(u.max()) + 1) * n_t * n_i < 2**62:
        key = (u.astype(np.int64) * n_t + t0) * n_i + i
        return np.argsort(key, kind="stable")
    return np.lexsort((i, t, u))


def _build_feature(item_ids: np.ndarray, frame: pd.DataFrame) -> tuple[ItemFeature | None, int]:
    if frame is None or not len(frame):
        return None, 0
    frame = frame.dropna()
    idx = lookup(item_ids, frame["item"].to_numpy())
    ok = idx >= 0
    n_unknown = int((~ok).sum())
    if not ok.any():
        return None, n_unknown
    values = frame["value"].to_numpy()[ok]
    import pandas as pd

    codes, uniques = pd.factorize(values.astype(str), sort=True)
    m = sp.csr_matrix(
        (np.ones(ok.sum(), dtype=np.float32), (idx[ok], codes)),
        shape=(len(item_ids), len(uniques)),
    )
    m.data[:] = 1.0  # an (item, value) pair listed twice is still one
    m.sum_duplicates()
    m.data[:] = 1.0
    return ItemFeature(m, np.asarray(uniques)), n_unknown


# ------------------------------------------------------------- the cache's form
def _to_arrays(ds: Dataset) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata :mod:`toprec.data.cache` stores for ``ds`` (no pickled objects)."""
    arrays: dict[str, np.ndarray] = {
        "user_ids": ds.user_ids,
        "item_ids": ds.item_ids,
        "user": ds.user,
        "item": ds.item,
        "time": ds.time,
        "matrix_indices": ds.matrix.indices,  # column indices sorted within each user: the CSR is ready on load
    }
    if ds.titles is not None:
        arrays["titles"] = ds.titles
        arrays["titles_mask"] = np.asarray([t is not None for t in ds.titles])
    for name, feat in ds.features.items():
        m = feat.matrix
        arrays[f"feat.{name}.indptr"] = m.indptr
        arrays[f"feat.{name}.indices"] = m.indices
        arrays[f"feat.{name}.values"] = feat.values
    meta = {
        "name": ds.name,
        "summary": ds.summary,
        "features": sorted(ds.features),
        "id_object": {"user": ds.user_ids.dtype == object, "item": ds.item_ids.dtype == object},
    }
    return arrays, meta


def _from_arrays(meta: dict[str, Any], a: dict[str, np.ndarray]) -> Dataset:
    """The dataset :func:`_to_arrays` stored (strings come back as fixed-width unicode: objects again here)."""
    user_ids, item_ids = a["user_ids"], a["item_ids"]
    if meta["id_object"]["user"]:
        user_ids = user_ids.astype(object)
    if meta["id_object"]["item"]:
        item_ids = item_ids.astype(object)
    titles = None
    if "titles" in a:
        titles = a["titles"].astype(object)
        titles[~a["titles_mask"]] = None
    feats = {}
    for name in meta["features"]:
        values = a[f"feat.{name}.values"].astype(object)
        indices = a[f"feat.{name}.indices"]
        m = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, a[f"feat.{name}.indptr"]),
            shape=(len(item_ids), len(values)),
        )
        feats[name] = ItemFeature(m, values)
    ds = Dataset(
        user_ids, item_ids, a["user"], a["item"], a["time"], feats, titles, meta["name"], meta["summary"], _sorted=True
    )
    indices = a["matrix_indices"]
    if len(indices) == ds.n_events:
        m = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, ds.user_ptr.astype(np.int64)),
            shape=(ds.n_users, ds.n_items),
        )
        m.has_sorted_indices = True
        m.indices.flags.writeable = False
        m.data.flags.writeable = False
        ds.__dict__["matrix"] = m  # the cached_property's slot
    return ds
