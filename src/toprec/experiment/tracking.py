"""A thin MLflow wrapper: one run per command, child runs for models and trials.

mlflow is imported only when a run actually starts (``--no-track`` and
``import toprec`` never pay for it). The store is, in order: ``--tracking-uri``,
``$MLFLOW_TRACKING_URI``, else a local SQLite file ``mlruns/mlflow.db`` with
artifacts in ``mlruns/artifacts`` (no server needed) in toprec's home folder
(``$TOPREC_HOME``, else ``~/.local/share/toprec``: :mod:`toprec.paths`), or in
``./mlruns`` when a store is already there. ``--no-track`` or
``TOPREC_NO_TRACK=1`` switches tracking off.

Every run gets the toprec version, the git commit of the toprec sources
(when they are a checkout), the data fingerprint (a hash of the dataset's
source files' contents) and the command as tags; parameters are the run's
config flattened (``split.seed``, ``model.l2``...); metric names have ``@``
written as ``_at_`` (MLflow allows no ``@``): ``recall_at_10``.

A failure to reach the store when a run starts is a one-line error; a
failure while logging is retried, then reported once as a warning and
logging stops (a finished fit is not thrown away for a lost metric).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import ToprecError

DEFAULT_DIR = "mlruns"
DEFAULT_EXPERIMENT = "toprec"
_BAD = re.compile(r"[^/\w.\- :]")


def tracking_disabled_by_env() -> bool:
    return os.environ.get("TOPREC_NO_TRACK", "").strip().lower() not in ("", "0", "false", "no")


def default_uri(root: str | os.PathLike | None = None) -> str:
    from ..paths import tracking_dir

    base = Path(root or tracking_dir()).resolve()
    return f"sqlite:///{base / 'mlflow.db'}"


def resolve_uri(uri: str | None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def metric_name(name: str) -> str:
    """``recall@10`` -> ``recall_at_10`` (characters MLflow rejects become ``_``)."""
    return _BAD.sub("_", name.replace("@", "_at_"))


#: names of a trainer's per-epoch logs (``model.history``) in the store: the epoch's validation metrics get a
#: ``val_`` prefix, so an epoch curve never lands under the name of the test metric the command reports
EPOCH_NAMES = {"seconds": "epoch_s"}


def epoch_metrics(logs: dict[str, Any]) -> dict[str, Any]:
    """One epoch's logs under their tracking names: ``recall@10`` -> ``val_recall@10``, ``seconds`` -> ``epoch_s``."""
    out = {}
    for k, v in logs.items():
        if k == "epoch":
            continue
        out[EPOCH_NAMES.get(k, f"val_{k}" if "@" in k else k)] = v
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out


def git_commit() -> tuple[str, bool | None]:
    """(commit, dirty) of the toprec sources when they are a git checkout, else ("unknown", None)."""
    src = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "--", "."],
                                capture_output=True, text=True, timeout=10).stdout  # fmt: skip
        return sha, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def data_fingerprint(path: str | os.PathLike) -> str:
    """BLAKE2 of the dataset's source files (names and contents; not mtimes): same data, same fingerprint."""
    from ..data.cache import SOURCE_NAMES

    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and (p.name in SOURCE_NAMES or p.suffix in (".inter", ".item")))
    else:
        return "missing"
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _quiet_loggers() -> None:
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow resets its logger's level on import
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # toprec sends nothing anywhere on its own


