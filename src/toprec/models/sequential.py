"""Transformer sequence models: SASRec (causal) and BERT4Rec (bidirectional, cloze).

Training follows RecTools' recipe, which reproduces the published MovieLens
numbers: the loss is a **full softmax cross-entropy over every item** at every
position that has a target (SASRec: the next item; BERT4Rec: the masked item),
item embeddings are shared between input and output, positions are learned
and counted from the *end* of the sequence (the newest item always has
position 0, so left padding and per-batch trimming change nothing), layers are
pre-LayerNorm. Sampled alternatives (``loss="bce"`` / ``"sampled_softmax"``
with ``n_negatives`` uniformly drawn items) are there for very large catalogues.

Data preparation is vectorised: every user's last ``max_len`` training items
in time order come from one scatter over the Dataset's (user, time)-sorted
event arrays (:func:`user_sequences`), and BERT4Rec masking is done per batch
with torch ops on the training device (:func:`cloze_mask`). There is no Python
loop over users or events.

Early stopping selects on each user's last training event only
(``valid_random=0``): with the competition-style validation (last + 9 random)
total recall falls while next-item recall rises, and training stalls. The
models are meant for the sequential half of the test (and as ensemble members).

Scoring: the user's sequence -> the last position's output -> dot product with
every item embedding; seen items are masked by the shared top-k like for any
model. BERT4Rec scores with a mask token appended after the last ``max_len-1``
items. The sequence comes from the ``history`` rows (a CSR has no times), by
this rule (:func:`history_sequences`): history items the user had in training
keep their training time order; other history items (unknown users, new
events) come after them, as the most recent, ordered by the row's stored
values (``Recommender.histories`` stores positions, 1 = oldest), ties by
item index. With a user's own training row this is exactly the training
sequence, and a new user given the same items in the same order gets the
same list: the model folds new users in from the *ordered* history
(``fold_in = "sequence"``), not from the item set alone. Scoring runs the
network in float64 and rounds to float32, so a user's scores do not depend on
the batch around them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ..errors import ToprecError
from ..keys import csr_keys, find_sorted
from ..train import TorchParams, TorchRecommender
from .registry import register

PAD = 0

# ------------------------------------------------------------------ data (numpy)


def user_sequences(data, max_len: int, users: np.ndarray | None = None) -> np.ndarray:
    """(n_users, max_len) int64: ``item + 1`` of each user's last ``max_len`` events, oldest first.

    Rows are left-padded with 0. ``data`` is a :class:`~toprec.Dataset`, whose
    events are sorted by (user, time, item) with ``user_ptr`` offsets, so one
    scatter over the event arrays places every event. ``users`` selects rows.
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")
    user = np.asarray(data.user, dtype=np.int64)
    ptr = np.asarray(data.user_ptr, dtype=np.int64)
    counts = np.diff(ptr)
    from_end = counts[user] - 1 - (np.arange(len(user), dtype=np.int64) - ptr[user])  # 0 = newest
    keep = from_end < max_len
    out = np.zeros((data.n_users, max_len), dtype=np.int64)
    out[user[keep], max_len - 1 - from_end[keep]] = np.asarray(data.item, dtype=np.int64)[keep] + 1
    return out if users is None else out[np.asarray(users, dtype=np.int64)]


def csr_order_rank(data) -> np.ndarray:
    """int32 time rank (0 = oldest) of every event, in the order of ``data.matrix``'s nonzeros.

    ``data.matrix`` stores each user's items sorted by item index; the Dataset
    stores them by time. scipy's COO -> CSR conversion (a bucket pass by row,
    then a per-row sort by column) maps one to the other, 4x faster than a
    lexsort of the 5M competition events.
    """
    user = np.asarray(data.user, dtype=np.int64)
    pos = (np.arange(len(user), dtype=np.int64) - np.asarray(data.user_ptr, dtype=np.int64)[user]).astype(np.int32)
    M = sp.csr_matrix((pos, (user, np.asarray(data.item))), shape=(data.n_users, data.n_items))
    M.sort_indices()
    return np.asarray(M.data, dtype=np.int32)


