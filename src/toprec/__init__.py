"""toprec: implicit feedback to the best top-N recommendations, fast.

The public names below are imported on first use (PEP 562), so a process that needs only part of the
library (a ``toprec serve`` worker: models, top-k, the serving layer) does not load the data layer's
pandas and pyarrow.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from .version import __version__  # noqa: F401 - re-exported

#: how long (spins) an idle OpenMP thread of GNU libgomp - torch's CPU pool, LightGBM, implicit - busy-waits
#: for more work before it sleeps. libgomp's default is 300,000; with it, two toprec processes on a 2-core
#: machine (two benchmarks, an auto run beside a serve) trained Multi-VAE 2.8-3.5x slower each instead of ~2x, the
#: spinning threads taking the cores the other process needed. 1,000 costs nothing alone
#: (``python benchmarks/bench_threads.py``). It is a default: a GOMP_SPINCOUNT or OMP_WAIT_POLICY the user set
#: wins, and it takes effect only when toprec is imported before torch (libgomp reads it when loaded).
GOMP_SPINCOUNT = "1000"
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)

__all__ = ["Dataset", "Recommendations", "ToprecError", "metrics", "models", "split", "__version__"]

_LAZY = {
    "Dataset": ("toprec.data.dataset", "Dataset"),
    "Recommendations": ("toprec.recommend", "Recommendations"),
    "ToprecError": ("toprec.errors", "ToprecError"),
    "metrics": ("toprec.metrics", None),
    "models": ("toprec.models", None),
    "split": ("toprec.split", None),
}

if TYPE_CHECKING:  # type checkers and IDEs see the same names, imported eagerly
    from . import metrics, models, split  # noqa: F401
    from .data.dataset import Dataset  # noqa: F401
    from .errors import ToprecError  # noqa: F401
    from .recommend import Recommendations  # noqa: F401


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'toprec' has no attribute '{name}'") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
