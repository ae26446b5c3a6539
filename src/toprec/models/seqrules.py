"""Sequential rules (SR): a closed-form next-item model for the "held-out last event".

After Ludewig & Jannach (2018), *Evaluation of session-based recommendation
algorithms*: a rule ``i -> j`` is counted whenever item ``j`` follows item
``i`` in a user's time-ordered training events, at most ``window`` steps
later, weighted by the gap ``g``: ``1 / g`` (SR's weighting). So

    T[i, j] = sum over users, over g = 1..window, of 1/g  where s[t] = i and s[t + g] = j

The counts are then normalised per source item, ``T[i, :] / (r_i + shrink)^normalize``
with ``r_i`` the row's total weight (``normalize=0``: raw weighted counts, as
in SR; ``normalize=1, shrink=0``: the empirical transition distribution
``P(j | i)``), and each row keeps its ``k`` largest entries (ties at the cut:
the lower item index, the rule of :func:`toprec.recommend.topk_rows`).

The fit is vectorised over the Dataset's (user, time, item)-sorted event
arrays: for each gap ``g`` the pairs are the event array against itself
shifted by ``g``, kept where both events belong to the same user; a COO
matrix per gap, summed. No Python loop over users or events. It takes
seconds on MovieLens-1M.

Scoring: the user's last ``last_n`` items, most recent first, weighted by
``recency_decay ** position`` (0 = the most recent), form a sparse users x
items matrix ``W``; scores = ``W @ T``. Items no rule reaches score below
every reached item, ordered by popularity (so a list is never filled by item
index). The sequence comes from the ``history`` rows by the ordering rule of
:func:`toprec.models.sequential.history_sequences` (training items in their
training time order, other history items after them as the most recent), as
for SASRec: new users fold in from the ordered history (``fold_in = "sequence"``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ..recommend import batch_size_for, topk_rows
from .base import Params, Recommender
from .registry import register
from .sequential import csr_order_rank, history_sequences, rank_matrix


class SeqRulesParams(Params):
    # defaults chosen on a validation split cut from ML-1M's training part (competition last=1, random=9):
    # recall of the last event grows with window up to ~8-12, peaks at recency_decay 0.5; k and shrink barely matter
    window: int = Field(8, ge=1, le=50, description="rules i -> j for j up to this many events after i (weight 1/gap)")
    last_n: int = Field(10, ge=1, le=200, description="most recent history items that vote at scoring time")
    recency_decay: float = Field(
        0.5, gt=0.0, le=1.0, description="vote weight recency_decay**p of the item p steps back (p=0: the newest)"
    )
    normalize: float = Field(
        0.5, ge=0.0, le=1.0, description="T[i, :] / (r_i + shrink)**normalize, r_i = row i's total weight (0: raw)"
    )
    shrink: float = Field(0.0, ge=0.0, description="added to r_i before normalising (damps rare source items)")
    k: int = Field(200, ge=1, description="rules kept per source item (largest weights)")


def transition_counts(data, n_items: int, window: int) -> sp.csr_matrix:
    """items x items float32 CSR: ``T[i, j]`` = sum of ``1/g`` over every time j follows i at gap g <= window."""
    user = np.asarray(data.user)
    item = np.asarray(data.item, dtype=np.int32)
    T = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    for g in range(1, min(window, max(len(item) - 1, 0)) + 1):
        same = user[:-g] == user[g:]
        src, dst = item[:-g][same], item[g:][same]
        vals = np.full(len(src), 1.0 / g, dtype=np.float32)
        T = T + sp.csr_matrix((vals, (src, dst)), shape=(n_items, n_items))
    T.sum_duplicates()
    return sp.csr_matrix(T, dtype=np.float32)


def keep_top_per_row(T: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The ``k`` largest positive entries of each row (ties at the cut: the lower column), by the shared top-k.

    Only rows with more than ``k`` entries are ranked, in dense blocks sized to
    the scoring memory budget; the others are kept whole.
    """
    T = sp.csr_matrix(T)
    T.sort_indices()
    n, m = T.shape
    long = np.flatnonzero(np.diff(T.indptr) > k)
    if len(long) == 0:
        return T
    keep_row = np.ones(n, dtype=bool)
    keep_row[long] = False
    short = sp.diags(keep_row.astype(np.float32)) @ T
    rows_out, cols_out, vals_out = [], [], []
    bs = batch_size_for(m)
    for s in range(0, len(long), bs):
        rows = long[s : s + bs]
        dense = T[rows].toarray()
        items, vals = topk_rows(dense, k)
        ok = (items >= 0) & (vals > 0)
        rows_out.append(np.broadcast_to(rows[:, None], items.shape)[ok])
        cols_out.append(items[ok])
        vals_out.append(vals[ok])
    coords = (np.concatenate(rows_out), np.concatenate(cols_out))
    top = sp.csr_matrix((np.concatenate(vals_out), coords), shape=(n, m), dtype=np.float32)
    out = sp.csr_matrix(short + top, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


@register
class SeqRules(Recommender):
    """Sequential rules: gap-weighted i -> j successor counts, scored from the last items of the sequence."""

    name: ClassVar[str] = "seqrules"
    Params: ClassVar[type] = SeqRulesParams
    fold_in: ClassVar[str] = "sequence"  # the order of the history matters, not only its item set
    search_space: ClassVar[dict[str, tuple]] = {
        "window": ("int", 1, 10),
        "last_n": ("int", 1, 20),
        "recency_decay": ("float", 0.2, 1.0),
        "normalize": ("float", 0.0, 1.0),
        "shrink": ("float", 0.0, 50.0),
        "k": ("log_int", 20, 2000),
    }

    def _fit(self, X: sp.csr_matrix, train) -> None:
        p = self.params
        T = transition_counts(train, self.n_items, p.window)
        if p.normalize > 0:
            total = np.asarray(T.sum(axis=1), dtype=np.float64).ravel() + p.shrink
            scale = np.zeros_like(total)
            np.power(total, -p.normalize, out=scale, where=total > 0)
            T = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ T, dtype=np.float32)
        self.rules = keep_top_per_row(T, p.k)
        self.order_rank = csr_order_rank(train)
        self._order = rank_matrix(self.train_matrix, self.order_rank)

    def vote_matrix(self, users: np.ndarray, history: sp.csr_matrix) -> sp.csr_matrix:
        """(len(users), n_items) CSR: ``recency_decay**p`` at the item p steps before the end (p < last_n)."""
        p = self.params
        seq = history_sequences(users, history, self._order, None, p.last_n)  # item + 1, oldest first, left-padded
        weights = (p.recency_decay ** np.arange(p.last_n - 1, -1, -1, dtype=np.float64)).astype(np.float32)
        rows, cols = np.nonzero(seq)
        return sp.csr_matrix(
            (weights[cols], (rows, seq[rows, cols] - 1)), shape=(len(seq), self.n_items), dtype=np.float32
        )

    def _score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        scores = np.asarray((self.vote_matrix(users, history) @ self.rules).toarray(), dtype=np.float32)
        # items no rule reaches: below every reached item, by popularity (in (-1, 0))
        pop = self.item_popularity.astype(np.float64)
        fill = (pop / (pop.max() + 1.0) - 1.0).astype(np.float32) if len(pop) else pop.astype(np.float32)
        np.copyto(scores, np.broadcast_to(fill, scores.shape), where=scores <= 0)
        return scores

    def _state(self) -> dict[str, Any]:
        return {"rules": self.rules, "order_rank": self.order_rank}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.rules = sp.csr_matrix(arrays["rules"], dtype=np.float32)
        self.order_rank = np.asarray(arrays["order_rank"])
        self._order = rank_matrix(self.train_matrix, self.order_rank)
