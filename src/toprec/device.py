"""torch on a device (CUDA or CPU): dense rows scattered there, matrix-product precision.

Nothing here imports torch at module import; each function asks for it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

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
