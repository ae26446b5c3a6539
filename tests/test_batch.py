"""``toprec batch``: lists from a saved model as Parquet, local engine and Ray (local two-node cluster on loopback)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from toprec import Dataset, app
from toprec.errors import ToprecError
from toprec.experiment.config import RunConfig

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from ray_local import LocalRay, unavailable  # noqa: E402


@pytest.fixture
def saved(tmp_path, competition_dir, cli):
    model_dir = tmp_path / "model"
    cli("submit", "--data", competition_dir, "--model", "ease", "--output", tmp_path / "sub.csv",
        "--save-model", model_dir, "-q", "--no-track")  # fmt: skip
    return model_dir


def run_batch(**batch):
    k = batch.pop("k", 10)
    return app.run(RunConfig.make(command="batch", batch=batch, metrics={"k": k}))


def test_local_equals_offline_recommend(tmp_path, saved, competition_dir):
    out = tmp_path / "recs.parquet"
    r = run_batch(model_dir=str(saved), output=str(out), k=5)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["user", "rank", "item", "score"]
    ds = Dataset.load(competition_dir)
    from toprec.models import Recommender

    model = Recommender.load(saved)
    recs = model.recommend(ds.users, k=5)
    assert r.users == ds.n_users and r.rows == len(frame) == ds.n_users * 5
    assert (frame["user"].to_numpy() == np.repeat(ds.user_ids, 5)).all()
    assert (frame["item"].to_numpy() == ds.item_ids[recs.items.ravel()]).all()
    assert (frame["rank"].to_numpy() == np.tile(np.arange(1, 6), ds.n_users)).all()
    assert np.array_equal(frame["score"].to_numpy(), recs.scores.ravel())
    seen = set(zip(ds.user_ids[ds.user], ds.item_ids[ds.item]))
    assert not any((u, i) in seen for u, i in zip(frame["user"], frame["item"]))
    # the same file for any row-group size (content) and the same bytes for the same one
    out2 = tmp_path / "recs2.parquet"
    run_batch(model_dir=str(saved), output=str(out2), k=5, block=7)
    assert pq.read_table(out).equals(pq.read_table(out2))
    out3 = tmp_path / "recs3.parquet"
    run_batch(model_dir=str(saved), output=str(out3), k=5)
    assert out.read_bytes() == out3.read_bytes()


def batch_for_users(tmp_path, model_dir, text: str, k: int):
    """``batch --users FILE`` with ``text`` as the file: the result and the written rows."""
    users, out = tmp_path / "users.csv", tmp_path / "recs.parquet"
    users.write_text(text)
    r = run_batch(model_dir=str(model_dir), output=str(out), users=str(users), k=k)
    return r, pd.read_parquet(out)


def test_users_file(tmp_path, saved, competition_dir):
    r, frame = batch_for_users(tmp_path, saved, "user\nu3\nu1\nnobody\nu3\n", k=3)
    assert r.users == 3 and r.unknown_users == 1
    assert list(frame["user"].unique()) == ["u3", "u1", "nobody"]
    from toprec.models import Recommender

    pop = np.argsort(-Recommender.load(saved).item_popularity, kind="stable")[:3]
    ds = Dataset.load(competition_dir)
    assert list(frame.loc[frame["user"] == "nobody", "item"]) == list(ds.item_ids[pop])


def test_users_file_with_zero_padded_ids_of_an_integer_model(tmp_path, cli):
    """A model of integer ids asked for "01": an unknown user written as "01", never as user 1 (it was: two
    blocks of rows under user 1, one of them the popular list)."""
    data = tmp_path / "ints.csv"
    data.write_text("user,item,time\n" + "".join(f"{u},{i},{u * 10 + i}\n" for u in (1, 2, 3) for i in range(u, u + 4)))
    model_dir = tmp_path / "model"
    cli("submit", "--data", data, "--model", "popularity", "--output", tmp_path / "sub.csv", "-k", "2",
        "--save-model", model_dir, "-q", "--no-track")  # fmt: skip
    r, frame = batch_for_users(tmp_path, model_dir, "user\n1\n01\n7\n", k=2)
    assert r.users == 3 and r.unknown_users == 2
    assert list(frame["user"].unique()) == ["1", "01", "7"] and len(frame) == 6
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert list(frame.loc[frame["user"] == "1", "item"]) == list(sub.loc[sub["user"] == 1, "item"])
    _, frame = batch_for_users(tmp_path, model_dir, "user\n1\n7\n", k=2)  # every id a number as written
    assert list(frame["user"].unique()) == [1, 7]  # integers, as the model's


@pytest.mark.parametrize("case", ["no_dir", "bad_columns", "no_users_file", "not_a_model", "k_too_big"])
def test_bad_input_one_line_nothing_written(tmp_path, saved, case):
    out = tmp_path / "recs.parquet"
    kw = {"model_dir": str(saved), "output": str(out)}
    if case == "no_dir":
        kw["model_dir"] = str(tmp_path / "missing")
    elif case == "bad_columns":
        (tmp_path / "u.csv").write_text("id_of_user,x\nu1,1\n")
        kw["users"] = str(tmp_path / "u.csv")
    elif case == "no_users_file":
        kw["users"] = str(tmp_path / "nope.csv")
    elif case == "not_a_model":
        (tmp_path / "empty").mkdir()
        kw["model_dir"] = str(tmp_path / "empty")
    else:
        kw["k"] = 10_000
    with pytest.raises(ToprecError) as exc:
        run_batch(**kw)
    assert "\n" not in str(exc.value)
    assert not out.exists() and not list(tmp_path.glob(".recs.parquet*"))


def test_unreachable_ray_address_cli(tmp_path, saved):
    out = tmp_path / "recs.parquet"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "toprec", "batch", "--model-dir", str(saved), "--output", str(out),
                        "--engine", "ray", "--address", "127.0.0.1:9"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--address 127.0.0.1:9: no Ray cluster answers there" in lines[0]
    assert not out.exists()
    assert time.perf_counter() - t0 < 30


def test_batch_config_needs_its_section():
    with pytest.raises(ToprecError, match="needs a 'batch' section"):
        RunConfig.make(command="batch")
    with pytest.raises(ToprecError, match="needs 'data'"):
        RunConfig.make(command="evaluate", model={"name": "ease"})


@pytest.mark.skipif(unavailable() is not None, reason=f"local Ray cluster: {unavailable()}")
def test_ray_engine_equals_local_byte_for_byte(tmp_path, saved):
    """A head and a second node on loopback (own network namespace); the same Parquet bytes as the local engine."""
    local, remote = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    run_batch(model_dir=str(saved), output=str(local), k=10, block=40)
    with LocalRay(nodes=2, cpus=1) as cluster:
        r = cluster.run([sys.executable, "-m", "toprec", "batch", "--model-dir", str(saved), "--output", str(remote),
                         "--engine", "ray", "--address", cluster.address, "--block", "40", "-q"], timeout=240)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:] + cluster.logs()
    assert remote.read_bytes() == local.read_bytes()


def test_ensemble_and_rerank_pipelines_give_the_submission_lists(tmp_path, competition_dir, cli):
    """An `ensemble --save-model` folder (fused or re-ranked) scores as the submission the same command wrote."""
    pytest.importorskip("lightgbm")
    for method, extra in (("rank", ["--no-validate", "--search", "none"]), ("rerank", ["--recency", "--force"])):
        sub, model_dir = tmp_path / f"{method}.csv", tmp_path / f"{method}_model"
        cli("ensemble", "--data", competition_dir, "--members", "itemknn,ease:l2=20", "--method", method,
            "--random", "4", "-n", "30", "-k", "5", *extra, "--output", sub, "--save-model", model_dir, "-q",
            "--no-track")  # fmt: skip
        out = tmp_path / f"{method}.parquet"
        r = run_batch(model_dir=str(model_dir), output=str(out), k=5, block=13)
        frame, want = pd.read_parquet(out), pd.read_csv(sub)
        assert r.model == f"ensemble ({method})" and r.rows == len(want)
        assert frame["user"].astype(str).tolist() == want["user"].astype(str).tolist()
        assert frame["item"].astype(str).tolist() == want["item"].astype(str).tolist()
    with pytest.raises(ToprecError, match="candidates per member"):
        run_batch(model_dir=str(model_dir), output=str(tmp_path / "x.parquet"), k=31)
    with pytest.raises(ToprecError, match="--engine local"):
        run_batch(model_dir=str(model_dir), output=str(tmp_path / "x.parquet"), k=5, engine="ray")
    assert not (tmp_path / "x.parquet").exists()
