"""``toprec batch``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..experiment.config import BatchConfig, MetricsConfig
from .base import app, config, execute, out
from .options import QUIET, with_options


@app.command()
@with_options(QUIET)
def batch(
    model_dir: Annotated[Path, typer.Option("--model-dir", "-m", help="Folder written by toprec submit --save-model, or an ensemble pipeline (ensemble --save-model, auto's OUT/model; --engine local).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write (user, rank, item, score).")],
    users: Annotated[str, typer.Option(help="'all' (the model's training users) or a file with a 'user' column "
                                       "(CSV, TSV or Parquet).")] = "all",
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Items per user.")] = 10,
    engine: Annotated[str, typer.Option(help="local (this machine's cores) or ray (a Ray cluster).")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster: auto, HOST:PORT of its head, or ray://...; "
                                                   "default: a local Ray for this run.")] = None,
    block: Annotated[int, typer.Option(min=1, help="Users per Parquet row group.")] = 65_536,
    workers: Annotated[int, typer.Option(min=0, help="Ray scoring actors (0 = one per CPU).")] = 0,
) -> None:  # fmt: skip
    """Top-k unseen items for many users from a saved model, as Parquet (atomically), locally or on Ray."""
    cfg = config("batch", batch=BatchConfig(model_dir=str(model_dir), output=str(output), users=users, engine=engine,
                                            address=address, block=block, workers=workers),
                 metrics=MetricsConfig(k=k))  # fmt: skip
    show(cfg, execute(cfg))


def show(cfg, r) -> None:
    out.print(f"wrote {r.output}: {r.rows:,} rows ({r.users:,} users x {r.k}"
              f"{f', {r.unknown_users:,} unknown: most popular' if r.unknown_users else ''}); "
              f"{r.engine} {r.seconds:.2f}s, {r.users_per_s:,.0f} users/s")  # fmt: skip
