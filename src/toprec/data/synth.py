"""A fast, realistic synthetic implicit-feedback generator (competition layout).

:func:`synthesize` builds a data set with the statistics of the movie
recommendation competition (31,360 users, 6,807 items, ~5.15M events) and
:func:`write_synth` writes it in the competition layout::

    train_ratings.csv   user,item,time          (sorted by user, time)
    titles.tsv          item<TAB>title          "Title Words (1994)"
    years.tsv           item<TAB>year           (~99.9% of items)
    genres.tsv          item<TAB>genre          1-3 rows per item, 18 genres
    directors.tsv       item<TAB>director       nm0000123, ~85% of items
    writers.tsv         item<TAB>writer         1-2 rows for ~80% of items
    franchises.tsv      item<TAB>franchise<TAB>part   (ground truth, for EDA)

What is planted, so that model comparisons mean something:

* heavy-tailed activity: per-user counts are lognormal (median ~115, mean
  ``mean_per_user``), at least ``min_per_user``, at most ``n_items // 2``;
* long-tail popularity: Zipf-like item weights, every item gets a few events;
* tastes: each user is a Dirichlet mixture over a few favourite genres, and
  has a sensitivity to popularity;
* low-rank structure: user and item factors (item factors are built from
  genre centroids, director and writer effects), so collaborative models
  (EASE, item-kNN) clearly beat popularity, and side information helps;
* franchises: ~300 series of 2-6 items sharing a title stem ("Space Wars",
  "Space Wars 2", ...), genres, often director and writers, and close
  factors; a user who watched part n often goes on to part n+1, later;
* time: each user starts between 2005 and 2015 and comes back in sessions
  over a lognormal span (ending by 2015-03-31); an item is watched only
  after its release year (release falls inside the user's window), and
  franchise parts are watched in order (95% of user x franchise pairs).

Items are drawn for each user without replacement in one shot per block of
users by Gumbel-top-k over logits ``a_u log pop_i + b theta_u . g_i + s
U_u . V_i`` (one matrix product per block), with the blocks spread over a
few threads; everything after that is vectorised over events. Same seed,
byte-identical files (on the same machine and BLAS).
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import ToprecError

try:  # a multi-threaded BLAS fights our threads over these small products (2-4x slower)
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # pragma: no cover
    _threadpool_limits = None
from ..io import atomic_path
from ..keys import isin_sorted

__all__ = ["SynthData", "synthesize", "write_synth", "synth_stats", "GENRES", "FILES"]

GENRES = (
    "Drama", "Comedy", "Thriller", "Romance", "Action", "Crime", "Adventure", "Horror", "Sci-Fi",
    "Fantasy", "Children", "Mystery", "Animation", "War", "Documentary", "Musical", "Western", "Film-Noir",
)  # fmt: skip
_GENRE_WEIGHTS = np.array(
    [0.45, 0.33, 0.18, 0.16, 0.15, 0.13, 0.11, 0.09, 0.08, 0.06, 0.05, 0.06, 0.04, 0.04, 0.04, 0.03, 0.02, 0.01]
)

FILES = (
    "train_ratings.csv", "titles.tsv", "years.tsv", "genres.tsv", "directors.tsv", "writers.tsv", "franchises.tsv",
)  # fmt: skip

_ADJ = (
    "Dark", "Silent", "Last", "Lost", "Hidden", "Broken", "Golden", "Crimson", "Eternal", "Secret", "Wild",
    "Frozen", "Burning", "Forgotten", "Midnight", "Savage", "Little", "Big", "Blue", "Red", "Black", "White",
    "Endless", "Final", "First", "Deadly", "Sweet", "Bitter", "Quiet", "Fallen", "Iron", "Electric", "Hollow",
    "Restless", "Brave", "Wicked", "Lonely", "Perfect", "Strange", "Distant", "Sudden", "Dangerous", "Happy",
    "Infinite", "Cold", "Hot", "Shattered", "Grand", "Royal", "Invisible", "Atomic", "Stolen", "Fearless",
    "Bright", "Falling", "Rising", "Wandering", "Sleeping", "Naked", "Deep",
)  # fmt: skip
_NOUN = (
    "Night", "City", "River", "Heart", "Storm", "Road", "Dream", "Shadow", "Moon", "Star", "Kingdom", "Island",
    "Empire", "Garden", "House", "Mountain", "Ocean", "Sky", "Fire", "Rain", "Winter", "Summer", "Ghost", "Hunter",
    "Soldier", "Stranger", "Killer", "Lover", "Queen", "King", "Prince", "Witness", "Game", "Secret", "Mirror",
    "Journey", "Promise", "Voyage", "Horizon", "Legend", "Dragon", "Wolf", "Tiger", "Angel", "Devil", "Detective",
    "Machine", "Planet", "Space", "Time", "Memory", "Silence", "Blood", "Gold", "Diamond", "Train", "Bridge",
    "Tower", "Desert", "Forest", "Harbor", "Street", "Family", "Brother", "Sister", "Daughter", "Son", "Mother",
    "Father", "Wedding", "Party", "Summit", "Circus", "Hotel", "Castle", "Prison", "School", "Station", "Signal",
    "Code", "Agent", "Pilot", "Captain", "Doctor", "Thief", "Outlaw", "Sheriff", "Robot", "Warrior", "Knight",
    "Wars", "Trek", "Quest", "Chase", "Escape", "Heist", "Affair", "Mission", "Storyteller", "Dancer",
)  # fmt: skip
_PLACE = (
    "Paris", "Tokyo", "Berlin", "Texas", "Rome", "Brooklyn", "Manhattan", "Vegas", "Venice", "Alaska", "Cairo",
    "Havana", "Shanghai", "Sicily", "Dublin", "Memphis", "Chicago", "Boston", "Hollywood", "Mars",
)  # fmt: skip
_ROMAN = ("", "", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X")

# -Gumbel at the midpoints of 2**16 uniform bins
_NEG_GUMBEL16 = np.log(-np.log((np.arange(1 << 16) + 0.5) / (1 << 16))).astype(np.float32)

_T_START = 1104537600  # 2005-01-01
_T_USERS = 1420070400  # 2015-01-01: users start in [2005, 2015)
_T_END = 1427846399  # 2015-03-31 23:59:59: nothing after this
_DAY = 86400.0


@dataclass
class SynthData:
    """A synthetic data set; every frame holds real (external) ids."""

    events: pd.DataFrame  # user, item, time (int64), sorted by user, time
    titles: pd.DataFrame  # item, title
    years: pd.DataFrame  # item, year
    genres: pd.DataFrame  # item, genre (1-3 rows per item)
    directors: pd.DataFrame  # item, director
    writers: pd.DataFrame  # item, writer
    franchises: pd.DataFrame  # item, franchise, part: the planted series (ground truth)


# ---------------------------------------------------------------- helpers
def _rng(seq: np.random.SeedSequence) -> np.random.Generator:
    return np.random.default_rng(seq)


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive groups of the given sizes (length n + 1)."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _rank_in_group(group_sorted: np.ndarray) -> np.ndarray:
    """Rank of each element within its run, for an array sorted by group."""
    n = len(group_sorted)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group_sorted[1:] != group_sorted[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n, dtype=np.int64) - first


def _topk_gumbel(rng: np.random.Generator, logw: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row, a weighted sample without replacement of up to ``k.max()`` columns.

    Returns the column order (best first); callers take the first ``k[r]``.
    """
    g = rng.gumbel(size=(len(k), logw.shape[-1]))
    return np.argsort(-(logw + g), axis=1, kind="stable")


