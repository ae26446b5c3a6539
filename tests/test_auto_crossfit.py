"""`toprec auto` on small data: choices cross-fitted over both folds, what is written trained on both."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import metrics
from toprec.auto import crossfit
from toprec.auto.crossfit import CrossFit, beats, crossfits, paired
from toprec.auto.pipeline import run_auto
from toprec.ensemble import Ensemble, fuse, make_folds
from toprec.ensemble.fusion import build_pool
from toprec.ensemble.search import run_search

#: the measured estimate of the fusion over the cuts (a weight search timed on auto's cut); the tests below plan
#: cuts in boxes with 0.5 s to spare, which a loaded CI machine's timing could take: they get no fusion estimate,
#: except where it is what they check (``measured_fusion``)
MEASURED_FUSION = CrossFit.fusion_seconds


@pytest.fixture(autouse=True)
def no_fusion_estimate(monkeypatch):
    monkeypatch.setattr(CrossFit, "fusion_seconds", lambda self, labels: lambda n: 0.0)

MEMBERS = ["popularity", "itemknn", "ease:l2=20"]


def test_the_margin_is_one_paired_standard_error():
    d = np.array([0.1, 0.0, 0.1, 0.0])  # mean 0.05, se 0.0289
    assert paired(d) == pytest.approx((0.05, 0.05 / np.sqrt(3)))
    assert beats(d)
    assert not beats(d - 0.03)  # mean 0.02 < se
    assert not beats(np.zeros(10))  # no gain, se 0
    assert not beats(np.array([0.3]))  # one user: no standard error, no verdict


def test_only_small_folds_scored_by_one_fit_are_cross_fitted(dataset, monkeypatch):
    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    assert crossfits(folds)  # 60 users a fold
    monkeypatch.setattr(crossfit, "CROSSFIT_USERS", 60)
    assert not crossfits(folds)
    assert not crossfits(make_folds(dataset, "nested", seed=0, last=1, random=4))
    same = SimpleNamespace(same_fit=True, fold_a=SimpleNamespace(users=np.arange(5)),
                           fold_b=SimpleNamespace(users=np.arange(5)))  # fmt: skip
    assert not crossfits(same)  # the events scheme: the same users in both folds


def test_out_of_fold_recall_of_members_and_fusion(dataset):
    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    ens = Ensemble(MEMBERS, method="score", candidates=30)
    ens.validate(dataset, search="both", random=4, folds=folds)
    a, b = folds.fold_a, folds.fold_b
    cf = CrossFit(ens, dataset, folds, k=10, seed=0)
    lists_a = [m.lists(folds.search_train, a.users, 30, "search") for m in ens.members]
    lists_b = [m.lists(folds.search_train, b.users, 30, "search") for m in ens.members]

    def recall(recs, fold):
        return metrics.per_user("recall@10", recs.items[:, :10], fold.truth[fold.users])

    for i, label in enumerate(ens.labels):  # a member: its own lists on each fold
        assert cf.member(label) == pytest.approx(np.concatenate([recall(lists_a[i], a), recall(lists_b[i], b)]))
    # the fusion: fold B scored with fold A's weights, fold A with weights searched on fold B (never on A)
    res = run_search(build_pool(lists_b, "score", b.users), b.truth[b.users], 10, "both", start=ens.weights, seed=0)

    def fused(lists, w, users):
        keep = np.flatnonzero(w > 0)
        return fuse([lists[j] for j in keep], w[keep], "score", 10, users=users)

    want = np.concatenate([recall(fused(lists_a, res.weights, a.users), a),
                           recall(fused(lists_b, ens.weights, b.users), b)])  # fmt: skip
    assert cf.fusion() == pytest.approx(want)
    assert cf.written("ensemble") is cf.fusion()  # computed once
    assert cf.written(f"member:{ens.labels[1]}") == pytest.approx(cf.member(ens.labels[1]))
    # the alternative to the fusion: the best member over both folds' users, not over fold A's
    means = [float(cf.member(lab).mean()) for lab in ens.labels]
    assert cf.best_member() == ens.labels[int(np.argmax(means))]


def test_more_cuts_choose_the_member_written_alone_over_every_cut(dataset, tmp_path, monkeypatch):
    from toprec import models, split
    from toprec.ensemble.members import ModelMember

    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    ens = Ensemble(["popularity", "ease:l2=60", "ease:l2=80", "ease:l2=120"], method="score", candidates=30)
    ens.validate(dataset, search="both", random=4, folds=folds)
    cf = CrossFit(ens, dataset, folds, k=10, seed=0)
    one_cut = cf.best_member()
    labels = cf.contenders()
    assert one_cut in labels and "popularity" not in labels and len(labels) >= 2  # far behind: not refitted

    def seconds(lab):  # popularity does not fit in the boxes below: the contenders alone
        return 1000.0 if lab == "popularity" else 10.0

    assert cf.cut_members(seconds, box=1e9) == ens.labels  # time for every member
    assert cf.cut_members(seconds, box=10.0 * len(labels) * 3) == labels
    # a box that depends on the members: popularity's cuts would fit only if its own final refit were not kept
    # for; without it on the cuts the submission never refits it, so the contenders get the larger box
    refit = {lab: 4000.0 if lab == "popularity" else 1.0 for lab in ens.labels}

    def box_of(chosen):
        return 6000.0 - sum(refit[lab] for lab in chosen)

    assert cf.cut_members(seconds, box=box_of) == labels
    assert cf.cut_members(seconds, box=lambda chosen: 1e9 - len(chosen)) == ens.labels

    # a box too small for one cut: nothing fitted, the pick is auto's cut alone
    assert cf.more_cuts(1, 4, seconds, box=5.0) == 0 and cf.cuts == {} and cf.best_member() == one_cut
    # two cuts fit in the box (3 x 10 s each at most): each contender's recall on seed 1000 and 2000's holdouts
    n = cf.more_cuts(1, 4, seconds, box=10.0 * len(labels) * 2 + 1, saved=tmp_path / "cuts.json")
    assert n == 2 and list(cf.cuts) == labels and len(cf.cut_lists) == 2
    pool = cf.pooled()  # the fusion of the contenders over the cuts; popularity, not fitted there, weighs 0
    assert pool.cuts == 3 and pool.weights[ens.labels.index("popularity")] == 0 and len(pool.weights) == 4
    for r in (1, 2):
        train, hold = split.competition(dataset, last=1, random=4, seed=1000 * r)
        l2 = float(labels[0].split("=")[1])
        recs = models.get("ease", l2=l2).fit(train).recommend(hold.users, k=10)
        want = metrics.per_user("recall@10", recs.items, hold.matrix[hold.users]).mean()
        assert cf.cuts[labels[0]][r - 1] == pytest.approx(want)
    means = cf.cut_means()
    assert means[labels[0]] == pytest.approx(np.mean([cf.member(labels[0]).mean(), *cf.cuts[labels[0]]]))
    assert cf.best_member() == max(means, key=means.get)
    # an estimate far too low (a busy machine): the cut that ran past the box is the last one (no fusion estimate:
    # the fixture above; the measured one is checked below)
    fast = CrossFit(ens, dataset, folds, k=10, seed=0)
    assert fast.more_cuts(1, 4, lambda lab: 1e-9, box=1e-6) == 1 and all(len(v) == 1 for v in fast.cuts.values())
    # the fusion searched over the cuts afterwards comes out of the same box: 3 cuts fit, with the fusion 2
    need = 10.0 * len(labels)
    fused = CrossFit(ens, dataset, folds, k=10, seed=0)
    monkeypatch.setattr(fused, "fusion_seconds", lambda chosen: MEASURED_FUSION(fused, chosen))
    assert fused.more_cuts(1, 4, seconds, box=3.5 * need, most=3) == 3
    fused = CrossFit(ens, dataset, folds, k=10, seed=0)
    monkeypatch.setattr(fused, "fusion_seconds", lambda chosen: lambda n: 0.5 * need * n)
    assert fused.more_cuts(1, 4, seconds, box=3.5 * need, most=3) == 2
    # measured: one search on auto's cut, scaled up with the number of cuts
    f = MEASURED_FUSION(cf, labels)
    assert f(0) == 0.0 and 0.0 < f(1) < f(2) < f(7)
    # the box of the members chosen decides how many cuts: with popularity's refit kept for, none would fit
    boxed = CrossFit(ens, dataset, folds, k=10, seed=0)
    assert boxed.more_cuts(1, 4, seconds, box=lambda chosen: 10.0 * len(chosen) * 2 + 1
                           - (1e6 if "popularity" in chosen else 0.0)) == 2  # fmt: skip
    assert list(boxed.cuts) == labels
    # a resumed run reads the cuts back instead of fitting again
    monkeypatch.setattr(ModelMember, "new_model", lambda self: pytest.fail("fitted again"))
    again = CrossFit(ens, dataset, folds, k=10, seed=0)
    assert again.more_cuts(1, 4, seconds, box=1e9, saved=tmp_path / "cuts.json") == 2
    assert again.cuts == cf.cuts and again.best_member() == cf.best_member()


def test_every_member_on_every_cut_searches_and_judges_the_fusion_over_the_cuts(dataset, tmp_path, monkeypatch):
    """With time for every member on each extra cut, their lists are kept; the fusion's weights are searched on
    all the cuts' rows, and its verdict leaves one cut out (weights and the single member picked on the others)."""
    from toprec import split
    from toprec.auto.pooled import decide
    from toprec.ensemble.members import ModelMember
    from toprec.recommend import Recommendations

    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    ens = Ensemble(["popularity", "itemknn", "ease:l2=60"], method="score", candidates=30)
    ens.validate(dataset, search="both", random=4, folds=folds)
    cf = CrossFit(ens, dataset, folds, k=10, seed=0)
    # the box holds 5 cuts of every member (1 s each): more than the 3 the members were chosen for, fewer than 7
    assert cf.more_cuts(1, 4, lambda lab: 1.0, box=5 * 3 + 0.5, saved=tmp_path / "cuts.json") == 5
    assert crossfit.EXTRA_CUTS < 5 < crossfit.MAX_EXTRA_CUTS
    assert sorted(cf.cuts) == sorted(ens.labels) and len(cf.cut_lists) == 5
    # each cut: every member's top 30 of an independent fit, in member order
    for r, cut in enumerate(cf.cut_lists, start=1):
        train, hold = split.competition(dataset, last=1, random=4, seed=1000 * r)
        assert np.array_equal(cut.users, hold.users)
        for member, recs in zip(ens.members, cut.lists):
            want = member.new_model().fit(train).recommend(hold.users, k=30)
            assert np.array_equal(recs.items, want.items)
    # the verdict, computed here for one method without the module's helpers
    a, b = folds.fold_a, folds.fold_b
    users0 = np.concatenate([a.users, b.users])
    la = [m.lists(folds.search_train, a.users, 30, "search") for m in ens.members]
    lb = [m.lists(folds.search_train, b.users, 30, "search") for m in ens.members]
    cut0 = (users0, [np.concatenate([x.items, y.items]) for x, y in zip(la, lb)],
            [np.concatenate([x.scores, y.scores]) for x, y in zip(la, lb)],
            sp.vstack([a.truth[a.users], b.truth[b.users]]).tocsr())  # fmt: skip
    cuts = [cut0] + [(c.users, [x.items for x in c.lists], [x.scores for x in c.lists], c.truth) for c in cf.cut_lists]

    def recall(items, truth):
        return metrics.per_user("recall@10", items[:, :10], truth)

    def weights(part):
        n = sum(len(c[0]) for c in part)
        lists = [Recommendations(np.arange(n), np.concatenate([c[1][j] for c in part]),
                                 np.concatenate([c[2][j] for c in part])) for j in range(3)]  # fmt: skip
        truth = sp.vstack([c[3] for c in part]).tocsr()
        return run_search(build_pool(lists, "score", np.arange(n)), truth, 10, "both", seed=0).weights

    diffs, rows = [], []
    for j, c in enumerate(cuts):
        rest = [x for i, x in enumerate(cuts) if i != j]
        w = weights(rest)
        keep = np.flatnonzero(w > 0)
        f = fuse([Recommendations(c[0], c[1][i], c[2][i]) for i in keep], w[keep], "score", 10, users=c[0])
        single = int(np.argmax([np.mean([recall(x[1][m], x[3]).mean() for x in rest]) for m in range(3)]))
        diffs.append(recall(f.items, c[3]) - recall(c[1][single], c[3]))
        rows.append(c[0])
    d, u = np.concatenate(diffs), np.concatenate(rows)
    per_user = np.array([d[u == x].mean() for x in np.unique(u)])
    got = decide([cf._cut(c[0], [Recommendations(c[0], i, s) for i, s in zip(c[1], c[2])], c[3]) for c in cuts],
                 10, 0, methods=("score",))  # fmt: skip
    assert got.gain == pytest.approx(per_user.mean()) and got.users == len(np.unique(u)) == 120
    assert got.se == pytest.approx(per_user.std(ddof=1) / np.sqrt(len(per_user)))
    assert got.kept == beats(per_user) and got.cuts == 1 + 5
    assert np.allclose(got.weights, weights(cuts))
    # the pipeline's call: the score fusion; given more methods, the one with the highest gain left out
    pool = cf.pooled()
    assert pool.method == "score" and list(pool.gains) == ["score"] and pool.gain == pytest.approx(got.gain)
    two = decide(cf._pooled_cuts(), 10, 0, methods=("rank", "score"))
    assert two.method == max(two.gains, key=two.gains.get) and two.gains["score"] == pytest.approx(got.gain)
    assert cf.written("ensemble") is pool.first_cut and len(pool.first_cut) == 120
    # a resumed run reads the lists back: the same verdict, nothing fitted again
    monkeypatch.setattr(ModelMember, "new_model", lambda self: pytest.fail("fitted again"))
    again = CrossFit(ens, dataset, folds, k=10, seed=0)
    assert again.more_cuts(1, 4, lambda lab: 1.0, box=1e9, saved=tmp_path / "cuts.json") == 5
    back = again.pooled()
    assert back.method == pool.method and np.allclose(back.weights, pool.weights) and back.gain == pool.gain


