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
year. With ``clusters`` (a factor model such as ``"ials"``, see
:mod:`toprec.features.clusters`): the user's cluster (a categorical feature)
and the share of the user's cluster who had the candidate. The clusters are
fitted once, on the ranker's training data, and the same labels serve fold B
and the submission (K-means ids are arbitrary names: a refit would rename
them). Vectorised over users (no Python loop over users or events).

Two backends (``ranker``): LightGBM (the default) or CatBoost, both a binary
objective with early stopping on the same held-out 20% of fold A's users,
both seeded. Needs ``lightgbm`` or ``catboost`` (``pip install 'toprec[rerank]'``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ToprecError
from ..recommend import Recommendations, seen_and_cold
from .fusion import _recommendations, build_pool, topk_columns
from .rerank_tables import YEARS, RerankTables

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
#: LightGBM objectives that rank each user's candidates (``LGBMRanker``, one group per user, early stopping
#: on NDCG at ``RANK_AT``) rather than classify every row alone
RANK_OBJECTIVES = ("lambdarank", "rank_xendcg")
RANK_AT = 10
#: fewer candidate rows than this are scored on one thread (see ``_Booster.predict``)
SMALL_PREDICT = 20_000
CATBOOST_PARAMS = dict(
    loss_function="Logloss",
    learning_rate=0.08,
    depth=6,
    iterations=1000,
    rsm=0.8,
    verbose=False,
    allow_writing_files=False,
)
#: the re-ranker's backends (``ranker=``); the first is the default
RANKERS = ("lightgbm", "catboost")
#: the name of the cluster feature (categorical)
CLUSTER = "cluster"


def lightgbm():
    try:
        import lightgbm as lgb
    except ImportError:
        raise ToprecError(
            "method 'rerank' needs lightgbm: pip install 'toprec[rerank]' (or pip install lightgbm)"
        ) from None
    return lgb


def catboost():
    try:
        import catboost as cb
    except ImportError:
        raise ToprecError(
            "--ranker catboost needs catboost: pip install 'toprec[rerank]' (or pip install catboost)"
        ) from None
    return cb


def check_ranker(ranker: str) -> str:
    """The backend's name, lower-cased, with its library importable (one-line errors otherwise)."""
    name = str(ranker).strip().lower()
    if name not in RANKERS:
        raise ToprecError(f"unknown ranker '{ranker}' (choose from {', '.join(RANKERS)})")
    (lightgbm if name == "lightgbm" else catboost)()
    return name


def ranker_threads() -> int:
    """The booster's threads: :func:`toprec.parallel.cpu_budget` (the affinity, capped by ``OMP_NUM_THREADS``),
    at most one per physical core (LightGBM's advice; its own default, every physical core whatever
    ``OMP_NUM_THREADS`` says, made four auto runs on a 16-core machine take minutes in this stage)."""
    from ..parallel import cpu_budget

    try:
        from joblib import cpu_count

        physical = int(cpu_count(only_physical_cores=True))
    except (ImportError, ValueError, OSError):  # pragma: no cover - joblib (scikit-learn's) missing or unsure
        physical = cpu_budget()
    return max(1, min(cpu_budget(), physical))


class _LightGBM:
    """LGBMClassifier; the cluster column (if any) declared categorical."""

    importance_type = "gain"

    def __init__(self, seed: int, threads: int):
        lgb = lightgbm()
        self.lgb = lgb
        self.ranks = PARAMS["objective"] in RANK_OBJECTIVES  # one group per user: the booster learns an order
        make = lgb.LGBMRanker if self.ranks else lgb.LGBMClassifier
        self.model = make(**PARAMS, random_state=seed, n_jobs=threads or ranker_threads())

    def _deadline_callback(self):
        """A LightGBM callback: boosting ends at :func:`toprec.train.deadline` (``toprec auto`` sets one around
        its re-ranker stage), keeping the best iteration so far on the early-stopping users (the last one
        without them); ``self.out_of_time`` says whether it did."""
        from ..train import past_deadline

        best: list = []

        def stop(env) -> None:
            res = env.evaluation_result_list or []
            if res:
                score = res[0][2] if res[0][3] else -res[0][2]
                if not best or score > best[0]:
                    best[:] = [score, env.iteration, res]
            if past_deadline():
                self.out_of_time = True
                it, at = (best[1], best[2]) if best else (env.iteration, res)
                raise self.lgb.callback.EarlyStopException(it, at)

        stop.order = 40  # after early_stopping's (30)
        return stop

    def fit(self, x, y, x_stop, y_stop, categorical: list[int], group=None, group_stop=None) -> int:
        """``group`` / ``group_stop``: the rows per user (consecutive), for a ranking objective."""
        cat = categorical or "auto"
        self.out_of_time = False
        kw = {"group": group} if self.ranks else {}
        if x_stop is not None:
            if self.ranks:
                kw.update(eval_group=[group_stop], eval_at=[RANK_AT])
            self.model.fit(x, y, eval_X=(x_stop,), eval_y=(y_stop,), categorical_feature=cat, **kw,
                           callbacks=[self.lgb.early_stopping(EARLY_STOP, verbose=False),
                                      self._deadline_callback()])  # fmt: skip
            return int(self.model.best_iteration_ or PARAMS["n_estimators"])
        self.model.set_params(n_estimators=100)
        self.model.fit(x, y, categorical_feature=cat, **kw, callbacks=[self._deadline_callback()])
        return int(self.model.booster_.current_iteration())

    def predict(self, x) -> np.ndarray:
        return self.model.predict(x) if self.ranks else self.model.predict_proba(x)[:, 1]

    def importance(self) -> np.ndarray:
        return self.model.booster_.feature_importance(self.importance_type).astype(np.float64)

    file = "ranker.txt"

    def save(self, path: Path) -> None:
        """LightGBM's text model (the trees up to the early-stopped best iteration)."""
        path.write_text(self.model.booster_.model_to_string())

    @classmethod
    def load(cls, path: Path) -> "_Booster":
        return _Booster(lightgbm().Booster(model_str=path.read_text()))


class _Booster:
    """A LightGBM booster read back from its text model: predicts exactly as the classifier that wrote it."""

    def __init__(self, booster):
        self.booster = booster

    def predict(self, x) -> np.ndarray:
        # a served request's few hundred rows: one thread (0.6 ms) beats OpenMP's team (12 ms on a busy
        # 2-core machine); the trees give the same probabilities either way
        return self.booster.predict(x, num_threads=1 if len(x) < SMALL_PREDICT else 0)


class _CatBoost:
    """CatBoostClassifier on ``FeaturesData`` (float columns + the cluster as a string category)."""

    importance_type = "PredictionValuesChange"

    def __init__(self, seed: int, threads: int):
        self.cb = catboost()
        self.model = self.cb.CatBoostClassifier(**CATBOOST_PARAMS, random_seed=seed,
                                                thread_count=threads or ranker_threads())  # fmt: skip
        self.categorical: list[int] = []

    def _pool(self, x, y=None):
        num = np.delete(x, self.categorical, axis=1) if self.categorical else x
        cat = None
        if self.categorical:
            cat = x[:, self.categorical].astype(np.int64).astype(str).astype(object)
        data = self.cb.FeaturesData(num_feature_data=np.ascontiguousarray(num, dtype=np.float32),
                                    cat_feature_data=cat)  # fmt: skip
        return self.cb.Pool(data, label=y)

    def fit(self, x, y, x_stop, y_stop, categorical: list[int], group=None, group_stop=None) -> int:
        self.categorical = list(categorical)
        if x_stop is not None:
            self.model.set_params(od_type="Iter", od_wait=EARLY_STOP, use_best_model=True)
            self.model.fit(self._pool(x, y), eval_set=self._pool(x_stop, y_stop))
            return int(self.model.get_best_iteration() + 1)
        self.model.set_params(iterations=100)
        self.model.fit(self._pool(x, y))
        return 100

    def predict(self, x) -> np.ndarray:
        return self.model.predict_proba(self._pool(x))[:, 1]

    def importance(self) -> np.ndarray:
        imp = np.asarray(self.model.get_feature_importance(type=self.importance_type), dtype=np.float64)
        # FeaturesData orders the numerical columns first, then the categorical ones: back to our order
        n = len(imp)
        num_cols = [j for j in range(n) if j not in self.categorical]
        out = np.empty(n)
        out[num_cols + self.categorical] = imp
        return out

    file = "ranker.json"

    def save(self, path: Path) -> None:
        """CatBoost's JSON model, with the categorical columns' positions beside it."""
        self.model.save_model(str(path), format="json")
        path.with_suffix(".columns.json").write_text(json.dumps({"categorical": self.categorical}) + "\n")

    @classmethod
    def load(cls, path: Path) -> "_CatBoost":
        self = cls.__new__(cls)
        self.cb = catboost()
        self.model = self.cb.CatBoostClassifier()
        self.model.load_model(str(path), format="json")
        self.categorical = json.loads(path.with_suffix(".columns.json").read_text())["categorical"]
        return self


BACKENDS = {"lightgbm": _LightGBM, "catboost": _CatBoost}


def candidate_features(
    data, train, users: np.ndarray, lists: Sequence[Recommendations], labels: Sequence[str], clusters=None,
    cluster_share: np.ndarray | None = None, recency=None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``items`` (n, L) (the union of the members' lists, -1 padding) and ``features`` (n, L, F) float32.

    ``train``: the stage's training data (popularity, activity, the user's
    history); ``data``: the full dataset (its item side features).
    ``clusters`` (:class:`toprec.features.UserClusters`): adds ``cluster``
    (the user's cluster id, -1 for none; categorical) and ``cluster_share``
    (the share of the user's cluster who had the item in ``train``;
    ``cluster_share`` passes that (k, items) table in when it is already
    computed for the stage). ``recency`` (a :class:`.recency.Recency` of
    ``train``): adds the recency features listed there.
    """
    tables = RerankTables.build(data, train, clusters, cluster_share, recency)
    return table_features(tables, users, lists, labels)


def table_features(
    tables: RerankTables, users: np.ndarray, lists: Sequence[Recommendations], labels: Sequence[str],
    history: sp.csr_matrix | None = None, recent: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`candidate_features` from a stage's :class:`RerankTables` (built once, or loaded to serve).

    ``history`` / ``recent``: the rows and latest items (see :meth:`.recency.Recency.features`)
    of the users unknown to the tables (-1: served from a history).
    """
    users = np.asarray(users, dtype=np.int64)
    ps, pr = build_pool(lists, "score", users), build_pool(lists, "rank", users)
    items = ps.items
    n, L = items.shape
    it = np.maximum(items, 0)
    Xu = tables.user_rows(users, history)
    cols, names = [], []
    for m, label in enumerate(labels):
        cols += [ps.contrib[m], pr.contrib[m]]
        names += [f"{label}_z", f"{label}_rank"]
    cols.append(ps.present.sum(0))
    names.append("n_listed")
    cols.append(tables.log_popularity[it])
    names.append("log_popularity")
    activity = np.log1p(np.diff(Xu.indptr)).astype(np.float64)
    cols.append(np.broadcast_to(activity[:, None], (n, L)))
    names.append("log_activity")
    flat_user, flat_item = np.repeat(np.arange(n), L), it.ravel()
    n_hist = np.maximum(np.diff(Xu.indptr), 1).astype(np.float64)
    for fname, value in tables.side:
        if fname == YEARS:
            iy = value
            uy = (Xu @ np.nan_to_num(iy)) / np.maximum(Xu @ (~np.isnan(iy)).astype(np.float64), 1)
            cols += [iy[it], iy[it] - uy[:, None]]
            names += ["year", "year_minus_user_mean"]
            continue
        F = value
        profile = (Xu @ F).toarray() / n_hist[:, None]  # share of the user's history with each value
        rows = F[flat_item]
        r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        vals = profile[flat_user[r], rows.indices]
        total = np.bincount(r, weights=vals, minlength=rows.shape[0])
        top = np.zeros(rows.shape[0])
        np.maximum.at(top, r, vals)
        cols += [total.reshape(n, L), top.reshape(n, L)]
        names += [f"{fname}_affinity", f"{fname}_affinity_max"]
    if tables.cluster_labels is not None:
        lab = tables.clusters_of(users)
        share = tables.cluster_share
        cols.append(np.broadcast_to(lab[:, None].astype(np.float64), (n, L)))
        names.append(CLUSTER)
        cols.append(np.where(lab[:, None] >= 0, share[np.maximum(lab, 0)[:, None], it], 0.0))
        names.append("cluster_share")
    if tables.recency is not None:
        rc, rn = tables.recency.features(users, items, recent)
        cols += rc
        names += rn
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
    """A binary-objective booster (LightGBM or CatBoost) on :func:`candidate_features`; trained on one fold's truth.

    ``clusters``: a factor-model spec (``"ials"``, ``"lmf:factors=32"``) whose
    user clusters become features; fitted at :meth:`fit` on its ``train`` and
    kept (``self.clusters``) for every later stage. A fitted
    :class:`toprec.features.UserClusters` is used as it is.
    """

    def __init__(self, labels: Sequence[str], seed: int = 0, threads: int = 0, ranker: str = "lightgbm",
                 clusters=None, recency: bool = True):  # fmt: skip
        self.labels = list(labels)
        self.recency = bool(recency)
        self.seed = int(seed)
        self.threads = int(threads)
        self.ranker = str(ranker).strip().lower()
        if self.ranker not in RANKERS:
            raise ToprecError(f"unknown ranker '{ranker}' (choose from {', '.join(RANKERS)})")
        self.cluster_spec = clusters
        self.clusters = None
        self.model = None
        self.feature_names: list[str] = []
        self.trees = 0
        #: boosting ended at the caller's deadline (:func:`toprec.train.deadline`), not by early stopping
        self.out_of_time = False
        #: the features' share of the booster's importance (LightGBM: gain; CatBoost: PredictionValuesChange)
        self.importance: dict[str, float] = {}
        #: fit(k=...): the training users' top k by the fitted ranker (in-sample), without recomputing features
        self.fit_recs: Recommendations | None = None
        self._tables: tuple | None = None
        self._fit_rows: tuple | None = None

    def fit(self, data, train, users: np.ndarray, lists: Sequence[Recommendations], truth: sp.csr_matrix,
            k: int | None = None):  # fmt: skip
        """``truth``: CSR rows aligned with ``users`` (the fold's held-out items)."""
        self.fit_cuts(data, [(train, users, lists, truth)], keep_rows=k is not None)
        if k is not None:
            items, feats = self._fit_rows
            self.fit_recs = top_k(np.asarray(users, dtype=np.int64), items, self._predict(items, feats), k)
            self._fit_rows = None
        return self

    def fit_cuts(self, data, cuts: Sequence[tuple], keep_rows: bool = False):
        """Trained on the rows of several validation cuts at once: each ``(train, users, lists, truth)``, its
        features from its own ``train`` (popularity, the users' histories, recency). A user's rows stop the
        boosting in every cut or in none (the stopping users are drawn from the first cut's, as :meth:`fit`
        draws them), so no early-stopping row is of a user the booster also learns from. Clusters (a factor model
        over one ``train``) are fitted on the first cut's."""
        from ..metrics import hit_matrix

        backend = BACKENDS[self.ranker](self.seed, self.threads)  # a missing library: before any feature work
        if self.cluster_spec is not None and len(cuts) > 1:
            raise ToprecError("rerank: user clusters come from one training set; train on one cut")
        first = cuts[0][0]
        if isinstance(self.cluster_spec, str) and self.cluster_spec:
            from ..features.clusters import user_clusters

            self.clusters = user_clusters(first, self.cluster_spec, seed=self.seed)
        elif self.cluster_spec is not None:  # already fitted (UserClusters over train's users)
            self.clusters = self.cluster_spec
        stop_users = None
        xs, ys, xs_stop, ys_stop, rows, gs, gs_stop = [], [], [], [], None, [], []
        for train, users, lists, truth in cuts:
            users = np.asarray(users)
            if not len(users) and stop_users is not None:  # a cut without users of this fold: nothing to add
                continue
            items, feats, self.feature_names = candidate_features(data, train, users, lists, self.labels, self.clusters,
                                                                  recency=self._recency(train))  # fmt: skip
            valid = items >= 0
            y = hit_matrix(items, sp.csr_matrix(truth))
            if stop_users is None:
                fit_rows, stop_rows = split_users(len(users), self.seed)
                stop_users = users[stop_rows]
                rows = (items, feats)
            else:
                stop = np.isin(users, stop_users)
                fit_rows, stop_rows = np.flatnonzero(~stop), np.flatnonzero(stop)
            xs.append(feats[fit_rows][valid[fit_rows]])
            ys.append(y[fit_rows][valid[fit_rows]])
            xs_stop.append(feats[stop_rows][valid[stop_rows]])
            ys_stop.append(y[stop_rows][valid[stop_rows]])
            gs.append(valid[fit_rows].sum(axis=1))  # each user's rows are consecutive: a ranking objective's groups
            gs_stop.append(valid[stop_rows].sum(axis=1))
        # one group (``fit``): its arrays as they are, no copy of the features
        x_fit, y_fit = (xs[0], ys[0]) if len(xs) == 1 else (np.concatenate(xs), np.concatenate(ys))
        if not y_fit.any() and not any(y.any() for y in ys_stop):
            raise ToprecError("rerank: no held-out item is among the members' candidates on fold A")
        y_stop = np.concatenate(ys_stop)
        x_stop = (xs_stop[0] if len(xs_stop) == 1 else np.concatenate(xs_stop)) if y_stop.any() else None
        y_stop = y_stop if x_stop is not None else None
        categorical = [self.feature_names.index(CLUSTER)] if CLUSTER in self.feature_names else []
        # without held-out users to stop on: a fixed, small number of trees
        group, group_stop = (g[g > 0] for g in (np.concatenate(gs), np.concatenate(gs_stop)))
        self.trees = backend.fit(x_fit, y_fit, x_stop, y_stop, categorical, group, group_stop)
        self.out_of_time = bool(getattr(backend, "out_of_time", False))
        self.model = backend
        imp = backend.importance()
        imp = imp / imp.sum() if imp.sum() > 0 else imp
        self.importance = {name: round(float(v), 5) for name, v in zip(self.feature_names, imp)}
        self._fit_rows = rows if keep_rows else None  # the first cut's candidates and features, for fit(k=...)
        return self

    def _recency(self, train):
        """The stage's recency tables (:mod:`.recency`), or None when switched off."""
        if not self.recency:
            return None
        from .recency import Recency

        return Recency.of(train)

    def describe(self) -> dict:
        """What the report shows: backend, trees, features by importance, the clusters (if any)."""
        out = {"ranker": self.ranker, "trees": self.trees, "out_of_time": self.out_of_time,
               "features": self.feature_names,
               "importance": dict(sorted(self.importance.items(), key=lambda kv: -kv[1])),
               "importance_type": BACKENDS[self.ranker].importance_type}  # fmt: skip
        if self.clusters is not None:
            out["clusters"] = self.clusters.describe()
        return out

    # ------------------------------------------------------------------ saving (a served pipeline)
    def save(self, folder: Path, tables: RerankTables) -> None:
        """``folder/``: the booster (LightGBM text / CatBoost JSON), ``rerank.json`` and the stage's tables."""
        if self.model is None:
            raise ToprecError("rerank: the re-ranker is trained on fold A: run validate() first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        backend = BACKENDS[self.ranker]
        self.model.save(folder / backend.file)
        meta = {"ranker": self.ranker, "labels": self.labels, "features": self.feature_names, "trees": self.trees,
                "recency": self.recency, "seed": self.seed, "importance": self.importance}  # fmt: skip
        (folder / "rerank.json").write_text(json.dumps(meta, indent=2) + "\n")
        tables.save(folder)

    @classmethod
    def load(cls, folder: Path) -> tuple["Reranker", RerankTables]:
        """The re-ranker :meth:`save` wrote, ready to score, and the stage's tables."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "rerank.json").read_text())
            self = cls(meta["labels"], seed=meta["seed"], ranker=meta["ranker"], recency=meta["recency"])
            backend = BACKENDS[self.ranker]
            self.model = backend.load(folder / backend.file)
        except ToprecError:
            raise
        except Exception as exc:  # a missing/corrupt file, or the booster library's own error on a bad model
            raise ToprecError(f"{folder}: cannot read the re-ranker ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
        self.feature_names, self.trees, self.importance = meta["features"], meta["trees"], meta["importance"]
        return self, RerankTables.load(folder)

    def _predict(self, items: np.ndarray, feats: np.ndarray) -> np.ndarray:
        valid = items >= 0
        scores = np.full(items.shape, -np.inf, dtype=np.float32)
        if valid.any():
            scores[valid] = self.model.predict(feats[valid])
        return scores

    def recommend(
        self, data, train, users: np.ndarray, lists: Sequence[Recommendations], k: int,
        exclude: sp.csr_matrix | None = None,
    ) -> Recommendations:  # fmt: skip
        """Top ``k`` of the union of the members' lists by the ranker's probability (users in batches)."""
        if self.model is None:
            raise ToprecError("rerank: the re-ranker is trained on fold A: run validate() first")
        return self.recommend_tables(self.tables(data, train), users, lists, k, exclude)

    def tables(self, data, train) -> RerankTables:
        """The stage's tables (built once per ``train``; a served pipeline saves the final stage's)."""
        if self._tables is None or self._tables[0] is not train:
            self._tables = (train, RerankTables.build(data, train, self.clusters, None, self._recency(train)))
        return self._tables[1]

    def recommend_tables(
        self, tables: RerankTables, users: np.ndarray, lists: Sequence[Recommendations], k: int,
        exclude: sp.csr_matrix | None = None, history: sp.csr_matrix | None = None, recent: np.ndarray | None = None,
    ) -> Recommendations:  # fmt: skip
        """:meth:`recommend` from a stage's tables; ``history`` / ``recent``: see :func:`table_features`."""
        users = np.asarray(users, dtype=np.int64)
        out_items = np.full((len(users), k), -1, dtype=np.int32)
        out_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        for start in range(0, len(users), BATCH_USERS):
            sel = np.arange(start, min(start + BATCH_USERS, len(users)))
            items, feats, _ = table_features(tables, users[sel], select_rows(lists, sel), self.labels,
                                             None if history is None else history[sel],
                                             None if recent is None else recent[sel])  # fmt: skip
            recs = top_k(users[sel], items, self._predict(items, feats), k, None if exclude is None else exclude[sel])
            out_items[sel], out_scores[sel] = recs.items, recs.scores
        return Recommendations(users, out_items, out_scores)
