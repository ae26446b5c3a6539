"""SASRec / BERT4Rec: sequence builders, ordering rule, masks, and learning a planted sequence."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from toprec import Dataset, metrics, models, split  # noqa: E402
from toprec.models.sequential import (  # noqa: E402
    build_encoder,
    cloze_mask,
    csr_order_rank,
    history_sequences,
    length_batches,
    trim,
    user_sequences,
)


def _naive_sequences(data: Dataset, max_len: int) -> np.ndarray:
    out = np.zeros((data.n_users, max_len), dtype=np.int64)
    for u in range(data.n_users):  # reference implementation: a plain loop
        s, e = data.user_ptr[u], data.user_ptr[u + 1]
        order = sorted(range(s, e), key=lambda j: (data.time[j], data.item[j]))
        items = [int(data.item[j]) + 1 for j in order][-max_len:]
        if items:
            out[u, max_len - len(items) :] = items
    return out


@pytest.fixture
def shuffled_dataset():
    rng = np.random.default_rng(3)
    n = 400
    users = rng.integers(0, 30, n)
    items = rng.integers(0, 50, n)
    times = rng.integers(0, 10_000, n)
    return Dataset.from_events(users, items, times)


@pytest.mark.parametrize("max_len", [1, 3, 8, 40])
def test_user_sequences_match_naive_reference(shuffled_dataset, max_len):
    got = user_sequences(shuffled_dataset, max_len)
    assert np.array_equal(got, _naive_sequences(shuffled_dataset, max_len))
    sub = np.array([5, 0, 7])
    assert np.array_equal(user_sequences(shuffled_dataset, max_len, sub), got[sub])


def test_user_sequences_with_empty_users(shuffled_dataset):
    train, _ = split.leave_last(shuffled_dataset, n=3, min_train=1)
    empty = train.filter(train.user != 4)  # user 4 keeps its index but has no events
    seq = user_sequences(empty, 10)
    assert (seq[4] == 0).all()
    assert np.array_equal(seq, _naive_sequences(empty, 10))


def test_history_sequences_ordering_rule(shuffled_dataset):
    data = shuffled_dataset
    X = data.matrix
    rank = csr_order_rank(data)
    L = 12
    users = data.users
    # a user's own training row gives exactly the stored sequence
    assert np.array_equal(history_sequences(users, X, X, rank, L), user_sequences(data, L))
    # unknown users: items in index order
    h = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [9, 2, 30])), shape=(1, data.n_items))
    got = history_sequences(np.array([-1]), h, X, rank, 5)
    assert got.tolist() == [[0, 0, 3, 10, 31]]
    # a known user with one new item and one training item dropped: stored order kept, new item last
    u = int(np.argmax(data.user_counts))
    seq = [int(i) - 1 for i in user_sequences(data, 100, [u])[0] if i > 0]
    new = next(i for i in range(data.n_items) if i not in seq)
    kept = seq[1:]
    h = sp.csr_matrix((np.ones(len(kept) + 1), (np.zeros(len(kept) + 1, int), kept + [new])), shape=(1, data.n_items))
    got = history_sequences(np.array([u]), h, X, rank, 100)[0]
    assert [int(i) - 1 for i in got if i > 0] == kept + [new]


def test_encoder_is_causal():
    torch.manual_seed(0)
    net = build_encoder(30, 10, 16, 2, 2, 0.0, 1, causal=True).eval()
    a = torch.tensor([[0, 0, 3, 5, 7, 9, 2, 4, 6, 8]])
    b = a.clone()
    b[0, 6:] = torch.tensor([11, 12, 13, 14])  # change the later items
    ha, hb = net(a), net(b)
    assert torch.allclose(ha[0, :6], hb[0, :6], atol=1e-6)
    assert not torch.allclose(ha[0, 6:], hb[0, 6:], atol=1e-3)
    assert (ha[0, :2] == 0).all()  # padding positions output zero
    bidir = build_encoder(30, 10, 16, 2, 2, 0.0, 1, causal=False).eval()
    assert not torch.allclose(bidir(a)[0, :6], bidir(b)[0, :6], atol=1e-3)


def test_left_padding_and_trimming_do_not_change_outputs():
    torch.manual_seed(0)
    net = build_encoder(30, 12, 16, 2, 2, 0.0, 1, causal=True).eval()
    short = torch.tensor([[0, 0, 0, 4, 5, 6], [0, 1, 2, 3, 4, 5]])
    padded = torch.cat([torch.zeros(2, 6, dtype=torch.long), short], 1)
    assert torch.allclose(net(short)[:, -1], net(padded)[:, -1], atol=1e-6)
    assert trim(padded).shape[1] == 5


def test_length_batches_cover_every_row_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.pareto(1.2, 3000) * 10 + 2, 200).astype(int)  # heavy-tailed, like ML-1M's users
    g = torch.Generator().manual_seed(0)
    batches = length_batches(lengths, 32, g)
    rows = np.concatenate(batches)
    assert np.array_equal(np.sort(rows), np.arange(len(lengths)))  # every row once an epoch
    events = np.array([lengths[b].sum() for b in batches])
    assert abs(len(batches) - len(lengths) / 32) <= 1  # as many updates as random batches of 32
    assert events[:-1].max() <= 32 * lengths.mean() + lengths.max()  # each ~32 rows' worth of events
    assert np.median(events) > 0.7 * 32 * lengths.mean()
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = np.random.default_rng(1).permutation(len(lengths))
    padded_random = sum(32 * lengths[shuffled[s : s + 32]].max() for s in range(0, len(lengths), 32))
    assert 1 - lengths.sum() / padded < 0.15 < 1 - lengths.sum() / padded_random  # the padding share falls
    first = [len(b) for b in batches]
    again = length_batches(lengths, 32, torch.Generator().manual_seed(0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again)) and first == [len(b) for b in again]
    other = length_batches(lengths, 32, g)  # the next epoch: other batch order and other neighbours
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_length_batches_switch_keeps_training_valid(dataset):
    for on in (True, False):
        model = models.get("sasrec", length_batches=on, factors=16, max_len=16, epochs=3, batch_size=8,
                           valid_last=0, valid_random=0)  # fmt: skip
        model.fit(dataset)
        assert model.history[-1]["loss"] < model.history[0]["loss"]


def test_cloze_mask_rate_and_targets():
    g = torch.Generator().manual_seed(0)
    n_items = 100
    seq = torch.randint(1, n_items + 1, (400, 50), generator=g)
    seq[:, :10] = 0  # padding
    seq[0, :-1] = 0  # a one-item row still gets a target
    inputs, targets = cloze_mask(seq, n_items + 1, n_items, 0.2, g)
    chosen = targets >= 0
    real = seq > 0
    assert not (chosen & ~real).any(), "padding was masked"
    assert (chosen.sum(1) >= 1).all()
    rate = chosen.sum().item() / real.sum().item()
    assert 0.18 < rate < 0.22
    assert torch.equal(targets[chosen], seq[chosen] - 1)
    masked = (inputs == n_items + 1) & chosen
    assert 0.75 < masked.sum().item() / chosen.sum().item() < 0.85
    assert torch.equal(inputs[~chosen], seq[~chosen])
    g2 = torch.Generator().manual_seed(0)
    torch.randint(1, n_items + 1, (400, 50), generator=g2)
    assert torch.equal(cloze_mask(seq, n_items + 1, n_items, 0.2, g2)[0], inputs)  # same seed, same masks


def _planted(n_users=150, n_items=40, length=12, seed=0) -> Dataset:
    """Each user watches a run of consecutive items: item i is always followed by item i+1."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, n_items - length, n_users)
    users = np.repeat(np.arange(n_users), length)
    items = (start[:, None] + np.arange(length)[None]).ravel()
    times = np.tile(np.arange(length), n_users) + 100
    return Dataset.from_events(users, items, times)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_planted_next_item_beats_popularity(name):
    data = _planted()
    train, test = split.leave_last(data, n=1)
    params = dict(factors=32, heads=2, blocks=1, max_len=12, epochs=25, lr=0.01, batch_size=32, dropout=0.0,
                  valid_last=0, valid_random=0)  # fmt: skip
    model = models.get(name, **params).fit(train)
    losses = [h["loss"] for h in model.history]
    assert losses[-1] < losses[0] * 0.7, losses
    recs = model.recommend(test.users, k=10)
    got = metrics.evaluate(recs, test, ["recall@10"])["recall@10"]
    pop = models.get("popularity").fit(train).recommend(test.users, k=10)
    base = metrics.evaluate(pop, test, ["recall@10"])["recall@10"]
    assert got > max(0.9, base + 0.3), (got, base)  # the next item is nearly always found


