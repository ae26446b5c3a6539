"""The shared torch trainer: losses, sampling, early stopping, callback, checkpoints, resume, refit, seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from toprec import ToprecError, models, split  # noqa: E402
from toprec.train import losses  # noqa: E402
from toprec.train.base import RowMatrix, dense_rows, require_torch  # noqa: E402

FAST = {"epochs": 6, "latent": 16, "batch_size": 32, "lr": 1e-2, "patience": 0}


def _states_equal(a, b) -> bool:
    sa, sb = a.module.state_dict(), b.module.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def _sig(x):
    return 1 / (1 + np.exp(-x))


# ------------------------------------------------------------------ losses
def test_multinomial_nll_by_hand():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    x = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    w = np.array([2.0, 0.5])
    ls = _log_softmax(logits)
    want = -np.mean((ls * x).sum(1))
    want_w = -np.mean((ls * x).sum(1) * w)
    t = lambda a: torch.tensor(a)  # noqa: E731
    assert losses.multinomial_nll(t(logits), t(x)).item() == pytest.approx(want, rel=1e-12)
    assert losses.multinomial_nll(t(logits), t(x), t(w)).item() == pytest.approx(want_w, rel=1e-12)


def test_bpr_by_hand():
    pos = np.array([2.0, -1.0])
    neg = np.array([[1.0, 3.0], [0.0, -2.0]])
    want = -np.mean(np.log(_sig(pos[:, None] - neg)))
    assert losses.bpr(torch.tensor(pos), torch.tensor(neg)).item() == pytest.approx(want, rel=1e-12)
    one = losses.bpr(torch.tensor([0.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)).item()
    assert one == pytest.approx(math.log(2), rel=1e-12)


def test_bce_and_focal_by_hand():
    z = np.array([[2.0, -1.0], [0.5, 0.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = _sig(z)
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert losses.bce(torch.tensor(z), torch.tensor(y)).item() == pytest.approx(ce.mean(), rel=1e-12)
    pt = np.where(y == 1, p, 1 - p)
    want = (ce * (1 - pt) ** 2).mean()
    assert losses.focal(torch.tensor(z), torch.tensor(y), gamma=2.0).item() == pytest.approx(want, rel=1e-12)
    a = 0.25
    want_a = (ce * (1 - pt) ** 2 * np.where(y == 1, a, 1 - a)).mean()
    assert losses.focal(torch.tensor(z), torch.tensor(y), 2.0, a).item() == pytest.approx(want_a, rel=1e-12)
    assert losses.focal(torch.tensor(z), torch.tensor(y), gamma=0.0).item() == pytest.approx(ce.mean(), rel=1e-12)


def test_focal_gradients_stay_finite_when_confident():
    # (1 - p_t)^gamma with gamma < 1 has an infinite derivative at p_t = 1 (float32 reaches it at |z| ~ 17):
    # the plain power turned an FM's loss to NaN mid-training; both focal losses use the log form
    z = torch.tensor([[40.0, -40.0], [3.0, 0.5]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    losses.focal(z, y, gamma=0.5).backward()
    assert torch.isfinite(z.grad).all()
    pos = torch.tensor([60.0, 0.0], requires_grad=True)
    losses.softmax_focal(pos, torch.tensor([[-60.0, -50.0], [1.0, 2.0]]), gamma=0.5).backward()
    assert torch.isfinite(pos.grad).all()


def test_softmax_focal_by_hand():
    pos = np.array([1.0, -0.5])
    neg = np.array([[0.5, 2.0, -1.0], [0.0, 0.0, 1.0]])
    p = np.exp(_log_softmax(np.concatenate([pos[:, None], neg], 1))[:, 0])
    for gamma in (0.5, 2.0):
        want = np.mean(-((1 - p) ** gamma) * np.log(p))
        got = losses.softmax_focal(torch.tensor(pos), torch.tensor(neg), gamma).item()
        assert got == pytest.approx(want, rel=1e-12)
    got0 = losses.softmax_focal(torch.tensor(pos), torch.tensor(neg), 0.0).item()
    assert got0 == pytest.approx(losses.sampled_softmax(torch.tensor(pos), torch.tensor(neg)).item(), rel=1e-12)


def test_sampled_and_full_softmax_by_hand():
    pos = np.array([1.0, 0.0])
    neg = np.array([[0.5, 2.0, -1.0], [0.0, 0.0, 1.0]])
    allv = np.concatenate([pos[:, None], neg], 1)
    want = -np.mean(_log_softmax(allv)[:, 0])
    assert losses.sampled_softmax(torch.tensor(pos), torch.tensor(neg)).item() == pytest.approx(want, rel=1e-12)
    lq_pos, lq_neg = np.array([-1.0, -2.0]), np.log(np.full((2, 3), 0.3))
    corr = np.concatenate([(pos - lq_pos)[:, None], neg - lq_neg], 1)
    got = losses.sampled_softmax(torch.tensor(pos), torch.tensor(neg), torch.tensor(lq_pos), torch.tensor(lq_neg))
    assert got.item() == pytest.approx(-np.mean(_log_softmax(corr)[:, 0]), rel=1e-12)
    logits = np.array([[1.0, 2.0, 0.0], [0.3, 0.2, 0.1], [5.0, 0.0, 0.0]])
    target = np.array([1, 2, -100])
    ls = _log_softmax(logits)
    want = -(ls[0, 1] + ls[1, 2]) / 2  # ignore_index rows do not count
    assert losses.softmax_ce(torch.tensor(logits), torch.tensor(target)).item() == pytest.approx(want, rel=1e-12)
    # (b, t, n) input is flattened over positions
    got3 = losses.softmax_ce(torch.tensor(logits[None]), torch.tensor(target[None]))
    assert got3.item() == pytest.approx(want, rel=1e-12)


def test_negative_sampling_excludes_positives_and_repeats():
    X = sp.random(50, 30, density=0.5, format="csr", random_state=0, dtype=np.float32)
    X.data[:] = 1
    X.sort_indices()
    keys = losses.positive_keys(X.indptr, X.indices, 30)
    users = torch.arange(50)
    g = torch.Generator().manual_seed(3)
    neg = losses.sample_negatives(users, 20, 30, g, keys, exact=True)
    assert neg.shape == (50, 20) and int(neg.min()) >= 0 and int(neg.max()) < 30
    dense = X.toarray()
    assert dense[np.arange(50)[:, None], neg.numpy()].sum() == 0
    again = losses.sample_negatives(users, 20, 30, torch.Generator().manual_seed(3), keys, exact=True)
    assert torch.equal(neg, again)
    assert losses.is_positive(keys, users[:2], torch.tensor([[int(X.indices[X.indptr[0]])], [0]]), 30)[0, 0]
    full = sp.csr_matrix(np.ones((1, 5), dtype=np.float32))
    kfull = losses.positive_keys(full.indptr, full.indices, 5)
    with pytest.raises(ToprecError, match="no unseen item"):
        losses.sample_negatives(torch.tensor([0]), 3, 5, torch.Generator().manual_seed(0), kfull, exact=True)


def test_row_matrix_and_dense_rows_match_scipy():
    X = sp.random(40, 25, density=0.2, format="csr", random_state=1, dtype=np.float32)
    rm = RowMatrix(X, "cpu")
    rows = torch.tensor([5, 0, 39, 5, 17])
    assert np.array_equal(rm.dense(rows).numpy(), X[rows.numpy()].toarray())
    buf = torch.full((8, 25), 7.0)
    assert np.array_equal(rm.dense(rows[:2], buf).numpy(), X[[5, 0]].toarray())
    assert np.array_equal(dense_rows(X[[3, 4]], "cpu", torch.float64).numpy(), X[[3, 4]].toarray())


def test_missing_torch_is_one_line_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ToprecError, match="pip install torch"):
        require_torch()


# --------------------------------------------------------------- training
@pytest.fixture
def train(dataset):
    return split.competition(dataset, last=1, random=4, seed=0)[0]


def test_callback_logs_history_and_stop(train):
    seen = []
    m = models.get("multidae", **FAST).fit(train, callback=lambda e, logs: seen.append((e, dict(logs))))
    assert [e for e, _ in seen] == list(range(1, 7)) and len(m.history) == 6
    for _, logs in seen:
        assert set(logs) == {"loss", "recall@10", "seconds", "train_s"}
        assert all(isinstance(v, float) for v in logs.values())
        assert 0 <= logs["recall@10"] <= 1 and 0 < logs["train_s"] < logs["seconds"]  # seconds: training + validation

    class Stop(Exception):
        pass

    def stop_at_2(epoch, logs):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        models.get("multidae", **FAST).fit(train, callback=stop_at_2)

    # StopTraining ends the phase after that epoch, like early stopping: the best validated epoch's weights
    from toprec.train import StopTraining

    def out_of_time(epoch, logs):
        if epoch == 3:
            raise StopTraining("time box")

    m = models.get("multidae", **FAST).fit(train, callback=out_of_time)
    recalls = [h["recall@10"] for h in m.history]
    assert len(m.history) == 3 and m.history[-1]["stopped"] == 1.0
    assert m.best_epoch == int(np.argmax(recalls)) + 1 and m.best_metric == max(recalls)
    assert m.recommend(np.arange(3), k=5).items.shape == (3, 5)


def test_a_deadline_ends_every_fit_after_the_epoch_that_passes_it(train):
    from toprec.train import deadline

    # without validation: the epoch the deadline ends it at; with validation: the best validated epoch
    with pytest.warns(RuntimeWarning, match="out of time after epoch 1 of"), deadline(0.0):
        m = models.get("multidae", **{**FAST, "valid_last": 0, "valid_random": 0}).fit(train)
    assert len(m.history) == 1 and m.history[-1]["stopped"] == 1.0 and m.best_epoch == 1
    with pytest.warns(RuntimeWarning, match="out of time after epoch 1 of"), deadline(0.0):
        v = models.get("multidae", **FAST).fit(train)
    assert len(v.history) == 1 and v.best_epoch == 1 and v.best_metric == v.history[0]["recall@10"]
    # the block restores what was before: outside it, the same model runs all its epochs
    with deadline(3600.0):
        pass
    full = models.get("multidae", **{**FAST, "valid_last": 0, "valid_random": 0}).fit(train)
    assert len(full.history) == FAST["epochs"] and "stopped" not in full.history[-1]


def test_early_stopping_restores_best_epoch(train):
    snapshots = {}
    model = models.get("multidae", **{**FAST, "epochs": 30, "patience": 3, "lr": 3e-2})

    def keep(epoch, logs):
        snapshots[epoch] = {k: v.clone() for k, v in model.module.state_dict().items()}

    model.fit(train, callback=keep)
    recalls = [h["recall@10"] for h in model.history]
    best = int(np.argmax(recalls)) + 1  # first epoch with the maximum (strict improvement)
    assert model.best_epoch == best and model.best_metric == max(recalls)
    assert len(model.history) == min(30, best + 3), "stops `patience` epochs after the best"
    final = model.module.state_dict()
    assert all(torch.equal(final[k], snapshots[best][k]) for k in final)


def test_no_validation_trains_all_epochs(train):
    m = models.get("multidae", **{**FAST, "valid_last": 0, "valid_random": 0, "patience": 2}).fit(train)
    assert len(m.history) == 6 and all(math.isnan(h["recall@10"]) for h in m.history)
    assert m.best_epoch == 6


def test_given_valid_holdout_is_used(dataset):
    train, holdout = split.competition(dataset, last=1, random=4, seed=0)
    m = models.get("multidae", **FAST).fit(train, valid=holdout)
    # training matrix is the given one (no extra holdout cut): every training user was trained on
    assert m.history and not math.isnan(m.history[-1]["recall@10"])
    from toprec import metrics

    recs = m.recommend(holdout.users, k=10)
    assert metrics.evaluate(recs, holdout, ["recall@10"])["recall@10"] == pytest.approx(m.best_metric)


def test_seeds_reproducible(train):
    a = models.get("multivae", **{**FAST, "hidden": 16}).fit(train)
    b = models.get("multivae", **{**FAST, "hidden": 16}).fit(train)
    c = models.get("multivae", **{**FAST, "hidden": 16, "seed": 1}).fit(train)
    assert _states_equal(a, b) and not _states_equal(a, c)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_global_rng_untouched(train):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    models.get("multidae", **FAST).fit(train)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name,extra", [("multivae", {"hidden": 16}), ("recvae", {"hidden": 16, "latent": 8})])
def test_resume_is_bit_identical(train, tmp_path, name, extra):
    params = {**FAST, **extra, "epochs": 5}
    ref = models.get(name, **params).fit(train)

    class Killed(Exception):
        pass

    def kill_at_2(epoch, logs):
        if epoch == 2:
            raise Killed

    ck = str(tmp_path / "ck")
    with pytest.raises(Killed):
        models.get(name, **params, checkpoint_dir=ck).fit(train, callback=kill_at_2)
    meta = json.loads((tmp_path / "ck" / "last" / "trainer.json").read_text())
    assert meta["epoch"] == 2 and len(meta["history"]) == 2
    epochs_after = []
    resumed = models.get(name, **params, checkpoint_dir=ck, resume=True).fit(
        train, callback=lambda e, logs: epochs_after.append(e)
    )
    assert epochs_after == [3, 4, 5]
    assert _states_equal(ref, resumed)
    assert [h["loss"] for h in ref.history] == [h["loss"] for h in resumed.history]
    a, b = ref.recommend(k=10), resumed.recommend(k=10)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.scores, b.scores)


def test_checkpoint_files_are_safetensors_and_json(train, tmp_path):
    ck = tmp_path / "ck"
    models.get("recvae", **{**FAST, "hidden": 16, "latent": 8, "epochs": 2}, checkpoint_dir=str(ck)).fit(train)
    files = sorted(p.name for p in (ck / "last").iterdir())
    assert files == ["state.safetensors", "trainer.json"]
    from safetensors import safe_open

    with safe_open(str(ck / "last" / "state.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert any(k.startswith("module.") for k in keys) and any(k.startswith("best.") for k in keys)
    assert any(k.startswith("opt.encoder.") for k in keys) and any(k.startswith("opt.decoder.") for k in keys)
    assert "rng.torch" in keys and "rng.generator" in keys
    meta = json.loads((ck / "last" / "trainer.json").read_text())
    assert meta["epoch"] == 2 and meta["done"] is True and meta["fingerprint"]["model"] == "recvae"
    for f in (ck / "last").iterdir():
        assert b"pickle" not in f.read_bytes()[:4096]
    # a checkpoint of another run is refused, with a one-line error
    with pytest.raises(ToprecError, match="different run"):
        models.get("recvae", **{**FAST, "hidden": 8, "latent": 8, "epochs": 3}, checkpoint_dir=str(ck), resume=True).fit(train)
    with pytest.raises(ToprecError, match="needs checkpoint_dir"):
        models.get("recvae", resume=True, epochs=1).fit(train)


def test_refit_trains_on_all_data_for_best_epochs(train, tmp_path):
    params = {**FAST, "epochs": 12, "patience": 2, "lr": 3e-2}
    plain = models.get("multidae", **params).fit(train)
    refit = models.get("multidae", **params, refit=True).fit(train)
    n_search = len(plain.history)
    assert [h["loss"] for h in refit.history[:n_search]] == [h["loss"] for h in plain.history]
    extra = refit.history[n_search:]
    assert len(extra) == plain.best_epoch and all(h.get("refit") == 1.0 for h in extra)
    assert all(math.isnan(h["recall@10"]) for h in extra)
    assert not _states_equal(plain, refit)
    # resume after a kill during the refit phase ends in the same weights
    ck = str(tmp_path / "ck")
    calls = {"n": 0}

    class Killed(Exception):
        pass

    real_train_epoch = models.get_class("multidae")._train_epoch

    def dying(self, module, opts, epoch, gen):
        if self.history and self.history[-1].get("refit") and epoch == 2:
            calls["n"] += 1
            raise Killed
        return real_train_epoch(self, module, opts, epoch, gen)

    m = models.get("multidae", **params, refit=True, checkpoint_dir=ck)
    m._train_epoch = dying.__get__(m)
    with pytest.raises(Killed):
        m.fit(train)
    assert calls["n"] == 1
    resumed = models.get("multidae", **params, refit=True, checkpoint_dir=ck, resume=True).fit(train)
    assert _states_equal(refit, resumed)


def test_score_batch_invariant_and_float32(train):
    m = models.get("multivae", **{**FAST, "hidden": 16}).fit(train)
    s_all = m.score(np.arange(train.n_users))
    s_one = np.concatenate([m.score([u]) for u in range(5)])
    assert s_all.dtype == np.float32 and np.array_equal(s_all[:5], s_one)


def test_device_topk_equals_shared_topk(train):
    """The on-device validation top-k (used on CUDA) gives the shared top-k's lists exactly."""
    from toprec.recommend import topk

    m = models.get("multivae", **{**FAST, "hidden": 16}).fit(train)
    users = np.r_[np.arange(train.n_users), -1]
    hist = m._history(users, None)
    hist = sp.vstack([hist[:-1], sp.csr_matrix((1, train.n_items), dtype=np.float32)]).tocsr()
    module = m._scoring_module()
    got = m._topk_on_device(module, users, hist, 10, budget=7 * train.n_items * 16)  # several batches
    ref = topk(m._score_with_fallback, users, train.n_items, 10, hist, hist)
    assert np.array_equal(got.items, ref.items) and np.array_equal(got.scores, ref.scores)
    # ties (popularity for the cold last row) resolve to the lower item, and short lists end in -1
    full = sp.csr_matrix(np.ones((1, train.n_items), dtype=np.float32))
    got = m._topk_on_device(module, np.array([0]), full, 3)
    assert (got.items == -1).all()


