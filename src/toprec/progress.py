"""Progress reporting on stderr (rich), silenced globally by ``--quiet``.

On a terminal a task is a live bar or spinner. When stderr is a file or a
pipe (a log, CI, ``nohup``) a live bar would only add blank lines, so a task
writes plain lines instead: its name once it has run a couple of seconds, at
most one progress line every ``TOPREC_LOG_EVERY`` seconds (default 10: a
trainer's epoch, a tuning trial), a "still running" line after a minute
without one, and "done in ..." at its end. A task shorter than the first
delay prints nothing. ``TOPREC_LOG_EVERY=0`` prints every step.

Output that is not a terminal is not wrapped: rich would otherwise cut lines
at 80 columns (``COLUMNS`` still sets a width when given).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Iterator

from rich.console import Console, ConsoleDimensions
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

_state = {"quiet": False}
#: the width of output that is not a terminal: wide enough that no line of toprec's is wrapped
UNWRAPPED = 10_000
#: default seconds between two progress lines of one task in a log (``TOPREC_LOG_EVERY``)
LOG_EVERY = 10.0


class _Console(Console):
    """A rich Console that does not wrap when its file is not a terminal (and no width was asked for)."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is None and "COLUMNS" not in self._environ and not self.is_terminal:
            return ConsoleDimensions(UNWRAPPED, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def make_console(stderr: bool = False, **kwargs) -> Console:
    """The console toprec prints through: rich's, unwrapped when the output is not a terminal."""
    return _Console(stderr=stderr, **kwargs)


console = make_console(stderr=True, highlight=False)


def unwrapped_help() -> None:
    """``--help`` into a file or pipe: typer's boxes wide enough that no option text is cut with '…'."""
    if os.environ.get("TERMINAL_WIDTH") or os.environ.get("COLUMNS"):
        return
    try:
        if sys.stdout is not None and sys.stdout.isatty():
            return
        from typer import rich_utils
    except (ImportError, AttributeError, ValueError):  # no rich help (TYPER_USE_RICH=0), or a closed stdout
        return
    rich_utils.MAX_WIDTH = 200


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"] or sys.stderr is None or getattr(_local, "silent", False)


_local = threading.local()


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No progress lines (and no watcher thread) from this thread inside the block; other threads unchanged.

    For work that takes milliseconds and runs many times, e.g. one served
    request: a progress task per call would start and join a thread each time.
    """
    before = getattr(_local, "silent", False)
    _local.silent = True
    try:
        yield
    finally:
        _local.silent = before


def log_every() -> float:
    """Seconds between two progress lines of a task when stderr is not a terminal."""
    try:
        return max(0.0, float(os.environ.get("TOPREC_LOG_EVERY", LOG_EVERY)))
    except ValueError:
        return LOG_EVERY


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


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


class LogTask(Task):
    """A task written as plain lines (stderr is not a terminal): see the module docstring."""

    def __init__(self, description: str, total: float | None, every: float):
        super().__init__(None, None)
        self.name = self.description = description
        self.total, self.completed, self.every = total, 0.0, every
        self.t0 = time.monotonic()
        self.last = self.t0  # when the last line was printed (the first progress line comes `every` s in)
        self.started = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # the lines
    def _line(self, text: str) -> None:
        self.last = time.monotonic()
        console.print(f"{text} [{_clock(self.last - self.t0)}]", markup=False, highlight=False, soft_wrap=True)

    def _status(self) -> str:
        count = ""
        if self.total is not None:
            count = f" ({self.completed:g}/{self.total:g})"
        return f"{self.description}{count}"

    def _start_line(self) -> None:
        with self._lock:
            if not self.started:
                self.started = True
                self._line(f"{self.name}: started")

    # the timer: the start line after a moment, then a line whenever a minute passed without one
    def start(self) -> "LogTask":
        if self.every == 0:
            self._start_line()
            return self
        self._thread = threading.Thread(target=self._watch, name="toprec-progress", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        if self._stop.wait(min(2.0, self.every)):
            return
        self._start_line()
        quiet_for = 6 * self.every
        while not self._stop.wait(min(1.0, quiet_for / 6)):
            with self._lock:
                if time.monotonic() - self.last >= quiet_for:
                    self._line(f"{self._status()}: still running")

    def _progress_line(self) -> None:
        with self._lock:
            if time.monotonic() - self.last >= self.every:
                self.started = True
                self._line(self._status())

    def advance(self, n: float = 1) -> None:
        self.completed += n
        self._progress_line()

    def update(self, completed: float | None = None, description: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if description is not None:
            self.description = description
        if completed is not None or description is not None:
            self._progress_line()

    def finish(self, failed: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self.started:
                status = self._status() if self.description != self.name or self.total is not None else self.name
                self._line(f"{status}: {'stopped' if failed else 'done'}")


@contextlib.contextmanager
def task(description: str, total: float | None = None) -> Iterator[Task]:
    """A progress bar (``total`` given) or spinner (``total=None``) on stderr; plain lines when not a terminal."""
    if is_quiet():
        yield Task(None, None)
        return
    if not console.is_terminal:
        # no live bar when stderr is a file or pipe: it would only add blank lines; a few plain lines instead
        t = LogTask(description, total, log_every()).start()
        failed = True
        try:
            yield t
            failed = False
        finally:
            t.finish(failed)
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
