"""Factorization machines with side features: FM (Rendle 2010), DeepFM (Guo et al. 2017), CFM (Xin et al. 2019).

One training pair is (user, item) described by fields, each a weighted set of
features with an embedding ``v`` (``factors`` wide) and a linear weight ``w``:

- user side: the user id (``user_id``), the user's activity bucket
  (``floor(log2(#events))``, ``activity_buckets`` of them), every user-side
  categorical array of the Dataset (``train.user_features``: name -> one value
  per user, e.g. a cluster id; optional), and the user's history (every item
  the user has, weighted ``|H|^-history_norm``: SVD++'s implicit-feedback field,
  which Rendle's FM paper writes as one more multi-hot field);
- item side: the item id and every item side feature of the Dataset
  (``features``: genres, directors, writers, years... each multi-hot, weighted
  1/#values so that every field weighs one).

The FM score is ``w0 + sum_f w_f x_f + sum_{f<g} <v_f, v_g> x_f x_g``. With the
user side's sums ``s_U = sum x v``, ``q_U = sum x^2 v^2`` and the item side's
``s_I``, ``q_I`` the pair term is ``<s_U, s_I> + p(U) + p(I)`` with
``p = (|s|^2 - sum q) / 2``, so scoring every item for a batch of users is one
matrix product ``S_U @ S_I^T`` plus a user column and an item row: no loop over
items, nothing built per (user, item) pair.

Training visits every training event once per epoch as a positive, grouped by
user (``batch_size`` users per step: the user side is summed once per user),
with ``n_negatives`` uniform unseen items per positive
(:func:`toprec.train.losses.sample_negatives`). The positive is left out of
the user's history field for its own pair (else the model learns "an item in
the history is a positive", which the masking of seen items makes useless).
Losses (``loss``): ``bpr`` (positive against each negative), ``bce`` and
``focal`` (Lin et al. 2017; ``gamma``, ``alpha``) with label 1 for the
positive and 0 for the negatives; ``softmax`` (the positive's cross-entropy
among its negatives) and ``softmax-focal`` (the multi-class focal loss over
the same list: -(1 - p)^gamma log p).

- ``fm``: the FM above (``loss=bpr`` by default).
- ``logistic-fm``: the same model trained as a classifier (``loss=bce`` by
  default): Rendle's FM with the logistic link.
- ``deepfm``: FM + an MLP over the concatenated field embeddings (shared with
  the FM part). Scoring splits the MLP's first layer into a user part and an
  item part (computed once per item) that are broadcast-added into one reused
  float32 buffer, a chunk of users at a time: users x items x ``hidden``
  additions and ReLUs are the floor of its ranking cost (hence a narrow
  default, 32, one layer; the paper's 400-400-400 would be ~50x slower).
- ``cfm``: the linear terms + a 3-D CNN over the interaction cube: the outer
  products ``e_f e_g^T`` of the field embeddings stacked along depth, reduced
  by stride-2 ``2x2x2`` convolutions to one vector per pair (Xin et al.). To
  make full ranking possible at all, the cube holds the user-field x
  item-field pairs only (the paper stacks every pair of fields: the pairs
  within one side are constant across the items a user is ranked over); even
  so every (user, item) pair runs the CNN, so ranking all items is orders of
  magnitude slower than FM's matrix product (see benchmarks/results/fm.md).

No time/context field: ``recommend`` has no query time, and the holdout's
targets are random past events as well as the last one, so there is no
context value to score them in.

Fold-in (``estimate``): a user known only by a history gets the fields the
history defines (activity bucket, history field); the user id and user-side
categorical embeddings are zero (unknown). Known users keep their learned ones.
"""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from ..errors import ToprecError
from ..train import TorchParams, TorchRecommender
from .registry import register

#: score chunks: (users x items x width) floats per chunk of the deep / convolutional part
_CHUNK_FLOATS = 1 << 24


