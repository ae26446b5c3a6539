"""Serving: what a saved model folder (or saved ensemble pipeline) answers, one request or a small batch at a time.

The HTTP server (:mod:`toprec.serve`) only parses, authenticates and
counts; every decision is here, so a Python user gets what the server gives:

* :func:`save_model` / :func:`save_pipeline`: a model folder as
  ``toprec submit --save-model`` writes it (``model.json`` with when and on
  what data it was trained, ``arrays.safetensors``, ``ids.json`` with the
  external user and item ids), or an ensemble pipeline (``pipeline.json``:
  fusion method, weights, candidates; ``members/<i>/``: each member's model
  folder; ``ids.json``) as ``toprec ensemble --save-model`` writes it.
* :class:`Servable` (:func:`load`): the folder loaded with its arrays memory
  mapped (every worker serving it shares one copy in the page cache).
  A re-ranked pipeline (``method="rerank"``) also holds ``rerank/``: the
  booster trained on fold A (LightGBM text / CatBoost JSON) and the final
  stage's feature tables (:mod:`toprec.ensemble.rerank_tables`), so known
  users get the submission's lists and scores exactly; a history is folded
  in as that user's row and latest items (active now, no cluster).
  Known users are ranked from their training events, exactly as
  ``recommend()`` ranks them offline; unknown users get the cold-start list
  (popularity) flagged ``cold_start``; a user known only by a history (a list
  of item ids, oldest first) is folded in as the model declares
  (``Recommender.fold_in``); unknown item ids are ignored and listed. Scores
  come from ``Recommender.score`` and are ranked by the shared
  :func:`toprec.recommend.topk_rows` (ensembles: the members' candidate lists
  fused by :func:`toprec.ensemble.fusion.fuse`), vectorised over the batch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from .. import progress
from ..errors import ToprecError
from ..io import atomic_dir
from ..recommend import Recommendations, seen_and_cold, topk_rows
from ..version import __version__

IDS_FILE = "ids.json"
PIPELINE_FILE = "pipeline.json"
MODEL_FILE = "model.json"
RERANK_DIR = "rerank"


# ------------------------------------------------------------------ saving
def data_info(ds) -> dict[str, Any]:
    """Size and a fingerprint (xxh3 of the events and ids) of the training data."""
    import xxhash

    h = xxhash.xxh3_128()
    for a in (ds.user, ds.item):
        h.update(np.ascontiguousarray(a).tobytes())
    for ids in (ds.user_ids, ds.item_ids):
        h.update("\x1f".join(map(str, ids)).encode())
    return {"users": int(ds.n_users), "items": int(ds.n_items), "events": int(ds.n_events),
            "fingerprint": h.hexdigest()}  # fmt: skip


def _ids_json(ds) -> bytes:
    def kind(a) -> str:
        return "int" if np.issubdtype(np.asarray(a).dtype, np.integer) else "str"

    return json.dumps({"user_type": kind(ds.user_ids), "item_type": kind(ds.item_ids),
                       "users": [str(u) for u in ds.user_ids], "items": [str(i) for i in ds.item_ids]},
                      separators=(",", ":")).encode()  # fmt: skip


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def save_model(rec, ds, path: str | os.PathLike) -> Path:
    """``rec`` (fitted on ``ds``) as a servable folder: the model, when/what it was trained on, the ids."""
    return rec.save(path, info={"trained_at": _now(), "data": data_info(ds)}, files={IDS_FILE: _ids_json(ds)})


def check_pipeline(ens) -> None:
    """A one-line error, before any work, when an ensemble cannot be saved for serving."""
    from ..ensemble.members import ModelMember

    for m, w in zip(ens.members, ens.weights):
        if w > 0 and not isinstance(m, ModelMember):
            raise ToprecError(f"--save-model: member '{m.label}' is a file of lists, not a model: it cannot be served")


def save_pipeline(ens, ds, path: str | os.PathLike) -> Path:
    """The fused pipeline (members with weight > 0, fitted on ``ds``; method; weights) as a servable folder."""
    check_pipeline(ens)
    keep = [i for i, w in enumerate(ens.weights) if w > 0]
    rerank = ens.reranks  # a rerank fallen back to one member: that member's list
    if rerank and ens.reranker is None:
        raise ToprecError("--save-model: the 'rerank' ensemble has no trained re-ranker (validate it first)")
    method = "rank" if ens.method == "auto" or (ens.method == "rerank" and not rerank) else ens.method
    members = []
    path = Path(path)
    with atomic_dir(path) as tmp:
        for j, i in enumerate(keep):
            m = ens.members[i]
            m.model_for(ds).save(tmp / "members" / str(j))
            members.append({"label": m.label, "path": f"members/{j}", "weight": float(ens.weights[i])})
        (tmp / IDS_FILE).write_bytes(_ids_json(ds))
        meta = {"toprec_version": __version__, "kind": "ensemble", "method": method,
                "candidates": int(ens.candidates), "members": members, "trained_at": _now(),
                "data": data_info(ds)}  # fmt: skip
        if rerank:  # the ranker trained on fold A and the final stage's tables (what Ensemble.recommend used)
            ens.reranker.save(tmp / RERANK_DIR, ens.reranker.tables(ds, ds))
            meta["rerank"] = RERANK_DIR
        (tmp / PIPELINE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path


# ------------------------------------------------------------------ serving
class NotFound(ToprecError):
    """An unknown user (when unknown users are refused) or item."""


@dataclass
class Answer:
    """One user's list (external ids, best first) and what the server says about it."""

    items: list
    scores: list[float]
    cold_start: bool = False
    unknown_items: list = field(default_factory=list)
    user: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"items": self.items, "scores": self.scores, "cold_start": self.cold_start}
        if self.user is not None:
            out["user"] = self.user
        else:
            out["unknown_items"] = self.unknown_items
        return out


