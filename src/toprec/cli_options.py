"""Command-line options shared by every ``toprec`` command (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")]
DataDir = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder (or file for --format table).")]
Format = Annotated[str, typer.Option("--format", help="auto|competition|ml-100k|ml-1m|ml-csv|recbole|table")]
UserCol = Annotated[Optional[str], typer.Option("--user-col", help="User column (table format).")]
ItemCol = Annotated[Optional[str], typer.Option("--item-col", help="Item column (table format).")]
TimeCol = Annotated[Optional[str], typer.Option("--time-col", help="Time column (table format); default: row order.")]
RatingCol = Annotated[Optional[str], typer.Option("--rating-col", help="Rating column for --min-rating.")]
MinRating = Annotated[Optional[float], typer.Option("--min-rating", help="Keep events with rating >= this.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Parse the source files even if a cached copy exists.")]
Device = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda, for models that can use a GPU.")]
