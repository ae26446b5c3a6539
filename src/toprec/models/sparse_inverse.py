"""SANSA's algebra without a dense items x items matrix: a factorized sparse approximate inverse of the Gram.

EASE needs P = (X^T X + l2 I)^-1 and sets B = I - P dMat(1 / diag P). SANSA
(Spisak et al., RecSys 2023) keeps P sparse as W^T dMat(d) W with W unit
lower triangular (in a fill-reducing order): the inverse of the sparse LDL^T
factor of the Gram, approximated. Here the factor is computed directly, row
by row, by the factorized sparse approximate inverse (FSAI, Kolotilina and
Yeremin 1993), so no incomplete factorization (a sequential loop over the
columns) is needed and every row is an independent small solve:

- items ordered by popularity (most popular first); item i keeps as pattern
  ``S_i`` its ``k - 1`` strongest earlier neighbours (cosine of the co-counts),
  and itself;
- ``A = G + l2 I`` restricted to ``S_i``, ``y = A[S_i, S_i]^-1 e_i``: row i of
  W is ``y / y_i`` (unit diagonal) and ``d_i = y_i``. With ``S_i`` = every
  earlier item this is exactly the inverse of the LDL^T factor, so P is exact
  (and B is EASE's); sparser patterns give the best factor on that pattern
  (in Kaporin's sense). All rows of a chunk are solved at once (batched LAPACK);
- B's column j is ``-P[:, j] / P_jj``, computed in blocks from the factor
  (P = W^T dMat(d) W, up to k^2 candidates a column) and kept sparse: its
  ``keep`` largest weights in magnitude.

Scores are ``history @ B``: one sparse product. The Gram is exact and sparse
(only its lower triangle is stored), built in row blocks sized by their work.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .. import progress
from ..errors import ToprecError

#: scalar products of one block of the sparse Gram (bounds its temporary memory, ~12 bytes each)
GRAM_BLOCK_WORK = 10_000_000
#: stored values handled at once when ranking neighbours or weights (~60 bytes each)
RANK_BLOCK = 5_000_000
#: entries of the batched systems of one chunk of rows (c x K x K float64)
SOLVE_CHUNK = 2_000_000


def per_item(n_items: int, density: float, cap: int) -> int:
    """Weights kept per item (B's column length): ceil(density x items), at most ``cap``, at least 1."""
    return int(max(1, min(n_items, cap, math.ceil(density * n_items))))


def _ragged_positions(counts: np.ndarray) -> np.ndarray:
    """0, 1, .., c-1 for each run of ``counts`` (position of each entry within its row)."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def blocks_by_work(work: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed ``work`` stays within ``limit`` (a single row may exceed it)."""
    n = len(work)
    acc = np.cumsum(np.asarray(work, dtype=np.float64))
    out, s = [], 0
    while s < n:
        base = acc[s - 1] if s else 0.0
        e = int(np.searchsorted(acc, base + limit, side="right"))
        e = min(n, max(e, s + 1))
        out.append((s, e))
        s = e
    return out


def lower_gram(Xp: sp.csr_matrix) -> sp.csr_matrix:
    """The lower triangle (diagonal included) of ``Xp^T Xp`` as CSR float32 with sorted indices.

    Row blocks of items are multiplied one at a time (each block's work, the
    scalar products of its items' users, at most :data:`GRAM_BLOCK_WORK`), and
    only the entries at or below the diagonal are kept, so the peak is the
    stored triangle plus one block's product.
    """
    Xp = sp.csr_matrix(Xp, dtype=np.float32)
    n = Xp.shape[1]
    Xt = Xp.T.tocsr()  # items x users
    work = np.asarray(Xt @ np.diff(Xp.indptr).astype(np.float64)).ravel()  # products of each item's row
    indptr = [np.zeros(1, dtype=np.int64)]
    indices, data = [], []
    offset = 0
    with progress.task("sansa: gram", total=n) as bar:
        for s, e in blocks_by_work(work, GRAM_BLOCK_WORK):
            blk = sp.csr_matrix(Xt[s:e] @ Xp)
            rows = np.repeat(np.arange(s, e, dtype=np.int64), np.diff(blk.indptr))
            keep = blk.indices <= rows
            counts = np.bincount(rows[keep] - s, minlength=e - s)
            low = sp.csr_matrix((blk.data[keep], blk.indices[keep], np.r_[0, np.cumsum(counts)]), shape=(e - s, n))
            low.sort_indices()  # rows stay grouped by the filter; sorted within each row in C
            indices.append(low.indices.astype(np.int32))
            data.append(low.data.astype(np.float32))
            indptr.append(offset + np.cumsum(counts))
            offset += int(counts.sum())
            bar.advance(e - s)
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)), shape=(n, n))


