"""Most-popular baseline."""

from __future__ import annotations

import numpy as np

from .base import Params, Recommender
from .registry import register


class PopularityParams(Params):
    pass


@register
class Popularity(Recommender):
    """Most popular items (by number of users), the same list for everyone."""

    name = "popularity"
    Params = PopularityParams

    def _fit(self, X, train) -> None:
        pass  # the base class already keeps item_popularity

    def _score(self, users, history):
        return np.broadcast_to(self.item_popularity, (len(users), self.n_items)).copy()
