"""Where computations run, decided once for every model: the device policy, and torch helpers for it.

- :func:`resolve_device`: ``auto`` / ``cpu`` / ``cuda`` -> the device a model
  uses (EASE and the torch trainer both ask it). ``auto`` is CUDA when torch
  sees a GPU; on a Linux machine that surely has none (no driver files, no
  NVIDIA/AMD graphics on the PCI bus) it answers without importing torch.
- :func:`cpu_threads`: torch CPU threads for a piece of work (one for tiny ones).
- :func:`fast_fp64`: whether a CUDA device runs float64 at a useful rate.
- :func:`dense_rows`, :func:`cuda_matmul_tf32`: CSR rows scattered densely
  on a device; float32 matrix-product precision on CUDA.

Nothing here imports torch at module import; each function asks for it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from .errors import ToprecError
from .parallel import cpu_budget


def require_torch():
    """The torch module, or a one-line ToprecError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ToprecError("this model needs torch: pip install torch (or pip install 'toprec[gpu]')") from None
    return torch


#: device files of GPU drivers torch can use: NVIDIA, NVIDIA Jetson, AMD ROCm, WSL
_GPU_DEVICE_FILES = (
    "/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvmap", "/dev/nvgpu", "/dev/kfd", "/dev/dxg",
)  # fmt: skip
#: PCI vendor ids of NVIDIA and AMD/ATI graphics (AMD's CPUs and chipsets are 0x1022)
_GPU_PCI_VENDORS = {"0x10de", "0x1002"}
_PCI_DEVICES = "/sys/bus/pci/devices"


def _surely_no_gpu() -> bool:
    """True only on Linux with no GPU device file and no NVIDIA/AMD graphics on the PCI bus.

    A driver that loads on first use still shows its card on the PCI bus, so
    "no" here means torch could not find a GPU either.
    """
    if not sys.platform.startswith("linux"):
        return False
    if any(os.path.exists(p) for p in _GPU_DEVICE_FILES):
        return False
    try:
        for dev in os.scandir(_PCI_DEVICES):
            try:
                with open(os.path.join(dev.path, "vendor")) as fh:
                    if fh.read().strip().lower() in _GPU_PCI_VENDORS:
                        return False
            except OSError:
                continue
    except OSError:
        return False  # cannot tell: let torch decide
    return True


def cuda_available(quick: bool = False) -> bool:
    """Whether torch can use a CUDA (or ROCm) GPU.

    ``quick``: answer False without importing torch (2+ s) when this Linux
    machine surely has no GPU (:func:`_surely_no_gpu`); ``device=auto`` uses
    it, an explicit ``device=cuda`` asks torch.
    """
    if quick and "torch" not in sys.modules and _surely_no_gpu():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str, model: str = "", gpu_useful: bool = True) -> str:
    """The device a model runs on: ``auto`` -> cuda when available (and ``gpu_useful``) else cpu.

    ``cuda`` without a usable GPU is a one-line ToprecError (naming ``model`` when given).
    """
    if device == "auto":
        return "cuda" if gpu_useful and cuda_available(quick=True) else "cpu"
    if device == "cuda" and not cuda_available():
        who = f"model '{model}': " if model else ""
        raise ToprecError(f"{who}device 'cuda' needs torch with a CUDA GPU, and none is available")
    return device


#: CUDA compute capabilities with float64 at half (or full) the float32 rate
FAST_FP64_CAPABILITIES = {(6, 0), (7, 0), (8, 0), (9, 0), (10, 0)}


def fast_fp64(torch, device) -> bool:
    """Whether the CUDA ``device`` runs float64 at half (or full) its float32 rate (P100, V100, A100, H100, B200)."""
    try:
        return tuple(torch.cuda.get_device_capability(device)) in FAST_FP64_CAPABILITIES
    except (RuntimeError, AssertionError, ValueError):  # pragma: no cover - no CUDA
        return False


#: work (items x rows) below which torch runs on one CPU thread
SMALL_WORK = 2_000_000


#: the CPUs torch may use on the host: the affinity, capped by ``OMP_NUM_THREADS`` when set
usable_cores = cpu_budget


def cpu_threads(requested: int, work: int) -> int:
    """torch CPU threads: ``requested``, or (0 = auto) one for small work (no OpenMP hand-offs, no spinning
    on a busy machine), else every usable core."""
    return requested or (1 if work < SMALL_WORK else usable_cores())


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
