"""`bin/serve`: the HTTP API, the dashboard and /metrics on a production server (hypercorn
in front, the app on a pool of threads, event streams on the event loop), with the Inngest
capture function at /api/inngest when Inngest is configured."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading

import click

from capture import inngest_function
from capture.api import ApiSettings, Context, create_app
from capture.cli.common import Command, errors, resources, version_option
from capture.cli.logs import log_options
from capture.freshness.settings import load_freshness
from capture.serving import IDLE_TIMEOUT, LIMITS, Server
from capture.settings import InngestSettings
from capture.webhooks import WebhookSettings
from capture.webhooks.receiver import MAX_BODY


@click.command(cls=Command)
@version_option
@log_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--threads",
    default=16,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Threads running requests (event streams and idle connections take none).",
)
@click.option(
    "--max-streams",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Event streams open at once; more are 503 with retry-after.",
)
@click.option(
    "--idle-timeout",
    default=IDLE_TIMEOUT,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds a connection may wait for its request (or send half of it) before it is closed.",
)
@click.option("--worker-id", default=lambda: f"inngest:{socket.gethostname()}:{os.getpid()}")
def serve(
    host: str, port: int, threads: int, max_streams: int, idle_timeout: float, worker_id: str
) -> None:
    """Serve the API (POST /v1/captures, GET /v1/jobs/ID and its /events stream,
    GET /v1/repos/OWNER/NAME/freshness), the dashboard (/) and /metrics until stopped.

    Every endpoint but /healthz wants a token from CAPTURE_API_TOKENS (Authorization:
    Bearer, or ?access_token= for a browser's EventSource). With INNGEST_SIGNING_KEY (or
    INNGEST_DEV=1) the capture function is served at /api/inngest too."""
    s = resources(click.get_current_context())
    with errors():
        # A request waits at most 3 s for a database connection (then 503), and each
        # server thread can hold one.
        s.configure(pool_size=max(s.settings.pool_size, threads // 2), pool_wait=3.0)
        api = ApiSettings.load()
        freshness = load_freshness()
        store = s.store
        assert s.url is not None
        ctx = Context(store, freshness, max_streams=max_streams)
        s.on_close(ctx.close)
        webhooks = WebhookSettings.load()
        app = create_app(ctx, api, webhooks)
        function = InngestSettings.load()
        inngest_url = None
        if function.signing_key or function.dev:
            function.check(host)
            run = inngest_function.attempt_runner(s.runner(), worker_id)
            inngest_function.create_app(function, run, app)
            inngest_url = inngest_function.SERVE_PATH
    logging.getLogger("capture.access").setLevel(logging.INFO)  # a line per request
    try:
        limits = {**LIMITS, webhooks.path: MAX_BODY} if webhooks.enabled else LIMITS
        server = Server(app, host, port, threads, idle_timeout=idle_timeout, limits=limits).start()
    except OSError as exc:
        raise click.UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    urls = {"url": server.url, "dashboard": f"{server.url}/", "metrics": f"{server.url}/metrics"}
    if inngest_url:
        urls["inngest"] = f"{server.url}{inngest_url}"
    click.echo(json.dumps(urls))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop()
