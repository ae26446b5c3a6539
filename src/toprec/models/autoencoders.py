"""Autoencoder recommenders on the shared torch trainer: Multi-DAE, Multi-VAE, RecVAE, CDAE, AutoRec.

Each user is a row of the binary users x items matrix; a model encodes the
row and decodes scores for every item. Training batches are built on the
device from a CSR copy there (``toprec.train.base.RowMatrix``); the input
layer reads a batch as an ``embedding_bag`` over its events, so forward and
backward touch only the weight rows of items in the batch (a few % of the
catalogue) while scoring multiplies dense history rows by the same weight.
Losses are list-wise over the whole row (no sampling); the epoch loop,
validation, early stopping, checkpoints and scoring are the shared ones
(``toprec.train``).

- ``multidae`` (Liang et al. 2018): [items -> latent -> items], tanh, L2-normalised
  input with dropout, multinomial log-likelihood.
- ``multivae`` (Liang et al. 2018): [items -> (hidden ->) 2 x latent] encoder,
  [latent -> (hidden ->) items] decoder, tanh; KL weight annealed linearly,
  beta = min(``anneal_cap``, updates / ``anneal_steps``). No hidden layer by
  default (``hidden=0``); the paper's 600 scored lower on ML-1M validation.
- ``recvae`` (Shenbin et al. 2020): the Multi-VAE likelihood with a deeper
  encoder (5 dense layers, swish, residual sums, layer norm), a composite
  prior (mixture of N(0, 1), the posterior of the encoder as it was after the
  previous encoder phase, and a wide N(0, e^10)), a KL weight per user of
  ``gamma`` x the user's number of events, and alternating updates: each epoch
  runs ``enc_epochs`` passes updating the encoder (input dropout) and then
  ``dec_epochs`` passes updating the decoder (no dropout; the encoder is not
  back-propagated then, it does not change).
- ``cdae`` (Wu et al. 2016): one hidden layer (sigmoid) fed by the corrupted row
  plus a learned per-user vector; binary cross-entropy over all items (the
  dense full loss instead of the paper's sampled negatives). Users without a
  learned vector (unknown, or folded in through ``history``) use a zero user
  vector, i.e. the item part of the network only. Known users keep their
  vector, so the model is not purely history-based. ``loss=multinomial`` is
  Multi-CDAE: the same network trained with Multi-VAE's multinomial
  log-likelihood (softmax over the row's items) instead of the BCE.
- ``autorec``: U-AutoRec (Sedhain et al. 2015) adapted to implicit data: each
  user's 0/1 row is reconstructed (sigmoid hidden layer, identity output) with
  squared error over *all* entries (the explicit-rating form's "observed only"
  loss is degenerate when every observed value is 1). U- rather than I-AutoRec
  because a user's scores then come from the history alone, so new users fold
  in without retraining.

torch is imported lazily: this module registers its models without torch;
constructing one without torch is a one-line error ("pip install torch").
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar, Literal

from pydantic import Field

from ..train import TorchParams, TorchRecommender
from .registry import register


@functools.cache
def _nets():
    """The torch modules (defined on first use so that importing toprec does not import torch)."""
    import torch
    from torch import nn

    F = nn.functional

    def prepare(x, normalise: bool, dropout: float, training: bool):
        """L2-normalise rows and drop entries (scaled by 1/(1-p)), dense or bag input alike."""
        if isinstance(x, tuple):  # (indices, offsets, values, row of entry) from RowMatrix.bag
            idx, off, val, row = x
            if normalise:
                sq = torch.zeros(off.shape[0], dtype=val.dtype, device=val.device).index_add_(0, row, val * val)
                val = val / sq.sqrt().clamp_min(1e-12)[row]
            if training and dropout > 0:
                val = val * (torch.rand(val.shape, device=val.device) >= dropout) / (1 - dropout)
            return idx, off, val
        if normalise:
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return F.dropout(x, p=dropout, training=training)

    class SparseIn(nn.Module):
        """The input layer, weight (n_items, out): ``x @ W + b`` for dense rows, ``embedding_bag`` for bags.

        Training rows are sparse (a few % of the catalogue), so the bag form
        touches only the rows of W that a batch uses, forward and backward.
        """

        def __init__(self, n_in: int, n_out: int, init: str = "xavier"):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(n_in, n_out))
            self.bias = nn.Parameter(torch.empty(n_out))
            if init == "xavier":  # Liang et al.: Glorot weights, N(0, 0.001) biases
                nn.init.xavier_uniform_(self.weight)
                nn.init.normal_(self.bias, std=0.001)
            else:  # torch.nn.Linear's default
                bound = 1 / math.sqrt(n_in)
                nn.init.uniform_(self.weight, -bound, bound)
                nn.init.uniform_(self.bias, -bound, bound)

        def forward(self, x):
            if isinstance(x, tuple):
                idx, off, val = x
                out = F.embedding_bag(idx, self.weight, off, mode="sum", per_sample_weights=val.to(self.weight.dtype))
                return out + self.bias
            return x @ self.weight + self.bias

    class MultVAENet(nn.Module):
        """Encoder dims [n_items, *hidden, latent] (x2 when variational), decoder mirrored; tanh."""

        def __init__(self, n_items: int, hidden: list[int], latent: int, variational: bool):
            super().__init__()
            self.variational = variational
            self.latent = latent
            enc = [*hidden, latent * (2 if variational else 1)]
            self.first = SparseIn(n_items, enc[0])
            self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc[:-1], enc[1:]))
            dec = [latent, *reversed(hidden), n_items]
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))
            for layer in [*self.encoder, *self.decoder]:
                nn.init.xavier_uniform_(layer.weight)
                nn.init.normal_(layer.bias, std=0.001)

        def encode(self, x, dropout: float):
            h = self.first(prepare(x, True, dropout, self.training))
            for layer in self.encoder:
                h = layer(torch.tanh(h))
            if not self.variational:
                return torch.tanh(h), None  # the DAE's code is an ordinary tanh layer
            return h[:, : self.latent], h[:, self.latent :]

        def decode(self, z):
            h = z
            for i, layer in enumerate(self.decoder):
                h = layer(h)
                if i < len(self.decoder) - 1:
                    h = torch.tanh(h)
            return h

        def forward(self, x, dropout: float = 0.0):
            mu, logvar = self.encode(x, dropout)
            if self.variational and self.training:
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            else:
                z = mu
            return self.decode(z), mu, logvar

    def swish(x):
        return x * torch.sigmoid(x)

    class RecVAEEncoder(nn.Module):
        def __init__(self, n_items: int, hidden: int, latent: int, depth: int = 5, eps: float = 0.1):
            super().__init__()
            self.first = SparseIn(n_items, hidden, init="torch")
            self.fc = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
            self.ln = nn.ModuleList(nn.LayerNorm(hidden, eps=eps) for _ in range(depth))
            self.mu = nn.Linear(hidden, latent)
            self.logvar = nn.Linear(hidden, latent)

        def forward(self, x, dropout: float):
            h = self.ln[0](swish(self.first(prepare(x, True, dropout, self.training))))
            acc = h  # running sum of the previous layers' outputs (dense residuals)
            for fc, ln in zip(self.fc, self.ln[1:]):
                h = ln(swish(fc(h) + acc))
                acc = acc + h
            return self.mu(h), self.logvar(h)

    class RecVAENet(nn.Module):
        MIXTURE = (3 / 20, 3 / 4, 1 / 10)  # standard normal, previous posterior, wide normal
        WIDE_LOGVAR = 10.0

        def __init__(self, n_items: int, hidden: int, latent: int):
            super().__init__()
            self.encoder = RecVAEEncoder(n_items, hidden, latent)
            self.prior_encoder = RecVAEEncoder(n_items, hidden, latent)
            self.prior_encoder.load_state_dict(self.encoder.state_dict())
            self.prior_encoder.requires_grad_(False)
            self.decoder = nn.Linear(latent, n_items)

        def update_prior(self):
            self.prior_encoder.load_state_dict(self.encoder.state_dict())

        def log_prior(self, z, post_mu, post_logvar):
            zeros = torch.zeros_like(z)
            parts = torch.stack(
                [
                    _log_norm_pdf(z, zeros, zeros) + math.log(self.MIXTURE[0]),
                    _log_norm_pdf(z, post_mu, post_logvar) + math.log(self.MIXTURE[1]),
                    _log_norm_pdf(z, zeros, zeros + self.WIDE_LOGVAR) + math.log(self.MIXTURE[2]),
                ],
                dim=-1,
            )
            return torch.logsumexp(parts, dim=-1)

        def scores(self, x):
            mu, _ = self.encoder(x, 0.0)
            return self.decoder(mu)

    class CDAENet(nn.Module):
        def __init__(self, n_users: int, n_items: int, hidden: int):
            super().__init__()
            self.n_users = n_users
            self.item_in = SparseIn(n_items, hidden, init="torch")
            self.user = nn.Embedding(n_users, hidden)
            self.out = nn.Linear(hidden, n_items)
            nn.init.normal_(self.user.weight, std=0.01)

        def forward(self, users, x, corruption: float):
            h = self.item_in(prepare(x, False, corruption, self.training))
            known = (users >= 0) & (users < self.n_users)
            u = self.user(torch.where(known, users, torch.zeros_like(users))) * known[:, None].to(h.dtype)
            return self.out(torch.sigmoid(h + u))

    class AutoRecNet(nn.Module):
        def __init__(self, n_items: int, hidden: int):
            super().__init__()
            self.enc = SparseIn(n_items, hidden, init="torch")
            self.dec = nn.Linear(hidden, n_items)

        def forward(self, x):
            return self.dec(torch.sigmoid(self.enc(prepare(x, False, 0.0, False))))

    return {"mult": MultVAENet, "recvae": RecVAENet, "cdae": CDAENet, "autorec": AutoRecNet}


# ============================================================== Multi-DAE / VAE
class MultiDAEParams(TorchParams):
    latent: int = Field(200, ge=1, description="code layer width")
    hidden: int = Field(0, ge=0, description="width of an extra hidden layer on each side (0 = none, the paper's DAE)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the normalised input")
    lr: float = Field(1e-3, gt=0, description="learning rate (Adam)")
    weight_decay: float = Field(1e-5, ge=0, description="L2 weight decay (Adam)")
    epochs: int = Field(200, ge=1, description="maximum training epochs")
    patience: int = Field(20, ge=0, description="early-stopping patience in epochs (0 = never)")
    min_batches: int = Field(10, ge=0, description="small data: shrink the batch so an epoch has at least this many "
                                                   "updates (not below 32 users; 0 = batch_size as given)")


@register
class MultiDAE(TorchRecommender):
    """Multi-DAE (Liang et al. 2018): denoising autoencoder with a multinomial likelihood."""

    dense_rows_on_gpu = True

    name = "multidae"
    Params = MultiDAEParams
    variational: ClassVar[bool] = False
    search_space: ClassVar[dict[str, tuple]] = {
        "latent": ("log_int", 50, 800),
        "dropout": ("float", 0.0, 0.8),
        "lr": ("log_float", 1e-4, 1e-2),
        "weight_decay": ("log_float", 1e-8, 1e-3),
    }

    def _hidden(self) -> list[int]:
        return [self.params.hidden] if self.params.hidden else []

    def _build_module(self):
        return _nets()["mult"](self.n_items, self._hidden(), self.params.latent, self.variational)

    def _loss(self, module, batch, epoch):
        from ..train import losses

        users, x = batch
        logits, _, _ = module(self.rows.bag(users), self.params.dropout)
        return losses.multinomial_nll(logits, x)

    def _forward_scores(self, module, users, history):
        return module(history)[0]


class MultiVAEParams(MultiDAEParams):
    latent: int = Field(200, ge=1, description="latent dimension")
    hidden: int = Field(
        0, ge=0, description="hidden layer width on each side (0 = none; the paper used 600, worse on ML-1M validation)"
    )
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay (Adam)")
    anneal_cap: float = Field(0.2, ge=0, description="largest KL weight (beta)")
    anneal_steps: int = Field(20000, ge=1, description="beta = min(anneal_cap, updates / anneal_steps)")


@register
class MultiVAE(MultiDAE):
    """Multi-VAE (Liang et al. 2018): variational autoencoder, multinomial likelihood, KL annealing."""

    name = "multivae"
    Params = MultiVAEParams
    variational = True
    search_space = {
        "latent": ("log_int", 32, 400),
        "hidden": ("categorical", [0, 300, 600, 1200]),  # 0 (the default) won on ML-1M validation
        "dropout": ("float", 0.0, 0.8),
        "lr": ("log_float", 1e-4, 1e-2),
        "anneal_cap": ("float", 0.0, 1.0),
        "anneal_steps": ("log_int", 100, 200000),
    }

    def _train_epoch(self, module, optimizers, epoch, generator):
        n_batches = -(-len(self._train_users) // self._batch_size())
        self._updates = (epoch - 1) * n_batches  # derived from the epoch: identical after a resume
        return super()._train_epoch(module, optimizers, epoch, generator)

    def _loss(self, module, batch, epoch):
        from ..train import losses

        users, x = batch
        self._updates += 1
        beta = min(self.params.anneal_cap, self._updates / self.params.anneal_steps)
        logits, mu, logvar = module(self.rows.bag(users), self.params.dropout)
        kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1).sum(1).mean()
        return losses.multinomial_nll(logits, x) + beta * kl


# ====================================================================== RecVAE
class RecVAEParams(TorchParams):
    hidden: int = Field(600, ge=1, description="encoder hidden width")
    latent: int = Field(200, ge=1, description="latent dimension")
    dropout: float = Field(0.5, ge=0, lt=1, description="input dropout in the encoder phases")
    gamma: float = Field(
        0.01, ge=0, description="KL weight per user = gamma x the user's number of events (paper 0.005; 0.01 best on ML-1M validation)"
    )
    enc_epochs: int = Field(3, ge=1, description="encoder passes per epoch")
    dec_epochs: int = Field(1, ge=1, description="decoder passes per epoch")
    lr: float = Field(1e-3, gt=0, description="learning rate (Adam, encoder and decoder; the paper 5e-4)")
    epochs: int = Field(50, ge=1, description="maximum training epochs")
    patience: int = Field(5, ge=0, description="early-stopping patience in epochs (0 = never)")
    min_batches: int = Field(10, ge=0, description="small data: shrink the batch so an epoch has at least this many "
                                                   "updates (not below 32 users; 0 = batch_size as given)")


@register
class RecVAE(TorchRecommender):
    """RecVAE (Shenbin et al. 2020): composite prior, per-user beta, alternating encoder/decoder updates."""

    dense_rows_on_gpu = True

    name = "recvae"
    Params = RecVAEParams
    search_space: ClassVar[dict[str, tuple]] = {
        "hidden": ("log_int", 200, 1200),
        "latent": ("log_int", 50, 400),
        "dropout": ("float", 0.1, 0.8),
        "gamma": ("log_float", 1e-4, 0.05),
        "lr": ("log_float", 1e-4, 5e-3),
        "enc_epochs": ("int", 1, 4),
    }

    def _build_module(self):
        return _nets()["recvae"](self.n_items, self.params.hidden, self.params.latent)

    def _make_optimizers(self, module):
        p = self.params
        return {
            "encoder": self._adam(module.encoder.parameters(), p.lr, p.weight_decay),
            "decoder": self._adam(module.decoder.parameters(), p.lr, p.weight_decay),
        }

    def _encoder_loss(self, module, users, x):
        import torch

        from ..train import losses

        mu, logvar = module.encoder(self.rows.bag(users), self.params.dropout)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = module.decoder(z)
        log_q = _log_norm_pdf(z, mu, logvar)
        kl = (log_q - module.log_prior(z, self._prior_mu[users], self._prior_logvar[users])).sum(-1)
        weights = self.params.gamma * x.sum(-1)
        return losses.multinomial_nll(logits, x) + (kl * weights).mean()

    def _decoder_loss(self, module, users, x):
        import torch

        from ..train import losses

        with torch.no_grad():  # the encoder is fixed in the decoder phase: no backward through it
            mu, logvar = module.encoder(self.rows.bag(users), 0.0)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return losses.multinomial_nll(module.decoder(z), x)

    def _prior_posteriors(self, module) -> None:
        """The prior encoder's posterior for every training user, once per epoch.

        The prior encoder is fixed for the whole encoder phase and sees the rows
        without dropout, so computing it once replaces one forward per batch
        and encoder pass (identical values).
        """
        import torch

        users = self._train_users
        prior = module.prior_encoder.eval()
        shape = (self.n_users, self.params.latent)
        if getattr(self, "_prior_mu", None) is None or tuple(self._prior_mu.shape) != shape:
            # buffers kept for the fit, rewritten every epoch
            self._prior_mu = torch.zeros(shape, device=self.device_)
            self._prior_logvar = torch.zeros_like(self._prior_mu)
        mu, logvar = self._prior_mu, self._prior_logvar
        with torch.no_grad():
            for start in range(0, len(users), 4 * self.params.batch_size):
                u = users[start : start + 4 * self.params.batch_size]
                mu[u], logvar[u] = prior(self.rows.bag(u), 0.0)

    def _fit(self, X, train) -> None:
        try:
            super()._fit(X, train)
        finally:
            self._prior_mu = self._prior_logvar = None  # per-fit buffers

    def _train_epoch(self, module, optimizers, epoch, generator):
        import torch

        enc, dec = optimizers["encoder"], optimizers["decoder"]
        total = torch.zeros((), dtype=torch.float64, device=self.device_)
        count = 0
        self._prior_posteriors(module)
        enc_loss = lambda u: self._encoder_loss(module, u, self._dense_batch(u))  # noqa: E731
        dec_loss = lambda u: self._decoder_loss(module, u, self._dense_batch(u))  # noqa: E731
        for _ in range(self.params.enc_epochs):
            for users in self._user_batches(generator):
                loss = self._optimise(enc_loss, users, [enc])
                total += loss.detach().double() * len(users)
                count += len(users)
        module.update_prior()
        for _ in range(self.params.dec_epochs):
            for users in self._user_batches(generator):
                self._optimise(dec_loss, users, [dec])
        return float(total) / max(1, count)

    def _forward_scores(self, module, users, history):
        return module.scores(history)


def _log_norm_pdf(x, mu, logvar):
    return -0.5 * (logvar + math.log(2 * math.pi) + (x - mu).pow(2) / logvar.exp())


# ======================================================================== CDAE
class CDAEParams(TorchParams):
    hidden: int = Field(200, ge=1, description="hidden layer width")
    corruption: float = Field(0.5, ge=0, lt=1, description="input dropout (corruption) rate")
    weight_decay: float = Field(1e-6, ge=0, description="L2 weight decay (Adam)")
    epochs: int = Field(100, ge=1, description="maximum training epochs")
    loss: Literal["bce", "multinomial"] = Field(
        "bce", description="bce: binary cross-entropy over all items (Wu et al.); multinomial: Multi-VAE's "
        "log-likelihood of the row under a softmax over items (Multi-CDAE)"
    )


@register
class CDAE(TorchRecommender):
    """CDAE (Wu et al. 2016): denoising autoencoder with a per-user input node, BCE over all items (or multinomial: Multi-CDAE)."""

    dense_rows_on_gpu = True

    name = "cdae"
    Params = CDAEParams
    fold_in: ClassVar[str] = "estimate"
    search_space: ClassVar[dict[str, tuple]] = {
        "hidden": ("log_int", 50, 800),
        "corruption": ("float", 0.0, 0.8),
        "lr": ("log_float", 1e-4, 1e-2),
        "weight_decay": ("log_float", 1e-8, 1e-3),
    }

    def _build_module(self):
        return _nets()["cdae"](self.n_users, self.n_items, self.params.hidden)

    def _loss(self, module, batch, epoch):
        from ..train import losses

        users, x = batch
        logits = module(users, self.rows.bag(users), self.params.corruption)
        if self.params.loss == "multinomial":
            return losses.multinomial_nll(logits, x)
        return losses.bce(logits, x) * self.n_items

    def _forward_scores(self, module, users, history):
        return module(users, history, 0.0)


# ===================================================================== AutoRec
class AutoRecParams(TorchParams):
    hidden: int = Field(500, ge=1, description="hidden layer width")
    weight_decay: float = Field(1e-5, ge=0, description="L2 weight decay (Adam)")
    epochs: int = Field(100, ge=1, description="maximum training epochs")


@register
class AutoRec(TorchRecommender):
    """U-AutoRec (Sedhain et al. 2015) for implicit data: squared error over every entry of the row."""

    dense_rows_on_gpu = True

    name = "autorec"
    Params = AutoRecParams
    search_space: ClassVar[dict[str, tuple]] = {
        "hidden": ("log_int", 50, 1000),
        "lr": ("log_float", 1e-4, 1e-2),
        "weight_decay": ("log_float", 1e-8, 1e-2),
    }

    def _build_module(self):
        return _nets()["autorec"](self.n_items, self.params.hidden)

    def _loss(self, module, batch, epoch):
        users, x = batch
        return (module(self.rows.bag(users)) - x).pow(2).sum(1).mean()

    def _forward_scores(self, module, users, history):
        return module(history)
