"""Matrix factorisation models from the ``implicit`` library (CPU): iALS, BPR, LMF.

The ``implicit`` estimators only *train*: toprec keeps their two factor arrays
(float32) and scores ``user_factors[users] @ item_factors.T`` itself, so
recommending, masking seen items, cold users, save/load (safetensors) all go
through the shared contract and never through ``implicit``'s own ``recommend``.

Training users keep their learned factors (an explicit ``history`` for them
only changes which items are masked). Users without learned factors — unknown
users (index -1 or >= n_users) and users with no training events (strong
generalization keeps their index but trains without them) — are folded in
from the ``history`` passed to ``recommend``/``score``:

* ``ials``: the exact least-squares user solve against the fixed item factors,
  ``x_u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u`` with ``C_u = alpha`` on the
  history items and 1 elsewhere (one ALS half step), done by ``implicit``'s
  native batched solver (``recalculate_user``) over the whole batch.
* ``bpr``/``lmf``: there is no principled closed-form fold-in for these SGD
  models; the user vector is the mean of the history items' latent vectors,
  rescaled to the average norm of the learned user vectors, with the bias
  columns set as ``implicit`` sets them for users (so item biases still count).
  On held-out competition users the rescaling beats the plain mean clearly.

Any user whose history is empty (none given and none in training, or an empty
row given explicitly) gets popularity, as the shared contract asks.

Scores are ``U @ V.T`` in float64 rounded to float32 so that a user's scores do
not depend on the batch around them (a float32 GEMM's rounding does).

Only the CPU implementations are wrapped. Everything that touches ``implicit``
goes through :meth:`MatrixFactorization._estimator` so a ``device`` parameter
(GPU estimators, cupy factors converted with ``.to_numpy()``) can be added there.
"""

from __future__ import annotations

import abc
import warnings
from typing import Any, ClassVar, Literal, Optional

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .base import Params, Recommender
from .registry import register

_THREADS_DOC = "threads for fitting (0 = all cores)"
_HOGWILD_DOC = (
    "threads for fitting (0 = all cores). SGD with several threads is Hogwild (lock-free), so results "
    "then vary from run to run; the default 1 makes a fixed random_state reproducible"
)


def _binary(X: sp.csr_matrix) -> sp.csr_matrix:
    """A float32 CSR copy of ``X`` with duplicates merged and every stored value 1."""
    X = sp.csr_matrix(
        (np.ones(len(X.indices), dtype=np.float32), np.array(X.indices, dtype=np.int32), np.array(X.indptr)),
        shape=X.shape,
    )
    X.sum_duplicates()  # also sorts the column indices
    X.data[:] = 1.0
    X.eliminate_zeros()
    return X


_CONTROLLER = None


class _Quiet:
    """BLAS limited to one thread (implicit's advice: its own threads do the work) and its warnings off."""

    def __enter__(self):
        global _CONTROLLER
        from threadpoolctl import ThreadpoolController

        if _CONTROLLER is None:  # scanning the loaded libraries costs milliseconds: once
            _CONTROLLER = ThreadpoolController()
        self._limits = _CONTROLLER.limit(limits=1, user_api="blas")
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", module=r"implicit(\..*)?")
        warnings.filterwarnings("ignore", message=r".*(OpenBLAS|MKL|BLAS).*threads.*")
        return self

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        self._limits.restore_original_limits()
        return False


class MFParams(Params):
    factors: int = Field(64, ge=1, le=4096, description="latent factors")
    regularization: float = Field(0.01, ge=0, description="L2 regularisation of the factors")
    iterations: int = Field(15, ge=1, le=10_000, description="training iterations (epochs)")
    random_state: int = Field(0, ge=0, description="seed of the factor initialisation and sampling")
    num_threads: int = Field(0, ge=0, description=_THREADS_DOC)


