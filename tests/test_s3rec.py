"""S3Rec: the pre-training batches, each objective learning, the hand-over to SASRec fine-tuning, no side files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from toprec import Dataset, ToprecError, metrics, models, split  # noqa: E402
from toprec.models.s3rec import mask_items, random_prefix, segments  # noqa: E402

TINY = dict(factors=16, heads=2, blocks=1, max_len=12, batch_size=32, lr=5e-3, dropout=0.0, valid_last=0,
            valid_random=0, pretrain_batch_size=32)  # fmt: skip


def _planted(n_users=150, n_items=40, length=12, seed=0, side=True) -> Dataset:
    """Runs of consecutive items (item i is followed by i + 1); an item's attribute is its block of 5 items."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, n_items - length, n_users)
    users = np.repeat(np.arange(n_users), length)
    items = (start[:, None] + np.arange(length)[None]).ravel()
    times = np.tile(np.arange(length), n_users) + 100
    feats = None
    if side:
        ids = np.arange(n_items)
        feats = {"genres": pd.DataFrame({"item": ids, "value": [f"g{i // 5}" for i in ids]}),
                 "years": pd.DataFrame({"item": ids, "value": 1990 + ids % 3})}  # fmt: skip
    return Dataset.from_events(users, items, times, features=feats)


# ------------------------------------------------------------------ batches


def _rows(n_rows=64, L=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (n_rows,), generator=g)
    seq = torch.randint(1, 50, (n_rows, L), generator=g)
    seq[torch.arange(L)[None] < (L - lengths)[:, None]] = 0  # left padding
    return seq, lengths


def test_random_prefix_keeps_a_left_padded_prefix():
    seq, n = _rows()
    out = random_prefix(seq, torch.Generator().manual_seed(1))
    kept = (out > 0).sum(1)
    assert ((kept >= n.clamp(max=2)) & (kept <= n)).all()
    assert (kept < n).any(), "no row was cut"
    for row, new, k in zip(seq, out, kept):
        items = row[row > 0]
        assert torch.equal(new[new > 0], items[: int(k)])  # the oldest k items, in order
        assert (new[: len(new) - int(k)] == 0).all()  # still left-padded


def test_mask_items_rate_and_negatives():
    seq, _ = _rows(400, 30)
    inputs, masked, neg = mask_items(seq, 99, 50, 0.2, torch.Generator().manual_seed(0))
    real = seq > 0
    assert not (masked & ~real).any()
    assert 0.17 < masked.sum().item() / real.sum().item() < 0.23
    assert (inputs[masked] == 99).all() and torch.equal(inputs[~masked], seq[~masked])
    assert neg.min() >= 1 and neg.max() <= 50


def test_segments_shapes_and_contents():
    seq, n = _rows(200, 16)
    mask = 99
    masked_seq, pos, neg, valid = segments(seq, mask, torch.Generator().manual_seed(0))
    assert torch.equal(valid, n >= 2)
    flat = seq[seq > 0].tolist()
    for i in torch.nonzero(valid).flatten().tolist():
        inseg = (masked_seq[i] == mask) & (seq[i] > 0)
        s = int(inseg.sum())
        assert 1 <= s <= int(n[i]) // 2
        idx = torch.nonzero(inseg).flatten()
        assert int(idx[-1] - idx[0]) + 1 == s, "the segment is contiguous"
        assert torch.equal(pos[i][inseg], seq[i][inseg])  # the segment itself, at its place
        assert (pos[i][~inseg & (seq[i] > 0)] == mask).all() and (pos[i][seq[i] == 0] == 0).all()
        assert torch.equal(masked_seq[i][~inseg], seq[i][~inseg])
        negs = neg[i][inseg].tolist()  # consecutive items of the batch laid end to end
        assert any(flat[j : j + s] == negs for j in range(len(flat) - s + 1))
        assert (neg[i][~inseg & (seq[i] > 0)] == mask).all()


# ------------------------------------------------------------------ pre-training


