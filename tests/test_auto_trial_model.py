"""A tuned sequential member serves the submission as it is: ``Recommender.rebase``, auto's TrialMember, and the
pipeline.yaml that names the same model (``member_models``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from toprec import Dataset, models
from toprec.errors import ToprecError

pytest.importorskip("torch")

SASREC = dict(factors=16, blocks=1, heads=1, epochs=3, max_len=20, seed=0, valid_random=0)


def _part(dataset, drop_every: int = 4) -> Dataset:
    """The events less every ``drop_every``-th one, over the same users and items as the whole."""
    return dataset.filter(np.arange(dataset.n_events) % drop_every != 0)


def test_rebase_serves_the_whole_data_with_the_same_weights(events, dataset):
    part = _part(dataset)
    assert part.n_items == dataset.n_items and part.n_users == dataset.n_users
    model = models.get("sasrec", **SASREC).fit(part)
    users = dataset.users[:40]
    # new users with the same whole, time-ordered histories, given explicitly (a known user's history rows would
    # put the items the model trained on first)
    seqs = [dataset.item[dataset.user_ptr[u] : dataset.user_ptr[u + 1]] for u in users]
    expected = model.recommend(np.full(len(users), -1), k=10, history=model.histories(seqs))
    weights = {k: v.clone() for k, v in model.module.state_dict().items()}
    got = model.rebase(dataset).recommend(users, k=10)
    np.testing.assert_array_equal(got.items, expected.items)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
    assert all((model.module.state_dict()[k] == v).all() for k, v in weights.items())  # nothing trained
    assert model.train_matrix is dataset.matrix and model.n_users == dataset.n_users
    # the part's histories no longer: an item of the whole data alone is now seen (never recommended)
    before = models.get("sasrec", **SASREC).fit(part).recommend(users, k=10)
    assert not np.array_equal(before.items, got.items)


def test_rebase_refuses_what_it_cannot_serve(events, dataset):
    ease = models.get("ease").fit(dataset)
    with pytest.raises(ToprecError, match="cannot serve another dataset"):
        ease.rebase(dataset)
    model = models.get("sasrec", **SASREC).fit(dataset)
    e = events[events["item"] != events["item"].max()]
    fewer = Dataset.from_events(e["user"].to_numpy(), e["item"].to_numpy(), e["time"].to_numpy())
    with pytest.raises(ToprecError, match="items"):
        model.rebase(fewer)


def test_auto_writes_the_tuned_sasrec_and_pipeline_yaml_names_it(competition_dir, tmp_path):
    """SASRec alone: the submission comes from the chosen trial's model (same weights, not trained again);
    pipeline.yaml names the saved model, so `toprec run` writes the same file."""
    sub, out = tmp_path / "sub.csv", tmp_path / "auto"
    args = ["auto", "--data", competition_dir, "--output", sub, "--out", out, "--budget", "3m", "--members",
            "sasrec", "--last", "1", "--random", "4", "--seed", "3", "-q"]  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    trial = [d for d in (out / "models").iterdir() if (d / "model.json").exists()]
    assert trial, "the chosen trial's model is kept"
    served = models.Recommender.load(out / "model" / "members" / "0")
    kept = [models.Recommender.load(d) for d in trial]
    state = {k: v for k, v in served._state().items() if k.startswith("module.")}
    same = [m for m in kept if all(np.array_equal(m._state()[k], v) for k, v in state.items())]
    assert same, "the submission's SASRec is a kept trial's model, not a refit"
    assert served.n_users > 0 and served.train_matrix.nnz > same[0].train_matrix.nnz  # the whole data's histories
    pipe = yaml.safe_load((out / "pipeline.yaml").read_text())
    label = pipe["ensemble"]["members"][0]
    assert pipe["ensemble"]["member_models"] == {label: str(out / "model" / "members" / "0")}
    first = sub.read_bytes()
    sub.unlink()
    p = subprocess.run([sys.executable, "-m", "toprec", "run", str(out / "pipeline.yaml"), "--no-track", "-q"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert sub.read_bytes() == first


def test_member_models_must_name_a_member_and_a_model_of_it(competition_dir, tmp_path, dataset):
    from toprec.experiment.config import RunConfig

    folder = tmp_path / "ease_model"
    models.get("ease").fit(dataset).save(folder)
    with pytest.raises(Exception, match="member_models: 'sasrec' is not one of the members"):
        RunConfig.make(command="ensemble", data={"path": str(competition_dir)},
                       ensemble={"members": ["ease"], "member_models": {"sasrec": str(folder)}})  # fmt: skip
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"command": "ensemble", "data": {"path": str(competition_dir)},
                                   "ensemble": {"members": ["itemknn"], "member_models": {"itemknn": str(folder)},
                                                "search": "none", "validate": False, "weights": [1.0]},
                                   "output": {"submission": str(tmp_path / "s.csv")}}))  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "toprec", "run", str(cfg), "--no-track", "-q"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert p.returncode == 2
    assert "holds a 'ease' model, not the member's 'itemknn'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "s.csv").exists()