def test_a_run_killed_between_cuts_makes_only_the_planned_cuts_left(dataset, tmp_path, monkeypatch):
    """The plan (members, number of cuts) is stored before the first cut and each cut's lists as it ends: a run
    killed after cut 2 of 5 fits cuts 3-5 on resume, and ends with the same lists and verdict as one that ran
    through."""
    from toprec import split
    from toprec.ensemble.members import ModelMember

    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    ens = Ensemble(["popularity", "itemknn", "ease:l2=60"], method="score", candidates=30)
    ens.validate(dataset, search="both", random=4, folds=folds)
    box = 5 * 3 + 0.5  # 5 cuts of 3 members at 1 s each
    whole = CrossFit(ens, dataset, folds, k=10, seed=0)
    assert whole.more_cuts(1, 4, lambda lab: 1.0, box=box, saved=tmp_path / "whole.json") == 5

    real = split.competition

    def killed(data, *a, seed=0, **kw):
        if seed == 3000:  # the third extra cut
            raise KeyboardInterrupt
        return real(data, *a, seed=seed, **kw)

    monkeypatch.setattr(split, "competition", killed)
    with pytest.raises(KeyboardInterrupt):
        CrossFit(ens, dataset, folds, k=10, seed=0).more_cuts(1, 4, lambda lab: 1.0, box=box, saved=tmp_path / "c.json")
    stored = json.loads((tmp_path / "c.json").read_text())
    assert (stored["planned"], stored["lists"]) == (5, 2) and sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "cut1.npz", "cut2.npz"]
    monkeypatch.setattr(split, "competition", real)
    # no time left at all on resume: the 2 cuts on disk, nothing fitted
    late = CrossFit(ens, dataset, folds, k=10, seed=0)
    monkeypatch.setattr(ModelMember, "new_model", lambda self: pytest.fail("fitted with no time left"))
    assert late.more_cuts(1, 4, lambda lab: 1.0, box=0.0, saved=tmp_path / "c.json") == 2
    assert len(late.cut_lists) == 2 and all(len(v) == 2 for v in late.cuts.values())
    monkeypatch.undo()
    fits = []
    new_model = ModelMember.new_model
    monkeypatch.setattr(ModelMember, "new_model", lambda self: fits.append(self.label) or new_model(self))
    # the box now looks far larger (another machine's pace): the plan, not a new one, is finished
    again = CrossFit(ens, dataset, folds, k=10, seed=0)
    assert again.more_cuts(1, 4, lambda lab: 1e-3, box=box, saved=tmp_path / "c.json") == 5
    assert len(fits) == 3 * 3  # cuts 3, 4 and 5 of the 3 members
    assert again.cuts == whole.cuts
    for a, b in zip(again.cut_lists, whole.cut_lists):
        assert np.array_equal(a.users, b.users) and all(np.array_equal(x.items, y.items) for x, y in zip(a.lists, b.lists))
    p, q = again.pooled(), whole.pooled()
    assert np.allclose(p.weights, q.weights) and p.gain == q.gain and p.kept == q.kept


