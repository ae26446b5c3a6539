"""``runs``: recent runs in the tracking store, newest first."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import ToprecError


def runs(tracking_uri: str | None = None, experiment: str = "toprec", limit: int = 20, model: str | None = None,
         command: str | None = None, trials: bool = False) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    """(store URI, rows): run id, command, model, parameters (or the tuned best), recall@10, seconds, status."""
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
    rows = []
    for r in found:
        tags = r.data.tags
        if not trials and "mlflow.parentRunId" in tags:
            continue
        m = r.data.metrics
        params = {k[len("model.params.") :]: v for k, v in r.data.params.items() if k.startswith("model.params.")}
        best = {k[len("best.") :]: v for k, v in r.data.params.items() if k.startswith("best.")}
        end = r.info.end_time or int(time.time() * 1000)
        rows.append({
            "run_id": r.info.run_id, "start": r.info.start_time, "name": tags.get("mlflow.runName", ""),
            "command": tags.get("toprec.command", ""), "model": tags.get("toprec.model", ""),
            "params": best or params, "recall@10": m.get("recall_at_10", m.get("best_recall_at_10")),
            "seconds": (end - r.info.start_time) / 1000.0, "status": r.info.status,
        })  # fmt: skip
        if len(rows) >= limit:
            break
    return uri, rows
