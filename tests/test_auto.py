"""`toprec auto`: plan, tune, ensemble, confirm, refit within a budget; resumable; a pipeline that rebuilds it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import write_competition
from toprec import Dataset
from toprec.auto import candidates, profile
from toprec.errors import ToprecError
from toprec.experiment.config import parse_budget

MEMBERS = "ease,rp3beta,ials"


def toprec(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)  # fmt: skip


def auto_args(data, out: Path, sub: Path, budget="5m"):
    return ["auto", "--data", data, "--output", sub, "--out", out, "--budget", budget, "--members", MEMBERS,
            "--random", "4", "--seed", "3", "-q"]  # fmt: skip


def test_auto_end_to_end_and_pipeline_rebuilds_it(competition_dir, tmp_path, events):
    sub, out = tmp_path / "sub.csv", tmp_path / "auto"
    t0 = time.monotonic()
    p = toprec(*auto_args(competition_dir, out, sub), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 300 * 1.1
    frame = pd.read_csv(sub)
    assert len(frame) == 120 * 10 and frame.groupby("user").size().eq(10).all()
    seen = set(zip(events["user"], events["item"]))
    assert not any((u, i) in seen for u, i in zip(frame["user"], frame["item"]))
    info = json.loads((out / "auto.json").read_text())
    tuned = {m["name"]: m for m in info["members"]}
    assert set(tuned) == set(MEMBERS.split(","))
    for m in tuned.values():  # every member ran its starting points, and TPE went on from there
        assert m["trials"] >= len(next(c for c in info["plan"] if c["name"] == m["name"])["starts"])
        assert 0 < m["best"]["value"] <= 1
    assert info["chosen"] in ("ensemble", "rerank") or info["chosen"].startswith("member:")
    crossfit = (info["validation"] or {}).get("crossfit")
    assert crossfit, info["validation"]  # small data: the choice is cross-fitted, and the summary says what decided
    assert f"decided over {crossfit['cuts']} validation cut" in p.stdout or "decided over both folds" in p.stdout
    assert ("kept;" if crossfit["kept"] else "not kept;") in p.stdout, p.stdout
    assert (out / "report.html").read_text().count("<tr>") >= 4
    page = json.loads((out / "report.json").read_text())["sections"]
    assert [r[0] for r in page["members"]["tables"][0]["rows"]] == [m["name"] for m in info["members"]]
    assert set(page["members"]["figures"]["tuning"]["series"]) == set(MEMBERS.split(","))
    # fold B by user activity: buckets of every fold-B user, each column averaging back to that list's fold-B recall
    v = info["validation"]
    act = next(t for t in page["ensemble"]["tables"] if t["title"] == "fold B recall@10 by user activity")
    assert act["columns"][2:] == ["ensemble", *(m["label"] for m in v["members"])]
    assert sum(row[1] for row in act["rows"]) == v["fold_b"]["users"]
    for col, recall in [(2, v["ensemble"]["fold_b"]["recall@10"])] + [
            (3 + j, m["fold_b"]["recall@10"]) for j, m in enumerate(v["members"])]:  # fmt: skip
        assert sum(row[1] * row[col] for row in act["rows"]) / v["fold_b"]["users"] == pytest.approx(recall)
    assert "activity" in page["ensemble"]["figures"]
    assert (out / "submission.csv").read_bytes() == sub.read_bytes()
    # OUT/model: the refitted pipeline, servable; it answers every user with the submission's list
    from toprec.app import serving

    served = serving.load(out / "model")
    for user, rows in list(frame.groupby("user"))[:15]:
        assert [str(i) for i in served.answer_for_user(str(user), k=10).items] == [str(i) for i in rows["item"]]
    # pipeline.yaml: the same submission without any search
    pipe = yaml.safe_load((out / "pipeline.yaml").read_text())
    assert pipe["command"] == "ensemble" and pipe["ensemble"]["search"] == "none" and not pipe["ensemble"]["validate"]
    if info["chosen"] == "rerank":  # the ranker auto trained (on every validation cut's rows), not trained again
        assert pipe["ensemble"]["ranker_model"] == str((out / "model" / "rerank").resolve())
    first = sub.read_bytes()
    sub.unlink()
    p = toprec("run", out / "pipeline.yaml", "--no-track", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert sub.read_bytes() == first
    # a rerun finds every study finished: nothing is fitted again, the same file comes out
    studies_before = (out / "studies.db").stat().st_size
    p = toprec(*auto_args(competition_dir, out, sub), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert sub.read_bytes() == first
    assert json.loads((out / "auto.json").read_text())["members"] == info["members"]
    assert (out / "studies.db").stat().st_size == studies_before


def search_path(out):
    """Each member's finished trials, (parameters, value) in plan order, from the run's study store."""
    import optuna

    from toprec.auto.tuning import _order

    storage = f"sqlite:///{out / 'studies.db'}"
    path = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        done = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=_order)
        path[summary.study_name] = [(_order(t), t.params, round(t.value, 9)) for t in done]
    return path


def test_kill_then_resume_gives_the_uninterrupted_result(competition_dir, tmp_path):
    sub_a, out_a = tmp_path / "a.csv", tmp_path / "auto-a"
    p = toprec(*auto_args(competition_dir, out_a, sub_a), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    sub_b, out_b = tmp_path / "b.csv", tmp_path / "auto-b"
    proc = subprocess.Popen([sys.executable, "-m", "toprec", *map(str, auto_args(competition_dir, out_b, sub_b))],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    state = out_b / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text() or "{}").get("stage") == "tuning":
            break
        time.sleep(0.05)
    time.sleep(0.3)  # a few trials in
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not sub_b.exists()
    spent = json.loads(state.read_text())["elapsed_s"]
    p = toprec(*auto_args(competition_dir, out_b, sub_b), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert sub_b.read_bytes() == sub_a.read_bytes()
    a, b = (json.loads((o / "auto.json").read_text()) for o in (out_a, out_b))
    # every member chose the same parameters with the same fold-A recall, after the same number of trials
    best = [[{k: m["best"][k] for k in ("value", "params")} | {"trials": m["trials"]} for m in r["members"]]
            for r in (a, b)]
    assert best[0] == best[1]
    # and the whole search path is the same: every finished trial's parameters and value in plan order (the
    # trial killed mid-fit is stored again under a later number; its place in the plan is kept)
    assert search_path(out_b) == search_path(out_a)
    assert b["elapsed_s"] >= spent  # the budget counts the time spent before the kill


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--budget", "0"], ["--budget '0'", "more than 0"]),
        (["--budget", "soon"], ["--budget 'soon'"]),
        (["--budget", "1s"], ["too small"]),
        (["--protocol", "temporal"], ["auto: protocol 'temporal' is not supported"]),
        (["--protocol", "sideways"], ["unknown protocol 'sideways'"]),
        (["--members", "ease,nope"], ["'nope' is not an auto member"]),
        (["-k", "50", "-n", "20"], ["-k 50 is larger than --candidates 20"]),
    ],
)
def test_bad_input_is_one_line(competition_dir, tmp_path, extra, needles):
    sub = tmp_path / "s.csv"
    p = toprec("auto", "--data", competition_dir, "--output", sub, "--out", tmp_path / "o", "-q", *extra,
               cwd=tmp_path)  # fmt: skip
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("toprec: error:")]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert not sub.exists()


def test_a_rerun_into_the_same_out_must_be_the_same_run(competition_dir, tmp_path, events):
    """--out holds one run's studies and lists: other data, -k, split or members are refused in one line before
    anything there is read (they were read as this run's: a KeyError traceback for another -k; another dataset's
    fold-A values and lists for other data); the budget may change, and a run that stored nothing binds nothing."""
    out, sub = tmp_path / "o", tmp_path / "s.csv"

    def run(data, *extra):  # paths relative to the working folder, as a user types them
        return toprec("auto", "--data", data.relative_to(tmp_path), "--output", "s.csv", "--out", "o", "-q",
                      "--members", "ease,rp3beta", *extra, cwd=tmp_path)  # fmt: skip

    p = run(competition_dir, "--budget", "1s")  # too small: stops before it stores anything
    assert p.returncode == 2 and "too small" in p.stderr, p.stderr
    p = run(competition_dir, "--budget", "1s", "-k", "5")  # so another -k is not refused
    assert p.returncode == 2 and "too small" in p.stderr and "other settings" not in p.stderr, p.stderr
    p = run(competition_dir, "--budget", "2m")
    assert p.returncode == 0 and (out / "run.json").is_file() and sub.is_file(), p.stderr
    first = sub.read_bytes()
    sub.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # pipeline.yaml's paths are absolute: the same file from any working folder
    p = toprec("run", out / "pipeline.yaml", "--no-track", "-q", cwd=elsewhere)
    assert p.returncode == 0 and sub.read_bytes() == first and not list(elsewhere.iterdir()), p.stderr
    sub.unlink()
    other = write_competition(tmp_path / "other", events.iloc[: len(events) * 3 // 4])
    for extra, needle in ((["-k", "5"], "(-k 10 there, -k 5 now)"), (["--seed", "7"], "(--seed 0 there, --seed 7 now)"),
                          (["--random", "4"], "(--random 9 there, --random 4 now)"),
                          (["--members", "ease"], "(--members ease,rp3beta there, --members ease now)")):
        p = run(competition_dir, "--budget", "2m", *extra)
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("toprec: error:")]
        assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
        assert needle in lines[0] and "another --out starts a new run" in lines[0], lines[0]
    p = run(other, "--budget", "2m")
    assert p.returncode == 2 and "holds an auto run of other data" in p.stderr, p.stderr
    assert not sub.exists()
    p = run(competition_dir, "--budget", "3m")  # another budget: the same run, resumed
    assert p.returncode == 0 and sub.read_bytes() == first, p.stderr


def test_the_summary_line_of_what_decided():
    from toprec.cli.render import decided

    fused = {"cuts": 8, "users": 1200, "gain": 0.0021, "se": 0.0009, "kept": True, "alternative": "ease:l2=300",
             "pooled": {"method": "score"}}  # fmt: skip
    assert decided(fused).startswith("decided over 8 validation cuts (1,200 users): ensemble +0.0021 vs ease:l2=300, "
                                     "each cut judged with the weights the other cuts pick, se 0.0009: kept; ")
    both = {**fused, "cuts": 1, "pooled": None, "kept": False, "gain": -0.001}
    assert decided(both).startswith("decided over both folds (1,200 users): ensemble -0.0010 vs ease:l2=300, out of "
                                    "fold, se 0.0009: not kept; ")
    ranker = {"users": 900, "gain": 0.003, "se": 0.001, "kept": True, "against": "ensemble", "cuts": 8}
    assert decided(ranker).startswith("decided over 8 validation cuts (900 users): re-ranker +0.0030 vs ensemble "
                                      "without it, each user scored out of fold, se 0.0010: kept; ")


def test_budget_parsing():
    assert parse_budget("30m") == 1800 and parse_budget("1.5h") == 5400 and parse_budget("90s") == 90
    assert parse_budget("2") == 120  # a bare number is minutes
    with pytest.raises(ToprecError, match="more than 0"):
        parse_budget("0s")


def test_plan_adapts_to_the_data(dataset, events):
    p = profile(dataset, last=1, random=9)
    assert p["users"] == 120 and p["ordered"] and not p["side_files"]
    names = [c.name for c in candidates(p)]
    assert "cease" not in names and names[0] == "ease"
    # the epoch-trained members come last; SASRec only when the holdout has a last-event part
    assert names[-3:] == ["multivae", "recvae", "sasrec"]
    assert "sasrec" not in [c.name for c in candidates(profile(dataset, last=0, random=9))]
    big = {**p, "users": 6_000, "items": 3_500, "events": 575_000}  # ML-1M's shape: SASRec ~14 min on this CPU
    cpu, gpu = (next(c for c in candidates(big, d) if c.name == "sasrec").cost for d in ("cpu", "cuda"))
    assert cpu > 600 and gpu < cpu / 10
    ease = next(c for c in candidates(p) if c.name == "ease")
    assert ease.starts[0]["l2"] == pytest.approx(min(1e4, max(10.0, round(5 * p["mean_item_count"], 1))))
    with_side = Dataset.from_events(events["user"].to_numpy(), events["item"].to_numpy(), events["time"].to_numpy(),
                                    features={"genres": pd.DataFrame({"item": [1000, 1001], "value": ["a", "b"]})})
    side_plan = {c.name: c for c in candidates(profile(with_side, 1, 9))}
    assert "cease" in side_plan
    # cease starts at every l2 EASE starts at (the first, its prior for the one-se gate, at EASE's first)
    assert {s["l2"] for s in side_plan["cease"].starts} == {s["l2"] for s in side_plan["ease"].starts}
    assert side_plan["cease"].starts[0]["l2"] == side_plan["ease"].starts[0]["l2"]
    # a wide catalogue (users << items): EASER and EDLAE are planned in their user-space forms (users^2 solves);
    # past 12k items with more users than items, EASER's (items + pairs)^2 solve is left out
    wide = dict(p, items=20_000, users=2_000, events=90_000, mean_item_count=4.5)
    plan = {c.name: c for c in candidates(wide)}
    assert "user-space" in plan["easer"].why and "user-space" in plan["edlae"].why
    assert plan["edlae"].cost < 60 and plan["easer"].cost < 60
    # BPR: only on the data whose choices are cross-fitted (its gain was measured there, as a re-ranker member)
    from toprec.auto.crossfit import CROSSFIT_USERS
    from toprec.auto.plan import BPR_MAX_USERS

    assert "bpr" in names and BPR_MAX_USERS == 2 * CROSSFIT_USERS
    assert "bpr" not in [c.name for c in candidates(big)]
    tall = dict(p, items=20_000, users=40_000, events=900_000, mean_item_count=45.0)
    assert "easer" not in [c.name for c in candidates(tall)]
    assert next(c for c in candidates(wide) if c.name == "ease").starts[0]["l2"] == 22.5


def test_a_trial_killed_between_ask_and_fit_is_asked_again(dataset, tmp_path):
    """A kill can land after a starting point was popped from the queue but before its parameters were set."""
    from toprec.auto.tuning import MemberStudy, open_studies, starts
    from toprec.ensemble import make_folds

    c = next(c for c in candidates(profile(dataset, 1, 4)) if c.name == "rp3beta")
    folds = make_folds(dataset, "users", 0, 1, 4, True)
    storage = open_studies(tmp_path / "studies.db")
    first = MemberStudy(c, folds, storage, tmp_path, 10, 20, 0)
    popped = first.study.ask()  # start 0, RUNNING, no parameter suggested yet: then the process dies
    assert popped.user_attrs == {"start": 0} and popped.params == {}
    again = MemberStudy(c, folds, storage, tmp_path, 10, 20, 0)
    for _ in c.starts:
        again.trial()
    done = {t.user_attrs["start"]: {**c.fixed, **t.params} for t in again.complete()}
    # every start ran with its own parameters (start 0 after the others: it went back in the queue), and the
    # first trial the gate compares with is still start 0
    assert done == dict(enumerate(starts(c)))
    assert again.best["trial"] in {t.number for t in again.complete()}
    assert min(again.complete(), key=lambda t: t.number).user_attrs["start"] == 1


def test_an_epoch_trained_member_reports_every_epoch_and_a_weak_trial_is_pruned(dataset, tmp_path):
    from dataclasses import replace

    from toprec.auto.tuning import MemberStudy, open_studies
    from toprec.ensemble import make_folds

    c = next(c for c in candidates(profile(dataset, 1, 4)) if c.name == "multivae")
    # start 0 learns; start 1 barely moves (lr 1e-6): below start 0's fold-A recall at epoch 2, it is pruned
    c = replace(c, fixed={"epochs": 6, "patience": 0, "latent": 8, "hidden": 16, "batch_size": 32},
                starts=[{"lr": 1e-2, "dropout": 0.5}, {"lr": 1e-6, "dropout": 0.5}],
                space={"lr": ("log_float", 1e-6, 1e-2), "dropout": ("float", 0.2, 0.7)})
    folds = make_folds(dataset, "users", 0, 1, 4, True)
    s = MemberStudy(c, folds, open_studies(tmp_path / "studies.db"), tmp_path, 10, 20, 0)
    good, weak = s.trial(), s.trial()
    assert "value" in good and "pruned" in weak, (good, weak)
    first = s.complete()[0]
    # the completed trial reported its validation recall every epoch (the model's own cut of the search data);
    # its value is fold A's recall, which early stopping never saw
    assert sorted(first.intermediate_values) == list(range(1, 7))
    assert s.n_finished == 2 and s.n_complete == 1
    # the next TPE trial is asked from both (the pruned one too): not the pruned parameters again
    third = s.trial()
    assert third["params"]["lr"] != pytest.approx(1e-6)


def test_trial_box_decides_who_runs_and_for_how_long():
    from toprec.auto.pipeline import BOX_FACTOR, MIN_BOX, REFIT, trial_box

    # a closed form runs when it and its refit fit above the reserve, without a box
    assert trial_box(10.0, 100.0, 50.0, False, False) == (True, None)
    assert trial_box(30.0, 100.0, 50.0, False, False) == (False, None)  # 30 x (1 + REFIT) > 50
    assert trial_box(30.0, 100.0, 50.0, True, False) == (True, None)  # tried: its refit is in the reserve
    # an epoch-trained member: boxed at 0.9 x the room above the reserve (its own refit kept), at most
    # BOX_FACTOR x its cost
    go, box = trial_box(10.0, 1000.0, 100.0, False, True)
    assert go and box == pytest.approx(BOX_FACTOR * 10.0)
    room = (1000.0 - 100.0) / (1 + REFIT)
    go, box = trial_box(room * 0.9, 1000.0, 100.0, False, True)
    assert go and box == pytest.approx(0.9 * room)
    # its whole cost does not fit: the first trial still runs, boxed, when MIN_BOX of the cost fits
    go, box = trial_box(room / MIN_BOX * 0.99, 1000.0, 100.0, False, True)
    assert go and box == pytest.approx(0.9 * room)
    assert trial_box(room / MIN_BOX * 1.01, 1000.0, 100.0, False, True) == (False, None)
    # ... but not a later trial (it would only be a worse-boxed repeat), nor a closed form
    assert trial_box(2 * (1000.0 - 100.0), 1000.0, 100.0, True, True)[0] is False
    assert trial_box(room * 2, 1000.0, 100.0, False, False) == (False, None)
    assert trial_box(10.0, 100.0, 120.0, False, True) == (False, None)  # no room at all


def test_an_epoch_trained_trial_past_its_time_box_stops_and_caps_the_final_refit(dataset, tmp_path):
    from dataclasses import replace

    from toprec import models
    from toprec.auto.tuning import MemberStudy, open_studies
    from toprec.ensemble import make_folds

    c = next(c for c in candidates(profile(dataset, 1, 4)) if c.name == "multivae")
    c = replace(c, fixed={"epochs": 8, "patience": 0, "latent": 8, "hidden": 16, "batch_size": 32},
                starts=[{"lr": 1e-2, "dropout": 0.5}], space={"lr": ("log_float", 1e-6, 1e-2),
                                                              "dropout": ("float", 0.2, 0.7)})  # fmt: skip
    folds = make_folds(dataset, "users", 0, 1, 4, True)
    s = MemberStudy(c, folds, open_studies(tmp_path / "studies.db"), tmp_path, 10, 20, 0)
    r = s.trial(seconds=0.0)  # out of time after the first epoch
    assert r["time_boxed"] == 1 and 0 < r["value"] <= 1
    t = s.complete()[0]
    assert sorted(t.intermediate_values) == [1] and t.user_attrs["epochs_run"] == 1
    assert s.best["params"]["epochs"] == 1  # the final refit runs no longer than the trial did
    model = models.get("multivae", **s.best["params"]).fit(folds.search_train)
    assert len(model.history) == 1
    # without a time box the same member runs its 8 epochs
    s2 = MemberStudy(c, folds, open_studies(tmp_path / "other.db"), tmp_path / "other", 10, 20, 0)
    r2 = s2.trial(seconds=None)
    assert "time_boxed" not in r2 and sorted(s2.complete()[0].intermediate_values) == list(range(1, 9))
    # fitted again (cuts, final refit): the best validated epoch count, on all the data, no holdout cut from it
    t2 = s2.complete()[0]
    curve = t2.intermediate_values
    best_epoch = min(curve, key=lambda e: (-curve[e], e))
    assert t2.user_attrs["best_epoch"] == best_epoch and t2.user_attrs["epochs_trained"] == 8
    params = s2.best["params"]
    assert params["epochs"] == best_epoch and params["valid_last"] == 0 and params["valid_random"] == 0
    again_s = t2.user_attrs["fit_again_s"]
    assert 0 < again_s < t2.user_attrs["seconds"] and s2.best["refit_share"] == pytest.approx(again_s / t2.user_attrs["seconds"])
    again = models.get("multivae", **params).fit(folds.search_train)
    assert len(again.history) == best_epoch and all(h["recall@10"] != h["recall@10"] for h in again.history)


def _trial_order(lines: list[str]) -> list[tuple[str, int]]:
    import re

    return [(m.group(1), int(m.group(2))) for m in (re.search(r"\] (\w+) trial (\d+)", x) for x in lines) if m]


def test_a_cheap_member_is_tuned_to_its_cap_before_a_costlier_members_first_trial(dataset, tmp_path, monkeypatch):
    from toprec.auto import pipeline

    def order(share: float, out: str) -> list[tuple[str, int]]:
        monkeypatch.setattr(pipeline, "CHEAP_SHARE", share)
        lines: list[str] = []
        pipeline.run_auto(dataset, tmp_path / out, 1800, last=1, random=4, seed=3, candidates_n=30,
                          only=["rp3beta", "seqrules", "ials"], log=lines.append)  # fmt: skip
        return _trial_order(lines)

    cheap = order(pipeline.CHEAP_SHARE, "cheap")  # a few ms a trial against 36 s: every member is cheap here
    caps = {c.name: c.max_trials for c in candidates(profile(dataset, 1, 4), only=["rp3beta", "seqrules", "ials"])}
    names = [n for n, _ in cheap]
    # each member's trials run as one block, its whole cap, cheapest member first
    assert [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n] == ["rp3beta", "seqrules", "ials"]
    assert {n: names.count(n) for n in caps} == caps
    # without the rule the costlier members' starting points come first, and the tuning rounds interleave
    rounds = [n for n, _ in order(0.0, "rounds")]
    assert rounds.index("ials") < len(rounds) - rounds[::-1].index("rp3beta") - 1
    rp3_starts = next(c for c in candidates(profile(dataset, 1, 4)) if c.name == "rp3beta").starts
    assert rounds[: rounds.index("ials")].count("rp3beta") == len(rp3_starts)


def test_seqrules_starts_where_the_whole_holdout_is_scored(dataset):
    from toprec.auto.plan import SEQRULES_START

    plan = {c.name: c for c in candidates(profile(dataset, 1, 4))}
    sr = plan["seqrules"]
    # the first start (the gate's prior): every history item votes, slowly decayed; the model's defaults second
    assert sr.starts == [SEQRULES_START, {}] and SEQRULES_START["last_n"] == 200
    assert sr.space["last_n"] == ("log_int", 1, 200) and sr.space["window"] == ("int", 1, 10)


def test_a_short_budget_is_spent_on_members_not_kept_for_a_re_ranker_that_cannot_fit(dataset, tmp_path):
    """The re-ranker stage is kept for while tuning only when its estimate fits in ``RERANK_MAX_SHARE`` of the
    budget: its four rankers here (~80 s a priori) once held back more than a 60 s budget, and not even EASE's
    first trial started ("no member finished a trial within it")."""
    from toprec.auto import pipeline

    lines: list[str] = []
    run = pipeline.run_auto(dataset, tmp_path / "auto", 60, last=1, random=4, seed=3, candidates_n=30,
                            only=["ease", "rp3beta"], log=lines.append)  # fmt: skip
    assert any("re-ranker not planned" in line for line in lines), lines
    assert {m["name"] for m in run.members if m["best"]} == {"ease", "rp3beta"}
    assert run.elapsed_s <= 60 * 1.1
