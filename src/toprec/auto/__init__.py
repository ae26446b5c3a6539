"""``toprec auto``: profile the data, plan a portfolio for the budget, tune every member on validation
fold A, ensemble on fold A, confirm on fold B, fall back honestly, refit on all the data.

- :mod:`.profile`: what the data looks like (size, density, side files, order, the protocol's last-event share).
- :mod:`.plan`: the candidate members, their data-adaptive starting points and a-priori cost.
- :mod:`.tuning`: one resumable Optuna study per member on fold A, keeping the best trial's lists.
- :mod:`.crossfit`: small data, choices made out of fold over both folds and over more validation cuts.
- :mod:`.pooled`: small data, the fusion searched and judged over several validation cuts.
- :mod:`.margin`: the one-paired-standard-error margin every choice is held to.
- :mod:`.pipeline`: the stages under one wall-clock budget, resumable after a kill.
"""

from .pipeline import AutoRun, run_auto
from .plan import Candidate, candidates, parse_budget
from .profile import profile

__all__ = ["AutoRun", "Candidate", "candidates", "parse_budget", "profile", "run_auto"]
