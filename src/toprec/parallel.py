"""Run a row-range job on every core, even when the kernel holds the GIL.

scipy's sparse kernels hold the GIL, so threads cannot share the scoring work.
On Linux we fork: children inherit the fitted model copy-on-write (no
pickling, no copies), each computes a contiguous range of rows and writes its
results straight into output arrays backed by shared anonymous memory. Each
row is computed by exactly the same code whichever process takes it, so
results do not depend on the number of workers.

``TOPREC_WORKERS`` (default: :func:`cpu_budget`) sets the number of
processes; 1 disables forking. Elsewhere than Linux everything runs in-process.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import traceback
from typing import Callable, Iterator

import numpy as np

from . import progress
from .errors import ToprecError


def cpu_budget() -> int:
    """The CPUs this process may use: the cores it may run on (its affinity), capped by ``OMP_NUM_THREADS`` when
    that is set to a positive number (the usual way to share a machine between processes). Every thread pool
    toprec sizes itself (forked row jobs, torch on the CPU, the re-ranker's LightGBM / CatBoost) takes this
    number: LightGBM's own default is every physical core whatever ``OMP_NUM_THREADS`` says, and four such
    processes on a 16-core machine made its re-ranker stage take 4 minutes instead of 5 seconds."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        n = max(1, os.cpu_count() or 1)
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", "") or 0)
    except ValueError:
        cap = 0
    return min(n, cap) if cap > 0 else n


def workers() -> int:
    env = os.environ.get("TOPREC_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            return 1
    if not sys.platform.startswith("linux"):
        return 1
    return cpu_budget()


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Run everything in this process (``TOPREC_WORKERS=1``) inside the block: forking after torch has
    started its threads, or CUDA, is unsafe."""
    old = os.environ.get("TOPREC_WORKERS")
    os.environ["TOPREC_WORKERS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOPREC_WORKERS", None)
        else:
            os.environ["TOPREC_WORKERS"] = old


def shared_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array in shared anonymous memory (visible to forked children)."""
    dtype = np.dtype(dtype)
    nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
    buf = mmap.mmap(-1, nbytes)
    return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def split_rows(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) ranges covering 0..n, boundaries on multiples of ``align``."""
    bounds = [0]
    for p in range(1, parts):
        b = int(round(n * p / parts / align)) * align
        bounds.append(min(n, max(bounds[-1], b)))
    bounds.append(n)
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def run_rows(n: int, job: Callable[[int, int], None], n_workers: int | None = None, align: int = 1) -> None:
    """Call ``job(lo, hi)`` over ``[0, n)``: the first range here, the others in forked children.

    ``job`` must write its results into arrays from :func:`shared_empty`. A
    child that fails is reported and its range recomputed here, so a failure
    to fork never changes the result.
    """
    n_workers = workers() if n_workers is None else n_workers
    ranges = split_rows(n, n_workers, align)
    if len(ranges) <= 1 or not hasattr(os, "fork"):
        for lo, hi in ranges:
            job(lo, hi)
        return
    pids: list[tuple[int, tuple[int, int]]] = []
    for lo, hi in ranges[1:]:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            job(lo, hi)
            continue
        if pid == 0:  # child: compute, then leave without running any cleanup of the parent's
            code = 0
            try:
                progress.set_quiet(True)
                job(lo, hi)
            except ToprecError:  # the parent recomputes this range and raises it, on one line
                code = 1
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        pids.append((pid, (lo, hi)))
    try:
        job(*ranges[0])
    finally:
        failed = []
        for pid, rng in pids:
            _, status = os.waitpid(pid, 0)
            if status != 0:
                failed.append(rng)
    for lo, hi in failed:
        job(lo, hi)
