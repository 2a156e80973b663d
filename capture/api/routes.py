"""The API's routes, one plain function each; the server's Context is the app's
`prcapture` extension. Errors are raised as the library's own and answered by the app."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import flask

from capture.api.context import Context
from capture.api.stream import stream_headers
from capture.intake import take
from capture.jobtypes import JOB_TYPES
from capture.ops.health import snapshot
from capture.ops.metrics import CONTENT_TYPE, render
from jobstore import LANES, DatabaseUnavailable, InvalidSpec, JobSpec, JobStore, Status, reads

routes = flask.Blueprint("prcapture", __name__)
# What a request may say: the job spec's own fields (not parent_id: only a splitting job
# makes children) and the lane.
SPEC_FIELDS = {f.name for f in dataclasses.fields(JobSpec)} - {"parent_id"} | {"lane"}
JOB_FILTERS = {"repository", "status", "lane", "job_type", "since", "limit", "access_token"}


def context() -> Context:
    return flask.current_app.extensions["prcapture"]


def fail(status: int, message: str) -> flask.Response:
    """One line of JSON naming the problem."""
    response = flask.jsonify({"error": " ".join(message.split())[:300]})
    response.status_code = status
    return response


REQUESTED_BY = "requested_by"  # the name of the token that asked, in the job's params
EARLIEST_YEAR = 2008  # GitHub's first: nothing is older


def whole(text: str, low: int, high: int) -> int | None:
    """`text` as a whole number in low..high (ASCII digits only: "²" is a digit to
    str.isdigit, not to int), or None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        return None
    value = int(text)
    return value if low <= value <= high else None


@routes.get("/healthz")
def health() -> Any:
    """Up or not, and nothing more (no token is needed: no address, no error text)."""
    try:
        context().ping()
    except DatabaseUnavailable:
        return {"ok": False}, 503
    return {"ok": True}


@routes.post("/v1/captures")
def capture() -> Any:
    try:
        body = flask.request.get_json(force=True, silent=True)  # whatever content-type curl sent
    except RecursionError:  # nested past what a parser can follow: not a capture
        return fail(400, "the body nests too deep to be a capture")
    if not isinstance(body, dict):
        return fail(400, "the body must be a JSON object describing the capture")
    unknown = sorted(set(body) - SPEC_FIELDS)
    if unknown:
        return fail(400, f"unknown fields: {', '.join(unknown)}")
    if not isinstance(body.get("job_type"), str) or body["job_type"] not in JOB_TYPES:
        return fail(400, f"job_type must be one of {', '.join(sorted(JOB_TYPES))}")
    lane = body.get("lane", "auto")
    if not isinstance(lane, str) or lane not in ("auto", *LANES):
        return fail(400, f"lane must be auto or one of {', '.join(LANES)}")
    fields = {k: v for k, v in body.items() if k not in ("job_type", "repository", "lane")}
    fields["pr_numbers"] = fields.get("pr_numbers") or ()
    if not isinstance(fields["pr_numbers"], list | tuple):
        return fail(400, "pr_numbers must be a list of numbers")
    params = fields.get("params") or {}
    if not isinstance(params, dict):
        return fail(400, "params must be a JSON object")
    if REQUESTED_BY in params:
        return fail(400, f"params.{REQUESTED_BY} is the server's to set (the token's name)")
    fields["params"] = {**params, REQUESTED_BY: flask.g.get("token", "-")}  # on Queued
    try:
        spec = JobSpec.create(body["job_type"], body.get("repository"), **fields)
    except InvalidSpec:
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # a value of the wrong kind
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return fail(400, f"the spec could not be read: {text[:200]}")
    ctx = context()
    intake = take(
        ctx.dispatcher(),
        ctx.registry,
        spec,
        ctx.now(),
        ctx.freshness,
        None if lane == "auto" else lane,
    )
    document = intake.document()
    job_id = document["job_id"]
    document["links"] = {"self": f"/v1/jobs/{job_id}", "events": f"/v1/jobs/{job_id}/events"}
    return document, 201 if intake.created else 200


