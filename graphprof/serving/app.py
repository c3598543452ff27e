"""The HTTP API of ``graphprof serve`` (FastAPI): versioned routes, API keys with scopes, an audit line per
request that touches customer data, JSON errors with a 4xx status, Prometheus metrics.

Routes (their OpenAPI document at ``/openapi.json``, pages at ``/docs``):

=========================================  =================  ==============================================
route                                      scope              answer
=========================================  =================  ==============================================
``GET /v1/users/{id}``                     profiles:read      the profile: per target class, probabilities,
                                                              model version; the community
``POST /v1/users:batch``                   profiles:read      ``{"ids": [...]}`` (at most 50,000): profiles,
                                                              and the ids not found
``GET /v1/users/{id}/similar?k=``          embeddings:read    nearest users in the exported embeddings
``GET /v1/users/{id}/recommendations?k=``  embeddings:read    items not bought yet, by embedding score
``POST /v1/predict``                       profiles:read      a new customer's purchases (and ties): the
                                                              profile, nothing written
``POST /v1/events``                        events:write       purchases, ties, users: journaled (fsync), then
                                                              applied by ``update`` within seconds
``GET /healthz``, ``GET /metrics``         none               liveness; Prometheus text
=========================================  =================  ==============================================

A key goes in ``Authorization: Bearer <key>`` or ``X-API-Key``; none or an unknown or revoked one: 401; one
without the route's scope: 403 (``admin`` holds every scope).
"""


import json
import logging
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from graphprof.errors import GraphprofError
from graphprof.serving.audit import AuditLog
from graphprof.serving.keys import Key, KeyRing

log = logging.getLogger("graphprof")
MAX_BATCH = 50_000
MAX_BODY = 64 << 20  # bytes of a request body: 50,000 purchases fit many times over
_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_K = 1000


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ---------------------------------------------------------------------------------------------- bodies
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchBody(_Strict):
    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)


def _id(v: str) -> str:
    v = str(v).strip()
    if not v or len(v) > 256 or "\x00" in v:
        raise ValueError("must be a non-empty id of at most 256 characters")
    return v


class Purchase(_Strict):
    user_id: str
    item_id: str
    timestamp: float | str | None = None
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    price: float | None = Field(default=None, ge=0)

    _ids = field_validator("user_id", "item_id")(_id)


class Tie(_Strict):
    user_id: str
    friend_id: str

    _ids = field_validator("user_id", "friend_id")(_id)


class PredictBody(_Strict):
    purchases: list[Purchase] = Field(min_length=1, max_length=MAX_BATCH)
    friendships: list[Tie] = Field(default_factory=list, max_length=MAX_BATCH)


class EventsBody(_Strict):
    purchases: list[Purchase] = Field(default_factory=list, max_length=MAX_BATCH)
    friendships: list[Tie] = Field(default_factory=list, max_length=MAX_BATCH)
    users: list[dict[str, str | None]] = Field(default_factory=list, max_length=MAX_BATCH)

    @field_validator("users")
    @classmethod
    def _users(cls, rows):
        for k, row in enumerate(rows):
            if not isinstance(row.get("user_id"), str) or not row["user_id"].strip():
                raise ValueError(f"row {k} must have a non-empty user_id")
            bad = [c for c in row if not _COLUMN.fullmatch(c) or c.startswith("__")]
            if bad:
                raise ValueError(f"row {k} must name plain columns (letters, digits, '_'). Got {bad[0]!r}")
        return rows


def _json(doc) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")


