"""``auto``: the best validated submission in one call, within a wall-clock budget.

Writes, in ``cfg.auto.out``: ``submission.csv`` (also at ``output.submission``),
``pipeline.yaml`` (a ``toprec run`` config that rebuilds the same submission
without searching: the chosen members, fusion method and weights),
``auto.json`` (profile, plan, every member's tuning curve, fold A/B) and
``report.html``; ``studies.db``, ``lists/`` and ``state.json`` let a killed
run resume where it stopped.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from .. import progress
from ..errors import ToprecError
from ..experiment import session
from ..experiment.config import parse_budget
from .data import expect, load_data, output_file, output_folder
from .output import write_json
from .results import AutoResult
from .submit import complete_lists


def auto(cfg) -> AutoResult:
    expect(cfg, "auto")
    from ..auto import run_auto

    a, s, k = cfg.auto, cfg.split, cfg.metrics.k
    if s.protocol != "competition":
        raise ToprecError(f"auto: protocol '{s.protocol}' is not supported; auto validates like the competition's "
                          "hidden test (--last N latest + --random M earlier events per user)")  # fmt: skip
    if s.last + s.random == 0:
        raise ToprecError("auto: --last 0 --random 0 holds nothing out to validate on")
    output = output_file(cfg.output.submission)
    out = output_folder(a.out)
    budget = parse_budget(a.budget)
    with session.tracked_run(cfg) as tracker:
        ds = load_data(cfg.data)
        run = run_auto(ds, out, budget, k=k, last=s.last, random=s.random, seed=s.seed, candidates_n=a.candidates,
                       device=a.device, only=a.members)  # fmt: skip
        complete_lists(run.recs, ds, k, hint="candidate items after fusion (raise --candidates)")
        with progress.task(f"write {output}"):
            run.recs.write_csv(output, ds)
        files = [output]
        if output.resolve() != (out / "submission.csv").resolve():
            shutil.copyfile(output, out / "submission.csv")
            files.append(out / "submission.csv")
        res = AutoResult(output=output, users=len(run.recs), k=k, chosen=run.chosen, method=run.method,
                         weights=run.weights, members=run.members, validation=run.validation, profile=run.profile,
                         elapsed_s=run.elapsed_s, budget_s=run.budget_s, out=out, warnings=run.warnings)  # fmt: skip
        files.append(pipeline_config(cfg, run).save(out / "pipeline.yaml"))
        files.append(write_json(out / "auto.json", {
            "data": cfg.data.path, "profile": run.profile, "plan": run.plan, "members": run.members,
            "chosen": run.chosen, "method": run.method, "weights": run.weights, "specs": run.member_specs,
            "validation": run.validation, "elapsed_s": round(run.elapsed_s, 1), "budget_s": run.budget_s,
            "warnings": run.warnings,
        }))  # fmt: skip
        files.append(write_report(out / "report.html", cfg, run))
        res.files = files
        tracker.log_metrics({f"fold_a.{m['name']}": m["best"]["value"] for m in run.members if m["best"]})
        tracker.log_metrics({"elapsed_s": run.elapsed_s})
        tracker.log_params({"chosen": run.chosen, "method": run.method,
                            **{f"weight.{lab}": w for lab, w in res.used.items()}})  # fmt: skip
        session.log_artifacts(*files)
    return res


def pipeline_config(cfg, run):
    """The ensemble config that rebuilds the submission without searching: chosen members, method, weights."""
    from ..experiment.config import RunConfig

    used = [(lab, w) for lab, w in run.weights.items() if w > 0]
    method = run.method if run.method not in ("auto", "rerank") else "rank"
    return RunConfig.make(
        command="ensemble", data=cfg.data, split=cfg.split, metrics=cfg.metrics, tracking=cfg.tracking,
        ensemble={"members": [lab for lab, _ in used], "weights": [w for _, w in used], "method": method,
                  "search": "none", "validate": False, "candidates": cfg.auto.candidates},
        output={"submission": cfg.output.submission},
    )  # fmt: skip


def write_report(path: Path, cfg, run) -> Path:
    """One self-contained page: the profile, each member's tuning, the ensemble's fold A/B, the choice."""
    from ..io import atomic_path

    k = cfg.metrics.k
    esc = html.escape
    rows = []
    for m in run.members:
        b = m["best"]
        curve = " ".join(f"{c['value']:.4f}" for c in m["curve"])
        best = "" if not b else f"{b['value']:.4f}"
        rows.append(f"<tr><td>{esc(m['name'])}</td><td>{m['trials']}</td><td>{best}</td>"
                    f"<td>{esc(json.dumps(b['params']) if b else '')}</td><td>{m['fit_seconds']:.1f}</td>"
                    f"<td class=c>{esc(curve)}</td><td>{esc(m['why'])}</td></tr>")  # fmt: skip
    v = run.validation
    fold = ""
    if v:
        r = f"recall@{k}"
        fold_rows = "".join(
            f"<tr><td>{esc(x['label'])}</td><td>{x['weight']:.3f}</td><td>{x['fold_a'][r]:.4f}</td>"
            f"<td>{x['fold_b'][r]:.4f}</td><td>{x['fold_b'].get(f'recall_last@{k}', float('nan')):.4f}</td>"
            f"<td>{x['fold_b'].get(f'recall_random@{k}', float('nan')):.4f}</td></tr>" for x in v["members"])
        e = v["ensemble"]
        fold = (f"<h2>Ensemble: {esc(v['method'])}, fold A searched, fold B never</h2><table><tr><th>member</th>"
                f"<th>weight</th><th>A {r}</th><th>B {r}</th><th>B last</th><th>B random</th></tr>{fold_rows}"
                f"<tr><th>ensemble</th><td></td><th>{e['fold_a'][r]:.4f}</th><th>{e['fold_b'][r]:.4f}</th>"
                f"<td>{e['fold_b'].get(f'recall_last@{k}', float('nan')):.4f}</td>"
                f"<td>{e['fold_b'].get(f'recall_random@{k}', float('nan')):.4f}</td></tr></table>"
                f"<p>gain over the best member on fold B: {v['gain_fold_b']:+.4f} "
                f"({v['relative_gain_fold_b']:+.1%}), {'holds' if v['holds'] else 'does not hold'}.</p>")  # fmt: skip
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>toprec auto: {esc(cfg.data.path)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
td.c{{font:11px monospace;text-align:left;max-width:320px}}</style></head><body>
<h1>toprec auto</h1><p>{esc(cfg.data.path)}: {run.profile['users']:,} users x {run.profile['items']:,} items,
{run.profile['events']:,} events; protocol last {cfg.split.last} + random {cfg.split.random}, seed {cfg.split.seed};
{run.elapsed_s / 60:.1f} of {run.budget_s / 60:.1f} minutes.</p>
<p><b>Written: {esc(run.chosen)}</b>, method {esc(run.method)}, weights
{esc(json.dumps({lab: round(w, 4) for lab, w in run.weights.items() if w > 0}))}.</p>
{''.join(f'<p>warning: {esc(w)}</p>' for w in run.warnings)}
<h2>Members tuned on fold A (recall@{k})</h2><table><tr><th>member</th><th>trials</th><th>best</th><th>parameters</th>
<th>s/trial</th><th>curve (trial order)</th><th>why</th></tr>{''.join(rows)}</table>{fold}</body></html>
"""
    with atomic_path(path) as tmp:
        tmp.write_text(page)
    return path
