"""Recommendations and the one shared batched top-k every model uses.

Scores are computed in user batches sized by a memory budget; every item in
a user's history is masked in place; the top k come from ``argpartition``
then a sort of those k, written into preallocated output arrays. There is no
Python loop over users. Ties are broken by the lower item index, so the
result for a user depends only on that user's scores — identical for any
batch size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import parallel, progress
from .io import atomic_path

DEFAULT_MEMORY_BUDGET = 512 * 2**20  # bytes of score matrix per batch
PARALLEL_MIN_USERS = 2048  # fewer users than this are scored in-process


@dataclass(frozen=True)
class Recommendations:
    """Top-k items per user, best first. ``items`` is -1 where fewer than k exist."""

    users: np.ndarray  # (n,) internal user indices (-1 = unknown user)
    items: np.ndarray  # (n, k) int32 internal item indices
    scores: np.ndarray  # (n, k) float32

    @property
    def k(self) -> int:
        return self.items.shape[1]

    def __len__(self) -> int:
        return len(self.users)

    def to_frame(self, dataset, user_ids=None) -> pd.DataFrame:
        """A ``user,item`` frame of external ids, k rows per user, best first.

        ``user_ids`` overrides the external user ids (needed for unknown users).
        """
        valid = self.items >= 0
        rows = np.repeat(np.arange(len(self.users)), self.k)[valid.ravel()]
        if user_ids is None:
            user_ids = dataset.user_ids[self.users]
        user_ids = np.asarray(user_ids)
        return pd.DataFrame({"user": user_ids[rows], "item": dataset.item_ids[self.items[valid]]})

    def write_csv(self, path: str | os.PathLike, dataset, user_ids=None) -> None:
        """Write ``user,item`` (best first) atomically: a temp file renamed into place."""
        frame = self.to_frame(dataset, user_ids)
        import pyarrow as pa
        import pyarrow.csv as pacsv

        table = pa.Table.from_pandas(frame, preserve_index=False)
        with atomic_path(path, suffix=".csv.tmp") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"user,item\n")
                pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))


def batch_size_for(n_items: int, memory_budget: int = DEFAULT_MEMORY_BUDGET, factor: int = 2) -> int:
    """Users per batch so that ``factor`` float32 score matrices fit the budget."""
    return max(1, int(memory_budget // max(1, n_items * 4 * factor)))


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix, value: float = -np.inf) -> None:
    """Set ``scores[r, j] = value`` for every stored entry (r, j) of ``exclude`` (in place)."""
    if exclude.nnz == 0:
        return
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
    scores[rows, exclude.indices] = value


def _candidates(scores: np.ndarray, k: int):
    """Columns (and their scores) that surely hold each row's top k; None if not worth it.

    The first ``G*B`` columns are split into ``G`` strided groups of ``B``
    (group j holds columns j, j+G, j+2G...). A group holding one of a row's
    top-k values has a maximum at least the k-th value, and at most k groups
    can, so the k groups with the largest maxima, plus the few leftover
    columns past ``G*B``, contain the whole top k. The group maxima are an
    elementwise max over B contiguous slices (fast, no copy) and the
    partitions then run on G and about k*B columns instead of all of them.
    """
    n, m = scores.shape
    B = max(2, int(np.sqrt(m / k)))
    G = m // B
    if G < 4 * k or m < 256:
        return None
    main = G * B
    gmax = scores[:, :main].reshape(n, B, G).max(axis=1)  # (n, G), a view reshape
    groups = np.argpartition(gmax, G - k, axis=1)[:, G - k :]  # (n, k)
    cols = (groups[:, :, None] + G * np.arange(B)[None, None, :]).reshape(n, k * B)
    if main < m:
        cols = np.concatenate([cols, np.broadcast_to(np.arange(main, m), (n, m - main))], axis=1)
    return cols, np.take_along_axis(scores, cols, axis=1)


def topk_rows(scores: np.ndarray, k: int, out_items: np.ndarray, out_scores: np.ndarray) -> None:
    """Top k of each row (best first, ties to the lower index) into preallocated arrays.

    Entries equal to -inf are treated as unavailable and reported as item -1.
    """
    n, m = scores.shape
    kk = min(k, m)
    cand = _candidates(scores, kk) if kk < m else None
    if cand is not None:
        cols, vals = cand
        sel = np.argpartition(vals, vals.shape[1] - kk, axis=1)[:, vals.shape[1] - kk :]
        part = np.take_along_axis(cols, sel, axis=1)
        part_scores = np.take_along_axis(vals, sel, axis=1)
    elif kk < m:
        part = np.argpartition(scores, m - kk, axis=1)[:, m - kk :]
        part_scores = np.take_along_axis(scores, part, axis=1)
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
        part_scores = scores.copy()
    # sort by score descending, then item index ascending (deterministic ties)
    order = np.lexsort((part, -part_scores), axis=1) if n else part
    items = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(part_scores, order, axis=1)
    _fix_boundary_ties(scores, items, top, kk)
    items = items.astype(np.int32, copy=False)
    items[~np.isfinite(top) & (top < 0)] = -1
    out_items[:, :kk] = items
    out_scores[:, :kk] = top
    if kk < k:
        out_items[:, kk:] = -1
        out_scores[:, kk:] = -np.inf


def _fix_boundary_ties(scores: np.ndarray, items: np.ndarray, top: np.ndarray, k: int) -> None:
    """Make ties at the k-th score resolve to the lowest item indices.

    ``argpartition`` picks an arbitrary subset of items tied with the k-th
    score; for reproducibility we want the lowest indices. Only rows with a
    tie crossing the boundary are recomputed (rare with real scores).
    """
    if k == 0 or k >= scores.shape[1]:
        return
    kth = top[:, k - 1]
    n_ge = (scores >= kth[:, None]).sum(axis=1)
    rows = np.flatnonzero(n_ge > k)
    if len(rows) == 0:
        return
    sub = scores[rows]
    # stable argsort of -score ranks ties by index
    order = np.argsort(-sub, axis=1, kind="stable")[:, :k]
    items[rows] = order
    top[rows] = np.take_along_axis(sub, order, axis=1)


def topk(
    score_fn: Callable[[np.ndarray, sp.csr_matrix], np.ndarray],
    users: np.ndarray,
    n_items: int,
    k: int,
    history: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    description: str = "recommend",
) -> Recommendations:
    """Batched top-k over ``users``.

    ``score_fn(users_batch, history_batch)`` returns a float32 (b, n_items)
    array the function may modify in place. ``history`` rows align with
    ``users``; ``exclude`` (also aligned) lists the items to mask.
    """
    users = np.asarray(users, dtype=np.int64)
    n = len(users)
    bs = batch_size or batch_size_for(n_items, memory_budget)
    n_workers = parallel.workers() if n >= 2 * min(bs, PARALLEL_MIN_USERS) and n >= PARALLEL_MIN_USERS else 1
    if n_workers > 1:
        bs = min(bs, -(-n // n_workers))
        out_items = parallel.shared_empty((n, k), np.int32)
        out_scores = parallel.shared_empty((n, k), np.float32)
    else:
        out_items = np.empty((n, k), dtype=np.int32)
        out_scores = np.empty((n, k), dtype=np.float32)

    with progress.task(description, total=n) as bar:

        def job(lo: int, hi: int) -> None:
            for start in range(lo, hi, bs):
                stop = min(hi, start + bs)
                scores = score_fn(users[start:stop], history[start:stop])
                scores = np.asarray(scores, dtype=np.float32)
                if exclude is not None:
                    mask_rows(scores, exclude[start:stop])
                topk_rows(scores, k, out_items[start:stop], out_scores[start:stop])
                bar.advance((stop - start) * n_workers)

        parallel.run_rows(n, job, n_workers)
    if n_workers > 1:  # copy out of shared memory
        out_items, out_scores = np.array(out_items), np.array(out_scores)
    return Recommendations(users, out_items, out_scores)