def test_the_re_ranker_is_scored_out_of_fold_and_written_trained_on_both_folds(dataset):
    pytest.importorskip("lightgbm")
    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    rr = Ensemble(MEMBERS, method="rerank", candidates=30)
    rr.validate(dataset, search="both", random=4, folds=folds)
    cf = CrossFit(rr, dataset, folds, k=10, seed=0)
    oof, final, late = cf.reranker(rr)
    a, b = folds.fold_a, folds.fold_b
    assert oof.shape == (len(a.users) + len(b.users),) and not late
    lists_b = [m.lists(folds.search_train, b.users, 30, "search") for m in rr.members]
    on_b = rr.reranker.recommend(dataset, folds.search_train, b.users, lists_b, 10)
    assert oof[len(a.users):] == pytest.approx(metrics.per_user("recall@10", on_b.items, b.truth[b.users]))
    assert final is not rr.reranker and final.model is not None and final.labels == rr.labels
    # a ranker of fewer members than the ensemble's (auto's: the members on the extra cuts) gets their lists
    two = Ensemble(MEMBERS[:0:-1], method="rerank", candidates=30)
    two.validate(dataset, search="both", random=4, folds=folds)
    oof2, final2, _ = cf.reranker(two)
    lists_b2 = [lists_b[MEMBERS.index(lab)] for lab in two.labels]
    on_b2 = two.reranker.recommend(dataset, folds.search_train, b.users, lists_b2, 10)
    assert oof2[len(a.users):] == pytest.approx(metrics.per_user("recall@10", on_b2.items, b.truth[b.users]))
    assert final2.labels == two.labels == MEMBERS[:0:-1]


