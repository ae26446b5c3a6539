"""Recommendations and the one top-k: every model, the trainer's validation and the ensembles rank here.

- :func:`topk_rows`: the ranking primitive. On the host ``argpartition``
  then a sort of those k, written into preallocated output arrays; on a
  torch device ``torch.topk`` then the same order. Ties are broken by the
  lower item index, so the result for a user depends only on that user's
  scores: identical for any batch size, on either path.
- :func:`seen_and_cold`: the one rule for scores: users with an empty history
  get popularity, items in a user's history (or listed to exclude) are
  masked in place.
- :func:`topk`: scores computed in user batches sized by a memory budget,
  then the rule and the primitive, on the host or on a device. There is no
  Python loop over users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from . import parallel, progress
from .device import require_torch
from .errors import ToprecError
from .io import atomic_path
from .keys import hit_matrix

if TYPE_CHECKING:  # pandas only when writing lists (a serving worker never loads it)
    import pandas as pd

DEFAULT_MEMORY_BUDGET = 512 * 2**20  # bytes of score matrix per batch
PARALLEL_MIN_USERS = 2048  # fewer users than this are scored in-process


@dataclass(frozen=True)
class Recommendations:
    """Top-k items per user, best first. ``items`` is -1 where fewer than k exist."""

    users: np.ndarray  # (n,) internal user indices (-1 = unknown user)
    items: np.ndarray  # (n, k) int32 internal item indices
    scores: np.ndarray  # (n, k) float32

    @property
    def k(self) -> int:
        return self.items.shape[1]

    def __len__(self) -> int:
        return len(self.users)

    def to_frame(self, dataset, user_ids=None) -> "pd.DataFrame":
        """A ``user,item`` frame of external ids, k rows per user, best first.

        ``user_ids`` overrides the external user ids (needed for unknown users).
        """
        valid = self.items >= 0
        rows = np.repeat(np.arange(len(self.users)), self.k)[valid.ravel()]
        if user_ids is None:
            user_ids = dataset.user_ids[self.users]
        user_ids = np.asarray(user_ids)
        import pandas as pd

        return pd.DataFrame({"user": user_ids[rows], "item": dataset.item_ids[self.items[valid]]})

    def write_csv(self, path: str | os.PathLike, dataset, user_ids=None) -> None:
        """Write ``user,item`` (best first) atomically: a temp file renamed into place."""
        frame = self.to_frame(dataset, user_ids)
        import pyarrow as pa
        import pyarrow.csv as pacsv

        table = pa.Table.from_pandas(frame, preserve_index=False)
        with atomic_path(path, suffix=".csv.tmp") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"user,item\n")
                pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))


def batch_size_for(n_items: int, memory_budget: int = DEFAULT_MEMORY_BUDGET, factor: int = 2) -> int:
    """Users per batch so that ``factor`` float32 score matrices fit the budget."""
    return max(1, int(memory_budget // max(1, n_items * 4 * factor)))


def mask_rows(scores, exclude: sp.csr_matrix, value: float = -np.inf) -> None:
    """Set ``scores[r, j] = value`` for every stored entry (r, j) of ``exclude`` (in place; numpy or torch)."""
    if exclude.nnz == 0:
        return
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
    cols = exclude.indices
    if not isinstance(scores, np.ndarray):  # a torch tensor: the indices go to its device
        torch = require_torch()
        rows = torch.from_numpy(rows.astype(np.int64)).to(scores.device)
        cols = torch.from_numpy(np.array(cols, dtype=np.int64)).to(scores.device)
    scores[rows, cols] = value


def seen_columns(items: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """Boolean (n, L): column c of row r holds no item (-1) or an item listed in row r of ``exclude``.

    For score blocks whose columns are candidate items (``items[r, c]``), not the catalogue.
    """
    if exclude.nnz == 0:
        return items < 0
    if exclude.shape[0] != items.shape[0]:
        raise ToprecError(f"exclude has {exclude.shape[0]} rows for {items.shape[0]} users")
    return hit_matrix(items, sp.csr_matrix(exclude)) | (items < 0)


def seen_and_cold(scores, history: sp.csr_matrix | None = None, popularity=None,
                  exclude: sp.csr_matrix | None = None, items: np.ndarray | None = None):  # fmt: skip
    """The one rule for a block of scores (numpy, or a torch tensor on any device), in place; returns it.

    Cold users first: rows whose ``history`` row is empty get ``popularity``
    (when given). Then the seen items: every entry of ``exclude`` (rows
    aligned) becomes -inf, so it is never ranked. With ``items`` (n, L) the
    columns are candidate items rather than the catalogue: candidates listed
    in ``exclude`` and padding (-1) become -inf.
    """
    if popularity is not None:
        cold = np.diff(history.indptr) == 0
        if cold.any():
            if not isinstance(scores, np.ndarray):
                torch = require_torch()
                cold = torch.from_numpy(cold).to(scores.device)
                popularity = torch.as_tensor(popularity, dtype=torch.float32, device=scores.device)
            scores[cold] = popularity
    if items is not None:
        scores[items < 0 if exclude is None else seen_columns(items, exclude)] = -np.inf
    elif exclude is not None:
        mask_rows(scores, exclude)
    return scores


def _candidates(scores: np.ndarray, k: int):
    """Columns (and their scores) that surely hold each row's top k; None if not worth it.

    The first ``G*B`` columns are split into ``G`` strided groups of ``B``
    (group j holds columns j, j+G, j+2G...). A group holding one of a row's
    top-k values has a maximum at least the k-th value, and at most k groups
    can, so the k groups with the largest maxima, plus the few leftover
    columns past ``G*B``, contain the whole top k. The group maxima are an
    elementwise max over B contiguous slices (fast, no copy) and the
    partitions then run on G and about k*B columns instead of all of them.
    """
    n, m = scores.shape
    B = max(2, int(np.sqrt(m / k)))
    G = m // B
    if G < 4 * k or m < 256:
        return None
    main = G * B
    gmax = scores[:, :main].reshape(n, B, G).max(axis=1)  # (n, G), a view reshape
    groups = np.argpartition(gmax, G - k, axis=1)[:, G - k :]  # (n, k)
    cols = (groups[:, :, None] + G * np.arange(B)[None, None, :]).reshape(n, k * B)
    if main < m:
        cols = np.concatenate([cols, np.broadcast_to(np.arange(main, m), (n, m - main))], axis=1)
    return cols, np.take_along_axis(scores, cols, axis=1)


def topk_rows(scores, k: int, out_items: np.ndarray | None = None, out_scores: np.ndarray | None = None):
    """Top k of each row: score descending, ties to the lower column; returns ``(items, scores)``, (n, k).

    The one ranking primitive. Entries equal to -inf are unavailable: past a
    row's last finite score the items are -1 (scores -inf), and so are the
    columns past the row's width. A numpy array is ranked on the host into
    ``out_items`` / ``out_scores`` (allocated, int32 / float32, when not
    given); a torch tensor is ranked on its device and the result stays
    there (int32 items). Both give the same lists: the order of a full stable
    descending sort, whatever the number of rows ranked together.
    """
    if not isinstance(scores, np.ndarray):
        return _topk_rows_torch(scores, k)
    n, m = scores.shape
    if out_items is None:
        out_items = np.empty((n, k), dtype=np.int32)
    if out_scores is None:
        out_scores = np.empty((n, k), dtype=np.float32)
    kk = min(k, m)
    cand = _candidates(scores, kk) if kk < m else None
    if cand is not None:
        cols, vals = cand
        sel = np.argpartition(vals, vals.shape[1] - kk, axis=1)[:, vals.shape[1] - kk :]
        part = np.take_along_axis(cols, sel, axis=1)
        part_scores = np.take_along_axis(vals, sel, axis=1)
    elif kk < m:
        part = np.argpartition(scores, m - kk, axis=1)[:, m - kk :]
        part_scores = np.take_along_axis(scores, part, axis=1)
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
        part_scores = scores.copy()
    # sort by score descending, then item index ascending (deterministic ties)
    order = np.lexsort((part, -part_scores), axis=1) if n else part
    items = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(part_scores, order, axis=1)
    _fix_boundary_ties(scores, items, top, kk)
    items = items.astype(np.int32, copy=False)
    items[~np.isfinite(top) & (top < 0)] = -1
    out_items[:, :kk] = items
    out_scores[:, :kk] = top
    if kk < k:
        out_items[:, kk:] = -1
        out_scores[:, kk:] = -np.inf
    return out_items, out_scores


def _topk_rows_torch(s, k: int):
    """:func:`topk_rows` of a torch tensor, on its device.

    ``torch.topk`` of k + 1 columns, then the candidates ordered by (score desc,
    column asc). Where the k-th and (k+1)-th scores tie, which of the tied
    columns made the cut is unspecified, so those rows (rare with real
    scores; rows with fewer than k unmasked items) take the full stable sort.
    """
    torch = require_torch()
    n, m = s.shape
    kk = min(k, m)
    if kk >= m or n == 0:
        vals, idx = torch.sort(s, dim=1, descending=True, stable=True)
        vals, idx = vals[:, :kk], idx[:, :kk]
    else:
        vals, idx = torch.topk(s, kk + 1, dim=1, sorted=True)
        tie = vals[:, kk - 1] == vals[:, kk]
        vals, idx = vals[:, :kk], idx[:, :kk]
        o = torch.argsort(idx, dim=1)  # candidates by column, then a stable sort by score
        idx, vals = idx.gather(1, o), vals.gather(1, o)
        o = torch.sort(vals, dim=1, descending=True, stable=True).indices
        idx, vals = idx.gather(1, o), vals.gather(1, o)
        rows = torch.nonzero(tie).flatten()
        if rows.numel():
            v, i = torch.sort(s[rows], dim=1, descending=True, stable=True)
            vals[rows], idx[rows] = v[:, :kk], i[:, :kk]
    idx = idx.to(torch.int32)
    idx[torch.isneginf(vals)] = -1
    if kk < k:
        idx = torch.cat([idx, idx.new_full((n, k - kk), -1)], dim=1)
        vals = torch.cat([vals, vals.new_full((n, k - kk), -torch.inf)], dim=1)
    return idx, vals


def _fix_boundary_ties(scores: np.ndarray, items: np.ndarray, top: np.ndarray, k: int) -> None:
    """Make ties at the k-th score resolve to the lowest item indices.

    ``argpartition`` picks an arbitrary subset of items tied with the k-th
    score; for reproducibility we want the lowest indices. Only rows with a
    tie crossing the boundary are recomputed (rare with real scores).
    """
    if k == 0 or k >= scores.shape[1]:
        return
    kth = top[:, k - 1]
    n_ge = (scores >= kth[:, None]).sum(axis=1)
    rows = np.flatnonzero(n_ge > k)
    if len(rows) == 0:
        return
    sub = scores[rows]
    # stable argsort of -score ranks ties by index
    order = np.argsort(-sub, axis=1, kind="stable")[:, :k]
    items[rows] = order
    top[rows] = np.take_along_axis(sub, order, axis=1)


def rank_sparse_block(scores: sp.csr_matrix, k: int, history: sp.csr_matrix, popularity, exclude,
                      out_items: np.ndarray, out_scores: np.ndarray) -> None:  # fmt: skip
    """:func:`seen_and_cold` + :func:`topk_rows` of a sparse score block (unstored = score 0), same lists.

    A row with at least k positive unmasked stored scores has its whole top k
    among them (every other item scores 0 or less): only they are ranked, in
    a padded (rows x longest) block. Other rows (cold users, short
    histories), and rows whose top k holds equal scores (where the dense
    order, ties to the lower item, must decide), are densified and take the
    dense path.
    """
    S0 = sp.csr_matrix(scores, dtype=np.float32)
    S = S0
    n = S.shape[0]
    if exclude is not None and exclude.nnz:
        E = sp.csr_matrix(exclude, dtype=np.float32)
        E.data = np.ones_like(E.data)
        S = sp.csr_matrix(S - S.multiply(E))  # seen entries to 0 (not positive: never ranked here)
    rows = np.repeat(np.arange(n), np.diff(S.indptr))
    pos = S.data > 0
    counts = np.bincount(rows[pos], minlength=n)
    cold = np.diff(history.indptr) == 0 if popularity is not None else np.zeros(n, dtype=bool)
    dense = (counts < k) | cold
    ok = np.flatnonzero(~dense)
    if len(ok):
        keep = pos & ~dense[rows]
        r = np.searchsorted(ok, rows[keep])
        c = counts[ok]
        p = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        vals = np.full((len(ok), int(c.max())), -np.inf, dtype=np.float32)
        items = np.full(vals.shape, -1, dtype=np.int64)
        vals[r, p] = S.data[keep]
        items[r, p] = S.indices[keep]
        cols, top = topk_rows(vals, k)
        tied = (top[:, 1:] == top[:, :-1]).any(axis=1) | ((vals >= top[:, k - 1 : k]).sum(axis=1) > k)
        short = ~np.isfinite(top[:, k - 1])  # fewer than k unmasked positives
        out_items[ok] = np.take_along_axis(items, cols.astype(np.int64), axis=1)
        out_scores[ok] = top
        dense[ok[tied | short]] = True
    redo = np.flatnonzero(dense)
    if len(redo):
        block = np.asarray(S0[redo].toarray(), dtype=np.float32)
        seen_and_cold(block, history[redo], popularity, None if exclude is None else exclude[redo])
        it, sc = topk_rows(block, k)
        out_items[redo], out_scores[redo] = it, sc


def check_finite(peak: float, description: str) -> None:
    """A block's largest score NaN or +inf: the model is broken (a diverged fit, an out-of-range parameter).

    Ranking such scores gives every user the same arbitrary items; a one-line error instead.
    """
    if peak != peak or peak == np.inf:
        raise ToprecError(f"{description}: the model's scores are not finite ({peak}): its fit diverged or a "
                          "parameter is out of range (a learning rate too high, a regularisation too large); "
                          "nothing was ranked")  # fmt: skip


def topk(
    score_fn: Callable[[np.ndarray, sp.csr_matrix], np.ndarray],
    users: np.ndarray,
    n_items: int,
    k: int,
    history: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    description: str = "recommend",
    popularity: np.ndarray | None = None,
    device=None,
    check_scores: bool = True,
) -> Recommendations:
    """Batched top-k over ``users``: scores, :func:`seen_and_cold`, :func:`topk_rows`, batch after batch.

    ``score_fn(users_batch, history_batch)`` returns a (b, n_items) score
    block the function may modify in place, or a scipy sparse block (unstored
    = 0; ranked by :func:`rank_sparse_block`, the same lists without
    densifying every row). ``history`` rows align with
    ``users``; ``exclude`` (also aligned) lists the items to mask;
    ``popularity`` (when given) scores the users whose history is empty.

    ``device`` None: scores are numpy arrays, ranked on the host (rows split
    over forked workers when there are many). Else a torch device: scores are
    tensors there and are ranked there; the lists wait on the device within a
    quarter of ``memory_budget`` and only they cross to the host. Either way
    the lists are the same, and do not depend on ``batch_size``.

    ``check_scores``: a NaN or +inf score is a one-line error (:func:`check_finite`) rather
    than lists of arbitrary items; the trainer's per-epoch validation turns it off (a
    diverged epoch just scores badly there, and the best epoch is kept).
    """
    users = np.asarray(users, dtype=np.int64)
    if device is not None:
        return _topk_on_device(score_fn, users, k, history, exclude, popularity, device,
                               batch_size or batch_size_for(n_items, memory_budget, factor=4), memory_budget,
                               description, check_scores)  # fmt: skip
    n = len(users)
    bs = batch_size or batch_size_for(n_items, memory_budget)
    n_workers = parallel.workers() if n >= 2 * min(bs, PARALLEL_MIN_USERS) and n >= PARALLEL_MIN_USERS else 1
    if n_workers > 1:
        bs = min(bs, -(-n // n_workers))
        out_items = parallel.shared_empty((n, k), np.int32)
        out_scores = parallel.shared_empty((n, k), np.float32)
    else:
        out_items = np.empty((n, k), dtype=np.int32)
        out_scores = np.empty((n, k), dtype=np.float32)

    with progress.task(description, total=n) as bar:

        def job(lo: int, hi: int) -> None:
            for start in range(lo, hi, bs):
                stop = min(hi, start + bs)
                h = history[start:stop]
                scores = score_fn(users[start:stop], h)
                ex = None if exclude is None else exclude[start:stop]
                if sp.issparse(scores):  # a sparse model's scores: ranked without densifying most rows
                    if check_scores and scores.nnz:
                        check_finite(float(scores.data.max()), description)  # not .max(): it sorts the indices
                    rank_sparse_block(scores, k, h, popularity, ex, out_items[start:stop], out_scores[start:stop])
                    bar.advance((stop - start) * n_workers)
                    continue
                scores = np.asarray(scores, dtype=np.float32)
                if check_scores and scores.size:
                    check_finite(float(scores.max()), description)
                seen_and_cold(scores, h, popularity, ex)
                topk_rows(scores, k, out_items[start:stop], out_scores[start:stop])
                bar.advance((stop - start) * n_workers)

        parallel.run_rows(n, job, n_workers)
    if n_workers > 1:  # copy out of shared memory
        out_items, out_scores = np.array(out_items), np.array(out_scores)
    return Recommendations(users, out_items, out_scores)


def _topk_on_device(score_fn, users, k, history, exclude, popularity, device, bs, memory_budget, description,
                    check_scores=True):  # fmt: skip
    """:func:`topk` with the score blocks and the ranking on a torch ``device`` (see there)."""
    torch = require_torch()
    n = len(users)
    out_items = np.empty((n, k), dtype=np.int32)
    out_scores = np.empty((n, k), dtype=np.float32)
    if popularity is not None:
        popularity = torch.from_numpy(np.asarray(popularity, dtype=np.float32)).to(device)
    waiting: list = []  # (items, scores) still on the device
    peaks: list = []  # each waiting block's largest score (NaN / +inf: a broken model), read at the flush
    done = 0  # rows already copied to the host

    def flush() -> None:
        nonlocal done
        if peaks:
            check_finite(float(torch.stack(peaks).max().item()), description)
            peaks.clear()
        if waiting:
            items = torch.cat([w[0] for w in waiting]).cpu().numpy()
            out_items[done : done + len(items)] = items
            out_scores[done : done + len(items)] = torch.cat([w[1] for w in waiting]).cpu().numpy()
            done += len(items)
            waiting.clear()

    with torch.inference_mode(), progress.task(description, total=n) as bar:
        for start in range(0, n, bs):
            stop = min(n, start + bs)
            h = history[start:stop]
            s = score_fn(users[start:stop], h).to(torch.float32)
            if check_scores and s.numel():
                peaks.append(s.amax())
            seen_and_cold(s, h, popularity, None if exclude is None else exclude[start:stop])
            waiting.append(topk_rows(s, k))
            bar.advance(stop - start)
            if sum(int(w[0].shape[0]) for w in waiting) * k * 8 >= memory_budget // 4:
                flush()  # no host synchronisation per batch
        flush()
    return Recommendations(users, out_items, out_scores)
