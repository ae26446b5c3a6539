"""`toprec auto`'s re-ranker stage: trained on fold A, gated on fold B, recency features with a last-event part."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from toprec.auto.pipeline import run_auto, use_recency

pytest.importorskip("lightgbm")


def test_rerank_stage_runs_with_recency_and_writes_its_verdict(dataset, tmp_path):
    lines = []
    run = run_auto(dataset, tmp_path / "auto", 300, last=1, random=4, seed=3, candidates_n=30,
                   only=["ease", "rp3beta"], log=lines.append, model_dir=tmp_path / "model")  # fmt: skip
    stage = [line for line in lines if "re-ranker: trained on fold A" in line]
    assert stage and "with recency features" in stage[0], "\n".join(lines)
    verdict = json.loads((tmp_path / "auto" / "rerank.json").read_text())
    assert set(verdict) >= {"fold_b", "written_fold_b", "se", "kept"}
    assert verdict["kept"] == (verdict["fold_b"] - verdict["written_fold_b"] > verdict["se"] > 0)
    assert run.recency == (run.method == "rerank")
    assert (run.method == "rerank") == verdict["kept"]
    # the saved pipeline (re-ranked or fused) answers every user with the submission's list
    from toprec.app import serving

    served = serving.load(tmp_path / "model")
    assert (served.reranker is not None) == (run.method == "rerank")
    got = served.answer([serving.Query(user=str(dataset.user_ids[u])) for u in run.recs.users], k=10)
    assert [a.items for a in got] == [dataset.item_ids[r[r >= 0]].tolist() for r in run.recs.items]


def test_recency_only_with_a_last_event_part_and_times(dataset):
    assert use_recency(dataset, last=1)
    assert not use_recency(dataset, last=0)  # random-only protocols: no last event to aim at
    flat = SimpleNamespace(time=[5, 5, 5])
    assert not use_recency(flat, last=1)


def test_pipeline_yaml_of_a_reranked_run_keeps_the_recency_features(competition_dir, tmp_path):
    from toprec.app.auto import pipeline_config
    from toprec.experiment.config import RunConfig

    cfg = RunConfig.make(command="auto", data={"path": str(competition_dir)}, auto={"budget": "5m"},
                         output={"submission": "sub.csv"})  # fmt: skip
    run = SimpleNamespace(weights={"ease": 0.5, "rp3beta": 0.5}, method="rerank", recency=True)
    pipe = pipeline_config(cfg, run)
    assert pipe.ensemble.method == "rerank" and pipe.ensemble.recency and pipe.ensemble.validate_folds
    run.recency = False
    assert not pipeline_config(cfg, run).ensemble.recency
    # with the ranker auto saved (OUT/model/rerank): that ranker, used as it is, never trained again
    model = tmp_path / "model"
    (model / "rerank").mkdir(parents=True)
    pipe = pipeline_config(cfg, run, model)
    assert pipe.ensemble.ranker_model == str((model / "rerank").resolve()) and not pipe.ensemble.validate_folds


def test_pace_scales_the_members_not_yet_measured():
    from toprec.auto.pipeline import PACE_RANGE, pace

    nan = float("nan")
    assert pace([]) == 1.0 and pace([(nan, 10.0)]) == 1.0
    assert pace([(30.0, 10.0), (nan, 5.0), (8.0, 2.0), (50.0, 10.0)]) == 4.0  # median of 3, 4, 5
    assert pace([(30.0, 10.0), (10.0, 10.0)]) == 2.0  # even count: the mean of the middle two
    assert pace([(1000.0, 1.0)]) == PACE_RANGE[1] and pace([(0.01, 10.0)]) == PACE_RANGE[0]


def test_the_ensemble_gets_the_top_five_and_the_best_of_every_other_family():
    from toprec.auto.pipeline import MAX_MEMBERS, ensemble_members

    def study(name):
        return SimpleNamespace(c=SimpleNamespace(name=name))

    order = ["easer", "cease", "edlae", "ease", "ials", "multivae", "recvae", "rp3beta", "bpr", "seqrules", "sasrec"]
    got = [s.c.name for s in ensemble_members([study(n) for n in order])]
    # recvae is of Multi-VAE's family (already in); BPR's pair-wise family is not iALS's; every sequential member
    # stays
    assert got == ["easer", "cease", "edlae", "ease", "ials", "multivae", "rp3beta", "bpr", "seqrules", "sasrec"]
    assert MAX_MEMBERS == 5
    assert [s.c.name for s in ensemble_members([study("ease"), study("ials")])] == ["ease", "ials"]


def test_rerank_box_leaves_the_final_refit_its_time():
    from toprec.auto.pipeline import BOX_FACTOR, FIXED_RESERVE_S, rerank_box

    assert rerank_box(20.0, 1000.0, 50.0) == BOX_FACTOR * 20.0  # plenty of room: three times the estimate
    assert rerank_box(20.0, 1000.0, 50.0, pace=2.0) == BOX_FACTOR * 40.0  # a slow machine gets more
    assert rerank_box(20.0, 100.0, 50.0) == 100.0 - 50.0 - FIXED_RESERVE_S  # never the refit's time
    assert rerank_box(20.0, 70.0, 50.0) == 10.0  # half the estimate fits: it runs, boxed to the room
    assert rerank_box(20.0, 65.0, 50.0) == 0.0  # less than half: skipped
    assert rerank_box(20.0, 65.0, 50.0, slack=15.0) == 20.0  # ... unless the budget's slack makes it fit
    # what tuning keeps back (``reserve``: refit + stage + writing + 3% of the budget) is enough to run it
    refit, need, budget = 130.0, 40.0, 420.0
    left = refit + need + FIXED_RESERVE_S + 0.03 * budget
    assert rerank_box(need, left - 0.03 * budget, refit) == need
    # a ranker over the validation cuts fills the room: the cuts it learns from are sized to it
    assert rerank_box(20.0, 1000.0, 50.0, slack=15.0, fill=True) == 1000.0 - 50.0 - FIXED_RESERVE_S + 15.0
    assert rerank_box(20.0, 65.0, 50.0, fill=True) == 0.0


def test_a_final_refit_is_never_cut_below_its_estimate(dataset, tmp_path, monkeypatch):
    """A stage before the final refit that eats the budget (a re-ranker overran on a GPU machine) must not leave
    an epoch-trained member one epoch: the final deadline is at least the members' refit estimate."""
    import toprec.auto.pipeline as pipeline
    import toprec.train as train

    seen = []
    real = train.deadline

    def recording(seconds):
        seen.append(seconds)
        return real(seconds)

    def overrun(ens, chosen, report, *args, **kwargs):
        clock = args[3]
        clock.before += clock.left + 5.0  # the stage ran 5 s past the budget
        return ens, chosen, report

    monkeypatch.setattr(train, "deadline", recording)
    monkeypatch.setattr(pipeline, "_maybe_rerank", overrun)
    lines = []
    pipeline.run_auto(dataset, tmp_path / "auto", 120, last=1, random=4, seed=3, candidates_n=30,
                      only=["ease", "rp3beta"], log=lines.append)  # fmt: skip
    assert any("it may run past the budget rather than cut a member short" in line for line in lines), lines
    assert seen and seen[-1] > 0  # the final refit's deadline: the members' estimate, not the (negative) time left


def test_a_ranker_model_that_cannot_be_used_gets_a_one_line_error(tmp_path):
    from toprec.app.ensemble import _load_ranker
    from toprec.ensemble import Ensemble
    from toprec.errors import ToprecError
    from toprec.experiment.config import EnsembleConfig

    ens = Ensemble(["ease", "rp3beta"], method="rerank")
    with pytest.raises(ToprecError, match=f"^{tmp_path / 'nope'}: cannot read the re-ranker"):
        _load_ranker(ens, str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="need --method rerank"):  # only the re-ranker takes one
        EnsembleConfig(members=["ease"], method="score", ranker_model=str(tmp_path))
    with pytest.raises(ValueError, match="cannot run with --no-validate"):  # rerank without one: trained on fold A
        EnsembleConfig(members=["ease", "rp3beta"], method="rerank", validate=False, search="none")
    ok = EnsembleConfig(members=["ease", "rp3beta"], method="rerank", validate=False, search="none",
                        ranker_model=str(tmp_path))  # fmt: skip
    assert ok.ranker_model == str(tmp_path)
