"""EASE (Steck 2019): a closed-form linear item-item autoencoder.

B = argmin ||X - XB||^2 + l2 ||B||^2  s.t. diag(B) = 0
  = I - P diag(1 / diag(P)),   P = (X^T X + l2 I)^-1
The inverse is a float32 Cholesky (LAPACK potrf/potri), in place.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .base import ItemItemRecommender, Params
from .linalg import gram, spd_inverse
from .registry import register


class EASEParams(Params):
    l2: float = Field(500.0, gt=0, description="L2 regularisation added to the Gram diagonal")


@register
class EASE(ItemItemRecommender):
    """EASE: closed-form item-item model, the competition's strongest single model."""

    name = "ease"
    Params = EASEParams
    contract_params = {"l2": 50.0}
    search_space = {"l2": ("log_float", 1.0, 1e5)}

    def _fit(self, X, train) -> None:
        G = gram(X)
        G[np.diag_indices_from(G)] += np.float32(self.params.l2)
        P = spd_inverse(G)  # reuses G's memory
        d = np.diag(P).copy()
        P /= -d[None, :]
        P[np.diag_indices_from(P)] = 0.0
        self.similarity = P
