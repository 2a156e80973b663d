"""`bin/serve`'s HTTP server: hypercorn (asyncio) takes the connections, the WSGI app (the
API, the dashboard, /metrics, the Inngest function) runs on a pool of threads (one hop
to a thread and back per request; a2wsgi makes its environ), and event streams are
written by the event loop from the hub (capture.api.stream), so an idle connection or an
open stream costs no thread.

What every request is held to, token or not, before the app sees it:
- its headers complete within IDLE_TIMEOUT of the connection's start or of its last
  answer (a connection silent, or trickling half a request, that long is closed);
- a body its route does not take (LIMITS, by the longest prefix; DEFAULT otherwise) is
  refused by its declared length, 413, before a byte of it is read; a body without a
  declared length is 411;
- the whole body within BODY_DEADLINE (408), read before a thread is given to the app.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import resource
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import build_environ
from hypercorn.asyncio import serve
from hypercorn.config import Config

from capture.api.stream import (
    KEEPALIVE,
    KEEPALIVE_FRAME,
    LONGEST,
    STREAM_HEADER,
    Hub,
    Stream,
    claim,
)

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 20  # seconds without a request in progress before a connection is closed
BODY_DEADLINE = 30  # seconds to send a whole body
BACKLOG = 2048  # connections the kernel holds before they are accepted
GRACE = 3  # seconds requests in progress get to finish when the server stops

KB = 1024
MB = 1024 * KB
# The longest matching prefix decides; a path no prefix matches gets DEFAULT.
LIMITS: Mapping[str, int] = {
    "/v1/": 1 * MB,  # a capture spec is a few hundred bytes
    "/api/inngest": 1 * MB,  # Inngest's calls carry an event and the steps so far: small
}
DEFAULT = 64 * KB
LARGEST = max([DEFAULT, *LIMITS.values()])

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def limit_for(path: str, limits: Mapping[str, int] = LIMITS) -> int:
    matches = [prefix for prefix in limits if path.startswith(prefix)]
    return limits[max(matches, key=len)] if matches else DEFAULT


def room_for(connections: int, spare: int = 256) -> None:
    """Raises this process's open-file limit (up to its hard limit) so that `connections`
    sockets, its database connections and its files fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, top), hard))


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Front:
    """The ASGI app: the limits, the body read whole, the WSGI app on `threads` threads,
    and the event streams it opens (a response carrying STREAM_HEADER) carried on here."""

    def __init__(
        self,
        app: Any,
        threads: int,
        limits: Mapping[str, int] = LIMITS,
        body_deadline: float = BODY_DEADLINE,
    ) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="request")
        self.limits = limits
        self.body_deadline = body_deadline
        self.carrying: set[tuple[Hub, Stream]] = set()

    def end_streams(self) -> None:
        """Ends every stream this server carries (each says nothing more; clients
        reconnect with Last-Event-ID)."""
        for hub, stream in list(self.carrying):
            hub.close(stream)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            body = await self._body(scope, receive)
        except Refused as refused:
            await _refuse(send, refused.status, str(refused))
            return
        environ = build_environ(scope, io.BytesIO(body))
        loop = asyncio.get_running_loop()
        status, headers, content = await loop.run_in_executor(self.pool, _call, self.app, environ)
        ticket = next((v.decode() for n, v in headers if n == STREAM_HEADER), None)
        if ticket is not None:  # no length and not the ticket: the body is the stream
            dropped = (STREAM_HEADER, b"content-length")
            headers = [(n, v) for n, v in headers if n not in dropped]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if ticket is not None:
            await self._stream(ticket, receive, send)
        else:
            await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin1")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if chunked and not declared:
            raise Refused(411, "a body must declare its Content-Length")
        if not declared:
            return b""
        if not (declared.isascii() and declared.isdigit()):
            raise Refused(400, "Content-Length is not a number")
        length, path = int(declared), scope.get("path") or "/"
        allowed = limit_for(path, self.limits)
        if length > allowed:
            raise Refused(413, f"the body is {length:,} bytes; {path} takes at most {allowed:,}")
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_deadline):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise Refused(400, "the client went away")
                    body.extend(message.get("body", b""))
                    if not message.get("more_body"):
                        return bytes(body)
        except TimeoutError:
            raise Refused(408, f"the body did not come within {self.body_deadline} s") from None

    async def _stream(self, ticket: str, receive: Receive, send: Send) -> None:
        found = claim(ticket)
        if found is None:  # the hub dropped it: the client reconnects
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        hub, stream = found
        self.carrying.add(found)
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        stream.wake = lambda: loop.call_soon_threadsafe(ready.set)
        gone = asyncio.ensure_future(_disconnected(receive))
        deadline = loop.time() + LONGEST
        try:
            while not gone.done():
                frames, ended = stream.take()
                if frames:
                    await send(_chunk("".join(frames)))
                if ended or loop.time() > deadline:
                    break
                waiting = asyncio.ensure_future(ready.wait())
                done, _ = await asyncio.wait(
                    {waiting, gone}, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                )
                waiting.cancel()
                ready.clear()
                if not done:
                    await send(_chunk(KEEPALIVE_FRAME))
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            self.carrying.discard(found)
            hub.close(stream)