@pytest.mark.parametrize("loss", ["bce", "sampled_softmax", "shared_softmax"])
def test_sampled_losses_train(loss, dataset):
    model = models.get("sasrec", loss=loss, n_negatives=8, factors=16, max_len=16, epochs=3, batch_size=32,
                       valid_last=0, valid_random=0)  # fmt: skip
    model.fit(dataset)
    assert all(np.isfinite(h["loss"]) for h in model.history)
    assert model.history[-1]["loss"] < model.history[0]["loss"]


def test_shared_softmax_finds_the_planted_next_item():
    """Negatives shared by the batch (a fifth of the catalogue) still learn the next item; a row's own target
    among them is dropped, so its loss is the sampled softmax over the others."""
    data = _planted()
    train, test = split.leave_last(data, n=1)
    model = models.get("sasrec", loss="shared_softmax", n_negatives=max(2, data.n_items // 5), factors=32, heads=2,
                       blocks=1, max_len=12, epochs=25, lr=0.01, batch_size=32, dropout=0.0, valid_last=0,
                       valid_random=0).fit(train)  # fmt: skip
    got = metrics.evaluate(model.recommend(test.users, k=10), test, ["recall@10"])["recall@10"]
    assert got > 0.9, got


def test_shared_softmax_masks_each_rows_own_target():
    import torch

    model = models.get("sasrec", loss="shared_softmax", n_negatives=3)
    model.n_items = 6

    class M:  # item weights only: 6 items, one dimension
        item_emb = torch.nn.Embedding(7, 1)

    with torch.no_grad():
        M.item_emb.weight[:] = torch.arange(7.0)[:, None] / 2
    hidden = torch.tensor([[1.0], [-1.0], [0.5]])
    targets = torch.tensor([0, 3, 5])
    for seed in range(5):
        torch.manual_seed(seed)
        loss = model._target_loss(M, hidden, targets)
        torch.manual_seed(seed)
        neg = torch.randperm(6)[:3]
        W = M.item_emb.weight[1:7, 0]
        want = []
        for h, t in zip(hidden[:, 0].tolist(), targets.tolist()):
            others = [h * float(W[j]) for j in neg.tolist() if j != t]
            logits = torch.tensor([h * float(W[t]), *others])
            want.append(float(-torch.log_softmax(logits, 0)[0]))
        assert abs(float(loss) - np.mean(want)) < 1e-5, seed


def test_cpu_dropout_keeps_the_mean_and_the_rate():
    import torch

    from toprec.models.sequential import cpu_dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = cpu_dropout(x, 0.3, True)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert torch.equal(cpu_dropout(x, 0.3, False), x) and torch.equal(cpu_dropout(x, 0.0, True), x)


def test_validation_early_stopping_restores_best(dataset):
    model = models.get("sasrec", factors=16, max_len=16, epochs=4, batch_size=32, patience=2).fit(dataset)
    recalls = [h["recall@10"] for h in model.history]
    assert all(np.isfinite(recalls)) and model.best_epoch == int(np.argmax(recalls)) + 1


def test_factors_must_divide_heads(dataset):
    from toprec import ToprecError

    with pytest.raises(ToprecError, match="multiple of heads"):
        models.get("sasrec", factors=10, heads=3, epochs=1).fit(dataset)


def test_save_load_keeps_time_order_for_explicit_histories(dataset, tmp_path):
    from toprec.models import Recommender

    model = models.get("sasrec", factors=16, max_len=8, epochs=1, batch_size=32, valid_last=0, valid_random=0)
    model.fit(dataset)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert np.array_equal(loaded.order_rank, model.order_rank)
    hist = sp.lil_matrix(dataset.matrix[:4])
    hist[:, 0] = 1.0  # a new event for each user
    hist = sp.csr_matrix(hist)
    users = np.arange(4)
    assert np.array_equal(model.score(users, history=hist), loaded.score(users, history=hist))
    # the order matters: the same items as an unknown user (item-index order) score differently
    assert not np.allclose(model.score(users[:1], history=hist[:1]), model.score(np.array([-1]), history=hist[:1]))


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_scoring_by_length_and_last_query_matches_the_full_forward(name):
    """Scoring sorts users by history length (common padding trimmed) and runs the last block for the last
    position only: the same scores as the whole network on every user's untrimmed sequence, in the users' order."""
    import torch

    from toprec.models.sequential import history_sequences

    rng = np.random.default_rng(5)
    lengths = rng.integers(2, 60, 90)  # histories of many lengths: the sort and the trim matter
    users = np.repeat(np.arange(len(lengths)), lengths)
    data = Dataset.from_events(users, rng.integers(0, 70, len(users)), np.arange(len(users)))
    model = models.get(name, factors=16, max_len=50, epochs=1, batch_size=32, valid_last=0, valid_random=0)
    model.fit(data)
    users = np.arange(data.n_users)[::-1].copy()  # not in length order
    history = model.train_matrix
    got = model._score_with(model.module, users, history)
    L = model.params.max_len - (0 if model.causal else 1)
    seq = torch.from_numpy(history_sequences(users, history, model._order, None, L))
    assert len(set((seq != 0).sum(1).tolist())) > 3  # lengths differ: the sort and the trim matter
    with torch.inference_mode():
        h = model.module(model._inference_input(seq))[:, -1, :]
        want = (h @ model._item_weights(model.module).T).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
