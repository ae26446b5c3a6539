"""S3Rec (Zhou et al., CIKM 2020): self-supervised pre-training, then SASRec fine-tuning.

Pre-training teaches SASRec's transformer four mutual-information objectives
on the training sequences, with the encoder made bidirectional and a mask
token added; fine-tuning is then exactly :class:`~toprec.models.sequential.SASRec`
(causal, full-softmax next-item loss, validation and early stopping by the
shared trainer), started from the pre-trained weights instead of a random
initialisation. The saved model is SASRec's network: pre-training heads,
attribute embeddings and the mask token are dropped after pre-training, so
scoring, fold-in (``fold_in = "sequence"``) and save/load are SASRec's.

The objectives, for a batch of sequences in which a share ``mask_prob`` of the
positions is replaced by the mask token (``h_t``: the encoder's output at
position t; ``a``: an attribute value's embedding; ``e_i``: item i's
embedding, tied with the input and output embedding):

- **AAP** (item - attribute): at every *unmasked* position, binary
  cross-entropy of ``(W_aap h_t) . a`` against the item's own attributes
  (multi-hot over every value of the chosen side features);
- **MIP** (sequence - item): at every *masked* position, the hidden item
  against a uniformly drawn item, ``-log sigmoid((W_mip h_t).(e_pos - e_neg))``;
- **MAP** (sequence - attribute): at every masked position, AAP's loss for the
  hidden item's attributes (its own head ``W_map``);
- **SP** (sequence - segment): a random contiguous segment (length 1 to n/2)
  is masked out of the sequence; the masked sequence's newest output, through
  ``W_sp``, must be closer to the encoding of that segment (the segment at its
  place, every other position masked) than to a same-length segment taken from
  the batch's other items: ``-log sigmoid(s_pos - s_neg)``.

Each objective is averaged over its positions (AAP and MAP: summed over the
attribute values) and the pre-training loss is their weighted sum
(``aap_weight`` 0.2, ``mip_weight`` 1, ``map_weight`` 1, ``sp_weight`` 0.5 as
in the authors' scripts). Differences from the authors' code, on purpose:
MIP and SP use the pairwise loss on logits (``softplus(s_neg - s_pos)``)
instead of binary cross-entropy on ``sigmoid(sigmoid(s_pos) - sigmoid(s_neg))``,
whose gradient vanishes before the pair is separated; each epoch takes one
random prefix of every user's last ``max_len`` items (the authors enumerate
every prefix: ``max_len`` times the work for the same distribution);
sequences, masks, segments and negatives are drawn per batch with torch ops
from one seeded generator (no Python loop over users or positions).

Attributes are the Dataset's item side information (``features``: genres,
directors, writers, years...), stacked into one multi-hot table. **Without
side information** (or ``features`` naming none) AAP and MAP are skipped and
pre-training runs MIP and SP only; a log line says so (the self-supervised
sequence objectives still help, and a model that works on every dataset is
what a toolkit's users expect; an unknown feature name is an error).

Pre-training runs inside the trainer's phase (each phase pre-trains on that
phase's training data only: the validation events are never seen) on its own
random stream, so the trainer's shuffles and dropout are SASRec's: with
``pretrain_epochs=0`` the model *is* SASRec, bit for bit. Resuming from a
checkpoint pre-trains again (deterministically) before the checkpoint's
weights replace the result.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from .. import progress
from .ease import side_rows
from .registry import register
from .sequential import _SEQ_SPACE, PAD, SASRec, SequentialParams, _torch, build_encoder, trim

OBJECTIVES = ("aap", "mip", "map", "sp")


class S3RecParams(SequentialParams):
    pretrain_epochs: int = Field(
        10, ge=0, description="self-supervised pre-training epochs before fine-tuning (0 = SASRec)"
    )
    pretrain_lr: float = Field(1e-3, gt=0, description="learning rate of pre-training (Adam)")
    pretrain_batch_size: int = Field(128, ge=1, description="sequences per pre-training batch")
    mask_prob: float = Field(0.2, gt=0.0, lt=1.0, description="share of positions masked for MIP / MAP")
    aap_weight: float = Field(0.2, ge=0, description="weight of associated attribute prediction (item - attribute)")
    mip_weight: float = Field(1.0, ge=0, description="weight of masked item prediction (sequence - item)")
    map_weight: float = Field(1.0, ge=0, description="weight of masked attribute prediction (sequence - attribute)")
    sp_weight: float = Field(0.5, ge=0, description="weight of segment prediction (sequence - segment)")
    features: str = Field(
        "all", description="comma-separated side features used as attributes (genres,directors,...); all = every one"
    )


# ------------------------------------------------------------------ batch construction (torch, vectorised)


def random_prefix(seq, generator):
    """Each left-padded row cut to a uniform random prefix of its items (at least ``min(2, n)``), still left-padded."""
    torch = _torch()
    n = (seq != PAD).sum(1)
    lo = n.clamp(max=2)
    keep = lo + (torch.rand(n.shape, generator=generator) * (n - lo + 1).to(torch.float32)).long().clamp(max=n - lo)
    shift = (n - keep)[:, None]
    src = torch.arange(seq.shape[1])[None] - shift
    return torch.where(src >= 0, seq.gather(1, src.clamp(min=0)), torch.zeros_like(seq))


def mask_items(seq, mask_token: int, n_items: int, prob: float, generator):
    """``(inputs, masked, negatives)``: positions masked with probability ``prob``, one uniform negative id each."""
    torch = _torch()
    masked = (torch.rand(seq.shape, generator=generator) < prob) & (seq != PAD)
    inputs = torch.where(masked, torch.full_like(seq, mask_token), seq)
    negatives = torch.randint(1, n_items + 1, seq.shape, generator=generator)
    return inputs, masked, negatives


def segments(seq, mask_token: int, generator):
    """Segment prediction inputs of a left-padded (B, L) batch: ``(masked_seq, pos_seg, neg_seg, valid)``.

    A row with n >= 2 items gets a segment of length s ~ U{1..n//2} at a
    uniform start; ``masked_seq`` has it replaced by the mask token,
    ``pos_seg`` keeps only it (the row's other items masked, padding kept),
    ``neg_seg`` puts at its place s consecutive items drawn from the batch's
    items laid end to end. ``valid`` marks the rows with a segment.
    """
    torch = _torch()
    B, L = seq.shape
    real = seq != PAD
    n = real.sum(1)
    valid = n >= 2
    half = (n // 2).clamp(min=1)
    s = 1 + (torch.rand(B, generator=generator) * half.to(torch.float32)).long().clamp(max=half - 1)
    off = (torch.rand(B, generator=generator) * (n - s + 1).clamp(min=1).to(torch.float32)).long()
    off = torch.minimum(off, (n - s).clamp(min=0))
    lo = (L - n) + off
    j = torch.arange(L)[None]
    inseg = (j >= lo[:, None]) & (j < (lo + s)[:, None]) & valid[:, None]
    mask = torch.full_like(seq, mask_token)
    masked_seq = torch.where(inseg, mask, seq)
    outside = torch.where(real, mask, seq)  # padding stays padding
    pos_seg = torch.where(inseg, seq, outside)
    flat = seq[real]  # every row's items, oldest first, rows one after the other
    T = max(int(flat.numel()), 1)
    start = (torch.rand(B, generator=generator) * (T - s + 1).clamp(min=1).to(torch.float32)).long()
    idx = (start[:, None] + (j - lo[:, None])).clamp(0, T - 1)
    neg_items = flat[idx] if flat.numel() else seq
    neg_seg = torch.where(inseg, neg_items, outside)
    return masked_seq, pos_seg, neg_seg, valid


def build_heads(factors: int, n_values: int):
    """The pre-training heads: one linear map per objective and the attribute embeddings."""
    torch = _torch()
    nn = torch.nn

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.aap = nn.Linear(factors, factors)
            self.mip = nn.Linear(factors, factors)
            self.map = nn.Linear(factors, factors)
            self.sp = nn.Linear(factors, factors)
            self.attr_emb = nn.Parameter(torch.randn(max(n_values, 1), factors) * factors**-0.5)

    return Heads()


# ------------------------------------------------------------------ model


@register
class S3Rec(SASRec):
    """S3Rec: SASRec pre-trained on four self-supervised objectives (AAP, MIP, MAP, SP) over items and attributes."""

    name: ClassVar[str] = "s3rec"
    Params: ClassVar[type] = S3RecParams
    search_space: ClassVar[dict[str, tuple]] = {
        **_SEQ_SPACE,
        "pretrain_epochs": ("categorical", [5, 10, 20, 40]),
        "mask_prob": ("float", 0.1, 0.5),
        "aap_weight": ("log_float", 0.05, 1.0),
        "map_weight": ("log_float", 0.1, 2.0),
        "sp_weight": ("log_float", 0.05, 1.0),
    }

    def __init__(self, **params):
        super().__init__(**params)
        self._pretrain_data = None
        self.pretrain_history: list[dict] = []
        self.attributes_: list[str] = []

    # ----- data
    def _prepare(self, X: sp.csr_matrix, train) -> None:
        super()._prepare(X, train)
        if train is None:
            return
        p = self.params
        S, names = side_rows(train, p.features, 1.0, "none", self.name)  # values x items
        if S.shape[0] == 0 and p.pretrain_epochs > 0 and (p.aap_weight > 0 or p.map_weight > 0):
            progress.log(f"{self.name}: no item side information in the dataset: pre-training with MIP and SP "
                         "only (AAP and MAP skipped)")  # fmt: skip
        self.attributes_ = names if S.shape[0] else []
        attrs = np.zeros((self.n_items + 1, S.shape[0]), dtype=bool)  # row 0 = padding: no attribute
        if S.shape[0]:
            attrs[1:] = sp.csr_matrix(S.T).toarray() > 0
        self._pretrain_data = (self._train_seq[:, -p.max_len :], attrs)

    def _build_module(self):
        module = super()._build_module()
        if self._pretrain_data is not None:
            seq, attrs = self._pretrain_data
            self._pretrain_data = None  # once per phase; load builds the module without pre-training
            self.pretrain_history = []
            if self.params.pretrain_epochs > 0 and len(seq):
                self._pretrain(module, seq, attrs)
        return module

    # ----- pre-training
    def _pretrain(self, module, seq: np.ndarray, attrs: np.ndarray) -> None:
        """Pre-train ``module`` (SASRec's encoder, on the CPU) in place, on its own random stream."""
        torch = _torch()
        p = self.params
        dev = self.device_
        devices = [torch.cuda.current_device()] if str(dev).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(p.seed + 7919)
            generator = torch.Generator().manual_seed(p.seed + 7919)
            net = build_encoder(self.n_items + 2, p.max_len, p.factors, p.blocks, p.heads, p.dropout, p.ff_mult,
                                causal=False)  # fmt: skip
            state = module.state_dict()
            mask_row = torch.randn(1, p.factors, generator=generator) * p.factors**-0.5
            net.load_state_dict({**state, "item_emb.weight": torch.cat([state["item_emb.weight"], mask_row])})
            heads = build_heads(p.factors, attrs.shape[1])
            net, heads = net.to(dev), heads.to(dev)
            A = torch.from_numpy(attrs).to(dev)
            opt = self._adam(list(net.parameters()) + list(heads.parameters()), p.pretrain_lr, p.weight_decay)
            use_attr = attrs.shape[1] > 0
            weights = {"aap": p.aap_weight if use_attr else 0.0, "mip": p.mip_weight,
                       "map": p.map_weight if use_attr else 0.0, "sp": p.sp_weight}  # fmt: skip
            data = torch.from_numpy(np.ascontiguousarray(seq))
            net.train()
            with progress.task(f"{self.name}: pretrain", total=p.pretrain_epochs) as bar:
                for epoch in range(1, p.pretrain_epochs + 1):
                    t0 = time.perf_counter()
                    sums = dict.fromkeys(OBJECTIVES, 0.0)
                    counts = dict.fromkeys(OBJECTIVES, 0)
                    perm = torch.randperm(len(data), generator=generator)
                    for s in range(0, len(data), p.pretrain_batch_size):
                        batch = trim(random_prefix(data[perm[s : s + p.pretrain_batch_size]], generator))
                        parts = self._pretrain_losses(net, heads, A, batch, generator, weights)
                        loss = sum(weights[k] * v for k, v in parts.items())
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        for k, v in parts.items():
                            sums[k] += float(v.detach()) * len(batch)
                            counts[k] += len(batch)
                    logs = {k: sums[k] / counts[k] for k in OBJECTIVES if counts[k]}
                    logs["loss"] = sum(weights[k] * v for k, v in logs.items())
                    logs["seconds"] = time.perf_counter() - t0
                    if not math.isfinite(logs["loss"]):
                        from ..errors import ToprecError

                        raise ToprecError(f"model '{self.name}': pre-training diverged at epoch {epoch}; lower "
                                          f"pretrain_lr (now {p.pretrain_lr:g})")  # fmt: skip
                    self.pretrain_history.append(logs)
                    shown = " ".join(f"{k} {logs[k]:.4g}" for k in (*OBJECTIVES, "loss") if k in logs)
                    bar.update(completed=epoch, description=f"{self.name}: pretrain epoch {epoch} {shown}")
            trained = {k: v.detach().cpu() for k, v in net.state_dict().items()}
            trained["item_emb.weight"] = trained["item_emb.weight"][: self.n_items + 1]
            module.load_state_dict(trained)

    def _pretrain_losses(self, net, heads, A, batch, generator, weights: dict) -> dict:
        """The unweighted objectives of one batch (those with weight 0 are not computed)."""
        torch = _torch()
        F = torch.nn.functional
        dev = self.device_
        mask_token = self.n_items + 1
        out = {}
        inputs, masked, neg = mask_items(batch, mask_token, self.n_items, self.params.mask_prob, generator)
        if any(weights[k] > 0 for k in ("aap", "mip", "map")):
            inputs, masked, neg, seq = inputs.to(dev), masked.to(dev), neg.to(dev), batch.to(dev)
            h = net(inputs)
            E = net.item_emb.weight
            if weights["aap"] > 0:
                unmasked = (seq != PAD) & ~masked
                out["aap"] = self._attribute_loss(heads.aap(h[unmasked]), heads.attr_emb, A[seq[unmasked]])
            if masked.any():
                hm = h[masked]
                if weights["mip"] > 0:
                    z = heads.mip(hm)
                    out["mip"] = F.softplus(-(z * (E[seq[masked]] - E[neg[masked]])).sum(-1)).mean()
                if weights["map"] > 0:
                    out["map"] = self._attribute_loss(heads.map(hm), heads.attr_emb, A[seq[masked]])
        if weights["sp"] > 0:
            masked_seq, pos_seg, neg_seg, valid = segments(batch, mask_token, generator)
            if bool(valid.any()):
                B = int(valid.sum())
                both = torch.cat([masked_seq[valid], pos_seg[valid], neg_seg[valid]]).to(dev)
                last = net(both)[:, -1]
                ctx, pos, negs = heads.sp(last[:B]), last[B : 2 * B], last[2 * B :]
                out["sp"] = F.softplus(-(ctx * (pos - negs)).sum(-1)).mean()
        return out

    @staticmethod
    def _attribute_loss(z, attr_emb, targets):
        """Binary cross-entropy over every attribute value, summed over values, averaged over positions."""
        F = _torch().nn.functional
        if len(z) == 0:
            return z.sum() * 0.0
        logits = z @ attr_emb.T
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum") / len(z)

    # ----- persist: the pre-training curve goes with the model (the network is SASRec's)
    def _extra_state(self) -> dict[str, np.ndarray]:
        """SASRec's, and the pre-training curve (epochs x (aap, mip, map, sp, loss); -1 = objective skipped)."""
        out = super()._extra_state()
        curve = np.array([[h.get(k, -1.0) for k in (*OBJECTIVES, "loss")] for h in self.pretrain_history],
                         dtype=np.float64).reshape(-1, len(OBJECTIVES) + 1)  # fmt: skip
        out["pretrain_curve"] = curve
        return out

    def _set_extra_state(self, arrays: dict[str, np.ndarray]) -> None:
        super()._set_extra_state(arrays)
        curve = np.asarray(arrays.get("pretrain_curve", np.zeros((0, len(OBJECTIVES) + 1))))
        keys = (*OBJECTIVES, "loss")
        self.pretrain_history = [{k: float(v) for k, v in zip(keys, row) if v >= 0} for row in curve]
