"""Peak-memory estimates of the fits, from the data's shape (see :mod:`toprec.memory`).

Each function returns a :class:`~toprec.memory.MemoryEstimate` of the bytes a
fit allocates beyond the data already in memory (and the scoring right after
it, which an unusable fit would only postpone): the peak over its phases,
counted from what the code allocates (float32 dense blocks, sparse products at
8-12 bytes a stored value, forked workers' private products). The constants
were checked against measured peak RSS (``benchmarks/bench_memory.py``, table
in ``benchmarks/results/memory.md``); an estimate aims to be within about
+-30% of the measured peak above the data, and errs high where a phase is
data dependent (the fill of a sparse Gram).

:meth:`Recommender.memory_estimate <toprec.models.base.Recommender.memory_estimate>`
finds the function for a model here by its registry name (or a parent class's);
a model may override the method instead.
"""

from __future__ import annotations

from typing import Callable

from .. import parallel
from . import kernels
from ..memory import MemoryEstimate

F32 = 4
#: bytes per stored value of a scipy CSR product (float32 data + int32 index + slack of the row pass)
SPARSE = 10
#: llvmlite and numba's compiled kernels (:mod:`.kernels`) in memory (measured: +64-93 MB peak on ml1m-like)
KERNEL_RUNTIME = 96 * 2**20
SPARSE_ALT = "a sparse model such as rp3beta or itemknn (memory grows with items x neighbours)"

ESTIMATES: dict[str, Callable[..., MemoryEstimate | None]] = {}


def estimates(*names: str):
    def deco(fn):
        for name in names:
            ESTIMATES[name] = fn
        return fn

    return deco


def _pairs(n_rows: int, n_cols: int, nnz: int, skew: float = 2.0) -> float:
    """Stored values of the Gram of a (n_rows x n_cols) 0/1 matrix: at most n_cols^2, about
    skew * nnz^2 / n_rows (sum of squared row counts for heavy-tailed rows)."""
    if n_rows <= 0:
        return 0.0
    return min(float(n_cols) ** 2, skew * float(nnz) ** 2 / n_rows)


def gram_bytes(n_rows: int, n_cols: int, nnz: int, skew: float = 2.0) -> float:
    """Peak of :func:`toprec.models.linalg.gram` (n_cols x n_cols dense float32 result).

    w forked workers each build a sparse product of their rows and densify it
    into a shared buffer; the parent then sums the w buffers into a copy, and
    the result is copied once more into Fortran order. With the compiled
    kernel (:mod:`.kernels`) only the dense result is allocated.
    """
    n2 = float(n_cols) ** 2
    if kernels.available():  # the compiled kernel: the dense result, int64 copies of X's indices, numba itself
        return F32 * n2 + 16.0 * nnz + KERNEL_RUNTIME
    w = parallel.workers() if nnz > 2_000_000 else 1
    per_worker = SPARSE * _pairs(n_rows / w, n_cols, nnz / w, skew) + F32 * n2
    in_workers = w * F32 * n2 + (w * per_worker if w > 1 else per_worker)
    merge = (w + 1) * F32 * n2 if w > 1 else 2 * F32 * n2
    return max(in_workers, merge) + 16.0 * nnz  # + transposed copies of X


def batches(n_users: int, n_items: int, factor: int = 1) -> float:
    """Score batches of the shared top-k: ``factor`` x its memory budget, less for small data."""
    return factor * min(512 * 2**20, 2 * F32 * float(n_users) * n_items)


def _scoring_dense(n_users: int, n_items: int) -> float:
    """Scoring with a dense item-item matrix: its cached column blocks (a second copy; none with the compiled
    kernel) + score batches."""
    if kernels.available():
        return KERNEL_RUNTIME + batches(n_users, n_items)
    return F32 * float(n_items) ** 2 + batches(n_users, n_items)


def _fmt(n: int) -> str:
    return f"{n:,}"


def item_space(n_users: int, n_items: int, nnz: int, name: str, extra: str = "") -> MemoryEstimate:
    n2 = float(n_items) ** 2
    fit = gram_bytes(n_users, n_items, nnz)
    score = F32 * n2 + _scoring_dense(n_users, n_items)  # B + its column blocks
    alt = "use a sparse model such as rp3beta or itemknn"
    if n_users < n_items:
        alt = f"use --param form=users (a {_fmt(n_users)} x {_fmt(n_users)} solve) or " + alt[4:]
    return MemoryEstimate(int(max(fit, score)), f"the item-space Gram + inverse of {_fmt(n_items)} items{extra}", alt)


