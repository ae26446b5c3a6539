"""The HTTP layer: routes, limits, API key, one-line JSON errors, metrics, hot reload (see the package docstring)."""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator
from starlette.exceptions import HTTPException

from ..app import serving
from ..errors import ToprecError
from .config import MAX_BATCH, MAX_HISTORY, MAX_ID_LENGTH, MAX_K, ServeConfig

log = logging.getLogger("toprec.serve")
ENV = "TOPREC_SERVE_CONFIG"

Id = Union[StrictInt, Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)]]


# ------------------------------------------------------------------ request / response schema
K = Annotated[int, Query(ge=1, le=MAX_K, description="list length (capped by the server's max_k)")]
Exclude = Annotated[str, Query(max_length=20_000, description="comma-separated item ids to leave out")]
ExcludeId = Annotated[Optional[list[str]], Query(description="one item id to leave out, whole (commas and spaces "
                                                             "kept); repeat it for more")]
UserId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH, description="a user id of the training data")]
ItemId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH, description="an item id of the training data")]


class HistoryRequest(BaseModel):
    """A new or anonymous user: item ids oldest first (unknown ids are ignored and listed)."""

    model_config = ConfigDict(extra="forbid")
    history: list[Id] = Field(max_length=MAX_HISTORY)
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_HISTORY)


class BatchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Optional[Id] = None
    history: Optional[list[Id]] = Field(None, max_length=MAX_HISTORY)
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_HISTORY)

    @model_validator(mode="after")
    def _one(self):
        if (self.user is None) == (self.history is None):
            raise ValueError("give exactly one of 'user' and 'history'")
        return self


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[BatchQuery] = Field(min_length=1, max_length=MAX_BATCH)
    k: StrictInt = Field(10, ge=1, le=MAX_K)


class UserList(BaseModel):
    user: str
    items: list[Union[int, str]]
    scores: list[Optional[float]]
    cold_start: bool


class HistoryList(BaseModel):
    items: list[Union[int, str]]
    scores: list[Optional[float]]
    cold_start: bool
    unknown_items: list[Union[int, str]]


class BatchLists(BaseModel):
    results: list[Union[UserList, HistoryList]]


class Error(BaseModel):
    error: str


ERRORS = {code: {"model": Error} for code in (400, 401, 404, 413, 422, 503)}


# ------------------------------------------------------------------ responses
class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error(status: int, message: str, headers: Optional[dict] = None) -> Response:
    return JSONBody({"error": " ".join(str(message).split())[:500]}, status_code=status, headers=headers)


def _payload(a: serving.Answer) -> dict[str, Any]:
    d = a.to_json()
    d["scores"] = [s if math.isfinite(s) else None for s in d["scores"]]
    return d


# ------------------------------------------------------------------ metrics
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ENDPOINTS = ("/v1/users/{user}/recommendations", "/v1/recommendations", "/v1/recommendations/batch",
             "/v1/items/{item}/similar", "/v1/model", "/health", "/ready", "/metrics", "/admin/reload")  # fmt: skip


def endpoint_of(path: str) -> str:
    if path.startswith("/v1/users/") and path.endswith("/recommendations"):
        return ENDPOINTS[0]
    if path.startswith("/v1/items/") and path.endswith("/similar"):
        return ENDPOINTS[3]
    return path if path in ENDPOINTS else "other"


