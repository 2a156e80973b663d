"""The API's Flask app: routes (capture.api.routes) behind token auth (capture.api.auth),
one-line JSON errors, nothing written for a refused request."""

from __future__ import annotations

import logging

import flask
from werkzeug.exceptions import HTTPException

from capture.api import auth
from capture.api.context import Context
from capture.api.routes import fail, routes
from capture.settings import ApiSettings
from jobstore import (
    AmbiguousJobId,
    DatabaseUnavailable,
    InvalidSpec,
    JobNotFound,
    JobStoreError,
    JobUnreadable,
)

log = logging.getLogger(__name__)


def create_app(ctx: Context, settings: ApiSettings) -> flask.Flask:
    """The API on `ctx` (made once per server), accepting the tokens of `settings`."""
    app = flask.Flask("prcapture-api")
    app.extensions["prcapture"] = ctx
    auth.install(app, settings, fail, ctx.ping)
    app.register_blueprint(routes)
    app.register_error_handler(JobNotFound, lambda exc: fail(404, str(exc)))
    app.register_error_handler(InvalidSpec, lambda exc: fail(400, str(exc)))
    app.register_error_handler(AmbiguousJobId, lambda exc: fail(400, str(exc)))
    app.register_error_handler(JobUnreadable, lambda exc: fail(500, str(exc)))
    app.register_error_handler(DatabaseUnavailable, lambda exc: fail(503, str(exc)))
    app.register_error_handler(JobStoreError, lambda exc: fail(409, str(exc)))
    app.register_error_handler(Exception, unexpected)
    return app


def unexpected(exc: Exception) -> flask.Response:
    if isinstance(exc, HTTPException):  # 404 for an unknown path, 405, ...
        return fail(exc.code or 500, exc.description or exc.name)
    # The path, never the query string (it may carry ?access_token=) or the headers.
    log.exception("unexpected error on %s %s", flask.request.method, flask.request.path)
    return fail(500, f"internal error ({type(exc).__name__}); the server log has details")
