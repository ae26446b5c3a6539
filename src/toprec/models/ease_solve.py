"""EASE's closed forms (Steck 2019), the three ways they are solved; the models are in :mod:`.ease`.

B = argmin ||X - XB||^2 + l2 ||B||^2  s.t. diag(B) = 0
  = I - P diag(1 / diag(P)),   P = (X^T X + l2 I)^-1

- :func:`ease_item_space` (items <= users): P by a float32 Cholesky of the
  items x items Gram matrix (LAPACK potrf/potri, in place); B dense.
- :func:`ease_item_space_torch`: the same on a torch device, the Gram
  accumulated from row chunks scattered there (no dense copy on the host).
- :func:`ease_user_space` (users < items): by the Woodbury identity
  P = (I - X^T K X) / l2 with K = (l2 I + X X^T)^-1, a users x users solve.
  B is never formed: with M = K X (users x items) and d = diag(P),
  x B = x - (x - (x X^T) M) / (l2 d).
- :func:`ridge_user_space`: the same identity for a diagonal ridge
  Lambda = dMat(lam) (EDLAE's l2 + p/(1-p) diag(G)): P = (G + Lambda)^-1 =
  Lambda^-1 - Y^T K Y with Y = X Lambda^-1, K = (I + X Lambda^-1 X^T)^-1;
  again users x users, scored by :func:`ridge_user_space_scores`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..device import cuda_matmul_tf32, dense_rows, require_torch
from .linalg import gram, spd_inverse


def ease_item_space(X: sp.csr_matrix, l2: float) -> np.ndarray:
    """Dense B (items x items, float32, zero diagonal) via the items x items inverse."""
    G = gram(X)
    G[np.diag_indices_from(G)] += np.float32(l2)
    P = spd_inverse(G)  # reuses G's memory
    d = np.diag(P).copy()
    P /= -d[None, :]
    P[np.diag_indices_from(P)] = 0.0
    return P


def ease_user_space(X: sp.csr_matrix, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """(M, d): M = K X with K = (l2 I + X X^T)^-1 (users x items), d = diag(P)."""
    X = sp.csr_matrix(X, dtype=np.float32)
    Gu = gram(sp.csr_matrix(X.T))  # X X^T, users x users
    Gu[np.diag_indices_from(Gu)] += np.float32(l2)
    K = spd_inverse(Gu)
    M = np.asarray((X.T @ K).T, dtype=np.float32)  # K X = (X^T K)^T, K symmetric
    M = np.ascontiguousarray(M)
    # diag(X^T K X)_i = sum_u X_ui (K X)_ui
    q = np.asarray(X.multiply(M).sum(axis=0)).ravel()
    d = ((1.0 - q) / l2).astype(np.float32)
    return M, d


def ridge_user_space(X: sp.csr_matrix, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, d) for P = (X^T X + dMat(lam))^-1: M = K Y (users x items), d = diag(P); Y = X dMat(1/lam).

    K = (I + X dMat(1/lam) X^T)^-1 is a users x users solve: the Gram of
    X dMat(lam^-1/2) over users, plus the identity.
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    inv = (1.0 / np.asarray(lam, dtype=np.float64)).astype(np.float32)
    half = sp.csr_matrix(X @ sp.diags(np.sqrt(inv)), dtype=np.float32)
    Gu = gram(sp.csr_matrix(half.T))  # X dMat(1/lam) X^T, users x users
    Gu[np.diag_indices_from(Gu)] += np.float32(1.0)
    K = spd_inverse(Gu)
    Y = sp.csr_matrix(X @ sp.diags(inv), dtype=np.float32)
    M = np.ascontiguousarray(np.asarray((Y.T @ K).T, dtype=np.float32))  # K Y, K symmetric
    q = np.asarray(Y.multiply(M).sum(axis=0)).ravel()  # diag(Y^T K Y)
    d = (inv.astype(np.float64) - q).astype(np.float32)
    return M, d


def ridge_user_space_scores(history: sp.csr_matrix, basis_rows: sp.csr_matrix, user_basis: np.ndarray,
                            diag_p: np.ndarray, lam: np.ndarray, zero_diagonal: bool = True) -> np.ndarray:  # fmt: skip
    """Scores ``x B`` from :func:`ridge_user_space`'s (M, d), B never formed.

    ``x P = x / lam - (x Y^T) M``; zero diagonal (EDLAE): ``x B = x - x P / d``;
    else (DLAE, B = I - P Lambda): ``x B = x - (x P) Lambda``.
    """
    H = sp.csr_matrix(history, dtype=np.float32)
    lam = np.asarray(lam, dtype=np.float32)
    inv = np.float32(1.0) / lam
    Hinv = sp.csr_matrix(H @ sp.diags(inv))  # x Lambda^-1
    A = (Hinv @ basis_rows.T).toarray()  # x Y^T: (b, n_train_users)
    xp = Hinv.toarray()
    xp -= A @ user_basis  # x P
    xp *= (-1.0 / diag_p)[None, :] if zero_diagonal else -lam[None, :]
    xp += H.toarray()
    return xp


def ease_item_space_torch(X: sp.csr_matrix, l2: float, device: str, chunk_bytes: int = 1 << 30):
    """Item-space EASE with torch on ``device``: dense Gram in row chunks, Cholesky inverse.

    Each chunk of user rows is scattered into a dense block on the device from
    the CSR arrays (only the nonzeros cross the bus), so the host never builds
    a dense users x items matrix. Returns B as a float32 tensor on ``device``
    (zero diagonal).
    """
    torch = require_torch()
    n_users, n_items = X.shape
    G = torch.zeros((n_items, n_items), dtype=torch.float32, device=device)
    rows = max(1, chunk_bytes // max(1, 4 * n_items))
    block = None
    # TF32 tensor cores keep 10 mantissa bits of each input and accumulate in float32. For 0/1 data
    # (what Dataset.matrix holds) the products and the integer sums (< 2^24) are exact, so the Gram
    # is exactly float32's, ~2x faster (measured on the H100); other values keep full float32.
    binary = bool(np.all((X.data == 0) | (X.data == 1)))
    with cuda_matmul_tf32(torch, binary):
        for s in range(0, n_users, rows):
            part = X[s : s + rows] if (s > 0 or rows < n_users) else X
            if block is None or block.shape[0] != part.shape[0]:
                block = torch.empty((part.shape[0], n_items), dtype=torch.float32, device=device)
            dense_rows(part, device, torch.float32, out=block)
            G.addmm_(block.T, block)
    del block
    G.diagonal().add_(float(l2))
    L = torch.linalg.cholesky(G)
    del G
    P = torch.cholesky_inverse(L)
    del L
    B = P / (-P.diagonal())[None, :]
    B.fill_diagonal_(0.0)
    return B


def ease_user_space_scores(history: sp.csr_matrix, basis_rows: sp.csr_matrix, user_basis: np.ndarray,
                           diag_p: np.ndarray, l2: float) -> np.ndarray:  # fmt: skip
    """Scores ``x B`` of history rows from the user-space solution, B never formed.

    ``basis_rows``: the rows ``user_basis`` (``M = K X``) was solved over.
    """
    H = sp.csr_matrix(history, dtype=np.float32)
    A = (H @ basis_rows.T).toarray()  # (b, n_train_users): x X^T
    xp = H.toarray()
    xp -= A @ user_basis  # x - x X^T K X  (= l2 * x P)
    xp /= -(l2 * diag_p)[None, :]
    xp += H.toarray()
    return xp


#: rows of every scoring product on the GPU: batches are padded to this, so each user's scores come
#: from the same cuBLAS kernel whatever the batch size or the number of users asked for
DEVICE_ROWS = 4096


def scores_on_device(B, history: sp.csr_matrix, rows: int = DEVICE_ROWS):
    """``history @ B`` on the device holding B: the rows scattered there, full-float32 products of ``rows`` rows."""
    torch = require_torch()
    history = sp.csr_matrix(history)
    out = []
    with cuda_matmul_tf32(torch, False):  # B must not be cut to TF32's 10 bits, whatever the caller set
        for s in range(0, max(1, history.shape[0]), rows):
            part = history[s : s + rows]
            H = torch.zeros((rows, B.shape[0]), dtype=torch.float32, device=B.device)
            dense_rows(part, B.device, torch.float32, out=H[: part.shape[0]])
            out.append((H @ B)[: part.shape[0]])
    return out[0] if len(out) == 1 else torch.cat(out)
