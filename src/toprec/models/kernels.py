"""Compiled kernels (numba) for the item-item models' hot products and ranking; optional, with numpy/scipy fallbacks.

- :func:`sparse_dense`: ``out = H @ B`` for a CSR history ``H`` and a dense
  float32 ``B``, in column tiles of ``WIDTH`` (a compile-time constant, so the
  inner loop is a fixed run of vector adds) and, within a tile, item blocks of
  ``ITEM_BLOCK`` rows of B (``ITEM_BLOCK x WIDTH`` floats, 512 KB, stay in the
  core's L2 while every row of the batch streams over them: each nonzero's
  stripe of B comes from L2, not from L3 or memory). A row's nonzeros are
  taken in stored order, block after block, each output stripe accumulated
  over up to 8 nonzeros between its load and store. Per entry the sum is the
  same sequence of float32 multiply-then-add (no FMA, no reassociation; a
  value of 1 multiplies exactly, so 0/1 histories skip the multiply) as
  scipy's CSR x dense product, so the scores are bit for bit the fallback's,
  whatever the batch. Histories with unsorted indices are taken as one block
  (the stored order is kept).
- :func:`recommend_dense`: the whole host ``recommend`` of an item-item model
  (scores ``H @ B``, then the shared top-k's rule: NaN/+inf check, popularity
  for empty histories, seen items masked, top k by score then lower item) in
  one compiled call per block of users, blocks spread over threads (the kernel
  releases the GIL). The score block stays in cache-sized per-thread buffers
  and the top k is a selection in one pass over each row, with the ties of
  :func:`toprec.recommend.topk_rows`: the same lists and scores, bit for bit,
  as the unfused path, for any block size or thread count.
- :func:`gram_upper`: the upper triangle of ``X^T X`` from the CSR pairs of
  each row (cost: the sum of squared row lengths, not ``nnz * n_items``),
  in row blocks of G that stay in cache, the blocks spread over threads (the
  kernel releases the GIL). Each entry sums the users in order, so the
  result does not depend on the number of threads.

numba is the ``fast`` extra (``pip install toprec[fast]``); without it (or
with ``TOPREC_KERNELS=numpy``) :func:`available` is False and the callers
use scipy. ``TOPREC_KERNELS=unfused`` keeps the previous scoring kernel (one
column stripe of 256 at a time, no item blocks) and the unfused top-k: for
benchmarks against it. Compiled code is cached on disk (numba's ``cache=True``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

#: columns of B per tile of :func:`sparse_dense` (compiled in: the inner loop is WIDTH / 16 vector adds)
WIDTH = 128
#: rows of B per item block within a tile (1,024 x 128 float32 = 512 KB: in a core's L2)
ITEM_BLOCK = 1024
#: users per block of :func:`recommend_dense` (2,048 x 6,807 float32 = 56 MB of scores per thread at most)
BLOCK_ROWS = 2048
#: columns per stripe of the previous kernel (``TOPREC_KERNELS=unfused``)
OLD_WIDTH = 256
#: rows of G per block of :func:`gram_upper` (64 x 20k items x 4 bytes = 5 MB)
GRAM_ROWS = 64


def switched_off() -> bool:
    """``TOPREC_KERNELS=numpy`` (or scipy / off / 0): every compiled kernel is off, the scipy paths run."""
    return os.environ.get("TOPREC_KERNELS", "").lower() in ("numpy", "scipy", "off", "0")


def available() -> bool:
    """Whether the compiled kernels can be used (numba importable, not turned off by ``TOPREC_KERNELS=numpy``)."""
    return not switched_off() and _compiled() is not None


def fused() -> bool:
    """Whether the tiled scoring kernel and the fused top-k are used (the kernels available, and not
    ``TOPREC_KERNELS=unfused``, which keeps the previous kernel for comparison)."""
    return available() and os.environ.get("TOPREC_KERNELS", "").lower() != "unfused"


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

    W = WIDTH  # a closure constant: compiled in

    @jit
    def tile_rows(indptr, indices, data, unit, B, out, r0, r1, c0, pos, k1, first):  # pragma: no cover - compiled
        """out[r - r0, c0:c0+W] += the nonzeros of rows r0..r1 from pos[r - r0] on with item < k1 (in order)."""
        c1 = c0 + W
        for r in range(r0, r1):
            o = out[r - r0, c0:c1]
            if first:
                for c in range(W):
                    o[c] = np.float32(0.0)
            jj = pos[r - r0]
            e = indptr[r + 1]
            if unit:  # 1 * b == b exactly: the same sums without the multiply
                while jj + 8 <= e and indices[jj + 7] < k1:
                    b0 = B[indices[jj], c0:c1]
                    b1 = B[indices[jj + 1], c0:c1]
                    b2 = B[indices[jj + 2], c0:c1]
                    b3 = B[indices[jj + 3], c0:c1]
                    b4 = B[indices[jj + 4], c0:c1]
                    b5 = B[indices[jj + 5], c0:c1]
                    b6 = B[indices[jj + 6], c0:c1]
                    b7 = B[indices[jj + 7], c0:c1]
                    for c in range(W):
                        o[c] = (((((((o[c] + b0[c]) + b1[c]) + b2[c]) + b3[c]) + b4[c]) + b5[c]) + b6[c]) + b7[c]
                    jj += 8
                if jj + 4 <= e and indices[jj + 3] < k1:  # the rest: 4, 2, 1 (fewer stripe loads and stores)
                    b0 = B[indices[jj], c0:c1]
                    b1 = B[indices[jj + 1], c0:c1]
                    b2 = B[indices[jj + 2], c0:c1]
                    b3 = B[indices[jj + 3], c0:c1]
                    for c in range(W):
                        o[c] = (((o[c] + b0[c]) + b1[c]) + b2[c]) + b3[c]
                    jj += 4
                if jj + 2 <= e and indices[jj + 1] < k1:
                    b0 = B[indices[jj], c0:c1]
                    b1 = B[indices[jj + 1], c0:c1]
                    for c in range(W):
                        o[c] = (o[c] + b0[c]) + b1[c]
                    jj += 2
                if jj < e and indices[jj] < k1:
                    b0 = B[indices[jj], c0:c1]
                    for c in range(W):
                        o[c] = o[c] + b0[c]
                    jj += 1
            else:
                while jj + 8 <= e and indices[jj + 7] < k1:
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
                    for c in range(W):
                        o[c] = ((((((((o[c] + v0 * b0[c]) + v1 * b1[c]) + v2 * b2[c]) + v3 * b3[c]) + v4 * b4[c])
                                  + v5 * b5[c]) + v6 * b6[c]) + v7 * b7[c])  # fmt: skip
                    jj += 8
                while jj < e and indices[jj] < k1:
                    v0 = data[jj]
                    b0 = B[indices[jj], c0:c1]
                    for c in range(W):
                        o[c] = o[c] + v0 * b0[c]
                    jj += 1
            pos[r - r0] = jj

    @jit
    def block_scores(indptr, indices, data, unit, B, out, r0, r1, item_block):  # pragma: no cover - compiled
        """out[:r1 - r0] = rows r0..r1 of H @ B: column tiles of W, item blocks of ``item_block`` within each
        (indices sorted; pass B.shape[0] for one block), the columns past the last full tile at the end."""
        n_items, n_cols = B.shape
        full = n_cols // W * W
        pos = np.empty(r1 - r0, np.int64)
        touched = np.float32(0.0)
        for c0 in range(0, full, W):
            for r in range(r0, r1):
                pos[r - r0] = indptr[r]
            for k0 in range(0, max(n_items, 1), item_block):
                # bring the block of B into cache in one strided pass first (independent loads the
                # prefetcher follows) rather than by the rows' scattered first touches (10% faster)
                for i in range(k0, min(n_items, k0 + item_block)):
                    b = B[i, c0 : c0 + W]
                    for q in range(0, W, 16):  # one read per 64-byte line
                        touched += b[q]
                tile_rows(indptr, indices, data, unit, B, out, r0, r1, c0, pos, min(n_items, k0 + item_block),
                          k0 == 0)  # fmt: skip
        if full < n_cols:
            w = n_cols - full
            for r in range(r0, r1):
                o = out[r - r0, full:n_cols]
                o[:] = 0.0
                for jj in range(indptr[r], indptr[r + 1]):
                    v0 = data[jj]
                    b0 = B[indices[jj], full:n_cols]
                    for c in range(w):
                        o[c] = o[c] + v0 * b0[c]
        return touched  # (returned so that the touching pass is kept)

    @jit
    def rank_rows(buf, r0, r1, hist_indptr, popularity, has_pop, ex_indptr, ex_indices, has_ex, k,
                  out_items, out_scores):  # pragma: no cover - compiled
        """The shared top-k's rule on rows r0..r1 of the scores (in buf[:r1 - r0], modified): 1 if a raw score is
        NaN, else 2 if one is +inf (the lists are then incomplete: the caller raises), else 0."""
        m = buf.shape[1]
        inf = np.float32(np.inf)
        bad = 0
        for r in range(r0, r1):
            row = buf[r - r0]
            nan_n = 0
            inf_n = 0
            for j in range(m):  # the check first, on the raw scores (as topk's check_finite)
                s = row[j]
                nan_n += s != s
                inf_n += s == inf
            if nan_n:
                return 1
            if inf_n:
                bad = 2  # unless a NaN comes later (the batch's max is NaN then)
            if has_pop and hist_indptr[r + 1] == hist_indptr[r]:  # no history: popularity
                for j in range(m):
                    row[j] = popularity[j]
            if has_ex:
                for jj in range(ex_indptr[r], ex_indptr[r + 1]):
                    row[ex_indices[jj]] = -inf
            it = out_items[r]
            sc = out_scores[r]
            for q in range(k):
                it[q] = -1
                sc[q] = -inf
            # one pass, the list kept sorted by (score desc, item asc): a later item enters only when
            # strictly above the k-th, and goes after the equal scores already in (lower items)
            thr = -inf  # -inf never enters: such items stay -1, as topk_rows
            for j in range(m):
                s = row[j]
                if s > thr:
                    q = k - 1
                    while q > 0 and sc[q - 1] < s:
                        sc[q] = sc[q - 1]
                        it[q] = it[q - 1]
                        q -= 1
                    sc[q] = s
                    it[q] = j
                    thr = sc[k - 1]
        return bad

    return spmm, gram_blocks, block_scores, rank_rows


def _csr_arrays(M: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """indptr, indices (both int64: one compiled version) and float32 data of a CSR matrix."""
    return (np.asarray(M.indptr, dtype=np.int64), np.asarray(M.indices, dtype=np.int64),
            np.asarray(M.data, dtype=np.float32))  # fmt: skip


def sparse_dense(H: sp.csr_matrix, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``H @ B`` as a new (or the given) C-contiguous float32 array; B float32, C-contiguous."""
    spmm, _, block_scores, _ = _compiled()
    H = sp.csr_matrix(H)
    if out is None:
        out = np.empty((H.shape[0], B.shape[1]), dtype=np.float32)
    if not fused():
        spmm(*_csr_arrays(H), np.asarray(B), out, OLD_WIDTH)
        return out
    indptr, indices, data = _csr_arrays(H)
    block_scores(indptr, indices, data, _unit(data), np.asarray(B), out, 0, H.shape[0], _item_block(H, B))
    return out