class MatrixFactorization(Recommender):
    """Shared part of the ``implicit`` wrappers: fit, dot-product scores, fold-in, state."""

    fold_in: ClassVar[str] = "estimate"
    user_factors: np.ndarray
    item_factors: np.ndarray

    # ----------------------------------------------------------- implicit
    @abc.abstractmethod
    def _estimator(self):
        """A new, unfitted ``implicit`` CPU estimator with this model's parameters."""

    def _user_items(self, B: sp.csr_matrix) -> sp.csr_matrix:
        """The matrix the estimator fits, from the binary training matrix (its values are confidences)."""
        return B

    def _fit(self, X, train) -> None:
        self._trained = None  # a refit may bring other users
        user_items = self._user_items(_binary(X))
        with _Quiet():
            est = self._estimator()
            est.fit(user_items, show_progress=False)
        self._set_factors(est.user_factors, est.item_factors)

    def _set_factors(self, user_factors, item_factors) -> None:
        # CPU estimators hold numpy arrays; a GPU one would need .to_numpy() here
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self._trained = None
        self._folder = None
        self._item64 = None
        self._norm = None

    # ------------------------------------------------------------- scores
    #: items per block of the float64 product (bounds its temporary: users x block x 8 bytes)
    SCORE_BLOCK = 2048

    def _item_factors64(self) -> np.ndarray:
        V = getattr(self, "_item64", None)
        if V is None or V.shape != self.item_factors.shape:
            self._item64 = V = self.item_factors.astype(np.float64)
        return V

    def _dot(self, U: np.ndarray) -> np.ndarray:
        """``U @ item_factors.T`` as float32, identical for a user whatever the batch around it.

        A float32 GEMM's rounding depends on the batch shape (kernel blocking, GEMV for one
        row), so the same user could score differently in batches of 1 and 1000. The
        products of float32 numbers are exact in float64 and the float64 sums differ across
        kernels only around 1e-16 relative, far below float32 rounding: the float32 result
        is the same for any batch (about 3x the cost of sgemm, still BLAS).
        """
        V = self._item_factors64()
        U = np.asarray(U, dtype=np.float64)
        out = np.empty((U.shape[0], V.shape[0]), dtype=np.float32)
        for s in range(0, V.shape[0], self.SCORE_BLOCK):
            out[:, s : s + self.SCORE_BLOCK] = U @ V[s : s + self.SCORE_BLOCK].T
        return out

    def _trained_users(self) -> np.ndarray:
        """Per user index: did the user have training events (so learned factors)?"""
        trained = getattr(self, "_trained", None)
        if trained is None or len(trained) != self.n_users:
            self._trained = trained = np.diff(self.train_matrix.indptr) > 0
        return trained

    @abc.abstractmethod
    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """User factors (len(history), d) for users known only by a (non-empty) history."""

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        known = (users >= 0) & (users < self.n_users)
        trained = np.zeros(len(users), dtype=bool)
        trained[known] = self._trained_users()[users[known]]
        has_history = np.diff(history.indptr) > 0
        U = np.zeros((len(users), self.user_factors.shape[1]), dtype=np.float64)
        learned = trained & has_history
        U[learned] = self.user_factors[users[learned]]
        fold = np.flatnonzero(~trained & has_history)
        if len(fold):
            U[fold] = self._fold_in(_binary(history[fold]))
        scores = self._dot(U)
        # an empty history means popularity, for known users too (the shared contract asks it;
        # the base class only does it for unknown users of models that are not history-based)
        cold = ~has_history
        if cold.any():
            scores[cold] = self.item_popularity
        return scores

    # -------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self._set_factors(arrays["user_factors"], arrays["item_factors"])


# ---------------------------------------------------------------- iALS
#: ``regularization=None`` for iALS: AUTO_REG_SCALE * (users with training events) ** AUTO_REG_POWER
AUTO_REG_SCALE = 1.6
AUTO_REG_POWER = 0.4


class IALSParams(MFParams):
    factors: int = Field(128, ge=1, le=4096, description="latent factors")
    regularization: Optional[float] = Field(
        None,
        ge=0,
        description="L2 regularisation. implicit does not scale it with the data, and the best value grows with "
        "the number of users; None = 1.6 * n_users ** 0.4 (users with training events: about 25 on "
        "MovieLens-100K, 100 at the competition's 31k users), an empirical rule from validation splits",
    )
    alpha: float = Field(
        3.0, gt=0, description="confidence of an observed event (implicit 0.7: c_ui = alpha on a binary matrix; "
        "unobserved pairs weigh 1)"
    )
    iterations: int = Field(15, ge=1, le=10_000, description="ALS sweeps (users then items)")
    weighting: Literal["none", "bm25"] = Field(
        "none",
        description="confidence of each observed pair: none = alpha; bm25 = alpha x BM25(item idf, user length) "
        "scaled to mean 1 over the training pairs (k1 100, b 0.8; a new user's history is weighted with the "
        "training's idf and mean length). Last.fm-2K validation: 0.1683 vs 0.1654 (factors 128, reg 50, alpha "
        "10); ML-100K and the competition sample: lower (popular items matter there)",
    )
    use_cg: bool = Field(True, description="conjugate-gradient solver (fast); False = exact Cholesky solves")
    num_threads: int = Field(0, ge=0, description=_THREADS_DOC + "; ALS is deterministic for any count")


