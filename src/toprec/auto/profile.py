"""The data's profile: what the planner needs to know before choosing members."""

from __future__ import annotations

from typing import Any

import numpy as np


def profile(ds, last: int, random: int) -> dict[str, Any]:
    """Users, items, events, density, activity, side files, whether events are ordered, the last-event share."""
    counts = np.asarray(ds.user_counts)
    times = np.asarray(ds.time) if getattr(ds, "time", None) is not None else None
    # ordered: the Dataset keeps events by (user, time); with a real time column some users' times differ
    ordered = times is not None and len(times) > 1 and bool(np.any(np.diff(times) != 0))
    return {
        "users": int(ds.n_users),
        "items": int(ds.n_items),
        "events": int(ds.n_events),
        "density": float(ds.n_events / max(1, ds.n_users * ds.n_items)),
        "mean_item_count": float(ds.n_events / max(1, ds.n_items)),
        "median_user_count": float(np.median(counts)) if len(counts) else 0.0,
        "wide": bool(ds.n_users < ds.n_items),
        "side_files": sorted(getattr(ds, "features", {}) or {}),
        "ordered": ordered,
        "last_share": float(last / max(1, last + random)),
    }
