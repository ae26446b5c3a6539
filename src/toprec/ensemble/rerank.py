"""A learned re-ranker over the members' candidates (``Ensemble(method="rerank")``).

Why: a weight vector gives each member one say for every user and item. A
model trained on the validation fold can let a member count more where it is
more reliable (popular vs niche items, light vs heavy users, items close to
the user's genres or directors). That is the two-stage recipe top teams used:
candidates from strong models, a gradient-boosted ranker on top.

Protocol (the same honesty as the weight search, see :mod:`.validate`): the
ranker is trained on fold A's truth only (80% of fold A's users; the other
20% stop the boosting early), then scored once on fold B. For the
submission the members are refitted on all the data and the same ranker
scores their lists. Measured in ``benchmarks/bench_ensemble_alternatives.py``:
it beats one weight vector on all of ML-1M (+3.4% / +4.3% over the best
member against +2.1% / +3.4%), not with 1,645-3,290 users, where fold A is
too small to learn from. It is therefore never picked by ``method="auto"``:
ask for it, and read fold B.

Features of a (user, candidate) pair: for each member its per-user
standardised score and 1/log2(rank+1) (0 when it does not list the item),
how many members list it, log item popularity, log user activity; for each
item side file (genres, directors, writers...) the share of the user's history
that has each of the candidate's values, summed and the largest; with
``years.tsv`` the candidate's year and its difference from the user's mean
year. Vectorised over users (no Python loop over users or events).

Needs ``lightgbm`` (``pip install 'toprec[rerank]'``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ToprecError
from ..recommend import Recommendations, seen_and_cold
from .fusion import _recommendations, build_pool, topk_columns

#: users per feature batch at prediction time (features are (users, union, F) float32)
BATCH_USERS = 2048
PARAMS = dict(
    objective="binary",
    learning_rate=0.05,
    num_leaves=31,
    min_child_samples=100,
    subsample=0.8,
    subsample_freq=1,
    colsample_bytree=0.8,
    n_estimators=1000,
    verbose=-1,
    deterministic=True,
    force_row_wise=True,
)
EARLY_STOP = 50


def lightgbm():
    try:
        import lightgbm as lgb
    except ImportError:
        raise ToprecError(
            "method 'rerank' needs lightgbm: pip install 'toprec[rerank]' (or pip install lightgbm)"
        ) from None
    return lgb


def candidate_features(
    data, train, users: np.ndarray, lists: Sequence[Recommendations], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``items`` (n, L) (the union of the members' lists, -1 padding) and ``features`` (n, L, F) float32.

    ``train``: the stage's training data (popularity, activity, the user's
    history); ``data``: the full dataset (its item side features).
    """
    ps, pr = build_pool(lists, "score", users), build_pool(lists, "rank", users)
    items = ps.items
    n, L = items.shape
    it = np.maximum(items, 0)
    X = train.matrix.tocsr()
    known = (users >= 0) & (users < X.shape[0])
    Xu = X[np.where(known, users, 0)]
    if not known.all():
        Xu = sp.csr_matrix(sp.diags(known.astype(np.float64)) @ Xu)
    cols, names = [], []
    for m, label in enumerate(labels):
        cols += [ps.contrib[m], pr.contrib[m]]
        names += [f"{label}_z", f"{label}_rank"]
    cols.append(ps.present.sum(0))
    names.append("n_listed")
    cols.append(np.log1p(np.asarray(X.sum(0)).ravel())[it])
    names.append("log_popularity")
    activity = np.log1p(np.diff(Xu.indptr)).astype(np.float64)
    cols.append(np.broadcast_to(activity[:, None], (n, L)))
    names.append("log_activity")
    flat_user, flat_item = np.repeat(np.arange(n), L), it.ravel()
    n_hist = np.maximum(np.diff(Xu.indptr), 1).astype(np.float64)
    for fname, feat in sorted(data.features.items()):
        if fname == "titles":
            continue
        F = feat.matrix.tocsr().astype(np.float64)
        if fname == "years":
            year = pd.to_numeric(pd.Series(feat.values), errors="coerce").to_numpy(dtype=np.float64)
            has = np.asarray(F.sum(1)).ravel()
            iy = np.asarray(F @ np.nan_to_num(year)).ravel() / np.maximum(has, 1)
            iy[has == 0] = np.nan
            uy = (Xu @ np.nan_to_num(iy)) / np.maximum(Xu @ (~np.isnan(iy)).astype(np.float64), 1)
            cols += [iy[it], iy[it] - uy[:, None]]
            names += ["year", "year_minus_user_mean"]
            continue
        profile = (Xu @ F).toarray() / n_hist[:, None]  # share of the user's history with each value
        rows = F[flat_item]
        r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        vals = profile[flat_user[r], rows.indices]
        total = np.bincount(r, weights=vals, minlength=rows.shape[0])
        top = np.zeros(rows.shape[0])
        np.maximum.at(top, r, vals)
        cols += [total.reshape(n, L), top.reshape(n, L)]
        names += [f"{fname}_affinity", f"{fname}_affinity_max"]
    feats = np.stack([np.asarray(c, dtype=np.float32) for c in cols], -1)
    feats[items < 0] = 0.0
    return items, feats, names


