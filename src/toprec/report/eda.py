"""Exploratory data analysis: the numbers behind ``toprec eda``.

Every function takes a :class:`~toprec.data.dataset.Dataset` and returns a
JSON-friendly dict of numbers and arrays; :func:`build_eda_page` turns them
into the HTML page. All of it is vectorised over events (numpy / scipy
sparse): no Python loop over users or events.

Per-user structure is the point (global distributions hide it), so besides
the usual counts there are three per-user views, each with a baseline that
says what "no structure" would look like:

- genre concentration: each user's genre distribution (top-genre share,
  normalised entropy) against the same users with items shuffled across all
  events (same activity, no taste);
- franchises: for every (part n, part n+1) pair found in titles ("Stem 2",
  "Stem II", "Stem: Subtitle"), sequel links or a ``franchises.tsv`` ground
  truth, how often users of part n watch part n+1 (against n+1's popularity),
  in which order (in-order share; 0.5 if order carried nothing), and how often
  n+1 comes within the next 5 events (against the rate under a random order);
- sequential signal: how often a user's next event is among the top-N
  co-occurrence neighbours of the previous event, against the same rate for a
  random earlier event of the same user (lift 1 = order carries nothing), and
  that rate by lag.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.dataset import Dataset
from ..data.loaders import TITLE_YEAR
from ..errors import ToprecError
from ..keys import find_sorted, isin_sorted

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
LAGS = (1, 2, 3, 5, 10, 20)
WINDOW = 5  # "n+1 within the next WINDOW events"


# ---------------------------------------------------------------- helpers
def _log_bins(values: np.ndarray, n_bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Integer log-spaced bins [e_i, e_{i+1}) covering ``values`` (>= 1), and the counts."""
    top = max(2.0, float(values.max()) + 1.0) if len(values) else 2.0
    edges = np.unique(np.round(np.logspace(0, np.log10(top), n_bins + 1)))
    if edges[-1] < top:
        edges = np.r_[edges, top]
    counts, _ = np.histogram(values, bins=edges)
    return edges, counts


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of a non-negative count vector (0 = equal, ->1 = concentrated)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float((2.0 * (i * x).sum() / (n * x.sum())) - (n + 1.0) / n)


def positions(ds: Dataset) -> np.ndarray:
    """Each event's 0-based position in its user's time order."""
    return np.arange(ds.n_events, dtype=np.int64) - ds.user_ptr[ds.user]


def shuffle_order(ds: Dataset, seed: int = 0) -> Dataset:
    """The same data with each user's items randomly permuted over the user's own time slots.

    Sets, activity and popularity are unchanged; only the order within each
    user is destroyed. The franchise-order and sequential figures of the
    result measure what a random order gives (tests and benchmarks use it).
    """
    rng = np.random.default_rng(seed)
    perm = np.lexsort((rng.random(ds.n_events), ds.user))  # a random order within each user block
    return Dataset(ds.user_ids, ds.item_ids, ds.user, ds.item[perm], ds.time, ds.features, ds.titles,
                   f"{ds.name}:shuffled", dict(ds.summary), _sorted=True)  # fmt: skip


def read_extras(folder: str | os.PathLike | None, ds: Dataset) -> dict[str, np.ndarray]:
    """Sequel links and planted franchises beside the data, as internal item pairs.

    ``sequels.tsv`` (``item<TAB>sequel``: part n -> part n+1) and
    ``franchises.tsv`` (``item<TAB>franchise<TAB>part``, the synthetic
    generator's ground truth) are optional; rows naming unknown items are
    ignored (and counted).
    """
    out: dict[str, Any] = {}
    if folder is None:
        return out
    folder = Path(folder)
    if not folder.is_dir():
        return out
    path = folder / "sequels.tsv"
    if path.exists():
        frame = _read_tsv(path, ["item", "sequel"])
        a, b = ds.item_index(frame["item"].to_numpy()), ds.item_index(frame["sequel"].to_numpy())
        ok = (a >= 0) & (b >= 0) & (a != b)
        out["sequel_links"] = np.stack([a[ok], b[ok]], 1).astype(np.int64)
        out["sequel_links_unknown"] = int((~ok).sum())
    path = folder / "franchises.tsv"
    if path.exists():
        frame = _read_tsv(path, ["item", "franchise", "part"])
        idx = ds.item_index(frame["item"].to_numpy())
        try:
            part = pd.to_numeric(frame["part"]).to_numpy()
        except (ValueError, TypeError):
            bad = pd.to_numeric(frame["part"], errors="coerce").isna().to_numpy().argmax()
            raise ToprecError(f"{path}: row {bad + 2}: part '{frame['part'].iloc[bad]}' is not a number") from None
        fr = pd.factorize(frame["franchise"].astype(str))[0]
        ok = idx >= 0
        idx, part, fr = idx[ok], part[ok], fr[ok]
        o = np.lexsort((part, fr))
        idx, part, fr = idx[o], part[o], fr[o]
        nxt = (fr[1:] == fr[:-1]) & (part[1:] == part[:-1] + 1)
        out["franchise_truth"] = np.stack([idx[:-1][nxt], idx[1:][nxt]], 1).astype(np.int64)
    return out