def rank_matrix(train: sp.csr_matrix, rank: np.ndarray) -> sp.csr_matrix:
    """users x items float64 CSR holding time rank + 1 at every training event (0 elsewhere)."""
    return sp.csr_matrix((rank.astype(np.float64) + 1.0, train.indices, train.indptr), shape=train.shape)


def history_sequences(
    users: np.ndarray, history: sp.csr_matrix, train: sp.csr_matrix, rank: np.ndarray | None, max_len: int
) -> np.ndarray:
    """(len(users), max_len) int64 sequences (``item + 1``, left-padded) for scoring.

    Ordering rule: history items that the user had in training keep their
    training time order (``rank``, aligned with ``train``'s nonzeros); the
    other history items follow, as the most recent, by their stored value in
    ``history`` (a position or a time), then by item index. Only the
    last ``max_len`` are kept. With ``rank=None``, ``train`` is already a
    :func:`rank_matrix`.
    """
    history = sp.csr_matrix(history)
    if not history.has_sorted_indices:
        history = history.sorted_indices()
    n, n_items = history.shape
    users = np.asarray(users, dtype=np.int64)
    known = (users >= 0) & (users < train.shape[0])
    # training time rank + 1 at each (user, item) of training, looked up at the history's nonzeros
    P = rank_matrix(train, rank) if rank is not None else train
    P = P[np.where(known, users, 0)]
    if not known.all():
        P = sp.diags(known.astype(np.float64)) @ P
    H = sp.csr_matrix((np.ones(history.nnz), history.indices, history.indptr), shape=history.shape)
    S = H.multiply(P).tocsr()
    S.eliminate_zeros()
    S.sort_indices()
    counts = np.diff(history.indptr)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    cols = history.indices.astype(np.int64)
    key_h = rows * n_items + cols
    stored = np.zeros(len(key_h), dtype=np.float64)
    at, hit = find_sorted(csr_keys(S, n_items), key_h)
    stored[hit] = S.data[at[hit]]
    # training items by training time, then the rest by their stored value (position), then item index
    value = np.asarray(history.data, dtype=np.float64)
    order = np.lexsort((cols, np.where(stored > 0, stored, value), stored <= 0, rows))
    rows_o, items_o = rows[order], cols[order]
    starts = np.repeat(history.indptr[:-1].astype(np.int64), counts)
    from_end = np.repeat(counts.astype(np.int64), counts) - 1 - (np.arange(len(rows_o)) - starts)
    keep = from_end < max_len
    out = np.zeros((n, max_len), dtype=np.int64)
    out[rows_o[keep], max_len - 1 - from_end[keep]] = items_o[keep] + 1
    return out


def trim(seq):
    """Drop the leading columns that are padding in every row of a left-padded (B, L) torch batch."""
    real = (seq != PAD).any(0).nonzero()
    return seq[:, int(real[0, 0]) :] if len(real) else seq[:, -1:]


#: spread of the length sort in :func:`length_batches` (log-length units: neighbours within ~+-10% mix)
LENGTH_JITTER = 0.2