@register
class IALS(MatrixFactorization):
    """iALS (Hu, Koren & Volinsky 2008) via implicit's AlternatingLeastSquares; folds in new users exactly."""

    name = "ials"
    Params = IALSParams
    # one thread: thread wake-ups cost more than tiny fits (ALS results do not depend on the count)
    search_space = {
        "factors": ("log_int", 16, 512),
        "regularization": ("log_float", 0.1, 1000.0),
        "alpha": ("log_float", 0.1, 100.0),
        "iterations": ("int", 5, 50),
        "weighting": ("categorical", ("none", "bm25")),
    }

    @property
    def regularization(self) -> float:
        """The regularisation used: the parameter, or the rule of thumb when it is None."""
        if self.params.regularization is not None:
            return float(self.params.regularization)
        n = int(self._trained_users().sum())
        return float(AUTO_REG_SCALE * max(n, 1) ** AUTO_REG_POWER)

    # ------------------------------------------------------------- BM25 confidences
    BM25_K1 = 100.0
    BM25_B = 0.8

    def _user_items(self, B: sp.csr_matrix) -> sp.csr_matrix:
        self._bm25 = None
        if self.params.weighting == "none":
            return B
        n_users = max(int((np.diff(B.indptr) > 0).sum()), 1)
        df = np.bincount(B.indices, minlength=B.shape[1]).astype(np.float64)
        # implicit's bm25_weight idf, kept positive (an item every user has would get a weight <= 0)
        idf = np.maximum(np.log(float(n_users)) - np.log1p(df), 1e-3)
        lengths = np.diff(B.indptr).astype(np.float64)
        avg_len = float(lengths[lengths > 0].mean()) if (lengths > 0).any() else 1.0
        self._bm25 = np.concatenate([idf, [avg_len, 1.0]])
        W = self._weighted(B)
        self._bm25[-1] = float(W.data.mean()) if W.nnz else 1.0
        W.data /= self._bm25[-1]
        return W

    def _weighted(self, B: sp.csr_matrix) -> sp.csr_matrix:
        """A binary CSR's BM25 confidences (the training's idf, mean length and scale; rows weighted alone)."""
        idf, avg_len, scale = self._bm25[:-2], self._bm25[-2], self._bm25[-1]
        lengths = np.diff(B.indptr).astype(np.float64)
        norm = (1.0 - self.BM25_B) + self.BM25_B * lengths / avg_len
        rows = np.repeat(np.arange(B.shape[0]), np.diff(B.indptr))
        k1 = self.BM25_K1
        data = (k1 + 1.0) / (k1 * norm[rows] + 1.0) * idf[B.indices] / scale
        return sp.csr_matrix((data.astype(np.float32), B.indices.copy(), B.indptr.copy()), shape=B.shape)

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        if getattr(self, "_bm25", None) is not None:
            state["bm25"] = self._bm25
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        super()._set_state(arrays)
        self._bm25 = np.asarray(arrays["bm25"], dtype=np.float64) if "bm25" in arrays else None

    def _estimator(self):
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        return AlternatingLeastSquares(
            factors=p.factors,
            regularization=self.regularization,
            alpha=p.alpha,
            dtype=np.float32,
            use_cg=p.use_cg,
            iterations=p.iterations,
            num_threads=p.num_threads,
            random_state=p.random_state,
        )

    #: fold in batches at least this large with ``num_threads`` threads, smaller ones with one
    FOLD_IN_PARALLEL = 256

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        # one exact ALS user step against the fixed item factors, in implicit's native batched solver
        folder = getattr(self, "_folder", None)
        if folder is None:
            with _Quiet():
                folder = self._estimator()
            # implicit's solver wants a writable buffer (a memory-mapped model's arrays are read-only)
            V = self.item_factors
            folder.item_factors = V if V.flags.writeable else np.array(V)
            self._folder = folder
        n = history.shape[0]
        # a small batch is not worth waking a thread team (tens of ms on a busy machine)
        folder.num_threads = 1 if n < self.FOLD_IN_PARALLEL else self.params.num_threads
        if getattr(self, "_bm25", None) is not None:
            history = self._weighted(history)
        return np.asarray(folder.recalculate_user(np.arange(n), history), dtype=np.float32)


