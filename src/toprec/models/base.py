"""The one model contract.

A model declares its hyperparameters as a pydantic ``Params`` class (types,
defaults, bounds: a wrong name or type is a one-line error), implements
``_fit`` and ``_score``, and names the arrays it learns in ``_state``. The
base class does everything else the same way for every model: recommending
through the shared batched top-k with seen items masked, cold users (unknown
or with an empty history) served by popularity, and save/load as
``model.json`` + ``arrays.safetensors`` (never pickle).
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..version import __version__
from ..errors import ToprecError
from ..io import atomic_dir
from ..memory import MemoryEstimate, check_fit
from .. import parallel, progress
from ..recommend import DEFAULT_MEMORY_BUDGET, Recommendations, batch_size_for, check_finite, seen_and_cold, topk
from . import kernels


#: the largest magnitude a float parameter may have: models compute in float32 (3.4e38)
FLOAT_PARAM_MAX = float(np.finfo(np.float32).max)


class Params(BaseModel):
    """Base for model hyperparameters: unknown keys are errors; floats finite and within float32."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _float32_range(cls, value: Any) -> Any:
        if isinstance(value, float) and abs(value) > FLOAT_PARAM_MAX:
            raise ValueError(f"out of range: the models compute in float32 (at most {FLOAT_PARAM_MAX:.3g})")
        return value


