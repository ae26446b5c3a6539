"""The training rows on the device: ``RowMatrix`` (CSR kept there, batches densified there, vectorised)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..device import require_torch

#: a dense copy of the training matrix is kept on a CUDA device when it takes at most this many bytes
DENSE_ROWS_MAX_BYTES = 4 << 30


class RowMatrix:
    """A users x items CSR matrix kept on the device; row batches densify there, vectorised.

    On CUDA, when the dense matrix fits (``DENSE_ROWS_MAX_BYTES`` and a quarter
    of the free memory), a dense copy is kept too: a batch is then one row
    gather with no host synchronisation (the CSR gather must read the batch's
    nonzero count back to the host), and :meth:`bag` returns the dense rows,
    which every consumer (``prepare``, ``SparseIn``) accepts.
    """

    def __init__(self, X: sp.csr_matrix, device, dense: bool | None = None):
        torch = require_torch()
        X = sp.csr_matrix(X)
        self.shape = X.shape
        self.device = device
        self.indptr = torch.from_numpy(np.array(X.indptr, dtype=np.int64)).to(device)
        self.indices = torch.from_numpy(np.array(X.indices, dtype=np.int32)).to(device).long()
        self.values = torch.from_numpy(np.array(X.data, dtype=np.float32)).to(device)
        self.counts = self.indptr[1:] - self.indptr[:-1]
        nbytes = 4 * X.shape[0] * X.shape[1]
        if dense is None:
            dense = str(device).startswith("cuda") and nbytes <= DENSE_ROWS_MAX_BYTES
            if dense:
                free, _ = torch.cuda.mem_get_info(torch.device(device))
                dense = nbytes <= free // 4
        self.full = None
        if dense:
            self.full = torch.zeros(X.shape, dtype=torch.float32, device=device)
            rows = torch.repeat_interleave(torch.arange(X.shape[0], device=device), self.counts)
            self.full[rows, self.indices] = self.values

    def _gather(self, rows):
        """(row of each entry, position of each entry in the CSR arrays, counts) for ``rows``."""
        torch = require_torch()
        counts = self.counts[rows]
        starts = self.indptr[rows]
        total = int(counts.sum())
        r = torch.repeat_interleave(torch.arange(rows.shape[0], device=self.device), counts, output_size=total)
        first = torch.cumsum(counts, 0) - counts  # offset of each row's first entry in the gather
        pos = torch.arange(total, device=self.device) - first[r] + starts[r]
        return r, pos, counts, first

    def dense(self, rows, out=None):
        """Dense float32 (len(rows), n_items) of the given rows (``out`` is reused when given)."""
        torch = require_torch()
        b = rows.shape[0]
        if self.full is not None:
            if out is None:
                return self.full.index_select(0, rows)
            return torch.index_select(self.full, 0, rows, out=out[:b])
        if out is None:
            out = torch.zeros((b, self.shape[1]), dtype=torch.float32, device=self.device)
        else:
            out = out[:b]
            out.zero_()
        r, pos, _, _ = self._gather(rows)
        if len(pos):
            out[r, self.indices[pos]] = self.values[pos]
        return out

    def bag(self, rows):
        """The given rows as ``(indices, offsets, values, row_of_entry)`` (``torch.nn.functional.embedding_bag`` input).

        With a dense copy on the device: the dense rows instead (see the class docstring).
        """
        if self.full is not None:
            return self.full.index_select(0, rows)
        r, pos, _, first = self._gather(rows)
        return self.indices[pos], first, self.values[pos], r