@dataclass
class Query:
    """One request of a batch: a known ``user`` id, or a ``history`` of item ids (oldest first)."""

    user: str | None = None
    history: Sequence | None = None
    exclude: Sequence = ()


class Servable:
    """A saved model folder or ensemble pipeline, ready to answer (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, mmap: bool = True, unknown_users: str = "cold-start"):
        from ..models import Recommender

        path = Path(path)
        if unknown_users not in ("cold-start", "404"):
            raise ToprecError(f"unknown_users must be 'cold-start' or '404', not {unknown_users!r}")
        self.path, self.unknown_users = path, unknown_users
        self.reranker = self.tables = None
        if (path / PIPELINE_FILE).exists():
            meta = _read_json(path / PIPELINE_FILE)
            self.kind = "ensemble"
            self.models = [Recommender.load(path / m["path"], mmap=mmap) for m in meta["members"]]
            self.weights = np.asarray([m["weight"] for m in meta["members"]], dtype=np.float64)
            self.method, self.candidates = meta["method"], int(meta["candidates"])
            self.meta = meta
            if meta.get("rerank"):
                from ..ensemble.rerank import Reranker

                self.reranker, self.tables = Reranker.load(path / meta["rerank"])
        elif (path / MODEL_FILE).exists():
            self.kind = "model"
            self.models = [Recommender.load(path, mmap=mmap)]
            self.weights = np.ones(1)
            self.method, self.candidates = None, None
            self.meta = _read_json(path / MODEL_FILE)
        else:
            raise ToprecError(f"{path}: not a saved model or pipeline (no {MODEL_FILE} or {PIPELINE_FILE})")
        first = self.models[0]
        self.n_users, self.n_items = first.n_users, first.n_items
        ids = read_ids(path, self.n_users, self.n_items)
        for m in self.models[1:]:
            if (m.n_users, m.n_items) != (self.n_users, self.n_items):
                raise ToprecError(f"{path}: the members were trained on different data")
        self.user_index = {u: i for i, u in enumerate(ids["users"])}
        self.item_index = {it: i for i, it in enumerate(ids["items"])}
        as_int = ids.get("item_type") == "int"
        self.item_ids = np.array([int(i) for i in ids["items"]] if as_int else ids["items"], dtype=object)
        self.train = first.train_matrix
        self._user_events = np.diff(self.train.indptr)
        self._ones = None
        self.answer_for_history([], k=1)  # warm the models' lazy caches before the first request
        self.answer_for_user(ids["users"][0] if ids["users"] else "", k=1)

    # ----------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        if self.kind == "model":
            m = self.models[0]
            return {"kind": "model", "name": m.name, "params": m.params.model_dump(mode="json"),
                    "fold_in": m.fold_in, "trained_at": self.meta.get("trained_at"), "data": self.meta.get("data"),
                    "users": self.n_users, "items": self.n_items, "model_version": self.meta.get("toprec_version"),
                    "toprec_version": __version__, "path": str(self.path)}  # fmt: skip
        out = self._ensemble_info()
        if self.reranker is not None:
            r = self.reranker
            out["rerank"] = {"ranker": r.ranker, "trees": r.trees, "features": r.feature_names}
        return out

    def _ensemble_info(self) -> dict[str, Any]:
        return {"kind": "ensemble", "name": "ensemble", "method": self.method, "candidates": self.candidates,
                "members": [{"label": e["label"], "name": m.name, "params": m.params.model_dump(mode="json"),
                             "weight": e["weight"], "fold_in": m.fold_in}
                            for e, m in zip(self.meta["members"], self.models)],
                "trained_at": self.meta.get("trained_at"), "data": self.meta.get("data"), "users": self.n_users,
                "items": self.n_items, "model_version": self.meta.get("toprec_version"),
                "toprec_version": __version__, "path": str(self.path)}  # fmt: skip

    # ----------------------------------------------------------- ids
    def _items(self, ids: Sequence) -> tuple[np.ndarray, list]:
        """Internal indices of the known ids (order kept) and the unknown ids."""
        index = self.item_index
        found, unknown = [], []
        for x in ids:
            i = index.get(str(x))
            if i is None:
                unknown.append(x)
            else:
                found.append(i)
        return np.asarray(found, dtype=np.int64), unknown

    # ----------------------------------------------------------- ranking
    def rank(self, users: np.ndarray, histories: list | None, exclude: sp.csr_matrix | None, k: int) -> Recommendations:
        """Top-k for internal ``users``; see :meth:`_rank` (no progress lines: a request takes milliseconds)."""
        with progress.silenced():
            return self._rank(users, histories, exclude, k)

    def _rank(self, users: np.ndarray, histories: list | None, exclude: sp.csr_matrix | None, k: int) -> Recommendations:
        """Top-k for internal ``users`` (-1 = known only by its history), vectorised over the rows.

        ``histories``: per row, internal item indices oldest first (used for rows whose user is -1);
        ``exclude``: extra items to leave out, beside the history. The same lists as
        ``recommend()`` offline (``Ensemble.recommend`` for a pipeline).
        """
        users = np.asarray(users, dtype=np.int64)
        known = users >= 0
        first = self.models[0]
        n = len(users)
        new = np.flatnonzero(~known)
        new_rows = first.histories([histories[r] if histories is not None else () for r in new]) if len(new) else None
        rows_known = self.train[users[known]] if known.any() else None
        hist = _stack_rows(n, known, rows_known, new_rows, self.n_items)
        if self.kind == "model" and first.fold_in != "sequence" and known.all():
            seen = hist  # training rows: every stored value is 1
        else:
            seen = hist.copy()
            seen.data[:] = 1.0
        excl = seen if exclude is None or exclude.nnz == 0 else sp.csr_matrix(((seen + exclude) > 0), dtype=np.float32)
        if self.kind == "model":
            # per model, the history matrix it expects: its own (ordered for sequence models) rows for new users
            scores = first.score(users, hist)
            seen_and_cold(scores, exclude=excl)
            items, top = topk_rows(scores, k)
            return Recommendations(users, items, top)
        from ..ensemble.fusion import fuse

        C = self.candidates
        lists = []
        for m in self.models:
            h = hist if m.fold_in == first.fold_in or not len(new) else _stack_rows(
                n, known, rows_known, m.histories([histories[r] for r in new]), self.n_items)
            lists.append(m.recommend(users, k=C, history=h))
        if self.reranker is not None:
            return self.reranker.recommend_tables(self.tables, users, lists, k, exclude=excl, history=seen,
                                                  recent=_recent(n, new, histories))  # fmt: skip
        return fuse(lists, self.weights, self.method, k, users=users, exclude=excl)

    def _answers(self, recs: Recommendations) -> list[Answer]:
        out = []
        items, scores = recs.items, recs.scores
        valid = items >= 0
        ext = self.item_ids
        for r in range(len(items)):
            v = valid[r]
            out.append(Answer(items=ext[items[r][v]].tolist(), scores=scores[r][v].astype(float).tolist()))
        return out

    def _exclude(self, excludes: Sequence[Sequence]) -> sp.csr_matrix | None:
        if not any(len(e) for e in excludes):
            return None
        rows, cols = [], []
        for r, e in enumerate(excludes):
            idx, _ = self._items(e)
            rows.append(np.full(len(idx), r, dtype=np.int64))
            cols.append(idx)
        rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
        return sp.csr_matrix((np.ones(len(rows_a), dtype=np.float32), (rows_a, cols_a)),
                             shape=(len(excludes), self.n_items))  # fmt: skip

    # ----------------------------------------------------------- answers
    def answer(self, queries: Sequence[Query], k: int) -> list[Answer]:
        """Lists for a batch of queries (known users and histories mixed), one vectorised ranking."""
        users = np.full(len(queries), -1, dtype=np.int64)
        histories: list = [()] * len(queries)
        unknown: list[list] = [[] for _ in queries]
        cold = np.zeros(len(queries), dtype=bool)
        for r, q in enumerate(queries):
            if q.user is not None:
                u = self.user_index.get(str(q.user))
                if u is None:
                    if self.unknown_users == "404":
                        raise NotFound(f"unknown user '{q.user}'")
                    cold[r] = True
                else:
                    users[r] = u
            else:
                histories[r], unknown[r] = self._items(q.history or ())
        known_rows = users >= 0
        cold |= ~known_rows & np.array([len(h) == 0 for h in histories], dtype=bool)
        cold |= known_rows & (self._user_events[np.maximum(users, 0)] == 0)
        recs = self.rank(users, histories, self._exclude([q.exclude for q in queries]), k)
        answers = self._answers(recs)
        for r, (a, q) in enumerate(zip(answers, queries)):
            a.cold_start = bool(cold[r])
            if q.user is not None:
                a.user = str(q.user)
            else:
                a.unknown_items = unknown[r]
        return answers

    def answer_for_user(self, user: str, k: int = 10, exclude: Sequence = ()) -> Answer:
        return self.answer([Query(user=user, exclude=exclude)], k)[0]

    def answer_for_history(self, history: Sequence, k: int = 10, exclude: Sequence = ()) -> Answer:
        return self.answer([Query(history=history, exclude=exclude)], k)[0]

    def similar_items(self, item: str, k: int = 10) -> Answer:
        """Items most recommended to someone who has only ``item`` (item-item models: its similarity row)."""
        idx, _ = self._items([item])
        if not len(idx):
            raise NotFound(f"unknown item '{item}'")
        return self.answer([Query(history=[item])], k)[0]


def _recent(n: int, new: np.ndarray, histories: list | None) -> np.ndarray | None:
    """(n, RECENT) the latest items of the history rows ``new``, most recent first, -1 padded (the re-ranker's)."""
    from ..ensemble.recency import RECENT

    if not len(new) or histories is None:
        return None
    out = np.full((n, RECENT), -1, dtype=np.int64)
    for r in new:  # one short list per request row
        latest = np.asarray(histories[r], dtype=np.int64)[::-1][:RECENT]
        out[r, : len(latest)] = latest
    return out


def _stack_rows(n: int, known: np.ndarray, rows_known: sp.csr_matrix, rows_new: sp.csr_matrix, n_items: int):
    """A (n, n_items) CSR with ``rows_known`` at the known rows and ``rows_new`` at the others (order kept)."""
    if known.all():
        return sp.csr_matrix(rows_known, dtype=np.float32)
    if not known.any():
        return sp.csr_matrix(rows_new, dtype=np.float32)
    order = np.concatenate([np.flatnonzero(known), np.flatnonzero(~known)])
    stacked = sp.vstack([sp.csr_matrix(rows_known, dtype=np.float32), sp.csr_matrix(rows_new, dtype=np.float32)],
                        format="csr")  # fmt: skip
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    return stacked[inv]


def read_ids(folder: Path, n_users: int, n_items: int) -> dict[str, Any]:
    """``folder/ids.json`` (external ids of the internal users and items), checked against the model's shape."""
    ids_file = Path(folder) / IDS_FILE
    if not ids_file.exists():
        raise ToprecError(f"{folder}: no {IDS_FILE} (save it with `toprec submit --save-model`, which writes the ids)")
    ids = _read_json(ids_file)
    if not isinstance(ids.get("users"), list) or not isinstance(ids.get("items"), list):
        raise ToprecError(f"{ids_file}: malformed (lists 'users' and 'items' expected)")
    if len(ids["users"]) != n_users or len(ids["items"]) != n_items:
        raise ToprecError(f"{ids_file}: {len(ids['users']):,} users x {len(ids['items']):,} items, the model has "
                          f"{n_users:,} x {n_items:,}")  # fmt: skip
    return ids


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ToprecError(f"{path}: cannot read ({exc})") from None


def load(path: str | os.PathLike, mmap: bool = True, unknown_users: str = "cold-start") -> Servable:
    """A saved model folder or ensemble pipeline, ready to answer."""
    return Servable(path, mmap=mmap, unknown_users=unknown_users)
