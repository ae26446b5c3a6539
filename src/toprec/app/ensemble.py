"""``ensemble``: search weights/members on fold A, confirm on fold B, fall back honestly, refit, write.

The policy, for every entry point: the search sees only fold A; when the
ensemble's gain over the best member does not hold on fold B (and ``force``
is off) the best fold-A member is written alone (``Ensemble.apply_fallback``).
Method ``auto`` searches every fusion method on fold A and keeps the best;
without validation it is the competition's rank vote. ``rerank`` trains its
LightGBM or CatBoost ranker (``ranker``) on fold A, optionally with user
clusters as features (``clusters``), and is never picked by ``auto``.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import progress
from ..errors import ToprecError
from ..experiment import session
from .data import check_k, check_unseen, expect, load_data, order_use, output_file, output_folder
from .output import write_json
from .results import EnsembleResult
from .serving import check_pipeline, save_pipeline
from .submit import complete_lists


def _method(e) -> str:
    if e.method == "auto" and not e.validate_folds:
        return "rank"  # nothing to choose on: the competition's soft vote
    if e.method == "rerank":
        from ..ensemble.rerank import check_ranker

        check_ranker(e.ranker)  # a missing lightgbm / catboost: a one-line error before any fitting
    return e.method


def _load_ranker(ens, folder: str) -> None:
    """``ens.reranker`` from a saved ranker's folder; its members must be the ensemble's, in order."""
    from ..ensemble.rerank import Reranker

    ranker, _ = Reranker.load(Path(folder))  # unreadable: a one-line error naming the folder
    if ranker.labels != ens.labels:
        raise ToprecError(f"{folder}: the ranker was trained on members {', '.join(ranker.labels)}, not "
                          f"{', '.join(ens.labels)}")  # fmt: skip
    ens.reranker = ranker


def ensemble(cfg) -> EnsembleResult:
    expect(cfg, "ensemble")
    from ..ensemble import Ensemble, parse_members

    e, k, s = cfg.ensemble, cfg.metrics.k, cfg.split
    output = output_file(cfg.output.submission, cfg.data)
    json_path = output_file(cfg.output.json_path, cfg.data, "--json")
    model_dir = output_folder(cfg.output.model_dir, cfg.data, "--save-model", replaced=True)
    method = _method(e)
    members = parse_members(e.members)  # unknown models / bad parameters: before any work
    ens = Ensemble(members, method=method, weights=e.weights, candidates=e.candidates, ranker=e.ranker,
                   clusters=e.clusters, recency=e.recency)  # fmt: skip
    if model_dir is not None:
        check_pipeline(ens)  # file members cannot be served: before any work
    if e.ranker_model:  # a trained ranker (auto's): used as it is, never trained again
        _load_ranker(ens, e.ranker_model)
    with session.tracked_run(cfg) as tracker:
        ds = load_data(cfg.data, order_use(cfg))
        check_k(ds, k, "ensemble")
        check_unseen(ds, k, "ensemble")
        for m in ens.members:
            m.bind(ds, k, e.candidates)  # member files: one-line errors before any fitting
        report, chosen, warnings = None, "ensemble", []
        if e.validate_folds:
            report = ens.validate(ds, search=e.search, k=k, scheme=e.scheme, seed=s.seed, last=s.last,
                                  random=s.random, min_gain=e.min_gain, restarts=e.restarts,
                                  stratify=e.stratify)  # fmt: skip
            if report["warning"]:
                warnings.append(report["warning"])
            chosen, fallback = ens.apply_fallback(report, force=e.force)
            if fallback:
                warnings.append(fallback)
        t0 = time.perf_counter()
        ens.prepare_final(ds, k=k)
        recs = ens.recommend(ds.users, k=k)
        if model_dir is not None:  # the fused pipeline, servable (`toprec serve`): members fitted on all data
            save_pipeline(ens, ds, model_dir)
        ens.release()
        final_s = time.perf_counter() - t0
        complete_lists(recs, ds, k, hint="candidate items after fusion (raise --candidates)")
        with progress.task(f"write {output}"):
            recs.write_csv(output, ds)
        res = EnsembleResult(output=output, users=len(recs), k=k, chosen=chosen, method=ens.method,
                             weights={lab: float(w) for lab, w in zip(ens.labels, ens.weights)}, validation=report,
                             final_s=final_s, warnings=warnings, data=cfg.data.path,
                             dataset={"users": ds.n_users, "items": ds.n_items, "events": ds.n_events})  # fmt: skip
        _track(tracker, res)
        if json_path is not None:
            write_json(json_path, res.to_json())
    return res


def _track(tracker, res: EnsembleResult) -> None:
    """Fold A/B recall of the ensemble and members, the chosen weights and the submission, to the MLflow run."""
    if not tracker.enabled:
        return
    values = {"final_s": res.final_s}
    report = res.validation
    if report:
        for fold in ("fold_a", "fold_b"):
            for name, v in report["ensemble"][fold].items():
                values[f"{fold}.{name}"] = v
        values.update(gain_fold_a=report["gain_fold_a"], gain_fold_b=report["gain_fold_b"])
    tracker.log_metrics(values)
    tracker.log_params({"chosen": res.chosen, **{f"weight.{lab}": w for lab, w in res.used.items()}})
    session.log_artifacts(res.output)
