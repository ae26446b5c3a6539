"""EASE (Steck 2019): a closed-form linear item-item autoencoder.

B = argmin ||X - XB||^2 + l2 ||B||^2  s.t. diag(B) = 0
  = I - P diag(1 / diag(P)),   P = (X^T X + l2 I)^-1

Two exact forms, the cheaper picked automatically:

- item space (items <= users): P by a float32 Cholesky of the items x items
  Gram matrix (LAPACK potrf/potri, in place); B stored dense.
- user space (users < items): by the Woodbury identity
  P = (I - X^T K X) / l2 with K = (l2 I + X X^T)^-1, a users x users solve.
  B is never formed: with M = K X (users x items) and d = diag(P),
  x B = x - (x - (x X^T) M) / (l2 d), so a 2k-user, 18k-item dataset costs a
  2k solve and a 2k x 18k matrix instead of an 18k x 18k inverse.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .. import parallel
from ..errors import ToprecError
from ..recommend import topk
from .base import ItemItemRecommender, Params
from .linalg import gram, spd_inverse
from .registry import register


class EASEParams(Params):
    l2: float = Field(500.0, gt=0, description="L2 regularisation added to the Gram diagonal")
    form: Literal["auto", "items", "users"] = Field(
        "auto", description="solve in item space, user space (Woodbury), or pick the smaller (auto)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="cuda: fit and score with torch on the GPU (item-space form); auto: cuda when available"
    )


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


#: device files of GPU drivers torch can use: NVIDIA, NVIDIA Jetson, AMD ROCm, WSL
_GPU_DEVICE_FILES = (
    "/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvmap", "/dev/nvgpu", "/dev/kfd", "/dev/dxg",
)  # fmt: skip
#: PCI vendor ids of NVIDIA and AMD/ATI graphics (AMD's CPUs and chipsets are 0x1022)
_GPU_PCI_VENDORS = {"0x10de", "0x1002"}
_PCI_DEVICES = "/sys/bus/pci/devices"


def _surely_no_gpu() -> bool:
    """True only on Linux with no GPU device file and no NVIDIA/AMD graphics on the PCI bus.

    A driver that loads on first use still shows its card on the PCI bus, so
    "no" here means torch could not find a GPU either.
    """
    if not sys.platform.startswith("linux"):
        return False
    if any(os.path.exists(p) for p in _GPU_DEVICE_FILES):
        return False
    try:
        for dev in os.scandir(_PCI_DEVICES):
            try:
                with open(os.path.join(dev.path, "vendor")) as fh:
                    if fh.read().strip().lower() in _GPU_PCI_VENDORS:
                        return False
            except OSError:
                continue
    except OSError:
        return False  # cannot tell: let torch decide
    return True


def cuda_available(quick: bool = False) -> bool:
    """Whether torch can use a CUDA (or ROCm) GPU.

    ``quick``: answer False without importing torch (2+ s) when this Linux
    machine surely has no GPU (:func:`_surely_no_gpu`); ``device=auto`` uses
    it, an explicit ``device=cuda`` asks torch.
    """
    if quick and "torch" not in sys.modules and _surely_no_gpu():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def ease_item_space_torch(X: sp.csr_matrix, l2: float, device: str, chunk_bytes: int = 1 << 30):
    """Item-space EASE with torch on ``device``: dense Gram in row chunks, Cholesky inverse.

    Each chunk of user rows is scattered into a dense block on the device from
    the CSR arrays (only the nonzeros cross the bus), so the host never builds
    a dense users x items matrix. Returns B as a float32 tensor on ``device``
    (zero diagonal).
    """
    import torch

    from ..device import cuda_matmul_tf32, dense_rows

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


@register
class EASE(ItemItemRecommender):
    """EASE: closed-form item-item model, the competition's strongest single model."""

    name = "ease"
    Params = EASEParams
    contract_params = {"l2": 50.0}
    search_space = {"l2": ("log_float", 1.0, 1e5)}

    def _fit(self, X, train) -> None:
        p = self.params
        form = p.form
        if form == "auto":
            form = "items" if X.shape[1] <= X.shape[0] else "users"
        self.form_ = form
        device = p.device
        if device == "auto":
            device = "cuda" if form == "items" and cuda_available(quick=True) else "cpu"
        elif device == "cuda" and not cuda_available():
            raise ToprecError("model 'ease': device 'cuda' needs torch with a CUDA GPU, and none is available")
        self.device_ = device
        self._B_dev = None
        if form == "items" and device == "cuda":
            self._B_dev = ease_item_space_torch(X, p.l2, device)
            self.similarity = None  # copied from the GPU when first asked for (save, host scoring)
        elif form == "items":
            self.similarity = ease_item_space(X, p.l2)
        else:
            self.similarity = None
            self.user_basis, self.diag_p = ease_user_space(X, p.l2)

    @property
    def similarity(self):
        sim = self.__dict__.get("_similarity")
        if sim is None and self.__dict__.get("_B_dev") is not None:
            sim = self.__dict__["_similarity"] = self._B_dev.cpu().numpy()
        return sim

    @similarity.setter
    def similarity(self, value) -> None:
        self.__dict__["_similarity"] = value

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        if self.form_ == "items" and getattr(self, "_B_dev", None) is not None:
            return self._score_tensor(users, history).cpu().numpy()
        if self.form_ == "items":
            return super()._score(users, history)
        H = sp.csr_matrix(history, dtype=np.float32)
        A = (H @ self._basis_rows().T).toarray()  # (b, n_train_users): x X^T
        xp = H.toarray()
        xp -= A @ self.user_basis  # x - x X^T K X  (= l2 * x P)
        xp /= -(self.params.l2 * self.diag_p)[None, :]
        xp += H.toarray()
        return xp

    def _basis_rows(self) -> sp.csr_matrix:
        """The rows ``user_basis`` was solved over (the training users)."""
        return self.train_matrix

    #: rows of every scoring product on the GPU: batches are padded to this, so each user's scores come
    #: from the same cuBLAS kernel whatever the batch size or the number of users asked for
    DEVICE_ROWS = 4096

    def _score_tensor(self, users: np.ndarray, history: sp.csr_matrix):
        """Scores on the GPU holding B: the history scattered there, one full-float32 product of DEVICE_ROWS rows."""
        import torch

        from ..device import cuda_matmul_tf32, dense_rows

        B = self._B_dev
        history = sp.csr_matrix(history)
        out = []
        with cuda_matmul_tf32(torch, False):  # B must not be cut to TF32's 10 bits, whatever the caller set
            for s in range(0, max(1, history.shape[0]), self.DEVICE_ROWS):
                part = history[s : s + self.DEVICE_ROWS]
                H = torch.zeros((self.DEVICE_ROWS, B.shape[0]), dtype=torch.float32, device=B.device)
                dense_rows(part, B.device, torch.float32, out=H[: part.shape[0]])
                out.append((H @ B)[: part.shape[0]])
        return out[0] if len(out) == 1 else torch.cat(out)

    def _recommend_on_device(self, users, hist, k):
        """When fitted on CUDA, scoring and top-k run there, in batches of ``DEVICE_ROWS`` whatever
        ``batch_size`` and ``memory_budget`` say, so the lists do not depend on them."""
        if getattr(self, "_B_dev", None) is None:
            return None
        return topk(
            self._score_tensor, users, self.n_items, k, hist, hist, memory_budget=self.DEVICE_ROWS * self.n_items * 16,
            popularity=self.item_popularity, device=self._B_dev.device,
        )  # fmt: skip

    def _host_scoring(self, n_rows: int):
        # forked workers cannot use CUDA once it has started here
        return parallel.single_process() if getattr(self, "_B_dev", None) is not None else super()._host_scoring(n_rows)

    def _state(self) -> dict[str, Any]:
        if self.form_ == "items":
            return {"similarity": self.similarity}
        return {"user_basis": self.user_basis, "diag_p": self.diag_p}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self._B_dev = None  # a loaded model scores on the host
        if "similarity" in arrays:
            self.form_ = "items"
            self.similarity = arrays["similarity"]
        else:
            self.form_ = "users"
            self.similarity = None
            self.user_basis = arrays["user_basis"]
            self.diag_p = arrays["diag_p"]


