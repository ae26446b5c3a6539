"""Loading a run's data, and the checks every writer makes on its output paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import progress
from ..errors import ToprecError


def load_data(d) -> Any:
    """The :class:`~toprec.Dataset` of a :class:`~toprec.experiment.config.DataConfig` (cached, logged)."""
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
        + (" [from cache]" if s.get("cache") == "hit" else "")
    )
    if ds.n_events == 0:
        raise ToprecError(f"{path}: no events")
    return ds


def stats(d) -> dict[str, Any]:
    """``toprec data stats``: users, items, events, density, quantiles of the data."""
    return load_data(d).stats()


def output_file(path: str | None) -> Path | None:
    """A file path to write (a folder there is a one-line error, before any work)."""
    if path is None:
        return None
    p = Path(path)
    if p.exists() and p.is_dir():
        raise ToprecError(f"{p}: is a folder, expected a file path")
    return p


def output_folder(path: str) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ToprecError(f"--output {p}: exists and is not a folder")
    return p


def require_data(d) -> None:
    if not Path(d.path).exists():
        raise ToprecError(f"--data {d.path}: no such file or folder")


def expect(cfg, command: str) -> None:
    if cfg.command != command:
        raise ToprecError(f"config command '{cfg.command}' given to {command}()")
