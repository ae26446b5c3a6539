"""Ensembles: rank/score fusion of several models' top-N, searched honestly.

>>> from toprec.ensemble import Ensemble, fuse
>>> ens = Ensemble("ease,rp3beta,ials", method="rank", candidates=100)
>>> report = ens.validate(data, search="both")   # search on fold A, confirm on fold B
>>> report["ensemble"], report["holds"], report["warning"]
>>> chosen, warning = ens.apply_fallback(report, force=False)
>>> recs = ens.prepare_final(data).recommend(data.users, k=10)

* :mod:`.fusion` — ``fuse`` / ``build_pool``: rank (1/log2(rank+1)), rrf,
  borda, score (per-user z-scores), product (sigmoid(z) multiplied).
* :mod:`.search` — coordinate ascent on the weights, greedy member subset.
* :mod:`.folds` — the protocol (search on fold A, confirm on fold B; see
  its docstring): ``make_folds``, ``Fold``/``Folds``, the per-fold metrics.
* :mod:`.ensemble` — ``Ensemble``: ``validate`` (search + confirmation),
  ``select`` (adopt a report's method and weights), ``apply_fallback`` (the
  best fold-A member alone when the gain does not hold), ``prepare_final``.
* :mod:`.alignment` — ``align`` / ``align_seeds``: fold A vs fold B per model.
* :mod:`.fold_eval` — ``evaluate_folds`` / ``summarize_folds``: K repeated holdouts.
* :mod:`.rerank` — ``method="rerank"``: a LightGBM re-ranker over the members'
  candidates, trained on fold A (needs ``lightgbm``; never picked by ``auto``).
* :mod:`.members` — members as model names (``ease:l2=300``), saved model
  folders, or ``user,item[,score]`` files.
"""

from .alignment import align, align_seeds
from .ensemble import Ensemble
from .fold_eval import evaluate_folds, summarize_folds
from .folds import SCHEMES, Fold, Folds, make_folds
from .fusion import METHODS, CandidatePool, build_pool, contributions, fuse
from .members import FileMember, ListedMember, Member, ModelMember, SavedMember, parse_members, read_member_file
from .search import SEARCHES, run_search

__all__ = [
    "METHODS",
    "SCHEMES",
    "SEARCHES",
    "CandidatePool",
    "Ensemble",
    "FileMember",
    "ListedMember",
    "Fold",
    "Folds",
    "Member",
    "ModelMember",
    "SavedMember",
    "align",
    "align_seeds",
    "build_pool",
    "contributions",
    "evaluate_folds",
    "fuse",
    "make_folds",
    "parse_members",
    "read_member_file",
    "run_search",
    "summarize_folds",
]
