"""Linear algebra shared by the item-item models (float32, in place, BLAS/LAPACK)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.linalg.blas import get_blas_funcs

from .. import parallel
from . import kernels
from ..errors import ToprecError

#: users with more than this share of the catalogue go through dense BLAS syrk
DENSE_USER_SHARE = 0.05
#: sparse Gram products smaller than this stay in one process
PARALLEL_MIN_NNZ = 2_000_000


def mirror_upper(A: np.ndarray, block: int = 1024) -> np.ndarray:
    """Copy the upper triangle of square ``A`` onto its lower one, in place, in blocks."""
    n = A.shape[0]
    for s in range(0, n, block):
        e = min(n, s + block)
        upper = A[s:e, s:]  # rows s..e, columns >= s
        below = np.arange(s, n)[:, None] > np.arange(s, e)[None, :]
        A[s:, s:e] = np.where(below, upper.T, A[s:, s:e])
    return A


def gram(X: sp.csr_matrix, dense_share: float = DENSE_USER_SHARE, chunk: int = 1024) -> np.ndarray:
    """Dense, symmetric item-item co-occurrence ``X^T X`` as float32 (C order).

    Light users go through a sparse product; heavy users (more than
    ``dense_share`` of the items) are densified in chunks and added with BLAS
    ``syrk``, which is faster for them than the sparse product (their cost
    there grows with the square of their history). No dense users x items
    matrix is ever built. With the compiled kernels (:mod:`.kernels`) the
    whole product is one pass over each row's pairs instead, on every core.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    if kernels.available():
        return mirror_upper(kernels.gram_upper(X, threads=parallel.workers()))
    n_items = X.shape[1]
    counts = np.diff(X.indptr)
    heavy = np.flatnonzero(counts > dense_share * n_items)
    light = np.flatnonzero(counts <= dense_share * n_items)
    G = np.asfortranarray(_sparse_gram(X[light] if len(heavy) else X))
    return _add_heavy(G, X, heavy, chunk)


def _add_heavy(G: np.ndarray, X: sp.csr_matrix, heavy: np.ndarray, chunk: int) -> np.ndarray:
    """G += X[heavy]^T X[heavy] by BLAS syrk on densified chunks; returns the symmetric C-order result.

    ``G`` is Fortran-ordered and symmetric (or holds only the light part);
    syrk updates its upper triangle in place, which is then mirrored.
    """
    if len(heavy):
        syrk = get_blas_funcs("syrk", (G,))
        for s in range(0, len(heavy), chunk):
            XH = X[heavy[s : s + chunk]].toarray()
            G = syrk(1.0, XH, beta=1.0, c=G, trans=1, lower=0, overwrite_c=1)
        mirror_upper(G)
    return G.T  # symmetric: the transpose is the same matrix, C-contiguous


def gram_blocked(
    A: sp.csr_matrix, dense_share: float = DENSE_USER_SHARE, block: int = 2048, chunk: int = 1024
) -> np.ndarray:
    """``A^T A`` like :func:`gram`, but the sparse part densified block by block.

    ``gram`` builds the light users' product as one sparse matrix, whose
    memory (12 bytes a nonzero) is 3x the dense result when it fills in, as it
    does for EASER's pair features. Here every block of ``block`` columns is
    densified as soon as it is computed.
    """
    A = sp.csr_matrix(A, dtype=np.float32)
    n = A.shape[1]
    counts = np.diff(A.indptr)
    heavy = np.flatnonzero(counts > dense_share * n)
    light = np.flatnonzero(counts <= dense_share * n)
    H = np.zeros((n, n), dtype=np.float32, order="F")
    AL = A[light] if len(heavy) else A
    if AL.nnz:
        Lt = AL.T.tocsr()
        Lc = AL.tocsc()
        for s in range(0, n, block):
            e = min(n, s + block)
            H[:, s:e] = (Lt @ Lc[:, s:e]).toarray()
    return _add_heavy(H, A, heavy, chunk)


