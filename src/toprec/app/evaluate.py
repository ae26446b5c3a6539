"""``evaluate``: cut a holdout like the hidden test, fit on the rest, score every model on it."""

from __future__ import annotations

from .. import metrics, progress, split
from ..errors import ToprecError
from ..experiment import session
from .data import check_k, expect, load_data, order_use, output_file
from .output import write_json
from .results import EvaluateResult


def _names(k: int) -> list[str]:
    return [f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"precision@{k}", f"hit@{k}", f"mrr@{k}", f"coverage@{k}"]


def evaluate(cfg) -> EvaluateResult:
    """Every model of ``cfg`` on one holdout (or ``split.folds`` holdouts: mean and std)."""
    expect(cfg, "evaluate")
    json_path = output_file(cfg.output.json_path, cfg.data, "--json")
    with session.tracked_run(cfg):
        configs = cfg.model_list()
        models = [m.build() for m in configs]
        ds = load_data(cfg.data, order_use(cfg))
        s, k = cfg.split, cfg.metrics.k
        check_k(ds, k, "evaluate")
        params = {m.name: m.params.model_dump(mode="json") for m in models}
        if s.folds > 1:
            from ..ensemble import evaluate_folds, summarize_folds

            # a fresh model per fold, built from the same validated parameters
            per_fold = {m.name: evaluate_folds(ds, m.build, k=k, folds=s.folds, seed=s.seed, last=s.last,
                                               random=s.random, protocol=s.protocol, metric_names=_names(k)[2:])
                        for m in configs}  # fmt: skip
            res = EvaluateResult(data=cfg.data.path, protocol=s.protocol, folds=s.folds, params=params,
                                 metrics={n: summarize_folds(r) for n, r in per_fold.items()}, per_fold=per_fold)
        else:
            with progress.task(f"split: {s.protocol}"):
                train, holdout = split.by_name(ds, s.protocol, last=s.last, random=s.random, seed=s.seed,
                                               cutoff=s.cutoff)  # fmt: skip
            if len(holdout.users) == 0:
                raise ToprecError(f"{cfg.data.path}: no user has enough events for the {s.protocol} protocol")
            res = EvaluateResult(
                data=cfg.data.path, protocol=holdout.protocol, params=params,
                metrics={m.name: metrics.fit_and_evaluate(m, train, holdout, k, _names(k)) for m in models},
                users_evaluated=int(len(holdout.users)), test_events=holdout.n_events,
                dataset={"users": ds.n_users, "items": ds.n_items, "events": ds.n_events},
            )  # fmt: skip
        session.log_results(res.metrics, models)
        if json_path is not None:
            res.files.append(write_json(json_path, res.to_json()))
            session.log_artifacts(json_path)
    return res