def _sqlite_wal(uri: str) -> None:
    """WAL journal on a local SQLite store: several processes can log at once."""
    if not uri.startswith("sqlite:///"):
        return
    import sqlite3

    path = uri[len("sqlite:///") :]
    if not Path(path).exists():
        return
    with contextlib.suppress(sqlite3.Error):
        con = sqlite3.connect(path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()


class Tracker:
    """Logs one MLflow run (and its child runs). ``Tracker.off()`` is a do-nothing stand-in."""

    def __init__(self, client=None, run_id: str | None = None, experiment_id: str | None = None, uri: str = ""):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.uri = uri
        self._broken = False

    @classmethod
    def off(cls) -> "Tracker":
        return cls()

    @property
    def enabled(self) -> bool:
        return self.client is not None and not self._broken

    # ---------------------------------------------------------- start/end
    @classmethod
    def start(cls, uri: str | None, experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None,
              tags: dict[str, str] | None = None, parent: "Tracker | None" = None,
              start_time: int | None = None, connection: tuple | None = None) -> "Tracker":  # fmt: skip
        """Open a run (creating the store and experiment when needed)."""
        if parent is not None and parent.enabled:
            client, exp_id, uri = parent.client, parent.experiment_id, parent.uri
        elif connection is not None:
            (client, exp_id), uri = connection, resolve_uri(uri)
        else:
            uri = resolve_uri(uri)
            _quiet_loggers()
            client, exp_id = _connect(uri, experiment)
        all_tags = dict(tags or {})
        if run_name:
            all_tags["mlflow.runName"] = run_name
        if parent is not None and parent.enabled:
            all_tags["mlflow.parentRunId"] = parent.run_id
        try:
            run = _retry(lambda: client.create_run(exp_id, start_time=start_time, tags=all_tags))
        except Exception as exc:  # noqa: BLE001 - any store failure is the user's setup
            raise ToprecError(f"tracking store {uri}: cannot start a run ({_short(exc)})") from None
        return cls(client, run.info.run_id, exp_id, uri)

    def child(self, run_name: str, tags: dict[str, str] | None = None) -> "Tracker":
        if not self.enabled:
            return Tracker.off()
        try:
            return Tracker.start(self.uri, run_name=run_name, tags=tags, parent=self)
        except ToprecError as exc:
            self._warn(str(exc))
            return Tracker.off()

    def end(self, status: str = "FINISHED", end_time: int | None = None) -> None:
        if self.enabled:
            self._call(lambda: self.client.set_terminated(self.run_id, status=status, end_time=end_time))
        self.client = None

    @contextlib.contextmanager
    def active(self) -> Iterator["Tracker"]:
        """End the run FINISHED, or FAILED / KILLED when the block raises."""
        try:
            yield self
        except KeyboardInterrupt:
            self.end("KILLED")
            raise
        except BaseException:
            self.end("FAILED")
            raise
        self.end("FINISHED")

    # ---------------------------------------------------------- logging
    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled or not params:
            return
        from mlflow.entities import Param

        items = [Param(k[:250], str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._call(lambda chunk=items[i : i + 100]: self.client.log_batch(self.run_id, params=chunk))

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None, timestamp: int | None = None) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = timestamp or int(time.time() * 1000)
        items = []
        for k, v in metrics.items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            items.append(Metric(metric_name(k), value, now, int(step or 0)))
        if items:
            self._call(lambda: self.client.log_batch(self.run_id, metrics=items))

    def log_history(self, history: list[dict[str, Any]] | None) -> None:
        """Per-epoch logs of a trained model (``model.history``), step = epoch (1-based), named by :func:`epoch_metrics`."""
        for epoch, logs in enumerate(history or [], start=1):
            self.log_metrics(epoch_metrics(logs), step=int(logs.get("epoch", epoch)))

    def set_tags(self, tags: dict[str, Any]) -> None:
        if not self.enabled or not tags:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._call(lambda: self.client.log_batch(self.run_id, tags=items))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled or path is None:
            return
        path = Path(path)
        if not path.exists():
            return
        if path.is_dir():
            self._call(lambda: self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name))
        else:
            self._call(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_text(self, text: str, name: str) -> None:
        if self.enabled:
            self._call(lambda: self.client.log_text(self.run_id, text, name))

    # ---------------------------------------------------------- internals
    def _call(self, fn) -> None:
        try:
            _retry(fn)
        except Exception as exc:  # noqa: BLE001 - logging must not lose a finished run
            self._warn(f"tracking: logging to {self.uri} failed ({_short(exc)}); logging stops for this run")
            self._broken = True

    def _warn(self, message: str) -> None:
        from .. import progress

        progress.console.print(f"toprec: warning: {message}", markup=False, highlight=False, soft_wrap=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _retry(fn, tries: int = 4, delay: float = 0.5):
    for attempt in range(tries):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).lower()
            transient = "locked" in msg or "busy" in msg or "connection" in msg or "timed out" in msg
            if not transient or attempt == tries - 1:
                raise
            time.sleep(delay * (2**attempt))
    return None


def _connect(uri: str, experiment: str):
    """A client and the experiment id, creating both when needed (safe against a concurrent creator)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:  # pragma: no cover - mlflow is a dependency
        raise ToprecError("tracking needs mlflow (pip install mlflow) or --no-track") from None
    local_sqlite = uri.startswith("sqlite:///")
    artifact_location = None
    if local_sqlite:
        db = Path(uri[len("sqlite:///") :])
        db.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (db.parent / "artifacts").resolve().as_uri()
    last: Exception | None = None
    for attempt in range(5):
        try:
            client = MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                try:
                    exp_id = client.create_experiment(experiment, artifact_location=artifact_location)
                except Exception:  # noqa: BLE001 - another process created it first
                    exp = client.get_experiment_by_name(experiment)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                if exp.lifecycle_stage == "deleted":
                    client.restore_experiment(exp.experiment_id)
                exp_id = exp.experiment_id
            if local_sqlite and attempt == 0:
                _sqlite_wal(uri)
            return client, exp_id
        except ToprecError:
            raise
        except Exception as exc:  # noqa: BLE001 - a store being created by another process, a server starting
            last = exc
            time.sleep(0.5 * (attempt + 1))
    raise ToprecError(f"tracking store {uri}: cannot open ({_short(last)}); use --no-track to run without it")


class BufferedTracker:
    """A run recorded in memory while the command works, written when it ends.

    Importing mlflow and opening its store take seconds; a short command
    (evaluate, submit, ensemble) should not wait for them. The connection is
    made in a background thread while the command runs; its parameters,
    metrics (with their own timestamps and steps), tags, artifacts and child
    runs are kept and replayed into MLflow at the end, with the run's real
    start and end times. A store that cannot be opened is a one-line error
    then (after the command's own output).
    """

    def __init__(self, uri: str | None, experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None,
                 tags_fn=None, parent: "BufferedTracker | None" = None, tags: dict[str, str] | None = None):  # fmt: skip
        import concurrent.futures

        self.uri = resolve_uri(uri)
        self.run_name = run_name
        self.start_time = int(time.time() * 1000)
        self.end_time: int | None = None
        self.status = "RUNNING"
        self.ops: list[tuple[str, tuple]] = []
        self.children: list[BufferedTracker] = []
        self.tags = dict(tags or {})
        self.parent = parent
        self._future = None
        if parent is None:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="toprec-mlflow")

            def connect():
                _quiet_loggers()
                extra = tags_fn() if tags_fn is not None else {}
                return _connect(self.uri, experiment), extra

            self._future = pool.submit(connect)
            pool.shutdown(wait=False)

    enabled = True

    def child(self, run_name: str, tags: dict[str, str] | None = None) -> "BufferedTracker":
        c = BufferedTracker(self.uri, run_name=run_name, parent=self, tags=tags)
        self.children.append(c)
        return c

    def log_params(self, params: dict[str, Any]) -> None:
        self.ops.append(("log_params", (dict(params),)))

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.ops.append(("log_metrics", (dict(metrics), step, int(time.time() * 1000))))

    def log_history(self, history: list[dict[str, Any]] | None) -> None:
        for epoch, logs in enumerate(history or [], start=1):
            self.log_metrics(epoch_metrics(logs), step=int(logs.get("epoch", epoch)))

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.ops.append(("set_tags", (dict(tags),)))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if path is not None:
            self.ops.append(("log_artifact", (path, artifact_path)))

    def log_text(self, text: str, name: str) -> None:
        self.ops.append(("log_text", (text, name)))

    def end(self, status: str = "FINISHED") -> None:
        if self.end_time is None:
            self.status, self.end_time = status, int(time.time() * 1000)
        if self.parent is None:
            self.flush()

    @contextlib.contextmanager
    def active(self) -> Iterator["BufferedTracker"]:
        """End (and write) the run FINISHED, or FAILED / KILLED when the block raises."""
        try:
            yield self
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            try:
                self.end(status)
            except ToprecError as err:  # the command's own error matters more
                self._warn(str(err))
            raise
        self.end("FINISHED")

    def flush(self) -> None:
        """Wait for the connection, then write the run and its children."""
        (client, exp_id), extra = self._future.result()
        real = Tracker.start(self.uri, run_name=self.run_name, tags={**extra, **self.tags}, start_time=self.start_time,
                             connection=(client, exp_id))  # fmt: skip
        self._replay(real)

    def _replay(self, real: Tracker) -> None:
        for name, args in self.ops:
            if name == "log_metrics":
                metrics, step, ts = args
                real.log_metrics(metrics, step=step, timestamp=ts)
            else:
                getattr(real, name)(*args)
        for c in self.children:
            child = Tracker.start(real.uri, run_name=c.run_name, tags=c.tags, parent=real, start_time=c.start_time)
            c._replay(child)
            child.end(c.status if c.end_time else "FINISHED", end_time=c.end_time)
        real.end(self.status, end_time=self.end_time)

    def _warn(self, message: str) -> None:
        from .. import progress

        progress.console.print(f"toprec: warning: {message}", markup=False, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------ command runs
def run_tags(command: str, data_path: str | None) -> dict[str, str]:
    from ..version import __version__

    sha, dirty = git_commit()
    tags = {
        "toprec.command": command,
        "toprec.version": __version__,
        "toprec.git_commit": sha,
        "mlflow.source.git.commit": sha,
        "mlflow.source.name": f"toprec {command}",
        "mlflow.source.type": "LOCAL",
    }
    if dirty is not None:
        tags["toprec.git_dirty"] = str(dirty).lower()
    if data_path is not None:
        tags["toprec.data_fingerprint"] = data_fingerprint(data_path)
    return tags
