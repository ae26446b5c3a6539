"""Small IO helpers shared by every writer: output checks, atomic files and directories.

Every writer goes through :func:`atomic_path` (a file) or :func:`atomic_dir`
(a folder): the new content is written beside the target under a hidden name
that carries the writer's process id (``.NAME.<pid>.<random>.tmp``) and
renamed into place only when complete. A kill leaves at most such hidden
temporaries; the next successful write of the same target removes the ones
whose process is gone. The rename refuses to replace anything but a regular
file (a device such as ``/dev/full``, a folder) or, for folders, anything but
a folder. :func:`check_output` is the check the application layer makes on
every output path before any work starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import ToprecError

#: an unstamped temporary (written by an earlier version) older than this is a killed writer's
STALE_S = 3600.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process (or we cannot tell): keep its files
    return True


def _leftovers(path: Path) -> list[Path]:
    """Hidden temporaries of ``path`` left by writers that no longer run (killed mid-write)."""
    name = re.escape(path.name)
    pattern = re.compile(rf"^\.{name}\.(?:old\.)?(\d+)(?:\.|$)")
    unstamped = re.compile(rf"^\.{name}\.[a-z0-9_]{{8}}(?:\..*)?$")  # earlier versions' mkstemp names
    found = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    now = time.time()
    for p in entries:
        m = pattern.match(p.name)
        if m:
            if not _alive(int(m.group(1))):
                found.append(p)
        elif unstamped.match(p.name):
            with contextlib.suppress(OSError):
                if now - p.lstat().st_mtime > STALE_S:
                    found.append(p)
    return found


def clean_leftovers(path: str | os.PathLike) -> None:
    """Remove what killed writers of ``path`` left beside it (temp files, half-swapped folders)."""
    for p in _leftovers(Path(path)):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def recover_swap(path: str | os.PathLike) -> bool:
    """Put back a folder whose replacement was killed mid-swap (``path`` gone, its ``.old`` copy left).

    :func:`atomic_dir` moves the previous folder aside, then the new one in; a kill between the
    two leaves neither at ``path``. The previous one, complete, is renamed back (True when done).
    """
    path = Path(path)
    if os.path.lexists(path):
        return False
    for p in _leftovers(path):
        if p.name.startswith(f".{path.name}.old.") and p.is_dir() and not p.is_symlink():
            with contextlib.suppress(OSError):
                os.replace(p, path)
                return True
    return False


def _refuse_non_regular(path: Path, want_dir: bool = False) -> None:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # absent (or under a file: check_output names that)
        return
    if stat.S_ISLNK(st.st_mode):
        return  # the link itself is replaced, never what it points to
    if want_dir:
        if not stat.S_ISDIR(st.st_mode):
            raise ToprecError(f"{path}: exists and is not a folder; not replacing it")
    elif stat.S_ISDIR(st.st_mode):
        raise ToprecError(f"{path}: is a folder, expected a file path")
    elif not stat.S_ISREG(st.st_mode):
        raise ToprecError(f"{path}: exists and is not a regular file (a device or pipe); not replacing it")


def check_output(path: str | os.PathLike, folder: bool = False, what: str = "") -> Path:
    """A path a writer may use: one-line :class:`ToprecError` naming it otherwise (before any work).

    The target, when it exists, must be a regular file (``folder``: a folder);
    its nearest existing ancestor must be a folder we can write in.
    """
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    try:
        _refuse_non_regular(p, want_dir=folder)
    except ToprecError as exc:
        raise ToprecError(f"{what + ' ' if what else ''}{exc}") from None
    if folder and p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ToprecError(f"{label}: folder is not writable")
        return p
    parent = p.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link
            raise ToprecError(f"{label}: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise ToprecError(f"{label}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ToprecError(f"{label}: cannot write in folder {parent} (permission denied)")
    return p


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _mkparent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ToprecError(f"{path}: {path.parent} is a file, not a folder") from None
    except NotADirectoryError:
        raise ToprecError(f"{path}: a parent of it is a file, not a folder") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched,
    so a failed run never leaves a half-written output behind. ``path`` must
    not be a folder or a special file (checked before and at the rename).
    """
    path = Path(path)
    _refuse_non_regular(path)
    _mkparent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=suffix or ".tmp", dir=path.parent)
    except PermissionError:
        raise ToprecError(f"{path}: cannot write in folder {path.parent} (permission denied)") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        _refuse_non_regular(path)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    clean_leftovers(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it into place on success.

    An existing directory at ``path`` is replaced only once the new one is
    complete; anything else at ``path`` (a file) is refused. The files in
    it get the mode the umask gives (as for :func:`atomic_path`).
    """
    path = Path(path)
    _refuse_non_regular(path, want_dir=True)
    _mkparent(path)
    recover_swap(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), dir=path.parent))
    except PermissionError:
        raise ToprecError(f"{path}: cannot write in folder {path.parent} (permission denied)") from None
    try:
        yield tmp
        mask = _umask()
        for f in tmp.iterdir():
            if f.is_file() and not f.is_symlink():
                os.chmod(f, 0o666 & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
        _refuse_non_regular(path, want_dir=True)
        if os.path.lexists(path):
            old = path.with_name(f".{path.name}.old.{os.getpid()}.{tmp.name.rsplit('.', 1)[-1]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    clean_leftovers(path)


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars (as numbers) and anything else (as text)."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    return str(o)
