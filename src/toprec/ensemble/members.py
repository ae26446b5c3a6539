"""Ensemble members: where each member's top-N candidate lists come from.

A member spec (one item of ``--members a,b,c``) is, in this order of lookup:

* a folder holding ``model.json`` — a model saved by ``toprec submit
  --save-model`` / :meth:`Recommender.save`. It is used as is wherever its
  training matrix is exactly the training data of a stage (e.g. a model saved
  after fitting on the full data serves the final fusion); elsewhere a fresh
  model with the same parameters is fitted.
* a CSV file ``user,item[,score]`` — a submission or score file with at
  least k rows per user, best first (rank = order within the user; scores
  optional, used by ``score``/``product`` fusion, else a linear pseudo-score
  from the rank). A file cannot be refitted: the same lists serve every
  stage, so for an honest search the file must come from a model fitted on
  the *search* training data (``toprec.ensemble.folds.make_folds(...)
  .search_train``); a file from a model fitted on all the data has, by
  construction, no held-out item in its lists (they are seen items) and
  scores 0 on validation. Give ``VALID.csv:FINAL.csv`` to use one file for
  the validation folds and another (fitted on all the data) for the final
  fusion; or skip validation and fuse files with given weights only.
  In every stage, items the user has in that stage's training data are
  removed from a file's lists (the rest move up).
* a registered model name with optional parameters:
  ``ease`` or ``ease:l2=300`` or ``itemknn:k=100:shrink=5``.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np

from .. import progress
from ..errors import ToprecError
from ..recommend import Recommendations
from .fusion import compact


def _same_matrix(a, b) -> bool:
    return a is b or (
        a.shape == b.shape
        and a.nnz == b.nnz
        and np.array_equal(np.asarray(a.indptr), np.asarray(b.indptr))
        and np.array_equal(np.asarray(a.indices), np.asarray(b.indices))
    )


class Member(abc.ABC):
    """A source of top-N lists for given users of a stage's training data."""

    label: str = ""
    refittable: bool = True

    def bind(self, data, k: int, n: int) -> None:
        """Attach the full dataset (file members map their ids onto it); a no-op for models."""

    @abc.abstractmethod
    def lists(self, train, users: np.ndarray, n: int, stage: str = "search") -> Recommendations:
        """Top-``n`` lists (best first) for ``users`` of the stage's ``train`` data."""

    def release(self) -> None:
        """Forget fitted state (memory) between stages."""

    def describe(self) -> dict[str, Any]:
        return {"label": self.label}


class ModelMember(Member):
    """A registered model, fitted on each stage's training data (``template``: a Recommender to clone)."""

    def __init__(self, label: str, name: str, params: dict[str, Any] | None = None, template: Any = None):
        self.label = label
        self.name = name
        self.params = dict(params or {})
        self.template = template
        self._fitted: dict[int, Any] = {}

    def new_model(self):
        from .. import models

        if self.template is not None:
            return type(self.template)(**self.template.params.model_dump())
        return models.get(self.name, **self.params)

    def model_for(self, train):
        key = id(train)
        if key not in self._fitted:
            model = self.new_model()
            with progress.task(f"{self.label}: fit on {train.n_events:,} events"):
                model.fit(train)
            self._fitted = {key: (model, train)}  # keep one fitted model (memory), and train alive
        return self._fitted[key][0]

    def lists(self, train, users, n, stage="search"):
        return self.model_for(train).recommend(np.asarray(users, dtype=np.int64), k=n)

    def release(self) -> None:
        self._fitted = {}

    def describe(self):
        model = self.new_model()
        params = model.params.model_dump(mode="json")
        return {"label": self.label, "kind": "model", "model": model.name, "params": params}


class ListedMember(ModelMember):
    """A model whose search-stage lists were computed already (e.g. by the tuning trial that chose it).

    ``lists`` maps the search training matrix's users to their top-N lists
    (one :class:`Recommendations` covering every user asked for later). They
    serve any request on a training matrix equal to ``train_matrix`` for users
    among them; every other stage (the final fit on all the data) fits the
    model like a :class:`ModelMember`, so a tuned member is never fitted twice
    on the same data.
    """

    def __init__(self, label: str, name: str, params: dict[str, Any], lists: Recommendations, train_matrix):
        super().__init__(label=label, name=name, params=params)
        self.stored, self.stored_matrix = lists, train_matrix
        self._order = np.argsort(np.asarray(lists.users, dtype=np.int64), kind="stable")
        self._sorted = np.asarray(lists.users, dtype=np.int64)[self._order]

    def lists(self, train, users, n, stage="search"):
        from ..keys import find_sorted

        users = np.asarray(users, dtype=np.int64)
        at, found = find_sorted(self._sorted, users)
        if stage == "search" and found.all() and n <= self.stored.k and _same_matrix(train.matrix, self.stored_matrix):
            rows = self._order[at]
            return Recommendations(users, self.stored.items[rows, :n], self.stored.scores[rows, :n])
        return super().lists(train, users, n, stage)


