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
        from ..app.data import output_file
        from .options import SAVE_CONFIG

        cfg.save(output_file(save, cfg.data, SAVE_CONFIG))
    return application.run(cfg, **options)


def warn(message: str) -> None:
    """Warnings go to stderr even with --quiet."""
    progress.console.print(f"toprec: warning: {message}", markup=False, highlight=False, soft_wrap=True)


def _error(message: str, code: int = 2) -> None:
    progress.console.print(f"toprec: error: {' '.join(str(message).split())}", markup=False, highlight=False,
                           soft_wrap=True)  # fmt: skip
    sys.exit(code)


def main(args: Optional[list[str]] = None) -> None:
    """Entry point: one-line errors (usage errors included), exit status 2, no traceback."""
    click = sys.modules[typer.BadParameter.__module__]  # the click typer uses (it may vendor its own)

    try:
        rv = app(args=args, standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # bare `toprec` / `toprec data`: the help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # bad option value, unknown option, missing argument...
        _error(exc.format_message(), exc.exit_code if exc.exit_code else 2)
    except typer.Abort:
        progress.console.print("toprec: interrupted", markup=False)
        sys.exit(130)
    except ToprecError as exc:
        _error(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        progress.console.print("toprec: interrupted", markup=False)
        sys.exit(130)
    except MemoryError as exc:
        _error(f"not enough memory ({exc or type(exc).__name__}); use less data or a smaller model/-k")
    except OSError as exc:  # a file the command could not read or write
        _error(str(exc))
    if isinstance(rv, int) and rv:
        sys.exit(rv)