def _year_start(years: np.ndarray) -> np.ndarray:
    """Unix time of January 1st of each year."""
    return (years.astype(np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)


# ---------------------------------------------------------------- items
def _titles_pool(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct movie-like titles (distinct while the pool lasts)."""
    na, nn, npl = len(_ADJ), len(_NOUN), len(_PLACE)
    sizes = np.array([na * nn, na * nn, nn * nn, nn * nn, nn * npl, nn])
    offs = _offsets(sizes)
    total = int(offs[-1])
    picks = rng.choice(total, size=n, replace=n > total)
    out = []
    for p in picks.tolist():  # one loop over items (a few thousand): cheap
        t = int(np.searchsorted(offs, p, side="right") - 1)
        r = p - int(offs[t])
        if t == 0:
            out.append(f"The {_ADJ[r // nn]} {_NOUN[r % nn]}")
        elif t == 1:
            out.append(f"{_ADJ[r // nn]} {_NOUN[r % nn]}")
        elif t == 2:
            a, b = divmod(r, nn)
            out.append(f"The {_NOUN[a]} of the {_NOUN[b]}" if a != b else f"{_NOUN[a]}")
        elif t == 3:
            a, b = divmod(r, nn)
            out.append(f"{_NOUN[a]} {_NOUN[b]}" if a != b else f"The {_NOUN[a]}")
        elif t == 4:
            out.append(f"A {_NOUN[r // npl]} in {_PLACE[r % npl]}")
        else:
            out.append(f"{_NOUN[r]}")
    return out


@dataclass
class _Items:
    ids: np.ndarray  # external ids (sorted)
    genre_order: np.ndarray  # (n, 18) genre indices, best first
    n_genres: np.ndarray  # 1..3
    year: np.ndarray  # int, 0 = unknown
    release: np.ndarray  # unix time of release (0 when unknown)
    title: list[str]
    director: np.ndarray  # index into people, -1 = none
    writer1: np.ndarray
    writer2: np.ndarray
    people: np.ndarray  # person ids (ints) for nm%07d
    log_pop: np.ndarray
    factors: np.ndarray  # (n, k)
    fr_id: np.ndarray  # -1 or 0..F-1
    fr_part: np.ndarray  # 0 or 1..len
    fr_next: np.ndarray  # item index of the next part, -1 = none
    n_franchises: int


def _make_items(ss: np.random.SeedSequence, n_items: int, n_factors: int, pop_exponent: float) -> _Items:
    s_ids, s_gen, s_fr, s_year, s_title, s_people, s_pop, s_fac = ss.spawn(8)
    n_g = len(GENRES)

    rng = _rng(s_ids)
    max_id = max(131262, 2 * n_items)
    ids = np.sort(rng.choice(max_id, size=n_items, replace=False) + 1).astype(np.int64)

    # genres: 1-3 per item, by genre frequency (Gumbel-top-k without replacement)
    rng = _rng(s_gen)
    n_genres = rng.choice(np.array([1, 2, 3]), size=n_items, p=[0.35, 0.40, 0.25])
    genre_order = _topk_gumbel(rng, np.log(_GENRE_WEIGHTS), n_genres)

    # franchises: ~300 per 6,807 items, 2-6 parts, shuffled positions
    rng = _rng(s_fr)
    n_fr = int(round(300 * n_items / 6807))
    lengths = rng.choice(np.arange(2, 7), size=n_fr, p=[0.45, 0.25, 0.15, 0.10, 0.05])
    while n_fr and lengths.sum() > n_items // 4:  # keep series a minority of the catalogue
        n_fr -= 1
        lengths = lengths[:n_fr]
    fr_items = rng.permutation(n_items)[: int(lengths.sum())]
    fr_start = _offsets(lengths)
    fr_id = np.full(n_items, -1, dtype=np.int64)
    fr_part = np.zeros(n_items, dtype=np.int64)
    fr_next = np.full(n_items, -1, dtype=np.int64)
    fr_first = np.full(n_items, -1, dtype=np.int64)  # part 1 of the item's series
    if n_fr:
        which = np.repeat(np.arange(n_fr), lengths)
        part = np.arange(len(fr_items)) - fr_start[which] + 1
        fr_id[fr_items] = which
        fr_part[fr_items] = part
        has_next = part < lengths[which]
        fr_next[fr_items[has_next]] = fr_items[np.flatnonzero(has_next) + 1]
        fr_first[fr_items] = fr_items[fr_start[which]]
    seq = np.flatnonzero(fr_part > 1)  # sequels
    genre_order[seq] = genre_order[fr_first[seq]]
    n_genres[seq] = n_genres[fr_first[seq]]

    # years: mostly recent, some classics; sequels a few years after the previous part
    rng = _rng(s_year)
    recent = np.round(2014 - 44 * rng.beta(1.0, 2.4, size=n_items))
    classic = rng.integers(1915, 1975, size=n_items)
    year = np.where(rng.random(n_items) < 0.12, classic, recent).astype(np.int64)
    if n_fr:
        gaps = rng.integers(1, 6, size=len(fr_items))
        gaps[fr_start[:-1]] = 0
        base = np.minimum(year[fr_items[fr_start[:-1]]], 2014 - (lengths - 1) * 3)
        cum = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[fr_start[:-1]], lengths)
        year[fr_items] = np.minimum(np.repeat(base, lengths) + cum, 2014)
    known = rng.random(n_items) >= 0.001
    year = np.where(known, year, 0)
    release = np.where(known, _year_start(np.where(known, year, 1970)) + rng.integers(0, 365 * 86400, n_items), 0)

    # titles: distinct stems; sequels reuse part 1's stem + "2" / "II" / ": Subtitle"
    rng = _rng(s_title)
    stems = _titles_pool(rng, n_items)
    style = rng.random(n_fr)
    subtitles = _titles_pool(rng, len(fr_items))
    for f in range(n_fr):  # loop over franchises (a few hundred)
        members = fr_items[fr_start[f] : fr_start[f + 1]]
        stem = stems[members[0]]
        for p, it in enumerate(members[1:], start=2):
            if style[f] < 0.65:
                stems[it] = f"{stem} {p}"
            elif style[f] < 0.85:
                stems[it] = f"{stem} {_ROMAN[p]}"
            else:
                stems[it] = f"{stem}: {subtitles[fr_start[f] + p - 1]}"
    title = [f"{s} ({y})" if y else s for s, y in zip(stems, year.tolist())]

    # people: directors (~1 per 5 items, Pareto-productive, one home genre each),
    # writers (~1 per 2.3 items); some directors also write
    rng = _rng(s_people)
    n_dir = max(1, int(round(n_items / 5.1)))
    n_wr = max(1, int(round(n_items / 2.3)))
    overlap = n_dir // 3
    people = rng.choice(9_999_999, size=n_dir + n_wr - overlap, replace=False).astype(np.int64) + 1
    dir_pool = np.arange(n_dir)
    wr_pool = np.arange(n_dir - overlap, n_dir + n_wr - overlap)
    primary = genre_order[:, 0]

    def assign(pool: np.ndarray, mask: np.ndarray) -> np.ndarray:
        home = rng.choice(n_g, size=len(pool), p=_GENRE_WEIGHTS / _GENRE_WEIGHTS.sum())
        weight = rng.pareto(1.3, size=len(pool)) + 1.0
        out = np.full(n_items, -1, dtype=np.int64)
        for g in range(n_g):  # loop over genres
            items = np.flatnonzero(mask & (primary == g))
            cands = np.flatnonzero(home == g)
            if len(cands) == 0:
                cands = np.arange(len(pool))
            p = weight[cands] / weight[cands].sum()
            out[items] = pool[cands[rng.choice(len(cands), size=len(items), p=p)]]
        return out

    director = assign(dir_pool, rng.random(n_items) < 0.85)
    has_wr = rng.random(n_items) < 0.80
    writer1 = assign(wr_pool, has_wr)
    writer2 = assign(wr_pool, has_wr & (rng.random(n_items) < 0.45))
    self_written = (director >= 0) & has_wr & (rng.random(n_items) < 0.25)
    writer1 = np.where(self_written, director, writer1)
    writer2 = np.where(writer2 == writer1, -1, writer2)
    if len(seq):
        first = fr_first[seq]
        share_d = rng.random(len(seq)) < 0.6
        director[seq] = np.where(share_d, director[first], director[seq])
        share_w = rng.random(len(seq)) < 0.7
        writer1[seq] = np.where(share_w, writer1[first], writer1[seq])
        writer2[seq] = np.where(share_w & (writer2[seq] != writer1[seq]), writer2[seq], -1)
        writer2[seq] = np.where(writer2[seq] == writer1[seq], -1, writer2[seq])

    # popularity: Zipf over a random ranking; series start popular, sequels fade
    rng = _rng(s_pop)
    rank = rng.permutation(n_items).astype(np.float64)
    log_pop = -pop_exponent * np.log(rank + 8.0)
    if n_fr:
        starts = fr_items[fr_start[:-1]]
        boost = -pop_exponent * np.log(rng.random(n_fr) * n_items * 0.3 + 8.0)
        log_pop[starts] = np.maximum(log_pop[starts], boost)
        first = fr_first[seq]
        log_pop[seq] = log_pop[first] + np.log(0.7) * (fr_part[seq] - 1) + rng.normal(0, 0.3, len(seq))
    log_pop -= log_pop.max()

    # latent factors: genre centroids + director + writer effects + noise; series close
    rng = _rng(s_fac)
    k = n_factors
    centroid = rng.standard_normal((n_g, k))
    gm = np.zeros((n_items, n_g))
    rows = np.repeat(np.arange(n_items), n_genres)
    cols = genre_order[np.arange(n_items)[:, None], np.arange(3)[None, :]][np.arange(3)[None, :] < n_genres[:, None]]
    gm[rows, cols] = 1.0 / n_genres[rows]
    pv = rng.standard_normal((len(people), k))
    fac = 0.7 * gm @ centroid + 0.8 * rng.standard_normal((n_items, k))
    fac += np.where(director[:, None] >= 0, 0.6 * pv[np.maximum(director, 0)], 0.0)
    fac += np.where(writer1[:, None] >= 0, 0.3 * pv[np.maximum(writer1, 0)], 0.0)
    if len(seq):
        fac[seq] = 0.85 * fac[fr_first[seq]] + 0.35 * rng.standard_normal((len(seq), k))
    fac /= fac.std()

    return _Items(
        ids=ids, genre_order=genre_order, n_genres=n_genres, year=year, release=release, title=title,
        director=director, writer1=writer1, writer2=writer2, people=people, log_pop=log_pop, factors=fac,
        fr_id=fr_id, fr_part=fr_part, fr_next=fr_next, n_franchises=n_fr,
    )  # fmt: skip


def _genre_matrix(items: _Items) -> np.ndarray:
    n = len(items.ids)
    gm = np.zeros((n, len(GENRES)), dtype=np.float32)
    for j in range(3):
        has = items.n_genres > j
        gm[np.flatnonzero(has), items.genre_order[has, j]] = 1.0
    return gm / gm.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- users
def _user_counts(rng: np.random.Generator, n_users: int, mean: float, lo: int, hi: int) -> np.ndarray:
    """Lognormal counts (sigma 0.85) clipped to [lo, hi], with mean ~``mean``."""
    z = rng.standard_normal(n_users)
    sigma = 0.85

    def counts(mu: float) -> np.ndarray:
        return np.clip(np.round(np.exp(mu + sigma * z)), lo, hi).astype(np.int64)

    a, b = np.log(max(lo, 1)) - 6.0, np.log(max(hi, 1)) + 6.0
    for _ in range(60):  # bisection on mu
        mid = 0.5 * (a + b)
        if counts(mid).mean() < mean:
            a = mid
        else:
            b = mid
    return counts(b)


def _sample_block(
    seq: np.random.SeedSequence, a: np.ndarray, bt: np.ndarray, n_u: np.ndarray, n_avail: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-top-n_u per row of logits ``a @ bt``; columns >= n_avail are penalised."""
    rng = _rng(seq)
    b, n = len(n_u), bt.shape[1]
    # minus a Gumbel per (user, item), from 16 random bits through a table (4x faster
    # than two logs of a uniform; it only caps the Gumbel at 11.8)
    key = np.take(_NEG_GUMBEL16, rng.integers(0, 1 << 16, size=(b, n), dtype=np.uint16))
    key -= a @ bt
    if n_avail.min() < n:
        late = np.arange(n)[None, :] >= n_avail[:, None]
        np.add(key, np.float32(40.0), out=key, where=late)
        del late
    kmax = int(n_u.max())
    if kmax < n:
        part = np.partition(key, kmax - 1, axis=1)[:, :kmax]
    else:
        part = key.copy()
    part.sort(axis=1)
    thr = part[np.arange(b), n_u - 1]
    del part
    flat = np.flatnonzero(key <= thr[:, None])  # ties at the threshold: rarely one more
    rows = flat // n
    return rows, flat - rows * n


# ---------------------------------------------------------------- main
def synthesize(
    n_users: int = 31360,
    n_items: int = 6807,
    mean_per_user: float = 164.4,
    min_per_user: int = 16,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> SynthData:
    """A realistic synthetic data set; pure and deterministic for a given seed.

    Per-user counts are lognormal with mean ``mean_per_user``, clipped to
    ``[min_per_user, max(min_per_user, n_items // 2)]``: for a small catalogue
    pass a smaller mean (the default 164.4 would put every user at the cap).
    ``progress(fraction, message)``, if given, is called at each stage.
    Raises :class:`ToprecError` on impossible sizes.
    """
    n_users, n_items, min_per_user = int(n_users), int(n_items), int(min_per_user)
    if n_users < 1:
        raise ToprecError(f"n_users must be >= 1 (got {n_users})")
    if min_per_user < 1:
        raise ToprecError(f"min_per_user must be >= 1 (got {min_per_user})")
    if n_items < max(2, min_per_user):
        raise ToprecError(f"n_items must be >= max(2, min_per_user={min_per_user}) (got {n_items})")
    if not mean_per_user > 0:
        raise ToprecError(f"mean_per_user must be > 0 (got {mean_per_user})")
    if int(seed) < 0:
        raise ToprecError(f"seed must be >= 0 (got {seed})")

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(float(fraction), message)

    report(0.0, "items")
    ss = np.random.SeedSequence(int(seed))
    s_items, s_users, s_blocks, s_plant, s_floor, s_time = ss.spawn(6)
    n_factors = 16
    items = _make_items(s_items, n_items, n_factors, pop_exponent=1.05)

    # ---- users: counts, time windows, tastes, factors
    report(0.05, "users")
    rng = _rng(s_users)
    cap = max(min_per_user, n_items // 2)
    n_u = _user_counts(rng, n_users, float(mean_per_user), min_per_user, cap)
    start = rng.integers(_T_START, _T_USERS, size=n_users)
    burst = rng.random(n_users) < 0.2
    span = np.where(
        burst,
        rng.uniform(600, 3 * _DAY, n_users),
        np.exp(rng.normal(np.log(200 * _DAY), 1.2, n_users)) * (n_u / 100.0) ** 0.3,
    )
    end = np.minimum(start + span.astype(np.int64), _T_END - 2 * 86400)
    end = np.maximum(end, start + 60)
    n_sess = 1 + rng.poisson(n_u / 12.0)  # sessions: the first at start, the last at end
    last_t = np.where(n_sess > 1, end, start)  # an item is seen only if released by then

    n_g = len(GENRES)
    n_fav = rng.choice(np.array([1, 2, 3, 4]), size=n_users, p=[0.2, 0.35, 0.3, 0.15])
    fav = _topk_gumbel(rng, np.log(_GENRE_WEIGHTS), n_fav)
    mix = rng.gamma(1.0, size=(n_users, n_g)) * (np.arange(n_g)[None, :] < n_fav[:, None])
    theta = np.zeros((n_users, n_g))
    np.put_along_axis(theta, fav, mix, axis=1)
    theta = 0.15 / n_g + 0.85 * theta / theta.sum(axis=1, keepdims=True)
    alpha = np.exp(rng.normal(0.0, 0.25, n_users))  # popularity sensitivity
    uf = rng.standard_normal((n_users, n_factors))

    # one matrix product gives all logits: [alpha, b*theta, s*U/sqrt(k)] @ [log_pop, g, V]
    taste_scale, factor_scale = 3.0, 1.6
    a_all = np.hstack([alpha[:, None], taste_scale * theta, factor_scale * uf / np.sqrt(n_factors)]).astype(np.float32)
    by_release = np.argsort(items.release, kind="stable")  # columns in release order
    b_all = np.hstack([items.log_pop[:, None], _genre_matrix(items), items.factors])[by_release]
    bt = np.ascontiguousarray(b_all.T.astype(np.float32))
    n_avail = np.searchsorted(items.release[by_release], last_t, side="right")

    # ---- sample items per user in blocks of similar counts (threads: numpy releases the GIL)
    report(0.1, "sampling")
    order = np.argsort(n_u, kind="stable")
    bsize = max(8, 4_000_000 // n_items)
    blocks = [order[i : i + bsize] for i in range(0, n_users, bsize)]
    seqs = s_blocks.spawn(len(blocks))
    workers = max(1, min(4, os.cpu_count() or 1))
    ev_u, ev_i = [], []
    blas_1 = _threadpool_limits(1, "blas") if _threadpool_limits is not None else contextlib.nullcontext()
    with blas_1, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_sample_block, sq, a_all[blk], bt, n_u[blk], n_avail[blk]) for sq, blk in zip(seqs, blocks)
        ]
        for j, (blk, fut) in enumerate(zip(blocks, futures)):
            rows, cols = fut.result()
            ev_u.append(blk[rows])
            ev_i.append(by_release[cols])
            if j % 8 == 7:
                report(0.1 + 0.6 * (j + 1) / len(blocks), "sampling")
    u = np.concatenate(ev_u)
    it = np.concatenate(ev_i)
    del ev_u, ev_i
    planted = np.zeros(len(u), dtype=bool)
    parent = np.full(len(u), -1, dtype=np.int64)

    # ---- franchises: who watched part n often goes on to part n+1
    report(0.7, "franchises")
    rng = _rng(s_plant)
    if items.n_franchises:
        fr_ev = np.flatnonzero(items.fr_id[it] >= 0)
        have = np.sort(u[fr_ev] * n_items + it[fr_ev])  # (a planted pair is never sampled twice)
        ev_part = items.fr_part[it[fr_ev]]
        new_u, new_i, new_parent = [], [], []
        prev_u = prev_i = prev_idx = np.zeros(0, dtype=np.int64)
        base = len(u)
        for level in range(1, 6):  # loop over part numbers
            m = fr_ev[ev_part == level]
            cu, ci, cidx = np.r_[u[m], prev_u], np.r_[it[m], prev_i], np.r_[m, prev_idx]
            nxt = items.fr_next[ci]
            ok = nxt >= 0
            cu, ci, cidx = cu[ok], nxt[ok], cidx[ok]
            go = ~isin_sorted(have, cu * n_items + ci) & (rng.random(len(cu)) < 0.45)
            go &= items.release[ci] <= last_t[cu]
            prev_u, prev_i = cu[go], ci[go]
            prev_idx = base + np.arange(len(prev_u))
            base += len(prev_u)
            new_u.append(prev_u)
            new_i.append(prev_i)
            new_parent.append(cidx[go])
        add_u = np.concatenate(new_u)
        u = np.concatenate([u, add_u])
        it = np.concatenate([it, np.concatenate(new_i)])
        planted = np.concatenate([planted, np.ones(len(add_u), dtype=bool)])
        parent = np.concatenate([parent, np.concatenate(new_parent)])

        # keep each user's count: for each planted event drop one random non-series
        # event of that user (sampled events are contiguous per user)
        n0 = len(u) - len(add_u)
        heads = np.flatnonzero(np.r_[True, u[1:n0] != u[: n0 - 1]])
        seg_start = np.zeros(n_users, dtype=np.int64)
        seg_len = np.zeros(n_users, dtype=np.int64)
        seg_start[u[heads]] = heads
        seg_len[u[heads]] = np.diff(np.r_[heads, n0])
        protected = items.fr_id[it[:n0]] >= 0
        drop = np.zeros(n0, dtype=bool)
        todo = add_u
        for _ in range(6):  # a few rounds: a draw may hit a series event or a taken one
            if len(todo) == 0:
                break
            pos = seg_start[todo] + (rng.random(len(todo)) * seg_len[todo]).astype(np.int64)
            ok = np.flatnonzero(~protected[pos] & ~drop[pos])
            _, first = np.unique(pos[ok], return_index=True)
            done = ok[first]
            drop[pos[done]] = True
            left = np.ones(len(todo), dtype=bool)
            left[done] = False
            todo = todo[left]
        keep = np.r_[~drop, np.ones(len(add_u), dtype=bool)]
        remap = np.cumsum(keep) - 1
        u, it, planted = u[keep], it[keep], planted[keep]
        parent = np.where(parent[keep] >= 0, remap[np.maximum(parent[keep], 0)], -1)

    # ---- every item gets a few events if feasible
    report(0.75, "long tail")
    rng = _rng(s_floor)
    by_last = np.argsort(last_t, kind="stable")
    n_seen = n_users - np.searchsorted(last_t[by_last], items.release, side="left")  # users who can see it
    floor = np.minimum(5, n_seen)
    need = np.maximum(floor - np.bincount(it, minlength=n_items), 0)
    for _ in range(6):  # a few rounds of retries (duplicates are rejected)
        if not need.any():
            break
        needy = np.flatnonzero(need)
        cand_i = np.repeat(needy, need[needy] * 4)
        cand_u = by_last[n_users - 1 - (rng.random(len(cand_i)) * n_seen[cand_i]).astype(np.int64)]
        ok_ev = need[it] > 0
        have = np.sort(u[ok_ev] * n_items + it[ok_ev])
        code = np.unique(cand_u * n_items + cand_i)  # also dedupes
        code = code[~isin_sorted(have, code)]
        ci, cu = code % n_items, code // n_items
        o = np.lexsort((rng.random(len(ci)), ci))
        ci, cu = ci[o], cu[o]
        take = _rank_in_group(ci) < need[ci]
        ci, cu = ci[take], cu[take]
        u = np.concatenate([u, cu])
        it = np.concatenate([it, ci])
        planted = np.concatenate([planted, np.zeros(len(cu), dtype=bool)])
        parent = np.concatenate([parent, np.full(len(cu), -1, dtype=np.int64)])
        need = np.maximum(floor - np.bincount(it, minlength=n_items), 0)

    # ---- time: sessions in each user's window, after release, series in order
    report(0.8, "time")
    rng = _rng(s_time)
    n_ev = len(u)
    s_off = _offsets(n_sess)
    s_user = np.repeat(np.arange(n_users), n_sess)
    frac = rng.random(int(s_off[-1]))
    frac[s_off[:-1]] = 0.0  # first session at the start
    frac[s_off[1:][n_sess > 1] - 1] = 1.0  # last session at the end of the window
    frac = frac[np.lexsort((frac, s_user))]
    s_time_ = start[s_user] + np.round(frac * (end - start)[s_user]).astype(np.int64)
    s_key = s_user * (1 << 32) + (s_time_ - _T_START)  # sorted

    def session_at_or_after(users: np.ndarray, t: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(s_key, users * (1 << 32) + (t - _T_START), side="left")
        return np.minimum(pos, s_off[users + 1] - 1)

    sess = np.empty(n_ev, dtype=np.int64)
    plain = ~planted
    pu = u[plain]
    pick = np.where(
        rng.random(len(pu)) < 0.35, s_off[pu], s_off[pu] + (rng.random(len(pu)) * n_sess[pu]).astype(np.int64)
    )
    sess[plain] = session_at_or_after(pu, np.maximum(s_time_[pick], items.release[it[plain]]))
    if planted.any():
        # sequels: same session (binge) or a few days after the previous part
        depth = np.zeros(n_ev, dtype=np.int64)
        pl = np.flatnonzero(planted)
        for _ in range(6):  # depth of planted chains (<= 5)
            depth[pl] = np.where(parent[pl] >= 0, depth[parent[pl]] + 1, 0)
        for d in range(1, int(depth.max()) + 1):
            idx = np.flatnonzero(planted & (depth == d))
            delay = np.where(rng.random(len(idx)) < 0.5, 0.0, rng.exponential(3 * _DAY, len(idx))).astype(np.int64)
            t = np.maximum(s_time_[sess[parent[idx]]] + delay, items.release[it[idx]])
            sess[idx] = session_at_or_after(u[idx], t)
    # order by (user, session, random): sessions are numbered in time order
    o = np.argsort((sess << 31) | rng.integers(0, 1 << 31, n_ev), kind="stable")
    u, it, sess = u[o], it[o], sess[o]
    # within a session: 3 s + lognormal (median ~25 s) apart
    gap = 3 + np.exp(rng.normal(np.log(25.0), 0.8, n_ev)).astype(np.int64)
    heads = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]])
    cum = np.cumsum(gap)
    t = s_time_[sess] + cum - np.repeat(cum[heads], np.diff(np.r_[heads, n_ev]))

    # series parts in order for 95% of (user, series) pairs: permute their times
    fr = items.fr_id[it]
    fe = np.flatnonzero(fr >= 0)
    if len(fe):
        g = u[fe] * items.n_franchises + fr[fe]
        by_time = fe[np.argsort((g << 30) | (t[fe] - _T_START), kind="stable")]
        by_part = fe[np.argsort((g << 30) | items.fr_part[it[fe]], kind="stable")]
        gs = u[by_time] * items.n_franchises + fr[by_time]
        heads = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        fixed = np.repeat(rng.random(len(heads)) < 0.95, np.diff(np.r_[heads, len(gs)]))
        t[by_part[fixed]] = t[by_time[fixed]]

    # sort by (user, time) (nearly sorted already) and make times strictly increasing
    key = (u << 32) | (t - _T_START)
    o = np.argsort(key, kind="stable")
    u, it, key = u[o], it[o], key[o]
    rank = _rank_in_group(u)
    key = np.maximum.accumulate(key - rank) + rank
    t = key - (u << 32) + _T_START

    # ---- frames with external ids
    report(0.95, "frames")
    user_ids = np.sort(rng.choice(max(138493, 2 * n_users), size=n_users, replace=False) + 1).astype(np.int64)
    events = pd.DataFrame({"user": user_ids[u], "item": items.ids[it], "time": t.astype(np.int64)})
    data = _frames(items, events)
    report(1.0, "done")
    return data


def _frames(items: _Items, events: pd.DataFrame) -> SynthData:
    ids = items.ids
    titles = pd.DataFrame({"item": ids, "title": items.title})
    known = items.year > 0
    years = pd.DataFrame({"item": ids[known], "year": items.year[known].astype(np.int64)})
    g_rows = np.repeat(np.arange(len(ids)), items.n_genres)
    g_col = np.concatenate([[0], np.cumsum(items.n_genres)[:-1]])
    g_j = np.arange(len(g_rows)) - np.repeat(g_col, items.n_genres)
    genre_names = np.array(GENRES, dtype=object)
    genres = pd.DataFrame({"item": ids[g_rows], "genre": genre_names[items.genre_order[g_rows, g_j]].tolist()})
    names = np.array([f"nm{p:07d}" for p in items.people.tolist()], dtype=object)
    has_d = items.director >= 0
    directors = pd.DataFrame({"item": ids[has_d], "director": names[items.director[has_d]].tolist()})
    w_item = np.concatenate([np.flatnonzero(items.writer1 >= 0), np.flatnonzero(items.writer2 >= 0)])
    w_who = np.concatenate([items.writer1[items.writer1 >= 0], items.writer2[items.writer2 >= 0]])
    o = np.argsort(w_item, kind="stable")
    writers = pd.DataFrame({"item": ids[w_item[o]], "writer": names[w_who[o]].tolist()})
    in_fr = np.flatnonzero(items.fr_id >= 0)
    o = np.lexsort((items.fr_part[in_fr], items.fr_id[in_fr]))
    in_fr = in_fr[o]
    franchises = pd.DataFrame(
        {"item": ids[in_fr], "franchise": items.fr_id[in_fr] + 1, "part": items.fr_part[in_fr]}
    )
    return SynthData(events, titles, years, genres, directors, writers, franchises)


# ---------------------------------------------------------------- writing
def synth_stats(data: SynthData) -> dict:
    """Summary statistics of a synthetic data set (JSON-friendly)."""
    ev = data.events
    per_user = ev.groupby("user", sort=False).size().to_numpy() if len(ev) else np.zeros(1, dtype=np.int64)
    _, per_item = np.unique(ev["item"].to_numpy(), return_counts=True)
    per_item = np.sort(per_item)[::-1]
    n_items = len(data.titles)
    top = lambda share: float(per_item[: max(1, int(round(share * n_items)))].sum() / max(len(ev), 1))  # noqa: E731
    return {
        "users": int(ev["user"].nunique()),
        "items": int(n_items),
        "items_with_events": int(len(per_item)),
        "events": int(len(ev)),
        "density": float(len(ev) / max(1, ev["user"].nunique() * n_items)),
        "min_per_user": int(per_user.min()),
        "median_per_user": float(np.median(per_user)),
        "mean_per_user": float(per_user.mean()),
        "max_per_user": int(per_user.max()),
        "min_per_item": int(per_item.min()) if len(per_item) else 0,
        "max_per_item": int(per_item.max()) if len(per_item) else 0,
        "top1pct_share": top(0.01),
        "top10pct_share": top(0.10),
        "franchises": int(data.franchises["franchise"].nunique()),
        "franchise_items": int(len(data.franchises)),
        "time_min": int(ev["time"].min()) if len(ev) else 0,
        "time_max": int(ev["time"].max()) if len(ev) else 0,
    }


def _write_table(path: Path, frame: pd.DataFrame, sep: str) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    options = pacsv.WriteOptions(include_header=False, delimiter=sep, batch_size=1 << 16, quoting_style="none")
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink:
            sink.write((sep.join(frame.columns) + "\n").encode())  # pyarrow would quote the header
            pacsv.write_csv(table, sink, options)


def write_synth(data: SynthData, out_dir: str | os.PathLike) -> dict:
    """Write ``data`` in the competition layout under ``out_dir``; return its statistics.

    Every file goes to a temporary file in ``out_dir`` first and is renamed
    into place, so a failed write never leaves a half-written file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_table(out / "train_ratings.csv", data.events[["user", "item", "time"]], ",")
    for name, frame in [
        ("titles", data.titles[["item", "title"]]),
        ("years", data.years[["item", "year"]]),
        ("genres", data.genres[["item", "genre"]]),
        ("directors", data.directors[["item", "director"]]),
        ("writers", data.writers[["item", "writer"]]),
        ("franchises", data.franchises[["item", "franchise", "part"]]),
    ]:
        _write_table(out / f"{name}.tsv", frame, "\t")
    stats = synth_stats(data)
    stats["out_dir"] = str(out)
    stats["files"] = list(FILES)
    return stats
