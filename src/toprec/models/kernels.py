"""Compiled kernels (numba) for the item-item models' two hot products; optional, with numpy/scipy fallbacks.

- :func:`sparse_dense`: ``out = H @ B`` for a CSR history ``H`` and a dense
  float32 ``B``, in column blocks of ``WIDTH`` (a block of B stays in cache
  while the rows stream over it), each output stripe accumulated over 8
  nonzeros before it is stored. Per entry the sum is the same sequence of
  float32 multiply-then-add (no FMA, no reassociation) as scipy's CSR x
  dense product, so the scores are bit for bit the fallback's, whatever the
  batch.
- :func:`gram_upper`: the upper triangle of ``X^T X`` from the CSR pairs of
  each row (cost: the sum of squared row lengths, not ``nnz * n_items``),
  in row blocks of G that stay in cache, the blocks spread over threads (the
  kernel releases the GIL). Each entry sums the users in order, so the
  result does not depend on the number of threads.

numba is the ``fast`` extra (``pip install toprec[fast]``); without it (or
with ``TOPREC_KERNELS=numpy``) :func:`available` is False and the callers
use scipy. Compiled code is cached on disk (numba's ``cache=True``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

#: columns of B per block of :func:`sparse_dense` (256 float32 x 6,807 rows = 7 MB: in L3)
WIDTH = 256
#: rows of G per block of :func:`gram_upper` (64 x 20k items x 4 bytes = 5 MB)
GRAM_ROWS = 64


def available() -> bool:
    """Whether the compiled kernels can be used (numba importable, not turned off by ``TOPREC_KERNELS=numpy``)."""
    if os.environ.get("TOPREC_KERNELS", "").lower() in ("numpy", "scipy", "off", "0"):
        return False
    return _compiled() is not None


@lru_cache(maxsize=1)
def _compiled():
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(nogil=True, cache=True, boundscheck=False)

    @jit
    def spmm(indptr, indices, data, B, out, width):  # pragma: no cover - compiled
        n_rows = indptr.shape[0] - 1
        n_cols = B.shape[1]
        for c0 in range(0, n_cols, width):
            c1 = min(n_cols, c0 + width)
            w = c1 - c0
            for r in range(n_rows):
                o = out[r, c0:c1]
                o[:] = 0.0
                jj = indptr[r]
                e = indptr[r + 1]
                while jj + 8 <= e:  # one load and store of the stripe per 8 nonzeros, the same sums in order
                    v0 = data[jj]
                    v1 = data[jj + 1]
                    v2 = data[jj + 2]
                    v3 = data[jj + 3]
                    v4 = data[jj + 4]
                    v5 = data[jj + 5]
                    v6 = data[jj + 6]
                    v7 = data[jj + 7]
                    b0 = B[indices[jj], c0:c1]
                    b1 = B[indices[jj + 1], c0:c1]
                    b2 = B[indices[jj + 2], c0:c1]
                    b3 = B[indices[jj + 3], c0:c1]
                    b4 = B[indices[jj + 4], c0:c1]
                    b5 = B[indices[jj + 5], c0:c1]
                    b6 = B[indices[jj + 6], c0:c1]
                    b7 = B[indices[jj + 7], c0:c1]
                    for c in range(w):
                        o[c] = ((((((((o[c] + v0 * b0[c]) + v1 * b1[c]) + v2 * b2[c]) + v3 * b3[c]) + v4 * b4[c])
                                  + v5 * b5[c]) + v6 * b6[c]) + v7 * b7[c])  # fmt: skip
                    jj += 8
                while jj < e:
                    v0 = data[jj]
                    b0 = B[indices[jj], c0:c1]
                    for c in range(w):
                        o[c] = o[c] + v0 * b0[c]
                    jj += 1

    @jit
    def gram_blocks(indptr, indices, data, G, blocks, rows):  # pragma: no cover - compiled
        """G[a, b] += x_a x_b for a in each block [lo, lo + rows) (blocks ascending), b >= a."""
        n_users = indptr.shape[0] - 1
        n = G.shape[0]
        pos = indptr[:-1].copy()  # each user's first nonzero not yet below the current block
        for blk in blocks:
            lo = blk * rows
            hi = min(n, lo + rows)
            for u in range(n_users):
                k = pos[u]
                e = indptr[u + 1]
                while k < e and indices[k] < lo:
                    k += 1
                while k < e and indices[k] < hi:
                    a = indices[k]
                    va = data[k]
                    row = G[a]
                    for m in range(k, e):
                        row[indices[m]] += va * data[m]
                    k += 1
                pos[u] = k

    return spmm, gram_blocks


def _csr_arrays(M: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """indptr, indices (both int64: one compiled version) and float32 data of a CSR matrix."""
    return (np.asarray(M.indptr, dtype=np.int64), np.asarray(M.indices, dtype=np.int64),
            np.asarray(M.data, dtype=np.float32))  # fmt: skip


def sparse_dense(H: sp.csr_matrix, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``H @ B`` as a new (or the given) C-contiguous float32 array; B float32, C-contiguous."""
    spmm, _ = _compiled()
    H = sp.csr_matrix(H)
    if out is None:
        out = np.empty((H.shape[0], B.shape[1]), dtype=np.float32)
    spmm(*_csr_arrays(H), np.asarray(B), out, WIDTH)
    return out


_warm = False


def warm() -> None:
    """Compile (or load from the disk cache) both kernels here: before forking, so workers do not each compile."""
    global _warm
    if not _warm and available():
        _warm = True
        sparse_dense(sp.csr_matrix(np.ones((1, 2), dtype=np.float32)), np.ones((2, 2), dtype=np.float32))
        gram_upper(sp.csr_matrix(np.ones((1, 2), dtype=np.float32)), threads=1)


def gram_upper(X: sp.csr_matrix, threads: int = 1, rows: int = GRAM_ROWS) -> np.ndarray:
    """Upper triangle of ``X^T X`` (float32, C order; entries below the diagonal are partial, to be mirrored).

    Row blocks of G are dealt round-robin to ``threads`` threads (the upper
    triangle's work shrinks down the rows); each block is written by one
    thread only.
    """
    _, gram_blocks = _compiled()
    X = sp.csr_matrix(X, dtype=np.float32)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    n = X.shape[1]
    G = np.zeros((n, n), dtype=np.float32)
    arrays = _csr_arrays(X)
    n_blocks = -(-n // rows)
    threads = max(1, min(threads, n_blocks))
    parts = [np.arange(t, n_blocks, threads, dtype=np.int64) for t in range(threads)]
    if threads == 1:
        gram_blocks(*arrays, G, parts[0], rows)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda blocks: gram_blocks(*arrays, G, blocks, rows), parts))
    return G
