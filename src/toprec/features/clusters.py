"""User clusters: K-means over the user vectors of a fitted factor model.

>>> from toprec.features import user_clusters
>>> cl = user_clusters(train, "ials", seed=0)        # fits iALS on train, then K-means for k = 2..12
>>> cl.labels[u], cl.k, cl.silhouette                # cluster per user index, the chosen k, k -> silhouette
>>> codes, n = cl.categories()                       # a categorical feature for any model (FM, a ranker)

The vectors are the learned user factors of ``ials``, ``bpr`` or ``lmf``
(any model with ``user_factors``; the bias columns that ``implicit`` adds
to BPR and LMF are dropped), L2-normalised by default so that clusters group
tastes rather than activity levels (a factor vector's length grows with the
user's number of events). The number of clusters is the one with the best
silhouette (cosine on the normalised vectors) over ``k_range``, computed on a
seeded sample of users, so the choice is deterministic and linear in the
users. Users without training events have no learned vector: their label is
``-1`` (the extra category ``k`` in :meth:`UserClusters.categories`).

The cluster ids are arbitrary names: K-means on other data or with another
seed permutes them. A consumer that learns per-cluster effects (the
re-ranker, an FM) must therefore fit the clusters once and keep the same
labels for every stage, which :class:`toprec.ensemble.rerank.Reranker` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ToprecError

#: numbers of clusters tried by default (the silhouette picks one)
K_RANGE = (2, 12)
#: users sampled for the silhouette (its cost is quadratic in them)
SILHOUETTE_SAMPLE = 4000
#: K-means restarts per k (the best inertia is kept)
N_INIT = 4


@dataclass(frozen=True)
class UserClusters:
    """A cluster id per user (internal index; -1 without a vector), the chosen k and how it was chosen."""

    labels: np.ndarray
    k: int
    silhouette: dict[int, float]
    centers: np.ndarray
    source: str
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``keep_vectors=True``: the (normalised) vectors K-means saw, one row per user (zeros without a vector)
    vectors: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.labels)

    def sizes(self) -> np.ndarray:
        """Users per cluster (length k; users without a vector are not counted)."""
        return np.bincount(self.labels[self.labels >= 0], minlength=self.k)

    def lookup(self, users: np.ndarray) -> np.ndarray:
        """Labels of ``users`` (internal indices); -1 for indices outside the clustered users (new users)."""
        users = np.asarray(users, dtype=np.int64)
        known = (users >= 0) & (users < self.n_users)
        return np.where(known, self.labels[np.where(known, users, 0)], -1)

    def categories(self, users: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """A per-user categorical feature: (codes in 0..k, k + 1 categories); code k = no cluster.

        Non-negative codes for embedding tables (an FM's user-side field).
        """
        lab = self.labels if users is None else self.lookup(users)
        return np.where(lab >= 0, lab, self.k).astype(np.int64), self.k + 1

    def one_hot(self, users: np.ndarray | None = None) -> sp.csr_matrix:
        """(users, k + 1) CSR one-hot of :meth:`categories` (float32), for sparse feature matrices."""
        codes, n = self.categories(users)
        return sp.csr_matrix(
            (np.ones(len(codes), dtype=np.float32), codes, np.arange(len(codes) + 1)), shape=(len(codes), n)
        )

    def describe(self) -> dict[str, Any]:
        """The JSON-able summary: source model, k, silhouette per k, cluster sizes."""
        return {"source": self.source, "k": self.k, "seed": self.seed,
                "silhouette": {str(k): round(float(v), 5) for k, v in self.silhouette.items()},
                "sizes": self.sizes().tolist(), "unclustered_users": int((self.labels < 0).sum()),
                **self.extra}  # fmt: skip


def user_vectors(model) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n_users, d) float64, mask of users that have a learned vector) of a fitted factor model."""
    U = getattr(model, "user_factors", None)
    if U is None or not hasattr(U, "shape") or len(U.shape) != 2:
        raise ToprecError(f"clusters: model '{getattr(model, 'name', model)}' has no user factors "
                          "(use a factor model: ials, bpr or lmf)")  # fmt: skip
    V = np.asarray(U, dtype=np.float64)
    latent = getattr(model, "_latent_columns", None)
    if latent is not None:
        V = V[:, latent()]
    X = getattr(model, "train_matrix", None)
    valid = np.diff(X.indptr) > 0 if X is not None else np.ones(len(V), dtype=bool)
    return V, valid & np.isfinite(V).all(1)


def _k_values(k, k_range, n: int) -> list[int]:
    if k is not None:
        if int(k) < 1:
            raise ToprecError(f"clusters: k must be >= 1, got {k}")
        return [min(int(k), n)]
    lo, hi = (int(v) for v in k_range)
    if lo < 2 or hi < lo:
        raise ToprecError(f"clusters: k_range must be (lo, hi) with 2 <= lo <= hi, got {tuple(k_range)}")
    ks = [k for k in range(lo, hi + 1) if k < n]
    return ks or [1]


def cluster_vectors(
    V: np.ndarray, valid: np.ndarray | None = None, *, k: int | None = None, k_range=K_RANGE, seed: int = 0,
    normalize: bool = True, sample: int = SILHOUETTE_SAMPLE, source: str = "vectors", keep_vectors: bool = False,
) -> UserClusters:  # fmt: skip
    """K-means over the rows of ``V`` (rows where ``valid`` is false get -1); k by silhouette unless given."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    V = np.asarray(V, dtype=np.float64)
    valid = np.ones(len(V), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    rows = np.flatnonzero(valid)
    if len(rows) < 2:
        raise ToprecError(f"clusters: {len(rows)} user(s) with a learned vector, at least 2 are needed")
    W = V[rows]
    if normalize:
        W = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    probe = np.sort(rng.choice(len(W), size=min(sample, len(W)), replace=False))
    best, scores = None, {}
    for kk in _k_values(k, k_range, len(W)):
        km = KMeans(n_clusters=kk, n_init=N_INIT, random_state=seed).fit(W)
        lab = km.labels_
        if kk > 1 and len(np.unique(lab[probe])) > 1:
            scores[kk] = float(silhouette_score(W[probe], lab[probe], metric="euclidean"))
        else:
            scores[kk] = float("nan")
        if best is None or (scores[kk] > scores[best[0]]) or (np.isnan(scores[best[0]]) and not np.isnan(scores[kk])):
            best = (kk, lab, km.cluster_centers_)
    kk, lab, centers = best
    # name the clusters by size (largest 0), ties by the smallest member row: stable across runs
    sizes = np.bincount(lab, minlength=kk)
    first = np.full(kk, len(lab))
    np.minimum.at(first, lab, np.arange(len(lab)))
    order = np.lexsort((first, -sizes))
    rename = np.empty(kk, dtype=np.int64)
    rename[order] = np.arange(kk)
    labels = np.full(len(V), -1, dtype=np.int64)
    labels[rows] = rename[lab]
    kept = None
    if keep_vectors:
        kept = np.zeros_like(V)
        kept[rows] = W
    return UserClusters(labels=labels, k=kk, silhouette=scores, centers=centers[order], source=source, seed=seed,
                        vectors=kept)  # fmt: skip


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ials"`` / ``"lmf:factors=32:iterations=30"`` -> (model name, parameters); one-line errors."""
    from .. import models

    name, *pairs = str(spec).strip().split(":")
    try:
        cls = models.get_class(name.strip())
    except ToprecError as exc:
        raise ToprecError(f"--clusters '{spec}': {exc}") from None
    params = models.parse_params(cls.name, [p for p in pairs if p.strip()])
    if not any("user_factors" in getattr(c, "__annotations__", {}) for c in cls.__mro__):
        raise ToprecError(f"--clusters '{spec}': model '{cls.name}' has no user factors (use ials, bpr or lmf)")
    cls(**params)  # validate the parameters now
    return cls.name, params


def user_clusters(
    train, model="ials", *, k: int | None = None, k_range=K_RANGE, seed: int = 0, normalize: bool = True,
    sample: int = SILHOUETTE_SAMPLE, keep_vectors: bool = False,
) -> UserClusters:  # fmt: skip
    """Fit ``model`` (a spec like ``"ials"``, ``"lmf:factors=32"``, or a fitted factor model) and cluster its users.

    The model's own seed (``random_state``) is ``seed`` unless the spec sets it.
    ``k``: a fixed number of clusters instead of the silhouette's choice over ``k_range``.
    """
    from .. import models

    if isinstance(model, str):
        name, params = parse_spec(model)
        cls = models.get_class(name)
        if "random_state" in cls.Params.model_fields and "random_state" not in params:
            params["random_state"] = seed
        fitted = cls(**params).fit(train)
        source = model
    else:
        fitted, source = model, getattr(model, "name", "model")
    V, valid = user_vectors(fitted)
    out = cluster_vectors(V, valid, k=k, k_range=k_range, seed=seed, normalize=normalize, sample=sample,
                          source=source, keep_vectors=keep_vectors)  # fmt: skip
    out.extra["vectors"] = int(V.shape[1])
    return out


def cluster_item_share(clusters: UserClusters, matrix: sp.csr_matrix) -> np.ndarray:
    """(k, n_items) float64: the share of each cluster's users (rows of ``matrix``) who have each item."""
    X = sp.csr_matrix(matrix)
    n = min(X.shape[0], clusters.n_users)
    lab = clusters.labels[:n]
    keep = np.flatnonzero(lab >= 0)
    M = sp.csr_matrix((np.ones(len(keep)), (lab[keep], keep)), shape=(clusters.k, X.shape[0]))
    counts = np.asarray((M @ (X > 0).astype(np.float64)).todense())
    return counts / np.maximum(np.bincount(lab[keep], minlength=clusters.k), 1)[:, None]
