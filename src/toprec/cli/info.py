"""``toprec version`` and ``toprec models``."""

from __future__ import annotations

from ..version import __version__
from . import render
from .base import app, out
from .options import AsJson


@app.command()
def version() -> None:
    """Print the toprec version."""
    out.print(__version__)


@app.command("models")
def models_cmd(as_json: AsJson = False) -> None:
    """List models with their parameters and defaults."""
    from .. import models

    listing = models.list()
    render.print_json(listing) if as_json else render.models(listing)