def length_batches(lengths: np.ndarray, batch_size: int, generator) -> list[np.ndarray]:
    """Row indices in batches of users with similar history lengths, each about ``batch_size`` rows' worth of
    events (more short rows, fewer long ones), the batches in random order.

    Random batches of left-padded sequences are mostly padding when lengths are
    heavy-tailed (ML-1M, max_len 200: 63% of the positions), and the network
    runs on every position. Sorting by length, jittered by ``LENGTH_JITTER`` in
    log units so that the batch composition changes every epoch, keeps each
    batch near one length. Cutting by events, not rows, keeps every update at
    about the number of targets a random batch has: equal-row batches of short
    histories took as many steps as the long ones on a tenth of the targets and
    learned worse (ML-1M, fixed CPU time: next-event recall 0.110 against 0.158).
    Every row is seen once an epoch."""
    torch = _torch()
    lengths = np.maximum(np.asarray(lengths, dtype=np.float64), 1.0)
    n = len(lengths)
    jitter = torch.rand(n, generator=generator, dtype=torch.float64).numpy() - 0.5
    order = np.argsort(np.log(lengths) + LENGTH_JITTER * jitter, kind="stable")
    budget = batch_size * lengths.mean()  # the events of an average random batch
    before = np.cumsum(lengths[order]) - lengths[order]  # events ahead of each row in this order
    cuts = np.flatnonzero(np.diff(np.floor(before / budget))) + 1
    batches = np.split(order, cuts)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).numpy()]


def cloze_mask(seq, mask_token: int, n_items: int, prob: float, generator):
    """BERT4Rec masking of a (B, L) torch batch of ``item + 1`` ids (0 = padding).

    Each real position is chosen with probability ``prob``; a row with items
    but nothing chosen gets its position with the smallest draw chosen, so no
    row is wasted. A chosen position becomes the mask token (80%), a random
    item (10%) or stays (10%). Returns ``(inputs, targets)``: targets are
    0-based items at chosen positions and -100 (ignored) elsewhere. The draws
    come from ``generator`` (a CPU generator: same seed, same masks on any
    device); call it on CPU tensors.
    """
    import torch

    real = seq > 0
    u = torch.rand(seq.shape, generator=generator)
    chosen = (u < prob) & real
    none = real.any(1) & ~chosen.any(1)
    u2 = torch.where(real, u, torch.full_like(u, 2.0))
    first = torch.zeros_like(chosen)
    first[torch.arange(seq.shape[0], device=seq.device), u2.argmin(1)] = True
    chosen = chosen | (first & none[:, None])
    kind = torch.rand(seq.shape, generator=generator)
    rand_items = torch.randint(1, n_items + 1, seq.shape, generator=generator)
    inputs = torch.where(chosen & (kind < 0.8), torch.full_like(seq, mask_token), seq)
    inputs = torch.where(chosen & (kind >= 0.8) & (kind < 0.9), rand_items, inputs)
    targets = torch.where(chosen, seq - 1, torch.full_like(seq, -100))
    return inputs, targets


# ------------------------------------------------------------------ network (torch)


def _torch():
    import torch

    return torch


def cpu_dropout(x, p: float, training: bool):
    """``F.dropout`` with its mask drawn as ``rand >= p`` on a CPU (``bernoulli_`` there is ~2.3x slower)."""
    torch = _torch()
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu":
        return torch.nn.functional.dropout(x, p, True)
    return x * ((torch.rand_like(x) >= p).to(x.dtype) * (1.0 / (1.0 - p)))


