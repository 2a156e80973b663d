"""A production WSGI server (waitress: pure Python, threads) for the API and the Inngest
function, started in a thread and stopped cleanly, and the limits it holds requests to.

Request sizes, whoever sends the request (token or not): the server refuses a body
declared larger than LARGEST with 413 before reading a byte of it (waitress's
max_request_body_size, chunked bodies included); BodyLimit, around everything `bin/serve`
serves, holds each route to its own limit (a GET takes no more than DEFAULT)."""

from __future__ import annotations

import json
import logging
import resource
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

CHANNEL_TIMEOUT = 60  # seconds a connection may stay silent
CONNECTION_LIMIT = 4096  # open connections (idle ones included) before new ones wait


KB = 1024
MB = 1024 * KB
# The longest matching prefix decides; a path no prefix matches gets DEFAULT.
LIMITS: Mapping[str, int] = {
    "/v1/": 1 * MB,  # a capture spec is a few hundred bytes
    "/api/inngest": 1 * MB,  # Inngest's calls carry an event and the steps so far: small
}
DEFAULT = 64 * KB
LARGEST = max([DEFAULT, *LIMITS.values()])  # the server's own cap, chunked bodies included

StartResponse = Callable[..., Any]
App = Callable[[dict, StartResponse], Iterable[bytes]]


def limit_for(path: str, limits: Mapping[str, int] = LIMITS) -> int:
    matches = [prefix for prefix in limits if path.startswith(prefix)]
    return limits[max(matches, key=len)] if matches else DEFAULT


class BodyLimit:
    """Refuses, by the request's headers alone, a body its route does not take."""

    def __init__(self, app: App, limits: Mapping[str, int] = LIMITS) -> None:
        self.app = app
        self.limits = limits

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        declared = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
        if chunked and not declared:
            return _refuse(start_response, 411, "a body must declare its Content-Length")
        if declared:
            try:
                length = int(declared)
            except ValueError:
                return _refuse(start_response, 400, "Content-Length is not a number")
            allowed = limit_for(path, self.limits)
            if length > allowed:
                return _refuse(
                    start_response,
                    413,
                    f"the body is {length:,} bytes; {path} takes at most {allowed:,}",
                )
        return self.app(environ, start_response)


def _refuse(start_response: StartResponse, status: int, message: str) -> list[bytes]:
    reason = {400: "Bad Request", 411: "Length Required", 413: "Content Too Large"}[status]
    body = json.dumps({"error": message}).encode()
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def room_for(connections: int, spare: int = 256) -> None:
    """Raises this process's open-file limit (up to its hard limit) so that `connections`
    sockets, its database connections and its files fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, top), hard))


class Server:
    """`app` served on host:port (0 picks a free port) by `threads` worker threads; up to
    `connection_limit` connections open, each closed after CHANNEL_TIMEOUT silent seconds."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        threads: int = 8,
        connection_limit: int = CONNECTION_LIMIT,
    ) -> None:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # no line per busy spell
        room_for(connection_limit)
        sockets: dict = {}  # waitress's socket map: closed here if the server cannot start
        try:
            self._server = create_server(
                app,
                map=sockets,
                host=host,
                port=port,
                threads=threads,
                # Idle and half-sent connections cost no thread; a client silent this
                # long is closed (an event stream writes a keep-alive every 15 s).
                channel_timeout=CHANNEL_TIMEOUT,
                connection_limit=connection_limit,
                max_request_body_size=LARGEST,  # refused by its declared length, unread
                clear_untrusted_proxy_headers=True,
                ident="prcapture",
            )
        except BaseException:
            wasyncore.close_all(sockets)
            raise
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="wsgi")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Closes the listening socket and every open connection, then the workers."""
        if self._thread.is_alive():  # closed inside the server's loop, woken by its trigger
            self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
            self._thread.join(timeout=10)
        else:
            wasyncore.close_all(self._server._map)
        self._server.task_dispatcher.shutdown(timeout=5)