class Metrics:
    """Requests, errors and a latency histogram per endpoint (this worker's), in Prometheus text format."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.hist: dict[str, list] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            key = (endpoint, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            h = self.hist.get(endpoint)
            if h is None:
                h = self.hist[endpoint] = [[0] * (len(BUCKETS) + 1), 0.0]
            i = 0
            while i < len(BUCKETS) and seconds > BUCKETS[i]:
                i += 1
            h[0][i] += 1
            h[1] += seconds

    def text(self, generation: int) -> str:
        lines = ["# HELP toprec_requests_total Requests by endpoint and status.", "# TYPE toprec_requests_total counter"]
        with self.lock:
            reqs = sorted(self.requests.items())
            hist = {k: ([*v[0]], v[1]) for k, v in sorted(self.hist.items())}
        for (ep, st), n in reqs:
            lines.append(f'toprec_requests_total{{endpoint="{ep}",status="{st}"}} {n}')
        lines += ["# HELP toprec_errors_total Requests answered with a 4xx or 5xx status.",
                  "# TYPE toprec_errors_total counter"]  # fmt: skip
        errs: dict[str, int] = {}
        for (ep, st), n in reqs:
            if st >= 400:
                errs[ep] = errs.get(ep, 0) + n
        for ep, n in sorted(errs.items()):
            lines.append(f'toprec_errors_total{{endpoint="{ep}"}} {n}')
        lines += ["# HELP toprec_request_seconds Request latency.", "# TYPE toprec_request_seconds histogram"]
        for ep, (counts, total) in hist.items():
            cum = 0
            for b, c in zip((*BUCKETS, "+Inf"), counts):
                cum += c
                lines.append(f'toprec_request_seconds_bucket{{endpoint="{ep}",le="{b}"}} {cum}')
            lines.append(f'toprec_request_seconds_sum{{endpoint="{ep}"}} {total:.6f}')
            lines.append(f'toprec_request_seconds_count{{endpoint="{ep}"}} {cum}')
        lines += ["# HELP toprec_model_generation Models loaded by this worker (1 = the first).",
                  "# TYPE toprec_model_generation gauge", f"toprec_model_generation {generation}"]  # fmt: skip
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the model, swapped atomically
def _signature(path: Path) -> tuple:
    """What changes when MODEL_DIR is replaced (``atomic_dir`` renames a new folder into place)."""
    out = []
    for p in (path, path / serving.MODEL_FILE, path / serving.PIPELINE_FILE):
        try:
            st = p.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class State:
    """The served model. A reload builds the new one beside the old and swaps one reference:
    a request holds the object it started with, so requests in flight finish on the old model."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.path = Path(cfg.model_dir)
        self.lock = threading.Lock()
        self.servable: Optional[serving.Servable] = None
        self.generation = 0
        self.signature: tuple = ()
        self.last_error: Optional[str] = None
        self._stop = threading.Event()

    def load(self) -> serving.Servable:
        with self.lock:  # one load at a time; requests keep being answered by the current model meanwhile
            sig = _signature(self.path)
            new = serving.load(self.path, unknown_users=self.cfg.unknown_users)
            self.servable, self.signature = new, sig
            self.generation += 1
            self.last_error = None
            return new

    def watch(self) -> None:
        if self.cfg.watch_s <= 0:
            return

        def loop():
            while not self._stop.wait(self.cfg.watch_s):
                sig = _signature(self.path)
                if sig != self.signature and sig[0] is not None:
                    try:
                        self.load()
                        log.warning("toprec serve: reloaded %s (generation %d)", self.path, self.generation)
                    except Exception as exc:  # noqa: BLE001 - keep serving the old model
                        self.signature = sig  # do not retry the same broken folder in a loop
                        self.last_error = " ".join(str(exc).split())
                        log.warning("toprec serve: reload of %s failed, keeping the old model: %s",
                                    self.path, self.last_error)  # fmt: skip

        threading.Thread(target=loop, name="toprec-serve-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------ guard middleware (pure ASGI)
class _TooBig(Exception):
    pass


class Guard:
    """API key, body size, metrics, and no stack trace ever reaching a client."""

    def __init__(self, app, cfg: ServeConfig, metrics: Metrics):
        self.app, self.cfg, self.metrics = app, cfg, metrics
        self.key = cfg.api_key.encode() if cfg.api_key else None

    def _authorized(self, headers) -> bool:
        for name, value in headers:
            if name == b"x-api-key" and hmac.compare_digest(value, self.key):
                return True
            if name == b"authorization" and value[:7].lower() == b"bearer " and hmac.compare_digest(value[7:].strip(), self.key):
                return True
        return False

    async def _send_error(self, send, status: int, message: str, extra: Optional[list] = None) -> None:
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope.get("path", "")
        endpoint = endpoint_of(path)
        status = [500]
        started = [False]

        async def send_(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
                started[0] = True
            await send(msg)

        try:
            headers = scope.get("headers", [])
            needs_key = path != "/health" and (self.key is not None or path == "/admin/reload")
            if needs_key and (self.key is None or not self._authorized(headers)):
                if self.key is None:
                    await self._send_error(send_, 403, "reload needs an API key (serve --api-key-file)")
                else:
                    await self._send_error(send_, 401, "missing or wrong API key (X-API-Key header)",
                                           [(b"www-authenticate", b"Bearer")])  # fmt: skip
                return
            limit = self.cfg.max_body
            for name, value in headers:
                if name == b"content-length":
                    try:
                        n = int(value)
                    except ValueError:
                        n = -1
                    if n < 0 or n > limit:
                        await self._send_error(send_, 413 if n > limit else 400,
                                               f"request body over {limit} bytes" if n > limit else "bad Content-Length")
                        return
            seen = [0]

            async def receive_():
                msg = await receive()
                if msg["type"] == "http.request":
                    seen[0] += len(msg.get("body", b""))
                    if seen[0] > limit:
                        raise _TooBig()
                return msg

            await self.app(scope, receive_, send_)
        except _TooBig:
            if not started[0]:
                await self._send_error(send_, 413, f"request body over {self.cfg.max_body} bytes")
        except Exception:  # noqa: BLE001 - never a stack trace to the client
            log.exception("toprec serve: internal error on %s", path)
            if not started[0]:
                await self._send_error(send_, 500, "internal error")
        finally:
            if self.cfg.metrics:
                self.metrics.observe(endpoint, status[0], time.perf_counter() - t0)


# ------------------------------------------------------------------ the app
def _split_ids(raw: str) -> list[str]:
    return [x for x in (p.strip() for p in raw.split(",")) if x]


def create_app(cfg: ServeConfig, state: Optional[State] = None) -> "Guard":
    """The ASGI app for ``cfg`` (loads the model now; a bad folder is a one-line ToprecError)."""
    state = state or State(cfg)
    if state.servable is None:
        state.load()
    state.watch()
    metrics = Metrics()
    api = FastAPI(title="toprec", version="1", description="Top-N recommendations for known and new users.",
                  docs_url="/docs", redoc_url=None)  # fmt: skip
    api.state.toprec = state

    def servable() -> serving.Servable:
        s = state.servable
        if s is None:
            raise HTTPException(503, "no model loaded")
        return s

    def check_k(k: int) -> None:
        if k > cfg.max_k:
            raise HTTPException(422, f"k: at most {cfg.max_k}")

    def check_len(what: str, values, cap: int) -> None:
        if values is not None and len(values) > cap:
            raise HTTPException(422, f"{what}: at most {cap} items")

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        if not errs:
            return _error(422, "invalid request")
        e = errs[0]
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid":
            return _error(400, f"malformed JSON ({msg})")
        return _error(422, f"{loc}: {msg}")

    @api.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @api.exception_handler(ToprecError)
    async def _toprec(request: Request, exc: ToprecError):
        return _error(404 if isinstance(exc, serving.NotFound) else 400, str(exc))

    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        api.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])  # fmt: skip

    # {user:path}: an id may hold a '/' (sent as %2F, decoded before routing)
    @api.get("/v1/users/{user:path}/recommendations", response_model=None,
             responses={200: {"model": UserList}, **ERRORS},
             summary="Top-k for a known user (unknown: the cold-start list, flagged)")  # fmt: skip
    def user_recommendations(user: UserId, k: K = 10, exclude: Exclude = "", exclude_id: ExcludeId = None):
        check_k(k)
        ex = _split_ids(exclude) + list(exclude_id or ())
        check_len("exclude", ex, cfg.max_history)
        return JSONBody(_payload(servable().answer_for_user(user, k, ex)))

    @api.post("/v1/recommendations", response_model=None, responses={200: {"model": HistoryList}, **ERRORS},
              summary="Top-k for a user known only by a history (folded in, no retraining)")  # fmt: skip
    def history_recommendations(body: HistoryRequest):
        check_k(body.k)
        check_len("history", body.history, cfg.max_history)
        check_len("exclude", body.exclude, cfg.max_history)
        return JSONBody(_payload(servable().answer_for_history(body.history, body.k, body.exclude)))

    @api.post("/v1/recommendations/batch", response_model=None, responses={200: {"model": BatchLists}, **ERRORS},
              summary="Top-k for many users (known ids or histories) in one call")  # fmt: skip
    def batch_recommendations(body: BatchRequest):
        check_k(body.k)
        if len(body.requests) > cfg.max_batch:
            raise HTTPException(422, f"requests: at most {cfg.max_batch}")
        total = sum(len(q.history or ()) + len(q.exclude) for q in body.requests)
        check_len("histories and excludes together", [None] * total, cfg.max_history * 4)
        queries = [serving.Query(user=None if q.user is None else str(q.user), history=q.history, exclude=q.exclude)
                   for q in body.requests]  # fmt: skip
        return JSONBody({"results": [_payload(a) for a in servable().answer(queries, body.k)]})

    @api.get("/v1/items/{item:path}/similar", response_model=None, responses={200: {"model": HistoryList}, **ERRORS},
             summary="Items most recommended to someone who has only this item")  # fmt: skip
    def similar_items(item: ItemId, k: K = 10):
        check_k(k)
        d = _payload(servable().similar_items(item, k))
        d.pop("unknown_items", None)
        d["item"] = item
        return JSONBody(d)

    @api.get("/v1/model", summary="What is served: model, parameters, trained at, data fingerprint, version")
    def model_info():
        d = servable().info()
        d["generation"] = state.generation
        d["limits"] = {"max_k": cfg.max_k, "max_history": cfg.max_history, "max_batch": cfg.max_batch,
                       "max_body": cfg.max_body}  # fmt: skip
        if state.last_error:
            d["last_reload_error"] = state.last_error
        return JSONBody(d)

    @api.get("/health", summary="The process answers (no API key needed)")
    def health():
        return JSONBody({"status": "ok"})

    @api.get("/ready", summary="A model is loaded and answering", responses={503: {"model": Error}})
    def ready():
        if state.servable is None:
            return _error(503, "no model loaded")
        return JSONBody({"status": "ready", "generation": state.generation})

    @api.get("/metrics", summary="Prometheus text: requests, errors, latency per endpoint (this worker)")
    def prometheus():
        return Response(metrics.text(state.generation), media_type="text/plain; version=0.0.4")

    @api.post("/admin/reload", summary="Load MODEL_DIR again beside the old model and swap (API key required)",
              responses={409: {"model": Error}})  # fmt: skip
    def reload():
        try:
            s = state.load()
        except (ToprecError, OSError, ValueError, KeyError) as exc:
            return _error(409, f"reload failed, still serving generation {state.generation}: {exc}")
        return JSONBody({"status": "reloaded", "generation": state.generation, "model": s.info()["name"]})

    guard = Guard(api, cfg, metrics)
    guard.api, guard.state = api, state
    return guard


def _one_blas_thread() -> None:
    """A server process: one request per thread, the workers are the parallelism (no BLAS oversubscription)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def app_from_env():
    """The app of one uvicorn worker process (``run`` with several workers passes the config in the environment)."""
    _one_blas_thread()
    return create_app(ServeConfig.model_validate_json(os.environ[ENV]))


def run(cfg: ServeConfig) -> None:
    """Serve until interrupted (one process, or ``cfg.workers`` uvicorn worker processes)."""
    import uvicorn

    common = dict(host=cfg.host, port=cfg.port, log_level="warning", access_log=False, server_header=False,
                  timeout_keep_alive=30)  # fmt: skip
    if cfg.workers == 1:
        _one_blas_thread()
        uvicorn.run(create_app(cfg), **common)
        return
    serving.load(cfg.model_dir, unknown_users=cfg.unknown_users)  # a bad folder: one line, before any worker
    os.environ[ENV] = cfg.model_dump_json()
    uvicorn.run("toprec.serve.http:app_from_env", factory=True, workers=cfg.workers, **common)
