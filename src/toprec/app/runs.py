"""``runs``: recent runs in the tracking store, newest first."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import ToprecError


def runs(tracking_uri: str | None = None, experiment: str = "toprec", limit: int = 20, model: str | None = None,
         command: str | None = None, trials: bool = False) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """(store URI, rows): run id, command, model, data path, parameters (or the tuned best), recall@10, seconds,
    status. A run that evaluated several models shows the best one's recall@10 (``best_model``); the
    trainer's per-epoch validation recall is logged as ``val_recall@10`` and never shown here."""
    from ..experiment.tracking import _connect, _quiet_loggers, resolve_uri

    uri = resolve_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise ToprecError(f"no tracking store at {uri[len('sqlite:///'):]} (run a command first, or --tracking-uri)")
    _quiet_loggers()
    client, exp_id = _connect(uri, experiment)
    filters = []
    if model:
        filters.append(f"tags.`toprec.model` = '{model.strip().lower()}'")
    if command:
        filters.append(f"tags.`toprec.command` = '{command.strip().lower()}'")
    try:
        found = client.search_runs([exp_id], filter_string=" and ".join(filters), max_results=limit if trials else
                                   max(limit * 5, 100), order_by=["attributes.start_time DESC"])  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        raise ToprecError(f"tracking store {uri}: {' '.join(str(exc).split())[:200]}") from None
    children: dict[str, list] = {}
    for r in found:
        parent = r.data.tags.get("mlflow.parentRunId")
        if parent:
            children.setdefault(parent, []).append(r)
    rows = []
    for r in found:
        tags = r.data.tags
        if not trials and "mlflow.parentRunId" in tags:
            continue
        m = r.data.metrics
        params = {k[len("model.params.") :]: v for k, v in r.data.params.items() if k.startswith("model.params.")}
        best = {k[len("best.") :]: v for k, v in r.data.params.items() if k.startswith("best.")}
        recall, best_model = m.get("recall_at_10", m.get("best_recall_at_10")), tags.get("toprec.best_model")
        if recall is None:  # several models evaluated in child runs (a store written before best_recall@10)
            scored = [(c.data.metrics["recall_at_10"], c.data.tags.get("toprec.model", "")) for c in
                      children.get(r.info.run_id, []) if "recall_at_10" in c.data.metrics]  # fmt: skip
            if scored:
                recall, best_model = max(scored)
        end = r.info.end_time or int(time.time() * 1000)
        rows.append({
            "run_id": r.info.run_id, "start": r.info.start_time, "name": tags.get("mlflow.runName", ""),
            "command": tags.get("toprec.command", ""), "model": tags.get("toprec.model", ""),
            "data": r.data.params.get("data.path", ""), "params": best or params, "recall@10": recall,
            "best_model": best_model, "seconds": (end - r.info.start_time) / 1000.0, "status": r.info.status,
        })  # fmt: skip
        if len(rows) >= limit:
            break
    return uri, rows
