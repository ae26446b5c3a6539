"""report.html presentation: legends clear of the axis labels, one number format per table column."""

from __future__ import annotations

import numpy as np
import pytest

from toprec.report import html, plots


@pytest.mark.parametrize("n_models", [3, 4, 6])
@pytest.mark.parametrize("labels", [["10–11"], ["top 1%", "1–5%", "5–20%", "20–50%", "50–100%"]])
def test_bar_legend_covers_no_axis_label(monkeypatch, n_models, labels):
    """The "recall@10 by user activity" / "held-out events found, by item popularity" figures: many models."""
    boxes = {}
    finish = plots._finish

    def spy(fo, fig, ax):
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        legends = [lg for lg in [*fig.legends, ax.get_legend()] if lg is not None]
        boxes["legend"] = [lg.get_window_extent(r) for lg in legends]
        texts = [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
        boxes["labels"] = [t.get_window_extent(r) for t in texts if t.get_text()]
        boxes["axes"] = ax.get_window_extent(r)
        return finish(fo, fig, ax)

    monkeypatch.setattr(plots, "_finish", spy)
    series = {f"model-{i}": np.linspace(0.1, 0.9, len(labels)) for i in range(n_models)}
    plots.bars("hit_rate_by_item_popularity", "Held-out events found, by item popularity", labels, series,
               "share in top 10", x_label="item popularity rank")  # fmt: skip
    assert len(boxes["legend"]) == 1 and len(boxes["labels"]) >= 3
    legend = boxes["legend"][0]
    for label in boxes["labels"]:
        assert not legend.overlaps(label), (legend, label)
    assert not legend.overlaps(boxes["axes"])  # nor the bars


def test_a_table_column_has_one_number_format():
    t = html.Table("Hit rate per popularity bucket", ["items", "held-out events", "a", "b"],
                   [["top 1%", 40, 0.000502, 0.25], ["1–5%", 92, 0.0, 0.125], ["5–20%", 246, 0.5, float("nan")]])
    cells = html._table_html(t)
    assert "<td class='n'>0.000502</td>" in cells and "<td class='n'>0.000000</td>" in cells  # not 0.0000
    assert "<td class='n'>0.500000</td>" in cells
    assert "<td class='n'>0.2500</td>" in cells and "<td class='n'>0.1250</td>" in cells and "–" in cells
    assert "<td class='n'>246</td>" in cells and "<td class='n'>40</td>" in cells
