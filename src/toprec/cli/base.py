"""The typer application, the console, and the one way a command runs a config."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from .. import progress
from ..errors import ToprecError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="toprec: implicit feedback to the best top-N recommendations, fast.",
)
data_app = typer.Typer(no_args_is_help=True, help="Fetch, synthesise and describe datasets.")
app.add_typer(data_app, name="data")
out = progress.make_console(highlight=False)  # unwrapped when stdout is not a terminal


def config(command: str, tracking=None, **sections: Any):
    """A validated RunConfig from the command's sections (one-line errors naming the key)."""
    from ..experiment.config import RunConfig

    if tracking is not None:
        sections["tracking"] = tracking.config
    return RunConfig.make(command=command, **sections)


def execute(cfg, tracking=None, **options: Any):
    """Write the config for ``--save-config`` (exactly what runs), then run it through the application layer."""
    from .. import app as application

    save: Optional[Any] = getattr(tracking, "save_config", None)
    if save is not None:
        cfg.save(save)
    return application.run(cfg, **options)


def warn(message: str) -> None:
    """Warnings go to stderr even with --quiet."""
    progress.console.print(f"toprec: warning: {message}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: one-line errors, exit status 2, no traceback."""
    try:
        app()
    except ToprecError as exc:
        progress.console.print(f"toprec: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError) as exc:
        progress.console.print(f"toprec: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        progress.console.print("toprec: interrupted", markup=False)
        sys.exit(130)
