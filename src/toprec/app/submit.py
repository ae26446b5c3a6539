"""``submit``: fit one model on everything, write k unseen items per user, best first."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import ToprecError
from ..experiment import session
from .data import check_k, check_unseen, expect, load_data, output_file, output_folder
from .results import SubmitResult
from .serving import save_model


def complete_lists(recs, ds, k: int, hint: str = "") -> None:
    """Every user must get exactly ``k`` items: a one-line error naming the first who cannot."""
    short = np.flatnonzero((recs.items < 0).any(axis=1))
    if len(short):
        raise ToprecError(f"user {ds.user_ids[short[0]]!s} has fewer than {k} {hint or 'unseen items'}; "
                          f"cannot write exactly {k} rows per user")  # fmt: skip


def submit(cfg) -> SubmitResult:
    expect(cfg, "submit")
    output = output_file(cfg.output.submission, cfg.data)
    model_dir = output_folder(cfg.output.model_dir, cfg.data, "--save-model", replaced=True)
    if model_dir is not None and output.resolve() == model_dir.resolve():
        raise ToprecError(f"--save-model {model_dir}: is the --output file")
    k = cfg.metrics.k
    with session.tracked_run(cfg) as tracker:
        rec = cfg.model_list()[0].build()
        ds = load_data(cfg.data)
        check_k(ds, k, "submit")
        check_unseen(ds, k, "submit")
        t0 = time.perf_counter()
        with progress.task(f"{rec.name}: fit on {ds.n_events:,} events"):
            rec.fit(ds)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        recs = rec.recommend(ds.users, k=k)
        rec_s = time.perf_counter() - t0
        complete_lists(recs, ds, k)
        t0 = time.perf_counter()
        with progress.task(f"write {output}"):
            recs.write_csv(output, ds)
        write_s = time.perf_counter() - t0
        if model_dir is not None:
            save_model(rec, ds, model_dir)  # servable: the ids, when and on what data it was trained
        tracker.log_metrics({"fit_s": fit_s, "recommend_s": rec_s, "write_s": write_s, "users": len(recs)})
        tracker.log_history(getattr(rec, "history", None))
        session.log_artifacts(output, model_dir)
    return SubmitResult(output=output, users=len(recs), k=k, fit_s=fit_s, recommend_s=rec_s, write_s=write_s,
                        model_dir=model_dir)  # fmt: skip
