"""``auto``: the best validated submission in one call, within a wall-clock budget.

Writes, in ``cfg.auto.out``: ``submission.csv`` (also at ``output.submission``),
``pipeline.yaml`` (a ``toprec run`` config that rebuilds the same submission
without searching: the chosen members, fusion method and weights),
``auto.json`` (profile, plan, every member's tuning curve, fold A/B),
``report.html`` + ``report.json`` and ``model/`` (the refitted pipeline, for
``toprec serve``); ``studies.db``, ``lists/`` and ``state.json`` let a killed
run resume where it stopped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import progress
from ..errors import ToprecError
from ..experiment import session
from ..experiment.config import parse_budget
from .data import check_k, check_unseen, expect, load_data, order_use, output_file, output_folder
from .output import write_json
from .results import AutoResult
from .resume import check_same_run, run_key
from .submit import complete_lists


def auto(cfg) -> AutoResult:
    expect(cfg, "auto")
    from ..auto import candidates, profile, run_auto

    a, s, k = cfg.auto, cfg.split, cfg.metrics.k
    if s.protocol != "competition":
        raise ToprecError(f"auto: protocol '{s.protocol}' is not supported; auto validates like the competition's "
                          "hidden test (--last N latest + --random M earlier events per user)")  # fmt: skip
    if s.last + s.random == 0:
        raise ToprecError("auto: --last 0 --random 0 holds nothing out to validate on")
    output = output_file(cfg.output.submission, cfg.data)
    out = output_folder(a.out, cfg.data, "--out")
    budget = parse_budget(a.budget)
    with session.tracked_run(cfg) as tracker:
        ds = load_data(cfg.data, order_use(cfg))
        check_k(ds, k, "auto")
        check_unseen(ds, k, "auto")
        candidates(profile(ds, s.last, s.random), a.device, a.members)  # unknown members: before --out is touched
        check_same_run(out, run_key(cfg, ds))
        run = run_auto(ds, out, budget, k=k, last=s.last, random=s.random, seed=s.seed, candidates_n=a.candidates,
                       device=a.device, only=a.members, model_dir=out / "model")  # fmt: skip
        complete_lists(run.recs, ds, k, hint="candidate items after fusion (raise --candidates)")
        with progress.task(f"write {output}"):
            run.recs.write_csv(output, ds)
        files = [output] + ([out / "model"] if (out / "model").is_dir() else [])
        if output.resolve() != (out / "submission.csv").resolve():
            shutil.copyfile(output, out / "submission.csv")
            files.append(out / "submission.csv")
        res = AutoResult(output=output, users=len(run.recs), k=k, chosen=run.chosen, method=run.method,
                         weights=run.weights, members=run.members, validation=run.validation, profile=run.profile,
                         elapsed_s=run.elapsed_s, budget_s=run.budget_s, out=out, warnings=run.warnings)  # fmt: skip
        files.append(pipeline_config(cfg, run, out / "model").save(out / "pipeline.yaml"))
        files.append(write_json(out / "auto.json", {
            "data": cfg.data.path, "profile": run.profile, "plan": run.plan, "members": run.members,
            "chosen": run.chosen, "method": run.method, "weights": run.weights, "specs": run.member_specs,
            "validation": run.validation, "elapsed_s": round(run.elapsed_s, 1), "budget_s": run.budget_s,
            "warnings": run.warnings,
        }))  # fmt: skip
        files += write_report(out, cfg, run)
        res.files = files
        tracker.log_metrics({f"fold_a.{m['name']}": m["best"]["value"] for m in run.members if m["best"]})
        tracker.log_metrics({"elapsed_s": run.elapsed_s})
        tracker.log_params({"chosen": run.chosen, "method": run.method,
                            **{f"weight.{lab}": w for lab, w in res.used.items()}})  # fmt: skip
        session.log_artifacts(*files)
    return res


def pipeline_config(cfg, run, model_dir: Path | None = None):
    """The ensemble config that rebuilds the submission without searching: chosen members, method, weights; a
    re-ranked run's ranker from the servable pipeline saved in ``model_dir``."""
    from ..experiment.config import RunConfig
    from .serving import RERANK_DIR

    used = [(lab, w) for lab, w in run.weights.items() if w > 0]
    ensemble = {"members": [lab for lab, _ in used], "weights": [w for _, w in used], "method": run.method,
                "search": "none", "validate": False, "candidates": cfg.auto.candidates}
    if run.method == "rerank" and model_dir is not None and (model_dir / RERANK_DIR).is_dir():
        # the ranker auto wrote (trained on both folds, or on every validation cut's rows), used as it is
        ensemble.update(ranker_model=str((model_dir / RERANK_DIR).resolve()), recency=run.recency)
    elif run.method == "rerank":
        # no saved ranker: it is trained on fold A again (the same folds: users scheme, the run's seed), no fallback
        ensemble.update(validate=True, scheme="users", stratify=True, force=True, recency=run.recency)
    # absolute paths: `toprec run OUT/pipeline.yaml` rebuilds the same file from any working folder
    data = cfg.data.model_copy(update={"path": str(Path(cfg.data.path).resolve())})
    return RunConfig.make(
        command="ensemble", data=data, split=cfg.split, metrics=cfg.metrics, tracking=cfg.tracking,
        ensemble=ensemble, output={"submission": str(Path(cfg.output.submission).resolve())},
    )  # fmt: skip


def write_report(out: Path, cfg, run) -> list[Path]:
    """``report.html`` + ``report.json``: the profile, each member's tuning curve, fold A/B, the choice."""
    from ..report.auto_page import build_auto_page

    meta = [f"{cfg.data.path}: {run.profile['users']:,} users x {run.profile['items']:,} items, "
            f"{run.profile['events']:,} events; protocol last {cfg.split.last} + random {cfg.split.random}, "
            f"seed {cfg.split.seed}"]  # fmt: skip
    return list(build_auto_page("toprec auto", meta, run, cfg.metrics.k).write(out, "report"))