def cross_gram(A: sp.csr_matrix, Z: sp.csr_matrix, dense_share: float = DENSE_USER_SHARE, block: int = 512,
               chunk: int = 1024, out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """``A^T Z`` dense float32 (A.shape[1] x Z.shape[1]) for row-aligned sparse ``A`` and ``Z``.

    Light rows (at most ``dense_share`` of A's columns) by sparse products,
    ``block`` columns of Z at a time, the blocks split over forked workers
    that write into shared memory; heavy rows densified in chunks and added by
    BLAS gemm. Each block is computed by the same code whichever process
    takes it, so the result does not depend on the number of workers.
    ``out``: where to write (a view into memory from ``parallel.shared_empty``
    when the product is large enough to fork, see :func:`forks_for`).
    """
    A = sp.csr_matrix(A, dtype=np.float32)
    Z = sp.csr_matrix(Z, dtype=np.float32)
    n, m = A.shape[1], Z.shape[1]
    counts = np.diff(A.indptr)
    heavy = np.flatnonzero(counts > dense_share * n)
    light = np.flatnonzero(counts <= dense_share * n)
    AL, ZL = (A[light], Z[light]) if len(heavy) else (A, Z)
    big = forks_for(A, Z)
    if out is None:
        out = parallel.shared_empty((n, m), np.float32) if big else np.empty((n, m), dtype=np.float32)
    if m:
        At = AL.T.tocsr()
        Zc = ZL.tocsc()

        def job(lo: int, hi: int) -> None:
            for b in range(lo, hi):
                s, e = b * block, min(m, (b + 1) * block)
                out[:, s:e] = (At @ Zc[:, s:e]).toarray()

        parallel.run_rows(-(-m // block), job, parallel.workers() if big else 1)
    tmp = None
    for s in range(0, len(heavy), chunk):
        rows = heavy[s : s + chunk]
        Ah, Zh = A[rows].toarray(), Z[rows].toarray()
        tmp = np.matmul(Ah.T, Zh, out=tmp)  # one (n x m) buffer for every chunk
        out += tmp
    return out


def forks_for(A: sp.csr_matrix, Z: sp.csr_matrix) -> bool:
    """Whether :func:`cross_gram` splits its sparse blocks over forked workers."""
    return A.nnz + Z.nnz > PARALLEL_MIN_NNZ and parallel.workers() > 1


def gram_with_pairs(X: sp.csr_matrix, Z: sp.csr_matrix, G: np.ndarray) -> np.ndarray:
    """The Gram matrix of ``A = [X Z]`` given ``G = X^T X``: only the ``A^T Z`` block column is computed.

    (``gram_blocked`` of the stacked matrix recomputes ``X^T X`` and both
    halves of the symmetric result: about 2.4x the work for EASER's defaults.)
    The workers write the block column straight into the result.
    """
    n, m = X.shape[1], Z.shape[1]
    A = sp.hstack([X, Z], format="csr")
    shape = (n + m, n + m)
    H = parallel.shared_empty(shape, np.float32) if forks_for(A, Z) else np.empty(shape, dtype=np.float32)
    H[:n, :n] = G
    cross_gram(A, Z, out=H[:, n:])
    H[n:, :n] = H[:n, n:].T
    return H


def _sparse_gram(X: sp.csr_matrix) -> np.ndarray:
    """``X^T X`` dense float32 by sparse products, users split over forked workers."""
    n = X.shape[1]
    n_workers = parallel.workers() if X.nnz > PARALLEL_MIN_NNZ else 1
    ranges = parallel.split_rows(X.shape[0], n_workers)
    if len(ranges) <= 1:
        return np.asarray((X.T.tocsr() @ X).toarray(), dtype=np.float32)
    bufs = {lo: parallel.shared_empty((n, n), np.float32) for lo, _ in ranges}

    def job(lo: int, hi: int) -> None:
        part = X[lo:hi]
        bufs[lo][...] = (part.T.tocsr() @ part).toarray()

    parallel.run_rows(X.shape[0], job, n_workers)
    out = np.array(bufs.pop(ranges[0][0]))
    for buf in bufs.values():
        out += buf
    return out


def spd_inverse(A: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix by Cholesky (LAPACK potrf + potri).

    Works in place in the dtype of ``A`` (float32 halves memory and time) and
    returns a C-contiguous symmetric matrix that shares ``A``'s memory.
    """
    F = A.T if A.flags.c_contiguous else np.asfortranarray(A)  # same values: A is symmetric
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (F,))
    c, info = potrf(F, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise ToprecError(f"matrix is not positive definite (LAPACK potrf info={info}); increase the regularisation")
    inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise ToprecError(f"Cholesky inverse failed (LAPACK potri info={info})")
    mirror_upper(inv)
    return inv.T