def test_the_re_ranker_over_the_cuts_is_trained_and_judged_out_of_fold_by_user(dataset, tmp_path, monkeypatch):
    """With extra cuts, the ranker learns from the rows of several cuts. No user's rows train a ranker that then
    scores that user (on any cut); every row of the first ``most`` cuts is scored once; the verdict is each
    row's recall against the written choice's left-out recall (:meth:`Pooled.written_rows`), averaged per user;
    the ranker written is trained on every row of those cuts."""
    pytest.importorskip("lightgbm")
    from toprec.auto.pooled import per_user_mean
    from toprec.ensemble.rerank import Reranker

    folds = make_folds(dataset, "users", seed=0, last=1, random=4)
    ens = Ensemble(["popularity", "itemknn", "ease:l2=60"], method="score", candidates=30)
    ens.validate(dataset, search="both", random=4, folds=folds)
    cf = CrossFit(ens, dataset, folds, k=10, seed=0)
    assert cf.more_cuts(1, 4, lambda lab: 1.0, box=5 * 3 + 0.5) == 5
    assert cf.cut_labels() == ens.labels
    rr = Ensemble(ens.labels[::-1], method="rerank", candidates=30)  # another member order than the cuts'
    rr.validate(dataset, search="both", random=4, folds=folds)
    trained, scored = {}, []
    fit_cuts, recommend = Reranker.fit_cuts, Reranker.recommend

    def spy_fit(self, data, groups):
        trained[id(self)] = [(t, np.asarray(u).copy()) for t, u, _, _ in groups]
        return fit_cuts(self, data, groups)

    def spy_recommend(self, data, train, users, lists, k, exclude=None):
        recs = recommend(self, data, train, users, lists, k, exclude)
        scored.append((id(self), train, np.asarray(users).copy(), recs))
        return recs

    monkeypatch.setattr(Reranker, "fit_cuts", spy_fit)
    monkeypatch.setattr(Reranker, "recommend", spy_recommend)
    res = cf.reranker_over_cuts(rr.reranker, most=3)
    assert res.cuts == 3 and res.users == 120 and not res.out_of_time
    assert res.final.labels == rr.labels and id(res.final) in trained
    cuts = cf._pooled_cuts()[:3]
    assert [len(u) for _, u in trained[id(res.final)]] == [len(c.users) for c in cuts]  # every row of 3 cuts
    assert trained[id(res.final)][0][0] is folds.search_train  # auto's cut: its own training part
    rows = {r: np.full(len(c.users), np.nan) for r, c in enumerate(cuts)}
    for ranker, train, users, recs in scored:
        fitted = np.unique(np.concatenate([u for _, u in trained[ranker]]))
        assert not np.intersect1d(fitted, users).size  # never scores a user it learnt from
        r = [i for i, (t, _) in enumerate(trained[id(res.final)]) if t is train][0]
        sel = np.searchsorted(cuts[r].users, users) if r else np.concatenate(
            [np.flatnonzero(cuts[0].users == u) for u in users])
        assert np.all(np.isnan(rows[r][sel]))  # scored once
        rows[r][sel] = metrics.per_user("recall@10", recs.items, cuts[r].truth[sel])
    assert not any(np.isnan(v).any() for v in rows.values())
    written = cf.pooled().written_rows()[:3]
    d = per_user_mean(np.concatenate([c.users for c in cuts]),
                      np.concatenate([rows[r] for r in range(3)]) - np.concatenate(written))
    assert (res.gain, res.se, res.kept) == (pytest.approx(d.mean()), pytest.approx(paired(d)[1]), beats(d))


