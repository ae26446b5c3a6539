"""Progress reporting on stderr (rich), silenced globally by ``--quiet``."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

_state = {"quiet": False}
console = Console(stderr=True, highlight=False)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"] or sys.stderr is None


class Task:
    """A handle to advance one progress bar; a no-op when quiet."""

    def __init__(self, progress: Progress | None, task_id: int | None):
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        if self._progress is not None:
            kwargs = {}
            if completed is not None:
                kwargs["completed"] = completed
            if description is not None:
                kwargs["description"] = description
            self._progress.update(self._id, **kwargs)


@contextlib.contextmanager
def task(description: str, total: float | None = None) -> Iterator[Task]:
    """A progress bar (``total`` given) or spinner (``total=None``) on stderr."""
    if is_quiet() or not console.is_terminal:
        # no live bar when stderr is a file or pipe: it would only add blank lines
        yield Task(None, None)
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), TextColumn("{task.percentage:>3.0f}%")]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task_id = progress.add_task(description, total=total)
        yield Task(progress, task_id)


def log(message: str) -> None:
    """A status line on stderr (hidden when quiet)."""
    if not is_quiet():
        console.print(message)


@contextlib.contextmanager
def timed(store: dict, key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        store[key] = time.perf_counter() - start
