"""EASE (Steck 2019) and collective EASE with item side information: the model classes.

B = argmin ||X - XB||^2 + l2 ||B||^2  s.t. diag(B) = 0
  = I - P diag(1 / diag(P)),   P = (X^T X + l2 I)^-1

Two exact forms, the cheaper picked automatically: item space (items <=
users, B dense, on the host or on a GPU) and user space (users < items, by
the Woodbury identity: a 2k-user, 18k-item dataset costs a 2k solve and a
2k x 18k matrix instead of an 18k x 18k inverse). The solutions are in
:mod:`.ease_solve`; where they run, :func:`toprec.device.resolve_device`.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .. import parallel
from ..device import resolve_device
from ..errors import ToprecError
from ..recommend import topk
from .base import ItemItemRecommender, Params
from .ease_solve import (
    DEVICE_ROWS,
    ease_item_space,
    ease_item_space_torch,
    ease_user_space,
    ease_user_space_scores,
    scores_on_device,
)
from .registry import register


class EASEParams(Params):
    l2: float = Field(500.0, gt=0, description="L2 regularisation added to the Gram diagonal")
    form: Literal["auto", "items", "users"] = Field(
        "auto", description="solve in item space, user space (Woodbury), or pick the smaller (auto)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="cuda: fit and score with torch on the GPU (item-space form); auto: cuda when available"
    )


@register
class EASE(ItemItemRecommender):
    """EASE: closed-form item-item model, the competition's strongest single model.

    Fitted on CUDA (item form), B stays on the GPU (``_B_dev``) and scoring
    and ranking run there; ``similarity`` is copied to the host when first
    asked for (save, reports, host scoring).
    """

    name = "ease"
    Params = EASEParams
    search_space = {"l2": ("log_float", 1.0, 1e5)}
    #: rows of every scoring product on the GPU (see :func:`.ease_solve.scores_on_device`)
    DEVICE_ROWS = DEVICE_ROWS
    _B_dev = None  # B on the GPU when fitted there
    _similarity = None

    def _fit(self, X, train) -> None:
        p = self.params
        form = p.form
        if form == "auto":
            form = "items" if X.shape[1] <= X.shape[0] else "users"
        self.form_ = form
        self.device_ = resolve_device(p.device, self.name, gpu_useful=form == "items")
        self._B_dev = None
        if form == "items" and self.device_ == "cuda":
            self._B_dev = ease_item_space_torch(X, p.l2, self.device_)
            self.similarity = None  # copied from the GPU when first asked for (save, host scoring)
        elif form == "items":
            self.similarity = ease_item_space(X, p.l2)
        else:
            self.similarity = None
            self.user_basis, self.diag_p = ease_user_space(X, p.l2)

    @property
    def similarity(self):
        if self._similarity is None and self._B_dev is not None:
            self._similarity = self._B_dev.cpu().numpy()
        return self._similarity

    @similarity.setter
    def similarity(self, value) -> None:
        self._similarity = value

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        if self.form_ == "items" and self._B_dev is not None:
            return self._score_tensor(users, history).cpu().numpy()
        if self.form_ == "items":
            return super()._score(users, history)
        return ease_user_space_scores(history, self._basis_rows(), self.user_basis, self.diag_p, self.params.l2)

    def _product_similarity(self):
        # item form on the host: the scores are history @ B (the user form and the GPU score otherwise)
        if self.form_ != "items" or self._B_dev is not None or type(self)._score is not EASE._score:
            return None
        return self._dense_float32_similarity()

    def _basis_rows(self) -> sp.csr_matrix:
        """The rows ``user_basis`` was solved over (the training users)."""
        return self.train_matrix

    def _score_tensor(self, users: np.ndarray, history: sp.csr_matrix):
        return scores_on_device(self._B_dev, history, self.DEVICE_ROWS)

    def _recommend_on_device(self, users, hist, k):
        """When fitted on CUDA, scoring and top-k run there, in batches of ``DEVICE_ROWS`` whatever
        ``batch_size`` and ``memory_budget`` say, so the lists do not depend on them."""
        if self._B_dev is None:
            return None
        return topk(
            self._score_tensor, users, self.n_items, k, hist, hist, memory_budget=self.DEVICE_ROWS * self.n_items * 16,
            popularity=self.item_popularity, device=self._B_dev.device,
        )  # fmt: skip

    def _host_scoring(self, n_rows: int):
        # forked workers cannot use CUDA once it has started here
        return parallel.single_process() if self._B_dev is not None else super()._host_scoring(n_rows)

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
    _basis = None  # the rows user_basis was solved over, stacked when first needed
    search_space = {"l2": ("log_float", 1.0, 1e5), "side_weight": ("log_float", 1e-3, 1.0)}

    def _fit(self, X, train) -> None:
        p = self.params
        S, self.side_features_ = side_rows(train, p.features, p.side_weight * p.l2, p.side_norm, self.name)
        if not self.side_features_:
            warnings.warn(f"model '{self.name}': no item side information in the dataset, fitting plain EASE",
                          stacklevel=3)  # fmt: skip
        self.side = S
        self._basis = None
        super()._fit(sp.vstack([sp.csr_matrix(X, dtype=np.float32), S], format="csr"), train)

    def _basis_rows(self) -> sp.csr_matrix:
        if self._basis is None:  # the interactions and the side rows stacked (reset by fit and load)
            self._basis = sp.vstack([sp.csr_matrix(self.train_matrix, dtype=np.float32), self.side], format="csr")
        return self._basis

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        if self.form_ == "users":
            state["side"] = self.side
        return state

    def _set_state(self, arrays: dict[str, Any]) -> None:
        super()._set_state(dict(arrays))
        self._basis = None
        self.side = arrays.get("side", sp.csr_matrix((0, self.n_items), dtype=np.float32))
