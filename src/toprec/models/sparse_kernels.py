"""Compiled top-k of sparse item-item scores (numba): ``history @ B`` with B sparse, masked and ranked per user.

SANSA's scores for a user are ``x_u B`` with a sparse history row ``x_u``
and a sparse B: a few thousand stored scores out of the whole catalogue.
The scipy path (``recommend.rank_sparse_block``) builds the sparse product
of a user block, subtracts the seen entries, pads the positive scores into
a dense block and ranks it: several passes over every stored score, and a
Python-level pipeline per block. Here one compiled pass does it all per
user, in a dense per-thread scratch row of ``n_items`` float32:

- accumulate ``v * B[j, c]`` into ``acc[c]`` for the user's items ``j`` in
  order (the same float32 multiply-then-add sequence as scipy's CSR x CSR
  product, so every score is bit for bit the scipy path's), remembering the
  columns touched;
- set the excluded (seen) items to -inf;
- if at least k touched, unmasked scores are positive, the top k is among
  them (every other item scores 0 or less): a k-heap over the touched
  columns. Otherwise (short histories, small catalogues) the whole row is
  scanned, untouched items scoring 0, so the lists are those of the dense
  scores;
- users with an empty history get ``popularity`` (seen items masked), as
  :func:`toprec.recommend.seen_and_cold`;
- the touched entries are reset to 0 for the next user.

The order is the shared top-k's (:func:`toprec.recommend.topk_rows`): score
descending, ties to the lower item; -1 / -inf past the last available
item. A user's list depends only on that user's row, so the result is the
same for any batch size and any number of threads. Rows are dealt to threads
in chunks (the kernel releases the GIL), each call with its own scratch.

numba is the ``fast`` extra; without it (or with ``TOPREC_KERNELS=numpy``)
:func:`available` is False and SANSA ranks with the scipy path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ..recommend import topk_rows

#: rows of one kernel call (each call allocates its scratch: 29 bytes an item)
CHUNK_ROWS = 4096


def available() -> bool:
    """Whether the compiled kernel can be used (numba importable, not turned off by ``TOPREC_KERNELS=numpy``)."""
    from .kernels import switched_off

    return not switched_off() and _compiled() is not None


@lru_cache(maxsize=1)
def _compiled():
    try:
        import numba
    except ImportError:
        return None
    # one self-contained function: numba's disk cache misses every time for a function that calls other
    # jitted functions of the enclosing scope (their pickled closure cells differ between processes)
    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def rank_rows(hp, hj, hx, bp, bj, bx, ep, ej, pop, use_pop, pop_items, pop_scores, lo, hi_row, k,
                  out_items, out_scores):  # pragma: no cover - compiled
        """Rows [lo, hi_row) of the history; writes out_*[r - lo]. Returns (max score, any NaN)."""
        n = bp.shape[0] - 1
        acc = np.zeros(n, dtype=np.float32)
        mark = np.zeros(n, dtype=np.uint8)  # 1: in touched (the product or the excluded items)
        touched = np.empty(n, dtype=np.int64)
        vals = np.empty(n, dtype=np.float32)  # the touched scores, gathered (masked: -inf)
        cand_s = np.empty(n, dtype=np.float32)  # the candidates of the top k
        cand_c = np.empty(n, dtype=np.int64)
        hs = np.empty(k, dtype=np.float32)  # a k-heap, root = the worst kept (lower score, or higher item)
        hc = np.empty(k, dtype=np.int64)
        peak = -np.inf
        nan = False
        for r in range(lo, hi_row):
            o = r - lo
            cold = hp[r] == hp[r + 1]
            if cold and use_pop and ep[r] == ep[r + 1]:  # popularity, nothing to mask: the precomputed list
                for p in range(k):
                    out_items[o, p] = pop_items[p]
                    out_scores[o, p] = pop_scores[p]
                continue
            t = 0
            for jj in range(hp[r], hp[r + 1]):  # x_u B: scipy's order of float32 multiply-then-add
                j = hj[jj]
                v = hx[jj]
                for kk in range(bp[j], bp[j + 1]):
                    c = bj[kk]
                    if mark[c] == 0:
                        mark[c] = 1
                        touched[t] = c
                        t += 1
                    acc[c] += v * bx[kk]
            for ee in range(ep[r], ep[r + 1]):  # the excluded items: their raw score counts for the peak
                c = ej[ee]
                s = acc[c]
                if s != s:
                    nan = True
                elif s > peak:
                    peak = s
                if mark[c] == 0:
                    mark[c] = 1
                    touched[t] = c
                    t += 1
                acc[c] = -np.inf
            npos = 0
            for q in range(t):  # gather the touched scores, count the positives, reset the scratch
                c = touched[q]
                s = acc[c]
                vals[q] = s
                acc[c] = 0.0
                mark[c] = 0
                if s > 0:
                    npos += 1
                if s != s:
                    nan = True
                elif s > peak:  # masked entries are -inf here: their raw scores were counted above
                    peak = s
            m = 0
            if npos >= k and not (cold and use_pop):  # the top k is among the positive touched scores
                for q in range(t):
                    if vals[q] > 0:
                        cand_s[m] = vals[q]
                        cand_c[m] = touched[q]
                        m += 1
            else:  # every item: untouched ones score 0 (popularity for an empty history); masked: -inf
                for q in range(t):
                    acc[touched[q]] = vals[q]
                for c in range(n):
                    s = acc[c]
                    if s == -np.inf:
                        continue
                    cand_s[m] = pop[c] if cold and use_pop else s
                    cand_c[m] = c
                    m += 1
                for q in range(t):
                    acc[touched[q]] = 0.0
            size = 0
            for q in range(m):
                s = cand_s[q]
                c = cand_c[q]
                if size < k:  # sift up
                    p = size
                    size += 1
                    while p > 0:
                        a = (p - 1) >> 1
                        if s < hs[a] or (s == hs[a] and c > hc[a]):
                            hs[p] = hs[a]
                            hc[p] = hc[a]
                            p = a
                        else:
                            break
                    hs[p] = s
                    hc[p] = c
                    continue
                if s < hs[0] or (s == hs[0] and c > hc[0]):
                    continue  # not better than the worst kept (the common case)
                p = 0
                while True:  # replace the root, sift down
                    a = 2 * p + 1
                    if a >= size:
                        break
                    b = a + 1
                    if b < size and (hs[b] < hs[a] or (hs[b] == hs[a] and hc[b] > hc[a])):
                        a = b
                    if hs[a] < s or (hs[a] == s and hc[a] > c):
                        hs[p] = hs[a]
                        hc[p] = hc[a]
                        p = a
                    else:
                        break
                hs[p] = s
                hc[p] = c
            for p in range(size, k):
                out_items[o, p] = -1
                out_scores[o, p] = -np.inf
            while size > 0:  # pop the worst into the last free place: best first
                size -= 1
                out_items[o, size] = hc[0]
                out_scores[o, size] = hs[0]
                s = hs[size]
                c = hc[size]
                p = 0
                while True:
                    a = 2 * p + 1
                    if a >= size:
                        break
                    b = a + 1
                    if b < size and (hs[b] < hs[a] or (hs[b] == hs[a] and hc[b] > hc[a])):
                        a = b
                    if hs[a] < s or (hs[a] == s and hc[a] > c):
                        hs[p] = hs[a]
                        hc[p] = hc[a]
                        p = a
                    else:
                        break
                if size > 0:
                    hs[p] = s
                    hc[p] = c
        return peak, nan

    return rank_rows


def _arrays(M: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """indptr (int64), indices (int32: items < 2**31) and float32 data of a CSR matrix: one compiled version,
    no copy of a float32 matrix with int32 indices (scipy's usual)."""
    return (np.asarray(M.indptr, dtype=np.int64), np.asarray(M.indices, dtype=np.int32),
            np.asarray(M.data, dtype=np.float32))  # fmt: skip


def rank_sparse_product(history: sp.csr_matrix, B: sp.csr_matrix, k: int, exclude: sp.csr_matrix | None = None,
                        popularity: np.ndarray | None = None, out_items: np.ndarray | None = None,
                        out_scores: np.ndarray | None = None, threads: int = 1, chunk: int = CHUNK_ROWS,
                        on_chunk=None) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """Top k of each row of ``history @ B`` (seen = ``exclude`` masked; empty histories: ``popularity``).

    Returns ``(items, scores, peak)``: int32 / float32 (n, k) arrays (the
    given ``out_*`` when passed), and the largest score computed (NaN when
    any was NaN) for :func:`toprec.recommend.check_finite`. ``on_chunk(rows)``
    is called from this thread as chunks finish (progress).
    """
    rank_rows = _compiled()
    H = sp.csr_matrix(history)
    B = sp.csr_matrix(B)
    n, m = H.shape
    if B.shape != (m, m):
        raise ValueError(f"B must be ({m}, {m}), got {B.shape}")
    if exclude is None:
        E = sp.csr_matrix((n, m), dtype=np.float32)
    else:
        E = sp.csr_matrix(exclude)
        if E.shape != (n, m):
            raise ValueError(f"exclude must be ({n}, {m}), got {E.shape}")
    if out_items is None:
        out_items = np.empty((n, k), dtype=np.int32)
    if out_scores is None:
        out_scores = np.empty((n, k), dtype=np.float32)
    if out_items.dtype != np.int32 or out_scores.dtype != np.float32 or not (
            out_items.flags.c_contiguous and out_scores.flags.c_contiguous):
        raise ValueError("out_items / out_scores must be C-contiguous int32 / float32 (n, k) arrays")
    use_pop = popularity is not None
    pop = np.asarray(popularity if use_pop else np.zeros(m), dtype=np.float32)
    if use_pop:
        pop_items, pop_scores = topk_rows(pop[None, :].copy(), k)
        pop_items, pop_scores = pop_items[0].astype(np.int64), pop_scores[0]
    else:
        pop_items, pop_scores = np.full(k, -1, dtype=np.int64), np.full(k, -np.inf, dtype=np.float32)
    h, b, e = _arrays(H), _arrays(B), _arrays(E)
    chunks = [(s, min(n, s + chunk)) for s in range(0, n, max(1, chunk))]

    def one(bounds):
        lo, hi = bounds
        peak, nan = rank_rows(*h, *b, e[0], e[1], pop, use_pop, pop_items, pop_scores, lo, hi, k,
                              out_items[lo:hi], out_scores[lo:hi])  # fmt: skip
        return hi - lo, float("nan") if nan else float(peak)

    peaks = []
    threads = max(1, min(int(threads), len(chunks)))
    if threads == 1:
        results = map(one, chunks)
        for rows, peak in results:
            peaks.append(peak)
            if on_chunk is not None:
                on_chunk(rows)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for rows, peak in pool.map(one, chunks):
                peaks.append(peak)
                if on_chunk is not None:
                    on_chunk(rows)
    peak = float("nan") if any(p != p for p in peaks) else max(peaks, default=-np.inf)
    return out_items, out_scores, peak


_warm = False


def warm() -> None:
    """Compile (or load from numba's disk cache) the kernel now."""
    global _warm
    if not _warm and available():
        _warm = True
        one = sp.csr_matrix(np.ones((1, 2), dtype=np.float32))
        rank_sparse_product(one, sp.csr_matrix(np.eye(2, dtype=np.float32)), 1, one, np.ones(2, dtype=np.float32))