def _read_tsv(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ToprecError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ToprecError(f"{path}: missing column '{missing[0]}' (found: {', '.join(frame.columns)})")
    return frame[columns]


# ---------------------------------------------------------------- activity
def activity(ds: Dataset) -> dict[str, Any]:
    """Events per user / item (log bins, quantiles), density, popularity concentration."""
    uc = np.asarray(ds.user_counts, dtype=np.int64)
    ic = np.asarray(ds.item_counts, dtype=np.int64)
    u_edges, u_hist = _log_bins(uc)
    i_edges, i_hist = _log_bins(ic)
    by_pop = np.sort(ic)[::-1]
    cum = np.cumsum(by_pop) / max(1, by_pop.sum())

    def top_share(share: float) -> float:
        n = max(1, int(np.ceil(share * ds.n_items)))
        return float(cum[min(n, len(cum)) - 1]) if len(cum) else 0.0

    grid = np.linspace(0.0, 1.0, 101)
    lorenz = np.interp(grid * ds.n_items, np.r_[0, np.arange(1, ds.n_items + 1)], np.r_[0.0, cum])
    return {
        "users": ds.n_users,
        "items": ds.n_items,
        "events": ds.n_events,
        "density": float(ds.density),
        "per_user_quantiles": {f"q{round(q * 100)}": float(v) for q, v in zip(QUANTILES, np.quantile(uc, QUANTILES))},
        "per_item_quantiles": {f"q{round(q * 100)}": float(v) for q, v in zip(QUANTILES, np.quantile(ic, QUANTILES))},
        "mean_per_user": float(uc.mean()),
        "mean_per_item": float(ic.mean()),
        "top1pct_items_event_share": top_share(0.01),
        "top10pct_items_event_share": top_share(0.10),
        "gini_items": gini(ic),
        "gini_users": gini(uc),
        "user_hist": (u_edges, u_hist),
        "item_hist": (i_edges, i_hist),
        "lorenz": (grid, lorenz),
    }


# ---------------------------------------------------------------- time
def over_time(ds: Dataset) -> dict[str, Any]:
    """Events and first events (new users) per month, and per-user time structure."""
    t = np.asarray(ds.time)
    first = t[ds.user_ptr[:-1][ds.user_counts > 0]]
    unix = ds.n_events > 0 and t.min() > 10**8  # looks like unix seconds (after 1973)
    if unix:
        month = t.astype("datetime64[s]").astype("datetime64[M]")
        lo, hi = month.min(), month.max()
        labels = np.arange(lo, hi + np.timedelta64(1, "M"), dtype="datetime64[M]")
        code = (month - lo).astype(np.int64)
        events = np.bincount(code, minlength=len(labels))
        new = np.bincount((first.astype("datetime64[s]").astype("datetime64[M]") - lo).astype(np.int64),
                          minlength=len(labels))  # fmt: skip
        x = [str(m) for m in labels]
        unit = "month"
    else:
        edges = np.linspace(t.min(), t.max() + 1, 41) if ds.n_events else np.array([0.0, 1.0])
        events, _ = np.histogram(t, bins=edges)
        new, _ = np.histogram(first, bins=edges)
        x = [f"{e:.0f}" for e in edges[:-1]]
        unit = "time bin"
    out: dict[str, Any] = {"unit": unit, "x": x, "events": events, "new_users": new}
    if ds.n_events:
        span = t[ds.user_ptr[1:] - 1] - t[ds.user_ptr[:-1]]
        same_prev = np.zeros(ds.n_events, dtype=bool)
        same_prev[1:] = (t[1:] == t[:-1]) & (ds.user[1:] == ds.user[:-1])
        out["numbers"] = {
            "time_min": str(np.datetime64(int(t.min()), "s")) if unix else int(t.min()),
            "time_max": str(np.datetime64(int(t.max()), "s")) if unix else int(t.max()),
            ("median_user_span_days" if unix else "median_user_span_time_units"):
                float(np.median(span) / 86400.0) if unix else float(np.median(span)),
            "share_events_same_time_as_previous": float(same_prev.sum() / max(1, ds.n_events - ds.n_users)),
        }
        if unix:
            day = t // 86400
            key = ds.user.astype(np.int64) * (int(day.max()) + 1) + day
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])  # events sorted by (user, time)
            run = np.diff(np.r_[starts, ds.n_events])
            run_user = ds.user[starts]
            busiest = np.zeros(ds.n_users, dtype=np.int64)
            np.maximum.at(busiest, run_user, run)
            share = busiest[ds.user_counts > 0] / ds.user_counts[ds.user_counts > 0]
            out["numbers"]["median_share_of_user_events_on_busiest_day"] = float(np.median(share))
    return out