def build_encoder(n_tokens: int, max_len: int, factors: int, blocks: int, heads: int, dropout: float,
                  ff_mult: int, causal: bool):  # fmt: skip
    """The transformer: item + inverse-position embeddings, pre-LN blocks, final LayerNorm."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class Dropout(nn.Module):
        """Dropout whose CPU mask is ``rand >= p``: the same distribution as ``nn.Dropout``, ~2.3x faster to draw
        on a CPU than its ``bernoulli_`` (15% of a SASRec step on ML-1M went to drawing masks)."""

        def __init__(self, p: float):
            super().__init__()
            self.p = p

        def forward(self, x):
            return cpu_dropout(x, self.p, self.training)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads
            self.ln1 = nn.LayerNorm(factors)
            self.qkv = nn.Linear(factors, 3 * factors)
            self.proj = nn.Linear(factors, factors)
            self.ln2 = nn.LayerNorm(factors)
            self.ff1 = nn.Linear(factors, factors * ff_mult)
            self.ff2 = nn.Linear(factors * ff_mult, factors)
            self.drop = Dropout(dropout)
            self.p = dropout

        def forward(self, x, allowed, last_only: bool = False):
            """``last_only``: the last position's output alone (B, 1, D), its query against every key."""
            B, L, D = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
            if last_only:
                q, allowed, x, L = q[:, :, -1:], allowed[:, :, -1:], x[:, -1:], 1
            if self.training and self.p > 0 and x.device.type == "cpu":
                # the math path SDPA takes on a CPU with dropout, with the faster mask
                w = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
                w = torch.softmax(w.masked_fill(~allowed, float("-inf")), -1)
                a = cpu_dropout(w, self.p, True) @ v
            else:
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                                   dropout_p=self.p if self.training else 0.0)
            x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, D)))
            return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.ln2(x))))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.causal = causal
            self.item_emb = nn.Embedding(n_tokens, factors, padding_idx=PAD)
            self.pos_emb = nn.Embedding(max_len, factors)
            self.drop = Dropout(dropout)
            self.blocks = nn.ModuleList([Block() for _ in range(blocks)])
            self.norm = nn.LayerNorm(factors)
            std = factors**-0.5
            nn.init.normal_(self.item_emb.weight, std=std)
            nn.init.normal_(self.pos_emb.weight, std=std)
            with torch.no_grad():
                self.item_emb.weight[PAD].zero_()

        def forward(self, seq, last_only: bool = False):
            """(B, L) ids -> (B, L, factors); padding positions are zero. ``last_only``: (B, 1, factors), the
            last position's alone (scoring: the last block runs its query only, ~40% less work with two)."""
            B, L = seq.shape
            real = seq != PAD
            pos = torch.arange(L - 1, -1, -1, device=seq.device)  # newest = 0
            x = self.drop(self.item_emb(seq) + self.pos_emb(pos)[None]) * real[..., None]
            allowed = real[:, None, None, :].expand(B, 1, L, L)
            if self.causal:
                allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
            allowed = allowed | torch.eye(L, dtype=torch.bool, device=seq.device)  # padding rows see themselves
            for i, block in enumerate(self.blocks):
                last = last_only and i == len(self.blocks) - 1
                if last:
                    real = real[:, -1:]
                x = block(x, allowed, last) * real[..., None]
            return self.norm(x) * real[..., None]

    return Encoder()


# ------------------------------------------------------------------ models


class SequentialParams(TorchParams):
    factors: int = Field(64, ge=4, description="embedding size (a multiple of heads)")
    blocks: int = Field(2, ge=1, le=12, description="transformer blocks")
    heads: int = Field(2, ge=1, description="attention heads")
    ff_mult: int = Field(1, ge=1, le=8, description="feed-forward width / factors")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(200, ge=2, description="items of history used (the newest)")
    loss: Literal["softmax", "bce", "sampled_softmax", "shared_softmax"] = Field(
        "softmax", description="softmax = full cross-entropy over all items; bce / sampled_softmax use n_negatives "
        "per target; shared_softmax: n_negatives distinct items shared by the whole batch (one matrix product)"
    )
    n_negatives: int = Field(256, ge=1, description="uniform negatives per target (per batch for shared_softmax)")
    length_batches: bool = Field(
        True, description="batch users of similar history length (less padding; ML-1M: ~1.9x faster epochs)"
    )
    # defaults of the measured ML-1M run (benchmarks/results/sequential.md), chosen on validation only
    batch_size: int = Field(32, ge=1, description="sequences per training batch")
    lr: float = Field(2e-3, gt=0, description="learning rate (Adam)")
    patience: int = Field(5, ge=0, description="stop after this many epochs without a better validation recall (0 = never)")
    valid_random: int = Field(
        0, ge=0, description="validation holdout: random earlier events per user (0: select on the next item only)"
    )


class BERT4RecParams(SequentialParams):
    ff_mult: int = Field(4, ge=1, le=8, description="feed-forward width / factors")
    mask_prob: float = Field(0.15, gt=0.0, lt=1.0, description="share of positions masked (cloze task)")