def _format_validation(model: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "?"
    if err["type"] == "extra_forbidden":
        return f"model '{model}': unknown parameter '{loc}'"
    value = err.get("input")
    return f"model '{model}': parameter '{loc}'={value!r}: {err['msg'].removeprefix('Value error, ')}"


FOLD_IN = ("history", "sequence", "estimate", "none")


class Recommender(abc.ABC):
    """Base class of every model. Subclasses set ``name`` and ``Params``."""

    name: ClassVar[str] = "base"
    Params: ClassVar[type[Params]] = Params
    #: how a user known only by a history (unknown, or no training events; ``history`` rows given
    #: to ``recommend``/``score``) is scored, i.e. how new users fold in without retraining:
    #: ``"history"``: scores come from the history's item set alone (a new user with a known user's
    #: history gets exactly the known user's list); ``"sequence"``: from the ordered history (the
    #: stored values of a ``history`` row give the order, see :meth:`histories`; with a known user's
    #: time-ordered history, exactly the known user's list); ``"estimate"``: a user representation
    #: is estimated from the history against the fixed item side (iALS: the exact least-squares
    #: solve); known users keep their learned one; ``"none"``: cannot, a one-line error.
    fold_in: ClassVar[str] = "history"
    #: ``fold_in == "history"`` (set for every subclass from ``fold_in``)
    history_based: ClassVar[bool] = True
    #: hyperparameter search space for tuning: name -> (kind, low, high) with kind in
    #: "float", "log_float", "int", "log_int", or ("categorical", [choices...])
    search_space: ClassVar[dict[str, tuple]] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if cls.fold_in not in FOLD_IN:
            raise TypeError(f"{cls.__name__}.fold_in must be one of {FOLD_IN}, not {cls.fold_in!r}")
        cls.history_based = cls.fold_in == "history"

    def __init__(self, **params: Any):
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ToprecError(_format_validation(self.name, exc)) from None
        self.fitted = False

    # ------------------------------------------------------------- contract
    def fit(self, train, valid=None, callback=None) -> "Recommender":
        """Learn from a :class:`~toprec.Dataset`.

        ``valid`` (a holdout) and ``callback`` are for epoch-trained models:
        ``callback(epoch, logs)`` is called after every epoch with a dict of
        floats (``loss``, ``recall@10`` on validation, ``seconds``); an exception
        raised by it stops training and propagates (Optuna pruning works so).
        ``self.history`` is the list of those dicts (empty for closed forms).
        """
        self.history: list[dict[str, float]] = []
        self.valid = valid
        self.callback = callback
        X = train.matrix
        check_fit(self.name, self.memory_estimate(X.shape[0], X.shape[1], X.nnz))  # before any allocation
        self.n_users, self.n_items = X.shape
        self.train_matrix = X
        self.item_popularity = np.asarray(train.item_counts, dtype=np.float32)
        try:
            self._fit(X, train)
        finally:
            self.valid = self.callback = None  # only for the duration of the fit
        self.fitted = True
        return self

    def memory_estimate(self, n_users: int, n_items: int, nnz: int) -> MemoryEstimate | None:
        """Estimated peak memory of a fit on a (n_users x n_items, nnz events) matrix, beyond the data.

        ``fit`` refuses with a one-line error when it exceeds :func:`toprec.memory.available`.
        None = unknown (no check). The estimates are in :mod:`toprec.models.memory`.
        """
        from .memory import estimate

        return estimate(self, n_users, n_items, nnz)

    @abc.abstractmethod
    def _fit(self, X: sp.csr_matrix, train) -> None:
        """Learn from the training matrix (users x items CSR) and the dataset."""

    @abc.abstractmethod
    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Scores (len(users), n_items) float32, writable. ``history`` rows align with users."""

    def _state(self) -> dict[str, np.ndarray]:
        """Arrays learned by ``_fit`` (saved with the model)."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    # ------------------------------------------------------------ shared
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ToprecError(f"model '{self.name}' is not fitted")

    def _history(self, users: np.ndarray, history: sp.csr_matrix | None) -> sp.csr_matrix:
        if history is not None:
            history = sp.csr_matrix(history, dtype=np.float32)
            if history.shape != (len(users), self.n_items):
                raise ValueError(f"history must be ({len(users)}, {self.n_items}), got {history.shape}")
            if self.fold_in == "none":
                known = (users >= 0) & (users < self.n_users)
                if ((np.diff(history.indptr) > 0) & ~known).any():
                    raise ToprecError(f"model '{self.name}' cannot fold in new users from a history; retrain with them")
            return history
        known = (users >= 0) & (users < self.n_users)
        rows = self.train_matrix[np.where(known, users, 0)]
        if not known.all():
            rows = sp.diags(known.astype(np.float32)) @ rows
            rows.eliminate_zeros()
        return sp.csr_matrix(rows)

    def histories(self, items: list) -> sp.csr_matrix:
        """A ``history`` matrix (one row per list) from lists of internal item indices, oldest first.

        Every stored value is 1 (each item once), except for models that read the order
        (``fold_in == "sequence"``): there the value is the item's position, 1 = oldest (a
        repeated item counts at its last position). What ``recommend(users, history=...)``
        expects for users known only by their histories.
        """
        lengths = np.fromiter((len(h) for h in items), dtype=np.int64, count=len(items))
        cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in items]) if len(items) else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(len(items), dtype=np.int64), lengths)
        if len(cols) and (cols.min() < 0 or cols.max() >= self.n_items):
            raise ToprecError(f"history item index out of range [0, {self.n_items})")
        pos = np.arange(len(cols), dtype=np.float64) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1.0
        if self.fold_in != "sequence":
            pos[:] = 1.0
        # keep the last occurrence of a repeated item: a COO -> CSR sum would add positions up
        last = np.ones(len(cols), dtype=bool)
        if len(cols):
            key = rows * self.n_items + cols
            order = np.lexsort((-np.arange(len(cols)), key))
            first_of_key = np.r_[True, key[order][1:] != key[order][:-1]]
            last[:] = False
            last[order[first_of_key]] = True
        return sp.csr_matrix((pos[last].astype(np.float32), (rows[last], cols[last])),
                             shape=(len(items), self.n_items), dtype=np.float32)  # fmt: skip

    def _score_with_fallback(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Scores, and popularity for users with no history (unknown, or no events), for every model."""
        scores = np.asarray(self._score(users, history), dtype=np.float32)
        return seen_and_cold(scores, history, self.item_popularity)

    def score(self, users, history: sp.csr_matrix | None = None) -> np.ndarray:
        """Dense scores for ``users`` (internal indices; -1 or out-of-range = unknown)."""
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        hist = self._history(users, history)
        return self._score_with_fallback(users, hist)

    def recommend(
        self,
        users=None,
        k: int = 10,
        exclude_seen: bool = True,
        history: sp.csr_matrix | None = None,
        batch_size: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> Recommendations:
        """Top-k items for ``users`` (default: all training users), best first.

        Items in a user's history (training events, or ``history`` rows when
        given) are never recommended when ``exclude_seen``. Unknown users and
        users with an empty history get the most popular items.
        """
        self._check_fitted()
        if k < 1:
            raise ToprecError(f"k must be >= 1, got {k}")
        users = np.arange(self.n_users) if users is None else np.atleast_1d(np.asarray(users, dtype=np.int64))
        hist = self._history(users, history)
        if exclude_seen:
            recs = self._recommend_on_device(users, hist, k)
            if recs is not None:
                return recs
        recs = self._recommend_fused(users, hist, k, exclude_seen, batch_size, memory_budget)
        if recs is not None:
            return recs
        with self._host_scoring(len(users)):
            return topk(
                self._ranking_scores,
                users,
                self.n_items,
                k,
                hist,
                hist if exclude_seen else None,
                batch_size=batch_size,
                memory_budget=memory_budget,
                description=f"{self.name}: recommend",
                popularity=self.item_popularity,
            )

    def _ranking_scores(self, users: np.ndarray, history: sp.csr_matrix):
        """The scores ``recommend`` ranks: ``_score``'s by default; a sparse model may return a scipy
        sparse block (unstored = 0), which the shared top-k ranks without densifying it."""
        return self._score(users, history)

    def _recommend_on_device(self, users: np.ndarray, hist: sp.csr_matrix, k: int) -> Recommendations | None:
        """Lists ranked on a GPU (``topk`` with a ``device``, seen items masked), or None to rank on the host."""
        return None

    def _host_scoring(self, n_rows: int) -> contextlib.AbstractContextManager:
        """The context host scoring runs in (e.g. no forked workers once CUDA or torch threads started)."""
        return contextlib.nullcontext()

    def _recommend_fused(self, users: np.ndarray, hist: sp.csr_matrix, k: int, exclude_seen: bool,
                         batch_size: int | None, memory_budget: int) -> Recommendations | None:  # fmt: skip
        """The same lists as the shared top-k from a compiled kernel that scores and ranks in one pass
        (:class:`ItemItemRecommender`), or None to use the shared top-k."""
        return None

    # ------------------------------------------------------------- persist
    def save(self, path: str | os.PathLike, info: dict[str, Any] | None = None,
             files: dict[str, bytes] | None = None) -> Path:  # fmt: skip
        """Write ``model.json`` + ``arrays.safetensors`` into folder ``path`` (atomically).

        ``info`` adds keys to ``model.json`` (e.g. when and on what data it was trained);
        ``files`` adds files (name -> bytes) to the folder, in the same atomic write.
        """
        from safetensors.numpy import save_file

        self._check_fitted()
        path = Path(path)
        X = self.train_matrix
        arrays = {
            "train.indptr": np.asarray(X.indptr, dtype=np.int64),
            "train.indices": np.asarray(X.indices, dtype=np.int32),
            "item_popularity": self.item_popularity,
        }
        for key, value in self._state().items():
            if sp.issparse(value):
                value = sp.csr_matrix(value)
                arrays[f"{key}.csr.data"] = np.ascontiguousarray(value.data)
                arrays[f"{key}.csr.indices"] = np.asarray(value.indices, dtype=np.int32)
                arrays[f"{key}.csr.indptr"] = np.asarray(value.indptr, dtype=np.int64)
                arrays[f"{key}.csr.shape"] = np.asarray(value.shape, dtype=np.int64)
            else:
                arrays[f"state.{key}"] = np.ascontiguousarray(value)
        meta = {
            "toprec_version": __version__,
            "model": self.name,
            "params": self.params.model_dump(mode="json"),
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
            **(info or {}),
        }
        with atomic_dir(path) as tmp:
            save_file(arrays, str(tmp / "arrays.safetensors"))
            for fname, data in (files or {}).items():
                (tmp / fname).write_bytes(data)
            (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False) -> "Recommender":
        """Load a model saved by :meth:`save` (any registered model when called on the base).

        ``mmap``: the arrays are read-only memory maps of the file (processes serving the
        same folder share one copy in the page cache) instead of copies in memory.
        """
        from . import checks
        from .registry import get_class

        path = Path(path)
        meta = checks.read_meta(path)  # every check: one-line ToprecErrors naming the file (see models.checks)
        klass = get_class(meta["model"]) if cls is Recommender else cls
        if klass.name != meta["model"]:
            raise ToprecError(f"{path}: holds a '{meta['model']}' model, not '{klass.name}'")
        model = klass(**meta["params"])
        arrays = checks.read_arrays(path, mapped_arrays if mmap else None)
        checks.check_arrays(path, meta, arrays)
        model.n_users, model.n_items = meta["n_users"], meta["n_items"]
        indptr, indices = arrays.pop("train.indptr"), arrays.pop("train.indices")
        model.train_matrix = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(model.n_users, model.n_items)
        )
        model.item_popularity = arrays.pop("item_popularity")
        state: dict[str, Any] = {}
        for key in list(arrays):
            if key.startswith("state."):
                state[key[len("state.") :]] = arrays[key]
            elif key.endswith(".csr.data"):
                name = key[: -len(".csr.data")]
                shape = tuple(int(s) for s in arrays[f"{name}.csr.shape"])
                state[name] = sp.csr_matrix(
                    (arrays[key], arrays[f"{name}.csr.indices"], arrays[f"{name}.csr.indptr"]), shape=shape
                )
        try:
            model._set_state(state)
        except checks.STATE_ERRORS as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ToprecError(f"{path}: the saved arrays do not fit a '{klass.name}' model ({first[:200]})") from None
        model.fitted = True
        checks.check_scores(model, path)
        return model

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({params})"


_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}  # fmt: skip


def mapped_arrays(file: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only ``np.memmap`` view (no copy)."""
    with open(file, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    out: dict[str, np.ndarray] = {}
    base = 8 + n
    for key, spec in header.items():
        dtype = np.dtype(_DTYPES[spec["dtype"]])
        start, stop = spec["data_offsets"]
        shape = tuple(spec["shape"])
        if stop == start:
            out[key] = np.zeros(shape, dtype=dtype)
        else:
            out[key] = np.memmap(file, dtype=dtype, mode="r", offset=base + start, shape=shape)
    return out


class ItemItemRecommender(Recommender):
    """Scores = history @ similarity (items x items, dense or sparse).

    A dense similarity is multiplied in column blocks (``SCORE_BLOCK`` wide,
    each contiguous) so each block stays in cache while the sparse history
    streams over it: about twice as fast as one sparse x dense product, whose
    every nonzero drags a whole similarity row through memory. With numba
    (:mod:`.kernels`) a compiled kernel does the same sums, bit for bit,
    without the column-block copy of the similarity, in column tiles and
    item blocks that stay in a core's L2; and ``recommend`` scores and ranks
    in one compiled pass over threads (:meth:`_recommend_fused`: the same
    lists and scores as the shared top-k, ``benchmarks/results/kernels.md``).
    """

    SCORE_BLOCK = 256
    #: at most this many rows are scored straight from ``similarity`` (same sums, same order)
    FEW_ROWS = 8
    similarity: np.ndarray | sp.csr_matrix

    def _column_blocks(self) -> list[tuple[int, np.ndarray]]:
        blocks = getattr(self, "_blocks", None)
        if blocks is None or blocks[0] is not self.similarity:
            S = self.similarity
            w = self.SCORE_BLOCK
            parts = [(s, np.ascontiguousarray(S[:, s : s + w])) for s in range(0, S.shape[1], w)]
            self._blocks = blocks = (S, parts)
        return blocks[1]

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        S = self.similarity
        if sp.issparse(S):
            return np.asarray((history @ S).toarray(), dtype=np.float32)
        history = sp.csr_matrix(history, dtype=S.dtype)
        if history.shape[0] <= self.FEW_ROWS:  # a few users (serving): gather their rows of S, no block copy
            return np.asarray(history @ S, dtype=np.float32)
        if S.dtype == np.float32 and S.flags.c_contiguous and kernels.available():
            return kernels.sparse_dense(history, S)  # the same sums as below, bit for bit, no copy of S
        out = np.empty((history.shape[0], S.shape[1]), dtype=np.float32)
        for start, block in self._column_blocks():
            out[:, start : start + block.shape[1]] = history @ block
        return out

    def _host_scoring(self, n_rows: int) -> contextlib.AbstractContextManager:
        if n_rows > self.FEW_ROWS and isinstance(self.similarity, np.ndarray):
            kernels.warm()  # once per process, before any fork
        return super()._host_scoring(n_rows)

    def _product_similarity(self) -> np.ndarray | None:
        """The dense float32, C-ordered similarity when this model's ranking scores are exactly
        ``history @ similarity`` (``_score`` and ``_ranking_scores`` not overridden), else None."""
        if type(self)._score is not ItemItemRecommender._score:
            return None
        return self._dense_float32_similarity()

    def _dense_float32_similarity(self) -> np.ndarray | None:
        if type(self)._ranking_scores is not Recommender._ranking_scores:
            return None
        S = self.similarity
        if isinstance(S, np.ndarray) and S.ndim == 2 and S.dtype == np.float32 and S.flags.c_contiguous:
            return S
        return None

    def _recommend_fused(self, users, hist, k, exclude_seen, batch_size, memory_budget):
        """Scores and top k in one compiled pass (:func:`.kernels.recommend_dense`): no score batch in
        memory, no forked workers (threads), the same lists and scores bit for bit as the shared top-k,
        whatever ``batch_size`` (it and ``memory_budget`` size the per-thread blocks only)."""
        S = self._product_similarity() if len(users) > self.FEW_ROWS and kernels.fused() else None
        if S is None:
            return None
        kernels.warm()
        threads = parallel.workers()
        block = min(kernels.BLOCK_ROWS, batch_size or batch_size_for(self.n_items, memory_budget, factor=threads))
        description = f"{self.name}: recommend"
        with progress.task(description, total=len(users)) as bar:
            items, scores, bad = kernels.recommend_dense(hist, S, k, hist if exclude_seen else None,
                                                         self.item_popularity, threads, block, bar.advance)  # fmt: skip
        if bad:
            check_finite(np.nan if bad == 1 else np.inf, description)
        return Recommendations(users, items, scores)

    def _state(self) -> dict[str, Any]:
        return {"similarity": self.similarity}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.similarity = arrays["similarity"]
