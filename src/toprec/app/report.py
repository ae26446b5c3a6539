"""``report`` and ``eda``: one self-contained HTML page plus a JSON of every number."""

from __future__ import annotations

from pathlib import Path

from ..experiment import session
from .data import expect, load_data, order_use, output_folder, require_data
from .results import PageResult


def report(cfg) -> PageResult:
    """Evaluate the models on one holdout and explain the results; writes report.html + report.json."""
    expect(cfg, "report")
    from ..report import write_report

    models = [m.build() for m in cfg.model_list()]
    if cfg.report.clusters:
        from ..features.clusters import parse_spec

        parse_spec(cfg.report.clusters)  # an unknown or factor-less model: one line before any work
    require_data(cfg.data)
    out = output_folder(cfg.output.report_dir, cfg.data)
    s = cfg.split
    with session.tracked_run(cfg):
        ds = load_data(cfg.data, order_use(cfg))
        html, js, page, numbers = write_report(
            ds, models, out, Path(cfg.data.path), protocol=s.protocol, last=s.last, random=s.random, seed=s.seed,
            cutoff=s.cutoff, k=cfg.metrics.k, map_items=cfg.report.map_items, clusters=cfg.report.clusters,
        )  # fmt: skip
        session.log_results({m: r["metrics"] for m, r in numbers["models"].items()}, models)
        session.log_artifacts(html, js)
    return PageResult(html=html, json=js, figures=len(page.figures()), numbers=numbers)


def eda(cfg) -> PageResult:
    """Explore a data set: activity, popularity, time, genres, franchises, order; writes eda.html + eda.json."""
    expect(cfg, "eda")
    from ..report import write_eda

    require_data(cfg.data)
    out = output_folder(cfg.output.report_dir, cfg.data)
    source = Path(cfg.data.path)
    with session.tracked_run(cfg):
        ds = load_data(cfg.data, order_use(cfg))
        html, js, page = write_eda(ds, out, source if source.is_dir() else None, seed=cfg.split.seed,
                                   n_neighbors=cfg.report.neighbours, sim_users=cfg.report.sim_users)  # fmt: skip
        session.log_artifacts(html, js)
    return PageResult(html=html, json=js, figures=len(page.figures()), sections=len(page.sections))
