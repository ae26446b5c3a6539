"""Loading a run's data, and the checks every writer makes on its output paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import progress
from ..errors import ToprecError
from ..io import check_output


def load_data(d, order_use: str | None = None) -> Any:
    """The :class:`~toprec.Dataset` of a :class:`~toprec.experiment.config.DataConfig` (cached, logged).

    The load line says which order the events are in (a time column, or the file's rows);
    ``order_use`` names what relies on that order, warned about when it is only the file's.
    """
    from ..data.dataset import Dataset

    path = Path(d.path)
    with progress.task(f"load {path}"):
        ds = Dataset.load(path, format=d.format, user_col=d.user_col, item_col=d.item_col, time_col=d.time_col,
                          rating_col=d.rating_col, min_rating=d.min_rating, cache=d.cache)  # fmt: skip
    s = ds.summary
    progress.log(
        f"loaded {ds.n_events:,} events, {ds.n_users:,} users, {ds.n_items:,} items"
        f" ({s.get('duplicates_dropped', 0):,} repeated user-item events dropped"
        + (f", {s['filtered_by_rating']:,} below --min-rating" if "filtered_by_rating" in s else "")
        + ")"
        + (f"; order: {s['order']}" if "order" in s else "")
        + (" [from cache]" if s.get("cache") == "hit" else "")
    )
    if ds.n_events == 0:
        raise ToprecError(f"{path}: no events")
    for key, n in s.items():  # a side file none of whose items is in the events: dropped, said once
        name = key[: -len("_rows_unknown_item")] if key.endswith("_rows_unknown_item") else None
        if name and name not in (ds.features or {}):
            warn(f"{path}: side file '{name}': none of its {n:,} rows names an item of the events (ids are compared "
                 "as written: '1' is not '0001'); it is not used")  # fmt: skip
    if order_use and s.get("order") == "file order":
        warn(f"{path} has no time column: the events are in the file's row order, and {order_use} relies on it "
             "(pass --time-col if a column holds the time)")  # fmt: skip
    elif order_use and ds.time is not None and ds.n_events > ds.n_users and not _times_differ(ds):
        warn(f"{path}: no user has events at two different times: the events are in the file's row order, and "
             f"{order_use} relies on it")  # fmt: skip
    return ds


def _times_differ(ds) -> bool:
    """Whether some user's events are at different times (else "latest" is only the file's row order)."""
    t, ptr = np.asarray(ds.time), np.asarray(ds.user_ptr)
    step = np.diff(t) != 0
    step[ptr[1:-1][(ptr[1:-1] > 0) & (ptr[1:-1] < len(t))] - 1] = False  # a step between two users is not one
    return bool(step.any())


def order_use(cfg) -> str | None:
    """What in ``cfg``'s run relies on the events' time order (None: nothing)."""
    s, c = cfg.split, cfg.command
    if c == "eda":
        return "the time and sequence sections"
    if c not in ("evaluate", "tune", "ensemble", "align", "auto", "report"):
        return None
    if c in ("evaluate", "report") and s.protocol != "competition":
        return {"leave_last": "leave_last (the latest events held out)",
                "temporal": "the temporal cutoff"}.get(s.protocol)  # fmt: skip
    return f"--last {s.last} (the latest events held out)" if s.last > 0 else None


def warn(message: str) -> None:
    """A one-line warning on stderr (shown even with --quiet)."""
    progress.console.print(f"toprec: warning: {message}", markup=False, highlight=False, soft_wrap=True)


def stats(d) -> dict[str, Any]:
    """``toprec data stats``: users, items, events, density, quantiles of the data."""
    return load_data(d).stats()


def _is_input(p: Path, d) -> str | None:
    """Why writing ``p`` would touch the data ``d`` reads (None when it would not)."""
    from ..data.cache import SOURCE_NAMES

    data = Path(d.path).resolve()
    p = p.resolve()
    if p == data:
        return "is the input data"
    if data.is_dir():
        if p.parent == data and (p.name in SOURCE_NAMES or p.suffix in (".inter", ".item")):
            return f"is an input file of the data folder {d.path}"
    elif data.suffix == ".inter" and p == data.with_suffix(".item"):
        return "is an input file of the data"
    return None


def output_file(path: str | None, data=None, what: str = "--output") -> Path | None:
    """A file path to write, checked before any work: a one-line error naming it when it is
    the input data, a folder or a special file, or when its folder cannot be written."""
    if path is None:
        return None
    p = check_output(path, what=what)
    if data is not None and (why := _is_input(p, data)):
        raise ToprecError(f"{what} {p}: {why}; write the output elsewhere")
    return p


def output_folder(path: str | None, data=None, what: str = "--output", replaced: bool = False) -> Path | None:
    """A folder to write into (``replaced``: to replace as a whole), checked like :func:`output_file`.

    Never the data folder; a folder that is replaced must not hold the data either.
    """
    if path is None:
        return None
    p = check_output(path, folder=True, what=what)
    if data is not None:
        rp, dp = p.resolve(), Path(data.path).resolve()
        if rp == dp or (dp.is_file() and rp == dp.parent and replaced):
            raise ToprecError(f"{what} {p}: is the data folder; write the output elsewhere")
        if replaced and dp.is_relative_to(rp):
            raise ToprecError(f"{what} {p}: holds the input data {data.path}, which it would replace; "
                              "write the output elsewhere")  # fmt: skip
    return p


def check_k(ds, k: int, command: str) -> None:
    """``-k`` larger than the catalogue: every list would be the whole catalogue (one-line error)."""
    if k > ds.n_items:
        raise ToprecError(f"-k {k:,} is more than the {ds.n_items:,} items of the data; {command} needs "
                          f"-k at most {ds.n_items:,}")  # fmt: skip


def check_unseen(ds, k: int, command: str) -> None:
    """A command that writes exactly ``k`` unseen items per user: before any work, a one-line error naming the
    first user who has seen all but fewer than ``k`` items, instead of failing when the lists are written, after
    the fits (and a whole ``auto`` budget)."""
    seen = np.diff(ds.user_ptr)  # a Dataset holds each (user, item) pair once
    short = np.flatnonzero(ds.n_items - seen < k)
    if len(short):
        u = short[0]
        raise ToprecError(f"user {ds.user_ids[u]!s} has seen {seen[u]:,} of the {ds.n_items:,} items, so fewer "
                          f"than -k {k:,} are left to recommend ({len(short):,} user{'s' if len(short) > 1 else ''} "
                          f"so); {command} writes exactly {k:,} unseen items per user: lower -k")  # fmt: skip


def require_data(d) -> None:
    if not Path(d.path).exists():
        raise ToprecError(f"--data {d.path}: no such file or folder")


def expect(cfg, command: str) -> None:
    if cfg.command != command:
        raise ToprecError(f"config command '{cfg.command}' given to {command}()")