# ---------------------------------------------------------------- side information
class CEASEParams(EASEParams):
    side_weight: float = Field(
        0.03, ge=0,
        description="weight of the item side information, relative to l2: two items sharing one feature value "
        "(a director, a genre...) get side_weight * l2 added to their co-occurrence",
    )  # fmt: skip
    features: str = Field(
        "all", description="comma-separated side features to use (genres,directors,writers,years...); all = every one"
    )
    side_norm: Literal["none", "idf"] = Field(
        "none", description="idf: a value shared by c items counts 1/c (rare values weigh more); none: every value 1"
    )


def side_rows(train, names: str, weight: float, norm: str, model: str = "cease") -> tuple[sp.csr_matrix, list[str]]:
    """The item side information as extra rows of the interaction matrix (values x items, float32).

    Row ``v`` is ``sqrt(weight)`` on every item that has value ``v`` (scaled
    by ``1/sqrt(c_v)`` under ``idf``), so stacking them under ``X`` adds
    ``weight * F F^T`` to the Gram matrix ``X^T X``: collective EASE.
    """
    available = sorted(train.features)
    if names.strip().lower() == "all":
        chosen = available
    else:
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        missing = [n for n in chosen if n not in train.features]
        if missing:
            raise ToprecError(
                f"model '{model}': the dataset has no side feature {', '.join(map(repr, missing))} "
                f"(it has: {', '.join(available) or 'none'})"
            )
    n_items = train.n_items
    blocks = []
    for name in chosen:
        F = sp.csc_matrix(train.features[name].matrix, dtype=np.float32)  # items x values
        F = F[:, np.diff(F.indptr) > 0]  # values no item has add nothing
        if norm == "idf":
            F = F @ sp.diags((1.0 / np.sqrt(np.diff(F.indptr))).astype(np.float32))
        blocks.append(sp.csr_matrix(F.T))
    if not blocks or weight == 0:
        return sp.csr_matrix((0, n_items), dtype=np.float32), chosen
    S = sp.vstack(blocks, format="csr", dtype=np.float32)
    S.data *= np.float32(np.sqrt(weight))
    return S, chosen


