"""The CPUs toprec sizes its thread pools by: the affinity, capped by OMP_NUM_THREADS."""

from __future__ import annotations

import os

import numpy as np
import pytest

from toprec import parallel
from toprec.device import usable_cores


def test_cpu_budget_is_the_affinity_capped_by_omp_num_threads(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TOPREC_WORKERS", raising=False)
    assert parallel.cpu_budget() == cores == usable_cores() == parallel.workers()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert parallel.cpu_budget() == 1 == usable_cores() == parallel.workers()
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores + 7))  # never more than the process may run on
    assert parallel.cpu_budget() == cores
    for junk in ("", "0", "-2", "four"):  # unset, zero, negative, not a number: the affinity
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert parallel.cpu_budget() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOPREC_WORKERS", "3")  # the explicit setting still wins for the forked row jobs
    assert parallel.workers() == 3


def test_the_rerankers_lightgbm_takes_the_cpu_budget_and_stops_at_a_deadline(monkeypatch):
    pytest.importorskip("lightgbm")
    from toprec.ensemble.rerank import _LightGBM
    from toprec.train import deadline

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 6)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.standard_normal(4000) > 1.0).astype(np.int32)
    free = _LightGBM(seed=0, threads=0)
    assert free.model.get_params()["n_jobs"] == 1  # not LightGBM's default of every physical core
    monkeypatch.delenv("OMP_NUM_THREADS")
    from joblib import cpu_count

    from toprec.ensemble.rerank import ranker_threads

    assert ranker_threads() == min(parallel.cpu_budget(), cpu_count(only_physical_cores=True))  # as before
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    trees = free.fit(x[:3000], y[:3000], x[3000:], y[3000:], [])
    assert not free.out_of_time and trees > 5
    boxed = _LightGBM(seed=0, threads=0)
    with deadline(0.0):  # already past: boosting ends after its first tree
        assert boxed.fit(x[:3000], y[:3000], x[3000:], y[3000:], []) == 1
    assert boxed.out_of_time and boxed.predict(x[:5]).shape == (5,)
    with deadline(0.0):  # without early-stopping users: the trees so far
        assert boxed.fit(x, y, None, None, []) == 1


@pytest.mark.parametrize(
    "env, expected",
    [({}, "1000"),  # toprec's default: idle OpenMP threads sleep soon, so two processes can share the cores
     ({"GOMP_SPINCOUNT": "50"}, "50"),  # the user's value wins
     ({"OMP_WAIT_POLICY": "active"}, None)],  # a wait policy the user chose is left alone
)  # fmt: skip
def test_importing_toprec_sets_a_short_openmp_spin_unless_the_user_chose_one(env, expected):
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os, toprec; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(expected)