class Observe:
    """ASGI middleware: per request, the metrics, and an audit line for every ``/v1/`` route (the route's
    template, the key's name and the user ids the endpoint named, from the request's state)."""

    def __init__(self, app, metrics, audit):
        self.app, self.metrics, self.audit = app, metrics, audit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]
        state = scope.setdefault("state", {})
        state["user_ids"], state["key_name"] = [], None
        size = dict(scope.get("headers") or ()).get(b"content-length", b"0")
        if not size.isdigit() or int(size) > MAX_BODY:
            status[0] = 413
            body = json.dumps({"error": {"status": 413, "message": f"the body must be at most {MAX_BODY >> 20} MiB "
                                         f"(Content-Length). Got {size.decode(errors='replace')[:20]} bytes"}})
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body.encode()})
            self.metrics.observe("(too large)", scope["method"], 413, time.perf_counter() - t0)
            return

        async def sent(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            template = getattr(scope.get("route"), "path", "(unmatched)")
            self.metrics.observe(template, scope["method"], status[0], time.perf_counter() - t0)
            if template.startswith("/v1/"):
                self.audit.record(state.get("key_name"), scope["method"], template, status[0],
                                  state.get("user_ids") or [])


# ---------------------------------------------------------------------------------------------- metrics
class Metrics:
    """Request counts and latency per route and status, as Prometheus text."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = {}
        self.latency: dict[str, list] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, method, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            h = self.latency.setdefault(route, [0] * len(self.BUCKETS) + [0, 0.0])
            for j, b in enumerate(self.BUCKETS):
                if seconds <= b:
                    h[j] += 1
            h[-2] += 1
            h[-1] += seconds

    def text(self, extra: dict[str, float]) -> str:
        lines = ["# HELP graphprof_requests_total HTTP requests by route, method and status.",
                 "# TYPE graphprof_requests_total counter"]
        with self._lock:
            for (route, method, status), n in sorted(self.requests.items()):
                lines.append(f'graphprof_requests_total{{route="{route}",method="{method}",status="{status}"}} {n}')
            lines += ["# HELP graphprof_request_seconds Request latency by route.",
                      "# TYPE graphprof_request_seconds histogram"]
            for route, h in sorted(self.latency.items()):
                for j, b in enumerate(self.BUCKETS):
                    lines.append(f'graphprof_request_seconds_bucket{{route="{route}",le="{b}"}} {h[j]}')
                lines.append(f'graphprof_request_seconds_bucket{{route="{route}",le="+Inf"}} {h[-2]}')
                lines.append(f'graphprof_request_seconds_count{{route="{route}"}} {h[-2]}')
                lines.append(f'graphprof_request_seconds_sum{{route="{route}"}} {h[-1]:.6f}')
        for name, value in extra.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE graphprof_{name} {kind}", f"graphprof_{name} {value}"]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- the app
def create_app(root: str | Path, store, audit_key: bytes, events=None) -> FastAPI:
    """The API over ``store`` (a :class:`~graphprof.serving.store.LiveStore` or a Redis store), auditing to
    ``root``'s trail with ``audit_key``; ``events``: an :class:`~graphprof.serving.events.EventJournal` (None:
    ``POST /v1/events`` answers 503)."""
    from graphprof import __version__

    root = Path(root)
    app = FastAPI(title="graphprof", version=__version__,
                  description="Customer profiles from purchases and friendships, served from a graphprof work "
                              "directory. Every route but /healthz and /metrics needs an API key "
                              "(`graphprof keys create`).")
    ring, audit, metrics = KeyRing(root), AuditLog(root, audit_key), Metrics()
    app.state.audit, app.state.store, app.state.events = audit, store, events

    def need(scope: str):
        async def check(request: Request) -> Key:
            token = request.headers.get("x-api-key")
            auth = request.headers.get("authorization", "")
            if token is None and auth.lower().startswith("bearer "):
                token = auth[7:].strip()
            request.state.key_name = None
            if not token:
                raise ApiError(401, "an API key must be given (Authorization: Bearer <key> or X-API-Key). Got none")
            key = ring.check(token)
            if key is None:
                raise ApiError(401, "the API key must be a live key of this server. Got an unknown or revoked key")
            request.state.key_name = key.name
            if not key.allows(scope):
                raise ApiError(403, f"the API key must have the scope {scope}. Got {', '.join(key.scopes)}")
            return key
        return check

    profiles_read = Annotated[Key, Depends(need("profiles:read"))]
    embeddings_read = Annotated[Key, Depends(need("embeddings:read"))]
    events_write = Annotated[Key, Depends(need("events:write"))]

    app.add_middleware(Observe, metrics=metrics, audit=audit)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):  # never a traceback to the caller
        log.error("serve: internal error on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"error": {"status": 500, "message": "internal error (a bug); see the server's log"}},
                            status_code=500)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": {"status": exc.status, "message": exc.message}}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        got = first.get("input")
        got = repr(got)[:80] if got is not None and not isinstance(got, dict) else "another value"
        message = f"{field} {first.get('msg', 'is invalid').lower()}. Got {got} instead"
        return JSONResponse({"error": {"status": 422, "message": message, "field": field}}, status_code=422)

    @app.exception_handler(GraphprofError)
    async def user_error(request: Request, exc: GraphprofError):
        from graphprof.errors import LockError

        if isinstance(exc, LockError):  # an update or a train holds the work directory: for a moment
            return JSONResponse({"error": {"status": 503, "message": str(exc)}}, status_code=503,
                                headers={"Retry-After": "2"})
        return JSONResponse({"error": {"status": 400, "message": str(exc)}}, status_code=400)

    def _k(k: int) -> int:
        if not 1 <= k <= MAX_K:
            raise ApiError(422, f"k must be between 1 and {MAX_K}. Got {k} instead")
        return k

    @app.get("/healthz")
    async def healthz():
        s = store.get()
        return _json({"status": "ok", "graph_id": s.version, "users": s.users})

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics_route():
        extra = {"events_pending": events.pending() if events is not None else 0,
                 "events_batches_applied_total": events.applied if events is not None else 0,
                 "events_batches_failed_total": events.failed if events is not None else 0,
                 "users": store.get().users, "store_reloads_total": getattr(store, "reloads", 0)}
        return metrics.text(extra)

    @app.get("/v1/users/{user_id}")
    async def profile(user_id: str, request: Request, key: profiles_read):
        request.state.user_ids = [user_id]
        doc = store.get().profiles_json([user_id])[0]
        if doc is None:
            raise ApiError(404, f"user id must be a user of this work directory. Got {user_id!r} instead")
        return Response(doc, media_type="application/json")

    @app.post("/v1/users:batch")
    async def batch(body: BatchBody, request: Request, key: profiles_read):
        request.state.user_ids = body.ids
        docs = store.get().profiles_json(body.ids)
        found = ",".join(d for d in docs if d is not None)
        missing = json.dumps([i for i, d in zip(body.ids, docs) if d is None])
        return Response('{"profiles":[' + found + '],"missing":' + missing + "}", media_type="application/json")

    def _embedding_answer(user_id: str, k: int, what: str):
        s = store.get()
        if s.rows([user_id])[0] < 0:
            raise ApiError(404, f"user id must be a user of this work directory. Got {user_id!r} instead")
        try:
            out = s.similar(user_id, _k(k)) if what == "similar" else s.recommendations(user_id, _k(k))
        except GraphprofError:
            out = None
        if out is None:
            raise ApiError(409, f"{what} needs current embeddings with this user (and item vectors for "
                                "recommendations, not pseudonymised): run 'graphprof export-embeddings'")
        return {"user_id": user_id, what: out}

    @app.get("/v1/users/{user_id}/similar")
    def similar(user_id: str, request: Request, key: embeddings_read, k: int = 10):
        request.state.user_ids = [user_id]
        return _embedding_answer(user_id, k, "similar")

    @app.get("/v1/users/{user_id}/recommendations")
    def recommendations(user_id: str, request: Request, key: embeddings_read, k: int = 10):
        request.state.user_ids = [user_id]
        return _embedding_answer(user_id, k, "recommendations")

    @app.post("/v1/predict")
    def predict_route(body: PredictBody, request: Request, key: profiles_read):
        import pandas as pd

        from graphprof.prediction.predict import predict

        ids = sorted({p.user_id for p in body.purchases})
        request.state.user_ids = ids
        known = store.get().rows(ids)
        if (known >= 0).any():
            raise ApiError(409, f"purchases[].user_id must be new customers. Got {ids[int(np.argmax(known >= 0))]!r},"
                                " a user of the work directory: GET /v1/users/{id} has their profile")
        scratch = root / "serving" / "tmp"  # inside the work directory: a request writes nowhere else
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="predict-", dir=scratch) as tmp:
            d = Path(tmp)
            pd.DataFrame([p.model_dump() for p in body.purchases]).to_csv(d / "purchases.csv", index=False)
            if body.friendships:
                pd.DataFrame([t.model_dump() for t in body.friendships]).to_csv(d / "friendships.csv", index=False)
            result = predict(root, d, out=d / "out.parquet")
        frame = result.frame
        profiles = []
        for _, row in frame.iterrows():
            doc = {"user_id": row["user_id"], "targets": {}}
            for target, info in result.targets.items():
                cols = [c for c in frame.columns if c.startswith(f"{target}_proba_")]
                doc["targets"][target] = {"class": row[target], "model": info["model"], "probabilities": {
                    c[len(target) + 7:]: float(row[c]) for c in cols}}
            if "community" in frame:
                doc["community"] = int(row["community"])
            profiles.append(doc)
        return {"profiles": profiles, "counts": result.counts}

    @app.post("/v1/events", status_code=202)
    def post_events(body: EventsBody, request: Request, key: events_write):
        if events is None:
            raise ApiError(503, "events must be enabled on this server. Got a server started with --no-events")
        doc = {"purchases": [p.model_dump() for p in body.purchases],
               "friendships": [t.model_dump() for t in body.friendships], "users": body.users}
        rows = sum(len(v) for v in doc.values())
        if not rows:
            raise ApiError(422, "the body must hold at least one purchase, friendship or user. Got none")
        request.state.user_ids = sorted({r["user_id"] for v in doc.values() for r in v})
        pending = events.append(doc)
        return {"accepted": rows, "pending": pending}

    return app