@routes.get("/v1/jobs")
def job_list() -> Any:
    args = flask.request.args
    unknown = sorted(set(args) - JOB_FILTERS)
    if unknown:
        return fail(400, f"unknown parameters: {', '.join(unknown)}")
    status, lane = args.get("status"), args.get("lane")
    if status and status not in {s.value for s in Status}:
        return fail(400, f"status must be one of {', '.join(s.value for s in Status)}")
    if lane and lane not in LANES:
        return fail(400, f"lane must be one of {', '.join(LANES)}")
    limit = whole(args.get("limit", "50"), 1, 500)
    if limit is None:
        return fail(400, "limit must be a whole number from 1 to 500")
    since = None
    if args.get("since"):
        try:
            since = datetime.fromisoformat(args["since"].replace("Z", "+00:00"))
        except ValueError:
            return fail(400, f"since: {args['since']!r} is not an ISO 8601 time")
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        if since.year < EARLIEST_YEAR:
            return fail(400, f"since: {args['since']!r} is before {EARLIEST_YEAR}")
    where = reads.JobFilter(
        status, lane, args.get("job_type"), args.get("repository"), since, limit
    )
    return {"jobs": jsonable(reads.current_jobs(context().db, where))}


@routes.get("/v1/jobs/<ref>")
def job(ref: str) -> Any:
    store = context().store
    return jsonable(reads.job_history(store, store.resolve(ref)))


@routes.get("/v1/jobs/<ref>/events")
def events(ref: str) -> flask.Response:
    """The job's events from `after` (or Last-Event-ID) on, as server-sent events; the
    server carries the stream on (capture.api.stream)."""
    ctx = context()
    job_id = ctx.store.resolve(ref)
    ctx.store.get(job_id)  # 404 before the stream starts
    since = flask.request.headers.get("last-event-id") or flask.request.args.get("after") or "0"
    after = whole(since, 0, 10**9)
    if after is None:  # checked before a stream is opened: nothing to give back
        return fail(400, "after (or Last-Event-ID) must be a whole number, an event's version")
    ticket = ctx.hub.open(job_id, after)
    if ticket is None:
        response = fail(
            503,
            f"{ctx.hub.limit} event streams are open; try again, or poll /v1/jobs/{job_id}",
        )
        response.headers["retry-after"] = "5"
        return response
    return flask.Response(b"", mimetype="text/event-stream", headers=stream_headers(ticket))


@routes.get("/v1/repos/<owner>/<name>/freshness")
def freshness(owner: str, name: str) -> Any:
    wanted = f"{owner}/{name}".lower()
    rows = context().registry.freshness(repository=wanted)
    if not rows:
        return fail(404, f"{wanted} is not tracked")
    return jsonable(rows[0])


@routes.get("/v1/dashboard")
def dashboard_data() -> Any:
    ctx = context()
    now = ctx.now()
    hours = whole(flask.request.args.get("hours", "6"), 1, 48)
    if hours is None:
        return fail(400, "hours must be a whole number from 1 to 48")
    window = flask.request.args.get("window", "1d")
    if window not in reads.WINDOWS:
        return fail(400, f"window must be one of {', '.join(reads.WINDOWS)}")
    health = snapshot(ctx.db, ctx.dispatcher(), ctx.budgets, ctx.registry, now)
    stats = reads.lane_statistics(ctx.db, window, now)
    return jsonable(
        {
            "at": now,
            "window": window,
            "lanes": {lane: stats[lane] for lane in LANES},
            "down": health.down,
            "cost": stats["cost"],
            "series": reads.series(ctx.db, now - timedelta(hours=hours), now),
            "budgets": health.budgets,
            "breaches": ctx.registry.freshness(breached_only=True)[:50],
            "failures": reads.recent_failures(ctx.db),
            "alerts": ctx.alerts.open(),
            "stuck": health.stuck,
            "lag": health.lag,
            "rollout": rollout_state(ctx.store),
            "fleet": {
                **ctx.registry.fleet(),
                "breached": len(health.breached_names),
                "bootstrap": ctx.registry.bootstrap_progress(),
            },
            "fleet_series": ctx.registry.samples(now - timedelta(hours=hours)),
        }
    )


@routes.get("/metrics")
def metrics() -> flask.Response:
    ctx = context()
    health = snapshot(ctx.db, ctx.dispatcher(), ctx.budgets, ctx.registry, ctx.now())
    return flask.Response(render(health), mimetype=CONTENT_TYPE)


@routes.get("/")
def page() -> flask.Response:
    """The dashboard: its one script runs by a nonce of this answer's own, nothing else
    runs, it loads nothing from elsewhere and no other site may frame it."""
    nonce = secrets.token_urlsafe(18)
    html = resources.files("capture.api").joinpath("dashboard.html").read_text()
    html = html.replace("<script>", f'<script nonce="{nonce}">', 1)
    response = flask.Response(html, mimetype="text/html")
    response.headers["content-security-policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    response.headers["cache-control"] = "no-store"
    return response


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
