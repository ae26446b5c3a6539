"""Models: ``models.get(name, **params)``, ``models.list()`` and ``models.load(path)``."""

from __future__ import annotations

import os

from .base import ItemItemRecommender, Recommender
from .registry import get, get_class, list, parse_params, register


def load(path: str | os.PathLike, mmap: bool = False) -> Recommender:
    """A model saved by ``model.save(path)`` (or ``toprec submit --save-model``), ready to ``recommend``.

    The same as ``Recommender.load(path, mmap)``: the model's class is read from ``model.json``.
    """
    return Recommender.load(path, mmap=mmap)


__all__ = ["Recommender", "ItemItemRecommender", "get", "get_class", "list", "load", "parse_params", "register"]
