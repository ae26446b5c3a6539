"""What the re-ranker reads from one stage (fold A, fold B, all the data), as arrays: built once, saved for serving.

:func:`toprec.ensemble.rerank.candidate_features` needs, besides the
members' lists: the stage's user-item matrix (item popularity, user
activity, each user's history), the item side files (a multi-hot matrix per
file; ``years`` as one number per item), the user clusters' labels and
per-cluster item shares, and the recency tables (:class:`.recency.Recency`).
:class:`RerankTables` holds exactly those, built once per stage, and writes
them to one ``.npz`` (no pickle) so that a served pipeline computes the
same features, bit for bit, as the offline ``Ensemble.recommend`` that wrote
the submission.

A user known only by a history (serving, no training row) is given that
history as its row and its latest items as its recent items; it has no
cluster (``-1``) and counts as active at the data's last event — the
offline path treats users without training events the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ToprecError

#: the names ``candidate_features`` gives the cluster columns
CLUSTER, CLUSTER_SHARE = "cluster", "cluster_share"
#: the ``years`` side file is a number per item, not a multi-hot matrix
YEARS = "years"


def _year_per_item(feat) -> np.ndarray:
    F = feat.matrix.tocsr().astype(np.float64)
    year = pd.to_numeric(pd.Series(feat.values), errors="coerce").to_numpy(dtype=np.float64)
    has = np.asarray(F.sum(1)).ravel()
    iy = np.asarray(F @ np.nan_to_num(year)).ravel() / np.maximum(has, 1)
    iy[has == 0] = np.nan
    return iy


class RerankTables:
    """One stage's matrix, side files, clusters and recency tables (see the module docstring)."""

    def __init__(self, X: sp.csr_matrix, side: list[tuple[str, object]], cluster_labels: np.ndarray | None = None,
                 cluster_share: np.ndarray | None = None, recency=None):  # fmt: skip
        self.X = sp.csr_matrix(X)
        self.log_popularity = np.log1p(np.asarray(self.X.sum(0)).ravel())
        #: (name, per-item years array) for ``years``, (name, items x values CSR float64) for the others
        self.side = side
        self.cluster_labels = cluster_labels
        self.cluster_share = cluster_share
        self.recency = recency

    @classmethod
    def build(cls, data, train, clusters=None, cluster_share: np.ndarray | None = None, recency=None) -> "RerankTables":
        """``train``: the stage's training data; ``data``: the dataset (its item side files)."""
        X = train.matrix.tocsr()
        side: list[tuple[str, object]] = []
        for fname, feat in sorted(data.features.items()):
            if fname == "titles":
                continue
            side.append((fname, _year_per_item(feat) if fname == YEARS else feat.matrix.tocsr().astype(np.float64)))
        labels = share = None
        if clusters is not None:
            from ..features.clusters import cluster_item_share

            labels = clusters.lookup(np.arange(max(X.shape[0], clusters.n_users)))
            share = cluster_item_share(clusters, X) if cluster_share is None else cluster_share
        return cls(X, side, labels, share, recency)

    @property
    def n_users(self) -> int:
        return self.X.shape[0]

    @property
    def n_items(self) -> int:
        return self.X.shape[1]

    def user_rows(self, users: np.ndarray, history: sp.csr_matrix | None = None) -> sp.csr_matrix:
        """The users' rows of the stage matrix; rows of unknown users (-1, new) from ``history`` (or empty)."""
        known = (users >= 0) & (users < self.n_users)
        Xu = self.X[np.where(known, users, 0)]
        if not known.all():
            Xu = sp.csr_matrix(sp.diags(known.astype(np.float64)) @ Xu)
            if history is not None:
                Xu = sp.csr_matrix(Xu + sp.diags((~known).astype(np.float64)) @ sp.csr_matrix(history))
        return Xu

    def clusters_of(self, users: np.ndarray) -> np.ndarray:
        lab = self.cluster_labels
        known = (users >= 0) & (users < len(lab))
        return np.where(known, lab[np.where(known, users, 0)], -1)

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | os.PathLike) -> None:
        """``folder/tables.npz`` (arrays) + ``folder/tables.json`` (names, what is there)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}

        def put_csr(key: str, M: sp.csr_matrix) -> None:
            M = sp.csr_matrix(M)
            arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"] = M.data, M.indices, M.indptr
            arrays[f"{key}.shape"] = np.asarray(M.shape, dtype=np.int64)

        put_csr("X", self.X)
        side = []
        for j, (name, value) in enumerate(self.side):
            if name == YEARS:
                arrays[f"side{j}"] = np.asarray(value)
            else:
                put_csr(f"side{j}", value)
            side.append(name)
        if self.cluster_labels is not None:
            arrays["cluster_labels"], arrays["cluster_share"] = self.cluster_labels, self.cluster_share
        meta = {"side": side, "clusters": self.cluster_labels is not None, "recency": None}
        if self.recency is not None:
            rec_arrays, meta["recency"] = self.recency.state()
            for key, value in rec_arrays.items():
                if sp.issparse(value):
                    put_csr(f"recency.{key}", value)
                else:
                    arrays[f"recency.{key}"] = value
        np.savez(folder / "tables.npz", **arrays)
        (folder / "tables.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "RerankTables":
        from .recency import Recency

        folder = Path(folder)
        try:
            meta = json.loads((folder / "tables.json").read_text())
            with np.load(folder / "tables.npz", allow_pickle=False) as z:
                arrays = {key: z[key] for key in z.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ToprecError(f"{folder}: cannot read the re-ranker's tables ({exc})") from None

        def csr(key: str) -> sp.csr_matrix:
            shape = tuple(int(s) for s in arrays[f"{key}.shape"])
            return sp.csr_matrix((arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"]),
                                 shape=shape)  # fmt: skip

        try:
            side = [(name, arrays[f"side{j}"] if name == YEARS else csr(f"side{j}")) for j, name in enumerate(meta["side"])]
            labels = arrays["cluster_labels"] if meta["clusters"] else None
            share = arrays["cluster_share"] if meta["clusters"] else None
            recency = None
            if meta.get("recency") is not None:
                rec = {key[len("recency."):].rsplit(".", 1)[0] for key in arrays if key.startswith("recency.")}
                rec_arrays = {key: csr(f"recency.{key}") if f"recency.{key}.shape" in arrays else arrays[f"recency.{key}"]
                              for key in rec}  # fmt: skip
                recency = Recency.from_state(rec_arrays, meta["recency"])
            return cls(csr("X"), side, labels, share, recency)
        except KeyError as exc:
            raise ToprecError(f"{folder}: the re-ranker's tables lack {exc}") from None
