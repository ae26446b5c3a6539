"""``align``: does validation agree with the leaderboard? Fold-A vs fold-B recall per model, gap and Spearman."""

from __future__ import annotations

from ..errors import ToprecError
from ..experiment import session
from .data import expect, load_data, order_use, output_file
from .output import write_json
from .results import AlignResult


def align(cfg) -> AlignResult:
    expect(cfg, "align")
    from ..ensemble import align as align_one
    from ..ensemble import align_seeds, parse_members

    a, s = cfg.align, cfg.split
    json_path = output_file(cfg.output.json_path, cfg.data, "--json")
    members = parse_members(a.models)
    for m in members:
        if not m.refittable:
            raise ToprecError(f"--models: '{m.label}' is a file; align needs models it can fit on each fold")
    with session.tracked_run(cfg) as tracker:
        ds = load_data(cfg.data, order_use(cfg))
        kw = dict(k=cfg.metrics.k, scheme=a.scheme, last=s.last, random=s.random, stratify=a.stratify)
        if a.repeats > 1:
            res = AlignResult(data=cfg.data.path,
                              seeds=align_seeds(ds, members, range(s.seed, s.seed + a.repeats), **kw))
            summary = res.seeds["mean"]
        else:
            res = AlignResult(data=cfg.data.path, report=align_one(ds, members, seed=s.seed, **kw))
            summary = res.report
        tracker.log_metrics({key: summary[key] for key in ("mean_abs_gap", "noise_abs_gap", "spearman")
                             if isinstance(summary.get(key), float)})  # fmt: skip
        if json_path is not None:
            write_json(json_path, res.to_json())
    return res
