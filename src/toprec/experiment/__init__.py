"""Experiments a team can share: runs as YAML files, MLflow tracking, Optuna tuning.

- :mod:`.config`: ``RunConfig`` (pydantic), shared by ``toprec run/evaluate/submit/ensemble/tune``.
- :mod:`.tracking`: a thin MLflow wrapper (imported lazily; ``--no-track`` never loads mlflow).
- :mod:`.session`: the ``@tracked`` decorator tying a command to its config and run.
- :mod:`.tune`: Optuna TPE + pruning, many workers sharing one RDB storage.
"""
