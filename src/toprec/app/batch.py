"""``batch``: the top-k lists of many users from a saved model, as one Parquet file (user, rank, item, score).

The model folder is what ``toprec submit --save-model`` writes (with its id
maps, :mod:`.saved`), or an ensemble pipeline (``ensemble --save-model``,
``auto``'s ``OUT/model``; fused or re-ranked, scored as ``serve`` scores it,
local engine only). Users (all the model's training users, or the ids in a
file) are scored in blocks through the model's own ``recommend`` -- the shared
top-k, seen items masked exactly as offline; unknown users get the most
popular items, as offline. Two engines give the same file byte for byte:

- ``local``: this process (its forked scoring workers, one per core);
- ``ray``: one scoring actor per CPU of a Ray cluster (``address``: ``auto``,
  ``HOST:PORT`` of a running head, ``ray://...``; none: a local one for the
  run). The fitted model is put once in the object store; its numpy arrays are
  read zero-copy from each node's shared memory by every actor there.

The lists come back to this process in order and are written by one writer,
row groups of ``block`` users, to a temporary file renamed into place: a
failed or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import progress
from ..errors import ToprecError
from ..io import atomic_path
from .data import expect, output_file
from .results import BatchResult
from .saved import SavedModel, SavedPipeline, load_saved

#: users per scoring unit given to one Ray actor (at most; smaller so every actor gets several)
RAY_UNIT = 8192


# ------------------------------------------------------------------ users
def _read_users_file(path: str) -> np.ndarray:
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ToprecError(f"--users {p}: no such file")
    try:
        if p.suffix.lower() == ".parquet":
            frame = pd.read_parquet(p)
        else:
            sep = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
            frame = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise ToprecError(f"--users {p}: unreadable ({' '.join(str(exc).split())[:120]})") from None
    cols = [str(c) for c in frame.columns]
    if "user" in cols:
        col = frame["user"]
    elif len(cols) == 1 and p.suffix.lower() == ".parquet":
        col = frame.iloc[:, 0]
    elif len(cols) == 1 and cols[0].strip().lower() in ("user", "users", "user_id", "userid", "id"):
        col = frame.iloc[:, 0]
    else:
        raise ToprecError(f"--users {p}: expected a 'user' column (a header line 'user', then one id a line); "
                          f"found columns: {', '.join(cols[:8]) or 'none'}")  # fmt: skip
    values = col.to_numpy()
    if len(values) == 0:
        raise ToprecError(f"--users {p}: no users listed")
    return values


def select_users(spec: str, saved: SavedModel) -> tuple[np.ndarray, np.ndarray, int]:
    """(internal indices, external ids, number unknown) of ``spec``: ``all`` or a users file."""
    from ..data.dataset import lookup
    from ..data.loaders import written_ints

    if spec.strip().lower() == "all":
        n = len(saved.user_ids)
        return np.arange(n, dtype=np.int64), saved.user_ids, 0
    given = _read_users_file(spec)
    import pandas as pd

    given = np.asarray(pd.unique(given))  # each user once, first occurrence order
    internal = lookup(saved.user_ids, given)
    unknown = int((internal < 0).sum())
    if unknown == 0:
        ids = saved.user_ids[internal]
    elif saved.user_ids.dtype.kind in "iu" and written_ints(given):
        ids = given.astype(np.int64)  # every id is a number as written ("01" is not 1: it stays text below)
    else:
        ids = np.asarray([str(g) for g in given], dtype=object)
    return internal, ids, unknown


# ----------------------------------------------------------------- engines
def _local(saved: SavedModel, users: np.ndarray, k: int, unit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for s in range(0, len(users), unit):
        recs = saved.model.recommend(users[s : s + unit], k=k)
        yield recs.items, recs.scores


def _check_address(address: str | None) -> None:
    """``HOST:PORT`` that nothing answers on: a one-line error at once (Ray itself retries for a minute)."""
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ToprecError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise ToprecError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def _ray_scorer(ray):
    @ray.remote(num_cpus=1)
    class Scorer:
        def __init__(self, model):
            os.environ["TOPREC_WORKERS"] = "1"  # one core per actor: no forked scoring workers
            self.model = model  # arrays: zero-copy views of the object store

        def score(self, users: np.ndarray, k: int):
            recs = self.model.recommend(users, k=k)
            return recs.items, recs.scores

    return Scorer


def _ray(saved: SavedModel, users: np.ndarray, k: int, unit: int, address: str | None,
         workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise ToprecError("--engine ray needs Ray: pip install 'toprec[ray]'") from None
    started = False
    try:
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, namespace="toprec-batch")  # fmt: skip
            started = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ToprecError(f"--address {address or 'local'}: cannot connect to Ray "
                              f"({' '.join(str(exc).split())[:160]})") from None  # fmt: skip
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        model_ref = ray.put(saved.model)  # once; each node maps the arrays
        Scorer = _ray_scorer(ray)
        pool = ActorPool([Scorer.remote(model_ref) for _ in range(n)])
        size = max(1, min(unit, RAY_UNIT, -(-len(users) // (4 * n))))
        parts = [users[s : s + size] for s in range(0, len(users), size)]
        yield from pool.map(lambda actor, part: actor.score.remote(part, k), parts)
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------ writer
class _Writer:
    """Rows (user, rank, item, score) for users in order, written in row groups of ``block`` users."""

    def __init__(self, path: Path, saved: SavedModel, user_ids: np.ndarray, k: int, block: int):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.saved, self.user_ids, self.k, self.block = pa, saved, user_ids, k, block
        self.rows = 0
        self.done = 0
        self.items: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.pending = 0
        probe = self._table(0, np.zeros((0, k), np.int32), np.zeros((0, k), np.float32))
        self.writer = pq.ParquetWriter(str(path), probe.schema)

    def _table(self, start: int, items: np.ndarray, scores: np.ndarray):
        pa = self.pa
        n, k = items.shape
        valid = (items >= 0).ravel()
        rows = np.repeat(np.arange(start, start + n), k)[valid]
        ids = self.user_ids[rows] if len(rows) else self.user_ids[:0]
        item_ids = self.saved.item_ids[items.ravel()[valid]]
        return pa.table({
            "user": pa.array(ids.astype(str) if ids.dtype == object else ids),
            "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), n)[valid]),
            "item": pa.array(item_ids.astype(str) if item_ids.dtype == object else item_ids),
            "score": pa.array(scores.ravel()[valid].astype(np.float32)),
        })  # fmt: skip

    def add(self, items: np.ndarray, scores: np.ndarray) -> None:
        self.items.append(items)
        self.scores.append(scores)
        self.pending += len(items)
        while self.pending >= self.block:
            self._flush(self.block)

    def _flush(self, n: int) -> None:
        items, scores = np.concatenate(self.items), np.concatenate(self.scores)
        table = self._table(self.done, items[:n], scores[:n])
        self.writer.write_table(table)
        self.rows += table.num_rows
        self.done += n
        self.items, self.scores = [items[n:]], [scores[n:]]
        self.pending = len(items) - n

    def close(self) -> None:
        if self.pending:
            self._flush(self.pending)
        self.writer.close()


# --------------------------------------------------------------------- app
def batch(cfg) -> BatchResult:
    expect(cfg, "batch")
    b = cfg.batch
    k = cfg.metrics.k
    output = output_file(b.output, what="--output")
    if b.engine == "ray":
        _check_address(b.address)
    saved = load_saved(b.model_dir)
    if Path(b.model_dir).resolve() == output.resolve() or saved.path.resolve() in output.resolve().parents:
        raise ToprecError(f"--output {output}: is inside the model folder {saved.path}; write it elsewhere")
    if k > saved.model.n_items:
        raise ToprecError(f"-k {k:,} is more than the model's {saved.model.n_items:,} items")
    if isinstance(saved.model, SavedPipeline):
        if k > saved.model.candidates:
            raise ToprecError(f"-k {k:,} is more than the pipeline's {saved.model.candidates:,} candidates per member")
        if b.engine == "ray":
            raise ToprecError(f"--model-dir {saved.path}: an ensemble pipeline is scored with --engine local "
                              "(Ray scores one saved model)")  # fmt: skip
    users, user_ids, unknown = select_users(b.users, saved)
    t0 = time.perf_counter()
    with atomic_path(output, suffix=".parquet.tmp") as tmp:
        writer = _Writer(tmp, saved, user_ids, k, b.block)
        try:
            if b.engine == "ray":
                parts = _ray(saved, users, k, b.block, b.address, b.workers)
            else:
                parts = _local(saved, users, k, b.block)
            with progress.task(f"{saved.model.name}: batch top-{k} ({b.engine})", total=len(users)) as bar:
                for items, scores in parts:
                    writer.add(items, scores)
                    bar.advance(len(items))
        finally:
            writer.close()
    seconds = time.perf_counter() - t0
    return BatchResult(output=output, users=len(users), rows=writer.rows, k=k, engine=b.engine,
                       unknown_users=unknown, seconds=seconds, model=saved.model.name)  # fmt: skip