def test_thread_choice(train):
    m = models.get("multidae", **FAST).fit(train)
    before = torch.get_num_threads()
    with m._threads(10**9):  # a large scoring job: every usable core
        assert torch.get_num_threads() >= 1
    with m._threads(1):  # tiny: one thread
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _diverge_at(m, at_epoch: int):
    real = m._train_epoch

    def epoch_fn(module, optimizers, epoch, generator):
        loss = real(module, optimizers, epoch, generator)
        return float("nan") if epoch >= at_epoch else loss

    m._train_epoch = epoch_fn
    return m


def test_divergence_after_a_validated_epoch_stops_and_keeps_the_best(train):
    m = _diverge_at(models.get("multidae", **{**FAST, "epochs": 8}), 4)
    with pytest.warns(RuntimeWarning, match="diverged at epoch 4"):
        m.fit(train)
    assert len(m.history) == 4 and math.isnan(m.history[-1]["loss"])
    assert 1 <= m.best_epoch <= 3 and m.best_metric == max(h["recall@10"] for h in m.history[:3])
    assert np.isfinite(m.score(np.arange(5))).all()  # the best epoch's weights, not the diverged ones


def test_divergence_before_any_validated_epoch_is_a_one_line_error(train):
    m = _diverge_at(models.get("multidae", **FAST), 1)
    with pytest.raises(ToprecError, match=r"training diverged at epoch 1 .*before any validated epoch; lower lr \(now 0\.01\)"):
        m.fit(train)
    m = _diverge_at(models.get("multidae", **{**FAST, "valid_last": 0, "valid_random": 0}), 3)
    with pytest.raises(ToprecError, match=r"diverged at epoch 3 .*no validation holdout, so no earlier epoch was kept"):
        m.fit(train)


def test_divergence_in_the_refit_says_so(train):
    m = models.get("multidae", **{**FAST, "epochs": 3, "refit": True})
    real = m._train_epoch
    calls = {"n": 0}

    def epoch_fn(module, optimizers, epoch, generator):
        calls["n"] += 1
        loss = real(module, optimizers, epoch, generator)
        return float("nan") if calls["n"] > 3 else loss  # the search's 3 epochs are fine, the refit's first is not

    m._train_epoch = epoch_fn
    with pytest.raises(ToprecError, match=r"the refit on all the data diverged at epoch 1 .*use refit=false"):
        m.fit(train)