def user_space(n_users: int, n_items: int, nnz: int, name: str) -> MemoryEstimate:
    """EASE / EDLAE by Woodbury: users x users Gram and inverse K, then M = K X (users x items, twice)."""
    m2 = float(n_users) ** 2
    gram = gram_bytes(n_items, n_users, nnz, skew=8.0)  # rows = items: popularity is more skewed than activity
    runtime = KERNEL_RUNTIME if kernels.available() else 0.0  # loaded by the Gram, held from then on
    solve = F32 * m2 + 2 * F32 * float(n_users) * n_items + SPARSE * nnz + runtime
    score = F32 * float(n_users) * n_items + batches(n_users, n_items, 2) + runtime
    return MemoryEstimate(int(max(gram, solve, score)),
                          f"the user-space (Woodbury) solve of {_fmt(n_users)} users x {_fmt(n_items)} items",
                          f"use fewer users (a sample) or {SPARSE_ALT}")  # fmt: skip


@estimates("ease", "cease", "edlae")
def ease_family(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate | None:
    p = model.params
    if getattr(p, "device", "cpu") == "cuda":
        return None  # GPU memory: torch's own error
    form = getattr(p, "form", "items")
    if form == "auto":
        form = "items" if n_items <= n_users else "users"
    if getattr(p, "device", "cpu") == "auto" and form == "items":
        from ..device import cuda_available

        if cuda_available(quick=True):
            return None
    if form == "users":
        return user_space(n_users, n_items, nnz, model.name)
    return item_space(n_users, n_items, nnz, model.name)


@estimates("easer")
def easer(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
    p = model.params
    n, N = float(n_items), float(n_items + min(p.n_pairs, n_items * (n_items - 1) // 2))
    form = getattr(p, "form", "items")
    if form == "auto":
        form = "items" if n_items <= n_users else "users"
    if form == "users" and getattr(p, "solver", "exact") == "exact":
        # Woodbury: users x users K, M^T (items + pairs) x users, the basis users x items, sparse co-counts
        u = float(n_users)
        solve = F32 * u * u + F32 * N * u + F32 * u * n + SPARSE * nnz * 4
        score = F32 * u * n + batches(n_users, n_items, 2)
        return MemoryEstimate(int(max(gram_bytes(n_items, n_users, nnz, skew=8.0), solve, score)),
                              f"EASE^R's user-space (Woodbury) solve of {_fmt(n_users)} users x {_fmt(n_items)} items "
                              f"+ {_fmt(int(N - n))} pairs",
                              f"use fewer users (a sample), --model ease, or {SPARSE_ALT}")  # fmt: skip
    select = 13 * n * n  # G, its upper triangle, the mask and the partition copy
    solve = F32 * n * n + F32 * N * N + 2 * F32 * n * N  # G, H = [X Z]^T [X Z] (inverted in place), W^T, B and C
    fit = max(gram_bytes(n_users, n_items, nnz), select, solve)
    score = 2 * F32 * n * N + batches(n_users, n_items)
    return MemoryEstimate(int(max(fit, score)),
                          f"EASE^R's Gram + inverse of {_fmt(n_items)} items + {_fmt(int(N - n))} pairs",
                          f"use --param n_pairs=... (fewer pairs), --model ease, or {SPARSE_ALT}")  # fmt: skip


@estimates("admm-slim")
def admm_slim(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
    n2 = float(n_items) ** 2
    return MemoryEstimate(int(max(gram_bytes(n_users, n_items, nnz), 5 * F32 * n2) + _scoring_dense(n_users, n_items)),
                          f"ADMM SLIM's five {_fmt(n_items)} x {_fmt(n_items)} matrices", f"use {SPARSE_ALT}")


@estimates("sansa")
def sansa(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
    """Sparse Gram (lower triangle, 8 bytes a stored pair), the factor, the sparse weights; no n^2 array."""
    from .sparse_inverse import GRAM_BLOCK_WORK, RANK_BLOCK, SOLVE_CHUNK, per_item

    p = model.params
    n = float(n_items)
    k = float(min(n_items, p.factor_size))
    keep = float(per_item(n_items, p.density, p.max_per_item))
    lower = _pairs(n_users, n_items, nnz) / 2 + n  # stored values of the Gram's lower triangle
    data = 24.0 * nnz  # float32 copy of X, the column-permuted copy and its transpose
    gram = 16 * lower + 45.0 * GRAM_BLOCK_WORK  # the blocks, then concatenated; one block's product and sort
    factor = 8 * lower + 40 * n * k + 80.0 * SOLVE_CHUNK + 60.0 * RANK_BLOCK  # Gl, pattern + factor, one chunk
    weights = 4 * 16 * n * k + 60.0 * RANK_BLOCK + 2 * 24 * n * keep  # W's float64 copies, a block, B as COO + CSR
    score = 8 * n * keep + batches(n_users, n_items)
    return MemoryEstimate(int(data + max(gram, factor, weights, score)),
                          f"SANSA's sparse Gram of {_fmt(n_items)} items (~{_fmt(int(lower))} stored pairs) and "
                          f"sparse weights ({int(keep):,} per item)",
                          "use --param density=... or --param factor_size=... (fewer weights), or a sample of "
                          "the users (fewer Gram pairs)")  # fmt: skip


@estimates("itemknn", "rp3beta")
def neighbours(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
    p = model.params
    b, n, k = float(min(p.block, n_items)), float(n_items), float(min(p.k, n_items))
    # a block: its sparse product, dense rows (float32) and argpartition's int64 indices
    block = b * n * (SPARSE + F32 + 8)
    out = n * k * 40  # the kept neighbours as (row, col, value), COO -> CSR, transposed
    copies = 24.0 * nnz  # weighted copy, CSC and transposed copies of X
    score = batches(n_users, n_items) / 2  # history @ S per batch: a sparse product, then dense scores
    return MemoryEstimate(int(block + out + score + copies),
                          f"{_fmt(n_items)} items in blocks of {int(b):,} with {int(k):,} neighbours each",
                          "use --param block=... (smaller blocks) or --param k=... (fewer neighbours)")  # fmt: skip


@estimates("ials", "bpr", "lmf")
def factorization(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
    f = float(model.params.factors + 1)
    factors = F32 * f * (n_users + n_items) * 2  # learned factors (+ the estimator's own copies)
    data = 32.0 * nnz  # binary CSR, its transpose and implicit's confidence copies
    score = 8 * f * n_items + batches(n_users, n_items)  # float64 item factors + score batches
    return MemoryEstimate(int(factors + data + score),
                          f"{int(f) - 1} factors for {_fmt(n_users)} users and {_fmt(n_items)} items",
                          "use --param factors=... (fewer factors)")  # fmt: skip


@estimates("multidae", "multivae", "recvae", "cdae", "autorec")
def autoencoder(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate:
    p = model.params
    latent = getattr(p, "latent", getattr(p, "hidden", 200)) or 200
    hidden = getattr(p, "hidden", 0) or 0
    width = 3 * latent + 2 * hidden  # encoder (mean and variance) + decoder, + hidden layers
    params = float(n_items) * width + (n_users * latent if model.name == "cdae" else 0)
    bs = float(min(getattr(p, "batch_size", 500), max(1, n_users)))
    # weights, gradients and Adam's two moments; a batch's dense input, logits, softmax and their gradients
    train = 4 * F32 * params + 8 * F32 * bs * n_items
    rows = 24.0 * nnz  # the training rows as tensors (indices, values) + validation split copies
    score = batches(n_users, n_items, 2)  # validation and recommend score batches (memory budget)
    runtime = 200 * 2**20  # torch's kernels and allocator caches, loaded by the first fit in a process
    return MemoryEstimate(int(train + rows + score + runtime),
                          f"an autoencoder over {_fmt(n_items)} items (batch {int(bs):,}, width {width:,})",
                          "use --param batch_size=... (smaller batches) or a smaller latent/hidden size")  # fmt: skip


def estimate(model, n_users: int, n_items: int, nnz: int) -> MemoryEstimate | None:
    """The estimate of the first class in ``model``'s MRO with one here (None: unknown)."""
    for klass in type(model).__mro__:
        fn = ESTIMATES.get(getattr(klass, "name", None))
        if fn is not None:
            return fn(model, int(n_users), int(n_items), int(nnz))
    return None
