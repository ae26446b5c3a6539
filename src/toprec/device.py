"""torch on a device (CUDA or CPU): dense rows scattered there, and the shared top-k computed there.

Nothing here imports torch at module import; each function asks for it.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import scipy.sparse as sp

from .errors import ToprecError


def require_torch():
    """The torch module, or a one-line ToprecError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ToprecError("this model needs torch: pip install torch (or pip install 'toprec[gpu]')") from None
    return torch


@contextlib.contextmanager
def cuda_matmul_tf32(torch, enabled: bool) -> Iterator[None]:
    """float32 CUDA matrix products on TF32 tensor cores (``enabled``) or in full float32, restored after.

    Uses ``torch.backends.cuda.matmul.fp32_precision`` where torch has it
    (2.9+: mixing it with the legacy ``set_float32_matmul_precision`` raises),
    else the legacy ``allow_tf32`` flag; only the CUDA matmul setting changes.
    """
    mm = torch.backends.cuda.matmul
    if hasattr(mm, "fp32_precision"):
        old = mm.fp32_precision
        mm.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            mm.fp32_precision = old
    else:  # pragma: no cover - torch < 2.9
        old = mm.allow_tf32
        mm.allow_tf32 = enabled
        try:
            yield
        finally:
            mm.allow_tf32 = old


def dense_rows(csr: sp.csr_matrix, device, dtype, out=None):
    """A scipy CSR matrix as a dense torch tensor on ``device`` (scattered there, no Python loop).

    Duplicate entries are summed, as scipy's ``toarray`` and products do.
    """
    torch = require_torch()
    n, m = csr.shape
    if out is None:
        out = torch.zeros((n, m), dtype=dtype, device=device)
    else:
        out.zero_()
    if csr.nnz:
        counts = torch.from_numpy(np.diff(csr.indptr).astype(np.int64)).to(device)
        rows = torch.repeat_interleave(torch.arange(n, device=device), counts)
        cols = torch.from_numpy(np.array(csr.indices, dtype=np.int64)).to(device)
        vals = torch.from_numpy(np.array(csr.data)).to(device=device, dtype=dtype)
        # a plain scatter where there are no duplicates (the usual case; accumulate sorts the indices first)
        out.index_put_((rows, cols), vals, accumulate=not csr.has_canonical_format)
    return out


def topk_on_device(
    score_tensor: Callable[[np.ndarray, sp.csr_matrix], "object"],
    users: np.ndarray,
    hist: sp.csr_matrix,
    k: int,
    n_items: int,
    popularity: np.ndarray,
    device,
    budget: int = 1 << 30,
):
    """The shared top-k (items in ``hist`` masked, cold users get ``popularity``) computed on ``device``.

    ``score_tensor(users_batch, hist_batch)`` returns a (b, n_items) tensor on
    ``device`` that may be modified in place. Scores are ranked as float32
    by :func:`_topk_rows` (the order of a stable descending sort: ties to the
    lower item), so the lists equal ``toprec.recommend.topk``'s (score desc,
    item asc, -1 after the last finite score) without copying score matrices
    to the host. ``budget`` bounds the bytes of one batch's scores and sort
    buffers; the lists wait on the device within a quarter of it.
    """
    torch = require_torch()
    from .recommend import Recommendations

    users = np.asarray(users, dtype=np.int64)
    n = len(users)
    out_items = np.empty((n, k), dtype=np.int32)
    out_scores = np.empty((n, k), dtype=np.float32)
    pop = torch.from_numpy(np.asarray(popularity, dtype=np.float32)).to(device)
    bs = max(1, budget // max(1, n_items * 16))
    kk = min(k, n_items)
    items_dev, scores_dev = [], []
    done = 0  # rows already copied to the host

    def flush() -> None:
        nonlocal done
        if items_dev:
            rows = sum(int(t.shape[0]) for t in items_dev)
            out_items[done : done + rows, :kk] = torch.cat(items_dev).cpu().numpy()
            out_scores[done : done + rows, :kk] = torch.cat(scores_dev).cpu().numpy()
            done += rows
            items_dev.clear()
            scores_dev.clear()

    with torch.inference_mode():
        for start in range(0, n, bs):
            h = hist[start : start + bs]
            s = score_tensor(users[start : start + bs], h).to(torch.float32)
            cold = torch.from_numpy(np.diff(h.indptr) == 0).to(device)
            s[cold] = pop
            if h.nnz:
                counts = torch.from_numpy(np.diff(h.indptr).astype(np.int64)).to(device)
                rows = torch.repeat_interleave(torch.arange(h.shape[0], device=device), counts)
                s[rows, torch.from_numpy(np.array(h.indices, dtype=np.int64)).to(device)] = -torch.inf
            vals, idx = _topk_rows(torch, s, kk)
            idx[torch.isneginf(vals)] = -1
            items_dev.append(idx.to(torch.int32))
            scores_dev.append(vals)
            if sum(int(t.shape[0]) for t in items_dev) * kk * 8 >= budget // 4:
                flush()  # results wait on the device (no sync per batch), within a quarter of the budget
        flush()
    if k > n_items:
        out_items[:, n_items:] = -1
        out_scores[:, n_items:] = -np.inf
    return Recommendations(users, out_items, out_scores)


def _topk_rows(torch, s, k: int):
    """Top ``k`` of each row of ``s``: score descending, ties to the lower column (a full stable sort's order).

    ``torch.topk`` of k + 1 columns, then the candidates ordered by (score desc,
    column asc). Where the k-th and (k+1)-th scores tie, which of the tied
    columns made the cut is unspecified, so those rows (rare with real
    scores; rows with fewer than k unmasked items) take the full stable sort.
    """
    n, m = s.shape
    if k >= m or n == 0:
        vals, idx = torch.sort(s, dim=1, descending=True, stable=True)
        return vals[:, :k], idx[:, :k]
    vals, idx = torch.topk(s, k + 1, dim=1, sorted=True)
    tie = vals[:, k - 1] == vals[:, k]
    vals, idx = vals[:, :k], idx[:, :k]
    o = torch.argsort(idx, dim=1)  # candidates by column, then a stable sort by score
    idx, vals = idx.gather(1, o), vals.gather(1, o)
    o = torch.sort(vals, dim=1, descending=True, stable=True).indices
    idx, vals = idx.gather(1, o), vals.gather(1, o)
    rows = torch.nonzero(tie).flatten()
    if rows.numel():
        v, i = torch.sort(s[rows], dim=1, descending=True, stable=True)
        vals[rows], idx[rows] = v[:, :k], i[:, :k]
    return vals, idx