def test_pretraining_lowers_each_objective():
    params = {**TINY, "pretrain_batch_size": 16}  # 10 steps an epoch
    model = models.get("s3rec", **params, epochs=1, pretrain_epochs=25, pretrain_lr=5e-3).fit(_planted())
    curve = model.pretrain_history
    assert len(curve) == 25 and model.attributes_ == ["genres", "years"]
    for key in ("aap", "mip", "map", "sp"):
        first, last = curve[0][key], np.mean([h[key] for h in curve[-3:]])
        assert last < 0.8 * first, (key, [round(h[key], 3) for h in curve])


def test_no_pretraining_is_sasrec_and_pretraining_changes_the_start():
    data = _planted()
    base = models.get("sasrec", **{k: v for k, v in TINY.items() if k != "pretrain_batch_size"}, epochs=2).fit(data)
    zero = models.get("s3rec", **TINY, epochs=2, pretrain_epochs=0).fit(data)
    users = np.arange(20)
    # the shared SASRec code: same initialisation, batches, dropout and scores
    assert np.array_equal(base.score(users), zero.score(users))
    assert [h["loss"] for h in base.history] == [h["loss"] for h in zero.history]
    pre = models.get("s3rec", **TINY, epochs=2, pretrain_epochs=3).fit(data)
    assert not np.allclose(pre.score(users), zero.score(users), atol=1e-3)
    # fine-tuning starts from the pre-trained weights: its first epoch's loss differs from SASRec's
    assert abs(pre.history[0]["loss"] - zero.history[0]["loss"]) > 1e-3
    # and well pre-trained weights are a better start on a sequential signal: after three fine-tuning epochs
    # the held-out next item is found more often than from a random start
    train, test = split.leave_last(data, n=1)
    got = {}
    for p_epochs in (0, 25):
        m = models.get("s3rec", **{**TINY, "pretrain_batch_size": 16}, epochs=3, pretrain_epochs=p_epochs,
                       pretrain_lr=5e-3).fit(train)  # fmt: skip
        got[p_epochs] = metrics.evaluate(m.recommend(test.users, k=10), test, ["recall@10"])["recall@10"]
    assert got[25] > got[0] + 0.1, got


def test_without_side_files_attribute_objectives_are_skipped(capsys):
    model = models.get("s3rec", **TINY, epochs=1, pretrain_epochs=2).fit(_planted(side=False))
    assert "AAP and MAP skipped" in capsys.readouterr().err
    assert model.attributes_ == []
    assert all(set(h) == {"mip", "sp", "loss", "seconds"} for h in model.pretrain_history)
    with pytest.raises(ToprecError, match="no side feature 'writers'"):
        models.get("s3rec", **TINY, epochs=1, features="writers").fit(_planted())


def test_planted_next_item_is_learned():
    data = _planted()
    train, test = split.leave_last(data, n=1)
    model = models.get("s3rec", **{**TINY, "factors": 32, "lr": 0.01}, epochs=15, pretrain_epochs=5).fit(train)
    recs = model.recommend(test.users, k=10)
    got = metrics.evaluate(recs, test, ["recall@10"])["recall@10"]
    pop = models.get("popularity").fit(train).recommend(test.users, k=10)
    base = metrics.evaluate(pop, test, ["recall@10"])["recall@10"]
    assert got > max(0.9, base + 0.3), (got, base)


def test_save_load_keeps_the_pretraining_curve(tmp_path):
    from toprec.models import Recommender

    model = models.get("s3rec", **TINY, epochs=1, pretrain_epochs=2).fit(_planted())
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert [sorted(h) for h in loaded.pretrain_history] == [sorted(k for k in h if k != "seconds")
                                                             for h in model.pretrain_history]  # fmt: skip
    assert np.allclose([h["map"] for h in loaded.pretrain_history], [h["map"] for h in model.pretrain_history])
    assert np.array_equal(loaded.score(np.arange(5)), model.score(np.arange(5)))
