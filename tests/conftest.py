"""Shared fixtures: tiny structured datasets generated in memory (no network)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toprec import Dataset

FIXTURES = Path(__file__).parent / "fixtures"
os.environ["TOPREC_NO_TRACK"] = "1"  # no MLflow runs in ./mlruns from tests; test_experiment*.py use a tmp store
# parsed-data cache entries go to a folder of this test session, not the user's ~/.cache
os.environ.setdefault("TOPREC_CACHE_DIR", tempfile.mkdtemp(prefix="toprec-test-cache-"))
# default tracking stores and tuning studies (toprec.paths) go to this test session's folder, not ~/.local/share
os.environ["TOPREC_HOME"] = tempfile.mkdtemp(prefix="toprec-test-home-")


def clustered_events(n_users: int = 120, n_items: int = 80, per_user: int = 20, n_clusters: int = 4, seed: int = 0):
    """Users in taste clusters: most events inside their cluster's items, popularity skewed.

    Collaborative models must beat popularity on this data.
    """
    rng = np.random.default_rng(seed)
    cluster_of_item = np.arange(n_items) % n_clusters
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.6
    rows = []
    for u in range(n_users):  # test-data builder, not library code
        c = u % n_clusters
        w = pop * np.where(cluster_of_item == c, 8.0, 1.0)
        w /= w.sum()
        items = rng.choice(n_items, size=per_user, replace=False, p=w)
        times = 1_000_000 + u * 10_000 + np.sort(rng.choice(5000, size=per_user, replace=False))
        rows.append(pd.DataFrame({"user": f"u{u}", "item": 1000 + items, "time": times}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture
def events() -> pd.DataFrame:
    return clustered_events()


@pytest.fixture
def dataset(events) -> Dataset:
    return Dataset.from_events(events["user"].to_numpy(), events["item"].to_numpy(), events["time"].to_numpy())


def write_competition(folder: Path, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame[["user", "item", "time"]].to_csv(folder / "train_ratings.csv", index=False)
    items = np.unique(frame["item"])
    pd.DataFrame({"item": items, "genre": np.where(items % 2 == 0, "Drama", "Comedy")}).to_csv(
        folder / "genres.tsv", sep="\t", index=False
    )
    return folder


@pytest.fixture
def competition_dir(tmp_path, events) -> Path:
    return write_competition(tmp_path / "comp", events)


@pytest.fixture
def cli():
    """Run toprec in this process (imports paid once); returns stdout, asserting exit code 0."""
    from typer.testing import CliRunner

    from toprec.cli import app

    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    return invoke
