"""EDA and evaluation reports: one self-contained HTML page plus a JSON of every number.

``toprec eda`` (:func:`write_eda`) and ``toprec report``
(:func:`toprec.report.evaluation.write_report`). matplotlib and scikit-learn
are imported only here, lazily, with the headless Agg backend.
"""

from __future__ import annotations

import time
from typing import Any

from .. import progress


def write_eda(ds, out_dir, source=None, *, seed: int = 0, n_neighbors: int = 20, sim_users: int = 8000):
    """Compute the EDA of ``ds`` and write ``eda.html`` + ``eda.json`` into ``out_dir``.

    ``source`` is the data folder (sequels.tsv / franchises.tsv are read from
    it when present). Returns (html path, json path, page).
    """
    from .eda import compute_eda
    from .eda_page import build_eda_page

    t0 = time.perf_counter()
    steps = ["activity", "time", "genres", "franchises", "sequential", "coverage"]
    with progress.task("eda", total=len(steps) + 1) as bar:
        def step(msg: str) -> None:
            bar.update(completed=steps.index(msg), description=f"eda: {msg}")

        res = compute_eda(ds, source, seed=seed, n_neighbors=n_neighbors, sim_users=sim_users, step=step)
        bar.update(completed=len(steps), description="eda: figures")
        page = build_eda_page(ds, res, str(source or ds.name), time.perf_counter() - t0)
        html_path, json_path = page.write(out_dir, "eda")
    return html_path, json_path, page


def write_report(ds, models, out_dir, source=None, **options: Any):
    """Evaluate ``models`` (unfitted) on one split of ``ds``; write ``report.html`` + ``report.json``.

    ``options`` go to :func:`toprec.report.evaluation.compute_report`
    (protocol, last, random, seed, cutoff, k, map_items, clusters). Returns
    (html path, json path, page, numbers).
    """
    from .evaluation import build_report_page, compute_report

    t0 = time.perf_counter()
    names = [m.name for m in models]
    steps = ["split"] + (["user clusters"] if options.get("clusters") else []) + [
        f"{n}: {s}" for n in names for s in ("fit", "recommend", "embedding map")]
    with progress.task("report", total=len(steps) + 1) as bar:
        def step(msg: str) -> None:
            bar.update(completed=steps.index(msg) if msg in steps else None, description=f"report: {msg}")

        rep = compute_report(ds, models, step=step, **options)
        bar.update(completed=len(steps), description="report: figures")
        page = build_report_page(ds, rep, str(source or ds.name), time.perf_counter() - t0)
        html_path, json_path = page.write(out_dir, "report")
    return html_path, json_path, page, rep


__all__ = ["write_eda", "write_report"]
