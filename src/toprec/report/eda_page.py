"""The ``toprec eda`` page: sections, tables and figures from :func:`toprec.report.eda.compute_eda`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..version import __version__
from ..data.dataset import Dataset
from . import plots
from .html import Page, fmt

SECTIONS = ("overview", "activity", "time", "genres", "franchises", "sequential", "coverage")

_FR_COLUMNS = [
    ("pairs", "pairs"),
    ("users_watched_part_n", "users of part n"),
    ("users_watched_both", "users of both"),
    ("p_next_part_given_part", "P(n+1 | n)"),
    ("p_next_part_baseline", "P(n+1) baseline"),
    ("lift_next_part", "lift"),
    ("in_order_share", "in order"),
    ("order_signal", "order signal"),
    ("within_next_5_share", "n+1 within next 5"),
    ("within_next_5_expected_random_order", "same, random order"),
    ("within_next_5_lift", "lift (within 5)"),
]


def build_eda_page(ds: Dataset, res: dict[str, Any], source: str = "", seconds: float | None = None) -> Page:
    page = Page(f"toprec EDA: {ds.name or source}")
    page.meta.append(f"data: {source or ds.name} · toprec {__version__}"
                     + (f" · computed in {seconds:.1f} s" if seconds is not None else ""))  # fmt: skip

    act = res["activity"]
    s = page.section("overview", "Overview")
    s.numbers = {k: act[k] for k in ("users", "items", "events", "density", "mean_per_user", "mean_per_item")}
    tn = res["time"].get("numbers", {})
    for k in ("time_min", "time_max"):
        if k in tn:
            s.numbers[k] = tn[k]

    # ---- activity
    s = page.section("activity", "Events per user and per item, popularity concentration")
    s.text.append(
        f"The top 1% of items hold {act['top1pct_items_event_share']:.1%} of all events and the top 10% hold "
        f"{act['top10pct_items_event_share']:.1%} (Gini of item popularity {act['gini_items']:.3f}; "
        f"of user activity {act['gini_users']:.3f})."
    )
    s.numbers = {k: act[k] for k in ("density", "top1pct_items_event_share", "top10pct_items_event_share",
                                     "gini_items", "gini_users")}  # fmt: skip
    uq, iq = act["per_user_quantiles"], act["per_item_quantiles"]
    s.table("Quantiles of events per user and per item", ["quantile", "events per user", "events per item"],
            [[k, uq[k], iq[k]] for k in uq])  # fmt: skip
    e, c = act["user_hist"]
    s.figures.append(plots.histogram("user_activity", "Events per user", e, c, "events per user (log scale)",
                                     caption="Users per log-spaced bin of activity.", y_label="users"))  # fmt: skip
    e, c = act["item_hist"]
    s.figures.append(plots.histogram("item_popularity", "Events per item", e, c, "events per item (log scale)",
                                     caption="Items per log-spaced bin of popularity.", y_label="items"))  # fmt: skip
    grid, lor = act["lorenz"]
    s.figures.append(plots.lines(
        "lorenz", "Popularity concentration", grid, {"cumulative event share": lor, "equal popularity": grid},
        "share of items (most popular first)", "share of events", dashed=("equal popularity",),
        caption="Share of all events on the most popular x% of items.",
    ))  # fmt: skip

    # ---- time
    tm = res["time"]
    s = page.section("time", "Events over time")
    s.numbers = dict(tm.get("numbers", {}))
    if "median_share_of_user_events_on_busiest_day" in s.numbers:
        s.text.append(
            f"Half of the users have at least {s.numbers['median_share_of_user_events_on_busiest_day']:.0%} of "
            f"their events on a single day; the median user is active over "
            f"{s.numbers['median_user_span_days']:.1f} days. "
            f"{s.numbers['share_events_same_time_as_previous']:.1%} of events share their timestamp with the "
            "user's previous event (their order is then by item id, not by time)."
        )
    s.figures.append(plots.lines(
        "events_over_time", f"Events per {tm['unit']}", np.array(tm["x"]),
        {"events": tm["events"], "new users (first event)": tm["new_users"]}, tm["unit"], "count", log_y=True,
        x_ticklabels=tm["x"], markers=len(tm["x"]) < 40,
    ))  # fmt: skip

    # ---- genres
    g = res["genres"]
    s = page.section("genres", "Genres: per-user concentration and popularity")
    if g is None:
        s.text.append("No genre information in this data set.")
    else:
        n = g["numbers"]
        s.numbers = dict(n)
        s.text.append(
            f"A user's most watched genre takes {n['mean_top_genre_share']:.1%} of their events on average, "
            f"against {n['mean_top_genre_share_baseline']:.1%} for the same users with items shuffled across all "
            f"events (same activity, no taste); normalised genre entropy {n['mean_normalised_entropy']:.3f} vs "
            f"{n['mean_normalised_entropy_baseline']:.3f} (1 = spread evenly over all {n['genres']} genres). "
            "Each event counts as one unit split over the item's genres."
        )
        x = np.round(g["bin_centres"], 4)
        s.figures.append(plots.lines(
            "genre_top_share", "Top-genre share per user", x,
            {"users": g["top_share_hist"], "baseline (items shuffled across users)": g["top_share_hist_baseline"]},
            "share of the user's events in their top genre", "share of users",
            dashed=("baseline (items shuffled across users)",),
        ))  # fmt: skip
        s.figures.append(plots.lines(
            "genre_entropy", "Genre entropy per user (normalised)", x,
            {"users": g["entropy_hist"], "baseline (items shuffled across users)": g["entropy_hist_baseline"]},
            "normalised entropy of the user's genre distribution", "share of users",
            dashed=("baseline (items shuffled across users)",),
        ))  # fmt: skip
        s.figures.append(plots.bars(
            "genre_popularity", "Genre popularity", g["genre_names"],
            {"share of events": g["genre_event_share"], "share of items": g["genre_item_share"]}, "share",
            horizontal=True,
        ))  # fmt: skip

    # ---- franchises
    f = res["franchises"]
    s = page.section("franchises", "Series and franchises: part n, then part n+1?")
    s.numbers = dict(f["numbers"])
    s.text.append(
        "Pairs (part n, part n+1) come from titles (same stem with a number, a roman numeral or a subtitle, "
        "ordered by year), from sequel links (sequels.tsv) and from a franchises.tsv ground truth when present "
        f"(sources here: {', '.join(f['sources']) or 'none'}). 'P(n+1 | n)' is the share of users of part n who "
        "also watched part n+1, against n+1's overall popularity; 'in order' is the share of users with both who "
        "watched n first (0.5 when order carries nothing; 'order signal' = 2 x in order - 1); 'within next 5' is how "
        "often n+1 comes within the user's next 5 events after n, against the rate a random order would give."
    )
    if f["numbers"].get("pairs", 0) == 0:
        s.text.append("No franchise pairs were found in this data set.")
    else:
        num = f["numbers"]
        s.text.append(
            f"Users of part n watched part n+1 {num['p_next_part_given_part']:.1%} of the time (popularity alone: "
            f"{num['p_next_part_baseline']:.1%}, lift {num['lift_next_part']:.2f}); {num['in_order_share']:.1%} of "
            f"them in order (order signal {num['order_signal']:.3f}); n+1 within the next 5 events "
            f"{num['within_next_5_share']:.1%} vs {num['within_next_5_expected_random_order']:.1%} in a random order."
        )
        bp = f["by_part"]
        s.table("By part number", ["pair"] + [c[1] for c in _FR_COLUMNS],
                [[lab] + [row[c[0]] for c in _FR_COLUMNS] for lab, row in zip(bp["labels"], bp["rows"])])  # fmt: skip
        bs = f["by_source"]
        s.table("By source of the pairs", ["source"] + [c[1] for c in _FR_COLUMNS],
                [[lab] + [row[c[0]] for c in _FR_COLUMNS] for lab, row in zip(bs["labels"], bs["rows"])])  # fmt: skip
        if f.get("top_pairs"):
            s.table("Most watched pairs", ["part n", "part n+1", "users of n", "users of both", "P(n+1 | n)",
                                           "in order"], f["top_pairs"])  # fmt: skip
        rows = bp["rows"]
        s.figures.append(plots.bars(
            "franchise_by_part", "Series behaviour by part", bp["labels"],
            {"P(n+1 | n)": [r["p_next_part_given_part"] for r in rows],
             "P(n+1) baseline": [r["p_next_part_baseline"] for r in rows],
             "in order": [r["in_order_share"] for r in rows],
             "n+1 within next 5": [r["within_next_5_share"] for r in rows],
             "within next 5, random order": [r["within_next_5_expected_random_order"] for r in rows]},
            "share", x_label="pair (part n → part n+1)",
        ))  # fmt: skip

    # ---- sequential
    q = res["sequential"]
    n = q["numbers"]
    s = page.section("sequential", "Sequential signal: does order carry information?")
    s.numbers = dict(n)
    s.text.append(
        f"A user's next event is among the {n['neighbours_per_item']} nearest items (cosine co-occurrence, "
        f"order-free, from {n['similarity_users']:,} users) of their previous event "
        f"{n['next_in_neighbours_of_previous']:.2%} of the time, against {n['random_earlier_in_neighbours']:.2%} for a "
        f"random earlier event of the same user: lift {n['lift']:.3f} (1 = order carries nothing; a random holdout "
        f"hides whatever is above 1). With distinct timestamps only: lift {n['lift_distinct_timestamps']:.3f}; "
        f"for each user's last event (the one a last-event holdout hides): "
        f"{n['last_event_in_neighbours_of_previous']:.2%} vs {n['last_event_random_earlier_in_neighbours']:.2%}, "
        f"lift {n['last_event_lift']:.3f}. Against the union of the neighbours of the previous {n['window']} "
        f"events: {n['next_in_neighbours_of_previous_window']:.2%} vs {n['random_earlier_window_in_neighbours']:.2%} "
        f"for {n['window']} random events from before them, lift {n['window_lift']:.3f}."
    )
    s.figures.append(plots.lines(
        "sequential_lag", "Next event among the neighbours of the event d steps back", q["lags"],
        {"event d steps back": q["lag_rate"], "random earlier event": q["lag_random"]},
        "lag d (events)", "share of events", dashed=("random earlier event",), markers=True,
        caption=f"Events at position >= {int(np.max(q['lags']))} of their user ({n['lag_curve_events']:,} events), "
        "so every lag has the same population.",
    ))  # fmt: skip

    # ---- coverage
    c = res["coverage"]
    s = page.section("coverage", "Side-information coverage")
    s.table("Share of items and of events with each kind of side information",
            ["side information", "items", "events", "distinct values"],
            [[k, a, b, c["distinct_values"].get(k, "–")] for k, a, b in
             zip(c["kinds"], c["item_share"].tolist(), c["event_share"].tolist())])  # fmt: skip
    s.figures.append(plots.bars(
        "side_coverage", "Side-information coverage", c["kinds"],
        {"share of items": c["item_share"], "share of events": c["event_share"]}, "share",
    ))  # fmt: skip
    return page


__all__ = ["build_eda_page", "SECTIONS", "fmt"]
