"""The application layer: one RunConfig, the same results from Python, the CLI and `toprec run`."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toprec import app as application
from toprec.cli import app as cli_app
from toprec.errors import ToprecError
from toprec.experiment import config as cfgmod
from toprec.experiment.config import RunConfig

PREVIOUS = Path(__file__).parent / "fixtures" / "previous-version"
SRC = Path(__file__).resolve().parents[1] / "src" / "toprec"


@pytest.fixture
def previous(tmp_path, monkeypatch) -> Path:
    """The previous version's configs and outputs, copied; the working directory is their folder."""
    folder = tmp_path / "prev"
    shutil.copytree(PREVIOUS, folder)
    shutil.rmtree(folder / "expected")
    monkeypatch.chdir(folder)
    return folder


def _drop(d, key: str):
    """``d`` without ``key`` at any depth."""
    if isinstance(d, dict):
        return {k: _drop(v, key) for k, v in d.items() if k != key}
    if isinstance(d, list):
        return [_drop(v, key) for v in d]
    return d


def _metrics(payload: dict) -> dict:
    """Every number of an evaluate JSON except timings and the version."""
    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if not k.endswith("_s") and k != "toprec_version"}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d

    return strip(payload)


def _expected(name: str):
    return PREVIOUS / "expected" / name


@pytest.mark.parametrize("name", ["evaluate", "folds", "submit", "ensemble", "ensemble-fallback"])
def test_configs_saved_by_the_previous_version_give_the_same_results(previous, name):
    cfg = cfgmod.load(previous / f"{name}.yaml")
    result = application.run(cfg)
    if name in ("evaluate", "folds"):
        got = json.loads((previous / "expected" / f"{name}.json").read_text())
        assert _metrics(got) == _metrics(json.loads(_expected(f"{name}.json").read_text()))
        assert result.metrics  # the typed result carries the same numbers
        first = got["results"][0]
        key = "metrics" if name == "evaluate" else "folds"
        assert first[key] is not None and result.params[first["model"]] == first["params"]
    else:
        assert (previous / "expected" / f"{name}.csv").read_bytes() == _expected(f"{name}.csv").read_bytes()
    if name.startswith("ensemble"):
        want = json.loads(_expected(f"{name}.json").read_text())
        assert result.chosen == want["chosen"]
        assert result.weights == pytest.approx(want["final_weights"])
        # the previous version's numbers unchanged; keys added since (fold_b_gap_se, recall_by_activity_fold_b)
        # are allowed
        got = _drop(_drop(result.validation, "fold_b_gap_se"), "recall_by_activity_fold_b")
        assert _metrics(got) == _metrics(want["validation"])


def test_python_api_gets_the_cli_fallback(previous):
    """Built in Python (no YAML, no CLI): the same fallback to the best fold-A member, the same file."""
    cfg = RunConfig.make(
        command="ensemble", data={"path": "data", "cache": False}, split={"random": 4, "seed": 3},
        ensemble={"members": ["ease:l2=20", "rp3beta", "itemknn", "popularity"], "method": "rank"},
        output={"submission": "py.csv"}, tracking={"enabled": False},
    )  # fmt: skip
    result = application.ensemble(cfg)
    assert result.chosen == "member:rp3beta" and not result.validation["holds"]
    assert any("writing the best fold-A member 'rp3beta' alone" in w for w in result.warnings)
    assert (previous / "py.csv").read_bytes() == _expected("ensemble-fallback.csv").read_bytes()
    # force: the ensemble itself is written, as on the command line
    forced = application.ensemble(cfg.model_copy(update={"ensemble": cfg.ensemble.model_copy(update={"force": True}),
                                                         "output": cfg.output.model_copy(update={"submission":
                                                                                                  "forced.csv"})}))
    assert forced.chosen == "ensemble"
    runner = CliRunner()
    args = ["ensemble", "--data", "data", "--no-cache", "--members", "ease:l2=20,rp3beta,itemknn,popularity",
            "--method", "rank", "--seed", "3", "--random", "4", "--output", "cli.csv", "-q"]  # fmt: skip
    res = runner.invoke(cli_app, args, catch_exceptions=False)
    assert res.exit_code == 0
    assert "writing the best fold-A member 'rp3beta' alone" in res.stderr
    assert (previous / "cli.csv").read_bytes() == (previous / "py.csv").read_bytes()