def test_auto_on_small_data_logs_and_writes_its_cross_fitted_verdicts(dataset, tmp_path):
    pytest.importorskip("lightgbm")
    lines = []
    run = run_auto(dataset, tmp_path / "auto", 300, last=1, random=4, seed=3, candidates_n=30,
                   only=["ease", "rp3beta", "ials"], log=lines.append)  # fmt: skip
    text = "\n".join(lines)
    assert "each judged on the cut left out (120 users)" in text, text
    assert run.validation["crossfit"]["users"] == 120
    cross = run.validation["crossfit"]
    # the member written alone: the best over auto's cut and the extra cuts (over auto's cut alone without them)
    means = cross["members_over_cuts"] or cross["members"]
    assert cross["alternative"] == max(means, key=means.get)
    if not cross["kept"] and run.method != "rerank":  # the fusion did not hold: that member is written alone
        assert run.chosen == f"member:{cross['alternative']}"
    verdict = json.loads((tmp_path / "auto" / "rerank.json").read_text())
    cuts = json.loads((tmp_path / "auto" / "cuts.json").read_text())  # the contenders' extra validation cuts
    assert crossfit.EXTRA_CUTS <= cuts["lists"] <= crossfit.MAX_EXTRA_CUTS
    # every member on the cuts and the time: the re-ranker learns from the rows of several cuts, judged on them
    assert 2 <= verdict["cuts"] <= 1 + cuts["lists"]
    assert verdict["scored_on"] == f"{verdict['cuts']} validation cuts, out of fold by user (120 users)"
    assert verdict["kept"] == (verdict["gain"] > verdict["se"] > 0)
    assert verdict["gain"] == pytest.approx(verdict["fold_b"] - verdict["written_fold_b"])
    assert (run.method == "rerank") == verdict["kept"]
    plan = json.loads((tmp_path / "auto" / "rerank_cuts.json").read_text())  # stored: a resumed run reuses it
    assert plan["cuts"] == verdict["cuts"] and set(plan["labels"]) <= set(cuts["labels"])
    assert cuts["labels"] == list(cuts["cuts"]) and all(len(v) == cuts["lists"] for v in cuts["cuts"].values())
    assert "validation cuts" in text
    pool = cross["pooled"]  # every member on every cut (the box has the time): the fusion judged over the cuts
    assert pool and pool["cuts"] == 1 + cuts["lists"]
    assert (cross["kept"], cross["gain"], cross["se"]) == (pool["kept"], pool["gain"], pool["se"])
    assert "judged on the cut left out" in text
    if run.chosen == "ensemble":  # a kept fusion is written with the weights searched on every cut
        assert run.method == pool["method"] and run.weights == pytest.approx(pool["weights"])
        assert "widened" not in run.validation