def _call(app: Any, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Runs the WSGI app for one request, on a thread of the pool: its whole answer (every
    answer of ours is small; an event stream's body is carried on by the event loop)."""
    started: list[tuple[int, list[tuple[bytes, bytes]]]] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        encoded = [(n.strip().lower().encode("latin1"), v.encode("latin1")) for n, v in headers]
        started[:] = [(int(status.split(" ", 1)[0]), encoded)]
        return chunks.append

    try:
        answer = app(environ, start_response)
        try:
            chunks.extend(answer)
        finally:
            getattr(answer, "close", lambda: None)()
    except Exception:
        log.exception("the app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
        body = json.dumps({"error": "internal error; the server log has details"}).encode()
        return 500, [(b"content-type", b"application/json")], body
    if not started:
        return 500, [(b"content-type", b"application/json")], b'{"error": "no answer"}'
    return started[0][0], started[0][1], b"".join(chunks)


def _chunk(text: str) -> dict:
    return {"type": "http.response.body", "body": text.encode(), "more_body": True}


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Server:
    """`app` (WSGI) served on host:port (0 picks a free port) with `threads` threads for
    it and the event streams it opens; started in a thread of its own, stopped cleanly."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        threads: int = 8,
        idle_timeout: float = IDLE_TIMEOUT,
        body_deadline: float = BODY_DEADLINE,
        limits: Mapping[str, int] = LIMITS,
    ) -> None:
        room_for(BACKLOG * 2)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(BACKLOG)
        except OSError:
            self._socket.close()
            raise
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        self._fd = self._socket.detach()  # hypercorn's from here on (or closed by stop)
        self.front = Front(app, threads, limits, body_deadline=body_deadline)
        config = Config()
        config.bind = [f"fd://{self._fd}"]
        config.backlog = BACKLOG
        config.keep_alive_timeout = idle_timeout
        config.graceful_timeout = GRACE
        config.include_server_header = False
        config.accesslog = None  # the app logs each request (capture.access)
        config.errorlog = logging.getLogger("hypercorn.error")
        self._config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="http")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Server:
        self._thread.start()
        self._started.wait(timeout=10)
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            self._started.set()
            await serve(self.front, self._config, shutdown_trigger=self._stopping.wait)

        asyncio.run(main())

    def stop(self) -> None:
        """Ends the event streams, stops taking connections, lets requests in progress
        finish (GRACE seconds at most), then closes every connection and the threads."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.front.end_streams)
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=GRACE + 10)
        elif not self._thread.is_alive():
            os.close(self._fd)
        self.front.pool.shutdown(wait=False, cancel_futures=True)
