"""The API's Flask app: token auth on every endpoint but health, one-line JSON errors,
nothing written for a refused request."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import flask
import httpx
import psycopg
from werkzeug.exceptions import HTTPException

from capture.api.stream import job_events
from capture.freshness.loop import on_request
from capture.freshness.registry import Registry
from capture.freshness.rules import FreshnessSettings
from capture.handlers import HANDLERS, capable
from capture.ops import alerts
from capture.ops.health import snapshot
from capture.ops.metrics import CONTENT_TYPE, render
from jobstore import reads
from jobstore.budgets import PostgresBudgets
from jobstore.dispatcher import Dispatcher
from jobstore.domain import Status
from jobstore.errors import (
    AmbiguousJobId,
    ConfigError,
    DatabaseUnavailable,
    InvalidSpec,
    JobNotFound,
    JobStoreError,
)
from jobstore.routing import LANES
from jobstore.secret import Secret
from jobstore.settings import application_name
from jobstore.spec import JobSpec
from jobstore.store import JobStore

log = logging.getLogger(__name__)
OPEN = ("/healthz",)  # no token needed
PING_TIMEOUT = 2  # seconds
# What a request may say: the job spec's own fields (not parent_id: only a splitting job
# makes children) and the lane.
SPEC_FIELDS = {f.name for f in dataclasses.fields(JobSpec)} - {"parent_id"} | {"lane"}


@dataclass(frozen=True)
class ApiSettings:
    tokens: tuple[Secret, ...] = ()  # bearer tokens the API accepts (CAPTURE_API_TOKENS)
    # Web origins whose pages may call the API from a browser (CAPTURE_API_CORS_ORIGINS).
    origins: frozenset[str] = frozenset()

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if env is None else env
        tokens = tuple(
            Secret(t.strip()) for t in (env.get("CAPTURE_API_TOKENS") or "").split(",") if t.strip()
        )
        if not tokens:
            raise ConfigError(
                "CAPTURE_API_TOKENS is not set: the API needs at least one token to accept"
            )
        if any(len(t.reveal()) < 16 for t in tokens):
            raise ConfigError("CAPTURE_API_TOKENS: each token must be at least 16 characters")
        origins = frozenset(
            o.strip().rstrip("/")
            for o in (env.get("CAPTURE_API_CORS_ORIGINS") or "").split(",")
            if o.strip()
        )
        for origin in origins:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ConfigError(
                    f"CAPTURE_API_CORS_ORIGINS: {origin!r} is not an origin like "
                    "https://app.example.com"
                )
        return cls(tokens, origins)


@dataclass
class Context:
    """What every request uses: the store, the database, the lanes' HTTP client."""

    store: JobStore
    url: str
    freshness: FreshnessSettings
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    budgets: PostgresBudgets | None = None
    # Event streams open at once: each holds a server thread, so keep some for the rest.
    max_streams: int = 8
    _streams: threading.Semaphore | None = None
    _local: threading.local = field(default_factory=threading.local)
    _registries: list[Registry] = field(default_factory=list)
    _pings: list[psycopg.Connection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ping(self) -> None:
        """A quick look that the database answers, on this thread's own connection, so a
        request meets an outage in at most PING_TIMEOUT seconds (then 503), not after the
        store's own retries."""
        for fresh in (False, True):  # a connection cut meanwhile: once more, anew
            conn = None if fresh else getattr(self._local, "ping", None)
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._local.ping = psycopg.connect(
                        self.url,
                        autocommit=True,
                        connect_timeout=PING_TIMEOUT,
                        application_name=application_name("api"),
                    )
                    with self._lock:
                        self._pings.append(conn)
                conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                if not fresh:
                    continue
                text = str(exc).strip()
                message = text.splitlines()[0] if text else type(exc).__name__
                raise DatabaseUnavailable(
                    f"the database does not answer: {message[:200]}"
                ) from None

    def stream_slot(self) -> bool:
        """Takes one of the event-stream slots (give it back with `release_stream`)."""
        with self._lock:
            if self._streams is None:
                self._streams = threading.BoundedSemaphore(self.max_streams)
        return self._streams.acquire(blocking=False)

    def release_stream(self) -> None:
        assert self._streams is not None
        self._streams.release()

    def registry(self) -> Registry:
        """The tracked repositories, on a connection of this server thread's own."""
        registry = getattr(self._local, "registry", None)
        if registry is None:
            registry = self._local.registry = Registry(self.url)
            with self._lock:
                self._registries.append(registry)
        return registry

    def dispatcher(self) -> Dispatcher:
        """A dispatcher for one request (lane health is judged afresh each time)."""
        if self.budgets is None:
            self.budgets = PostgresBudgets(self.url)  # thread-safe; one for the server
        return Dispatcher.open(self.store, self.client, capable, self.budgets)

    def close(self) -> None:
        for registry in self._registries:
            registry.close()
        for conn in self._pings:
            conn.close()
        self.client.close()
        if self.budgets is not None:
            self.budgets.close()


def fail(status: int, message: str) -> flask.Response:
    response = flask.jsonify({"error": " ".join(message.split())[:300]})
    response.status_code = status
    return response


def create_app(ctx: Context, settings: ApiSettings) -> flask.Flask:
    app = flask.Flask("prcapture-api")
    allowed = [t.reveal().encode() for t in settings.tokens]

    @app.before_request
    def authenticate() -> flask.Response | None:
        path = flask.request.path
        if flask.request.method == "OPTIONS" and allowed_origin():  # a CORS preflight
            return flask.Response(status=204)
        if path in OPEN or path.startswith("/api/inngest"):  # Inngest signs its own calls
            return None
        header = flask.request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        given = given or flask.request.args.get("access_token", "")  # EventSource, links
        if not any(hmac.compare_digest(given.encode(), token) for token in allowed):
            return fail(401, "a valid token is needed: Authorization: Bearer <token>")
        if path != "/":  # the page itself needs no database
            ctx.ping()
        return None

    def allowed_origin() -> str | None:
        origin = flask.request.headers.get("origin", "")
        return origin if origin in settings.origins else None

    @app.after_request
    def cors(response: flask.Response) -> flask.Response:
        origin = allowed_origin()
        if origin:
            response.headers["access-control-allow-origin"] = origin
            response.headers["access-control-allow-headers"] = "authorization, content-type"
            response.headers["access-control-allow-methods"] = "GET, POST, OPTIONS"
            response.headers["access-control-expose-headers"] = "content-type"
            response.headers["access-control-max-age"] = "600"
        response.headers.add("vary", "origin")
        return response

    @app.errorhandler(JobNotFound)
    def not_found(exc: Exception) -> flask.Response:
        return fail(404, str(exc))

    @app.errorhandler(InvalidSpec)
    @app.errorhandler(AmbiguousJobId)
    def bad(exc: Exception) -> flask.Response:
        return fail(400, str(exc))

    @app.errorhandler(DatabaseUnavailable)
    def unavailable(exc: Exception) -> flask.Response:
        return fail(503, str(exc))

    @app.errorhandler(JobStoreError)
    def refused(exc: Exception) -> flask.Response:
        return fail(409, str(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> flask.Response:
        if isinstance(exc, HTTPException):  # 404 for an unknown path, 405, ...
            return fail(exc.code or 500, exc.description or exc.name)
        # The path, never the query string (it may carry ?access_token=) or the headers.
        log.exception("unexpected error on %s %s", flask.request.method, flask.request.path)
        return fail(500, f"internal error ({type(exc).__name__}); the server log has details")

    @app.get("/healthz")
    def health() -> Any:
        ctx.ping()
        return {"ok": True}

    @app.post("/v1/captures")
    def capture() -> Any:
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            return fail(400, "the body must be a JSON object describing the capture")
        unknown = sorted(set(body) - SPEC_FIELDS)
        if unknown:
            return fail(400, f"unknown fields: {', '.join(unknown)}")
        if body.get("job_type") not in HANDLERS:
            return fail(400, f"job_type must be one of {', '.join(sorted(HANDLERS))}")
        lane = body.get("lane", "auto")
        if lane not in ("auto", *LANES):
            return fail(400, f"lane must be auto or one of {', '.join(LANES)}")
        fields = {k: v for k, v in body.items() if k not in ("job_type", "repository", "lane")}
        fields["pr_numbers"] = fields.get("pr_numbers") or ()
        if not isinstance(fields["pr_numbers"], list | tuple):
            return fail(400, "pr_numbers must be a list of numbers")
        spec = JobSpec.create(body["job_type"], body.get("repository"), **fields)
        now = ctx.now()
        submitted = ctx.dispatcher().submit(spec, now, None if lane == "auto" else lane)
        promoted = on_request(ctx.registry(), spec, now, ctx.freshness)
        job, enqueued = submitted.job, submitted.enqueued
        document = {
            "job_id": str(job.id),
            "created": enqueued.created,
            "coalesced": enqueued.coalesced,
            "lane": job.lane,
            "rule": job.rule,
            "reason": job.reason,
            "status": job.status.value,
            "dispatched": job.status.value == "dispatched",
            "promoted": promoted,
            "links": {"self": f"/v1/jobs/{job.id}", "events": f"/v1/jobs/{job.id}/events"},
        }
        return document, 201 if enqueued.created else 200

    @app.get("/v1/jobs")
    def job_list() -> Any:
        args = flask.request.args
        unknown = sorted(
            set(args)
            - {"repository", "status", "lane", "job_type", "since", "limit", "access_token"}
        )
        if unknown:
            return fail(400, f"unknown parameters: {', '.join(unknown)}")
        status, lane = args.get("status"), args.get("lane")
        if status and status not in {s.value for s in Status}:
            return fail(400, f"status must be one of {', '.join(s.value for s in Status)}")
        if lane and lane not in LANES:
            return fail(400, f"lane must be one of {', '.join(LANES)}")
        limit = args.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            return fail(400, "limit must be a whole number from 1 to 500")
        since = None
        if args.get("since"):
            try:
                since = datetime.fromisoformat(args["since"].replace("Z", "+00:00"))
            except ValueError:
                return fail(400, f"since: {args['since']!r} is not an ISO 8601 time")
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
        where = reads.JobFilter(
            status, lane, args.get("job_type"), args.get("repository"), since, int(limit)
        )
        return {"jobs": jsonable(reads.current_jobs(ctx.url, where))}

    @app.get("/v1/jobs/<ref>")
    def job(ref: str) -> Any:
        return jsonable(reads.job_history(ctx.store, ctx.store.resolve(ref)))

    @app.get("/v1/jobs/<ref>/events")
    def events(ref: str) -> flask.Response:
        job_id = ctx.store.resolve(ref)
        ctx.store.get(job_id)  # 404 before the stream starts
        since = flask.request.headers.get("last-event-id") or flask.request.args.get("after")
        if not ctx.stream_slot():
            response = fail(
                503,
                f"{ctx.max_streams} event streams are open; try again, or poll /v1/jobs/{job_id}",
            )
            response.headers["retry-after"] = "5"
            return response

        stream = job_events(
            ctx.store, ctx.url, job_id, int(since) if since and since.isdigit() else 0
        )
        response = flask.Response(
            stream,
            mimetype="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        response.call_on_close(ctx.release_stream)  # the server closes every response
        return response

    @app.get("/v1/repos/<owner>/<name>/freshness")
    def freshness(owner: str, name: str) -> Any:
        wanted = f"{owner}/{name}".lower()
        rows = [r for r in ctx.registry().freshness() if r["repository"] == wanted]
        if not rows:
            return fail(404, f"{wanted} is not tracked")
        return jsonable(rows[0])

    @app.get("/v1/dashboard")
    def dashboard_data() -> Any:
        now = ctx.now()
        hours = min(48, max(1, int(flask.request.args.get("hours", 6))))
        health = snapshot(ctx.url, ctx.dispatcher(), now)
        breaches = ctx.registry().freshness(breached_only=True)[:50]
        return jsonable(
            {
                "at": now,
                "lanes": health.lanes,
                "down": health.down,
                "cost": health.cost,
                "series": reads.series(ctx.url, now - timedelta(hours=hours)),
                "budgets": health.budgets,
                "breaches": breaches,
                "failures": reads.recent_failures(ctx.url),
                "alerts": alerts.AlertState(ctx.url).open(),
                "stuck": health.stuck,
                "lag": health.lag,
                "rollout": rollout_state(ctx.store),
            }
        )

    @app.get("/metrics")
    def metrics() -> flask.Response:
        health = snapshot(ctx.url, ctx.dispatcher(), ctx.now())
        return flask.Response(render(health), mimetype=CONTENT_TYPE)

    @app.get("/")
    def page() -> flask.Response:
        html = resources.files("capture.api").joinpath("dashboard.html").read_text()
        return flask.Response(html, mimetype="text/html")

    return app


def rollout_state(store: JobStore) -> dict[str, Any]:
    rollout = store.rollout()
    return {
        "percent": rollout.percent,
        "allow": sorted(rollout.allow),
        "deny": sorted(rollout.deny),
        "stopped": rollout.stopped,
    }


def jsonable(value: Any) -> Any:
    """Dates as ISO strings, durations as seconds, decimals as numbers, ids as strings."""
    from decimal import Decimal
    from uuid import UUID

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    return value
