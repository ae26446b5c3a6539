"""Runs as files (YAML configs), MLflow tracking (local SQLite store and a real `mlflow server`), `toprec runs`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from toprec.errors import ToprecError
from toprec.experiment import config as cfgmod


def toprec(*args, cwd=None, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def template_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, migrated once (creating one takes seconds); tests copy it."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, template_store) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(template_store, folder / "mlflow.db")
    return folder


@pytest.fixture
def cli(cli, monkeypatch):
    """The shared in-process runner (conftest), with tracking switched on."""
    monkeypatch.delenv("TOPREC_NO_TRACK", raising=False)
    return cli


def tracked_env(store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TOPREC_NO_TRACK", None)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    return env


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("toprec: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- config validation
def base_config(data_dir) -> dict:
    return {"command": "evaluate", "data": {"path": str(data_dir)}, "model": {"name": "ease", "params": {"l2": 20}}}


def test_config_defaults_and_full_model_params(tmp_path, competition_dir):
    cfg = cfgmod.load(write_yaml(tmp_path / "r.yaml", base_config(competition_dir)))
    assert cfg.split.protocol == "competition" and cfg.split.last == 1 and cfg.split.random == 9
    assert cfg.metrics.k == 10 and cfg.tracking.enabled
    # validated once against the model's Params: full, typed, defaults included
    assert cfg.model.params == {"l2": 20.0, "form": "auto", "device": "auto"}


@pytest.mark.parametrize(
    "patch, needles",
    [
        ({"split": {"seeed": 1}}, ["r.yaml", "unknown key 'split.seeed'"]),
        ({"split": {"seed": "one"}}, ["r.yaml", "key 'split.seed'", "integer"]),
        ({"split": {"last": -1}}, ["key 'split.last'", "greater than or equal to 0"]),
        ({"metrics": {"k": [10]}}, ["key 'metrics.k'"]),
        ({"model": {"name": "ease", "params": {"l3": 1}}}, ["r.yaml: model:", "unknown parameter 'l3'"]),
        ({"model": {"name": "eas"}}, ["r.yaml: model:", "unknown model 'eas'"]),
        ({"model": {"name": "ease", "params": {"l2": "much"}}}, ["parameter 'l2'='much'"]),
        ({"command": "submit"}, ["needs 'output.submission'"]),
        ({"command": "fly"}, ["key 'command'"]),
        ({"tracking": {"enabled": "sometimes"}}, ["key 'tracking.enabled'"]),
        ({"bogus": 1}, ["unknown key 'bogus'"]),
    ],
)
def test_config_errors_are_one_line_with_key_path(tmp_path, competition_dir, patch, needles):
    raw = base_config(competition_dir)
    raw.update(patch)
    with pytest.raises(ToprecError) as exc:
        cfgmod.load(write_yaml(tmp_path / "r.yaml", raw))
    msg = str(exc.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_config_bad_yaml_missing_file_and_set_override(tmp_path, competition_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: x\nmodel: [")
    with pytest.raises(ToprecError, match=r"bad.yaml: line \d+: invalid YAML"):
        cfgmod.load(bad)
    with pytest.raises(ToprecError, match="no such config file"):
        cfgmod.load(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ToprecError, match="empty config"):
        cfgmod.load(empty)
    good = write_yaml(tmp_path / "r.yaml", base_config(competition_dir))
    cfg = cfgmod.load(good, ["split.seed=3", "model.params.l2=7.5", "tracking.enabled=false"])
    assert cfg.split.seed == 3 and cfg.model.params["l2"] == 7.5 and not cfg.tracking.enabled
    with pytest.raises(ToprecError, match="unknown key 'split.sed'"):
        cfgmod.load(good, ["split.sed=3"])


# (the command line -> config -> `toprec run` identity is tests/test_app.py::test_cli_and_run_file_execute_the_same_config)


# ----------------------------------------------------------------------------- reproducible runs
def test_saved_config_reproduces_evaluate_and_submit_exactly(tmp_path, competition_dir):
    r1, r2 = tmp_path / "r1.json", tmp_path / "r2.json"
    p = toprec("evaluate", "--data", competition_dir, "--model", "ease,itemknn", "-p", "ease.l2=15.5",
               "-p", "itemknn.k=9", "--random", "4", "--seed", "3", "--json", r1, "--save-config", tmp_path / "e.yaml",
               "-q", cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    saved = yaml.safe_load((tmp_path / "e.yaml").read_text())
    assert saved["split"]["seed"] == 3 and saved["models"][0]["params"]["l2"] == 15.5
    # the saved file reproduces the run, written to another JSON
    p = toprec("run", tmp_path / "e.yaml", "--set", f"output.json={r2}", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    m1 = {r["model"]: r["metrics"] for r in json.loads(r1.read_text())["results"]}
    m2 = {r["model"]: r["metrics"] for r in json.loads(r2.read_text())["results"]}
    for name in m1:
        assert {k: v for k, v in m1[name].items() if not k.endswith("_s")} == \
               {k: v for k, v in m2[name].items() if not k.endswith("_s")}  # fmt: skip
    s1 = tmp_path / "s1.csv"
    p = toprec("submit", "--data", competition_dir, "--model", "ease", "-p", "l2=30", "-k", "5", "--output", s1,
               "--save-config", tmp_path / "s.yaml", "-q", cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    s1_bytes = s1.read_bytes()
    s1.unlink()
    p = toprec("run", tmp_path / "s.yaml", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert s1.read_bytes() == s1_bytes


def test_saved_config_reproduces_ensemble(tmp_path, competition_dir, monkeypatch):
    from typer.testing import CliRunner

    from toprec.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["ensemble", "--data", str(competition_dir), "--members", "ease:l2=20,rp3beta,itemknn", "--output",
            "e.csv", "--method", "rrf", "--seed", "2", "--force", "--save-config", "e.yaml", "-q"]  # fmt: skip
    assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0
    first = (tmp_path / "e.csv").read_bytes()
    (tmp_path / "e.csv").unlink()
    saved = yaml.safe_load((tmp_path / "e.yaml").read_text())
    assert saved["ensemble"]["members"] == ["ease:l2=20", "rp3beta", "itemknn"] and saved["ensemble"]["force"]
    assert runner.invoke(app, ["run", "e.yaml", "-q"], catch_exceptions=False).exit_code == 0
    assert (tmp_path / "e.csv").read_bytes() == first


def test_run_errors_are_one_line(tmp_path, competition_dir):
    raw = base_config(competition_dir)
    raw["split"] = {"seed": "x"}
    one_line_error(toprec("run", write_yaml(tmp_path / "r.yaml", raw)), "r.yaml", "split.seed")
    one_line_error(toprec("run", tmp_path / "missing.yaml"), "missing.yaml", "no such config file")
    raw = base_config(competition_dir)
    raw["model"]["params"] = {"l2": -1}
    one_line_error(toprec("run", write_yaml(tmp_path / "r.yaml", raw)), "model", "l2")


def test_example_configs_validate():
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/ has no examples"
    for f in files:
        cfg = cfgmod.load(f)
        assert cfg.command in cfgmod.COMMANDS


# ----------------------------------------------------------------------------- tracking
def test_no_track_never_imports_mlflow(competition_dir, tmp_path):
    code = (
        "import sys\n"
        "from toprec.cli import app\n"
        f"sys.argv = ['toprec', 'evaluate', '--data', {str(competition_dir)!r}, '--model', 'popularity', '-q',"
        " '--no-track']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
        "import toprec.experiment.config\n"
        "assert 'mlflow' not in sys.modules\n"
    )
    env = dict(os.environ)
    env.pop("TOPREC_NO_TRACK", None)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "mlruns").exists()


def test_evaluate_and_submit_are_tracked_in_local_store(tmp_path, competition_dir, store, cli, monkeypatch):
    from mlflow.tracking import MlflowClient

    from toprec.experiment.tracking import data_fingerprint

    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    cli("evaluate", "--data", competition_dir, "--model", "ease", "-p", "l2=25", "--random", "4", "-q", "--json",
        tmp_path / "ev.json")  # fmt: skip
    printed = json.loads((tmp_path / "ev.json").read_text())["results"][0]["metrics"]
    sub, model_dir = tmp_path / "sub.csv", tmp_path / "model"
    cli("submit", "--data", competition_dir, "--model", "itemknn", "--output", sub, "--save-model", model_dir, "-q")
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("toprec")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    ev, sb = runs
    assert ev.info.status == "FINISHED" and ev.data.tags["toprec.command"] == "evaluate"
    assert ev.data.params["model.name"] == "ease" and float(ev.data.params["model.params.l2"]) == 25.0
    assert ev.data.params["split.random"] == "4" and ev.data.params["split.protocol"] == "competition"
    assert ev.data.metrics["recall_at_10"] == pytest.approx(printed["recall@10"])  # what the command reported
    assert ev.data.metrics["ndcg_at_10"] == pytest.approx(printed["ndcg@10"])
    assert "fit_s" in ev.data.metrics and "total_s" in ev.data.metrics
    assert ev.data.tags["toprec.data_fingerprint"] == data_fingerprint(competition_dir)
    import toprec

    src = Path(toprec.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
        sha = head.stdout.strip() if head.returncode == 0 else "unknown"
    except OSError:  # no git here
        sha = "unknown"
    assert ev.data.tags["toprec.git_commit"] == sha  # the sources' commit, not the working folder's
    arts = {a.path for a in client.list_artifacts(ev.info.run_id)}
    assert "config.yaml" in arts
    cfg_text = Path(client.download_artifacts(ev.info.run_id, "config.yaml", str(tmp_path))).read_text()
    assert cfgmod.validate(yaml.safe_load(cfg_text)).model.params["l2"] == 25.0
    assert sb.data.tags["toprec.command"] == "submit" and "fit_s" in sb.data.metrics
    arts = {a.path for a in client.list_artifacts(sb.info.run_id)}
    assert {"sub.csv", "model"} <= arts
    assert not (tmp_path / "mlruns").exists()  # the env's store was used, not ./mlruns
    # `toprec runs` lists both, newest first
    listed = json.loads(cli("runs", "--json"))
    assert [r["command"] for r in listed] == ["submit", "evaluate"]
    assert listed[1]["params"]["l2"] == "25.0" and listed[1]["recall@10"] == ev.data.metrics["recall_at_10"]
    assert [r["command"] for r in json.loads(cli("runs", "--model", "ease", "--json"))] == ["evaluate"]
    table = cli("runs")
    assert "recall@10" in table and "l2=25" in table, table


def test_failed_run_is_marked_failed_and_default_store_is_local(tmp_path, competition_dir, template_store):
    from mlflow.tracking import MlflowClient

    env = dict(os.environ)
    env.pop("TOPREC_NO_TRACK", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(template_store, db)  # the default place: ./mlruns/mlflow.db (migrated already, to save time)
    p = toprec("evaluate", "--data", competition_dir, "--model", "ease", "--protocol", "temporal", "--cutoff", "5",
               "-q", cwd=tmp_path, env=env)  # fmt: skip
    assert p.returncode == 2, p.stderr  # a cutoff before every event: nothing to evaluate
    assert "toprec: error:" in p.stderr
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("toprec").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_default_store_is_in_toprec_home_not_where_the_user_stands(tmp_path, competition_dir, template_store):
    """No --tracking-uri, no $MLFLOW_TRACKING_URI: the store is $TOPREC_HOME/mlruns; the working folder stays empty."""
    env = dict(os.environ)
    env.pop("TOPREC_NO_TRACK", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["TOPREC_HOME"] = str(tmp_path / "home")
    db = tmp_path / "home" / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copy(template_store, db)  # migrated already, to save time
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    p = toprec("evaluate", "--data", competition_dir, "--model", "popularity", "--random", "4", "-q", cwd=here, env=env)
    assert p.returncode == 0, p.stderr
    assert list(here.iterdir()) == []  # no ./mlruns
    listed = toprec("runs", "--json", cwd=elsewhere, env=env)  # the same store from any folder
    assert listed.returncode == 0, listed.stderr
    assert [r["model"] for r in json.loads(listed.stdout)] == ["popularity"]
    assert list(elsewhere.iterdir()) == []


def test_epoch_history_is_logged_per_step(store):
    """Per-epoch logs of a trained model land as metric histories (step = epoch)."""
    from mlflow.tracking import MlflowClient

    from toprec.experiment import session
    from toprec.experiment.tracking import Tracker

    class Fake:
        name = "fake"
        history = [{"loss": 1.0 / e, "recall@10": 0.1 * e, "seconds": 0.01} for e in (1, 2, 3)]

    uri = f"sqlite:///{store / 'mlflow.db'}"
    tracker = Tracker.start(uri, run_name="t")
    token = session._current.set(tracker)
    try:
        session.log_results({"fake": {"recall@10": 0.3}}, [Fake()])
    finally:
        session._current.reset(token)
    tracker.end()
    client = MlflowClient(uri)
    # the test metric alone under its name; the epochs' validation recall under val_ (issue 22, item 10)
    hist = client.get_metric_history(tracker.run_id, "recall_at_10")
    assert [(m.step, round(m.value, 6)) for m in hist] == [(0, 0.3)]
    val = client.get_metric_history(tracker.run_id, "val_recall_at_10")
    assert sorted((m.step, round(m.value, 6)) for m in val) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert [m.step for m in client.get_metric_history(tracker.run_id, "loss")] == [1, 2, 3]
    assert [m.step for m in client.get_metric_history(tracker.run_id, "epoch_s")] == [1, 2, 3]


def test_runs_shows_the_test_recall_the_best_of_several_models_and_the_data(tmp_path, competition_dir, store, cli,
                                                                              monkeypatch):  # fmt: skip
    """A torch model's epochs do not hide its test recall; several models show the best one's; each run its data."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    one, several = tmp_path / "one.json", tmp_path / "several.json"
    cli("evaluate", "--data", competition_dir, "--model", "multidae", "-p", "epochs=4", "-p", "patience=0",
        "--random", "4", "-q", "--json", one)  # fmt: skip
    cli("evaluate", "--data", competition_dir, "--model", "popularity,ease", "--random", "4", "-q", "--json", several)
    got = {r["model"]: r["metrics"]["recall@10"] for r in json.loads(one.read_text())["results"]}
    got_several = {r["model"]: r["metrics"]["recall@10"] for r in json.loads(several.read_text())["results"]}
    listed = json.loads(cli("runs", "--json"))
    assert [r["model"] for r in listed] == ["popularity,ease", "multidae"]
    assert listed[1]["recall@10"] == pytest.approx(got["multidae"]) and listed[1]["best_model"] is None
    best = max(got_several, key=got_several.get)
    assert best == "ease" and listed[0]["best_model"] == "ease"
    assert listed[0]["recall@10"] == pytest.approx(got_several["ease"])
    assert all(r["data"] == str(competition_dir) for r in listed)
    table = cli("runs")
    assert f"{got_several['ease']:.4f} (ease)" in table and f"{got['multidae']:.4f}" in table, table
    assert table.count("comp") >= 2, table  # the data folder's name on each row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_lands_on_a_real_mlflow_server(tmp_path, competition_dir, template_store):
    exe = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    if not Path(exe).exists():
        pytest.skip("the mlflow executable is not installed")
    from mlflow.tracking import MlflowClient

    shutil.copy(template_store, tmp_path / "server.db")
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [exe, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no background job workers
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        env = dict(os.environ)
        env.pop("TOPREC_NO_TRACK", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        p = toprec("evaluate", "--data", competition_dir, "--model", "ease", "-p", "l2=40", "-q",
                   "--tracking-uri", url, "--json", tmp_path / "r.json", cwd=tmp_path, env=env)  # fmt: skip
        assert p.returncode == 0, p.stderr
        client = MlflowClient(url)
        exp = client.get_experiment_by_name("toprec")
        runs = client.search_runs([exp.experiment_id])
        assert len(runs) == 1
        run = runs[0]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["model.params.l2"]) == 40.0
        printed = json.loads((tmp_path / "r.json").read_text())["results"][0]["metrics"]
        assert run.data.metrics["recall_at_10"] == pytest.approx(printed["recall@10"])
        assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert not (tmp_path / "mlruns").exists()
    finally:  # the server and the workers it started: its own process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        log.close()