# ---------------------------------------------------------------- genres
def _genre_dist(rows: np.ndarray, items: np.ndarray, n_rows: int, Gn: sp.csr_matrix) -> np.ndarray:
    X = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, items)), shape=(n_rows, Gn.shape[0]))
    return np.asarray((X @ Gn).toarray(), dtype=np.float64)


def _concentration(UG: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tot = UG.sum(1)
    ok = tot > 0
    P = UG[ok] / tot[ok, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -(np.where(P > 0, P * np.log(P), 0.0)).sum(1)
    n_g = UG.shape[1]
    return P.max(1), H / np.log(n_g) if n_g > 1 else np.zeros(len(H)), np.exp(H)


def genres(ds: Dataset, seed: int = 0, feature: str = "genres") -> dict[str, Any] | None:
    """Per-user genre concentration against a no-taste baseline, and genre popularity."""
    if feature not in ds.features:
        return None
    feat = ds.features[feature]
    G = sp.csr_matrix(feat.matrix, dtype=np.float64)
    per_item = np.asarray(G.sum(1)).ravel()
    Gn = sp.diags(np.where(per_item > 0, 1.0 / np.maximum(per_item, 1), 0.0)) @ G  # an event = 1 unit
    UG = _genre_dist(ds.user, ds.item, ds.n_users, Gn)
    rng = np.random.default_rng(seed)
    UGb = _genre_dist(ds.user, ds.item[rng.permutation(ds.n_events)], ds.n_users, Gn)
    top, ent, eff = _concentration(UG)
    top_b, ent_b, eff_b = _concentration(UGb)
    edges = np.linspace(0.0, 1.0, 21)
    h_top = np.histogram(top, bins=edges)[0] / max(1, len(top))
    h_top_b = np.histogram(top_b, bins=edges)[0] / max(1, len(top_b))
    h_ent = np.histogram(ent, bins=edges)[0] / max(1, len(ent))
    h_ent_b = np.histogram(ent_b, bins=edges)[0] / max(1, len(ent_b))
    ev = UG.sum(0)
    n_items_g = np.asarray((G > 0).sum(0)).ravel()
    order = np.argsort(-ev, kind="stable")
    return {
        "numbers": {
            "genres": int(G.shape[1]),
            "users_with_genre_events": int(len(top)),
            "mean_top_genre_share": float(top.mean()) if len(top) else 0.0,
            "mean_top_genre_share_baseline": float(top_b.mean()) if len(top_b) else 0.0,
            "median_top_genre_share": float(np.median(top)) if len(top) else 0.0,
            "mean_normalised_entropy": float(ent.mean()) if len(ent) else 0.0,
            "mean_normalised_entropy_baseline": float(ent_b.mean()) if len(ent_b) else 0.0,
            "mean_effective_genres": float(eff.mean()) if len(eff) else 0.0,
            "mean_effective_genres_baseline": float(eff_b.mean()) if len(eff_b) else 0.0,
        },
        "bin_centres": (edges[:-1] + edges[1:]) / 2,
        "top_share_hist": h_top,
        "top_share_hist_baseline": h_top_b,
        "entropy_hist": h_ent,
        "entropy_hist_baseline": h_ent_b,
        "genre_names": [str(feat.values[j]) for j in order],
        "genre_event_share": ev[order] / max(ev.sum(), 1e-12),
        "genre_item_share": n_items_g[order] / max(1, ds.n_items),
    }


# ---------------------------------------------------------------- franchises
_ROMAN = {"ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8, "ix": 9, "x": 10}
_NUMBERED = re.compile(
    r"^(?P<stem>.+?):?\s+(?:part\s+|chapter\s+|episode\s+)?(?P<num>\d{1,2}|ii|iii|iv|v|vi|vii|viii|ix|x)(?:\s*[:\-].*)?$"
)
_COLON = re.compile(r"^(?P<stem>[^:]+?)\s*:\s*(?P<sub>.+)$")


def _item_years(ds: Dataset) -> np.ndarray:
    """Release year per item (NaN if unknown): ``years`` feature, else ``(YYYY)`` in the title."""
    years = np.full(ds.n_items, np.nan)
    if "years" in ds.features:
        f = ds.features["years"]
        m = f.matrix
        has = np.diff(m.indptr) > 0
        vals = pd.to_numeric(pd.Series(f.values.astype(str)), errors="coerce").to_numpy()
        years[has] = vals[m.indices[m.indptr[:-1][has]]]
    if ds.titles is not None:
        from_title = pd.Series(ds.titles).astype(str).str.extract(TITLE_YEAR, expand=False)
        ft = pd.to_numeric(from_title, errors="coerce").to_numpy()
        years = np.where(np.isnan(years), ft, years)
    return years


def title_franchises(ds: Dataset) -> np.ndarray:
    """(part n, part n+1) item pairs from titles: "Stem", "Stem 2", "Stem II", "Stem: Subtitle".

    Titles are normalised (year and trailing parenthesis removed, MovieLens'
    trailing ", The" dropped, lower case). Items sharing a stem form a series
    when at least one member is numbered or subtitled and there are at least
    two members; parts are ordered by release year, then number.
    """
    if ds.titles is None:
        return np.zeros((0, 2), dtype=np.int64)
    t = pd.Series(ds.titles).fillna("").astype(str)
    t = t.str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True).str.replace(r"\s*\([^()]*\)\s*$", "", regex=True)
    t = t.str.lower().str.replace(r",\s*(the|a|an)$", "", regex=True).str.replace(r"^(the|a|an)\s+", "", regex=True)
    t = t.str.replace(r"\s+", " ", regex=True).str.strip()
    num = t.str.extract(_NUMBERED)
    col = t.str.extract(_COLON)
    n = pd.Series(num["num"]).map(lambda s: _ROMAN.get(s, s) if isinstance(s, str) else s)
    n = pd.to_numeric(n, errors="coerce").to_numpy()
    numbered = ~np.isnan(n) & (n >= 1) & (n <= 20)
    colon = ~numbered & col["stem"].notna().to_numpy()
    stem = np.where(numbered, num["stem"].fillna("").to_numpy(), np.where(colon, col["stem"].fillna("").to_numpy(),
                                                                          t.to_numpy()))  # fmt: skip
    stem = pd.Series(stem).str.strip().to_numpy()
    valid_title = t.str.len().to_numpy() > 0
    code, uniq = pd.factorize(stem)
    n_members = np.bincount(code, minlength=len(uniq))
    has_marked = np.bincount(code, weights=(numbered | colon).astype(float), minlength=len(uniq)) > 0
    is_series = (n_members >= 2) & has_marked & (pd.Series(uniq).str.len().to_numpy() > 1)
    keep = np.flatnonzero(is_series[code] & valid_title)
    if len(keep) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    years = _item_years(ds)[keep]
    part = np.where(numbered[keep], n[keep], np.where(colon[keep], 50.0, 1.0))
    o = np.lexsort((keep, part, np.nan_to_num(years, nan=9999.0), code[keep]))
    items, grp = keep[o], code[keep][o]
    nxt = grp[1:] == grp[:-1]
    return np.stack([items[:-1][nxt], items[1:][nxt]], 1).astype(np.int64)


def _pair_set(pairs: np.ndarray, n_items: int) -> np.ndarray:
    return np.unique(pairs[:, 0].astype(np.int64) * n_items + pairs[:, 1]) if len(pairs) else np.zeros(0, np.int64)


def franchises(ds: Dataset, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """Series behaviour over all (part n -> part n+1) pairs found (titles, sequel links, ground truth)."""
    extras = extras or {}
    n = ds.n_items
    sources = {"titles": title_franchises(ds)}
    if "sequel_links" in extras:
        sources["sequel_links"] = extras["sequel_links"]
    if "franchise_truth" in extras:
        sources["franchises_tsv"] = extras["franchise_truth"]
    keys = np.unique(np.concatenate([_pair_set(p, n) for p in sources.values()])) if sources else np.zeros(0)
    keys = keys.astype(np.int64)
    numbers: dict[str, Any] = {f"pairs_from_{k}": int(len(_pair_set(v, n))) for k, v in sources.items()}
    numbers["pairs"] = int(len(keys))
    if "sequel_links_unknown" in extras:
        numbers["sequel_links_unknown_items"] = extras["sequel_links_unknown"]
    if "franchises_tsv" in sources:  # how well the title detector finds the planted series
        truth, found = _pair_set(sources["franchises_tsv"], n), _pair_set(sources["titles"], n)
        both = len(np.intersect1d(truth, found))
        numbers["title_detection_precision"] = both / max(1, len(found))
        numbers["title_detection_recall"] = both / max(1, len(truth))
    out: dict[str, Any] = {"numbers": numbers, "sources": list(sources)}
    if len(keys) == 0:
        return out
    A, B = keys // n, keys % n
    # part number of each pair's first item: depth along the predecessor chain
    pred = np.full(n, -1, dtype=np.int64)
    pred[B[::-1]] = A[::-1]
    depth = np.ones(n, dtype=np.int64)
    for _ in range(32):  # chain length bound (series are short); stops early when stable
        new = np.where(pred >= 0, depth[np.maximum(pred, 0)] + 1, 1)
        if np.array_equal(new, depth):
            break
        depth = new
    part = depth[A]
    # events of part n items, expanded to each pair they start
    order = np.argsort(A, kind="stable")
    A_s, B_s, part_s = A[order], B[order], part[order]
    lo = np.searchsorted(A_s, ds.item, "left")
    cnt = np.searchsorted(A_s, ds.item, "right") - lo
    ev = np.repeat(np.arange(ds.n_events, dtype=np.int64), cnt)
    offs = np.arange(len(ev)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    pidx = np.repeat(lo, cnt) + offs
    u = ds.user[ev].astype(np.int64)
    ev_keys = ds.user.astype(np.int64) * n + ds.item
    ev_order = np.argsort(ev_keys, kind="stable")
    sorted_keys = ev_keys[ev_order]
    q = u * n + B_s[pidx]
    pos, found = find_sorted(sorted_keys, q)
    ev_b = ev_order[pos[found]]
    ev_a, p_f, u_f = ev[found], pidx[found], u[found]
    t_a, t_b = ds.time[ev_a], ds.time[ev_b]
    user_pos = positions(ds)
    gap = user_pos[ev_b] - user_pos[ev_a]
    n_u = ds.user_counts[u_f].astype(np.float64)
    m = np.minimum(WINDOW, n_u - 1)
    expected_window = (m * n_u - m * (m + 1) / 2) / (n_u * (n_u - 1))  # P(1 <= gap <= W) in a random order
    n_pairs = len(A_s)
    watched_a = np.bincount(pidx, minlength=n_pairs).astype(np.float64)
    both = np.bincount(p_f, minlength=n_pairs).astype(np.float64)
    pop_b = ds.item_counts[B_s] / max(1, ds.n_users)
    in_order, reverse = t_a < t_b, t_a > t_b
    within = (gap >= 1) & (gap <= WINDOW)

    def summary(sel_pairs: np.ndarray, sel_events: np.ndarray) -> dict[str, float]:
        wa = watched_a[sel_pairs].sum()
        bo = both[sel_pairs].sum()
        base = (watched_a[sel_pairs] * pop_b[sel_pairs]).sum()
        io, rv = in_order[sel_events].sum(), reverse[sel_events].sum()
        ne = sel_events.sum()
        share = io / max(1, io + rv)
        w_obs = within[sel_events].mean() if ne else 0.0
        w_exp = expected_window[sel_events].mean() if ne else 0.0
        return {
            "pairs": int(sel_pairs.sum()),
            "users_watched_part_n": int(wa),
            "users_watched_both": int(bo),
            "p_next_part_given_part": float(bo / wa) if wa else 0.0,
            "p_next_part_baseline": float(base / wa) if wa else 0.0,
            "lift_next_part": float(bo / base) if base else 0.0,
            "in_order_share": float(share),
            "order_signal": float(2 * share - 1) if io + rv else 0.0,
            "same_time_share": float((ne - io - rv) / ne) if ne else 0.0,
            "within_next_5_share": float(w_obs),
            "within_next_5_expected_random_order": float(w_exp),
            "within_next_5_lift": float(w_obs / w_exp) if w_exp > 0 else 0.0,
        }

    all_pairs = np.ones(n_pairs, dtype=bool)
    numbers.update(summary(all_pairs, np.ones(len(p_f), dtype=bool)))
    cap = 4
    labels, rows = [], []
    for k in range(1, cap + 1):  # a handful of part numbers, each fully vectorised
        sel = (part_s >= k) if k == cap else (part_s == k)
        if not sel.any():
            continue
        labels.append(f"{k}→{k + 1}" if k < cap else f"{k}+→")
        rows.append(summary(sel, sel[p_f]))
    out["by_part"] = {"labels": labels, "rows": rows}
    keys_s = A_s * n + B_s
    src_labels, src_rows = [], []
    for src, pairs in sources.items():  # a few sources, each vectorised
        sel = isin_sorted(_pair_set(pairs, n), keys_s)
        if sel.any():
            src_labels.append(src)
            src_rows.append(summary(sel, sel[p_f]))
    out["by_source"] = {"labels": src_labels, "rows": src_rows}
    ex = np.argsort(-both, kind="stable")[:10]
    titles = ds.titles if ds.titles is not None else np.array([None] * n, dtype=object)

    def name(i: int) -> str:
        return str(titles[i]) if titles[i] is not None else str(ds.item_ids[i])

    out["top_pairs"] = [
        [name(int(A_s[j])), name(int(B_s[j])), int(watched_a[j]), int(both[j]),
         float(both[j] / watched_a[j]) if watched_a[j] else 0.0,
         float(in_order[p_f == j].sum() / max(1, (in_order | reverse)[p_f == j].sum()))]
        for j in ex if both[j] > 0
    ]  # fmt: skip
    return out


# ---------------------------------------------------------------- sequential
class PairLookup:
    """Membership test for item pairs (a, b): a dense boolean table when it fits, else sorted keys."""

    DENSE_MAX_ITEMS = 12000  # 144 MB of booleans

    def __init__(self, keys: np.ndarray, n_items: int):
        self.n = n_items
        self.dense = None
        self.keys = np.sort(np.asarray(keys, dtype=np.int64))
        if n_items <= self.DENSE_MAX_ITEMS:
            self.dense = np.zeros(n_items * n_items, dtype=bool)
            self.dense[self.keys] = True
            self.dense = self.dense.reshape(n_items, n_items)

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.dense[a, b]
        return isin_sorted(self.keys, np.asarray(a, dtype=np.int64) * self.n + b)


def neighbours(X: sp.csr_matrix, n_neighbors: int = 20, block: int = 1024) -> np.ndarray:
    """Sorted keys ``a * n_items + b`` of each item a's top-N cosine co-occurrence neighbours b."""
    from ..models.linalg import gram
    from ..recommend import topk_rows

    n = X.shape[1]
    if n <= 16000:
        G = gram(X)
    else:  # wide catalogues: the sparse product, densified block by block below
        G = sp.csr_matrix(X.T @ X, dtype=np.float32)
    d = np.asarray(X.sum(0)).ravel().astype(np.float32)
    inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-12)), 0.0).astype(np.float32)
    k = min(n_neighbors, n - 1)
    if k < 1:
        return np.zeros(0, dtype=np.int64)
    keys = []
    for s in range(0, n, block):
        e = min(n, s + block)
        S = G[s:e]
        S = (S.toarray() if sp.issparse(S) else np.array(S, dtype=np.float32)) * inv[s:e, None] * inv[None, :]
        S[np.arange(e - s), np.arange(s, e)] = -np.inf
        top = np.empty((e - s, k), dtype=np.int32)
        val = np.empty((e - s, k), dtype=np.float32)
        topk_rows(np.ascontiguousarray(S, dtype=np.float32), k, top, val)  # ties to the lower item index
        rows = np.repeat(np.arange(s, e, dtype=np.int64), k)
        ok = val.ravel() > 0
        keys.append(rows[ok] * n + top.ravel()[ok])
    return np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64)


