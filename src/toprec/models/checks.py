"""The one validation of a saved model folder, used by :meth:`Recommender.load`.

A folder written by ``save`` always passes; a tampered, truncated or foreign one
is a one-line :class:`~toprec.errors.ToprecError` naming the file and what is
wrong (never a segfault in a sparse product, never a raw ValueError/KeyError).
Checked, in order: ``model.json`` (a mapping; ``model`` text, ``params`` a
mapping, ``n_users``/``n_items`` non-negative integers), the arrays file
(readable safetensors; the required arrays present), every array (numeric;
floating values finite), the training matrix and every stored CSR (shape,
pointer monotone and complete, column indices in range), the item popularity
(one per item), and finally one scored user: the state must fit the shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ToprecError

REQUIRED = ("train.indptr", "train.indices", "item_popularity")
_INDEX_MAX = 2**31 - 1


def read_meta(path: Path) -> dict[str, Any]:
    """``model.json`` of folder ``path``, its types checked."""
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise ToprecError(f"{path}: not a saved model (no model.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ToprecError(f"{meta_path}: invalid JSON ({exc.msg})") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ToprecError(f"{meta_path}: cannot read ({exc})") from None
    if not isinstance(meta, dict):
        raise ToprecError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    for key, kind in (("model", str), ("params", dict), ("n_users", int), ("n_items", int)):
        if key not in meta:
            raise ToprecError(f"{meta_path}: missing key '{key}'")
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ToprecError(f"{meta_path}: key '{key}' = {json.dumps(value)[:60]} is not {_KINDS[kind]}")
    for key in ("n_users", "n_items"):
        if not 0 <= meta[key] <= _INDEX_MAX:
            raise ToprecError(f"{meta_path}: key '{key}' = {meta[key]} is out of range")
    return meta


_KINDS = {str: "a string", dict: "an object", int: "an integer"}


def read_arrays(path: Path, mapper=None) -> dict[str, np.ndarray]:
    """The arrays of ``arrays.safetensors`` (copies, or ``mapper(file)``'s read-only maps), or a one-line error."""
    file = path / "arrays.safetensors"
    if not file.is_file():
        raise ToprecError(f"{path}: saved model has no arrays.safetensors")
    try:
        if mapper is not None:
            return mapper(file)
        from safetensors.numpy import load_file

        return load_file(str(file))
    except Exception as exc:  # noqa: BLE001 - safetensors' own error, a bad header, a short file: one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ToprecError(f"{file}: not a readable safetensors file ({first})") from None


def _csr(file: Path, name: str, indptr: np.ndarray, indices: np.ndarray, n_rows: int, n_cols: int,
         data: np.ndarray | None = None) -> None:  # fmt: skip
    where = f"{file}: '{name}'"
    for label, a in (("indptr", indptr), ("indices", indices)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ToprecError(f"{where} {label} must be a 1-D integer array, got {a.dtype} {a.shape}")
    if len(indptr) != n_rows + 1:
        raise ToprecError(f"{where} has {len(indptr) - 1} rows, model.json says {n_rows}")
    if len(indptr) and (indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any()):
        raise ToprecError(f"{where} row pointers are not a valid CSR (0 .. {len(indices)}, non-decreasing)")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_cols):
        raise ToprecError(f"{where} column index out of range [0, {n_cols})")
    if data is not None and len(data) != len(indices):
        raise ToprecError(f"{where} has {len(data)} values for {len(indices)} indices")


def check_arrays(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Every array numeric and finite; the training matrix, popularity and stored CSRs fit the shapes."""
    file = path / "arrays.safetensors"
    n_users, n_items = meta["n_users"], meta["n_items"]
    for key in REQUIRED:
        if key not in arrays:
            raise ToprecError(f"{file}: missing array '{key}'")
    for key, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ToprecError(f"{file}: array '{key}' has type {a.dtype}, expected numbers")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ToprecError(f"{file}: array '{key}' holds NaN or infinite values")
    _csr(file, "train", arrays["train.indptr"], arrays["train.indices"], n_users, n_items)
    pop = arrays["item_popularity"]
    if pop.shape != (n_items,):
        raise ToprecError(f"{file}: 'item_popularity' has shape {pop.shape}, model.json says {n_items} items")
    for key in arrays:
        if key.endswith(".csr.data"):
            name = key[: -len(".csr.data")]
            parts = {p: arrays.get(f"{name}.csr.{p}") for p in ("indices", "indptr", "shape")}
            missing = [p for p, v in parts.items() if v is None]
            if missing:
                raise ToprecError(f"{file}: '{name}' is missing {name}.csr.{missing[0]}")
            shape = parts["shape"]
            if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any() or (shape > _INDEX_MAX).any():
                raise ToprecError(f"{file}: '{name}.csr.shape' is not two non-negative integers")
            _csr(file, name, parts["indptr"], parts["indices"], int(shape[0]), int(shape[1]), arrays[key])


#: what a mismatched state raises while it is set or scored (numpy / scipy / torch shape errors)
STATE_ERRORS = (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError)


def check_scores(model, path: Path) -> None:
    """Score one known user: the state must fit ``n_users`` x ``n_items`` and give finite scores."""
    if model.n_users == 0 or model.n_items == 0:
        return
    try:
        scores = np.asarray(model.score(np.zeros(1, dtype=np.int64)))
    except ToprecError:
        raise
    except STATE_ERRORS as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ToprecError(f"{path}: the saved arrays do not fit model.json ({first[:200]})") from None
    if scores.shape != (1, model.n_items):
        raise ToprecError(f"{path}: the saved arrays score {scores.shape[-1]} items, model.json says {model.n_items}")
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise ToprecError(f"{path}: the saved model gives non-finite scores")
