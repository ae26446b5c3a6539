"""Where toprec keeps what the user did not name a place for: the tracking store and tuning studies.

``toprec_home()`` is ``$TOPREC_HOME``, else ``$XDG_DATA_HOME/toprec``, else
``~/.local/share/toprec``; nothing is written into the folder the user
stands in unless asked (``--out``, ``--tracking-uri``). The parsed-data cache
has its own place (:mod:`toprec.data.cache`).
"""

from __future__ import annotations

import os
from pathlib import Path


def toprec_home() -> Path:
    """toprec's own data folder (created by whoever writes into it)."""
    explicit = os.environ.get("TOPREC_HOME", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "toprec"
    home = os.environ.get("HOME", "").strip()
    if home and Path(home).is_dir():
        return Path(home) / ".local" / "share" / "toprec"
    try:
        return Path.home() / ".local" / "share" / "toprec"
    except (RuntimeError, KeyError):  # no home directory at all: a folder in the temporary directory
        import tempfile

        return Path(tempfile.gettempdir()) / f"toprec-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def tracking_dir() -> Path:
    """The default MLflow store's folder: ``./mlruns`` when one with a store is already here, else under the home."""
    legacy = Path.cwd() / "mlruns"
    if (legacy / "mlflow.db").is_file():
        return legacy
    return toprec_home() / "mlruns"


def tune_dir(study: str) -> Path:
    """A study's default folder (study.db, trials.csv, best.yaml) when ``--out`` is not given."""
    return toprec_home() / "tune" / study
