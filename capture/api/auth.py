"""Who may call the API: a bearer token from CAPTURE_API_TOKENS on every endpoint but the
open ones (compared in constant time), and CORS for the listed web origins."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import flask

from capture.settings import ApiSettings

OPEN = ("/healthz",)  # no token needed
SIGNED = "/api/inngest"  # Inngest signs its own calls


def given_token(request: flask.Request) -> str:
    """The bearer token of the request (`?access_token=` for EventSource and links)."""
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    return given or request.args.get("access_token", "")


def is_allowed(token: str, allowed: list[bytes]) -> bool:
    return any(hmac.compare_digest(token.encode(), known) for known in allowed)


def install(
    app: flask.Flask,
    settings: ApiSettings,
    refuse: Callable[[int, str], flask.Response],
    ping: Callable[[], None],
) -> None:
    """Checks every request's token before its route runs (a refused request reads and
    writes nothing), pings the database for those that use it, and answers CORS."""
    allowed = [t.reveal().encode() for t in settings.tokens]

    def allowed_origin() -> str | None:
        origin = flask.request.headers.get("origin", "")
        return origin if origin in settings.origins else None

    @app.before_request
    def authenticate() -> flask.Response | None:
        path = flask.request.path
        if flask.request.method == "OPTIONS" and allowed_origin():  # a CORS preflight
            return flask.Response(status=204)
        if path in OPEN or path.startswith(SIGNED):
            return None
        if not is_allowed(given_token(flask.request), allowed):
            return refuse(401, "a valid token is needed: Authorization: Bearer <token>")
        if path != "/":  # the page itself needs no database
            ping()
        return None

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