COMMANDS = {
    "evaluate": ["evaluate", "--model", "ease,itemknn", "-p", "ease.l2=35.5", "-p", "itemknn.k=7", "--random", "4",
                 "--seed", "2", "-k", "5", "--json", "r.json", "--folds", "2"],
    "submit": ["submit", "--model", "ease", "-p", "l2=12", "--device", "cpu", "--output", "s.csv", "--save-model",
               "m"],
    "ensemble": ["ensemble", "--members", "ease:l2=10,itemknn", "--output", "e.csv", "--method", "rrf", "--search",
                 "weights", "-n", "50", "--weights", "1,0.5", "--seed", "1", "--restarts", "2", "--no-stratify",
                 "--force"],
    "tune": ["tune", "--model", "ease", "-p", "form=items", "--trials", "7", "--timeout", "30", "--storage",
             "sqlite:///x.db", "--study", "s", "--workers", "2", "--no-prune", "--out", "t", "--seed", "3",
             "--heartbeat", "5"],
    "align": ["align", "--models", "popularity,ease:l2=20", "--scheme", "users", "--repeats", "2", "--json", "a.json"],
    "report": ["report", "--models", "popularity,ease", "-p", "ease.l2=9", "--output", "rep", "--map-items", "0",
               "--protocol", "random_k", "--random", "3"],
    "eda": ["eda", "--output", "eda", "--seed", "4", "--neighbours", "5", "--sim-users", "50"],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_and_run_file_execute_the_same_config(command, previous, monkeypatch):
    """The command line builds a RunConfig, saves exactly it, and `toprec run` executes the same one."""
    seen: list[RunConfig] = []

    class Stop(Exception):
        pass

    def capture(cfg, **options):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(application, "run", capture)
    runner = CliRunner()
    args = [*COMMANDS[command], "--data", "data", "--save-config", "saved.yaml", "--no-track", "-q"]
    with pytest.raises(Stop):
        runner.invoke(cli_app, args, catch_exceptions=False)
    with pytest.raises(Stop):
        runner.invoke(cli_app, ["run", "saved.yaml", "-q"], catch_exceptions=False)
    from_cli, from_file = seen
    assert from_cli.command == command
    assert from_file.model_dump(exclude={"toprec_version"}) == from_cli.model_dump(exclude={"toprec_version"})
    assert cfgmod.load("saved.yaml").model_dump(exclude={"toprec_version"}) == from_cli.model_dump(
        exclude={"toprec_version"})
    if command == "tune":
        assert from_cli.tune.fixed == ["form"] and from_cli.model.params["form"] == "items"
    if command == "submit":
        assert from_cli.model.params["device"] == "cpu"


def test_model_params_are_validated_once_in_full():
    m = cfgmod.ModelConfig(name="EASE", params={"l2": "7"})
    assert m.name == "ease" and m.params["l2"] == 7.0 and "form" in m.params
    assert m.build().params.l2 == 7.0
    with pytest.raises(ToprecError, match="model: model 'ease': unknown parameter 'nope'"):
        RunConfig.make(data={"path": "x"}, model={"name": "ease", "params": {"nope": 1}})
    with pytest.raises(ToprecError, match="ensemble.method: unknown fusion method 'median'"):
        RunConfig.make(command="ensemble", data={"path": "x"}, ensemble={"members": ["ease"], "method": "median"},
                       output={"submission": "s.csv"})  # fmt: skip
    with pytest.raises(ToprecError, match="1 weights for 2 members"):
        RunConfig.make(command="ensemble", data={"path": "x"}, ensemble={"members": ["ease", "rp3beta"],
                                                                          "weights": [1]}, output={"submission": "s"})
    with pytest.raises(ToprecError, match="config command 'submit' given to evaluate"):
        application.evaluate(RunConfig.make(command="submit", data={"path": "x"}, model={"name": "ease"},
                                            output={"submission": "s.csv"}))  # fmt: skip


def _command_functions():
    for path in sorted((SRC / "cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
                for d in node.decorator_list
            ):
                yield path.name, node


def test_command_bodies_are_thin():
    """A command is options -> config -> app call -> print: at most ~40 lines, no fitting or splitting."""
    found = list(_command_functions())
    names = {n.name for _, n in found}
    assert {"evaluate", "submit", "ensemble", "tune", "align", "report", "eda", "run"} <= names, names
    for file, fn in found:
        body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body  # without the docstring
        lines = body[-1].end_lineno - body[0].lineno + 1
        assert lines <= 40, f"{file}:{fn.name} body has {lines} lines"
        calls = {n.func.attr for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & {"fit", "recommend", "validate", "by_name", "competition"}, (file, fn.name, calls)


def test_option_bundles_are_declared_once():
    """The data options exist once, in cli/options.py (every command gets them from the bundle)."""
    text = {p.name: p.read_text() for p in (SRC / "cli").glob("*.py")}
    for flag in ('"--user-col"', '"--min-rating"', '"--no-cache"', '"--save-config"', '"--tracking-uri"'):
        holders = [name for name, t in text.items() if flag in t]
        assert holders == ["options.py"], (flag, holders)
    assert not list(SRC.glob("cli_*.py")) and not (SRC / "cli.py").exists()
