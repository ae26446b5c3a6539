"""Losses for the torch models, and vectorised negative sampling.

Every loss returns the mean over the batch (a scalar tensor). Shapes:
``logits`` (b, n_items) for list-wise losses, ``pos`` (b,) / ``neg`` (b, m)
for pair-wise and sampled ones.

- ``multinomial_nll``: -sum_i x_i log softmax(logits)_i (Liang et al. 2018),
  optionally with per-user weights; the list-wise loss of Multi-VAE/RecVAE.
- ``bpr``: -log sigmoid(pos - neg) (Rendle et al. 2009), averaged over pairs.
- ``bce``: binary cross-entropy on logits, optional per-entry weights.
- ``sampled_softmax``: cross-entropy of the positive against m sampled
  negatives, with the optional log-Q correction for non-uniform samplers.
- ``softmax_ce``: full softmax cross-entropy over all items (next-item models).
- ``focal``: binary focal loss (Lin et al. 2017) on logits.
- ``softmax_focal``: the multi-class focal loss over a positive and its
  sampled negatives, -(1 - p)^gamma log p with p the positive's softmax
  probability among them (gamma=0 is ``sampled_softmax``).

``sample_negatives`` draws uniform item ids for a batch of users from a
seeded generator and excludes the users' positives either approximately
(``exact=False``: colliding draws are redrawn a fixed number of rounds, so a
few positives can remain when a user has seen most of the catalogue) or
exactly (``exact=True``: redrawn until no collision is left; an error when a
user has no unseen item). Each round is one vectorised draw + one
``searchsorted`` over the batch: no loop per example.
"""

from __future__ import annotations

from .base import require_torch

torch = require_torch()
F = torch.nn.functional


def multinomial_nll(logits, targets, weights=None):
    """Mean over users of -sum_i targets_i * log_softmax(logits)_i (weighted by ``weights`` (b,))."""
    ll = (F.log_softmax(logits, dim=-1) * targets).sum(-1)
    if weights is not None:
        ll = ll * weights
    return -ll.mean()


def bpr(pos, neg):
    """Mean of -log sigmoid(pos - neg); ``pos`` (b,) or (b, 1) broadcasts against ``neg`` (b, m)."""
    if neg.dim() == 2 and pos.dim() == 1:
        pos = pos[:, None]
    return -F.logsigmoid(pos - neg).mean()


def bce(logits, targets, weights=None):
    """Mean binary cross-entropy of ``logits`` against 0/1 ``targets`` (optional per-entry weights)."""
    return F.binary_cross_entropy_with_logits(logits, targets, weight=weights, reduction="mean")


def sampled_softmax(pos, neg, log_q_pos=None, log_q_neg=None):
    """Cross-entropy of the positive among [pos, neg_1..neg_m]; log-Q corrected when given."""
    if log_q_pos is not None:
        pos = pos - log_q_pos
    if log_q_neg is not None:
        neg = neg - log_q_neg
    logits = torch.cat([pos.reshape(-1, 1), neg], dim=1)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def softmax_ce(logits, target, ignore_index: int = -100):
    """Full softmax cross-entropy: ``logits`` (b, n_items) (or (b, t, n_items)), ``target`` item ids."""
    if logits.dim() == 3:
        logits = logits.reshape(-1, logits.shape[-1])
        target = target.reshape(-1)
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def focal(logits, targets, gamma: float = 2.0, alpha: float | None = None):
    """Binary focal loss: mean of -a_t (1 - p_t)^gamma log p_t on logits (gamma=0 is BCE).

    The factor (1 - p_t)^gamma is exp(gamma * log sigmoid(-z_t)) with z_t the logit signed by the label: its
    gradient stays finite when p_t reaches 1 in float32 (the plain power's is infinite there for gamma < 1)."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    z_t = logits * (2 * targets - 1)
    loss = ce * torch.exp(gamma * F.logsigmoid(-z_t)) if gamma else ce
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean()


def softmax_focal(pos, neg, gamma: float = 2.0):
    """Mean of -(1 - p)^gamma log p, p = softmax([pos, neg_1..neg_m])[0]: the positive's probability among its
    sampled negatives (``pos`` (b,) or (b, 1), ``neg`` (b, m)); gamma=0 is :func:`sampled_softmax`."""
    logits = torch.cat([pos.reshape(-1, 1), neg], dim=1)
    log_z = torch.logsumexp(logits, dim=1)
    log_p = logits[:, 0] - log_z
    if gamma == 0:
        return -log_p.mean()
    log_rest = torch.logsumexp(neg, dim=1) - log_z  # log(1 - p), finite gradient as p -> 1
    return -(torch.exp(gamma * log_rest) * log_p).mean()


def positive_keys(indptr, indices, n_items: int):
    """Sorted int64 keys ``user * n_items + item`` of a CSR matrix with sorted column indices."""
    indptr = torch.as_tensor(indptr, dtype=torch.int64)
    indices = torch.as_tensor(indices, dtype=torch.int64).to(indptr.device)
    counts = indptr[1:] - indptr[:-1]
    users = torch.repeat_interleave(torch.arange(len(counts), device=indptr.device), counts)
    return users * n_items + indices


def is_positive(keys, users, items, n_items: int):
    """Boolean tensor: is (users[r], items[r, j]) one of the sorted ``keys``."""
    q = users.reshape(-1, 1).to(torch.int64) * n_items + items.to(torch.int64)
    if keys.numel() == 0:
        return torch.zeros_like(q, dtype=torch.bool)
    pos = torch.searchsorted(keys, q.reshape(-1)).clamp_(max=keys.numel() - 1)
    return (keys[pos] == q.reshape(-1)).reshape(q.shape)


def sample_negatives(users, n_neg: int, n_items: int, generator, keys=None, exact: bool = False, rounds: int = 5):
    """(b, n_neg) uniform item ids for ``users``, redrawing those in the users' positives.

    ``keys``: sorted positive keys from :func:`positive_keys` (None = no exclusion).
    Approximate mode redraws collisions ``rounds`` times; exact mode until none remain.
    """
    b = users.shape[0]
    gen_device = generator.device
    items = torch.randint(n_items, (b, n_neg), generator=generator, device=gen_device).to(users.device)
    if keys is None:
        return items
    limit = rounds if not exact else 10_000
    for _ in range(limit):
        bad = is_positive(keys, users, items, n_items)
        n_bad = int(bad.sum())
        if n_bad == 0:
            return items
        redraw = torch.randint(n_items, (n_bad,), generator=generator, device=gen_device).to(users.device)
        items[bad] = redraw
    if exact and bool(is_positive(keys, users, items, n_items).any()):
        from ..errors import ToprecError

        raise ToprecError("negative sampling: a user has (almost) no unseen item to sample")
    return items
