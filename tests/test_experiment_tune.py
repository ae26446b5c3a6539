"""`toprec tune`: search spaces, best config that reproduces, seeds, pruning, workers sharing one study, a killed worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from toprec.models import registry
from toprec.models.base import Params, Recommender

TESTS = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- a fake epoch-trained model
class FakeEpochParams(Params):
    lr: float = 0.1
    epochs: int = 6
    sleep: float = 0.0


class FakeEpochs(Recommender):
    """Popularity blurred by noise that vanishes at lr = 0.1; "trains" for ``epochs``, reporting recall each epoch.

    Defined here, registered only for a test (monkeypatch) or inside a worker subprocess (``register_fakes``).
    """

    name = "fake-epochs"
    Params = FakeEpochParams
    search_space = {"lr": ("log_float", 1e-3, 10.0)}

    def _fit(self, X, train) -> None:
        p = self.params
        quality = 1.0 / (1.0 + abs(np.log10(p.lr) + 1.0))  # 1 at lr = 0.1
        pop = np.asarray(X.sum(axis=0)).ravel().astype(np.float32)
        noise = np.random.default_rng(0).random(X.shape[1]).astype(np.float32) * max(float(pop.max()), 1.0)
        for epoch in range(1, p.epochs + 1):
            if p.sleep:
                time.sleep(p.sleep)
            logs = {"loss": 1.0 / epoch, "recall@10": quality * epoch / p.epochs, "seconds": p.sleep}
            self.history.append(logs)
            if self.callback is not None:
                self.callback(epoch, logs)
        self.scores_ = pop + 3.0 * (1.0 - quality) * noise

    def _score(self, users, history):
        return np.tile(self.scores_, (len(users), 1))

    def _state(self):
        return {"scores": self.scores_}

    def _set_state(self, arrays):
        self.scores_ = arrays["scores"]


def register_fakes() -> None:
    registry._ensure_loaded()
    registry._REGISTRY[FakeEpochs.name] = FakeEpochs


WORKER = (
    "import sys\n"
    f"sys.path.insert(0, {str(TESTS)!r})\n"
    "from test_experiment_tune import register_fakes\n"
    "register_fakes()\n"
    "from toprec.cli import main\n"
    "sys.argv = ['toprec', *sys.argv[1:]]\n"
    "main()\n"
)


def worker_proc(*args, cwd) -> subprocess.Popen:
    """A `toprec` process that also knows the fake model."""
    return subprocess.Popen([sys.executable, "-c", WORKER, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.fixture
def fake_model(monkeypatch):
    registry._ensure_loaded()
    monkeypatch.setitem(registry._REGISTRY, FakeEpochs.name, FakeEpochs)


def load(storage: str, name: str):
    return optuna.load_study(study_name=name, storage=storage)


def states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        key = "SURPLUS" if t.user_attrs.get("toprec_surplus") else t.state.name
        out[key] = out.get(key, 0) + 1
    return out


# ----------------------------------------------------------------------------- unit
def test_suggest_covers_every_kind():
    from toprec.experiment.tune import suggest

    space = {
        "a": ("float", 0.0, 1.0), "b": ("log_float", 1e-3, 10.0), "c": ("int", 2, 5), "d": ("log_int", 10, 1000),
        "e": ("categorical", ["x", "y"]), "f": ("categorical", [True, False]),
    }  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        p = suggest(study.ask(), space)
        assert 0 <= p["a"] <= 1 and 1e-3 <= p["b"] <= 10 and 2 <= p["c"] <= 5 and 10 <= p["d"] <= 1000
        assert isinstance(p["c"], int) and p["e"] in ("x", "y") and p["f"] in (True, False)
    for name in registry.list():  # every model's declared space is usable
        cls = registry.get_class(name)
        if cls.search_space:
            params = suggest(optuna.create_study().ask(), cls.search_space)
            cls(**params)  # within the model's own parameter bounds


# ----------------------------------------------------------------------------- one worker
def test_tune_writes_best_config_that_reproduces_and_resumes(tmp_path, competition_dir, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "t"
    text = cli("tune", "--data", competition_dir, "--model", "ease", "--trials", "6", "--random", "4", "--out", out,
               "-q", "--no-track")  # fmt: skip
    header = next(ln for ln in text.splitlines() if "trial" in ln and "state" in ln)
    assert "recall@10" in header and "epochs" not in header, text  # a closed-form model has no epochs column
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    study = load(storage, f"ease-{competition_dir.name}")
    assert states(study) == {"COMPLETE": 6}
    best = study.best_trial
    cfg = yaml.safe_load((out / "best.yaml").read_text())
    assert cfg["command"] == "evaluate" and cfg["model"]["params"]["l2"] == best.params["l2"]
    assert cfg["split"]["random"] == 4
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("number,state,value")
    # the best config re-evaluated gives exactly the best trial's validation recall
    cli("run", out / "best.yaml", "--set", f"output.json={tmp_path / 'r.json'}", "--no-track", "-q")
    res = json.loads((tmp_path / "r.json").read_text())["results"][0]["metrics"]
    assert res["recall@10"] == best.value
    # the same command with more trials resumes the study: 3 more, none repeated
    cli("tune", "--data", competition_dir, "--model", "ease", "--trials", "9", "--random", "4", "--out", out, "-q",
        "--no-track")  # fmt: skip
    study = load(storage, f"ease-{competition_dir.name}")
    assert states(study) == {"COMPLETE": 9}
    l2s = [t.params["l2"] for t in study.trials]
    assert len(set(l2s)) == 9


def test_same_seed_same_trials(tmp_path, competition_dir, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seqs = []
    for run in ("a", "b", "c"):
        seed = "1" if run == "c" else "0"
        cli("tune", "--data", competition_dir, "--model", "itemknn", "--trials", "4", "--seed", seed,
            "--out", tmp_path / run, "-q", "--no-track")  # fmt: skip
        study = load(f"sqlite:///{(tmp_path / run / 'study.db').resolve()}", f"itemknn-{competition_dir.name}")
        seqs.append([(t.params, t.value) for t in study.trials])
    assert seqs[0] == seqs[1]
    assert seqs[0] != seqs[2]


def test_default_out_is_in_toprec_home_not_where_the_user_stands(tmp_path, competition_dir, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOPREC_HOME", str(tmp_path / "home"))
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    text = cli("tune", "--data", competition_dir, "--model", "itemknn", "--trials", "2", "-q", "--no-track")
    study = tmp_path / "home" / "tune" / f"itemknn-{competition_dir.name}"
    assert {p.name for p in study.iterdir()} >= {"study.db", "trials.csv", "best.yaml"}
    assert str(study / "best.yaml") in text  # the table says where best.yaml went
    assert list((tmp_path / "here").iterdir()) == []  # no ./tune


def test_fixed_param_is_not_searched(tmp_path, competition_dir, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("tune", "--data", competition_dir, "--model", "itemknn", "-p", "similarity=jaccard", "-p", "k=12",
        "--trials", "3", "--out", tmp_path / "t", "-q", "--no-track")  # fmt: skip
    study = load(f"sqlite:///{(tmp_path / 't' / 'study.db').resolve()}", f"itemknn-{competition_dir.name}")
    for t in study.trials:
        assert "similarity" not in t.params and "k" not in t.params and "shrink" in t.params
    cfg = yaml.safe_load((tmp_path / "t" / "best.yaml").read_text())
    assert cfg["model"]["params"]["similarity"] == "jaccard" and cfg["model"]["params"]["k"] == 12


def test_pruning_stops_bad_trials_and_every_trial_is_a_child_run(tmp_path, competition_dir, cli, fake_model,
                                                                monkeypatch):  # fmt: skip
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOPREC_NO_TRACK", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    epochs = {}
    for mode in ("prune", "no-prune"):
        args = ["tune", "--data", competition_dir, "--model", "fake-epochs", "--trials", "12", "--study", mode,
                "--out", tmp_path / mode, "-q", "--tracking-uri", uri]  # fmt: skip
        text = cli(*args, *(["--no-prune"] if mode == "no-prune" else []))
        header = next(ln for ln in text.splitlines() if "trial" in ln and "state" in ln)
        assert "epochs" in header, text  # epoch-trained: the column is there
        study = load(f"sqlite:///{(tmp_path / mode / 'study.db').resolve()}", mode)
        epochs[mode] = sum(len(t.intermediate_values) for t in study.trials)
        st = states(study)
        if mode == "prune":
            assert st.get("PRUNED", 0) >= 1 and st.get("COMPLETE", 0) + st["PRUNED"] == 12, st
        else:
            assert st == {"COMPLETE": 12}
    assert epochs["no-prune"] == 12 * 6 and epochs["prune"] < epochs["no-prune"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("toprec")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`toprec.command` = 'tune'")
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in parents)
    parent = next(r for r in parents if r.data.tags["toprec.study"] == "prune")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")  # fmt: skip
    assert len(children) == 12
    assert {r.data.tags["toprec.trial_state"] for r in children} == {"COMPLETE", "PRUNED"}
    done = next(r for r in children if r.data.tags["toprec.trial_state"] == "COMPLETE")
    curve = client.get_metric_history(done.info.run_id, "val_recall_at_10")  # the epochs' validation curve
    assert sorted(m.step for m in curve if m.step > 0) == [1, 2, 3, 4, 5, 6]
    assert "best_recall_at_10" in parent.data.metrics and "best.lr" in parent.data.params


# ----------------------------------------------------------------------------- several workers
def test_two_worker_processes_share_one_study(tmp_path, competition_dir):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    n = 10
    args = ["tune", "--data", competition_dir, "--model", "fake-epochs", "-p", "sleep=0.2", "-p", "epochs=4",
            "--trials", n, "--storage", storage, "--study", "shared", "--no-track", "-q", "--no-prune"]  # fmt: skip
    # started together (as on two machines): ~0.8 s trials, so both are still asking when the other starts
    a = worker_proc(*args, "--out", tmp_path / "a", cwd=tmp_path)
    b = worker_proc(*args, "--out", tmp_path / "b", cwd=tmp_path)
    for p in (a, b):
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    study = load(storage, "shared")
    st = states(study)
    assert st["COMPLETE"] == n and set(st) <= {"COMPLETE", "SURPLUS"}, st
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len({t.number for t in complete}) == n
    assert len({t.params["lr"] for t in complete}) == n  # nothing sampled or run twice
    workers = {t.user_attrs["worker"] for t in complete}
    assert len(workers) == 2, workers  # both took part
    for t in study.trials:
        if t.user_attrs.get("toprec_surplus"):
            assert not t.intermediate_values  # closed before any work


def test_workers_option_spawns_processes_on_one_study(tmp_path, competition_dir, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("tune", "--data", competition_dir, "--model", "ease", "--trials", "8", "--workers", "2", "--out",
        tmp_path / "t", "-q", "--no-track")  # fmt: skip
    study = load(f"sqlite:///{(tmp_path / 't' / 'study.db').resolve()}", f"ease-{competition_dir.name}")
    st = states(study)
    assert st["COMPLETE"] == 8 and set(st) <= {"COMPLETE", "SURPLUS"}, st
    assert len({t.params["l2"] for t in study.trials if t.state.name == "COMPLETE"}) == 8
    assert (tmp_path / "t" / "best.yaml").exists() and (tmp_path / "t" / "worker.yaml").exists()


def test_killed_worker_trial_is_retried_and_study_completes(tmp_path, competition_dir):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    n = 5
    args = ["tune", "--data", competition_dir, "--model", "fake-epochs", "-p", "sleep=0.3", "-p", "epochs=6",
            "--trials", n, "--storage", storage, "--study", "k", "--no-track", "-q", "--no-prune",
            "--heartbeat", "1"]  # fmt: skip
    a = worker_proc(*args, "--out", tmp_path / "a", cwd=tmp_path)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None:  # kill the worker in the middle of a trial: 1-2 epochs reported, >= 4 (1.2 s) to go,
        try:  # so the trial cannot finish between this read and the kill on a loaded machine
            running = [t for t in load(storage, "k").trials
                       if t.state.name == "RUNNING" and 1 <= len(t.intermediate_values) <= 2]  # fmt: skip
            victim = running[0] if running else None
        except KeyError:
            pass
        assert a.poll() is None, a.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(a.pid, signal.SIGKILL)
    a.communicate()
    assert load(storage, "k").trials[victim.number].state.name == "RUNNING"  # left behind by the dead worker
    b = worker_proc(*args, "--out", tmp_path / "b", cwd=tmp_path)
    _, err = b.communicate(timeout=180)
    assert b.returncode == 0, err
    study = load(storage, "k")
    st = states(study)
    assert st["COMPLETE"] == n and st["FAIL"] == 1 and set(st) <= {"COMPLETE", "FAIL", "SURPLUS"}, st
    dead = study.trials[victim.number]
    assert dead.state.name == "FAIL"
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == dead.params  # the lost trial was run again, once
    assert len({t.params["lr"] for t in study.trials if t.state.name == "COMPLETE"}) == n
    assert (tmp_path / "b" / "best.yaml").exists()
    shutil.rmtree(tmp_path / "a", ignore_errors=True)


@pytest.mark.skipif(not os.environ.get("TOPREC_TEST_POSTGRES_URL"),
                    reason="set TOPREC_TEST_POSTGRES_URL=postgresql://user:pw@host/db to test a PostgreSQL storage")  # fmt: skip
def test_two_workers_on_postgresql(tmp_path, competition_dir):
    url = os.environ["TOPREC_TEST_POSTGRES_URL"]
    study = f"pg-{os.getpid()}-{int(time.time())}"
    args = ["tune", "--data", competition_dir, "--model", "itemknn", "--trials", 8, "--storage", url, "--study",
            study, "--no-track", "-q"]  # fmt: skip
    procs = [worker_proc(*args, "--out", tmp_path / w, cwd=tmp_path) for w in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    from toprec.experiment.tune import storage_url

    s = load(storage_url(url), study)
    st = states(s)
    assert st["COMPLETE"] == 8 and set(st) <= {"COMPLETE", "SURPLUS"}, st
    assert len({tuple(sorted(t.params.items())) for t in s.trials if t.state.name == "COMPLETE"}) == 8
