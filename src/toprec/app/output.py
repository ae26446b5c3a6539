"""Writing a result's JSON atomically (numpy scalars as numbers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import atomic_path, json_default


def write_json(path: str | Path, payload: Any) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=json_default) + "\n")
    return path
