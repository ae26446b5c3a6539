"""``toprec serve``: a saved model folder (or ensemble pipeline) over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .base import app


@app.command()
def serve(model_dir: Annotated[Path, typer.Argument(help="What `submit --save-model` or `ensemble --save-model` wrote.")],
          host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 8000,
          workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (they share the arrays).")] = 1,
          api_key_file: Annotated[Optional[Path], typer.Option(help="File holding the API key required on every "
                                                               "endpoint but /health (and always on /admin/reload).")] = None,
          unknown_users: Annotated[str, typer.Option(help="Unknown user ids get the 'cold-start' list (flagged) or "
                                                     "'404'.")] = "cold-start",
          max_k: Annotated[int, typer.Option(min=1, max=1000, help="Largest k a request may ask.")] = 100,
          max_history: Annotated[int, typer.Option(min=1, max=2000, help="Longest history / exclude list.")] = 1000,
          max_batch: Annotated[int, typer.Option(min=1, max=256, help="Most users in one batch request.")] = 64,
          cors: Annotated[Optional[list[str]], typer.Option(help="Allow this origin (repeatable); CORS is off "
                                                            "unless given.")] = None,
          watch: Annotated[float, typer.Option(min=0, help="Reload when MODEL_DIR is replaced, checked every this "
                                               "many seconds (0 = only POST /admin/reload).")] = 2.0) -> None:  # fmt: skip
    """Serve recommendations over HTTP: known users, new users folded in from a history, hot reload."""
    from ..serve import ServeConfig, run

    cfg = ServeConfig(model_dir=str(model_dir), host=host, port=port, workers=workers,
                      api_key=ServeConfig.read_key(api_key_file), unknown_users=unknown_users, max_k=max_k,
                      max_history=max_history, max_batch=max_batch, cors_origins=cors or [], watch_s=watch)  # fmt: skip
    run(cfg)