def _unit(data: np.ndarray) -> bool:
    """Every stored value is 1 (a 0/1 history): the kernels skip the multiply (1 * b == b exactly)."""
    return bool(len(data) == 0 or (data.min() == 1.0 and data.max() == 1.0))


def _item_block(H: sp.csr_matrix, B: np.ndarray) -> int:
    """Rows of B per item block: ITEM_BLOCK for sorted indices; unsorted ones are summed in their stored
    order, in one block (the kernel walks each row's nonzeros until an item past the block)."""
    return ITEM_BLOCK if H.has_sorted_indices else max(1, B.shape[0])


_warm = False


def warm() -> None:
    """Compile (or load from the disk cache) both kernels here: before forking, so workers do not each compile."""
    global _warm
    if not _warm and available():
        _warm = True
        one = sp.csr_matrix(np.ones((1, 2), dtype=np.float32))
        sparse_dense(one, np.ones((2, 2), dtype=np.float32))
        if fused():
            recommend_dense(one, np.ones((2, 2), dtype=np.float32), 1, one, np.ones(2, np.float32), threads=1)
        gram_upper(one, threads=1)


def recommend_dense(history: sp.csr_matrix, B: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                    popularity: np.ndarray | None, threads: int = 1, block_rows: int = BLOCK_ROWS,
                    advance=None) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """Top k of ``history @ B`` per row under the shared top-k's rule; returns ``(items, scores, bad)``.

    ``items`` (n, k) int32 (-1 past the last finite score), ``scores`` (n, k)
    float32; ``bad`` is 0, or 1 / 2 when a raw score was NaN / +inf (then the
    lists are not all filled: the caller raises). ``exclude`` rows (aligned)
    are masked, rows of ``history`` with no nonzero get ``popularity`` (when
    given). Rows go in blocks of ``block_rows`` through one compiled call
    each (scores into a per-thread buffer, then ranked), the blocks split over
    ``threads`` threads as contiguous ranges. Each row is computed alone, the
    same way whatever the block, so neither the block size nor the number of
    threads changes a bit. ``advance(n)`` (optional) is called after each block.
    """
    _, _, block_scores, rank_rows = _compiled()
    H = sp.csr_matrix(history, dtype=np.float32)
    B = np.asarray(B)
    n, m = H.shape[0], B.shape[1]
    indptr, indices, data = _csr_arrays(H)
    unit = _unit(data)
    item_block = _item_block(H, B)
    has_ex = exclude is not None
    if has_ex:
        E = sp.csr_matrix(exclude)
        ex_indptr, ex_indices = np.asarray(E.indptr, dtype=np.int64), np.asarray(E.indices, dtype=np.int64)
    else:
        ex_indptr = ex_indices = np.zeros(1, dtype=np.int64)
    has_pop = popularity is not None
    pop = np.ascontiguousarray(popularity, dtype=np.float32) if has_pop else np.zeros(m, dtype=np.float32)
    items = np.empty((n, k), dtype=np.int32)
    scores = np.empty((n, k), dtype=np.float32)
    block_rows = max(1, int(block_rows))
    threads = max(1, min(int(threads), -(-n // block_rows)))
    status = [0] * threads

    def part(t: int) -> None:
        lo, hi = n * t // threads, n * (t + 1) // threads
        buf = np.empty((min(block_rows, max(1, hi - lo)), m), dtype=np.float32)
        for r0 in range(lo, hi, block_rows):
            r1 = min(hi, r0 + block_rows)
            block_scores(indptr, indices, data, unit, B, buf, r0, r1, item_block)
            bad = rank_rows(buf, r0, r1, indptr, pop, has_pop, ex_indptr, ex_indices, has_ex, k, items, scores)
            if bad:
                status[t] = bad
                return
            if advance is not None:
                advance(r1 - r0)

    if threads == 1:
        part(0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, range(threads)))
    bad = 1 if 1 in status else max(status)
    return items, scores, bad


def gram_upper(X: sp.csr_matrix, threads: int = 1, rows: int = GRAM_ROWS) -> np.ndarray:
    """Upper triangle of ``X^T X`` (float32, C order; entries below the diagonal are partial, to be mirrored).

    Row blocks of G are dealt round-robin to ``threads`` threads (the upper
    triangle's work shrinks down the rows); each block is written by one
    thread only.
    """
    _, gram_blocks, _, _ = _compiled()
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