class SavedMember(ModelMember):
    """A saved model folder: reused where its training matrix matches, refitted elsewhere."""

    def __init__(self, label: str, path: Path):
        from ..models import Recommender

        self.path = Path(path)
        self.saved = Recommender.load(self.path)
        super().__init__(label=label, name=self.saved.name, params=self.saved.params.model_dump(), template=self.saved)

    def model_for(self, train):
        if _same_matrix(self.saved.train_matrix, train.matrix):
            return self.saved
        return super().model_for(train)

    def describe(self):
        d = super().describe()
        d.update(kind="saved", path=str(self.path))
        return d


class FileMember(Member):
    """Fixed lists read from ``user,item[,score]`` CSV files (one for search, one for the final fusion)."""

    refittable = False

    def __init__(self, label: str, search_path: Path, final_path: Path | None = None):
        self.label = label
        self.search_path = Path(search_path)
        self.final_path = Path(final_path) if final_path is not None else self.search_path
        self.search = self.final = None
        self._bound = None

    def bind(self, data, k, n):
        if self._bound is not None and self._bound[:2] == (id(data), n) and k <= self._bound[2]:
            return
        self.search = read_member_file(self.search_path, data, k, n)
        same = self.final_path == self.search_path
        self.final = self.search if same else read_member_file(self.final_path, data, k, n)
        self._bound = (id(data), n, k, data)  # keep data alive so its id stays unique

    def lists(self, train, users, n, stage="search"):
        if self.search is None:
            raise ToprecError(f"member '{self.label}': file member used before bind(data)")
        users = np.asarray(users, dtype=np.int64)
        row_of, items, scores = self.final if stage == "final" else self.search
        known = (users >= 0) & (users < len(row_of))
        pos = np.where(known, row_of[np.where(known, users, 0)], -1)
        have = pos >= 0
        out_items = np.full((len(users), n), -1, dtype=np.int32)
        out_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
        w = min(n, items.shape[1])
        out_items[have, :w] = items[pos[have], :w]
        if scores is not None:
            out_scores[have, :w] = scores[pos[have], :w]
        from ..metrics import hit_matrix

        seen = hit_matrix(out_items, train.matrix[np.where(known, users, 0)]) & known[:, None]
        out_items, s = compact(out_items, out_scores if scores is not None else None, seen)
        if s is None:  # ranks only: mark valid entries with finite dummy scores
            s = np.where(out_items >= 0, -np.arange(1, n + 1, dtype=np.float32)[None, :], -np.inf).astype(np.float32)
        return Recommendations(users, out_items.astype(np.int32), s)

    def describe(self):
        return {
            "label": self.label,
            "kind": "file",
            "search_file": str(self.search_path),
            "final_file": str(self.final_path),
            "has_scores": None if self.search is None else self.search[2] is not None,
        }