def test_the_re_rankers_number_of_cuts_is_stored_and_reused(tmp_path):
    """How many cuts the re-ranker learns from depends on the time its first ranker took; a resumed run reads the
    stored number (for the same members), so it trains the same ranker on a machine with another pace."""
    from toprec.auto.pipeline import _stored_cuts

    path = tmp_path / "rerank_cuts.json"
    assert _stored_cuts(path, ["a", "b"], 5) == 5  # first: the measured number, stored
    assert _stored_cuts(path, ["a", "b"], 2) == 5  # resumed, faster or slower: the stored one
    assert _stored_cuts(path, ["a", "c"], 3) == 3  # other members: the new number, stored over it
    assert json.loads(path.read_text()) == {"labels": ["a", "c"], "cuts": 3}


def test_a_kept_cross_fitted_reranker_keeps_the_fusion_verdict_and_its_page(dataset, tmp_path, monkeypatch):
    """Small data with the re-ranker kept: the report is the ranker's; the fusion's verdict (members over both
    folds, the alternative) stays beside it, and the auto page shows both (it once failed on the missing keys)."""
    pytest.importorskip("lightgbm")
    from toprec.auto import pipeline
    from toprec.report.auto_page import build_auto_page

    monkeypatch.setattr(pipeline, "beats", lambda d: True)  # every cross-fitted choice kept: the ranker wins
    monkeypatch.setattr(crossfit, "beats", lambda d: True)
    run = run_auto(dataset, tmp_path / "auto", 300, last=1, random=4, seed=3, candidates_n=30,
                   only=["ease", "rp3beta", "ials"], log=lambda m: None)  # fmt: skip
    assert run.method == "rerank" and run.chosen == "rerank"
    cross = run.validation["crossfit"]
    assert cross["kept"] and cross["users"] == 120 and cross["final_trees"] >= 1 and cross["cuts"] >= 2
    fusion = cross["fusion"]
    assert fusion["kept"] and fusion["users"] == 120
    means = fusion["members_over_cuts"] or fusion["members"]
    assert fusion["alternative"] == max(means, key=means.get)
    page = build_auto_page("toprec auto", [], run, 10)
    html = page.to_html()
    assert "re-ranker" in html and fusion["alternative"] in html
    assert f"learnt from the rows of {cross['cuts']} validation cuts" in html
    assert ("validation cuts" in html) == bool(fusion.get("members_over_cuts"))
