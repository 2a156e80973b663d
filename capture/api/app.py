"""The API's Flask app: routes (capture.api.routes) behind token auth (capture.api.auth),
one-line JSON errors, nothing written for a refused request."""

from __future__ import annotations

import json
import logging
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from capture.api import auth
from capture.api.context import Context
from capture.api.routes import fail, routes
from capture.settings import ApiSettings
from capture.webhooks import WebhookSettings, receive
from capture.webhooks.planner import submit_apply
from jobstore import (
    AmbiguousJobId,
    DatabaseUnavailable,
    InvalidSpec,
    JobNotFound,
    JobStoreError,
    JobUnreadable,
)

log = logging.getLogger(__name__)


def create_app(
    ctx: Context, settings: ApiSettings, webhooks: WebhookSettings | None = None
) -> flask.Flask:
    """The API on `ctx` (made once per server), accepting the tokens of `settings`; with
    `webhooks` enabled, GitHub's signed deliveries at their path too."""
    app = flask.Flask("prcapture-api")
    app.extensions["prcapture"] = ctx
    signed = (webhooks.path,) if webhooks and webhooks.enabled else ()
    auth.install(app, settings, fail, ctx.ping, signed)
    app.register_blueprint(routes)
    if webhooks and webhooks.enabled:
        app.add_url_rule(
            webhooks.path, "github_webhooks", github_webhooks(ctx, webhooks), methods=["POST"]
        )
    app.register_error_handler(JobNotFound, lambda exc: fail(404, str(exc)))
    app.register_error_handler(InvalidSpec, lambda exc: fail(400, str(exc)))
    app.register_error_handler(AmbiguousJobId, lambda exc: fail(400, str(exc)))
    app.register_error_handler(JobUnreadable, lambda exc: fail(500, str(exc)))
    app.register_error_handler(DatabaseUnavailable, lambda exc: fail(503, str(exc)))
    app.register_error_handler(JobStoreError, lambda exc: fail(409, str(exc)))
    app.register_error_handler(Exception, unexpected)
    return app


def github_webhooks(ctx: Context, webhooks: WebhookSettings) -> Any:
    """The view for GitHub's deliveries (signed, so no token)."""

    def view() -> flask.Response:
        headers = {k.lower(): v for k, v in flask.request.headers.items()}
        answer = receive(ctx.db, webhooks, headers, flask.request.get_data(), ctx.now())
        if answer.status >= 400:
            return fail(answer.status, answer.doc["error"])
        if answer.apply is not None:  # stored: acted on by the repository's apply job
            try:
                submit_apply(ctx.dispatcher(), *answer.apply, ctx.now(), webhooks.lane)
            except (JobStoreError, ValueError) as exc:  # the planner's catch-up gives it one
                log.warning(
                    "delivery %s stored, its apply job not enqueued: %s",
                    answer.doc["delivery"],
                    exc,
                )
        return flask.Response(
            json.dumps(answer.doc), status=answer.status, mimetype="application/json"
        )

    return view


def unexpected(exc: Exception) -> flask.Response:
    if isinstance(exc, HTTPException):  # 404 for an unknown path, 405, ...
        return fail(exc.code or 500, exc.description or exc.name)
    # The path, never the query string (it may carry ?access_token=) or the headers.
    log.exception("unexpected error on %s %s", flask.request.method, flask.request.path)
    return fail(500, f"internal error ({type(exc).__name__}); the server log has details")
