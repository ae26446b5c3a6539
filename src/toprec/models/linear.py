"""Linear item-item models beyond EASE: EDLAE, higher-order EASE, ADMM SLIM.

All float32, items x items dense algebra through ``linalg.gram`` and
``linalg.spd_inverse`` (one Cholesky inverse per fit), no loop over users or
items.

``edlae`` (Steck 2020, "Autoencoders that don't overfit towards the identity")
    Full-rank linear autoencoder trained with (emphasized) dropout, closed form.
    With G = X^T X, p the dropout probability and
    Lambda = l2 I + p/(1-p) dMat(diag G),  P = (G + Lambda)^-1:

    - EDLAE (emphasized denoising, ``zero_diagonal=True``): B = I - P dMat(1/diag P)
      (zero diagonal, like EASE; p = 0 is exactly EASE)
    - DLAE (``zero_diagonal=False``): B = (G + Lambda)^-1 G = I - P Lambda

``easer`` (Steck & Liang 2021, "Negative interactions for improved collaborative
filtering: don't go deeper, go higher")
    Scores X B + Z C: Z (users x pairs) holds z_u,(i,j) = x_ui x_uj for the
    ``n_pairs`` most co-occurring item pairs (co-count >= ``min_support``),
    C (pairs x items) their weights. The objective
        ||X - X B - Z C||^2 + l2 ||B||^2 + l2_pairs ||C||^2
        s.t. diag(B) = 0, C[(i,j), i] = C[(i,j), j] = 0
    is solved either by the paper's ADMM (``solver="admm"``, as in the authors'
    notebook) or exactly (``solver="exact"``, default): with A = [X Z],
    H = A^T A + diag(l2, l2_pairs), Pf = H^-1, the unconstrained solution is
    W0 = [I; 0] - l2 Pf[:, :items]; each target item k has its own set T_k of
    constrained weights (B_kk and the C rows of the pairs holding k), and
    W[:, k] = W0[:, k] - Pf[:, T_k] mu_k with Pf[T_k, T_k] mu_k = W0[T_k, k].
    All the small systems form one block-diagonal sparse system solved at
    once (SuperLU). This is the optimum ADMM converges to, for one
    (items + pairs) Cholesky inverse instead of ~40 rounds of products.

``admm-slim`` (Steck, Dimakopoulou, Riabov, Jebara 2020, "ADMM SLIM: sparse
recommendations for many users")
    min ||X - XB||^2 + l2 ||B||^2 + l1 |B|_1, diag(B) = 0, B >= 0 (``nonneg``)
    by ADMM with one inverse P = (G + (l2 + rho) I)^-1:
        B~ = P (G + rho C - Gamma)                 (= I - (l2+rho) P + P (rho C - Gamma))
        B  = B~ - P dMat(diag(B~) / diag(P))       (zero diagonal)
        C  = S_{l1/rho}(B + Gamma / rho)  [then max(., 0)]
        Gamma += rho (B - C)
    returns C (sparse), optionally pruned to the ``topk`` largest per column.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from pydantic import Field

from ..errors import ToprecError
from .base import ItemItemRecommender, Params
from .ease_solve import ridge_user_space, ridge_user_space_scores
from .linalg import gram, gram_blocked, gram_with_pairs, spd_inverse
from .registry import register

# --------------------------------------------------------------------- helpers


def _zero_diag_solution(P: np.ndarray) -> np.ndarray:
    """EASE's constrained solution from P = (G + Lambda)^-1, in place: -P_ij / P_jj, zero diagonal."""
    d = np.diag(P).copy()
    P /= -d[None, :]
    P[np.diag_indices_from(P)] = 0.0
    return P


def _scale_columns(A: np.ndarray, v: np.ndarray, block: int = 1024) -> None:
    """A[:, j] *= v[j] in place, in row blocks (no full-size temporary)."""
    for s in range(0, A.shape[0], block):
        A[s : s + block] *= v[None, :]