@register
class CEASE(EASE):
    """Collective EASE (Jeunen et al., RecSys 2020): EASE on the interactions with the items' side
    information stacked under them as extra rows, one per feature value (director, writer, genre, year).

    B = I - P diag(1/diag(P)),  P = (X^T X + side_weight * l2 * F F^T + l2 I)^-1

    Items that share a director or writer are pulled together even where few
    users saw both, which helps the long tail. Scoring is EASE's (``X B``), so
    unknown users, fold-in histories and the GPU path work the same. On a
    dataset without side information it is EASE (with a warning).
    """

    name = "cease"
    Params = CEASEParams
    contract_params = {"l2": 50.0}
    search_space = {"l2": ("log_float", 1.0, 1e5), "side_weight": ("log_float", 1e-3, 1.0)}

    def _fit(self, X, train) -> None:
        p = self.params
        S, self.side_features_ = side_rows(train, p.features, p.side_weight * p.l2, p.side_norm, self.name)
        if not self.side_features_:
            warnings.warn(f"model '{self.name}': no item side information in the dataset, fitting plain EASE",
                          stacklevel=3)  # fmt: skip
        self.side = S
        self.__dict__.pop("_basis", None)
        super()._fit(sp.vstack([sp.csr_matrix(X, dtype=np.float32), S], format="csr"), train)

    def _basis_rows(self) -> sp.csr_matrix:
        rows = self.__dict__.get("_basis")
        if rows is None:  # cached: the interactions and the side rows stacked (reset by fit and load)
            rows = self.__dict__["_basis"] = sp.vstack(
                [sp.csr_matrix(self.train_matrix, dtype=np.float32), self.side], format="csr"
            )
        return rows

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        if self.form_ == "users":
            state["side"] = self.side
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        super()._set_state(dict(arrays))
        self.__dict__.pop("_basis", None)
        self.side = arrays.get("side", sp.csr_matrix((0, self.n_items), dtype=np.float32))
