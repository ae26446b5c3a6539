"""The margin every auto choice is held to: a paired gain over users larger than its standard error."""

from __future__ import annotations

import numpy as np


def paired(d: np.ndarray) -> tuple[float, float]:
    """Mean of the per-user differences and its standard error."""
    if len(d) < 2:
        return float(d.mean()) if len(d) else 0.0, float("nan")
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def beats(d: np.ndarray) -> bool:
    """The margin every auto choice is held to: a gain larger than its one paired standard error."""
    gain, se = paired(d)
    return bool(se == se and gain > se > 0)
