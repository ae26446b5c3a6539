"""Linear algebra shared by the item-item models."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..errors import ToprecError


def gram(X: sp.csr_matrix) -> np.ndarray:
    """Dense item-item co-occurrence ``X^T X`` as float32 (sparse product, no dense X)."""
    X = sp.csr_matrix(X, dtype=np.float32)
    G = (X.T.tocsr() @ X).toarray()
    return np.asarray(G, dtype=np.float32)


def spd_inverse(A: np.ndarray, overwrite: bool = True) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix by Cholesky (LAPACK potrf + potri).

    Works in the dtype of ``A`` (float32 halves memory and time); both
    triangles of the result are filled.
    """
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (A,))
    c, info = potrf(A, lower=False, overwrite_a=overwrite, clean=False)
    if info != 0:
        raise ToprecError(f"matrix is not positive definite (LAPACK potrf info={info}); increase the regularisation")
    inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise ToprecError(f"Cholesky inverse failed (LAPACK potri info={info})")
    # potri fills the upper triangle; mirror it into the lower one in place, in blocks
    n = inv.shape[0]
    step = 1024
    for s in range(0, n, step):
        e = min(n, s + step)
        block = inv[s:e, s:]  # rows s..e, columns >= s: upper part is valid
        inv[s:, s:e] = np.where(
            np.arange(s, n)[:, None] > np.arange(s, e)[None, :], block.T, inv[s:, s:e]
        )
    return inv
