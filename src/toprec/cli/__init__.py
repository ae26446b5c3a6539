"""The ``toprec`` command line: one module per command, each options -> RunConfig -> app call -> print.

Nothing outside this package imports it; the decisions live in :mod:`toprec.app`.
"""

from __future__ import annotations

# importing a command module registers its command (in this order in --help)
from . import info, data, evaluate, submit, ensemble, align, report, tune, auto, run, runs, serve, batch  # noqa: F401, I001
from .base import app, main
from .. import progress

progress.unwrapped_help()  # --help into a file or pipe: no option text cut at 80 columns

__all__ = ["app", "main"]
