"""Kept for imports written before the split: the names now live by responsibility in

:mod:`.folds` (``Fold``, ``Folds``, ``SCHEMES``, ``halves``, ``make_folds``; the
protocol's description), :mod:`.ensemble` (``Ensemble``, ``AUTO``, ``RERANK``),
:mod:`.alignment` (``align``, ``align_seeds``) and :mod:`.fold_eval`
(``evaluate_folds``, ``summarize_folds``); all of them are also exported by
:mod:`toprec.ensemble`.
"""

from .alignment import align, align_seeds
from .ensemble import AUTO, RERANK, Ensemble
from .fold_eval import RANDOMISED_PROTOCOLS, evaluate_folds, summarize_folds
from .folds import SCHEMES, Fold, Folds, halves, make_folds

__all__ = [
    "AUTO",
    "RANDOMISED_PROTOCOLS",
    "RERANK",
    "SCHEMES",
    "Ensemble",
    "Fold",
    "Folds",
    "align",
    "align_seeds",
    "evaluate_folds",
    "halves",
    "make_folds",
    "summarize_folds",
]
