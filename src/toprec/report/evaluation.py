"""``toprec report``: evaluate models on one holdout and explain where they win and lose.

For every model: the metrics ``toprec evaluate`` prints (the same code:
:func:`toprec.metrics.evaluate` on the same recommendations), recall@k by
user-activity bucket and by item-popularity bucket, the last-event vs random
part of the holdout, catalogue coverage and popularity bias of the
recommendations, and a 2-D map (t-SNE) of the item embeddings of models that
have them:

- factorisation models (``ials``, ``bpr``, ``lmf``; any model with
  ``item_factors`` or ``item_embeddings``): the item factors;
- item-item models (``itemknn``, ``rp3beta``, ``ease`` in item form,
  ``edlae``, ``easer``, ``admm-slim``: ``similarity``): each item's row of
  the item-item matrix, reduced to 32 dimensions by TruncatedSVD;
- others (``popularity``, EASE in user-space form): no map.

The map is coloured by each item's most specific genre (its rarest genre)
when genres are known, else by K-means cluster; the K-means clusters' genre
purity is reported against the purity with genres shuffled over the items.

With ``clusters`` (a factor model, e.g. ``"ials"``; off by default, it fits
one more model and a t-SNE): the training users are clustered by
:func:`toprec.features.user_clusters` (K-means on the model's user vectors,
k by silhouette), a t-SNE map of a sample of users is coloured by cluster,
and every model's recall@k is broken down by the user's cluster.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from .. import metrics, split
from ..version import __version__
from ..data.dataset import Dataset
from ..errors import ToprecError
from ..keys import csr_keys, isin_sorted
from ..metrics import user_buckets
from . import plots
from .html import Page

ITEM_BUCKETS = ((0.0, 0.01), (0.01, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 1.0))
N_CLUSTERS = 8
#: users on the user-cluster map (a seeded sample; t-SNE is quadratic-ish in them)
CLUSTER_MAP_USERS = 1500


def item_buckets(popularity: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Buckets by popularity rank share: top 1%, 1-5%, 5-20%, 20-50%, bottom 50%."""
    n = len(popularity)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-popularity, kind="stable")] = np.arange(n)
    share = (rank + 0.5) / max(1, n)
    b = np.zeros(n, dtype=np.int64)
    for j, (lo, _hi) in enumerate(ITEM_BUCKETS):
        b[share >= lo] = j
    labels = [f"top {int(hi * 100)}%" if lo == 0 else f"{int(lo * 100)}–{int(hi * 100)}%" for lo, hi in ITEM_BUCKETS]
    return b, labels