class FMParams(TorchParams):
    factors: int = Field(32, ge=1, description="embedding size of every feature")
    loss: Literal["bpr", "bce", "focal", "softmax", "softmax-focal"] = Field("bpr", description="bpr: pairwise; bce / focal: pointwise on sampled negatives; softmax / softmax-focal: the positive against its sampled negatives (list-wise)")
    gamma: float = Field(2.0, ge=0.0, description="focal / softmax-focal focusing exponent (0 = bce / softmax)")
    alpha: float = Field(0.0, ge=0.0, lt=1.0, description="focal loss weight of the positives (0 = unweighted)")
    n_negatives: int = Field(4, ge=1, description="uniform unseen negatives per positive")
    features: str = Field("all", description="item side features to use (comma-separated names; all = every one; none)")
    user_id: bool = Field(True, description="a learned embedding per training user")
    history: bool = Field(True, description="the user's items as a field (SVD++'s implicit feedback)")
    history_norm: float = Field(0.5, ge=0.0, le=1.0, description="history field weight |H|^-history_norm")
    activity_buckets: int = Field(8, ge=0, description="user activity field: floor(log2 #events), capped (0 = off)")
    user_features: bool = Field(True, description="use the Dataset's user-side categorical arrays (train.user_features) when present")
    batch_size: int = Field(32, ge=1, description="users per step (all their training events are the step's positives)")
    lr: float = Field(3e-3, gt=0, description="learning rate (Adam)")
    epochs: int = Field(30, ge=1, description="maximum training epochs")
    patience: int = Field(3, ge=0, description="stop after this many epochs without a better validation recall (0 = never)")


class DeepFMParams(FMParams):
    hidden: int = Field(32, ge=1, description="width of the first hidden layer (the next ones halve it); ranking "
                        "costs users x items x hidden")
    layers: int = Field(1, ge=1, le=4, description="hidden layers of the deep part")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout in the deep part")


class CFMParams(FMParams):
    factors: int = Field(16, ge=2, description="embedding size (a power of two: the CNN halves it down to 1)")
    channels: int = Field(8, ge=1, description="channels of every 3-D convolution")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the output layer")


# ------------------------------------------------------------------ field encoding (numpy)
def item_side(train, names: str, model: str) -> tuple[sp.csr_matrix, np.ndarray, list[str]]:
    """(items x values CSR weighted 1/#values per field, column offsets per field, field names)."""
    available = sorted(getattr(train, "features", {}) or {})
    key = names.strip().lower()
    if key == "all":
        chosen = available
    elif key == "none":
        chosen = []
    else:
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        missing = [n for n in chosen if n not in available]
        if missing:
            raise ToprecError(f"model '{model}': parameter 'features': the dataset has no side feature "
                              f"{', '.join(map(repr, missing))} (it has: {', '.join(available) or 'none'})")  # fmt: skip
    blocks, ptr = [], [0]
    for name in chosen:
        F = sp.csr_matrix(train.features[name].matrix, dtype=np.float32)
        F.data[:] = 1.0
        n = np.diff(F.indptr).astype(np.float32)
        F = sp.csr_matrix(sp.diags(np.where(n > 0, 1.0 / np.maximum(n, 1.0), 0.0).astype(np.float32)) @ F)
        blocks.append(F)
        ptr.append(ptr[-1] + F.shape[1])
    if not blocks:
        return sp.csr_matrix((train.n_items, 0), dtype=np.float32), np.zeros(1, np.int64), []
    M = sp.csr_matrix(sp.hstack(blocks, format="csr", dtype=np.float32))
    M.sort_indices()
    return M, np.asarray(ptr, dtype=np.int64), chosen


def user_codes(train, n_users: int, use: bool) -> tuple[np.ndarray, np.ndarray]:
    """(users x fields int64 codes with global offsets, -1 = none; per-field sizes) from ``train.user_features``."""
    feats = (getattr(train, "user_features", None) or {}) if use else {}
    cols, sizes, offset = [], [], 0
    for name in sorted(feats):
        values = np.asarray(feats[name])
        if values.shape != (n_users,):
            raise ToprecError(f"user feature '{name}': {values.shape} values for {n_users} users")
        uniq, codes = np.unique(values, return_inverse=True)
        cols.append(codes.astype(np.int64) + offset)
        sizes.append(len(uniq))
        offset += len(uniq)
    if not cols:
        return np.zeros((n_users, 0), np.int64), np.zeros(0, np.int64)
    return np.stack(cols, axis=1), np.asarray(sizes, dtype=np.int64)


