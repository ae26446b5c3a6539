"""The command line, end to end, in subprocesses (exit codes and stderr as a user sees them)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import FIXTURES


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in err.splitlines() if ln.startswith("toprec: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_evaluate_prints_table_and_json(competition_dir, tmp_path):
    out = tmp_path / "r.json"
    proc = run("evaluate", "--data", competition_dir, "--model", "popularity,itemknn,ease",
               "--random", "4", "--json", out, "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for key in ("recall@10", "ndcg@10", "map@10", "coverage@10", "recall_last@10", "recall_random@10", "fit_s"):
        assert key in proc.stdout
    res = json.loads(out.read_text())
    by = {r["model"]: r["metrics"] for r in res["results"]}
    assert by["ease"]["recall@10"] > by["popularity"]["recall@10"]
    assert res["users_evaluated"] == 120 and res["test_events"] == 600


def test_submit_writes_k_unseen_items_per_user(competition_dir, tmp_path, events):
    sub = tmp_path / "sub.csv"
    model_dir = tmp_path / "model"
    proc = run("submit", "--data", competition_dir, "--model", "ease", "--param", "l2=20", "--output", sub,
               "-k", "7", "--save-model", model_dir, "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sub.read_text().startswith("user,item\n")
    frame = pd.read_csv(sub)
    assert len(frame) == 120 * 7
    assert frame.groupby("user").size().eq(7).all()
    seen = set(zip(events["user"], events["item"]))
    assert not any((u, i) in seen for u, i in zip(frame["user"], frame["item"]))
    assert (model_dir / "model.json").exists()


def test_models_and_stats(competition_dir):
    proc = run("models")
    assert proc.returncode == 0 and "ease" in proc.stdout and "l2" in proc.stdout
    proc = run("models", "--json")
    assert json.loads(proc.stdout)["ease"]["params"]["l2"]["default"] == 500.0
    proc = run("data", "stats", competition_dir, "--json")
    stats = json.loads(proc.stdout)
    assert stats["users"] == 120 and stats["events"] == 2400


def test_other_layouts_and_table_options(tmp_path):
    proc = run("data", "stats", FIXTURES / "table.csv", "--user-col", "uid", "--item-col", "sid",
               "--time-col", "when", "--json", "--no-cache")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["duplicates_dropped"] == 1
    proc = run("data", "stats", FIXTURES / "ml-1m", "--min-rating", "4", "--json", "--no-cache")
    assert json.loads(proc.stdout)["events"] == 3


def test_fetch_from_a_recbole_wheel(tmp_path):
    """The fallback path: ml-100k files inside a (here: miniature) recbole wheel."""
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    p = "recbole/dataset_example/ml-100k/"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(p + "ml-100k.inter", (FIXTURES / "recbole" / "tiny.inter").read_text())
        zf.writestr(p + "ml-100k.item", (FIXTURES / "recbole" / "tiny.item").read_text())
        # the link file names films by their MovieLens-1M ids: 1446 = Kolya (ML-100K 242),
        # 1617 = L.A. Confidential (ML-100K 302); 3000 (Princess Mononoke, 1997) is not in ML-100K: dropped
        zf.writestr(p + "ml-100k.link", "item_id:token\tentity_id:token\n1446\tm.1\n1617\tm.2\n3000\tm.3\n")
        zf.writestr(
            p + "ml-100k.kg",
            "head_id:token\trelation_id:token\ttail_id:token\n"
            "m.1\tfilm.film.directed_by\tm.d1\nm.2\tfilm.film.written_by\tm.w1\nm.1\tfilm.film.sequel\tm.2\n"
            "m.3\tfilm.film.directed_by\tm.d3\n",
        )
    out = tmp_path / "ml"
    proc = run("data", "fetch", "ml-100k", "--out", out, "--source", "recbole", "--wheel", wheel, "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "train_ratings.csv").read_text().startswith("user,item,time\n")
    assert (out / "directors.tsv").read_text() == "item\tdirector\n242\tm.d1\n"
    assert (out / "writers.tsv").read_text() == "item\twriter\n302\tm.w1\n"
    assert (out / "sequels.tsv").read_text() == "item\tsequel\n242\t302\n"
    assert "Kolya (1996)" in (out / "titles.tsv").read_text()
    proc = run("data", "stats", out, "--json")
    assert json.loads(proc.stdout)["events"] == 4


def test_fetch_from_local_grouplens_copy(tmp_path):
    out = tmp_path / "ml"
    wheel = tmp_path / "not-a-wheel.whl"
    wheel.write_text("nope")
    proc = run("data", "fetch", "ml-100k", "--out", out, "--source", FIXTURES / "ml-100k", "--wheel", wheel, "-q")
    assert_one_line_error(proc, "not a wheel")
    assert not (out / "train_ratings.csv").exists()


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "content, needles",
    [
        (None, ["train_ratings.csv", "no known dataset layout"]),
        ("", ["train_ratings.csv", "file is empty"]),
        ("user,item,time\n", ["no events"]),
        ("user,movie,time\n1,2,3\n", ["missing item column 'item'", "found: user, movie, time"]),
        ("user,item,time\n1,2,3\n1,3,x\n", ["train_ratings.csv, row 3", "'x'", "not a number"]),
        ("user,item,time\n1,2,3\n,5,6\n", ["row 3", "empty user"]),
    ],
)
def test_bad_data_gives_one_line_and_no_output(tmp_path, content, needles):
    folder = tmp_path / "d"
    folder.mkdir()
    if content is not None:
        (folder / "train_ratings.csv").write_text(content)
    sub = tmp_path / "sub.csv"
    proc = run("submit", "--data", folder, "--output", sub, "-q")
    assert_one_line_error(proc, *needles)
    assert not sub.exists()
    assert list(tmp_path.glob(".sub.csv*")) == []  # no temp file left behind


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--model", "nope"], ["unknown model 'nope'"]),
        (["--model", "ease", "--param", "lambda=3"], ["unknown parameter 'lambda'"]),
        (["--model", "ease", "--param", "l2=abc"], ["parameter 'l2'='abc'"]),
        (["--model", "ease", "--param", "l2"], ["not key=value"]),
        (["--model", "itemknn", "--param", "k=0"], ["parameter 'k'"]),
    ],
)
def test_bad_model_or_params(competition_dir, tmp_path, args, needles):
    sub = tmp_path / "sub.csv"
    proc = run("submit", "--data", competition_dir, "--output", sub, *args, "-q")
    assert_one_line_error(proc, *needles)
    assert not sub.exists()


def test_missing_data_folder(tmp_path):
    proc = run("evaluate", "--data", tmp_path / "missing", "-q")
    assert_one_line_error(proc, "no such file or folder")


def test_existing_submission_untouched_on_failure(competition_dir, tmp_path):
    sub = tmp_path / "sub.csv"
    sub.write_text("old\n")
    proc = run("submit", "--data", competition_dir, "--output", sub, "--param", "l2=-5", "-q")
    assert proc.returncode == 2
    assert sub.read_text() == "old\n"


def test_device_option(competition_dir, tmp_path):
    proc = run("evaluate", "--data", competition_dir, "--model", "popularity", "--device", "cpu", "-q")
    assert_one_line_error(proc, "--device", "GPU")
    proc = run("evaluate", "--data", competition_dir, "--model", "ease", "--device", "tpu", "-q")
    assert_one_line_error(proc, "--device 'tpu'")
    cfg, got, ref = tmp_path / "cpu.yaml", tmp_path / "cpu.json", tmp_path / "ref.json"
    proc = run("evaluate", "--data", competition_dir, "--model", "ease", "--device", "cpu", "--random", "4", "-q",
               "--json", got, "--save-config", cfg)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import yaml

    assert yaml.safe_load(cfg.read_text())["model"]["params"]["device"] == "cpu"  # the option reached the model
    proc = run("evaluate", "--data", competition_dir, "--model", "ease", "-p", "device=cpu", "--random", "4", "-q",
               "--json", ref)  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    def metrics_of(path):
        return {k: v for k, v in json.loads(path.read_text())["results"][0]["metrics"].items() if not k.endswith("_s")}

    assert metrics_of(got) == metrics_of(ref) and metrics_of(got)["recall@10"] > 0.3


def test_evaluate_folds(competition_dir, tmp_path):
    out = tmp_path / "f.json"
    proc = run("evaluate", "--data", competition_dir, "--model", "ease", "--random", "4", "--folds", "3",
               "--json", out, "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "recall@10_std" in proc.stdout
    res = json.loads(out.read_text())
    assert res["folds"] == 3 and res["results"][0]["model"] == "ease"


def test_ml100k_knowledge_graph_item_table():
    """RecBole's ml-100k.link uses MovieLens-1M ids; the shipped table maps them to ML-100K items."""
    import pandas as pd

    import toprec.data.fetch as fetch

    table = pd.read_csv(Path(fetch.__file__).with_name("ml100k_kg_items.tsv"), sep="\t")
    pairs = dict(zip(table["ml1m"], table["ml100k"]))
    assert len(table) > 1600 and table["ml100k"].between(1, 1682).all()
    assert pairs[260] == 50 and pairs[1196] == 172 and pairs[1210] == 181  # the Star Wars trilogy
    assert pairs[1446] == 242 and 3000 not in pairs
