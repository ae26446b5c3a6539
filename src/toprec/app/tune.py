"""``tune``: Optuna TPE over a model's search space, recall@k on a validation holdout cut from the data."""

from __future__ import annotations

from .. import progress
from ..errors import ToprecError
from ..experiment import session
from .data import check_k, expect, load_data, order_use, output_folder
from .results import TuneResult


def tune(cfg, worker: int | None = None) -> TuneResult:
    """Run (or join, as spawned ``worker``) the study of ``cfg``; writes OUT/best.yaml and OUT/trials.csv."""
    expect(cfg, "tune")
    from ..experiment import tune as tune_mod

    output_folder(cfg.tune.out, cfg.data, "--out")
    with session.tracked_run(cfg):
        ds = load_data(cfg.data, order_use(cfg))
        check_k(ds, cfg.metrics.k, "tune")
        summary = tune_mod.tune(cfg, ds, worker=worker, quiet=progress.is_quiet())
        if summary["best"] is None:
            raise ToprecError(f"study '{summary['study']}': no trial completed ({summary['states']})")
    return TuneResult(summary=summary, worker=worker)