def activity_bucket(counts: np.ndarray, n_buckets: int) -> np.ndarray:
    """floor(log2(count)) capped at ``n_buckets - 1`` (count 0 -> bucket 0)."""
    c = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return np.minimum(np.floor(np.log2(c)).astype(np.int64), max(n_buckets - 1, 0))


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8).copy()


class _FMBase(TorchRecommender):
    """Shared: fields, batches of users with their positives and sampled negatives, losses, FM-identity scoring."""

    fold_in: ClassVar[str] = "estimate"
    Params: ClassVar[type] = FMParams
    default_loss: ClassVar[str] = "bpr"
    search_space: ClassVar[dict[str, tuple]] = {
        "factors": ("categorical", [16, 32, 64]),
        "lr": ("log_float", 3e-4, 1e-2),
        "n_negatives": ("int", 1, 8),
        "weight_decay": ("log_float", 1e-9, 1e-5),
        "history_norm": ("float", 0.0, 1.0),
        "user_id": ("categorical", [True, False]),
        "loss": ("categorical", ["bpr", "bce", "focal", "softmax", "softmax-focal"]),
    }

    # ----------------------------------------------------------------- data
    def _prepare(self, X: sp.csr_matrix, train) -> None:
        p = self.params
        X = sp.csr_matrix(X, dtype=np.float32)
        X.sort_indices()
        self._X = X
        if not (p.user_id or p.activity_buckets or p.history or getattr(train, "user_features", None)):
            raise ToprecError(f"model '{self.name}': parameter 'user_id': no user-side field is left "
                              "(user_id, history and activity_buckets are all off)")
        if train is not None:
            self.item_side_, self.item_side_ptr_, self.feature_names_ = item_side(train, p.features, self.name)
            self.user_codes_, self.user_code_sizes_ = user_codes(train, X.shape[0], p.user_features)
        self._torch_fields()

    def _torch_fields(self) -> None:
        """Per item-side field: (indices, offsets, weights) tensors for an ``embedding_bag`` over all items."""
        import torch

        M = self.item_side_
        self._item_bags = []
        for f in range(len(self.feature_names_)):
            lo, hi = int(self.item_side_ptr_[f]), int(self.item_side_ptr_[f + 1])
            B = sp.csr_matrix(M[:, lo:hi])
            B.sort_indices()
            self._item_bags.append((torch.from_numpy(B.indices.astype(np.int64) + lo),
                                    torch.from_numpy(B.indptr[:-1].astype(np.int64)),
                                    torch.from_numpy(B.data.astype(np.float32))))  # fmt: skip

    def _extra_state(self) -> dict:
        return {"item_side": self.item_side_, "item_side_ptr": self.item_side_ptr_, "user_codes": self.user_codes_,
                "user_code_sizes": self.user_code_sizes_, "feature_names": _json_array(self.feature_names_)}  # fmt: skip

    def _set_extra_state(self, arrays: dict) -> None:
        self.item_side_ = sp.csr_matrix(arrays["item_side"], dtype=np.float32)
        self.item_side_ptr_ = np.asarray(arrays["item_side_ptr"], dtype=np.int64)
        self.user_codes_ = np.asarray(arrays["user_codes"], dtype=np.int64).reshape(self.n_users, -1)
        self.user_code_sizes_ = np.asarray(arrays["user_code_sizes"], dtype=np.int64)
        self.feature_names_ = json.loads(bytes(np.asarray(arrays["feature_names"], dtype=np.uint8)).decode())
        self._prepare(self.train_matrix, None)

    def _fit(self, X: sp.csr_matrix, train) -> None:
        super()._fit(X, train)
        self._prepare(self.train_matrix, None)  # score on all training events (a phase may have held some out)

    # --------------------------------------------------------------- module
    def _build_module(self):
        return _build(self)

    def _batches(self, module, generator):
        """Per step: ``batch_size`` shuffled users, their training events as positives, sampled negatives."""
        import torch

        from ..train.losses import positive_keys, sample_negatives

        X = self._X
        indptr = torch.from_numpy(X.indptr.astype(np.int64))
        indices = torch.from_numpy(X.indices.astype(np.int64))
        keys = positive_keys(indptr, indices, self.n_items)
        users = torch.from_numpy(np.flatnonzero(np.diff(X.indptr) > 0).astype(np.int64))
        perm = users[torch.randperm(len(users), generator=generator)]
        for s in range(0, len(perm), self.params.batch_size):
            u = perm[s : s + self.params.batch_size]
            counts = indptr[u + 1] - indptr[u]
            local = torch.repeat_interleave(torch.arange(len(u)), counts)  # row of each positive in the batch
            start = torch.repeat_interleave(indptr[u] - torch.cumsum(counts, 0) + counts, counts)
            pos = indices[start + torch.arange(int(counts.sum()))]
            neg = sample_negatives(u[local], self.params.n_negatives, self.n_items, generator, keys)
            yield u, local, pos, neg

    def _loss(self, module, batch, epoch):
        from ..train import losses

        u, local, pos, neg = batch
        hist = _user_history(self._X, u.numpy())
        logits = module.pair_scores(self._user_inputs(u.numpy(), hist), local, pos, torch_items(pos, neg))
        p = self.params
        if p.loss == "bpr":
            return losses.bpr(logits[:, 0], logits[:, 1:])
        if p.loss == "softmax":
            return losses.sampled_softmax(logits[:, 0], logits[:, 1:])
        if p.loss == "softmax-focal":
            return losses.softmax_focal(logits[:, 0], logits[:, 1:], gamma=p.gamma)
        targets = logits.new_zeros(logits.shape)
        targets[:, 0] = 1.0
        if p.loss == "bce":
            return losses.bce(logits, targets)
        return losses.focal(logits, targets, gamma=p.gamma, alpha=p.alpha or None)

    def _train_epoch(self, module, optimizers, epoch, generator) -> float:
        """One pass over every training event; returns the loss averaged over the positives."""
        total, count = 0.0, 0
        for batch in self._batches(module, generator):
            for opt in optimizers.values():
                opt.zero_grad(set_to_none=True)
            loss = self._loss(module, batch, epoch)
            self._step(loss, optimizers.values())
            n = len(batch[2])
            total += float(loss.detach()) * n
            count += n
        return total / max(1, count)

    # -------------------------------------------------------------- user side
    def _user_inputs(self, users: np.ndarray, hist: sp.csr_matrix) -> dict:
        """Index arrays of the user-side fields for ``users`` with histories ``hist`` (rows aligned)."""
        import torch

        p = self.params
        users = np.asarray(users, dtype=np.int64)
        known = (users >= 0) & (users < self.n_users)
        counts = np.diff(hist.indptr)
        out = {
            "uid": torch.from_numpy(np.where(known, users, 0)),
            "known": torch.from_numpy(known),
            "bucket": torch.from_numpy(activity_bucket(counts, p.activity_buckets)),
            "codes": torch.from_numpy(self.user_codes_[np.where(known, users, 0)] if self.user_codes_.shape[1]
                                      else np.zeros((len(users), 0), np.int64)),  # fmt: skip
            "codes_ok": torch.from_numpy(np.broadcast_to(known[:, None], (len(users), self.user_codes_.shape[1])).copy()),
            "counts": torch.from_numpy(counts.astype(np.int64)),
            "h_idx": torch.from_numpy(hist.indices.astype(np.int64)),
            "h_off": torch.from_numpy(hist.indptr[:-1].astype(np.int64)),
        }
        return out

    # --------------------------------------------------------------- scoring
    def _score_with(self, module, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        import torch

        hist = sp.csr_matrix(history, dtype=np.float32)
        hist.sort_indices()
        with torch.inference_mode():
            scores = module.all_scores(self._user_inputs(users, hist))
            return scores.to(torch.float32).cpu().numpy()


def torch_items(pos, neg):
    import torch

    return torch.cat([pos[:, None], neg], dim=1)


def _user_history(X: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
    H = sp.csr_matrix(X[users])
    H.sort_indices()
    return H


# ------------------------------------------------------------------ the torch module
def _build(model: _FMBase):
    import torch

    nn = torch.nn
    F = torch.nn.functional
    p = model.params
    k = p.factors
    n_users, n_items = model.n_users, model.n_items
    n_side = int(model.item_side_.shape[1])
    code_sizes = [int(s) for s in model.user_code_sizes_]
    item_bags = model._item_bags
    kind = model.kind
    n_item_fields = 1 + len(item_bags)
    n_user_fields = int(p.user_id) + int(p.activity_buckets > 0) + len(code_sizes) + int(p.history)

    def emb(n: int, zero: bool = False):
        e = nn.Embedding(max(n, 1), k)
        nn.init.normal_(e.weight, std=0.0 if zero else 0.01)
        return e

    def lin(n: int):
        e = nn.Embedding(max(n, 1), 1)
        nn.init.zeros_(e.weight)
        return e

    class FMModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(()))
            self.item_v, self.item_w = emb(n_items), lin(n_items)
            self.side_v, self.side_w = emb(n_side), lin(n_side)
            if p.user_id:
                self.user_v, self.user_w = emb(n_users), lin(n_users)
            if p.activity_buckets:
                self.act_v, self.act_w = emb(p.activity_buckets), lin(p.activity_buckets)
            if code_sizes:
                self.code_v, self.code_w = emb(sum(code_sizes)), lin(sum(code_sizes))
            if p.history:
                self.hist_v, self.hist_w = emb(n_items), lin(n_items)
            if kind == "deepfm":
                widths = [max(1, p.hidden // (2**i)) for i in range(p.layers)]
                self.first_u = nn.Linear(n_user_fields * k, widths[0])
                self.first_i = nn.Linear(n_item_fields * k, widths[0], bias=False)
                self.tower = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
                self.out = nn.Linear(widths[-1], 1)
                self.drop = nn.Dropout(p.dropout)
            if kind == "cfm":
                depth = n_user_fields * n_item_fields
                convs, d = [], depth
                for _ in range(int(np.log2(k))):
                    kd = 2 if d >= 2 else 1
                    convs.append(nn.Conv3d(1 if not convs else p.channels, p.channels, (kd, 2, 2), stride=(kd, 2, 2)))
                    d = -(-d // kd)  # an odd depth is padded with one zero slice
                self.convs = nn.ModuleList(convs)
                self.drop = nn.Dropout(p.dropout)
                self.out = nn.Linear(p.channels, 1)

        # ---- item side: every item at once (cheap: items x a few features)
        def item_fields(self):
            """(n_items, fields, k) embeddings, (n_items,) linear term, (n_items, k) squared sums."""
            wt, dev = self.item_v.weight.dtype, self.item_v.weight.device
            embs = [self.item_v.weight]
            lin_ = self.item_w.weight[:, 0]
            sq = self.item_v.weight**2
            for idx, off, w in item_bags:
                idx, off, w = idx.to(dev), off.to(dev), w.to(device=dev, dtype=wt)
                embs.append(F.embedding_bag(idx, self.side_v.weight, off, mode="sum", per_sample_weights=w))
                lin_ = lin_ + F.embedding_bag(idx, self.side_w.weight, off, mode="sum", per_sample_weights=w)[:, 0]
                sq = sq + F.embedding_bag(idx, self.side_v.weight**2, off, mode="sum", per_sample_weights=w * w)
            return torch.stack(embs, 1), lin_, sq

        # ---- user side
        def user_fields(self, inp, loo_items=None, rows=None):
            """Per user (or per pair with ``rows``/``loo_items``: the history minus that item):
            list of (n, k) field embeddings, linear term (n,), squared sums (n, k)."""

            wt, dev = self.item_v.weight.dtype, self.item_v.weight.device
            inp = {key: t.to(dev) for key, t in inp.items()}
            if rows is not None:
                rows = rows.to(dev)
            sel = (lambda t: t) if rows is None else (lambda t: t[rows])
            embs, lin_, sq = [], 0.0, 0.0
            known = inp["known"].to(wt)[:, None]
            if p.user_id:
                e = self.user_v(inp["uid"]) * known
                embs.append(sel(e))
                lin_ = lin_ + sel(self.user_w(inp["uid"])[:, 0] * known[:, 0])
                sq = sq + sel(e**2)
            if p.activity_buckets:
                e = self.act_v(inp["bucket"])
                embs.append(sel(e))
                lin_ = lin_ + sel(self.act_w(inp["bucket"])[:, 0])
                sq = sq + sel(e**2)
            for c in range(len(code_sizes)):
                ok = inp["codes_ok"][:, c].to(wt)[:, None]
                e = self.code_v(inp["codes"][:, c]) * ok
                embs.append(sel(e))
                lin_ = lin_ + sel(self.code_w(inp["codes"][:, c])[:, 0] * ok[:, 0])
                sq = sq + sel(e**2)
            if p.history:
                idx, off = inp["h_idx"], inp["h_off"]
                R = F.embedding_bag(idx, self.hist_v.weight, off, mode="sum")
                Q = F.embedding_bag(idx, self.hist_v.weight**2, off, mode="sum")
                L = F.embedding_bag(idx, self.hist_w.weight, off, mode="sum")[:, 0]
                m = inp["counts"].to(wt)
                R, Q, L, m = sel(R), sel(Q), sel(L), sel(m)
                if loo_items is not None:
                    v = self.hist_v(loo_items)
                    R, Q, L, m = R - v, Q - v**2, L - self.hist_w(loo_items)[:, 0], m - 1
                w = m.clamp(min=1.0) ** (-p.history_norm)
                e = R * w[:, None]
                embs.append(e)
                lin_ = lin_ + L * w
                sq = sq + Q * (w * w)[:, None]
            return embs, lin_, sq

        # ---- scores
        def pair_scores(self, inp, rows, pos, items):
            """(P, 1 + n_neg) scores of each positive pair's user against its items (positive first)."""
            dev = self.item_v.weight.device
            rows, pos, items = rows.to(dev), pos.to(dev), items.to(dev)
            u_embs, u_lin, u_sq = self.user_fields(inp, loo_items=pos if p.history else None, rows=rows)
            i_fields, i_lin, i_sq = self.item_fields()
            s_u = sum(u_embs)
            s_i = i_fields.sum(1)
            out = self.bias + self.linear_and_pairs(s_u, u_lin, u_sq, s_i, i_lin, i_sq, items)
            if kind == "deepfm":
                h_u = self.first_u(torch.cat(u_embs, -1))
                h_i = self.first_i(i_fields.reshape(n_items, -1))
                out = out + self.deep(h_u[:, None, :] + h_i[items])
            if kind == "cfm":
                out = out + self.cnn(torch.stack(u_embs, 1)[:, None].expand(-1, items.shape[1], -1, -1),
                                     i_fields[items])  # fmt: skip
            return out

        def linear_and_pairs(self, s_u, u_lin, u_sq, s_i, i_lin, i_sq, items):
            if kind == "cfm":  # CFM: the CNN replaces the FM pair term
                return u_lin[:, None] + i_lin[items]
            p_u = 0.5 * ((s_u**2).sum(-1) - u_sq.sum(-1))
            p_i = 0.5 * ((s_i**2).sum(-1) - i_sq.sum(-1))
            return (s_u[:, None, :] * s_i[items]).sum(-1) + (u_lin + p_u)[:, None] + (i_lin + p_i)[items]

        def deep(self, z):
            z = self.drop(torch.relu(z))
            for layer in self.tower:
                z = self.drop(torch.relu(layer(z)))
            return self.out(z)[..., 0]

        def deep_scores(self, z):
            """The deep part on first-layer sums ``z`` (modified in place), in float32: one pass over a
            (users, items, width) buffer is the cost of ranking with DeepFM; every (user, item) is computed
            on its own, so its score does not depend on the batch."""
            z.clamp_(min=0)
            for layer in self.tower:
                z = torch.relu(F.linear(z, layer.weight.float(), layer.bias.float()))
            return z @ self.out.weight[0].float() + self.out.bias.float()

        def cnn(self, ue, ie):
            """CFM's part for user fields ``ue`` (..., Fu, k) against item fields ``ie`` (..., Fi, k)."""
            lead = ie.shape[:-2]
            cube = torch.einsum("...ak,...bl->...abkl", ue, ie).reshape(-1, 1, n_user_fields * n_item_fields, k, k)
            z = cube
            for conv in self.convs:
                if conv.kernel_size[0] == 2 and z.shape[2] % 2:
                    z = F.pad(z, (0, 0, 0, 0, 0, 1))
                z = torch.relu(conv(z))
            z = z.mean(dim=(2, 3, 4))
            return self.out(self.drop(z))[:, 0].reshape(lead)

        def all_scores(self, inp):
            """(users, n_items) scores: FM identity (matrix product); the deep / CNN part in chunks of users."""
            u_embs, u_lin, u_sq = self.user_fields(inp)
            i_fields, i_lin, i_sq = self.item_fields()
            n = len(inp["uid"])
            s_i = i_fields.sum(1)
            if kind == "cfm":
                out = u_lin[:, None] + i_lin[None, :] + self.bias
            else:
                s_u = sum(u_embs)
                p_u = 0.5 * ((s_u**2).sum(-1) - u_sq.sum(-1))
                p_i = 0.5 * ((s_i**2).sum(-1) - i_sq.sum(-1))
                out = s_u @ s_i.T + (u_lin + p_u)[:, None] + (i_lin + p_i + self.bias)[None, :]
            if kind == "deepfm":  # float32 (the users x items x width part dominates; see deep_scores)
                h_u = self.first_u(torch.cat(u_embs, -1)).float()
                h_i = self.first_i(i_fields.reshape(n_items, -1)).float()
                step = max(1, _CHUNK_FLOATS // max(1, n_items * h_i.shape[1]))
                buf = torch.empty((min(step, n), n_items, h_i.shape[1]), dtype=torch.float32, device=h_i.device)
                for s in range(0, n, step):
                    z = buf[: min(step, n - s)]
                    torch.add(h_u[s : s + step, None, :], h_i[None], out=z)
                    out[s : s + step] += self.deep_scores(z)
            if kind == "cfm":
                ue = torch.stack(u_embs, 1)
                per_pair = n_user_fields * n_item_fields * k * k * max(1, p.channels)
                step = max(1, _CHUNK_FLOATS // max(1, n_items * per_pair // 4))
                for s in range(0, n, step):
                    chunk = ue[s : s + step]
                    out[s : s + step] += self.cnn(chunk[:, None].expand(-1, n_items, -1, -1),
                                                  i_fields[None].expand(len(chunk), -1, -1, -1))  # fmt: skip
            return out

    return FMModule()


@register
class FM(_FMBase):
    """Factorization machine over user, history, user-side, item and item-side fields (BPR / BCE / focal)."""

    name: ClassVar[str] = "fm"
    kind: ClassVar[str] = "fm"


class LogisticFMParams(FMParams):
    loss: Literal["bpr", "bce", "focal", "softmax", "softmax-focal"] = Field("bce", description="bce / focal: pointwise on sampled negatives; bpr: pairwise; softmax / softmax-focal: list-wise over the sampled negatives")


@register
class LogisticFM(_FMBase):
    """The FM as a classifier: logistic link, binary cross-entropy (or focal) on sampled negatives."""

    name: ClassVar[str] = "logistic-fm"
    kind: ClassVar[str] = "fm"
    Params: ClassVar[type] = LogisticFMParams


@register
class DeepFM(_FMBase):
    """DeepFM: the FM plus an MLP over the concatenated field embeddings (shared embeddings)."""

    name: ClassVar[str] = "deepfm"
    kind: ClassVar[str] = "deepfm"
    Params: ClassVar[type] = DeepFMParams
    search_space: ClassVar[dict[str, tuple]] = {
        **_FMBase.search_space,
        "hidden": ("categorical", [32, 64, 128]),
        "layers": ("int", 1, 2),
        "dropout": ("float", 0.0, 0.5),
    }


@register
class CFM(_FMBase):
    """Convolutional FM: outer products of user-field and item-field embeddings, a 3-D CNN, linear terms."""

    name: ClassVar[str] = "cfm"
    kind: ClassVar[str] = "cfm"
    Params: ClassVar[type] = CFMParams
    search_space: ClassVar[dict[str, tuple]] = {
        **{k: v for k, v in _FMBase.search_space.items() if k != "factors"},
        "factors": ("categorical", [8, 16, 32]),
        "channels": ("categorical", [4, 8, 16]),
    }

    def __init__(self, **params):
        super().__init__(**params)
        k = self.params.factors
        if k & (k - 1):
            raise ToprecError(f"model 'cfm': parameter 'factors'={k}: must be a power of two (the CNN halves it to 1)")
