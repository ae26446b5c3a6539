"""Models: ``models.get(name, **params)`` and ``models.list()``."""

from .base import ItemItemRecommender, Recommender
from .registry import get, get_class, list, parse_params, register

__all__ = ["Recommender", "ItemItemRecommender", "get", "get_class", "list", "parse_params", "register"]
