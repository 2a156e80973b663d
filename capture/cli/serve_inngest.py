"""`bin/serve-inngest`: serves the capture function over HTTP with the SDK's Flask adapter
(default path /api/inngest), so Inngest (or the sandbox's executor) can call it."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading

import click

from capture import inngest_function
from capture.cli.common import Command, errors, resources, version_option
from capture.cli.logs import log_options
from capture.serving import Server
from capture.settings import InngestSettings


@click.command(cls=Command)
@version_option
@log_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--worker-id", default=lambda: f"inngest:{socket.gethostname()}:{os.getpid()}")
def serve_inngest(host: str, port: int, worker_id: str) -> None:
    """Serve the Inngest capture function at /api/inngest until stopped.

    Production mode checks `x-inngest-signature` with INNGEST_SIGNING_KEY; INNGEST_DEV=1
    is the dev server (no signatures).
    """
    s = resources(click.get_current_context())
    with errors():
        function_settings = InngestSettings.load()
        function_settings.check(host)
        run_attempt = inngest_function.attempt_runner(s.runner(), worker_id)
        app, fn = inngest_function.create_app(function_settings, run_attempt)
    try:
        server = Server(app, host, port, threads=8).start()  # Inngest calls steps at once
    except OSError as exc:
        raise click.UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    url = f"{server.url}{inngest_function.SERVE_PATH}"
    click.echo(json.dumps({"url": url, "function": fn.get_id(), "dev": function_settings.dev}))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop()