# -------------------------------------------------------------- BPR / LMF
class _SGDFactorization(MatrixFactorization):
    """BPR and LMF: SGD models with bias columns; fold-in = rescaled mean of history item vectors."""

    #: columns of a user vector that implicit fixes (not learned): {column: value}
    fixed_user_columns: ClassVar[dict[int, float]] = {}

    def _latent_columns(self) -> np.ndarray:
        d = self.user_factors.shape[1]
        keep = np.ones(d, dtype=bool)
        keep[[c % d for c in self.fixed_user_columns]] = False
        return keep

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        # float64 throughout: row-wise float32 reductions can round differently with the row's
        # place in the batch (SIMD alignment), and a user's scores must not depend on the batch
        latent = self._latent_columns()
        counts = np.diff(history.indptr).astype(np.float64)
        U = np.asarray(sp.csr_matrix(history, dtype=np.float64) @ self._item_factors64()) / counts[:, None]
        # a mean of item vectors is much shorter than a learned user vector: match the average
        # learned norm so the latent part keeps its weight against the item bias
        U[:, latent] *= self._fold_in_norm() / np.maximum(np.linalg.norm(U[:, latent], axis=1, keepdims=True), 1e-12)
        for col, value in self.fixed_user_columns.items():
            U[:, col] = value
        return U

    def _fold_in_norm(self) -> float:
        """Mean norm of the learned (latent part of the) user vectors of users with training events."""
        norm = getattr(self, "_norm", None)
        if norm is None:
            trained = self._trained_users()
            ref = self.user_factors[trained] if trained.any() else self.user_factors
            ref = ref[:, self._latent_columns()].astype(np.float64)
            self._norm = norm = float(np.linalg.norm(ref, axis=1).mean()) if len(ref) else 1.0
        return norm


class BPRParams(MFParams):
    factors: int = Field(64, ge=1, le=4096, description="latent factors (implicit adds an item-bias column)")
    learning_rate: float = Field(0.01, gt=0, le=10, description="SGD learning rate")
    regularization: float = Field(0.01, ge=0, description="L2 regularisation of the factors")
    iterations: int = Field(60, ge=1, le=10_000, description="epochs (one epoch samples as many triples as events)")
    verify_negative_samples: bool = Field(True, description="resample negatives the user has seen (better, slower)")
    num_threads: int = Field(1, ge=0, description=_HOGWILD_DOC)


@register
class BPR(_SGDFactorization):
    """BPR (Rendle et al. 2009) via implicit's BayesianPersonalizedRanking; new users: mean of item vectors."""

    name = "bpr"
    Params = BPRParams
    fixed_user_columns = {-1: 1.0}  # user side of the item bias
    search_space = {
        "factors": ("log_int", 16, 512),
        "regularization": ("log_float", 1e-4, 1.0),
        "learning_rate": ("log_float", 1e-3, 0.3),
        "iterations": ("log_int", 10, 500),
    }

    def _estimator(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        return BayesianPersonalizedRanking(
            factors=p.factors,
            learning_rate=p.learning_rate,
            regularization=p.regularization,
            dtype=np.float32,
            iterations=p.iterations,
            num_threads=p.num_threads,
            verify_negative_samples=p.verify_negative_samples,
            random_state=p.random_state,
        )


class LMFParams(MFParams):
    factors: int = Field(32, ge=1, le=4096, description="latent factors (implicit adds two bias columns)")
    learning_rate: float = Field(1.0, gt=0, le=100, description="learning rate (AdaGrad step)")
    regularization: float = Field(3.0, ge=0, description="L2 regularisation of the factors")
    iterations: int = Field(30, ge=1, le=10_000, description="epochs")
    neg_prop: int = Field(30, ge=1, le=1000, description="negative samples per positive event")
    num_threads: int = Field(1, ge=0, description=_HOGWILD_DOC)


@register
class LMF(_SGDFactorization):
    """Logistic MF (Johnson 2014) via implicit's LogisticMatrixFactorization; new users: mean of item vectors."""

    name = "lmf"
    Params = LMFParams
    fixed_user_columns = {-2: 1.0, -1: 0.0}  # user side of the item bias; the user's own bias (ranking-neutral)
    search_space = {
        "factors": ("log_int", 16, 512),
        "regularization": ("log_float", 1e-2, 30.0),
        "learning_rate": ("log_float", 1e-2, 3.0),
        "iterations": ("int", 5, 100),
        "neg_prop": ("log_int", 1, 100),
    }

    def _estimator(self):
        from implicit.cpu.lmf import LogisticMatrixFactorization

        p = self.params
        return LogisticMatrixFactorization(
            factors=p.factors,
            learning_rate=p.learning_rate,
            regularization=p.regularization,
            dtype=np.float32,
            iterations=p.iterations,
            neg_prop=p.neg_prop,
            num_threads=p.num_threads,
            random_state=p.random_state,
        )
