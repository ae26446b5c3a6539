"""Memory planning: estimates from the data's shape, the refusal before any allocation (fake limits)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from toprec import Dataset, models
from toprec.errors import ToprecError
from toprec.memory import ENV, MemoryEstimate, available, check_fit, fmt_bytes, parse_size

ESTIMATED = ["ease", "cease", "edlae", "easer", "admm-slim", "itemknn", "rp3beta", "ials", "bpr", "lmf",
             "multidae", "multivae", "recvae", "cdae", "autorec"]  # fmt: skip


def test_parse_and_format():
    assert parse_size("2G") == 2 * 2**30
    assert parse_size("512m") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("1000") == 1000
    with pytest.raises(ToprecError, match=ENV):
        parse_size("lots")
    assert fmt_bytes(40.1 * 2**30) == "40.1 GB"
    assert fmt_bytes(512 * 2**20) == "512 MB"


def test_available_env(monkeypatch):
    monkeypatch.setenv(ENV, "3G")
    assert available() == 3 * 2**30
    monkeypatch.setenv(ENV, "off")
    assert available() is None
    monkeypatch.delenv(ENV)
    real = available()
    assert real is None or real > 0


def test_check_fit_message():
    est = MemoryEstimate(int(40.1 * 2**30), "the item-space Gram + inverse of 100,000 items", "use rp3beta")
    check_fit("ease", est, limit=50 * 2**30)  # fits: nothing
    check_fit("ease", None, limit=1)  # unknown: no check
    with pytest.raises(ToprecError) as exc:
        check_fit("ease", est, limit=int(23.4 * 2**30))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "~40.1 GB" in msg and "100,000 items" in msg and "23.4 GB available" in msg and "rp3beta" in msg


@pytest.mark.parametrize("name", ESTIMATED)
def test_estimates_exist_and_grow(name):
    m = models.get(name)
    small = m.memory_estimate(5_000, 2_000, 200_000)
    big = m.memory_estimate(50_000, 40_000, 5_000_000)
    assert isinstance(small, MemoryEstimate) and small.bytes > 0 and small.what
    assert big.bytes > small.bytes


def test_no_estimate_means_no_check(monkeypatch, dataset):
    monkeypatch.setenv(ENV, "1")  # one byte
    assert models.get("popularity").memory_estimate(10, 10, 10) is None
    models.get("popularity").fit(dataset)


def test_ease_estimate_scales_with_the_form(monkeypatch):
    ease = models.get("ease", device="cpu")
    items = ease.memory_estimate(200_000, 100_000, 20_000_000)
    assert items.bytes > 4 * 100_000**2  # B at least (its column blocks too without the compiled kernel)
    monkeypatch.setenv("TOPREC_KERNELS", "numpy")
    assert ease.memory_estimate(200_000, 100_000, 20_000_000).bytes > 2 * 4 * 100_000**2
    monkeypatch.delenv("TOPREC_KERNELS")
    assert "item-space" in items.what
    users = ease.memory_estimate(30_000, 120_000, 5_000_000)  # the issue's case: Woodbury form
    assert "user-space" in users.what and users.bytes > 24 * 2**30


@pytest.mark.parametrize("name", ["ease", "edlae", "easer", "rp3beta", "ials", "multivae"])
def test_fit_refuses_before_any_allocation(monkeypatch, dataset, name):
    monkeypatch.setenv(ENV, "64K")
    m = models.get(name)

    def boom(*a, **k):  # pragma: no cover - must not run
        raise AssertionError("_fit ran")

    monkeypatch.setattr(m, "_fit", boom)
    with pytest.raises(ToprecError, match=r"needs ~.* 64.0 KB available \(TOPREC_MEMORY_LIMIT\)"):
        m.fit(dataset)
    assert not m.fitted


def test_fit_within_the_limit(monkeypatch, dataset):
    monkeypatch.setenv(ENV, "8G")
    assert models.get("ease", device="cpu").fit(dataset).fitted


def _wide(tmp_path, n_users=30_000, n_items=120_000):
    """30,000 users x 120,000 items (the issue's case) with few events: cheap to load, huge for EASE."""
    rng = np.random.default_rng(0)
    items = np.arange(n_items)
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n_items - n_users)])
    folder = tmp_path / "wide"
    folder.mkdir()
    pd.DataFrame({"user": users, "item": items, "time": 1_000_000 + items}).to_csv(
        folder / "train_ratings.csv", index=False
    )
    return folder


def test_issue_case_in_python(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "23G")
    ds = Dataset.load(_wide(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(ToprecError, match=r"user-space .* 30,000 users x 120,000 items; 23.0 GB available"):
        models.get("ease", device="cpu").fit(ds)
    assert time.perf_counter() - t0 < 2.0


def test_issue_case_cli_one_line_exit_2(tmp_path):
    data = _wide(tmp_path)
    out = tmp_path / "sub.csv"
    env = {**os.environ, ENV: "23G", "TOPREC_NO_TRACK": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "toprec", "submit", "--data", str(data), "--model", "ease",
                        "--output", str(out), "-q"], capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "model 'ease' needs ~" in lines[0] and "23.0 GB available" in lines[0]
    assert not out.exists()
    assert time.perf_counter() - t0 < 60
