"""Memory planning: how much memory there is, and the one-line refusal when a fit would not fit.

A model estimates the peak of its fit from the data's shape
(:meth:`toprec.models.base.Recommender.memory_estimate`); ``Recommender.fit``
compares it with :func:`available` before anything is allocated and raises a
:class:`~toprec.errors.ToprecError` (one line, exit status 2 from the CLI)
naming the estimate, the memory there is and what to do instead, rather than
being killed by the kernel's out-of-memory killer half-way.

The memory available is the smaller of ``MemAvailable`` (``/proc/meminfo``)
and what the process's cgroup still allows (limit - usage + reclaimable page
cache, over the cgroup and its ancestors). ``TOPREC_MEMORY_LIMIT`` overrides
it: a size (``2G``, ``512M``, ``1.5GB``, bytes) or ``off`` (no check).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ToprecError

ENV = "TOPREC_MEMORY_LIMIT"
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    """A fit's estimated peak: ``bytes`` beyond what is already in memory (the data)."""

    bytes: int
    #: what dominates, e.g. "item-space Gram + inverse for 100,000 items"
    what: str
    #: what to do instead, e.g. "use --param form=users or a sparse model such as rp3beta"
    alternative: str = ""


def parse_size(text: str) -> int:
    """``"2G"`` / ``"512MB"`` / ``"1.5GiB"`` / ``"1000000"`` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtb]?)(i?b)?\s*", str(text).lower())
    if not m:
        raise ToprecError(f"{ENV}={text!r}: expected a size such as 2G, 512M or a number of bytes, or 'off'")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def fmt_bytes(n: float) -> str:
    """Bytes in the unit that reads best: ``40.1 GB``, ``512 MB`` (binary units)."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= 2**60 else value  # cgroup v1 writes "no limit" as a huge number


def _reclaimable(stat: Path, key: str) -> int:
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What this process's cgroup (v2, or v1's memory controller) and its ancestors still allow."""
    best: int | None = None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, rel = parts[1], parts[2].lstrip("/")
        if controllers == "":  # v2
            limit_f, usage_f, stat_key, base = "memory.max", "memory.current", "inactive_file", root
        elif "memory" in controllers.split(","):  # v1
            limit_f, usage_f, stat_key, base = (
                "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file", root / "memory"
            )  # fmt: skip
        else:
            continue
        d = base / rel if rel else base
        while True:
            limit = _read_int(d / limit_f)
            if limit is not None:
                usage = _read_int(d / usage_f) or 0
                free = limit - usage + _reclaimable(d / "memory.stat", stat_key)
                best = free if best is None else min(best, free)
            if d == base or base not in d.parents:
                break
            d = d.parent
    return best


def available() -> int | None:
    """Bytes a fit may still allocate (None: no check, ``TOPREC_MEMORY_LIMIT=off`` or unknown)."""
    env = os.environ.get(ENV, "").strip()
    if env:
        if env.lower() in ("off", "none", "no", "unlimited"):
            return None
        return parse_size(env)
    values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return max(0, min(values)) if values else None


def check_fit(model: str, estimate: MemoryEstimate | None, limit: int | None = None) -> None:
    """Refuse (one-line :class:`ToprecError`) when ``estimate`` exceeds the memory available."""
    if estimate is None:
        return
    limit = available() if limit is None else limit
    if limit is None or estimate.bytes <= limit:
        return
    source = f" ({ENV})" if os.environ.get(ENV, "").strip() else ""
    alt = f"; {estimate.alternative}" if estimate.alternative else ""
    raise ToprecError(
        f"model '{model}' needs ~{fmt_bytes(estimate.bytes)} for {estimate.what}; "
        f"{fmt_bytes(limit)} available{source}{alt} (or set {ENV}=off to try anyway)"
    )
