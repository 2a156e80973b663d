"""Who may call the API: a bearer token from CAPTURE_API_TOKENS on every endpoint but the
open ones (compared in constant time), and CORS for the listed web origins."""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import flask

from capture.settings import ApiSettings, ApiToken

ACCESS = logging.getLogger("capture.access")  # one line per request

OPEN = ("/healthz",)  # no token needed
SIGNED = "/api/inngest"  # Inngest signs its own calls


def given_token(request: flask.Request) -> str:
    """The bearer token of the request (`?access_token=` for EventSource and links)."""
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    return given or request.args.get("access_token", "")


def holder(token: str, tokens: list[ApiToken]) -> ApiToken | None:
    """The token's entry, compared against every entry in constant time."""
    given, found = token.encode(), None
    for entry in tokens:
        if hmac.compare_digest(given, entry.secret.reveal().encode()):
            found = entry
    return found


def scope_for(method: str) -> str:
    """What a request needs: reading, or submitting work (billed events, dispatches)."""
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "submit"


class Quota:
    """Requests that submit work, per token per minute (this process's count: a sliding
    window of the last minute's times)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.seen: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def wait(self, name: str) -> float:
        """0 and counted if `name` may submit now, else the seconds until it may."""
        now = self.clock()
        with self.lock:
            times = self.seen.setdefault(name, deque())
            while times and times[0] <= now - 60:
                times.popleft()
            if len(times) >= self.per_minute:
                return max(0.0, times[0] + 60 - now)
            times.append(now)
            return 0.0


def install(
    app: flask.Flask,
    settings: ApiSettings,
    refuse: Callable[[int, str], flask.Response],
    ping: Callable[[], None],
    signed: tuple[str, ...] = (),
) -> None:
    """Checks every request's token and its scope before its route runs (a refused
    request reads and writes nothing), holds each token to its quota of submissions,
    pings the database for the routes that use it, answers CORS, and logs each request
    (method, path without its query, status, time, the token's name; never the token)."""
    tokens = settings.named()
    quota = Quota(settings.submit_per_minute)

    def allowed_origin() -> str | None:
        origin = flask.request.headers.get("origin", "")
        return origin if origin in settings.origins else None

    @app.before_request
    def authenticate() -> flask.Response | None:
        flask.g.started = time.perf_counter()
        path, method = flask.request.path, flask.request.method
        if method == "OPTIONS" and allowed_origin():  # a CORS preflight
            return flask.Response(status=204)
        if path in OPEN or path.startswith(SIGNED):
            return None
        if path in signed:  # GitHub's webhooks: the receiver checks their signature
            if method != "POST":
                return refuse(405, f"{path} takes POST")
            ping()
            return None
        token = holder(given_token(flask.request), tokens)
        if token is None:
            return refuse(401, "a valid token is needed: Authorization: Bearer <token>")
        flask.g.token = token.name
        needed = scope_for(method)
        if not token.allows(needed):
            return refuse(403, f"token {token.name} may {token.scope}, not {needed}")
        if needed == "submit" and (wait := quota.wait(token.name)) > 0:
            answer = refuse(
                429,
                f"token {token.name} has asked for {quota.per_minute} captures in a minute; "
                f"try again in {math.ceil(wait)} s",
            )
            answer.headers["retry-after"] = str(math.ceil(wait))
            return answer
        if path != "/":  # the page itself needs no database
            ping()
        return None

    @app.after_request
    def access(response: flask.Response) -> flask.Response:
        started = flask.g.get("started")
        took = (time.perf_counter() - started) * 1000 if started else 0.0
        ACCESS.info(
            "%s %s %s %.0fms %s",
            flask.request.method,
            flask.request.path,  # never the query string: it may carry ?access_token=
            response.status_code,
            took,
            flask.g.get("token", "-"),
        )
        return response

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
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("referrer-policy", "no-referrer")
        response.headers.setdefault("x-frame-options", "DENY")
        return response