def select_rows(lists: Sequence[Recommendations], sel: np.ndarray) -> list[Recommendations]:
    """The members' lists restricted to rows ``sel``."""
    return [Recommendations(r.users[sel], r.items[sel], r.scores[sel]) for r in lists]


def split_users(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows that fit the ranker (80%) and rows that stop its boosting (20%; none when n < 2)."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = max(1, min(n - 1, int(0.8 * n))) if n > 1 else n
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def top_k(users, items, scores, k: int, exclude: sp.csr_matrix | None = None) -> Recommendations:
    """Top ``k`` candidates per row by ``scores`` (-inf where ``items`` is padding or ``exclude`` lists it)."""
    scores = seen_and_cold(np.array(scores, dtype=np.float32), exclude=exclude, items=items)
    cols, top = topk_columns(scores, k)
    return _recommendations(users, items, cols, top, "score")


class Reranker:
    """LightGBM (binary objective) on :func:`candidate_features`; trained on one fold's truth."""

    def __init__(self, labels: Sequence[str], seed: int = 0, threads: int = 0):
        self.labels = list(labels)
        self.seed = int(seed)
        self.threads = int(threads)
        self.model = None
        self.feature_names: list[str] = []
        self.trees = 0
        #: fit(k=...): the training users' top k by the fitted ranker (in-sample), without recomputing features
        self.fit_recs: Recommendations | None = None

    def fit(self, data, train, users: np.ndarray, lists: Sequence[Recommendations], truth: sp.csr_matrix,
            k: int | None = None):  # fmt: skip
        """``truth``: CSR rows aligned with ``users`` (the fold's held-out items)."""
        from ..metrics import hit_matrix

        lgb = lightgbm()
        items, feats, self.feature_names = candidate_features(data, train, users, lists, self.labels)
        valid = items >= 0
        y = hit_matrix(items, sp.csr_matrix(truth))
        if not y[valid].any():
            raise ToprecError("rerank: no held-out item is among the members' candidates on fold A")
        fit_rows, stop_rows = split_users(len(users), self.seed)
        model = lgb.LGBMClassifier(**PARAMS, random_state=self.seed, n_jobs=self.threads or None)
        x_fit, y_fit = feats[fit_rows][valid[fit_rows]], y[fit_rows][valid[fit_rows]]
        if len(stop_rows) and y[stop_rows][valid[stop_rows]].any():
            x_stop, y_stop = feats[stop_rows][valid[stop_rows]], y[stop_rows][valid[stop_rows]]
            model.fit(x_fit, y_fit, eval_X=(x_stop,), eval_y=(y_stop,),
                      callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False)])  # fmt: skip
            self.trees = int(model.best_iteration_ or PARAMS["n_estimators"])
        else:  # too few users to hold some out: a fixed, small number of trees
            model.set_params(n_estimators=100)
            model.fit(x_fit, y_fit)
            self.trees = 100
        self.model = model
        if k is not None:
            self.fit_recs = top_k(np.asarray(users, dtype=np.int64), items, self._predict(items, feats), k)
        return self

    def _predict(self, items: np.ndarray, feats: np.ndarray) -> np.ndarray:
        valid = items >= 0
        scores = np.full(items.shape, -np.inf, dtype=np.float32)
        if valid.any():
            scores[valid] = self.model.predict_proba(feats[valid])[:, 1]
        return scores

    def recommend(
        self, data, train, users: np.ndarray, lists: Sequence[Recommendations], k: int,
        exclude: sp.csr_matrix | None = None,
    ) -> Recommendations:  # fmt: skip
        """Top ``k`` of the union of the members' lists by the ranker's probability (users in batches)."""
        if self.model is None:
            raise ToprecError("rerank: the re-ranker is trained on fold A: run validate() first")
        users = np.asarray(users, dtype=np.int64)
        out_items = np.full((len(users), k), -1, dtype=np.int32)
        out_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        for start in range(0, len(users), BATCH_USERS):
            sel = np.arange(start, min(start + BATCH_USERS, len(users)))
            items, feats, _ = candidate_features(data, train, users[sel], select_rows(lists, sel), self.labels)
            recs = top_k(users[sel], items, self._predict(items, feats), k, None if exclude is None else exclude[sel])
            out_items[sel], out_scores[sel] = recs.items, recs.scores
        return Recommendations(users, out_items, out_scores)
