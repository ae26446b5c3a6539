"""Membership of integer keys: ``(row, column)`` pairs as one int64 key, looked up in a sorted array.

The one vectorised "is this pair in that set" every module uses (hit
matrices, seen candidates, negative sampling, pairs of events): keys are
``row * width + column``; a sorted key array is searched with
``np.searchsorted``, the positions clipped to the array and the keys there
compared. No Python loop, no hash set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def csr_keys(matrix: sp.csr_matrix, width: int | None = None) -> np.ndarray:
    """int64 key ``row * width + column`` of every stored entry, in storage order.

    Sorted when the matrix has sorted indices. ``width`` defaults to the
    number of columns.
    """
    width = matrix.shape[1] if width is None else width
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * width + matrix.indices


def find_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(position, found)``: where each of ``keys`` is in the sorted array ``sorted_keys``, and whether it is.

    ``position`` is clipped to the array (meaningful only where ``found``);
    both have the shape of ``keys``.
    """
    keys = np.asarray(keys)
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, dtype=np.intp), np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == keys


def isin_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Boolean, shaped like ``keys``: is each key in the sorted array ``sorted_keys``."""
    return find_sorted(sorted_keys, keys)[1]


def hit_matrix(items: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """Boolean (n, k): is ``items[r, j]`` stored in row r of ``truth`` (False for padding, -1)."""
    items = np.asarray(items)
    n, k = items.shape
    if truth.shape[0] != n:
        raise ValueError(f"truth has {truth.shape[0]} rows for {n} users")
    truth = truth.tocsr()
    if not truth.has_sorted_indices:
        truth = truth.sorted_indices()
    width = max(truth.shape[1], 1)
    found = isin_sorted(csr_keys(truth, width), np.arange(n, dtype=np.int64)[:, None] * width + items)
    return found & (items >= 0)
