"""A saved model folder or ensemble pipeline, with its id maps, for ``batch`` (``--save-model``'s folders).

The folder layout (``model.json``, ``arrays.safetensors``, ``ids.json``) is
:mod:`.serving`'s; this reads it as arrays (external id of each internal
user / item index) for writing many lists at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ToprecError
from .serving import IDS_FILE, MODEL_FILE, PIPELINE_FILE, read_ids


@dataclass
class SavedModel:
    model: object
    user_ids: np.ndarray  # external id of each internal user index (int64, or object of str)
    item_ids: np.ndarray
    path: Path


class SavedPipeline:
    """An ensemble pipeline folder (``toprec ensemble --save-model``, ``auto``'s ``OUT/model``) as one model.

    ``recommend(users, k)`` gives the lists ``toprec serve`` gives for those users, which are the
    offline ``Ensemble.recommend``'s (the members' candidates fused, or re-ranked); index -1 (a user
    the pipeline never saw) gets the members' lists for an empty history.
    """

    def __init__(self, servable):
        self.servable = servable
        self.n_users, self.n_items = servable.n_users, servable.n_items
        self.candidates = servable.candidates
        self.name = f"ensemble ({servable.method})"

    def recommend(self, users: np.ndarray, k: int = 10):
        users = np.asarray(users, dtype=np.int64)
        return self.servable.rank(users, [()] * len(users), None, k)


def _ids(values: list, kind: str) -> np.ndarray:
    if kind == "int":
        return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray(values, dtype=object)


def load_saved(path: str | os.PathLike, mmap: bool = True) -> SavedModel:
    """The model in folder ``path`` (arrays memory-mapped when ``mmap``) and its id maps; one-line errors."""
    from ..models.base import Recommender

    p = Path(path)
    if not p.exists():
        raise ToprecError(f"--model-dir {p}: no such folder")
    if not p.is_dir():
        raise ToprecError(f"--model-dir {p}: is a file, not a saved model folder")
    if (p / PIPELINE_FILE).exists() and not (p / MODEL_FILE).exists():
        from .serving import Servable

        model = SavedPipeline(Servable(p, mmap=mmap))
    else:
        model = Recommender.load(p, mmap=mmap)
    ids = read_ids(p, model.n_users, model.n_items)
    try:
        users, items = _ids(ids["users"], ids.get("user_type")), _ids(ids["items"], ids.get("item_type"))
    except (TypeError, ValueError) as exc:
        raise ToprecError(f"{p / IDS_FILE}: malformed ({exc})") from None
    return SavedModel(model, users, items, p)
