"""``toprec serve``: a saved model folder or ensemble pipeline over HTTP (FastAPI + uvicorn).

A thin entry point over :mod:`toprec.app.serving` (which decides every
answer): request parsing and limits, the API key, one-line JSON errors,
Prometheus metrics, hot reload. ``create_app(ServeConfig(...))`` is the ASGI
app (tests run it in-process); :func:`run` serves it with uvicorn, in
``workers`` processes that share the model's memory-mapped arrays.
"""

from __future__ import annotations

from .config import ServeConfig
from .http import create_app, run

__all__ = ["ServeConfig", "create_app", "run"]