def sequential(ds: Dataset, n_neighbors: int = 20, sim_users: int = 8000, seed: int = 0) -> dict[str, Any]:
    """Is the next event among the previous event's top-N neighbours more often than a random earlier one's?

    Neighbours: cosine co-occurrence over (at most ``sim_users`` random)
    users, order-free. Rates are over events at position >= 2 of each user;
    the baseline takes, for the same events, a uniformly random earlier event
    of the same user other than the immediately previous one. The lag curve
    uses events at position >= max lag so every lag has the same population.
    """
    rng = np.random.default_rng(seed)
    X = ds.matrix
    sampled = ds.n_users > sim_users
    if sampled:
        X = X[np.sort(rng.choice(ds.n_users, size=sim_users, replace=False))]
    lookup = PairLookup(neighbours(X, n_neighbors), ds.n_items)
    n = ds.n_items
    item = ds.item
    pos = positions(ds)

    def hit(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        return lookup(item[prev], item[cur])

    e = np.flatnonzero(pos >= 2)
    nxt = hit(e - 1, e)
    j = ds.user_ptr[ds.user[e]] + (rng.random(len(e)) * (pos[e] - 1)).astype(np.int64)  # in [start, e-2]
    rnd = hit(j, e)
    distinct = ds.time[e] != ds.time[e - 1]
    next_rate, rnd_rate = float(nxt.mean()) if len(e) else 0.0, float(rnd.mean()) if len(e) else 0.0
    max_lag = max(LAGS)
    e2 = np.flatnonzero(pos >= max_lag)
    curve = np.array([hit(e2 - d, e2).mean() if len(e2) else 0.0 for d in LAGS])  # one pass per lag
    j2 = ds.user_ptr[ds.user[e2]] + (rng.random(len(e2)) * pos[e2]).astype(np.int64)  # in [start, e-1]
    curve_rnd = float(hit(j2, e2).mean()) if len(e2) else 0.0
    numbers = {
        "neighbours_per_item": int(min(n_neighbors, n - 1)),
        "similarity_users": int(X.shape[0]),
        "events_measured": int(len(e)),
        "next_in_neighbours_of_previous": next_rate,
        "random_earlier_in_neighbours": rnd_rate,
        "lift": next_rate / rnd_rate if rnd_rate > 0 else 0.0,
        "signal": (next_rate / rnd_rate - 1.0) if rnd_rate > 0 else 0.0,
        "next_rate_distinct_timestamps": float(nxt[distinct].mean()) if distinct.any() else 0.0,
        "random_rate_distinct_timestamps": float(rnd[distinct].mean()) if distinct.any() else 0.0,
        "lag_curve_events": int(len(e2)),
    }
    # the previous WINDOW events together vs a random earlier run of WINDOW consecutive events (pos >= 2 * WINDOW)
    e3 = np.flatnonzero(pos >= 2 * WINDOW)
    win = np.zeros(len(e3), dtype=bool)
    win_rnd = np.zeros(len(e3), dtype=bool)
    j3 = ds.user_ptr[ds.user[e3]] + (rng.random(len(e3)) * (pos[e3] - 2 * WINDOW + 1)).astype(np.int64)
    for d in range(1, WINDOW + 1):  # WINDOW lookups, each over all events
        win |= hit(e3 - d, e3)
        win_rnd |= hit(j3 + d - 1, e3)  # j3 .. j3 + WINDOW - 1 <= e3 - WINDOW - 1
    numbers["window"] = WINDOW
    numbers["window_events_measured"] = int(len(e3))
    numbers["next_in_neighbours_of_previous_window"] = float(win.mean()) if len(e3) else 0.0
    numbers["random_earlier_window_in_neighbours"] = float(win_rnd.mean()) if len(e3) else 0.0
    numbers["window_lift"] = (numbers["next_in_neighbours_of_previous_window"]
                              / numbers["random_earlier_window_in_neighbours"]) if win_rnd.any() else 0.0  # fmt: skip
    is_last = np.r_[ds.user[e][1:] != ds.user[e][:-1], True] if len(e) else np.zeros(0, dtype=bool)
    last_next = float(nxt[is_last].mean()) if is_last.any() else 0.0
    last_rnd = float(rnd[is_last].mean()) if is_last.any() else 0.0
    numbers["last_events_measured"] = int(is_last.sum())
    numbers["last_event_in_neighbours_of_previous"] = last_next  # the event the competition's holdout hides
    numbers["last_event_random_earlier_in_neighbours"] = last_rnd
    numbers["last_event_lift"] = last_next / last_rnd if last_rnd > 0 else 0.0
    rd = numbers["random_rate_distinct_timestamps"]
    numbers["lift_distinct_timestamps"] = numbers["next_rate_distinct_timestamps"] / rd if rd > 0 else 0.0
    return {"numbers": numbers, "lags": np.array(LAGS), "lag_rate": curve,
            "lag_random": np.full(len(LAGS), curve_rnd)}  # fmt: skip


# ---------------------------------------------------------------- coverage
SIDE = ("titles", "years", "genres", "directors", "writers")


def side_coverage(ds: Dataset) -> dict[str, Any]:
    """Share of items (and of events) with each kind of side information."""
    names, item_share, event_share = [], [], []
    ic = np.asarray(ds.item_counts, dtype=np.float64)
    kinds = list(SIDE) + [k for k in ds.features if k not in SIDE]
    for kind in kinds:
        if kind == "titles":
            has = np.zeros(ds.n_items, dtype=bool) if ds.titles is None else np.array(
                [t is not None and t == t for t in ds.titles], dtype=bool)  # fmt: skip
        elif kind in ds.features:
            has = np.diff(ds.features[kind].matrix.indptr) > 0
        else:
            has = np.zeros(ds.n_items, dtype=bool)
        names.append(kind)
        item_share.append(float(has.mean()) if ds.n_items else 0.0)
        event_share.append(float(ic[has].sum() / max(1.0, ic.sum())))
    values = {k: int(len(ds.features[k].values)) for k in ds.features}
    return {"kinds": names, "item_share": np.array(item_share), "event_share": np.array(event_share),
            "distinct_values": values}  # fmt: skip


# ---------------------------------------------------------------- the page
def compute_eda(ds: Dataset, folder=None, *, seed: int = 0, n_neighbors: int = 20, sim_users: int = 8000,
                step: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """All EDA numbers for ``ds`` (``folder``: where to look for sequels.tsv / franchises.tsv)."""
    step = step or (lambda _msg: None)
    step("activity")
    res: dict[str, Any] = {"activity": activity(ds)}
    step("time")
    res["time"] = over_time(ds)
    step("genres")
    res["genres"] = genres(ds, seed)
    step("franchises")
    res["franchises"] = franchises(ds, read_extras(folder, ds))
    step("sequential")
    res["sequential"] = sequential(ds, n_neighbors, sim_users, seed)
    step("coverage")
    res["coverage"] = side_coverage(ds)
    return res