def read_member_file(path: Path, data, k: int, n: int):
    """Parse a ``user,item[,score]`` CSV into per-user ranked arrays over ``data``'s ids.

    Returns ``(row_of, items, scores)``: ``row_of`` (n_users,) the row of each
    internal user (-1 if absent), ``items`` (rows, n) int32 best first (-1
    padding), ``scores`` (rows, n) float32 or None. Raises a one-line
    :class:`ToprecError` for anything malformed.
    """
    import pandas as pd

    from ..data.dataset import lookup

    path = Path(path)
    where = f"member file {path}"
    if not path.is_file():
        raise ToprecError(f"{where}: not a file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ToprecError(f"{where}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ToprecError(f"{where}: not a CSV file ({str(exc).splitlines()[0]})") from None
    cols = [c.strip().lower() for c in frame.columns]
    frame.columns = cols
    for need in ("user", "item"):
        if need not in cols:
            found = ", ".join(cols) or "none"
            raise ToprecError(f"{where}: missing column '{need}' (found: {found}); expected user,item[,score]")
    if len(frame) == 0:
        raise ToprecError(f"{where}: no rows")
    u_raw = frame["user"].to_numpy()
    i_raw = frame["item"].to_numpy()
    users = lookup(data.user_ids, _typed(u_raw, data.user_ids))
    items = lookup(data.item_ids, _typed(i_raw, data.item_ids))
    bad = np.flatnonzero(users < 0)
    if len(bad):
        raise ToprecError(f"{where}, row {bad[0] + 2}: user '{u_raw[bad[0]]}' is not in the dataset")
    bad = np.flatnonzero(items < 0)
    if len(bad):
        raise ToprecError(f"{where}, row {bad[0] + 2}: item '{i_raw[bad[0]]}' is not in the dataset")
    scores = None
    if "score" in cols:
        scores = pd.to_numeric(frame["score"], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(scores))
        if len(bad):
            value = frame["score"].iloc[bad[0]]
            raise ToprecError(f"{where}, row {bad[0] + 2}: score '{value}' is not a finite number")
    key = users * data.n_items + items
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(np.diff(key[order]) == 0)
    if len(dup):
        row = int(max(order[dup[0]], order[dup[0] + 1]))
        raise ToprecError(f"{where}, row {row + 2}: user '{u_raw[row]}' lists item '{i_raw[row]}' twice")
    # rank within user = order of appearance
    order = np.argsort(users, kind="stable")
    su = users[order]
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    counts = np.diff(np.r_[starts, len(su)])
    short = np.flatnonzero(counts < k)
    if len(short):
        u = su[starts[short[0]]]
        raise ToprecError(
            f"{where}: user '{data.user_ids[u]}' has {counts[short[0]]} rows; every user needs at least k={k}"
        )
    rank = np.arange(len(su)) - np.repeat(starts, counts)
    width = int(min(n, counts.max()))
    keep = rank < width
    row_users = su[starts]
    row_of = np.full(data.n_users, -1, dtype=np.int64)
    row_of[row_users] = np.arange(len(row_users))
    out_items = np.full((len(row_users), width), -1, dtype=np.int32)
    r = row_of[su[keep]]
    out_items[r, rank[keep]] = items[order][keep]
    out_scores = None
    if scores is not None:
        out_scores = np.full((len(row_users), width), -np.inf, dtype=np.float32)
        out_scores[r, rank[keep]] = scores[order][keep]
    missing = data.n_users - len(row_users)
    if missing:
        progress.log(f"{where}: {missing:,} of {data.n_users:,} users have no rows (that member gives them nothing)")
    return row_of, out_items, out_scores


def _typed(raw: np.ndarray, index_ids: np.ndarray) -> np.ndarray:
    """File ids (strings) in the dataset's id dtype when every one is an integer as written (``001`` is not the
    id 1: it stays text, and ``lookup`` compares strings, so it is an unknown id)."""
    from ..data.loaders import written_ints

    if index_ids.dtype.kind in "iu":
        import pandas as pd

        trimmed = pd.Series(raw, dtype=object).astype(str).str.strip().to_numpy(dtype=object)  # " 1000" is 1000
        if written_ints(trimmed):
            return trimmed.astype(np.int64)
    return raw


def parse_members(spec: str | list) -> list[Member]:
    """Members from ``"ease,ease:l2=100,runs/rp3,lists.csv"`` (or a list of specs / Recommender objects).

    Model names and parameters are checked here (one-line errors before any
    work); file members are read when bound to the dataset (``Member.bind``).
    """
    from .. import models

    tokens: list = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else list(spec)
    tokens = [t for t in tokens if not (isinstance(t, str) and not t)]
    if not tokens:
        raise ToprecError("--members: no member named")
    out: list[Member] = []
    for tok in tokens:
        if isinstance(tok, Member):
            out.append(tok)
            continue
        if isinstance(tok, models.Recommender):
            out.append(ModelMember(label=tok.name, name=tok.name, template=tok))
            continue
        p = Path(tok)
        if p.is_dir():
            if not (p / "model.json").exists():
                raise ToprecError(f"member '{tok}': folder without model.json (not a saved model)")
            out.append(SavedMember(tok, p))
            continue
        search_path, final_path = None, None
        if p.is_file():
            search_path = p
        elif ":" in tok:
            a, b = tok.split(":", 1)
            if Path(a).is_file() and Path(b).is_file():
                search_path, final_path = Path(a), Path(b)
        if search_path is not None:
            out.append(FileMember(tok, search_path, final_path))
            continue
        name, *pairs = tok.split(":")
        looks_like_path = "/" in name or name.endswith((".csv", ".gz"))
        if looks_like_path:
            raise ToprecError(f"member '{tok}': no such file or folder")
        try:
            cls = models.get_class(name)
        except ToprecError as exc:
            raise ToprecError(f"member '{tok}': {exc} — nor a saved model folder or a member file") from None
        params = models.parse_params(cls.name, [p for p in pairs if p.strip()])
        cls(**params)  # validate the parameters now
        out.append(ModelMember(label=tok, name=cls.name, params=params))
    labels = [m.label for m in out]
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise ToprecError(f"--members: member '{dup}' is named twice")
    return out