def _ensure_pd(model: str, fn, *args):
    """Run ``fn``; a non positive definite system becomes a one-line error naming the model."""
    try:
        return fn(*args)
    except ToprecError as exc:
        raise ToprecError(f"model '{model}': {exc}") from None

# ======================================================================= EDLAE


class EDLAEParams(Params):
    l2: float = Field(300.0, gt=0, description="L2 regularisation added to the Gram diagonal")
    dropout: float = Field(
        0.5, ge=0, lt=1, description="dropout probability p: adds p/(1-p) diag(X^T X) to the diagonal"
    )
    zero_diagonal: bool = Field(
        True, description="EDLAE (emphasized dropout, zero diagonal) if true, else DLAE B = (G + Lambda)^-1 G"
    )
    form: Literal["auto", "items", "users"] = Field(
        "auto", description="solve in item space, user space (Woodbury, users < items), or pick the smaller (auto)"
    )


def edlae_ridge(item_counts: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    """Lambda's diagonal: l2 + p/(1-p) diag(G) (diag(G) = the item counts of 0/1 data), float32."""
    return (np.float32(l2) + np.float32(dropout / (1.0 - dropout)) * item_counts.astype(np.float32)).astype(np.float32)


def edlae_weights(X: sp.csr_matrix, l2: float, dropout: float, zero_diagonal: bool = True) -> np.ndarray:
    """Dense float32 B (items x items) of EDLAE / DLAE."""
    G = gram(X)
    lam = edlae_ridge(np.diag(G), l2, dropout)
    G[np.diag_indices_from(G)] += lam
    P = spd_inverse(G)  # in G's memory
    if zero_diagonal:
        return _zero_diag_solution(P)
    # B = I - P Lambda: column j scaled by -lambda_j, plus the identity
    _scale_columns(P, -lam)
    P[np.diag_indices_from(P)] += 1.0
    return P


@register
class EDLAE(ItemItemRecommender):
    """EDLAE: linear autoencoder with emphasized dropout (closed form, EASE with a popularity-scaled ridge)."""

    name = "edlae"
    Params = EDLAEParams
    search_space = {
        "l2": ("log_float", 1.0, 1e4),
        "dropout": ("float", 0.0, 0.75),
        "zero_diagonal": ("categorical", [True, False]),
    }

    def _fit(self, X, train) -> None:
        p = self.params
        form = p.form if p.form != "auto" else ("items" if X.shape[1] <= X.shape[0] else "users")
        self.form_ = form
        if form == "items":
            self.similarity = _ensure_pd(self.name, edlae_weights, X, p.l2, p.dropout, p.zero_diagonal)
            return
        # users < items: the Woodbury form, a users x users solve (EASE's user space with a diagonal ridge)
        X2 = sp.csr_matrix(X, dtype=np.float32)
        self.lam = edlae_ridge(np.asarray(X2.multiply(X2).sum(axis=0)).ravel(), p.l2, p.dropout)
        self.similarity = None
        self.user_basis, self.diag_p = _ensure_pd(self.name, ridge_user_space, X2, self.lam)

    def _product_similarity(self):
        # item form: the scores are history @ B (the fused compiled top-k applies)
        if self.form_ != "items" or type(self)._score is not EDLAE._score:
            return None
        return self._dense_float32_similarity()

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        if self.form_ == "items":
            return super()._score(users, history)
        return ridge_user_space_scores(history, self.train_matrix, self.user_basis, self.diag_p, self.lam,
                                       self.params.zero_diagonal)  # fmt: skip

    def _state(self) -> dict[str, Any]:
        if self.form_ == "items":
            return {"similarity": self.similarity}
        return {"user_basis": self.user_basis, "diag_p": self.diag_p, "lam": self.lam}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        if "similarity" in arrays:
            self.form_ = "items"
            self.similarity = arrays["similarity"]
        else:
            self.form_ = "users"
            self.similarity = None
            self.user_basis, self.diag_p, self.lam = arrays["user_basis"], arrays["diag_p"], arrays["lam"]


# =================================================================== EASE^R


class EASERParams(Params):
    l2: float = Field(300.0, gt=0, description="L2 on the item-item weights B")
    l2_pairs: float = Field(30_000.0, gt=0, description="L2 on the pair weights C")
    n_pairs: int = Field(
        5_000, ge=0, description="most co-occurring item pairs used as features (memory ~ (items+pairs)^2 floats)"
    )
    min_support: int = Field(5, ge=1, description="least co-occurrence count of a kept pair")
    dropout: float = Field(
        0.5, ge=0, lt=1, description="EDLAE-style ridge p/(1-p) diag(A^T A) added on every feature (0: the paper's)"
    )
    solver: Literal["exact", "admm"] = Field(
        "exact", description="exact constrained solve (one inverse) or the paper's ADMM"
    )
    rho: float = Field(1e4, gt=0, description="ADMM penalty (solver='admm')")
    iterations: int = Field(40, ge=1, description="ADMM iterations (solver='admm')")
    form: Literal["auto", "items", "users"] = Field(
        "auto",
        description="exact solver: item space ((items+pairs)^2 inverse), user space (Woodbury, users < items), or "
        "the smaller (auto)",
    )


def select_pairs(G: np.ndarray, n_pairs: int, min_support: int) -> np.ndarray:
    """(m, 2) int32 pairs i < j with the largest co-counts G_ij >= min_support (ties: lower (i, j) first)."""
    n = G.shape[0]
    if n_pairs <= 0 or n < 2:
        return np.zeros((0, 2), dtype=np.int32)
    flat = np.triu(G, 1).ravel()  # zeros on and below the diagonal: never >= min_support >= 1
    eligible = flat >= min_support
    if np.count_nonzero(eligible) <= n_pairs:
        keep = np.flatnonzero(eligible)
    else:
        kth = np.partition(flat, flat.size - n_pairs)[flat.size - n_pairs]  # n_pairs-th largest (>= min_support)
        above = np.flatnonzero(flat > kth)
        ties = np.flatnonzero(flat == kth)[: n_pairs - len(above)]
        keep = np.sort(np.concatenate([above, ties]))
    return np.stack([keep // n, keep % n], axis=1).astype(np.int32)


def pair_features(H: sp.csr_matrix, pairs: np.ndarray) -> sp.csr_matrix:
    """Z with z_u,p = h_u,i * h_u,j for pairs p = (i, j): (rows x pairs) CSR float32."""
    H = sp.csr_matrix(H, dtype=np.float32)
    if len(pairs) == 0:
        return sp.csr_matrix((H.shape[0], 0), dtype=np.float32)
    Z = H[:, pairs[:, 0]].multiply(H[:, pairs[:, 1]])
    Z = sp.csr_matrix(Z, dtype=np.float32)
    Z.eliminate_zeros()
    Z.sort_indices()
    return Z


def _constraints(n: int, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constrained weights (row t of W = [B; C], target column k), sorted by k then t."""
    m = len(pairs)
    t = np.concatenate([np.arange(n), n + np.arange(m), n + np.arange(m)]).astype(np.int64)
    k = np.concatenate([np.arange(n), pairs[:, 0], pairs[:, 1]]).astype(np.int64)
    order = np.lexsort((t, k))
    return t[order], k[order]


def easer_exact(H: np.ndarray, n: int, pairs: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact EASE^R weights from the Gram matrix H of A = [X Z] (consumed) and the ridge ``lam``
    (one value per column of A). Returns (B, C)."""
    N = H.shape[0]
    lam = np.asarray(lam, dtype=np.float32)
    H[np.diag_indices_from(H)] += lam
    Pf = spd_inverse(H)
    del H
    t, k = _constraints(n, pairs)
    sizes = np.bincount(k, minlength=n).astype(np.int64)
    starts = np.cumsum(sizes) - sizes
    sq = sizes * sizes
    g = np.repeat(np.arange(n), sq)  # block of each entry
    local = np.arange(int(sq.sum()), dtype=np.int64) - np.repeat(np.cumsum(sq) - sq, sq)
    r = starts[g] + local // sizes[g]
    c = starts[g] + local % sizes[g]
    del g, local
    vals = Pf[t[r], t[c]].astype(np.float64)
    nc = len(t)
    M = sp.csc_matrix((vals, (r, c)), shape=(nc, nc))
    del vals, r, c
    # unconstrained solution W0 = [I; 0] - Pf[:, :n] dMat(lam[:n]), at the constrained entries
    rhs = -Pf[t, k].astype(np.float64) * lam[k]
    rhs[t == k] += 1.0
    mu = spla.splu(M, permc_spec="NATURAL").solve(rhs)  # block diagonal: no fill outside blocks
    del M
    Lam_T = sp.csr_matrix((mu.astype(np.float32), (k, t)), shape=(n, N))
    WT = np.asarray(Lam_T @ Pf, dtype=np.float32)  # (Pf Lambda)^T, n x N (Pf symmetric)
    np.negative(WT, out=WT)
    for s in range(0, n, 1024):  # W^T = [I 0] - dMat(lam[:n]) Pf[:n, :] - (Pf Lambda)^T
        e = min(n, s + 1024)
        WT[s:e] -= lam[s:e, None] * Pf[s:e]
    del Pf
    WT[np.arange(n), np.arange(n)] += 1.0
    WT[k, t] = 0.0  # the constraints, exactly
    B = np.ascontiguousarray(WT[:, :n].T)
    C = np.ascontiguousarray(WT[:, n:].T)
    return B, C


def easer_ridge(X: sp.csr_matrix, Z: sp.csr_matrix, p) -> np.ndarray:
    """The ridge on every column of A = [X Z]: l2 (items) / l2_pairs (pairs) + p/(1-p) diag(A^T A), float32."""
    a = np.float32(p.dropout / (1.0 - p.dropout))
    return np.concatenate(
        [
            np.float32(p.l2) + a * np.asarray(X.power(2).sum(axis=0), dtype=np.float32).ravel(),
            np.float32(p.l2_pairs) + a * np.asarray(Z.power(2).sum(axis=0), dtype=np.float32).ravel(),
        ]
    ).astype(np.float32)


def select_pairs_sparse(X: sp.csr_matrix, n_pairs: int, min_support: int) -> np.ndarray:
    """:func:`select_pairs` from the sparse co-counts (no dense items x items matrix): the same pairs."""
    n = X.shape[1]
    if n_pairs <= 0 or n < 2:
        return np.zeros((0, 2), dtype=np.int32)
    G = sp.triu(sp.csr_matrix(X.T.tocsr() @ X), k=1).tocoo()
    ok = G.data >= min_support
    i, j, v = G.row[ok].astype(np.int64), G.col[ok].astype(np.int64), G.data[ok]
    flat = i * n + j
    order = np.lexsort((flat, -v))[:n_pairs]  # largest co-count first, ties: lower (i, j) first
    keep = np.sort(flat[order])
    return np.stack([keep // n, keep % n], axis=1).astype(np.int32)


def _pf_entries(Y_rows: sp.csr_matrix, MT: np.ndarray, inv: np.ndarray, ti: np.ndarray, tj: np.ndarray,
                chunk: int = 4096) -> np.ndarray:  # fmt: skip
    """Entries ``Pf[ti, tj]`` of Pf = dMat(inv) - Y^T M (``Y_rows`` = Y^T as CSR, ``MT`` = M^T), float64."""
    out = np.where(ti == tj, inv[ti], 0.0).astype(np.float64)
    for s in range(0, len(ti), chunk):
        a, b = ti[s : s + chunk], tj[s : s + chunk]
        out[s : s + chunk] -= np.asarray(Y_rows[a].multiply(MT[b]).sum(axis=1), dtype=np.float64).ravel()
    return out


def easer_user_space(A: sp.csr_matrix, n: int, pairs: np.ndarray, lam: np.ndarray):
    """Exact EASE^R for users < items by the Woodbury identity: nothing (items+pairs)^2 is formed.

    With R = dMat(lam), Y = A R^-1 and K = (I + A R^-1 A^T)^-1 (users x users),
    Pf = (A^T A + R)^-1 = R^-1 - Y^T M, M = K Y. The constrained entries and
    the small systems are those of :func:`easer_exact`, their Pf entries
    computed from (Y, M). The weights are W = [I; 0] - Pf Q with the sparse
    Q = [dMat(lam[:n]); 0] + Mu^T (N x n; Mu the multipliers), so a row
    a = [x z] scores a W = x - a R^-1 Q + (a R^-1 A^T) (M Q): the users x items
    ``M Q`` plays the part of EASE's user-space basis. Returns (M Q, R^-1 Q).
    """
    A = sp.csr_matrix(A, dtype=np.float32)
    lam = np.asarray(lam, dtype=np.float32)
    inv = (1.0 / lam.astype(np.float64)).astype(np.float32)
    half = sp.csr_matrix(A @ sp.diags(np.sqrt(inv)), dtype=np.float32)
    Gu = gram(sp.csr_matrix(half.T))  # A R^-1 A^T
    Gu[np.diag_indices_from(Gu)] += np.float32(1.0)
    K = spd_inverse(Gu)
    Y_rows = sp.csr_matrix(sp.csr_matrix(A @ sp.diags(inv), dtype=np.float32).T)  # Y^T
    MT = np.asarray(Y_rows @ K, dtype=np.float32)  # (K Y)^T = Y^T K, N x users
    del K
    t, k = _constraints(n, pairs)
    sizes = np.bincount(k, minlength=n).astype(np.int64)
    starts = np.cumsum(sizes) - sizes
    sq = sizes * sizes
    g = np.repeat(np.arange(n), sq)
    local = np.arange(int(sq.sum()), dtype=np.int64) - np.repeat(np.cumsum(sq) - sq, sq)
    r = starts[g] + local // sizes[g]
    c = starts[g] + local % sizes[g]
    del g, local
    vals = _pf_entries(Y_rows, MT, inv, t[r], t[c])
    nc = len(t)
    S = sp.csc_matrix((vals, (r, c)), shape=(nc, nc))
    rhs = -_pf_entries(Y_rows, MT, inv, t, k) * lam[k]
    rhs[t == k] += 1.0
    mu = spla.splu(S, permc_spec="NATURAL").solve(rhs)
    N = A.shape[1]
    Q = sp.csr_matrix((mu.astype(np.float32), (t, k)), shape=(N, n)) + sp.csr_matrix(
        (lam[:n], (np.arange(n), np.arange(n))), shape=(N, n)
    )
    basis = np.ascontiguousarray(np.asarray(Q.T @ MT, dtype=np.float32).T)  # M Q, users x items
    return basis, sp.csr_matrix(sp.diags(inv) @ Q, dtype=np.float32)


def easer_user_space_scores(X_hist: sp.csr_matrix, Z_hist: sp.csr_matrix, basis_rows: sp.csr_matrix,
                            basis: np.ndarray, RQ: sp.csr_matrix, lam: np.ndarray) -> np.ndarray:  # fmt: skip
    """Scores ``a W`` of history rows a = [x z] from :func:`easer_user_space`'s (M Q, R^-1 Q);
    ``basis_rows`` = A of the training users."""
    a = sp.hstack([sp.csr_matrix(X_hist, dtype=np.float32), Z_hist], format="csr")
    ainv = sp.csr_matrix(a @ sp.diags((1.0 / lam.astype(np.float64)).astype(np.float32)), dtype=np.float32)
    out = (ainv @ basis_rows.T).toarray() @ basis  # (a R^-1 A^T) (M Q)
    out -= (a @ RQ).toarray()
    out += sp.csr_matrix(X_hist, dtype=np.float32).toarray()
    return out


def easer_admm(
    X: sp.csr_matrix, Z: sp.csr_matrix, pairs: np.ndarray, lam: np.ndarray, rho: float, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """EASE^R by the ADMM of the paper's notebook (float32), ridge ``lam`` per column of [X Z].

    Same iterates as the authors' code, with two identities to save memory and
    products: P G = I - P dMat(lam_B) (no copy of G kept) and the dual Gamma is
    nonzero only at the masked entries (2 a pair), kept as a vector.
    Returns (B, C).
    """
    n = X.shape[1]
    m = Z.shape[1]
    lam = np.asarray(lam, dtype=np.float32)
    G = gram(X)
    G[np.diag_indices_from(G)] += lam[:n]
    PP = spd_inverse(G)
    ZtX = np.asarray((Z.T @ X).toarray(), dtype=np.float32)
    Q = gram_blocked(Z)
    Q[np.diag_indices_from(Q)] += lam[n:] + np.float32(rho)
    QQ = spd_inverse(Q)
    K = PP @ ZtX.T  # n x m
    PL = PP * lam[None, :n]  # P dMat(lam_B)
    rows = np.concatenate([np.arange(m), np.arange(m)])
    cols = np.concatenate([pairs[:, 0], pairs[:, 1]]).astype(np.int64)
    U = np.zeros(len(rows), dtype=np.float32)  # Gamma at the masked entries
    CC = np.zeros((m, n), dtype=np.float32)
    DU = np.zeros((m, n), dtype=np.float32)  # D - U
    dP = np.diag(PP).copy()
    rho32 = np.float32(rho)
    B = np.empty((n, n), dtype=np.float32)
    for _ in range(iterations):
        # B = P (G - ZtX^T C) with diag(B) = 0
        np.matmul(K, CC, out=B)
        B += PL
        np.negative(B, out=B)
        B[np.diag_indices_from(B)] += 1.0
        gamma = np.diag(B) / dP
        B -= PP * gamma[None, :]
        # C = Q (ZtX - ZtX B + rho (D - U))
        R = ZtX - ZtX @ B
        DU *= rho32
        R += DU
        np.matmul(QQ, R, out=CC)
        # D = C masked, U += C - D
        U += CC[rows, cols]
        np.copyto(DU, CC)
        DU[rows, cols] = -U
    D = CC
    D[rows, cols] = 0.0
    B[np.diag_indices_from(B)] = 0.0
    return B, D


@register
class EASER(ItemItemRecommender):
    """Higher-order EASE (EASE^R): EASE plus weights on co-occurring item pairs (negative interactions)."""

    name = "easer"
    Params = EASERParams
    search_space = {
        "l2": ("log_float", 10.0, 1e4),
        "l2_pairs": ("log_float", 100.0, 1e6),
        "dropout": ("float", 0.0, 0.75),
        "n_pairs": ("log_int", 100, 20_000),
        "min_support": ("log_int", 1, 1000),
    }

    pairs: np.ndarray
    pair_weights: np.ndarray

    def _fit(self, X, train) -> None:
        p = self.params
        X = sp.csr_matrix(X, dtype=np.float32)
        n = X.shape[1]
        form = p.form if p.form != "auto" else ("items" if n <= X.shape[0] else "users")
        self.form_ = "items" if p.solver == "admm" else form
        if self.form_ == "users":
            self._fit_users(X)
            return
        G = gram(X)
        pairs = select_pairs(G, p.n_pairs, p.min_support)
        if len(pairs) == 0:  # plain EASE (EDLAE with the same dropout)
            G[np.diag_indices_from(G)] += np.float32(p.l2) + np.float32(p.dropout / (1.0 - p.dropout)) * np.diag(G)
            self.similarity = _zero_diag_solution(_ensure_pd(self.name, spd_inverse, G))
            self.pairs, self.pair_weights = pairs, np.zeros((0, n), dtype=np.float32)
            return
        Z = pair_features(X, pairs)
        lam = easer_ridge(X, Z, p)
        if p.solver == "exact":
            H = gram_with_pairs(X, Z, G)
            del G  # (X^T X is in H)
            B, C = _ensure_pd(self.name, easer_exact, H, n, pairs, lam)
        else:
            del G
            B, C = _ensure_pd(self.name, easer_admm, X, Z, pairs, lam, p.rho, p.iterations)
        self.similarity, self.pairs, self.pair_weights = B, pairs, C

    def _fit_users(self, X: sp.csr_matrix) -> None:
        """Wide data (users < items): the exact solution by :func:`easer_user_space`; B and C never formed."""
        p = self.params
        pairs = select_pairs_sparse(X, p.n_pairs, p.min_support)
        Z = pair_features(X, pairs)
        self.lam = easer_ridge(X, Z, p)
        self.pairs = pairs
        self.similarity = None
        self.pair_weights = np.zeros((0, X.shape[1]), dtype=np.float32)
        A = sp.hstack([X, Z], format="csr")
        self.user_basis, self.pair_solution = _ensure_pd(self.name, easer_user_space, A, X.shape[1], pairs,
                                                         self.lam)  # fmt: skip

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        if getattr(self, "form_", "items") == "users":
            return easer_user_space_scores(history, pair_features(history, self.pairs), self._basis_rows(),
                                           self.user_basis, self.pair_solution, self.lam)  # fmt: skip
        out = super()._score(users, history)
        if len(self.pairs):
            Zh = pair_features(history, self.pairs)
            if Zh.nnz:  # sparse x dense, row by row (identical for any batch size), in cached column blocks
                for start, block in self._pair_blocks():
                    out[:, start : start + block.shape[1]] += Zh @ block
        return out

    def _pair_blocks(self) -> list[tuple[int, np.ndarray]]:
        """C in contiguous column blocks: ~2x faster than one sparse x dense product (cache)."""
        blocks = getattr(self, "_pblocks", None)
        if blocks is None or blocks[0] is not self.pair_weights:
            C, w = self.pair_weights, self.SCORE_BLOCK
            self._pblocks = blocks = (C, [(s, np.ascontiguousarray(C[:, s : s + w])) for s in range(0, C.shape[1], w)])
        return blocks[1]

    def _basis_rows(self) -> sp.csr_matrix:
        """A = [X Z] of the training users (what the user-space solution was solved over), built once."""
        cached = getattr(self, "_basis", None)
        if cached is None or cached[0] is not self.user_basis:
            A = sp.hstack([self.train_matrix, pair_features(self.train_matrix, self.pairs)], format="csr")
            self._basis = cached = (self.user_basis, sp.csr_matrix(A, dtype=np.float32))
        return cached[1]

    def _state(self) -> dict[str, Any]:
        if getattr(self, "form_", "items") == "users":
            return {"pairs": self.pairs, "user_basis": self.user_basis, "pair_solution": self.pair_solution,
                    "lam": self.lam}  # fmt: skip
        return {"similarity": self.similarity, "pairs": self.pairs, "pair_weights": self.pair_weights}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        if "user_basis" in arrays:
            self.form_ = "users"
            self.similarity = None
            self.pairs = np.asarray(arrays["pairs"], dtype=np.int32).reshape(-1, 2)
            self.pair_weights = np.zeros((0, self.n_items), dtype=np.float32)
            self.user_basis, self.lam = arrays["user_basis"], arrays["lam"]
            self.pair_solution = sp.csr_matrix(arrays["pair_solution"], dtype=np.float32)
            return
        self.form_ = "items"
        self.similarity = arrays["similarity"]
        self.pairs = np.asarray(arrays["pairs"], dtype=np.int32).reshape(-1, 2)
        self.pair_weights = np.asarray(arrays["pair_weights"], dtype=np.float32).reshape(len(self.pairs), self.n_items)


# ================================================================= ADMM SLIM


class ADMMSLIMParams(Params):
    l1: float = Field(3.0, ge=0, description="L1 (sparsity) penalty")
    l2: float = Field(500.0, ge=0, description="L2 penalty")
    rho: float = Field(3000.0, gt=0, description="ADMM penalty parameter")
    iterations: int = Field(15, ge=1, description="ADMM iterations (one items^3 product each)")
    nonneg: bool = Field(True, description="constrain the weights to be non-negative")
    topk: int = Field(0, ge=0, description="keep only the k largest weights per item column (0: all)")
    max_density: float = Field(0.1, ge=0, le=1, description="store the weights sparse (CSR) at or below this density")


def admm_slim_weights(
    X: sp.csr_matrix, l1: float, l2: float, rho: float, iterations: int, nonneg: bool = True
) -> np.ndarray:
    """Dense float32 C (items x items): zero diagonal, L1-sparse, optionally non-negative."""
    G = gram(X)
    n = G.shape[0]
    di = np.diag_indices(n)
    G[di] += np.float32(l2 + rho)
    P = spd_inverse(G)  # in G's memory
    dP = np.diag(P).copy()
    rho32 = np.float32(rho)
    thr = np.float32(l1 / rho)
    shift = np.float32(l2 + rho)
    C = np.zeros((n, n), dtype=np.float32)
    Gam = np.zeros((n, n), dtype=np.float32)
    B = np.empty((n, n), dtype=np.float32)
    T = np.empty((n, n), dtype=np.float32)
    for _ in range(iterations):
        # B~ = P G + P (rho C - Gamma) = P (rho C - Gamma - (l2 + rho) I) + I
        np.multiply(C, rho32, out=T)
        T -= Gam
        T[di] -= shift
        np.matmul(P, T, out=B)
        B[di] += 1.0
        gamma = np.diag(B) / dP
        np.multiply(P, gamma[None, :], out=T)
        B -= T
        B[di] = 0.0
        # C = soft-threshold(B + Gamma / rho, l1 / rho) (then >= 0)
        np.divide(Gam, rho32, out=C)
        C += B
        if nonneg:
            C -= thr
            np.maximum(C, 0.0, out=C)
        elif thr > 0:
            np.abs(C, out=T)
            T -= thr
            np.maximum(T, 0.0, out=T)
            np.copysign(T, C, out=C)
        # Gamma += rho (B - C)
        np.subtract(B, C, out=T)
        T *= rho32
        Gam += T
    C[di] = 0.0
    return C


def prune_columns(S: np.ndarray, k: int) -> np.ndarray:
    """Zero all but the ``k`` largest-magnitude entries of each column of ``S`` (in place; ties at the cut are kept).

    Sparsification of a weight matrix, not a ranking (that is :func:`toprec.recommend.topk_rows`).
    """
    n = S.shape[0]
    if k <= 0 or k >= n:
        return S
    A = np.abs(S)
    cut = np.partition(A, n - k, axis=0)[n - k]  # k-th largest magnitude per column
    S[A < cut[None, :]] = 0.0
    return S


@register
class ADMMSLIM(ItemItemRecommender):
    """ADMM SLIM: sparse, non-negative, zero-diagonal item-item weights (L1 + L2) by ADMM."""

    name = "admm-slim"
    Params = ADMMSLIMParams
    search_space = {
        "l1": ("log_float", 0.1, 100.0),
        "l2": ("log_float", 1.0, 1e4),
        "rho": ("log_float", 10.0, 1e5),
        "iterations": ("int", 10, 60),
        "nonneg": ("categorical", [True, False]),
    }

    def _fit(self, X, train) -> None:
        p = self.params
        C = _ensure_pd(self.name, admm_slim_weights, X, p.l1, p.l2, p.rho, p.iterations, p.nonneg)
        prune_columns(C, p.topk)
        nnz = np.count_nonzero(C)
        if nnz <= p.max_density * C.size:
            S = sp.csr_matrix(C)
            S.sort_indices()
            self.similarity = S
        else:
            self.similarity = C
