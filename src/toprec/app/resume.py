"""A resumed ``auto`` run must be the same run: the settings its stored studies and lists depend on.

``auto`` resumes from ``--out`` (its studies, trial lists, state). Those hold
fold-A values and top-N lists of one dataset, split and list length; run again
with other data, ``-k``, split flags or members, they would be read as if they
belonged to this run (a traceback at best, a submission chosen on another
dataset's validation at worst). ``run.json`` records the settings the first
run used; a later run into the same ``--out`` must match them (the budget and
the device may change: a longer budget continues the search).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ToprecError
from .output import write_json
from .serving import data_info

RUN_FILE = "run.json"
#: setting -> how the command line names it
FLAGS = {"data": "--data", "k": "-k", "last": "--last", "random": "--random", "seed": "--seed",
         "candidates": "--candidates", "members": "--members"}  # fmt: skip


def run_key(cfg, ds) -> dict[str, Any]:
    """What the stored studies and lists depend on: the events (a fingerprint), the list length, the split,
    the candidates per member and the members asked for."""
    import numpy as np
    import xxhash

    a, s = cfg.auto, cfg.split
    h = xxhash.xxh3_64()  # the times too: they decide which events the split holds out
    t = getattr(ds, "time", None)
    if t is not None:
        h.update(np.ascontiguousarray(t).tobytes())
    members = None if a.members is None else sorted({m.strip().lower() for m in a.members if m.strip()})
    return {"data": f"{data_info(ds)['fingerprint']}-{h.hexdigest()}", "k": cfg.metrics.k, "last": s.last,
            "random": s.random, "seed": s.seed, "candidates": a.candidates, "members": members}  # fmt: skip


def _show(name: str, value: Any) -> str:
    if name == "members":
        return f"{FLAGS[name]} {','.join(value)}" if value else f"no {FLAGS[name]}"
    return f"{FLAGS[name]} {value}"


def check_same_run(out: Path, key: dict[str, Any]) -> None:
    """Before anything is read from or written to ``out``: a one-line error when it holds a started run of other
    settings; otherwise ``run.json`` records this run's (a folder from before this file is taken as it is)."""
    path = out / RUN_FILE
    # a run that stopped before it stored anything (e.g. at the budget check) does not bind the folder
    started = any((out / f).exists() for f in ("state.json", "studies.db", "lists"))
    if path.is_file() and started:
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            raise ToprecError(f"--out {out}: {RUN_FILE} cannot be read; give another --out for a new run") from None
        for name, value in key.items():
            if name in old and old[name] != value:
                what = ("other data (its events differ from --data's)" if name == "data" else
                        f"other settings ({_show(name, old[name])} there, {_show(name, value)} now)")
                raise ToprecError(f"--out {out}: holds an auto run of {what}; the same command resumes it, another "
                                  "--out starts a new run")  # fmt: skip
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, key)