_SEQ_SPACE: dict[str, tuple] = {
    "factors": ("categorical", [32, 64, 128, 256]),
    "blocks": ("int", 1, 3),
    "dropout": ("float", 0.0, 0.5),
    "lr": ("log_float", 1e-4, 3e-3),
    "max_len": ("categorical", [50, 100, 200]),
}


class _SequentialBase(TorchRecommender):
    """Shared by SASRec and BERT4Rec: sequences, network, loss, scoring from ordered histories."""

    fold_in: ClassVar[str] = "sequence"
    causal: ClassVar[bool] = True
    extra_tokens: ClassVar[int] = 1  # padding (0); BERT4Rec adds the mask token
    search_space: ClassVar[dict[str, tuple]] = _SEQ_SPACE

    # ----- data
    def _fit(self, X: sp.csr_matrix, train) -> None:
        super()._fit(X, train)
        # scoring after fit: the whole training data's time order (a phase may have trained on less)
        self.order_rank = csr_order_rank(train)
        self._order = rank_matrix(self.train_matrix, self.order_rank)

    def _prepare(self, X: sp.csr_matrix, train) -> None:
        """Every user's last ``max_len`` (+1 for SASRec's shifted targets) items; users with >= 2 events."""
        if train is None:
            return
        L = self.params.max_len + (1 if self.causal else 0)
        counts = np.asarray(train.user_counts)
        self._train_seq = user_sequences(train, L, np.flatnonzero(counts >= 2))
        self._train_len = (self._train_seq != PAD).sum(1)  # for length_batches, once a phase
        self._order = rank_matrix(X, csr_order_rank(train))  # validation scores this phase's histories

    def _cpu_batches(self, generator):
        """Shuffled training sequences in batches, trimmed, on the CPU: of similar lengths
        (:func:`length_batches`), or ``batch_size`` random rows."""
        torch = _torch()
        if self.params.length_batches:
            batches = length_batches(self._train_len, self.params.batch_size, generator)
        else:
            perm = torch.randperm(len(self._train_seq), generator=generator).numpy()
            batches = np.split(perm, np.arange(self.params.batch_size, len(perm), self.params.batch_size))
        for rows in batches:
            yield trim(torch.from_numpy(self._train_seq[rows]))

    def _batches(self, module, generator):
        for seq in self._cpu_batches(generator):
            yield (seq.to(self.device_),)

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {"order_rank": self.order_rank}

    def _set_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.order_rank = np.asarray(arrays["order_rank"])
        self._order = rank_matrix(self.train_matrix, self.order_rank)

    # ----- network and loss
    def _build_module(self):
        p = self.params
        if p.factors % p.heads:
            raise ToprecError(f"model '{self.name}': factors={p.factors} is not a multiple of heads={p.heads}")
        return build_encoder(self.n_items + self.extra_tokens, p.max_len, p.factors, p.blocks, p.heads,
                             p.dropout, p.ff_mult, self.causal)  # fmt: skip

    def _item_weights(self, module):
        return module.item_emb.weight[1 : self.n_items + 1]

    def _target_loss(self, module, hidden, targets):
        """Loss of (N, d) hidden states against (N,) 0-based target items (``toprec.train.losses``)."""
        torch = _torch()
        from ..train import losses

        W = self._item_weights(module)
        p = self.params
        if p.loss == "softmax":
            return losses.softmax_ce(hidden @ W.T, targets)
        if p.loss == "shared_softmax":
            # distinct uniform items for the whole batch: a (N, k) product instead of (N, n_items); the log-Q
            # correction is a constant, and a negative equal to a row's target is dropped from that row
            if p.n_negatives >= self.n_items - 1:
                return losses.softmax_ce(hidden @ W.T, targets)
            neg = torch.randperm(self.n_items, device=hidden.device)[: p.n_negatives]
            pos = (hidden * W[targets]).sum(-1)
            neg_logit = (hidden @ W[neg].T).masked_fill(neg[None, :] == targets[:, None], float("-inf"))
            return losses.sampled_softmax(pos, neg_logit)
        neg = torch.randint(0, self.n_items, (len(targets), p.n_negatives), device=hidden.device)
        pos = (hidden * W[targets]).sum(-1)
        neg_logit = torch.einsum("nd,nkd->nk", hidden, W[neg])
        if p.loss == "bce":
            logits = torch.cat([pos[:, None], neg_logit], 1)
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            weights = torch.ones_like(logits)
            weights[:, 1:] = 1.0 / p.n_negatives  # the positive and the negatives weigh the same in total
            return losses.bce(logits, labels, weights) * (p.n_negatives + 1) / 2
        # uniform proposal: the log-Q correction is a constant; a negative equal to the positive is dropped
        return losses.sampled_softmax(pos, neg_logit.masked_fill(neg == targets[:, None], float("-inf")))

    # ----- scoring
    def _inference_input(self, seq):
        return seq

    def _score_with(self, module, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Ordered sequences from ``history`` -> last position -> dot with every item (scoring dtype)."""
        torch = _torch()
        L = self.params.max_len - (0 if self.causal else 1)
        seq = history_sequences(users, history, self._order, None, L)
        dtype = self._score_dtype()
        dev = next(module.parameters()).device
        out = np.empty((len(seq), self.n_items), dtype=np.float32)
        chunk = 256
        # chunks of users with similar history lengths, so that trimming drops their common padding: random
        # chunks of ML-1M's users all ran at max_len (200), and scoring the validation users took 60% of an epoch
        order = np.argsort((seq != PAD).sum(1), kind="stable")
        with torch.inference_mode():
            W = self._item_weights(module)
            for s in range(0, len(seq), chunk):
                rows = order[s : s + chunk]
                x = self._inference_input(trim(torch.from_numpy(seq[rows])).to(dev))
                h = module(x, last_only=True)[:, -1, :].to(dtype)
                out[rows] = (h @ W.to(dtype).T).to(torch.float32).cpu().numpy()
        return out


@register
class SASRec(_SequentialBase):
    """SASRec: causal self-attention over the user's item sequence, full-softmax next-item loss."""

    name: ClassVar[str] = "sasrec"
    Params: ClassVar[type] = SequentialParams

    def _loss(self, module, batch, epoch):
        (seq,) = batch
        x, y = seq[:, :-1], seq[:, 1:]
        valid = (x > 0) & (y > 0)
        if x.shape[1] == 0 or not bool(valid.any()):
            return self._item_weights(module).sum() * 0.0
        hidden = module(x)[valid]
        return self._target_loss(module, hidden, y[valid] - 1)


@register
class BERT4Rec(_SequentialBase):
    """BERT4Rec: bidirectional self-attention trained on masked items (cloze), full softmax."""

    name: ClassVar[str] = "bert4rec"
    Params: ClassVar[type] = BERT4RecParams
    causal: ClassVar[bool] = False
    extra_tokens: ClassVar[int] = 2  # padding and the mask token (n_items + 1)
    search_space: ClassVar[dict[str, tuple]] = {**_SEQ_SPACE, "mask_prob": ("float", 0.1, 0.4)}

    @property
    def mask_token(self) -> int:
        return self.n_items + 1

    def _batches(self, module, generator):
        for seq in self._cpu_batches(generator):
            inputs, targets = cloze_mask(seq, self.mask_token, self.n_items, self.params.mask_prob, generator)
            yield inputs.to(self.device_), targets.to(self.device_)

    def _loss(self, module, batch, epoch):
        inputs, targets = batch
        chosen = targets >= 0
        hidden = module(inputs)[chosen]
        return self._target_loss(module, hidden, targets[chosen])

    def _inference_input(self, seq):
        torch = _torch()
        mask = torch.full((seq.shape[0], 1), self.mask_token, dtype=seq.dtype, device=seq.device)
        return torch.cat([seq, mask], 1)
