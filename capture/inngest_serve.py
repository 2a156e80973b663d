"""`bin/serve-inngest`: serves the capture function over HTTP with the SDK's Flask adapter
(default path /api/inngest), so Inngest (or the sandbox's executor) can call it."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from typing import Any

import click
import flask
import inngest
import inngest.flask
from werkzeug.serving import BaseWSGIServer, make_server

from capture import inngest_app
from capture.cli import capture_settings
from capture.worker import run_by_id
from jobstore.clikit import Command, errors, session
from jobstore.config import LaneSettings
from jobstore.errors import JobNotFound
from jobstore.store import JobStore


def attempt_runner(store: JobStore, url: str, worker: str) -> inngest_app.RunAttempt:
    """Runs one attempt as the Inngest lane: the same run_job every lane uses."""
    settings = capture_settings()

    def run(job_id: str, attempt: int) -> dict[str, Any]:
        try:
            result = run_by_id(
                store, url, settings, job_id, worker=worker, lane="inngest", attempt=attempt
            )
        except JobNotFound as exc:
            raise inngest.NonRetriableError(str(exc)) from None
        return {
            "job_id": str(result.job_id),
            "attempt": attempt,
            "outcome": result.outcome,
            "detail": result.detail,
            "items": result.items,
            "points": result.points,
        }

    return run


def create_app(
    lanes: LaneSettings, run_attempt: inngest_app.RunAttempt
) -> tuple[flask.Flask, inngest.Function[Any]]:
    sdk = inngest_app.client(lanes)
    fn = inngest_app.function(sdk, run_attempt, lanes.inngest_concurrency)
    app = flask.Flask("prcapture-inngest")
    inngest.flask.serve(app, sdk, [fn], serve_path=inngest_app.SERVE_PATH)
    return app, fn


def serve(app: flask.Flask, host: str, port: int) -> BaseWSGIServer:
    """A threaded WSGI server (one thread per request: Inngest calls steps concurrently)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    return make_server(host, port, app, threaded=True)


@click.command(cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--worker-id", default=lambda: f"inngest:{socket.gethostname()}:{os.getpid()}")
def serve_inngest(host: str, port: int, worker_id: str) -> None:
    """Serve the Inngest capture function at /api/inngest until stopped.

    Production mode checks `x-inngest-signature` with INNGEST_SIGNING_KEY; INNGEST_DEV=1
    is the dev server (no signatures).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    s = session(click.get_current_context())
    with errors():
        lanes = s.settings.lanes
        if not lanes.inngest_dev and not lanes.inngest_signing_key:
            raise click.UsageError(
                "INNGEST_SIGNING_KEY is not set (production mode); set it, or INNGEST_DEV=1"
            )
        store = s.store
        app, fn = create_app(lanes, attempt_runner(store, s.url or "", worker_id))
    server = serve(app, host, port)
    url = f"http://{host}:{server.server_port}{inngest_app.SERVE_PATH}"
    click.echo(json.dumps({"url": url, "function": fn.get_id(), "dev": lanes.inngest_dev}))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