def gram_lookup(Gl: sp.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``G[a, b]`` from its lower triangle ``Gl`` (zeros where not stored), float64."""
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    if len(hi) == 0:
        return np.zeros(0)
    return np.asarray(Gl[hi, lo], dtype=np.float64).ravel()


def _desc_within_rows(rows: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Order of entries grouped by ``rows`` (non-decreasing), ``value`` descending within each row.

    One stable float64 argsort of ``rows + (1 - value / row max) / 2`` (a 3-key lexsort is ~6x slower
    at 5e7 entries); entries equal within float64 keep their input order.
    """
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    v = np.asarray(value, dtype=np.float64)
    lo = v.min()
    v = v - lo  # >= 0
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    top = np.repeat(np.maximum.reduceat(v, starts), np.diff(np.r_[starts, len(v)]))
    scale = np.where(top > 0, top, 1.0)
    return np.argsort(rows + 0.5 * (1.0 - v / scale), kind="stable")


def top_per_row(indptr: np.ndarray, cols: np.ndarray, score: np.ndarray, k: int):
    """For CSR-like rows: keep each row's ``k`` largest ``score``. Returns (rows, cols)."""
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    order = _desc_within_rows(rows, score)
    pos = _ragged_positions(counts)
    keep = order[pos < k]
    return rows[keep], cols[keep]


def initial_pattern(Gl: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row i: its ``k - 1`` earlier items with the largest cosine ``G_ij / sqrt(G_ii G_jj)`` (0/1 CSR).

    Rows are ranked in blocks of at most :data:`RANK_BLOCK` stored values. With ``k >= n`` every
    earlier item, co-occurring or not (the exact inverse factor's pattern: it fills in).
    """
    n = Gl.shape[0]
    if k >= n:
        return sp.csr_matrix(np.tril(np.ones((n, n), dtype=np.float32), -1))
    diag = np.asarray(Gl.diagonal(), dtype=np.float64)
    inv = 1.0 / np.sqrt(np.maximum(diag, 1e-12))
    out_r, out_c = [], []
    for s, e in blocks_by_work(np.diff(Gl.indptr), RANK_BLOCK):
        lo, hi = Gl.indptr[s], Gl.indptr[e]
        rows = np.repeat(np.arange(s, e, dtype=np.int64), np.diff(Gl.indptr[s : e + 1]))
        cols = Gl.indices[lo:hi].astype(np.int64)
        off = cols < rows
        rows, cols = rows[off], cols[off]
        score = Gl.data[lo:hi][off] * inv[cols]  # the row's own norm does not change its order
        indptr = np.r_[0, np.cumsum(np.bincount(rows - s, minlength=e - s))]
        r, c = top_per_row(indptr, cols, score, k - 1)
        out_r.append(r + s)
        out_c.append(c)
    r, c = np.concatenate(out_r), np.concatenate(out_c)
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, n))


def fsai_factor(Gl: sp.csr_matrix, S: sp.csr_matrix, l2: float):
    """(W, d): rows of the unit lower factor W (CSR, pattern ``S`` + diagonal) and d, with
    ``(G + l2 I)^-1 ~= W^T dMat(d) W``. Rows are solved in chunks, each chunk's systems at once."""
    n = Gl.shape[0]
    S = sp.csr_matrix(S)
    S.sort_indices()
    counts = np.diff(S.indptr).astype(np.int64) + 1  # + the item itself
    diag = np.asarray(Gl.diagonal(), dtype=np.float64) + float(l2)
    out_rows, out_cols, out_vals = [], [], []
    d = np.empty(n, dtype=np.float64)
    start = 0
    with progress.task("sansa: factor", total=n) as bar:
        while start < n:
            K = int(counts[start])
            stop = start
            # grow the chunk while its padded systems stay within SOLVE_CHUNK entries
            while stop < n:
                K2 = max(K, int(counts[stop]))
                if (stop - start + 1) * K2 * K2 > SOLVE_CHUNK and stop > start:
                    break
                K, stop = K2, stop + 1
            c = stop - start
            m = counts[start:stop]
            # idx[r, p]: the neighbours (sorted) then the item itself at position m_r - 1; -1 = padding
            idx = np.full((c, K), -1, dtype=np.int64)
            rr = np.repeat(np.arange(c), m - 1)
            pp = _ragged_positions(m - 1)
            idx[rr, pp] = S.indices[S.indptr[start] : S.indptr[stop]]
            own = m - 1
            idx[np.arange(c), own] = np.arange(start, stop)
            valid = idx >= 0
            M = np.zeros((c, K, K), dtype=np.float64)
            iu = np.triu_indices(K, 1)
            pair_ok = valid[:, iu[0]] & valid[:, iu[1]]
            rb, pb = np.nonzero(pair_ok)
            a, b = idx[rb, iu[0][pb]], idx[rb, iu[1][pb]]
            vals = gram_lookup(Gl, a, b)
            M[rb, iu[0][pb], iu[1][pb]] = vals
            M[rb, iu[1][pb], iu[0][pb]] = vals
            dr, dp = np.nonzero(valid)
            M[dr, dp, dp] = diag[idx[dr, dp]]
            pr, pq = np.nonzero(~valid)
            M[pr, pq, pq] = 1.0
            rhs = np.zeros((c, K, 1), dtype=np.float64)
            rhs[np.arange(c), own, 0] = 1.0
            try:
                y = np.linalg.solve(M, rhs)[:, :, 0]
            except np.linalg.LinAlgError:
                raise ToprecError("model 'sansa': a local system is singular; increase l2") from None
            yi = y[np.arange(c), own]
            if not np.all(yi > 0):
                raise ToprecError("model 'sansa': the Gram restricted to a pattern is not positive definite; "
                                  "increase l2")  # fmt: skip
            d[start:stop] = yi
            w = y / yi[:, None]
            out_rows.append(start + dr)
            out_cols.append(idx[dr, dp])
            out_vals.append(w[dr, dp].astype(np.float32))
            bar.advance(c)
            start = stop
    W = sp.csr_matrix((np.concatenate(out_vals), (np.concatenate(out_rows), np.concatenate(out_cols))), shape=(n, n))
    return W, d


def weights_from_factor(W: sp.csr_matrix, d: np.ndarray, keep: int) -> sp.csr_matrix:
    """Sparse B (items x items, zero diagonal): column j = ``-P[:, j] / P_jj`` with P = W^T dMat(d) W,
    keeping each column's ``keep`` largest weights in magnitude."""
    n = W.shape[0]
    W = sp.csr_matrix(W, dtype=np.float64)
    Wsq = W.multiply(W)
    diag_p = np.asarray(Wsq.T @ d).ravel()  # diag(P)_j = sum_i d_i W_ij^2
    Wt = sp.csr_matrix(W.T)  # row j: the rows i whose pattern holds j
    dW = sp.csr_matrix(sp.diags(d) @ W)
    rows_out, cols_out, vals_out = [], [], []
    # products of row j of P: the lengths of the factor rows whose pattern holds j
    work = np.asarray(sp.csr_matrix((np.ones(Wt.nnz), Wt.indices, Wt.indptr), shape=Wt.shape)
                      @ np.diff(W.indptr).astype(np.float64)).ravel()  # fmt: skip
    with progress.task("sansa: weights", total=n) as bar:
        for s, e in blocks_by_work(work, RANK_BLOCK):
            Pb = sp.csr_matrix(Wt[s:e] @ dW)  # rows j of P = columns j (P symmetric)
            r = np.repeat(np.arange(s, e, dtype=np.int64), np.diff(Pb.indptr))
            c = Pb.indices.astype(np.int64)
            v = -Pb.data / diag_p[r]
            off = c != r
            r, c, v = r[off], c[off], v[off]
            indptr = np.r_[0, np.cumsum(np.bincount(r - s, minlength=e - s))]
            order = _desc_within_rows(r - s, np.abs(v))
            pos = _ragged_positions(np.diff(indptr))
            sel = order[pos < keep]
            # B[c, r] = weight of item c in the score of item r
            rows_out.append(c[sel])
            cols_out.append(r[sel])
            vals_out.append(v[sel].astype(np.float32))
            bar.advance(e - s)
    B = sp.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
                      shape=(n, n), dtype=np.float32)  # fmt: skip
    B.sort_indices()
    return B


def sansa_weights(X: sp.csr_matrix, l2: float, k: int, keep: int) -> sp.csr_matrix:
    """Sparse B (items x items, float32, zero diagonal): factor rows of ``k`` entries, at most ``keep``
    weights per target column."""
    X = sp.csr_matrix(X, dtype=np.float32)
    n = X.shape[1]
    counts = np.asarray(X.getnnz(axis=0)) if X.nnz else np.zeros(n, dtype=np.int64)
    order = np.lexsort((np.arange(n), -counts))  # most popular first (ties: lower index)
    Gl = lower_gram(sp.csr_matrix(X[:, order]))
    S = initial_pattern(Gl, k)
    W, d = fsai_factor(Gl, S, l2)
    del Gl, S
    B = weights_from_factor(W, d, keep).tocoo()
    del W
    # back to the items' own indices
    out = sp.csr_matrix((B.data, (order[B.row], order[B.col])), shape=(n, n), dtype=np.float32)
    out.sort_indices()
    return out
