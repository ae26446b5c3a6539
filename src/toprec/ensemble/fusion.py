"""Fusion of several members' top-N lists into one top-k, vectorised over users.

Every member gives, for the same rows (users), a ranked list of N candidate
items (best first, ``-1`` for empty slots) and optionally their scores. The
candidates of a row are the union of the members' lists; each member adds a
weighted *contribution* to each candidate, and the top k of the sums win.

Methods (``r`` = 1-based rank of the item in the member's list, ``N`` = the
member's list width, ``w`` = the member's weight):

==========  =====================================================  ==============================
method      contribution of a listed item                          item missing from the list
==========  =====================================================  ==============================
``rank``    ``w / log2(r + 1)``  (the competition's soft vote)     0
``rrf``     ``w / (60 + r)``     (reciprocal rank fusion, c = 60)  0
``borda``   ``w * (N - r + 1) / N`` (Borda points scaled to (0,1])  0
``score``   ``w * z``, z = the member's score standardised over     ``w * min z`` of that member's
            that user's N candidates (mean 0, std 1; 0 if all       list for that user (the floor)
            equal)
``product`` factor ``sigmoid(z) ** w`` (VASP-style product of        factor ``sigmoid(min z) ** w``
            normalised scores, e.g. sigmoid(EASE) * VAE)
==========  =====================================================  ==============================

``score`` sums; ``product`` multiplies (computed as a sum of ``w * log sigmoid(z)``;
the reported fused score is the product itself). A member with weight 0 is
dropped entirely: its candidates do not enter the union. Scale of the weights
never matters (every method is invariant to multiplying all weights by a
constant), so searches work on the simplex.

Implementation: the members' (n, N) item arrays are concatenated to
(n, M*N), sorted per row, and equal neighbours collapsed: each row's union
becomes a compact, item-sorted (n, L) layout (L = the largest union). Each
member's contribution is scattered into that layout once (a
:class:`CandidatePool`), so a fused score for any weight vector is one
tensor contraction, and the top k the shared :func:`toprec.recommend.topk_rows`
(ties resolved to the lower item index). No Python loop over users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ToprecError
from ..recommend import Recommendations, seen_and_cold, seen_columns, topk_rows

METHODS = ("rank", "rrf", "borda", "score", "product")
RRF_K = 60.0
_INVALID = np.iinfo(np.int32).max


def check_method(method: str) -> str:
    m = method.strip().lower()
    if m not in METHODS:
        raise ToprecError(f"unknown fusion method '{method}' (choose from {', '.join(METHODS)})")
    return m


# --------------------------------------------------------------- contributions
def _standardise(scores: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row z-scores over the valid entries and each row's minimum z (0 for empty rows)."""
    s = np.where(valid, scores.astype(np.float64), 0.0)
    cnt = valid.sum(1)
    safe = np.maximum(cnt, 1)
    mean = s.sum(1) / safe
    dev = np.where(valid, s - mean[:, None], 0.0)
    std = np.sqrt((dev * dev).sum(1) / safe)
    z = np.where(std[:, None] > 0, dev / np.where(std > 0, std, 1.0)[:, None], 0.0)
    z = np.where(valid, z, 0.0)
    zmin = np.where(cnt > 0, np.where(valid, z, np.inf).min(1, initial=np.inf), 0.0)
    zmin = np.where(np.isfinite(zmin), zmin, 0.0)
    return z, zmin


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def contributions(method: str, items: np.ndarray, scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One member's per-entry values and per-row floor (value of an item it does not list).

    Returns ``(values, floor)``: ``values`` (n, N) float64 (0 on empty slots),
    ``floor`` (n,) float64. The member's fused contribution to a candidate is
    ``w * value`` if listed, else ``w * floor``.
    """
    method = check_method(method)
    items = np.asarray(items)
    n, width = items.shape
    valid = items >= 0
    rank = np.arange(1, width + 1, dtype=np.float64)[None, :]
    if method in ("rank", "rrf", "borda"):
        if method == "rank":
            v = 1.0 / np.log2(rank + 1.0)
        elif method == "rrf":
            v = 1.0 / (RRF_K + rank)
        else:
            v = (width - rank + 1.0) / max(width, 1)
        return np.where(valid, np.broadcast_to(v, (n, width)), 0.0), np.zeros(n)
    if scores is None:
        scores = -np.broadcast_to(rank, (n, width))  # ranks only: a linear pseudo-score
    s = np.asarray(scores, dtype=np.float64)
    valid &= np.isfinite(s)
    z, zmin = _standardise(s, valid)
    if method == "score":
        return np.where(valid, z, 0.0), zmin
    return np.where(valid, _log_sigmoid(z), 0.0), _log_sigmoid(zmin)


# ------------------------------------------------------------------ the pool
@dataclass
class CandidatePool:
    """The union of the members' candidates for n rows, with each member's contribution.

    ``items`` (n, L) int32: each row's candidates sorted by item, -1 padding.
    ``contrib`` (M, n, L) float32: member m's value minus its floor where it
    lists the item, else 0. ``floor`` (M, n): the per-row floors.
    ``present`` (M, n, L) bool: member m lists the item. ``blocked`` (n, L)
    bool or None: candidates that may never be recommended (seen items, padding).
    """

    users: np.ndarray
    items: np.ndarray
    contrib: np.ndarray
    floor: np.ndarray
    present: np.ndarray
    method: str
    blocked: np.ndarray | None = None

    @property
    def n_members(self) -> int:
        return self.contrib.shape[0]

    def fused(self, weights: np.ndarray) -> np.ndarray:
        """(n, L) fused score (log-space for ``product``); -inf where no weighted member lists the item."""
        w = _weights(weights, self.n_members)
        active = np.flatnonzero(w > 0)
        if len(active) == 0:
            raise ToprecError("fusion: every weight is 0")
        # float64, members in order: exactly the arithmetic of ``fuse`` (same ties, same top k)
        total = np.zeros(self.contrib.shape[1:], dtype=np.float64)
        for m in active:
            total += w[m] * self.contrib[m]
        total += (w[active, None] * self.floor[active]).sum(0)[:, None]
        total = total.astype(np.float32)
        listed = self.present[active[0]] if len(active) == 1 else self.present[active].any(axis=0)
        total[~listed] = -np.inf
        if self.blocked is not None:
            total[self.blocked] = -np.inf
        return total

    def top_columns(self, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns of the top k per row (best first, -1 if fewer) and their fused scores."""
        return topk_columns(self.fused(weights), k)

    def recommend(self, weights: np.ndarray, k: int) -> Recommendations:
        cols, top = self.top_columns(weights, k)
        return _recommendations(self.users, self.items, cols, top, self.method)


def _recommendations(users, union_items, cols, top, method) -> Recommendations:
    items = np.take_along_axis(union_items, np.maximum(cols, 0), axis=1)
    items = np.where(cols >= 0, items, -1).astype(np.int32)
    if method == "product":
        top = np.exp(top.astype(np.float64))
    top = np.where(cols >= 0, top, -np.inf).astype(np.float32)
    return Recommendations(users, items, top)


def _weights(weights, m: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (m,):
        raise ToprecError(f"fusion: {len(w)} weights for {m} members")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ToprecError("fusion: weights must be finite and >= 0")
    return w


def topk_columns(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k columns per row by (score desc, column asc); -1 where the score is -inf (or NaN).

    :func:`toprec.recommend.topk_rows` with int64 columns.
    """
    scores = np.asarray(scores)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores).astype(scores.dtype)
    n = scores.shape[0]
    return topk_rows(scores, k, np.empty((n, k), dtype=np.int64), np.empty((n, k), dtype=scores.dtype))


def _as_arrays(member) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(member, Recommendations):
        return member.items, member.scores
    if isinstance(member, tuple):
        items, scores = member
        return np.asarray(items), None if scores is None else np.asarray(scores)
    return np.asarray(member), None


@dataclass
class _Union:
    items: np.ndarray  # (n, L) union, item-sorted, -1 padded
    flat: np.ndarray  # (e,) position row * L + col of every valid entry (sorted order)
    member: np.ndarray  # (e,) member of every valid entry
    values: np.ndarray  # (e,) value - floor of every valid entry
    floor: np.ndarray  # (M, n)


def _prepare(lists, method, users, candidates):
    method = check_method(method)
    if not lists:
        raise ToprecError("fusion: no members")
    if len(lists) > 64:
        raise ToprecError("fusion: at most 64 members")
    arrays = [_as_arrays(m) for m in lists]
    n = arrays[0][0].shape[0]
    prepared = []
    for items, scores in arrays:
        if items.ndim != 2 or items.shape[0] != n:
            raise ToprecError(f"fusion: every member needs an (n={n}, N) item array, got {items.shape}")
        if scores is not None and scores.shape != items.shape:
            raise ToprecError("fusion: scores must have the shape of items")
        if candidates is not None:
            items = items[:, :candidates]
            scores = None if scores is None else scores[:, :candidates]
        if scores is not None and method in ("score", "product"):
            items = np.where(np.isfinite(scores), items, -1)  # an item without a score is not a candidate
        prepared.append((items, scores))
    if users is None:
        first = lists[0]
        users = first.users if isinstance(first, Recommendations) else np.arange(n)
    users = np.asarray(users, dtype=np.int64)
    if len(users) != n:
        raise ToprecError(f"fusion: {len(users)} users for {n} rows")
    return method, prepared, users, n


def _union(prepared, method: str, n: int) -> _Union:
    """Sort each row's concatenated candidates, collapse repeats: the per-row union."""
    cat = np.concatenate([it for it, _ in prepared], axis=1) if len(prepared) > 1 else prepared[0][0]
    T = cat.shape[1]
    top_item = int(cat.max(initial=-1))
    if top_item < 65535:  # 16-bit keys: numpy's stable argsort is a radix sort
        key = cat.astype(np.uint16)  # -1 wraps to 65535: empty slots sort last
        invalid = np.uint16(65535)
    else:
        key = np.where(cat >= 0, cat, _INVALID).astype(np.int32)
        invalid = np.int32(_INVALID)
    order = np.argsort(key, axis=1, kind="stable")
    sk = np.take_along_axis(key, order, axis=1)
    valid = sk != invalid
    new = valid.copy()
    new[:, 1:] &= sk[:, 1:] != sk[:, :-1]
    col = np.cumsum(new, axis=1, dtype=np.int32)
    col -= 1
    L = max(1, int(col[:, -1].max(initial=0)) + 1) if T else 1
    flat = np.arange(n, dtype=np.int64)[:, None] * L + col
    items = np.full(n * L, -1, dtype=np.int32)
    items[flat[new]] = sk[new]
    values = np.empty((n, T), dtype=np.float32)
    member_of = np.empty(T, dtype=np.int8)
    floor = np.zeros((len(prepared), n), dtype=np.float64)
    off = 0
    for m, (it, sc) in enumerate(prepared):
        v, fl = contributions(method, it, sc)
        values[:, off : off + it.shape[1]] = v - fl[:, None]
        member_of[off : off + it.shape[1]] = m
        floor[m] = fl
        off += it.shape[1]
    values = np.take_along_axis(values, order, axis=1)[valid]
    member = member_of[order[valid]]
    return _Union(items.reshape(n, L), flat[valid], member, values, floor)


def build_pool(
    lists: Sequence,
    method: str = "rank",
    users: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    candidates: int | None = None,
) -> CandidatePool:
    """Union the members' lists row by row and store each member's contribution.

    ``lists``: one entry per member, each a :class:`Recommendations`, an
    ``(items, scores)`` tuple or an items array; all with the same rows.
    ``candidates`` truncates each list to its first N. ``exclude`` (rows
    aligned, CSR over items) lists items never to recommend (seen ones);
    members are expected not to list them already (models mask seen items,
    file members are cleaned per stage), so ranks are not recomputed.
    """
    method, prepared, users, n = _prepare(lists, method, users, candidates)
    u = _union(prepared, method, n)
    M, L = len(prepared), u.items.shape[1]
    contrib = np.zeros(M * n * L, dtype=np.float32)
    present = np.zeros(M * n * L, dtype=bool)
    idx = u.member.astype(np.int64) * (n * L) + u.flat
    contrib[idx] = u.values
    present[idx] = True
    blocked = None if exclude is None else seen_columns(u.items, exclude)
    return CandidatePool(users, u.items, contrib.reshape(M, n, L), u.floor, present.reshape(M, n, L), method, blocked)


def compact(items: np.ndarray, scores: np.ndarray | None, drop: np.ndarray):
    """Remove the entries where ``drop`` and shift the rest left (order kept), padding with -1."""
    keep = ~drop & (items >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")
    new_items = np.where(keep, items, -1)
    new_items = np.take_along_axis(new_items, order, axis=1)
    new_scores = None
    if scores is not None:
        s = np.where(keep, np.asarray(scores, dtype=np.float32), np.float32(-np.inf))
        new_scores = np.take_along_axis(s, order, axis=1)
    return new_items, new_scores


def fuse(
    lists: Sequence,
    weights: Sequence[float] | None = None,
    method: str = "rank",
    k: int = 10,
    users: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    candidates: int | None = None,
) -> Recommendations:
    """Fuse the members' top-N lists into a top-k :class:`Recommendations`.

    ``weights`` default to 1 each; members with weight 0 are dropped before
    the union is built. ``exclude``: see :func:`build_pool`. See the module
    docstring for the methods. One pass: the weighted contributions are
    summed straight into the union layout (``np.bincount``).
    """
    if k < 1:
        raise ToprecError(f"k must be >= 1, got {k}")
    if not len(lists):
        raise ToprecError("fusion: no members")
    w = np.ones(len(lists)) if weights is None else _weights(weights, len(lists))
    if not (w > 0).any():
        raise ToprecError("fusion: every weight is 0")
    keep = np.flatnonzero(w > 0)
    if users is None and isinstance(lists[0], Recommendations):
        users = lists[0].users
    method, prepared, users, n = _prepare([lists[i] for i in keep], method, users, candidates)
    w = w[keep]
    u = _union(prepared, method, n)
    L = u.items.shape[1]
    total = np.bincount(u.flat, weights=u.values * w[u.member], minlength=n * L).reshape(n, L)
    total += (w[:, None] * u.floor).sum(0)[:, None]
    total = seen_and_cold(total.astype(np.float32), exclude=exclude, items=u.items)
    cols, top = topk_columns(total, k)
    return _recommendations(users, u.items, cols, top, method)
