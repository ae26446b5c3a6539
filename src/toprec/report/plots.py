"""Figures for the HTML reports: matplotlib (headless Agg), embedded as base64 PNG.

Every figure keeps two copies of its numbers: ``data`` (what goes into the
JSON beside the page: the x values and each named series) and ``plotted``
(the same series read back from the matplotlib artists after drawing: bar
heights, line y values, scatter offsets). Tests compare the two, so the JSON
is exactly what the reader sees.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

DPI = 80
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


@dataclass
class Figure:
    """One embedded figure: PNG bytes, the JSON data, and the data read back from the plot."""

    id: str
    title: str
    caption: str
    data: dict[str, Any]  # {"x": [...], "x_label": ..., "y_label": ..., "series": {label: [...]}}
    png: bytes = b""
    plotted: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "caption": self.caption, **self.data}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _tolist(a) -> list:
    arr = np.asarray(a)
    if arr.dtype.kind in "fc":
        return [None if not np.isfinite(v) else float(v) for v in arr.ravel().tolist()] if arr.ndim == 1 else [
            _tolist(r) for r in arr
        ]
    if arr.dtype.kind in "iub":
        return arr.tolist()
    return [str(v) for v in arr.tolist()]


def _finish(fig_obj: Figure, fig, ax) -> Figure:
    """Read the plotted numbers back from the artists, render the PNG, close the figure."""
    plotted: dict[str, np.ndarray] = {}
    for container in ax.containers:
        label = container.get_label()
        horizontal = getattr(container, "orientation", "vertical") == "horizontal"
        plotted[label] = np.array([p.get_width() if horizontal else p.get_height() for p in container.patches],
                                  dtype=np.float64)  # fmt: skip
    for line in ax.get_lines():
        label = line.get_label()
        if not label.startswith("_"):
            plotted[label] = np.asarray(line.get_ydata(), dtype=np.float64)
    for coll in ax.collections:
        label = coll.get_label()
        if label and not label.startswith("_"):
            plotted[label] = np.asarray(coll.get_offsets(), dtype=np.float64)
    fig_obj.plotted = plotted
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    fig_obj.png = buf.getvalue()
    return fig_obj


def _new(width: float = 6.4, height: float = 3.8):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    ax.grid(True, alpha=0.3)
    ax.set_axisbelow(True)
    return fig, ax


def histogram(
    fid: str, title: str, edges: np.ndarray, counts: np.ndarray, x_label: str, caption: str = "",
    log_x: bool = True, log_y: bool = False, y_label: str = "count",
) -> Figure:  # fmt: skip
    """Bars over bins ``[edges[i], edges[i+1])`` (log-spaced x by default)."""
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts)
    label = y_label
    fo = Figure(fid, title, caption, {
        "kind": "histogram", "x_label": x_label, "y_label": y_label, "bin_edges": _tolist(edges),
        "x": _tolist(edges[:-1]), "series": {label: _tolist(counts)},
    })  # fmt: skip
    fig, ax = _new()
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=PALETTE[0], edgecolor="white",
           linewidth=0.5, label=label)  # fmt: skip
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    return _finish(fo, fig, ax)


def lines(
    fid: str, title: str, x: np.ndarray, series: dict[str, np.ndarray], x_label: str, y_label: str,
    caption: str = "", log_x: bool = False, log_y: bool = False, dashed: Sequence[str] = (), markers: bool = False,
    x_ticklabels: Sequence[str] | None = None,
) -> Figure:  # fmt: skip
    """One line per series over shared x values."""
    x = np.asarray(x)
    fo = Figure(fid, title, caption, {
        "kind": "lines", "x_label": x_label, "y_label": y_label, "x": _tolist(x),
        "series": {k: _tolist(v) for k, v in series.items()},
    })  # fmt: skip
    fig, ax = _new()
    xs = np.arange(len(x)) if x_ticklabels is not None else x
    for i, (label, y) in enumerate(series.items()):
        ax.plot(xs, np.asarray(y, dtype=np.float64), label=label, color=PALETTE[i % len(PALETTE)],
                linestyle="--" if label in dashed else "-", marker="o" if markers else None, markersize=3)  # fmt: skip
    if x_ticklabels is not None:
        step = max(1, len(x_ticklabels) // 12)
        ax.set_xticks(xs[::step])
        ax.set_xticklabels(list(x_ticklabels)[::step], rotation=45, ha="right", fontsize=8)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _finish(fo, fig, ax)


def bars(
    fid: str, title: str, categories: Sequence[str], series: dict[str, np.ndarray], y_label: str,
    caption: str = "", x_label: str = "", horizontal: bool = False, log_y: bool = False,
) -> Figure:  # fmt: skip
    """Grouped bars: one group per category, one bar per series."""
    cats = [str(c) for c in categories]
    fo = Figure(fid, title, caption, {
        "kind": "bars", "x_label": x_label, "y_label": y_label, "x": cats,
        "series": {k: _tolist(v) for k, v in series.items()},
    })  # fmt: skip
    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = _new(6.4, max(3.6, 0.28 * len(cats)) if horizontal else 3.6)
    pos = np.arange(len(cats), dtype=np.float64)
    for i, (label, v) in enumerate(series.items()):
        v = np.asarray(v, dtype=np.float64)
        off = pos - 0.4 + width * (i + 0.5)
        if horizontal:
            ax.barh(off, v, height=width, label=label, color=PALETTE[i % len(PALETTE)])
        else:
            ax.bar(off, v, width=width, label=label, color=PALETTE[i % len(PALETTE)])
    if horizontal:
        ax.set_yticks(pos)
        ax.set_yticklabels(cats, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(y_label)
        if log_y:
            ax.set_xscale("log")
    else:
        ax.set_xticks(pos)
        ax.set_xticklabels(cats, rotation=30 if max((len(c) for c in cats), default=0) > 6 else 0,
                           ha="right" if max((len(c) for c in cats), default=0) > 6 else "center", fontsize=8)  # fmt: skip
        ax.set_ylabel(y_label)
        ax.set_xlabel(x_label)
        if log_y:
            ax.set_yscale("log")
    ax.set_title(title)
    if len(series) > 2 and not horizontal:
        # many bars leave no free corner: the legend right of the axes, in space the layout reserves for it
        # (below the axes it covered the tick labels and the x label)
        fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right upper", frameon=False)
    elif len(series) > 1:
        ax.legend(fontsize=8)
    return _finish(fo, fig, ax)


def scatter(
    fid: str, title: str, xy: np.ndarray, groups: np.ndarray, group_names: Sequence[str], caption: str = "",
    ids: Sequence | None = None,
) -> Figure:  # fmt: skip
    """2-D map: one scatter series per group (label = group name)."""
    xy = np.asarray(xy, dtype=np.float64)
    groups = np.asarray(groups)
    series = {}
    fig, ax = _new(6.4, 5.2)
    for g, name in enumerate(group_names):
        sel = groups == g
        if not sel.any():
            continue
        series[str(name)] = xy[sel]
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.75, label=str(name), color=PALETTE[g % len(PALETTE)])
    fo = Figure(fid, title, caption, {
        "kind": "scatter", "x_label": "dimension 1", "y_label": "dimension 2",
        "x": [] if ids is None else [str(i) for i in ids], "group_of_x": _tolist(groups),
        "series": {k: _tolist(v) for k, v in series.items()},
    })  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2)
    return _finish(fo, fig, ax)
