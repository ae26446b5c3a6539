"""Ensembles: rank/score fusion of several models' top-N, searched honestly.

>>> from toprec.ensemble import Ensemble, fuse
>>> ens = Ensemble("ease,rp3beta,ials", method="rank", candidates=100)
>>> report = ens.validate(data, search="both")   # search on fold A, confirm on fold B
>>> report["ensemble"], report["holds"], report["warning"]
>>> recs = ens.fit(data).recommend(data.users, k=10)

* :mod:`.fusion` — ``fuse`` / ``build_pool``: rank (1/log2(rank+1)), rrf,
  borda, score (per-user z-scores), product (sigmoid(z) multiplied).
* :mod:`.search` — coordinate ascent on the weights, greedy member subset.
* :mod:`.validate` — the protocol (search on fold A, confirm on fold B; see
  its docstring), ``Ensemble``, ``align``, ``evaluate_folds``.
* :mod:`.rerank` — ``method="rerank"``: a LightGBM re-ranker over the members'
  candidates, trained on fold A (needs ``lightgbm``; never picked by ``auto``).
* :mod:`.members` — members as model names (``ease:l2=300``), saved model
  folders, or ``user,item[,score]`` files.
"""

from .fusion import METHODS, CandidatePool, build_pool, contributions, fuse
from .members import FileMember, Member, ModelMember, SavedMember, parse_members, read_member_file
from .search import SEARCHES, run_search
from .validate import SCHEMES, Ensemble, Fold, Folds, align, align_seeds, evaluate_folds, make_folds, summarize_folds

__all__ = [
    "METHODS",
    "SCHEMES",
    "SEARCHES",
    "CandidatePool",
    "Ensemble",
    "FileMember",
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
