"""One trainer for every torch model: ``TorchRecommender`` (see ``train/base.py``).

torch is optional (the ``gpu`` extra): nothing here imports it at module
level, so ``import toprec`` and the closed-form models work without it; a
torch model raises a one-line ``ToprecError`` ("pip install torch") when it
is constructed without torch installed.

How to write a torch model
--------------------------
Subclass :class:`TorchRecommender`, give it a ``Params`` class deriving from
:class:`TorchParams` (epochs, batch_size, lr, weight_decay, patience, seed,
device, amp, refit, checkpoint_dir, resume, valid_every... come for free),
register it, and implement three hooks::

    from toprec.models.registry import register
    from toprec.train import TorchParams, TorchRecommender

    class MyParams(TorchParams):
        dim: int = 64

    @register
    class MyModel(TorchRecommender):
        name = "mymodel"
        Params = MyParams

        def _build_module(self):                  # torch.nn.Module from self.params,
            import torch                          # self.n_users, self.n_items and
            return torch.nn.Linear(...)           # whatever _prepare stored

        def _loss(self, module, batch, epoch):    # scalar tensor for one batch
            users, rows = batch                   # default batches: (user ids, dense rows)
            ...

        def _forward_scores(self, module, users, history):
            # users: LongTensor (b,), history: dense (b, n_items) tensor on the
            # module's device in the scoring dtype; return (b, n_items) scores.
            ...

Optional hooks (defaults in brackets):

- ``_prepare(X, train)``: data-dependent set-up before the module is built
  (graph adjacency, sequences...); called once per training phase with that
  phase's training matrix and Dataset (``train`` is None after ``load``).
- ``_batches(module, generator)``: yields one epoch of batches [shuffled users
  with at least one event, ``batch_size`` per batch, as ``(users, rows)`` with
  ``rows`` a dense float32 (b, n_items) tensor built on the device from
  ``self.rows`` without a Python loop]. Use ``generator`` (a seeded CPU
  ``torch.Generator``) for every random choice so runs repeat and resume.
- ``_make_optimizers(module)``: dict name -> optimizer [{"main": Adam(lr, weight_decay)}].
- ``_train_epoch(module, optimizers, epoch, generator)``: one epoch, returns
  the mean loss [loop over ``_batches``, ``_loss``, backward, step, with
  autocast/GradScaler on CUDA when ``amp`` is set]. Override for alternating
  updates (RecVAE does).
- ``_extra_state()`` / ``_set_extra_state(arrays)``: numpy arrays besides the
  module's tensors that scoring needs after ``load`` (the module's
  ``state_dict`` is saved and restored for you).
- ``_score(users, history)``: override entirely when scores do not come from
  the history matrix (sequence models); call ``self._scoring_module()`` for
  the module to score with.

Everything else is shared: validation holdout cut from the training data with
the competition protocol (or the ``valid`` holdout given to ``fit``), full-
ranking recall@10 through ``toprec.recommend.topk`` with seen items masked,
early stopping with the best epoch's weights restored, ``refit`` on all the
data for the best epoch count, per-epoch ``callback(epoch, logs)`` and
``self.history``, checkpoints every epoch and bit-identical ``resume``,
seeds, device selection, progress bar, save/load.

Losses are in :mod:`toprec.train.losses` (import it inside the hooks: it
imports torch).
"""

from .base import TorchParams, TorchRecommender, require_torch, resolve_device
from .loop import StopTraining, deadline, past_deadline

__all__ = ["StopTraining", "deadline", "past_deadline", "TorchParams", "TorchRecommender", "require_torch", "resolve_device"]