def truth_hits(items: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """For every stored entry of ``truth`` (row order): is it among that row's recommended ``items``."""
    n_items = max(truth.shape[1], 1)
    r_keys = np.sort((np.arange(items.shape[0], dtype=np.int64)[:, None] * n_items + items)[items >= 0])
    return isin_sorted(r_keys, csr_keys(truth, n_items))


def item_embedding(model) -> tuple[np.ndarray | sp.spmatrix | None, str]:
    """The model's item representation (rows = items) and what it is; None when it has none."""
    for attr in ("item_factors", "item_embeddings"):
        v = getattr(model, attr, None)
        if v is not None and hasattr(v, "shape") and len(v.shape) == 2 and v.shape[0] == model.n_items:
            return np.asarray(v, dtype=np.float32), f"{attr} ({v.shape[1]} dimensions)"
    sim = getattr(model, "similarity", None)
    if sim is not None and hasattr(sim, "shape") and sim.shape == (model.n_items, model.n_items):
        return sim, "item-item matrix rows, TruncatedSVD to 32 dimensions"
    return None, ""


def primary_genre(ds: Dataset, feature: str = "genres") -> tuple[np.ndarray, np.ndarray] | None:
    """Each item's rarest genre (index into the genre names, -1 if none), and the names."""
    if feature not in ds.features:
        return None
    f = ds.features[feature]
    G = sp.csr_matrix(f.matrix)
    freq = np.asarray(G.sum(0)).ravel()
    # per item, the genre with the smallest global frequency: sort entries by (item, freq)
    rows = np.repeat(np.arange(G.shape[0]), np.diff(G.indptr))
    o = np.lexsort((G.indices, freq[G.indices], rows))
    first = np.r_[True, rows[o][1:] != rows[o][:-1]] if len(o) else np.zeros(0, bool)
    out = np.full(G.shape[0], -1, dtype=np.int64)
    out[rows[o][first]] = G.indices[o][first]
    return out, np.asarray(f.values)


def embedding_map(emb, items: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(2-D t-SNE coordinates, the vectors they came from) for the selected items."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.manifold import TSNE

    if sp.issparse(emb):
        V = sp.csr_matrix(emb)[items]
    else:
        V = np.asarray(emb)[items]
    if V.shape[1] > 32:
        V = TruncatedSVD(n_components=32, random_state=seed).fit_transform(V)
    V = np.asarray(V.toarray() if sp.issparse(V) else V, dtype=np.float64)
    n = len(items)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(V)
    return xy, V


def _purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    ok = labels >= 0
    if not ok.any():
        return 0.0
    c, g = clusters[ok], labels[ok]
    table = np.zeros((c.max() + 1, g.max() + 1), dtype=np.int64)
    np.add.at(table, (c, g), 1)
    return float(table.max(1).sum() / ok.sum())


def compute_report(
    ds: Dataset, models: Sequence, *, protocol: str = "competition", last: int = 1, random: int = 9, seed: int = 0,
    cutoff: float = 0.9, k: int = 10, map_items: int = 1000, step: Callable[[str], None] | None = None,
    clusters: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Fit each (unfitted) model on the training part of one split and collect every report number.

    ``clusters``: a factor-model spec whose user clusters break recall down (see the module's docstring).
    """
    step = step or (lambda _m: None)
    step("split")
    train, holdout = split.by_name(ds, protocol, last=last, random=random, seed=seed, cutoff=cutoff)
    users = holdout.users
    if len(users) == 0:
        raise ToprecError(f"{ds.name or 'data'}: no user has enough events for the {protocol} protocol")
    truth = holdout.matrix[users]
    u_bucket, u_labels = user_buckets(np.asarray(train.user_counts[users], dtype=np.float64))
    pop = np.asarray(train.item_counts, dtype=np.float64)
    i_bucket, i_labels = item_buckets(pop)
    truth_items = truth.indices
    head = np.zeros(ds.n_items, dtype=bool)
    head[np.argsort(-pop, kind="stable")[: max(1, int(np.ceil(0.1 * ds.n_items)))]] = True
    names = [f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"precision@{k}", f"hit@{k}", f"mrr@{k}", f"coverage@{k}"]
    genres = primary_genre(ds)
    out: dict[str, Any] = {
        "protocol": holdout.protocol, "k": k, "users_evaluated": int(len(users)), "test_events": holdout.n_events,
        "train_events": train.n_events, "user_bucket_labels": u_labels, "item_bucket_labels": i_labels,
        "users_per_bucket": np.bincount(u_bucket, minlength=len(u_labels)),
        "test_events_per_item_bucket": np.bincount(i_bucket[truth_items], minlength=len(i_labels)),
        "parts": list(holdout.parts), "models": {},
        "truth_mean_popularity": float(pop[truth_items].mean() / max(1, train.n_users)),
        "truth_head_share": float(head[truth_items].mean()),
    }  # fmt: skip
    user_cluster = None
    if clusters:
        step("user clusters")
        uc, xy, sample = user_cluster_map(train, clusters, seed)
        user_cluster = uc.lookup(users)
        out["user_clusters"] = {**uc.describe(), "map_users": sample, "map_xy": xy,
                                "map_cluster": uc.labels[sample],
                                "users_evaluated_per_cluster": np.bincount(user_cluster[user_cluster >= 0],
                                                                           minlength=uc.k)}  # fmt: skip
    for model in models:
        step(f"{model.name}: fit")
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        step(f"{model.name}: recommend")
        t0 = time.perf_counter()
        history = None if holdout.history is None else holdout.history[users]
        recs = model.recommend(users, k=k, history=history)
        rec_s = time.perf_counter() - t0
        res: dict[str, Any] = {"metrics": metrics.evaluate(recs, holdout, names)}
        for part in holdout.parts if len(holdout.parts) > 1 else ():
            res["metrics"][f"recall_{part}@{k}"] = metrics.evaluate(recs, holdout, [f"recall@{k}"], part=part)[
                f"recall@{k}"
            ]
        res["metrics"]["fit_s"] = round(fit_s, 3)
        res["metrics"]["recommend_s"] = round(rec_s, 3)
        per_user = metrics.per_user(f"recall@{k}", recs.items, truth)
        res["per_user_recall"] = per_user
        res["per_user_ndcg"] = metrics.per_user(f"ndcg@{k}", recs.items, truth)
        nb = len(u_labels)
        cnt = np.bincount(u_bucket, minlength=nb)
        res["recall_by_user_bucket"] = np.bincount(u_bucket, weights=per_user, minlength=nb) / np.maximum(cnt, 1)
        if user_cluster is not None:
            ok = user_cluster >= 0
            n_per = out["user_clusters"]["users_evaluated_per_cluster"]
            res["recall_by_user_cluster"] = np.bincount(user_cluster[ok], weights=per_user[ok],
                                                        minlength=len(n_per)) / np.maximum(n_per, 1)  # fmt: skip
        hits = truth_hits(recs.items, truth)
        nib = len(i_labels)
        ib = i_bucket[truth_items]
        res["hit_rate_by_item_bucket"] = np.bincount(ib, weights=hits, minlength=nib) / np.maximum(
            np.bincount(ib, minlength=nib), 1
        )
        rec_items = recs.items[recs.items >= 0]
        counts = np.bincount(rec_items, minlength=ds.n_items)
        res["bias"] = {
            f"coverage@{k}": res["metrics"][f"coverage@{k}"],
            "mean_popularity_of_recommended": float(pop[rec_items].mean() / max(1, train.n_users)) if len(rec_items)
            else 0.0,
            "head_share_of_recommended": float(head[rec_items].mean()) if len(rec_items) else 0.0,
            "gini_of_recommendation_counts": _gini(counts),
        }  # fmt: skip
        res["bias"]["popularity_ratio_vs_truth"] = res["bias"]["mean_popularity_of_recommended"] / max(
            out["truth_mean_popularity"], 1e-12
        )
        emb, what = item_embedding(model)
        if emb is not None and map_items >= 5:
            step(f"{model.name}: embedding map")
            sel = np.sort(np.argsort(-pop, kind="stable")[: min(map_items, ds.n_items)])
            xy, V = embedding_map(emb, sel, seed)
            from sklearn.cluster import KMeans

            n_cl = min(N_CLUSTERS, len(sel))
            clusters = KMeans(n_clusters=n_cl, n_init=4, random_state=seed).fit_predict(V)
            m: dict[str, Any] = {"what": what, "items": sel, "xy": xy, "clusters": clusters}
            if genres is not None:
                g = genres[0][sel]
                rng = np.random.default_rng(seed)
                m["genre_purity"] = _purity(clusters, g)
                m["genre_purity_shuffled"] = _purity(clusters, rng.permutation(g))
                m["genre"] = g
            res["map"] = m
        else:
            res["map_note"] = ("no item vectors (neither item factors nor an item-item matrix"
                               + (": EASE in its user-space form" if getattr(model, "form_", "") == "users" else "")
                               + ")") if emb is None else "map disabled (--map-items 0)"  # fmt: skip
        out["models"][model.name] = res
    out["genre_names"] = None if genres is None else [str(v) for v in genres[1]]
    return out


def user_cluster_map(train: Dataset, spec: str, seed: int, n_map: int = CLUSTER_MAP_USERS):
    """(UserClusters, t-SNE coordinates of a seeded sample of clustered users, that sample's user indices)."""
    from ..features.clusters import user_clusters

    uc = user_clusters(train, spec, seed=seed, keep_vectors=True)
    clustered = np.flatnonzero(uc.labels >= 0)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(clustered, size=min(n_map, len(clustered)), replace=False))
    xy, _ = embedding_map(uc.vectors, sample, seed)  # the normalised vectors K-means saw
    return uc, xy, sample


def _gini(counts: np.ndarray) -> float:
    from .eda import gini

    return gini(counts)


def build_report_page(ds: Dataset, rep: dict[str, Any], source: str = "", seconds: float | None = None) -> Page:
    k = rep["k"]
    models = list(rep["models"])
    page = Page(f"toprec report: {ds.name or source}")
    page.meta.append(f"data: {source or ds.name} · {rep['protocol']} · toprec {__version__}"
                     + (f" · {seconds:.1f} s" if seconds is not None else ""))  # fmt: skip

    s = page.section("overview", "Overview")
    s.numbers = {"models": ", ".join(models), "protocol": rep["protocol"], "k": k,
                 "users_evaluated": rep["users_evaluated"], "test_events": rep["test_events"],
                 "train_events": rep["train_events"], "users": ds.n_users, "items": ds.n_items}  # fmt: skip

    s = page.section("metrics", "Metrics")
    s.text.append("The same computation as `toprec evaluate` (full ranking, seen items masked); recall is the "
                  "competition's hits / min(k, |held out|). Per-user recall and ndcg arrays are in the JSON.")  # fmt: skip
    keys = list(next(iter(rep["models"].values()))["metrics"]) if models else []
    s.table(f"{rep['users_evaluated']:,} users, {rep['test_events']:,} held-out events", ["metric"] + models,
            [[key] + [rep["models"][m]["metrics"][key] for m in models] for key in keys])  # fmt: skip
    s.data = {m: {f"per_user_recall@{k}": rep["models"][m]["per_user_recall"],
                  f"per_user_ndcg@{k}": rep["models"][m]["per_user_ndcg"]} for m in models}  # fmt: skip
    s.figures.append(plots.bars(
        "metrics", f"recall@{k} and ndcg@{k}", models,
        {f"recall@{k}": [rep["models"][m]["metrics"][f"recall@{k}"] for m in models],
         f"ndcg@{k}": [rep["models"][m]["metrics"][f"ndcg@{k}"] for m in models]}, "mean over users",
    ))  # fmt: skip

    s = page.section("by_user_activity", f"recall@{k} by user activity")
    s.text.append("Users in quantile buckets of their number of training events.")
    labels = rep["user_bucket_labels"]
    series = {m: rep["models"][m]["recall_by_user_bucket"] for m in models}
    s.table("Mean recall per bucket", ["training events", "users"] + models,
            [[lab, int(rep["users_per_bucket"][b])] + [float(series[m][b]) for m in models]
             for b, lab in enumerate(labels)])  # fmt: skip
    s.figures.append(plots.bars("recall_by_user_activity", f"recall@{k} by user activity", labels, series,
                                f"recall@{k}", x_label="training events of the user"))  # fmt: skip

    s = page.section("by_item_popularity", "Hit rate by item popularity")
    s.text.append(f"Share of held-out events whose item is in the user's top {k}, by the item's popularity rank "
                  "in the training data (top 1% of items, 1–5%, ...).")  # fmt: skip
    labels = rep["item_bucket_labels"]
    series = {m: rep["models"][m]["hit_rate_by_item_bucket"] for m in models}
    s.table("Hit rate per popularity bucket", ["items", "held-out events"] + models,
            [[lab, int(rep["test_events_per_item_bucket"][b])] + [float(series[m][b]) for m in models]
             for b, lab in enumerate(labels)])  # fmt: skip
    s.figures.append(plots.bars("hit_rate_by_item_popularity", "Held-out events found, by item popularity", labels,
                                series, f"share in top {k}", x_label="item popularity rank"))  # fmt: skip

    s = page.section("parts", "Last event vs random part")
    parts = [p for p in rep["parts"]] if len(rep["parts"]) > 1 else []
    if not parts:
        s.text.append("This protocol has a single part.")
    else:
        s.text.append("recall on each part of the holdout separately: the last event (sequential) and the random "
                      "earlier events (static). A model that ignores order cannot tell them apart.")  # fmt: skip
        cats = ["all"] + parts
        series = {m: [rep["models"][m]["metrics"][f"recall@{k}"]]
                  + [rep["models"][m]["metrics"][f"recall_{p}@{k}"] for p in parts] for m in models}  # fmt: skip
        s.table(f"recall@{k} by part", ["part"] + models,
                [[c] + [series[m][j] for m in models] for j, c in enumerate(cats)])  # fmt: skip
        s.figures.append(plots.bars("recall_by_part", f"recall@{k}: all, last event, random part", cats, series,
                                    f"recall@{k}"))  # fmt: skip

    s = page.section("bias", "Coverage and popularity bias")
    s.text.append(
        f"Coverage@{k}: share of the catalogue in anyone's top {k}. Popularity: mean share of training users who "
        f"had a recommended item (held-out items: {rep['truth_mean_popularity']:.4f}); head share: share of "
        f"recommendations among the 10% most popular items (held-out items: {rep['truth_head_share']:.3f})."
    )
    s.numbers = {"held_out_mean_popularity": rep["truth_mean_popularity"],
                 "held_out_head_share": rep["truth_head_share"]}  # fmt: skip
    bkeys = list(next(iter(rep["models"].values()))["bias"]) if models else []
    s.table("Recommendations", ["quantity"] + models,
            [[key] + [rep["models"][m]["bias"][key] for m in models] for key in bkeys])  # fmt: skip
    s.figures.append(plots.bars(
        "coverage_bias", "Coverage and popularity of the recommendations", models,
        {f"coverage@{k}": [rep["models"][m]["bias"][f"coverage@{k}"] for m in models],
         "head share": [rep["models"][m]["bias"]["head_share_of_recommended"] for m in models],
         "held-out head share": [rep["truth_head_share"]] * len(models)}, "share",
    ))  # fmt: skip

    s = page.section("embeddings", "Item embeddings (t-SNE)")
    s.text.append("Items are the most popular ones in training. Factorisation models contribute their item factors, "
                  "item-item models their rows of the item-item matrix (TruncatedSVD to 32 dimensions); t-SNE to 2-D. "
                  "K-means (8 clusters) on the same vectors; genre purity = share of items whose most specific genre "
                  "is their cluster's most common one (shuffled: the same with genres permuted over items).")  # fmt: skip
    rows = []
    names = rep.get("genre_names")
    for m in models:
        r = rep["models"][m]
        if "map" not in r:
            rows.append([m, r.get("map_note", ""), 0, None, None])
            continue
        mp = r["map"]
        rows.append([m, mp["what"], len(mp["items"]), mp.get("genre_purity"), mp.get("genre_purity_shuffled")])
        if "genre" in mp and names is not None:
            g = mp["genre"]
            common = np.bincount(g[g >= 0], minlength=len(names))
            top = np.argsort(-common, kind="stable")[:9]
            top = top[common[top] > 0]
            groups = np.full(len(g), len(top), dtype=np.int64)
            for j, gi in enumerate(top):  # at most 9 genres
                groups[g == gi] = j
            gnames = [names[gi] for gi in top] + ["other / none"]
            title = f"{m}: items coloured by most specific genre"
        else:
            groups, gnames = mp["clusters"], [f"cluster {c}" for c in range(int(mp["clusters"].max()) + 1)]
            title = f"{m}: items coloured by K-means cluster"
        s.figures.append(plots.scatter(f"map_{m}", title, mp["xy"], groups, gnames,
                                       caption=f"{m}: {mp['what']}", ids=ds.item_ids[mp["items"]]))  # fmt: skip
    s.table("Embedding maps", ["model", "item vectors", "items", "K-means genre purity", "purity, genres shuffled"],
            rows)  # fmt: skip
    if "user_clusters" in rep:
        _user_cluster_section(page, ds, rep, models, k)
    return page


def _user_cluster_section(page: Page, ds: Dataset, rep: dict[str, Any], models: list[str], k: int) -> None:
    uc = rep["user_clusters"]
    s = page.section("user_clusters", f"User clusters ({uc['source']}) and recall@{k} by cluster")
    s.text.append(f"K-means on the L2-normalised user vectors of `{uc['source']}` fitted on the training part; the "
                  f"number of clusters is the one with the best silhouette (k = {uc['k']}, on a seeded sample of "
                  f"users). The map is a t-SNE of {len(uc['map_users']):,} sampled users. Cluster ids are ordered "
                  "by size (0 the largest).")  # fmt: skip
    s.numbers = {"source": uc["source"], "k": uc["k"], "unclustered_users": uc["unclustered_users"],
                 "silhouette_best": uc["silhouette"][str(uc["k"])]}  # fmt: skip
    ks = list(uc["silhouette"])
    s.table("Silhouette by number of clusters", ["k", "silhouette"], [[int(c), uc["silhouette"][c]] for c in ks])
    names = [f"cluster {c}" for c in range(uc["k"])]
    n_eval = uc["users_evaluated_per_cluster"]
    series = {m: rep["models"][m]["recall_by_user_cluster"] for m in models}
    s.table(f"Mean recall@{k} per cluster (evaluated users)", ["cluster", "training users", "evaluated users"] + models,
            [[names[c], int(uc["sizes"][c]), int(n_eval[c])] + [float(series[m][c]) for m in models]
             for c in range(uc["k"])])  # fmt: skip
    s.figures.append(plots.scatter("user_cluster_map", f"users coloured by cluster ({uc['source']})", uc["map_xy"],
                                   uc["map_cluster"], names, caption=f"t-SNE of {uc['source']} user vectors",
                                   ids=ds.user_ids[uc["map_users"]]))  # fmt: skip
    s.figures.append(plots.bars("recall_by_user_cluster", f"recall@{k} by user cluster", names, series,
                                f"recall@{k}", x_label="user cluster"))  # fmt: skip
